"""A device behind a relay, bring your own socket: ``latchkey.DeviceSession`` (sans-IO: bytes and a clock in,
bytes, events and messages out) driven by nothing but ``socket``, ``selectors`` and ``time.monotonic``, as a
device with its own network stack would. It connects to a relay over TCP, registers a name there through a
secure channel, and answers the phones it trusts, which reach it by that name; the channel between phone and
device is end to end (the relay forwards ciphertext). When the connection drops or the relay restarts, it
reconnects, and the session re-handshakes with the relay and registers again on its own.

    python examples/python/relay_device.py --relay HOST:PORT (--relay-trust lk... | --relay-trust-any)
        --name NAME (--trust lk... | --trust-any) [--service echo]

Prints (stdout, one line each): ``IDENTIFIER <lk...>`` at start; ``CONNECTED`` / ``DISCONNECTED`` for the TCP
connection; ``RELAY <relay identifier>`` when the channel to the relay is up; ``READY <name> <identifier>`` at
the first registration and ``REGISTERED <name>`` at each; ``RELAY_LOST <reason>`` when the relay channel ended
(a new one follows); ``PHONE <n> <identifier>`` / ``PHONE_CLOSED <n> <reason>`` for phones' channels;
``MESSAGE <peer identifier> <text>`` for each message to the service (default ``echo``, whose replies
``latchkey message send`` prints), answered with ``device: `` + the message. On SIGINT/SIGTERM it prints
``STATS ...`` and ``STOPPED`` (exit 0). A name the relay refuses before it was ever registered exits 1
(``REFUSED <reason>`` on stderr). Neither or both of --trust/--trust-any (or of --relay-trust/--relay-trust-any)
is a usage error (exit 2). The same program as ``examples/c/relay_device.c``.

Try it (three terminals):
    latchkey relay run --tcp 127.0.0.1:4000 --trust-any         # prints the relay's identifier
    python examples/python/relay_device.py --relay 127.0.0.1:4000 --relay-trust <relay id> \\
        --name doorbell --trust-any                             # prints the device's identifier
    latchkey message send --to 127.0.0.1:4000 --relay-name doorbell --trust <device id> ring
"""

import argparse
import selectors
import signal
import socket
import sys
import time
from types import FrameType
from typing import List, Optional

import latchkey

REPLY_PREFIX = b"device: "
# Reconnect delay after a connection that failed or did not last: doubles from ... up to ... (seconds).
RECONNECT_MIN = 0.1
RECONNECT_MAX = 2.0
# A connection that lasted this long worked: the next attempt starts at once.
WORKED = 2.0


def now_ms() -> int:
    return int(time.monotonic() * 1000)


def printable(text: str) -> str:
    """A peer's text with anything unprintable replaced: it comes from the network."""
    return "".join(c if " " <= c < "\x7f" else "?" for c in text)


