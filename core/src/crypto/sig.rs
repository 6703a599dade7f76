//! Signatures (Ed25519, ECDSA P-256) and the SHA-256 that names identity changes. They are not part of the
//! [`CryptoProvider`](super::CryptoProvider) seam: nothing per handshake signs, and `verify_signature` is a
//! function of public values alone, so one implementation serves every provider. With the `ring` feature
//! (the default) it is ring's; without it, `ed25519-dalek` and `sha2`, and `p256` when that feature is on
//! (otherwise P-256 operations fail with `Error::Crypto`). Both implementations are compiled in host test
//! builds and checked against each other below.
//!
//! Ed25519 verification is the cofactorless check in both (ring, and ed25519-dalek's `verify`): a
//! non-canonical `S` is refused and `R` is compared as bytes.

#[cfg(feature = "ring")]
pub(crate) use ring_impl::*;
#[cfg(not(feature = "ring"))]
pub(crate) use rustcrypto_impl::*;

#[cfg(feature = "ring")]
mod ring_impl {
    use crate::error::{Error, Result};
    use crate::prelude::*;
    use crate::vault::PublicKey;
    use ring::rand::SystemRandom;
    use ring::signature::{
        self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, UnparsedPublicKey,
        ECDSA_P256_SHA256_FIXED_SIGNING,
    };
    use zeroize::Zeroizing;

    pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in parts {
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    pub(crate) fn ed25519_public_key(seed: &[u8; 32]) -> Result<[u8; 32]> {
        let pair =
            Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| Error::InvalidPublicKey)?;
        pair.public_key()
            .as_ref()
            .try_into()
            .map_err(|_| Error::Crypto("ed25519 public key"))
    }

    pub(crate) fn ed25519_sign(seed: &[u8; 32], message: &[u8]) -> Result<[u8; 64]> {
        let pair =
            Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| Error::Crypto("ed25519 seed"))?;
        pair.sign(message)
            .as_ref()
            .try_into()
            .map_err(|_| Error::Crypto("ed25519 signature"))
    }

    /// A fresh P-256 key: its PKCS#8 document (what the vault stores) and its uncompressed public point.
    pub(crate) fn p256_generate(
        _provider: &dyn crate::crypto::CryptoProvider,
    ) -> Result<(Zeroizing<Vec<u8>>, [u8; 65])> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| Error::Crypto("p256 keygen"))?;
        let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|_| Error::Crypto("p256 parse"))?;
        let public: [u8; 65] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| Error::Crypto("p256 public key"))?;
        Ok((pkcs8, public))
    }

    pub(crate) fn p256_sign(
        secret: &[u8],
        message: &[u8],
        _provider: &dyn crate::crypto::CryptoProvider,
    ) -> Result<[u8; 64]> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, secret, &rng)
            .map_err(|_| Error::Crypto("p256 parse"))?;
        let sig = pair
            .sign(&rng, message)
            .map_err(|_| Error::Crypto("p256 sign"))?;
        sig.as_ref()
            .try_into()
            .map_err(|_| Error::Crypto("p256 signature"))
    }

    pub(crate) fn verify(key: &PublicKey, message: &[u8], signature: &[u8; 64]) -> Result<()> {
        let alg: &dyn signature::VerificationAlgorithm = match key {
            PublicKey::Ed25519(_) => &signature::ED25519,
            PublicKey::EcdsaP256(_) => &signature::ECDSA_P256_SHA256_FIXED,
        };
        UnparsedPublicKey::new(alg, key.as_bytes())
            .verify(message, signature)
            .map_err(|_| Error::InvalidSignature)
    }
}

/// The pure-Rust implementation. Compiled in every build (its crates are small and `x25519-dalek` already
/// brings `curve25519-dalek`), so host tests can hold it to ring's answers.
#[cfg_attr(feature = "ring", allow(dead_code))]
mod rustcrypto_impl {
    use crate::error::{Error, Result};
    use crate::prelude::*;
    use crate::vault::PublicKey;
    use ed25519_dalek::{Signer as _, Verifier as _};
    use sha2::Digest as _;
    use zeroize::Zeroizing;

    pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
        let mut hasher = sha2::Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    pub(crate) fn ed25519_public_key(seed: &[u8; 32]) -> Result<[u8; 32]> {
        Ok(ed25519_dalek::SigningKey::from_bytes(seed)
            .verifying_key()
            .to_bytes())
    }

    pub(crate) fn ed25519_sign(seed: &[u8; 32], message: &[u8]) -> Result<[u8; 64]> {
        Ok(ed25519_dalek::SigningKey::from_bytes(seed)
            .sign(message)
            .to_bytes())
    }

