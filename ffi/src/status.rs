//! Status codes, this layer's error type, and the thread-local last-error message.
//!
//! Core errors keep their core code (negated) and name, so C, Python, Node and the JVM all report the same
//! failure the same way; codes from -100 down are failures only the C boundary can have.

use latchkey_facade::Error;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};

/// The result of every fallible C function: `LATCHKEY_OK` (0) or a negative error code.
pub type LatchkeyStatus = i32;

/// Success.
pub const LATCHKEY_OK: LatchkeyStatus = 0;
/// Bytes did not decode as the expected structure (core `DecodeError`).
pub const LATCHKEY_ERR_DECODE_ERROR: LatchkeyStatus = -1;
/// An output buffer is too small; the needed size was written to `*out_len` (core `BufferTooSmall`).
pub const LATCHKEY_ERR_BUFFER_TOO_SMALL: LatchkeyStatus = -2;
/// A message exceeds a protocol size limit (core `MessageTooLarge`).
pub const LATCHKEY_ERR_MESSAGE_TOO_LARGE: LatchkeyStatus = -3;
/// The vault holds no such key (core `KeyNotFound`).
pub const LATCHKEY_ERR_KEY_NOT_FOUND: LatchkeyStatus = -4;
/// The key is of the wrong type for the operation (core `WrongKeyType`).
pub const LATCHKEY_ERR_WRONG_KEY_TYPE: LatchkeyStatus = -5;
/// A public key is invalid or a DH result degenerate (core `InvalidPublicKey`).
pub const LATCHKEY_ERR_INVALID_PUBLIC_KEY: LatchkeyStatus = -6;
/// A signature did not verify (core `InvalidSignature`).
pub const LATCHKEY_ERR_INVALID_SIGNATURE: LatchkeyStatus = -7;
/// A change history is not a valid signed chain (core `InvalidHistory`).
pub const LATCHKEY_ERR_INVALID_HISTORY: LatchkeyStatus = -8;
/// A history does not extend the known history of that identity (core `HistoryMismatch`).
pub const LATCHKEY_ERR_HISTORY_MISMATCH: LatchkeyStatus = -9;
/// A purpose-key attestation is invalid (core `InvalidAttestation`).
pub const LATCHKEY_ERR_INVALID_ATTESTATION: LatchkeyStatus = -10;
/// A key or attestation is outside its validity period (core `Expired`).
pub const LATCHKEY_ERR_EXPIRED: LatchkeyStatus = -11;
/// The peer proved its identity but is not trusted (core `UntrustedPeer`).
pub const LATCHKEY_ERR_UNTRUSTED_PEER: LatchkeyStatus = -12;
/// AEAD authentication failed (core `DecryptFailed`).
pub const LATCHKEY_ERR_DECRYPT_FAILED: LatchkeyStatus = -13;
/// A transport frame was replayed (core `Replay`).
pub const LATCHKEY_ERR_REPLAY: LatchkeyStatus = -14;
/// A transport frame is older than the replay window (core `StaleMessage`).
pub const LATCHKEY_ERR_STALE_MESSAGE: LatchkeyStatus = -15;
/// A transport frame's nonce is too far ahead (core `TooFarAhead`).
pub const LATCHKEY_ERR_TOO_FAR_AHEAD: LatchkeyStatus = -16;
/// The sender used every nonce (core `NonceExhausted`).
pub const LATCHKEY_ERR_NONCE_EXHAUSTED: LatchkeyStatus = -17;
/// The call is not valid in the object's current state (core `InvalidState`).
pub const LATCHKEY_ERR_INVALID_STATE: LatchkeyStatus = -18;
/// A vault backend failed (core `VaultError`).
pub const LATCHKEY_ERR_VAULT_ERROR: LatchkeyStatus = -19;
/// The crypto provider failed (core `CryptoError`).
pub const LATCHKEY_ERR_CRYPTO_ERROR: LatchkeyStatus = -20;
/// A required pointer argument was NULL (C boundary only).
pub const LATCHKEY_ERR_NULL_ARGUMENT: LatchkeyStatus = -100;
/// A C string argument is not valid UTF-8 (C boundary only).
pub const LATCHKEY_ERR_INVALID_UTF8: LatchkeyStatus = -101;
/// An argument is out of range: unknown enum value, wrong secret length, a length no buffer can have
/// (C boundary only).
pub const LATCHKEY_ERR_INVALID_ARGUMENT: LatchkeyStatus = -102;
/// The library hit an internal bug; it was caught at the boundary. Free the handles involved.
pub const LATCHKEY_ERR_PANIC: LatchkeyStatus = -103;

