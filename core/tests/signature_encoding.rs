//! One canonical encoding per signature, so that a history has exactly one form: ECDSA P-256 signatures are
//! low-s only (the `(r, n − s)` twin of each signature is refused), and Ed25519 signatures with `S ≥ L` are
//! refused. Checked on whole histories: a history whose every signature is replaced by its twin must not
//! import (before this rule it imported, with the same identifier, yet compared as another history).

mod common;

use common::*;
use latchkey_core::identity::{ChangeHistory, Identity};
use latchkey_core::vault::{verify_signature, Signature, SigningAlgorithm, SoftwareVault};
use latchkey_core::Error;

const YEAR: u64 = 365 * DAY;

/// The P-256 group order, big-endian (written out here independently of the library's copy).
const P256_N: [u8; 32] =
    hex_literal("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
/// The Ed25519 group order L, little-endian.
const ED25519_L: [u8; 32] =
    hex_literal_le("1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ed");

const fn hex_digit(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => c - b'a' + 10,
    }
}

const fn hex_literal(text: &str) -> [u8; 32] {
    let bytes = text.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = hex_digit(bytes[2 * i]) << 4 | hex_digit(bytes[2 * i + 1]);
        i += 1;
    }
    out
}

const fn hex_literal_le(text: &str) -> [u8; 32] {
    let be = hex_literal(text);
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = be[31 - i];
        i += 1;
    }
    out
}

/// `(r, n − s)` for a fixed-size P-256 signature.
fn p256_twin(sig: &[u8; 64]) -> [u8; 64] {
    let mut out = *sig;
    let mut borrow = 0i32;
    for i in (0..32).rev() {
        let d = P256_N[i] as i32 - sig[32 + i] as i32 - borrow;
        out[32 + i] = d.rem_euclid(256) as u8;
        borrow = (d < 0) as i32;
    }
    out
}

/// `(R, S + L)` for an Ed25519 signature (S < L < 2^253, so no overflow of 32 bytes).
fn ed25519_twin(sig: &[u8; 64]) -> [u8; 64] {
    let mut out = *sig;
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = sig[32 + i] as u16 + ED25519_L[i] as u16 + carry;
        out[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    out
}

/// A history of three changes (created, rotated twice), exported.
fn history(vault: &SoftwareVault, algorithm: SigningAlgorithm) -> ChangeHistory {
    let mut identity = Identity::create(vault, algorithm, NOW, YEAR).unwrap();
    for day in 1..=2 {
        identity
            .rotate(vault, algorithm, NOW.plus_secs(day * DAY), YEAR)
            .unwrap();
    }
    identity.history().clone()
}

/// The history's bytes with every signature replaced by `twin(signature)`, located by its bytes.
fn with_twins(history: &ChangeHistory, twin: impl Fn(&[u8; 64]) -> [u8; 64]) -> (Vec<u8>, usize) {
    let mut bytes = history.export();
    let mut replaced = 0;
    for change in history.changes() {
        let sigs = [
            Some(&change.self_signature),
            change.previous_signature.as_ref(),
        ];
        for sig in sigs.into_iter().flatten() {
            let original = sig.as_bytes();
            let at = bytes
                .windows(64)
                .position(|w| w == original)
                .expect("signature bytes in the export");
            bytes[at..at + 64].copy_from_slice(&twin(original));
            replaced += 1;
        }
    }
    (bytes, replaced)
}

#[test]
fn p256_history_with_n_minus_s_signatures_is_refused() {
    let vault = SoftwareVault::new();
    for _ in 0..4 {
        let history = history(&vault, SigningAlgorithm::EcdsaP256);
        // What we sign is low-s: the twin of each signature is the high one.
        for change in history.changes() {
            let s = &change.self_signature.as_bytes()[32..];
            assert!(
                s <= &hex_literal(
                    "7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8"
                )[..]
            );
        }
        ChangeHistory::import(&history.export()).expect("the real history imports");
        let (twinned, replaced) = with_twins(&history, p256_twin);
        assert_eq!(
            replaced, 5,
            "3 self signatures and 2 previous-key signatures"
        );
        let result = ChangeHistory::import(&twinned);
        assert!(
            matches!(result, Err(Error::InvalidHistory(_))),
            "{result:?}"
        );
        // And one twin alone, on the first change, is refused by the plain verifier too.
        let first = &history.changes()[0];
        let twin = Signature::new(
            SigningAlgorithm::EcdsaP256,
            p256_twin(first.self_signature.as_bytes()),
        );
        assert!(verify_signature(&first.data.public_key, &first.data.hash(), &twin).is_err());
        verify_signature(
            &first.data.public_key,
            &first.data.hash(),
            &first.self_signature,
        )
        .unwrap();
    }
}

#[test]
fn ed25519_history_with_s_plus_l_signatures_is_refused() {
    let vault = SoftwareVault::new();
    let history = history(&vault, SigningAlgorithm::Ed25519);
    ChangeHistory::import(&history.export()).unwrap();
    let (twinned, replaced) = with_twins(&history, ed25519_twin);
    assert_eq!(replaced, 5);
    let result = ChangeHistory::import(&twinned);
    assert!(
        matches!(result, Err(Error::InvalidHistory(_))),
        "{result:?}"
    );
}
