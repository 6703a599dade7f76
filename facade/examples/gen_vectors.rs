//! Writes the shared test vectors `tests/vectors/identity.json` and `tests/vectors/handshake.json`.
//!
//! ```text
//! cargo run -p latchkey-facade --example gen_vectors [-- <output dir>]
//! ```
//!
//! Every input is fixed (signing seeds, static secrets, ephemeral secrets, times), and only the facade's
//! public, deterministic calls are used, so any binding can reproduce every byte from the JSON inputs alone.
//! Ed25519 signatures are deterministic, which is what makes histories and attestations reproducible.
//! `facade/tests/vectors.rs` checks the committed files against the code.

use latchkey_core::identity::{ChangeHistory, PurposeKey};
use latchkey_core::vault::Signature;
use latchkey_core::wire::Encode;
use latchkey_core::Timestamp;
use latchkey_facade::{
    CipherSuite, HandshakeSession, Identity, IdentityOptions, Role, Trust, Vault,
};
use serde_json::{json, Value};
use std::path::PathBuf;

type BoxError = Box<dyn std::error::Error>;

const CREATED_AT: u64 = 1_800_000_000;
const KEY_VALIDITY: u64 = 31_536_000;
const ATTESTATION_VALIDITY: u64 = 86_400;
const HANDSHAKE_AT: u64 = 1_800_000_500;

/// 32 recognisable bytes: `tag` then a counter, so vectors are easy to tell apart in a hex dump.
fn secret(tag: u8) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = tag.wrapping_add((i as u8).wrapping_mul(0x1f));
    }
    out
}

fn options() -> IdentityOptions {
    IdentityOptions {
        key_validity_secs: KEY_VALIDITY,
        attestation_validity_secs: ATTESTATION_VALIDITY,
        ..IdentityOptions::default()
    }
}

struct Rotation {
    seed: [u8; 32],
    at: u64,
}

/// The identity these secrets make at `CREATED_AT`, with the vectors' validity options.
fn identity_at_creation(
    signing_seed: &[u8; 32],
    static_secret: &[u8; 32],
) -> Result<Identity, BoxError> {
    Ok(Identity::from_secrets(
        &Vault::new(),
        signing_seed,
        static_secret,
        options(),
        Some(CREATED_AT),
    )?)
}

fn identity_vector(
    name: &str,
    signing_seed: [u8; 32],
    static_secret: [u8; 32],
    rotations: &[Rotation],
) -> Result<Value, BoxError> {
    let identity = identity_at_creation(&signing_seed, &static_secret)?;
    let mut rotated = vec![];
    let history = hex::encode(identity.export_history()?);
    for rotation in rotations {
        identity.rotate(Some(&rotation.seed), Some(rotation.at))?;
        rotated.push(json!({
            "signing_seed": hex::encode(rotation.seed),
            "at": rotation.at,
            "history": hex::encode(identity.export_history()?),
        }));
    }
    Ok(json!({
        "name": name,
        "signing_seed": hex::encode(signing_seed),
        "static_secret": hex::encode(static_secret),
        "created_at": CREATED_AT,
        "key_validity_secs": KEY_VALIDITY,
        "attestation_validity_secs": ATTESTATION_VALIDITY,
        "identifier": identity.identifier(),
        "history": history,
        "rotations": rotated,
    }))
}

/// `history` with the first byte of its first change's self-signature flipped (`^ 0x01`).
fn damage_first_self_signature(history: &[u8]) -> Result<Vec<u8>, BoxError> {
    let mut changes = ChangeHistory::decode_unverified(history)?;
    let signature = &mut changes[0].self_signature;
    let mut bytes = *signature.as_bytes();
    bytes[0] ^= 0x01;
    *signature = Signature::new(signature.algorithm(), bytes);
    Ok(ChangeHistory::encode_unverified(&changes))
}

