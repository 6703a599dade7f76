"""`Node.set_suite`: the cipher suite a node's routed channels offer and accept (docs/PROTOCOL.md 5.1), between
two in-process nodes over TCP and against the Rust `latchkey` CLI (`--suite`) in another process."""

import asyncio
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional, Tuple, TypeVar, Union

import pytest

import latchkey
from test_cli import CliNode

T = TypeVar("T")
Suite = Union[latchkey.CipherSuite, str, None]
CHACHA = latchkey.CipherSuite.CHACHA_POLY
AES = latchkey.CipherSuite.AES_GCM


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(scenario(), timeout=60))


async def server_node(suite: Any) -> Tuple[latchkey.Node, str]:
    """A server with the given suite whose listener and echo service take any authenticated client."""
    server = latchkey.Node("server")
    server.set_suite(suite)
    address = await server.listen_tcp()
    server.listen("api", trust_any=True)
    server.start_echo(trust_any=True)
    return server, address


async def echo(server: latchkey.Node, address: str, client_suite: Any, service: str = "api") -> bytes:
    async with latchkey.Node("client") as client:
        client.set_suite(client_suite)
        async with await client.connect(address, service=service, trusted=[server.identifier]) as channel:
            return await channel.request("echo", b"suite")


@pytest.mark.parametrize(
    "server_suite, client_suite",
    [(CHACHA, CHACHA), (AES, AES), ("chachapoly", CHACHA), ("aesgcm", AES), (None, CHACHA), ("auto", AES)],
)
def test_nodes_with_matching_suites_talk(server_suite: Suite, client_suite: Suite) -> None:
    async def scenario() -> None:
        server, address = await server_node(server_suite)
        async with server:
            assert await echo(server, address, client_suite) == b"suite"

    run(scenario)


@pytest.mark.parametrize("server_suite, client_suite", [(CHACHA, AES), (AES, "chachapoly")])
def test_a_node_with_a_fixed_suite_refuses_the_other(server_suite: Suite, client_suite: Suite) -> None:
    async def scenario() -> None:
        server, address = await server_node(server_suite)
        async with server:
            with pytest.raises(latchkey.UnsupportedSuite):
                await echo(server, address, client_suite)
            # The server still serves clients offering its suite.
            assert await echo(server, address, server_suite) == b"suite"

    run(scenario)


def test_bad_suites_are_refused_and_change_nothing() -> None:
    async def scenario() -> None:
        server, address = await server_node(CHACHA)
        async with server:
            bad: Any = "rc4"
            with pytest.raises(latchkey.InvalidArgument):
                server.set_suite(bad)
            with pytest.raises(latchkey.InvalidArgument):
                server.set_suite("AESGCM")  # type: ignore[arg-type]
            wrong_types: Tuple[Any, ...] = (1, b"aesgcm", [AES])
            for wrong_type in wrong_types:
                with pytest.raises(TypeError):
                    server.set_suite(wrong_type)
            # A listener started now still takes ChaChaPoly only.
            server.listen("after-bad", trust_any=True)
            with pytest.raises(latchkey.UnsupportedSuite):
                await echo(server, address, AES, "after-bad")
            assert await echo(server, address, CHACHA, "after-bad") == b"suite"

    run(scenario)


def test_a_listener_keeps_the_suite_it_started_with() -> None:
    async def scenario() -> None:
        server, address = await server_node(AES)
        async with server:
            server.set_suite(None)
            server.listen("auto", trust_any=True)
            # "api" started under AES-GCM only; "auto" accepts both.
            with pytest.raises(latchkey.UnsupportedSuite):
                await echo(server, address, CHACHA, "api")
            assert await echo(server, address, CHACHA, "auto") == b"suite"
            assert await echo(server, address, AES, "auto") == b"suite"

    run(scenario)


def test_python_chachapoly_node_is_refused_by_an_aesgcm_only_cli_node(tmp_path: Path) -> None:
    cli = CliNode(tmp_path, "--trust-any", "--suite", "aesgcm")
    try:

        async def scenario(suite: Optional[latchkey.CipherSuite]) -> Optional[bytes]:
            async with latchkey.Node("python") as node:
                node.set_suite(suite)
                channel = await node.connect(cli.address, trusted=[cli.identifier])
                reply = await channel.request("echo", b"from python")
                await channel.close()
                return reply

        with pytest.raises(latchkey.UnsupportedSuite):
            run(lambda: scenario(CHACHA))
        # The same CLI node talks to a Python node offering its suite.
        assert run(lambda: scenario(AES)) == b"from python"
    finally:
        cli.stop()
