"""The "direct TCP" carriage of a secure channel over asyncio streams.

Every message on the stream -- the three handshake messages, then transport frames -- is a 4-byte big-endian
length followed by that many bytes, as ``facade/examples/direct_peer.rs`` and the C device speak it. This
module only moves bytes; every protocol decision is taken by :class:`latchkey.SecureChannel` (Rust).
"""

import asyncio
import struct
from typing import Optional, Union

from latchkey._latchkey import FRAME_OVERHEAD, MAX_PLAINTEXT_LEN, MessageTooLarge, SecureChannel

MAX_MESSAGE = MAX_PLAINTEXT_LEN + FRAME_OVERHEAD
"""Largest message on the stream: a full transport frame (handshake messages are smaller)."""

_LENGTH = struct.Struct(">I")


async def read_message(reader: asyncio.StreamReader) -> Optional[bytes]:
    """Reads one message; ``None`` when the peer closed the stream cleanly between messages.

    Raises ``ConnectionError`` if the stream ends inside a message and ``MessageTooLarge`` for a length
    above :data:`MAX_MESSAGE` (nothing of such a message is read).
    """
    try:
        header = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise ConnectionError("stream ended inside a length prefix") from e
    (length,) = _LENGTH.unpack(header)
    if length > MAX_MESSAGE:
        raise MessageTooLarge(f"message of {length} bytes exceeds {MAX_MESSAGE}")
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as e:
        raise ConnectionError(f"stream ended after {len(e.partial)} of {length} bytes") from e


def write_message(writer: asyncio.StreamWriter, message: Union[bytes, bytearray, memoryview]) -> None:
    """Queues one message (call ``await writer.drain()`` to apply back-pressure)."""
    if len(message) > MAX_MESSAGE:
        raise MessageTooLarge(f"message of {len(message)} bytes exceeds {MAX_MESSAGE}")
    writer.write(_LENGTH.pack(len(message)) + bytes(message))


HANDSHAKE_TIMEOUT = 10.0
"""Seconds :func:`handshake` waits for the whole handshake by default (a silent peer must not hold a task)."""


async def handshake(
    channel: SecureChannel,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    timeout: Optional[float] = HANDSHAKE_TIMEOUT,
) -> None:
    """Runs the handshake of ``channel`` over the stream until it is finished.

    Raises ``asyncio.TimeoutError`` after ``timeout`` seconds (``None``: wait forever), ``ConnectionError``
    if the peer closes the stream, and the channel's :class:`latchkey.LatchkeyError` if the handshake fails.
    The handshake steps run in the default executor: they cost a few Diffie-Hellman operations and
    signatures and release the GIL, so the event loop keeps serving other connections meanwhile.
    """
    await asyncio.wait_for(_handshake(channel, reader, writer), timeout)


async def _handshake(
    channel: SecureChannel, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    loop = asyncio.get_running_loop()
    if channel.role == "initiator":
        first = await loop.run_in_executor(None, channel.handshake_step, None)
        assert first is not None  # the initiator always writes the first message
        write_message(writer, first)
        await writer.drain()
    while not channel.is_finished:
        incoming = await read_message(reader)
        if incoming is None:
            raise ConnectionError("connection closed during the handshake")
        reply = await loop.run_in_executor(None, channel.handshake_step, incoming)
        if reply is not None:
            write_message(writer, reply)
            await writer.drain()


async def send(channel: SecureChannel, writer: asyncio.StreamWriter, plaintext: bytes) -> None:
    """Encrypts ``plaintext`` into one frame and writes it."""
    write_message(writer, channel.encrypt(plaintext))
    await writer.drain()


async def receive(channel: SecureChannel, reader: asyncio.StreamReader) -> Optional[bytes]:
    """Reads and decrypts one frame; ``None`` when the peer closed the stream."""
    frame = await read_message(reader)
    return None if frame is None else channel.decrypt(frame)
