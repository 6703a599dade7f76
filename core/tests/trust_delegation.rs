//! Delegation chains (core/src/credential/delegation.rs): the car-for-a-day story on an injected clock,
//! attenuation that only narrows, and the refusals a verifier owes: widened caveats, forged, reordered or
//! re-rooted links, an untrusted owner, the wrong presenter.

use latchkey_core::credential::{Caveats, Delegation, TrustedAuthorities};
use latchkey_core::identity::{IdentityOptions, LocalIdentity, Vaults};
use latchkey_core::vault::{SigningAlgorithm, SoftwareVault};
use latchkey_core::wire::{Decode, Encode};
use latchkey_core::{Error, Timestamp};
use std::sync::Arc;

const DAY: u64 = 86_400;
/// Day 1 starts at T0; the friend's grant ends when day 2 starts.
const T0: Timestamp = Timestamp(1_800_000_000);

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

fn ed() -> LocalIdentity {
    identity(SigningAlgorithm::Ed25519)
}

#[test]
fn the_friend_opens_the_car_on_day_1_and_is_refused_on_day_2() {
    let owner = ed();
    let friend = ed();
    // The car trusts its owner, and nobody else, as a root of delegations.
    let car_trusts = TrustedAuthorities::new().with(owner.history().clone());
    let for_today = Delegation::issue(
        &owner,
        friend.history(),
        Caveats::new(["car"], ["open", "start"], T0.plus_secs(DAY)).unwrap(),
    )
    .unwrap();
    // What travels to the car: bytes only.
    let bytes = for_today.to_bytes();
    assert_eq!(
        bytes.len(),
        189,
        "one-link delegation, Ed25519, two actions"
    );
    let presented = Delegation::from_bytes(&bytes).unwrap();

    let morning = T0.plus_secs(8 * 3600);
    presented
        .authorize(&car_trusts, &friend.identifier(), "car", "open", morning)
        .unwrap();
    presented
        .authorize(
            &car_trusts,
            &friend.identifier(),
            "car",
            "start",
            T0.plus_secs(DAY - 1),
        )
        .unwrap();
    // Day 2: refused.
    assert_eq!(
        presented.authorize(
            &car_trusts,
            &friend.identifier(),
            "car",
            "open",
            T0.plus_secs(DAY)
        ),
        Err(Error::Expired("delegation"))
    );
    // Not the trunk, not another resource.
    assert!(matches!(
        presented.authorize(&car_trusts, &friend.identifier(), "car", "trunk", morning),
        Err(Error::PolicyDenied(_))
    ));
    assert!(matches!(
        presented.authorize(&car_trusts, &friend.identifier(), "house", "open", morning),
        Err(Error::PolicyDenied(_))
    ));
    // A thief who copied the bytes is not the friend (the channel authenticates the presenter).
    let thief = ed();
    assert!(matches!(
        presented.authorize(&car_trusts, &thief.identifier(), "car", "open", morning),
        Err(Error::SubjectMismatch(_))
    ));
    // Another car, whose owner is someone else, does not trust this owner.
    let other_car = TrustedAuthorities::new().with(thief.history().clone());
    assert_eq!(
        presented.authorize(&other_car, &friend.identifier(), "car", "open", morning),
        Err(Error::UntrustedIssuer(owner.identifier()))
    );
}

#[test]
fn a_holder_narrows_and_passes_on_but_never_widens() {
    let owner = ed();
    let friend = ed();
    let valet = identity(SigningAlgorithm::EcdsaP256);
    let trusts = TrustedAuthorities::new().with(owner.history().clone());
    let grant = Delegation::issue(
        &owner,
        friend.history(),
        Caveats::new(["car"], ["open", "start"], T0.plus_secs(DAY)).unwrap(),
    )
    .unwrap();
    let noon = T0.plus_secs(12 * 3600);
    let to_valet = grant
        .attenuate(
            &friend,
            valet.history(),
            Caveats::new(["car"], ["start"], noon).unwrap(),
        )
        .unwrap();
    let to_valet = Delegation::from_bytes(&to_valet.to_bytes()).unwrap();
    to_valet
        .authorize(
            &trusts,
            &valet.identifier(),
            "car",
            "start",
            T0.plus_secs(3600),
        )
        .unwrap();
    assert!(matches!(
        to_valet.authorize(&trusts, &valet.identifier(), "car", "open", T0),
        Err(Error::PolicyDenied(_))
    ));
    assert_eq!(
        to_valet.authorize(&trusts, &valet.identifier(), "car", "start", noon),
        Err(Error::Expired("delegation"))
    );
    // The friend is no longer the presenter of this chain.
    assert!(matches!(
        to_valet.authorize(&trusts, &friend.identifier(), "car", "start", T0),
        Err(Error::SubjectMismatch(_))
    ));
    // attenuate refuses to widen: another action, another resource, a later end.
    for wider in [
        Caveats::new(["car"], ["start", "trunk"], noon).unwrap(),
        Caveats::new(["car", "house"], ["start"], noon).unwrap(),
        Caveats::new(["car"], ["start"], T0.plus_secs(2 * DAY)).unwrap(),
    ] {
        assert!(matches!(
            grant.attenuate(&friend, valet.history(), wider),
            Err(Error::CaveatWidened(_))
        ));
    }
    // Only the holder can attenuate.
    assert!(matches!(
        grant.attenuate(
            &valet,
            valet.history(),
            Caveats::new(["car"], ["start"], noon).unwrap()
        ),
        Err(Error::InvalidDelegation(_))
    ));
}

