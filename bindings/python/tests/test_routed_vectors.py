"""tests/vectors/routed.json (the routed layer, docs/RUNTIME.md) reproduced from Python through the public
surface: the routed-message codec (``encode_routed_message`` / ``decode_routed_message``) byte for byte both
ways, the messages the relay vectors are made of, and, through a ``DeviceSession`` fed the vectors' frames as
its stream, the stateless reset (the key the device derives from its identity's static secret, the tokens, the
reset it answers a frame for an unknown decryptor with, the frames it does not answer) and which routed
messages the stream accepts. What the public surface does not expose (the plaintext inside a channel's
transport frames, cookies) is checked by the Rust core's tests; here only the routed messages inside the
DATA frames are decoded."""

import json
import struct
from typing import Any, Dict, List, Tuple

import pytest

import latchkey
from conftest import VECTORS

ROUTED: Dict[str, Any] = json.loads((VECTORS / "routed.json").read_text())
RESET: Dict[str, Any] = ROUTED["stateless_reset"]
T0 = 1_000_000


def framed(message: bytes) -> bytes:
    """One frame of the stream to a relay: a 4-byte big-endian length and the routed message."""
    return struct.pack(">I", len(message)) + message


def frames(stream: bytes) -> List[bytes]:
    """Splits bytes a device wrote into its frames (each a routed message); the stream must end on a frame."""
    out = []
    while stream:
        assert len(stream) >= 4, stream.hex()
        (length,) = struct.unpack(">I", stream[:4])
        assert len(stream) >= 4 + length, f"a frame of {length} bytes cut short"
        out.append(stream[4 : 4 + length])
        stream = stream[4 + length :]
    return out


def name_of(v: Dict[str, Any]) -> str:
    return str(v["name"])


# ---- the routed-message codec ----


@pytest.mark.parametrize("v", ROUTED["routed_messages"], ids=name_of)
def test_routed_message_encodes_and_decodes(v: Dict[str, Any]) -> None:
    payload = bytes.fromhex(v["payload"])
    encoded = latchkey.encode_routed_message(v["onward"], v["ret"], payload)
    assert encoded.hex() == v["encoded"]
    onward, ret, decoded_payload = latchkey.decode_routed_message(bytes.fromhex(v["encoded"]))
    assert (onward, ret, decoded_payload) == (v["onward"], v["ret"], payload)
    # Any bytes-like input is the same message.
    assert latchkey.decode_routed_message(bytearray.fromhex(v["encoded"]))[2] == payload


@pytest.mark.parametrize("v", ROUTED["invalid_routed_messages"], ids=name_of)
def test_invalid_routed_message_is_refused(v: Dict[str, Any]) -> None:
    with pytest.raises(latchkey.DecodeError) as raised:
        latchkey.decode_routed_message(bytes.fromhex(v["encoded"]))
    assert v["error"] in str(raised.value)


