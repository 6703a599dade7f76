//! Status codes, this layer's error type, and the thread-local last-error message.
//!
//! Every status is a code of the one error table, `latchkey_facade::ErrorCode`, negated: C, Python, Node and
//! the JVM report the same failure with the same name and number. cbindgen cannot expand macros, so the
//! `LATCHKEY_ERR_*` constants below are written out; `tests.rs` fails when any constant, its value or its
//! documented name disagrees with `ErrorCode::ALL`, in either direction, in this file or in the header.

use latchkey_facade::{Error, ErrorCode};
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::fmt;
use std::sync::OnceLock;

/// The result of every fallible C function: `LATCHKEY_OK` (0) or a negative error code.
pub type LatchkeyStatus = i32;

/// Success.
pub const LATCHKEY_OK: LatchkeyStatus = 0;

// Protocol core (codes 1..=23).
/// `DecodeError`: Bytes did not decode as the expected structure (e.g. truncated or malformed input).
pub const LATCHKEY_ERR_DECODE_ERROR: LatchkeyStatus = -1;
/// `BufferTooSmall`: An output buffer is too small; the needed size is reported. In C the needed size is
/// written to `*out_len`.
pub const LATCHKEY_ERR_BUFFER_TOO_SMALL: LatchkeyStatus = -2;
/// `MessageTooLarge`: A message exceeds the largest size a frame can carry.
pub const LATCHKEY_ERR_MESSAGE_TOO_LARGE: LatchkeyStatus = -3;
/// `KeyNotFound`: No key with this handle in the vault.
pub const LATCHKEY_ERR_KEY_NOT_FOUND: LatchkeyStatus = -4;
/// `WrongKeyType`: The key exists but is of the wrong type for this operation.
pub const LATCHKEY_ERR_WRONG_KEY_TYPE: LatchkeyStatus = -5;
/// `InvalidPublicKey`: A public key is malformed or degenerate.
pub const LATCHKEY_ERR_INVALID_PUBLIC_KEY: LatchkeyStatus = -6;
/// `InvalidSignature`: A signature does not verify.
pub const LATCHKEY_ERR_INVALID_SIGNATURE: LatchkeyStatus = -7;
/// `InvalidHistory`: A change history is malformed, unsigned, reordered or forked.
pub const LATCHKEY_ERR_INVALID_HISTORY: LatchkeyStatus = -8;
/// `HistoryMismatch`: A history does not extend the one it must extend.
pub const LATCHKEY_ERR_HISTORY_MISMATCH: LatchkeyStatus = -9;
/// `InvalidAttestation`: An attestation is malformed, foreign or signed by the wrong key.
pub const LATCHKEY_ERR_INVALID_ATTESTATION: LatchkeyStatus = -10;
/// `Expired`: A key or attestation has expired (or is not yet valid).
pub const LATCHKEY_ERR_EXPIRED: LatchkeyStatus = -11;
/// `UntrustedPeer`: The peer proved its identity but is not trusted.
pub const LATCHKEY_ERR_UNTRUSTED_PEER: LatchkeyStatus = -12;
/// `DecryptFailed`: A frame failed authentication.
pub const LATCHKEY_ERR_DECRYPT_FAILED: LatchkeyStatus = -13;
/// `Replay`: A frame was already received.
pub const LATCHKEY_ERR_REPLAY: LatchkeyStatus = -14;
/// `StaleMessage`: A frame is older than the replay window.
pub const LATCHKEY_ERR_STALE_MESSAGE: LatchkeyStatus = -15;
/// `TooFarAhead`: A frame is too far ahead of the replay window.
pub const LATCHKEY_ERR_TOO_FAR_AHEAD: LatchkeyStatus = -16;
/// `NonceExhausted`: The channel has used every nonce it may.
pub const LATCHKEY_ERR_NONCE_EXHAUSTED: LatchkeyStatus = -17;
/// `InvalidState`: The operation does not fit the object's state (e.g. a handshake already finished, an
/// object closed).
pub const LATCHKEY_ERR_INVALID_STATE: LatchkeyStatus = -18;
/// `VaultError`: A vault backend failed.
pub const LATCHKEY_ERR_VAULT_ERROR: LatchkeyStatus = -19;
/// `CryptoError`: The crypto provider failed (e.g. the system random generator).
pub const LATCHKEY_ERR_CRYPTO_ERROR: LatchkeyStatus = -20;
/// `HistoryRollback`: A pinned peer presented an older state of its history (a rollback to a rotated-away key).
pub const LATCHKEY_ERR_HISTORY_ROLLBACK: LatchkeyStatus = -21;
/// `HistoryFork`: A pinned peer presented a history that diverges from the pinned one (a fork).
pub const LATCHKEY_ERR_HISTORY_FORK: LatchkeyStatus = -22;
/// `KeyLifetimeExceeded`: A change breaks the key-lifetime rules (a rotation after the previous key expired,
/// or too long a life).
pub const LATCHKEY_ERR_KEY_LIFETIME_EXCEEDED: LatchkeyStatus = -23;

