//! Enrollment (PROTOCOL.md §14): token, prekey bundle, request and response decoders, and the authority's
//! `handle_request` with the vector authority's keys. Input: `selector: u8 ‖ now: u64 ‖ bytes` (selector 0
//! token, 1 bundle, 2 request, 3 response).
//!
//! Checks: no panic; canonical re-encoding; a bundle that verifies is the vector authority's; the authority
//! accepts a request only if it is exactly the vector's request (everything in it is authenticated: the
//! header by the transcript, the rest by the AEAD and the device's signature), and then enrolls the vector
//! device with a credential that verifies for it.
#![no_main]

use latchkey_core::credential::TrustedAuthorities;
use latchkey_core::crypto::default_provider;
use latchkey_core::enroll::{handle_request, EnrollmentToken, PrekeyBundle};
use latchkey_core::wire::{Decode, Encode};
use latchkey_core::Timestamp;
use latchkey_fuzz::{trust, Cursor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let selector = input.u8() % 4;
    let now = Timestamp(input.u64());
    let bytes = input.rest();
    let v = trust::vectors();
    match selector {
        0 => {
            if let Ok(token) = EnrollmentToken::from_bytes(bytes) {
                assert_eq!(token.to_bytes(), bytes, "token not canonical");
                assert!(bytes.len() <= latchkey_core::enroll::MAX_TOKEN_LEN);
            }
        }
        1 => {
            let Ok(bundle) = PrekeyBundle::from_bytes(bytes) else {
                return;
            };
            assert_eq!(bundle.to_bytes(), bytes, "bundle not canonical");
            if bundle.verify(&v.authority.identifier(), now).is_ok() {
                assert_eq!(bundle.body.authority.identifier(), v.authority.identifier());
                assert!(now < bundle.body.expires_at);
            }
        }
        2 => {
            let a = trust::authority();
            if let Ok(enrolled) = handle_request(
                &a.identity,
                &a.x3dh,
                &a.store,
                default_provider(),
                bytes,
                now,
            ) {
                assert_eq!(bytes, trust::bytes(&["enrollment", "request"]).as_slice());
                assert_eq!(enrolled.device.identifier(), v.device.identifier());
                let trusted = TrustedAuthorities::new().with(v.authority.clone());
                enrolled
                    .credential
                    .verify(&trusted, &v.device.identifier(), &v.device, now)
                    .expect("the issued credential verifies");
            }
        }
        _ => {
            if let Ok(response) = latchkey_core::enroll::EnrollmentResponse::from_bytes(bytes) {
                assert_eq!(response.to_bytes(), bytes, "response not canonical");
            }
        }
    }
});
