//! A peer's history is checked *as presented* in a handshake (docs/PROTOCOL.md 3.4): every signature except the
//! first change's self-signature, which another signature by the same key over the same change hash makes
//! redundant. Here both sides are our own `Handshake`, one of them carrying a history whose first
//! self-signature is bad (which only `ChangeHistory::import_presented` can build: `import` refuses it), and the
//! real signature verifications of a first contact are counted.

mod common;

use common::*;
use latchkey_core::channel::{Handshake, HandshakeConfig};
use latchkey_core::identity::{Attestation, ChangeHistory, PurposeKey};
use latchkey_core::vault::{
    clear_verified_signature_cache, signatures_verified_on_this_thread, SecureChannelVault,
    Signature, SigningAlgorithm,
};
use latchkey_core::wire::Decode;
use latchkey_core::{Error, Timestamp};

/// `history` re-encoded with the self-signature of change `index` damaged.
fn bad_self_signature(history: &ChangeHistory, index: usize) -> Vec<u8> {
    bad_self_signature_at(history, index, 20, 0x40)
}

/// `history` re-encoded with byte `byte` of the self-signature of change `index` XORed with `mask`.
fn bad_self_signature_at(history: &ChangeHistory, index: usize, byte: usize, mask: u8) -> Vec<u8> {
    let mut changes = history.changes().to_vec();
    let signature = &mut changes[index].self_signature;
    let mut bytes = *signature.as_bytes();
    bytes[byte] ^= mask;
    *signature = Signature::new(signature.algorithm(), bytes);
    ChangeHistory::encode_unverified(&changes)
}

/// A party whose presented history has a bad first self-signature (its attestation is honest). Returns it
/// with the bad history's bytes.
fn with_bad_first_self_signature(mut party: Party) -> (Party, Vec<u8>) {
    let bytes = bad_self_signature(party.identity.history(), 0);
    party.channel_identity.history = ChangeHistory::import_presented(&bytes).unwrap();
    (party, bytes)
}

/// A party whose identity rotated once (two changes), attested by the new key.
fn rotated() -> Party {
    let mut party = Party::new();
    let vault = party.vault.clone();
    party
        .identity
        .rotate(vault.as_ref(), SigningAlgorithm::Ed25519, NOW, 365 * DAY)
        .unwrap();
    let public = vault
        .x25519_public_key(&party.channel_identity.static_key)
        .unwrap();
    party.channel_identity.history = party.identity.history().clone();
    party.channel_identity.attestation = party
        .identity
        .attest(vault.as_ref(), PurposeKey::SecureChannel(public), NOW, DAY)
        .unwrap();
    party
}

/// A first contact between `initiator` and `responder`: both handshakes are started (each checks its own
/// attestation), then the verified-signature cache is emptied, as between two processes that never met.
/// Returns the real signature verifications each side made to check its peer (initiator, responder).
fn first_contact(initiator: HandshakeConfig, responder: HandshakeConfig) -> (u64, u64) {
    let mut i = Handshake::initiator(initiator).unwrap();
    let mut r = Handshake::responder(responder).unwrap();
    clear_verified_signature_cache();
    r.read_message(&i.write_message().unwrap()).unwrap();
    let m2 = r.write_message().unwrap();
    let before = signatures_verified_on_this_thread();
    i.read_message(&m2).unwrap();
    let by_initiator = signatures_verified_on_this_thread() - before;
    let m3 = i.write_message().unwrap();
    let before = signatures_verified_on_this_thread();
    r.read_message(&m3).unwrap();
    let by_responder = signatures_verified_on_this_thread() - before;
    i.finish().unwrap();
    r.finish().unwrap();
    (by_initiator, by_responder)
}

#[test]
fn a_bad_first_self_signature_completes_a_handshake_as_its_identifier() {
    let (alice, bytes) = with_bad_first_self_signature(Party::new());
    let bob = Party::new();
    assert_eq!(
        ChangeHistory::import(&bytes),
        Err(Error::InvalidHistory("bad signature by the new key"))
    );
    for (initiator, responder, bad_side_is_initiator) in [
        (alice.config_any(), bob.config_any(), true),
        (bob.config_any(), alice.config_any(), false),
    ] {
        let (i, r) = handshake(initiator, responder).unwrap();
        let (checker, other) = if bad_side_is_initiator {
            (&r, &i)
        } else {
            (&i, &r)
        };
        assert_eq!(checker.peer_identifier(), alice.identity.identifier());
        assert_eq!(checker.peer().history.export(), bytes);
        assert_eq!(other.peer_identifier(), bob.identity.identifier());
    }
}