/// A history checked as presented (docs/PROTOCOL.md 3.4): the history of an identity made from these
/// secrets, with its first self-signature damaged, and the identity's honest attestation of its static key.
/// `ChangeHistory::import` refuses the history; the presented check (links and every signature but that
/// one) accepts it, and the attestation verifies under it, so a handshake accepts this peer.
fn presented_vector(
    name: &str,
    signing_seed: [u8; 32],
    static_secret: [u8; 32],
    rotations: &[Rotation],
) -> Result<Value, BoxError> {
    let identity = identity_at_creation(&signing_seed, &static_secret)?;
    for rotation in rotations {
        identity.rotate(Some(&rotation.seed), Some(rotation.at))?;
    }
    let local = identity.local_identity()?;
    let channel = local.channel_identity();
    let PurposeKey::SecureChannel(static_public) = channel.attestation.data.key else {
        return Err("the attestation is not of a secure-channel key".into());
    };
    let history = damage_first_self_signature(&identity.export_history()?)?;
    if ChangeHistory::import(&history).is_ok() {
        return Err("the damaged history still imports".into());
    }
    let presented = ChangeHistory::import_presented(&history)?;
    channel.attestation.verify(
        &presented,
        &PurposeKey::SecureChannel(static_public),
        Timestamp(HANDSHAKE_AT),
    )?;
    Ok(json!({
        "name": name,
        "signing_seed": hex::encode(signing_seed),
        "static_secret": hex::encode(static_secret),
        "created_at": CREATED_AT,
        "rotations": rotations.iter().map(|r| json!({"signing_seed": hex::encode(r.seed), "at": r.at})).collect::<Vec<_>>(),
        "identifier": identity.identifier(),
        "history": hex::encode(&history),
        "attestation": hex::encode(channel.attestation.to_bytes()),
        "static_public": hex::encode(static_public),
        "now": HANDSHAKE_AT,
        "import": "InvalidHistory: bad signature by the new key",
        "as_presented": "accepted",
    }))
}

struct Side {
    signing_seed: [u8; 32],
    static_secret: [u8; 32],
    ephemeral_secret: [u8; 32],
}

impl Side {
    fn new(tag: u8) -> Self {
        Side {
            signing_seed: secret(tag),
            static_secret: secret(tag + 1),
            ephemeral_secret: secret(tag + 2),
        }
    }

    fn session(
        &self,
        role: Role,
        suite: CipherSuite,
    ) -> Result<(Value, HandshakeSession), BoxError> {
        let identity = Identity::from_secrets(
            &Vault::new(),
            &self.signing_seed,
            &self.static_secret,
            options(),
            Some(CREATED_AT),
        )?;
        // The vectors pin bytes, not a trust decision: both sides accept any identity, said explicitly.
        let mut session = HandshakeSession::new(
            &identity,
            role,
            suite,
            &Trust::AnyIdentity,
            Some(HANDSHAKE_AT),
        )?;
        session.set_ephemeral_for_test_vectors(&self.ephemeral_secret)?;
        let description = json!({
            "signing_seed": hex::encode(self.signing_seed),
            "static_secret": hex::encode(self.static_secret),
            "ephemeral_secret": hex::encode(self.ephemeral_secret),
            "created_at": CREATED_AT,
            "key_validity_secs": KEY_VALIDITY,
            "attestation_validity_secs": ATTESTATION_VALIDITY,
            "identifier": identity.identifier(),
        });
        Ok((description, session))
    }
}

/// The frames exchanged after the handshake, in order: both directions, an empty plaintext each way, and a
/// plaintext longer than one AEAD block.
const TRANSPORT: &[(Role, &[u8])] = &[
    (Role::Initiator, b"hello, responder"),
    (Role::Responder, b"hello, initiator"),
    (Role::Initiator, b""),
    (Role::Responder, b""),
    (Role::Initiator, b"the third frame from the initiator, long enough to span several AEAD blocks of 64 bytes each, which ChaCha20 and AES-GCM both use"),
    (Role::Responder, &[0x00, 0xff, 0x7f, 0x80]),
];

fn handshake_vector(name: &str, suite: CipherSuite, tags: (u8, u8)) -> Result<Value, BoxError> {
    let (initiator_json, mut initiator) = Side::new(tags.0).session(Role::Initiator, suite)?;
    let (responder_json, mut responder) = Side::new(tags.1).session(Role::Responder, suite)?;
    let m1 = initiator
        .step(None)?
        .ok_or("initiator wrote no message 1")?;
    let m2 = responder
        .step(Some(&m1))?
        .ok_or("responder wrote no message 2")?;
    let m3 = initiator
        .step(Some(&m2))?
        .ok_or("initiator wrote no message 3")?;
    if responder.step(Some(&m3))?.is_some() || !initiator.is_finished() || !responder.is_finished()
    {
        return Err("handshake did not finish after three messages".into());
    }
    let mut initiator = initiator.into_channel()?;
    let mut responder = responder.into_channel()?;
    let hash = initiator.handshake_hash();
    if hash != responder.handshake_hash() {
        return Err("handshake hashes differ".into());
    }
    let mut nonces = [0u64; 2];
    let mut transport = vec![];
    for (from, plaintext) in TRANSPORT {
        let (sender, receiver, nonce, label) = match from {
            Role::Initiator => (&mut initiator, &mut responder, &mut nonces[0], "initiator"),
            Role::Responder => (&mut responder, &mut initiator, &mut nonces[1], "responder"),
        };
        let frame = sender.encrypt(plaintext)?;
        if receiver.decrypt(&frame)? != *plaintext {
            return Err("a frame did not decrypt to its plaintext".into());
        }
        transport.push(json!({
            "from": label,
            "nonce": *nonce,
            "plaintext": hex::encode(plaintext),
            "frame": hex::encode(&frame),
        }));
        *nonce += 1;
    }
    Ok(json!({
        "name": name,
        "suite": match suite {
            CipherSuite::ChaChaPoly => "ChaChaPoly",
            CipherSuite::AesGcm => "AesGcm",
        },
        "now": HANDSHAKE_AT,
        "initiator": initiator_json,
        "responder": responder_json,
        "messages": [hex::encode(&m1), hex::encode(&m2), hex::encode(&m3)],
        "handshake_hash": hex::encode(hash),
        "transport": transport,
    }))
}

