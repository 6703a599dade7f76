//! Deterministic parties and handshakes from the shared test vectors, built with the core's public API the
//! same way `latchkey_facade::Identity::from_secrets` builds them. With the vectors' fixed ephemeral keys and
//! clock, a handshake between these parties produces exactly the committed messages, so a fuzzer that starts
//! from those messages starts deep inside the protocol. Each fixture checks itself against the vector once.

use latchkey_core::channel::{
    ChannelIdentity, CipherSuite, Handshake, HandshakeConfig, HandshakePayload, Role,
    SecureChannel, TrustAnyIdentity, TrustIdentifiers, TrustPolicy,
};
use latchkey_core::identity::{Identifier, Identity};
use latchkey_core::vault::{SecureChannelVault, SoftwareVault};
use latchkey_core::wire::Encode;
use latchkey_core::Timestamp;
use serde_json::Value;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

const HANDSHAKE_JSON: &str = include_str!("../../tests/vectors/handshake.json");
const IDENTITY_JSON: &str = include_str!("../../tests/vectors/identity.json");

fn hex_field(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(
        v[key]
            .as_str()
            .unwrap_or_else(|| panic!("vector field {key}")),
    )
    .unwrap_or_else(|e| panic!("vector field {key}: {e}"))
}

fn hex32(v: &Value, key: &str) -> [u8; 32] {
    hex_field(v, key).try_into().expect("32-byte vector field")
}

fn u64_field(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("vector field {key}"))
}

/// One side of a handshake vector, or an identity vector's identity.
pub struct Party {
    pub vault: Arc<SoftwareVault>,
    pub identity: Identity,
    pub channel: ChannelIdentity,
    pub identifier: Identifier,
    pub signing_seed: [u8; 32],
    pub static_secret: [u8; 32],
    pub static_public: [u8; 32],
    pub ephemeral_secret: [u8; 32],
    pub created_at: u64,
    pub key_validity_secs: u64,
    pub attestation_validity_secs: u64,
}

impl Party {
    fn from_vector(v: &Value) -> Party {
        let signing_seed = hex32(v, "signing_seed");
        let static_secret = hex32(v, "static_secret");
        let created_at = u64_field(v, "created_at");
        let key_validity_secs = u64_field(v, "key_validity_secs");
        let attestation_validity_secs = u64_field(v, "attestation_validity_secs");
        let vault = Arc::new(SoftwareVault::new());
        let key = vault.import_ed25519_seed(&signing_seed).expect("seed");
        let identity = Identity::create_with_key(
            vault.as_ref(),
            key,
            Timestamp(created_at),
            key_validity_secs,
        )
        .expect("identity");
        let static_key = vault.import_x25519_secret(&static_secret).expect("static");
        let static_public = vault.x25519_public_key(&static_key).expect("public");
        let channel = ChannelIdentity::attested(
            &identity,
            vault.as_ref(),
            vault.as_ref(),
            static_key,
            Timestamp(created_at),
            attestation_validity_secs,
        )
        .expect("attestation");
        let identifier = identity.identifier();
        if let Some(expected) = v["identifier"].as_str() {
            assert_eq!(
                identifier.to_string(),
                expected,
                "fixture drifted from the vector"
            );
        }
        let ephemeral_secret = v["ephemeral_secret"]
            .as_str()
            .map(|_| hex32(v, "ephemeral_secret"))
            .unwrap_or([0u8; 32]);
        Party {
            vault,
            identity,
            channel,
            identifier,
            signing_seed,
            static_secret,
            static_public,
            ephemeral_secret,
            created_at,
            key_validity_secs,
            attestation_validity_secs,
        }
    }

    /// This party's `HandshakePayload` encoding (what it sends, encrypted, in message 2 or 3).
    pub fn payload(&self) -> Vec<u8> {
        HandshakePayload {
            history: self.channel.history.clone(),
            attestation: self.channel.attestation.clone(),
            credentials: self.channel.credentials.clone(),
        }
        .to_bytes()
    }
}

