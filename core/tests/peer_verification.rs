//! What a peer must prove: a valid history, an unexpired identity key, an attestation of exactly the static
//! key it used, by its own current key, valid now; and then the trust policy must accept it.
//!
//! Our own `Handshake` refuses to *send* a bad attestation (it checks its own at construction), so the forged
//! peers here are driven by `snow`: correct Noise with any static key and any payload bytes, which is exactly
//! what an attacker on the network can do.

mod common;

use common::*;
use latchkey_core::channel::{
    CipherSuite, Handshake, HandshakeConfig, HandshakePayload, TrustIdentifiers, MAX_CREDENTIALS,
    PROLOGUE,
};
use latchkey_core::identity::{
    Attestation, AttestationData, Change, ChangeData, ChangeHistory, Identity, PurposeKey,
    MAX_CLOCK_SKEW_SECS,
};
use latchkey_core::vault::{
    KeyId, PublicKey, SecureChannelVault, Signature, SigningAlgorithm, SigningVault, SoftwareVault,
};
use latchkey_core::wire::Encode;
use latchkey_core::{Error, Result, Timestamp};
use std::sync::Arc;

const SUITES: [CipherSuite; 2] = [CipherSuite::ChaChaPoly, CipherSuite::AesGcm];

/// A would-be peer: an identity whose static key is also known as raw bytes, so snow can hold it.
struct Forger {
    vault: Arc<SoftwareVault>,
    identity: Identity,
    static_secret: [u8; 32],
    static_public: [u8; 32],
}

impl Forger {
    fn new(static_seed: u8) -> Self {
        Self::with_key_validity(static_seed, 365 * DAY)
    }

    fn with_key_validity(static_seed: u8, validity: u64) -> Self {
        let vault = Arc::new(SoftwareVault::new());
        let identity =
            Identity::create(vault.as_ref(), SigningAlgorithm::Ed25519, NOW, validity).unwrap();
        let static_secret = [static_seed; 32];
        let key = vault.import_x25519_secret(&static_secret).unwrap();
        let static_public = vault.x25519_public_key(&key).unwrap();
        Forger {
            vault,
            identity,
            static_secret,
            static_public,
        }
    }

    fn attest(&self, key: PurposeKey, at: Timestamp, validity: u64) -> Attestation {
        self.identity
            .attest(self.vault.as_ref(), key, at, validity)
            .unwrap()
    }

    /// The honest attestation of the static key it really uses.
    fn honest_attestation(&self) -> Attestation {
        self.attest(PurposeKey::SecureChannel(self.static_public), NOW, DAY)
    }

    fn payload(&self, attestation: Attestation) -> Vec<u8> {
        HandshakePayload {
            history: self.identity.history().clone(),
            attestation,
            credentials: vec![],
        }
        .to_bytes()
    }
}

fn snow_builder(suite: CipherSuite, secret: &[u8; 32]) -> snow::Builder<'_> {
    snow::Builder::new(suite.protocol_name().parse().unwrap())
        .prologue(PROLOGUE)
        .unwrap()
        .local_private_key(secret)
        .unwrap()
}

/// The forger responds to our initiator with `payload` in message 2. Returns our initiator's verdict.
fn forged_responder(
    ours: HandshakeConfig,
    forger: &Forger,
    payload: &[u8],
) -> Result<Option<Handshake>> {
    let suite = ours.suite;
    let mut i = Handshake::initiator(ours).unwrap();
    let mut r = snow_builder(suite, &forger.static_secret)
        .build_responder()
        .unwrap();
    let mut buf = vec![0u8; 65535];
    r.read_message(&i.write_message().unwrap(), &mut buf)
        .unwrap();
    let n = r.write_message(payload, &mut buf).unwrap();
    match i.read_message(&buf[..n]) {
        Ok(()) => Ok(Some(i)),
        Err(e) => {
            assert!(i.is_failed() && i.peer().is_none());
            assert!(matches!(i.write_message(), Err(Error::InvalidState(_))));
            Err(e)
        }
    }
}

