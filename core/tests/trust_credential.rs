//! Credentials (core/src/credential): issued through the vault, encoded by `wire`, verified against trusted
//! authorities, a validity window on an injected clock, and the presenting peer's history (rotation keeps
//! membership; another identity or a fork does not).

use latchkey_core::credential::{
    history_hash, Attributes, Credential, CredentialBody, TrustedAuthorities,
};
use latchkey_core::identity::{IdentityOptions, LocalIdentity, Vaults};
use latchkey_core::vault::{SigningAlgorithm, SoftwareVault};
use latchkey_core::wire::{Decode, Encode};
use latchkey_core::{Error, Timestamp};
use std::sync::Arc;

const T0: Timestamp = Timestamp(1_800_000_000);
const DAY: u64 = 86_400;

fn identity(algorithm: SigningAlgorithm) -> LocalIdentity {
    let options = IdentityOptions {
        algorithm,
        ..IdentityOptions::default()
    };
    LocalIdentity::create_in(
        Vaults::software(Arc::new(SoftwareVault::new())),
        options,
        T0,
    )
    .unwrap()
}

fn member_credential(authority: &LocalIdentity, device: &LocalIdentity) -> Credential {
    Credential::issue(
        authority,
        CredentialBody {
            subject: device.identifier(),
            subject_history: history_hash(device.history()),
            issuer: authority.identifier(),
            attributes: Attributes::from_pairs([("role", "engineer")]).unwrap(),
            not_before: T0,
            not_after: T0.plus_secs(30 * DAY),
        },
    )
    .unwrap()
}

#[test]
fn a_typical_credential_is_at_most_200_bytes_and_round_trips() {
    let authority = identity(SigningAlgorithm::Ed25519);
    let device = identity(SigningAlgorithm::Ed25519);
    let cred = member_credential(&authority, &device);
    let bytes = cred.to_bytes();
    // 1 version + 3 × 32 (subject, history hash, issuer) + 2 × 8 (window) + attributes (1 + 5 + 9) + 65.
    assert_eq!(bytes.len(), 193, "one-attribute Ed25519 credential");
    let back = Credential::from_bytes(&bytes).unwrap();
    assert_eq!(back, cred);
    assert_eq!(back.id(), cred.id());
    // Every strict prefix and any trailing byte is a decode error.
    for cut in 0..bytes.len() {
        assert!(matches!(
            Credential::from_bytes(&bytes[..cut]),
            Err(Error::Decode(_))
        ));
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        Credential::from_bytes(&longer),
        Err(Error::Decode(_))
    ));
}

#[test]
fn verification_checks_issuer_signature_window_and_subject() {
    let authority = identity(SigningAlgorithm::Ed25519);
    let device = identity(SigningAlgorithm::Ed25519);
    let other = identity(SigningAlgorithm::Ed25519);
    let trusted = TrustedAuthorities::new().with(authority.history().clone());
    let cred = member_credential(&authority, &device);

    let attrs = cred
        .verify(
            &trusted,
            &device.identifier(),
            device.history(),
            T0.plus_secs(DAY),
        )
        .unwrap();
    assert_eq!(attrs.get("role"), Some("engineer"));

    // Not trusted: nobody named the authority.
    assert_eq!(
        cred.verify(
            &TrustedAuthorities::new(),
            &device.identifier(),
            device.history(),
            T0
        ),
        Err(Error::UntrustedIssuer(authority.identifier()))
    );
    // Expired at not_after, not yet valid before not_before (beyond the clock-skew allowance).
    assert!(matches!(
        cred.verify(
            &trusted,
            &device.identifier(),
            device.history(),
            T0.plus_secs(30 * DAY)
        ),
        Err(Error::Expired(_))
    ));
    assert!(matches!(
        cred.verify(
            &trusted,
            &device.identifier(),
            device.history(),
            Timestamp(T0.0 - 301)
        ),
        Err(Error::Expired(_))
    ));
    // Presented by another identity.
    assert!(matches!(
        cred.verify(&trusted, &other.identifier(), other.history(), T0),
        Err(Error::SubjectMismatch(_))
    ));
    // A credential issued by someone else claiming the authority as issuer: the signature does not verify.
    let mut forged_body = cred.body.clone();
    forged_body.attributes = Attributes::from_pairs([("role", "admin")]).unwrap();
    let forged = Credential::issue_with(
        other.vaults().signing().as_ref(),
        other.primary_key(),
        forged_body,
    )
    .unwrap();
    assert!(matches!(
        forged.verify(&trusted, &device.identifier(), device.history(), T0),
        Err(Error::InvalidCredential(_))
    ));
    // Every byte of the encoding flipped: refused (decode or verification), never accepted.
    let bytes = cred.to_bytes();
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        let verdict = Credential::from_bytes(&b).and_then(|c| {
            c.verify(&trusted, &device.identifier(), device.history(), T0)
                .map(|_| ())
        });
        assert!(verdict.is_err(), "flipped byte {i} accepted");
    }
}

