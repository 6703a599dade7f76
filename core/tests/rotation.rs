//! Key rotation: a peer that knew history H accepts H extended by correctly signed rotations, and nothing
//! else — no rotation without the previous key's signature, no reordering, no gaps, no other identity's
//! history, no fork from an old key.

mod common;

use common::*;
use latchkey_core::channel::TrustIdentifiers;
use latchkey_core::identity::{Change, ChangeData, ChangeHistory, Identity, MAX_CHANGES};
use latchkey_core::vault::{
    KeyId, PublicKey, SecureChannelVault, SigningAlgorithm, SigningVault, SoftwareVault,
};
use latchkey_core::wire::{Decode, Encode};
use latchkey_core::{Error, Timestamp};
use std::sync::Arc;

const YEAR: u64 = 365 * DAY;

fn new_identity(vault: &SoftwareVault, algorithm: SigningAlgorithm) -> Identity {
    Identity::create(vault, algorithm, NOW, YEAR).unwrap()
}

/// An identity rotated `rotations` times, one day apart, plus every intermediate history.
fn rotated(vault: &SoftwareVault, rotations: u64) -> (Identity, Vec<ChangeHistory>) {
    let mut identity = new_identity(vault, SigningAlgorithm::Ed25519);
    let mut histories = vec![identity.history().clone()];
    for k in 1..=rotations {
        identity
            .rotate(
                vault,
                SigningAlgorithm::Ed25519,
                NOW.plus_secs(k * DAY),
                YEAR,
            )
            .unwrap();
        histories.push(identity.history().clone());
    }
    (identity, histories)
}

/// Signs `data` as a change: by `new_key`, and by `previous_key` when given.
fn signed_change(
    vault: &SoftwareVault,
    data: ChangeData,
    new_key: &KeyId,
    previous_key: Option<&KeyId>,
) -> Change {
    let hash = data.hash();
    Change {
        self_signature: vault.sign(new_key, &hash).unwrap(),
        previous_signature: previous_key.map(|k| vault.sign(k, &hash).unwrap()),
        data,
    }
}

/// The data of a rotation from `history`'s last change to `new_key`.
fn rotation_data(vault: &SoftwareVault, history: &ChangeHistory, new_key: &KeyId) -> ChangeData {
    let last = &history.changes().last().unwrap().data;
    ChangeData {
        previous: last.hash(),
        public_key: vault.signing_public_key(new_key).unwrap(),
        created_at: last.created_at.plus_secs(DAY),
        expires_at: last.created_at.plus_secs(YEAR),
    }
}

#[test]
fn a_peer_that_knew_h_accepts_h_plus_rotations() {
    let vault = SoftwareVault::new();
    let (identity, histories) = rotated(&vault, 3);
    let h = &histories[0];
    for (k, later) in histories.iter().enumerate() {
        assert_eq!(later.changes().len(), k + 1);
        assert_eq!(
            later.identifier(),
            h.identifier(),
            "the identifier never changes"
        );
        later.check_extends(h).unwrap();
        later.check_extends(later).unwrap();
        for earlier in &histories[..k] {
            later.check_extends(earlier).unwrap();
        }
        // Through the wire: what a peer stores and what it is shown later.
        let imported = ChangeHistory::import(&later.export()).unwrap();
        assert_eq!(&imported, later);
    }
    assert_eq!(
        identity.history().primary_public_key(),
        &vault.signing_public_key(identity.primary_key()).unwrap()
    );
}

#[test]
fn a_truncated_history_does_not_extend_the_known_one() {
    let vault = SoftwareVault::new();
    let (_, histories) = rotated(&vault, 2);
    // A peer that knew 3 changes is shown a valid prefix: a rollback to an older key.
    assert_eq!(
        histories[1].check_extends(&histories[2]),
        Err(Error::HistoryMismatch)
    );
    assert_eq!(
        histories[0].check_extends(&histories[2]),
        Err(Error::HistoryMismatch)
    );
    // Truncated bytes are not a history at all.
    let bytes = histories[2].export();
    for len in 0..bytes.len() {
        assert!(
            matches!(ChangeHistory::import(&bytes[..len]), Err(Error::Decode(_))),
            "truncated to {len}"
        );
    }
}

