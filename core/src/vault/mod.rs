//! The vault boundary. Secret keys live behind these traits and are named by [`KeyId`]; callers only ever
//! see public keys, signatures and (for the secure channel) DH outputs.
//!
//! The traits are split the way hardware needs them: an HSM or TPM may hold only the identity signing key
//! ([`SigningVault`]), while the Noise static key and its DH live in a [`SecureChannelVault`].

mod keys;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
mod software;
#[cfg(feature = "tpm")]
pub mod tpm;
#[cfg(feature = "std")]
mod verify_cache;

pub use keys::{verify_signature, KeyId, PublicKey, Signature, SigningAlgorithm};
#[cfg(feature = "pkcs11")]
pub use pkcs11::{PinSource, Pkcs11Config, Pkcs11Vault};
pub use software::SoftwareVault;
#[cfg(feature = "tpm")]
pub use tpm::TpmVault;
#[cfg(all(feature = "std", feature = "test-vectors"))]
pub use verify_cache::signatures_verified_on_this_thread;
#[cfg(feature = "std")]
pub use verify_cache::{
    clear_verified_signature_cache, CAPACITY as VERIFIED_SIGNATURE_CACHE_CAPACITY,
};

use crate::crypto::Secret32;
use crate::error::Result;

/// Holds identity signing keys and signs with them.
pub trait SigningVault: Send + Sync {
    /// Generates a new signing key and returns its handle.
    fn generate_signing_key(&self, algorithm: SigningAlgorithm) -> Result<KeyId>;
    /// The public half of a signing key.
    fn signing_public_key(&self, key: &KeyId) -> Result<PublicKey>;
    /// Signs `message` (the whole message; the vault hashes as its algorithm requires).
    fn sign(&self, key: &KeyId, message: &[u8]) -> Result<Signature>;
    /// Destroys a signing key. Deleting an unknown key is `KeyNotFound`.
    fn delete_signing_key(&self, key: &KeyId) -> Result<()>;
}

/// Holds Noise static X25519 keys and performs DH with them.
pub trait SecureChannelVault: Send + Sync {
    /// Generates a new X25519 static key and returns its handle.
    fn generate_x25519_key(&self) -> Result<KeyId>;
    /// The X25519 public key of a static key.
    fn x25519_public_key(&self, key: &KeyId) -> Result<[u8; 32]>;
    /// X25519 between the static key and a peer's public key; degenerate results are `InvalidPublicKey`.
    fn x25519(&self, key: &KeyId, peer_public: &[u8; 32]) -> Result<Secret32>;
    /// Destroys a static key.
    fn delete_x25519_key(&self, key: &KeyId) -> Result<()>;
}
