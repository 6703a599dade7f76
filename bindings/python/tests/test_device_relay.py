"""examples/python/relay_device.py across real processes: a device written against ``latchkey.DeviceSession``
and plain ``socket``/``selectors`` registers at a ``latchkey relay run`` process over real TCP on loopback, the
CLI phone (``latchkey message send --relay-name``, another process) and a Python ``Node`` reach it by name end
to end and get its replies; phones and relays it does not trust get nothing; the relay is killed (SIGKILL) and
started again on the same port with the same identity, twice, and each time the device (never restarted) is
reset by the new relay, re-handshakes, registers again and is reachable again; every message the trusted phone
sent reached the device exactly once."""

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pytest

import latchkey
from conftest import EXAMPLES, STRANGER, cli_binary, read_line

DEVICE = EXAMPLES / "relay_device.py"
TIMEOUT = 60.0


def cli(home: Path, *argv: str, timeout: float = TIMEOUT + 30) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [str(cli_binary()), "--home", str(home), *argv], capture_output=True, text=True, timeout=timeout
    )


class Process:
    """A process whose stdout lines are collected as they come."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.process = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: List[str] = []

    def wait_for(self, prefix: str, count: int = 1, timeout: float = TIMEOUT) -> str:
        """Reads lines until `count` of them start with `prefix`; returns the last such line."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.lines if line.startswith(prefix)]
            if len(found) >= count:
                return found[count - 1]
            left = deadline - time.monotonic()
            line = read_line(self.process, max(0.0, left)) if left > 0 else ""
            if not line:
                raise AssertionError(
                    f"no {prefix!r} ({count}) from {self.process.args!r}: {self.lines!r} {self.stderr()}"
                )
            self.lines.append(line.rstrip("\n"))

    def count(self, prefix: str) -> int:
        return sum(1 for line in self.lines if line.startswith(prefix))

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read()

    def terminate(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        while line := read_line(self.process, 5.0):
            self.lines.append(line.rstrip("\n"))
        return self.process.returncode


class Relay:
    """``latchkey relay run`` with a stored identity (so a restart keeps it), accepting any identity."""

    def __init__(self, home: Path, address: str) -> None:
        for _ in range(50):  # the port of a killed relay may take a moment to be free again
            self.process = subprocess.Popen(
                [str(cli_binary()), "--home", str(home), "--json", "relay", "run", "--identity", "relay", "--tcp",
                 address, "--trust-any"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            line = read_line(self.process, TIMEOUT)
            if line.startswith("{"):
                ready: Dict[str, Any] = json.loads(line)
                self.address: str = ready["tcp"]
                self.identifier: str = ready["identifier"]
                return
            self.process.wait(timeout=30)
            err = self.process.stderr.read() if self.process.stderr else ""
            assert "in use" in err.lower(), f"the relay did not start: {line!r} {err}"
            time.sleep(0.2)
        raise AssertionError(f"the relay's port {address} stayed in use")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def device(relay: str, *args: str) -> Process:
    return Process([sys.executable, str(DEVICE), "--relay", relay, *args])


@pytest.mark.parametrize(
    "args",
    [
        ["--relay-trust", STRANGER],
        ["--relay-trust", STRANGER, "--trust", STRANGER, "--trust-any"],
        ["--trust-any"],
        ["--trust-any", "--relay-trust-any", "--relay-trust", STRANGER],
    ],
)
def test_the_python_relay_device_needs_explicit_trust(args: List[str]) -> None:
    result = subprocess.run(
        [sys.executable, str(DEVICE), "--relay", "127.0.0.1:9", "--name", "doorbell", *args],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "--trust-any" in result.stderr and "--relay-trust-any" in result.stderr
    assert result.stdout == ""


def test_the_python_relay_device_is_reached_by_name_and_survives_relay_restarts(tmp_path: Path) -> None:
    relay_home, phone_home = tmp_path / "relay", tmp_path / "phone"
    assert cli(relay_home, "--json", "identity", "create", "relay").returncode == 0
    created = cli(phone_home, "--json", "identity", "create", "phone")
    assert created.returncode == 0, created.stderr
    phone_id = json.loads(created.stdout.splitlines()[0])["identifier"]
    relay = Relay(relay_home, "127.0.0.1:0")
    relay_id = relay.identifier
    processes: List[Process] = []
    sent: List[str] = []

    def phone(*messages: str, identity: Optional[str] = "phone", trust: Optional[str] = None,
              name: str = "doorbell", timeout: float = TIMEOUT) -> "subprocess.CompletedProcess[str]":
        argv = ["message", "send", "--timeout", str(int(timeout)), "--to", relay.address, "--relay-name", name,
                "--trust", trust or device_id, *messages]
        if identity:
            argv[2:2] = ["--identity", identity]
        return cli(phone_home, *argv)

    def trusted_phone(*messages: str) -> None:
        result = phone(*messages)
        assert result.returncode == 0, result.stderr
        for message in messages:
            assert f"reply: device: {message}" in result.stdout.splitlines(), result.stdout
            sent.append(message)

    try:
        # A device that trusts someone else as the relay never registers: its relay channel fails as not trusted.
        wrong = device(relay.address, "--relay-trust", STRANGER, "--name", "doorbell", "--trust", phone_id)
        processes.append(wrong)
        assert "not trusted" in wrong.wait_for("RELAY_LOST ")
        assert wrong.terminate() == 0
        assert wrong.count("READY") == 0 and wrong.count("RELAY ") == 0 and "STOPPED" in wrong.lines

        # The device, for the phone only; the phone reaches it by name and gets its replies.
        doorbell = device(relay.address, "--relay-trust", relay.identifier, "--name", "doorbell", "--trust", phone_id)
        processes.append(doorbell)
        device_id = doorbell.wait_for("IDENTIFIER ").split()[1]
        assert doorbell.wait_for("READY ") == f"READY doorbell {device_id}"
        assert f"RELAY {relay.identifier}" in doorbell.lines
        trusted_phone("ring", "hello from the phone")
        doorbell.wait_for(f"MESSAGE {phone_id} hello from the phone")
        assert doorbell.wait_for("PHONE ").split()[2] == phone_id  # the phone's authenticated identifier

        # Refusals: a phone the device does not trust (a fresh identity), a phone that expects another device,
        # a name nobody registered. None gets a reply.
        stranger = phone("ring", identity=None)
        assert stranger.returncode == 5 and "reply:" not in stranger.stdout, stranger.stderr
        wrong_device = phone("ring", trust=STRANGER)
        assert wrong_device.returncode == 5 and "reply:" not in wrong_device.stdout
        nobody = phone("ring", name="nobody", timeout=2)
        assert nobody.returncode == 4 and "reply:" not in nobody.stdout

        # The relay dies (SIGKILL) and comes back on the same port with the same identity, twice.
        for restart_round in (1, 2):
            registered, lost = doorbell.count("REGISTERED doorbell"), doorbell.count("RELAY_LOST ")
            relay.kill()
            doorbell.wait_for("DISCONNECTED", restart_round)
            relay = Relay(relay_home, relay.address)
            assert relay.identifier == relay_id  # the same identity, which the device trusts
            started = time.monotonic()
            doorbell.wait_for("REGISTERED doorbell", registered + 1)
            elapsed_ms = 1000 * (time.monotonic() - started)
            print(f"restart {restart_round}: registered again {elapsed_ms:.0f} ms after the relay started")
            # The old relay channel was ended by the new relay's stateless reset; one channel lost per restart.
            assert "stateless reset" in doorbell.wait_for("RELAY_LOST ", lost + 1)
            assert doorbell.count("RELAY_LOST ") == lost + 1
            assert doorbell.count("CONNECTED") >= restart_round + 1
            trusted_phone(f"after restart {restart_round}", f"second after restart {restart_round}")

        # A Python phone (the runtime node, with the same stored identity) reaches it by name too.
        async def python_phone() -> bytes:
            identity = latchkey.IdentityStore(phone_home).load("phone")
            async with latchkey.Node("phone", identity=identity) as node:
                channel = await node.connect(
                    relay.address, relay_name="doorbell", trusted=[device_id], timeout=TIMEOUT
                )
                assert channel.peer_identifier == device_id
                reply = await channel.request("echo", b"from a python phone", timeout=TIMEOUT)
                await channel.close()
                return reply

        assert asyncio.run(python_phone()) == b"device: from a python phone"
        sent.append("from a python phone")

        # Exactly once: every message the trusted phone sent reached the device once, and nothing else did.
        assert doorbell.terminate() == 0, doorbell.stderr()
        received = sorted(line for line in doorbell.lines if line.startswith("MESSAGE "))
        assert received == sorted(f"MESSAGE {phone_id} {m}" for m in sent)
        assert "STOPPED" in doorbell.lines
        stats = doorbell.wait_for("STATS ")
        assert " relay_channels=3 " in stats and " rejected=0 " in stats, stats
    finally:
        for process in processes:
            process.terminate()
        relay.stop()


def test_device_rekeys_are_counted_against_a_real_relay(tmp_path: Path) -> None:
    """A ``DeviceSession`` over a real socket to a ``latchkey relay run`` process, on a clock that runs 20 times
    faster than the process's once it registered: the re-handshake interval (2 min) passes in seconds, and
    ``stats()["rekeys"]`` counts the re-handshake, on the same relay channel, still registered."""
    import socket

    relay_home = tmp_path / "relay"
    assert cli(relay_home, "--json", "identity", "create", "relay").returncode == 0
    relay = Relay(relay_home, "127.0.0.1:0")
    offset = 0

    def now() -> int:
        return int(time.monotonic() * 1000) + offset

    try:
        me = latchkey.Identity.create(latchkey.Vault())
        device = latchkey.DeviceSession(
            me, "doorbell", now_ms=now(), relay_trusted=[relay.identifier], trust_any=True, services=["echo"]
        )
        host, port = relay.address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.settimeout(0.01)

            def pump(seconds: float) -> None:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    device.handle_timeout(now())
                    out = device.take_output()
                    if out:
                        sock.sendall(out)
                    try:
                        data = sock.recv(65536)
                    except socket.timeout:
                        continue
                    assert data, "the relay closed the connection"
                    device.receive(now(), data)

            device.connected(now())
            for _ in range(200):
                pump(0.05)
                if device.is_registered:
                    break
            assert device.is_registered
            stats = device.stats()
            assert (stats["relay_channels"], stats["rekeys"]) == (1, 0)
            while device.stats()["rekeys"] == 0 and offset < 400_000:
                pump(0.05)
                offset += 1000
            stats = device.stats()
            assert stats["rekeys"] >= 1, stats
            assert stats["relay_channels"] == 1, stats
            assert device.is_registered
    finally:
        relay.stop()
