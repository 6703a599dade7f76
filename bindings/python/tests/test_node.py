"""The runtime Node from asyncio: TCP, secure channels, services, mailboxes, lifetimes and errors."""

import asyncio
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Awaitable, Callable, List, Sequence, Tuple, TypeVar

import pytest

import latchkey
from conftest import EXAMPLES, STRANGER, Listener

T = TypeVar("T")


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(scenario(), timeout=60))


async def server_node() -> Tuple[latchkey.Node, str]:
    """A server whose listener and echo service take any authenticated client (said explicitly)."""
    server = latchkey.Node("server")
    address = await server.listen_tcp()
    server.listen("api", trust_any=True)
    server.start_echo(trust_any=True)
    return server, address


def test_request_through_a_channel_over_tcp() -> None:
    async def scenario() -> None:
        server, address = await server_node()
        async with server, latchkey.Node("client") as client:
            assert address.startswith("127.0.0.1:")
            async with await client.connect(address, trusted=[server.identifier]) as channel:
                assert channel.peer_identifier == server.identifier
                assert await channel.request("echo", b"hello") == b"hello"
                big = bytes(range(256)) * 200
                assert await channel.request("echo", big) == big
            assert channel.is_closed

    run(scenario)


def test_async_for_over_a_mailbox_and_replies() -> None:
    async def scenario() -> None:
        server, address = await server_node()
        async with server, latchkey.Node("client") as client:
            inbox = server.mailbox("inbox", trusted=[client.identifier])
            replies = client.mailbox("replies", trusted=[server.identifier])
            channel = await client.connect(address, trusted=[server.identifier])
            for i in range(3):
                await channel.send("inbox", b"m%d" % i, reply_to=replies)
            received: List[latchkey.NodeMessage] = []
            async for message in inbox:
                received.append(message)
                await message.reply(b"ack " + message.payload)
                if len(received) == 3:
                    inbox.close()
            assert [m.payload for m in received] == [b"m0", b"m1", b"m2"]
            assert {m.peer_identifier for m in received} == {client.identifier}
            assert {m.origin for m in received} == {"channel"}
            for i in range(3):
                reply = await replies.recv()
                assert reply is not None
                assert reply.payload == b"ack m%d" % i and reply.peer_identifier == server.identifier
                assert reply.origin == "channel"
            assert await inbox.recv() is None  # closed

    run(scenario)


def test_cancelled_recv_does_not_swallow_the_next_message() -> None:
    async def scenario() -> None:
        server, address = await server_node()
        async with server, latchkey.Node("client") as client:
            inbox = server.mailbox("inbox", trust_any=True)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(inbox.recv(), timeout=0.1)
            channel = await client.connect(address, trusted=[server.identifier])
            await channel.send("inbox", b"after the timeout")
            message = await asyncio.wait_for(inbox.recv(), timeout=10)
            assert message is not None and message.payload == b"after the timeout"

    run(scenario)


def test_programs_using_a_node_exit_cleanly() -> None:
    """Completions on the runtime's threads must not be inside Python when the interpreter finalizes."""
    code = """
import asyncio, latchkey

async def main():
    async with latchkey.Node() as server, latchkey.Node() as client:
        address = await server.listen_tcp()
        server.listen("api", trusted=[client.identifier])
        server.start_echo(trusted=[client.identifier])
        channel = await client.connect(address, trusted=[server.identifier])
        assert await channel.request("echo", b"x") == b"x"

asyncio.run(main())
"""
    for _ in range(10):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr


def test_listener_yields_accepted_channels() -> None:
    async def scenario() -> None:
        async with latchkey.Node("server") as server, latchkey.Node("a") as a, latchkey.Node("b") as b:
            address = await server.listen_tcp()
            listener = server.listen("api", trusted=[a.identifier, b.identifier])
            assert listener.address == "api"
            await a.connect(address, trusted=[server.identifier])
            await b.connect(address, trusted=[server.identifier])
            peers = set()
            async for channel in listener:
                peers.add(channel.peer_identifier)
                if len(peers) == 2:
                    listener.close()
            assert peers == {a.identifier, b.identifier}
            assert await listener.accept() is None

    run(scenario)


