//! Handshake rows: ours with each provider vs bare snow XX vs rustls mutual TLS 1.3 (with aws-lc-rs, its
//! default provider, and with ring), plus the lower bound our handshake's own primitives set, and the same
//! handshakes spread over two OS threads against one.

use crate::harness::{compare, Contender, Settings};
use crate::ours::{providers, Pair, Party};
use crate::peers::{BenchResult, Snow, SnowResolver, Tls, TlsProvider, TlsSuite};
use crate::report::{Row, Target, Unit};
use latchkey_core::channel::CipherSuite;
use latchkey_core::crypto::{generate_secret, CryptoProvider, Secret32};
use latchkey_core::vault::{
    clear_verified_signature_cache, verify_signature, PublicKey, Signature,
};
use latchkey_core::Timestamp;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What one handshake (both sides together) costs in primitives, counted from `core/src/channel/handshake.rs`
/// and `core/src/identity`:
/// - keygens: one ephemeral key per side;
/// - DHs: ee, es and se, each computed once per side;
/// - signature verifications, four in all: each side checks its own attestation when the handshake starts
///   (`Handshake::new`), and the peer's attestation; the peer's history (one change here) has no signature
///   left to check, since its first self-signature is not checked in a handshake (docs/PROTOCOL.md 3.4: the
///   attestation, by the same key over a message naming the same change hash, proves the same);
/// - signatures: none (attestations are made before handshakes, not during them), so no sign term.
pub const KEYGENS: f64 = 2.0;
pub const DHS: f64 = 6.0;
/// Of those four, the ones a first contact really performs: with both sides in one process and the
/// process-wide verified-signature cache emptied before the handshake, each side's check of its own
/// attestation fills the cache entry the other side then hits when it verifies that attestation. That is also
/// the cost between two processes that have each checked their own attestation once (at their first
/// handshake): each side verifies the unknown peer's attestation.
pub const FIRST_CONTACT_VERIFIES: f64 = 2.0;

/// Median nanoseconds of each primitive with one provider.
struct PrimitiveCosts {
    keygen: f64,
    dh: f64,
    verify: f64,
}

impl PrimitiveCosts {
    fn handshake_ns(&self, verifies: f64) -> f64 {
        KEYGENS * self.keygen + DHS * self.dh + verifies * self.verify
    }
}

/// Inputs for timing one provider's primitives: X25519 through the provider; Ed25519 verification is the
/// core's whatever the provider (AWS-LC's where AWS-LC is built, else ring's), timed with the
/// verified-signature cache emptied first so it is the real verification.
struct PrimitiveInputs {
    provider: &'static dyn CryptoProvider,
    secret: Secret32,
    peer_public: [u8; 32],
    key: PublicKey,
    message: Vec<u8>,
    signature: Signature,
}

impl PrimitiveInputs {
    fn new(provider: &'static dyn CryptoProvider) -> BenchResult<Self> {
        let party = Party::new(provider, Timestamp::now())?;
        let attestation = &party.channel.attestation;
        Ok(PrimitiveInputs {
            provider,
            secret: generate_secret(provider)?,
            peer_public: provider.x25519_public_key(&generate_secret(provider)?),
            key: party.identity.history().primary_public_key().clone(),
            message: attestation.data.signing_message(),
            signature: attestation.signature.clone(),
        })
    }

    fn keygen(&self) {
        let secret = generate_secret(self.provider).expect("random");
        black_box(self.provider.x25519_public_key(&secret));
    }

    fn dh(&self) {
        black_box(
            self.provider
                .x25519(&self.secret, black_box(&self.peer_public))
                .expect("dh"),
        );
    }

    fn verify(&self) {
        clear_verified_signature_cache();
        verify_signature(&self.key, black_box(&self.message), &self.signature).expect("verify");
    }
}