// Runtime: nodes, transports, channels between nodes, relays, storage (codes 30..=47).
/// `UnknownAddress`: No worker at this address on the node.
pub const LATCHKEY_ERR_UNKNOWN_ADDRESS: LatchkeyStatus = -30;
/// `AddressInUse`: A worker is already registered at this address.
pub const LATCHKEY_ERR_ADDRESS_IN_USE: LatchkeyStatus = -31;
/// `QueueFull`: A bounded queue is full.
pub const LATCHKEY_ERR_QUEUE_FULL: LatchkeyStatus = -32;
/// `WorkerStopped`: The worker stopped while a message was on its way.
pub const LATCHKEY_ERR_WORKER_STOPPED: LatchkeyStatus = -33;
/// `MalformedMessage`: A routed message or route is malformed (or a return route leads elsewhere).
pub const LATCHKEY_ERR_MALFORMED_MESSAGE: LatchkeyStatus = -34;
/// `FrameTooLarge`: A frame exceeds the configured maximum.
pub const LATCHKEY_ERR_FRAME_TOO_LARGE: LatchkeyStatus = -35;
/// `AccessDenied`: The flow rules refused the message (the service is not open to this origin).
pub const LATCHKEY_ERR_ACCESS_DENIED: LatchkeyStatus = -36;
/// `TransportError`: Network input/output failed.
pub const LATCHKEY_ERR_TRANSPORT_ERROR: LatchkeyStatus = -37;
/// `BadAddress`: A network address could not be parsed, resolved or bound.
pub const LATCHKEY_ERR_BAD_ADDRESS: LatchkeyStatus = -38;
/// `Timeout`: A peer did not answer in time. In C also: nothing arrived within the `timeout_ms` a receive or
/// an accept was given.
pub const LATCHKEY_ERR_TIMEOUT: LatchkeyStatus = -39;
/// `DeliveryFailed`: A message was not delivered before its deadline; the channel is closed.
pub const LATCHKEY_ERR_DELIVERY_FAILED: LatchkeyStatus = -40;
/// `ChannelClosed`: The channel, listener, mailbox or node is closed.
pub const LATCHKEY_ERR_CHANNEL_CLOSED: LatchkeyStatus = -41;
/// `Refused`: The peer refused (e.g. a relay name belongs to someone else, a handshake was refused).
pub const LATCHKEY_ERR_REFUSED: LatchkeyStatus = -42;
/// `Insecure`: A configuration that would leave a door open (e.g. no trust decision).
pub const LATCHKEY_ERR_INSECURE: LatchkeyStatus = -43;
/// `StorageError`: The identity store failed.
pub const LATCHKEY_ERR_STORAGE_ERROR: LatchkeyStatus = -44;
/// `UnknownIdentity`: No stored identity of this name.
pub const LATCHKEY_ERR_UNKNOWN_IDENTITY: LatchkeyStatus = -45;
/// `IdentityExists`: A stored identity of this name already exists.
pub const LATCHKEY_ERR_IDENTITY_EXISTS: LatchkeyStatus = -46;
/// `UnknownPeer`: No pinned peer of this name or identifier.
pub const LATCHKEY_ERR_UNKNOWN_PEER: LatchkeyStatus = -47;

