//! **TEST ONLY.** QEMU's mps2-an386 has no true random number generator, so this emulator build draws its
//! "random" bytes from SHA-256 over a fixed seed and a counter: the same bytes on every run. That is exactly
//! wrong for a real device, where every key and every ephemeral must be unpredictable. A real device
//! implements `RandomSource` over its TRNG instead (see `RustCryptoProvider`'s documentation).
//!
//! Here it only names keys in the vault: the handshakes use the vectors' fixed ephemeral keys (also test-only).

use core::sync::atomic::{AtomicU32, Ordering};
use latchkey_core::crypto::RandomSource;
use sha2::{Digest, Sha256};

pub struct TestOnlyFixedSeedRandom {
    counter: AtomicU32,
}

impl TestOnlyFixedSeedRandom {
    pub const fn new() -> Self {
        TestOnlyFixedSeedRandom {
            counter: AtomicU32::new(0),
        }
    }
}

impl RandomSource for TestOnlyFixedSeedRandom {
    fn fill(&self, buf: &mut [u8]) -> latchkey_core::Result<()> {
        for chunk in buf.chunks_mut(32) {
            let n = self.counter.fetch_add(1, Ordering::Relaxed);
            let block = Sha256::new()
                .chain_update(b"latchkey firmware TEST-ONLY fixed seed")
                .chain_update(n.to_be_bytes())
                .finalize();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        Ok(())
    }
}
