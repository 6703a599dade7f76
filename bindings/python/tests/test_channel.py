"""SecureChannel: handshake, transport, every documented error, closing, threads."""

import threading
from typing import Any, Callable, List

import pytest

import latchkey
from conftest import NOW, STRANGER, Pair, handshake, open_pair

SUITES = [latchkey.CipherSuite.CHACHA_POLY, latchkey.CipherSuite.AES_GCM]


@pytest.mark.parametrize("suite", SUITES)
def test_handshake_then_both_directions(suite: latchkey.CipherSuite) -> None:
    vault = latchkey.Vault()
    a = latchkey.Identity.create(vault, now=NOW)
    b = latchkey.Identity.create(vault, now=NOW)
    initiator = latchkey.SecureChannel.initiator(a, suite=suite, trusted=[b.identifier], now=NOW)
    responder = latchkey.SecureChannel.responder(b, suite=suite, trusted=[a.identifier], now=NOW)
    assert (initiator.role, responder.role) == ("initiator", "responder")
    assert initiator.suite == suite
    assert not initiator.is_finished and len(initiator.handshake_hash) == 32

    m1 = initiator.handshake_step(None)
    m2 = responder.handshake_step(m1)
    m3 = initiator.handshake_step(m2)
    assert m1 and m2 and m3
    assert initiator.is_finished and not responder.is_finished
    assert responder.handshake_step(m3) is None
    assert responder.is_finished

    assert initiator.peer_identifier == b.identifier
    assert responder.peer_identifier == a.identifier
    assert initiator.peer_history == b.export_history()
    assert initiator.handshake_hash == responder.handshake_hash
    assert f"open with {b.identifier}" in repr(initiator)

    frame = initiator.encrypt(b"ping")
    assert len(frame) == 4 + latchkey.FRAME_OVERHEAD
    assert responder.decrypt(frame) == b"ping"
    assert initiator.decrypt(responder.encrypt(b"pong")) == b"pong"


def test_frames_carry_increasing_explicit_nonces(pair: Pair) -> None:
    initiator, responder, _, _ = pair
    frames = [initiator.encrypt(b"x") for _ in range(3)]
    assert [int.from_bytes(f[:8], "big") for f in frames] == [0, 1, 2]
    # Reordered delivery within the replay window is accepted.
    assert [responder.decrypt(f) for f in reversed(frames)] == [b"x"] * 3


