"""Vault, Identity and the history helpers."""

import re
from typing import Any, Callable

import pytest

import latchkey
from conftest import NOW, handshake

SEED = bytes(range(32))
STATIC = bytes(range(32, 64))


def test_vault_holds_the_keys_of_live_identities_only() -> None:
    vault = latchkey.Vault()
    assert vault.key_count == 0
    identity = latchkey.Identity.create(vault, now=NOW)
    assert vault.key_count == 2  # the identity key and the secure-channel static key
    assert "keys" in repr(vault)
    identity.rotate(now=NOW + 10)
    assert vault.key_count == 2  # the rotated-away key is deleted
    with pytest.raises(latchkey.InvalidHistory):
        latchkey.Identity.create(vault, now=2**64 - 1)  # fails after generating its keys
    assert vault.key_count == 2  # ... and leaves none
    del identity  # the last reference: its keys leave the vault
    assert vault.key_count == 0


def test_create_gives_a_verifiable_identity() -> None:
    identity = latchkey.Identity.create(latchkey.Vault(), now=NOW)
    assert re.fullmatch(r"lk[0-9a-f]{64}", identity.identifier)
    assert identity.change_count == 1
    history = identity.export_history()
    assert isinstance(history, bytes)
    assert latchkey.history_identifier(history) == identity.identifier
    assert repr(identity) == f"<latchkey.Identity {identity.identifier}>"


def test_identities_are_distinct() -> None:
    vault = latchkey.Vault()
    assert latchkey.Identity.create(vault).identifier != latchkey.Identity.create(vault).identifier


def test_create_with_p256_completes_handshakes() -> None:
    vault = latchkey.Vault()
    p256 = latchkey.Identity.create(vault, algorithm=latchkey.SigningAlgorithm.ECDSA_P256, now=NOW)
    other = latchkey.Identity.create(vault, now=NOW)
    initiator = latchkey.SecureChannel.initiator(p256, trusted=[other.identifier], now=NOW)
    responder = latchkey.SecureChannel.responder(other, trusted=[p256.identifier], now=NOW)
    handshake(initiator, responder)
    assert responder.peer_identifier == p256.identifier


def test_from_secrets_is_deterministic_across_vaults() -> None:
    one = latchkey.Identity.from_secrets(latchkey.Vault(), SEED, STATIC, now=NOW)
    two = latchkey.Identity.from_secrets(latchkey.Vault(), bytearray(SEED), bytearray(STATIC), now=NOW)
    assert one.identifier == two.identifier
    assert one.export_history() == two.export_history()
    three = latchkey.Identity.from_secrets(latchkey.Vault(), STATIC, SEED, now=NOW)
    assert three.identifier != one.identifier


def test_secrets_never_show_in_repr() -> None:
    identity = latchkey.Identity.from_secrets(latchkey.Vault(), SEED, STATIC, now=NOW)
    for text in (repr(identity), repr(latchkey.Vault())):
        assert SEED.hex() not in text and STATIC.hex() not in text


def test_rotation_extends_the_history_and_keeps_the_identifier() -> None:
    identity = latchkey.Identity.create(latchkey.Vault(), now=NOW)
    before = identity.export_history()
    identity.rotate(now=NOW + 10)
    after = identity.export_history()
    assert identity.change_count == 2
    assert after != before
    assert latchkey.history_identifier(after) == identity.identifier
    assert latchkey.verify_history_update(before, after) == identity.identifier
    assert latchkey.verify_history_update(after, after) == identity.identifier
    with pytest.raises(latchkey.HistoryMismatch):
        latchkey.verify_history_update(after, before)


def test_deterministic_rotation() -> None:
    histories = []
    for _ in range(2):
        identity = latchkey.Identity.from_secrets(latchkey.Vault(), SEED, STATIC, now=NOW)
        identity.rotate(STATIC, now=NOW + 100)
        histories.append(identity.export_history())
    assert histories[0] == histories[1]


def test_rotated_identity_still_completes_handshakes() -> None:
    vault = latchkey.Vault()
    a = latchkey.Identity.create(vault, now=NOW)
    b = latchkey.Identity.create(vault, now=NOW)
    a.rotate(now=NOW + 10)
    initiator = latchkey.SecureChannel.initiator(a, trusted=[b.identifier], now=NOW + 20)
    responder = latchkey.SecureChannel.responder(b, trusted=[a.identifier], now=NOW + 20)
    handshake(initiator, responder)
    assert responder.peer_history == a.export_history()


def test_history_of_another_identity_is_a_mismatch() -> None:
    vault = latchkey.Vault()
    a = latchkey.Identity.create(vault, now=NOW).export_history()
    b = latchkey.Identity.create(vault, now=NOW).export_history()
    with pytest.raises(latchkey.HistoryMismatch):
        latchkey.verify_history_update(a, b)


def test_failed_rotation_changes_nothing() -> None:
    identity = latchkey.Identity.create(latchkey.Vault(), now=NOW)
    before = identity.export_history()
    with pytest.raises(ValueError, match="32 bytes"):
        identity.rotate(b"short", now=NOW + 10)
    assert identity.export_history() == before and identity.change_count == 1