/// The forger initiates to our responder with `payload` in message 3. Returns our responder's verdict.
fn forged_initiator(ours: HandshakeConfig, forger: &Forger, payload: &[u8]) -> Result<Handshake> {
    let suite = ours.suite;
    let mut r = Handshake::responder(ours).unwrap();
    let mut i = snow_builder(suite, &forger.static_secret)
        .build_initiator()
        .unwrap();
    let mut buf = vec![0u8; 65535];
    let n = i.write_message(&[], &mut buf).unwrap();
    r.read_message(&buf[..n]).unwrap();
    i.read_message(&r.write_message().unwrap(), &mut buf)
        .unwrap();
    let n = i.write_message(payload, &mut buf).unwrap();
    match r.read_message(&buf[..n]) {
        Ok(()) => Ok(r),
        Err(e) => {
            assert!(r.is_failed() && r.peer().is_none());
            assert!(matches!(r.finish(), Err(Error::InvalidState(_))));
            Err(e)
        }
    }
}

/// Runs the forged payload against our initiator and our responder, in both suites, at time `now`, and
/// returns the two verdicts (they must agree).
fn verdict(forger: &Forger, payload: &[u8], now: Timestamp) -> Result<()> {
    let mut verdicts = vec![];
    for suite in SUITES {
        let mut config = suite_config(our_side_valid_around(now), suite);
        config.now = now;
        verdicts.push(forged_responder(config.clone(), forger, payload).map(|_| ()));
        verdicts.push(forged_initiator(config, forger, payload).map(|_| ()));
    }
    for v in &verdicts[1..] {
        assert_eq!(v, &verdicts[0], "both roles and suites must agree");
    }
    verdicts.remove(0)
}

/// Our own side, attested for a window around `now`, so that only the peer's validity is under test.
fn our_side_valid_around(now: Timestamp) -> HandshakeConfig {
    let mut ours = Party::new();
    let vault = ours.vault.clone();
    let public = vault
        .x25519_public_key(&ours.channel_identity.static_key)
        .unwrap();
    ours.channel_identity.attestation = ours
        .identity
        .attest(
            vault.as_ref(),
            PurposeKey::SecureChannel(public),
            Timestamp(now.0 - DAY),
            2 * DAY,
        )
        .unwrap();
    ours.config_any()
}

#[test]
fn an_honest_snow_peer_is_accepted_which_shows_the_forging_harness_works() {
    let forger = Forger::new(3);
    let payload = forger.payload(forger.honest_attestation());
    assert_eq!(verdict(&forger, &payload, NOW), Ok(()));
    let ours = Party::new();
    let i = forged_responder(ours.config_any(), &forger, &payload)
        .unwrap()
        .unwrap();
    let peer = i.peer().unwrap();
    assert_eq!(peer.identifier, forger.identity.identifier());
    assert_eq!(peer.static_key, forger.static_public);
    assert_eq!(peer.attestation_expires_at, NOW.plus_secs(DAY));
}

#[test]
fn attestation_of_a_different_static_key_is_refused() {
    let forger = Forger::new(3);
    let other_static = Forger::new(4).static_public;
    let payload = forger.payload(forger.attest(PurposeKey::SecureChannel(other_static), NOW, DAY));
    assert_eq!(
        verdict(&forger, &payload, NOW),
        Err(Error::InvalidAttestation("attestation is for another key"))
    );
}

#[test]
fn attestation_for_another_purpose_is_refused() {
    let forger = Forger::new(3);
    let signing_key = forger.identity.history().primary_public_key().clone();
    let payload =
        forger.payload(forger.attest(PurposeKey::CredentialSigning(signing_key), NOW, DAY));
    assert_eq!(
        verdict(&forger, &payload, NOW),
        Err(Error::InvalidAttestation(
            "attestation is for another purpose"
        ))
    );
}

#[test]
fn attestation_made_by_another_identity_is_refused() {
    let forger = Forger::new(3);
    let accomplice = Forger::new(4);
    // The accomplice vouches, under its own name, for the forger's static key.
    let theirs = accomplice.attest(PurposeKey::SecureChannel(forger.static_public), NOW, DAY);
    assert_eq!(
        verdict(&forger, &forger.payload(theirs), NOW),
        Err(Error::InvalidAttestation(
            "attestation is for another identity"
        ))
    );
    // The accomplice signs a statement naming the forger's identity.
    let data = AttestationData {
        subject: forger.identity.identifier(),
        key: PurposeKey::SecureChannel(forger.static_public),
        created_at: NOW,
        expires_at: NOW.plus_secs(DAY),
    };
    let signature = accomplice
        .vault
        .sign(accomplice.identity.primary_key(), &data.signing_message())
        .unwrap();
    let payload = forger.payload(Attestation { data, signature });
    assert_eq!(
        verdict(&forger, &payload, NOW),
        Err(Error::InvalidAttestation(
            "not signed by the identity's primary key"
        ))
    );
}

