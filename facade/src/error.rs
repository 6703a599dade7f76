//! The one error table. Every failure any Latchkey surface reports has a stable name and code listed here,
//! once; the C ABI (`LATCHKEY_ERR_*` = −code), Python (one exception class per name) and every later binding
//! expand this table, and their tests fail when their list disagrees with it. Codes never change meaning;
//! new ones are appended.

use std::fmt;

macro_rules! error_table {
    ($( #[doc = $doc:literal] $name:ident = $code:literal ),* $(,)?) => {
        /// A stable error name and code (see the module documentation).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(i32)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( #[doc = $doc] $name = $code, )*
        }

        impl ErrorCode {
            /// Every code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),*];

            /// The stable name (`"UntrustedPeer"`): Python's exception class, C's `latchkey_error_name`.
            pub fn name(self) -> &'static str {
                match self { $(ErrorCode::$name => stringify!($name),)* }
            }

            /// The stable number (positive; the C ABI returns it negated).
            pub fn code(self) -> i32 {
                self as i32
            }

            /// One sentence on what it means, for documentation strings in bindings.
            pub fn description(self) -> &'static str {
                match self { $(ErrorCode::$name => $doc.trim_ascii_start(),)* }
            }

            /// The code with this number, if any.
            pub fn from_code(code: i32) -> Option<ErrorCode> {
                Self::ALL.iter().copied().find(|c| c.code() == code)
            }

            /// The code with this name, if any.
            pub fn from_name(name: &str) -> Option<ErrorCode> {
                Self::ALL.iter().copied().find(|c| c.name() == name)
            }
        }
    };
}

error_table! {
    // Protocol core (latchkey_core::Error::code()).
    /// Bytes did not decode as the expected structure (e.g. truncated or malformed input).
    DecodeError = 1,
    /// An output buffer is too small; the needed size is reported.
    BufferTooSmall = 2,
    /// A message exceeds the largest size a frame can carry.
    MessageTooLarge = 3,
    /// No key with this handle in the vault.
    KeyNotFound = 4,
    /// The key exists but is of the wrong type for this operation.
    WrongKeyType = 5,
    /// A public key is malformed or degenerate.
    InvalidPublicKey = 6,
    /// A signature does not verify.
    InvalidSignature = 7,
    /// A change history is malformed, unsigned, reordered or forked.
    InvalidHistory = 8,
    /// A history does not extend the one it must extend.
    HistoryMismatch = 9,
    /// An attestation is malformed, foreign or signed by the wrong key.
    InvalidAttestation = 10,
    /// A key or attestation has expired (or is not yet valid).
    Expired = 11,
    /// The peer proved its identity but is not trusted.
    UntrustedPeer = 12,
    /// A frame failed authentication.
    DecryptFailed = 13,
    /// A frame was already received.
    Replay = 14,
    /// A frame is older than the replay window.
    StaleMessage = 15,
    /// A frame is too far ahead of the replay window.
    TooFarAhead = 16,
    /// The channel has used every nonce it may.
    NonceExhausted = 17,
    /// The operation does not fit the object's state (e.g. a handshake already finished, an object closed).
    InvalidState = 18,
    /// A vault backend failed.
    VaultError = 19,
    /// The crypto provider failed (e.g. the system random generator).
    CryptoError = 20,
    /// A pinned peer presented an older state of its history (a rollback to a rotated-away key).
    HistoryRollback = 21,
    /// A pinned peer presented a history that diverges from the pinned one (a fork).
    HistoryFork = 22,
    /// A change breaks the key-lifetime rules (a rotation after the previous key expired, or too long a life).
    KeyLifetimeExceeded = 23,
    // Runtime: nodes, transports, channels between nodes, relays, portals, storage.
    /// No worker at this address on the node.
    UnknownAddress = 30,
    /// A worker is already registered at this address.
    AddressInUse = 31,
    /// A bounded queue is full.
    QueueFull = 32,
    /// The worker stopped while a message was on its way.
    WorkerStopped = 33,
    /// A routed message or route is malformed (or a return route leads elsewhere).
    MalformedMessage = 34,
    /// A frame exceeds the configured maximum.
    FrameTooLarge = 35,
    /// The flow rules refused the message (the service is not open to this origin).
    AccessDenied = 36,
    /// Network input/output failed.
    TransportError = 37,
    /// A network address could not be parsed, resolved or bound.
    BadAddress = 38,
    /// A peer did not answer in time.
    Timeout = 39,
    /// A message was not delivered before its deadline; the channel is closed.
    DeliveryFailed = 40,
    /// The channel, listener, mailbox or node is closed.
    ChannelClosed = 41,
    /// The peer refused (e.g. a relay name belongs to someone else, a handshake was refused).
    Refused = 42,
    /// A configuration that would leave a door open (e.g. no trust decision).
    Insecure = 43,
    /// The identity store failed.
    StorageError = 44,
    /// No stored identity of this name.
    UnknownIdentity = 45,
    /// A stored identity of this name already exists.
    IdentityExists = 46,
    /// No pinned peer of this name or identifier.
    UnknownPeer = 47,
    // Hardware vaults (PKCS#11 tokens, TPMs).
    /// A hardware token refused the PIN (it may lock after more failures).
    PinIncorrect = 50,
    /// The token's user PIN is locked, or no PIN was supplied (LATCHKEY_PKCS11_PIN or pin-file=).
    PinLocked = 51,
    /// A PKCS#11 module could not be loaded, or this build lacks the vault kind asked for.
    ModuleNotFound = 52,
    /// No token with the configured label.
    TokenNotFound = 53,
    /// A hardware key cannot be exported: it never leaves its vault.
    KeyNotExtractable = 54,
    /// The hardware device (token, TPM) stopped answering or was removed.
    DeviceUnavailable = 55,
    /// The hardware lacks a mechanism the operation needs.
    HardwareUnsupported = 56,
    // Trust at scale: credentials, policies, delegation, revocation, enrollment (core), the authority
    // and relay mailboxes (runtime).
    /// A credential is malformed or not signed by its issuer's current key.
    InvalidCredential = 60,
    /// A credential, delegation or revocation list comes from an issuer that is not a trusted authority.
    UntrustedIssuer = 61,
    /// A credential or delegation is about another identity or history than the presenting peer's.
    SubjectMismatch = 62,
    /// The revocation list names this identifier, credential or delegation.
    Revoked = 63,
    /// A delegation chain is malformed, broken or has a forged link.
    InvalidDelegation = 64,
    /// A delegation link grants more than the link it extends.
    CaveatWidened = 65,
    /// The policy or the delegation's caveats do not allow this request.
    PolicyDenied = 66,
    /// A policy does not parse (line, column and a caret excerpt in the message) or exceeds a limit.
    PolicySyntax = 67,
    /// A revocation list older than, or conflicting with, the installed one.
    StaleRevocationList = 68,
    /// An enrollment was refused (token unknown, used or expired; prekey consumed; replay).
    EnrollmentRefused = 69,
    // Trust in the runtime: the authority service and relay mailboxes (runtime codes 70-79).
    /// A relay mailbox refused a deposit or an owner request (no mailbox, full, too large, over a rate).
    MailboxRefused = 70,
    /// The authority does not know this identity as a member (never enrolled, removed or revoked).
    NotAMember = 71,
    /// A routed channel's handshake offered a cipher suite the listener does not accept (or an unknown one).
    UnsupportedSuite = 72,
    // Arguments as a binding receives them (the C ABI's checks; other bindings use InvalidArgument).
    /// A required pointer argument is NULL.
    NullArgument = 100,
    /// A string argument is not valid UTF-8.
    InvalidUtf8 = 101,
    /// An argument is invalid (e.g. an unknown option, an empty address, a missing trust decision).
    InvalidArgument = 102,
    /// A bug: a panic was caught at the binding boundary.
    Panic = 103,
}