#[test]
fn a_bad_first_self_signature_of_a_rotated_identity_completes_a_handshake() {
    let (alice, bytes) = with_bad_first_self_signature(rotated());
    assert_eq!(alice.channel_identity.history.changes().len(), 2);
    assert_eq!(
        ChangeHistory::import(&bytes),
        Err(Error::InvalidHistory("bad signature by the new key"))
    );
    let (_, r) = handshake(alice.config_any(), Party::new().config_any()).unwrap();
    assert_eq!(r.peer_identifier(), alice.identity.identifier());
}

#[test]
fn a_bad_second_self_signature_cannot_even_be_loaded_as_presented() {
    // Only the first self-signature is left out; a peer sending a bad second one is refused in the
    // handshake (tests/peer_verification.rs, every_other_history_signature_is_still_checked_in_a_handshake).
    let party = rotated();
    let bytes = bad_self_signature(party.identity.history(), 1);
    assert_eq!(
        ChangeHistory::import_presented(&bytes),
        Err(Error::InvalidHistory("bad signature by the new key"))
    );
}

#[test]
fn a_first_contact_verifies_one_peer_signature_per_side_for_one_change_peers() {
    // Each side checks its peer's attestation; the peer's first (and only) self-signature is not checked.
    let (alice, bob) = (Party::new(), Party::new());
    assert_eq!(first_contact(alice.config_any(), bob.config_any()), (1, 1));
    // Two changes: the second change's self- and previous-signatures, and the attestation.
    let (carol, dave) = (rotated(), rotated());
    assert_eq!(first_contact(carol.config_any(), dave.config_any()), (3, 3));
}

/// The `presented_histories` vectors of `tests/vectors/identity.json`: each history is the history of the
/// identity vector made from the same secrets with the first byte of its first self-signature flipped; `import`
/// refuses it, the presented check accepts it with the vector's identifier, and the attestation verifies under
/// it for `static_public` at `now`.
#[test]
fn the_presented_history_vectors_reproduce() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/identity.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let hex = |v: &serde_json::Value| hex::decode(v.as_str().unwrap()).unwrap();
    let cases = json["presented_histories"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let history = hex(&case["history"]);
        // The honest history of the same secrets: the identity vector with this signing seed, after the same
        // rotations.
        let honest = json["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["signing_seed"] == case["signing_seed"])
            .unwrap_or_else(|| panic!("{name}: no identity vector with its secrets"));
        let rotations = case["rotations"].as_array().unwrap().len();
        let honest = match rotations {
            0 => hex(&honest["history"]),
            n => hex(&honest["rotations"][n - 1]["history"]),
        };
        let honest = ChangeHistory::import(&honest).unwrap();
        let expected = bad_self_signature_at(&honest, 0, 0, 0x01);
        assert_eq!(history, expected, "{name}: history");
        assert_eq!(
            ChangeHistory::import(&history),
            Err(Error::InvalidHistory("bad signature by the new key")),
            "{name}: import"
        );
        assert_eq!(
            case["import"].as_str().unwrap(),
            "InvalidHistory: bad signature by the new key"
        );
        assert_eq!(case["as_presented"].as_str().unwrap(), "accepted");
        let presented = ChangeHistory::import_presented(&history).unwrap();
        assert_eq!(
            presented.identifier().to_string(),
            case["identifier"].as_str().unwrap(),
            "{name}: identifier"
        );
        let attestation = Attestation::from_bytes(&hex(&case["attestation"])).unwrap();
        let static_public: [u8; 32] = hex(&case["static_public"]).try_into().unwrap();
        attestation
            .verify(
                &presented,
                &PurposeKey::SecureChannel(static_public),
                Timestamp(case["now"].as_u64().unwrap()),
            )
            .unwrap_or_else(|e| panic!("{name}: attestation: {e}"));
    }
}