#[test]
fn a_widened_caveat_or_a_forged_link_is_refused_with_typed_errors() {
    let owner = ed();
    let friend = ed();
    let accomplice = ed();
    let trusts = TrustedAuthorities::new().with(owner.history().clone());
    let grant = Delegation::issue(
        &owner,
        friend.history(),
        Caveats::new(["car"], ["open"], T0.plus_secs(DAY)).unwrap(),
    )
    .unwrap();
    let sign_as = |signer: &LocalIdentity, chain: &Delegation, caveats: Caveats| {
        chain
            .extend_unchecked(
                signer.vaults().signing().as_ref(),
                signer.primary_key(),
                accomplice.identifier(),
                accomplice.history().primary_public_key().clone(),
                caveats,
            )
            .unwrap()
    };
    // The friend signs a link that widens (a week, the trunk): correctly signed, refused as widened.
    let week = sign_as(
        &friend,
        &grant,
        Caveats::new(["car"], ["open"], T0.plus_secs(7 * DAY)).unwrap(),
    );
    assert!(matches!(
        week.verify(&trusts, &accomplice.identifier(), T0),
        Err(Error::CaveatWidened(_))
    ));
    let trunk = sign_as(
        &friend,
        &grant,
        Caveats::new(["car"], ["open", "trunk"], T0.plus_secs(DAY)).unwrap(),
    );
    assert!(matches!(
        trunk.verify(&trusts, &accomplice.identifier(), T0),
        Err(Error::CaveatWidened(_))
    ));
    // The accomplice signs a link itself, as if the friend had: a forged link.
    let forged = sign_as(
        &accomplice,
        &grant,
        Caveats::new(["car"], ["open"], T0.plus_secs(DAY)).unwrap(),
    );
    assert!(matches!(
        forged.verify(&trusts, &accomplice.identifier(), T0),
        Err(Error::InvalidDelegation(_))
    ));
    // A root link signed by someone but the owner, claiming the owner.
    let fake_root = Delegation::issue_with(
        accomplice.vaults().signing().as_ref(),
        accomplice.primary_key(),
        owner.identifier(),
        accomplice.identifier(),
        accomplice.history().primary_public_key().clone(),
        Caveats::new(["car"], ["open"], T0.plus_secs(DAY)).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        fake_root.verify(&trusts, &accomplice.identifier(), T0),
        Err(Error::InvalidDelegation(_))
    ));
    // The caveats of a signed link edited in transit: the signature no longer covers them.
    let mut edited = grant.clone();
    edited.links[0].body.caveats = Caveats::new(["car"], ["open"], T0.plus_secs(30 * DAY)).unwrap();
    assert!(matches!(
        edited.verify(&trusts, &friend.identifier(), T0),
        Err(Error::InvalidDelegation(_))
    ));
    // A valid second link moved onto another chain of the same owner and holder: its signature covered the
    // first chain's hash, so it does not verify there.
    let narrow = grant
        .attenuate(
            &friend,
            accomplice.history(),
            Caveats::new(["car"], ["open"], T0.plus_secs(3600)).unwrap(),
        )
        .unwrap();
    let other_grant = Delegation::issue(
        &owner,
        friend.history(),
        Caveats::new(["car"], ["open"], T0.plus_secs(DAY - 1)).unwrap(),
    )
    .unwrap();
    let mut spliced = other_grant.clone();
    spliced.links.push(narrow.links[1].clone());
    assert!(matches!(
        spliced.verify(&trusts, &accomplice.identifier(), T0),
        Err(Error::InvalidDelegation(_))
    ));
    // Every byte of a two-link chain flipped: never accepted.
    let bytes = narrow.to_bytes();
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        let verdict = Delegation::from_bytes(&b)
            .and_then(|d| d.verify(&trusts, &accomplice.identifier(), T0).map(|_| ()));
        assert!(verdict.is_err(), "flipped byte {i} accepted");
    }
    // Link ids differ per link and per chain (revocation names them).
    let ids = narrow.link_ids();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], grant.link_ids()[0]);
    assert_ne!(ids[0], ids[1]);
    assert_ne!(other_grant.link_ids()[0], ids[0]);
}

#[test]
fn chains_are_bounded() {
    let owner = ed();
    let ids: Vec<_> = (0..9).map(|_| ed()).collect();
    let trusts = TrustedAuthorities::new().with(owner.history().clone());
    let caveats = || Caveats::new(["r"], ["a"], T0.plus_secs(DAY)).unwrap();
    let mut chain = Delegation::issue(&owner, ids[0].history(), caveats()).unwrap();
    for i in 1..8 {
        chain = chain
            .attenuate(&ids[i - 1], ids[i].history(), caveats())
            .unwrap();
    }
    chain.verify(&trusts, &ids[7].identifier(), T0).unwrap();
    assert!(matches!(
        chain.attenuate(&ids[7], ids[8].history(), caveats()),
        Err(Error::InvalidDelegation(_))
    ));
    assert!(Caveats::new(Vec::<String>::new(), ["a"], T0).is_err());
    assert!(Caveats::new(["x".repeat(65)], ["a"], T0).is_err());
}
