//! Handshake payloads (PROTOCOL.md §5.3), decoded exactly as `Handshake::verify_peer` decodes the plaintext
//! of message 2 or 3, then checked as §5.4 says. Input: `now: u64 ‖ payload bytes`.
//!
//! Checks: no panic; canonical re-encoding; the decoded history is verified; credentials within limits.
#![no_main]

use latchkey_core::channel::{HandshakePayload, MAX_CREDENTIALS};
use latchkey_core::identity::{ChangeHistory, PurposeKey};
use latchkey_core::wire::{Decode, Encode};
use latchkey_core::Timestamp;
use latchkey_fuzz::Cursor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let now = Timestamp(input.u64());
    let bytes = input.rest();
    let Ok(payload) = HandshakePayload::from_bytes(bytes) else {
        return;
    };
    assert_eq!(payload.to_bytes(), bytes, "payload not canonical");
    assert!(payload.credentials.len() <= MAX_CREDENTIALS);
    payload
        .history
        .verify()
        .expect("a decoded history is verified");
    assert_eq!(
        ChangeHistory::import(&payload.history.export()).as_ref(),
        Ok(&payload.history)
    );
    let _ = payload.history.check_not_expired(now);
    if let PurposeKey::SecureChannel(key) = payload.attestation.data.key {
        if payload
            .attestation
            .verify(&payload.history, &PurposeKey::SecureChannel(key), now)
            .is_ok()
        {
            assert_eq!(
                payload.attestation.data.subject,
                payload.history.identifier()
            );
        }
    }
});
