use super::{KeyId, PublicKey, SecureChannelVault, Signature, SigningAlgorithm, SigningVault};
use crate::crypto::{default_provider, CryptoProvider, Secret32};
use crate::error::{Error, Result};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use zeroize::Zeroizing;

/// Secret material as stored. Ed25519 keeps its seed; P-256 keeps its PKCS#8 document; X25519 its scalar.
/// All three are wiped when the entry is dropped.
enum Entry {
    Ed25519 {
        seed: Zeroizing<[u8; 32]>,
        public: [u8; 32],
    },
    EcdsaP256 {
        pkcs8: Zeroizing<Vec<u8>>,
        public: [u8; 65],
    },
    X25519 {
        secret: Secret32,
        public: [u8; 32],
    },
}

/// An in-memory vault. Secrets are zeroized on drop and never appear in `Debug` output.
pub struct SoftwareVault {
    provider: &'static dyn CryptoProvider,
    keys: Mutex<HashMap<KeyId, Entry>>,
}

impl fmt::Debug for SoftwareVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.keys.lock().map(|k| k.len()).unwrap_or(0);
        f.debug_struct("SoftwareVault")
            .field("keys", &count)
            .finish_non_exhaustive()
    }
}

impl Default for SoftwareVault {
    fn default() -> Self {
        Self::new()
    }
}

impl SoftwareVault {
    pub fn new() -> Self {
        Self::with_provider(default_provider())
    }

    pub fn with_provider(provider: &'static dyn CryptoProvider) -> Self {
        Self {
            provider,
            keys: Mutex::new(HashMap::new()),
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

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<KeyId, Entry>>> {
        self.keys
            .lock()
            .map_err(|_| Error::Vault("software vault lock poisoned".into()))
    }

    /// Imports an Ed25519 key from its 32-byte seed (for persistence layers and deterministic test vectors).
    pub fn import_ed25519_seed(&self, seed: &[u8; 32]) -> Result<KeyId> {
        let pair =
            Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| Error::InvalidPublicKey)?;
        let public: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| Error::Crypto("ed25519 public key"))?;
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

    /// Copies out the secret bytes of a key, for a persistence layer that stores a software vault.
    /// Hardware vaults have no such operation.
    pub fn export_secret(&self, key: &KeyId) -> Result<Zeroizing<Vec<u8>>> {
        let keys = self.lock()?;
        match keys
            .get(key)
            .ok_or_else(|| Error::KeyNotFound(key.to_string()))?
        {
            Entry::Ed25519 { seed, .. } => Ok(Zeroizing::new(seed.to_vec())),
            Entry::EcdsaP256 { pkcs8, .. } => Ok(Zeroizing::new(pkcs8.to_vec())),
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
                let id = self.new_key_id("p256")?;
                self.insert(id, Entry::EcdsaP256 { pkcs8, public })
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
        let keys = self.lock()?;
        let mut bytes = [0u8; 64];
        match keys
            .get(key)
            .ok_or_else(|| Error::KeyNotFound(key.to_string()))?
        {
            Entry::Ed25519 { seed, .. } => {
                let pair = Ed25519KeyPair::from_seed_unchecked(seed.as_ref())
                    .map_err(|_| Error::Crypto("ed25519 seed"))?;
                bytes.copy_from_slice(pair.sign(message).as_ref());
                Ok(Signature::new(SigningAlgorithm::Ed25519, bytes))
            }
            Entry::EcdsaP256 { pkcs8, .. } => {
                let rng = SystemRandom::new();
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
                    .map_err(|_| Error::Crypto("p256 parse"))?;
                let sig = pair
                    .sign(&rng, message)
                    .map_err(|_| Error::Crypto("p256 sign"))?;
                bytes.copy_from_slice(sig.as_ref());
                Ok(Signature::new(SigningAlgorithm::EcdsaP256, bytes))
            }
            Entry::X25519 { .. } => Err(Error::WrongKeyType),
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
        match self
            .lock()?
            .get(key)
            .ok_or_else(|| Error::KeyNotFound(key.to_string()))?
        {
            Entry::X25519 { secret, .. } => self.provider.x25519(secret, peer_public),
            _ => Err(Error::WrongKeyType),
        }
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