// Hardware vaults (codes 50..=56).
/// `PinIncorrect`: A hardware token refused the PIN (it may lock after more failures).
pub const LATCHKEY_ERR_PIN_INCORRECT: LatchkeyStatus = -50;
/// `PinLocked`: The token's user PIN is locked, or no PIN was supplied (LATCHKEY_PKCS11_PIN or pin-file=).
pub const LATCHKEY_ERR_PIN_LOCKED: LatchkeyStatus = -51;
/// `ModuleNotFound`: A PKCS#11 module could not be loaded, or this build lacks the vault kind asked for.
pub const LATCHKEY_ERR_MODULE_NOT_FOUND: LatchkeyStatus = -52;
/// `TokenNotFound`: No token with the configured label.
pub const LATCHKEY_ERR_TOKEN_NOT_FOUND: LatchkeyStatus = -53;
/// `KeyNotExtractable`: A hardware key cannot be exported: it never leaves its vault.
pub const LATCHKEY_ERR_KEY_NOT_EXTRACTABLE: LatchkeyStatus = -54;
/// `DeviceUnavailable`: The hardware device (token, TPM) stopped answering or was removed.
pub const LATCHKEY_ERR_DEVICE_UNAVAILABLE: LatchkeyStatus = -55;
/// `HardwareUnsupported`: The hardware lacks a mechanism the operation needs.
pub const LATCHKEY_ERR_HARDWARE_UNSUPPORTED: LatchkeyStatus = -56;

// Trust: credentials, policies, delegation, revocation, enrollment (codes 60..=69).
/// `InvalidCredential`: A credential is malformed or not signed by its issuer's current key.
pub const LATCHKEY_ERR_INVALID_CREDENTIAL: LatchkeyStatus = -60;
/// `UntrustedIssuer`: A credential, delegation or revocation list comes from an issuer that is not a trusted authority.
pub const LATCHKEY_ERR_UNTRUSTED_ISSUER: LatchkeyStatus = -61;
/// `SubjectMismatch`: A credential or delegation is about another identity or history than the presenting peer's.
pub const LATCHKEY_ERR_SUBJECT_MISMATCH: LatchkeyStatus = -62;
/// `Revoked`: The revocation list names this identifier, credential or delegation.
pub const LATCHKEY_ERR_REVOKED: LatchkeyStatus = -63;
/// `InvalidDelegation`: A delegation chain is malformed, broken or has a forged link.
pub const LATCHKEY_ERR_INVALID_DELEGATION: LatchkeyStatus = -64;
/// `CaveatWidened`: A delegation link grants more than the link it extends.
pub const LATCHKEY_ERR_CAVEAT_WIDENED: LatchkeyStatus = -65;
/// `PolicyDenied`: The policy or the delegation's caveats do not allow this request.
pub const LATCHKEY_ERR_POLICY_DENIED: LatchkeyStatus = -66;
/// `PolicySyntax`: A policy does not parse (line, column and a caret excerpt in the message) or exceeds a limit.
pub const LATCHKEY_ERR_POLICY_SYNTAX: LatchkeyStatus = -67;
/// `StaleRevocationList`: A revocation list older than, or conflicting with, the installed one.
pub const LATCHKEY_ERR_STALE_REVOCATION_LIST: LatchkeyStatus = -68;
/// `EnrollmentRefused`: An enrollment was refused (token unknown, used or expired; prekey consumed; replay).
pub const LATCHKEY_ERR_ENROLLMENT_REFUSED: LatchkeyStatus = -69;

// Authority and relay mailbox (codes 70..=71); routed suite offer (72).
/// `MailboxRefused`: A relay mailbox refused a deposit or an owner request (no mailbox, full, too large, over a rate).
pub const LATCHKEY_ERR_MAILBOX_REFUSED: LatchkeyStatus = -70;
/// `NotAMember`: The authority does not know this identity as a member (never enrolled, removed or revoked).
pub const LATCHKEY_ERR_NOT_A_MEMBER: LatchkeyStatus = -71;
/// `UnsupportedSuite`: A routed channel's handshake offered a cipher suite the listener does not accept (or an unknown one).
pub const LATCHKEY_ERR_UNSUPPORTED_SUITE: LatchkeyStatus = -72;

// Arguments as the C boundary receives them (codes 100..=103).
/// `NullArgument`: A required pointer argument is NULL.
pub const LATCHKEY_ERR_NULL_ARGUMENT: LatchkeyStatus = -100;
/// `InvalidUtf8`: A string argument is not valid UTF-8.
pub const LATCHKEY_ERR_INVALID_UTF8: LatchkeyStatus = -101;
/// `InvalidArgument`: An argument is invalid (e.g. an unknown option, an empty address, a missing trust
/// decision). In C also: an unknown enum value, a wrong secret length, a length no buffer can have, a timeout
/// of 0 where a call must wait.
pub const LATCHKEY_ERR_INVALID_ARGUMENT: LatchkeyStatus = -102;
/// `Panic`: A bug: a panic was caught at the binding boundary. Free the handles involved.
pub const LATCHKEY_ERR_PANIC: LatchkeyStatus = -103;

