"""Cross-language: Python against the Rust `latchkey` CLI, in separate processes over TCP."""

import asyncio
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence

import pytest

import latchkey
from conftest import EXAMPLES, STRANGER, Listener, cli_binary, read_line, remaining_lines, run
from test_interop import exchange


class CliNode(Listener):
    """`latchkey --json node run --tcp 127.0.0.1:0` (or another `command`, e.g. `relay run`): announces itself
    with a JSON "ready" event."""

    def __init__(self, home: Path, *extra: str, command: Sequence[str] = ("node", "run")) -> None:
        argv = [str(cli_binary()), "--json", "--home", str(home), *command, "--tcp", "127.0.0.1:0", *extra]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.readline()
        try:
            ready: Dict[str, Any] = json.loads(line)
        except ValueError:
            self.stop()
            raise AssertionError(f"latchkey {' '.join(command)} did not start: {line!r} {self.stderr()}")
        assert ready["event"] == "ready", ready
        self.ready = ready
        self.identifier = ready["identifier"]
        self.set_address(ready["tcp"])

    def events(self, timeout: float = 30.0) -> List[Dict[str, Any]]:
        """Every JSON event printed after the ready line, once the process has exited by itself."""
        return [json.loads(line) for line in remaining_lines(self.process, timeout) if line.strip()]


@pytest.fixture
def cli_node(tmp_path: Path) -> Iterator[CliNode]:
    node = CliNode(tmp_path, "--trust-any", "--count", "1")  # exits after its inbox received one message
    yield node
    node.stop()


def test_python_node_with_cli_node(cli_node: CliNode) -> None:
    async def scenario() -> None:
        async with latchkey.Node("python") as node:
            channel = await node.connect(cli_node.address, trusted=[cli_node.identifier])
            assert channel.peer_identifier == cli_node.identifier
            assert await channel.request("echo", b"from python") == b"from python"
            await channel.send("inbox", b"hello cli")
            await channel.close()
            return None

    asyncio.run(asyncio.wait_for(scenario(), 60))
    # The CLI printed the inbox message with the Python node as its authenticated sender.
    messages = [e for e in cli_node.events() if e.get("event") == "message"]
    assert [m["message"] for m in messages] == ["hello cli"]
    assert messages[0]["from"].startswith("lk")


def test_cli_node_refuses_an_untrusted_python_node(tmp_path: Path) -> None:
    cli = CliNode(tmp_path, "--trust", STRANGER)
    try:

        async def scenario() -> None:
            async with latchkey.Node("python") as node:
                with pytest.raises(latchkey.Refused):
                    await node.connect(cli.address, trust_any=True)

        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        cli.stop()


def test_cli_sends_to_a_python_node(tmp_path: Path) -> None:
    peer = Listener([sys.executable, str(EXAMPLES / "node_echo.py"), "--trust-any"])
    try:
        base = [str(cli_binary()), "--home", str(tmp_path), "message", "send", "--to", peer.address]
        result = run(base + ["--trust", peer.identifier, "--service", "echo", "one", "two"])
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["reply: one", "reply: two"]
        refused = run(base + ["--trust", STRANGER, "x"])
        assert refused.returncode == 5, refused.stderr  # "authentication or access refused"
    finally:
        peer.stop()


def test_python_client_with_cli_direct_listener(tmp_path: Path) -> None:
    argv = [str(cli_binary()), "--home", str(tmp_path), "channel", "listen-direct", "127.0.0.1:0", "--trust-any"]
    cli = Listener(argv)
    try:
        peer_id, replies = asyncio.run(exchange(cli.host, cli.port, [b"a", b"b" * 5000], trusted=[cli.identifier]))
        assert peer_id == cli.identifier
        assert replies == [b"echo: a", b"echo: " + b"b" * 5000]
    finally:
        cli.stop()


