//! The shared vectors of the authority's and the relay mailbox's messages, `tests/vectors/authority.json`
//! (docs/RUNTIME.md, "Authority, enrollment and enforcement" and "Relay mailboxes"): every request and answer
//! of the authority service, the X3DH enrollment service, the mailbox envelope and the relay mailbox, built
//! through `latchkey_core::wire::{authority, mailbox}` from the structures in `tests/vectors/trust.json`
//! (history, credential, revocation list, token, bundle, request, response), plus malformed messages each
//! decoder must refuse. Reproduced here byte for byte, and from Python in
//! `bindings/python/tests/test_authority_vectors.py`.
//! `LATCHKEY_WRITE_VECTORS=1 cargo test -p latchkey-core --test authority_vectors` rewrites the file.

use latchkey_core::credential::{Credential, RevocationList};
use latchkey_core::enroll::{EnrollmentRequest, EnrollmentResponse, EnrollmentToken, PrekeyBundle};
use latchkey_core::identity::{ChangeHistory, Identifier};
use latchkey_core::wire::authority::{
    AuthorityAnswer, AuthorityRequest, EnrollServiceRequest, EnrollmentEnvelope, Refusal,
    RefusalCode,
};
use latchkey_core::wire::mailbox::{MailboxReply, MailboxRequest, MailboxStatus};
use latchkey_core::wire::{Decode, Encode};
use serde_json::{json, Value};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors")
}

fn trust() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("trust.json")).unwrap()).unwrap()
}

fn hex_of(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("hex")
}

struct Inputs {
    device: ChangeHistory,
    credential: Credential,
    revocations: RevocationList,
    token: EnrollmentToken,
    bundle: PrekeyBundle,
    request: EnrollmentRequest,
    response: EnrollmentResponse,
}

fn inputs() -> Inputs {
    let t = trust();
    Inputs {
        device: ChangeHistory::import(&hex_of(&t["identities"]["device"]["history"])).unwrap(),
        credential: Credential::from_bytes(&hex_of(&t["credential"]["bytes"])).unwrap(),
        revocations: RevocationList::from_bytes(&hex_of(&t["revocation_list"])).unwrap(),
        token: EnrollmentToken::from_bytes(&hex_of(&t["enrollment"]["token"])).unwrap(),
        bundle: PrekeyBundle::from_bytes(&hex_of(&t["enrollment"]["bundle"])).unwrap(),
        request: EnrollmentRequest::from_bytes(&hex_of(&t["enrollment"]["request"])).unwrap(),
        response: EnrollmentResponse::from_bytes(&hex_of(&t["enrollment"]["response"])).unwrap(),
    }
}

fn vector(name: &str, message: &str, fields: Value, bytes: Vec<u8>) -> Value {
    json!({"name": name, "message": message, "fields": fields, "bytes": hex::encode(bytes)})
}

