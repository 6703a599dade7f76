//! The authority's durable state: enrollment tokens, prekeys, members, issued credentials, revocations and
//! policies, behind [`AuthorityStore`] so that a PostgreSQL backend can follow [`SqliteAuthorityStore`] for
//! an authority that outgrows one machine.
//!
//! What the trait promises, whatever the backend:
//! - **Atomic enrollment.** [`AuthorityStore::enroll`] checks the token (known, not expired, uses left),
//!   consumes the one-time prekey the message used (if any), refuses a message already seen, inserts the
//!   member and its credential, and decrements the token's uses, all in one transaction: either everything
//!   happened or nothing did. Two enrollments racing for the last use of a token, or for one one-time prekey,
//!   cannot both succeed (SQLite: `BEGIN IMMEDIATE`, so writers are serialised across processes; PostgreSQL
//!   would use `SELECT … FOR UPDATE` in the same shape).
//! - **Durable when acknowledged.** A call returns `Ok` only after the transaction committed (`synchronous =
//!   FULL` with the WAL), so a member the authority acknowledged survives `kill -9` and power loss; a crash
//!   before the commit leaves no trace of the attempt.
//! - **Secrets.** Token secrets are never stored, only their SHA-256 (the caller hashes). One-time prekey
//!   secrets are erased (`secure_delete`) in the transaction that consumes them.
//! - **Versioned schema.** A `schema_version` table records the migrations applied; opening a store written
//!   by a newer version is refused rather than guessed at.
//!
//! Bytes that travel (credentials, revocation lists, histories) are stored as the core encodes them; this
//! module never parses them.

use crate::error::{Result, RuntimeError};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 1;

/// Attributes of a token or member: names to values (what policies read as `subject.NAME`).
pub type Attributes = BTreeMap<String, String>;

/// A token as the operator creates it (the secret itself is never stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewToken {
    /// SHA-256 of the token's secret.
    pub secret_hash: [u8; 32],
    /// Given to the member that enrolls with it.
    pub attributes: Attributes,
    /// Unix seconds after which the token is refused.
    pub expires_at: i64,
    /// How many enrollments it allows (at least 1).
    pub uses: u32,
}

/// A stored token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub secret_hash: [u8; 32],
    pub attributes: Attributes,
    pub expires_at: i64,
    pub uses_left: u32,
    pub created_at: i64,
}

/// A prekey's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrekeyKind {
    /// The signed prekey of the published bundle (kept until replaced, not consumed).
    Signed,
    /// A one-time prekey: used by at most one enrollment, then its secret is erased.
    OneTime,
    /// The authority's long-term X3DH key (`IK` of the bundle; not consumed).
    X3dh,
}

impl PrekeyKind {
    fn to_sql(self) -> i64 {
        match self {
            PrekeyKind::Signed => 1,
            PrekeyKind::OneTime => 2,
            PrekeyKind::X3dh => 3,
        }
    }
    fn from_sql(v: i64) -> rusqlite::Result<Self> {
        match v {
            1 => Ok(PrekeyKind::Signed),
            2 => Ok(PrekeyKind::OneTime),
            3 => Ok(PrekeyKind::X3dh),
            _ => Err(rusqlite::Error::IntegralValueOutOfRange(0, v)),
        }
    }
}

/// A prekey with its secret (X25519 public key and secret scalar).
#[derive(Clone)]
pub struct PrekeyRecord {
    /// Assigned by the store; the bundle names one-time prekeys by it.
    pub id: i64,
    pub kind: PrekeyKind,
    pub public: [u8; 32],
    pub secret: Zeroizing<[u8; 32]>,
    /// The authority's signature over the public key (signed prekeys; empty for one-time prekeys).
    pub signature: Vec<u8>,
    pub created_at: i64,
}

impl std::fmt::Debug for PrekeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrekeyRecord")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("public", &hex::encode(self.public))
            .finish_non_exhaustive()
    }
}