def test_untrusted_server_is_refused_by_the_client() -> None:
    async def scenario() -> None:
        server, address = await server_node()
        async with server, latchkey.Node("client") as client:
            with pytest.raises(latchkey.UntrustedPeer):
                await client.connect(address, trusted=[STRANGER])

    run(scenario)


def test_server_refuses_an_untrusted_client() -> None:
    async def scenario() -> None:
        async with latchkey.Node("server") as server, latchkey.Node("client") as client:
            address = await server.listen_tcp()
            server.listen("strict", trusted=[STRANGER])
            with pytest.raises(latchkey.Refused):
                await client.connect(address, service="strict", trust_any=True)

    run(scenario)


def test_service_that_never_answers_times_out() -> None:
    async def scenario() -> None:
        server, address = await server_node()
        async with server, latchkey.Node("client") as client:
            silent = server.mailbox("silent", trusted=[client.identifier])
            channel = await client.connect(address, trusted=[server.identifier])
            with pytest.raises(latchkey.Timeout):
                await channel.request("silent", b"anyone?", timeout=0.3)
            message = await silent.recv()  # it was delivered, just not answered
            assert message is not None and message.payload == b"anyone?"
            with pytest.raises(ValueError):
                await channel.request("echo", b"x", timeout=-1)

    run(scenario)


def test_connection_errors() -> None:
    async def scenario() -> None:
        async with latchkey.Node("client") as client:
            with pytest.raises(latchkey.TransportError):
                await client.connect("127.0.0.1:1", trust_any=True)
            with pytest.raises(latchkey.BadAddress):
                await client.connect("no port here", trust_any=True)
            with pytest.raises(latchkey.BadAddress):
                await client.listen_tcp("nonsense")

    run(scenario)


def test_closed_channel_raises_channel_closed() -> None:
    async def scenario() -> None:
        server, address = await server_node()
        async with server, latchkey.Node("client") as client:
            channel = await client.connect(address, trust_any=True)
            await channel.close()
            assert channel.is_closed
            with pytest.raises(latchkey.ChannelClosed):
                await channel.send("echo", b"late")
            with pytest.raises(latchkey.ChannelClosed):
                await channel.request("echo", b"late")

    run(scenario)


def test_closed_node_raises_invalid_state_and_ends_iteration() -> None:
    async def scenario() -> None:
        node = latchkey.Node("n")
        mailbox = node.mailbox("box", trusted=[])

        async def drain() -> List[bytes]:
            return [m.payload async for m in mailbox]

        draining = asyncio.create_task(drain())
        async with node:
            assert not node.is_closed
        assert node.is_closed
        assert await draining == []  # the node's close ended the iteration
        with pytest.raises(latchkey.InvalidState, match="node is closed"):
            node.mailbox("other", trusted=[])
        with pytest.raises(latchkey.InvalidState):
            node.start_echo(trust_any=True)
        with pytest.raises(latchkey.InvalidState):
            node.listen(trust_any=True)
        with pytest.raises(latchkey.InvalidState):
            await node.connect("127.0.0.1:1", trust_any=True)
        with pytest.raises(latchkey.InvalidState):
            await node.listen_tcp()
        await node.close()  # idempotent

    run(scenario)


def test_address_rules() -> None:
    async def scenario() -> None:
        async with latchkey.Node("n") as node:
            held = node.mailbox("taken", trusted=[])
            with pytest.raises(latchkey.AddressInUse):
                node.mailbox("taken", trust_any=True)
            held.close()
            assert await held.recv() is None  # closing frees the address...
            node.mailbox("taken", trusted=[])  # ...so it can be registered again
            with pytest.raises(latchkey.MalformedMessage):
                node.mailbox("", trusted=[])
            with pytest.raises(latchkey.DecodeError):
                node.listen("api", trusted=["not an identifier"])
            assert repr(node).startswith('<latchkey.Node "n" lk')

    run(scenario)


