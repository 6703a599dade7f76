"""Shared helpers. The suite runs against the *installed* wheel (see test_package.py), never the source tree."""

import os
import queue
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import IO, Iterator, List, Optional, Sequence, Tuple

import pytest

import latchkey

REPO = Path(__file__).resolve().parents[3]
VECTORS = REPO / "tests" / "vectors"
EXAMPLES = REPO / "examples" / "python"
NOW = 1_800_000_000
STRANGER = "lk" + "ab" * 32

Pair = Tuple[latchkey.SecureChannel, latchkey.SecureChannel, latchkey.Identity, latchkey.Identity]


def handshake(initiator: latchkey.SecureChannel, responder: latchkey.SecureChannel) -> None:
    """Moves the three handshake messages between two in-process channels."""
    m1 = initiator.handshake_step(None)
    m2 = responder.handshake_step(m1)
    m3 = initiator.handshake_step(m2)
    assert responder.handshake_step(m3) is None


def open_pair(
    suite: latchkey.CipherSuite = latchkey.CipherSuite.CHACHA_POLY,
    trusted_by_initiator: Optional[List[str]] = None,
) -> Pair:
    vault = latchkey.Vault()
    a = latchkey.Identity.create(vault, now=NOW)
    b = latchkey.Identity.create(vault, now=NOW)
    """Two channels that trust each other by identifier (the initiator: `trusted_by_initiator`, if given)."""
    trusted = [b.identifier] if trusted_by_initiator is None else trusted_by_initiator
    initiator = latchkey.SecureChannel.initiator(a, suite=suite, trusted=trusted, now=NOW)
    responder = latchkey.SecureChannel.responder(b, suite=suite, trusted=[a.identifier], now=NOW)
    handshake(initiator, responder)
    return initiator, responder, a, b


@pytest.fixture
def pair() -> Pair:
    return open_pair()


def direct_peer_binary() -> Path:
    path = Path(os.environ.get("LATCHKEY_DIRECT_PEER", REPO / "target" / "debug" / "examples" / "direct_peer"))
    assert path.is_file(), f"{path} missing: cargo build -p latchkey-facade --example direct_peer"
    return path


def c_doorbell_binary() -> Path:
    path = Path(os.environ.get("LATCHKEY_C_DOORBELL", REPO / "target" / "debug" / "c-examples" / "doorbell"))
    assert path.is_file(), f"{path} missing: cargo build -p latchkey-ffi && make -C examples/c"
    return path


def cli_binary() -> Path:
    path = Path(os.environ.get("LATCHKEY_CLI", REPO / "target" / "debug" / "latchkey"))
    assert path.is_file(), f"{path} missing: cargo build -p latchkey-cli"
    return path


class _Lines:
    """Every line a process prints, read by a thread of its own into a queue.

    (`select` on the pipe followed by `readline()` loses lines: the buffered reader may take two lines at
    once, and the second then waits in the buffer while `select` sees an empty pipe.)"""

    def __init__(self, stream: IO[str]) -> None:
        self.queue: "queue.Queue[Optional[str]]" = queue.Queue()
        self.ended = False
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.queue.put(line)
        self.queue.put(None)

    def next(self, timeout: float) -> str:
        if self.ended:
            return ""
        try:
            line = self.queue.get(timeout=timeout)
        except queue.Empty:
            return ""
        if line is None:
            self.ended = True
            return ""
        return line


_LINES: "weakref.WeakKeyDictionary[subprocess.Popen[str], _Lines]" = weakref.WeakKeyDictionary()


def read_line(process: "subprocess.Popen[str]", timeout: float = 60.0) -> str:
    """The next line `process` prints on stdout ('' at its end or if none comes within `timeout` seconds)."""
    assert process.stdout is not None
    lines = _LINES.get(process)
    if lines is None:
        lines = _LINES[process] = _Lines(process.stdout)
    return lines.next(timeout)


def remaining_lines(process: "subprocess.Popen[str]", timeout: float = 30.0) -> List[str]:
    """Every line `process` prints from now until it exits (which must happen within `timeout` seconds)."""
    process.wait(timeout=timeout)
    out = []
    while line := read_line(process, timeout):
        out.append(line)
    return out


class Listener:
    """A server process that announces itself with `LISTENING <host:port> <identifier>`."""

    def __init__(self, argv: Sequence[str], ready_timeout: float = 60.0) -> None:
        self.process = subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = self.readline(ready_timeout)
        if not line.startswith("LISTENING "):
            self.stop()
            raise AssertionError(f"{argv[0]} did not start: {line!r} {self.stderr()}")
        _, address, self.identifier = line.split()
        self.set_address(address)

    def set_address(self, address: str) -> None:
        self.address = address
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)

    def readline(self, timeout: float = 60.0) -> str:
        """The next stdout line ('' if none comes within `timeout` seconds)."""
        return read_line(self.process, timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stderr(self) -> str:
        self.stop()
        assert self.process.stderr is not None
        return self.process.stderr.read()


@pytest.fixture
def direct_peer() -> Iterator[Listener]:
    # Any identity, said explicitly: the clients in these tests are new identities each time.
    listener = Listener([str(direct_peer_binary()), "listen", "127.0.0.1:0", "--trust-any"])
    yield listener
    listener.stop()


@pytest.fixture
def python_service() -> Iterator[Listener]:
    listener = Listener([sys.executable, str(EXAMPLES / "service.py"), "--port", "0", "--trust-any"])
    yield listener
    listener.stop()


def run(argv: Sequence[str], timeout: float = 60.0) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
