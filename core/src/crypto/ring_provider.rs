use super::{AeadAlgorithm, AeadKey, CryptoProvider, Secret32, TAG_LEN};
use crate::error::{Error, Result};
use crate::prelude::*;
use ring::aead::{self, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac};

/// `ring` for AEAD, hashing and randomness; `x25519-dalek` for static X25519 (ring only offers ephemeral
/// agreement, and Noise needs a static key used more than once).
#[derive(Debug, Default, Clone, Copy)]
pub struct RingProvider;

/// An expanded ring key. ring's `LessSafeKey` is sized for AES-GCM's key schedule and GHASH table (about 540
/// bytes) whatever the algorithm; keeping only ChaCha's 32 bytes and rebuilding the key per message would save
/// that, but the rebuilt stack copy makes valgrind report ring's tag check as reading uninitialised memory, and
/// the C suite must stay valgrind-clean, so the key stays expanded on the heap.
///
/// ring does not wipe its keys on drop. This type does it for ring: [`RingAead::wipe`] (run by `Drop`)
/// overwrites the heap allocation in place with the expansion of the all-zero key of the same algorithm (the
/// same variant, so the same bytes: round keys, GHASH table, ChaCha key), and the write is kept alive with
/// `black_box` so that the compiler cannot drop it as a store before a free.
struct RingAead {
    key: Box<LessSafeKey>,
    algorithm: AeadAlgorithm,
}

fn ring_algorithm(algorithm: AeadAlgorithm) -> &'static aead::Algorithm {
    match algorithm {
        AeadAlgorithm::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        AeadAlgorithm::Aes256Gcm => &aead::AES_256_GCM,
    }
}

fn ring_key(algorithm: AeadAlgorithm, key: &[u8; 32]) -> LessSafeKey {
    // Both algorithms take exactly 32-byte keys, so construction cannot fail.
    LessSafeKey::new(UnboundKey::new(ring_algorithm(algorithm), key).expect("32-byte AEAD key"))
}

impl RingAead {
    fn nonce(&self, n: u64) -> Nonce {
        let mut bytes = [0u8; 12];
        match self.algorithm {
            AeadAlgorithm::ChaCha20Poly1305 => bytes[4..].copy_from_slice(&n.to_le_bytes()),
            AeadAlgorithm::Aes256Gcm => bytes[4..].copy_from_slice(&n.to_be_bytes()),
        }
        Nonce::assume_unique_for_key(bytes)
    }

    /// Replaces the expanded key, where it lies on the heap, with the all-zero key's expansion.
    fn wipe(&mut self) {
        *self.key = ring_key(self.algorithm, &[0u8; 32]);
        core::hint::black_box(&*self.key);
    }
}

impl Drop for RingAead {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl AeadKey for RingAead {
    fn seal_in_place(&self, nonce: u64, ad: &[u8], in_out: &mut [u8]) -> Result<[u8; TAG_LEN]> {
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(nonce), aead::Aad::from(ad), in_out)
            .map_err(|_| Error::Crypto("aead seal"))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    fn open_in_place(
        &self,
        nonce: u64,
        ad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<()> {
        self.key
            .open_in_place_separate_tag(
                self.nonce(nonce),
                aead::Aad::from(ad),
                aead::Tag::from(*tag),
                in_out,
                0..,
            )
            .map(|_| ())
            .map_err(|_| Error::DecryptFailed)
    }
}

impl CryptoProvider for RingProvider {
    fn name(&self) -> &'static str {
        "ring+x25519-dalek"
    }

    fn prefers_aes_gcm(&self) -> bool {
        super::cpu_has_aes_gcm()
    }

    fn fill_random(&self, buf: &mut [u8]) -> Result<()> {
        SystemRandom::new()
            .fill(buf)
            .map_err(|_| Error::Crypto("system random"))
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
        Box::new(RingAead {
            key: Box::new(ring_key(algorithm, key.expose())),
            algorithm,
        })
    }

    fn sha256(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for part in parts {
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    fn hmac_sha256(&self, key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, key);
        let mut ctx = hmac::Context::with_key(&key);
        for part in parts {
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wipe that `Drop` runs really replaces the expanded key: afterwards the key seals exactly as the
    /// all-zero key does, and no longer as the original key.
    #[test]
    fn wipe_replaces_the_expanded_key_with_the_zero_key() {
        for algorithm in [AeadAlgorithm::ChaCha20Poly1305, AeadAlgorithm::Aes256Gcm] {
            let secret = Secret32::new([0x5a; 32]);
            let seal = |key: &dyn AeadKey| {
                let mut data = *b"sixteen byte msg";
                let tag = key.seal_in_place(7, b"ad", &mut data).unwrap();
                (data, tag)
            };
            let zero = RingProvider.aead_key(algorithm, &Secret32::new([0; 32]));
            let original = RingProvider.aead_key(algorithm, &secret);
            let mut key = RingAead {
                key: Box::new(ring_key(algorithm, secret.expose())),
                algorithm,
            };
            assert_eq!(seal(&key), seal(original.as_ref()));
            assert_ne!(seal(&key), seal(zero.as_ref()));
            key.wipe();
            assert_eq!(seal(&key), seal(zero.as_ref()));
            assert_ne!(seal(&key), seal(original.as_ref()));
        }
    }
}
