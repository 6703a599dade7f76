//! Reproduces the committed shared test vectors (`tests/vectors/*.json`) byte for byte from their inputs,
//! through the facade's public API only — the same calls every binding makes. Any drift in an encoding, a
//! signature input, the Noise transcript or the transport frame fails here, naming the vector and field.
//!
//! The files are produced by `cargo run -p latchkey-facade --example gen_vectors`; regenerate them only for
//! an intended, documented protocol change.

use latchkey_facade::{
    history_identifier, verify_history_update, Channel, CipherSuite, ErrorCode, HandshakeSession,
    Identity, IdentityOptions, Role, Trust, Vault,
};
use serde_json::Value;
use std::path::PathBuf;

fn load(file: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/vectors")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn vectors(file: &str) -> Vec<Value> {
    let all = load(file)["vectors"]
        .as_array()
        .unwrap_or_else(|| panic!("{file}: no vectors array"))
        .clone();
    assert!(!all.is_empty(), "{file}: no vectors");
    all
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("missing string field {key} in {v}"))
}

fn u64_field(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("missing integer field {key} in {v}"))
}

fn bytes(v: &Value, key: &str) -> Vec<u8> {
    let text = str_field(v, key);
    assert_eq!(text, text.to_lowercase(), "{key}: hex must be lowercase");
    hex::decode(text).unwrap_or_else(|e| panic!("{key} is not hex: {e}"))
}

fn bytes32(v: &Value, key: &str) -> [u8; 32] {
    bytes(v, key)
        .try_into()
        .unwrap_or_else(|_| panic!("{key} must be 32 bytes"))
}

fn identity_from(v: &Value) -> Identity {
    let options = IdentityOptions {
        key_validity_secs: u64_field(v, "key_validity_secs"),
        attestation_validity_secs: u64_field(v, "attestation_validity_secs"),
        ..IdentityOptions::default()
    };
    Identity::from_secrets(
        &Vault::new(),
        &bytes32(v, "signing_seed"),
        &bytes32(v, "static_secret"),
        options,
        Some(u64_field(v, "created_at")),
    )
    .unwrap()
}

#[test]
fn identity_vectors_reproduce_byte_for_byte() {
    let all = vectors("identity.json");
    let mut rotations_seen = 0;
    for v in &all {
        let name = str_field(v, "name");
        let identity = identity_from(v);
        let identifier = str_field(v, "identifier");
        assert_eq!(identity.identifier(), identifier, "{name}: identifier");
        let history = bytes(v, "history");
        assert_eq!(
            identity.export_history().unwrap(),
            history,
            "{name}: history"
        );
        assert_eq!(history_identifier(&history).unwrap(), identifier, "{name}");

        let mut known = history;
        for (k, rotation) in v["rotations"].as_array().unwrap().iter().enumerate() {
            identity
                .rotate(
                    Some(&bytes32(rotation, "signing_seed")),
                    Some(u64_field(rotation, "at")),
                )
                .unwrap();
            let expected = bytes(rotation, "history");
            assert_eq!(
                identity.export_history().unwrap(),
                expected,
                "{name}: history after rotation {k}"
            );
            assert_eq!(identity.identifier(), identifier, "{name}: identifier kept");
            assert_eq!(identity.change_count().unwrap(), k + 2);
            // What a peer that knew the previous history does with the new one.
            assert_eq!(
                verify_history_update(&known, &expected).unwrap(),
                identifier
            );
            assert_eq!(
                verify_history_update(&expected, &known).unwrap_err().code(),
                ErrorCode::HistoryMismatch,
                "{name}: a rollback must be refused"
            );
            known = expected;
            rotations_seen += 1;
        }
    }
    assert!(rotations_seen >= 2, "the vectors must exercise rotation");
}

fn suite_of(v: &Value) -> CipherSuite {
    match str_field(v, "suite") {
        "ChaChaPoly" => CipherSuite::ChaChaPoly,
        "AesGcm" => CipherSuite::AesGcm,
        other => panic!("unknown suite {other}"),
    }
}

