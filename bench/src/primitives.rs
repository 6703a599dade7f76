//! Micro-benchmark of the handshake's public-key primitives with every implementation built here
//! (`cargo run --release -p latchkey-bench --bin latchkey-bench-primitives`): X25519 key generation and DH,
//! Ed25519 verification, and two verifications under one public key (a peer's history self-signature and
//! its attestation). Contenders of one row are timed interleaved (see `harness.rs`) in process CPU time; the table shows
//! medians.
//! This chooses the implementation each primitive of the default provider uses; it is not part of
//! `make bench`'s table.

#[path = "harness.rs"]
#[allow(dead_code)]
mod harness;

use harness::{Contender, Settings};
use std::hint::black_box;

/// CPU time of this process (all its threads), in nanoseconds: on a machine shared with other work, waiting
/// for a core is not counted, so the medians stay close to what an idle machine shows.
fn process_cpu_ns() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to write.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

/// The harness's interleaved comparison (calibrated batches, round-robin samples, medians) timed in process
/// CPU time instead of wall time.
fn compare(settings: Settings, contenders: &mut [Contender<'_>]) -> Vec<f64> {
    let mut batch = Vec::with_capacity(contenders.len());
    for c in contenders.iter_mut() {
        let start = process_cpu_ns();
        let mut n: u64 = 0;
        while process_cpu_ns() - start < settings.warm_up.as_nanos() as f64 || n == 0 {
            (c.run)();
            n += 1;
        }
        let per_op = (process_cpu_ns() - start) / n as f64;
        batch.push(((settings.sample.as_nanos() as f64 / per_op).ceil() as u64).max(1));
    }
    let mut samples = vec![Vec::with_capacity(settings.samples); contenders.len()];
    for _ in 0..settings.samples {
        for (i, c) in contenders.iter_mut().enumerate() {
            let start = process_cpu_ns();
            for _ in 0..batch[i] {
                (c.run)();
            }
            samples[i].push((process_cpu_ns() - start) / batch[i] as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect()
}

fn aws_lc_x25519(secret: &[u8; 32], peer: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // SAFETY: three 32-byte arrays, read or written exactly as X25519 documents.
    let ok = unsafe { aws_lc_sys::X25519(out.as_mut_ptr(), secret.as_ptr(), peer.as_ptr()) };
    assert_eq!(ok, 1);
    out
}

fn aws_lc_x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // SAFETY: two 32-byte arrays.
    unsafe { aws_lc_sys::X25519_public_from_private(out.as_mut_ptr(), secret.as_ptr()) };
    out
}

fn aws_lc_ed25519_verify_raw(key: &[u8; 32], message: &[u8], sig: &[u8; 64]) -> bool {
    // SAFETY: the message pointer and length describe one slice; signature 64 bytes, key 32 bytes.
    unsafe {
        aws_lc_sys::ED25519_verify(message.as_ptr(), message.len(), sig.as_ptr(), key.as_ptr()) == 1
    }
}

fn row(title: &str, contenders: &mut [Contender<'_>]) -> Vec<f64> {
    let settings = Settings::from_env();
    let medians = compare(settings, contenders);
    println!("\n{title}");
    let best = medians.iter().cloned().fold(f64::INFINITY, f64::min);
    for (c, ns) in contenders.iter().zip(&medians) {
        println!(
            "  {:<52} {:>9.2} µs  {:>5.2}× best",
            c.name,
            ns / 1000.0,
            ns / best
        );
    }
    medians
}

fn main() {
    use ed25519_dalek::{Signer as _, Verifier as _};
    use ring::signature::KeyPair as _;

    println!(
        "curve25519-dalek backend: {}",
        if std::is_x86_feature_detected!("avx2") {
            "AVX2 available (curve25519-dalek 4 selects its AVX2 backend at run time for Edwards arithmetic)"
        } else {
            "serial"
        }
    );
    let secret = [0x42u8; 32];
    let peer_secret = [0x17u8; 32];
    let peer = aws_lc_x25519_public(&peer_secret);
    let dalek_secret = x25519_dalek::StaticSecret::from(secret);
    let dalek_peer = x25519_dalek::PublicKey::from(peer);
    assert_eq!(
        dalek_secret.diffie_hellman(&dalek_peer).to_bytes(),
        aws_lc_x25519(&secret, &peer)
    );
    let rng = ring::rand::SystemRandom::new();

    let keygen = row(
        "X25519 key generation (public key from a secret)",
        &mut [
            Contender::new("AWS-LC X25519_public_from_private", || {
                black_box(aws_lc_x25519_public(black_box(&secret)));
            }),
            Contender::new("x25519-dalek PublicKey::from (precomputed tables)", || {
                black_box(x25519_dalek::PublicKey::from(black_box(&dalek_secret)));
            }),
            Contender::new(
                "ring EphemeralPrivateKey::generate + compute_public_key",
                || {
                    let key = ring::agreement::EphemeralPrivateKey::generate(
                        &ring::agreement::X25519,
                        &rng,
                    )
                    .unwrap();
                    black_box(key.compute_public_key().unwrap());
                },
            ),
        ],
    );

    let dh = row(
        "X25519 DH (ring: ephemeral generate + public + agree, so DH ≈ this − the keygen row)",
        &mut [
            Contender::new("AWS-LC X25519", || {
                black_box(aws_lc_x25519(black_box(&secret), black_box(&peer)));
            }),
            Contender::new("x25519-dalek StaticSecret::diffie_hellman", || {
                black_box(dalek_secret.diffie_hellman(black_box(&dalek_peer)));
            }),
            Contender::new("ring generate + agree_ephemeral", || {
                let key =
                    ring::agreement::EphemeralPrivateKey::generate(&ring::agreement::X25519, &rng)
                        .unwrap();
                let peer = ring::agreement::UnparsedPublicKey::new(&ring::agreement::X25519, &peer);
                black_box(ring::agreement::agree_ephemeral(key, &peer, |k| k[0]).unwrap());
            }),
        ],
    );

    let seed = [7u8; 32];
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    let public: [u8; 32] = signing.verifying_key().to_bytes();
    // A history self-signature and an attestation are a few hundred bytes each.
    let message_a = vec![0xa5u8; 180];
    let message_b = vec![0x5au8; 220];
    let sig_a = signing.sign(&message_a).to_bytes();
    let sig_b = signing.sign(&message_b).to_bytes();
    assert!(aws_lc_ed25519_verify_raw(&public, &message_a, &sig_a));
    let ring_key = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    assert_eq!(ring_key.public_key().as_ref(), &public);

    let aws_evp = |m: &[u8], s: &[u8; 64]| {
        aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, &public)
            .verify(m, s)
            .is_ok()
    };
    let ring_verify = |m: &[u8], s: &[u8; 64]| {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &public)
            .verify(m, s)
            .is_ok()
    };
    let dalek_verify = |m: &[u8], s: &[u8; 64]| {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
        key.verify(m, &ed25519_dalek::Signature::from_bytes(s))
            .is_ok()
    };
    let dalek_strict = |m: &[u8], s: &[u8; 64]| {
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
        key.verify_strict(m, &ed25519_dalek::Signature::from_bytes(s))
            .is_ok()
    };
    let verify = row(
        "Ed25519 verification (one signature, key parsed each time)",
        &mut [
            Contender::new("AWS-LC ED25519_verify (direct)", || {
                assert!(aws_lc_ed25519_verify_raw(
                    &public,
                    black_box(&message_a),
                    &sig_a
                ));
            }),
            Contender::new("AWS-LC via aws-lc-rs (EVP_PKEY)", || {
                assert!(aws_evp(black_box(&message_a), &sig_a));
            }),
            Contender::new("ring", || {
                assert!(ring_verify(black_box(&message_a), &sig_a));
            }),
            Contender::new("ed25519-dalek verify", || {
                assert!(dalek_verify(black_box(&message_a), &sig_a));
            }),
            Contender::new("ed25519-dalek verify_strict", || {
                assert!(dalek_strict(black_box(&message_a), &sig_a));
            }),
        ],
    );

    // The fixed cost the two-thread handshake rows pay per timed operation when they spawn their threads:
    // two scoped threads, each drawing 32 random bytes once (AWS-LC then seeds a per-thread generator), against
    // the same draw on this thread.
    row(
        "Per-operation overhead of the 2-thread rows: spawn and join 2 threads that each draw randomness once",
        &mut [
            Contender::new("2 scoped threads spawned, 1 RAND_bytes each", || {
                std::thread::scope(|scope| {
                    for _ in 0..2 {
                        scope.spawn(|| {
                            let mut buf = [0u8; 32];
                            aws_lc_rs::rand::fill(&mut buf).unwrap();
                            black_box(buf);
                        });
                    }
                });
            }),
            Contender::new("1 RAND_bytes on this thread", || {
                let mut buf = [0u8; 32];
                aws_lc_rs::rand::fill(&mut buf).unwrap();
                black_box(buf);
            }),
        ],
    );

    row(
        "Ed25519: two signatures under one public key",
        &mut [
            Contender::new("AWS-LC ED25519_verify ×2 (direct)", || {
                assert!(aws_lc_ed25519_verify_raw(
                    &public,
                    black_box(&message_a),
                    &sig_a
                ));
                assert!(aws_lc_ed25519_verify_raw(
                    &public,
                    black_box(&message_b),
                    &sig_b
                ));
            }),
            Contender::new("AWS-LC via aws-lc-rs, key parsed once", || {
                let key = aws_lc_rs::signature::ParsedPublicKey::new(
                    &aws_lc_rs::signature::ED25519,
                    public,
                )
                .unwrap();
                assert!(key.verify_sig(black_box(&message_a), &sig_a).is_ok());
                assert!(key.verify_sig(black_box(&message_b), &sig_b).is_ok());
            }),
            Contender::new("ed25519-dalek verify, key decompressed once", || {
                let key = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
                assert!(key
                    .verify(
                        black_box(&message_a),
                        &ed25519_dalek::Signature::from_bytes(&sig_a)
                    )
                    .is_ok());
                assert!(key
                    .verify(
                        black_box(&message_b),
                        &ed25519_dalek::Signature::from_bytes(&sig_b)
                    )
                    .is_ok());
            }),
            Contender::new("ed25519-dalek verify_strict, key decompressed once", || {
                let key = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
                assert!(key
                    .verify_strict(
                        black_box(&message_a),
                        &ed25519_dalek::Signature::from_bytes(&sig_a)
                    )
                    .is_ok());
                assert!(key
                    .verify_strict(
                        black_box(&message_b),
                        &ed25519_dalek::Signature::from_bytes(&sig_b)
                    )
                    .is_ok());
            }),
        ],
    );

    let aws_signer = aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    let sign = row(
        "Ed25519 signing (what TLS's CertificateVerify costs each side; our handshake signs nothing)",
        &mut [
            Contender::new("AWS-LC (aws-lc-rs Ed25519KeyPair)", || {
                black_box(aws_signer.sign(black_box(&message_a)));
            }),
            Contender::new("ring Ed25519KeyPair", || {
                black_box(ring_key.sign(black_box(&message_a)));
            }),
            Contender::new("ed25519-dalek SigningKey", || {
                black_box(signing.sign(black_box(&message_a)));
            }),
        ],
    );
    // The public-key floor of one mutually authenticated first contact (both sides), AWS-LC's primitives:
    // ours (Noise XX with identity proofs): 2 keygens, 6 DHs, 2 verifications (each side: the peer's
    // attestation; the peer's first self-signature is not checked in a handshake, PROTOCOL.md 3.4), no
    // signature;
    // TLS 1.3 mutual with Ed25519 certificates (rustls): 2 keygens, 2 DHs, 2 signatures (CertificateVerify)
    // and 4 verifications (each side: the peer's certificate and its CertificateVerify).
    let ours = 2.0 * keygen[0] + 6.0 * dh[0] + 2.0 * verify[0];
    let tls = 2.0 * keygen[0] + 2.0 * dh[0] + 2.0 * sign[0] + 4.0 * verify[0];
    println!(
        "\nPublic-key floor of a first contact with AWS-LC: ours {:.0} µs (2 keygen + 6 DH + 2 verify), \
         TLS 1.3 mutual {:.0} µs (2 keygen + 2 DH + 2 sign + 4 verify): ours does {:.2}× TLS's public-key work",
        ours / 1000.0,
        tls / 1000.0,
        ours / tls
    );
}
