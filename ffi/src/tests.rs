//! Checks that the C-side constants cannot drift from the core, and that the boundary holds. Behaviour
//! through the real compiled library is tested from C in tests/c/.

use crate::boundary::{run_infallible, run_status};
use crate::status::*;
use crate::*;
use latchkey_core::identity::Identifier;
use latchkey_facade::Error;
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
        let status = FfiError::from(error.clone()).status();
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
