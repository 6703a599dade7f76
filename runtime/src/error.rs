//! The runtime layer's one error type. It wraps the core's errors and adds what only exists once there is
//! I/O: addresses, transports, timeouts, delivery, storage.

use latchkey_core::identity::Identifier;

/// Every way a runtime operation can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// A protocol-core failure (handshake, decryption, identity, vault).
    #[error(transparent)]
    Core(#[from] latchkey_core::Error),
    /// No worker is registered at this address on this node.
    #[error("no worker at address {0:?}")]
    UnknownAddress(String),
    /// A worker is already registered at this address.
    #[error("address {0:?} is already in use")]
    AddressInUse(String),
    /// The worker's bounded queue is full (only from non-blocking sends).
    #[error("queue of {0:?} is full")]
    QueueFull(String),
    /// The worker stopped while a message was on its way to it.
    #[error("worker {0:?} has stopped")]
    WorkerStopped(String),
    /// The message's onward route is empty.
    #[error("message has an empty onward route")]
    EmptyRoute,
    /// A message or route does not decode, or breaks a structural limit.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A frame exceeds the configured maximum.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge { len: usize, max: usize },
    /// The destination service refuses messages from this peer (or from unauthenticated senders).
    #[error("access denied to {service:?} for {peer}")]
    AccessDenied { service: String, peer: String },
    /// Network I/O failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A network address could not be parsed or resolved.
    #[error("bad address {0:?}")]
    BadAddress(String),
    /// A peer did not answer in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The secure channel could not deliver a message before its delivery deadline; the channel is closed.
    #[error("delivery failed: {0}")]
    DeliveryFailed(&'static str),
    /// The secure channel has closed.
    #[error("secure channel closed")]
    ChannelClosed,
    /// The peer authenticated but is not in the trusted set.
    #[error("peer {0} is not trusted")]
    Untrusted(Identifier),
    /// The peer refused our connection or request.
    #[error("refused by peer: {0}")]
    Refused(String),
    /// A configuration that would leave a door open (no trust policy; an outlet open to transports).
    #[error("refusing an insecure configuration: {0}")]
    Insecure(&'static str),
    /// The identity store failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// No identity of this name in the store.
    #[error("unknown identity {0:?}")]
    UnknownIdentity(String),
    /// An identity of this name already exists.
    #[error("identity {0:?} already exists")]
    IdentityExists(String),
    /// No pinned or named peer of this name or identifier in the store.
    #[error("unknown peer {0:?} (no pinned peer has this name or identifier)")]
    UnknownPeer(String),
    /// A peer name already belongs to another identifier.
    #[error("peer name {name:?} already belongs to {identifier}")]
    PeerNameTaken { name: String, identifier: String },
    /// The enrollment authority refused an enrollment (token unknown, expired or used up; prekey used;
    /// replay; already a member). Nothing was consumed.
    #[error("enrollment refused: {0}")]
    EnrollmentRefused(crate::authority::store::EnrollRefusal),
    /// A relay mailbox refused a request (no such mailbox, full, too large, over the rate).
    #[error("relay mailbox refused: {0}")]
    MailboxRefused(String),
    /// The authority does not know this identity as a member (or it was removed or revoked).
    #[error("not a member of the authority: {0}")]
    NotAMember(String),
}

impl From<rusqlite::Error> for RuntimeError {
    fn from(e: rusqlite::Error) -> Self {
        RuntimeError::Storage(e.to_string())
    }
}

/// Result with the runtime's [`RuntimeError`].
pub type Result<T, E = RuntimeError> = core::result::Result<T, E>;
