//! The one identity type that every surface uses (sans-IO channels, the runtime's nodes, the CLI's store, every
//! binding): an identity this process controls, with the vaults its keys live in and a current attestation of
//! its Noise static key, ready for handshakes.

use super::{ChangeHistory, Identifier, Identity};
use crate::channel::{ChannelIdentity, HandshakeConfig, TrustPolicy};
use crate::crypto::CryptoProvider;
use crate::error::Result;
use crate::prelude::*;
use crate::time::Timestamp;
use crate::vault::{KeyId, SecureChannelVault, SigningAlgorithm, SigningVault, SoftwareVault};
use alloc::sync::Arc;
use core::fmt;

/// Lifetime of each primary key unless the options say otherwise: rotate before it ends.
pub const DEFAULT_KEY_VALIDITY_SECS: u64 = 5 * 365 * 86_400;
/// Lifetime of a static-key attestation unless the options say otherwise.
pub const DEFAULT_ATTESTATION_VALIDITY_SECS: u64 = 30 * 86_400;

/// The vaults an identity's keys live in: the identity (signing) key, used only for changes and
/// attestations, and the Noise static key, used on every handshake. Software, an HSM or a TPM: anything
/// behind the core's vault traits. They may be one vault (software) or two (identity key in hardware).
#[derive(Clone)]
pub struct Vaults {
    signing: Arc<dyn SigningVault>,
    secure_channel: Arc<dyn SecureChannelVault>,
    /// Set when both are one software vault, whose keys can be exported for storage; hardware keys never
    /// leave their vault, so a store keeps only references to them.
    software: Option<Arc<SoftwareVault>>,
}

impl Vaults {
    /// Both kinds of key in one software vault.
    pub fn software(vault: Arc<SoftwareVault>) -> Self {
        Vaults {
            signing: vault.clone(),
            secure_channel: vault.clone(),
            software: Some(vault),
        }
    }

    /// Any pair of vaults (e.g. the identity key in an HSM, the static key in software).
    pub fn new(
        signing: Arc<dyn SigningVault>,
        secure_channel: Arc<dyn SecureChannelVault>,
    ) -> Self {
        Vaults {
            signing,
            secure_channel,
            software: None,
        }
    }

    pub fn signing(&self) -> &Arc<dyn SigningVault> {
        &self.signing
    }

    pub fn secure_channel(&self) -> &Arc<dyn SecureChannelVault> {
        &self.secure_channel
    }

    /// The software vault, when both kinds of key live in one (see [`Vaults::software`]).
    pub fn software_vault(&self) -> Option<&Arc<SoftwareVault>> {
        self.software.as_ref()
    }
}

impl fmt::Debug for Vaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Vaults { .. }")
    }
}

/// Algorithm and validity periods for an identity's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityOptions {
    pub algorithm: SigningAlgorithm,
    /// Lifetime of each primary key (rotate before it ends).
    pub key_validity_secs: u64,
    /// Lifetime of the secure-channel key attestation (a new one is made when the identity is loaded).
    pub attestation_validity_secs: u64,
}

impl Default for IdentityOptions {
    fn default() -> Self {
        IdentityOptions {
            algorithm: SigningAlgorithm::Ed25519,
            key_validity_secs: DEFAULT_KEY_VALIDITY_SECS,
            attestation_validity_secs: DEFAULT_ATTESTATION_VALIDITY_SECS,
        }
    }
}

/// An identity this process controls: its history, its keys (by reference, in [`Vaults`]) and a current
/// attestation of its static key. A value: cheap to clone (the vaults are shared), and rotation returns a new
/// value, so whoever holds the old one (a running listener, a caller that failed to persist) is unaffected.
#[derive(Clone)]
pub struct LocalIdentity {
    vaults: Vaults,
    options: IdentityOptions,
    identity: Identity,
    channel: ChannelIdentity,
}

impl fmt::Debug for LocalIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalIdentity")
            .field("identifier", &self.identifier())
            .field("changes", &self.history().changes().len())
            .finish_non_exhaustive()
    }
}

