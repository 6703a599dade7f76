"""Type stubs for the Rust extension module ``latchkey._latchkey`` (re-exported by ``latchkey``)."""

import os
from types import TracebackType
from typing import Awaitable, ClassVar, Final, List, Literal, Optional, Sequence, Type, Union, final

from typing_extensions import Self

_Bytes = Union[bytes, bytearray]

__version__: Final[str]
FRAME_OVERHEAD: Final[int]
"""Bytes a transport frame adds to its plaintext (8-byte nonce + 16-byte tag)."""
MAX_PLAINTEXT_LEN: Final[int]
"""Largest plaintext one frame can carry."""

class LatchkeyError(Exception):
    """Base class of every error raised by the Latchkey core."""

class DecodeError(LatchkeyError):
    """Bytes did not decode as the expected structure (e.g. truncated or malformed input)."""

class BufferTooSmall(LatchkeyError): ...
class MessageTooLarge(LatchkeyError):
    """A message exceeds a protocol size limit (e.g. plaintext over ``MAX_PLAINTEXT_LEN``)."""

class KeyNotFound(LatchkeyError): ...
class WrongKeyType(LatchkeyError): ...
class InvalidPublicKey(LatchkeyError): ...
class InvalidSignature(LatchkeyError): ...
class InvalidHistory(LatchkeyError):
    """A change history is not a valid, correctly signed chain."""

class HistoryMismatch(LatchkeyError):
    """A history does not extend the known history of this identity."""

class InvalidAttestation(LatchkeyError): ...
class Expired(LatchkeyError): ...
class UntrustedPeer(LatchkeyError):
    """The peer proved its identity but is not in the ``trusted`` list."""

class DecryptFailed(LatchkeyError):
    """Authentication failed: tampered, truncated or wrong-key ciphertext."""

class Replay(LatchkeyError):
    """A transport frame with this nonce was already accepted."""

class StaleMessage(LatchkeyError): ...
class TooFarAhead(LatchkeyError): ...
class NonceExhausted(LatchkeyError): ...
class InvalidState(LatchkeyError):
    """Not valid now: out of turn, handshake unfinished, or channel closed."""

class VaultError(LatchkeyError): ...
class CryptoError(LatchkeyError): ...

@final
class CipherSuite:
    """The Noise cipher suite of a secure channel."""

    CHACHA_POLY: ClassVar[CipherSuite]
    AES_GCM: ClassVar[CipherSuite]
    @property
    def protocol_name(self) -> str: ...
    def __int__(self) -> int: ...

@final
class SigningAlgorithm:
    """The signature algorithm of an identity's primary key."""

    ED25519: ClassVar[SigningAlgorithm]
    ECDSA_P256: ClassVar[SigningAlgorithm]
    def __int__(self) -> int: ...

@final
class Vault:
    """Holds secret keys; identities created in it keep their keys there."""

    def __new__(cls) -> Self: ...
    @property
    def key_count(self) -> int: ...

@final
class Identity:
    """An identity we control, ready for secure-channel handshakes. Thread-safe."""

    @staticmethod
    def create(
        vault: Vault,
        *,
        algorithm: SigningAlgorithm = ...,
        key_validity_secs: Optional[int] = None,
        attestation_validity_secs: Optional[int] = None,
        now: Optional[int] = None,
    ) -> Identity:
        """Creates an identity with fresh keys. ``now`` is Unix seconds (default: the system clock)."""

    @staticmethod
    def from_secrets(
        vault: Vault,
        signing_seed: _Bytes,
        static_secret: _Bytes,
        *,
        key_validity_secs: Optional[int] = None,
        attestation_validity_secs: Optional[int] = None,
        now: Optional[int] = None,
    ) -> Identity:
        """Creates an Ed25519 identity from 32-byte secrets (``ValueError`` on another length)."""

    @property
    def identifier(self) -> str:
        """``lk`` followed by 64 hex digits."""

    @property
    def change_count(self) -> int:
        """1 + the number of rotations."""

    def export_history(self) -> bytes:
        """The public change history, as verified by peers and by :func:`history_identifier`."""

    def rotate(self, signing_seed: Optional[_Bytes] = None, *, now: Optional[int] = None) -> None:
        """Rotates the primary key; on failure nothing changes."""

    def set_credentials(self, credentials: Sequence[_Bytes]) -> None:
        """Opaque credentials presented in future handshakes."""

