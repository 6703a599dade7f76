//! The identity store (SQLite under the Latchkey home, shared by the CLI and every binding).

use crate::error::{Error, Result};
use crate::identity::{Identity, Vault};
use latchkey_core::identity::{ChangeHistory, Identifier};
use latchkey_runtime::storage::{default_home, SharedStore, Store};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What the store knows about an identity, without secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredIdentity {
    pub name: String,
    pub identifier: String,
    /// 1 + rotations.
    pub changes: u32,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<latchkey_runtime::storage::IdentitySummary> for StoredIdentity {
    fn from(s: latchkey_runtime::storage::IdentitySummary) -> Self {
        StoredIdentity {
            name: s.name,
            identifier: s.identifier,
            changes: s.changes as u32,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// A pinned (or named, not yet met) peer in the store's peer-history table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPeer {
    /// The local name given to the peer (`--trust phone`), if any.
    pub name: Option<String>,
    pub identifier: String,
    /// Changes in the pinned history; 0 when the peer is named but nothing is pinned yet.
    pub changes: u32,
    /// The pinned history's export bytes (empty when nothing is pinned yet). A pin made by a handshake was
    /// checked as presented (docs/PROTOCOL.md 3.4, 5.4): its first self-signature was never checked, so if
    /// the peer itself sent a bad one, importing these bytes elsewhere (`pin_history`, `history_identifier`)
    /// fails while the peer's handshakes are accepted.
    pub history: Vec<u8>,
    /// Unix seconds: when the first history was pinned (0: not yet), and of the last update.
    pub pinned_at: i64,
    pub updated_at: i64,
}

impl From<latchkey_runtime::storage::PeerSummary> for StoredPeer {
    fn from(s: latchkey_runtime::storage::PeerSummary) -> Self {
        StoredPeer {
            name: s.name,
            identifier: s.identifier,
            changes: s.changes as u32,
            history: s.history,
            pinned_at: s.pinned_at,
            updated_at: s.updated_at,
        }
    }
}

/// An open identity store: the identities of this home and the histories pinned for its peers.
pub struct IdentityStore {
    store: SharedStore,
}

impl std::fmt::Debug for IdentityStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityStore").finish_non_exhaustive()
    }
}

/// A name the store accepts: 1-64 letters, digits, `-`, `_`, `.` (`InvalidArgument` otherwise: the caller
/// gave a bad argument, nothing is wrong with the store).
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "invalid identity name {name:?}: use 1-64 letters, digits, '-', '_' or '.'"
        )))
    }
}

fn parse_identifier(text: &str) -> Result<Identifier> {
    text.parse::<Identifier>()
        .map_err(|e| Error::invalid_argument(format!("{text:?} is not an identifier: {e}")))
}

/// `$LATCHKEY_HOME`, else `~/.latchkey`.
pub fn default_store_home() -> String {
    default_home().to_string_lossy().into_owned()
}