fn session(side: &Value, role: Role, suite: CipherSuite, now: u64) -> HandshakeSession {
    let identity = identity_from(side);
    assert_eq!(identity.identifier(), str_field(side, "identifier"));
    let mut session =
        HandshakeSession::new(&identity, role, suite, &Trust::AnyIdentity, Some(now)).unwrap();
    session
        .set_ephemeral_for_test_vectors(&bytes32(side, "ephemeral_secret"))
        .unwrap();
    session
}

#[test]
fn handshake_vectors_reproduce_byte_for_byte() {
    let all = vectors("handshake.json");
    let mut suites = vec![];
    for v in &all {
        let name = str_field(v, "name");
        let suite = suite_of(v);
        suites.push(suite);
        let now = u64_field(v, "now");
        let mut initiator = session(&v["initiator"], Role::Initiator, suite, now);
        let mut responder = session(&v["responder"], Role::Responder, suite, now);
        let messages: Vec<Vec<u8>> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| hex::decode(m.as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(messages.len(), 3, "{name}: three handshake messages");

        let m1 = initiator.step(None).unwrap().unwrap();
        assert_eq!(
            hex::encode(&m1),
            hex::encode(&messages[0]),
            "{name}: message 1"
        );
        let m2 = responder.step(Some(&messages[0])).unwrap().unwrap();
        assert_eq!(
            hex::encode(&m2),
            hex::encode(&messages[1]),
            "{name}: message 2"
        );
        let m3 = initiator.step(Some(&messages[1])).unwrap().unwrap();
        assert_eq!(
            hex::encode(&m3),
            hex::encode(&messages[2]),
            "{name}: message 3"
        );
        assert_eq!(responder.step(Some(&messages[2])).unwrap(), None);

        let mut initiator = initiator.into_channel().unwrap();
        let mut responder = responder.into_channel().unwrap();
        let hash = bytes(v, "handshake_hash");
        assert_eq!(initiator.handshake_hash().to_vec(), hash, "{name}: hash");
        assert_eq!(responder.handshake_hash().to_vec(), hash, "{name}: hash");
        assert_eq!(
            initiator.peer_identifier(),
            str_field(&v["responder"], "identifier")
        );
        assert_eq!(
            responder.peer_identifier(),
            str_field(&v["initiator"], "identifier")
        );
        check_transport(name, v, &mut initiator, &mut responder);
    }
    assert!(suites.contains(&CipherSuite::ChaChaPoly) && suites.contains(&CipherSuite::AesGcm));
}

fn check_transport(name: &str, v: &Value, initiator: &mut Channel, responder: &mut Channel) {
    let frames = v["transport"].as_array().unwrap();
    let mut next_nonce = [0u64; 2];
    let (mut empty, mut directions) = (false, [false; 2]);
    for (k, entry) in frames.iter().enumerate() {
        let (side, sender, receiver) = match str_field(entry, "from") {
            "initiator" => (0, &mut *initiator, &mut *responder),
            "responder" => (1, &mut *responder, &mut *initiator),
            other => panic!("{name}: unknown sender {other}"),
        };
        let nonce = u64_field(entry, "nonce");
        assert_eq!(nonce, next_nonce[side], "{name} frame {k}: nonces count up");
        next_nonce[side] += 1;
        let plaintext = bytes(entry, "plaintext");
        let frame = bytes(entry, "frame");
        assert_eq!(frame[..8], nonce.to_be_bytes(), "{name} frame {k}: header");
        assert_eq!(
            hex::encode(sender.encrypt(&plaintext).unwrap()),
            hex::encode(&frame),
            "{name} frame {k}"
        );
        assert_eq!(
            receiver.decrypt(&frame).unwrap(),
            plaintext,
            "{name} frame {k}"
        );
        empty |= plaintext.is_empty();
        directions[side] = true;
    }
    assert!(empty, "{name}: the vectors must include an empty plaintext");
    assert_eq!(
        directions,
        [true, true],
        "{name}: frames in both directions"
    );
}
