//! Store-and-forward mailboxes at a relay: a message for a recipient that is offline (an enrollment for an
//! authority that is down) waits at the relay, on disk, until the recipient collects it.
//!
//! - **Per recipient, opened by the recipient.** A mailbox belongs to an identifier. Only that identity,
//!   through a secure channel to the relay (its authenticated peer), may open, collect from, acknowledge and
//!   close it. Deposits for an identifier without an open mailbox are refused, so nobody can make the relay
//!   store mail for arbitrary names.
//! - **Anyone may deposit** (that is how a device without a channel reaches an offline authority), so
//!   deposits are bounded hard: a body of at most [`MailboxOptions::max_message`] bytes, at most
//!   `max_per_recipient` messages and `max_bytes_per_recipient` bytes waiting per mailbox, a per-source rate
//!   (a source is the transport connection, or the channel's peer) and a rate for the whole relay. A
//!   deposit that breaks a bound is refused with a reply saying which, and nothing is stored.
//! - **Persistent.** Mail is in SQLite (WAL, `synchronous = FULL`): a deposit is answered `ok` only after it
//!   is committed, so it survives a relay restart. Collection is at least once: the recipient collects a
//!   batch, processes it and then acknowledges the last id, which deletes that mail (`secure_delete`). A
//!   recipient that crashes between the two sees the batch again (an enrollment authority refuses the
//!   replayed message by its hash, so that is harmless).
//!
//! The relay cannot read the mail: enrollment messages are encrypted to the authority's prekeys.
//! Byte formats: docs/RUNTIME.md, "Relay mailboxes".

use crate::channel::ChannelHandle;
use crate::error::{Result, RuntimeError};
use crate::flow::Accepts;
use crate::message::{Address, Message, Route};
use crate::node::{Node, DEFAULT_MAILBOX};
use latchkey_core::identity::Identifier;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latchkey_core::wire::mailbox::{MailboxReply, MailboxRequest, MailboxStatus};
use latchkey_core::wire::{Decode, Encode};

// The bytes are the core's (`latchkey_core::wire::mailbox`); these names stay for callers.
/// Request kinds (first byte).
pub const DEPOSIT: u8 = latchkey_core::wire::mailbox::TAG_DEPOSIT;
pub const OPEN: u8 = latchkey_core::wire::mailbox::TAG_OPEN;
pub const COLLECT: u8 = latchkey_core::wire::mailbox::TAG_COLLECT;
pub const ACK: u8 = latchkey_core::wire::mailbox::TAG_ACK;
pub const CLOSE: u8 = latchkey_core::wire::mailbox::TAG_CLOSE;
/// The first byte of a collect reply.
pub const BATCH: u8 = latchkey_core::wire::mailbox::TAG_BATCH;
/// Owner: publish a blob anyone may fetch (an authority's signed prekey bundle), replacing the last one.
pub const PUBLISH: u8 = latchkey_core::wire::mailbox::TAG_PUBLISH;
/// Anyone: fetch the blob a recipient published: `0x08 ‖ recipient (32)`.
pub const FETCH: u8 = latchkey_core::wire::mailbox::TAG_FETCH;
/// The first byte of a fetch reply that carries the blob.
pub const PUBLISHED: u8 = latchkey_core::wire::mailbox::TAG_PUBLISHED;
/// Largest published blob.
pub const MAX_PUBLISHED: usize = latchkey_core::wire::mailbox::MAX_PUBLISHED;

/// Replies (ASCII) to deposits and to open/ack/close.
pub const REPLY_OK: &[u8] = b"ok";
/// No open mailbox for this recipient.
pub const REPLY_NO_MAILBOX: &[u8] = b"no-mailbox";
/// The recipient's mailbox holds its maximum count or bytes.
pub const REPLY_FULL: &[u8] = b"full";
/// The body exceeds the maximum message size.
pub const REPLY_TOO_LARGE: &[u8] = b"too-large";
/// The source (or the relay as a whole) deposits faster than allowed.
pub const REPLY_RATE: &[u8] = b"rate";
/// The request does not parse.
pub const REPLY_BAD: &[u8] = b"bad";
/// An owner operation that did not come out of a secure channel, or the relay serves its maximum mailboxes.
pub const REPLY_DENIED: &[u8] = b"denied";
/// The relay could not store the message (disk); nothing was stored.
pub const REPLY_ERROR: &[u8] = b"error";