@pytest.mark.parametrize(
    "call",
    [
        lambda node: node.mailbox(3, trusted=[]),
        lambda node: node.listen("api", trusted="lk00"),
        lambda node: node.start_echo(b"echo", trust_any=True),
        lambda node: node.listen("api", trust_any="yes"),
        lambda node: latchkey.Node(name=None),  # type: ignore[arg-type]
    ],
)
def test_wrong_types_are_type_errors(call: Callable[[latchkey.Node], object]) -> None:
    async def scenario() -> None:
        async with latchkey.Node("n") as node:
            with pytest.raises(TypeError):
                call(node)

    run(scenario)


def test_wrong_payload_type_is_a_type_error() -> None:
    async def scenario() -> None:
        server, address = await server_node()
        async with server, latchkey.Node("client") as client:
            channel = await client.connect(address, trust_any=True)
            with pytest.raises(TypeError):
                await channel.send("echo", "text")  # type: ignore[arg-type]

    run(scenario)


def test_node_in_another_process() -> None:
    """The node example, run as written in its own process, serves a Python node over TCP."""
    client = latchkey.Node("client")
    peer = Listener([sys.executable, str(EXAMPLES / "node_echo.py"), "--trust", client.identifier])
    try:

        async def scenario() -> None:
            async with client:
                channel = await client.connect(peer.address, trusted=[peer.identifier])
                assert await channel.request("echo", b"ping") == b"ping"
                assert await channel.request("inbox", b"12345") == b"got 5 bytes"

        run(scenario)
    finally:
        peer.stop()
    assert f"inbox: 5 bytes from {client.identifier} (channel)" in peer.stderr()


def test_node_example_requires_explicit_trust_and_refuses_strangers() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "node_echo.py")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "--trust" in result.stderr
    peer = Listener([sys.executable, str(EXAMPLES / "node_echo.py"), "--trust", STRANGER])
    try:

        async def scenario() -> None:
            async with latchkey.Node("client") as client:
                with pytest.raises(latchkey.Refused):
                    await client.connect(peer.address, trusted=[peer.identifier])

        run(scenario)
    finally:
        peer.stop()


def test_stored_identity_survives_restarts(tmp_path: Path) -> None:
    with pytest.raises(latchkey.UnknownIdentity):
        latchkey.Node(identity="service", home=tmp_path)
    first = latchkey.Node(identity="service", home=tmp_path, create=True)
    again = latchkey.Node(identity="service", home=str(tmp_path))
    assert again.identifier == first.identifier
    assert latchkey.Node(identity="other", home=tmp_path, create=True).identifier != first.identifier
    assert latchkey.Node().identifier != first.identifier  # no identity: a fresh one per node

    async def scenario() -> None:
        async with latchkey.Node(identity="service", home=tmp_path) as server, latchkey.Node() as client:
            address = await server.listen_tcp()
            server.listen("api", trusted=[client.identifier])
            server.start_echo(trusted=[client.identifier])
            channel = await client.connect(address, trusted=[first.identifier])
            assert await channel.request("echo", b"same identity") == b"same identity"

    run(scenario)


def test_unusable_store_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises((latchkey.StorageError, latchkey.TransportError)):
        latchkey.Node(identity="x", home=blocker, create=True)


def test_trust_is_never_implied_by_an_omitted_argument() -> None:
    async def scenario() -> None:
        async with latchkey.Node("n") as node:
            calls: List[Callable[[], object]] = [
                lambda: node.listen("api"),
                lambda: node.start_echo("echo"),
                lambda: node.mailbox("inbox"),
            ]
            for call in calls:
                with pytest.raises(latchkey.Insecure, match="trust_any=True"):
                    call()
            with pytest.raises(latchkey.Insecure, match="trust_any=True"):
                await node.connect("127.0.0.1:1")
            with pytest.raises(ValueError, match="not both"):
                node.listen("api", trusted=[node.identifier], trust_any=True)
            with pytest.raises(ValueError, match="not both"):
                node.mailbox("inbox", trusted=[], trust_any=True)
            assert issubclass(latchkey.Insecure, latchkey.LatchkeyError)
            # Nothing was registered by the refused calls: the addresses are still free.
            node.listen("api", trusted=[])
            node.start_echo("echo", trusted=[])
            node.mailbox("inbox", trusted=[])

    run(scenario)


