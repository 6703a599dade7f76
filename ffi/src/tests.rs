//! Checks that the C-side constants cannot drift from the core, and that the boundary holds. Behaviour
//! through the real compiled library is tested from C in tests/c/.

use crate::boundary::{run_infallible, run_status};
use crate::status::*;
use crate::*;
use latchkey_core::identity::Identifier;
use latchkey_core::Error;
use std::ffi::CStr;
use std::str::FromStr;

fn every_core_error() -> Vec<Error> {
    let identifier = Identifier::from_str(&format!("lk{}", "00".repeat(32))).unwrap();
    vec![
        Error::Decode(""),
        Error::BufferTooSmall { needed: 1 },
        Error::MessageTooLarge { len: 2, max: 1 },
        Error::KeyNotFound(String::new()),
        Error::WrongKeyType,
        Error::InvalidPublicKey,
        Error::InvalidSignature,
        Error::InvalidHistory(""),
        Error::HistoryMismatch,
        Error::InvalidAttestation(""),
        Error::Expired(""),
        Error::UntrustedPeer(identifier),
        Error::DecryptFailed,
        Error::Replay,
        Error::StaleMessage,
        Error::TooFarAhead,
        Error::NonceExhausted,
        Error::InvalidState(""),
        Error::Vault(String::new()),
        Error::Crypto(""),
    ]
}

fn name_of(status: LatchkeyStatus) -> &'static str {
    unsafe { CStr::from_ptr(latchkey_error_name(status)) }
        .to_str()
        .unwrap()
}

#[test]
fn every_core_error_keeps_its_code_and_name() {
    let errors = every_core_error();
    // One C code per core variant, plus Ok and the four boundary-only codes.
    assert_eq!(NAMES.len(), errors.len() + 5);
    for error in errors {
        let status = FfiError::from(latchkey_facade::Error::from(error.clone())).status();
        assert_eq!(status, -error.code());
        assert_eq!(name_of(status), error.name());
    }
    assert_eq!(name_of(LATCHKEY_ERR_UNTRUSTED_PEER), "UntrustedPeer");
    assert_eq!(name_of(LATCHKEY_ERR_CRYPTO_ERROR), "CryptoError");
    assert_eq!(name_of(LATCHKEY_ERR_NULL_ARGUMENT), "NullArgument");
    assert_eq!(name_of(12345), "Unknown");
}

#[test]
fn c_constants_match_the_facade() {
    assert_eq!(LATCHKEY_FRAME_OVERHEAD, latchkey_facade::FRAME_OVERHEAD);
    assert_eq!(
        LATCHKEY_MAX_PLAINTEXT_LEN,
        latchkey_facade::MAX_PLAINTEXT_LEN
    );
    assert_eq!(
        LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN,
        latchkey_core::channel::MAX_HANDSHAKE_MESSAGE_LEN
    );
    let version = unsafe { CStr::from_ptr(latchkey_version()) };
    assert_eq!(version.to_str().unwrap(), latchkey_facade::VERSION);
}

#[test]
fn a_panic_becomes_a_status_and_a_message() {
    let status = run_status(|| panic!("deliberate test panic"));
    assert_eq!(status, LATCHKEY_ERR_PANIC);
    let message = unsafe { CStr::from_ptr(latchkey_last_error()) };
    assert!(message.to_str().unwrap().contains("deliberate test panic"));

    assert_eq!(run_infallible(7, || panic!("again")), 7);
    // A successful call clears the message.
    assert_eq!(run_status(|| Ok(())), LATCHKEY_OK);
    assert_eq!(
        unsafe { CStr::from_ptr(latchkey_last_error()) }.to_bytes(),
        b""
    );
}

#[test]
fn last_error_is_per_thread() {
    let status = unsafe { latchkey_vault_new(std::ptr::null_mut()) };
    assert_eq!(status, LATCHKEY_ERR_NULL_ARGUMENT);
    std::thread::spawn(|| {
        assert_eq!(
            unsafe { CStr::from_ptr(latchkey_last_error()) }.to_bytes(),
            b""
        );
    })
    .join()
    .unwrap();
    let message = unsafe { CStr::from_ptr(latchkey_last_error()) };
    assert_eq!(
        message.to_str().unwrap(),
        "NullArgument: `out_vault` must not be NULL"
    );
}

#[test]
fn the_header_trust_any_marker_is_the_facade_marker() {
    let header = include_str!("../../include/latchkey.h");
    let define = format!(
        "#define LATCHKEY_TRUST_ANY \"{}\"",
        latchkey_facade::Trust::ANY_MARKER
    );
    assert!(
        header.lines().any(|line| line == define),
        "include/latchkey.h lacks `{define}`"
    );
}

const NOW: LatchkeySeconds = 1_800_000_000;