pub fn rows(settings: Settings) -> BenchResult<Vec<Row>> {
    let suite = CipherSuite::ChaChaPoly;
    let [ring, aws_lc, rustcrypto] = providers();
    let ours_ring = Pair::new(ring, suite)?;
    let ours_aws = Pair::new(aws_lc, suite)?;
    let ours_rc = Pair::new(rustcrypto, suite)?;
    let snow_default = Snow::new(suite.protocol_name(), SnowResolver::Default)?;
    let snow_ring = Snow::new(suite.protocol_name(), SnowResolver::Ring)?;
    let tls = Tls::with_provider(TlsSuite::Default, TlsProvider::Ring)?;
    let tls_aws = Tls::with_provider(TlsSuite::Default, TlsProvider::AwsLc)?;
    // Every contender must really complete before it is timed.
    ours_ring.handshake()?;
    ours_aws.handshake()?;
    ours_rc.handshake()?;
    snow_default.handshake()?;
    snow_ring.handshake()?;
    let mut tls_buf = Vec::with_capacity(8192);
    tls.handshake(&mut tls_buf)?;
    tls_aws.handshake(&mut tls_buf)?;
    let mut tls_aws_buf = Vec::with_capacity(8192);

    // First contact: the verified-signature cache is emptied before each handshake (see
    // FIRST_CONTACT_VERIFIES). Known peer: the cache holds both sides' proofs, as when a peer reconnects.
    let cold = |pair: &Pair| {
        clear_verified_signature_cache();
        black_box(pair.handshake().expect("handshake"));
    };
    let warm = |pair: &Pair| {
        black_box(pair.handshake().expect("handshake"));
    };
    let ring_prims = PrimitiveInputs::new(ring)?;
    let aws_prims = PrimitiveInputs::new(aws_lc)?;
    // The primitives are timed in the same interleaved run as the handshakes, so the bound sees the same
    // machine load.
    let ns = compare(
        settings,
        &mut [
            Contender::new("ours ring cold", || cold(&ours_ring)),
            Contender::new("ours aws cold", || cold(&ours_aws)),
            Contender::new("ours ring warm", || warm(&ours_ring)),
            Contender::new("ours aws warm", || warm(&ours_aws)),
            Contender::new("snow default", || {
                black_box(snow_default.handshake().expect("snow"));
            }),
            Contender::new("snow ring", || {
                black_box(snow_ring.handshake().expect("snow"));
            }),
            Contender::new("rustls", || {
                black_box(tls.handshake(&mut tls_buf).expect("rustls"));
            }),
            Contender::new("keygen ring", || ring_prims.keygen()),
            Contender::new("dh ring", || ring_prims.dh()),
            Contender::new("verify ring", || ring_prims.verify()),
            Contender::new("keygen aws-lc", || aws_prims.keygen()),
            Contender::new("dh aws-lc", || aws_prims.dh()),
            Contender::new("verify aws-lc", || aws_prims.verify()),
            Contender::new("ours rustcrypto cold", || cold(&ours_rc)),
            Contender::new("ours rustcrypto warm", || warm(&ours_rc)),
            Contender::new("rustls aws-lc", || {
                black_box(tls_aws.handshake(&mut tls_aws_buf).expect("rustls"));
            }),
        ],
    );
    let per_s = |ns: f64| 1e9 / ns;
    let ring_cost = PrimitiveCosts {
        keygen: ns[7],
        dh: ns[8],
        verify: ns[9],
    };
    let aws_cost = PrimitiveCosts {
        keygen: ns[10],
        dh: ns[11],
        verify: ns[12],
    };
    // Issue 12 compares each side with its default provider: ours is AWS-LC where it builds (the aws-lc
    // column), rustls's is aws-lc-rs. The ring row compares like with like for builds without AWS-LC.
    let peers = [
        (
            "rustls TLS 1.3 mutual, Ed25519 certs, aws-lc-rs (rustls's default)",
            per_s(ns[15]),
            Some(1.2),
        ),
        (
            "rustls TLS 1.3 mutual, Ed25519 certs, ring",
            per_s(ns[6]),
            Some(1.2),
        ),
        (SnowResolver::Default.label(), per_s(ns[4]), Some(1.0)),
        (SnowResolver::Ring.label(), per_s(ns[5]), Some(1.0)),
    ];
    let mut rows = Vec::new();
    for (label, ring_ns, aws_ns, rc_ns, verifies) in [
        (
            "Handshake, first contact (peer proofs verified: 2 Ed25519 checks; our default: aws-lc)",
            ns[0],
            ns[1],
            ns[13],
            FIRST_CONTACT_VERIFIES,
        ),
        (
            "Handshake, known peer (proofs answered by the verified-signature cache; our default: aws-lc)",
            ns[2],
            ns[3],
            ns[14],
            0.0,
        ),
    ] {
        let row = |peer: &str, value: f64, target: Option<f64>| Row {
            measurement: label.into(),
            unit: Unit::PerSecond,
            ring: Some(per_s(ring_ns)),
            rustcrypto: Some(per_s(rc_ns)),
            aws_lc: Some(per_s(aws_ns)),
            peer: peer.into(),
            peer_value: Some(value),
            target: target.map(Target::RatioAtLeast),
        };
        for (peer, value, target) in peers {
            rows.push(row(peer, value, target));
        }
        let bound = |cost: &PrimitiveCosts| per_s(cost.handshake_ns(verifies));
        rows.push(Row {
            aws_lc: None,
            rustcrypto: None,
            ..row(
                &format!("lower bound: ring+x25519-dalek primitives ({verifies} verifies)"),
                bound(&ring_cost),
                None,
            )
        });
        rows.push(Row {
            ring: None,
            rustcrypto: None,
            ..row(
                &format!("lower bound: aws-lc primitives ({verifies} verifies)"),
                bound(&aws_cost),
                None,
            )
        });
    }
    rows.extend(thread_rows(settings, ring, aws_lc, suite)?);
    Ok(rows)
}

