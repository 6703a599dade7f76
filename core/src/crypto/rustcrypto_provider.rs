//! A pure-Rust provider (feature `rustcrypto`) on the RustCrypto crates: `chacha20poly1305`, `aes-gcm`, `sha2`,
//! `hmac`, plus `x25519-dalek`. It needs neither std nor an OS: its random bytes come from a caller-supplied
//! [`RandomSource`] (a device's TRNG), so it is the provider a microcontroller uses. On a host it is also a
//! provider without C or assembly code.
//!
//! Its AEAD keys are small and plain Rust values: ChaCha20-Poly1305 keeps only its 32-byte key (no expanded
//! table), and both ciphers wipe their keys (and AES its key schedule, GHASH its key) when dropped.

use super::{AeadAlgorithm, AeadKey, CryptoProvider, RandomSource, Secret32, TAG_LEN};
use crate::error::{Error, Result};
use crate::prelude::*;
use aes_gcm::Aes256Gcm;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use hmac::Mac as _;
use sha2::Digest as _;

/// The RustCrypto provider. Construct it once per random source, usually as a `static`:
///
/// ```
/// use latchkey_core::crypto::{RandomSource, RustCryptoProvider};
/// # fn read_trng(_: &mut [u8]) -> latchkey_core::Result<()> { Ok(()) }
///
/// /// The device's true random number generator.
/// struct Trng;
///
/// impl RandomSource for Trng {
///     fn fill(&self, buf: &mut [u8]) -> latchkey_core::Result<()> {
///         read_trng(buf) // e.g. wait for the peripheral's data-ready flag, word by word
///     }
/// }
///
/// static TRNG: Trng = Trng;
/// static PROVIDER: RustCryptoProvider = RustCryptoProvider::new(&TRNG);
/// ```
#[derive(Clone, Copy)]
pub struct RustCryptoProvider {
    rng: &'static dyn RandomSource,
}

impl core::fmt::Debug for RustCryptoProvider {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RustCryptoProvider")
    }
}

impl RustCryptoProvider {
    /// A provider whose randomness comes from `rng`.
    pub const fn new(rng: &'static dyn RandomSource) -> Self {
        RustCryptoProvider { rng }
    }

    /// A provider on the operating system's randomness (feature `std`).
    #[cfg(feature = "std")]
    pub const fn os() -> Self {
        Self::new(&super::OsRandom)
    }
}

/// A [`RandomSource`] over any `rand_core` CSPRNG, behind a lock (std's mutex, or a spin lock without std).
pub struct LockedRng<R>(crate::sync::Mutex<R>);

impl<R> LockedRng<R> {
    pub const fn new(rng: R) -> Self {
        LockedRng(crate::sync::Mutex::new(rng))
    }
}

impl<R: rand_core::CryptoRngCore + Send> RandomSource for LockedRng<R> {
    fn fill(&self, buf: &mut [u8]) -> Result<()> {
        let mut rng = self.0.lock().ok_or(Error::Crypto("random source lock"))?;
        rng.try_fill_bytes(buf)
            .map_err(|_| Error::Crypto("random source"))
    }
}

enum Cipher {
    ChaCha(ChaCha20Poly1305),
    Aes(Box<Aes256Gcm>),
}

struct RustCryptoAead(Cipher);

impl RustCryptoAead {
    /// Noise's nonces: ChaChaPoly puts the counter little-endian after 4 zero bytes, AESGCM big-endian.
    fn nonce(&self, n: u64) -> [u8; 12] {
        let mut bytes = [0u8; 12];
        match self.0 {
            Cipher::ChaCha(_) => bytes[4..].copy_from_slice(&n.to_le_bytes()),
            Cipher::Aes(_) => bytes[4..].copy_from_slice(&n.to_be_bytes()),
        }
        bytes
    }
}

impl AeadKey for RustCryptoAead {
    fn seal_in_place(&self, nonce: u64, ad: &[u8], in_out: &mut [u8]) -> Result<[u8; TAG_LEN]> {
        let nonce = self.nonce(nonce);
        let tag = match &self.0 {
            Cipher::ChaCha(key) => key.encrypt_in_place_detached((&nonce).into(), ad, in_out),
            Cipher::Aes(key) => key.encrypt_in_place_detached((&nonce).into(), ad, in_out),
        }
        .map_err(|_| Error::Crypto("aead seal"))?;
        Ok(tag.into())
    }

    fn open_in_place(
        &self,
        nonce: u64,
        ad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<()> {
        let nonce = self.nonce(nonce);
        match &self.0 {
            Cipher::ChaCha(key) => {
                key.decrypt_in_place_detached((&nonce).into(), ad, in_out, tag.into())
            }
            Cipher::Aes(key) => {
                key.decrypt_in_place_detached((&nonce).into(), ad, in_out, tag.into())
            }
        }
        .map_err(|_| Error::DecryptFailed)
    }
}

impl CryptoProvider for RustCryptoProvider {
    fn name(&self) -> &'static str {
        "rustcrypto"
    }

    fn fill_random(&self, buf: &mut [u8]) -> Result<()> {
        self.rng.fill(buf)
    }

    fn x25519_public_key(&self, secret: &Secret32) -> [u8; 32] {
        let secret = x25519_dalek::StaticSecret::from(*secret.expose());
        x25519_dalek::PublicKey::from(&secret).to_bytes()
    }

