//! The identity store: one SQLite database (WAL, every change in a transaction) under the Latchkey home
//! directory. The directory is created 0700 and the database file 0600 before SQLite opens it (SQLite gives
//! its WAL and shared-memory files the database's permissions).
//!
//! Each identity row names the vault its keys live in (`vault`: `software`, `pkcs11:module=…,token=…` or
//! `tpm:TCTI`, never a PIN) and holds one *key reference* per key. For keys in software the reference is the
//! key's exported secret bytes, held in `Zeroizing` buffers in memory and never printed; for keys in hardware
//! it is the vault's `KeyId` (a PKCS#11 `CKA_ID`, a TPM key blob usable only inside that TPM), never the key
//! (hardware keys do not leave their vault). An empty static-key reference means the Noise static key is
//! kept in memory only (a TPM has no X25519). A row naming a vault this build cannot open is refused with
//! `ModuleNotFound` rather than guessed at. See `docs/VAULTS.md`.
//!
//! The `peers` table is the peer-history store: for each pinned peer its identifier, an optional local name
//! (so `--trust phone` works) and the last history it presented (NULL: named, not met yet). Every trust
//! decision of a node that pins consults it through [`crate::pins::PinningTrust`] with the core's pure
//! check, `ChangeHistory::check_pinned`, inside one immediate transaction (so two processes sharing a home
//! cannot interleave a check and its update). `secure_delete` is on, and after anything is deleted or
//! replaced (a forgotten peer, a rotated-away key) the WAL is checkpointed and truncated, so neither the
//! free pages nor the WAL keep the old bytes.

use crate::error::{Result, RuntimeError};
use crate::identity::{IdentityOptions, LocalIdentity, Vaults};
use latchkey_core::identity::{ChangeHistory, Identifier, PinCheck};
use latchkey_core::vault::{KeyId, SoftwareVault};
use latchkey_core::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
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

/// A pinned peer, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSummary {
    /// The local name given to the peer, if any.
    pub name: Option<String>,
    pub identifier: String,
    /// Changes in the pinned history (0: named, but not met yet, so nothing is pinned).
    pub changes: usize,
    /// The pinned history's export bytes (empty when nothing is pinned yet). A pin made by a handshake was
    /// checked as presented (PROTOCOL.md 3.4, 5.4): its first self-signature was not checked, so if the peer
    /// itself sent a bad one, `ChangeHistory::import` of these bytes fails while the peer's handshakes pass.
    pub history: Vec<u8>,
    /// Unix seconds: when the first history was pinned (0: not yet), and of the last change to the row.
    pub pinned_at: i64,
    pub updated_at: i64,
}

/// How a pinning store treats a peer it has no pin for (a pinned peer is always checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinNew {
    /// Pin it: the trust policy named it (allow list, explicit trust), or trust on first use was asked for.
    Pin,
    /// Accept it without pinning (a policy that trusts any identity, without trust on first use).
    DoNotPin,
}

