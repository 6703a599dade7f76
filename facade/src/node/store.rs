//! The identity store (SQLite under the Latchkey home, shared by the CLI and every binding).

use crate::error::Result;
use crate::identity::{Identity, Vault};
use latchkey_runtime::storage::{default_home, Store};
use std::path::PathBuf;
use std::sync::Mutex;

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

/// An open identity store.
pub struct IdentityStore {
    store: Mutex<Store>,
}

impl std::fmt::Debug for IdentityStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityStore").finish_non_exhaustive()
    }
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
            store: Mutex::new(Store::open(&home)?),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        // A poisoned lock means a panic elsewhere mid-call; SQLite's transactions kept the file consistent.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn path(&self) -> String {
        self.lock().path().to_string_lossy().into_owned()
    }

    /// Creates and stores a new identity under `name` (1-64 letters, digits, `-`, `_`, `.`).
    pub fn create(&self, name: &str) -> Result<StoredIdentity> {
        Ok(self.lock().create_identity(name)?.1.into())
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

    /// Loads a stored identity, with its keys in a new vault of its own.
    pub fn load(&self, name: &str) -> Result<Identity> {
        let local = self.lock().load_identity(name)?;
        let vault = match local.vaults().software_vault() {
            Some(software) => Vault::from_software(software.clone()),
            None => Vault::new(),
        };
        Ok(Identity::from_local(&vault, local))
    }
}