def test_cli_direct_client_with_python_service(tmp_path: Path, python_service: Listener) -> None:
    argv = [str(cli_binary()), "--home", str(tmp_path), "channel", "connect-direct", python_service.address]
    result = run(argv + ["--trust", python_service.identifier, "ping"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"PEER {python_service.identifier}", "REPLY echo: ping"]


def cli_identity(home: Path, *args: str) -> Dict[str, Any]:
    result = run([str(cli_binary()), "--json", "--home", str(home), "identity", *args])
    assert result.returncode == 0, result.stderr
    shown: Dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return shown


def test_identities_are_shared_with_the_cli_store(tmp_path: Path) -> None:
    made_by_cli = cli_identity(tmp_path, "create", "device")
    assert latchkey.Node(identity="device", home=tmp_path).identifier == made_by_cli["identifier"]
    made_by_python = latchkey.Node(identity="backend", home=tmp_path, create=True)
    assert cli_identity(tmp_path, "show", "backend")["identifier"] == made_by_python.identifier
    rotated = cli_identity(tmp_path, "rotate", "backend")
    assert rotated["identifier"] == made_by_python.identifier  # rotation keeps the identifier
    assert latchkey.Node(identity="backend", home=tmp_path).identifier == made_by_python.identifier


def test_cli_trusts_a_python_node_by_its_stored_identifier(tmp_path: Path) -> None:
    python_id = latchkey.Node(identity="backend", home=tmp_path, create=True).identifier
    cli = CliNode(tmp_path, "--trust", python_id, "--count", "1")
    try:

        async def scenario() -> None:
            async with latchkey.Node(identity="backend", home=tmp_path) as node:
                channel = await node.connect(cli.address, trusted=[cli.identifier])
                await channel.send("inbox", b"trusted by name")

        asyncio.run(asyncio.wait_for(scenario(), 60))
        events = [e for e in cli.events() if e.get("event") == "message"]
        assert events == [{"event": "message", "from": python_id, "message": "trusted by name"}]
    finally:
        cli.stop()


def test_python_phone_reaches_a_cli_doorbell_through_a_cli_relay_and_opens_a_portal(tmp_path: Path) -> None:
    """The doorbell demo across languages: a CLI relay, a CLI doorbell registered there by name with a portal
    outlet to its camera, and a Python phone (with an identity made in Python) that reaches it by name."""
    phone_identity = latchkey.Identity.create(latchkey.Vault())
    camera_socket = socket.create_server(("127.0.0.1", 0))
    camera_port = camera_socket.getsockname()[1]
    relay = CliNode(tmp_path / "relay", "--trust-any", command=("relay", "run"))
    doorbell = None
    try:
        doorbell = CliNode(
            tmp_path / "doorbell",
            "--trust", phone_identity.identifier,
            "--relay", relay.address, "--relay-name", "doorbell", "--relay-trust", relay.identifier,
            "--outlet", f"127.0.0.1:{camera_port}",
            "--count", "1",
        )  # fmt: skip
        assert doorbell.ready["relay"]["peer"] == relay.identifier
        doorbell_id = doorbell.identifier

        async def camera(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"snapshot")
            await writer.drain()
            writer.close()

        async def scenario() -> None:
            server = await asyncio.start_server(camera, sock=camera_socket)
            async with server, latchkey.Node("phone", identity=phone_identity) as phone:
                channel = await phone.connect(relay.address, relay_name="doorbell", trusted=[doorbell_id])
                assert channel.peer_identifier == doorbell_id
                assert await channel.request("echo", b"ding") == b"ding"
                inlet = await phone.create_inlet(channel)
                host, port = inlet.rsplit(":", 1)
                reader, writer = await asyncio.open_connection(host, int(port))
                assert await asyncio.wait_for(reader.read(), timeout=10) == b"snapshot"
                writer.close()
                await channel.send("inbox", b"open the door")

        asyncio.run(asyncio.wait_for(scenario(), 60))
        events = [e for e in doorbell.events() if e.get("event") == "message"]
        assert events == [{"event": "message", "from": phone_identity.identifier, "message": "open the door"}]
    finally:
        if doorbell is not None:
            doorbell.stop()
        relay.stop()


def test_cli_phone_reaches_a_python_doorbell_through_a_cli_relay(tmp_path: Path) -> None:
    relay = CliNode(tmp_path, "--trust-any", command=("relay", "run"))
    try:

        async def scenario() -> None:
            async with latchkey.Node("doorbell") as doorbell:
                doorbell.listen("api", trust_any=True)
                doorbell.start_echo(trust_any=True)
                assert await doorbell.register_at_relay(relay.address, "pydoor", relay_trusted=[relay.identifier]) == (
                    relay.identifier
                )
                send = [str(cli_binary()), "--home", str(tmp_path), "message", "send", "--to", relay.address]
                send += ["--relay-name", "pydoor", "--trust", doorbell.identifier, "--service", "echo", "ding"]
                result = await asyncio.to_thread(run, send)
                assert result.returncode == 0, result.stderr
                assert result.stdout.splitlines() == ["reply: ding"]

        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        relay.stop()


class Camera:
    """A plain TCP server (what a portal outlet leads to) that sends `snapshot` to each connection."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.socket.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            with connection:
                connection.sendall(b"snapshot")

    def close(self) -> None:
        self.socket.close()


def readline(process: "subprocess.Popen[str]", timeout: float = 60.0) -> str:
    """The next line the process prints ('' if none comes within `timeout` seconds)."""
    return read_line(process, timeout)


def test_the_python_examples_meet_through_a_cli_relay_with_a_portal(tmp_path: Path) -> None:
    """examples/python/node_echo.py registered at a relay by name, with a portal outlet; phone.py reaches it."""
    relay = CliNode(tmp_path, "--trust-any", command=("relay", "run"))
    camera = Camera()
    doorbell = None
    portal = None
    try:
        doorbell = Listener([
            sys.executable, str(EXAMPLES / "node_echo.py"), "--trust-any",
            "--relay", relay.address, "--relay-name", "door", "--relay-trust", relay.identifier,
            "--outlet", camera.address,
        ])  # fmt: skip
        phone = [sys.executable, str(EXAMPLES / "phone.py"), "--relay", relay.address, "--name", "door"]
        result = run(phone + ["--trust", doorbell.identifier, "hi", "there"])
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [f"PEER {doorbell.identifier}", "REPLY hi", "REPLY there"]

        untrusted = run(phone + ["--trust", STRANGER, "hi"])
        assert untrusted.returncode == 1 and "UntrustedPeer" in untrusted.stderr
        assert run(phone + ["hi"]).returncode == 2  # no trust decision: a usage error

        portal = subprocess.Popen(
            phone + ["--trust", doorbell.identifier, "--portal", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert readline(portal) == f"PEER {doorbell.identifier}\n"
        line = readline(portal, 20.0)
        assert line.startswith("PORTAL "), line
        host, port = line.split()[1].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as client:
            received = b""
            while chunk := client.recv(1024):
                received += chunk
        assert received == b"snapshot"
    finally:
        if portal is not None:
            portal.terminate()
            portal.wait(timeout=10)
        if doorbell is not None:
            doorbell.stop()
        camera.close()
        relay.stop()