/// A prekey to store.
pub struct NewPrekey {
    pub public: [u8; 32],
    pub secret: Zeroizing<[u8; 32]>,
    /// The authority's signature over the public key (signed prekeys; empty for one-time prekeys).
    pub signature: Vec<u8>,
    pub created_at: i64,
}

/// One enrollment, as the authority decided it after reading and checking the device's message.
#[derive(Clone, Debug)]
pub struct Enrollment<'a> {
    /// SHA-256 of the token secret the message proved.
    pub token_hash: [u8; 32],
    /// The one-time prekey the message was encrypted to (`None`: the signed prekey only).
    pub one_time_prekey: Option<i64>,
    /// SHA-256 of the enrollment message: a message seen before is refused (replay).
    pub message_hash: [u8; 32],
    /// The device's identifier (text form) and its change history (core export bytes).
    pub identifier: &'a str,
    pub history: &'a [u8],
    /// The hash of the history's latest change (what the credential names).
    pub history_hash: [u8; 32],
    /// The credential issued with it, if it is made before the transaction (online enrollment); an X3DH
    /// enrollment records it right after ([`AuthorityStore::record_credential`]).
    pub credential: Option<IssuedCredential<'a>>,
    /// The authority's clock (tests inject it).
    pub now: i64,
}

/// A credential as the store records it.
#[derive(Clone, Copy, Debug)]
pub struct IssuedCredential<'a> {
    pub id: [u8; 16],
    pub bytes: &'a [u8],
    pub expires_at: i64,
}

/// Why an enrollment was refused by the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnrollRefusal {
    /// No token with this secret (never created, or removed).
    UnknownToken,
    /// The token's expiry has passed.
    TokenExpired,
    /// The token has no uses left.
    TokenUsedUp,
    /// The one-time prekey is unknown or already consumed.
    PrekeyUnavailable,
    /// This exact enrollment message was processed before.
    Replay,
    /// The identifier is already a member (a second enrollment of the same device is refused; it refreshes
    /// its credential over its channel instead).
    AlreadyMember,
}

impl EnrollRefusal {
    /// The reason in words (what `latchkey_core::Error::EnrollmentRefused` carries).
    pub fn reason(self) -> &'static str {
        match self {
            EnrollRefusal::UnknownToken => "unknown enrollment token",
            EnrollRefusal::TokenExpired => "the enrollment token has expired",
            EnrollRefusal::TokenUsedUp => "the enrollment token has been used up",
            EnrollRefusal::PrekeyUnavailable => "the one-time prekey is unknown or already used",
            EnrollRefusal::Replay => "this enrollment message was already processed",
            EnrollRefusal::AlreadyMember => "this identity is already a member",
        }
    }
}

impl std::fmt::Display for EnrollRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// A member of the authority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub identifier: String,
    pub history: Vec<u8>,
    pub history_hash: [u8; 32],
    pub attributes: Attributes,
    /// The id of the latest credential issued to it (`None`: enrolled, credential not recorded yet).
    pub credential_id: Option<[u8; 16]>,
    pub enrolled_at: i64,
    pub updated_at: i64,
}

/// What a revocation names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Revoked {
    /// An identifier (text form): every credential of it, and its channels.
    Identifier(String),
    /// One credential id.
    Credential([u8; 16]),
    /// One delegation id.
    Delegation([u8; 16]),
}

/// Every revocation so far, and the sequence number of the latest change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevocationState {
    pub sequence: u64,
    pub entries: Vec<Revoked>,
}

/// The authority's storage. Every method is one transaction.
pub trait AuthorityStore: Send {
    /// Stores a new token. A token with the same secret hash is refused.
    fn add_token(&mut self, token: &NewToken, now: i64) -> Result<()>;
    fn token(&self, secret_hash: &[u8; 32]) -> Result<Option<TokenRecord>>;