#[test]
fn a_device_that_rotates_its_identity_key_keeps_its_membership_and_a_fork_does_not() {
    let authority = identity(SigningAlgorithm::Ed25519);
    let device = identity(SigningAlgorithm::Ed25519);
    let trusted = TrustedAuthorities::new().with(authority.history().clone());
    let cred = member_credential(&authority, &device);
    let (rotated, _old) = device.rotated(None, T0.plus_secs(DAY)).unwrap();
    let (twice, _) = rotated.rotated(None, T0.plus_secs(2 * DAY)).unwrap();
    for h in [rotated.history(), twice.history()] {
        cred.verify(&trusted, &device.identifier(), h, T0.plus_secs(3 * DAY))
            .unwrap();
    }
    // A credential issued after the rotation names the rotated history: the older history (a rollback)
    // does not contain that change.
    let newer = member_credential(&authority, &rotated);
    assert!(matches!(
        newer.verify(&trusted, &device.identifier(), device.history(), T0),
        Err(Error::SubjectMismatch(_))
    ));
    // A fork: the same identity rotated differently from the enrolled state is still the same first change,
    // so a credential for the enrolled first state matches it, but a credential for one branch does not
    // match the other branch.
    let (fork, _) = device.rotated(None, T0.plus_secs(DAY)).unwrap();
    assert!(matches!(
        newer.verify(&trusted, &device.identifier(), fork.history(), T0),
        Err(Error::SubjectMismatch(_))
    ));
}

#[test]
fn p256_authorities_and_subjects_work_and_the_authority_rotation_needs_a_new_credential() {
    let authority = identity(SigningAlgorithm::EcdsaP256);
    let device = identity(SigningAlgorithm::EcdsaP256);
    let cred = member_credential(&authority, &device);
    let trusted = TrustedAuthorities::new().with(authority.history().clone());
    cred.verify(&trusted, &device.identifier(), device.history(), T0)
        .unwrap();
    assert_eq!(cred.to_bytes().len(), 193);
    // The authority rotates: only its current key signs credentials that verify.
    let (rotated_authority, _) = authority.rotated(None, T0.plus_secs(10)).unwrap();
    let trusted = TrustedAuthorities::new().with(rotated_authority.history().clone());
    assert!(matches!(
        cred.verify(&trusted, &device.identifier(), device.history(), T0),
        Err(Error::InvalidCredential(_))
    ));
    member_credential(&rotated_authority, &device)
        .verify(&trusted, &device.identifier(), device.history(), T0)
        .unwrap();
}

#[test]
fn attribute_limits_are_enforced_when_building_and_decoding() {
    assert!(Attributes::from_pairs([("Role", "x")]).is_err());
    assert!(Attributes::from_pairs([("", "x")]).is_err());
    assert!(Attributes::from_pairs([("a".repeat(33), "x".to_string())]).is_err());
    assert!(Attributes::from_pairs([("role", "x".repeat(129))]).is_err());
    let many: Vec<_> = (0..17)
        .map(|i| (format!("a{i}"), "v".to_string()))
        .collect();
    assert!(Attributes::from_pairs(many).is_err());
    // Out-of-order attributes on the wire are refused (one encoding per map).
    let good = Attributes::from_pairs([("a", "1"), ("b", "2")])
        .unwrap()
        .to_bytes();
    let swapped = [&good[..1], &good[5..9], &good[1..5]].concat();
    assert!(Attributes::from_bytes(&swapped).is_err());
    // A window that ends before it starts is refused when issuing.
    let authority = identity(SigningAlgorithm::Ed25519);
    let body = CredentialBody {
        subject: authority.identifier(),
        subject_history: history_hash(authority.history()),
        issuer: authority.identifier(),
        attributes: Attributes::new(),
        not_before: T0,
        not_after: T0,
    };
    assert!(matches!(
        Credential::issue(&authority, body),
        Err(Error::InvalidCredential(_))
    ));
}