fn generate() -> Value {
    let i = inputs();
    fn h(b: impl AsRef<[u8]>) -> String {
        hex::encode(b)
    }
    let device_id = i.device.identifier();
    let secret = zeroize::Zeroizing::new(*i.token.secret());
    let refusal = Refusal::new(
        RefusalCode::TokenUsedUp,
        "the enrollment token has been used up",
    );
    // A reason of 199 ASCII bytes and one 2-byte character: cut before the character (200 would split it).
    let long_reason = format!("{}é", "a".repeat(199));
    let cut = Refusal::new(RefusalCode::BadRequest, &long_reason);
    assert_eq!(cut.reason().len(), 199);

    let authority = vec![
        vector(
            "enroll",
            "AuthorityRequest",
            json!({"tag": 1, "token_id": h(i.token.id), "token_secret": h(&secret[..]), "history": h(i.device.export())}),
            AuthorityRequest::Enroll {
                token_id: i.token.id,
                secret,
                history: i.device.clone(),
            }
            .to_bytes(),
        ),
        vector(
            "refresh",
            "AuthorityRequest",
            json!({"tag": 2, "history": h(i.device.export())}),
            AuthorityRequest::Refresh {
                history: i.device.clone(),
            }
            .to_bytes(),
        ),
        vector(
            "subscribe",
            "AuthorityRequest",
            json!({"tag": 3}),
            AuthorityRequest::Subscribe.to_bytes(),
        ),
        vector(
            "credential answer",
            "AuthorityAnswer<Credential>",
            json!({"tag": 0, "body": h(i.credential.to_bytes())}),
            AuthorityAnswer::Accepted(i.credential.clone()).to_bytes(),
        ),
        vector(
            "revocation list answer",
            "AuthorityAnswer<Credential>",
            json!({"tag": 16, "body": h(i.revocations.to_bytes())}),
            AuthorityAnswer::<Credential>::Revocations(i.revocations.clone()).to_bytes(),
        ),
        vector(
            "refusal",
            "AuthorityAnswer<Credential>",
            json!({"tag": 255, "code": 3, "reason": refusal.reason()}),
            AuthorityAnswer::<Credential>::Refused(refusal.clone()).to_bytes(),
        ),
        vector(
            "refusal with a reason cut at a character boundary",
            "AuthorityAnswer<Credential>",
            json!({"tag": 255, "code": 8, "reason": cut.reason()}),
            AuthorityAnswer::<Credential>::Refused(cut).to_bytes(),
        ),
        vector(
            "get bundle",
            "EnrollServiceRequest",
            json!({"tag": 1}),
            EnrollServiceRequest::GetBundle.to_bytes(),
        ),
        vector(
            "x3dh request",
            "EnrollServiceRequest",
            json!({"tag": 2, "body": h(i.request.to_bytes())}),
            EnrollServiceRequest::Request(i.request.clone()).to_bytes(),
        ),
        vector(
            "bundle answer",
            "AuthorityAnswer<PrekeyBundle>",
            json!({"tag": 0, "body": h(i.bundle.to_bytes())}),
            AuthorityAnswer::Accepted(i.bundle.clone()).to_bytes(),
        ),
        vector(
            "x3dh response answer",
            "AuthorityAnswer<EnrollmentResponse>",
            json!({"tag": 0, "body": h(i.response.to_bytes())}),
            AuthorityAnswer::Accepted(i.response.clone()).to_bytes(),
        ),
        vector(
            "x3dh refusal",
            "AuthorityAnswer<EnrollmentResponse>",
            json!({"tag": 255, "code": 6, "reason": "the one-time prekey is unknown or already used"}),
            AuthorityAnswer::<EnrollmentResponse>::Refused(Refusal::new(
                RefusalCode::PrekeyUnavailable,
                "the one-time prekey is unknown or already used",
            ))
            .to_bytes(),
        ),
        vector(
            "mailbox envelope",
            "EnrollmentEnvelope",
            json!({"device": h(device_id.as_bytes()), "body": h(i.request.to_bytes())}),
            EnrollmentEnvelope {
                device: device_id,
                request: i.request.clone(),
            }
            .to_bytes(),
        ),
    ];

    let authority_id = Identifier::from_bytes(*i.bundle.body.authority.identifier().as_bytes());
    let envelope = EnrollmentEnvelope {
        device: device_id,
        request: i.request.clone(),
    }
    .to_bytes();
    let answer = AuthorityAnswer::Accepted(i.response.clone()).to_bytes();
    let mailbox = vec![
        vector(
            "deposit",
            "MailboxRequest",
            json!({"tag": 1, "recipient": h(authority_id.as_bytes()), "body": h(&envelope)}),
            MailboxRequest::Deposit {
                recipient: authority_id,
                body: envelope.clone(),
            }
            .to_bytes(),
        ),
        vector(
            "open",
            "MailboxRequest",
            json!({"tag": 2}),
            MailboxRequest::Open.to_bytes(),
        ),
        vector(
            "collect",
            "MailboxRequest",
            json!({"tag": 3, "max": 64}),
            MailboxRequest::Collect { max: 64 }.to_bytes(),
        ),
        vector(
            "ack",
            "MailboxRequest",
            json!({"tag": 4, "last": 258}),
            MailboxRequest::Ack { last: 258 }.to_bytes(),
        ),
        vector(
            "close",
            "MailboxRequest",
            json!({"tag": 5}),
            MailboxRequest::Close.to_bytes(),
        ),
        vector(
            "publish",
            "MailboxRequest",
            json!({"tag": 7, "body": h(i.bundle.to_bytes())}),
            MailboxRequest::Publish {
                blob: i.bundle.to_bytes(),
            }
            .to_bytes(),
        ),
        vector(
            "fetch",
            "MailboxRequest",
            json!({"tag": 8, "recipient": h(authority_id.as_bytes())}),
            MailboxRequest::Fetch {
                recipient: authority_id,
            }
            .to_bytes(),
        ),
        vector(
            "batch",
            "MailboxReply",
            json!({"tag": 6, "mail": [{"id": 7, "body": h(&envelope)}, {"id": 9, "body": h(&answer)}]}),
            MailboxReply::Batch(vec![(7, envelope.clone()), (9, answer.clone())]).to_bytes(),
        ),
        vector(
            "empty batch",
            "MailboxReply",
            json!({"tag": 6, "mail": []}),
            MailboxReply::Batch(vec![]).to_bytes(),
        ),
        vector(
            "published",
            "MailboxReply",
            json!({"tag": 9, "body": h(i.bundle.to_bytes())}),
            MailboxReply::Published(i.bundle.to_bytes()).to_bytes(),
        ),
    ];
    let statuses: Vec<Value> = [
        MailboxStatus::Ok,
        MailboxStatus::NoMailbox,
        MailboxStatus::Full,
        MailboxStatus::TooLarge,
        MailboxStatus::Rate,
        MailboxStatus::Bad,
        MailboxStatus::Denied,
        MailboxStatus::Error,
    ]
    .into_iter()
    .map(|s| {
        vector(
            &format!("status {}", s.word()),
            "MailboxReply",
            json!({"status": s.word()}),
            MailboxReply::Status(s).to_bytes(),
        )
    })
    .collect();

    let bad = |name: &str, message: &str, bytes: Vec<u8>, error: &str| json!({"name": name, "message": message, "bytes": hex::encode(bytes), "error": error});
    // A long message: `bytes` followed by `zeros` zero bytes (kept short in the file).
    let bad_long = |name: &str, message: &str, bytes: Vec<u8>, zeros: usize, error: &str| json!({"name": name, "message": message, "bytes": hex::encode(bytes), "zeros": zeros, "error": error});
    let with = |head: &[u8], tail: &[u8]| [head, tail].concat();
    let enroll = AuthorityRequest::Enroll {
        token_id: i.token.id,
        secret: zeroize::Zeroizing::new(*i.token.secret()),
        history: i.device.clone(),
    }
    .to_bytes();
    let invalid = vec![
        bad("empty request", "AuthorityRequest", vec![], "truncated"),
        bad(
            "unknown authority request",
            "AuthorityRequest",
            vec![0x04],
            "unknown authority request",
        ),
        bad(
            "subscribe with trailing bytes",
            "AuthorityRequest",
            vec![0x03, 0x00],
            "trailing bytes",
        ),
        bad(
            "enroll with a truncated history",
            "AuthorityRequest",
            enroll[..enroll.len() - 1].to_vec(),
            "truncated",
        ),
        bad(
            "enroll with trailing bytes",
            "AuthorityRequest",
            with(&enroll, &[0]),
            "trailing bytes",
        ),
        bad(
            "unknown answer",
            "AuthorityAnswer<Credential>",
            vec![0x01],
            "unknown authority answer",
        ),
        bad(
            "unknown refusal code",
            "AuthorityAnswer<Credential>",
            vec![0xFF, 10, b'x'],
            "unknown refusal code",
        ),
        bad(
            "refusal code 0",
            "AuthorityAnswer<Credential>",
            vec![0xFF, 0],
            "unknown refusal code",
        ),
        bad(
            "reason over 200 bytes",
            "AuthorityAnswer<Credential>",
            with(&[0xFF, 8], &[b'a'; 201]),
            "refusal reason too long",
        ),
        bad(
            "reason not UTF-8",
            "AuthorityAnswer<Credential>",
            vec![0xFF, 8, 0xC3],
            "reason is not UTF-8",
        ),
        bad(
            "unknown enrollment service request",
            "EnrollServiceRequest",
            vec![0x03],
            "unknown enrollment service request",
        ),
        bad(
            "get bundle with trailing bytes",
            "EnrollServiceRequest",
            vec![0x01, 0x01],
            "trailing bytes",
        ),
        bad(
            "envelope without a request",
            "EnrollmentEnvelope",
            device_id.as_bytes().to_vec(),
            "truncated",
        ),
        bad(
            "unknown mailbox request",
            "MailboxRequest",
            vec![0x06],
            "unknown mailbox request",
        ),
        bad(
            "deposit without a full recipient",
            "MailboxRequest",
            with(&[0x01], &[7; 31]),
            "truncated",
        ),
        bad_long(
            "deposit body over the wire limit",
            "MailboxRequest",
            with(&[0x01], &[7; 32]),
            60_001,
            "mailbox body too large",
        ),
        bad(
            "collect of zero",
            "MailboxRequest",
            vec![0x03, 0, 0],
            "a collect asks for at least one message",
        ),
        bad(
            "ack with a short id",
            "MailboxRequest",
            vec![0x04, 0, 0, 0],
            "truncated",
        ),
        bad(
            "open with trailing bytes",
            "MailboxRequest",
            vec![0x02, 0x00],
            "trailing bytes",
        ),
        bad_long(
            "publish over 32 KiB",
            "MailboxRequest",
            vec![0x07],
            32 * 1024 + 1,
            "published blob too large",
        ),
        bad(
            "fetch with trailing bytes",
            "MailboxRequest",
            with(&[0x08], &[7; 33]),
            "trailing bytes",
        ),
        bad("empty reply", "MailboxReply", vec![], "truncated"),
        bad(
            "unknown status word",
            "MailboxReply",
            b"OK".to_vec(),
            "unknown mailbox reply",
        ),
        bad(
            "status word with trailing bytes",
            "MailboxReply",
            b"ok\n".to_vec(),
            "unknown mailbox reply",
        ),
        bad(
            "batch with a truncated body",
            "MailboxReply",
            vec![0x06, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0xAA],
            "truncated",
        ),
        bad(
            "batch with ids not ascending",
            "MailboxReply",
            vec![
                0x06, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0,
            ],
            "mailbox batch ids not ascending",
        ),
        bad(
            "batch body length over the wire limit",
            "MailboxReply",
            vec![0x06, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0xEA, 0x61],
            "mailbox body too large",
        ),
    ];

    let mailbox: Vec<Value> = [mailbox, statuses].concat();
    json!({
        "description": "Latchkey authority and relay mailbox messages (docs/RUNTIME.md, 'Authority, enrollment and enforcement' and 'Relay mailboxes'), built from the structures of trust.json; reproduced by core/tests/authority_vectors.rs and bindings/python/tests/test_authority_vectors.py",
        "authority": authority,
        "mailbox": mailbox,
        "invalid": invalid,
    })
}