class Device:
    def __init__(self, session: latchkey.DeviceSession, relay: str, service: str) -> None:
        self.session = session
        host, _, port = relay.rpartition(":")
        self.address = (host.strip("[]"), int(port))
        self.service = service
        self.identifier = session.identifier
        self.selector = selectors.DefaultSelector()
        self.sock: Optional[socket.socket] = None
        self.connected_at = 0.0
        self.backoff = RECONNECT_MIN
        self.reconnect_at = 0.0
        self.ever_registered = False
        self.refused = False
        self.stopping = False
        # Signals wake the selector through this pair (the handler only sets a flag and writes a byte).
        self.wake_read, self.wake_write = socket.socketpair()
        self.wake_read.setblocking(False)
        self.wake_write.setblocking(False)
        self.selector.register(self.wake_read, selectors.EVENT_READ)

    def stop(self, signum: int, frame: Optional[FrameType]) -> None:
        self.stopping = True
        try:
            self.wake_write.send(b"\0")
        except OSError:
            pass

    def connect(self) -> None:
        try:
            sock = socket.create_connection(self.address, timeout=5.0)
        except OSError:
            self.reconnect_at = time.monotonic() + self.backoff
            self.backoff = min(self.backoff * 2, RECONNECT_MAX)
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(10.0)  # writes block (a stream must be written in order); reads only when ready
        self.sock = sock
        self.connected_at = time.monotonic()
        self.selector.register(sock, selectors.EVENT_READ)
        print("CONNECTED", flush=True)
        self.session.connected(now_ms())

    def drop_connection(self) -> None:
        if self.sock is None:
            return
        self.selector.unregister(self.sock)
        self.sock.close()
        self.sock = None
        self.session.disconnected(now_ms())
        now = time.monotonic()
        if now - self.connected_at >= WORKED:
            self.backoff = RECONNECT_MIN
            self.reconnect_at = now
        else:
            self.reconnect_at = now + self.backoff
            self.backoff = min(self.backoff * 2, RECONNECT_MAX)
        print("DISCONNECTED", flush=True)

    def flush_output(self) -> None:
        """Writes everything the session has for the stream, in order."""
        while self.session.output_len:
            data = self.session.take_output(65536)
            if self.sock is None:
                return
            try:
                self.sock.sendall(data)
            except OSError:
                self.drop_connection()
                return

    def take_events(self) -> None:
        while (event := self.session.poll_event()) is not None:
            if event.kind == "relay_connected":
                print(f"RELAY {event.detail}")
            elif event.kind == "registered":
                if not self.ever_registered:
                    print(f"READY {event.detail} {self.identifier}")
                    self.ever_registered = True
                print(f"REGISTERED {event.detail}")
            elif event.kind == "registration_refused":
                print(f"REFUSED {printable(event.detail)}", file=sys.stderr, flush=True)
                if not self.ever_registered:
                    self.refused = True
            elif event.kind == "relay_lost":
                print(f"RELAY_LOST {printable(event.detail)}")
            elif event.kind == "phone_connected":
                print(f"PHONE {event.channel} {event.detail}")
            elif event.kind == "phone_closed":
                print(f"PHONE_CLOSED {event.channel} {printable(event.detail)}")
        sys.stdout.flush()

    def take_messages(self) -> None:
        while (message := self.session.poll_message()) is not None:
            text = message.payload.decode(errors="replace")
            print(f"MESSAGE {message.peer_identifier} {printable(text)}", flush=True)
            try:
                self.session.reply(now_ms(), message, REPLY_PREFIX + message.payload)
            except latchkey.LatchkeyError as e:
                # The phone may have gone away meanwhile: not a reason to stop the device.
                print(f"relay_device: reply failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)

    def settle(self) -> None:
        """After every call into the session: what it has to say, what arrived, what to send."""
        self.take_events()
        self.take_messages()
        self.flush_output()
        self.take_events()

    def run(self) -> int:
        """The event loop: 0 on a signal, 1 when the name was refused."""
        while not self.stopping:
            if self.sock is None and time.monotonic() >= self.reconnect_at:
                self.connect()
            self.settle()
            if self.refused:
                return 1
            # Sleep until the session's next timer, the socket, a reconnection or a signal (at most 1 s).
            wait = 1.0
            next_ms = self.session.next_timeout()
            if next_ms is not None:
                wait = min(wait, max(0, next_ms - now_ms()) / 1000)
            if self.sock is None:
                wait = min(wait, max(0.0, self.reconnect_at - time.monotonic()))
            for key, _ in self.selector.select(wait):
                if key.fileobj is self.wake_read:
                    return 0
                if key.fileobj is self.sock and self.sock is not None:
                    try:
                        data = self.sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        self.drop_connection()
                        continue
                    try:
                        self.session.receive(now_ms(), data)
                    except latchkey.LatchkeyError as e:
                        # A broken stream (an oversized or undecodable frame): start over.
                        print(f"relay_device: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                        self.drop_connection()
            self.session.handle_timeout(now_ms())
        return 0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.selector.close()
        self.wake_read.close()
        self.wake_write.close()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="A Latchkey device behind a relay, on its own TCP socket")
    parser.add_argument("--relay", required=True, metavar="HOST:PORT", help="the relay's TCP address")
    relay_trust = parser.add_mutually_exclusive_group(required=True)
    relay_trust.add_argument("--relay-trust", action="append", metavar="ID", help="the relay's identifier")
    relay_trust.add_argument("--relay-trust-any", action="store_true", help="accept any relay that proves itself")
    parser.add_argument("--name", required=True, help="the name to register at the relay")
    trust = parser.add_mutually_exclusive_group(required=True)
    trust.add_argument("--trust", action="append", metavar="ID", help="a phone's identifier (repeatable)")
    trust.add_argument("--trust-any", action="store_true", help="answer any phone that proves an identity")
    parser.add_argument("--service", default="echo", help="the service phones send to (default echo)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        # argparse exits 2 on a usage error; say what trust needs.
        if e.code == 2:
            print("relay_device: give --trust or --trust-any, and --relay-trust or --relay-trust-any", file=sys.stderr)
        raise
    if ":" not in args.relay:
        parser.error("--relay must be HOST:PORT")
    if args.trust_any or args.relay_trust_any:
        what = "the device answers" if args.trust_any else "the relay may be"
        print(f"relay_device: warning: {what} any identity that proves itself", file=sys.stderr)

    identity = latchkey.Identity.create(latchkey.Vault())
    session = latchkey.DeviceSession(
        identity,
        args.name,
        now_ms=now_ms(),
        relay_trusted=args.relay_trust,
        relay_trust_any=args.relay_trust_any,
        trusted=args.trust,
        trust_any=args.trust_any,
        services=[args.service],
    )
    device = Device(session, args.relay, args.service)
    signal.signal(signal.SIGTERM, device.stop)
    signal.signal(signal.SIGINT, device.stop)
    print(f"IDENTIFIER {device.identifier}", flush=True)
    try:
        status = device.run()
    finally:
        device.close()
    s = session.stats()
    print(
        f"STATS frames_in={s['frames_in']} frames_out={s['frames_out']} rejected={s['frames_rejected']} "
        f"registrations={s['registrations']} relay_channels={s['relay_channels']} "
        f"phone_channels={s['phone_channels']} messages={s['messages']} resets_sent={s['resets_sent']}"
    )
    if status == 0:
        print("STOPPED")
    sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
