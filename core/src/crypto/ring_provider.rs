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
struct RingAead {
    key: Box<LessSafeKey>,
    algorithm: AeadAlgorithm,
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
        let alg = match algorithm {
            AeadAlgorithm::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
            AeadAlgorithm::Aes256Gcm => &aead::AES_256_GCM,
        };
        // Both algorithms take exactly 32-byte keys, so construction cannot fail.
        let unbound = UnboundKey::new(alg, key.expose()).expect("32-byte AEAD key");
        let key = Box::new(LessSafeKey::new(unbound));
        Box::new(RingAead { key, algorithm })
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
