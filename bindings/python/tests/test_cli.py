"""Cross-language: Python against the Rust `latchkey` CLI, in separate processes over TCP."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import latchkey
from conftest import EXAMPLES, STRANGER, Listener, cli_binary, run
from test_interop import exchange


class CliNode(Listener):
    """`latchkey --json node run --tcp 127.0.0.1:0`: announces itself with a JSON "ready" event."""

    def __init__(self, home: Path, *extra: str) -> None:
        argv = [str(cli_binary()), "--json", "--home", str(home), "node", "run", "--tcp", "127.0.0.1:0", *extra]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.readline()
        try:
            ready: Dict[str, Any] = json.loads(line)
        except ValueError:
            self.stop()
            raise AssertionError(f"latchkey node run did not start: {line!r} {self.stderr()}")
        assert ready["event"] == "ready", ready
        self.identifier = ready["identifier"]
        self.set_address(ready["tcp"])

    def events(self, timeout: float = 30.0) -> List[Dict[str, Any]]:
        """Every JSON event printed after the ready line, once the process has exited by itself."""
        self.process.wait(timeout=timeout)
        assert self.process.stdout is not None
        return [json.loads(line) for line in self.process.stdout.read().splitlines() if line.strip()]


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