#[test]
fn a_history_with_a_missing_middle_change_is_refused() {
    let vault = SoftwareVault::new();
    let (_, histories) = rotated(&vault, 2);
    let c = histories[2].changes();
    assert_eq!(
        ChangeHistory::new(vec![c[0].clone(), c[2].clone()]),
        Err(Error::InvalidHistory(
            "change does not follow the previous one"
        ))
    );
}

#[test]
fn a_reordered_history_is_refused() {
    let vault = SoftwareVault::new();
    let (_, histories) = rotated(&vault, 2);
    let c = histories[2].changes();
    assert_eq!(
        ChangeHistory::new(vec![c[0].clone(), c[2].clone(), c[1].clone()]),
        Err(Error::InvalidHistory(
            "change does not follow the previous one"
        ))
    );
    assert_eq!(
        ChangeHistory::new(vec![c[1].clone(), c[0].clone(), c[2].clone()]),
        Err(Error::InvalidHistory(
            "first change has a previous signature"
        ))
    );
    // The same refusal through the wire path a peer uses.
    let mut bytes = vec![3u8];
    for change in [&c[0], &c[2], &c[1]] {
        change.encode_into(&mut bytes);
    }
    assert_eq!(
        ChangeHistory::import(&bytes),
        Err(Error::InvalidHistory(
            "change does not follow the previous one"
        ))
    );
}

#[test]
fn a_rotation_not_signed_by_the_previous_key_is_refused() {
    let vault = SoftwareVault::new();
    let identity = new_identity(&vault, SigningAlgorithm::Ed25519);
    let history = identity.history();
    let new_key = vault
        .generate_signing_key(SigningAlgorithm::Ed25519)
        .unwrap();
    let stranger = vault
        .generate_signing_key(SigningAlgorithm::Ed25519)
        .unwrap();
    let data = rotation_data(&vault, history, &new_key);

    // Signed by the new key only.
    let unsigned = signed_change(&vault, data.clone(), &new_key, None);
    assert_eq!(
        history.with_change(unsigned),
        Err(Error::InvalidHistory(
            "rotation not signed by the previous key"
        ))
    );
    // "Previous" signature by some other key: what a thief of nothing but a new key could make.
    let by_stranger = signed_change(&vault, data.clone(), &new_key, Some(&stranger));
    assert_eq!(
        history.with_change(by_stranger.clone()),
        Err(Error::InvalidHistory("bad signature by the previous key"))
    );
    // Signed by the previous key but not by the key it names: proves nothing about the new key's holder.
    let not_self_signed = signed_change(
        &vault,
        data.clone(),
        &stranger,
        Some(identity.primary_key()),
    );
    assert_eq!(
        history.with_change(not_self_signed),
        Err(Error::InvalidHistory("bad signature by the new key"))
    );
    // The correct one passes, which shows the three refusals are about the signatures.
    let good = signed_change(&vault, data, &new_key, Some(identity.primary_key()));
    let extended = history.with_change(good).unwrap();
    extended.check_extends(history).unwrap();

    // And the wire path: the stranger-signed history exported by hand is refused on import.
    let mut bytes = vec![2u8];
    history.changes()[0].encode_into(&mut bytes);
    by_stranger.encode_into(&mut bytes);
    assert_eq!(
        ChangeHistory::import(&bytes),
        Err(Error::InvalidHistory("bad signature by the previous key"))
    );
}

