"""latchkey.direct_tcp: the length-prefixed framing, against raw bytes on real loopback sockets."""

import asyncio
import struct
from typing import Awaitable, Callable, Optional, TypeVar

import pytest

import latchkey
from latchkey import direct_tcp
from conftest import Listener

T = TypeVar("T")


async def against_raw_server(
    raw: bytes, action: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[T]]
) -> T:
    """Runs `action` on a connection to a server that sends `raw` and closes."""

    async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await action(reader, writer)
        finally:
            writer.close()


async def read(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> Optional[bytes]:
    return await direct_tcp.read_message(reader)


def test_messages_and_clean_end() -> None:
    async def two(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> list[Optional[bytes]]:
        return [await direct_tcp.read_message(reader) for _ in range(3)]

    raw = struct.pack(">I", 3) + b"abc" + struct.pack(">I", 0)
    assert asyncio.run(against_raw_server(raw, two)) == [b"abc", b"", None]


@pytest.mark.parametrize("raw", [b"\x00\x00", struct.pack(">I", 10) + b"short"])
def test_stream_ending_inside_a_message_is_a_connection_error(raw: bytes) -> None:
    with pytest.raises(ConnectionError):
        asyncio.run(against_raw_server(raw, read))


def test_oversized_length_is_refused_before_reading() -> None:
    raw = struct.pack(">I", direct_tcp.MAX_MESSAGE + 1)
    with pytest.raises(latchkey.MessageTooLarge):
        asyncio.run(against_raw_server(raw, read))


def test_writer_refuses_oversized_messages() -> None:
    async def write(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        direct_tcp.write_message(writer, bytes(direct_tcp.MAX_MESSAGE + 1))

    with pytest.raises(latchkey.MessageTooLarge):
        asyncio.run(against_raw_server(b"", write))


def test_handshake_on_a_closed_connection_is_a_connection_error() -> None:
    channel = latchkey.SecureChannel.initiator(latchkey.Identity.create(latchkey.Vault()), trust_any=True)

    async def shake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await direct_tcp.handshake(channel, reader, writer)

    with pytest.raises(ConnectionError, match="during the handshake"):
        asyncio.run(against_raw_server(b"", shake))
    assert not channel.is_finished


def test_handshake_with_a_silent_peer_times_out() -> None:
    async def scenario() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # reads m1, never answers, until the client gives up

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            channel = latchkey.SecureChannel.initiator(latchkey.Identity.create(latchkey.Vault()), trust_any=True)
            try:
                with pytest.raises(asyncio.TimeoutError):
                    await direct_tcp.handshake(channel, reader, writer, timeout=0.2)
            finally:
                writer.close()
            assert not channel.is_finished

    asyncio.run(scenario())


def test_rust_peer_drops_a_connection_that_sends_a_forged_frame(direct_peer: Listener) -> None:
    async def forge() -> Optional[bytes]:
        reader, writer = await asyncio.open_connection(direct_peer.host, direct_peer.port)
        try:
            channel = latchkey.SecureChannel.initiator(
                latchkey.Identity.create(latchkey.Vault()), trusted=[direct_peer.identifier]
            )
            await direct_tcp.handshake(channel, reader, writer)
            frame = bytearray(channel.encrypt(b"legit"))
            frame[-1] ^= 1
            direct_tcp.write_message(writer, bytes(frame))
            await writer.drain()
            return await direct_tcp.read_message(reader)
        finally:
            writer.close()

    assert asyncio.run(forge()) is None  # no reply: the peer closed the connection
    # ...and only that connection: a well-behaved client is still served.
    assert asyncio.run(echo_once(direct_peer)) == b"echo: after"


async def echo_once(peer: Listener) -> Optional[bytes]:
    reader, writer = await asyncio.open_connection(peer.host, peer.port)
    try:
        channel = latchkey.SecureChannel.initiator(latchkey.Identity.create(latchkey.Vault()), trusted=[peer.identifier])
        await direct_tcp.handshake(channel, reader, writer)
        await direct_tcp.send(channel, writer, b"after")
        return await direct_tcp.receive(channel, reader)
    finally:
        writer.close()
