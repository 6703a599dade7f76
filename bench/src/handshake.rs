//! Handshake rows: ours with each provider vs bare snow XX vs rustls mutual TLS 1.3, plus the lower bound
//! our handshake's own primitives set.

use crate::harness::{compare, time, Contender, Settings};
use crate::ours::{providers, Pair, Party};
use crate::peers::{BenchResult, Snow, SnowResolver, Tls, TlsSuite};
use crate::report::{Row, Target, Unit};
use latchkey_core::channel::CipherSuite;
use latchkey_core::crypto::{generate_secret, CryptoProvider};
use latchkey_core::vault::verify_signature;
use latchkey_core::Timestamp;
use std::hint::black_box;

/// What one handshake (both sides together) costs in primitives, counted from `core/src/channel/handshake.rs`
/// and `core/src/identity`:
/// - keygens: one ephemeral key per side;
/// - DHs: ee, es and se, each computed once per side;
/// - signature verifications: each side checks its own attestation when the handshake starts
///   (`Handshake::new`), and the peer's history (one self-signature per change; one change here) and the
///   peer's attestation;
/// - signatures: none (attestations are made before handshakes, not during them), so no sign term.
pub const KEYGENS: f64 = 2.0;
pub const DHS: f64 = 6.0;
pub const VERIFIES: f64 = 6.0;

/// Nanoseconds of one handshake's primitives with `provider` (X25519 via the provider; Ed25519 verification
/// is ring's in both cases, as the core has it).
fn lower_bound_ns(settings: Settings, provider: &'static dyn CryptoProvider) -> BenchResult<f64> {
    let party = Party::new(provider, Timestamp::now())?;
    let keygen = time(settings, || {
        let secret = generate_secret(provider).expect("random");
        black_box(provider.x25519_public_key(&secret));
    });
    let a = generate_secret(provider)?;
    let b_public = provider.x25519_public_key(&generate_secret(provider)?);
    let dh = time(settings, || {
        black_box(provider.x25519(&a, &b_public).expect("dh"));
    });
    let attestation = &party.channel.attestation;
    let message = attestation.data.signing_message();
    let key = party.identity.history().primary_public_key().clone();
    let verify = time(settings, || {
        verify_signature(&key, black_box(&message), &attestation.signature).expect("verify")
    });
    Ok(KEYGENS * keygen + DHS * dh + VERIFIES * verify)
}

pub fn rows(settings: Settings) -> BenchResult<Vec<Row>> {
    let suite = CipherSuite::ChaChaPoly;
    let [ring, aws_lc] = providers();
    let ours_ring = Pair::new(ring, suite)?;
    let ours_aws = Pair::new(aws_lc, suite)?;
    let snow_default = Snow::new(suite.protocol_name(), SnowResolver::Default)?;
    let snow_ring = Snow::new(suite.protocol_name(), SnowResolver::Ring)?;
    let tls = Tls::new(TlsSuite::Default)?;
    // Every contender must really complete before it is timed.
    ours_ring.handshake()?;
    ours_aws.handshake()?;
    snow_default.handshake()?;
    snow_ring.handshake()?;
    let mut tls_buf = Vec::with_capacity(8192);
    tls.handshake(&mut tls_buf)?;

    let ns = compare(
        settings,
        &mut [
            Contender::new("ours ring", || {
                black_box(ours_ring.handshake().expect("handshake"));
            }),
            Contender::new("ours aws-lc", || {
                black_box(ours_aws.handshake().expect("handshake"));
            }),
            Contender::new("snow default", || {
                black_box(snow_default.handshake().expect("snow"));
            }),
            Contender::new("snow ring", || {
                black_box(snow_ring.handshake().expect("snow"));
            }),
            Contender::new("rustls", || {
                black_box(tls.handshake(&mut tls_buf).expect("rustls"));
            }),
        ],
    );
    let per_s = |ns: f64| 1e9 / ns;
    let bound_ring = per_s(lower_bound_ns(settings, ring)?);
    let bound_aws = per_s(lower_bound_ns(settings, aws_lc)?);
    let (r, a) = (Some(per_s(ns[0])), Some(per_s(ns[1])));
    let row = |peer: &str, value: f64, target: Option<f64>| Row {
        measurement: "Handshake, mutual auth, in memory (ChaChaPoly)".into(),
        unit: Unit::PerSecond,
        ring: r,
        aws_lc: a,
        peer: peer.into(),
        peer_value: Some(value),
        target: target.map(Target::RatioAtLeast),
    };
    Ok(vec![
        row(
            "rustls TLS 1.3 mutual, Ed25519 certs",
            per_s(ns[4]),
            Some(1.2),
        ),
        row(SnowResolver::Default.label(), per_s(ns[2]), Some(1.0)),
        row(SnowResolver::Ring.label(), per_s(ns[3]), Some(1.0)),
        Row {
            ring: r,
            aws_lc: None,
            ..row(
                "lower bound: ring+x25519-dalek primitives",
                bound_ring,
                None,
            )
        },
        Row {
            ring: None,
            aws_lc: a,
            ..row("lower bound: aws-lc primitives", bound_aws, None)
        },
    ])
}