fn decode(message: &str, bytes: &[u8]) -> Result<Vec<u8>, latchkey_core::Error> {
    Ok(match message {
        "AuthorityRequest" => AuthorityRequest::from_bytes(bytes)?.to_bytes(),
        "EnrollServiceRequest" => EnrollServiceRequest::from_bytes(bytes)?.to_bytes(),
        "AuthorityAnswer<Credential>" => {
            AuthorityAnswer::<Credential>::from_bytes(bytes)?.to_bytes()
        }
        "AuthorityAnswer<PrekeyBundle>" => {
            AuthorityAnswer::<PrekeyBundle>::from_bytes(bytes)?.to_bytes()
        }
        "AuthorityAnswer<EnrollmentResponse>" => {
            AuthorityAnswer::<EnrollmentResponse>::from_bytes(bytes)?.to_bytes()
        }
        "EnrollmentEnvelope" => EnrollmentEnvelope::from_bytes(bytes)?.to_bytes(),
        "MailboxRequest" => MailboxRequest::from_bytes(bytes)?.to_bytes(),
        "MailboxReply" => MailboxReply::from_bytes(bytes)?.to_bytes(),
        other => panic!("unknown message kind {other}"),
    })
}

fn committed() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(dir().join("authority.json"))
            .expect("tests/vectors/authority.json"),
    )
    .unwrap()
}

