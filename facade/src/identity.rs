use crate::now_or_clock;
use latchkey_core::channel::ChannelIdentity;
use latchkey_core::identity::{ChangeHistory, Identifier, Identity as CoreIdentity};
use latchkey_core::vault::{KeyId, SecureChannelVault, SigningAlgorithm, SoftwareVault};
use latchkey_core::{Error, Result, Timestamp};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// A software vault shared by the identities created in it.
#[derive(Clone, Default)]
pub struct Vault {
    pub(crate) inner: Arc<SoftwareVault>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Vault {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys held.
    pub fn key_count(&self) -> usize {
        self.inner.len()
    }

    /// The core vault, for Rust callers that need the traits.
    pub fn software_vault(&self) -> Arc<SoftwareVault> {
        self.inner.clone()
    }
}

/// Validity periods and algorithm for a new identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityOptions {
    pub algorithm: SigningAlgorithm,
    /// Lifetime of each primary key (rotate before it ends).
    pub key_validity_secs: u64,
    /// Lifetime of the secure-channel key attestation.
    pub attestation_validity_secs: u64,
}

impl Default for IdentityOptions {
    fn default() -> Self {
        IdentityOptions {
            algorithm: SigningAlgorithm::Ed25519,
            key_validity_secs: 5 * 365 * 86_400,
            attestation_validity_secs: 30 * 86_400,
        }
    }
}

struct State {
    identity: CoreIdentity,
    channel: ChannelIdentity,
}

/// An identity we control, with its secure-channel static key attested and ready for handshakes.
/// Cheap to clone (shared state); safe to use from several threads.
#[derive(Clone)]
pub struct Identity {
    vault: Vault,
    options: IdentityOptions,
    /// Fixed by the first change, so it never needs the lock (rotation cannot change it).
    identifier: Identifier,
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("identifier", &self.identifier())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Creates an identity with fresh keys in `vault`.
    pub fn create(vault: &Vault, options: IdentityOptions, now: Option<u64>) -> Result<Self> {
        let now = now_or_clock(now);
        let identity = CoreIdentity::create(
            vault.inner.as_ref(),
            options.algorithm,
            now,
            options.key_validity_secs,
        )?;
        let static_key = vault.inner.generate_x25519_key()?;
        Self::assemble(vault, options, identity, static_key, now)
    }

    /// Creates an identity from given secrets: for deterministic test vectors and for importing keys that
    /// were generated elsewhere. Ed25519 only.
    pub fn from_secrets(
        vault: &Vault,
        signing_seed: &[u8; 32],
        static_secret: &[u8; 32],
        options: IdentityOptions,
        now: Option<u64>,
    ) -> Result<Self> {
        let now = now_or_clock(now);
        let key = vault.inner.import_ed25519_seed(signing_seed)?;
        let identity = CoreIdentity::create_with_key(
            vault.inner.as_ref(),
            key,
            now,
            options.key_validity_secs,
        )?;
        let static_key = vault.inner.import_x25519_secret(static_secret)?;
        Self::assemble(vault, options, identity, static_key, now)
    }

    fn assemble(
        vault: &Vault,
        options: IdentityOptions,
        identity: CoreIdentity,
        static_key: KeyId,
        now: Timestamp,
    ) -> Result<Self> {
        let channel = attest(vault, &identity, static_key, options, now)?;
        Ok(Identity {
            vault: vault.clone(),
            options,
            identifier: identity.identifier(),
            state: Arc::new(Mutex::new(State { identity, channel })),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| Error::InvalidState("identity lock poisoned"))
    }

    /// The identifier as text (`lk…`).
    pub fn identifier(&self) -> String {
        self.identifier.to_string()
    }

    /// The change history as bytes: public, shareable, what peers verify.
    pub fn export_history(&self) -> Result<Vec<u8>> {
        Ok(self.lock()?.identity.history().export())
    }

    /// Number of changes in the history (1 + rotations).
    pub fn change_count(&self) -> Result<usize> {
        Ok(self.lock()?.identity.history().changes().len())
    }

    /// Rotates the primary key and re-attests the static key with the new one. On failure nothing changes.
    /// `new_signing_seed` makes the rotation deterministic (test vectors); `None` generates a fresh key.
    pub fn rotate(&self, new_signing_seed: Option<&[u8; 32]>, now: Option<u64>) -> Result<()> {
        let now = now_or_clock(now);
        let mut state = self.lock()?;
        let mut identity = state.identity.clone();
        let vault = self.vault.inner.as_ref();
        match new_signing_seed {
            Some(seed) => {
                let key = vault.import_ed25519_seed(seed)?;
                identity.rotate_to_key(vault, key, now, self.options.key_validity_secs)?;
            }
            None => {
                identity.rotate(
                    vault,
                    self.options.algorithm,
                    now,
                    self.options.key_validity_secs,
                )?;
            }
        }
        let mut channel = attest(
            &self.vault,
            &identity,
            state.channel.static_key.clone(),
            self.options,
            now,
        )?;
        channel.credentials = std::mem::take(&mut state.channel.credentials);
        state.channel = channel;
        state.identity = identity;
        Ok(())
    }

    /// Sets the opaque credentials presented in future handshakes.
    pub fn set_credentials(&self, credentials: Vec<Vec<u8>>) -> Result<()> {
        self.lock()?.channel.credentials = credentials;
        Ok(())
    }

    pub(crate) fn channel_identity(&self) -> Result<ChannelIdentity> {
        Ok(self.lock()?.channel.clone())
    }

    pub(crate) fn vault(&self) -> &Vault {
        &self.vault
    }
}

fn attest(
    vault: &Vault,
    identity: &CoreIdentity,
    static_key: KeyId,
    options: IdentityOptions,
    now: Timestamp,
) -> Result<ChannelIdentity> {
    let vault = vault.inner.as_ref();
    ChannelIdentity::attested(
        identity,
        vault,
        vault,
        static_key,
        now,
        options.attestation_validity_secs,
    )
}

/// Verifies exported history bytes and returns the identity's identifier.
pub fn history_identifier(history: &[u8]) -> Result<String> {
    Ok(ChangeHistory::import(history)?.identifier().to_string())
}

/// Accepts `new` as the next state of an identity known as `known`: both verify and `new` extends `known`.
pub fn verify_history_update(known: &[u8], new: &[u8]) -> Result<String> {
    let known = ChangeHistory::import(known)?;
    let new = ChangeHistory::import(new)?;
    new.check_extends(&known)?;
    Ok(new.identifier().to_string())
}

pub(crate) fn parse_identifiers(identifiers: &[String]) -> Result<Vec<Identifier>> {
    identifiers
        .iter()
        .map(|s| Identifier::from_str(s))
        .collect()
}