/// Handshakes per timed operation of the thread rows: enough that starting two threads (tens of µs) is
/// lost in the noise.
const HANDSHAKES_PER_OP: usize = 64;
/// X25519 operations per timed operation of the ceiling row (about as long as `HANDSHAKES_PER_OP`
/// handshakes).
const CEILING_DHS: usize = 1024;
/// Pairs of parties cycled through for first contact (half in each thread's pool): between two uses of a
/// pair, the other pairs of its own pool alone insert more than the verified-signature cache's capacity
/// (2 misses each, the two attestations: 2 × 2,175 > 4,096 entries), so the cache has been emptied and each
/// handshake really verifies its 2 signatures, without the timed threads clearing the cache under each
/// other's feet.
const FIRST_CONTACT_PAIRS: usize = 4352;

/// A pool of pairs handed out round-robin, from any thread.
struct Pool {
    pairs: Vec<Pair>,
    next: AtomicUsize,
}

impl Pool {
    fn new(
        provider: &'static dyn CryptoProvider,
        suite: CipherSuite,
        n: usize,
    ) -> BenchResult<Self> {
        Ok(Pool {
            pairs: (0..n)
                .map(|_| Pair::new(provider, suite))
                .collect::<Result<_, _>>()?,
            next: AtomicUsize::new(0),
        })
    }

    fn handshakes(&self, n: usize) {
        for _ in 0..n {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pairs.len();
            black_box(self.pairs[i].handshake().expect("handshake"));
        }
    }
}

/// `HANDSHAKES_PER_OP` handshakes on this thread, or split evenly over two scoped OS threads, each with its
/// own pool (as two workers of a server have their own connections).
fn run_split(pools: &[Pool; 2], threads: usize) {
    if threads == 1 {
        pools[0].handshakes(HANDSHAKES_PER_OP);
    } else {
        std::thread::scope(|scope| {
            for pool in pools {
                scope.spawn(move || pool.handshakes(HANDSHAKES_PER_OP / 2));
            }
        });
    }
}