    /// Stores prekeys (a signed prekey replaces the current one); returns them with their ids.
    fn add_prekeys(&mut self, kind: PrekeyKind, keys: &[NewPrekey]) -> Result<Vec<i64>>;
    /// The current signed prekey (or X3DH key, with `PrekeyKind::X3dh`).
    fn current_prekey(&self, kind: PrekeyKind) -> Result<Option<PrekeyRecord>>;
    /// A prekey by kind and id, if not retired or consumed.
    fn prekey(&self, kind: PrekeyKind, id: i64) -> Result<Option<PrekeyRecord>>;
    /// Up to `n` unconsumed one-time prekeys, oldest first (what the published bundle offers).
    fn available_one_time_prekeys(&self, n: usize) -> Result<Vec<(i64, [u8; 32])>>;
    fn count_one_time_prekeys(&self) -> Result<usize>;

    /// The atomic enrollment (module documentation). `Ok(Err(refusal))`: refused, nothing changed.
    fn enroll(
        &mut self,
        enrollment: &Enrollment<'_>,
    ) -> Result<std::result::Result<Member, EnrollRefusal>>;
    /// Records the credential issued for an enrollment (after [`Self::enroll`] without one).
    fn record_credential(
        &mut self,
        identifier: &str,
        credential: IssuedCredential<'_>,
        now: i64,
    ) -> Result<()>;
    fn member(&self, identifier: &str) -> Result<Option<Member>>;
    fn members(&self) -> Result<Vec<Member>>;
    /// A member rotated its key: store its longer history (membership is kept) and a fresh credential.
    fn update_member(
        &mut self,
        identifier: &str,
        history: &[u8],
        history_hash: [u8; 32],
        credential: IssuedCredential<'_>,
        now: i64,
    ) -> Result<()>;
    /// Removes a member (it gets no new credentials; revoke it to stop the ones it holds).
    fn remove_member(&mut self, identifier: &str) -> Result<bool>;

    /// Records revocations; returns the new sequence number (one step per call).
    fn revoke(&mut self, entries: &[Revoked], now: i64) -> Result<u64>;
    fn revocations(&self) -> Result<RevocationState>;
    /// Stores the signed list for a sequence number (what nodes fetch), and reads the latest back.
    fn put_revocation_list(&mut self, sequence: u64, signed: &[u8]) -> Result<()>;
    fn latest_revocation_list(&self) -> Result<Option<(u64, Vec<u8>)>>;

    fn set_policy(&mut self, name: &str, text: &str, now: i64) -> Result<()>;
    fn policy(&self, name: &str) -> Result<Option<String>>;
    fn policies(&self) -> Result<Vec<(String, String)>>;
}

/// The SQLite backend: one database file (WAL, `synchronous = FULL`, `secure_delete`), created 0600 in a
/// 0700 directory. Several processes may open the same file; writers are serialised by SQLite's lock.
pub struct SqliteAuthorityStore {
    conn: Connection,
    path: PathBuf,
    /// A group-commit batch is open ([`SqliteAuthorityStore::begin_batch`]).
    batch: bool,
}

impl std::fmt::Debug for SqliteAuthorityStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteAuthorityStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