#[test]
fn tampered_attestation_fields_break_its_signature() {
    let forger = Forger::new(3);
    let mut attestation = forger.honest_attestation();
    attestation.data.expires_at = NOW.plus_secs(365 * DAY);
    assert_eq!(
        verdict(&forger, &forger.payload(attestation), NOW),
        Err(Error::InvalidAttestation(
            "not signed by the identity's primary key"
        ))
    );
}

#[test]
fn attestation_is_valid_from_creation_until_just_before_expiry() {
    let forger = Forger::new(3);
    let payload = forger.payload(forger.honest_attestation());
    assert_eq!(verdict(&forger, &payload, NOW), Ok(()));
    assert_eq!(verdict(&forger, &payload, NOW.plus_secs(DAY - 1)), Ok(()));
    assert_eq!(
        verdict(&forger, &payload, NOW.plus_secs(DAY)),
        Err(Error::Expired("attestation"))
    );
    // A verifier whose clock lags by up to MAX_CLOCK_SKEW_SECS still accepts; beyond that it refuses.
    assert_eq!(
        verdict(&forger, &payload, Timestamp(NOW.0 - MAX_CLOCK_SKEW_SECS)),
        Ok(())
    );
    assert_eq!(
        verdict(
            &forger,
            &payload,
            Timestamp(NOW.0 - MAX_CLOCK_SKEW_SECS - 1)
        ),
        Err(Error::Expired("attestation not yet valid"))
    );
}

#[test]
fn expired_identity_key_is_refused_even_with_a_valid_attestation() {
    let forger = Forger::with_key_validity(3, 60);
    let payload = forger.payload(forger.honest_attestation());
    assert_eq!(verdict(&forger, &payload, NOW.plus_secs(59)), Ok(()));
    assert_eq!(
        verdict(&forger, &payload, NOW.plus_secs(60)),
        Err(Error::Expired("identity key"))
    );
}

#[test]
fn attestation_by_a_rotated_away_key_is_refused() {
    let mut forger = Forger::new(3);
    let old = forger.honest_attestation();
    let vault = forger.vault.clone();
    forger
        .identity
        .rotate(vault.as_ref(), SigningAlgorithm::Ed25519, NOW, 365 * DAY)
        .unwrap();
    assert_eq!(
        verdict(&forger, &forger.payload(old), NOW),
        Err(Error::InvalidAttestation(
            "not signed by the identity's primary key"
        ))
    );
    assert_eq!(
        verdict(&forger, &forger.payload(forger.honest_attestation()), NOW),
        Ok(())
    );
}

#[test]
fn malformed_payloads_are_decode_errors() {
    let forger = Forger::new(3);
    let good = forger.payload(forger.honest_attestation());
    let mut wrong_version = good.clone();
    wrong_version[0] = 2;
    let mut trailing = good.clone();
    trailing.push(0);
    let mut too_many_credentials = good.clone();
    *too_many_credentials.last_mut().unwrap() = (MAX_CREDENTIALS + 1) as u8;
    for (what, payload) in [
        ("empty", vec![]),
        ("garbage", b"not a payload".to_vec()),
        ("wrong version", wrong_version),
        ("trailing byte", trailing),
        ("truncated", good[..good.len() - 1].to_vec()),
        ("too many credentials", too_many_credentials),
    ] {
        let result = verdict(&forger, &payload, NOW);
        assert!(
            matches!(result, Err(Error::Decode(_))),
            "{what}: {result:?}"
        );
    }
}

/// A payload's history bytes (PROTOCOL.md 5.3: version(1) ‖ len(2) ‖ history ‖ …).
fn history_in(payload: &[u8]) -> &[u8] {
    let len = u16::from_be_bytes([payload[1], payload[2]]) as usize;
    &payload[3..3 + len]
}

