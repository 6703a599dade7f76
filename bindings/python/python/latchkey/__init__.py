"""Latchkey: mutually authenticated, end-to-end encrypted secure channels.

Everything here is implemented in Rust (``latchkey._latchkey``); this package only re-exports it, plus the
asyncio helpers for the direct-TCP framing in :mod:`latchkey.direct_tcp`.

Errors: every failure of the core raises a subclass of :class:`LatchkeyError` named after the core error
(``DecryptFailed``, ``Replay``, ``UntrustedPeer``, ``InvalidState`` ...). Arguments of the wrong Python type
raise ``TypeError``; secrets of the wrong length raise ``ValueError``.
"""

from latchkey._latchkey import (
    FRAME_OVERHEAD,
    MAX_PLAINTEXT_LEN,
    BufferTooSmall,
    CipherSuite,
    CryptoError,
    DecodeError,
    DecryptFailed,
    Expired,
    HistoryMismatch,
    Identity,
    InvalidAttestation,
    InvalidHistory,
    InvalidPublicKey,
    InvalidSignature,
    InvalidState,
    KeyNotFound,
    LatchkeyError,
    MessageTooLarge,
    NonceExhausted,
    Replay,
    SecureChannel,
    SigningAlgorithm,
    StaleMessage,
    TooFarAhead,
    UntrustedPeer,
    Vault,
    VaultError,
    WrongKeyType,
    __version__,
    history_identifier,
    verify_history_update,
)

__all__ = [
    "FRAME_OVERHEAD",
    "MAX_PLAINTEXT_LEN",
    "BufferTooSmall",
    "CipherSuite",
    "CryptoError",
    "DecodeError",
    "DecryptFailed",
    "Expired",
    "HistoryMismatch",
    "Identity",
    "InvalidAttestation",
    "InvalidHistory",
    "InvalidPublicKey",
    "InvalidSignature",
    "InvalidState",
    "KeyNotFound",
    "LatchkeyError",
    "MessageTooLarge",
    "NonceExhausted",
    "Replay",
    "SecureChannel",
    "SigningAlgorithm",
    "StaleMessage",
    "TooFarAhead",
    "UntrustedPeer",
    "Vault",
    "VaultError",
    "WrongKeyType",
    "__version__",
    "history_identifier",
    "verify_history_update",
]