@final
class SecureChannel:
    """One end of a secure channel: a sans-IO Noise XX handshake, then transport encryption.

    Usable as a context manager; leaving the block closes the channel (erases its keys).
    """

    @staticmethod
    def initiator(
        identity: Identity,
        *,
        suite: CipherSuite = ...,
        trusted: Optional[Sequence[str]] = None,
        trust_any: bool = False,
        now: Optional[int] = None,
    ) -> SecureChannel:
        """Starts a handshake as the side that sends the first message. The peer must be one of ``trusted``
        (``UntrustedPeer`` otherwise), or any peer that proves an identity with an explicit
        ``trust_any=True`` (check ``peer_identifier`` yourself). One of the two is required: with neither,
        raises ``Insecure``; with both, ``ValueError``."""

    @staticmethod
    def responder(
        identity: Identity,
        *,
        suite: CipherSuite = ...,
        trusted: Optional[Sequence[str]] = None,
        trust_any: bool = False,
        now: Optional[int] = None,
    ) -> SecureChannel:
        """Starts a handshake as the side that receives the first message. Trust as in ``initiator``:
        ``trusted=[...]`` or ``trust_any=True``, one of the two."""

    def set_ephemeral_for_test_vectors(self, secret: _Bytes) -> None:
        """Fixes the ephemeral key. Only for reproducing test vectors: destroys forward secrecy."""

    def handshake_step(self, message: Optional[_Bytes]) -> Optional[bytes]:
        """Feeds the peer's handshake message (``None`` for the initiator's first call); returns the message to
        send, or ``None``. Raises ``InvalidState`` out of turn or after the handshake."""

    @property
    def is_finished(self) -> bool: ...
    @property
    def is_closed(self) -> bool: ...
    @property
    def role(self) -> str:
        """``"initiator"`` or ``"responder"``."""

    @property
    def suite(self) -> CipherSuite: ...
    @property
    def handshake_hash(self) -> bytes:
        """32 bytes; once finished, identical on both sides and unique to the channel."""

    @property
    def peer_identifier(self) -> str:
        """The identifier the peer proved (``InvalidState`` before the handshake finished)."""

    @property
    def peer_history(self) -> bytes: ...
    @property
    def peer_credentials(self) -> List[bytes]: ...
    def encrypt(self, plaintext: _Bytes) -> bytes:
        """One transport frame of ``len(plaintext) + FRAME_OVERHEAD`` bytes."""

    def decrypt(self, frame: _Bytes) -> bytes:
        """Raises ``DecryptFailed``, ``Replay``, ``StaleMessage``, ``TooFarAhead`` or ``DecodeError``; the
        channel stays usable after such an error."""

    def close(self) -> None:
        """Erases the keys; later use raises ``InvalidState``. Idempotent."""

    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

def history_identifier(history: _Bytes) -> str:
    """Verifies exported history bytes and returns the identifier."""

def verify_history_update(known: _Bytes, new: _Bytes) -> str:
    """Accepts ``new`` as the next state of the identity known as ``known`` (``HistoryMismatch`` otherwise)."""

# --- The runtime: a node with services, mailboxes and secure channels over TCP (asyncio). -------------------

class UnknownAddress(LatchkeyError): ...
class AddressInUse(LatchkeyError): ...
class QueueFull(LatchkeyError): ...
class WorkerStopped(LatchkeyError): ...
class EmptyRoute(LatchkeyError): ...
class MalformedMessage(LatchkeyError): ...
class FrameTooLarge(LatchkeyError): ...
class AccessDenied(LatchkeyError):
    """The destination service refuses messages from this peer."""

class TransportError(LatchkeyError):
    """Network I/O failed (e.g. connection refused)."""

class BadAddress(LatchkeyError): ...
class Timeout(LatchkeyError): ...
class DeliveryFailed(LatchkeyError): ...
class ChannelClosed(LatchkeyError):
    """The node channel has closed; sending on it is impossible."""

class Refused(LatchkeyError): ...
class Insecure(LatchkeyError):
    """An insecure configuration was refused: e.g. no ``trusted=[...]`` and no explicit ``trust_any=True``."""

class StorageError(LatchkeyError): ...
class UnknownIdentity(LatchkeyError): ...
class IdentityExists(LatchkeyError): ...

