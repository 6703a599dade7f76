use super::{KeyId, PublicKey, SecureChannelVault, Signature, SigningAlgorithm, SigningVault};
use crate::crypto::{sig, CryptoProvider, Secret32};
use crate::error::{Error, Result};
use crate::prelude::*;
use crate::sync::{Mutex, MutexGuard};
use alloc::collections::BTreeMap;
use core::fmt;
use zeroize::Zeroizing;

/// Secret material as stored. Ed25519 keeps its seed; P-256 keeps its PKCS#8 document (with ring) or its
/// 32-byte scalar (without); X25519 its scalar. All three are wiped when the entry is dropped.
enum Entry {
    Ed25519 {
        seed: Zeroizing<[u8; 32]>,
        public: [u8; 32],
    },
    EcdsaP256 {
        secret: Zeroizing<Vec<u8>>,
        public: [u8; 65],
    },
    X25519 {
        secret: Secret32,
        public: [u8; 32],
    },
}

/// An in-memory vault. Secrets are zeroized on drop and never appear in `Debug` output. Its randomness (new
/// keys, key ids) comes from its provider, and so does X25519; Ed25519 and P-256 signing use the core's
/// signature implementation (`crypto/sig.rs`: ring with the `ring` feature, else the dalek and p256 crates).
pub struct SoftwareVault {
    provider: &'static dyn CryptoProvider,
    keys: Mutex<BTreeMap<KeyId, Entry>>,
}

impl fmt::Debug for SoftwareVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.keys.lock().map(|k| k.len()).unwrap_or(0);
        f.debug_struct("SoftwareVault")
            .field("keys", &count)
            .finish_non_exhaustive()
    }
}

#[cfg(any(feature = "ring", all(feature = "std", feature = "rustcrypto")))]
impl Default for SoftwareVault {
    fn default() -> Self {
        Self::new()
    }
}

impl SoftwareVault {
    /// A vault on the default provider (builds that have one: see
    /// [`default_provider`](crate::crypto::default_provider)).
    #[cfg(any(feature = "ring", all(feature = "std", feature = "rustcrypto")))]
    pub fn new() -> Self {
        Self::with_provider(crate::crypto::default_provider())
    }

    pub fn with_provider(provider: &'static dyn CryptoProvider) -> Self {
        Self {
            provider,
            keys: Mutex::new(BTreeMap::new()),
        }
    }

    fn new_key_id(&self, prefix: &str) -> Result<KeyId> {
        let mut id = [0u8; 16];
        self.provider.fill_random(&mut id)?;
        Ok(KeyId::new(format!("{prefix}-{}", hex::encode(id))))
    }

    fn insert(&self, id: KeyId, entry: Entry) -> Result<KeyId> {
        self.lock()?.insert(id.clone(), entry);
        Ok(id)
    }