fn last_error() -> String {
    unsafe { CStr::from_ptr(latchkey_last_error()) }
        .to_str()
        .unwrap()
        .to_owned()
}

/// Two identities from one vault (already freed: identities do not depend on it); the caller frees them.
fn two_identities() -> (*const LatchkeyIdentity, *const LatchkeyIdentity) {
    let mut vault = std::ptr::null();
    let (mut a, mut b) = (std::ptr::null(), std::ptr::null());
    unsafe {
        assert_eq!(latchkey_vault_new(&mut vault), LATCHKEY_OK);
        for out in [&mut a, &mut b] {
            let status =
                latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, NOW, out);
            assert_eq!(status, LATCHKEY_OK);
        }
        latchkey_vault_free(vault);
    }
    (a, b)
}

fn new_handshake(
    identity: *const LatchkeyIdentity,
    role: u32,
    trusted: *const *const std::ffi::c_char,
    count: usize,
) -> (LatchkeyStatus, *mut LatchkeyHandshake) {
    // Not NULL, so the test sees that a failed call sets it to NULL.
    let mut out = std::ptr::NonNull::dangling().as_ptr();
    let status = unsafe {
        latchkey_handshake_new(
            identity,
            role,
            LATCHKEY_SUITE_CHACHAPOLY,
            trusted,
            count,
            NOW,
            &mut out,
        )
    };
    (status, out)
}

#[test]
fn an_omitted_trust_list_is_an_invalid_argument() {
    let (a, b) = two_identities();
    let (status, handshake) = new_handshake(a, LATCHKEY_ROLE_INITIATOR, std::ptr::null(), 0);
    assert_eq!(status, LATCHKEY_ERR_INVALID_ARGUMENT);
    assert!(handshake.is_null());
    let message = last_error();
    assert!(
        message.starts_with("InvalidArgument: no trust given"),
        "{message}"
    );
    assert!(message.contains("{LATCHKEY_TRUST_ANY}"), "{message}");
    // NULL with a count is a NULL argument, as before.
    let (status, handshake) = new_handshake(a, LATCHKEY_ROLE_INITIATOR, std::ptr::null(), 1);
    assert_eq!(status, LATCHKEY_ERR_NULL_ARGUMENT);
    assert!(handshake.is_null());
    unsafe {
        latchkey_identity_free(a);
        latchkey_identity_free(b);
    }
}

#[test]
fn only_the_exact_any_marker_trusts_any_identity() {
    let (a, b) = two_identities();
    let any = c"*";
    let identifier = |identity| {
        let mut buffer = [0 as std::ffi::c_char; LATCHKEY_IDENTIFIER_SIZE];
        let mut len = 0;
        let status = unsafe {
            latchkey_identity_identifier(identity, buffer.as_mut_ptr(), buffer.len(), &mut len)
        };
        assert_eq!(status, LATCHKEY_OK);
        buffer
    };
    let b_id = identifier(b);

    // "*" beside an identifier is not a wildcard: it does not parse as an identifier.
    let mixed = [any.as_ptr(), b_id.as_ptr()];
    let (status, handshake) = new_handshake(a, LATCHKEY_ROLE_INITIATOR, mixed.as_ptr(), 2);
    assert_eq!(name_of(status), "DecodeError");
    assert!(handshake.is_null());

    // {LATCHKEY_TRUST_ANY} on the responder, the responder's identifier on the initiator: a channel.
    let only_b = [b_id.as_ptr()];
    let (status, initiator) = new_handshake(a, LATCHKEY_ROLE_INITIATOR, only_b.as_ptr(), 1);
    assert_eq!(status, LATCHKEY_OK, "{}", last_error());
    let trust_any = [any.as_ptr()];
    let (status, responder) = new_handshake(b, LATCHKEY_ROLE_RESPONDER, trust_any.as_ptr(), 1);
    assert_eq!(status, LATCHKEY_OK, "{}", last_error());
    let mut message = vec![0u8; LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN];
    let mut input: Vec<u8> = vec![];
    for handshake in [initiator, responder, initiator, responder] {
        let mut len = 0;
        let status = unsafe {
            latchkey_handshake_step(
                handshake,
                input.as_ptr(),
                input.len(),
                message.as_mut_ptr(),
                message.len(),
                &mut len,
            )
        };
        assert_eq!(status, LATCHKEY_OK, "{}", last_error());
        input = message[..len].to_vec();
    }
    for handshake in [initiator, responder] {
        let mut finished = false;
        assert_eq!(
            unsafe { latchkey_handshake_is_finished(handshake, &mut finished) },
            LATCHKEY_OK
        );
        assert!(finished);
        unsafe { latchkey_handshake_free(handshake) };
    }
    unsafe {
        latchkey_identity_free(a);
        latchkey_identity_free(b);
    }
}
