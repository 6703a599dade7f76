"""The runtime Node from asyncio: TCP, secure channels, services, mailboxes, lifetimes and errors."""

import asyncio
import inspect
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


def test_closed_node_raises_channel_closed_and_ends_iteration() -> None:
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
        with pytest.raises(latchkey.ChannelClosed, match="node is closed"):
            node.mailbox("other", trusted=[])
        with pytest.raises(latchkey.ChannelClosed):
            node.start_echo(trust_any=True)
        with pytest.raises(latchkey.ChannelClosed):
            node.listen(trust_any=True)
        with pytest.raises(latchkey.ChannelClosed):
            await node.connect("127.0.0.1:1", trust_any=True)
        with pytest.raises(latchkey.ChannelClosed):
            await node.listen_tcp()
        assert await node.close() is None  # idempotent
        assert await node.shutdown() is None

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
            with pytest.raises(latchkey.InvalidArgument):
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
            # Refused at once, and b hears so (not whether the service exists: UNDELIVERED says neither).
            before = server.denied_count
            with pytest.raises(latchkey.UnknownAddress):
                await from_b.request("echo", b"b", timeout=10)
            with pytest.raises(latchkey.UnknownAddress):
                await from_b.send("inbox", b"from b")
            await wait_for_denials(server, before + 2)
            await from_a.send("inbox", b"from a")
            message = await asyncio.wait_for(inbox.recv(), timeout=10)
            assert message is not None and message.payload == b"from a"
            assert message.peer_identifier == a.identifier and message.origin == "channel"

            # A second listener, started later, is served as well.
            server.listen("api2", trusted=[a.identifier])
            second = await a.connect(address, service="api2", trusted=[server.identifier])
            assert await second.request("echo", b"again") == b"again"

    run(scenario)


# --- Idioms: coroutines, bytes-like payloads, timeouts, built-in exception bases. ----------------------------


def test_async_methods_return_coroutines_that_tasks_accept() -> None:
    async def scenario() -> None:
        server, address = await server_node()
        async with server, latchkey.Node("client") as client:
            connecting = client.connect(address, trusted=[server.identifier])
            assert asyncio.iscoroutine(connecting) and inspect.isawaitable(connecting)
            task = asyncio.create_task(connecting)
            channel = await task
            assert channel.peer_identifier == server.identifier
            replies = await asyncio.gather(*(channel.request("echo", b"%d" % i) for i in range(5)))
            assert replies == [b"%d" % i for i in range(5)]
            assert await asyncio.wait_for(channel.request("echo", b"w"), timeout=10) == b"w"
            closed: object = await channel.close()  # type: ignore[func-returns-value]
            assert closed is None  # not (), not a future
            assert channel.is_closed

            # Like any coroutine, one that is never awaited does nothing, and close() discards it.
            never = client.listen_tcp()
            never.close()
            with pytest.raises(RuntimeError):
                await never

    run(scenario)


def test_a_coroutine_runs_without_a_loop_until_awaited() -> None:
    node = latchkey.Node("n")
    listening = node.listen_tcp()  # made outside any event loop: nothing runs yet
    address = asyncio.run(listening)
    assert address.startswith("127.0.0.1:")
    asyncio.run(node.shutdown())