fn status_reply(s: MailboxStatus) -> Vec<u8> {
    MailboxReply::Status(s).to_bytes()
}

/// The most a collect reply carries (under the channel's payload limit, with room for framing).
pub const MAX_BATCH_BYTES: usize = 48 * 1024;

/// A mailbox service's settings.
#[derive(Clone, Debug)]
pub struct MailboxOptions {
    /// The SQLite file holding the mail.
    pub path: PathBuf,
    /// Which secure channels may open and collect (normally the relay listener's flow). The peer must still
    /// be the mailbox's identifier.
    pub owner_accepts: Accepts,
    /// Largest body accepted (default 8 KiB; an enrollment message is far smaller).
    pub max_message: usize,
    /// Most messages waiting in one mailbox (default 10 000).
    pub max_per_recipient: usize,
    /// Most bytes waiting in one mailbox (default 16 MiB).
    pub max_bytes_per_recipient: usize,
    /// Most open mailboxes at this relay (default 1 000).
    pub max_mailboxes: usize,
    /// Deposits per second from one source, and the burst it may save up (default 20/s, burst 40).
    pub per_source_rate: (f64, f64),
    /// Deposits per second for the whole relay, and its burst (default 2 000/s, burst 4 000).
    pub total_rate: (f64, f64),
}

impl MailboxOptions {
    pub fn new(path: PathBuf, owner_accepts: Accepts) -> Self {
        MailboxOptions {
            path,
            owner_accepts,
            max_message: 8 * 1024,
            max_per_recipient: 10_000,
            max_bytes_per_recipient: 16 << 20,
            max_mailboxes: 1_000,
            per_source_rate: (20.0, 40.0),
            total_rate: (2_000.0, 4_000.0),
        }
    }
}

/// Why a deposit was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepositRefusal {
    NoMailbox,
    Full,
    TooLarge,
    Rate,
    Bad,
    Error,
}

impl DepositRefusal {
    /// The status word the refusal is answered with.
    pub fn status(self) -> MailboxStatus {
        match self {
            DepositRefusal::NoMailbox => MailboxStatus::NoMailbox,
            DepositRefusal::Full => MailboxStatus::Full,
            DepositRefusal::TooLarge => MailboxStatus::TooLarge,
            DepositRefusal::Rate => MailboxStatus::Rate,
            DepositRefusal::Bad => MailboxStatus::Bad,
            DepositRefusal::Error => MailboxStatus::Error,
        }
    }

    pub fn reply(self) -> &'static [u8] {
        self.status().word().as_bytes()
    }
}

/// The relay's mail on disk.
pub struct MailStore {
    conn: Connection,
}

impl std::fmt::Debug for MailStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailStore").finish_non_exhaustive()
    }
}