def test_sizes_empty_bytearray_and_maximum(pair: Pair) -> None:
    initiator, responder, _, _ = pair
    assert responder.decrypt(initiator.encrypt(b"")) == b""
    assert responder.decrypt(bytearray(initiator.encrypt(bytearray(b"ba")))) == b"ba"
    biggest = bytes(range(256)) * (latchkey.MAX_PLAINTEXT_LEN // 256) + b"z" * (latchkey.MAX_PLAINTEXT_LEN % 256)
    assert responder.decrypt(initiator.encrypt(biggest)) == biggest
    with pytest.raises(latchkey.MessageTooLarge):
        initiator.encrypt(bytes(latchkey.MAX_PLAINTEXT_LEN + 1))


def test_replay_is_refused_and_the_channel_survives(pair: Pair) -> None:
    initiator, responder, _, _ = pair
    frame = initiator.encrypt(b"once")
    assert responder.decrypt(frame) == b"once"
    with pytest.raises(latchkey.Replay):
        responder.decrypt(frame)
    assert responder.decrypt(initiator.encrypt(b"next")) == b"next"


@pytest.mark.parametrize("position", [7, 8, -1], ids=["nonce", "ciphertext", "tag"])
def test_tampered_frame_fails_authentication(pair: Pair, position: int) -> None:
    initiator, responder, _, _ = pair
    frame = bytearray(initiator.encrypt(b"payload"))
    frame[position] ^= 0x80
    with pytest.raises(latchkey.DecryptFailed):
        responder.decrypt(bytes(frame))


def test_frame_claiming_a_far_future_nonce_is_too_far_ahead(pair: Pair) -> None:
    initiator, responder, _, _ = pair
    frame = bytearray(initiator.encrypt(b"payload"))
    frame[0] ^= 0x80
    with pytest.raises(latchkey.TooFarAhead):
        responder.decrypt(bytes(frame))


@pytest.mark.parametrize("length", [0, 3, 8, latchkey.FRAME_OVERHEAD - 1, latchkey.FRAME_OVERHEAD + 6])
def test_truncated_frame_fails_authentication(pair: Pair, length: int) -> None:
    initiator, responder, _, _ = pair
    frame = initiator.encrypt(b"payload")
    with pytest.raises(latchkey.DecryptFailed):
        responder.decrypt(frame[:length])
    assert responder.decrypt(frame) == b"payload"  # the untouched frame still opens


def test_frame_from_another_channel_fails(pair: Pair) -> None:
    initiator, _, _, _ = pair
    _, other_responder, _, _ = open_pair()
    with pytest.raises(latchkey.DecryptFailed):
        other_responder.decrypt(initiator.encrypt(b"hi"))


def test_frames_older_than_the_replay_window_are_stale(pair: Pair) -> None:
    initiator, responder, _, _ = pair
    frames = [initiator.encrypt(b"%d" % i) for i in range(1100)]
    assert responder.decrypt(frames[-1]) == b"1099"
    with pytest.raises(latchkey.StaleMessage):
        responder.decrypt(frames[0])


def test_out_of_turn_handshake_calls_are_invalid_state() -> None:
    vault = latchkey.Vault()
    a = latchkey.Identity.create(vault, now=NOW)
    responder = latchkey.SecureChannel.responder(a, trust_any=True, now=NOW)
    with pytest.raises(latchkey.InvalidState):
        responder.handshake_step(None)
    initiator = latchkey.SecureChannel.initiator(a, trust_any=True, now=NOW)
    m1 = initiator.handshake_step(None)
    with pytest.raises(latchkey.InvalidState):
        initiator.handshake_step(None)
    uses: List[Callable[[], bytes]] = [lambda: initiator.encrypt(b"x"), lambda: initiator.decrypt(b"x" * 30)]
    for use in uses:
        with pytest.raises(latchkey.InvalidState, match="not finished"):
            use()
    with pytest.raises(latchkey.InvalidState):
        initiator.peer_identifier


def test_handshake_step_after_the_handshake_is_invalid_state(pair: Pair) -> None:
    initiator, responder, _, _ = pair
    with pytest.raises(latchkey.InvalidState, match="already finished"):
        responder.handshake_step(b"more")


def test_malformed_handshake_message_kills_the_handshake() -> None:
    vault = latchkey.Vault()
    initiator = latchkey.SecureChannel.initiator(latchkey.Identity.create(vault, now=NOW), trust_any=True, now=NOW)
    responder = latchkey.SecureChannel.responder(latchkey.Identity.create(vault, now=NOW), trust_any=True, now=NOW)
    m1 = initiator.handshake_step(None)
    assert m1 is not None
    with pytest.raises(latchkey.DecodeError):
        responder.handshake_step(m1[:10])
    with pytest.raises(latchkey.InvalidState, match="failed"):
        responder.handshake_step(m1)


def test_tampered_handshake_message_fails_authentication() -> None:
    vault = latchkey.Vault()
    initiator = latchkey.SecureChannel.initiator(latchkey.Identity.create(vault, now=NOW), trust_any=True, now=NOW)
    responder = latchkey.SecureChannel.responder(latchkey.Identity.create(vault, now=NOW), trust_any=True, now=NOW)
    m2 = responder.handshake_step(initiator.handshake_step(None))
    assert m2 is not None
    tampered = bytearray(m2)
    tampered[-1] ^= 1
    with pytest.raises(latchkey.DecryptFailed):
        initiator.handshake_step(bytes(tampered))
    assert not initiator.is_finished


def test_untrusted_responder_is_refused_by_the_initiator() -> None:
    with pytest.raises(latchkey.UntrustedPeer, match="is not trusted"):
        open_pair(trusted_by_initiator=[STRANGER])


def test_untrusted_initiator_is_refused_by_the_responder() -> None:
    vault = latchkey.Vault()
    a = latchkey.Identity.create(vault, now=NOW)
    b = latchkey.Identity.create(vault, now=NOW)
    initiator = latchkey.SecureChannel.initiator(a, trusted=[b.identifier], now=NOW)
    responder = latchkey.SecureChannel.responder(b, trusted=[STRANGER], now=NOW)
    m3 = initiator.handshake_step(responder.handshake_step(initiator.handshake_step(None)))
    with pytest.raises(latchkey.UntrustedPeer):
        responder.handshake_step(m3)
    with pytest.raises(latchkey.InvalidState):
        responder.encrypt(b"no channel")


@pytest.mark.parametrize("start", [latchkey.SecureChannel.initiator, latchkey.SecureChannel.responder])
def test_omitted_trust_raises_insecure(start: Callable[..., latchkey.SecureChannel]) -> None:
    # Trust is never implied by an omitted argument: no trusted=[...] and no trust_any=True is refused.
    identity = latchkey.Identity.create(latchkey.Vault(), now=NOW)
    with pytest.raises(latchkey.Insecure, match="trust_any=True") as raised:
        start(identity, now=NOW)
    assert isinstance(raised.value, latchkey.LatchkeyError)
    with pytest.raises(latchkey.Insecure):
        start(identity, trusted=None, trust_any=False, now=NOW)
    with pytest.raises(ValueError, match="not both"):
        start(identity, trusted=[STRANGER], trust_any=True, now=NOW)


def test_trust_any_accepts_any_identity_said_explicitly() -> None:
    vault = latchkey.Vault()
    a = latchkey.Identity.create(vault, now=NOW)
    b = latchkey.Identity.create(vault, now=NOW)
    initiator = latchkey.SecureChannel.initiator(a, trust_any=True, now=NOW)
    responder = latchkey.SecureChannel.responder(b, trust_any=True, now=NOW)
    handshake(initiator, responder)
    assert initiator.peer_identifier == b.identifier
    assert responder.peer_identifier == a.identifier
    assert responder.decrypt(initiator.encrypt(b"hi")) == b"hi"


def test_an_empty_trusted_list_refuses_every_peer() -> None:
    with pytest.raises(latchkey.UntrustedPeer):
        open_pair(trusted_by_initiator=[])


def test_the_c_any_marker_is_no_wildcard_in_python() -> None:
    # "*" means "any identity" only in the C ABI's one-entry list; Python says trust_any=True instead.
    identity = latchkey.Identity.create(latchkey.Vault(), now=NOW)
    with pytest.raises(latchkey.DecodeError):
        latchkey.SecureChannel.initiator(identity, trusted=["*"], now=NOW)


def test_malformed_trusted_identifier_is_a_decode_error() -> None:
    identity = latchkey.Identity.create(latchkey.Vault(), now=NOW)
    with pytest.raises(latchkey.DecodeError):
        latchkey.SecureChannel.initiator(identity, trusted=["not-an-identifier"])


def test_expired_peer_attestation_is_refused() -> None:
    vault = latchkey.Vault()
    short_lived = latchkey.Identity.create(vault, attestation_validity_secs=10, now=NOW)
    other = latchkey.Identity.create(vault, now=NOW)
    responder = latchkey.SecureChannel.responder(short_lived, trusted=[other.identifier], now=NOW + 5)
    initiator = latchkey.SecureChannel.initiator(other, trusted=[short_lived.identifier], now=NOW + 100)
    m2 = responder.handshake_step(initiator.handshake_step(None))
    with pytest.raises(latchkey.Expired):
        initiator.handshake_step(m2)


def test_closed_channel_raises_invalid_state_everywhere(pair: Pair) -> None:
    initiator, responder, _, _ = pair
    frame = initiator.encrypt(b"late")
    responder.close()
    assert responder.is_closed and not responder.is_finished
    uses: List[Callable[[], Any]] = [
        lambda: responder.decrypt(frame),
        lambda: responder.encrypt(b"x"),
        lambda: responder.handshake_step(b"x"),
        lambda: responder.peer_identifier,
        lambda: responder.peer_history,
        lambda: responder.peer_credentials,
        lambda: responder.handshake_hash,
    ]
    for use in uses:
        with pytest.raises(latchkey.InvalidState, match="closed"):
            use()
    responder.close()  # idempotent
    assert "closed" in repr(responder)


def test_context_manager_closes_and_propagates_exceptions(pair: Pair) -> None:
    initiator, responder, _, _ = pair
    with initiator as channel:
        assert channel is initiator
        responder.decrypt(channel.encrypt(b"inside"))
    assert initiator.is_closed
    with pytest.raises(KeyError):
        with responder:
            raise KeyError("boom")
    assert responder.is_closed


def test_closing_during_the_handshake() -> None:
    identity = latchkey.Identity.create(latchkey.Vault(), now=NOW)
    with latchkey.SecureChannel.initiator(identity, trust_any=True, now=NOW) as initiator:
        initiator.handshake_step(None)
    with pytest.raises(latchkey.InvalidState, match="closed"):
        initiator.handshake_step(b"m2")


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.encrypt("text"),
        lambda c: c.encrypt(None),
        lambda c: c.encrypt(memoryview(b"x").tolist()),
        lambda c: c.decrypt(12),
        lambda c: c.handshake_step("m1"),
        lambda c: latchkey.SecureChannel.initiator("identity"),  # type: ignore[arg-type]
        lambda c: latchkey.SecureChannel.initiator(latchkey.Identity.create(latchkey.Vault()), suite="AES_GCM"),  # type: ignore[arg-type]
        lambda c: latchkey.SecureChannel.responder(latchkey.Identity.create(latchkey.Vault()), trusted=STRANGER),
        lambda c: latchkey.SecureChannel.responder(latchkey.Identity.create(latchkey.Vault()), trusted=[1]),  # type: ignore[list-item]
    ],
)
def test_wrong_types_are_type_errors(pair: Pair, call: Callable[[latchkey.SecureChannel], Any]) -> None:
    with pytest.raises(TypeError):
        call(pair[0])


def test_one_channel_shared_by_threads_serialises_large_messages(pair: Pair) -> None:
    initiator, responder, _, _ = pair
    chunk = 16 * 1024  # above the size where the GIL is released
    frames: List[bytes] = []
    lock = threading.Lock()

    def sender(tag: int) -> None:
        for i in range(25):
            frame = initiator.encrypt(bytes([tag]) * chunk + i.to_bytes(2, "big"))
            with lock:
                frames.append(frame)

    threads = [threading.Thread(target=sender, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({f[:8] for f in frames}) == 100  # every frame got its own nonce
    received = sorted(responder.decrypt(f) for f in frames)
    expected = sorted(bytes([t]) * chunk + i.to_bytes(2, "big") for t in range(4) for i in range(25))
    assert received == expected