/// One transport frame of a handshake vector.
pub struct VectorFrame {
    pub from_initiator: bool,
    pub nonce: u64,
    pub frame: Vec<u8>,
    pub plaintext: Vec<u8>,
}

/// One vector of `tests/vectors/handshake.json`.
pub struct HandshakeVector {
    pub name: String,
    pub suite: CipherSuite,
    pub now: Timestamp,
    pub initiator: Party,
    pub responder: Party,
    /// Messages 1, 2 and 3.
    pub messages: Vec<Vec<u8>>,
    pub handshake_hash: [u8; 32],
    pub transport: Vec<VectorFrame>,
}

impl HandshakeVector {
    pub fn party(&self, role: Role) -> &Party {
        match role {
            Role::Initiator => &self.initiator,
            Role::Responder => &self.responder,
        }
    }

    pub fn peer(&self, role: Role) -> &Party {
        match role {
            Role::Initiator => &self.responder,
            Role::Responder => &self.initiator,
        }
    }

    /// A handshake as `role` with this vector's identities, clock and suite; with `fixed_ephemeral` it also
    /// uses the vector's ephemeral key, so its messages are the vector's.
    pub fn handshake(
        &self,
        role: Role,
        trust: Arc<dyn TrustPolicy>,
        fixed_ephemeral: bool,
    ) -> Handshake {
        let party = self.party(role);
        let mut config =
            HandshakeConfig::new(party.vault.clone(), party.channel.clone(), trust, self.now);
        config.suite = self.suite;
        let mut handshake = Handshake::new(config, role).expect("fixture handshake");
        if fixed_ephemeral {
            handshake
                .set_ephemeral_for_test_vectors(party.ephemeral_secret)
                .expect("fresh handshake");
        }
        handshake
    }

    /// Makes the handshakes of re-handshakes as `role` (this vector's identities, clock and suite), with
    /// ephemeral keys from a counter so that a fuzz input replays exactly.
    pub fn rehandshakes(
        &self,
        role: Role,
        trust: Arc<dyn TrustPolicy>,
    ) -> latchkey_core::route::HandshakeFactory {
        let party = self.party(role);
        let mut config =
            HandshakeConfig::new(party.vault.clone(), party.channel.clone(), trust, self.now);
        config.suite = self.suite;
        let salt = match role {
            Role::Initiator => 0x11,
            Role::Responder => 0x22,
        };
        let mut counter = 0u8;
        Box::new(move |r| {
            counter = counter.wrapping_add(1);
            let mut handshake = Handshake::new(config.clone(), r)?;
            let mut secret = [salt; 32];
            secret[0] = counter;
            handshake.set_ephemeral_for_test_vectors(secret)?;
            Ok(handshake)
        })
    }

    /// Trust exactly the vector's peer of `role`.
    pub fn trust_peer(&self, role: Role) -> Arc<dyn TrustPolicy> {
        Arc::new(TrustIdentifiers::new([self.peer(role).identifier]))
    }

    /// Runs the vector handshake (checking every message against the vector) and returns the initiator's
    /// and the responder's channel.
    pub fn established(&self) -> (SecureChannel, SecureChannel) {
        let mut i = self.handshake(Role::Initiator, Arc::new(TrustAnyIdentity), true);
        let mut r = self.handshake(Role::Responder, Arc::new(TrustAnyIdentity), true);
        let m1 = i.write_message().expect("m1");
        r.read_message(&m1).expect("read m1");
        let m2 = r.write_message().expect("m2");
        i.read_message(&m2).expect("read m2");
        let m3 = i.write_message().expect("m3");
        r.read_message(&m3).expect("read m3");
        assert_eq!(
            [m1, m2, m3].as_slice(),
            self.messages.as_slice(),
            "{}: fixture drifted from the vector",
            self.name
        );
        (
            i.finish().expect("initiator"),
            r.finish().expect("responder"),
        )
    }
}

