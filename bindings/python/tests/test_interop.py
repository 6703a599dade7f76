"""Cross-language: Python and the Rust `direct_peer` example in separate processes over real TCP."""

import asyncio
import sys
from typing import List, Tuple

import pytest

import latchkey
from latchkey import direct_tcp
from conftest import EXAMPLES, STRANGER, Listener, direct_peer_binary, run

SUITES = {"chachapoly": latchkey.CipherSuite.CHACHA_POLY, "aesgcm": latchkey.CipherSuite.AES_GCM}


async def exchange(
    host: str,
    port: int,
    messages: List[bytes],
    suite: latchkey.CipherSuite = latchkey.CipherSuite.CHACHA_POLY,
    *,
    trusted: List[str],
) -> Tuple[str, List[bytes]]:
    """Python client trusting `trusted`: handshake over TCP, then one round trip per message."""
    identity = latchkey.Identity.create(latchkey.Vault())
    reader, writer = await asyncio.open_connection(host, port)
    try:
        with latchkey.SecureChannel.initiator(identity, suite=suite, trusted=trusted) as channel:
            await direct_tcp.handshake(channel, reader, writer)
            replies = []
            for message in messages:
                await direct_tcp.send(channel, writer, message)
                reply = await direct_tcp.receive(channel, reader)
                assert reply is not None, "peer closed the connection"
                replies.append(reply)
            return channel.peer_identifier, replies
    finally:
        writer.close()


@pytest.mark.parametrize("suite_name", sorted(SUITES))
def test_python_client_with_rust_peer(suite_name: str) -> None:
    peer = Listener([str(direct_peer_binary()), "listen", "127.0.0.1:0", "--suite", suite_name, "--trust-any"])
    try:
        messages = [b"hello", b"", bytes(range(256)) * 64]
        peer_id, replies = asyncio.run(
            exchange(peer.host, peer.port, messages, SUITES[suite_name], trusted=[peer.identifier])
        )
        assert peer_id == peer.identifier
        assert replies == [b"echo: " + m for m in messages]
    finally:
        peer.stop()


def test_python_client_refuses_an_untrusted_rust_peer(direct_peer: Listener) -> None:
    with pytest.raises(latchkey.UntrustedPeer):
        asyncio.run(exchange(direct_peer.host, direct_peer.port, [b"x"], trusted=[STRANGER]))


def test_suite_mismatch_fails_without_a_channel(direct_peer: Listener) -> None:
    # The Rust peer speaks ChaChaPoly; an AES-GCM initiator hashes another protocol name, so m2 cannot open.
    with pytest.raises((latchkey.DecryptFailed, ConnectionError)):
        asyncio.run(
            exchange(
                direct_peer.host, direct_peer.port, [b"x"], latchkey.CipherSuite.AES_GCM, trusted=[direct_peer.identifier]
            )
        )


def test_rust_client_with_python_service(python_service: Listener) -> None:
    result = run(
        [str(direct_peer_binary()), "connect", python_service.address, "--trust", python_service.identifier, "one", "two"]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"PEER {python_service.identifier}", "REPLY echo: one", "REPLY echo: two"]


def test_rust_client_refuses_untrusted_python_service(python_service: Listener) -> None:
    result = run([str(direct_peer_binary()), "connect", python_service.address, "--trust", STRANGER, "x"])
    assert result.returncode == 1
    assert "not trusted" in result.stderr


def test_python_service_refuses_untrusted_rust_client() -> None:
    service = Listener([sys.executable, str(EXAMPLES / "service.py"), "--trust", STRANGER])
    try:
        result = run([str(direct_peer_binary()), "connect", service.address, "--trust", service.identifier, "x"])
        assert result.returncode == 1
    finally:
        service.stop()
    assert "UntrustedPeer" in service.stderr()


@pytest.mark.parametrize(
    "argv",
    [
        ["listen", "127.0.0.1:0"],
        ["connect", "127.0.0.1:1", "x"],
        ["connect", "127.0.0.1:1", "--trust", STRANGER, "--trust-any", "x"],
    ],
)
def test_rust_peer_needs_an_explicit_trust_decision(argv: List[str]) -> None:
    result = run([str(direct_peer_binary())] + argv, timeout=30)
    assert result.returncode == 2
    assert "--trust-any" in result.stderr and result.stdout == ""


def test_example_client_with_rust_peer(direct_peer: Listener) -> None:
    result = run([sys.executable, str(EXAMPLES / "client.py"), direct_peer.address, "--trust", direct_peer.identifier, "hi"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"PEER {direct_peer.identifier}", "REPLY echo: hi"]