/// The store shared by a facade handle and the trust policies of the nodes that pin through it.
pub type SharedStore = Arc<std::sync::Mutex<Store>>;

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
        // Deleted content (forgotten peers, replaced keys) is overwritten, not left in free pages.
        conn.pragma_update(None, "secure_delete", "ON")?;
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
        // Version 3: the peer-history store.
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version < 3 {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS peers (
                    identifier TEXT PRIMARY KEY,
                    name TEXT UNIQUE,
                    history BLOB,
                    pinned_at INTEGER NOT NULL DEFAULT 0,
                    updated_at INTEGER NOT NULL
                );
                PRAGMA user_version = 3;",
            )?;
            tx.commit()?;
        }
        Ok(Store { conn, path })
    }

    /// Checkpoints the WAL into the database and truncates it to zero bytes, after something secret or
    /// revoked was deleted or replaced (with `secure_delete`, the database's free pages are zeroed too).
    fn scrub_wal(&self) -> Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// The trust decision's pinning step for a peer that presented `presented` (verified by the handshake,
    /// as presented) and passed the trust policy: one immediate transaction that reads the pin (reloaded
    /// under the same presented rule, see `load_pin`), applies the core's `check_pinned`, and stores the new
    /// pin. `Ok(None)`: not pinned and `pin_new` said not to pin.
    pub fn check_and_pin(
        &mut self,
        presented: &ChangeHistory,
        pin_new: PinNew,
    ) -> Result<Option<PinCheck>> {
        let identifier = presented.identifier().to_string();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row: Option<Option<Vec<u8>>> = tx
            .query_row(
                "SELECT history FROM peers WHERE identifier = ?1",
                [&identifier],
                |r| r.get(0),
            )
            .optional()?;
        let pinned = match &row {
            Some(Some(bytes)) => Some(load_pin(bytes).map_err(|e| {
                RuntimeError::Storage(format!(
                    "the history pinned for {identifier} is unreadable: {e}"
                ))
            })?),
            _ => None,
        };
        if row.is_none() && pin_new == PinNew::DoNotPin {
            return Ok(None);
        }
        let decision = presented.check_pinned(pinned.as_ref())?;
        let t = now();
        match (decision, row) {
            (PinCheck::Unchanged, _) => {}
            (PinCheck::FirstContact, None) => {
                tx.execute(
                    "INSERT INTO peers (identifier, name, history, pinned_at, updated_at) VALUES (?1, NULL, ?2, ?3, ?3)",
                    params![identifier, presented.export(), t],
                )?;
            }
            (PinCheck::FirstContact, Some(_)) => {
                tx.execute(
                    "UPDATE peers SET history = ?2, pinned_at = ?3, updated_at = ?3 WHERE identifier = ?1",
                    params![identifier, presented.export(), t],
                )?;
            }
            (PinCheck::Extended(_), _) => {
                tx.execute(
                    "UPDATE peers SET history = ?2, updated_at = ?3 WHERE identifier = ?1",
                    params![identifier, presented.export(), t],
                )?;
            }
        }
        tx.commit()?;
        Ok(Some(decision))
    }

    /// Pins `history` directly (an exported history handed over out of band, an enrollment), under `name`
    /// if given: first contact, or an update under the same rules as a handshake's.
    pub fn pin_history(
        &mut self,
        name: Option<&str>,
        history: &ChangeHistory,
    ) -> Result<PeerSummary> {
        let identifier = history.identifier();
        if let Some(name) = name {
            self.name_peer(name, &identifier)?;
        }
        self.check_and_pin(history, PinNew::Pin)?;
        self.peer(&identifier.to_string())
    }

    /// Gives the peer `identifier` the local name `name` (creating its row, not yet pinned, if it has none).
    /// A name belongs to one peer: naming another peer the same is refused; renaming a peer is allowed.
    pub fn name_peer(&mut self, name: &str, identifier: &Identifier) -> Result<()> {
        check_name(name)?;
        let identifier = identifier.to_string();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let holder: Option<String> = tx
            .query_row(
                "SELECT identifier FROM peers WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        match holder {
            Some(h) if h == identifier => return Ok(()),
            Some(h) => {
                return Err(RuntimeError::PeerNameTaken {
                    name: name.to_string(),
                    identifier: h,
                })
            }
            None => {}
        }
        let t = now();
        tx.execute(
            "INSERT INTO peers (identifier, name, history, pinned_at, updated_at) VALUES (?1, ?2, NULL, 0, ?3)
             ON CONFLICT(identifier) DO UPDATE SET name = ?2, updated_at = ?3",
            params![identifier, name, t],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The peer with this local name or identifier.
    pub fn peer(&self, name_or_identifier: &str) -> Result<PeerSummary> {
        self.conn
            .query_row(
                "SELECT name, identifier, history, pinned_at, updated_at FROM peers
                 WHERE name = ?1 OR identifier = ?1",
                [name_or_identifier],
                peer_row,
            )
            .optional()?
            .ok_or_else(|| RuntimeError::UnknownPeer(name_or_identifier.to_string()))
    }

    /// Every pinned or named peer, named ones first by name, then by identifier.
    pub fn peers(&self) -> Result<Vec<PeerSummary>> {
        let mut stmt = self.conn.prepare(
            "SELECT name, identifier, history, pinned_at, updated_at FROM peers
             ORDER BY name IS NULL, name, identifier",
        )?;
        let rows = stmt.query_map([], peer_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Forgets a peer: its pin and its name. The next contact is a first contact again. The row is erased
    /// (`secure_delete`) and the WAL truncated.
    pub fn forget_peer(&mut self, name_or_identifier: &str) -> Result<PeerSummary> {
        let summary = self.peer(name_or_identifier)?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM peers WHERE identifier = ?1",
            [&summary.identifier],
        )?;
        tx.commit()?;
        self.scrub_wal()?;
        Ok(summary)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates and stores a new identity under `name`.
    pub fn create_identity(&mut self, name: &str) -> Result<(LocalIdentity, IdentitySummary)> {
        self.create_identity_with(name, IdentityOptions::default())
    }

    /// Creates and stores a new identity under `name` with `options` (e.g. a shorter key validity; the key
    /// validity must not exceed the maximum key lifetime peers accept).
    pub fn create_identity_with(
        &mut self,
        name: &str,
        options: IdentityOptions,
    ) -> Result<(LocalIdentity, IdentitySummary)> {
        self.create_identity_in(name, SOFTWARE, options)
    }

    /// Creates and stores a new identity under `name` whose keys live in the vault `vault_spec`:
    /// `software`, `pkcs11:module=PATH,token=LABEL[,pin-file=PATH]` (feature `pkcs11`) or `tpm:TCTI`
    /// (feature `tpm`). For a hardware vault the store keeps key references only, the algorithm is the one
    /// the hardware supports best (Ed25519, else ECDSA P-256), and a Noise static key the hardware cannot
    /// hold is kept in memory only, made afresh at each load and attested by the hardware key for
    /// [`HARDWARE_ATTESTATION_VALIDITY_SECS`]. On any failure nothing is stored and no key is left behind.
    pub fn create_identity_in(
        &mut self,
        name: &str,
        vault_spec: &str,
        options: IdentityOptions,
    ) -> Result<(LocalIdentity, IdentitySummary)> {
        check_name(name)?;
        if options.key_validity_secs > latchkey_core::identity::MAX_KEY_LIFETIME_SECS {
            return Err(RuntimeError::Storage(format!(
                "a key validity of {} s exceeds the maximum key lifetime peers accept ({} s)",
                options.key_validity_secs,
                latchkey_core::identity::MAX_KEY_LIFETIME_SECS
            )));
        }
        let exists: Option<String> = self
            .conn
            .query_row("SELECT name FROM identities WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_some() {
            return Err(RuntimeError::IdentityExists(name.to_string()));
        }
        let opened = OpenedVault::open(vault_spec)?;
        let options = opened.options(options, None);
        let identity = LocalIdentity::create_in(opened.vaults.clone(), options, Timestamp::now())?;
        let stored = (|| {
            let (seed, secret) = opened.key_references(&identity)?;
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
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
                params![
                    name,
                    identity.identifier().to_string(),
                    identity.history().export(),
                    seed.as_slice(),
                    secret.as_slice(),
                    t,
                    opened.spec
                ],
            )?;
            tx.commit()?;
            Ok(())
        })();
        if let Err(e) = stored {
            // Nothing half-written: the keys just made in hardware go again.
            if !opened.is_software() {
                let _ = identity
                    .vaults()
                    .signing()
                    .delete_signing_key(identity.primary_key());
                if opened.static_in_vault {
                    let _ = identity
                        .vaults()
                        .secure_channel()
                        .delete_x25519_key(identity.static_key());
                }
            }
            return Err(e);
        }
        let summary = self.summary(name)?;
        Ok((identity, summary))
    }

    /// Loads an identity with its keys (for a hardware vault: opens the vault and finds the keys by
    /// reference).
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
        let history = ChangeHistory::import(&history)?;
        if vault != SOFTWARE {
            let opened = OpenedVault::open(&vault).map_err(|e| match e {
                RuntimeError::Storage(msg) => {
                    RuntimeError::Storage(format!("identity {name:?}: {msg}"))
                }
                other => other,
            })?;
            let options = opened.options(IdentityOptions::default(), Some(&history));
            let reference = |bytes: &[u8], what: &str| -> Result<KeyId> {
                std::str::from_utf8(bytes).map(KeyId::new).map_err(|_| {
                    RuntimeError::Storage(format!("stored {what} reference is not text"))
                })
            };
            let primary = reference(&seed, "signing key")?;
            let static_key = if opened.static_in_vault {
                reference(&secret, "static key")?
            } else {
                opened.vaults.secure_channel().generate_x25519_key()?
            };
            return Ok(LocalIdentity::restore(
                opened.vaults,
                options,
                history,
                primary,
                static_key,
                Timestamp::now(),
            )?);
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
            history,
            primary,
            static_key,
            Timestamp::now(),
        )?)
    }

    /// The vault spec an identity's keys live in (`software`, `pkcs11:…`, `tpm:…`; never a secret).
    pub fn identity_vault(&self, name: &str) -> Result<String> {
        self.conn
            .query_row(
                "SELECT vault FROM identities WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| RuntimeError::UnknownIdentity(name.to_string()))
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

    /// Rotates the primary key: the new history and key reference replace the old in one transaction, so a
    /// failure leaves the stored identity exactly as it was. A hardware key rotated away is deleted from
    /// its vault only after the new state is stored (a new key whose state could not be stored is deleted
    /// instead).
    pub fn rotate_identity(&mut self, name: &str) -> Result<IdentitySummary> {
        let vault = self.identity_vault(name)?;
        let identity = self.load_identity(name)?;
        let (rotated, old) = identity.rotated(None, Timestamp::now())?;
        let software = vault == SOFTWARE;
        if software {
            // The loaded vault is this call's own: the old key goes with it, and storage keeps only the new one.
            let _ = identity.vaults().signing().delete_signing_key(&old);
        }
        let seed: KeyReference = if software {
            key_references(&rotated)?.0
        } else {
            Zeroizing::new(rotated.primary_key().as_str().as_bytes().to_vec())
        };
        let stored = (|| {
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
            Ok(())
        })();
        let signing = rotated.vaults().signing();
        if let Err(e) = stored {
            if !software {
                let _ = signing.delete_signing_key(rotated.primary_key());
            }
            return Err(e);
        }
        if !software {
            if let Err(e) = signing.delete_signing_key(&old) {
                tracing::warn!(identity = name, error = %e, "the rotated-away hardware key could not be deleted");
            }
        }
        // The rotated-away seed: overwritten in the database (secure_delete), and out of the WAL.
        self.scrub_wal()?;
        self.summary(name)
    }
}

/// The vault spec of keys kept in software (the secrets in the store).
pub const SOFTWARE: &str = "software";

/// How long an attestation of a software Noise static key by a hardware identity key lasts: the static key
/// lives in memory only and is made afresh at each load, so a stolen one is useless a day later.
pub const HARDWARE_ATTESTATION_VALIDITY_SECS: u64 = 86_400;

/// A vault opened from a spec, with what the store needs to know about it.
struct OpenedVault {
    /// The canonical spec as stored (no secret in it).
    spec: String,
    vaults: Vaults,
    /// Whether the Noise static key lives in the vault (else: in memory, made at each load).
    static_in_vault: bool,
    /// The identity-key algorithm for new keys (`None`: the caller's choice).
    algorithm: Option<latchkey_core::vault::SigningAlgorithm>,
}

impl OpenedVault {
    fn open(spec: &str) -> Result<OpenedVault> {
        if spec == SOFTWARE {
            return Ok(OpenedVault {
                spec: SOFTWARE.into(),
                vaults: Vaults::software(Arc::new(SoftwareVault::new())),
                static_in_vault: true,
                algorithm: None,
            });
        }
        let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
        match kind {
            "pkcs11" => Self::open_pkcs11(rest),
            "tpm" => Self::open_tpm(rest),
            _ => Err(RuntimeError::Storage(format!(
                "unknown vault {spec:?}: use software, pkcs11:module=PATH,token=LABEL or tpm:TCTI"
            ))),
        }
    }

    #[cfg(feature = "pkcs11")]
    fn open_pkcs11(rest: &str) -> Result<OpenedVault> {
        use latchkey_core::vault::Pkcs11Vault;
        let vault = Arc::new(Pkcs11Vault::open_spec(rest)?);
        let spec = format!("pkcs11:{}", vault.config().spec());
        let algorithm = Some(vault.preferred_algorithm());
        let (vaults, static_in_vault) = if vault.has_x25519() {
            (Vaults::new(vault.clone(), vault), true)
        } else {
            (Vaults::new(vault, Arc::new(SoftwareVault::new())), false)
        };
        Ok(OpenedVault {
            spec,
            vaults,
            static_in_vault,
            algorithm,
        })
    }

    #[cfg(not(feature = "pkcs11"))]
    fn open_pkcs11(_: &str) -> Result<OpenedVault> {
        Err(latchkey_core::Error::ModuleNotFound(
            "this build has no PKCS#11 support (build latchkey with the cargo feature pkcs11)"
                .into(),
        )
        .into())
    }

    #[cfg(feature = "tpm")]
    fn open_tpm(tcti: &str) -> Result<OpenedVault> {
        let vault = Arc::new(latchkey_core::vault::TpmVault::open(tcti)?);
        Ok(OpenedVault {
            spec: format!("tpm:{tcti}"),
            vaults: Vaults::new(vault, Arc::new(SoftwareVault::new())),
            static_in_vault: false,
            algorithm: Some(latchkey_core::vault::SigningAlgorithm::EcdsaP256),
        })
    }

    #[cfg(not(feature = "tpm"))]
    fn open_tpm(_: &str) -> Result<OpenedVault> {
        Err(latchkey_core::Error::ModuleNotFound(
            "this build has no TPM support (build latchkey with the cargo feature tpm)".into(),
        )
        .into())
    }

    fn is_software(&self) -> bool {
        self.spec == SOFTWARE
    }

    /// `options` adjusted to the vault: its algorithm (or, for a stored identity, the algorithm of its
    /// current key) and a short attestation for a static key kept in memory.
    fn options(
        &self,
        mut options: IdentityOptions,
        history: Option<&ChangeHistory>,
    ) -> IdentityOptions {
        if let Some(h) = history {
            options.algorithm = h.primary_public_key().algorithm();
        } else if let Some(a) = self.algorithm {
            options.algorithm = a;
        }
        if !self.static_in_vault {
            options.attestation_validity_secs = options
                .attestation_validity_secs
                .min(HARDWARE_ATTESTATION_VALIDITY_SECS);
        }
        options
    }

    /// What the store keeps for the two keys: software secrets, or hardware references (an empty static
    /// reference: the static key is made at each load).
    fn key_references(&self, identity: &LocalIdentity) -> Result<(KeyReference, KeyReference)> {
        if self.is_software() {
            return key_references(identity);
        }
        let static_ref = if self.static_in_vault {
            identity.static_key().as_str().as_bytes().to_vec()
        } else {
            Vec::new()
        };
        Ok((
            Zeroizing::new(identity.primary_key().as_str().as_bytes().to_vec()),
            Zeroizing::new(static_ref),
        ))
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

/// Reads a pinned history back from the `peers` table: the one place pins are loaded. A pin was
/// authenticated before it was stored — presented in a handshake (links and signatures checked as presented,
/// with the attestation: `ChangeHistory::verify_presented_signatures`, PROTOCOL.md 3.4) or handed over as
/// bytes and fully checked by `ChangeHistory::import` — so it is reloaded under the same presented rule
/// (`ChangeHistory::import_presented`). The full check would refuse the pin of a peer whose first
/// self-signature is bad but whose handshakes are accepted, and that peer would then be refused forever.
fn load_pin(bytes: &[u8]) -> latchkey_core::Result<ChangeHistory> {
    ChangeHistory::import_presented(bytes)
}

fn peer_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PeerSummary> {
    let history: Option<Vec<u8>> = r.get(2)?;
    let history = history.unwrap_or_default();
    let changes = if history.is_empty() {
        0
    } else {
        load_pin(&history).map(|h| h.changes().len()).unwrap_or(0)
    };
    Ok(PeerSummary {
        name: r.get(0)?,
        identifier: r.get(1)?,
        changes,
        history,
        pinned_at: r.get(3)?,
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

/// Creates `dir` 0700 when it does not exist. An existing directory is used as it is — its permissions are
/// never changed — if it is ours and neither group- nor world-writable; otherwise it is refused with an error
/// that says why (someone else could swap the database or its WAL under us).
#[cfg(unix)]
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
        Ok(_) => {
            // Follow a symlink to a directory (a home on another volume), then judge the directory itself.
            let meta = std::fs::metadata(dir)?;
            let shown = dir.display();
            if !meta.is_dir() {
                return Err(RuntimeError::Storage(format!("{shown} is not a directory")));
            }
            // SAFETY: geteuid has no preconditions and cannot fail.
            #[allow(unsafe_code)]
            let euid = unsafe { libc::geteuid() };
            if meta.uid() != euid {
                return Err(RuntimeError::Storage(format!(
                    "refusing to use {shown}: it is owned by user {} and not by you (user {euid}); use a \
                     directory of your own",
                    meta.uid()
                )));
            }
            if meta.mode() & 0o022 != 0 {
                return Err(RuntimeError::Storage(format!(
                    "refusing to use {shown}: it is writable by {} (mode {:o}); make it private with \
                     `chmod 700 {shown}` or choose another directory",
                    if meta.mode() & 0o002 != 0 { "everyone" } else { "its group" },
                    meta.mode() & 0o777
                )));
            }
            Ok(())
        }
    }
}

#[cfg(unix)]
pub(crate) fn create_private_file(path: &Path) -> Result<()> {
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
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn create_private_file(path: &Path) -> Result<()> {
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

    #[test]
    fn peers_pin_on_first_contact_follow_rotations_and_refuse_rollbacks_and_forks() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut other = Store::open(&dir.path().join("other")).unwrap();
        let (phone, _) = other.create_identity("phone").unwrap();
        let h0 = phone.history().clone();
        // Not pinned, and told not to pin: accepted, nothing stored.
        assert_eq!(store.check_and_pin(&h0, PinNew::DoNotPin).unwrap(), None);
        assert!(store.peers().unwrap().is_empty());
        assert_eq!(
            store.check_and_pin(&h0, PinNew::Pin).unwrap(),
            Some(PinCheck::FirstContact)
        );
        store.name_peer("phone", &h0.identifier()).unwrap();
        assert_eq!(store.peer("phone").unwrap().changes, 1);
        other.rotate_identity("phone").unwrap();
        let h1 = other.load_identity("phone").unwrap().history().clone();
        assert_eq!(
            store.check_and_pin(&h1, PinNew::DoNotPin).unwrap(),
            Some(PinCheck::Extended(1))
        );
        assert_eq!(store.peer("phone").unwrap().changes, 2);
        assert!(matches!(
            store.check_and_pin(&h0, PinNew::Pin),
            Err(RuntimeError::Core(latchkey_core::Error::HistoryRollback))
        ));
        // A fork: the same first state rotated differently elsewhere.
        let (fork, _) = phone.rotated(None, Timestamp::now()).unwrap();
        assert!(matches!(
            store.check_and_pin(fork.history(), PinNew::Pin),
            Err(RuntimeError::Core(latchkey_core::Error::HistoryFork))
        ));
        assert_eq!(
            store.peer("phone").unwrap().changes,
            2,
            "a refusal changes no pin"
        );
        // Names belong to one peer; forgetting erases the pin and the name.
        let (stranger, _) = other.create_identity("stranger").unwrap();
        assert!(matches!(
            store.name_peer("phone", &stranger.identifier()),
            Err(RuntimeError::PeerNameTaken { .. })
        ));
        let forgotten = store.forget_peer("phone").unwrap();
        assert_eq!(forgotten.identifier, h0.identifier().to_string());
        assert!(matches!(
            store.peer("phone"),
            Err(RuntimeError::UnknownPeer(_))
        ));
        assert_eq!(
            store.check_and_pin(&h0, PinNew::Pin).unwrap(),
            Some(PinCheck::FirstContact)
        );
        let secure_delete: i64 = store
            .conn
            .pragma_query_value(None, "secure_delete", |r| r.get(0))
            .unwrap();
        assert_eq!(secure_delete, 1);
        // The WAL is truncated after a delete.
        store.forget_peer(&h0.identifier().to_string()).unwrap();
        let wal = dir.path().join("latchkey.sqlite3-wal");
        assert_eq!(std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0), 0);
    }

    #[cfg(not(any(feature = "pkcs11", feature = "tpm")))]
    #[test]
    fn a_build_without_hardware_vaults_refuses_them_with_module_not_found_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        for spec in [
            "pkcs11:module=/m.so,token=t",
            "tpm:swtpm:host=127.0.0.1,port=2321",
        ] {
            let err = store
                .create_identity_in("hw", spec, IdentityOptions::default())
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    RuntimeError::Core(latchkey_core::Error::ModuleNotFound(_))
                ),
                "{err}"
            );
        }
        assert!(store.list().unwrap().is_empty());
        // A row written by a build that had them (a home shared with an HSM-enabled build) is refused the
        // same way, not guessed at.
        store.create_identity("alice").unwrap();
        store
            .conn
            .execute(
                "UPDATE identities SET vault = 'pkcs11:module=/m.so,token=t' WHERE name = 'alice'",
                [],
            )
            .unwrap();
        let err = store.load_identity("alice").unwrap_err();
        assert!(
            matches!(
                err,
                RuntimeError::Core(latchkey_core::Error::ModuleNotFound(_))
            ),
            "{err}"
        );
        assert_eq!(
            store.identity_vault("alice").unwrap(),
            "pkcs11:module=/m.so,token=t"
        );
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_home_keeps_its_permissions_and_an_unsafe_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
        Store::open(&home).unwrap();
        let mode = std::fs::metadata(&home).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o755,
            "an existing directory's permissions are not changed"
        );
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = Store::open(&home).unwrap_err().to_string();
        assert!(err.contains("writable by everyone"), "{err}");
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o770)).unwrap();
        let err = Store::open(&home).unwrap_err().to_string();
        assert!(err.contains("writable by its group"), "{err}");
        let mode = std::fs::metadata(&home).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o770);
        // A new one is created private.
        let fresh = dir.path().join("fresh");
        Store::open(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