@final
class Node:
    """A runtime node. ``async with Node() as node:`` closes it on exit.

    Without ``identity`` the node gets a fresh identity for this run. With it, the identity of that name is
    loaded from the SQLite store in ``home`` (default ``$LATCHKEY_HOME``, else ``~/.latchkey``: the store of
    the ``latchkey`` CLI), and created there first if ``create`` is true (``UnknownIdentity`` otherwise).
    """

    def __new__(
        cls,
        name: str = "python",
        *,
        identity: Optional[str] = None,
        home: Union[str, "os.PathLike[str]", None] = None,
        create: bool = False,
    ) -> Self: ...
    @property
    def name(self) -> str: ...
    @property
    def identifier(self) -> str: ...
    @property
    def is_closed(self) -> bool: ...
    async def listen_tcp(self, address: str = "127.0.0.1:0") -> str:
        """Accepts TCP connections; returns the bound ``host:port``."""

    @property
    def denied_count(self) -> int:
        """How many messages the flow rules refused on this node (raw transport, untrusted peers ...)."""

    def start_echo(
        self, address: str = "echo", *, trusted: Optional[Sequence[str]] = None, trust_any: bool = False
    ) -> None:
        """Hosts an echo service for the channels of this node's listeners (now and later).

        Only channels from ``trusted`` identifiers, or from any with an explicit ``trust_any=True``; with
        neither, raises ``Insecure``.
        """

    def listen(
        self, address: str = "api", *, trusted: Optional[Sequence[str]] = None, trust_any: bool = False
    ) -> ChannelListener:
        """Accepts secure channels at ``address`` from ``trusted`` identifiers, or any with ``trust_any=True``.

        With neither, raises ``Insecure``.
        """

    async def connect(
        self,
        address: str,
        *,
        service: str = "api",
        trusted: Optional[Sequence[str]] = None,
        trust_any: bool = False,
    ) -> NodeChannel:
        """TCP to ``host:port``, then a secure channel to the listener ``service`` there.

        The peer must be in ``trusted`` (``UntrustedPeer`` otherwise), or anyone with ``trust_any=True``; with
        neither, raises ``Insecure``.
        """

    def mailbox(
        self, address: str, *, trusted: Optional[Sequence[str]] = None, trust_any: bool = False
    ) -> Mailbox:
        """A queue at ``address`` on this node (``AddressInUse`` if taken).

        Besides local senders it receives messages out of the channels of this node's listeners (now and
        later): only from ``trusted`` identifiers (``[]``: local senders only), or from any with
        ``trust_any=True``; with neither, raises ``Insecure``. Never raw transport messages.
        """

    async def close(self) -> None:
        """Stops the TCP listeners and closes the node's channels; later calls raise ``InvalidState``."""

    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

@final
class NodeChannel:
    """A secure channel between two nodes."""

    @property
    def peer_identifier(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def is_closed(self) -> bool: ...
    async def send(self, service: str, payload: _Bytes, *, reply_to: Optional[Mailbox] = None) -> None:
        """Returns once the far end acknowledged delivery; ``reply_to`` is opened to this channel's replies."""

    async def request(self, service: str, payload: _Bytes, *, timeout: float = 10.0) -> bytes:
        """Sends and returns the service's first reply (``Timeout`` if none arrives in time)."""

    async def close(self) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...

@final
class ChannelListener:
    """``async for channel in listener`` yields each accepted :class:`NodeChannel`."""

    @property
    def address(self) -> str: ...
    async def accept(self) -> Optional[NodeChannel]: ...
    def close(self) -> None: ...
    def __aiter__(self) -> Self: ...
    async def __anext__(self) -> NodeChannel: ...

@final
class NodeMessage:
    @property
    def payload(self) -> bytes: ...
    @property
    def peer_identifier(self) -> Optional[str]:
        """The peer of the secure channel it came out of; ``None`` unless ``origin`` is ``"channel"``."""

    @property
    def origin(self) -> Literal["local", "channel", "transport"]:
        """Where the node saw it come from: ``"channel"``, ``"transport"`` (unauthenticated) or ``"local"``."""

    def reply(self, payload: _Bytes) -> Awaitable[None]:
        """Answers back the way it came (``MalformedMessage`` if its return route leads elsewhere)."""

@final
class Mailbox:
    """``async for message in mailbox`` until :meth:`close` (or the node closes)."""

    @property
    def address(self) -> str: ...
    async def recv(self) -> Optional[NodeMessage]: ...
    def close(self) -> None: ...
    def __aiter__(self) -> Self: ...
    async def __anext__(self) -> NodeMessage: ...
