"""Type stubs for the Rust extension module ``latchkey._latchkey`` (re-exported by ``latchkey``)."""

import os
from types import TracebackType
from typing import Any, ClassVar, Coroutine, Dict, Final, List, Literal, Mapping, Optional, Sequence, Tuple, Type, Union, final

from typing_extensions import Self

_Bytes = Union[bytes, bytearray, memoryview]

__version__: Final[str]
FRAME_OVERHEAD: Final[int]
"""Bytes a transport frame adds to its plaintext (8-byte nonce + 16-byte tag)."""
MAX_PLAINTEXT_LEN: Final[int]
"""Largest plaintext one frame can carry."""

def _error_table() -> List[Tuple[str, int, str]]:
    """The error table as ``(name, code, description)``, in table order: one exception class per entry."""

# --- Errors: one class per entry of the error table, in table order (tests/test_package.py checks this list,
# the bases and the docstrings against ``_error_table()`` and the compiled module). ----------------------------

class LatchkeyError(Exception):
    """Base class of every error Latchkey raises: one subclass per entry of the error table
    (latchkey._error_table())."""

class DecodeError(LatchkeyError):
    """Bytes did not decode as the expected structure (e.g. truncated or malformed input)."""

class BufferTooSmall(LatchkeyError):
    """An output buffer is too small; the needed size is reported."""

class MessageTooLarge(LatchkeyError):
    """A message exceeds the largest size a frame can carry."""

class KeyNotFound(LatchkeyError):
    """No key with this handle in the vault."""

class WrongKeyType(LatchkeyError):
    """The key exists but is of the wrong type for this operation."""

class InvalidPublicKey(LatchkeyError):
    """A public key is malformed or degenerate."""

class InvalidSignature(LatchkeyError):
    """A signature does not verify."""

class InvalidHistory(LatchkeyError):
    """A change history is malformed, unsigned, reordered or forked."""

class HistoryMismatch(LatchkeyError):
    """A history does not extend the one it must extend."""

class InvalidAttestation(LatchkeyError):
    """An attestation is malformed, foreign or signed by the wrong key."""

class Expired(LatchkeyError):
    """A key or attestation has expired (or is not yet valid)."""

class UntrustedPeer(LatchkeyError):
    """The peer proved its identity but is not trusted."""

class DecryptFailed(LatchkeyError):
    """A frame failed authentication."""

class Replay(LatchkeyError):
    """A frame was already received."""

class StaleMessage(LatchkeyError):
    """A frame is older than the replay window."""

class TooFarAhead(LatchkeyError):
    """A frame is too far ahead of the replay window."""

class NonceExhausted(LatchkeyError):
    """The channel has used every nonce it may."""

class InvalidState(LatchkeyError):
    """The operation does not fit the object's state (e.g. a handshake already finished, an object closed)."""

class VaultError(LatchkeyError):
    """A vault backend failed."""

class CryptoError(LatchkeyError):
    """The crypto provider failed (e.g. the system random generator)."""

class HistoryRollback(LatchkeyError):
    """A pinned peer presented an older state of its history (a rollback to a rotated-away key)."""

class HistoryFork(LatchkeyError):
    """A pinned peer presented a history that diverges from the pinned one (a fork)."""

class KeyLifetimeExceeded(LatchkeyError):
    """A change breaks the key-lifetime rules (a rotation after the previous key expired, or too long a life)."""

class UnknownAddress(LatchkeyError):
    """No worker at this address on the node."""

class AddressInUse(LatchkeyError, OSError):
    """A worker is already registered at this address."""

class QueueFull(LatchkeyError):
    """A bounded queue is full."""

class WorkerStopped(LatchkeyError):
    """The worker stopped while a message was on its way."""

class MalformedMessage(LatchkeyError):
    """A routed message or route is malformed (or a return route leads elsewhere)."""

class FrameTooLarge(LatchkeyError):
    """A frame exceeds the configured maximum."""

class AccessDenied(LatchkeyError):
    """The flow rules refused the message (the service is not open to this origin)."""

class TransportError(LatchkeyError, OSError):
    """Network input/output failed."""

class BadAddress(LatchkeyError, OSError):
    """A network address could not be parsed, resolved or bound."""