#[test]
fn the_authority_vectors_are_reproduced_byte_for_byte() {
    let generated = generate();
    if std::env::var_os("LATCHKEY_WRITE_VECTORS").is_some() {
        std::fs::write(
            dir().join("authority.json"),
            serde_json::to_string_pretty(&generated).unwrap() + "\n",
        )
        .unwrap();
    }
    assert_eq!(
        generated,
        committed(),
        "regenerate with LATCHKEY_WRITE_VECTORS=1 only for a deliberate change"
    );
}

#[test]
fn every_committed_message_decodes_and_re_encodes_to_its_bytes() {
    let v = committed();
    let mut n = 0;
    for section in ["authority", "mailbox"] {
        for case in v[section].as_array().unwrap() {
            let bytes = hex_of(&case["bytes"]);
            let message = case["message"].as_str().unwrap();
            let again = decode(message, &bytes).unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
            assert_eq!(again, bytes, "{}", case["name"]);
            n += 1;
        }
    }
    assert_eq!(n, 31);
}

#[test]
fn every_malformed_message_is_refused_with_its_error() {
    let v = committed();
    for case in v["invalid"].as_array().unwrap() {
        let mut bytes = hex_of(&case["bytes"]);
        bytes.resize(
            bytes.len() + case["zeros"].as_u64().unwrap_or(0) as usize,
            0,
        );
        let message = case["message"].as_str().unwrap();
        match decode(message, &bytes) {
            Err(latchkey_core::Error::Decode(why)) => {
                assert_eq!(why, case["error"].as_str().unwrap(), "{}", case["name"])
            }
            other => panic!("{}: expected a decode error, got {other:?}", case["name"]),
        }
    }
}

