"""``latchkey.DeviceSession`` (a device behind a relay, sans-IO) from Python, on a virtual clock: arguments
(trust never implied, bad names and services), calls in the wrong state, the stream's framing (output taken in
any pieces, partial input kept, oversized and undecodable frames refused), hostile answers from the "relay"
side (a handshake answer that does not decode, a refusal) and the timers. Every byte is read with the
routed-message codec against docs/RUNTIME.md. The whole story with a real relay and phone in other processes is
test_device_relay.py."""

import struct
from concurrent.futures import ThreadPoolExecutor
from typing import List, Tuple

import pytest

import latchkey
from conftest import STRANGER

T0 = 1_000_000


def identity() -> latchkey.Identity:
    return latchkey.Identity.create(latchkey.Vault())


def new_device(me: latchkey.Identity) -> latchkey.DeviceSession:
    return latchkey.DeviceSession(me, "doorbell", now_ms=T0, relay_trust_any=True, trust_any=True, services=["echo"])


def framed(message: bytes) -> bytes:
    return struct.pack(">I", len(message)) + message


def messages(stream: bytes) -> List[Tuple[List[str], List[str], bytes]]:
    """The routed messages in bytes a device wrote (whole frames only)."""
    out = []
    while stream:
        (length,) = struct.unpack(">I", stream[:4])
        assert len(stream) >= 4 + length
        out.append(latchkey.decode_routed_message(stream[4 : 4 + length]))
        stream = stream[4 + length :]
    return out


def connect(device: latchkey.DeviceSession, now: int = T0) -> str:
    """Connects; checks message 1 and returns the device's decryptor address."""
    device.connected(now)
    [(onward, ret, payload)] = messages(device.take_output())
    assert onward == ["api"] and len(ret) == 1 and ret[0].startswith("sc-dec#")
    assert payload[0] == 0x01 and len(payload) == 33  # handshake kind, Noise message 1 (an ephemeral key)
    return ret[0]


def test_trust_is_never_implied() -> None:
    me = identity()
    with pytest.raises(latchkey.Insecure, match="relay_trust_any"):
        latchkey.DeviceSession(me, "doorbell", now_ms=T0, trust_any=True)
    with pytest.raises(latchkey.Insecure, match="trust_any"):
        latchkey.DeviceSession(me, "doorbell", now_ms=T0, relay_trust_any=True)
    with pytest.raises(latchkey.InvalidArgument, match="not both"):
        latchkey.DeviceSession(
            me, "doorbell", now_ms=T0, relay_trust_any=True, relay_trusted=[STRANGER], trust_any=True
        )
    with pytest.raises(latchkey.DecodeError):
        latchkey.DeviceSession(me, "doorbell", now_ms=T0, relay_trusted=["lk-not-an-identifier"], trust_any=True)


