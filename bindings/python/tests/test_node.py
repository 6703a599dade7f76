"""The runtime Node from asyncio: TCP, secure channels, services, mailboxes, lifetimes and errors."""

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Awaitable, Callable, List, Tuple, TypeVar

import pytest

import latchkey
from conftest import EXAMPLES, STRANGER, Listener

T = TypeVar("T")


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(scenario(), timeout=60))


async def server_node() -> Tuple[latchkey.Node, str]:
    server = latchkey.Node("server")
    address = await server.listen_tcp()
    server.listen("api")
    server.start_echo()
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
            inbox = server.mailbox("inbox")
            replies = client.mailbox("replies")
            channel = await client.connect(address)
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
            for i in range(3):
                reply = await replies.recv()
                assert reply is not None
                assert reply.payload == b"ack m%d" % i and reply.peer_identifier == server.identifier
            assert await inbox.recv() is None  # closed

    run(scenario)


def test_cancelled_recv_does_not_swallow_the_next_message() -> None:
    async def scenario() -> None:
        server, address = await server_node()
        async with server, latchkey.Node("client") as client:
            inbox = server.mailbox("inbox")
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(inbox.recv(), timeout=0.1)
            channel = await client.connect(address)
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
        server.listen("api")
        server.start_echo()
        channel = await client.connect(address)
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
            listener = server.listen("api")
            assert listener.address == "api"
            await a.connect(address)
            await b.connect(address)
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
                await client.connect(address, service="strict")

    run(scenario)


def test_service_that_never_answers_times_out() -> None:
    async def scenario() -> None:
        server, address = await server_node()
        async with server, latchkey.Node("client") as client:
            silent = server.mailbox("silent")
            channel = await client.connect(address)
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
                await client.connect("127.0.0.1:1")
            with pytest.raises(latchkey.BadAddress):
                await client.connect("no port here")
            with pytest.raises(latchkey.BadAddress):
                await client.listen_tcp("nonsense")

    run(scenario)


def test_closed_channel_raises_channel_closed() -> None:
    async def scenario() -> None:
        server, address = await server_node()
        async with server, latchkey.Node("client") as client:
            channel = await client.connect(address)
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
        mailbox = node.mailbox("box")

        async def drain() -> List[bytes]:
            return [m.payload async for m in mailbox]

        draining = asyncio.create_task(drain())
        async with node:
            assert not node.is_closed
        assert node.is_closed
        assert await draining == []  # the node's close ended the iteration
        with pytest.raises(latchkey.InvalidState, match="node is closed"):
            node.mailbox("other")
        with pytest.raises(latchkey.InvalidState):
            node.start_echo()
        with pytest.raises(latchkey.InvalidState):
            node.listen()
        with pytest.raises(latchkey.InvalidState):
            await node.connect("127.0.0.1:1")
        with pytest.raises(latchkey.InvalidState):
            await node.listen_tcp()
        await node.close()  # idempotent

    run(scenario)


def test_address_rules() -> None:
    async def scenario() -> None:
        async with latchkey.Node("n") as node:
            held = node.mailbox("taken")
            with pytest.raises(latchkey.AddressInUse):
                node.mailbox("taken")
            held.close()
            assert await held.recv() is None  # closing frees the address...
            node.mailbox("taken")  # ...so it can be registered again
            with pytest.raises(latchkey.MalformedMessage):
                node.mailbox("")
            with pytest.raises(latchkey.DecodeError):
                node.listen("api", trusted=["not an identifier"])
            assert repr(node).startswith('<latchkey.Node "n" lk')

    run(scenario)


@pytest.mark.parametrize(
    "call",
    [
        lambda node: node.mailbox(3),
        lambda node: node.listen("api", trusted="lk00"),
        lambda node: node.start_echo(b"echo"),
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
            channel = await client.connect(address)
            with pytest.raises(TypeError):
                await channel.send("echo", "text")  # type: ignore[arg-type]

    run(scenario)


def test_node_in_another_process() -> None:
    """The node example, run as written in its own process, serves a Python node over TCP."""
    peer = Listener([sys.executable, str(EXAMPLES / "node_echo.py")])
    try:

        async def scenario() -> None:
            async with latchkey.Node("client") as client:
                channel = await client.connect(peer.address, trusted=[peer.identifier])
                assert await channel.request("echo", b"ping") == b"ping"
                assert await channel.request("inbox", b"12345") == b"got 5 bytes"

        run(scenario)
    finally:
        peer.stop()
    assert "inbox: 5 bytes from lk" in peer.stderr()


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
            server.listen("api")
            server.start_echo()
            channel = await client.connect(address, trusted=[first.identifier])
            assert await channel.request("echo", b"same identity") == b"same identity"

    run(scenario)


def test_unusable_store_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises((latchkey.StorageError, latchkey.TransportError)):
        latchkey.Node(identity="x", home=blocker, create=True)
