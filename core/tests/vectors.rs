//! The committed shared vectors (`tests/vectors/*.json`) reproduced byte for byte through the core's own API
//! with every provider compiled in (see `common::providers`), each side of a handshake on every provider in
//! turn, so both roles run on each. `facade/tests/vectors.rs` does the same through the facade with the
//! default provider; `examples/firmware` does it on an emulated Cortex-M4 with the RustCrypto provider.

mod common;

use common::providers;
use latchkey_core::channel::{
    ChannelIdentity, CipherSuite, Handshake, HandshakeConfig, SecureChannel, TrustAnyIdentity,
};
use latchkey_core::crypto::CryptoProvider;
use latchkey_core::identity::Identity;
use latchkey_core::vault::{SigningVault, SoftwareVault};
use latchkey_core::Timestamp;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

fn vectors(file: &str) -> Vec<Value> {
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

fn key32(v: &Value, key: &str) -> [u8; 32] {
    hex_field(v, key).try_into().unwrap()
}

fn u64_field(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key}"))
}

/// `Identity::from_secrets` of the facade, in core calls: the identity from its seed at `created_at`, and its
/// static key attested at the same time.
fn channel_identity(vault: &SoftwareVault, side: &Value) -> (Identity, ChannelIdentity) {
    let created_at = Timestamp(u64_field(side, "created_at"));
    let key = vault
        .import_ed25519_seed(&key32(side, "signing_seed"))
        .unwrap();
    let identity =
        Identity::create_with_key(vault, key, created_at, u64_field(side, "key_validity_secs"))
            .unwrap();
    let static_key = vault
        .import_x25519_secret(&key32(side, "static_secret"))
        .unwrap();
    let channel = ChannelIdentity::attested(
        &identity,
        vault,
        vault,
        static_key,
        created_at,
        u64_field(side, "attestation_validity_secs"),
    )
    .unwrap();
    (identity, channel)
}

#[test]
fn identity_vectors_reproduce_with_every_provider() {
    for provider in providers() {
        for v in vectors("identity.json") {
            let name = format!("{} / {}", provider.name(), v["name"].as_str().unwrap());
            let vault = SoftwareVault::with_provider(provider);
            let (mut identity, _) = channel_identity(&vault, &v);
            assert_eq!(
                identity.identifier().to_string(),
                v["identifier"].as_str().unwrap(),
                "{name}"
            );
            assert_eq!(
                identity.history().export(),
                hex_field(&v, "history"),
                "{name}"
            );
            for rotation in v["rotations"].as_array().unwrap() {
                let key = vault
                    .import_ed25519_seed(&key32(rotation, "signing_seed"))
                    .unwrap();
                identity
                    .rotate_to_key(
                        &vault as &dyn SigningVault,
                        key,
                        Timestamp(u64_field(rotation, "at")),
                        u64_field(&v, "key_validity_secs"),
                    )
                    .unwrap();
                assert_eq!(
                    identity.history().export(),
                    hex_field(rotation, "history"),
                    "{name}: rotation"
                );
            }
        }
    }
}

fn side(
    provider: &'static dyn CryptoProvider,
    v: &Value,
    who: &str,
    suite: CipherSuite,
    initiator: bool,
) -> Handshake {
    let vault = Arc::new(SoftwareVault::with_provider(provider));
    let (identity, channel) = channel_identity(&vault, &v[who]);
    assert_eq!(
        identity.identifier().to_string(),
        v[who]["identifier"].as_str().unwrap()
    );
    let mut config = HandshakeConfig::with_provider(
        provider,
        vault,
        channel,
        Arc::new(TrustAnyIdentity),
        Timestamp(u64_field(v, "now")),
    );
    config.suite = suite;
    let mut hs = if initiator {
        Handshake::initiator(config)
    } else {
        Handshake::responder(config)
    }
    .unwrap();
    hs.set_ephemeral_for_test_vectors(key32(&v[who], "ephemeral_secret"))
        .unwrap();
    hs
}

fn check_transport(
    name: &str,
    v: &Value,
    initiator: &mut SecureChannel,
    responder: &mut SecureChannel,
) {
    for (k, entry) in v["transport"].as_array().unwrap().iter().enumerate() {
        let (sender, receiver) = match entry["from"].as_str().unwrap() {
            "initiator" => (&mut *initiator, &mut *responder),
            _ => (&mut *responder, &mut *initiator),
        };
        let plaintext = hex_field(entry, "plaintext");
        let frame = hex_field(entry, "frame");
        assert_eq!(
            hex::encode(sender.encrypt_to_vec(&plaintext).unwrap()),
            hex::encode(&frame),
            "{name}: frame {k}"
        );
        assert_eq!(
            receiver.decrypt_to_vec(&frame).unwrap(),
            plaintext,
            "{name}: frame {k}"
        );
    }
}

#[test]
fn handshake_vectors_reproduce_with_every_provider_on_either_side() {
    let all = providers();
    #[cfg(feature = "rustcrypto")]
    assert!(all.iter().any(|p| p.name() == "rustcrypto"));
    #[cfg(latchkey_aws_lc)]
    assert!(all.iter().any(|p| p.name() == "aws-lc"));
    let mut runs = 0;
    for v in vectors("handshake.json") {
        let suite = match v["suite"].as_str().unwrap() {
            "ChaChaPoly" => CipherSuite::ChaChaPoly,
            "AesGcm" => CipherSuite::AesGcm,
            other => panic!("unknown suite {other}"),
        };
        let messages: Vec<Vec<u8>> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| hex::decode(m.as_str().unwrap()).unwrap())
            .collect();
        for &pi in &all {
            for &pr in &all {
                let name = format!(
                    "{} (initiator {}, responder {})",
                    v["name"].as_str().unwrap(),
                    pi.name(),
                    pr.name()
                );
                let mut i = side(pi, &v, "initiator", suite, true);
                let mut r = side(pr, &v, "responder", suite, false);
                // Each side is checked against the vector's bytes, not only against the other side.
                assert_eq!(i.write_message().unwrap(), messages[0], "{name}: message 1");
                r.read_message(&messages[0]).unwrap();
                assert_eq!(r.write_message().unwrap(), messages[1], "{name}: message 2");
                i.read_message(&messages[1]).unwrap();
                assert_eq!(i.write_message().unwrap(), messages[2], "{name}: message 3");
                r.read_message(&messages[2]).unwrap();
                let hash = hex_field(&v, "handshake_hash");
                assert_eq!(i.handshake_hash().to_vec(), hash, "{name}: hash");
                assert_eq!(r.handshake_hash().to_vec(), hash, "{name}: hash");
                let (mut ic, mut rc) = (i.finish().unwrap(), r.finish().unwrap());
                check_transport(&name, &v, &mut ic, &mut rc);
                runs += 1;
            }
        }
    }
    assert_eq!(runs, 2 * all.len() * all.len());
}