/// `payload` with its history replaced by `history` (of the same length).
fn with_history(payload: &[u8], history: &[u8]) -> Vec<u8> {
    assert_eq!(history_in(payload).len(), history.len());
    let mut out = payload.to_vec();
    out[3..3 + history.len()].copy_from_slice(history);
    out
}

/// `history` re-encoded with one of its signatures damaged (`previous`: the previous-signature of change
/// `index`, else its self-signature).
fn damaged(history: &[u8], index: usize, previous: bool) -> Vec<u8> {
    let mut changes = ChangeHistory::decode_unverified(history).unwrap();
    let change = &mut changes[index];
    let signature = if previous {
        change.previous_signature.as_mut().unwrap()
    } else {
        &mut change.self_signature
    };
    let mut bytes = *signature.as_bytes();
    bytes[10] ^= 1;
    *signature = Signature::new(signature.algorithm(), bytes);
    ChangeHistory::encode_unverified(&changes)
}

#[test]
fn a_bad_first_self_signature_is_not_checked_in_a_handshake_but_import_refuses_it() {
    // PROTOCOL.md 3.4, "a history as presented": the attestation (by the first key, naming the first
    // change's hash) proves what the first self-signature would.
    let forger = Forger::new(3);
    let good = forger.payload(forger.honest_attestation());
    let bad_history = damaged(history_in(&good), 0, false);
    let bad = with_history(&good, &bad_history);
    assert_eq!(verdict(&forger, &bad, NOW), Ok(()));
    let i = forged_responder(Party::new().config_any(), &forger, &bad)
        .unwrap()
        .unwrap();
    assert_eq!(i.peer().unwrap().identifier, forger.identity.identifier());
    assert_eq!(i.peer().unwrap().history.export(), bad_history);
    // Standing alone, the same bytes are refused.
    assert_eq!(
        ChangeHistory::import(&bad_history),
        Err(Error::InvalidHistory("bad signature by the new key"))
    );
    assert_eq!(
        ChangeHistory::import_presented(&bad_history).map(|h| h.identifier()),
        Ok(forger.identity.identifier())
    );
}

#[test]
fn a_bad_first_self_signature_of_a_rotated_identity_is_not_checked_in_a_handshake() {
    // Two changes: the second change's previous-signature (by the first key, over a hash that names the
    // first change) proves what the first self-signature would.
    let mut forger = Forger::new(3);
    let vault = forger.vault.clone();
    forger
        .identity
        .rotate(vault.as_ref(), SigningAlgorithm::Ed25519, NOW, 365 * DAY)
        .unwrap();
    let good = forger.payload(forger.honest_attestation());
    let bad_history = damaged(history_in(&good), 0, false);
    assert_eq!(
        verdict(&forger, &with_history(&good, &bad_history), NOW),
        Ok(())
    );
    assert_eq!(
        ChangeHistory::import(&bad_history),
        Err(Error::InvalidHistory("bad signature by the new key"))
    );
}

#[test]
fn every_other_history_signature_is_still_checked_in_a_handshake() {
    let mut forger = Forger::new(3);
    let vault = forger.vault.clone();
    forger
        .identity
        .rotate(vault.as_ref(), SigningAlgorithm::Ed25519, NOW, 365 * DAY)
        .unwrap();
    let good = forger.payload(forger.honest_attestation());
    let second_self = with_history(&good, &damaged(history_in(&good), 1, false));
    assert_eq!(
        verdict(&forger, &second_self, NOW),
        Err(Error::InvalidHistory("bad signature by the new key"))
    );
    let second_previous = with_history(&good, &damaged(history_in(&good), 1, true));
    assert_eq!(
        verdict(&forger, &second_previous, NOW),
        Err(Error::InvalidHistory("bad signature by the previous key"))
    );
}

