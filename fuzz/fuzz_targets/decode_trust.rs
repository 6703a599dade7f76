//! Trust formats (PROTOCOL.md §11–13): credentials, delegation chains, revocation lists, and their parts.
//! Input: `selector: u8 ‖ now: u64 ‖ bytes` (selector 0 credential, 1 delegation, 2 revocation list,
//! 3 attributes, 4 caveats).
//!
//! Checks: no panic; canonical re-encoding (one encoding per value); against the vector authority and owner,
//! whatever verifies obeys the rules: a credential is by a trusted issuer, valid at `now`, about the
//! presenter and its history; a delegation's presenter is its last delegate, every link narrows the one
//! before and the chain is unexpired; a revocation list is by a trusted issuer and not dated in the future.
#![no_main]

use latchkey_core::credential::{
    Attributes, Caveats, Credential, Delegation, RevocationList, RevocationState,
};
use latchkey_core::identity::MAX_CLOCK_SKEW_SECS;
use latchkey_core::wire::{Decode, Encode};
use latchkey_core::Timestamp;
use latchkey_fuzz::{trust, Cursor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let selector = input.u8() % 5;
    let now = Timestamp(input.u64());
    let bytes = input.rest();
    let v = trust::vectors();
    match selector {
        0 => {
            let Ok(cred) = Credential::from_bytes(bytes) else {
                return;
            };
            assert_eq!(cred.to_bytes(), bytes, "credential not canonical");
            for presenter in [&v.device, &v.valet, &v.owner] {
                if cred
                    .verify(&v.trusted, &presenter.identifier(), presenter, now)
                    .is_ok()
                {
                    assert!(v.trusted.contains(&cred.body.issuer));
                    assert_eq!(cred.body.subject, presenter.identifier());
                    assert!(now < cred.body.not_after);
                    assert!(cred.body.not_before <= now.plus_secs(MAX_CLOCK_SKEW_SECS));
                    assert!(latchkey_core::credential::history_contains(
                        presenter,
                        &cred.body.subject_history
                    ));
                }
            }
        }
        1 => {
            let Ok(chain) = Delegation::from_bytes(bytes) else {
                return;
            };
            assert_eq!(chain.to_bytes(), bytes, "delegation not canonical");
            assert_eq!(chain.link_ids().len(), chain.links.len());
            for presenter in [&v.device, &v.valet, &v.owner] {
                if let Ok(effective) = chain.verify(&v.trusted, &presenter.identifier(), now) {
                    assert!(v.trusted.contains(&chain.owner));
                    assert_eq!(chain.holder(), Some(&presenter.identifier()));
                    assert!(now < effective.not_after);
                    for pair in chain.links.windows(2) {
                        pair[1]
                            .body
                            .caveats
                            .check_narrower_than(&pair[0].body.caveats)
                            .expect("an accepted chain only narrows");
                    }
                }
            }
        }
        2 => {
            let Ok(list) = RevocationList::from_bytes(bytes) else {
                return;
            };
            assert_eq!(list.to_bytes(), bytes, "revocation list not canonical");
            let mut state = RevocationState::new();
            if state.install(list.clone(), &v.trusted, now).is_ok() {
                assert!(v.trusted.contains(&list.body.issuer));
                assert!(list.body.issued_at <= now.plus_secs(MAX_CLOCK_SKEW_SECS));
                for id in &list.body.identifiers {
                    assert!(state.check_peer(id).is_err());
                }
                // The monotonic rule: the same list again changes nothing; nothing older gets in.
                assert!(state.install(list.clone(), &v.trusted, now).is_ok());
                assert_eq!(state.sequence(&list.body.issuer), Some(list.body.sequence));
            }
        }
        3 => {
            if let Ok(attrs) = Attributes::from_bytes(bytes) {
                assert_eq!(attrs.to_bytes(), bytes, "attributes not canonical");
            }
        }
        _ => {
            if let Ok(caveats) = Caveats::from_bytes(bytes) {
                assert_eq!(caveats.to_bytes(), bytes, "caveats not canonical");
                caveats
                    .check_narrower_than(&caveats)
                    .expect("a caveat narrows itself");
            }
        }
    }
});
