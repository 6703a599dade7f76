use crate::error::{Error, Result};
use crate::prelude::*;
use crate::wire::{Decode, Encode, Reader, Writer};
use core::fmt;

/// Opaque handle of a key inside a vault. Carries no secret.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// Signature algorithms accepted for identity and credential keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// The default.
    Ed25519,
    /// For hardware that lacks Ed25519. Signatures are fixed-size `r ‖ s` over SHA-256.
    EcdsaP256,
}

impl SigningAlgorithm {
    fn tag(self) -> u8 {
        match self {
            SigningAlgorithm::Ed25519 => 1,
            SigningAlgorithm::EcdsaP256 => 2,
        }
    }

    fn from_tag(tag: u8) -> Result<Self> {
        match tag {
            1 => Ok(SigningAlgorithm::Ed25519),
            2 => Ok(SigningAlgorithm::EcdsaP256),
            _ => Err(Error::Decode("unknown signing algorithm")),
        }
    }
}

/// A signing public key. Wire form: algorithm tag, then 32 bytes (Ed25519) or a 65-byte uncompressed
/// SEC1 point (P-256).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum PublicKey {
    Ed25519([u8; 32]),
    EcdsaP256([u8; 65]),
}

impl PublicKey {
    pub fn algorithm(&self) -> SigningAlgorithm {
        match self {
            PublicKey::Ed25519(_) => SigningAlgorithm::Ed25519,
            PublicKey::EcdsaP256(_) => SigningAlgorithm::EcdsaP256,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            PublicKey::Ed25519(k) => k,
            PublicKey::EcdsaP256(k) => k,
        }
    }

    /// Builds a key from its algorithm and raw bytes, checking the length and (for P-256) the point form.
    pub fn from_raw(algorithm: SigningAlgorithm, bytes: &[u8]) -> Result<Self> {
        match algorithm {
            SigningAlgorithm::Ed25519 => Ok(PublicKey::Ed25519(
                bytes.try_into().map_err(|_| Error::InvalidPublicKey)?,
            )),
            SigningAlgorithm::EcdsaP256 => {
                let point: [u8; 65] = bytes.try_into().map_err(|_| Error::InvalidPublicKey)?;
                if point[0] != 0x04 {
                    return Err(Error::InvalidPublicKey);
                }
                Ok(PublicKey::EcdsaP256(point))
            }
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}({})",
            self.algorithm(),
            hex::encode(self.as_bytes())
        )
    }
}

impl Encode for PublicKey {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(self.algorithm().tag());
        out.extend_from_slice(self.as_bytes());
    }
}

impl Decode for PublicKey {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        let algorithm = SigningAlgorithm::from_tag(reader.u8()?)?;
        let len = match algorithm {
            SigningAlgorithm::Ed25519 => 32,
            SigningAlgorithm::EcdsaP256 => 65,
        };
        PublicKey::from_raw(algorithm, reader.take(len)?)
            .map_err(|_| Error::Decode("bad public key"))
    }
}

/// A signature: algorithm tag then 64 bytes (Ed25519, or P-256 `r ‖ s`).
#[derive(Clone, PartialEq, Eq)]
pub struct Signature {
    algorithm: SigningAlgorithm,
    bytes: [u8; 64],
}

impl Signature {
    pub fn new(algorithm: SigningAlgorithm, bytes: [u8; 64]) -> Self {
        Self { algorithm, bytes }
    }
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.bytes
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Signature({:?}, {})",
            self.algorithm,
            hex::encode(self.bytes)
        )
    }
}

impl Encode for Signature {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(self.algorithm.tag());
        out.extend_from_slice(&self.bytes);
    }
}

impl Decode for Signature {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        let algorithm = SigningAlgorithm::from_tag(reader.u8()?)?;
        Ok(Signature {
            algorithm,
            bytes: reader.array()?,
        })
    }
}

/// Verifies a signature in software. Public keys need no vault. With `std`, a triple that verified before is
/// answered from a bounded cache of successes (`core/src/vault/verify_cache.rs` says why that is sound; see
/// also [`clear_verified_signature_cache`](super::clear_verified_signature_cache)); without `std` every call
/// verifies.
pub fn verify_signature(key: &PublicKey, message: &[u8], signature: &Signature) -> Result<()> {
    if key.algorithm() != signature.algorithm {
        return Err(Error::InvalidSignature);
    }
    #[cfg(feature = "std")]
    let cache_entry = super::verify_cache::entry(key, message, signature);
    #[cfg(feature = "std")]
    if super::verify_cache::contains(&cache_entry) {
        return Ok(());
    }
    crate::crypto::sig::verify(key, message, &signature.bytes)?;
    #[cfg(feature = "std")]
    super::verify_cache::insert(cache_entry);
    Ok(())
}