class Timeout(LatchkeyError, TimeoutError):
    """A peer did not answer in time."""

class DeliveryFailed(LatchkeyError, ConnectionError):
    """A message was not delivered before its deadline; the channel is closed."""

class ChannelClosed(LatchkeyError, ConnectionError):
    """The channel, listener, mailbox or node is closed."""

class Refused(LatchkeyError):
    """The peer refused (e.g. a relay name belongs to someone else, a handshake was refused)."""

class Insecure(LatchkeyError):
    """A configuration that would leave a door open (e.g. no trust decision)."""

class StorageError(LatchkeyError):
    """The identity store failed."""

class UnknownIdentity(LatchkeyError):
    """No stored identity of this name."""

class IdentityExists(LatchkeyError):
    """A stored identity of this name already exists."""

class UnknownPeer(LatchkeyError):
    """No pinned peer of this name or identifier."""

class PinIncorrect(LatchkeyError):
    """A hardware token refused the PIN (it may lock after more failures)."""

class PinLocked(LatchkeyError):
    """The token's user PIN is locked, or no PIN was supplied (LATCHKEY_PKCS11_PIN or pin-file=)."""

class ModuleNotFound(LatchkeyError):
    """A PKCS#11 module could not be loaded, or this build lacks the vault kind asked for."""

class TokenNotFound(LatchkeyError):
    """No token with the configured label."""

class KeyNotExtractable(LatchkeyError):
    """A hardware key cannot be exported: it never leaves its vault."""

class DeviceUnavailable(LatchkeyError):
    """The hardware device (token, TPM) stopped answering or was removed."""

class HardwareUnsupported(LatchkeyError):
    """The hardware lacks a mechanism the operation needs."""

class InvalidCredential(LatchkeyError):
    """A credential is malformed or not signed by its issuer's current key."""

class UntrustedIssuer(LatchkeyError):
    """A credential, delegation or revocation list comes from an issuer that is not a trusted authority."""

class SubjectMismatch(LatchkeyError):
    """A credential or delegation is about another identity or history than the presenting peer's."""

class Revoked(LatchkeyError):
    """The revocation list names this identifier, credential or delegation."""

class InvalidDelegation(LatchkeyError):
    """A delegation chain is malformed, broken or has a forged link."""

class CaveatWidened(LatchkeyError):
    """A delegation link grants more than the link it extends."""

class PolicyDenied(LatchkeyError):
    """The policy or the delegation's caveats do not allow this request."""

class PolicySyntax(LatchkeyError):
    """A policy does not parse (line, column and a caret excerpt in the message) or exceeds a limit."""

class StaleRevocationList(LatchkeyError):
    """A revocation list older than, or conflicting with, the installed one."""

class EnrollmentRefused(LatchkeyError):
    """An enrollment was refused (token unknown, used or expired; prekey consumed; replay)."""

class MailboxRefused(LatchkeyError):
    """A relay mailbox refused a deposit or an owner request (no mailbox, full, too large, over a rate)."""

class NotAMember(LatchkeyError):
    """The authority does not know this identity as a member (never enrolled, removed or revoked)."""

class UnsupportedSuite(LatchkeyError):
    """A routed channel's handshake offered a cipher suite the listener does not accept (or an unknown one)."""

class NullArgument(LatchkeyError):
    """A required pointer argument is NULL."""

class InvalidUtf8(LatchkeyError, ValueError):
    """A string argument is not valid UTF-8."""

class InvalidArgument(LatchkeyError, ValueError):
    """An argument is invalid (e.g. an unknown option, an empty address, a missing trust decision)."""

class Panic(LatchkeyError):
    """A bug: a panic was caught at the binding boundary."""

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
    """An identity we control, ready for secure-channel handshakes and for a :class:`Node`. Thread-safe."""

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
        """Creates an Ed25519 identity from 32-byte secrets (``InvalidArgument``, a ``ValueError``, on another
        length)."""

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
class StoredIdentity:
    """What the store knows about an identity, without secrets."""

    @property
    def name(self) -> str: ...
    @property
    def identifier(self) -> str: ...
    @property
    def changes(self) -> int:
        """1 + the number of rotations."""

    @property
    def created_at(self) -> int:
        """Unix seconds."""

    @property
    def updated_at(self) -> int:
        """Unix seconds."""

