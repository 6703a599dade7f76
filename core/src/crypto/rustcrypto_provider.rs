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
/// ```ignore
/// static TRNG: MyTrng = MyTrng;   // implements RandomSource over the device's TRNG
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
