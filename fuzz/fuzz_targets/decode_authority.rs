//! The authority's and the relay mailbox's messages (docs/RUNTIME.md, "Authority, enrollment and
//! enforcement", "Relay mailboxes"): `latchkey_core::wire::{authority, mailbox}`. Input: `selector: u8 ‖
//! bytes` (selector mod 8: 0 AuthorityRequest, 1 EnrollServiceRequest, 2 AuthorityAnswer<Credential>,
//! 3 AuthorityAnswer<PrekeyBundle>, 4 AuthorityAnswer<EnrollmentResponse>, 5 EnrollmentEnvelope,
//! 6 MailboxRequest, 7 MailboxReply).
//!
//! Checks: no panic; whatever decodes re-encodes to exactly its bytes; refusal reasons are UTF-8 of at most
//! 200 bytes with a known code; a collect asks for at least one message; batch ids are strictly ascending
//! and bodies within the wire bound; published blobs within 32 KiB; an enroll request's `Debug` never shows
//! its token secret.
#![no_main]

use latchkey_core::credential::Credential;
use latchkey_core::enroll::{EnrollmentResponse, PrekeyBundle};
use latchkey_core::wire::authority::{
    AuthorityAnswer, AuthorityRequest, EnrollServiceRequest, EnrollmentEnvelope, MAX_REASON_LEN,
};
use latchkey_core::wire::mailbox::{MailboxReply, MailboxRequest, MAX_MAIL_BODY, MAX_PUBLISHED};
use latchkey_core::wire::{Decode, Encode};
use latchkey_fuzz::Cursor;
use libfuzzer_sys::fuzz_target;

fn canonical<T: Decode + Encode>(bytes: &[u8]) -> Option<T> {
    let value = T::from_bytes(bytes).ok()?;
    assert_eq!(
        value.to_bytes(),
        bytes,
        "{} not canonical",
        std::any::type_name::<T>()
    );
    Some(value)
}

fn answer<T: Decode + Encode>(bytes: &[u8]) {
    if let Some(AuthorityAnswer::<T>::Refused(r)) = canonical::<AuthorityAnswer<T>>(bytes) {
        assert!(r.reason().len() <= MAX_REASON_LEN);
        assert!((1..=9).contains(&(r.code as u8)));
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let selector = input.u8() % 8;
    let bytes = input.rest();
    match selector {
        0 => {
            if let Some(request) = canonical::<AuthorityRequest>(bytes) {
                if let AuthorityRequest::Enroll { secret, .. } = &request {
                    let shown = format!("{request:?}");
                    assert!(!shown.contains(&format!("{:?}", &secret[..])));
                }
            }
        }
        1 => {
            canonical::<EnrollServiceRequest>(bytes);
        }
        2 => answer::<Credential>(bytes),
        3 => answer::<PrekeyBundle>(bytes),
        4 => answer::<EnrollmentResponse>(bytes),
        5 => {
            canonical::<EnrollmentEnvelope>(bytes);
        }
        6 => match canonical::<MailboxRequest>(bytes) {
            Some(MailboxRequest::Collect { max }) => assert!(max >= 1),
            Some(MailboxRequest::Publish { blob }) => assert!(blob.len() <= MAX_PUBLISHED),
            Some(MailboxRequest::Deposit { body, .. }) => assert!(body.len() <= MAX_MAIL_BODY),
            _ => {}
        },
        _ => match canonical::<MailboxReply>(bytes) {
            Some(MailboxReply::Batch(mail)) => {
                assert!(mail.windows(2).all(|w| w[0].0 < w[1].0));
                assert!(mail.iter().all(|(_, b)| b.len() <= MAX_MAIL_BODY));
            }
            Some(MailboxReply::Published(blob)) => assert!(blob.len() <= MAX_PUBLISHED),
            _ => {}
        },
    }
});