@final
class StoredPeer:
    """A pinned (or named, not yet met) peer."""

    @property
    def name(self) -> Optional[str]: ...
    @property
    def identifier(self) -> str: ...
    @property
    def changes(self) -> int:
        """Changes in the pinned history; 0 when named but not met yet."""

    @property
    def history(self) -> bytes:
        """The pinned history's export bytes (empty when nothing is pinned yet)."""

    @property
    def pinned_at(self) -> int:
        """Unix seconds (0: not pinned yet)."""

    @property
    def updated_at(self) -> int:
        """Unix seconds."""

@final
class IdentityStore:
    """The identity store the ``latchkey`` CLI uses: SQLite under ``home`` (default ``$LATCHKEY_HOME``, else
    ``~/.latchkey``), created if missing. Names are 1-64 letters, digits, ``-``, ``_`` or ``.``."""

    def __new__(cls, home: Union[str, "os.PathLike[str]", None] = None) -> Self: ...
    @property
    def path(self) -> str:
        """The store's database file."""

    def create(self, name: str, *, vault: str = "software") -> StoredIdentity:
        """Creates and stores a new identity (``IdentityExists`` if the name is taken), its keys in ``vault``:
        ``software``, ``pkcs11:module=PATH,token=LABEL[,pin-file=PATH]`` (PIN from ``LATCHKEY_PKCS11_PIN`` or
        the file) or ``tpm:TCTI``. Hardware vaults need a wheel built with the ``pkcs11`` / ``tpm`` features
        (``ModuleNotFound`` otherwise)."""

    def vault_of(self, name: str) -> str:
        """The vault spec an identity's keys live in (``software``, ``pkcs11:…``, ``tpm:…``; never a secret)."""

    def show(self, name: str) -> StoredIdentity:
        """``UnknownIdentity`` if there is none of this name."""

    def list(self) -> List[StoredIdentity]: ...
    def rotate(self, name: str) -> StoredIdentity:
        """Rotates the identity's primary key (its identifier stays the same)."""

    def load(self, name: str) -> Identity:
        """The stored identity, with its keys in a vault of its own (for a channel or ``Node(identity=...)``).

        Its stored credential (``credentials/NAME.cred``) is presented while valid; an expired one is not (it is
        logged), and one that does not decode or names another identity raises ``InvalidCredential``."""

    def peers(self) -> List[StoredPeer]:
        """Every pinned or named peer."""

    def peer(self, name: str) -> StoredPeer:
        """The peer with this name or identifier (``UnknownPeer`` otherwise)."""

    def forget_peer(self, name: str) -> StoredPeer:
        """Forgets a peer's pin and name; returns what was forgotten."""

    def name_peer(self, name: str, identifier: str) -> None:
        """Names the peer ``identifier``; its history is pinned at first contact."""

    def pin_history(self, history: _Bytes, name: Optional[str] = None) -> StoredPeer:
        """Pins exported history bytes (first contact, or an update under the pinning rules)."""

@final
class SecureChannel:
    """One end of a secure channel: a sans-IO Noise XX handshake, then transport encryption.

    Usable as a context manager; leaving the block closes the channel, which wipes its keys from memory (the
    transient copies that are not wiped are listed in docs/SECURITY.md, "Key erasure").
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
        raises ``Insecure``; with both, ``InvalidArgument`` (a ``ValueError``)."""

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

# --- The runtime: a node with services, mailboxes, relays, portals and secure channels over TCP or UDP. ----
# Every ``async def`` below returns a coroutine: await it, or pass it to ``asyncio.create_task``. Cancelling
# it cancels the work in Rust.