@pytest.mark.parametrize(
    "mangle",
    [lambda h: b"", lambda h: h[:5], lambda h: h[: len(h) // 2], lambda h: h[:-1], lambda h: h + b"\0"],
    ids=["empty", "5-bytes", "half", "minus-one", "trailing"],
)
def test_truncated_or_padded_history_is_a_decode_error(mangle: Callable[[bytes], bytes]) -> None:
    history = latchkey.Identity.create(latchkey.Vault(), now=NOW).export_history()
    with pytest.raises(latchkey.DecodeError):
        latchkey.history_identifier(mangle(history))
    with pytest.raises(latchkey.DecodeError):
        latchkey.verify_history_update(history, mangle(history))


def test_tampered_history_does_not_verify() -> None:
    history = bytearray(latchkey.Identity.create(latchkey.Vault(), now=NOW).export_history())
    history[-10] ^= 0x01  # inside the trailing signature
    with pytest.raises((latchkey.InvalidHistory, latchkey.InvalidSignature)):
        latchkey.history_identifier(bytes(history))


def test_wrong_secret_lengths_are_value_errors() -> None:
    vault = latchkey.Vault()
    with pytest.raises(ValueError, match="signing_seed"):
        latchkey.Identity.from_secrets(vault, SEED[:31], STATIC)
    with pytest.raises(ValueError, match="static_secret"):
        latchkey.Identity.from_secrets(vault, SEED, STATIC + b"x")


@pytest.mark.parametrize(
    "call",
    [
        lambda: latchkey.Identity.create("vault"),  # type: ignore[arg-type]
        lambda: latchkey.Identity.create(latchkey.Vault(), now="soon"),  # type: ignore[arg-type]
        lambda: latchkey.Identity.create(latchkey.Vault(), algorithm="ed25519"),  # type: ignore[arg-type]
        lambda: latchkey.Identity.from_secrets(latchkey.Vault(), SEED.hex(), STATIC),  # type: ignore[arg-type]
        lambda: latchkey.Identity.from_secrets(latchkey.Vault(), SEED, None),  # type: ignore[arg-type]
        lambda: latchkey.Identity.create(latchkey.Vault()).rotate("seed"),  # type: ignore[arg-type]
        lambda: latchkey.Identity.create(latchkey.Vault()).set_credentials(b"not a list"),  # type: ignore[arg-type]
        lambda: latchkey.history_identifier("lk00"),  # type: ignore[arg-type]
        lambda: latchkey.verify_history_update(None, b""),  # type: ignore[arg-type]
    ],
)
def test_wrong_types_are_type_errors(call: Callable[[], Any]) -> None:
    with pytest.raises(TypeError):
        call()


def test_negative_time_is_an_overflow_error() -> None:
    with pytest.raises(OverflowError):
        latchkey.Identity.create(latchkey.Vault(), now=-1)


def test_expired_attestation_refuses_new_handshakes() -> None:
    identity = latchkey.Identity.create(latchkey.Vault(), attestation_validity_secs=10, now=NOW)
    latchkey.SecureChannel.responder(identity, trust_any=True, now=NOW + 5)
    with pytest.raises(latchkey.Expired):
        latchkey.SecureChannel.responder(identity, trust_any=True, now=NOW + 100)


def test_credentials_reach_the_peer() -> None:
    vault = latchkey.Vault()
    a = latchkey.Identity.create(vault, now=NOW)
    b = latchkey.Identity.create(vault, now=NOW)
    a.set_credentials([b"membership", bytearray(b"role=admin")])
    initiator = latchkey.SecureChannel.initiator(a, trusted=[b.identifier], now=NOW)
    responder = latchkey.SecureChannel.responder(b, trusted=[a.identifier], now=NOW)
    handshake(initiator, responder)
    assert responder.peer_credentials == [b"membership", b"role=admin"]
    assert initiator.peer_credentials == []


def test_the_store_pins_peer_histories_and_refuses_rollbacks_and_forks(tmp_path: Any) -> None:
    store = latchkey.IdentityStore(tmp_path)
    vault = latchkey.Vault()
    phone = latchkey.Identity.create(vault)
    before = phone.export_history()
    pinned = store.pin_history(before, name="phone")
    assert (pinned.name, pinned.identifier, pinned.changes) == ("phone", phone.identifier, 1)
    assert pinned.history == before
    phone.rotate()
    assert store.pin_history(phone.export_history()).changes == 2
    with pytest.raises(latchkey.HistoryRollback):
        store.pin_history(before)
    assert [p.name for p in store.peers()] == ["phone"]
    assert store.peer(phone.identifier).changes == 2
    store.name_peer("door", latchkey.Identity.create(vault).identifier)
    assert store.peer("door").changes == 0
    assert store.forget_peer("phone").identifier == phone.identifier
    with pytest.raises(latchkey.UnknownPeer):
        store.peer("phone")
    with pytest.raises(latchkey.InvalidArgument):
        store.name_peer("door", phone.identifier)


def test_the_store_names_each_identitys_vault_and_refuses_what_it_cannot_open(tmp_path: Any) -> None:
    store = latchkey.IdentityStore(tmp_path)
    store.create("soft")
    assert store.vault_of("soft") == "software"
    # The published wheel has PKCS#11 (tests/test_hsm.py) but not TPM vaults: typed errors, nothing stored.
    with pytest.raises(latchkey.ModuleNotFound, match="nothing"):
        store.create("hard", vault="pkcs11:module=/nonexistent/libnothing.so,token=t")
    with pytest.raises(latchkey.ModuleNotFound, match="tpm"):
        store.create("hard", vault="tpm:swtpm:host=127.0.0.1,port=2321")
    with pytest.raises(latchkey.InvalidArgument, match="unknown vault"):
        store.create("hard", vault="floppy")
    assert [s.name for s in store.list()] == ["soft"]
