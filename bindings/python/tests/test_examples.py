"""examples/python: the service and the client, run as written, in separate processes."""

import sys

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
        result = run([sys.executable, str(EXAMPLES / "client.py"), python_service.address, f"n{i}"])
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1] == f"REPLY echo: n{i}"


def test_client_refuses_an_untrusted_service(python_service: Listener) -> None:
    result = run([sys.executable, str(EXAMPLES / "client.py"), python_service.address, "--trust", STRANGER, "x"])
    assert result.returncode == 1
    assert "UntrustedPeer" in result.stderr


def test_client_reports_a_refused_connection() -> None:
    result = run([sys.executable, str(EXAMPLES / "client.py"), "127.0.0.1:1", "x"])
    assert result.returncode == 1
    assert "client:" in result.stderr
