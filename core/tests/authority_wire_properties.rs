//! Property tests of the authority and mailbox messages (`latchkey_core::wire::{authority, mailbox}`):
//! decode(encode(x)) == x for the mailbox messages and refusals; arbitrary and mutated bytes never make a
//! decoder panic, and whatever decodes re-encodes to exactly the bytes it came from.

use latchkey_core::credential::Credential;
use latchkey_core::enroll::{EnrollmentResponse, PrekeyBundle};
use latchkey_core::identity::Identifier;
use latchkey_core::wire::authority::{
    AuthorityAnswer, AuthorityRequest, EnrollServiceRequest, EnrollmentEnvelope, Refusal,
    RefusalCode, MAX_REASON_LEN,
};
use latchkey_core::wire::mailbox::{
    MailboxReply, MailboxRequest, MailboxStatus, MAX_MAIL_BODY, MAX_PUBLISHED,
};
use latchkey_core::wire::{Decode, Encode};
use proptest::prelude::*;
use serde_json::Value;

fn identifier() -> impl Strategy<Value = Identifier> {
    any::<[u8; 32]>().prop_map(Identifier::from_bytes)
}

fn body(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..300),
        1 => (0..=max).prop_map(|n| vec![0x5a; n]),
    ]
}

fn mailbox_request() -> impl Strategy<Value = MailboxRequest> {
    prop_oneof![
        (identifier(), body(MAX_MAIL_BODY))
            .prop_map(|(recipient, body)| MailboxRequest::Deposit { recipient, body }),
        Just(MailboxRequest::Open),
        (1..=u16::MAX).prop_map(|max| MailboxRequest::Collect { max }),
        any::<u64>().prop_map(|last| MailboxRequest::Ack { last }),
        Just(MailboxRequest::Close),
        body(MAX_PUBLISHED).prop_map(|blob| MailboxRequest::Publish { blob }),
        identifier().prop_map(|recipient| MailboxRequest::Fetch { recipient }),
    ]
}

fn status() -> impl Strategy<Value = MailboxStatus> {
    prop_oneof![
        Just(MailboxStatus::Ok),
        Just(MailboxStatus::NoMailbox),
        Just(MailboxStatus::Full),
        Just(MailboxStatus::TooLarge),
        Just(MailboxStatus::Rate),
        Just(MailboxStatus::Bad),
        Just(MailboxStatus::Denied),
        Just(MailboxStatus::Error),
    ]
}

fn mailbox_reply() -> impl Strategy<Value = MailboxReply> {
    prop_oneof![
        status().prop_map(MailboxReply::Status),
        prop::collection::vec(
            (1..1000u64, prop::collection::vec(any::<u8>(), 0..200)),
            0..8
        )
        .prop_map(|mail| {
            // Ids strictly ascending, as a relay collects them.
            let mut next = 0;
            MailboxReply::Batch(
                mail.into_iter()
                    .map(|(step, b)| {
                        next += step;
                        (next, b)
                    })
                    .collect(),
            )
        }),
        body(MAX_PUBLISHED).prop_map(MailboxReply::Published),
    ]
}

fn code() -> impl Strategy<Value = RefusalCode> {
    (1u8..=9).prop_map(|c| RefusalCode::from_u8(c).unwrap())
}

/// The messages of tests/vectors/authority.json (valid ones), as seeds for mutation.
fn vector_messages() -> Vec<(String, Vec<u8>)> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/authority.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    ["authority", "mailbox"]
        .iter()
        .flat_map(|s| v[*s].as_array().unwrap().clone())
        .map(|c| {
            (
                c["message"].as_str().unwrap().to_string(),
                hex::decode(c["bytes"].as_str().unwrap()).unwrap(),
            )
        })
        .collect()
}

/// Every decoder on `bytes`: no panic, and a success re-encodes to `bytes`.
fn decode_all(bytes: &[u8]) {
    fn check<T: Decode + Encode>(bytes: &[u8]) {
        if let Ok(v) = T::from_bytes(bytes) {
            assert_eq!(v.to_bytes(), bytes, "{}", std::any::type_name::<T>());
        }
    }
    check::<AuthorityRequest>(bytes);
    check::<EnrollServiceRequest>(bytes);
    check::<AuthorityAnswer<Credential>>(bytes);
    check::<AuthorityAnswer<PrekeyBundle>>(bytes);
    check::<AuthorityAnswer<EnrollmentResponse>>(bytes);
    check::<EnrollmentEnvelope>(bytes);
    check::<MailboxRequest>(bytes);
    check::<MailboxReply>(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mailbox_requests_round_trip(r in mailbox_request()) {
        let bytes = r.to_bytes();
        prop_assert_eq!(MailboxRequest::from_bytes(&bytes).unwrap(), r);
    }

    #[test]
    fn mailbox_replies_round_trip(r in mailbox_reply()) {
        let bytes = r.to_bytes();
        prop_assert_eq!(MailboxReply::from_bytes(&bytes).unwrap(), r);
    }

    #[test]
    fn refusals_round_trip_and_reasons_are_cut_at_character_boundaries(
        c in code(),
        reason in "\\PC{0,120}",
    ) {
        let r = Refusal::new(c, &reason);
        prop_assert!(r.reason().len() <= MAX_REASON_LEN);
        prop_assert!(reason.starts_with(r.reason()));
        let bytes = AuthorityAnswer::<Credential>::Refused(r.clone()).to_bytes();
        match AuthorityAnswer::<Credential>::from_bytes(&bytes).unwrap() {
            AuthorityAnswer::Refused(back) => prop_assert_eq!(back, r),
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_each_tag_never_panic(
        tag in prop_oneof![0u8..=10, Just(0x10u8), Just(0xFFu8)],
        rest in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let bytes = [&[tag][..], &rest].concat();
        decode_all(&bytes);
    }

    #[test]
    fn mutated_vector_messages_never_panic(
        index in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
        cut in any::<bool>(),
    ) {
        let messages = vector_messages();
        let (_, bytes) = &messages[index.index(messages.len())];
        let mut bytes = bytes.clone();
        let i = at.index(bytes.len());
        if cut {
            bytes.truncate(i);
        } else {
            bytes[i] ^= xor;
        }
        decode_all(&bytes);
    }
}

#[test]
fn long_reasons_are_cut_to_the_limit() {
    let r = Refusal::new(RefusalCode::Internal, &"€".repeat(100));
    // 66 three-byte characters fit in 200 bytes; 67 would not.
    assert_eq!(r.reason().len(), 198);
    assert_eq!(RefusalCode::from_u8(0), None);
    assert_eq!(RefusalCode::from_u8(10), None);
}