/// The vectors of `tests/vectors/handshake.json` (one per suite).
pub fn handshake_vectors() -> &'static [HandshakeVector] {
    static VECTORS: LazyLock<Vec<HandshakeVector>> = LazyLock::new(|| {
        let json: Value = serde_json::from_str(HANDSHAKE_JSON).expect("handshake.json");
        json["vectors"]
            .as_array()
            .expect("vectors")
            .iter()
            .map(|v| {
                let suite = match v["suite"].as_str() {
                    Some("ChaChaPoly") => CipherSuite::ChaChaPoly,
                    Some("AesGcm") => CipherSuite::AesGcm,
                    other => panic!("unknown suite {other:?}"),
                };
                HandshakeVector {
                    name: v["name"].as_str().unwrap_or("?").to_string(),
                    suite,
                    now: Timestamp(u64_field(v, "now")),
                    initiator: Party::from_vector(&v["initiator"]),
                    responder: Party::from_vector(&v["responder"]),
                    messages: v["messages"]
                        .as_array()
                        .expect("messages")
                        .iter()
                        .map(|m| hex::decode(m.as_str().expect("hex")).expect("hex"))
                        .collect(),
                    handshake_hash: hex32(v, "handshake_hash"),
                    transport: v["transport"]
                        .as_array()
                        .expect("transport")
                        .iter()
                        .map(|f| VectorFrame {
                            from_initiator: f["from"].as_str() == Some("initiator"),
                            nonce: u64_field(f, "nonce"),
                            frame: hex_field(f, "frame"),
                            plaintext: hex_field(f, "plaintext"),
                        })
                        .collect(),
                }
            })
            .collect()
    });
    &VECTORS
}

/// Picks a handshake vector by a fuzz byte.
pub fn handshake_vector(selector: u8) -> &'static HandshakeVector {
    let all = handshake_vectors();
    &all[selector as usize % all.len()]
}

/// One vector of `tests/vectors/identity.json`: the history after creation and after each rotation.
pub struct IdentityVector {
    pub name: String,
    pub identifier: Identifier,
    /// `histories[0]` at creation, then one per rotation.
    pub histories: Vec<Vec<u8>>,
    pub party: Party,
}

pub fn identity_vectors() -> &'static [IdentityVector] {
    static VECTORS: LazyLock<Vec<IdentityVector>> = LazyLock::new(|| {
        let json: Value = serde_json::from_str(IDENTITY_JSON).expect("identity.json");
        json["vectors"]
            .as_array()
            .expect("vectors")
            .iter()
            .map(|v| {
                let mut histories = vec![hex_field(v, "history")];
                for rotation in v["rotations"].as_array().into_iter().flatten() {
                    histories.push(hex_field(rotation, "history"));
                }
                IdentityVector {
                    name: v["name"].as_str().unwrap_or("?").to_string(),
                    identifier: Identifier::from_str(v["identifier"].as_str().expect("id"))
                        .expect("identifier"),
                    histories,
                    party: Party::from_vector(v),
                }
            })
            .collect()
    });
    &VECTORS
}

/// Every history in the identity vectors (creation and each rotation), for targets that need valid ones.
pub fn all_vector_histories() -> Vec<&'static [u8]> {
    identity_vectors()
        .iter()
        .flat_map(|v| v.histories.iter().map(Vec::as_slice))
        .collect()
}

/// A snow handshake state for `role` with `static_secret` and a fixed ephemeral key: the independent Noise
/// implementation plays the peer whose payload the fuzzer writes.
pub fn snow_peer(
    suite: CipherSuite,
    initiator: bool,
    static_secret: &[u8; 32],
    ephemeral_secret: &[u8; 32],
) -> snow::HandshakeState {
    let builder = snow::Builder::new(suite.protocol_name().parse().expect("noise params"))
        .prologue(latchkey_core::channel::PROLOGUE)
        .expect("prologue")
        .local_private_key(static_secret)
        .expect("static key")
        .fixed_ephemeral_key_for_testing_only(ephemeral_secret);
    if initiator {
        builder.build_initiator().expect("snow initiator")
    } else {
        builder.build_responder().expect("snow responder")
    }
}
