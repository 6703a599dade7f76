"""The shared vectors in tests/vectors/*.json, reproduced byte for byte from Python.

Handshake vectors need a fixed ephemeral key, which the published wheel deliberately cannot set: they run on
a test build of the extension (cargo feature `test-vectors`, path in LATCHKEY_TEST_VECTORS_EXT, built by `make
test-python`), loaded beside the installed wheel. The identity vectors run on the installed wheel itself.
"""

import functools
import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List

import pytest

import latchkey
from conftest import VECTORS


@functools.lru_cache(maxsize=None)
def vectors_extension() -> ModuleType:
    """The `test-vectors` build of latchkey._latchkey, loaded as a module of its own."""
    path = os.environ.get("LATCHKEY_TEST_VECTORS_EXT")
    assert path, "LATCHKEY_TEST_VECTORS_EXT must name the test build of the extension (make test-python sets it)"
    assert Path(path).is_file(), path
    # The module's init function is PyInit__latchkey, so the last name component must be `_latchkey`.
    spec = importlib.util.spec_from_file_location("latchkey_testing._latchkey", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_published_wheel_has_no_test_only_entry_point() -> None:
    assert not hasattr(latchkey.SecureChannel, "set_ephemeral_for_test_vectors")
    assert not any("ephemeral" in name for name in dir(latchkey.SecureChannel))
    # ... and the test build has it (so the check above is about the feature, not a renamed method).
    assert hasattr(vectors_extension().SecureChannel, "set_ephemeral_for_test_vectors")


def test_the_test_build_checks_the_ephemeral_secret_length() -> None:
    ext: Any = vectors_extension()
    identity = ext.Identity.create(ext.Vault(), now=1_800_000_000)
    channel = ext.SecureChannel.initiator(identity, trust_any=True, now=1_800_000_000)
    with pytest.raises(ValueError, match="32 bytes"):
        channel.set_ephemeral_for_test_vectors(b"short")
    channel.set_ephemeral_for_test_vectors(bytes(32))
    channel.handshake_step(None)
    # Too late once the ephemeral key exists.
    with pytest.raises(Exception, match="already generated"):
        channel.set_ephemeral_for_test_vectors(bytes(32))


def load(name: str) -> List[Dict[str, Any]]:
    vectors: List[Dict[str, Any]] = json.loads((VECTORS / f"{name}.json").read_text())["vectors"]
    assert vectors, f"{name}.json has no vectors"
    return vectors


def identity_from(v: Dict[str, Any], module: Any = latchkey) -> Any:
    return module.Identity.from_secrets(
        module.Vault(),
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


SUITES = {"ChaChaPoly": "CHACHA_POLY", "AesGcm": "AES_GCM"}


@pytest.mark.parametrize("v", load("handshake"), ids=lambda v: str(v["name"]))
def test_handshake_vector(v: Dict[str, Any]) -> None:
    ext: Any = vectors_extension()
    suite = getattr(ext.CipherSuite, SUITES[v["suite"]])
    sides = {}
    for role in ("initiator", "responder"):
        identity = identity_from(v[role], ext)
        assert identity.identifier == v[role]["identifier"]
        start = ext.SecureChannel.initiator if role == "initiator" else ext.SecureChannel.responder
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
