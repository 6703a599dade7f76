//! An identity this process controls, ready for handshakes: its history, its keys in a software vault, and
//! a fresh attestation of its secure-channel static key.

use crate::error::Result;
use latchkey_core::channel::{ChannelIdentity, HandshakeConfig, TrustPolicy};
use latchkey_core::identity::{ChangeHistory, Identifier, Identity};
use latchkey_core::vault::{KeyId, SecureChannelVault, SigningAlgorithm, SoftwareVault};
use latchkey_core::Timestamp;
use std::fmt;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Exported secret key bytes, wiped on drop.
pub(crate) type Secret = Zeroizing<Vec<u8>>;

/// Lifetime of each primary key.
pub const KEY_VALIDITY_SECS: u64 = 5 * 365 * 86_400;
/// Lifetime of a static-key attestation; a new one is made each time an identity is loaded.
pub const ATTESTATION_VALIDITY_SECS: u64 = 30 * 86_400;

/// Keys and history of one identity.
#[derive(Clone)]
pub struct LocalIdentity {
    vault: Arc<SoftwareVault>,
    identity: Identity,
    channel: ChannelIdentity,
}

impl fmt::Debug for LocalIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalIdentity")
            .field("identifier", &self.identifier())
            .finish_non_exhaustive()
    }
}

impl LocalIdentity {
    /// A new identity with fresh Ed25519 and X25519 keys.
    pub fn create() -> Result<Self> {
        let vault = Arc::new(SoftwareVault::new());
        let now = Timestamp::now();
        let identity = Identity::create(
            vault.as_ref(),
            SigningAlgorithm::Ed25519,
            now,
            KEY_VALIDITY_SECS,
        )?;
        let static_key = vault.generate_x25519_key()?;
        Self::assemble(vault, identity, static_key)
    }

    /// Rebuilds a stored identity from its history, primary-key seed and static secret.
    pub fn restore(
        history: &[u8],
        signing_seed: &[u8; 32],
        static_secret: &[u8; 32],
    ) -> Result<Self> {
        let vault = Arc::new(SoftwareVault::new());
        let history = ChangeHistory::import(history)?;
        let key = vault.import_ed25519_seed(signing_seed)?;
        let identity = Identity::from_parts(vault.as_ref(), history, key)?;
        let static_key = vault.import_x25519_secret(static_secret)?;
        Self::assemble(vault, identity, static_key)
    }

    fn assemble(vault: Arc<SoftwareVault>, identity: Identity, static_key: KeyId) -> Result<Self> {
        let channel = ChannelIdentity::attested(
            &identity,
            vault.as_ref(),
            vault.as_ref(),
            static_key,
            Timestamp::now(),
            ATTESTATION_VALIDITY_SECS,
        )?;
        Ok(LocalIdentity {
            vault,
            identity,
            channel,
        })
    }

    pub fn identifier(&self) -> Identifier {
        self.identity.identifier()
    }

    pub fn history(&self) -> &ChangeHistory {
        self.identity.history()
    }

    /// A copy of this identity with a new primary key (history extended by one change, static key
    /// re-attested). `self` is untouched, so a caller that fails to persist the result loses nothing.
    pub fn rotated(&self) -> Result<Self> {
        let mut identity = self.identity.clone();
        let old = identity.rotate(
            self.vault.as_ref(),
            SigningAlgorithm::Ed25519,
            Timestamp::now(),
            KEY_VALIDITY_SECS,
        )?;
        let rotated = Self::assemble(
            self.vault.clone(),
            identity,
            self.channel.static_key.clone(),
        )?;
        // The old key stays in this process's vault only; storage keeps just the current seed.
        let _ = old;
        Ok(rotated)
    }

    /// Secret bytes for the identity store: (primary-key seed, static secret).
    pub(crate) fn export_secrets(&self) -> Result<(Secret, Secret)> {
        Ok((
            self.vault.export_secret(self.identity.primary_key())?,
            self.vault.export_secret(&self.channel.static_key)?,
        ))
    }

    /// A handshake configuration for this identity with the given trust policy.
    pub fn handshake_config(&self, trust: Arc<dyn TrustPolicy>) -> HandshakeConfig {
        HandshakeConfig::new(
            self.vault.clone(),
            self.channel.clone(),
            trust,
            Timestamp::now(),
        )
    }
}