#[test]
fn a_history_from_another_identity_is_refused() {
    let vault = SoftwareVault::new();
    let (_, alice) = rotated(&vault, 1);
    let (_, mallory) = rotated(&vault, 2);
    assert_ne!(alice[0].identifier(), mallory[0].identifier());
    assert_eq!(
        mallory[2].check_extends(&alice[0]),
        Err(Error::HistoryMismatch)
    );
    assert_eq!(
        mallory[2].check_extends(&alice[1]),
        Err(Error::HistoryMismatch)
    );
    // Mallory's changes grafted onto Alice's first change do not link.
    let mut grafted = alice[0].changes().to_vec();
    grafted.push(mallory[1].changes()[1].clone());
    assert_eq!(
        ChangeHistory::new(grafted),
        Err(Error::InvalidHistory(
            "change does not follow the previous one"
        ))
    );
}

#[test]
fn a_fork_signed_by_an_old_key_does_not_extend_the_known_history() {
    // The old key was rotated away from (say, because it leaked). Whoever holds it can sign a different
    // rotation: a valid history on its own, but not an extension of what the peer already knows.
    let vault = SoftwareVault::new();
    let mut identity = new_identity(&vault, SigningAlgorithm::Ed25519);
    let first_key = identity.primary_key().clone();
    let h0 = identity.history().clone();
    identity
        .rotate(&vault, SigningAlgorithm::Ed25519, NOW.plus_secs(DAY), YEAR)
        .unwrap();
    let known = identity.history().clone();

    let thief_key = vault
        .generate_signing_key(SigningAlgorithm::Ed25519)
        .unwrap();
    let data = rotation_data(&vault, &h0, &thief_key);
    let fork = h0
        .with_change(signed_change(&vault, data, &thief_key, Some(&first_key)))
        .unwrap();
    assert_eq!(fork.identifier(), known.identifier());
    assert_eq!(fork.check_extends(&known), Err(Error::HistoryMismatch));
}

#[test]
fn malformed_changes_are_refused() {
    let vault = SoftwareVault::new();
    let key = vault
        .generate_signing_key(SigningAlgorithm::Ed25519)
        .unwrap();
    let public_key = vault.signing_public_key(&key).unwrap();
    let first = |previous: [u8; 32], created: u64, expires: u64| {
        signed_change(
            &vault,
            ChangeData {
                previous,
                public_key: public_key.clone(),
                created_at: Timestamp(created),
                expires_at: Timestamp(expires),
            },
            &key,
            None,
        )
    };
    assert_eq!(
        ChangeHistory::new(vec![]),
        Err(Error::InvalidHistory("empty"))
    );
    assert_eq!(
        ChangeHistory::new(vec![first([7; 32], NOW.0, NOW.0 + 1)]),
        Err(Error::InvalidHistory(
            "first change names a previous change"
        ))
    );
    assert_eq!(
        ChangeHistory::new(vec![first([0; 32], NOW.0, NOW.0)]),
        Err(Error::InvalidHistory("change expires before it is created"))
    );
    ChangeHistory::new(vec![first([0; 32], NOW.0, NOW.0 + 1)]).unwrap();

    // A rotation dated before the change it follows.
    let h = ChangeHistory::new(vec![first([0; 32], NOW.0, NOW.0 + YEAR)]).unwrap();
    let next = vault
        .generate_signing_key(SigningAlgorithm::Ed25519)
        .unwrap();
    let mut data = rotation_data(&vault, &h, &next);
    data.created_at = Timestamp(NOW.0 - 1);
    assert_eq!(
        h.with_change(signed_change(&vault, data, &next, Some(&key))),
        Err(Error::InvalidHistory(
            "change is older than the previous one"
        ))
    );
}

#[test]
fn a_history_holds_at_most_max_changes() {
    let vault = SoftwareVault::new();
    let (mut identity, _) = rotated(&vault, MAX_CHANGES as u64 - 1);
    assert_eq!(identity.history().changes().len(), MAX_CHANGES);
    let full = identity.history().clone();
    assert_eq!(ChangeHistory::import(&full.export()).unwrap(), full);
    assert_eq!(
        identity.rotate(&vault, SigningAlgorithm::Ed25519, NOW.plus_secs(YEAR), YEAR),
        Err(Error::InvalidHistory("too many changes"))
    );
    assert_eq!(
        identity.history(),
        &full,
        "a failed rotation changes nothing"
    );
}