@final
class Node:
    """A runtime node. ``async with Node() as node:`` shuts it down on exit.

    Its identity: a fresh one for this run (no ``identity``), a :class:`Identity` made in Python, or the name
    of a stored identity, loaded from the SQLite store in ``home`` (default ``$LATCHKEY_HOME``, else
    ``~/.latchkey``: the store of the ``latchkey`` CLI) and created there first if ``create`` is true
    (``UnknownIdentity`` otherwise). A stored identity that enrolled (:func:`enroll` saved
    ``credentials/NAME.cred``) presents that credential in the node's handshakes from the start, while it is
    valid: no :meth:`use_authorities` call is needed to present it. An expired one is not presented (a warning
    is logged) until :meth:`use_authorities` with ``authority_address`` refreshes it; a stored credential that
    does not decode or is about another identity raises ``InvalidCredential``. ``relay=True`` makes a relay
    node (see :meth:`start_relay`).
    """

    def __new__(
        cls,
        name: str = "python",
        *,
        identity: Union[Identity, str, None] = None,
        home: Union[str, "os.PathLike[str]", None] = None,
        create: bool = False,
        relay: bool = False,
    ) -> Self: ...
    @property
    def name(self) -> str: ...
    @property
    def identifier(self) -> str: ...
    @property
    def is_closed(self) -> bool: ...
    def pin_peers(self, store: IdentityStore, *, trust_on_first_use: bool = False) -> None:
        """Checks (and keeps) peer histories pinned in ``store`` in every later trust decision of this node."""

    @property
    def denied_count(self) -> int:
        """How many messages the flow rules refused on this node (raw transport, untrusted peers ...)."""

    async def use_authorities(
        self,
        authorities: Sequence[_Bytes],
        *,
        credential: Optional[_Bytes] = None,
        authority_address: Optional[str] = None,
        refetch_secs: int = 0,
        save_as: Optional[str] = None,
        home: Union[str, "os.PathLike[str]", None] = None,
    ) -> bool:
        """Makes this node a member (docs/RUNTIME.md, "Authorities on a node").

        With ``authorities`` (exported authority histories, e.g. ``Authority.export_history()``), every peer
        must present a valid, unrevoked credential of one of them when its channel is opened or accepted and
        on every message to this node's services, mailboxes, portals and relay service, each also under its
        policy (:meth:`set_policy`). The node presents ``credential`` (e.g. from :func:`enroll` or
        :func:`stored_credential`) in its own handshakes; without it, a node opened from a stored identity
        (``Node(identity="name")``) keeps presenting the credential stored for that identity. With
        ``authority_address`` (where the authority serves) it follows the authority's revocation lists,
        closing live channels of revoked peers, fetched again every ``refetch_secs`` (0: 30 s), and refreshes
        its credential at half its validity (an expired stored one at once), saving it as ``save_as`` in
        ``home`` when given (the stored credential, when no ``credential`` is given: back where it was
        read). Call it once, before starting listeners, services and channels (those started earlier
        are not checked). Returns whether the authority was reached (if not, it keeps trying).
        """

    def set_suite(self, suite: Union[CipherSuite, Literal["auto", "chachapoly", "aesgcm"], None]) -> None:
        """The cipher suite of the routed channels this node opens and accepts (docs/PROTOCOL.md 5.1): a
        listener takes the suite chosen when it is started (:meth:`listen`), a connection the one chosen
        when it is opened (those already there keep theirs: choose before starting them). ``None`` or
        ``"auto"`` (the default): offer AES-256-GCM where the CPU has AES instructions, ChaCha20-Poly1305
        otherwise, and accept both. A :class:`CipherSuite` (or ``"chachapoly"``, ``"aesgcm"``, as the CLI's
        ``--suite``): offer and accept that suite only; a peer offering the other is refused with
        :class:`UnsupportedSuite` (on both ends). Another string raises :class:`InvalidArgument` (and
        changes nothing); another type, ``TypeError``."""

    def set_policy(self, address: str, policy: str) -> None:
        """The attribute policy (docs/POLICY.md) of the worker at ``address``, evaluated for every message to it
        (``resource.name`` = ``address``; ``action.name`` ``"send"`` for services and mailboxes, ``"connect"``
        for outlets); ``"channel"`` guards handshakes (``action.name = "open"``). Set it after
        :meth:`use_authorities` (``InvalidState`` before) and before starting what it guards (``InvalidState``
        if that already runs); ``PolicySyntax`` for bad text. A refused message is dropped and counted in
        :attr:`denied_count`."""

    def has_policy(self, address: str) -> bool:
        """Whether a policy is set for ``address``."""

    def trust_counts(self) -> Tuple[int, int, int]:
        """``(revoked, expired, refreshed)``: channels closed because their peer was revoked, because their
        peer's credential expired, and how many times this node's own credential was refreshed."""

    async def listen_tcp(self, address: str = "127.0.0.1:0") -> str:
        """Accepts TCP connections; returns the bound ``host:port``."""

    async def bind_udp(self, address: str = "127.0.0.1:0") -> str:
        """Receives datagrams; returns the bound ``host:port``."""

    def listen(
        self, address: str = "api", *, trusted: Optional[Sequence[str]] = None, trust_any: bool = False
    ) -> ChannelListener:
        """Accepts secure channels at ``address`` from ``trusted`` identifiers, or any with ``trust_any=True``;
        from any transport and through the relays this node registered at. With neither, raises ``Insecure``.
        """

    def start_echo(
        self, address: str = "echo", *, trusted: Optional[Sequence[str]] = None, trust_any: bool = False
    ) -> None:
        """Hosts an echo service for the channels of this node's listeners (now and later).

        Only channels from ``trusted`` identifiers, or from any with an explicit ``trust_any=True``; with
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

    async def connect(
        self,
        address: str,
        *,
        service: str = "api",
        relay_name: Optional[str] = None,
        udp: bool = False,
        timeout: Optional[float] = None,
        trusted: Optional[Sequence[str]] = None,
        trust_any: bool = False,
        via_relay_channel: Optional[str] = None,
    ) -> NodeChannel:
        """A secure channel to the listener ``service`` of the node at ``host:port`` (or of the node registered
        as ``relay_name`` at the relay ``address``), over TCP, or UDP with ``udp=True``.

        The peer must be in ``trusted`` (``UntrustedPeer`` otherwise), or anyone with ``trust_any=True``; with
        neither, raises ``Insecure``. ``Timeout`` (a ``TimeoutError``) after ``timeout`` seconds for the
        connection and the handshake together (default 10).

        With ``via_relay_channel`` (the relay's identifier, which it must prove), the channel to ``relay_name``
        travels inside a secure channel to the relay, which is shown this node's credential: needed for a relay
        with a ``forward`` policy (docs/POLICY.md), which drops bare TCP traffic to its names and refuses
        members its policy does not admit (a ``Timeout``). TCP and the listener ``"api"`` only. Closing either
        channel closes the other.
        """

    def start_relay(
        self,
        *,
        lease: Optional[float] = None,
        max_names: Optional[int] = None,
        max_names_per_identity: Optional[int] = None,
        allowed: Optional[Sequence[Tuple[str, str]]] = None,
    ) -> None:
        """Makes this relay node (``Node(relay=True)``) a relay for the channels of its listeners (start one
        first). A name lapses ``lease`` seconds after its last refresh (default 30); ``allowed`` lists
        ``(identifier, name)`` pairs that may register (``name`` ``"*"``: any); omitted, the defaults."""

    async def register_at_relay(
        self,
        relay_address: str,
        name: str,
        *,
        relay_trusted: Optional[Sequence[str]] = None,
        relay_trust_any: bool = False,
    ) -> str:
        """Registers this node as ``name`` at the relay at ``host:port``, through a secure channel to the relay
        (which must be in ``relay_trusted``, or anyone with ``relay_trust_any=True``), and keeps it fresh.
        Returns the relay's identifier. Peers then reach this node with ``connect(relay_address,
        relay_name=name, ...)``; ``Refused`` if the name belongs to another identity."""

    def create_outlet(
        self,
        target: str,
        *,
        address: str = "outlet",
        trusted: Optional[Sequence[str]] = None,
        trust_any: bool = False,
    ) -> None:
        """A TCP portal outlet at ``address``: each connection that comes through a channel of this node's
        listeners, from ``trusted`` identifiers (or any with ``trust_any=True``), is connected to ``target``
        (``host:port``)."""

    async def create_inlet(self, channel: NodeChannel, *, outlet: str = "outlet", listen: str = "127.0.0.1:0") -> str:
        """A TCP portal inlet on ``listen``: each connection to it is carried through ``channel`` to the outlet
        ``outlet`` on the far side. Returns the bound ``host:port``."""

    async def shutdown(self) -> None:
        """Stops accepting, closes every channel of this node (returning once each has stopped) and ends its
        services, mailboxes and listeners. Idempotent; later calls raise ``ChannelClosed``."""

    async def close(self) -> None:
        """The same as :meth:`shutdown`."""

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

    async def close(self) -> None:
        """Closes this end (telling the far end); returns once it has stopped."""

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
    async def accept(self) -> Optional[NodeChannel]:
        """The next accepted channel; ``None`` once the listener or its node is closed."""

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

    async def reply(self, payload: _Bytes) -> None:
        """Answers back the way it came (``MalformedMessage`` if its return route leads elsewhere)."""

@final
class Mailbox:
    """``async for message in mailbox`` until :meth:`close` (or the node closes)."""

    @property
    def address(self) -> str: ...
    async def recv(self) -> Optional[NodeMessage]:
        """The next message; ``None`` once the mailbox or its node is closed."""

    def close(self) -> None:
        """Frees the address; pending and later ``recv`` calls return ``None``. Idempotent."""

    def __aiter__(self) -> Self: ...
    async def __anext__(self) -> NodeMessage: ...

# --- A device behind a relay, sans-IO: bring your own socket and clock (facade `DeviceSession`). -----------

@final
class DeviceSession:
    """A device behind a relay over one byte stream (a TCP connection, a UART), driven with bytes and the
    caller's clock. Call :meth:`connected` / :meth:`disconnected` when the stream comes up or goes down, feed
    every byte read to :meth:`receive`, write everything :meth:`take_output` returns, call
    :meth:`handle_timeout` at :meth:`next_timeout`, and take :meth:`poll_event` / :meth:`poll_message` after
    each call. Times are milliseconds on one monotonic clock of the caller's choosing (never going back)."""

    def __new__(
        cls,
        identity: Identity,
        name: str,
        *,
        now_ms: int,
        relay_trusted: Optional[Sequence[str]] = None,
        relay_trust_any: bool = False,
        trusted: Optional[Sequence[str]] = None,
        trust_any: bool = False,
        services: Sequence[str] = ...,
        unix_now: Optional[int] = None,
        refresh_ms: int = 5000,
        max_phones: int = 8,
    ) -> DeviceSession:
        """A device acting as ``identity`` that registers as ``name`` (1..=200 bytes of UTF-8) at a relay. The
        relay must be one of ``relay_trusted`` (or ``relay_trust_any=True``), phones one of ``trusted`` (or
        ``trust_any=True``): one of each pair is required (``Insecure`` otherwise). ``services``: the service
        names phones may send to. ``unix_now``: the Unix time at ``now_ms`` (``None``: the system clock)."""

    @property
    def identifier(self) -> str: ...
    @property
    def is_registered(self) -> bool:
        """Whether the relay has accepted the name on the current relay channel."""

    @property
    def is_connected(self) -> bool: ...
    @property
    def phone_count(self) -> int:
        """Phone channels established now."""

    @property
    def output_len(self) -> int:
        """Bytes waiting for :meth:`take_output`."""

    def connected(self, now_ms: int) -> None:
        """The stream is up (a new connection). ``InvalidState`` when already connected."""

    def disconnected(self, now_ms: int) -> None:
        """The stream went down: unread input and untaken output are discarded. Idempotent."""

    def receive(self, now_ms: int, data: _Bytes) -> None:
        """Bytes read from the stream, any split. ``InvalidState`` when not connected; ``FrameTooLarge`` or
        ``MalformedMessage``: the stream is broken, close it and call :meth:`disconnected`."""

    def take_output(self, max_bytes: Optional[int] = None) -> bytes:
        """The bytes to write to the stream, in order (taken: write them all before taking more)."""

    def next_timeout(self) -> Optional[int]:
        """When :meth:`handle_timeout` is next due (ms on the caller's clock), or ``None``."""

    def handle_timeout(self, now_ms: int) -> None:
        """Runs the timers due at ``now_ms`` (calling it early is harmless)."""

    def poll_event(self) -> Optional[DeviceEvent]:
        """The next event, in order, or ``None``."""

    def poll_message(self) -> Optional[DeviceMessage]:
        """The next message a phone sent to one of the services, or ``None``."""

    def reply(self, now_ms: int, message: DeviceMessage, payload: _Bytes) -> None:
        """Answers ``message`` through its phone channel, reliably. ``ChannelClosed``, ``QueueFull``,
        ``MessageTooLarge`` or ``InvalidArgument`` (the sender wants no answer)."""

    def stats(self) -> dict[str, int]:
        """The device's counters: ``frames_in``, ``frames_out``, ``bytes_in``, ``bytes_out``, ``frames_rejected``,
        ``output_dropped``, ``registrations``, ``relay_channels``, ``phone_channels``, ``messages``,
        ``resets_sent``, ``handshakes_dropped`` and ``rekeys`` (re-handshakes completed on the relay and phone
        channels)."""