def test_encoding_refuses_what_cannot_be_decoded() -> None:
    with pytest.raises(latchkey.InvalidArgument, match="address"):
        latchkey.encode_routed_message([""], [], b"")
    with pytest.raises(latchkey.InvalidArgument):
        latchkey.encode_routed_message(["a" * 256], [], b"")
    with pytest.raises(latchkey.InvalidArgument, match="route too long"):
        latchkey.encode_routed_message(["hop"] * 33, [], b"")
    # The limits themselves are fine, and decode back.
    longest = latchkey.encode_routed_message(["a" * 255] * 32, ["r"], b"x")
    assert latchkey.decode_routed_message(longest) == (["a" * 255] * 32, ["r"], b"x")
    with pytest.raises(TypeError):
        latchkey.encode_routed_message(["api"], [], "not bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize("v", [f for f in ROUTED["frames"] if f["type"] == "DATA"], ids=name_of)
def test_data_frame_carries_a_routed_message(v: Dict[str, Any]) -> None:
    # DATA = type 1 ‖ seq (u64 BE) ‖ an inner routed message, which the codec reads.
    plaintext = bytes.fromhex(v["plaintext"])
    assert plaintext[0] == 1 and struct.unpack(">Q", plaintext[1:9])[0] == v["seq"]
    assert plaintext[9:].hex() == v["inner"]
    onward, ret, payload = latchkey.decode_routed_message(plaintext[9:])
    assert latchkey.encode_routed_message(onward, ret, payload).hex() == v["inner"]


@pytest.mark.parametrize("v", [f for f in ROUTED["frames"] if f["type"] in ("ACK", "PROBE")], ids=name_of)
def test_ack_and_probe_layouts(v: Dict[str, Any]) -> None:
    # ACK = type 2 ‖ cumulative ‖ selective (none: u64::MAX) ‖ limit (the credit: DATA below it is taken);
    # PROBE = type 6 ‖ the prober's next sequence number; all u64 BE.
    plaintext = bytes.fromhex(v["plaintext"])
    if v["type"] == "ACK":
        selective = 2**64 - 1 if v["selective"] is None else v["selective"]
        assert plaintext == struct.pack(">BQQQ", 2, v["cumulative"], selective, v["limit"])
    else:
        assert plaintext == struct.pack(">BQ", 6, v["next"])


def test_relay_registration_messages() -> None:
    relay = ROUTED["relay"]
    request = relay["request"]
    # The registration request inside the relay channel: to the relay service, answers to the device's mailbox.
    assert latchkey.decode_routed_message(bytes.fromhex(request["inner_message"])) == (
        [request["service"]],
        [request["reply_to"]],
        request["name"].encode(),
    )
    assert (
        latchkey.encode_routed_message([request["service"]], [request["reply_to"]], request["name"].encode()).hex()
        == request["inner_message"]
    )
    # The relay's answer goes back along the request's return route, with no return route of its own.
    replies = {r["reply"]: bytes.fromhex(r["bytes"]) for r in relay["replies"]}
    assert all(text.encode() == raw for text, raw in replies.items())
    answer = relay["reply_message"]
    assert latchkey.decode_routed_message(bytes.fromhex(answer["encoded"])) == (
        answer["request_ret_at_relay"],
        [],
        replies[answer["reply"]],
    )


def test_relay_refusal_of_an_unknown_name() -> None:
    unknown = ROUTED["relay"]["unknown_name"]
    onward, ret, payload = latchkey.decode_routed_message(bytes.fromhex(unknown["arrived"]))
    assert onward[0].startswith("fwd:") and payload[0] == 0x01  # message 1 of a handshake, to a forwarder
    refused = [p for p in ROUTED["channel_payloads"] if p["kind"] == 3]
    assert refused
    # The refusal: back along the arrival's return route, a channel payload of kind 3 (refused) with the reason.
    refusal = latchkey.encode_routed_message(ret, [], bytes([3]) + unknown["reason"].encode())
    assert refusal.hex() == unknown["refusal"]
    assert latchkey.decode_routed_message(refusal) == (ret, [], bytes.fromhex("03") + unknown["reason"].encode())


# ---- the stateless reset and the stream, through a device ----


def reset_device() -> Tuple[latchkey.DeviceSession, str]:
    """A device whose identity has the vectors' static secret (its reset key is derived from it), connected,
    with its message 1 taken; returns it and its relay channel's decryptor address."""
    identity = latchkey.Identity.from_secrets(
        latchkey.Vault(), bytes([7]) * 32, bytes.fromhex(RESET["key_derivation"]["static_secret"])
    )
    device = latchkey.DeviceSession(
        identity, "doorbell", now_ms=T0, relay_trust_any=True, trust_any=True, services=["echo"]
    )
    device.connected(T0)
    [message_1] = frames(device.take_output())
    onward, ret, payload = latchkey.decode_routed_message(message_1)
    # docs/RUNTIME.md: message 1 to the relay's listener "api", answers back to the device's decryptor; its
    # payload is channel payload kind 1 (handshake) and a Noise message 1 (an ephemeral key).
    handshake_kind = next(p["kind"] for p in ROUTED["channel_payloads"] if p["name"] == "handshake message")
    assert onward == ["api"] and len(ret) == 1 and ret[0].startswith("sc-dec#")
    assert payload[0] == handshake_kind and len(payload) == 1 + 32
    return device, ret[0]


def test_device_answers_a_frame_for_an_unknown_decryptor_with_the_vectors_reset() -> None:
    device, _ = reset_device()
    answer = RESET["answer"]
    device.receive(T0 + 1, framed(bytes.fromhex(answer["arrived"])))
    out = device.take_output()
    assert out == framed(bytes.fromhex(answer["reset"]))
    onward, ret, payload = latchkey.decode_routed_message(frames(out)[0])
    assert payload.hex() == answer["payload"] and payload[0] == RESET["kind"]
    arrived_ret = latchkey.decode_routed_message(bytes.fromhex(answer["arrived"]))[1]
    assert onward == arrived_ret and ret == []
    assert device.stats()["resets_sent"] == 1


@pytest.mark.parametrize("v", RESET["tokens"], ids=lambda v: str(v["decryptor"]))
def test_device_reset_carries_the_vectors_token(v: Dict[str, Any]) -> None:
    device, _ = reset_device()
    frame = latchkey.encode_routed_message([v["decryptor"]], ["tcp-in#1"], bytes([2]) * 40)
    device.receive(T0 + 1, framed(frame))
    [reset] = frames(device.take_output())
    assert latchkey.decode_routed_message(reset) == (
        ["tcp-in#1"],
        [],
        bytes([RESET["kind"]]) + bytes.fromhex(v["token"]),
    )
    assert len(bytes.fromhex(v["token"])) == RESET["token_len"]
    # The same frame again gets the same token: it is derived, not random.
    device.receive(T0 + 2, framed(frame))
    assert frames(device.take_output()) == [reset]


def test_the_ack_that_carries_a_token() -> None:
    ack = RESET["ack_with_token"]
    assert ack["token"] == RESET["tokens"][0]["token"]
    plaintext = bytes.fromhex(ack["plaintext"])
    # 0x02 ‖ cumulative ‖ selective (none: u64::MAX) ‖ limit (the credit), then the token.
    assert plaintext[0] == 2 and struct.unpack(">QQQ", plaintext[1:25]) == (ack["cumulative"], 2**64 - 1, ack["limit"])
    assert plaintext[25:].hex() == ack["token"]


@pytest.mark.parametrize("v", RESET["not_answered"], ids=name_of)
def test_device_does_not_answer(v: Dict[str, Any]) -> None:
    device, _ = reset_device()
    device.receive(T0 + 1, framed(bytes.fromhex(v["arrived"])))
    assert device.take_output() == b""
    assert device.stats()["resets_sent"] == 0


@pytest.mark.parametrize("v", ROUTED["routed_messages"], ids=name_of)
def test_device_stream_accepts_a_valid_routed_message(v: Dict[str, Any]) -> None:
    device, _ = reset_device()
    device.receive(T0 + 1, framed(bytes.fromhex(v["encoded"])))
    assert device.is_connected
    assert device.stats()["frames_in"] == 1
    for frame in frames(device.take_output()):  # whatever it answers (a reset, nothing) is well formed
        latchkey.decode_routed_message(frame)


@pytest.mark.parametrize("v", ROUTED["invalid_routed_messages"], ids=name_of)
def test_device_stream_refuses_an_invalid_routed_message(v: Dict[str, Any]) -> None:
    device, decryptor = reset_device()
    with pytest.raises(latchkey.MalformedMessage, match="drop the connection"):
        device.receive(T0 + 1, framed(bytes.fromhex(v["encoded"])))
    assert device.take_output() == b""
    # A new connection, as a device would make: the handshake goes on on it, from the same decryptor.
    device.disconnected(T0 + 1)
    device.connected(T0 + 2)
    device.handle_timeout(T0 + 600)
    assert [latchkey.decode_routed_message(f)[1] for f in frames(device.take_output())] == [[decryptor]]


def test_all_vectors_through_one_device() -> None:
    """The sequence test_route.c runs through one device: every count and the resets it sent."""
    device, _ = reset_device()
    device.receive(T0 + 1, framed(bytes.fromhex(RESET["answer"]["arrived"])))
    assert device.take_output() == framed(bytes.fromhex(RESET["answer"]["reset"]))
    for v in RESET["tokens"]:
        device.receive(T0 + 1, framed(latchkey.encode_routed_message([v["decryptor"]], ["tcp-in#1"], b"\x02" * 40)))
        assert frames(device.take_output())[0].endswith(bytes.fromhex(v["token"]))
    for v in RESET["not_answered"]:
        device.receive(T0 + 1, framed(bytes.fromhex(v["arrived"])))
        assert device.take_output() == b""
    for v in ROUTED["routed_messages"]:
        device.receive(T0 + 1, framed(bytes.fromhex(v["encoded"])))
        device.take_output()
    for v in ROUTED["invalid_routed_messages"]:
        with pytest.raises(latchkey.MalformedMessage):
            device.receive(T0 + 1, framed(bytes.fromhex(v["encoded"])))
        device.disconnected(T0 + 1)
        device.connected(T0 + 1)
        device.take_output()
    stats = device.stats()
    assert stats["resets_sent"] == 1 + len(RESET["tokens"])
    assert stats["frames_in"] == 1 + len(RESET["tokens"]) + len(RESET["not_answered"]) + len(
        ROUTED["routed_messages"]
    ) + len(ROUTED["invalid_routed_messages"])


# ---- the suite offer of message 1 (docs/PROTOCOL.md 5.1) ----


def test_suite_offer_refusal_reproduces() -> None:
    offers = ROUTED["suite_offers"]["offers"]
    # An empty offer is a bare ephemeral key (what a device's message 1 carries, above); one byte names a suite.
    assert [len(bytes.fromhex(o["noise_message_1"])) for o in offers][:3] == [32, 33, 33]
    assert {o["suite"] for o in offers if o["error"] is None} == {"chachapoly", "aesgcm"}
    refusal = ROUTED["suite_offers"]["refusal"]
    onward, ret, payload = latchkey.decode_routed_message(bytes.fromhex(refusal["arrived"]))
    assert payload[0] == 0x01 and payload[1:].hex() == offers[2]["noise_message_1"]
    # Back along message 1's return route, from the listener: 0x03 (refused) and the error's stable name.
    reason = b"UnsupportedSuite"
    assert any(p["kind"] == 3 and bytes.fromhex(p["body"]) == reason for p in ROUTED["channel_payloads"])
    encoded = latchkey.encode_routed_message(ret, [refusal["listener"]], bytes([3]) + reason)
    assert encoded.hex() == refusal["refusal"]
    assert bytes.fromhex(refusal["payload"]) == bytes([3]) + reason