#[test]
fn p256_identities_rotate_and_mix_algorithms() {
    let vault = SoftwareVault::new();
    let mut identity = new_identity(&vault, SigningAlgorithm::EcdsaP256);
    let h0 = identity.history().clone();
    identity
        .rotate(
            &vault,
            SigningAlgorithm::EcdsaP256,
            NOW.plus_secs(DAY),
            YEAR,
        )
        .unwrap();
    identity
        .rotate(
            &vault,
            SigningAlgorithm::Ed25519,
            NOW.plus_secs(2 * DAY),
            YEAR,
        )
        .unwrap();
    let h2 = ChangeHistory::import(&identity.history().export()).unwrap();
    h2.check_extends(&h0).unwrap();
    let keys: Vec<_> = h2
        .changes()
        .iter()
        .map(|c| c.data.public_key.algorithm())
        .collect();
    assert_eq!(
        keys,
        [
            SigningAlgorithm::EcdsaP256,
            SigningAlgorithm::EcdsaP256,
            SigningAlgorithm::Ed25519
        ]
    );
    assert!(matches!(h0.primary_public_key(), PublicKey::EcdsaP256(k) if k[0] == 4));
}

#[test]
fn a_peer_reconnecting_after_rotation_is_recognised_and_its_history_extends_the_stored_one() {
    for algorithm in [SigningAlgorithm::Ed25519, SigningAlgorithm::EcdsaP256] {
        let mut alice = Party::with_algorithm(algorithm);
        let bob = Party::new();
        let only_alice = Arc::new(TrustIdentifiers::new([alice.identity.identifier()]));

        let (_, b) = handshake(alice.config_any(), bob.config(only_alice.clone())).unwrap();
        let stored = b.peer().history.clone();

        // Alice rotates and re-attests her static key with the new primary key.
        let vault = alice.vault.clone();
        alice
            .identity
            .rotate(vault.as_ref(), algorithm, NOW, YEAR)
            .unwrap();
        let public = vault
            .x25519_public_key(&alice.channel_identity.static_key)
            .unwrap();
        alice.channel_identity.history = alice.identity.history().clone();
        alice.channel_identity.attestation = alice
            .identity
            .attest(
                vault.as_ref(),
                latchkey_core::identity::PurposeKey::SecureChannel(public),
                NOW,
                DAY,
            )
            .unwrap();

        let (_, b) = handshake(alice.config_any(), bob.config(only_alice)).unwrap();
        assert_eq!(b.peer_identifier(), alice.identity.identifier());
        assert_eq!(b.peer().history.changes().len(), 2);
        b.peer().history.check_extends(&stored).unwrap();
        assert_eq!(
            stored.check_extends(&b.peer().history),
            Err(Error::HistoryMismatch)
        );
    }
}

#[test]
fn p256_identities_handshake_with_each_other_in_both_suites() {
    for suite in [
        latchkey_core::channel::CipherSuite::ChaChaPoly,
        latchkey_core::channel::CipherSuite::AesGcm,
    ] {
        let alice = Party::with_algorithm(SigningAlgorithm::EcdsaP256);
        let bob = Party::with_algorithm(SigningAlgorithm::EcdsaP256);
        let (mut a, mut b) = handshake(
            suite_config(alice.config_any(), suite),
            suite_config(bob.config_any(), suite),
        )
        .unwrap();
        assert_eq!(a.peer_identifier(), bob.identity.identifier());
        assert_eq!(b.peer_identifier(), alice.identity.identifier());
        let frame = a.encrypt_to_vec(b"p256").unwrap();
        assert_eq!(b.decrypt_to_vec(&frame).unwrap(), b"p256");
        let seen_by_alice = &a.peer().history;
        assert_eq!(
            &ChangeHistory::from_bytes(&seen_by_alice.to_bytes()).unwrap(),
            seen_by_alice
        );
    }
}
