//! Revocation lists (core/src/credential/revocation.rs): signed by a trusted authority, the monotonic
//! sequence rule, and what a list in force refuses (peers, credentials, delegation links).

use latchkey_core::credential::{
    history_hash, Attributes, Caveats, Credential, CredentialBody, Delegation, Installed,
    RevocationBody, RevocationList, RevocationState, TrustedAuthorities,
};
use latchkey_core::identity::{IdentityOptions, LocalIdentity, Vaults};
use latchkey_core::vault::SoftwareVault;
use latchkey_core::wire::{Decode, Encode};
use latchkey_core::{Error, Timestamp};
use std::sync::Arc;

const T0: Timestamp = Timestamp(1_800_000_000);
const DAY: u64 = 86_400;

fn ed() -> LocalIdentity {
    LocalIdentity::create_in(
        Vaults::software(Arc::new(SoftwareVault::new())),
        IdentityOptions::default(),
        T0,
    )
    .unwrap()
}

fn credential(authority: &LocalIdentity, device: &LocalIdentity) -> Credential {
    Credential::issue(
        authority,
        CredentialBody {
            subject: device.identifier(),
            subject_history: history_hash(device.history()),
            issuer: authority.identifier(),
            attributes: Attributes::from_pairs([("role", "member")]).unwrap(),
            not_before: T0,
            not_after: T0.plus_secs(30 * DAY),
        },
    )
    .unwrap()
}

#[test]
fn lists_are_verified_and_an_older_list_never_replaces_a_newer_one() {
    let authority = ed();
    let trusted = TrustedAuthorities::new().with(authority.history().clone());
    let device = ed();
    let other = ed();
    let cred = credential(&authority, &device);
    let other_cred = credential(&authority, &other);

    let mut body = RevocationBody::new(authority.identifier(), 1, T0);
    body.credentials.insert(cred.id());
    let v1 = RevocationList::issue(&authority, body).unwrap();
    let v1 = RevocationList::from_bytes(&v1.to_bytes()).unwrap();

    let mut state = RevocationState::new();
    assert_eq!(
        state.install(v1.clone(), &trusted, T0).unwrap(),
        Installed::New
    );
    assert_eq!(
        state.install(v1.clone(), &trusted, T0).unwrap(),
        Installed::Unchanged
    );
    assert_eq!(
        state.check_credential(&cred),
        Err(Error::Revoked("credential"))
    );
    state.check_credential(&other_cred).unwrap();
    state.check_peer(&device.identifier()).unwrap();

    // Sequence 2 revokes the other device as a whole and un-revokes the first credential (lists are
    // complete, not deltas).
    let mut body = RevocationBody::new(authority.identifier(), 2, T0.plus_secs(60));
    body.identifiers.insert(other.identifier());
    let v2 = RevocationList::issue(&authority, body).unwrap();
    assert_eq!(
        state.install(v2, &trusted, T0.plus_secs(60)).unwrap(),
        Installed::New
    );
    assert_eq!(state.sequence(&authority.identifier()), Some(2));
    state.check_credential(&cred).unwrap();
    assert_eq!(
        state.check_peer(&other.identifier()),
        Err(Error::Revoked("identifier"))
    );
    assert_eq!(
        state.check_credential(&other_cred),
        Err(Error::Revoked("identifier"))
    );

    // Replaying list 1: refused, state unchanged.
    assert_eq!(
        state.install(v1, &trusted, T0.plus_secs(120)),
        Err(Error::StaleRevocationList {
            current: 2,
            presented: 1
        })
    );
    assert_eq!(state.sequence(&authority.identifier()), Some(2));
    // Another list with the same sequence number but different contents: refused too.
    let conflicting = RevocationList::issue(
        &authority,
        RevocationBody::new(authority.identifier(), 2, T0),
    )
    .unwrap();
    assert!(matches!(
        state.install(conflicting, &trusted, T0),
        Err(Error::StaleRevocationList { .. })
    ));
    assert_eq!(
        state.check_peer(&other.identifier()),
        Err(Error::Revoked("identifier"))
    );
}

