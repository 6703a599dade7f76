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
    #[cfg(all(feature = "std", feature = "test-vectors"))]
    super::verify_cache::count_real_verification();
    crate::crypto::sig::verify(key, message, &signature.bytes)?;
    #[cfg(feature = "std")]
    super::verify_cache::insert(cache_entry);
    Ok(())
}

/// The P-256 group order n, big-endian.
#[cfg(any(feature = "pkcs11", feature = "tpm", test))]
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// Replaces `s` by `n - s` when `s > n/2`, so every signature the vaults make is the canonical low-s one
/// (whichever verifier the peer runs, and whether or not it insists on low-s).
#[cfg(any(feature = "pkcs11", feature = "tpm", test))]
pub(crate) fn p256_low_s(signature: &mut [u8; 64]) {
    let s: [u8; 32] = signature[32..].try_into().expect("32 bytes");
    // n/2 (floor), big-endian: shift n right by one bit.
    let mut half = [0u8; 32];
    let mut carry = 0u8;
    for (i, b) in P256_N.iter().enumerate() {
        half[i] = (b >> 1) | carry;
        carry = (b & 1) << 7;
    }
    if s <= half {
        return;
    }
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = P256_N[i] as i16 - s[i] as i16 - borrow;
        borrow = if d < 0 {
            d += 256;
            1
        } else {
            0
        };
        signature[32 + i] = d as u8;
    }
}

#[cfg(test)]
mod low_s_tests {
    use super::*;

    #[test]
    fn low_s_normalisation_matches_n_minus_s() {
        let mut sig = [0u8; 64];
        // s = n - 1 (high) becomes 1.
        sig[32..].copy_from_slice(&P256_N);
        sig[63] -= 1;
        p256_low_s(&mut sig);
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(&sig[32..], &one);
        // s = 1 (low) is unchanged.
        p256_low_s(&mut sig);
        assert_eq!(&sig[32..], &one);
    }
}