fn main() -> Result<(), BoxError> {
    let out_dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors"));
    std::fs::create_dir_all(&out_dir)?;

    let identity = json!({
        "description": "Latchkey identity vectors. Reproduce each with Identity::from_secrets(vault, signing_seed, \
            static_secret, IdentityOptions { Ed25519, key_validity_secs, attestation_validity_secs }, \
            created_at), then Identity::rotate(signing_seed, at) per rotation in order. identifier is the text \
            form; history (and each rotation's history) is Identity::export_history() after that step, \
            lowercase hex. Formats: docs/PROTOCOL.md.",
        "vectors": [
            identity_vector("single key", secret(0x01), secret(0x02), &[])?,
            identity_vector("two rotations", secret(0x11), secret(0x12), &[
                Rotation { seed: secret(0x13), at: CREATED_AT + 100 },
                Rotation { seed: secret(0x14), at: CREATED_AT + 86_400 },
            ])?,
            identity_vector("rotation at the creation time", secret(0x21), secret(0x22), &[
                Rotation { seed: secret(0x23), at: CREATED_AT },
            ])?,
        ],
        "presented_description": "Histories checked as presented in a handshake (docs/PROTOCOL.md 3.4): the \
            identity made from the secrets as above (rotations in order), whose exported history has the first \
            byte of the first change's self-signature flipped (^ 0x01). ChangeHistory::import(history) fails \
            with InvalidHistory(\"bad signature by the new key\"); the presented check (links and every \
            signature except the first change's self-signature) accepts it, with this identifier, and the \
            attestation (the identity's own, of static_public) verifies under it at now: a handshake accepts \
            this peer. Checked by core/tests/presented_history.rs; the facade has no standalone presented \
            check, so the C and Python runners (which read \"vectors\") skip this key.",
        "presented_histories": [
            presented_vector("single key, first self-signature damaged", secret(0x01), secret(0x02), &[])?,
            presented_vector("one rotation, first self-signature damaged", secret(0x21), secret(0x22), &[
                Rotation { seed: secret(0x23), at: CREATED_AT },
            ])?,
        ],
    });
    // `trusted = None` in this description is the old spelling of `Trust::AnyIdentity`; it stays as it is so
    // that the committed vectors remain byte-identical.
    let handshake = json!({
        "description": "Latchkey handshake and transport vectors. Each side: Identity::from_secrets(...) as in \
            identity.json, HandshakeSession::new(identity, role, suite, trusted = None, now), \
            set_ephemeral_for_test_vectors(ephemeral_secret); then initiator.step(None) = messages[0], \
            responder.step(messages[0]) = messages[1], initiator.step(messages[1]) = messages[2], \
            responder.step(messages[2]) = None; handshake_hash is the Noise handshake hash. transport lists \
            Channel::encrypt(plaintext) = frame in the order produced; each direction's nonces start at 0. \
            Lowercase hex throughout. Formats: docs/PROTOCOL.md.",
        "vectors": [
            handshake_vector("ChaChaPoly handshake", CipherSuite::ChaChaPoly, (0x31, 0x41))?,
            handshake_vector("AesGcm handshake", CipherSuite::AesGcm, (0x51, 0x61))?,
        ],
    });
    for (file, value) in [("identity.json", identity), ("handshake.json", handshake)] {
        let path = out_dir.join(file);
        std::fs::write(&path, serde_json::to_string_pretty(&value)? + "\n")?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