impl LocalIdentity {
    /// A new identity with fresh Ed25519 and X25519 keys in a new software vault, default options, valid
    /// from the system clock's now (builds with a default provider and a clock; without them, use
    /// [`LocalIdentity::create_in`]).
    #[cfg(any(feature = "ring", all(feature = "std", feature = "rustcrypto")))]
    pub fn create() -> Result<Self> {
        Self::create_in(
            Vaults::software(Arc::new(SoftwareVault::new())),
            IdentityOptions::default(),
            Timestamp::now(),
        )
    }

    /// A new identity with fresh keys generated in `vaults`. On failure no key is left behind.
    pub fn create_in(vaults: Vaults, options: IdentityOptions, now: Timestamp) -> Result<Self> {
        let primary = vaults.signing.generate_signing_key(options.algorithm)?;
        let static_key = match vaults.secure_channel.generate_x25519_key() {
            Ok(k) => k,
            Err(e) => {
                let _ = vaults.signing.delete_signing_key(&primary);
                return Err(e);
            }
        };
        let made = Identity::create_with_key(
            vaults.signing.as_ref(),
            primary.clone(),
            now,
            options.key_validity_secs,
        )
        .and_then(|identity| {
            Self::from_parts(vaults.clone(), options, identity, static_key.clone(), now)
        });
        if made.is_err() {
            let _ = vaults.signing.delete_signing_key(&primary);
            let _ = vaults.secure_channel.delete_x25519_key(&static_key);
        }
        made
    }

    /// An identity whose first primary key and static key already exist in `vaults` (imported secrets,
    /// keys made in hardware): a new history is started with `primary_key`.
    pub fn create_with_keys(
        vaults: Vaults,
        options: IdentityOptions,
        primary_key: KeyId,
        static_key: KeyId,
        now: Timestamp,
    ) -> Result<Self> {
        let identity = Identity::create_with_key(
            vaults.signing.as_ref(),
            primary_key,
            now,
            options.key_validity_secs,
        )?;
        Self::from_parts(vaults, options, identity, static_key, now)
    }

    /// Re-attaches a stored identity: its verified history, the current primary key and the static key,
    /// both by reference into `vaults`. The primary key must match the history's last change. The static key
    /// is attested afresh at `now`.
    pub fn restore(
        vaults: Vaults,
        options: IdentityOptions,
        history: ChangeHistory,
        primary_key: KeyId,
        static_key: KeyId,
        now: Timestamp,
    ) -> Result<Self> {
        let identity = Identity::from_parts(vaults.signing.as_ref(), history, primary_key)?;
        Self::from_parts(vaults, options, identity, static_key, now)
    }