@final
class DeviceEvent:
    """Something that happened to a device. ``channel`` is the phone channel (0 for the relay's events);
    ``detail`` an identifier, a name or a reason (possibly chosen by the remote party: print, do not parse)."""

    @property
    def kind(
        self,
    ) -> Literal[
        "relay_connected", "registered", "registration_refused", "relay_lost", "phone_connected", "phone_closed"
    ]: ...
    @property
    def channel(self) -> int: ...
    @property
    def detail(self) -> str: ...

@final
class DeviceMessage:
    """A message a phone sent to one of the device's services; answer it with :meth:`DeviceSession.reply`."""

    @property
    def channel(self) -> int: ...
    @property
    def peer_identifier(self) -> str:
        """The sender's identifier, authenticated by the channel."""

    @property
    def service(self) -> str: ...
    @property
    def payload(self) -> bytes: ...

def encode_routed_message(onward: Sequence[str], ret: Sequence[str], payload: _Bytes) -> bytes:
    """A routed message's bytes (docs/RUNTIME.md; without the stream's 4-byte length). ``InvalidArgument``
    for an address that is empty or above 255 bytes, or a route above 32 addresses."""

def decode_routed_message(data: _Bytes) -> tuple[list[str], list[str], bytes]:
    """``(onward, ret, payload)`` of one routed message. ``DecodeError`` when it does not decode."""

