//! Signature verification must give the same answer on every build: a host verifies with AWS-LC (Ed25519 on
//! x86-64/aarch64 Linux and macOS) or ring (`latchkey_core::vault::verify_signature` with the default
//! features), in both cases after the core's Ed25519 key pre-check, a device without ring with
//! ed25519-dalek's `verify` and the `p256` crate (core/src/crypto/sig.rs, `rustcrypto_impl`). If they
//! disagreed, a history or attestation could be valid on a device and invalid on a host. This target compares
//! the two on raw inputs and on honest signatures bent the ways verifiers are known to differ on:
//! non-canonical S, small-order and non-canonical public keys and R, ECDSA's `s ↔ n − s`, flipped bits.
//! Input: `mode: u8 ‖ …`: mode 0 Ed25519 raw (`key: 32 ‖ signature: 64 ‖ message`), 1 Ed25519 honest
//! (`seed: 32 ‖ bend: u8 ‖ a: u8 ‖ b: u8 ‖ message`), 2 P-256 raw (`key: 64 (0x04 is prepended) ‖
//! signature: 64 ‖ message`), 3 P-256 honest (`scalar: 32 ‖ bend: u8 ‖ a: u8 ‖ message`).
//!
//! Checks: ring and the pure-Rust verifier agree on every input (for P-256, on every input with a low `s`:
//! high `s` is where issue 10 changes the rules); an honest, unbent signature verifies. The pure-Rust side
//! mirrors `rustcrypto_impl::verify` in core/src/crypto/sig.rs (which is crate-private): change both together.
#![no_main]

use curve25519_dalek::constants::EIGHT_TORSION;
use ed25519_dalek::{Signer as _, Verifier as _};
use latchkey_core::vault::{verify_signature, PublicKey, Signature, SigningAlgorithm};
use latchkey_fuzz::Cursor;
use libfuzzer_sys::fuzz_target;

/// The Ed25519 group order L, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
/// The P-256 group order n, big-endian.
const N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// n / 2, big-endian: an ECDSA `s` above it is "high".
const HALF_N: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// Whether the P-256 verdicts are compared: not for a high `s`, where issue 10 asks the protocol to accept
/// only low `s` (one encoding per signature) and the two builds may change at different times.
fn compared(sig: &[u8; 64]) -> bool {
    sig[32..] <= HALF_N[..]
}

fn add_le(a: &mut [u8], b: &[u8; 32]) {
    let mut carry = 0u16;
    for (x, y) in a.iter_mut().zip(b) {
        let s = u16::from(*x) + u16::from(*y) + carry;
        *x = s as u8;
        carry = s >> 8;
    }
}

/// `n − s` for a big-endian `s` (wrapping; only meaningful for s < n).
fn n_minus(s: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = (d + 256 * borrow) as u8;
    }
    out
}

fn array<const K: usize>(bytes: &[u8]) -> [u8; K] {
    let mut out = [0u8; K];
    out[..bytes.len().min(K)].copy_from_slice(&bytes[..bytes.len().min(K)]);
    out
}

fn ring_ed25519(key: &[u8; 32], message: &[u8], sig: &[u8; 64]) -> bool {
    verify_signature(
        &PublicKey::Ed25519(*key),
        message,
        &Signature::new(SigningAlgorithm::Ed25519, *sig),
    )
    .is_ok()
}

/// The core's pre-check (`ed25519_key_is_canonical` in core/src/crypto/sig.rs): a non-reduced `y` and `x = 0`
/// with the sign bit are refused before any library verifies.
fn canonical_key(key: &[u8; 32]) -> bool {
    let sign = key[31] >> 7;
    let mut y = *key;
    y[31] &= 0x7f;
    let high_all_ones = y[1..31].iter().all(|&b| b == 0xff) && y[31] == 0x7f;
    let not_reduced = high_all_ones && y[0] >= 0xed;
    let y_is_one = y[0] == 1 && y[1..].iter().all(|&b| b == 0);
    let y_is_minus_one = high_all_ones && y[0] == 0xec;
    !not_reduced && !(sign == 1 && (y_is_one || y_is_minus_one))
}

fn dalek_ed25519(key: &[u8; 32], message: &[u8], sig: &[u8; 64]) -> bool {
    canonical_key(key)
        && ed25519_dalek::VerifyingKey::from_bytes(key).is_ok_and(|k| {
            k.verify(message, &ed25519_dalek::Signature::from_bytes(sig))
                .is_ok()
        })
}

fn ring_p256(key: &[u8; 65], message: &[u8], sig: &[u8; 64]) -> bool {
    verify_signature(
        &PublicKey::EcdsaP256(*key),
        message,
        &Signature::new(SigningAlgorithm::EcdsaP256, *sig),
    )
    .is_ok()
}