    fn lock(&self) -> Result<MutexGuard<'_, BTreeMap<KeyId, Entry>>> {
        self.keys
            .lock()
            .ok_or_else(|| Error::Vault("software vault lock poisoned".into()))
    }

    /// Imports an Ed25519 key from its 32-byte seed (for persistence layers and deterministic test vectors).
    pub fn import_ed25519_seed(&self, seed: &[u8; 32]) -> Result<KeyId> {
        let public = sig::ed25519_public_key(seed)?;
        let id = self.new_key_id("ed25519")?;
        self.insert(
            id,
            Entry::Ed25519 {
                seed: Zeroizing::new(*seed),
                public,
            },
        )
    }

    /// Imports an X25519 static secret (for persistence layers and deterministic test vectors).
    pub fn import_x25519_secret(&self, secret: &[u8; 32]) -> Result<KeyId> {
        let secret = Secret32::new(*secret);
        let public = self.provider.x25519_public_key(&secret);
        let id = self.new_key_id("x25519")?;
        self.insert(id, Entry::X25519 { secret, public })
    }

    /// Copies out the secret bytes of a key, for a persistence layer that stores a software vault: an Ed25519
    /// seed, an X25519 scalar, or for P-256 a PKCS#8 document (with ring) or the 32-byte scalar (without).
    /// Hardware vaults have no such operation.
    pub fn export_secret(&self, key: &KeyId) -> Result<Zeroizing<Vec<u8>>> {
        let keys = self.lock()?;
        match keys
            .get(key)
            .ok_or_else(|| Error::KeyNotFound(key.to_string()))?
        {
            Entry::Ed25519 { seed, .. } => Ok(Zeroizing::new(seed.to_vec())),
            Entry::EcdsaP256 { secret, .. } => Ok(Zeroizing::new(secret.to_vec())),
            Entry::X25519 { secret, .. } => Ok(Zeroizing::new(secret.expose().to_vec())),
        }
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.keys.lock().map(|k| k.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SigningVault for SoftwareVault {
    fn generate_signing_key(&self, algorithm: SigningAlgorithm) -> Result<KeyId> {
        match algorithm {
            SigningAlgorithm::Ed25519 => {
                let mut seed = Zeroizing::new([0u8; 32]);
                self.provider.fill_random(seed.as_mut())?;
                self.import_ed25519_seed(&seed)
            }
            SigningAlgorithm::EcdsaP256 => {
                let (secret, public) = sig::p256_generate(self.provider)?;
                let id = self.new_key_id("p256")?;
                self.insert(id, Entry::EcdsaP256 { secret, public })
            }
        }
    }

    fn signing_public_key(&self, key: &KeyId) -> Result<PublicKey> {
        match self
            .lock()?
            .get(key)
            .ok_or_else(|| Error::KeyNotFound(key.to_string()))?
        {
            Entry::Ed25519 { public, .. } => Ok(PublicKey::Ed25519(*public)),
            Entry::EcdsaP256 { public, .. } => Ok(PublicKey::EcdsaP256(*public)),
            Entry::X25519 { .. } => Err(Error::WrongKeyType),
        }
    }

    fn sign(&self, key: &KeyId, message: &[u8]) -> Result<Signature> {
        // As in `x25519`: the secret is copied out (wiped on drop) and the lock released before signing, so
        // threads that sign with the same key (an authority issuing credentials) do not queue on the lock.
        enum Copied {
            Ed25519(Zeroizing<[u8; 32]>),
            EcdsaP256(Zeroizing<Vec<u8>>),
        }
        let copied = match self
            .lock()?
            .get(key)
            .ok_or_else(|| Error::KeyNotFound(key.to_string()))?
        {
            Entry::Ed25519 { seed, .. } => Copied::Ed25519(seed.clone()),
            Entry::EcdsaP256 { secret, .. } => Copied::EcdsaP256(secret.clone()),
            Entry::X25519 { .. } => return Err(Error::WrongKeyType),
        };
        match copied {
            Copied::Ed25519(seed) => Ok(Signature::new(
                SigningAlgorithm::Ed25519,
                sig::ed25519_sign(&seed, message)?,
            )),
            Copied::EcdsaP256(secret) => Ok(Signature::new(
                SigningAlgorithm::EcdsaP256,
                sig::p256_sign(&secret, message, self.provider)?,
            )),
        }
    }

    fn delete_signing_key(&self, key: &KeyId) -> Result<()> {
        let mut keys = self.lock()?;
        match keys.get(key) {
            Some(Entry::Ed25519 { .. } | Entry::EcdsaP256 { .. }) => {
                keys.remove(key);
                Ok(())
            }
            Some(Entry::X25519 { .. }) => Err(Error::WrongKeyType),
            None => Err(Error::KeyNotFound(key.to_string())),
        }
    }
}

impl SecureChannelVault for SoftwareVault {
    fn generate_x25519_key(&self) -> Result<KeyId> {
        let secret = crate::crypto::generate_secret(self.provider)?;
        let public = self.provider.x25519_public_key(&secret);
        let id = self.new_key_id("x25519")?;
        self.insert(id, Entry::X25519 { secret, public })
    }

    fn x25519_public_key(&self, key: &KeyId) -> Result<[u8; 32]> {
        match self
            .lock()?
            .get(key)
            .ok_or_else(|| Error::KeyNotFound(key.to_string()))?
        {
            Entry::X25519 { public, .. } => Ok(*public),
            _ => Err(Error::WrongKeyType),
        }
    }

    fn x25519(&self, key: &KeyId, peer_public: &[u8; 32]) -> Result<Secret32> {
        // The scalar is copied out (into a value wiped on drop) so the lock is not held during the scalar
        // multiplication: one node's static key serves the handshakes of every thread at once.
        let secret = match self
            .lock()?
            .get(key)
            .ok_or_else(|| Error::KeyNotFound(key.to_string()))?
        {
            Entry::X25519 { secret, .. } => Secret32::new(*secret.expose()),
            _ => return Err(Error::WrongKeyType),
        };
        self.provider.x25519(&secret, peer_public)
    }

    fn delete_x25519_key(&self, key: &KeyId) -> Result<()> {
        let mut keys = self.lock()?;
        match keys.get(key) {
            Some(Entry::X25519 { .. }) => {
                keys.remove(key);
                Ok(())
            }
            Some(_) => Err(Error::WrongKeyType),
            None => Err(Error::KeyNotFound(key.to_string())),
        }
    }
}