@pytest.mark.parametrize(
    "name, services, extra",
    [
        ("", ["echo"], {}),
        ("n" * 201, ["echo"], {}),
        ("doorbell", ["api"], {}),  # the device's own listener, not a service
        ("doorbell", [""], {}),
        ("doorbell", ["echo"], {"refresh_ms": 99}),
        ("doorbell", ["echo"], {"max_phones": 0}),
    ],
)
def test_bad_arguments_are_refused(name: str, services: List[str], extra: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(latchkey.InvalidArgument):
        latchkey.DeviceSession(
            identity(), name, now_ms=T0, relay_trust_any=True, trust_any=True, services=services, **extra
        )


def test_limits_that_are_allowed() -> None:
    # 200 bytes is the longest name; no services at all is a device that only registers.
    device = latchkey.DeviceSession(identity(), "n" * 200, now_ms=T0, relay_trust_any=True, trusted=[STRANGER])
    assert not device.is_connected


def test_before_connecting_nothing_is_due_or_sent() -> None:
    me = identity()
    device = new_device(me)
    assert device.identifier == me.identifier
    assert device.next_timeout() is None
    device.handle_timeout(T0 + 60_000)
    assert device.take_output() == b"" and device.output_len == 0
    with pytest.raises(latchkey.InvalidState, match="not connected"):
        device.receive(T0, b"\0\0\0\0")
    assert device.poll_event() is None and device.poll_message() is None
    assert not device.is_registered and device.phone_count == 0
    device.disconnected(T0)  # idempotent
    assert device.stats()["frames_out"] == 0


def test_stream_framing_and_the_handshake_retry_timer() -> None:
    device = new_device(identity())
    device.connected(T0)
    # Message 1 taken a byte at a time is the same stream.
    pieces = []
    while piece := device.take_output(1):
        assert len(piece) == 1
        pieces.append(piece)
    [(onward, [ours], payload)] = messages(b"".join(pieces))
    assert onward == ["api"] and payload[0] == 0x01
    with pytest.raises(latchkey.InvalidState, match="already connected"):
        device.connected(T0)
    assert device.take_output(0) == b""

    # Message 1 again after 500 ms, not before, from the same decryptor.
    assert device.next_timeout() == T0 + 500
    device.handle_timeout(T0 + 499)
    assert device.take_output() == b""
    device.handle_timeout(T0 + 500)
    [(_, ret, payload)] = messages(device.take_output())
    assert ret == [ours] and payload[0] == 0x01

    # Partial input is kept (any bytes-like): a frame's length alone, then the rest. A frame to nobody with a
    # short payload is dropped (no reset for what is not a channel frame longer than a reset).
    frame = framed(latchkey.encode_routed_message(["nobody"], ["tcp-in#1"], b"\x02\x01\x02\x03"))
    device.receive(T0 + 600, bytearray(frame[:3]))
    device.receive(T0 + 600, memoryview(frame[3:]))
    assert device.take_output() == b""
    assert device.stats()["frames_in"] == 1
    with pytest.raises(TypeError):
        device.receive(T0 + 600, "text")  # type: ignore[arg-type]

    # A frame above the limit, or one that is not a routed message, breaks the stream.
    with pytest.raises(latchkey.FrameTooLarge, match="drop the connection"):
        device.receive(T0 + 700, b"\xff\xff\xff\xff\0")
    with pytest.raises(latchkey.MalformedMessage):
        device.receive(T0 + 700, b"\0\0\0\x03\x09\x09\x09")

    # Down and up again: untaken output is dropped; the handshake goes on on the new connection.
    device.handle_timeout(T0 + 1000)
    device.disconnected(T0 + 1000)
    assert device.take_output() == b""
    with pytest.raises(latchkey.InvalidState):
        device.receive(T0 + 1000, frame)
    device.connected(T0 + 1100)
    device.handle_timeout(T0 + 1500)
    assert [ret for _, ret, _ in messages(device.take_output())] == [[ours]]


def test_hostile_relay_answers_are_reported_and_backed_off() -> None:
    device = new_device(identity())
    ours = connect(device)
    # A frame for a decryptor the device does not know: a 17-byte stateless reset back along its return route.
    unknown = framed(latchkey.encode_routed_message(["sc-dec#gone"], ["sc-dec#relay"], b"\x02" + b"\xab" * 63))
    device.receive(T0 + 10, unknown)
    [(onward, ret, reset)] = messages(device.take_output())
    assert onward == ["sc-dec#relay"] and ret == [] and len(reset) == 17 and reset[0] == 0x04
    stats = device.stats()
    assert (stats["resets_sent"], stats["frames_in"], stats["frames_out"]) == (1, 1, 2)

    # A "message 2" that is not a Noise message: the relay channel fails, says why, and a new attempt is
    # scheduled 500 ms later.
    device.receive(T0 + 20, framed(latchkey.encode_routed_message([ours], ["sc-dec#relay"], b"\x01" + b"Z" * 99)))
    event = device.poll_event()
    assert event is not None and event.kind == "relay_lost" and event.channel == 0 and event.detail
    assert device.poll_event() is None
    assert device.next_timeout() == T0 + 20 + 500
    assert device.take_output() == b""

    # The next attempt (a new decryptor) is refused with a reason, which is reported; 1 s to the next.
    device.handle_timeout(T0 + 520)
    [(_, [second], payload)] = messages(device.take_output())
    assert second != ours and payload[0] == 0x01
    device.receive(T0 + 530, framed(latchkey.encode_routed_message([second], ["x"], b"\x03go away")))
    event = device.poll_event()
    assert event is not None and event.kind == "relay_lost" and "go away" in event.detail
    assert "go away" in repr(event)
    assert device.next_timeout() == T0 + 530 + 1000
    assert not device.is_registered
    stats = device.stats()
    assert (stats["relay_channels"], stats["registrations"], stats["messages"]) == (0, 0, 0)


def test_objects_cannot_be_forged_from_python() -> None:
    with pytest.raises(TypeError):
        latchkey.DeviceMessage()
    with pytest.raises(TypeError):
        latchkey.DeviceEvent()
    device = new_device(identity())
    assert device.identifier in repr(device)


def test_one_device_from_several_threads() -> None:
    """Calls from several threads are serialised (the GIL is released inside): nothing lost, nothing doubled."""
    device = new_device(identity())
    connect(device)
    threads, calls = 4, 20  # 80 resets: below the device's 100 per second

    def feed(k: int) -> None:
        for i in range(calls):
            frame = latchkey.encode_routed_message([f"sc-dec#gone-{k}-{i}"], [f"tcp-in#{k}"], b"\x02" * 40)
            device.receive(T0 + 1, framed(frame))
            device.handle_timeout(T0 + 1)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(feed, range(threads)))
    resets = messages(device.take_output())
    assert len(resets) == threads * calls == device.stats()["resets_sent"]
    for k in range(threads):
        assert sum(1 for onward, _, _ in resets if onward == [f"tcp-in#{k}"]) == calls
    assert all(len(payload) == 17 and payload[0] == 0x04 for _, _, payload in resets)