#[test]
fn decoded_messages_carry_the_fields_of_the_vectors() {
    let v = committed();
    let i = inputs();
    let find = |section: &str, name: &str| {
        let case = v[section]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone();
        hex_of(&case["bytes"])
    };
    match AuthorityRequest::from_bytes(&find("authority", "enroll")).unwrap() {
        AuthorityRequest::Enroll {
            token_id,
            secret,
            history,
        } => {
            assert_eq!(token_id, i.token.id);
            assert_eq!(&*secret, i.token.secret());
            assert_eq!(history.identifier(), i.device.identifier());
        }
        other => panic!("{other:?}"),
    }
    // The Debug form never shows the token secret.
    let shown = format!(
        "{:?}",
        AuthorityRequest::from_bytes(&find("authority", "enroll")).unwrap()
    );
    assert!(!shown.contains(&format!("{:?}", i.token.secret())));
    assert!(!shown
        .to_lowercase()
        .contains(&hex::encode(i.token.secret())));
    match AuthorityAnswer::<Credential>::from_bytes(&find("authority", "refusal")).unwrap() {
        AuthorityAnswer::Refused(r) => {
            assert_eq!(r.code, RefusalCode::TokenUsedUp);
            assert_eq!(r.reason(), "the enrollment token has been used up");
        }
        other => panic!("{other:?}"),
    }
    match AuthorityAnswer::<Credential>::from_bytes(&find("authority", "revocation list answer"))
        .unwrap()
    {
        AuthorityAnswer::Revocations(list) => assert_eq!(list, i.revocations),
        other => panic!("{other:?}"),
    }
    match MailboxReply::from_bytes(&find("mailbox", "batch")).unwrap() {
        MailboxReply::Batch(mail) => {
            assert_eq!(mail.len(), 2);
            let env = EnrollmentEnvelope::from_bytes(&mail[0].1).unwrap();
            assert_eq!(env.device, i.device.identifier());
            assert_eq!(env.request, i.request);
            assert_eq!(mail[1].0, 9);
        }
        other => panic!("{other:?}"),
    }
    // A credential answer whose credential was tampered with does not decode as one.
    let mut tampered = find("authority", "credential answer");
    tampered.truncate(tampered.len() - 1);
    assert!(AuthorityAnswer::<Credential>::from_bytes(&tampered).is_err());
}