    /// A fresh P-256 key: its 32-byte secret scalar (what the vault stores without ring) and its uncompressed
    /// public point. The scalar comes from the provider's random source.
    #[cfg(feature = "p256")]
    pub(crate) fn p256_generate(
        provider: &dyn crate::crypto::CryptoProvider,
    ) -> Result<(Zeroizing<Vec<u8>>, [u8; 65])> {
        let mut bytes = Zeroizing::new(vec![0u8; 32]);
        // A uniformly random 32-byte string is a valid scalar except with probability ~2^-32.
        for _ in 0..16 {
            provider.fill_random(&mut bytes)?;
            if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&bytes) {
                let point = key.verifying_key().to_encoded_point(false);
                let public: [u8; 65] = point
                    .as_bytes()
                    .try_into()
                    .map_err(|_| Error::Crypto("p256 public key"))?;
                return Ok((bytes, public));
            }
        }
        Err(Error::Crypto("p256 keygen"))
    }

    /// Deterministic ECDSA (RFC 6979) over SHA-256 of `message`: fixed-size `r ‖ s`.
    #[cfg(feature = "p256")]
    pub(crate) fn p256_sign(
        secret: &[u8],
        message: &[u8],
        _provider: &dyn crate::crypto::CryptoProvider,
    ) -> Result<[u8; 64]> {
        let key =
            p256::ecdsa::SigningKey::from_slice(secret).map_err(|_| Error::Crypto("p256 key"))?;
        let signature: p256::ecdsa::Signature = key.sign(message);
        Ok(signature.to_bytes().into())
    }

    #[cfg(not(feature = "p256"))]
    pub(crate) fn p256_generate(
        _provider: &dyn crate::crypto::CryptoProvider,
    ) -> Result<(Zeroizing<Vec<u8>>, [u8; 65])> {
        Err(P256_UNSUPPORTED)
    }

    #[cfg(not(feature = "p256"))]
    pub(crate) fn p256_sign(
        _secret: &[u8],
        _message: &[u8],
        _provider: &dyn crate::crypto::CryptoProvider,
    ) -> Result<[u8; 64]> {
        Err(P256_UNSUPPORTED)
    }

    #[cfg(not(feature = "p256"))]
    const P256_UNSUPPORTED: Error =
        Error::Crypto("ECDSA P-256 is not in this build (enable the `p256` or `ring` feature)");

    pub(crate) fn verify(key: &PublicKey, message: &[u8], signature: &[u8; 64]) -> Result<()> {
        match key {
            PublicKey::Ed25519(bytes) => {
                let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
                    .map_err(|_| Error::InvalidSignature)?;
                key.verify(message, &ed25519_dalek::Signature::from_bytes(signature))
                    .map_err(|_| Error::InvalidSignature)
            }
            #[cfg(feature = "p256")]
            PublicKey::EcdsaP256(bytes) => {
                use p256::ecdsa::signature::Verifier as _;
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                    .map_err(|_| Error::InvalidSignature)?;
                let signature = p256::ecdsa::Signature::from_slice(signature)
                    .map_err(|_| Error::InvalidSignature)?;
                key.verify(message, &signature)
                    .map_err(|_| Error::InvalidSignature)
            }
            #[cfg(not(feature = "p256"))]
            PublicKey::EcdsaP256(_) => Err(P256_UNSUPPORTED),
        }
    }
}

#[cfg(all(test, feature = "ring"))]
mod tests {
    use super::{ring_impl, rustcrypto_impl};
    use crate::vault::PublicKey;

    #[test]
    fn sha256_and_ed25519_agree_with_ring() {
        assert_eq!(
            ring_impl::sha256(&[b"ab", b"", b"c"]),
            rustcrypto_impl::sha256(&[b"abc"])
        );
        for seed in [[0u8; 32], [7; 32], [0xff; 32]] {
            let public = ring_impl::ed25519_public_key(&seed).unwrap();
            assert_eq!(rustcrypto_impl::ed25519_public_key(&seed).unwrap(), public);
            let sig = ring_impl::ed25519_sign(&seed, b"message").unwrap();
            // Ed25519 is deterministic: both produce the same bytes.
            assert_eq!(
                rustcrypto_impl::ed25519_sign(&seed, b"message").unwrap(),
                sig
            );
            let key = PublicKey::Ed25519(public);
            rustcrypto_impl::verify(&key, b"message", &sig).unwrap();
            assert!(rustcrypto_impl::verify(&key, b"messagE", &sig).is_err());
            let mut bad = sig;
            bad[10] ^= 1;
            assert!(rustcrypto_impl::verify(&key, b"message", &bad).is_err());
            assert!(ring_impl::verify(&key, b"message", &bad).is_err());
            // A non-canonical S (S + L) is refused by both.
            let mut s_plus_l = sig;
            add_group_order(&mut s_plus_l[32..]);
            assert!(ring_impl::verify(&key, b"message", &s_plus_l).is_err());
            assert!(rustcrypto_impl::verify(&key, b"message", &s_plus_l).is_err());
        }
    }

    /// Adds the Ed25519 group order L to a little-endian scalar (no overflow for the scalars used here).
    fn add_group_order(s: &mut [u8]) {
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (byte, l) in s.iter_mut().zip(L) {
            let sum = *byte as u16 + l as u16 + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
    }

    #[cfg(feature = "p256")]
    #[test]
    fn p256_signatures_cross_verify_with_ring() {
        use crate::crypto::default_provider;
        let provider = default_provider();
        // ring signs, the pure-Rust verifier accepts; and the other way round.
        let (pkcs8, public) = ring_impl::p256_generate(provider).unwrap();
        let key = PublicKey::EcdsaP256(public);
        let sig = ring_impl::p256_sign(&pkcs8, b"message", provider).unwrap();
        rustcrypto_impl::verify(&key, b"message", &sig).unwrap();
        assert!(rustcrypto_impl::verify(&key, b"other", &sig).is_err());

        let (scalar, public) = rustcrypto_impl::p256_generate(provider).unwrap();
        let key = PublicKey::EcdsaP256(public);
        let sig = rustcrypto_impl::p256_sign(&scalar, b"message", provider).unwrap();
        ring_impl::verify(&key, b"message", &sig).unwrap();
        rustcrypto_impl::verify(&key, b"message", &sig).unwrap();
        assert!(ring_impl::verify(&key, b"other", &sig).is_err());
    }
}
