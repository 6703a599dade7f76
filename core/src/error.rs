//! The core's one error type. Bindings map each variant, by [`Error::name`], to an exception or error code of
//! the same name, so the names below are part of the public contract.

use crate::identity::Identifier;
use crate::prelude::*;

/// Every way a core operation can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes did not decode as the expected structure.
    #[error("malformed encoding: {0}")]
    Decode(&'static str),
    /// An output buffer is too small; `needed` is the size that would have worked.
    #[error("buffer too small: {needed} bytes needed")]
    BufferTooSmall { needed: usize },
    /// A message or structure exceeds a protocol size limit.
    #[error("message too large: {len} bytes exceeds the limit of {max}")]
    MessageTooLarge { len: usize, max: usize },
    /// The vault holds no key under this id.
    #[error("key not found in vault: {0}")]
    KeyNotFound(String),
    /// The key exists but is of a type this operation cannot use.
    #[error("wrong key type for this operation")]
    WrongKeyType,
    /// A public key is not a valid point / encoding, or a DH result was degenerate.
    #[error("invalid public key")]
    InvalidPublicKey,
    /// A signature did not verify.
    #[error("signature verification failed")]
    InvalidSignature,
    /// A change history is not a valid, correctly signed chain.
    #[error("invalid change history: {0}")]
    InvalidHistory(&'static str),
    /// A presented history is not the known history of that identity, extended.
    #[error("history does not extend the known history of this identity")]
    HistoryMismatch,
    /// A purpose-key attestation is malformed, for another identity or key, or badly signed.
    #[error("invalid attestation: {0}")]
    InvalidAttestation(&'static str),
    /// A purpose-key attestation or identity key is outside its validity period.
    #[error("expired: {0}")]
    Expired(&'static str),
    /// The peer proved its identity but the trust policy refused it.
    #[error("peer {0} is not trusted")]
    UntrustedPeer(Identifier),
    /// AEAD authentication failed (tampered, truncated or wrong-key ciphertext).
    #[error("decryption failed")]
    DecryptFailed,
    /// A transport frame with this nonce was already accepted.
    #[error("replayed message")]
    Replay,
    /// A transport frame is older than the replay window (or its key epoch).
    #[error("message too old for the replay window")]
    StaleMessage,
    /// A transport frame claims a nonce too far beyond the receiver's key epoch.
    #[error("message nonce too far ahead")]
    TooFarAhead,
    /// The sender used every nonce; the channel must be re-established.
    #[error("nonce space exhausted")]
    NonceExhausted,
    /// The operation is not valid in the object's current state (e.g. writing out of turn).
    #[error("invalid state: {0}")]
    InvalidState(&'static str),
    /// A vault backend failed (hardware, storage, lock).
    #[error("vault error: {0}")]
    Vault(String),
    /// The crypto provider failed (e.g. the system RNG).
    #[error("crypto provider failure: {0}")]
    Crypto(&'static str),
    /// A presented history is an older state (a strict prefix) of the pinned one: a rollback to a key the
    /// identity rotated away from.
    #[error("history rollback: the peer presented an older state of the history pinned for it")]
    HistoryRollback,
    /// A presented history of the pinned identity diverges from the pinned one: a fork, signed by a key the
    /// identity had (and may have rotated away from).
    #[error("history fork: the peer presented a history that diverges from the one pinned for it")]
    HistoryFork,
    /// A change breaks the key-lifetime rules (PROTOCOL.md 3.8): a rotation created when the previous key had
    /// already expired, or a key valid for longer than the maximum key lifetime.
    #[error("key lifetime exceeded: {0}")]
    KeyLifetimeExceeded(&'static str),
    /// A hardware token refused the PIN (the message names the token; it may lock after more failures).
    #[error("wrong PIN: {0}")]
    PinIncorrect(String),
    /// The hardware token's user PIN is locked (too many wrong PINs), or no PIN was supplied.
    #[error("PIN locked or missing: {0}")]
    PinLocked(String),
    /// A PKCS#11 module (shared library) could not be loaded, or a vault kind is not compiled in.
    #[error("hardware module unavailable: {0}")]
    ModuleNotFound(String),
    /// The PKCS#11 module has no token with the configured label.
    #[error("token not found: {0}")]
    TokenNotFound(String),
    /// A hardware key cannot leave its vault (it is sensitive and not extractable).
    #[error("key not extractable: {0}")]
    KeyNotExtractable(String),
    /// The hardware device (token, TPM) stopped answering or was removed.
    #[error("hardware device unavailable: {0}")]
    DeviceUnavailable(String),
    /// The hardware lacks a mechanism this operation needs (e.g. a token without ECDSA P-256).
    #[error("operation not supported by the hardware: {0}")]
    HardwareUnsupported(String),
    /// A credential is malformed or not signed by its issuer's current primary key (docs/PROTOCOL.md 11).
    #[error("invalid credential: {0}")]
    InvalidCredential(&'static str),
    /// A credential, delegation root or revocation list is signed by an identity the verifier does not trust
    /// as an authority.
    #[error("issuer {0} is not a trusted authority")]
    UntrustedIssuer(Identifier),
    /// A credential or delegation is about another identity, or about a history the presenting peer's
    /// history does not contain.
    #[error("subject mismatch: {0}")]
    SubjectMismatch(&'static str),
    /// The revocation list names the identifier, credential or delegation link.
    #[error("revoked: {0}")]
    Revoked(&'static str),
    /// A delegation chain is malformed, broken, or has a link not signed by the previous holder.
    #[error("invalid delegation: {0}")]
    InvalidDelegation(&'static str),
    /// A delegation link grants more than the link it extends (a resource, an action or a later expiry).
    #[error("caveat widened: {0}")]
    CaveatWidened(&'static str),
    /// The policy, or the delegation's caveats, do not allow this request.
    #[error("denied: {0}")]
    PolicyDenied(&'static str),
    /// A policy does not parse (the message gives line, column and a caret excerpt) or exceeds a limit.
    #[error("policy syntax error: {0}")]
    PolicySyntax(String),
    /// A revocation list older than (or conflicting with) the one installed.
    #[error("stale revocation list: sequence {presented} presented, {current} installed")]
    StaleRevocationList { current: u64, presented: u64 },
    /// An enrollment was refused: unknown, used or mismatched token, consumed or unknown prekey, replay.
    #[error("enrollment refused: {0}")]
    EnrollmentRefused(&'static str),
    /// A routed handshake's message 1 offers a cipher suite this side does not accept, or an unknown suite
    /// byte (docs/PROTOCOL.md 5.1). The refusal a listener sends for it is the reason `UnsupportedSuite`.
    #[error("unsupported cipher suite offer: {0:#04x}")]
    UnsupportedSuite(u8),
}

impl Error {
    /// The stable name bindings use for their exception classes and error-code names.
    pub fn name(&self) -> &'static str {
        match self {
            Error::Decode(_) => "DecodeError",
            Error::BufferTooSmall { .. } => "BufferTooSmall",
            Error::MessageTooLarge { .. } => "MessageTooLarge",
            Error::KeyNotFound(_) => "KeyNotFound",
            Error::WrongKeyType => "WrongKeyType",
            Error::InvalidPublicKey => "InvalidPublicKey",
            Error::InvalidSignature => "InvalidSignature",
            Error::InvalidHistory(_) => "InvalidHistory",
            Error::HistoryMismatch => "HistoryMismatch",
            Error::InvalidAttestation(_) => "InvalidAttestation",
            Error::Expired(_) => "Expired",
            Error::UntrustedPeer(_) => "UntrustedPeer",
            Error::DecryptFailed => "DecryptFailed",
            Error::Replay => "Replay",
            Error::StaleMessage => "StaleMessage",
            Error::TooFarAhead => "TooFarAhead",
            Error::NonceExhausted => "NonceExhausted",
            Error::InvalidState(_) => "InvalidState",
            Error::Vault(_) => "VaultError",
            Error::Crypto(_) => "CryptoError",
            Error::HistoryRollback => "HistoryRollback",
            Error::HistoryFork => "HistoryFork",
            Error::KeyLifetimeExceeded(_) => "KeyLifetimeExceeded",
            Error::PinIncorrect(_) => "PinIncorrect",
            Error::PinLocked(_) => "PinLocked",
            Error::ModuleNotFound(_) => "ModuleNotFound",
            Error::TokenNotFound(_) => "TokenNotFound",
            Error::KeyNotExtractable(_) => "KeyNotExtractable",
            Error::DeviceUnavailable(_) => "DeviceUnavailable",
            Error::HardwareUnsupported(_) => "HardwareUnsupported",
            Error::InvalidCredential(_) => "InvalidCredential",
            Error::UntrustedIssuer(_) => "UntrustedIssuer",
            Error::SubjectMismatch(_) => "SubjectMismatch",
            Error::Revoked(_) => "Revoked",
            Error::InvalidDelegation(_) => "InvalidDelegation",
            Error::CaveatWidened(_) => "CaveatWidened",
            Error::PolicyDenied(_) => "PolicyDenied",
            Error::PolicySyntax(_) => "PolicySyntax",
            Error::StaleRevocationList { .. } => "StaleRevocationList",
            Error::EnrollmentRefused(_) => "EnrollmentRefused",
            Error::UnsupportedSuite(_) => "UnsupportedSuite",
        }
    }

    /// The stable numeric code used by the C ABI (negative there; 0 is success).
    pub fn code(&self) -> i32 {
        match self {
            Error::Decode(_) => 1,
            Error::BufferTooSmall { .. } => 2,
            Error::MessageTooLarge { .. } => 3,
            Error::KeyNotFound(_) => 4,
            Error::WrongKeyType => 5,
            Error::InvalidPublicKey => 6,
            Error::InvalidSignature => 7,
            Error::InvalidHistory(_) => 8,
            Error::HistoryMismatch => 9,
            Error::InvalidAttestation(_) => 10,
            Error::Expired(_) => 11,
            Error::UntrustedPeer(_) => 12,
            Error::DecryptFailed => 13,
            Error::Replay => 14,
            Error::StaleMessage => 15,
            Error::TooFarAhead => 16,
            Error::NonceExhausted => 17,
            Error::InvalidState(_) => 18,
            Error::Vault(_) => 19,
            Error::Crypto(_) => 20,
            Error::HistoryRollback => 21,
            Error::HistoryFork => 22,
            Error::KeyLifetimeExceeded(_) => 23,
            Error::PinIncorrect(_) => 50,
            Error::PinLocked(_) => 51,
            Error::ModuleNotFound(_) => 52,
            Error::TokenNotFound(_) => 53,
            Error::KeyNotExtractable(_) => 54,
            Error::DeviceUnavailable(_) => 55,
            Error::HardwareUnsupported(_) => 56,
            Error::InvalidCredential(_) => 60,
            Error::UntrustedIssuer(_) => 61,
            Error::SubjectMismatch(_) => 62,
            Error::Revoked(_) => 63,
            Error::InvalidDelegation(_) => 64,
            Error::CaveatWidened(_) => 65,
            Error::PolicyDenied(_) => 66,
            Error::PolicySyntax(_) => 67,
            Error::StaleRevocationList { .. } => 68,
            Error::EnrollmentRefused(_) => 69,
            Error::UnsupportedSuite(_) => 72,
        }
    }
}

/// Result with the core [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;
