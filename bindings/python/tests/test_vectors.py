"""The shared vectors in tests/vectors/*.json, reproduced byte for byte from Python."""

import json
from typing import Any, Dict, List

import pytest

import latchkey
from conftest import VECTORS


def load(name: str) -> List[Dict[str, Any]]:
    vectors: List[Dict[str, Any]] = json.loads((VECTORS / f"{name}.json").read_text())["vectors"]
    assert vectors, f"{name}.json has no vectors"
    return vectors


def identity_from(v: Dict[str, Any]) -> latchkey.Identity:
    return latchkey.Identity.from_secrets(
        latchkey.Vault(),
        bytes.fromhex(v["signing_seed"]),
        bytes.fromhex(v["static_secret"]),
        key_validity_secs=v["key_validity_secs"],
        attestation_validity_secs=v["attestation_validity_secs"],
        now=v["created_at"],
    )


@pytest.mark.parametrize("v", load("identity"), ids=lambda v: str(v["name"]))
def test_identity_vector(v: Dict[str, Any]) -> None:
    identity = identity_from(v)
    assert identity.identifier == v["identifier"]
    assert identity.export_history().hex() == v["history"]
    for rotation in v["rotations"]:
        identity.rotate(bytes.fromhex(rotation["signing_seed"]), now=rotation["at"])
        assert identity.export_history().hex() == rotation["history"]
        assert identity.identifier == v["identifier"]
    assert identity.change_count == 1 + len(v["rotations"])


SUITES = {"ChaChaPoly": latchkey.CipherSuite.CHACHA_POLY, "AesGcm": latchkey.CipherSuite.AES_GCM}


@pytest.mark.parametrize("v", load("handshake"), ids=lambda v: str(v["name"]))
def test_handshake_vector(v: Dict[str, Any]) -> None:
    suite = SUITES[v["suite"]]
    sides = {}
    for role in ("initiator", "responder"):
        identity = identity_from(v[role])
        assert identity.identifier == v[role]["identifier"]
        start = latchkey.SecureChannel.initiator if role == "initiator" else latchkey.SecureChannel.responder
        # The vectors pin bytes, not a trust decision: both sides accept any identity, said explicitly.
        channel = start(identity, suite=suite, trust_any=True, now=v["now"])
        channel.set_ephemeral_for_test_vectors(bytes.fromhex(v[role]["ephemeral_secret"]))
        sides[role] = channel
    initiator, responder = sides["initiator"], sides["responder"]
    m1, m2, m3 = (bytes.fromhex(m) for m in v["messages"])

    assert initiator.handshake_step(None) == m1
    assert responder.handshake_step(m1) == m2
    assert initiator.handshake_step(m2) == m3
    assert responder.handshake_step(m3) is None
    assert initiator.handshake_hash.hex() == responder.handshake_hash.hex() == v["handshake_hash"]
    assert initiator.peer_identifier == v["responder"]["identifier"]
    assert responder.peer_identifier == v["initiator"]["identifier"]

    assert v["transport"], "vector without transport frames"
    for entry in v["transport"]:
        sender = sides[entry["from"]]
        receiver = responder if sender is initiator else initiator
        plaintext = bytes.fromhex(entry["plaintext"])
        frame = sender.encrypt(plaintext)
        assert frame.hex() == entry["frame"]
        assert int.from_bytes(frame[:8], "big") == entry["nonce"]
        assert receiver.decrypt(frame) == plaintext