class SilentServer:
    """Accepts TCP connections and never answers (keeping them open)."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.writers: List[asyncio.StreamWriter] = []

    def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        self.connected.set()

    async def start(self) -> Tuple["asyncio.Server", str]:
        server = await asyncio.start_server(self.accept, "127.0.0.1", 0)
        return server, "127.0.0.1:%d" % server.sockets[0].getsockname()[1]


def test_cancelling_a_task_cancels_the_work() -> None:
    async def scenario() -> None:
        silent = SilentServer()
        server, address = await silent.start()
        async with server, latchkey.Node("client") as client:
            task = asyncio.create_task(client.connect(address, trust_any=True, timeout=30))
            await silent.connected.wait()  # the connection is being made, in Rust
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert task.cancelled()

    run(scenario)


def test_bytes_like_payloads() -> None:
    async def scenario() -> None:
        server, address = await server_node()
        async with server, latchkey.Node("client") as client:
            inbox = server.mailbox("inbox", trusted=[client.identifier])
            replies = client.mailbox("replies", trusted=[server.identifier])
            channel = await client.connect(address, trusted=[server.identifier])
            assert await channel.request("echo", memoryview(b"view")) == b"view"
            assert await channel.request("echo", bytearray(b"array")) == b"array"
            assert await channel.request("echo", memoryview(b"a-b-c")[::2]) == b"abc"
            await channel.send("inbox", memoryview(bytearray(b"mutable")), reply_to=replies)
            message = await inbox.recv()
            assert message is not None and message.payload == b"mutable"
            await message.reply(memoryview(b"answer"))
            answer = await replies.recv()
            assert answer is not None and answer.payload == b"answer"
            with pytest.raises(TypeError, match="bytes, bytearray or memoryview"):
                await channel.send("inbox", [1, 2, 3])  # type: ignore[arg-type]

    run(scenario)


def test_connect_timeout_is_a_timeout_error() -> None:
    async def scenario() -> None:
        server, address = await SilentServer().start()  # accepts TCP, never answers the handshake
        async with server, latchkey.Node("client") as client:
            with pytest.raises(TimeoutError) as raised:
                await client.connect(address, trust_any=True, timeout=0.3)
            assert isinstance(raised.value, latchkey.Timeout)
            with pytest.raises(ValueError):
                await client.connect(address, trust_any=True, timeout=-1)

    run(scenario)


def test_errors_derive_from_the_builtins_python_code_catches() -> None:
    async def scenario() -> None:
        server, address = await server_node()
        async with server, latchkey.Node("client") as client:
            with pytest.raises(OSError) as refused:
                await client.connect("127.0.0.1:1", trust_any=True)
            assert isinstance(refused.value, latchkey.TransportError) and str(refused.value)
            with pytest.raises(OSError):
                await client.listen_tcp("no port here")
            taken = await server.listen_tcp()
            with pytest.raises(OSError) as in_use:
                await client.listen_tcp(taken)
            assert isinstance(in_use.value, latchkey.AddressInUse)
            channel = await client.connect(address, trust_any=True)
            await channel.close()
            with pytest.raises(ConnectionError) as closed:
                await channel.send("echo", b"late")
            assert isinstance(closed.value, latchkey.ChannelClosed)
            with pytest.raises(ValueError) as invalid:
                client.listen("api", trusted=[], trust_any=True)
            assert isinstance(invalid.value, latchkey.InvalidArgument)

    run(scenario)


# --- Identities made in Python, the store, UDP, relays and portals. -------------------------------------------


def test_a_python_identity_is_used_by_a_node() -> None:
    vault = latchkey.Vault()
    server_identity = latchkey.Identity.create(vault)
    client_identity = latchkey.Identity.create(vault, algorithm=latchkey.SigningAlgorithm.ECDSA_P256)

    async def scenario() -> None:
        server = latchkey.Node("server", identity=server_identity)
        client = latchkey.Node("client", identity=client_identity)
        assert server.identifier == server_identity.identifier
        assert client.identifier == client_identity.identifier
        async with server, client:
            address = await server.listen_tcp()
            server.listen("api", trusted=[client_identity.identifier])
            server.start_echo(trusted=[client_identity.identifier])
            channel = await client.connect(address, trusted=[server_identity.identifier])
            assert channel.peer_identifier == server_identity.identifier
            assert await channel.request("echo", b"same keys") == b"same keys"

    run(scenario)
    with pytest.raises(ValueError, match="stored identities"):
        latchkey.Node(identity=server_identity, create=True)
    with pytest.raises(TypeError):
        latchkey.Node(identity=42)  # type: ignore[arg-type]


def test_identity_store(tmp_path: Path) -> None:
    store = latchkey.IdentityStore(tmp_path)
    made = store.create("device")
    assert made.name == "device" and made.changes == 1 and made.identifier.startswith("lk")
    with pytest.raises(latchkey.IdentityExists):
        store.create("device")
    with pytest.raises(latchkey.InvalidArgument):
        store.create("has space")
    with pytest.raises(latchkey.UnknownIdentity):
        store.show("nobody")
    assert [s.name for s in store.list()] == ["device"]
    rotated = store.rotate("device")
    assert rotated.identifier == made.identifier and rotated.changes == 2
    loaded = store.load("device")
    assert loaded.identifier == made.identifier and loaded.change_count == 2
    assert latchkey.Node(identity=loaded).identifier == made.identifier
    assert latchkey.Node(identity="device", home=tmp_path).identifier == made.identifier
    assert "device" in repr(made)


def test_channel_over_udp() -> None:
    async def scenario() -> None:
        async with latchkey.Node("server") as server, latchkey.Node("client") as client:
            udp_address = await server.bind_udp()
            server.listen("api", trusted=[client.identifier])
            server.start_echo(trusted=[client.identifier])
            channel = await client.connect(udp_address, udp=True, trusted=[server.identifier])
            assert await channel.request("echo", b"datagram") == b"datagram"

    run(scenario)


async def serve_once(payload: bytes) -> "asyncio.Server":
    """A plain TCP server (the thing behind a portal outlet) that sends `payload` and closes."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