/// "Handshakes on 2 threads ≥ 1.8× one thread" (issue 12): the same number of handshakes done by one
/// thread, then by two, interleaved sample by sample: first contact (independent pairs, through the pools)
/// and known peers (two clients of one server: the server's vault serves both threads).
fn thread_rows(
    settings: Settings,
    ring: &'static dyn CryptoProvider,
    aws_lc: &'static dyn CryptoProvider,
    suite: CipherSuite,
) -> BenchResult<Vec<Row>> {
    let pools = |provider, n| -> BenchResult<[Pool; 2]> {
        Ok([
            Pool::new(provider, suite, n)?,
            Pool::new(provider, suite, n)?,
        ])
    };
    let (ring_cold, aws_cold) = (
        pools(ring, FIRST_CONTACT_PAIRS / 2)?,
        pools(aws_lc, FIRST_CONTACT_PAIRS / 2)?,
    );
    // Known peers: two clients of one server, so both threads use the server's vault (its static key).
    let server_pools = |provider: &'static dyn CryptoProvider| -> BenchResult<[Pool; 2]> {
        let now = Timestamp::now();
        let server = Party::new(provider, now)?;
        let pool = || -> BenchResult<Pool> {
            let client = Party::new(provider, now)?;
            Ok(Pool {
                pairs: vec![Pair::between(&client, &server, provider, suite)],
                next: AtomicUsize::new(0),
            })
        };
        Ok([pool()?, pool()?])
    };
    let (ring_warm, aws_warm) = (server_pools(ring)?, server_pools(aws_lc)?);
    // The machine's own ceiling: work that shares nothing (X25519 on a secret per thread), split the same way.
    let dh_inputs = [PrimitiveInputs::new(aws_lc)?, PrimitiveInputs::new(aws_lc)?];
    let dh_split = |threads: usize| {
        if threads == 1 {
            for _ in 0..CEILING_DHS {
                dh_inputs[0].dh();
            }
        } else {
            std::thread::scope(|scope| {
                for inputs in &dh_inputs {
                    scope.spawn(move || {
                        for _ in 0..CEILING_DHS / 2 {
                            inputs.dh();
                        }
                    });
                }
            });
        }
    };
    let ns = compare(
        settings,
        &mut [
            Contender::new("ring cold x1", || run_split(&ring_cold, 1)),
            Contender::new("ring cold x2", || run_split(&ring_cold, 2)),
            Contender::new("aws cold x1", || run_split(&aws_cold, 1)),
            Contender::new("aws cold x2", || run_split(&aws_cold, 2)),
            Contender::new("ring warm x1", || run_split(&ring_warm, 1)),
            Contender::new("ring warm x2", || run_split(&ring_warm, 2)),
            Contender::new("aws warm x1", || run_split(&aws_warm, 1)),
            Contender::new("aws warm x2", || run_split(&aws_warm, 2)),
            Contender::new("dh x1", || dh_split(1)),
            Contender::new("dh x2", || dh_split(2)),
        ],
    );
    let per_s = |ns: f64| HANDSHAKES_PER_OP as f64 * 1e9 / ns;
    let mut rows = Vec::new();
    for (what, i) in [("first contact", 0), ("known peer", 4)] {
        let row = |provider: &str, one: f64, two: f64, ring: bool| Row {
            measurement: format!(
                "Handshakes on 2 threads, {what} (the same work split over 2 OS threads)"
            ),
            unit: Unit::PerSecond,
            ring: ring.then_some(per_s(two)),
            rustcrypto: None,
            aws_lc: (!ring).then_some(per_s(two)),
            peer: format!("ours ({provider}), the same handshakes on 1 thread"),
            peer_value: Some(per_s(one)),
            target: Some(Target::RatioAtLeast(1.8)),
        };
        rows.push(row("ring", ns[i], ns[i + 1], true));
        rows.push(row("aws-lc", ns[i + 2], ns[i + 3], false));
    }
    // Operations per second of the ceiling row count X25519 operations.
    let dh_per_s = |ns: f64| CEILING_DHS as f64 * 1e9 / ns;
    rows.push(Row {
        measurement:
            "2 threads vs 1, work sharing nothing (X25519 loop, aws-lc): this machine's ceiling"
                .into(),
        unit: Unit::PerSecond,
        ring: None,
        rustcrypto: None,
        aws_lc: Some(dh_per_s(ns[9])),
        peer: "the same X25519 loop on 1 thread".into(),
        peer_value: Some(dh_per_s(ns[8])),
        target: None,
    });
    Ok(rows)
}