    fn x25519(&self, secret: &Secret32, peer_public: &[u8; 32]) -> Result<Secret32> {
        let secret = x25519_dalek::StaticSecret::from(*secret.expose());
        let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*peer_public));
        if !shared.was_contributory() {
            return Err(Error::InvalidPublicKey);
        }
        Ok(Secret32::new(*shared.as_bytes()))
    }

    fn aead_key(&self, algorithm: AeadAlgorithm, key: &Secret32) -> Box<dyn AeadKey> {
        let key = key.expose().into();
        Box::new(RustCryptoAead(match algorithm {
            AeadAlgorithm::ChaCha20Poly1305 => Cipher::ChaCha(ChaCha20Poly1305::new(key)),
            // Boxed apart: AES's key schedule and GHASH key are most of a kilobyte, ChaCha's key 32 bytes.
            AeadAlgorithm::Aes256Gcm => Cipher::Aes(Box::new(Aes256Gcm::new(key))),
        }))
    }

    fn sha256(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut hasher = sha2::Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    fn hmac_sha256(&self, key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        // HMAC takes keys of any length.
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(key).expect("any key length");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic source, for tests only.
    struct Counter(core::sync::atomic::AtomicU8);

    impl RandomSource for Counter {
        fn fill(&self, buf: &mut [u8]) -> Result<()> {
            for b in buf {
                *b = self.0.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        }
    }

    static COUNTER: Counter = Counter(core::sync::atomic::AtomicU8::new(0));
    static PROVIDER: RustCryptoProvider = RustCryptoProvider::new(&COUNTER);

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn randomness_comes_from_the_callers_source() {
        let mut a = [0u8; 4];
        let mut b = [0u8; 4];
        PROVIDER.fill_random(&mut a).unwrap();
        PROVIDER.fill_random(&mut b).unwrap();
        assert_ne!(a, b);
        assert_eq!(b[0].wrapping_sub(a[0]), 4);
    }

    /// RFC 7748 §6.1: Alice's public key and the shared secret with Bob.
    #[test]
    fn x25519_matches_rfc7748_and_refuses_a_low_order_point() {
        let alice = Secret32::new(unhex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        let bob_public = unhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        assert_eq!(
            hex::encode(PROVIDER.x25519_public_key(&alice)),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        assert_eq!(
            hex::encode(PROVIDER.x25519(&alice, &bob_public).unwrap().expose()),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
        assert_eq!(
            PROVIDER.x25519(&alice, &[0u8; 32]).unwrap_err(),
            Error::InvalidPublicKey
        );
    }

    /// FIPS 180-2 "abc" and RFC 4231 test case 2.
    #[test]
    fn sha256_and_hmac_match_their_standards() {
        assert_eq!(
            hex::encode(PROVIDER.sha256(&[b"a", b"", b"bc"])),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex::encode(PROVIDER.hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn aead_opens_only_what_it_sealed() {
        let key = Secret32::new([0x42; 32]);
        for algorithm in [AeadAlgorithm::ChaCha20Poly1305, AeadAlgorithm::Aes256Gcm] {
            let aead = PROVIDER.aead_key(algorithm, &key);
            let mut buf = *b"plaintext";
            let tag = aead.seal_in_place(7, b"ad", &mut buf).unwrap();
            assert_ne!(&buf, b"plaintext");
            for (nonce, ad) in [(8, &b"ad"[..]), (7, &b"aD"[..])] {
                let mut copy = buf;
                assert_eq!(
                    aead.open_in_place(nonce, ad, &mut copy, &tag).unwrap_err(),
                    Error::DecryptFailed
                );
            }
            aead.open_in_place(7, b"ad", &mut buf, &tag).unwrap();
            assert_eq!(&buf, b"plaintext");
        }
    }

    /// Same bytes as ring for both ciphers (so also Noise's nonce layouts), the hash and HMAC.
    #[cfg(feature = "ring")]
    #[test]
    fn aead_hash_and_hmac_agree_with_the_ring_provider() {
        use crate::crypto::RingProvider;
        let key = Secret32::new([0x24; 32]);
        for algorithm in [AeadAlgorithm::ChaCha20Poly1305, AeadAlgorithm::Aes256Gcm] {
            let ours = PROVIDER.aead_key(algorithm, &key);
            let theirs = RingProvider.aead_key(algorithm, &key);
            for nonce in [0, 1, 0x0102_0304_0506_0708, u64::MAX - 1] {
                let mut a = *b"the same plaintext, both ways";
                let mut b = a;
                let tag_a = ours.seal_in_place(nonce, b"ad", &mut a).unwrap();
                let tag_b = theirs.seal_in_place(nonce, b"ad", &mut b).unwrap();
                assert_eq!((a, tag_a), (b, tag_b), "{algorithm:?} nonce {nonce}");
                theirs.open_in_place(nonce, b"ad", &mut a, &tag_a).unwrap();
                assert_eq!(&a, b"the same plaintext, both ways");
            }
        }
        let long_key = [7u8; 100];
        assert_eq!(
            PROVIDER.hmac_sha256(&long_key, &[b"a", b"bc"]),
            RingProvider.hmac_sha256(&long_key, &[b"abc"])
        );
        assert_eq!(
            PROVIDER.sha256(&[&[0x61; 1000]]),
            RingProvider.sha256(&[&[0x61; 1000]])
        );
    }

    /// The reason the issue asked for it: a ChaCha20-Poly1305 key here is its 32 bytes, not ring's
    /// ~540-byte expanded key.
    #[test]
    fn a_chacha_key_is_small() {
        assert!(core::mem::size_of::<RustCryptoAead>() <= 48);
    }
}
