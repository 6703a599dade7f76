//! Attestations (PROTOCOL.md §4): `Attestation` and `AttestationData` decoding, then verification against
//! every history of the identity vectors. Input: `now: u64 ‖ attestation bytes`.
//!
//! Checks: no panic; canonical re-encoding; an attestation that verifies is about that history's identifier,
//! for the key it names, and valid at `now` (the rules of §4.4 hold for every accepted input).
#![no_main]

use latchkey_core::identity::{Attestation, AttestationData, MAX_CLOCK_SKEW_SECS};
use latchkey_core::wire::{Decode, Encode};
use latchkey_core::Timestamp;
use latchkey_fuzz::{fixtures, Cursor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let now = Timestamp(input.u64());
    let bytes = input.rest();
    if let Ok(inner) = AttestationData::from_bytes(bytes) {
        assert_eq!(inner.to_bytes(), bytes, "attestation data not canonical");
    }
    let Ok(attestation) = Attestation::from_bytes(bytes) else {
        return;
    };
    assert_eq!(attestation.to_bytes(), bytes, "attestation not canonical");
    for history in fixtures::all_vector_histories() {
        let history = latchkey_core::identity::ChangeHistory::import(history).expect("vector");
        let key = attestation.data.key.clone();
        if attestation.verify(&history, &key, now).is_ok() {
            assert_eq!(attestation.data.subject, history.identifier());
            assert!(now < attestation.data.expires_at);
            assert!(attestation.data.created_at <= now.plus_secs(MAX_CLOCK_SKEW_SECS));
        }
    }
});