def routed_frame(onward: Sequence[str], ret: Sequence[str], payload: bytes) -> bytes:
    """A TCP frame as docs/RUNTIME.md specifies: 4-byte big-endian length, then the routed message
    (version 0x01, onward count, (length, bytes)..., return count, (length, bytes)..., payload)."""
    message = bytearray([0x01, len(onward)])
    for address in onward:
        message += bytes([len(address)]) + address.encode()
    message.append(len(ret))
    for address in ret:
        message += bytes([len(address)]) + address.encode()
    message += payload
    return struct.pack(">I", len(message)) + bytes(message)


def raw_tcp_send(address: str, frames: List[bytes], listen_for: float) -> bytes:
    """Connects with a plain socket, sends `frames`, and returns whatever comes back within `listen_for` s."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for frame in frames:
            sock.sendall(frame)
        sock.settimeout(listen_for)
        received = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except socket.timeout:
            pass
        return received


async def wait_for_denials(node: latchkey.Node, count: int) -> None:
    for _ in range(1000):
        if node.denied_count >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"only {node.denied_count} deliveries refused, expected {count}")


def test_mailbox_refuses_raw_tcp_and_reports_origin() -> None:
    """An anonymous TCP client cannot reach services or mailboxes; a trusted secure channel can."""

    async def scenario() -> None:
        async with latchkey.Node("server") as server, latchkey.Node("client") as client:
            address = await server.listen_tcp()
            inbox = server.mailbox("inbox", trusted=[client.identifier])
            open_box = server.mailbox("open", trust_any=True)
            server.start_echo("echo", trust_any=True)
            server.listen("api", trusted=[client.identifier])
            forged = [
                routed_frame(["inbox"], [], b"forged for inbox"),
                routed_frame(["open"], [], b"forged for open"),
                routed_frame(["echo"], [], b"reflect me"),
            ]
            echoed = await asyncio.to_thread(raw_tcp_send, address, forged, 0.5)
            assert echoed == b""  # the echo service did not answer the raw client
            await wait_for_denials(server, 3)

            channel = await client.connect(address, trusted=[server.identifier])
            await channel.send("inbox", b"through the channel")
            await channel.send("open", b"also through the channel")
            for box, expected in [(inbox, b"through the channel"), (open_box, b"also through the channel")]:
                message = await asyncio.wait_for(box.recv(), timeout=10)
                assert message is not None
                assert message.payload == expected
                assert message.peer_identifier == client.identifier
                assert message.origin == "channel"
                assert "out of a channel with " + client.identifier in repr(message)
                with pytest.raises(asyncio.TimeoutError):  # the forged messages were never queued
                    await asyncio.wait_for(box.recv(), timeout=0.2)
            assert await channel.request("echo", b"ping") == b"ping"

    run(scenario)


def test_services_serve_only_trusted_peers_of_every_listener() -> None:
    """Services started before a listener serve its channels too, and only from the peers they trust."""

    async def scenario() -> None:
        async with latchkey.Node("server") as server, latchkey.Node("a") as a, latchkey.Node("b") as b:
            inbox = server.mailbox("inbox", trusted=[a.identifier])
            server.start_echo("echo", trusted=[a.identifier])
            address = await server.listen_tcp()
            server.listen("api", trust_any=True)  # after the services: they are opened to it
            from_a = await a.connect(address, trusted=[server.identifier])
            from_b = await b.connect(address, trusted=[server.identifier])
            assert await from_a.request("echo", b"a") == b"a"
            with pytest.raises(latchkey.Timeout):
                await from_b.request("echo", b"b", timeout=0.5)
            before = server.denied_count
            await from_b.send("inbox", b"from b")  # acknowledged by the node, refused by the mailbox
            await wait_for_denials(server, before + 1)
            await from_a.send("inbox", b"from a")
            message = await asyncio.wait_for(inbox.recv(), timeout=10)
            assert message is not None and message.payload == b"from a"
            assert message.peer_identifier == a.identifier and message.origin == "channel"

            # A second listener, started later, is served as well.
            server.listen("api2", trusted=[a.identifier])
            second = await a.connect(address, service="api2", trusted=[server.identifier])
            assert await second.request("echo", b"again") == b"again"

    run(scenario)
