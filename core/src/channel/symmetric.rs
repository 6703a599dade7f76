//! Noise's CipherState and SymmetricState (Noise specification §5.1–5.2), over the provider seam.

use crate::crypto::{AeadAlgorithm, AeadKey, CryptoProvider, Secret32, TAG_LEN};
use crate::error::{Error, Result};
use crate::prelude::*;

pub(crate) struct CipherState {
    key: Option<Box<dyn AeadKey>>,
    nonce: u64,
}

impl CipherState {
    fn encrypt_with_ad(&mut self, ad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let Some(key) = &self.key else {
            out.extend_from_slice(plaintext);
            return Ok(());
        };
        if self.nonce == u64::MAX {
            return Err(Error::NonceExhausted);
        }
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = match key.seal_in_place(self.nonce, ad, &mut out[start..]) {
            Ok(tag) => tag,
            Err(e) => {
                // Never leave the plaintext in the caller's message buffer.
                out[start..].fill(0);
                out.truncate(start);
                return Err(e);
            }
        };
        out.extend_from_slice(&tag);
        self.nonce += 1;
        Ok(())
    }

    fn decrypt_with_ad(&mut self, ad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>> {
        let Some(key) = &self.key else {
            return Ok(ciphertext.to_vec());
        };
        if self.nonce == u64::MAX {
            return Err(Error::NonceExhausted);
        }
        let body_len = ciphertext
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(Error::DecryptFailed)?;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&ciphertext[body_len..]);
        let mut buf = ciphertext[..body_len].to_vec();
        if let Err(e) = key.open_in_place(self.nonce, ad, &mut buf, &tag) {
            // Unauthenticated plaintext never outlives the failure, even in freed memory.
            buf.fill(0);
            return Err(e);
        }
        self.nonce += 1;
        Ok(buf)
    }

    fn has_key(&self) -> bool {
        self.key.is_some()
    }
}

pub(crate) struct SymmetricState {
    provider: &'static dyn CryptoProvider,
    algorithm: AeadAlgorithm,
    chaining_key: Secret32,
    hash: [u8; 32],
    cipher: CipherState,
}

impl SymmetricState {
    pub(crate) fn new(
        provider: &'static dyn CryptoProvider,
        algorithm: AeadAlgorithm,
        protocol_name: &[u8],
    ) -> Self {
        let hash = if protocol_name.len() <= 32 {
            let mut h = [0u8; 32];
            h[..protocol_name.len()].copy_from_slice(protocol_name);
            h
        } else {
            provider.sha256(&[protocol_name])
        };
        SymmetricState {
            provider,
            algorithm,
            chaining_key: Secret32::new(hash),
            hash,
            cipher: CipherState {
                key: None,
                nonce: 0,
            },
        }
    }

    pub(crate) fn mix_hash(&mut self, data: &[u8]) {
        self.hash = self.provider.sha256(&[&self.hash, data]);
    }

    pub(crate) fn mix_key(&mut self, input_key_material: &Secret32) {
        let (chaining_key, key) = hkdf2(
            self.provider,
            &self.chaining_key,
            input_key_material.expose(),
        );
        self.chaining_key = chaining_key;
        self.cipher = CipherState {
            key: Some(self.provider.aead_key(self.algorithm, &key)),
            nonce: 0,
        };
    }

    pub(crate) fn encrypt_and_hash(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        self.cipher.encrypt_with_ad(&self.hash, plaintext, out)?;
        let ciphertext = out[start..].to_vec();
        self.mix_hash(&ciphertext);
        Ok(())
    }

    pub(crate) fn decrypt_and_hash(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>> {
        let plaintext = self.cipher.decrypt_with_ad(&self.hash, ciphertext)?;
        self.mix_hash(ciphertext);
        Ok(plaintext)
    }

    /// Length of `plaintext_len` bytes after EncryptAndHash in the current state.
    pub(crate) fn sealed_len(&self, plaintext_len: usize) -> usize {
        plaintext_len + if self.cipher.has_key() { TAG_LEN } else { 0 }
    }

    pub(crate) fn handshake_hash(&self) -> [u8; 32] {
        self.hash
    }

    /// Split(): the initiator→responder key first, then responder→initiator.
    pub(crate) fn split(&self) -> (Secret32, Secret32) {
        hkdf2(self.provider, &self.chaining_key, &[])
    }
}

/// Noise's HKDF with two outputs, built on HMAC-SHA-256 exactly as the specification writes it.
fn hkdf2(
    provider: &dyn CryptoProvider,
    chaining_key: &Secret32,
    ikm: &[u8],
) -> (Secret32, Secret32) {
    let temp_key = Secret32::new(provider.hmac_sha256(chaining_key.expose(), &[ikm]));
    let out1 = Secret32::new(provider.hmac_sha256(temp_key.expose(), &[&[0x01]]));
    let out2 = Secret32::new(provider.hmac_sha256(temp_key.expose(), &[out1.expose(), &[0x02]]));
    (out1, out2)
}