impl MailStore {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::storage::create_private_dir(dir)?;
        }
        crate::storage::create_private_file(path)?;
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "secure_delete", "ON")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);",
        )?;
        let version: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )?;
        if version > 1 {
            return Err(RuntimeError::Storage(format!(
                "the mail store has schema version {version}; this build knows up to 1"
            )));
        }
        if version < 1 {
            tx.execute_batch(
                "CREATE TABLE mailboxes (
                    recipient BLOB PRIMARY KEY,
                    count INTEGER NOT NULL DEFAULT 0,
                    bytes INTEGER NOT NULL DEFAULT 0,
                    opened_at INTEGER NOT NULL
                );
                CREATE TABLE mail (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    recipient BLOB NOT NULL REFERENCES mailboxes (recipient),
                    body BLOB NOT NULL,
                    deposited_at INTEGER NOT NULL
                );
                CREATE INDEX mail_by_recipient ON mail (recipient, id);
                CREATE TABLE published (
                    recipient BLOB PRIMARY KEY REFERENCES mailboxes (recipient),
                    blob BLOB NOT NULL,
                    at INTEGER NOT NULL
                );",
            )?;
            tx.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (1, ?1)",
                [crate::authority::unix_now()],
            )?;
        }
        tx.commit()?;
        Ok(MailStore { conn })
    }

    /// Opens `recipient`'s mailbox (already open: fine). `Ok(false)`: the relay serves its maximum.
    pub fn open_mailbox(&mut self, recipient: &Identifier, max_mailboxes: usize) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists = tx
            .prepare_cached("SELECT 1 FROM mailboxes WHERE recipient = ?1")?
            .exists([&recipient.as_bytes()[..]])?;
        if !exists {
            let n: i64 = tx.query_row("SELECT COUNT(*) FROM mailboxes", [], |r| r.get(0))?;
            if n as usize >= max_mailboxes {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO mailboxes (recipient, opened_at) VALUES (?1, ?2)",
                params![&recipient.as_bytes()[..], crate::authority::unix_now()],
            )?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// Stores the blob `recipient` publishes (its mailbox must be open).
    pub fn publish(&mut self, recipient: &Identifier, blob: &[u8]) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let open = tx
            .prepare_cached("SELECT 1 FROM mailboxes WHERE recipient = ?1")?
            .exists([&recipient.as_bytes()[..]])?;
        if !open {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO published (recipient, blob, at) VALUES (?1, ?2, ?3)
             ON CONFLICT(recipient) DO UPDATE SET blob = ?2, at = ?3",
            params![
                &recipient.as_bytes()[..],
                blob,
                crate::authority::unix_now()
            ],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// The blob `recipient` published, if any.
    pub fn fetch(&self, recipient: &Identifier) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row(
                "SELECT blob FROM published WHERE recipient = ?1",
                [&recipient.as_bytes()[..]],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Closes `recipient`'s mailbox and erases its mail.
    pub fn close_mailbox(&mut self, recipient: &Identifier) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM published WHERE recipient = ?1",
            [&recipient.as_bytes()[..]],
        )?;
        tx.execute(
            "DELETE FROM mail WHERE recipient = ?1",
            [&recipient.as_bytes()[..]],
        )?;
        tx.execute(
            "DELETE FROM mailboxes WHERE recipient = ?1",
            [&recipient.as_bytes()[..]],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Stores one message (bounds checked in the same transaction). Returns its id.
    pub fn deposit(
        &mut self,
        recipient: &Identifier,
        body: &[u8],
        options: &MailboxOptions,
    ) -> Result<std::result::Result<i64, DepositRefusal>> {
        if body.len() > options.max_message {
            return Ok(Err(DepositRefusal::TooLarge));
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let held: Option<(i64, i64)> = tx
            .prepare_cached("SELECT count, bytes FROM mailboxes WHERE recipient = ?1")?
            .query_row([&recipient.as_bytes()[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((count, bytes)) = held else {
            return Ok(Err(DepositRefusal::NoMailbox));
        };
        if count as usize >= options.max_per_recipient
            || bytes as usize + body.len() > options.max_bytes_per_recipient
        {
            return Ok(Err(DepositRefusal::Full));
        }
        tx.prepare_cached("INSERT INTO mail (recipient, body, deposited_at) VALUES (?1, ?2, ?3)")?
            .execute(params![
                &recipient.as_bytes()[..],
                body,
                crate::authority::unix_now()
            ])?;
        let id = tx.last_insert_rowid();
        tx.prepare_cached(
            "UPDATE mailboxes SET count = count + 1, bytes = bytes + ?2 WHERE recipient = ?1",
        )?
        .execute(params![&recipient.as_bytes()[..], body.len() as i64])?;
        tx.commit()?;
        Ok(Ok(id))
    }

    /// Up to `max` waiting messages (and at most [`MAX_BATCH_BYTES`] of them), oldest first.
    pub fn collect(&self, recipient: &Identifier, max: usize) -> Result<Vec<(i64, Vec<u8>)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, body FROM mail WHERE recipient = ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![&recipient.as_bytes()[..], max as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        let mut size = 0;
        for row in rows {
            let (id, body) = row?;
            size += 12 + body.len();
            if size > MAX_BATCH_BYTES && !out.is_empty() {
                break;
            }
            out.push((id, body));
        }
        Ok(out)
    }

    /// Deletes `recipient`'s messages up to and including `last`. Returns how many.
    pub fn ack(&mut self, recipient: &Identifier, last: i64) -> Result<usize> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (n, bytes): (i64, i64) = tx.query_row(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM mail WHERE recipient = ?1 AND id <= ?2",
            params![&recipient.as_bytes()[..], last],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        tx.execute(
            "DELETE FROM mail WHERE recipient = ?1 AND id <= ?2",
            params![&recipient.as_bytes()[..], last],
        )?;
        tx.execute(
            "UPDATE mailboxes SET count = count - ?2, bytes = bytes - ?3 WHERE recipient = ?1",
            params![&recipient.as_bytes()[..], n, bytes],
        )?;
        tx.commit()?;
        Ok(n as usize)
    }

    /// Messages and bytes waiting for `recipient` (`None`: no open mailbox).
    pub fn waiting(&self, recipient: &Identifier) -> Result<Option<(usize, usize)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT count, bytes FROM mailboxes WHERE recipient = ?1",
                [&recipient.as_bytes()[..]],
                |r| Ok((r.get::<_, i64>(0)? as usize, r.get::<_, i64>(1)? as usize)),
            )
            .optional()?)
    }
}

/// A token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-source and total deposit rates.
#[derive(Debug)]
struct Rates {
    per_source: (f64, f64),
    total: (f64, f64),
    sources: HashMap<String, Bucket>,
    all: Bucket,
}

impl Rates {
    fn new(options: &MailboxOptions) -> Self {
        let now = Instant::now();
        Rates {
            per_source: options.per_source_rate,
            total: options.total_rate,
            sources: HashMap::new(),
            all: Bucket {
                tokens: options.total_rate.1,
                at: now,
            },
        }
    }

    fn refill(b: &mut Bucket, (rate, burst): (f64, f64), now: Instant) {
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
    }

    /// Takes one deposit from `source`, or says it is over a rate.
    fn take(&mut self, source: &str, now: Instant) -> bool {
        Self::refill(&mut self.all, self.total, now);
        if self.all.tokens < 1.0 {
            return false;
        }
        if self.sources.len() >= 100_000 {
            // Bounded memory: forget the sources whose buckets are full again (idle ones).
            let per = self.per_source;
            self.sources.retain(|_, b| {
                Self::refill(b, per, now);
                b.tokens < per.1
            });
            if self.sources.len() >= 100_000 {
                return false;
            }
        }
        let per = self.per_source;
        let b = self.sources.entry(source.to_string()).or_insert(Bucket {
            tokens: per.1,
            at: now,
        });
        Self::refill(b, per, now);
        if b.tokens < 1.0 {
            return false;
        }
        b.tokens -= 1.0;
        self.all.tokens -= 1.0;
        true
    }
}

/// Counters of a running mailbox service.
#[derive(Clone, Debug, Default)]
pub struct MailboxHandle {
    stats: Arc<Mutex<MailboxStats>>,
}

/// What a mailbox service has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailboxStats {
    pub deposited: u64,
    pub refused: u64,
    pub collected: u64,
}

impl MailboxHandle {
    pub fn stats(&self) -> MailboxStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Encodes a deposit.
pub fn encode_deposit(recipient: &Identifier, body: &[u8]) -> Vec<u8> {
    MailboxRequest::Deposit {
        recipient: *recipient,
        body: body.to_vec(),
    }
    .to_bytes()
}

/// Encodes a collect reply: `0x06` then, per message, `id (u64 BE) ‖ length (u32 BE) ‖ body`.
pub fn encode_batch(batch: &[(i64, Vec<u8>)]) -> Vec<u8> {
    MailboxReply::Batch(
        batch
            .iter()
            .map(|(id, b)| (*id as u64, b.clone()))
            .collect(),
    )
    .to_bytes()
}

/// The source a deposit is rate-limited as: the channel's peer, or the transport connection (and datagram
/// sender).
fn source_of(message: &Message) -> String {
    match message.origin() {
        crate::origin::Origin::Channel(c) => format!("peer:{}", c.peer),
        crate::origin::Origin::Transport {
            connection, remote, ..
        } => format!("conn:{connection}:{remote:?}"),
        crate::origin::Origin::Local { .. } => "local".into(),
    }
}

/// Starts the mailbox service on the relay node `node`: deposits at `deposit` (any transport, any
/// channel), owner operations at `owner` (only `options.owner_accepts`, normally the relay listener's
/// channels, and only the mailbox's own identity).
pub fn start_mailbox(
    node: &Node,
    deposit: Address,
    owner: Address,
    options: MailboxOptions,
) -> Result<MailboxHandle> {
    if !node.is_relay() {
        return Err(RuntimeError::Insecure(
            "start_mailbox needs a node created with Node::relay",
        ));
    }
    if options.owner_accepts.takes_any_transport() {
        return Err(RuntimeError::Insecure(
            "mailbox owners must come out of secure channels",
        ));
    }
    let store = Arc::new(Mutex::new(MailStore::open(&options.path)?));
    let mut deposits = node.register_with(deposit.clone(), DEFAULT_MAILBOX, Accepts::relay())?;
    let mut owners = node.register_with(
        owner.clone(),
        DEFAULT_MAILBOX,
        options.owner_accepts.clone(),
    )?;
    let handle = MailboxHandle::default();
    let options = Arc::new(options);

    let (n, s, o, h) = (node.clone(), store.clone(), options.clone(), handle.clone());
    tokio::spawn(async move {
        let mut rates = Rates::new(&o);
        while let Some(message) = deposits.recv().await {
            let request = MailboxRequest::from_bytes(&message.payload);
            if let Ok(MailboxRequest::Fetch { recipient }) = request {
                let reply = if !rates.take(&source_of(&message), Instant::now()) {
                    status_reply(MailboxStatus::Rate)
                } else {
                    let s = s.clone();
                    match tokio::task::spawn_blocking(move || {
                        s.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .fetch(&recipient)
                    })
                    .await
                    {
                        Ok(Ok(Some(blob))) => MailboxReply::Published(blob).to_bytes(),
                        Ok(Ok(None)) => status_reply(MailboxStatus::NoMailbox),
                        _ => status_reply(MailboxStatus::Error),
                    }
                };
                if let Ok(r) = message.reply_to_origin(Route::new(), reply) {
                    let _ = n.try_send_as(&deposit, r);
                }
                continue;
            }
            let status = match request {
                Ok(MailboxRequest::Deposit { body, .. }) if body.len() > o.max_message => {
                    MailboxStatus::TooLarge
                }
                Ok(MailboxRequest::Deposit { .. })
                    if !rates.take(&source_of(&message), Instant::now()) =>
                {
                    MailboxStatus::Rate
                }
                Ok(MailboxRequest::Deposit { recipient, body }) => {
                    let (s, o2) = (s.clone(), o.clone());
                    let r = tokio::task::spawn_blocking(move || {
                        s.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .deposit(&recipient, &body, &o2)
                    })
                    .await;
                    match r {
                        Ok(Ok(Ok(_))) => MailboxStatus::Ok,
                        Ok(Ok(Err(refusal))) => refusal.status(),
                        Ok(Err(e)) => {
                            tracing::warn!("mailbox: storing a deposit failed: {e}");
                            MailboxStatus::Error
                        }
                        Err(_) => MailboxStatus::Error,
                    }
                }
                // A body over the wire limit is larger than any relay's maximum.
                Err(latchkey_core::Error::Decode("mailbox body too large")) => {
                    MailboxStatus::TooLarge
                }
                // Not a deposit (owner requests belong to the owner address).
                _ => MailboxStatus::Bad,
            };
            let reply = status.word().as_bytes();
            {
                let mut st = h.stats.lock().unwrap_or_else(|e| e.into_inner());
                if reply == REPLY_OK {
                    st.deposited += 1;
                } else {
                    st.refused += 1;
                }
            }
            if reply != REPLY_OK {
                tracing::debug!(
                    "mailbox: refused a deposit from {}: {}",
                    message.origin(),
                    String::from_utf8_lossy(reply)
                );
            }
            if let Ok(r) = message.reply_to_origin(Route::new(), reply.to_vec()) {
                let _ = n.try_send_as(&deposit, r);
            }
        }
    });

    let (n, s, o, h) = (node.clone(), store, options, handle.clone());
    tokio::spawn(async move {
        while let Some(message) = owners.recv().await {
            let reply = owner_request(&s, &o, &h, &message).await;
            if let Ok(r) = message.reply_to_origin(Route::new(), reply) {
                let _ = n.try_send_as(&owner, r);
            }
        }
    });
    Ok(handle)
}

async fn owner_request(
    store: &Arc<Mutex<MailStore>>,
    options: &MailboxOptions,
    handle: &MailboxHandle,
    message: &Message,
) -> Vec<u8> {
    // The mailbox is the authenticated peer's own: nobody names another identity's mailbox.
    let Some(peer) = message.peer() else {
        return REPLY_DENIED.to_vec();
    };
    let payload = message.payload.clone();
    let store = store.clone();
    let max_mailboxes = options.max_mailboxes;
    let r = tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, u64)> {
        let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
        let request = match MailboxRequest::from_bytes(&payload) {
            Ok(r) if r.is_owner_request() => r,
            _ => return Ok((status_reply(MailboxStatus::Bad), 0)),
        };
        Ok(match request {
            MailboxRequest::Open => {
                if store.open_mailbox(&peer, max_mailboxes)? {
                    (status_reply(MailboxStatus::Ok), 0)
                } else {
                    (status_reply(MailboxStatus::Denied), 0)
                }
            }
            MailboxRequest::Collect { max } => {
                let batch = store.collect(&peer, max as usize)?;
                let n = batch.len() as u64;
                (encode_batch(&batch), n)
            }
            MailboxRequest::Ack { last } => {
                store.ack(&peer, last.min(i64::MAX as u64) as i64)?;
                (status_reply(MailboxStatus::Ok), 0)
            }
            MailboxRequest::Close => {
                store.close_mailbox(&peer)?;
                (status_reply(MailboxStatus::Ok), 0)
            }
            MailboxRequest::Publish { blob } => {
                if store.publish(&peer, &blob)? {
                    (status_reply(MailboxStatus::Ok), 0)
                } else {
                    (status_reply(MailboxStatus::NoMailbox), 0)
                }
            }
            MailboxRequest::Deposit { .. } | MailboxRequest::Fetch { .. } => {
                (status_reply(MailboxStatus::Bad), 0)
            }
        })
    })
    .await;
    match r {
        Ok(Ok((reply, collected))) => {
            handle
                .stats
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .collected += collected;
            reply
        }
        Ok(Err(e)) => {
            tracing::warn!("mailbox: owner request of {peer} failed: {e}");
            REPLY_ERROR.to_vec()
        }
        Err(_) => REPLY_ERROR.to_vec(),
    }
}

/// Sends one request along `route` from a fresh reply address open to `accepts`, waits up to 5 s.
async fn request(node: &Node, route: Route, accepts: Accepts, payload: Vec<u8>) -> Result<Vec<u8>> {
    let mut inbox = node.register_with(node.unique_address("mailbox-client"), 4, accepts)?;
    let me = inbox.address().clone();
    let result = async {
        node.send_as(
            &me,
            Message::new(route, Route::from_addresses([me.clone()]), payload),
        )
        .await?;
        match tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await {
            Ok(Some(reply)) => Ok(reply.payload),
            Ok(None) => Err(RuntimeError::ChannelClosed),
            Err(_) => Err(RuntimeError::Timeout("relay mailbox")),
        }
    }
    .await;
    node.unregister(&me);
    result
}

fn status(reply: &[u8], what: &str) -> Result<()> {
    match MailboxReply::from_bytes(reply) {
        Ok(MailboxReply::Status(MailboxStatus::Ok)) => Ok(()),
        Ok(MailboxReply::Status(s)) => Err(RuntimeError::MailboxRefused(format!(
            "{what}: {}",
            s.word()
        ))),
        _ => Err(RuntimeError::MailboxRefused(format!(
            "{what}: an unreadable reply"
        ))),
    }
}

/// Deposits `body` for `recipient` at the mailbox service at the end of `route` (e.g. `[tcp-out#…,
/// "mailbox"]`); `reply_flow` is the flow the answer comes back on (the connection's, or a channel's).
pub async fn deposit(
    node: &Node,
    route: Route,
    reply_flow: crate::origin::FlowId,
    recipient: &Identifier,
    body: &[u8],
) -> Result<()> {
    let reply = request(
        node,
        route,
        Accepts::flow(reply_flow),
        encode_deposit(recipient, body),
    )
    .await?;
    status(&reply, "deposit")
}

/// Fetches what `recipient` published at the mailbox service at the end of `route` (see [`deposit`]).
pub async fn fetch(
    node: &Node,
    route: Route,
    reply_flow: crate::origin::FlowId,
    recipient: &Identifier,
) -> Result<Vec<u8>> {
    let p = MailboxRequest::Fetch {
        recipient: *recipient,
    }
    .to_bytes();
    let reply = request(node, route, Accepts::flow(reply_flow), p).await?;
    match MailboxReply::from_bytes(&reply) {
        Ok(MailboxReply::Published(blob)) => Ok(blob),
        _ => status(&reply, "fetch").and(Err(RuntimeError::MailboxRefused(
            "fetch: an unexpected reply".into(),
        ))),
    }
}

/// The owner side, through a secure channel to the relay.
#[derive(Clone, Debug)]
pub struct MailboxClient {
    node: Node,
    channel: ChannelHandle,
    service: Address,
}

impl MailboxClient {
    /// `service`: the owner address of the relay's mailbox service (e.g. `mailbox-owner`).
    pub fn new(node: &Node, channel: &ChannelHandle, service: Address) -> Self {
        MailboxClient {
            node: node.clone(),
            channel: channel.clone(),
            service,
        }
    }

    async fn call(&self, payload: Vec<u8>) -> Result<Vec<u8>> {
        let accepts = Accepts::flow(self.channel.flow()).from_peers([self.channel.peer()]);
        request(
            &self.node,
            self.channel.route_to(self.service.clone()),
            accepts,
            payload,
        )
        .await
    }

    /// Opens this identity's mailbox at the relay (idempotent).
    pub async fn open(&self) -> Result<()> {
        status(&self.call(MailboxRequest::Open.to_bytes()).await?, "open")
    }

    /// Up to `max` waiting messages, oldest first, with their ids (acknowledge them after processing).
    pub async fn collect(&self, max: u16) -> Result<Vec<(u64, Vec<u8>)>> {
        let p = MailboxRequest::Collect { max: max.max(1) }.to_bytes();
        let reply = self.call(p).await?;
        match MailboxReply::from_bytes(&reply) {
            Ok(MailboxReply::Batch(mail)) => Ok(mail),
            Ok(MailboxReply::Status(_)) => {
                status(&reply, "collect")?;
                Err(RuntimeError::Malformed("mailbox batch"))
            }
            Ok(MailboxReply::Published(_)) => Err(RuntimeError::Malformed("mailbox batch")),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the messages up to and including `last`.
    pub async fn ack(&self, last: u64) -> Result<()> {
        status(
            &self.call(MailboxRequest::Ack { last }.to_bytes()).await?,
            "ack",
        )
    }

    /// Closes the mailbox and erases what it held.
    pub async fn close(&self) -> Result<()> {
        status(&self.call(MailboxRequest::Close.to_bytes()).await?, "close")
    }

    /// Publishes `blob` (e.g. a signed prekey bundle) for anyone to fetch, replacing the last one.
    pub async fn publish(&self, blob: &[u8]) -> Result<()> {
        if blob.len() > MAX_PUBLISHED {
            return Err(RuntimeError::MailboxRefused(format!(
                "publish: a blob of {} bytes is over {MAX_PUBLISHED}",
                blob.len()
            )));
        }
        status(
            &self
                .call(
                    MailboxRequest::Publish {
                        blob: blob.to_vec(),
                    }
                    .to_bytes(),
                )
                .await?,
            "publish",
        )
    }

    /// The node and channel this client uses (to deposit through the same channel).
    pub fn channel(&self) -> &ChannelHandle {
        &self.channel
    }
}
