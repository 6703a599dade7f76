//! Checks the committed shared test vectors against docs/PROTOCOL.md *independently of the core's own code*:
//! the Noise messages and transport frames are reproduced with `snow`, and histories, attestations and
//! handshake payloads are parsed field by field with the layouts written in the spec, with hashes and
//! signatures recomputed with `ring` and keys with `x25519-dalek`. The facade test (`facade/tests/vectors.rs`)
//! shows the code produces the vectors; this one shows the vectors (and so the code) follow the spec.

use ring::digest::{digest, SHA256};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde_json::Value;
use std::path::PathBuf;

const CHANGE_DOMAIN: &[u8] = b"latchkey/change/v1";
const ATTESTATION_DOMAIN: &[u8] = b"latchkey/attestation/v1";
const PROLOGUE: &[u8] = b"latchkey/noise/1";

fn load(file: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/vectors")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    json["vectors"].as_array().unwrap().clone()
}

fn hex_field(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(v[key].as_str().unwrap_or_else(|| panic!("no {key}"))).unwrap()
}

fn u64_field(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key}"))
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    digest(&SHA256, &parts.concat())
        .as_ref()
        .try_into()
        .unwrap()
}

fn ed25519_public(seed: &[u8]) -> Vec<u8> {
    Ed25519KeyPair::from_seed_unchecked(seed)
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec()
}

fn x25519_public(secret: &[u8]) -> [u8; 32] {
    let secret: [u8; 32] = secret.try_into().unwrap();
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(secret)).to_bytes()
}

fn verify_ed25519(public: &[u8], message: &[u8], signature: &[u8]) {
    UnparsedPublicKey::new(&ED25519, public)
        .verify(message, signature)
        .expect("signature verifies as the spec says");
}

/// A reader over the spec's conventions (§1): big-endian integers, u16 length prefixes.
struct Spec<'a>(&'a [u8]);

impl<'a> Spec<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(self.0.len() >= n, "structure shorter than the spec says");
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u16(&mut self) -> usize {
        u16::from_be_bytes(self.take(2).try_into().unwrap()) as usize
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    fn var(&mut self) -> &'a [u8] {
        let len = self.u16();
        self.take(len)
    }
    fn end(self) {
        assert!(self.0.is_empty(), "bytes left over after the structure");
    }
}

/// One parsed change (§3.1–3.3), Ed25519 keys only (the vectors use Ed25519).
struct SpecChange {
    data: Vec<u8>,
    previous: [u8; 32],
    public_key: Vec<u8>,
    created_at: u64,
    expires_at: u64,
    self_signature: Vec<u8>,
    previous_signature: Option<Vec<u8>>,
}

fn parse_change(r: &mut Spec<'_>) -> SpecChange {
    let data = r.var();
    assert_eq!(data.len(), 82, "Ed25519 ChangeData is 82 bytes");
    let mut d = Spec(data);
    assert_eq!(d.u8(), 1, "change version");
    let previous = d.take(32).try_into().unwrap();
    assert_eq!(d.u8(), 1, "Ed25519 key tag");
    let public_key = d.take(32).to_vec();
    let (created_at, expires_at) = (d.u64(), d.u64());
    d.end();
    assert_eq!(r.u8(), 1, "Ed25519 signature tag");
    let self_signature = r.take(64).to_vec();
    let previous_signature = match r.u8() {
        0 => None,
        1 => {
            assert_eq!(r.u8(), 1, "Ed25519 signature tag");
            Some(r.take(64).to_vec())
        }
        other => panic!("option tag {other}"),
    };
    SpecChange {
        data: data.to_vec(),
        previous,
        public_key,
        created_at,
        expires_at,
        self_signature,
        previous_signature,
    }
}

