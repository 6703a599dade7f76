//! **TEST ONLY.** QEMU's mps2-an386 has no true random number generator, so this emulator build draws its
//! "random" bytes from SHA-256 over a fixed label, an optional seed and a counter: without a seed, the same
//! bytes on every run. That is exactly wrong for a real device, where every key and every ephemeral must be
//! unpredictable. A real device implements `RandomSource` over its TRNG instead (see `RustCryptoProvider`'s
//! documentation).
//!
//! The vector firmware uses it only to name keys in the vault (its handshakes use the vectors' fixed ephemeral
//! keys, also test-only). The network firmware (`latchkey-doorbell`) makes its identity and every handshake's
//! ephemeral key with it, so the test passes it a seed from the host's random source over semihosting
//! (`seed=HEX`): still not a TRNG, only different per run.

use core::sync::atomic::{AtomicU32, Ordering};
use latchkey_core::crypto::RandomSource;
use sha2::{Digest, Sha256};

pub struct TestOnlyFixedSeedRandom {
    counter: AtomicU32,
    seed: [AtomicU32; 8],
}

impl TestOnlyFixedSeedRandom {
    pub const fn new() -> Self {
        TestOnlyFixedSeedRandom {
            counter: AtomicU32::new(0),
            seed: [const { AtomicU32::new(0) }; 8],
        }
    }

    /// TEST ONLY: mixes a seed from the host into every later output (at most 32 bytes are used).
    #[allow(dead_code)]
    pub fn set_seed(&self, seed: &[u8]) {
        for (k, chunk) in seed.chunks(4).take(8).enumerate() {
            let mut w = [0u8; 4];
            w[..chunk.len()].copy_from_slice(chunk);
            self.seed[k].store(u32::from_be_bytes(w), Ordering::Relaxed);
        }
    }
}

impl RandomSource for TestOnlyFixedSeedRandom {
    fn fill(&self, buf: &mut [u8]) -> latchkey_core::Result<()> {
        let mut seed = [0u8; 32];
        for (k, w) in self.seed.iter().enumerate() {
            seed[4 * k..4 * k + 4].copy_from_slice(&w.load(Ordering::Relaxed).to_be_bytes());
        }
        for chunk in buf.chunks_mut(32) {
            let n = self.counter.fetch_add(1, Ordering::Relaxed);
            let block = Sha256::new()
                .chain_update(b"latchkey firmware TEST-ONLY fixed seed")
                .chain_update(seed)
                .chain_update(n.to_be_bytes())
                .finalize();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        Ok(())
    }
}
