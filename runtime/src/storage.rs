//! The identity store: one SQLite database (WAL, every change in a transaction) under the Latchkey home
//! directory. The directory is created 0700 and the database file 0600 before SQLite opens it (SQLite gives
//! its WAL and shared-memory files the database's permissions).
//!
//! Each identity row names the vault its keys live in (`vault`) and holds one *key reference* per key. For
//! keys in software (the only kind this build creates) the reference is the key's exported secret bytes,
//! held in `Zeroizing` buffers in memory and never printed; for keys in hardware it will be a locator, never
//! the key (hardware keys do not leave their vault). A row naming a vault this build cannot open is refused
//! with a clear error rather than guessed at.

use crate::error::{Result, RuntimeError};
use crate::identity::{IdentityOptions, LocalIdentity, Vaults};
use latchkey_core::identity::ChangeHistory;
use latchkey_core::vault::SoftwareVault;
use latchkey_core::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

/// What the store knows about an identity, without secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySummary {
    pub name: String,
    pub identifier: String,
    pub changes: usize,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An open identity store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// `$LATCHKEY_HOME`, else `~/.latchkey`.
pub fn default_home() -> PathBuf {
    if let Some(home) = std::env::var_os("LATCHKEY_HOME") {
        return PathBuf::from(home);
    }
    let base = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    base.join(".latchkey")
}

fn now() -> i64 {
    latchkey_core::Timestamp::now().0 as i64
}

impl Store {
    /// Opens (creating if needed) `home/latchkey.sqlite3`.
    pub fn open(home: &Path) -> Result<Store> {
        create_private_dir(home)?;
        let path = home.join("latchkey.sqlite3");
        create_private_file(&path)?;
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS identities (
                name TEXT PRIMARY KEY,
                identifier TEXT NOT NULL UNIQUE,
                history BLOB NOT NULL,
                signing_seed BLOB NOT NULL,
                static_secret BLOB NOT NULL,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            );",
        )?;
        // Version 2: the vault each identity's keys live in; `signing_seed` and `static_secret` hold that
        // vault's key references (for software, the secret bytes). Rows written before are software.
        let has_vault: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('identities') WHERE name = 'vault'")?
            .exists([])?;
        if !has_vault {
            conn.execute_batch(
                "ALTER TABLE identities ADD COLUMN vault TEXT NOT NULL DEFAULT 'software';",
            )?;
        }
        Ok(Store { conn, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates and stores a new identity under `name`.
    pub fn create_identity(&mut self, name: &str) -> Result<(LocalIdentity, IdentitySummary)> {
        check_name(name)?;
        let identity = LocalIdentity::create()?;
        let (seed, secret) = key_references(&identity)?;
        let tx = self.conn.transaction()?;
        let exists: Option<String> = tx
            .query_row("SELECT name FROM identities WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_some() {
            return Err(RuntimeError::IdentityExists(name.to_string()));
        }
        let t = now();
        tx.execute(
            "INSERT INTO identities (name, identifier, history, signing_seed, static_secret, created_at, updated_at, vault)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 'software')",
            params![
                name,
                identity.identifier().to_string(),
                identity.history().export(),
                seed.as_slice(),
                secret.as_slice(),
                t
            ],
        )?;
        tx.commit()?;
        let summary = self.summary(name)?;
        Ok((identity, summary))
    }

    /// Loads an identity with its keys.
    pub fn load_identity(&self, name: &str) -> Result<LocalIdentity> {
        let (vault, history, seed, secret) = self
            .conn
            .query_row(
                "SELECT vault, history, signing_seed, static_secret FROM identities WHERE name = ?1",
                [name],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        Zeroizing::new(r.get::<_, Vec<u8>>(2)?),
                        Zeroizing::new(r.get::<_, Vec<u8>>(3)?),
                    ))
                },
            )
            .optional()?
            .ok_or_else(|| RuntimeError::UnknownIdentity(name.to_string()))?;
        if vault != "software" {
            return Err(RuntimeError::Storage(format!(
                "identity {name:?} keeps its keys in a {vault:?} vault, which this build cannot open"
            )));
        }
        let secret32 = |bytes: &[u8], what: &str| -> Result<Zeroizing<[u8; 32]>> {
            Ok(Zeroizing::new(bytes.try_into().map_err(|_| {
                RuntimeError::Storage(format!("stored {what} has the wrong length"))
            })?))
        };
        let seed = secret32(&seed, "signing seed")?;
        let secret = secret32(&secret, "static secret")?;
        let software = Arc::new(SoftwareVault::new());
        let primary = software.import_ed25519_seed(&seed)?;
        let static_key = software.import_x25519_secret(&secret)?;
        Ok(LocalIdentity::restore(
            Vaults::software(software),
            IdentityOptions::default(),
            ChangeHistory::import(&history)?,
            primary,
            static_key,
            Timestamp::now(),
        )?)
    }

    pub fn summary(&self, name: &str) -> Result<IdentitySummary> {
        self.conn
            .query_row(
                "SELECT name, identifier, history, created_at, updated_at FROM identities WHERE name = ?1",
                [name],
                summary_row,
            )
            .optional()?
            .ok_or_else(|| RuntimeError::UnknownIdentity(name.to_string()))
    }

    pub fn list(&self) -> Result<Vec<IdentitySummary>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, identifier, history, created_at, updated_at FROM identities ORDER BY name")?;
        let rows = stmt.query_map([], summary_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Rotates the primary key: the new history and seed replace the old in one transaction, so a failure
    /// leaves the stored identity exactly as it was.
    pub fn rotate_identity(&mut self, name: &str) -> Result<IdentitySummary> {
        let identity = self.load_identity(name)?;
        let (rotated, old) = identity.rotated(None, Timestamp::now())?;
        // The loaded vault is this call's own: the old key goes with it, and storage keeps only the new one.
        let _ = identity.vaults().signing().delete_signing_key(&old);
        let (seed, _) = key_references(&rotated)?;
        let tx = self.conn.transaction()?;
        let updated = tx.execute(
            "UPDATE identities SET history = ?1, signing_seed = ?2, updated_at = ?3 WHERE name = ?4 AND identifier = ?5",
            params![
                rotated.history().export(),
                seed.as_slice(),
                now(),
                name,
                rotated.identifier().to_string()
            ],
        )?;
        if updated != 1 {
            return Err(RuntimeError::UnknownIdentity(name.to_string()));
        }
        tx.commit()?;
        self.summary(name)
    }
}