# Trust: enrollment authorities, enrollment, credentials, policies and delegation (docs/RUNTIME.md, "Authority,
# enrollment and enforcement"). ``home`` is the Latchkey home (default ``$LATCHKEY_HOME``, else ``~/.latchkey``).

_Home = Union[str, "os.PathLike[str]", None]

@final
class Member:
    """A member of an authority, as its store keeps it."""

    @property
    def identifier(self) -> str: ...
    @property
    def attributes(self) -> Dict[str, str]: ...
    @property
    def credential_id(self) -> str:
        """Hex of the latest credential's id ("" if none was recorded)."""

    @property
    def enrolled_at(self) -> int:
        """Unix seconds."""

@final
class CredentialInfo:
    """What a credential says (decoded, not verified: see :func:`verify_credential`)."""

    @property
    def id(self) -> str:
        """Hex of the credential's id (what :meth:`Authority.revoke_credential` takes)."""

    @property
    def subject(self) -> str: ...
    @property
    def issuer(self) -> str: ...
    @property
    def attributes(self) -> Dict[str, str]: ...
    @property
    def not_before(self) -> int:
        """Unix seconds, inclusive."""

    @property
    def not_after(self) -> int:
        """Unix seconds, exclusive."""

    @property
    def size(self) -> int:
        """Its size in bytes."""