/// The status for a code of the error table.
pub(crate) fn status_of(code: ErrorCode) -> LatchkeyStatus {
    -code.code()
}

/// A name or description from the table as a static C string.
struct TableText {
    status: LatchkeyStatus,
    name: CString,
    description: CString,
}

fn table() -> &'static [TableText] {
    static TABLE: OnceLock<Vec<TableText>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let text = |s: &str| CString::new(s).unwrap_or_default();
        ErrorCode::ALL
            .iter()
            .map(|&code| TableText {
                status: status_of(code),
                name: text(code.name()),
                description: text(code.description()),
            })
            .collect()
    })
}

/// `latchkey_error_name`'s answer: "Ok", a name from the table, or "Unknown".
pub(crate) fn name_of(status: LatchkeyStatus) -> &'static CStr {
    match status {
        LATCHKEY_OK => c"Ok",
        _ => table()
            .iter()
            .find(|entry| entry.status == status)
            .map_or(c"Unknown", |entry| entry.name.as_c_str()),
    }
}

/// `latchkey_error_description`'s answer, from the table.
pub(crate) fn description_of(status: LatchkeyStatus) -> &'static CStr {
    match status {
        LATCHKEY_OK => c"Success.",
        _ => table()
            .iter()
            .find(|entry| entry.status == status)
            .map_or(c"Not a Latchkey status code.", |entry| {
                entry.description.as_c_str()
            }),
    }
}

/// Every way a call across the C boundary fails; each is one code of the error table.
#[derive(Debug)]
pub enum FfiError {
    /// A failure reported by the facade, with its own code.
    Facade(Error),
    NullArgument(&'static str),
    InvalidUtf8(&'static str),
    InvalidArgument(String),
    Panic(String),
}

impl From<Error> for FfiError {
    fn from(error: Error) -> Self {
        FfiError::Facade(error)
    }
}

impl FfiError {
    pub fn code(&self) -> ErrorCode {
        match self {
            FfiError::Facade(e) => e.code(),
            FfiError::NullArgument(_) => ErrorCode::NullArgument,
            FfiError::InvalidUtf8(_) => ErrorCode::InvalidUtf8,
            FfiError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            FfiError::Panic(_) => ErrorCode::Panic,
        }
    }

    pub fn status(&self) -> LatchkeyStatus {
        status_of(self.code())
    }

    /// A failure with a code of the table and a message (e.g. `Timeout` for a receive that waited in vain).
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        FfiError::Facade(Error::new(code, message))
    }
}

/// "Name: details", the form of `latchkey_last_error`.
impl fmt::Display for FfiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.code().name())?;
        match self {
            FfiError::Facade(e) => f.write_str(e.message()),
            FfiError::NullArgument(name) => write!(f, "`{name}` must not be NULL"),
            FfiError::InvalidUtf8(name) => write!(f, "`{name}` is not valid UTF-8"),
            FfiError::InvalidArgument(message) => f.write_str(message),
            FfiError::Panic(message) => {
                write!(f, "internal error caught at the C boundary: {message}")
            }
        }
    }
}

impl std::error::Error for FfiError {}

pub(crate) type FfiResult<T> = Result<T, FfiError>;

thread_local! {
    /// The one piece of state outside handles: the message of this thread's last failed call.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|slot| {
        let mut slot = slot.borrow_mut();
        if !slot.as_bytes().is_empty() {
            *slot = CString::default();
        }
    });
}

/// Stores the error's message and returns its status code.
pub(crate) fn record_error(error: &FfiError) -> LatchkeyStatus {
    // Messages never contain NUL (they are our own texts and identifiers); strip defensively anyway.
    let text: Vec<u8> = error
        .to_string()
        .into_bytes()
        .into_iter()
        .filter(|&b| b != 0)
        .collect();
    let message = CString::new(text).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = message);
    error.status()
}

pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|slot| slot.borrow().as_ptr())
}