/// A key reference as stored: for a software key, its secret bytes (wiped on drop).
type KeyReference = Zeroizing<Vec<u8>>;

/// The references the store keeps for an identity's two keys: for a software vault, the exported secrets.
fn key_references(identity: &LocalIdentity) -> Result<(KeyReference, KeyReference)> {
    let software = identity.vaults().software_vault().ok_or_else(|| {
        RuntimeError::Storage(
            "this identity's keys live outside software; this build stores software identities only"
                .into(),
        )
    })?;
    Ok((
        software.export_secret(identity.primary_key())?,
        software.export_secret(identity.static_key())?,
    ))
}

fn summary_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IdentitySummary> {
    let history: Vec<u8> = r.get(2)?;
    let changes = latchkey_core::identity::ChangeHistory::import(&history)
        .map(|h| h.changes().len())
        .unwrap_or(0);
    Ok(IdentitySummary {
        name: r.get(0)?,
        identifier: r.get(1)?,
        changes,
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::Storage(format!(
            "invalid identity name {name:?}: use 1-64 letters, digits, '-', '_' or '.'"
        )))
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    Ok(())
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    Ok(())
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_load_rotate_list() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let (created, summary) = store.create_identity("alice").unwrap();
        assert_eq!(summary.identifier, created.identifier().to_string());
        assert!(matches!(
            store.create_identity("alice"),
            Err(RuntimeError::IdentityExists(_))
        ));
        assert!(matches!(
            store.load_identity("bob"),
            Err(RuntimeError::UnknownIdentity(_))
        ));
        let loaded = store.load_identity("alice").unwrap();
        assert_eq!(loaded.identifier(), created.identifier());
        let rotated = store.rotate_identity("alice").unwrap();
        assert_eq!(rotated.changes, 2);
        assert_eq!(rotated.identifier, summary.identifier);
        let reloaded = Store::open(dir.path())
            .unwrap()
            .load_identity("alice")
            .unwrap();
        assert_eq!(reloaded.history().changes().len(), 2);
        assert!(store.create_identity("bad name").is_err());
        assert_eq!(store.list().unwrap().len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
}