@final
class Authority:
    """An enrollment authority acting as a stored identity, its store ``authority-NAME.sqlite3`` in the home
    (the same files as ``latchkey authority ...``)."""

    @staticmethod
    def open(
        name: str, *, home: _Home = None, create: bool = False, credential_validity_secs: Optional[int] = None
    ) -> Authority:
        """Opens the authority acting as identity ``name``; ``create=True`` makes the identity and the store if
        missing (otherwise ``UnknownIdentity``). Issued credentials are valid ``credential_validity_secs``
        (default one day)."""

    @property
    def identifier(self) -> str: ...
    def export_history(self) -> bytes:
        """The authority's exported history: what nodes and :func:`verify_credential` trust it by."""

    def create_token(
        self, attributes: Optional[Mapping[str, str]] = None, *, ttl_secs: int = 3600, uses: int = 1
    ) -> str:
        """A new enrollment token (``lkt...``, a secret) for ``uses`` enrollments within ``ttl_secs``, giving
        members ``attributes``."""

    def revoke_identifier(self, identifier: str) -> int:
        """Revokes an identifier; returns the new revocation sequence number."""

    def revoke_credential(self, credential_id: str) -> int:
        """Revokes one credential by its id (32 hex digits); returns the new revocation sequence number."""

    def members(self) -> List[Member]: ...
    def integrity_check(self) -> None:
        """SQLite's integrity check of the store (``StorageError`` if it fails)."""

    def set_policy(self, name: str, text: str) -> None:
        """Stores a policy (``PolicySyntax``, naming line and column, if it does not parse)."""

    def policy(self, name: str) -> str:
        """The text of a stored policy (``InvalidArgument`` if there is none)."""

    async def serve(self, listen: str) -> str:
        """Serves enrollment, refresh, revocations and X3DH enrollment on TCP ``listen``; returns the bound
        address. Serves until the process exits."""

    async def serve_via_relay(self, relay_address: str) -> None:
        """Serves X3DH enrollment through the mailbox of the relay at ``relay_address`` (also what was
        deposited while it was down); reconnects after failures until the process exits."""