def test_a_doorbell_registered_at_a_relay_is_reached_by_name_through_a_portal() -> None:
    async def scenario() -> None:
        camera = await serve_once(b"picture")
        camera_port = camera.sockets[0].getsockname()[1]
        relay = latchkey.Node("relay", relay=True)
        doorbell, phone, squatter = latchkey.Node("doorbell"), latchkey.Node("phone"), latchkey.Node("squatter")
        async with camera, relay, doorbell, phone, squatter:
            relay_address = await relay.listen_tcp()
            relay.listen("api", trust_any=True)
            relay.start_relay(lease=10)

            phone_only = [phone.identifier]
            doorbell.listen("api", trusted=phone_only)
            doorbell.start_echo(trusted=phone_only)
            doorbell.create_outlet(f"127.0.0.1:{camera_port}", trusted=phone_only)
            proved = await doorbell.register_at_relay(relay_address, "doorbell", relay_trusted=[relay.identifier])
            assert proved == relay.identifier
            with pytest.raises(latchkey.Refused):  # the name belongs to the doorbell's identity
                await squatter.register_at_relay(relay_address, "doorbell", relay_trust_any=True)
            with pytest.raises(latchkey.Insecure):
                await squatter.register_at_relay(relay_address, "other")

            channel = await phone.connect(relay_address, relay_name="doorbell", trusted=[doorbell.identifier])
            assert channel.peer_identifier == doorbell.identifier
            assert await channel.request("echo", b"ding") == b"ding"
            inlet = await phone.create_inlet(channel)
            host, port = inlet.rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            assert await asyncio.wait_for(reader.read(), timeout=10) == b"picture"
            writer.close()

    run(scenario)


def test_shutdown_closes_accepted_channels_and_ends_listeners_without_waiting() -> None:
    async def scenario() -> None:
        server, address = await server_node()
        listener = server.listen("api2", trust_any=True)
        async with latchkey.Node("client") as client:
            channel = await client.connect(address, service="api2", trusted=[server.identifier])
            accepted = await listener.accept()
            assert accepted is not None and accepted.peer_identifier == client.identifier
            await server.shutdown()
            # Shutdown returned once every channel had stopped: no polling, no sleeping.
            assert server.is_closed and accepted.is_closed
            assert await listener.accept() is None
            await channel.close()
            assert channel.is_closed

    run(scenario)
