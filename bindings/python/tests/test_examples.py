"""examples/python: the service and the client, run as written, in separate processes."""

import sys
from typing import List

import pytest

from conftest import EXAMPLES, STRANGER, Listener, run


def test_client_and_service(python_service: Listener) -> None:
    client = [sys.executable, str(EXAMPLES / "client.py"), python_service.address]
    result = run(client + ["--trust", python_service.identifier, "--suite", "chachapoly", "hello", "world"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"PEER {python_service.identifier}",
        "REPLY echo: hello",
        "REPLY echo: world",
    ]


def test_service_serves_several_clients_in_turn(python_service: Listener) -> None:
    for i in range(3):
        client = [sys.executable, str(EXAMPLES / "client.py"), python_service.address]
        result = run(client + ["--trust", python_service.identifier, f"n{i}"])
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1] == f"REPLY echo: n{i}"


def test_client_refuses_an_untrusted_service(python_service: Listener) -> None:
    result = run([sys.executable, str(EXAMPLES / "client.py"), python_service.address, "--trust", STRANGER, "x"])
    assert result.returncode == 1
    assert "UntrustedPeer" in result.stderr


def test_client_reports_a_refused_connection() -> None:
    result = run([sys.executable, str(EXAMPLES / "client.py"), "127.0.0.1:1", "--trust-any", "x"])
    assert result.returncode == 1
    assert "client:" in result.stderr


def test_client_with_any_trusted_identity(python_service: Listener) -> None:
    result = run([sys.executable, str(EXAMPLES / "client.py"), python_service.address, "--trust-any", "hi"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"PEER {python_service.identifier}", "REPLY echo: hi"]


@pytest.mark.parametrize(
    "argv",
    [
        ["client.py", "127.0.0.1:1", "x"],
        ["client.py", "127.0.0.1:1", "--trust", STRANGER, "--trust-any", "x"],
        ["service.py", "--port", "0"],
        ["service.py", "--port", "0", "--trust", STRANGER, "--trust-any"],
    ],
)
def test_examples_need_an_explicit_trust_decision(argv: List[str]) -> None:
    # Neither --trust nor --trust-any (or both): a usage error before any network activity.
    result = run([sys.executable, str(EXAMPLES / argv[0])] + argv[1:], timeout=30)
    assert result.returncode == 2
    assert "--trust" in result.stderr and result.stdout == ""