const MIGRATION_1: &str = "
CREATE TABLE tokens (
    secret_hash BLOB PRIMARY KEY,
    attributes BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    uses_left INTEGER NOT NULL CHECK (uses_left >= 0),
    created_at INTEGER NOT NULL
);
CREATE TABLE prekeys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL,
    public BLOB NOT NULL UNIQUE,
    secret BLOB,
    signature BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    consumed_at INTEGER
);
CREATE INDEX prekeys_available ON prekeys (kind, consumed_at, id);
CREATE TABLE members (
    identifier TEXT PRIMARY KEY,
    history BLOB NOT NULL,
    history_hash BLOB NOT NULL,
    attributes BLOB NOT NULL,
    credential_id BLOB,
    token_hash BLOB NOT NULL,
    enrolled_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE credentials (
    id BLOB PRIMARY KEY,
    identifier TEXT NOT NULL,
    bytes BLOB NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE enrollments (
    message_hash BLOB PRIMARY KEY,
    identifier TEXT NOT NULL,
    token_hash BLOB NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE revocations (
    kind INTEGER NOT NULL,
    value BLOB NOT NULL,
    sequence INTEGER NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE TABLE revocation_lists (
    sequence INTEGER PRIMARY KEY,
    signed BLOB NOT NULL
);
CREATE TABLE policies (
    name TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
";

/// The migrations, in order: migration `i` brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[MIGRATION_1];

impl SqliteAuthorityStore {
    /// Opens (creating and migrating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::storage::create_private_dir(dir)?;
        }
        crate::storage::create_private_file(path)?;
        let mut conn = Connection::open(path)?;
        // A racing writer waits instead of failing: enrollments serialise on the write lock.
        conn.busy_timeout(Duration::from_secs(60))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(SqliteAuthorityStore {
            conn,
            path: path.to_path_buf(),
            batch: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version recorded in the file.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))?)
    }

    /// SQLite's `PRAGMA integrity_check`: `Ok(())` when it answers "ok".
    pub fn integrity_check(&self) -> Result<()> {
        let answer: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if answer == "ok" {
            Ok(())
        } else {
            Err(RuntimeError::Storage(format!(
                "integrity check failed: {answer}"
            )))
        }
    }

    /// SQLite's `PRAGMA data_version`: it changes when another connection (another process, such as
    /// `latchkey revoke`) has committed to the file since this connection last looked. Reads no table.
    pub fn data_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    /// One write: its own `BEGIN IMMEDIATE … COMMIT`, or, inside a batch, a savepoint of the batch's
    /// transaction (a refusal rolls back only its own changes).
    fn immediate(&mut self) -> Result<Txn<'_>> {
        let batch = self.batch;
        self.conn.execute_batch(if batch {
            "SAVEPOINT one"
        } else {
            "BEGIN IMMEDIATE"
        })?;
        Ok(Txn {
            conn: &self.conn,
            batch,
            done: false,
        })
    }

    /// Group commit: the writes until [`Self::commit_batch`] share one transaction (and one `fsync`).
    /// Nothing is durable, and nothing may be acknowledged, before `commit_batch` returns `Ok`; if it fails
    /// (or the process dies first) none of them happened. Used by the authority to enroll a queue of
    /// requests per commit.
    pub fn begin_batch(&mut self) -> Result<()> {
        if self.batch {
            return Err(RuntimeError::Storage("a batch is already open".into()));
        }
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        self.batch = true;
        Ok(())
    }

    /// Commits the batch (see [`Self::begin_batch`]).
    pub fn commit_batch(&mut self) -> Result<()> {
        if !self.batch {
            return Err(RuntimeError::Storage("no batch is open".into()));
        }
        self.batch = false;
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
        Ok(())
    }

    /// Abandons the batch: none of its writes happened.
    pub fn rollback_batch(&mut self) {
        if self.batch {
            self.batch = false;
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// A write in progress (see [`SqliteAuthorityStore::immediate`]): dropped without [`Txn::commit`], it rolls
/// back.
struct Txn<'a> {
    conn: &'a Connection,
    batch: bool,
    done: bool,
}

impl std::ops::Deref for Txn<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Txn<'_> {
    fn commit(mut self) -> Result<()> {
        self.done = true;
        self.conn
            .execute_batch(if self.batch { "RELEASE one" } else { "COMMIT" })
            .inspect_err(|_| {
                let _ = self.conn.execute_batch(if self.batch {
                    "ROLLBACK TO one; RELEASE one"
                } else {
                    "ROLLBACK"
                });
            })?;
        Ok(())
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.conn.execute_batch(if self.batch {
                "ROLLBACK TO one; RELEASE one"
            } else {
                "ROLLBACK"
            });
        }
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);",
    )?;
    let current: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    if current > SCHEMA_VERSION {
        return Err(RuntimeError::Storage(format!(
            "the authority store has schema version {current}; this build knows up to {SCHEMA_VERSION}"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)",
            params![i as i64 + 1, crate::authority::unix_now()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Attributes as the store keeps them: count, then for each name and value a u16 length and the bytes.
/// (A storage encoding only; credentials carry attributes in the core's wire format.)
pub(crate) fn encode_attributes(a: &Attributes) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(a.len() as u32).to_be_bytes());
    for (k, v) in a {
        for s in [k, v] {
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

pub(crate) fn decode_attributes(mut b: &[u8]) -> Result<Attributes> {
    let bad = || RuntimeError::Storage("stored attributes are unreadable".into());
    let mut take = |n: usize| -> Result<&[u8]> {
        if b.len() < n {
            return Err(bad());
        }
        let (h, t) = b.split_at(n);
        b = t;
        Ok(h)
    };
    let count = u32::from_be_bytes(take(4)?.try_into().map_err(|_| bad())?);
    let mut out = Attributes::new();
    for _ in 0..count {
        let mut pair = [String::new(), String::new()];
        for s in &mut pair {
            let n = u32::from_be_bytes(take(4)?.try_into().map_err(|_| bad())?) as usize;
            *s = String::from_utf8(take(n)?.to_vec()).map_err(|_| bad())?;
        }
        let [k, v] = pair;
        out.insert(k, v);
    }
    Ok(out)
}

fn blob32(v: Vec<u8>) -> rusqlite::Result<[u8; 32]> {
    v.try_into()
        .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, -1))
}

fn blob16(v: Vec<u8>) -> rusqlite::Result<[u8; 16]> {
    v.try_into()
        .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, -1))
}

fn revoked_to_sql(r: &Revoked) -> (i64, Vec<u8>) {
    match r {
        Revoked::Identifier(s) => (1, s.as_bytes().to_vec()),
        Revoked::Credential(id) => (2, id.to_vec()),
        Revoked::Delegation(id) => (3, id.to_vec()),
    }
}

fn revoked_from_sql(kind: i64, value: Vec<u8>) -> rusqlite::Result<Revoked> {
    Ok(match kind {
        1 => Revoked::Identifier(
            String::from_utf8(value).map_err(|e| rusqlite::Error::Utf8Error(e.utf8_error()))?,
        ),
        2 => Revoked::Credential(blob16(value)?),
        3 => Revoked::Delegation(blob16(value)?),
        _ => return Err(rusqlite::Error::IntegralValueOutOfRange(0, kind)),
    })
}

fn prekey_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PrekeyRecord> {
    let secret: Zeroizing<Vec<u8>> = Zeroizing::new(r.get(3)?);
    let mut s = Zeroizing::new([0u8; 32]);
    if secret.len() != 32 {
        return Err(rusqlite::Error::IntegralValueOutOfRange(3, -1));
    }
    s.copy_from_slice(&secret);
    Ok(PrekeyRecord {
        id: r.get(0)?,
        kind: PrekeyKind::from_sql(r.get(1)?)?,
        public: blob32(r.get(2)?)?,
        secret: s,
        signature: r.get(4)?,
        created_at: r.get(5)?,
    })
}

const MEMBER_COLUMNS: &str =
    "identifier, history, history_hash, attributes, credential_id, enrolled_at, updated_at";

fn member_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Member, Vec<u8>)> {
    Ok((
        Member {
            identifier: r.get(0)?,
            history: r.get(1)?,
            history_hash: blob32(r.get(2)?)?,
            attributes: Attributes::new(),
            credential_id: r.get::<_, Option<Vec<u8>>>(4)?.map(blob16).transpose()?,
            enrolled_at: r.get(5)?,
            updated_at: r.get(6)?,
        },
        r.get(3)?,
    ))
}

fn finish_member((mut m, attributes): (Member, Vec<u8>)) -> Result<Member> {
    m.attributes = decode_attributes(&attributes)?;
    Ok(m)
}

impl AuthorityStore for SqliteAuthorityStore {
    fn add_token(&mut self, token: &NewToken, now: i64) -> Result<()> {
        if token.uses == 0 {
            return Err(RuntimeError::Storage(
                "a token needs at least one use".into(),
            ));
        }
        let tx = self.immediate()?;
        let inserted = tx.execute(
            "INSERT INTO tokens (secret_hash, attributes, expires_at, uses_left, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            params![
                &token.secret_hash[..],
                encode_attributes(&token.attributes),
                token.expires_at,
                token.uses,
                now
            ],
        )?;
        if inserted == 0 {
            return Err(RuntimeError::Storage(
                "a token with this secret already exists".into(),
            ));
        }
        tx.commit()?;
        Ok(())
    }

    fn token(&self, secret_hash: &[u8; 32]) -> Result<Option<TokenRecord>> {
        let row = self
            .conn
            .query_row(
                "SELECT attributes, expires_at, uses_left, created_at FROM tokens WHERE secret_hash = ?1",
                [&secret_hash[..]],
                |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                    ))
                },
            )
            .optional()?;
        row.map(|(a, expires_at, uses_left, created_at)| {
            Ok(TokenRecord {
                secret_hash: *secret_hash,
                attributes: decode_attributes(&a)?,
                expires_at,
                uses_left,
                created_at,
            })
        })
        .transpose()
    }

    fn add_prekeys(&mut self, kind: PrekeyKind, keys: &[NewPrekey]) -> Result<Vec<i64>> {
        let tx = self.immediate()?;
        if kind != PrekeyKind::OneTime {
            // The previous signed prekey (X3DH key) is retired: its secret erased, so messages to it no
            // longer open.
            tx.execute(
                "UPDATE prekeys SET secret = NULL, consumed_at = created_at WHERE kind = ?1 AND consumed_at IS NULL",
                [kind.to_sql()],
            )?;
        }
        let mut ids = Vec::with_capacity(keys.len());
        {
            let mut stmt = tx.prepare(
                "INSERT INTO prekeys (kind, public, secret, signature, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for key in keys {
                stmt.execute(params![
                    kind.to_sql(),
                    &key.public[..],
                    &key.secret[..],
                    key.signature,
                    key.created_at
                ])?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    fn current_prekey(&self, kind: PrekeyKind) -> Result<Option<PrekeyRecord>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, kind, public, secret, signature, created_at FROM prekeys
                 WHERE kind = ?1 AND consumed_at IS NULL ORDER BY id DESC LIMIT 1",
                [kind.to_sql()],
                prekey_row,
            )
            .optional()?)
    }

    fn prekey(&self, kind: PrekeyKind, id: i64) -> Result<Option<PrekeyRecord>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, kind, public, secret, signature, created_at FROM prekeys
                 WHERE id = ?1 AND kind = ?2 AND consumed_at IS NULL",
                params![id, kind.to_sql()],
                prekey_row,
            )
            .optional()?)
    }

    fn available_one_time_prekeys(&self, n: usize) -> Result<Vec<(i64, [u8; 32])>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, public FROM prekeys WHERE kind = 2 AND consumed_at IS NULL ORDER BY id LIMIT ?1",
        )?;
        let rows = stmt.query_map([n as i64], |r| Ok((r.get(0)?, blob32(r.get(1)?)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn count_one_time_prekeys(&self) -> Result<usize> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM prekeys WHERE kind = 2 AND consumed_at IS NULL",
            [],
            |r| r.get(0),
        )?;
        Ok(n as usize)
    }

    fn enroll(&mut self, e: &Enrollment<'_>) -> Result<std::result::Result<Member, EnrollRefusal>> {
        let tx = self.immediate()?;
        // Dropping `tx` without commit rolls back: every refusal below leaves the store as it was.
        let seen: bool = tx
            .prepare_cached("SELECT 1 FROM enrollments WHERE message_hash = ?1")?
            .exists([&e.message_hash[..]])?;
        if seen {
            return Ok(Err(EnrollRefusal::Replay));
        }
        let token: Option<(Vec<u8>, i64, i64)> = tx
            .prepare_cached(
                "SELECT attributes, expires_at, uses_left FROM tokens WHERE secret_hash = ?1",
            )?
            .query_row([&e.token_hash[..]], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let Some((attributes, expires_at, uses_left)) = token else {
            return Ok(Err(EnrollRefusal::UnknownToken));
        };
        if e.now >= expires_at {
            return Ok(Err(EnrollRefusal::TokenExpired));
        }
        if uses_left <= 0 {
            return Ok(Err(EnrollRefusal::TokenUsedUp));
        }
        let member: bool = tx
            .prepare_cached("SELECT 1 FROM members WHERE identifier = ?1")?
            .exists([e.identifier])?;
        if member {
            return Ok(Err(EnrollRefusal::AlreadyMember));
        }
        if let Some(id) = e.one_time_prekey {
            let consumed = tx
                .prepare_cached(
                    "UPDATE prekeys SET consumed_at = ?2, secret = NULL
                     WHERE id = ?1 AND kind = 2 AND consumed_at IS NULL",
                )?
                .execute(params![id, e.now])?;
            if consumed != 1 {
                return Ok(Err(EnrollRefusal::PrekeyUnavailable));
            }
        }
        tx.prepare_cached("UPDATE tokens SET uses_left = uses_left - 1 WHERE secret_hash = ?1")?
            .execute([&e.token_hash[..]])?;
        tx.prepare_cached(
            "INSERT INTO enrollments (message_hash, identifier, token_hash, at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![&e.message_hash[..], e.identifier, &e.token_hash[..], e.now])?;
        tx.prepare_cached(
            "INSERT INTO members (identifier, history, history_hash, attributes, credential_id, token_hash,
                                  enrolled_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        )?
        .execute(params![
            e.identifier,
            e.history,
            &e.history_hash[..],
            attributes,
            e.credential.as_ref().map(|c| c.id.to_vec()),
            &e.token_hash[..],
            e.now
        ])?;
        if let Some(c) = &e.credential {
            tx.prepare_cached(
                "INSERT INTO credentials (id, identifier, bytes, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![&c.id[..], e.identifier, c.bytes, e.now, c.expires_at])?;
        }
        tx.commit()?;
        Ok(Ok(Member {
            identifier: e.identifier.to_string(),
            history: e.history.to_vec(),
            history_hash: e.history_hash,
            attributes: decode_attributes(&attributes)?,
            credential_id: e.credential.as_ref().map(|c| c.id),
            enrolled_at: e.now,
            updated_at: e.now,
        }))
    }

    fn record_credential(
        &mut self,
        identifier: &str,
        c: IssuedCredential<'_>,
        now: i64,
    ) -> Result<()> {
        let tx = self.immediate()?;
        tx.execute(
            "UPDATE members SET credential_id = ?2, updated_at = ?3 WHERE identifier = ?1",
            params![identifier, &c.id[..], now],
        )?;
        tx.execute(
            "INSERT INTO credentials (id, identifier, bytes, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO NOTHING",
            params![&c.id[..], identifier, c.bytes, now, c.expires_at],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn member(&self, identifier: &str) -> Result<Option<Member>> {
        self.conn
            .query_row(
                &format!("SELECT {MEMBER_COLUMNS} FROM members WHERE identifier = ?1"),
                [identifier],
                member_row,
            )
            .optional()?
            .map(finish_member)
            .transpose()
    }

    fn members(&self) -> Result<Vec<Member>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {MEMBER_COLUMNS} FROM members ORDER BY identifier"
        ))?;
        let rows = stmt.query_map([], member_row)?;
        rows.map(|r| finish_member(r?)).collect()
    }

    fn update_member(
        &mut self,
        identifier: &str,
        history: &[u8],
        history_hash: [u8; 32],
        credential: IssuedCredential<'_>,
        now: i64,
    ) -> Result<()> {
        let (credential_id, credential_expires_at) = (credential.id, credential.expires_at);
        let credential = credential.bytes;
        let tx = self.immediate()?;
        let n = tx.execute(
            "UPDATE members SET history = ?2, history_hash = ?3, credential_id = ?4, updated_at = ?5
             WHERE identifier = ?1",
            params![identifier, history, &history_hash[..], &credential_id[..], now],
        )?;
        if n != 1 {
            return Err(RuntimeError::UnknownPeer(identifier.to_string()));
        }
        tx.execute(
            "INSERT INTO credentials (id, identifier, bytes, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![&credential_id[..], identifier, credential, now, credential_expires_at],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn remove_member(&mut self, identifier: &str) -> Result<bool> {
        let tx = self.immediate()?;
        let n = tx.execute("DELETE FROM members WHERE identifier = ?1", [identifier])?;
        tx.commit()?;
        Ok(n == 1)
    }

    fn revoke(&mut self, entries: &[Revoked], now: i64) -> Result<u64> {
        let tx = self.immediate()?;
        let sequence: i64 = tx.query_row(
            "SELECT COALESCE(MAX(sequence), 0) + 1 FROM revocations",
            [],
            |r| r.get(0),
        )?;
        for entry in entries {
            let (kind, value) = revoked_to_sql(entry);
            tx.execute(
                "INSERT INTO revocations (kind, value, sequence, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
                params![kind, value, sequence, now],
            )?;
        }
        tx.commit()?;
        Ok(sequence as u64)
    }

    fn revocations(&self) -> Result<RevocationState> {
        let mut stmt = self
            .conn
            .prepare("SELECT kind, value, sequence FROM revocations ORDER BY kind, value")?;
        let mut sequence = 0u64;
        let rows = stmt.query_map([], |r| {
            Ok((revoked_from_sql(r.get(0)?, r.get(1)?)?, r.get::<_, i64>(2)?))
        })?;
        let mut entries = Vec::new();
        for row in rows {
            let (entry, seq) = row?;
            sequence = sequence.max(seq as u64);
            entries.push(entry);
        }
        Ok(RevocationState { sequence, entries })
    }

    fn put_revocation_list(&mut self, sequence: u64, signed: &[u8]) -> Result<()> {
        let tx = self.immediate()?;
        tx.execute(
            "INSERT INTO revocation_lists (sequence, signed) VALUES (?1, ?2)
             ON CONFLICT(sequence) DO UPDATE SET signed = ?2",
            params![sequence as i64, signed],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn latest_revocation_list(&self) -> Result<Option<(u64, Vec<u8>)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT sequence, signed FROM revocation_lists ORDER BY sequence DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )
            .optional()?)
    }

    fn set_policy(&mut self, name: &str, text: &str, now: i64) -> Result<()> {
        let tx = self.immediate()?;
        tx.execute(
            "INSERT INTO policies (name, text, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET text = ?2, updated_at = ?3",
            params![name, text, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn policy(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT text FROM policies WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn policies(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, text FROM policies ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_and_garbage_is_refused() {
        let mut a = Attributes::new();
        a.insert("role".into(), "engineer".into());
        a.insert("site".into(), "".into());
        assert_eq!(decode_attributes(&encode_attributes(&a)).unwrap(), a);
        assert!(decode_attributes(&[0, 0, 0, 1, 0, 0, 0, 9, b'x']).is_err());
        assert!(decode_attributes(&[0, 0]).is_err());
    }
}
