//! The pinning decision (`ChangeHistory::check_pinned`, PROTOCOL.md 3.5 and 3.8): a pure function of the
//! pinned history and the presented one. Rollbacks, forks and forks signed by an expired key are each refused
//! with their own error; extensions by honest rotations are accepted.

mod common;

use common::*;
use latchkey_core::identity::{
    Change, ChangeData, ChangeHistory, Identity, PinCheck, MAX_KEY_LIFETIME_SECS,
};
use latchkey_core::vault::{KeyId, SigningAlgorithm, SigningVault, SoftwareVault};
use latchkey_core::{Error, Timestamp};

const YEAR: u64 = 365 * DAY;

fn signed_rotation(
    vault: &SoftwareVault,
    history: &ChangeHistory,
    previous_key: &KeyId,
    created_at: Timestamp,
    expires_at: Timestamp,
) -> (ChangeHistory, KeyId) {
    let new_key = vault
        .generate_signing_key(SigningAlgorithm::Ed25519)
        .unwrap();
    let data = ChangeData {
        previous: history.changes().last().unwrap().data.hash(),
        public_key: vault.signing_public_key(&new_key).unwrap(),
        created_at,
        expires_at,
    };
    let hash = data.hash();
    let change = Change {
        self_signature: vault.sign(&new_key, &hash).unwrap(),
        previous_signature: Some(vault.sign(previous_key, &hash).unwrap()),
        data,
    };
    (history.with_change(change).unwrap(), new_key)
}

#[test]
fn first_contact_pins_and_equal_or_extended_histories_are_accepted() {
    let vault = SoftwareVault::new();
    let mut identity = Identity::create(&vault, SigningAlgorithm::Ed25519, NOW, YEAR).unwrap();
    let h0 = identity.history().clone();
    assert_eq!(h0.check_pinned(None), Ok(PinCheck::FirstContact));
    assert_eq!(h0.check_pinned(Some(&h0)), Ok(PinCheck::Unchanged));
    identity
        .rotate(&vault, SigningAlgorithm::Ed25519, NOW.plus_secs(DAY), YEAR)
        .unwrap();
    identity
        .rotate(
            &vault,
            SigningAlgorithm::Ed25519,
            NOW.plus_secs(2 * DAY),
            YEAR,
        )
        .unwrap();
    let h2 = identity.history().clone();
    assert_eq!(h2.check_pinned(Some(&h0)), Ok(PinCheck::Extended(2)));
    assert_eq!(h2.check_pinned(Some(&h2)), Ok(PinCheck::Unchanged));
}

#[test]
fn a_rollback_to_an_older_state_is_refused_as_a_rollback() {
    let vault = SoftwareVault::new();
    let mut identity = Identity::create(&vault, SigningAlgorithm::Ed25519, NOW, YEAR).unwrap();
    let h0 = identity.history().clone();
    identity
        .rotate(&vault, SigningAlgorithm::Ed25519, NOW.plus_secs(DAY), YEAR)
        .unwrap();
    let h1 = identity.history().clone();
    assert_eq!(h0.check_pinned(Some(&h1)), Err(Error::HistoryRollback));
    assert_eq!(Error::HistoryRollback.name(), "HistoryRollback");
    assert_eq!(Error::HistoryRollback.code(), 21);
}

#[test]
fn a_fork_from_an_old_key_is_refused_as_a_fork_whichever_is_longer() {
    let vault = SoftwareVault::new();
    let identity = Identity::create(&vault, SigningAlgorithm::Ed25519, NOW, YEAR).unwrap();
    let k0 = identity.primary_key().clone();
    let h0 = identity.history().clone();
    // The owner rotates; the peer pins that. The thief, holding k0, signs another rotation.
    let (genuine, k1) = signed_rotation(&vault, &h0, &k0, NOW.plus_secs(DAY), NOW.plus_secs(YEAR));
    let (fork, thief_key) = signed_rotation(
        &vault,
        &h0,
        &k0,
        NOW.plus_secs(2 * DAY),
        NOW.plus_secs(YEAR),
    );
    assert_eq!(fork.check_pinned(Some(&genuine)), Err(Error::HistoryFork));
    // A longer fork is still a fork.
    let (longer, _) = signed_rotation(
        &vault,
        &fork,
        &thief_key,
        NOW.plus_secs(3 * DAY),
        NOW.plus_secs(YEAR),
    );
    assert_eq!(longer.check_pinned(Some(&genuine)), Err(Error::HistoryFork));
    // So is a shorter history that is not a prefix of the pin.
    let (genuine2, _) = signed_rotation(
        &vault,
        &genuine,
        &k1,
        NOW.plus_secs(4 * DAY),
        NOW.plus_secs(YEAR),
    );
    assert_eq!(fork.check_pinned(Some(&genuine2)), Err(Error::HistoryFork));
    assert_eq!(
        genuine2.check_pinned(Some(&genuine)),
        Ok(PinCheck::Extended(1))
    );
    // Another identity entirely is a mismatch, not a fork.
    let other = Identity::create(&vault, SigningAlgorithm::Ed25519, NOW, YEAR).unwrap();
    assert_eq!(
        other.history().check_pinned(Some(&genuine)),
        Err(Error::HistoryMismatch)
    );
}

#[test]
fn a_fork_signed_by_an_expired_key_is_refused_dated_late_or_backdated_with_a_long_life() {
    let vault = SoftwareVault::new();
    // A key valid for one day; the peer pinned it.
    let identity = Identity::create(&vault, SigningAlgorithm::Ed25519, NOW, DAY).unwrap();
    let k0 = identity.primary_key().clone();
    let pinned = identity.history().clone();
    let expired = NOW.plus_secs(DAY);
    // Honestly dated after the key expired.
    let (late, _) = signed_rotation(&vault, &pinned, &k0, expired, expired.plus_secs(YEAR));
    assert_eq!(
        late.check_pinned(Some(&pinned)),
        Err(Error::KeyLifetimeExceeded(
            "rotation created after the previous key expired"
        ))
    );
    // Back-dated into the key's life, but then the new key must outlive the maximum to be of use for long.
    let (backdated, _) = signed_rotation(
        &vault,
        &pinned,
        &k0,
        NOW.plus_secs(DAY - 1),
        NOW.plus_secs(DAY - 1 + MAX_KEY_LIFETIME_SECS + 1),
    );
    assert_eq!(
        backdated.check_pinned(Some(&pinned)),
        Err(Error::KeyLifetimeExceeded(
            "key valid for longer than the maximum key lifetime"
        ))
    );
    // The same rules hold at first contact.
    assert!(matches!(
        late.check_pinned(None),
        Err(Error::KeyLifetimeExceeded(_))
    ));
    // A rotation inside the key's life, within the maximum, is an honest extension.
    let (honest, _) = signed_rotation(
        &vault,
        &pinned,
        &k0,
        NOW.plus_secs(DAY - 1),
        NOW.plus_secs(DAY - 1 + MAX_KEY_LIFETIME_SECS),
    );
    assert_eq!(
        honest.check_pinned(Some(&pinned)),
        Ok(PinCheck::Extended(1))
    );
}
