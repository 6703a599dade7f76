"""Cross-language: Python and the C doorbell device (examples/c, over the C ABI) in separate processes."""

import asyncio
import sys
from typing import List, Optional

import pytest

import latchkey
from latchkey import direct_tcp
from conftest import EXAMPLES, STRANGER, Listener, c_doorbell_binary, run
from test_interop import SUITES, exchange


@pytest.mark.parametrize("suite_name", sorted(SUITES))
def test_python_client_with_c_device_listening(suite_name: str) -> None:
    device = Listener([str(c_doorbell_binary()), "listen", "127.0.0.1:0", "--suite", suite_name, "--trust-any"])
    try:
        messages = [b"ring", b"", b"x" * 20_000]
        peer_id, replies = asyncio.run(
            exchange(device.host, device.port, messages, SUITES[suite_name], trusted=[device.identifier])
        )
        assert peer_id == device.identifier
        assert replies == [b"echo: " + m for m in messages]
    finally:
        device.stop()


def test_c_device_refuses_an_untrusted_python_client() -> None:
    async def attempt(device: Listener) -> Optional[bytes]:
        reader, writer = await asyncio.open_connection(device.host, device.port)
        try:
            channel = latchkey.SecureChannel.initiator(
                latchkey.Identity.create(latchkey.Vault()), trusted=[device.identifier]
            )
            # In Noise XX the initiator finishes first (after sending m3); the responder judges it on m3.
            await direct_tcp.handshake(channel, reader, writer)
            await direct_tcp.send(channel, writer, b"ring")
            return await direct_tcp.receive(channel, reader)
        except ConnectionResetError:
            return None  # closed with our "ring" unread: a reset instead of an orderly end
        finally:
            writer.close()

    device = Listener([str(c_doorbell_binary()), "listen", "127.0.0.1:0", "--trust", STRANGER])
    try:
        assert asyncio.run(attempt(device)) is None  # the device closed the connection: no channel, no echo
    finally:
        device.stop()


def test_c_device_rings_the_python_service() -> None:
    service = Listener([sys.executable, str(EXAMPLES / "service.py"), "--trust-any"])
    try:
        result = run([str(c_doorbell_binary()), "connect", service.address, "--trust", service.identifier, "ring"])
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [f"PEER {service.identifier}", "REPLY echo: ring"]
    finally:
        service.stop()


def test_python_client_example_with_c_device() -> None:
    device = Listener([str(c_doorbell_binary()), "listen", "127.0.0.1:0", "--trust-any"])
    try:
        client = [sys.executable, str(EXAMPLES / "client.py"), device.address, "--suite", "chachapoly"]
        result = run(client + ["--trust", device.identifier, "ding", "dong"])
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [f"PEER {device.identifier}", "REPLY echo: ding", "REPLY echo: dong"]
    finally:
        device.stop()


@pytest.mark.parametrize(
    "argv",
    [
        ["listen", "127.0.0.1:0", "--once"],
        ["connect", "127.0.0.1:1", "ring"],
        ["connect", "127.0.0.1:1", "--trust-any", "--trust", STRANGER, "ring"],
    ],
)
def test_c_device_needs_an_explicit_trust_decision(argv: List[str]) -> None:
    # Neither --trust nor --trust-any (or both): a usage error, before any socket is opened.
    result = run([str(c_doorbell_binary())] + argv, timeout=30)
    assert result.returncode == 2
    assert "--trust-any" in result.stderr and result.stdout == ""