impl IdentityStore {
    /// Opens (creating if needed) the store in `home` (default: [`default_store_home`]).
    pub fn open(home: Option<String>) -> Result<Self> {
        let home = home.map(PathBuf::from).unwrap_or_else(default_home);
        Ok(IdentityStore {
            store: Arc::new(Mutex::new(Store::open(&home)?)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        // A poisoned lock means a panic elsewhere mid-call; SQLite's transactions kept the file consistent.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn path(&self) -> String {
        self.lock().path().to_string_lossy().into_owned()
    }

    /// Creates and stores a new identity under `name` (1-64 letters, digits, `-`, `_`, `.`; another name
    /// fails with `InvalidArgument`).
    pub fn create(&self, name: &str) -> Result<StoredIdentity> {
        check_name(name)?;
        Ok(self.lock().create_identity(name)?.1.into())
    }

    /// Like [`IdentityStore::create`], with the first primary key valid for `key_validity_secs` (at most the
    /// maximum key lifetime, five years; the default). Rotate before it ends: a rotation made after the key
    /// expired is refused by pinning peers.
    pub fn create_with_key_validity(
        &self,
        name: &str,
        key_validity_secs: u64,
    ) -> Result<StoredIdentity> {
        check_name(name)?;
        if key_validity_secs == 0 {
            return Err(Error::invalid_argument(
                "a key validity must be at least 1 s",
            ));
        }
        let options = latchkey_core::identity::IdentityOptions {
            key_validity_secs,
            ..Default::default()
        };
        Ok(self.lock().create_identity_with(name, options)?.1.into())
    }

    /// Creates and stores a new identity under `name` whose keys live in the vault `vault`: `software`,
    /// `pkcs11:module=PATH,token=LABEL[,pin-file=PATH]` (the PIN from `LATCHKEY_PKCS11_PIN` or the file, never
    /// from the spec) or `tpm:TCTI` (e.g. `tpm:swtpm:host=127.0.0.1,port=2321`). Hardware vaults need the
    /// facade's cargo features `pkcs11` / `tpm` (`ModuleNotFound` otherwise); hardware failures are typed
    /// (`PinIncorrect`, `TokenNotFound`, `DeviceUnavailable`, ...). `key_validity_secs`: as in
    /// [`IdentityStore::create_with_key_validity`] (`None`: the default).
    pub fn create_in_vault(
        &self,
        name: &str,
        vault: &str,
        key_validity_secs: Option<u64>,
    ) -> Result<StoredIdentity> {
        check_name(name)?;
        if !(vault == "software" || vault.starts_with("pkcs11:") || vault.starts_with("tpm:")) {
            return Err(Error::invalid_argument(format!(
                "unknown vault {vault:?}: use software, pkcs11:module=PATH,token=LABEL or tpm:TCTI"
            )));
        }
        let mut options = latchkey_core::identity::IdentityOptions::default();
        if let Some(secs) = key_validity_secs {
            if secs == 0 {
                return Err(Error::invalid_argument(
                    "a key validity must be at least 1 s",
                ));
            }
            options.key_validity_secs = secs;
        }
        Ok(self
            .lock()
            .create_identity_in(name, vault, options)?
            .1
            .into())
    }

    /// The vault an identity's keys live in, as its spec (`software`, `pkcs11:…`, `tpm:…`; no secret).
    pub fn vault_of(&self, name: &str) -> Result<String> {
        Ok(self.lock().identity_vault(name)?)
    }

    pub fn show(&self, name: &str) -> Result<StoredIdentity> {
        Ok(self.lock().summary(name)?.into())
    }

    pub fn list(&self) -> Result<Vec<StoredIdentity>> {
        Ok(self.lock().list()?.into_iter().map(Into::into).collect())
    }

    /// Rotates the identity's primary key (its identifier stays the same).
    pub fn rotate(&self, name: &str) -> Result<StoredIdentity> {
        Ok(self.lock().rotate_identity(name)?.into())
    }

    /// Every pinned or named peer.
    pub fn peers(&self) -> Result<Vec<StoredPeer>> {
        Ok(self.lock().peers()?.into_iter().map(Into::into).collect())
    }

    /// The peer with this local name or identifier (`UnknownPeer` otherwise).
    pub fn peer(&self, name_or_identifier: &str) -> Result<StoredPeer> {
        Ok(self.lock().peer(name_or_identifier)?.into())
    }

    /// Forgets a peer's pin and name: its next contact is a first contact again. Returns what was forgotten.
    pub fn forget_peer(&self, name_or_identifier: &str) -> Result<StoredPeer> {
        Ok(self.lock().forget_peer(name_or_identifier)?.into())
    }

    /// Names the peer `identifier` (`lk…`) `name` (same rules as identity names), so trust lists can say
    /// `name`. Its history is pinned at the first contact a pinning node has with it. A name already given to
    /// another identifier is refused (`InvalidArgument`).
    pub fn name_peer(&self, name: &str, identifier: &str) -> Result<()> {
        check_name(name)?;
        let id = parse_identifier(identifier)?;
        Ok(self.lock().name_peer(name, &id)?)
    }

    /// Pins an exported history (handed over out of band), under `name` if given: first contact, or an
    /// update under the pinning rules (`HistoryRollback`, `HistoryFork`, `KeyLifetimeExceeded`).
    pub fn pin_history(&self, name: Option<String>, history: &[u8]) -> Result<StoredPeer> {
        if let Some(name) = &name {
            check_name(name)?;
        }
        let history = ChangeHistory::import(history)?;
        Ok(self.lock().pin_history(name.as_deref(), &history)?.into())
    }

    /// A trust list as people write it, as identifiers: each entry an identifier (`lk…`), `NAME=lk…` (the
    /// identifier, now named `NAME` in the peer store), or `NAME` (a peer named so, else an identity of this
    /// store named so). An unknown name is `UnknownPeer`.
    pub fn resolve_trust(&self, entries: &[String]) -> Result<Vec<String>> {
        entries.iter().map(|e| self.resolve_one(e)).collect()
    }

    fn resolve_one(&self, entry: &str) -> Result<String> {
        // `lk` and hex digits: meant as an identifier, so it must be one (never taken for a name).
        if entry
            .strip_prefix("lk")
            .is_some_and(|hex| hex.chars().all(|c| c.is_ascii_hexdigit()))
        {
            parse_identifier(entry)?;
            return Ok(entry.to_string());
        }
        if let Some((name, id)) = entry.split_once('=') {
            self.name_peer(name, id)?;
            return Ok(id.to_string());
        }
        check_name(entry).map_err(|_| {
            Error::invalid_argument(format!(
                "{entry:?} is neither an identifier (lk…), NAME=lk…, nor a peer name"
            ))
        })?;
        let store = self.lock();
        match store.peer(entry) {
            Ok(p) => Ok(p.identifier),
            Err(latchkey_runtime::RuntimeError::UnknownPeer(_)) => match store.summary(entry) {
                Ok(local) => Ok(local.identifier),
                Err(_) => Err(Error::new(
                    crate::error::ErrorCode::UnknownPeer,
                    format!(
                        "no peer or identity named {entry:?} (name a peer with NAME=lk…, see `latchkey \
                         peer list`)"
                    ),
                )),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// The store shared with the trust policies of nodes that pin through it.
    pub(crate) fn shared(&self) -> SharedStore {
        self.store.clone()
    }

    /// Loads a stored identity, with its keys in a new vault of its own. If it enrolled with an authority
    /// (`credentials/NAME.cred` in the home), it presents that credential in its handshakes while it is
    /// valid, under the same rules as [`super::Node::with_stored_identity`]: an expired one is not presented
    /// (logged as a warning; `Node::use_authorities` with the authority's address refreshes it), and one that
    /// does not decode or is about another identity is `InvalidCredential`.
    pub fn load(&self, name: &str) -> Result<Identity> {
        let (local, dir) = {
            let store = self.lock();
            (
                store.load_identity(name)?,
                store.path().parent().map(|p| p.to_path_buf()),
            )
        };
        let local = match dir {
            Some(dir) => {
                let stored = super::membership::StoredAs::load(name, None, &dir, &local)?;
                match stored.presentable(latchkey_core::Timestamp::now()) {
                    Some(credential) => local.with_credentials(vec![credential]),
                    None => local,
                }
            }
            None => local,
        };
        let vault = match local.vaults().software_vault() {
            Some(software) => Vault::from_software(software.clone()),
            None => Vault::new(),
        };
        Ok(Identity::from_local(&vault, local))
    }
}
