use crate::error::{Error, Result};
use crate::now_or_clock;
use crate::pins::PeerHistories;
use latchkey_core::channel::TrustPolicy;
use latchkey_core::identity::{ChangeHistory, Identifier, LocalIdentity, Vaults};
use latchkey_core::vault::{SecureChannelVault, SigningVault, SoftwareVault};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

pub use latchkey_core::identity::IdentityOptions;

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

    /// A vault around an existing core software vault (e.g. one a store loaded keys into).
    pub fn from_software(inner: Arc<SoftwareVault>) -> Self {
        Vault { inner }
    }

    /// Number of keys held.
    pub fn key_count(&self) -> usize {
        self.inner.len()
    }

    /// The core vault, for Rust callers that need the traits.
    pub fn software_vault(&self) -> Arc<SoftwareVault> {
        self.inner.clone()
    }

    /// The vault as the core's pair of signing and secure-channel vaults.
    pub fn vaults(&self) -> Vaults {
        Vaults::software(self.inner.clone())
    }
}

/// An identity we control, with its secure-channel static key attested and ready for handshakes. Cheap to
/// clone (shared state); safe to use from several threads. It wraps the core's one identity type, so the
/// same identity works in sans-IO channels, in a node and in the store.
///
/// It owns its keys in the vault: when the last clone is dropped (and with it every handshake, direct
/// listener and node made from it, which hold a clone), its current primary key and its static key are
/// deleted from the vault, so a vault holds exactly the keys that live identities use. (Rotation deletes the
/// rotated-away key at once.)
#[derive(Clone)]
pub struct Identity {
    vault: Vault,
    /// Fixed by the first change, so it never needs the lock (rotation cannot change it).
    identifier: Identifier,
    state: Arc<KeyOwner>,
    /// The peers this identity has met, pinned (see [`PeerHistories`]).
    pins: PeerHistories,
}

/// The identity's state; dropping it deletes the identity's keys from its vault.
struct KeyOwner {
    vault: Vault,
    local: Mutex<LocalIdentity>,
}

impl Drop for KeyOwner {
    fn drop(&mut self) {
        let local = self.local.get_mut().unwrap_or_else(|e| e.into_inner());
        // Already gone (e.g. deleted by hand) is fine: the point is that nothing stays.
        let _ = self.vault.inner.delete_signing_key(local.primary_key());
        let _ = self.vault.inner.delete_x25519_key(local.static_key());
    }
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
        let local = LocalIdentity::create_in(vault.vaults(), options, now_or_clock(now))?;
        Ok(Self::wrap(vault, local))
    }

    /// Creates an identity from given secrets: for deterministic test vectors and for importing keys that
    /// were generated elsewhere. Ed25519 only. On failure no key is left in the vault.
    pub fn from_secrets(
        vault: &Vault,
        signing_seed: &[u8; 32],
        static_secret: &[u8; 32],
        options: IdentityOptions,
        now: Option<u64>,
    ) -> Result<Self> {
        let key = vault.inner.import_ed25519_seed(signing_seed)?;
        let static_key = match vault.inner.import_x25519_secret(static_secret) {
            Ok(k) => k,
            Err(e) => {
                let _ = vault.inner.delete_signing_key(&key);
                return Err(e.into());
            }
        };
        let made = LocalIdentity::create_with_keys(
            vault.vaults(),
            options,
            key.clone(),
            static_key.clone(),
            now_or_clock(now),
        );
        match made {
            Ok(local) => Ok(Self::wrap(vault, local)),
            Err(e) => {
                let _ = vault.inner.delete_signing_key(&key);
                let _ = vault.inner.delete_x25519_key(&static_key);
                Err(e.into())
            }
        }
    }

    /// Wraps a core identity whose keys live in `vault`. The new `Identity` owns those keys: they are deleted
    /// from `vault` when it (its last clone) is dropped, so wrap one core identity once.
    pub fn from_local(vault: &Vault, local: LocalIdentity) -> Self {
        Self::wrap(vault, local)
    }

    fn wrap(vault: &Vault, local: LocalIdentity) -> Self {
        Identity {
            vault: vault.clone(),
            identifier: local.identifier(),
            state: Arc::new(KeyOwner {
                vault: vault.clone(),
                local: Mutex::new(local),
            }),
            pins: PeerHistories::new(),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, LocalIdentity>> {
        self.state
            .local
            .lock()
            .map_err(|_| Error::invalid_state("identity lock poisoned"))
    }

    /// The histories of the peers this identity has met, pinned: every handshake made as this identity
    /// (sans-IO sessions, direct TCP channels) consults and updates them.
    pub fn peer_histories(&self) -> &PeerHistories {
        &self.pins
    }

    /// `policy` followed by this identity's pinned-history check.
    pub(crate) fn pinning(&self, policy: Arc<dyn TrustPolicy>) -> Arc<dyn TrustPolicy> {
        self.pins.policy(policy)
    }

    /// The identifier as text (`lk…`).
    pub fn identifier(&self) -> String {
        self.identifier.to_string()
    }

    /// The change history as bytes: public, shareable, what peers verify.
    pub fn export_history(&self) -> Result<Vec<u8>> {
        Ok(self.lock()?.history().export())
    }

    /// Number of changes in the history (1 + rotations).
    pub fn change_count(&self) -> Result<usize> {
        Ok(self.lock()?.history().changes().len())
    }

    /// Rotates the primary key and re-attests the static key with the new one; the previous primary key is
    /// deleted from the vault. On failure nothing changes. `new_signing_seed` makes the rotation
    /// deterministic (test vectors); `None` generates a fresh key.
    pub fn rotate(&self, new_signing_seed: Option<&[u8; 32]>, now: Option<u64>) -> Result<()> {
        let now = now_or_clock(now);
        let mut state = self.lock()?;
        let imported = match new_signing_seed {
            Some(seed) => Some(self.vault.inner.import_ed25519_seed(seed)?),
            None => None,
        };
        let (rotated, old) = match state.rotated(imported.clone(), now) {
            Ok(r) => r,
            Err(e) => {
                if let Some(key) = imported {
                    let _ = self.vault.inner.delete_signing_key(&key);
                }
                return Err(e.into());
            }
        };
        let software = rotated.vaults().software_vault().is_some();
        *state = rotated;
        // A software key goes at once. A hardware key rotated away stays in its vault: a store may still
        // name it (rotate stored identities with `IdentityStore::rotate`, which deletes it once the new
        // state is stored).
        if software {
            let _ = self.vault.inner.delete_signing_key(&old);
        }
        Ok(())
    }

    /// Sets the opaque credentials presented in future handshakes.
    pub fn set_credentials(&self, credentials: Vec<Vec<u8>>) -> Result<()> {
        let mut state = self.lock()?;
        *state = state.clone().with_credentials(credentials);
        Ok(())
    }

    /// A snapshot of the core identity (for a node, a store, or Rust callers of the core): later rotations
    /// of this `Identity` do not change it.
    pub fn local_identity(&self) -> Result<LocalIdentity> {
        Ok(self.lock()?.clone())
    }

    /// The vault holding this identity's keys.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }
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

/// Checks that `text` is an identifier (`lk` + 64 lower-case hex digits), e.g. a trust list entry read from a
/// user, before it is used: a malformed one fails with `DecodeError` saying what is wrong.
pub fn check_identifier(text: &str) -> Result<()> {
    Identifier::from_str(text)?;
    Ok(())
}

pub(crate) fn parse_identifiers(identifiers: &[String]) -> Result<Vec<Identifier>> {
    identifiers
        .iter()
        .map(|s| Ok(Identifier::from_str(s)?))
        .collect()
}