/// Parses and checks a whole history (§3.4) and returns its changes and identifier.
fn check_history(bytes: &[u8]) -> (Vec<SpecChange>, [u8; 32]) {
    let mut r = Spec(bytes);
    let count = r.u8() as usize;
    let changes: Vec<_> = (0..count).map(|_| parse_change(&mut r)).collect();
    r.end();
    assert!(!changes.is_empty());
    for (k, change) in changes.iter().enumerate() {
        let hash = sha256(&[CHANGE_DOMAIN, &change.data]);
        verify_ed25519(&change.public_key, &hash, &change.self_signature);
        assert!(change.created_at < change.expires_at);
        if k == 0 {
            assert_eq!(change.previous, [0; 32]);
            assert!(change.previous_signature.is_none());
        } else {
            let prev = &changes[k - 1];
            assert_eq!(change.previous, sha256(&[CHANGE_DOMAIN, &prev.data]));
            assert!(change.created_at >= prev.created_at);
            verify_ed25519(
                &prev.public_key,
                &hash,
                change.previous_signature.as_ref().unwrap(),
            );
        }
    }
    let identifier = sha256(&[CHANGE_DOMAIN, &changes[0].data]);
    (changes, identifier)
}

fn identifier_text(identifier: &[u8; 32]) -> String {
    format!("lk{}", hex::encode(identifier))
}

#[test]
fn identity_vectors_follow_the_spec() {
    for v in load("identity.json") {
        let created = u64_field(&v, "created_at");
        let validity = u64_field(&v, "key_validity_secs");
        let (changes, identifier) = check_history(&hex_field(&v, "history"));
        assert_eq!(changes.len(), 1);
        assert_eq!(
            identifier_text(&identifier),
            v["identifier"].as_str().unwrap()
        );
        assert_eq!(
            changes[0].public_key,
            ed25519_public(&hex_field(&v, "signing_seed"))
        );
        assert_eq!(
            (changes[0].created_at, changes[0].expires_at),
            (created, created + validity)
        );

        let mut last_created = created;
        for (k, rotation) in v["rotations"].as_array().unwrap().iter().enumerate() {
            let (changes, same_identifier) = check_history(&hex_field(rotation, "history"));
            assert_eq!(same_identifier, identifier, "rotation keeps the identifier");
            assert_eq!(changes.len(), k + 2);
            let new = changes.last().unwrap();
            assert_eq!(
                new.public_key,
                ed25519_public(&hex_field(rotation, "signing_seed"))
            );
            let at = u64_field(rotation, "at").max(last_created);
            assert_eq!((new.created_at, new.expires_at), (at, at + validity));
            last_created = at;
        }
    }
}

/// Parses a handshake payload (§5.3) and checks it proves `side`'s identity and static key.
fn check_payload(payload: &[u8], side: &Value, now: u64) {
    let mut r = Spec(payload);
    assert_eq!(r.u8(), 1, "payload version");
    let (changes, identifier) = check_history(r.var());
    assert_eq!(
        identifier_text(&identifier),
        side["identifier"].as_str().unwrap()
    );
    let attestation = r.var();
    assert_eq!(r.u8(), 0, "no credentials in the vectors");
    r.end();

    let mut a = Spec(attestation);
    let data = a.var();
    assert_eq!(a.u8(), 1, "Ed25519 signature tag");
    let signature = a.take(64);
    a.end();
    let mut d = Spec(data);
    assert_eq!(d.u8(), 1, "attestation version");
    assert_eq!(d.take(32), identifier, "subject");
    assert_eq!(d.u8(), 1, "secure-channel purpose");
    assert_eq!(d.take(32), x25519_public(&hex_field(side, "static_secret")));
    let (created, expires) = (d.u64(), d.u64());
    d.end();
    assert_eq!(created, u64_field(side, "created_at"));
    assert_eq!(
        expires,
        created + u64_field(side, "attestation_validity_secs")
    );
    assert!(created <= now && now < expires);
    let primary = &changes.last().unwrap().public_key;
    verify_ed25519(primary, &[ATTESTATION_DOMAIN, data].concat(), signature);
}

/// A side's static and ephemeral secrets, as snow needs them.
fn secrets(side: &Value) -> (Vec<u8>, Vec<u8>) {
    (
        hex_field(side, "static_secret"),
        hex_field(side, "ephemeral_secret"),
    )
}

