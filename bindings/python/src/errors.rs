//! How core errors become Python exceptions: one class per `latchkey_core::Error` variant, named by
//! `Error::name()`, all subclasses of `latchkey.LatchkeyError`. This is the only place errors are converted.

use latchkey_facade::Error;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    latchkey,
    LatchkeyError,
    PyException,
    "Base class of every error raised by the Latchkey core."
);

/// Declares one exception class per core error name, the name → class mapping, and their registration, from
/// a single list so the three cannot drift apart.
macro_rules! error_classes {
    ($($name:ident: $doc:literal),* $(,)?) => {
        $( create_exception!(latchkey, $name, LatchkeyError, $doc); )*

        fn exception_for(name: &str, message: String) -> PyErr {
            match name {
                $( stringify!($name) => $name::new_err(message), )*
                // `Error` is non-exhaustive: a variant added to the core later still maps to the base class.
                _ => LatchkeyError::new_err(message),
            }
        }

        pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
            let py = m.py();
            m.add("LatchkeyError", py.get_type::<LatchkeyError>())?;
            $( m.add(stringify!($name), py.get_type::<$name>())?; )*
            Ok(())
        }
    };
}

error_classes! {
    DecodeError: "Bytes did not decode as the expected structure (e.g. truncated or malformed input).",
    BufferTooSmall: "An output buffer is too small.",
    MessageTooLarge: "A message exceeds a protocol size limit.",
    KeyNotFound: "The vault holds no key under this id.",
    WrongKeyType: "The key is of a type this operation cannot use.",
    InvalidPublicKey: "A public key is invalid or a Diffie-Hellman result was degenerate.",
    InvalidSignature: "A signature did not verify.",
    InvalidHistory: "A change history is not a valid, correctly signed chain.",
    HistoryMismatch: "A history does not extend the known history of this identity.",
    InvalidAttestation: "A purpose-key attestation is malformed, for another key, or badly signed.",
    Expired: "An attestation or identity key is outside its validity period.",
    UntrustedPeer: "The peer proved its identity but is not in the trusted list.",
    DecryptFailed: "Authentication of a transport frame or handshake message failed.",
    Replay: "A transport frame with this nonce was already accepted.",
    StaleMessage: "A transport frame is older than the replay window.",
    TooFarAhead: "A transport frame claims a nonce too far ahead.",
    NonceExhausted: "The sender used every nonce; establish a new channel.",
    InvalidState: "The operation is not valid now (out of turn, handshake unfinished, channel closed).",
    VaultError: "A vault backend failed.",
    CryptoError: "The crypto provider failed (e.g. the system random generator).",
}

/// Converts a core error into the exception of the same name.
pub(crate) fn to_py_err(error: Error) -> PyErr {
    exception_for(error.name(), error.to_string())
}

/// `?`-friendly conversion of core results.
pub(crate) trait IntoPyResult<T> {
    fn into_py_result(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, Error> {
    fn into_py_result(self) -> PyResult<T> {
        self.map_err(to_py_err)
    }
}

/// Errors that exist only once there is I/O (the runtime `Node`): one class per `RuntimeError` variant.
macro_rules! runtime_error_classes {
    ($($name:ident: $doc:literal),* $(,)?) => {
        $( create_exception!(latchkey, $name, LatchkeyError, $doc); )*

        pub(crate) fn register_runtime(m: &Bound<'_, PyModule>) -> PyResult<()> {
            let py = m.py();
            $( m.add(stringify!($name), py.get_type::<$name>())?; )*
            Ok(())
        }
    };
}

runtime_error_classes! {
    UnknownAddress: "No worker is registered at this address on the node.",
    AddressInUse: "A worker is already registered at this address.",
    QueueFull: "The worker's bounded queue is full.",
    WorkerStopped: "The worker stopped while a message was on its way to it.",
    EmptyRoute: "A message has an empty onward route.",
    MalformedMessage: "A message or route does not decode, or breaks a structural limit.",
    FrameTooLarge: "A frame exceeds the configured maximum.",
    AccessDenied: "The destination service refuses messages from this peer.",
    TransportError: "Network I/O failed.",
    BadAddress: "A network address could not be parsed or resolved.",
    Timeout: "A peer did not answer in time.",
    DeliveryFailed: "The secure channel could not deliver a message in time; the channel is closed.",
    ChannelClosed: "The secure channel has closed.",
    Refused: "The peer refused the connection or request.",
    Insecure: "Refusing an insecure configuration (e.g. no trust given: name the trusted identifiers or pass trust_any=True).",
    StorageError: "The identity store failed.",
    UnknownIdentity: "No identity of this name in the store.",
    IdentityExists: "An identity of this name already exists.",
}

/// Converts a runtime error: core failures keep their core class, the rest get the runtime classes above.
pub(crate) fn runtime_to_py_err(error: latchkey_runtime::RuntimeError) -> PyErr {
    use latchkey_runtime::RuntimeError as R;
    let message = error.to_string();
    match error {
        R::Core(core) => to_py_err(core),
        R::Untrusted(_) => UntrustedPeer::new_err(message),
        R::UnknownAddress(_) => UnknownAddress::new_err(message),
        R::AddressInUse(_) => AddressInUse::new_err(message),
        R::QueueFull(_) => QueueFull::new_err(message),
        R::WorkerStopped(_) => WorkerStopped::new_err(message),
        R::EmptyRoute => EmptyRoute::new_err(message),
        R::Malformed(_) => MalformedMessage::new_err(message),
        R::FrameTooLarge { .. } => FrameTooLarge::new_err(message),
        R::AccessDenied { .. } => AccessDenied::new_err(message),
        R::Io(_) => TransportError::new_err(message),
        R::BadAddress(_) => BadAddress::new_err(message),
        R::Timeout(_) => Timeout::new_err(message),
        R::DeliveryFailed(_) => DeliveryFailed::new_err(message),
        R::ChannelClosed => ChannelClosed::new_err(message),
        R::Refused(_) => Refused::new_err(message),
        R::Insecure(_) => Insecure::new_err(message),
        R::Storage(_) => StorageError::new_err(message),
        R::UnknownIdentity(_) => UnknownIdentity::new_err(message),
        R::IdentityExists(_) => IdentityExists::new_err(message),
        // `RuntimeError` is non-exhaustive: a later variant still maps to the base class.
        _ => LatchkeyError::new_err(message),
    }
}

impl<T> IntoPyResult<T> for Result<T, latchkey_runtime::RuntimeError> {
    fn into_py_result(self) -> PyResult<T> {
        self.map_err(runtime_to_py_err)
    }
}