#[test]
fn a_history_around_someone_elses_key_with_the_attackers_attestation_is_refused() {
    // The first self-signature is what stops an identity built around a key one does not hold; in a
    // handshake the attestation under that same key still does. The attacker takes the victim's public key,
    // cannot make its self-signature (signs with its own key instead), and attests its static key itself.
    let victim = Forger::new(4);
    let attacker = Forger::new(3);
    let data = ChangeData {
        previous: [0; 32],
        public_key: victim.identity.history().primary_public_key().clone(),
        created_at: NOW,
        expires_at: NOW.plus_secs(365 * DAY),
    };
    let garbage = attacker
        .vault
        .sign(attacker.identity.primary_key(), &data.hash())
        .unwrap();
    let mut history = vec![1u8];
    Change {
        data,
        self_signature: garbage,
        previous_signature: None,
    }
    .encode_into(&mut history);
    let stolen = ChangeHistory::import_presented(&history).unwrap();
    let data = AttestationData {
        subject: stolen.identifier(),
        key: PurposeKey::SecureChannel(attacker.static_public),
        created_at: NOW,
        expires_at: NOW.plus_secs(DAY),
    };
    let signature = attacker
        .vault
        .sign(attacker.identity.primary_key(), &data.signing_message())
        .unwrap();
    let payload = HandshakePayload {
        history: stolen,
        attestation: Attestation { data, signature },
        credentials: vec![],
    }
    .to_bytes();
    assert_eq!(
        verdict(&attacker, &payload, NOW),
        Err(Error::InvalidAttestation(
            "not signed by the identity's primary key"
        ))
    );
}

#[test]
fn credentials_reach_the_peer_unchanged() {
    let forger = Forger::new(3);
    let payload = HandshakePayload {
        history: forger.identity.history().clone(),
        attestation: forger.honest_attestation(),
        credentials: vec![b"member of ops".to_vec(), vec![], vec![0xff; 300]],
    }
    .to_bytes();
    let ours = Party::new();
    let i = forged_responder(ours.config_any(), &forger, &payload)
        .unwrap()
        .unwrap();
    assert_eq!(
        i.peer().unwrap().credentials,
        vec![b"member of ops".to_vec(), vec![], vec![0xff; 300]]
    );
}

fn real_handshake(
    initiator: HandshakeConfig,
    responder: HandshakeConfig,
) -> (Result<()>, Result<()>) {
    let mut i = Handshake::initiator(initiator).unwrap();
    let mut r = Handshake::responder(responder).unwrap();
    r.read_message(&i.write_message().unwrap()).unwrap();
    let m2 = r.write_message().unwrap();
    if let Err(e) = i.read_message(&m2) {
        return (Err(e), Ok(()));
    }
    let m3 = i.write_message().unwrap();
    (Ok(()), r.read_message(&m3))
}

#[test]
fn the_trust_policy_refuses_an_unexpected_peer_in_either_role() {
    let alice = Party::new();
    let bob = Party::new();
    let carol = Party::new();
    let only_bob = Arc::new(TrustIdentifiers::new([bob.identity.identifier()]));
    let only_alice = Arc::new(TrustIdentifiers::new([alice.identity.identifier()]));

    // Alice expects Bob; Carol answers. Alice refuses at message 2, naming who she met.
    assert_eq!(
        real_handshake(alice.config(only_bob.clone()), carol.config_any()).0,
        Err(Error::UntrustedPeer(carol.identity.identifier()))
    );
    // Bob only serves Alice; Carol connects. Bob refuses at message 3.
    assert_eq!(
        real_handshake(carol.config_any(), bob.config(only_alice.clone())).1,
        Err(Error::UntrustedPeer(carol.identity.identifier()))
    );
    // The expected pair gets through.
    assert_eq!(
        real_handshake(alice.config(only_bob), bob.config(only_alice)),
        (Ok(()), Ok(()))
    );
    // An empty allow-list trusts no one; a closure policy sees the proven peer.
    let nobody = Arc::new(TrustIdentifiers::new([]));
    assert_eq!(
        real_handshake(alice.config_any(), bob.config(nobody)).1,
        Err(Error::UntrustedPeer(alice.identity.identifier()))
    );
    let alice_id = alice.identity.identifier();
    let by_closure = Arc::new(move |peer: &latchkey_core::channel::PeerIdentity| {
        peer.identifier == alice_id && peer.history.changes().len() == 1
    });
    assert_eq!(
        real_handshake(alice.config_any(), bob.config(by_closure)),
        (Ok(()), Ok(()))
    );
}