#[test]
fn only_trusted_authorities_sign_lists() {
    let authority = ed();
    let impostor = ed();
    let trusted = TrustedAuthorities::new().with(authority.history().clone());
    let mut state = RevocationState::new();
    // The impostor's own list: not a trusted issuer.
    let own = RevocationList::issue(&impostor, RevocationBody::new(impostor.identifier(), 9, T0))
        .unwrap();
    assert_eq!(
        state.install(own, &trusted, T0),
        Err(Error::UntrustedIssuer(impostor.identifier()))
    );
    // A list claiming the authority, signed by the impostor.
    let forged = RevocationList::issue_with(
        impostor.vaults().signing().as_ref(),
        impostor.primary_key(),
        RevocationBody::new(authority.identifier(), 99, T0),
    )
    .unwrap();
    assert_eq!(
        state.install(forged, &trusted, T0),
        Err(Error::InvalidSignature)
    );
    // Dated beyond the clock-skew allowance.
    let future = RevocationList::issue(
        &authority,
        RevocationBody::new(authority.identifier(), 1, T0.plus_secs(3600)),
    )
    .unwrap();
    assert!(matches!(
        state.install(future, &trusted, T0),
        Err(Error::Expired(_))
    ));
    assert_eq!(state.sequence(&authority.identifier()), None);
    // Every flipped byte of a real list: refused at decode or install.
    let mut body = RevocationBody::new(authority.identifier(), 3, T0);
    body.identifiers.insert(impostor.identifier());
    body.credentials.insert([5; 16]);
    body.delegations.insert([6; 16]);
    let bytes = RevocationList::issue(&authority, body).unwrap().to_bytes();
    assert_eq!(
        bytes.len(),
        1 + 32 + 8 + 8 + (4 + 32) + (4 + 16) + (4 + 16) + 65
    );
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        let verdict = RevocationList::from_bytes(&b)
            .and_then(|l| RevocationState::new().install(l, &trusted, T0).map(|_| ()));
        assert!(verdict.is_err(), "flipped byte {i} accepted");
    }
    // A count that claims more entries than there are bytes is refused before allocating.
    let mut huge = bytes[..49].to_vec();
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        RevocationList::from_bytes(&huge),
        Err(Error::Decode(_))
    ));
}

#[test]
fn a_revoked_delegation_link_or_delegate_stops_the_chain() {
    let owner = ed();
    let friend = ed();
    let valet = ed();
    let trusted = TrustedAuthorities::new().with(owner.history().clone());
    let grant = Delegation::issue(
        &owner,
        friend.history(),
        Caveats::new(["car"], ["open"], T0.plus_secs(DAY)).unwrap(),
    )
    .unwrap();
    let passed = grant
        .attenuate(
            &friend,
            valet.history(),
            Caveats::new(["car"], ["open"], T0.plus_secs(DAY)).unwrap(),
        )
        .unwrap();
    let mut state = RevocationState::new();
    state.check_delegation(&passed).unwrap();
    // The owner revokes the first link: the chain through it dies too.
    let mut body = RevocationBody::new(owner.identifier(), 1, T0);
    body.delegations.insert(grant.link_ids()[0]);
    state
        .install(RevocationList::issue(&owner, body).unwrap(), &trusted, T0)
        .unwrap();
    assert_eq!(
        state.check_delegation(&grant),
        Err(Error::Revoked("delegation link"))
    );
    assert_eq!(
        state.check_delegation(&passed),
        Err(Error::Revoked("delegation link"))
    );
    // Revoking a delegate's identifier also stops every chain through it.
    let mut body = RevocationBody::new(owner.identifier(), 2, T0);
    body.identifiers.insert(friend.identifier());
    state
        .install(RevocationList::issue(&owner, body).unwrap(), &trusted, T0)
        .unwrap();
    assert_eq!(
        state.check_delegation(&passed),
        Err(Error::Revoked("identifier"))
    );
}

/// `n - s` for the P-256 group order `n` (big-endian, 32 bytes): the other valid form of an ECDSA signature.
fn p256_negate_s(s: &[u8]) -> [u8; 32] {
    let n =
        hex::decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551").unwrap();
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = n[i] as i16 - s[i] as i16 - borrow;
        borrow = 0;
        if d < 0 {
            d += 256;
            borrow = 1;
        }
        out[i] = d as u8;
    }
    out
}

#[test]
fn a_re_encoded_ecdsa_signature_does_not_change_a_link_id_or_slip_past_revocation() {
    let options = IdentityOptions {
        algorithm: latchkey_core::vault::SigningAlgorithm::EcdsaP256,
        ..IdentityOptions::default()
    };
    let owner = LocalIdentity::create_in(
        Vaults::software(Arc::new(SoftwareVault::new())),
        options,
        T0,
    )
    .unwrap();
    let friend = ed();
    let trusted = TrustedAuthorities::new().with(owner.history().clone());
    let grant = Delegation::issue(
        &owner,
        friend.history(),
        Caveats::new(["car"], ["open"], T0.plus_secs(DAY)).unwrap(),
    )
    .unwrap();
    let mut twin = grant.clone();
    let sig = twin.links[0].signature.as_bytes();
    let mut bytes = *sig;
    bytes[32..].copy_from_slice(&p256_negate_s(&sig[32..]));
    twin.links[0].signature = latchkey_core::vault::Signature::new(
        latchkey_core::vault::SigningAlgorithm::EcdsaP256,
        bytes,
    );
    assert_ne!(twin, grant);
    // Whether or not the verifier accepts the high-s form, the link id is the same, so a list that revokes
    // the link revokes its twin.
    assert_eq!(twin.link_ids(), grant.link_ids());
    let mut body = RevocationBody::new(owner.identifier(), 1, T0);
    body.delegations.insert(grant.link_ids()[0]);
    let mut state = RevocationState::new();
    state
        .install(RevocationList::issue(&owner, body).unwrap(), &trusted, T0)
        .unwrap();
    assert_eq!(
        state.check_delegation(&twin),
        Err(Error::Revoked("delegation link"))
    );
}