    fn from_parts(
        vaults: Vaults,
        options: IdentityOptions,
        identity: Identity,
        static_key: KeyId,
        now: Timestamp,
    ) -> Result<Self> {
        let channel = ChannelIdentity::attested(
            &identity,
            vaults.signing.as_ref(),
            vaults.secure_channel.as_ref(),
            static_key,
            now,
            options.attestation_validity_secs,
        )?;
        Ok(LocalIdentity {
            vaults,
            options,
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

    pub fn options(&self) -> IdentityOptions {
        self.options
    }

    pub fn vaults(&self) -> &Vaults {
        &self.vaults
    }

    /// The current primary (signing) key's handle in the signing vault.
    pub fn primary_key(&self) -> &KeyId {
        self.identity.primary_key()
    }

    /// The Noise static key's handle in the secure-channel vault.
    pub fn static_key(&self) -> &KeyId {
        &self.channel.static_key
    }

    /// Credentials presented in handshakes made from this value.
    pub fn credentials(&self) -> &[Vec<u8>] {
        &self.channel.credentials
    }

    /// This identity presenting `credentials` in its handshakes.
    pub fn with_credentials(mut self, credentials: Vec<Vec<u8>>) -> Self {
        self.channel.credentials = credentials;
        self
    }

    /// This identity rotated to a new primary key: a fresh one generated in the signing vault (`None`), or
    /// an existing one. The history gains one change signed by the old and the new key; the static key is
    /// re-attested by the new key; credentials carry over. Returns the rotated identity and the previous
    /// primary key (still in the vault: the caller deletes it once the new state is persisted). `self` is
    /// untouched; on failure a generated key is deleted again.
    pub fn rotated(&self, new_key: Option<KeyId>, now: Timestamp) -> Result<(Self, KeyId)> {
        let signing = self.vaults.signing.as_ref();
        let generated = new_key.is_none();
        let key = match new_key {
            Some(k) => k,
            None => signing.generate_signing_key(self.options.algorithm)?,
        };
        let result = (|| {
            let mut identity = self.identity.clone();
            let old = identity.rotate_to_key(
                signing,
                key.clone(),
                now,
                self.options.key_validity_secs,
            )?;
            let rotated = Self::from_parts(
                self.vaults.clone(),
                self.options,
                identity,
                self.channel.static_key.clone(),
                now,
            )?;
            Ok((
                rotated.with_credentials(self.channel.credentials.clone()),
                old,
            ))
        })();
        if result.is_err() && generated {
            let _ = signing.delete_signing_key(&key);
        }
        result
    }

    /// This identity with its static key attested afresh at `now` (attestations expire; see
    /// [`IdentityOptions::attestation_validity_secs`]).
    pub fn reattested(&self, now: Timestamp) -> Result<Self> {
        let fresh = Self::from_parts(
            self.vaults.clone(),
            self.options,
            self.identity.clone(),
            self.channel.static_key.clone(),
            now,
        )?;
        Ok(fresh.with_credentials(self.channel.credentials.clone()))
    }

    /// What a handshake by this identity needs, checking the peer with `trust` at time `now`, on the default
    /// provider (builds that have one; otherwise [`LocalIdentity::handshake_config_with_provider`]).
    #[cfg(any(feature = "ring", all(feature = "std", feature = "rustcrypto")))]
    pub fn handshake_config(&self, trust: Arc<dyn TrustPolicy>, now: Timestamp) -> HandshakeConfig {
        self.handshake_config_with_provider(crate::crypto::default_provider(), trust, now)
    }

    /// [`LocalIdentity::handshake_config`] on the given crypto provider.
    pub fn handshake_config_with_provider(
        &self,
        provider: &'static dyn CryptoProvider,
        trust: Arc<dyn TrustPolicy>,
        now: Timestamp,
    ) -> HandshakeConfig {
        HandshakeConfig::with_provider(
            provider,
            self.vaults.secure_channel.clone(),
            self.channel.clone(),
            trust,
            now,
        )
    }

    /// The attested static key and history, as presented in handshakes.
    pub fn channel_identity(&self) -> &ChannelIdentity {
        &self.channel
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::SoftwareVault;

    #[test]
    fn create_rotate_restore_and_nothing_left_behind_on_failure() {
        let vault = Arc::new(SoftwareVault::new());
        let vaults = Vaults::software(vault.clone());
        let now = Timestamp(1_800_000_000);
        let id = LocalIdentity::create_in(vaults.clone(), IdentityOptions::default(), now).unwrap();
        assert_eq!(vault.len(), 2);
        let (rotated, old) = id.rotated(None, now.plus_secs(10)).unwrap();
        assert_eq!(rotated.identifier(), id.identifier());
        assert_eq!(rotated.history().changes().len(), 2);
        assert_eq!(
            id.history().changes().len(),
            1,
            "the original value is untouched"
        );
        vault.delete_signing_key(&old).unwrap();
        assert_eq!(vault.len(), 2);
        let restored = LocalIdentity::restore(
            vaults.clone(),
            IdentityOptions::default(),
            rotated.history().clone(),
            rotated.primary_key().clone(),
            rotated.static_key().clone(),
            now.plus_secs(20),
        )
        .unwrap();
        assert_eq!(restored.identifier(), id.identifier());
        // The wrong primary key for the history: refused.
        assert!(LocalIdentity::restore(
            vaults,
            IdentityOptions::default(),
            rotated.history().clone(),
            old,
            rotated.static_key().clone(),
            now,
        )
        .is_err());
    }
}