/// Codes and names, for `latchkey_error_name`. The core part mirrors `Error::code()` / `Error::name()`;
/// a unit test checks every core variant against it.
pub(crate) const NAMES: &[(LatchkeyStatus, &CStr)] = &[
    (LATCHKEY_OK, c"Ok"),
    (LATCHKEY_ERR_DECODE_ERROR, c"DecodeError"),
    (LATCHKEY_ERR_BUFFER_TOO_SMALL, c"BufferTooSmall"),
    (LATCHKEY_ERR_MESSAGE_TOO_LARGE, c"MessageTooLarge"),
    (LATCHKEY_ERR_KEY_NOT_FOUND, c"KeyNotFound"),
    (LATCHKEY_ERR_WRONG_KEY_TYPE, c"WrongKeyType"),
    (LATCHKEY_ERR_INVALID_PUBLIC_KEY, c"InvalidPublicKey"),
    (LATCHKEY_ERR_INVALID_SIGNATURE, c"InvalidSignature"),
    (LATCHKEY_ERR_INVALID_HISTORY, c"InvalidHistory"),
    (LATCHKEY_ERR_HISTORY_MISMATCH, c"HistoryMismatch"),
    (LATCHKEY_ERR_INVALID_ATTESTATION, c"InvalidAttestation"),
    (LATCHKEY_ERR_EXPIRED, c"Expired"),
    (LATCHKEY_ERR_UNTRUSTED_PEER, c"UntrustedPeer"),
    (LATCHKEY_ERR_DECRYPT_FAILED, c"DecryptFailed"),
    (LATCHKEY_ERR_REPLAY, c"Replay"),
    (LATCHKEY_ERR_STALE_MESSAGE, c"StaleMessage"),
    (LATCHKEY_ERR_TOO_FAR_AHEAD, c"TooFarAhead"),
    (LATCHKEY_ERR_NONCE_EXHAUSTED, c"NonceExhausted"),
    (LATCHKEY_ERR_INVALID_STATE, c"InvalidState"),
    (LATCHKEY_ERR_VAULT_ERROR, c"VaultError"),
    (LATCHKEY_ERR_CRYPTO_ERROR, c"CryptoError"),
    (LATCHKEY_ERR_NULL_ARGUMENT, c"NullArgument"),
    (LATCHKEY_ERR_INVALID_UTF8, c"InvalidUtf8"),
    (LATCHKEY_ERR_INVALID_ARGUMENT, c"InvalidArgument"),
    (LATCHKEY_ERR_PANIC, c"Panic"),
];

/// Every way a call across the C boundary fails.
#[derive(Debug, thiserror::Error)]
pub enum FfiError {
    #[error("{name}: {error}", name = .0.name(), error = .0)]
    Core(#[from] Error),
    #[error("NullArgument: `{0}` must not be NULL")]
    NullArgument(&'static str),
    #[error("InvalidUtf8: `{0}` is not valid UTF-8")]
    InvalidUtf8(&'static str),
    #[error("InvalidArgument: {0}")]
    InvalidArgument(String),
    #[error("Panic: internal error caught at the C boundary: {0}")]
    Panic(String),
}

impl FfiError {
    pub fn status(&self) -> LatchkeyStatus {
        match self {
            FfiError::Core(e) => -e.code().code(),
            FfiError::NullArgument(_) => LATCHKEY_ERR_NULL_ARGUMENT,
            FfiError::InvalidUtf8(_) => LATCHKEY_ERR_INVALID_UTF8,
            FfiError::InvalidArgument(_) => LATCHKEY_ERR_INVALID_ARGUMENT,
            FfiError::Panic(_) => LATCHKEY_ERR_PANIC,
        }
    }
}

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