/// An error from any Latchkey operation: a stable [`ErrorCode`] and a message for people. Bindings convert
/// it by code; the message may quote the remote peer and is not meant to be parsed.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    code: ErrorCode,
    message: String,
    /// For `BufferTooSmall`: the size that would have been enough.
    needed: Option<usize>,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            needed: None,
        }
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn name(&self) -> &'static str {
        self.code.name()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// For `BufferTooSmall`, the size that would have been enough.
    pub fn needed(&self) -> Option<usize> {
        self.needed
    }

    pub(crate) fn invalid_state(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::InvalidState, message)
    }

    #[cfg_attr(not(feature = "runtime"), allow(dead_code))]
    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::InvalidArgument, message)
    }

    #[cfg_attr(not(feature = "runtime"), allow(dead_code))]
    pub(crate) fn closed(what: &str) -> Self {
        Error::new(ErrorCode::ChannelClosed, format!("{what} is closed"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({:?})", self.code.name(), self.message)
    }
}

impl std::error::Error for Error {}

impl From<latchkey_core::Error> for Error {
    fn from(e: latchkey_core::Error) -> Self {
        let code = ErrorCode::from_code(e.code()).unwrap_or(ErrorCode::InvalidState);
        let needed = match e {
            latchkey_core::Error::BufferTooSmall { needed } => Some(needed),
            _ => None,
        };
        Error {
            code,
            message: e.to_string(),
            needed,
        }
    }
}

#[cfg(feature = "runtime")]
impl From<latchkey_runtime::RuntimeError> for Error {
    fn from(e: latchkey_runtime::RuntimeError) -> Self {
        use latchkey_runtime::RuntimeError as R;
        let code = match &e {
            R::Core(core) => return Error::from(core.clone()),
            R::Untrusted(_) => ErrorCode::UntrustedPeer,
            R::UnknownAddress(_) => ErrorCode::UnknownAddress,
            R::AddressInUse(_) => ErrorCode::AddressInUse,
            R::QueueFull(_) => ErrorCode::QueueFull,
            R::WorkerStopped(_) => ErrorCode::WorkerStopped,
            R::EmptyRoute | R::Malformed(_) => ErrorCode::MalformedMessage,
            R::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            R::AccessDenied { .. } => ErrorCode::AccessDenied,
            R::Io(io) if io.kind() == std::io::ErrorKind::AddrInUse => ErrorCode::AddressInUse,
            // Binding an address this host does not have.
            R::Io(io) if io.kind() == std::io::ErrorKind::AddrNotAvailable => ErrorCode::BadAddress,
            R::Io(_) => ErrorCode::TransportError,
            R::BadAddress(_) => ErrorCode::BadAddress,
            R::Timeout(_) => ErrorCode::Timeout,
            R::DeliveryFailed(_) => ErrorCode::DeliveryFailed,
            R::ChannelClosed => ErrorCode::ChannelClosed,
            // The relay has no such name: the destination does not exist (not a refusal by a peer).
            R::Refused(reason) if reason == latchkey_core::route::relay::NO_SUCH_NAME => {
                return Error::new(
                    ErrorCode::UnknownAddress,
                    "the relay has no such name registered",
                )
            }
            R::Refused(_) => ErrorCode::Refused,
            R::Insecure(_) => ErrorCode::Insecure,
            R::Storage(_) => ErrorCode::StorageError,
            R::UnknownIdentity(_) => ErrorCode::UnknownIdentity,
            R::IdentityExists(_) => ErrorCode::IdentityExists,
            R::UnknownPeer(_) => ErrorCode::UnknownPeer,
            R::PeerNameTaken { .. } => ErrorCode::InvalidArgument,
            R::EnrollmentRefused(_) => ErrorCode::EnrollmentRefused,
            R::MailboxRefused(_) => ErrorCode::MailboxRefused,
            R::NotAMember(_) => ErrorCode::NotAMember,
            _ => ErrorCode::InvalidState,
        };
        Error::new(code, e.to_string())
    }
}

/// Result with the facade's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_are_unique_and_core_codes_match_the_core() {
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.name()).collect();
        let mut codes: Vec<_> = ErrorCode::ALL.iter().map(|c| c.code()).collect();
        names.sort();
        names.dedup();
        codes.sort();
        codes.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        assert_eq!(codes.len(), ErrorCode::ALL.len());
        let samples = [
            latchkey_core::Error::Decode("x"),
            latchkey_core::Error::BufferTooSmall { needed: 7 },
            latchkey_core::Error::Replay,
            latchkey_core::Error::InvalidState("x"),
            latchkey_core::Error::HistoryRollback,
            latchkey_core::Error::HistoryFork,
            latchkey_core::Error::KeyLifetimeExceeded("x"),
            latchkey_core::Error::PinIncorrect("x".into()),
            latchkey_core::Error::PinLocked("x".into()),
            latchkey_core::Error::ModuleNotFound("x".into()),
            latchkey_core::Error::TokenNotFound("x".into()),
            latchkey_core::Error::KeyNotExtractable("x".into()),
            latchkey_core::Error::DeviceUnavailable("x".into()),
            latchkey_core::Error::HardwareUnsupported("x".into()),
            latchkey_core::Error::InvalidCredential("x"),
            latchkey_core::Error::UntrustedIssuer(latchkey_core::identity::Identifier::from_bytes(
                [7; 32],
            )),
            latchkey_core::Error::SubjectMismatch("x"),
            latchkey_core::Error::Revoked("x"),
            latchkey_core::Error::InvalidDelegation("x"),
            latchkey_core::Error::CaveatWidened("x"),
            latchkey_core::Error::PolicyDenied("x"),
            latchkey_core::Error::PolicySyntax("x".into()),
            latchkey_core::Error::StaleRevocationList {
                current: 2,
                presented: 1,
            },
            latchkey_core::Error::EnrollmentRefused("x"),
        ];
        for e in samples {
            let converted = Error::from(e.clone());
            assert_eq!(converted.name(), e.name());
            assert_eq!(converted.code().code(), e.code());
        }
        assert_eq!(
            Error::from(latchkey_core::Error::BufferTooSmall { needed: 7 }).needed(),
            Some(7)
        );
        assert!(ErrorCode::ALL.iter().all(|c| !c.description().is_empty()));
        assert_eq!(ErrorCode::from_name("Timeout"), Some(ErrorCode::Timeout));
    }
}
