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
        Error::HistoryRollback,
        Error::HistoryFork,
        Error::KeyLifetimeExceeded(""),
    ]
}

fn name_of(status: LatchkeyStatus) -> &'static str {
    unsafe { CStr::from_ptr(latchkey_error_name(status)) }
        .to_str()
        .unwrap()
}

#[test]
fn every_core_error_keeps_its_code_and_name() {
    for error in every_core_error() {
        let status = FfiError::from(latchkey_facade::Error::from(error.clone())).status();
        assert_eq!(status, -error.code());
        assert_eq!(name_of(status), error.name());
    }
    assert_eq!(name_of(LATCHKEY_OK), "Ok");
    assert_eq!(name_of(LATCHKEY_ERR_UNTRUSTED_PEER), "UntrustedPeer");
    assert_eq!(name_of(LATCHKEY_ERR_CRYPTO_ERROR), "CryptoError");
    assert_eq!(name_of(LATCHKEY_ERR_NULL_ARGUMENT), "NullArgument");
    assert_eq!(name_of(12345), "Unknown");
    assert_eq!(name_of(-24), "Unknown");
    assert_eq!(name_of(i32::MIN), "Unknown");
}

/// `UntrustedPeer` -> `UNTRUSTED_PEER`, the spelling of the C constants.
fn screaming_snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// A `LATCHKEY_ERR_*` constant as written in a source: its name, value and documentation (lines joined).
#[derive(Debug)]
struct Written {
    name: String,
    value: i32,
    doc: String,
}

/// The `pub const LATCHKEY_ERR_...: LatchkeyStatus = -N;` items of ffi/src/status.rs, with their `///` docs.
fn constants_in_rust(source: &str) -> Vec<Written> {
    let mut found = Vec::new();
    let mut doc: Vec<&str> = Vec::new();
    for line in source.lines() {
        if let Some(text) = line.strip_prefix("///") {
            doc.push(text.trim());
            continue;
        }
        if let Some(rest) = line.strip_prefix("pub const LATCHKEY_ERR_") {
            let (name, value) = rest
                .split_once(": LatchkeyStatus = ")
                .unwrap_or_else(|| panic!("unexpected constant line: {line}"));
            found.push(Written {
                name: format!("LATCHKEY_ERR_{name}"),
                value: value.trim_end_matches(';').parse().unwrap(),
                doc: doc.join(" "),
            });
        }
        doc.clear();
    }
    found
}

/// The `#define LATCHKEY_ERR_... -N` lines of include/latchkey.h, with their `/** ... */` docs.
fn constants_in_header(header: &str) -> Vec<Written> {
    let mut found = Vec::new();
    let mut doc: Vec<&str> = Vec::new();
    for line in header.lines() {
        if line == "/**" || line == " */" {
            continue;
        }
        if let Some(text) = line.strip_prefix(" *") {
            doc.push(text.trim());
            continue;
        }
        if let Some(rest) = line.strip_prefix("#define LATCHKEY_ERR_") {
            let (name, value) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("unexpected define line: {line}"));
            found.push(Written {
                name: format!("LATCHKEY_ERR_{name}"),
                value: value.parse().unwrap(),
                doc: doc.join(" "),
            });
        }
        if !line.is_empty() {
            doc.clear();
        }
    }
    found
}

/// Every disagreement between `written` (from `place`) and the one error table, in both directions.
fn disagreements(written: &[Written], place: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for &code in latchkey_facade::ErrorCode::ALL {
        let constant = format!("LATCHKEY_ERR_{}", screaming_snake(code.name()));
        let matching: Vec<_> = written.iter().filter(|w| w.name == constant).collect();
        match matching.as_slice() {
            [] => problems.push(format!(
                "{place}: no {constant} for table entry {} = {}",
                code.name(),
                code.code()
            )),
            [w] => {
                if w.value != -code.code() {
                    problems.push(format!(
                        "{place}: {constant} = {}, but the table says {} = {}",
                        w.value,
                        code.name(),
                        code.code()
                    ));
                }
                let doc = format!("`{}`: {}", code.name(), code.description());
                if !w.doc.starts_with(&doc) {
                    problems.push(format!(
                        "{place}: the documentation of {constant} must begin with {doc:?}, it is {:?}",
                        w.doc
                    ));
                }
            }
            _ => problems.push(format!("{place}: {constant} is defined more than once")),
        }
    }
    for w in written {
        let in_table = latchkey_facade::ErrorCode::ALL
            .iter()
            .any(|code| w.name == format!("LATCHKEY_ERR_{}", screaming_snake(code.name())));
        if !in_table {
            problems.push(format!(
                "{place}: {} = {} is not in the error table (latchkey_facade::ErrorCode)",
                w.name, w.value
            ));
        }
    }
    problems
}

#[test]
fn the_c_constants_are_the_error_table() {
    let rust = constants_in_rust(include_str!("status.rs"));
    let header = constants_in_header(include_str!("../../include/latchkey.h"));
    assert!(rust.len() >= latchkey_facade::ErrorCode::ALL.len());
    let mut problems = disagreements(&rust, "ffi/src/status.rs");
    problems.extend(disagreements(&header, "include/latchkey.h"));
    assert!(
        problems.is_empty(),
        "the C error constants disagree with latchkey_facade::ErrorCode::ALL:\n  {}",
        problems.join("\n  ")
    );
    // The exported functions answer from the same table, for every entry.
    for &code in latchkey_facade::ErrorCode::ALL {
        assert_eq!(name_of(-code.code()), code.name());
        let description = unsafe { CStr::from_ptr(latchkey_error_description(-code.code())) };
        assert_eq!(description.to_str().unwrap(), code.description());
    }
}

#[test]
fn the_table_check_sees_a_disagreement() {
    let renamed = "/// `Timeout`: A peer did not answer in time.\npub const LATCHKEY_ERR_TIMED_OUT: LatchkeyStatus = -39;\n";
    let problems = disagreements(&constants_in_rust(renamed), "sample");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("no LATCHKEY_ERR_TIMEOUT")),
        "{problems:?}"
    );
    assert!(problems
        .iter()
        .any(|p| p.contains("LATCHKEY_ERR_TIMED_OUT = -39 is not in the error table")));
    let renumbered = "/**\n * `Timeout`: A peer did not answer in time.\n */\n#define LATCHKEY_ERR_TIMEOUT -38\n";
    let problems = disagreements(&constants_in_header(renumbered), "sample");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("LATCHKEY_ERR_TIMEOUT = -38, but the table says Timeout = 39")),
        "{problems:?}"
    );
    assert!(
        !problems
            .iter()
            .any(|p| p.contains("documentation of LATCHKEY_ERR_TIMEOUT")),
        "{problems:?}"
    );
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

#[cfg(feature = "node")]
#[test]
fn the_socket_address_size_holds_the_longest_address() {
    use std::net::{Ipv6Addr, SocketAddrV6};
    let longest = SocketAddrV6::new(
        Ipv6Addr::new(
            0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
        ),
        65535,
        0,
        u32::MAX,
    )
    .to_string();
    assert!(longest.len() < LATCHKEY_SOCKET_ADDRESS_SIZE, "{longest}");
}