fn rustcrypto_p256(key: &[u8; 65], message: &[u8], sig: &[u8; 64]) -> bool {
    use p256::ecdsa::signature::Verifier as _;
    let (Ok(key), Ok(sig)) = (
        p256::ecdsa::VerifyingKey::from_sec1_bytes(key),
        p256::ecdsa::Signature::from_slice(sig),
    ) else {
        return false;
    };
    key.verify(message, &sig).is_ok()
}

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    match input.u8() % 4 {
        0 => {
            let key = array::<32>(input.bytes(32));
            let sig = array::<64>(input.bytes(64));
            let message = input.rest();
            assert_eq!(
                ring_ed25519(&key, message, &sig),
                dalek_ed25519(&key, message, &sig),
                "Ed25519: ring and ed25519-dalek disagree on key {} sig {}",
                hex::encode(key),
                hex::encode(sig)
            );
        }
        1 => {
            let seed = array::<32>(input.bytes(32));
            let (bend, a, b) = (input.u8(), input.u8(), input.u8());
            let message = input.rest();
            let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
            let mut key = signing.verifying_key().to_bytes();
            let mut sig = signing.sign(message).to_bytes();
            let honest = bend % 6 == 0;
            match bend % 6 {
                1 => add_le(&mut sig[32..], &L), // S + L: non-canonical S
                2 => {
                    // A small-order key with a small-order R and S = 0: "valid" for some messages.
                    key = EIGHT_TORSION[a as usize % 8].compress().to_bytes();
                    sig[..32].copy_from_slice(&EIGHT_TORSION[b as usize % 8].compress().to_bytes());
                    sig[32..].fill(0);
                }
                3 => {
                    // Non-canonical encodings (y ≥ p) of the few points that have one, as key or R.
                    let mut y = [0xffu8; 32];
                    y[0] = 0xed + (a % 19);
                    y[31] = 0x7f | (b & 0x80);
                    if b & 1 == 0 {
                        key = y;
                    } else {
                        sig[..32].copy_from_slice(&y);
                    }
                    if b & 2 != 0 {
                        sig[32..].fill(0);
                    }
                }
                4 => {
                    // A torsion component added to R.
                    let r = curve25519_dalek::edwards::CompressedEdwardsY(array::<32>(&sig[..32]))
                        .decompress()
                        .expect("an honest R decodes");
                    sig[..32].copy_from_slice(
                        &(r + EIGHT_TORSION[a as usize % 8]).compress().to_bytes(),
                    );
                }
                5 => {
                    sig[a as usize % 64] ^= 1 << (b % 8);
                }
                _ => {}
            }
            let ring = ring_ed25519(&key, message, &sig);
            assert_eq!(
                ring,
                dalek_ed25519(&key, message, &sig),
                "Ed25519 (bend {}): ring and ed25519-dalek disagree on key {} sig {} message {}",
                bend % 6,
                hex::encode(key),
                hex::encode(sig),
                hex::encode(message)
            );
            if honest {
                assert!(ring, "an honest Ed25519 signature did not verify");
            }
        }
        2 => {
            let mut key = [4u8; 65];
            key[1..].copy_from_slice(&array::<64>(input.bytes(64)));
            let sig = array::<64>(input.bytes(64));
            let message = input.rest();
            let (ring, rustcrypto) = (
                ring_p256(&key, message, &sig),
                rustcrypto_p256(&key, message, &sig),
            );
            if compared(&sig) {
                assert_eq!(
                    ring,
                    rustcrypto,
                    "P-256: ring and p256 disagree on key {} sig {}",
                    hex::encode(key),
                    hex::encode(sig)
                );
            }
        }
        _ => {
            use p256::ecdsa::signature::Signer as _;
            let scalar = array::<32>(input.bytes(32));
            let (bend, a) = (input.u8(), input.u8());
            let message = input.rest();
            let Ok(signing) = p256::ecdsa::SigningKey::from_slice(&scalar) else {
                return;
            };
            let point = signing.verifying_key().to_encoded_point(false);
            let key: [u8; 65] = point.as_bytes().try_into().expect("uncompressed point");
            let signature: p256::ecdsa::Signature = signing.sign(message);
            let mut sig: [u8; 64] = signature.to_bytes().into();
            let honest = bend % 3 == 0;
            match bend % 3 {
                1 => {
                    let high = n_minus(&sig[32..]);
                    sig[32..].copy_from_slice(&high); // the other s of the same signature
                }
                2 => sig[a as usize % 64] ^= 1 << (a % 8),
                _ => {}
            }
            let ring = ring_p256(&key, message, &sig);
            if compared(&sig) {
                assert_eq!(
                    ring,
                    rustcrypto_p256(&key, message, &sig),
                    "P-256 (bend {}): ring and p256 disagree on key {} sig {} message {}",
                    bend % 3,
                    hex::encode(key),
                    hex::encode(sig),
                    hex::encode(message)
                );
            }
            if honest && compared(&sig) {
                assert!(ring, "an honest low-s P-256 signature did not verify");
            }
        }
    }
});