#[test]
fn a_side_with_a_bad_own_attestation_fails_before_sending_anything() {
    let alice = Party::new();
    let bob = Party::new();
    // Alice's config with Bob's attestation: not about her key and not by her identity.
    let mut config = alice.config_any();
    config.identity.attestation = bob.channel_identity.attestation.clone();
    assert!(matches!(
        Handshake::initiator(config).unwrap_err(),
        Error::InvalidAttestation(_)
    ));
    let mut config = alice.config_any();
    config.now = NOW.plus_secs(DAY);
    assert_eq!(
        Handshake::responder(config).unwrap_err(),
        Error::Expired("attestation")
    );
    // Our own identity key is checked before the attestation.
    let mut config = alice.config_any();
    config.now = NOW.plus_secs(366 * DAY);
    assert_eq!(
        Handshake::initiator(config).unwrap_err(),
        Error::Expired("identity key")
    );
    let mut config = alice.config_any();
    config.identity.static_key = KeyId::new("no such key");
    assert!(matches!(
        Handshake::initiator(config).unwrap_err(),
        Error::KeyNotFound(_)
    ));
    let mut config = alice.config_any();
    config.identity.credentials = vec![vec![]; MAX_CREDENTIALS + 1];
    assert_eq!(
        Handshake::initiator(config).unwrap_err(),
        Error::MessageTooLarge {
            len: MAX_CREDENTIALS + 1,
            max: MAX_CREDENTIALS
        }
    );
}

#[test]
fn a_peer_key_of_low_order_is_refused() {
    // The all-zero X25519 point gives an all-zero DH output; Noise implementations must not key a channel
    // from it.
    let ours = Party::new();
    let mut r = Handshake::responder(ours.config_any()).unwrap();
    r.read_message(&[0u8; 32]).unwrap();
    assert_eq!(r.write_message().unwrap_err(), Error::InvalidPublicKey);
    assert!(r.is_failed());
}

#[test]
fn p256_identity_keys_verify_in_attestations() {
    let alice = Party::with_algorithm(SigningAlgorithm::EcdsaP256);
    assert!(matches!(
        alice.identity.history().primary_public_key(),
        PublicKey::EcdsaP256(_)
    ));
    let bob = Party::new();
    let (a, b) = handshake(alice.config_any(), bob.config_any()).unwrap();
    assert_eq!(b.peer_identifier(), alice.identity.identifier());
    assert_eq!(a.peer_identifier(), bob.identity.identifier());
}

#[test]
fn an_identifier_off_the_allow_list_is_refused_before_any_signature_is_checked() {
    // A history whose signature is broken, from an identifier our allow-list does not name: the refusal is
    // `UntrustedPeer`, not `InvalidHistory`, which shows that the cheap allow-list check ran before the
    // signatures (a junk message 3 costs no signature verification). The same holds for an attestation of
    // another key: a structure error, found before its signature is checked.
    let forger = Forger::new(3);
    let good = forger.payload(forger.honest_attestation());
    let history_len = u16::from_be_bytes([good[1], good[2]]) as usize;
    let mut bad = good.clone();
    bad[3 + history_len - 10] ^= 1;
    let stranger = Forger::new(4).identity.identifier();
    for suite in SUITES {
        let mut config = suite_config(our_side_valid_around(NOW), suite);
        config.trust = Arc::new(TrustIdentifiers::new([stranger]));
        for payload in [&good, &bad] {
            let refused = forged_initiator(config.clone(), &forger, payload).unwrap_err();
            assert_eq!(refused, Error::UntrustedPeer(forger.identity.identifier()));
            let refused = forged_responder(config.clone(), &forger, payload).unwrap_err();
            assert_eq!(refused, Error::UntrustedPeer(forger.identity.identifier()));
        }
    }
    // Trusted, but the attestation names another key and its bytes are damaged at the end (its signature):
    // the structure error comes first.
    let mut other = forger.payload(forger.attest(PurposeKey::SecureChannel([9; 32]), NOW, DAY));
    let n = other.len();
    other[n - 3] ^= 1;
    assert_eq!(
        verdict(&forger, &other, NOW),
        Err(Error::InvalidAttestation("attestation is for another key"))
    );
}