fn snow_side<'a>(suite: &str, keys: &'a (Vec<u8>, Vec<u8>)) -> snow::Builder<'a> {
    let name = match suite {
        "ChaChaPoly" => "Noise_XX_25519_ChaChaPoly_SHA256",
        "AesGcm" => "Noise_XX_25519_AESGCM_SHA256",
        other => panic!("suite {other}"),
    };
    snow::Builder::new(name.parse().unwrap())
        .prologue(PROLOGUE)
        .unwrap()
        .local_private_key(&keys.0)
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(&keys.1)
}

#[test]
fn handshake_vectors_are_reproduced_by_snow_and_their_payloads_follow_the_spec() {
    for v in load("handshake.json") {
        let suite = v["suite"].as_str().unwrap();
        let now = u64_field(&v, "now");
        let messages: Vec<Vec<u8>> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| hex::decode(m.as_str().unwrap()).unwrap())
            .collect();
        let (ik, rk) = (secrets(&v["initiator"]), secrets(&v["responder"]));
        let mut i = snow_side(suite, &ik).build_initiator().unwrap();
        let mut r = snow_side(suite, &rk).build_responder().unwrap();
        let mut buf = vec![0u8; 65535];
        let mut payload = vec![0u8; 65535];

        // Message 1: the initiator's ephemeral key and an empty payload.
        let n = i.write_message(&[], &mut buf).unwrap();
        assert_eq!(buf[..n], messages[0], "{suite}: message 1");
        assert_eq!(r.read_message(&messages[0], &mut payload).unwrap(), 0);

        // Message 2: snow, holding the responder's keys, reads its payload out of the vector ...
        let mut probe = snow_side(suite, &ik).build_initiator().unwrap();
        probe.write_message(&[], &mut buf).unwrap();
        let len = probe.read_message(&messages[1], &mut payload).unwrap();
        let responder_payload = payload[..len].to_vec();
        check_payload(&responder_payload, &v["responder"], now);
        // ... and writing that payload reproduces the vector's message 2 byte for byte.
        let n = r.write_message(&responder_payload, &mut buf).unwrap();
        assert_eq!(buf[..n], messages[1], "{suite}: message 2");
        assert_eq!(i.read_message(&messages[1], &mut payload).unwrap(), len);

        // Message 3 likewise.
        let mut probe = snow_side(suite, &rk).build_responder().unwrap();
        probe.read_message(&messages[0], &mut payload).unwrap();
        probe.write_message(&responder_payload, &mut buf).unwrap();
        let len = probe.read_message(&messages[2], &mut payload).unwrap();
        let initiator_payload = payload[..len].to_vec();
        check_payload(&initiator_payload, &v["initiator"], now);
        let n = i.write_message(&initiator_payload, &mut buf).unwrap();
        assert_eq!(buf[..n], messages[2], "{suite}: message 3");
        r.read_message(&messages[2], &mut payload).unwrap();

        assert_eq!(r.get_handshake_hash(), hex_field(&v, "handshake_hash"));
        assert_eq!(i.get_handshake_hash(), hex_field(&v, "handshake_hash"));

        // Transport (§6.1): nonce ‖ what Noise's EncryptWithAd gives for that explicit nonce.
        let i = i.into_stateless_transport_mode().unwrap();
        let r = r.into_stateless_transport_mode().unwrap();
        for entry in v["transport"].as_array().unwrap() {
            let sender = match entry["from"].as_str().unwrap() {
                "initiator" => &i,
                _ => &r,
            };
            let nonce = u64_field(entry, "nonce");
            assert!(nonce < 1 << 16, "the vectors stay in key epoch 0");
            let plaintext = hex_field(entry, "plaintext");
            let mut frame = nonce.to_be_bytes().to_vec();
            let n = sender.write_message(nonce, &plaintext, &mut buf).unwrap();
            frame.extend_from_slice(&buf[..n]);
            assert_eq!(frame, hex_field(entry, "frame"), "{suite}: frame {entry}");
        }
    }
}