def enroll(name: str, authority_address: str, token: str, *, home: _Home = None) -> Coroutine[Any, Any, bytes]:
    """Enrolls the stored identity ``name`` with the authority at ``authority_address`` (the token names it);
    saves ``credentials/NAME.cred`` and returns the credential. ``EnrollmentRefused`` for a used-up, expired
    or unknown token."""

def enroll_via_relay(
    name: str, relay_address: str, token: str, *, home: _Home = None, wait_secs: int = 30
) -> Coroutine[Any, Any, bytes]:
    """Enrolls ``name`` through the relay's mailbox (X3DH; the authority may be offline), waiting up to
    ``wait_secs`` (``Timeout`` after). Saves and returns the credential."""

def stored_credential(name: str, *, home: _Home = None) -> bytes:
    """The credential saved for ``name`` (``UnknownIdentity`` if none)."""

def credential_info(credential: _Bytes) -> CredentialInfo:
    """Decodes a credential (``DecodeError`` if it does not parse)."""

def verify_credential(
    credential: _Bytes, authority_history: _Bytes, subject_history: _Bytes, *, now: Optional[int] = None
) -> Dict[str, str]:
    """Verifies a credential as a node would when ``subject_history``'s identity presents it; returns the
    attributes it vouches for (``InvalidCredential``, ``UntrustedIssuer``, ``SubjectMismatch``, ``Expired``
    otherwise). ``now``: Unix seconds (default the clock)."""

def parse_policy(policy: str) -> None:
    """``PolicySyntax`` (message ``line L, column C: ...`` with a caret excerpt) if it does not parse."""

def check_policy(
    policy: str,
    *,
    subject: Optional[Mapping[str, str]] = None,
    resource: Optional[Mapping[str, str]] = None,
    action: Optional[Mapping[str, str]] = None,
) -> None:
    """Returns if ``policy`` allows; raises ``PolicyDenied`` if not, ``PolicySyntax`` if it does not parse."""

def delegate_issue(
    owner: str,
    delegate_history: _Bytes,
    resources: Sequence[str],
    actions: Sequence[str],
    not_after: int,
    *,
    home: _Home = None,
) -> bytes:
    """The stored identity ``owner`` grants ``resources`` x ``actions`` until ``not_after`` (exclusive) to
    ``delegate_history``'s identity: a one-link chain."""

def delegate_attenuate(
    holder: str,
    chain: _Bytes,
    delegate_history: _Bytes,
    resources: Sequence[str],
    actions: Sequence[str],
    not_after: int,
    *,
    home: _Home = None,
) -> bytes:
    """The chain's last delegate ``holder`` passes a narrower grant on (``CaveatWidened`` if wider)."""

def delegate_verify(
    chain: _Bytes,
    owner_history: _Bytes,
    presenter: str,
    resource: str,
    action: str,
    *,
    now: Optional[int] = None,
) -> None:
    """Verifies a chain offline for ``presenter`` doing ``action`` on ``resource`` at ``now``, trusting
    ``owner_history``'s owner (``InvalidDelegation``, ``PolicyDenied``, ``Expired``, ... otherwise)."""
