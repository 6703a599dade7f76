//! Transport rows: encrypt + decrypt of one message, per size and suite: ours (in place, no allocation) with
//! each provider (ring, RustCrypto, AWS-LC) vs raw ring AEAD vs snow (both resolvers) vs rustls application
//! data.

use crate::harness::{compare, Contender, Settings};
use crate::ours::{providers, Pair};
use crate::peers::{tls_round, BenchResult, Snow, SnowResolver, Tls, TlsSuite};
use crate::report::{Row, Target, Unit};
use latchkey_core::channel::{CipherSuite, FRAME_OVERHEAD};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use std::hint::black_box;

pub const SIZES: [usize; 4] = [64, 1024, 16 * 1024, 64_000];

/// The raw-AEAD limit: seal then open in place, counter nonces, no framing at all.
struct RawRing {
    key: LessSafeKey,
    nonce: u64,
}

impl RawRing {
    fn new(suite: CipherSuite) -> Self {
        let alg = match suite {
            CipherSuite::ChaChaPoly => &aead::CHACHA20_POLY1305,
            CipherSuite::AesGcm => &aead::AES_256_GCM,
        };
        RawRing {
            key: LessSafeKey::new(UnboundKey::new(alg, &[7u8; 32]).expect("key")),
            nonce: 0,
        }
    }

    fn round(&mut self, buf: &mut [u8]) {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&self.nonce.to_le_bytes());
        self.nonce += 1;
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(n), Aad::empty(), buf)
            .expect("seal");
        self.key
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(n),
                Aad::empty(),
                tag,
                buf,
                0..,
            )
            .expect("open");
    }
}

fn snow_round(
    from: &mut snow::TransportState,
    to: &mut snow::TransportState,
    data: &[u8],
    wire: &mut [u8],
    out: &mut [u8],
) {
    let n = from.write_message(data, wire).expect("snow write");
    black_box(to.read_message(&wire[..n], out).expect("snow read"));
}

fn suite_rows(settings: Settings, suite: CipherSuite) -> BenchResult<Vec<Row>> {
    let [ring, aws_lc, rustcrypto] = providers();
    let (mut ring_tx, mut ring_rx) = Pair::new(ring, suite)?.handshake()?;
    let (mut rc_tx, mut rc_rx) = Pair::new(rustcrypto, suite)?.handshake()?;
    let (mut aws_tx, mut aws_rx) = Pair::new(aws_lc, suite)?.handshake()?;
    let mut raw = RawRing::new(suite);
    let (mut sd_tx, mut sd_rx) =
        Snow::new(suite.protocol_name(), SnowResolver::Default)?.handshake()?;
    let (mut sr_tx, mut sr_rx) =
        Snow::new(suite.protocol_name(), SnowResolver::Ring)?.handshake()?;
    let tls = Tls::new(match suite {
        CipherSuite::ChaChaPoly => TlsSuite::ChaCha20Poly1305,
        CipherSuite::AesGcm => TlsSuite::Aes256Gcm,
    })?;
    let mut tls_wire = Vec::with_capacity(80_000);
    let (mut tls_tx, mut tls_rx) = tls.handshake(&mut tls_wire)?;

    let suite_name = match suite {
        CipherSuite::ChaChaPoly => "ChaCha20-Poly1305",
        CipherSuite::AesGcm => "AES-256-GCM",
    };
    let mut rows = Vec::new();
    for size in SIZES {
        let data = vec![0x5au8; size];
        let mut frame_ring = vec![0u8; size + FRAME_OVERHEAD];
        let mut frame_aws = vec![0u8; size + FRAME_OVERHEAD];
        let mut frame_rc = vec![0u8; size + FRAME_OVERHEAD];
        let mut raw_buf = vec![0u8; size];
        let (mut wire_a, mut out_a) = (vec![0u8; size + 64], vec![0u8; size + 64]);
        let (mut wire_b, mut out_b) = (vec![0u8; size + 64], vec![0u8; size + 64]);
        let mut tls_out = vec![0u8; size];
        // Prove each path round-trips before timing it.
        ring_tx.encrypt(&data, &mut frame_ring)?;
        assert_eq!(ring_rx.decrypt_in_place(&mut frame_ring)?, &data[..]);
        aws_tx.encrypt(&data, &mut frame_aws)?;
        assert_eq!(aws_rx.decrypt_in_place(&mut frame_aws)?, &data[..]);
        rc_tx.encrypt(&data, &mut frame_rc)?;
        assert_eq!(rc_rx.decrypt_in_place(&mut frame_rc)?, &data[..]);
        tls_round(&mut tls_tx, &mut tls_rx, &data, &mut tls_out, &mut tls_wire)?;
        assert_eq!(tls_out, data);

        let ns = compare(
            settings,
            &mut [
                Contender::new("ours ring", || {
                    ring_tx.encrypt_in_place(&mut frame_ring).expect("encrypt");
                    black_box(ring_rx.decrypt_in_place(&mut frame_ring).expect("decrypt"));
                }),
                Contender::new("ours aws-lc", || {
                    aws_tx.encrypt_in_place(&mut frame_aws).expect("encrypt");
                    black_box(aws_rx.decrypt_in_place(&mut frame_aws).expect("decrypt"));
                }),
                Contender::new("raw ring", || raw.round(&mut raw_buf)),
                Contender::new("snow default", || {
                    snow_round(&mut sd_tx, &mut sd_rx, &data, &mut wire_a, &mut out_a)
                }),
                Contender::new("snow ring", || {
                    snow_round(&mut sr_tx, &mut sr_rx, &data, &mut wire_b, &mut out_b)
                }),
                Contender::new("rustls", || {
                    tls_round(&mut tls_tx, &mut tls_rx, &data, &mut tls_out, &mut tls_wire)
                        .expect("rustls")
                }),
                Contender::new("ours rustcrypto", || {
                    rc_tx.encrypt_in_place(&mut frame_rc).expect("encrypt");
                    black_box(rc_rx.decrypt_in_place(&mut frame_rc).expect("decrypt"));
                }),
            ],
        );
        let mbps = |ns: f64| size as f64 * 1e3 / ns;
        let row = |peer: &str, value: f64, target: Option<f64>| Row {
            measurement: format!("Transport {suite_name}, {size} B, encrypt+decrypt"),
            unit: Unit::MegabytesPerSecond,
            ring: Some(mbps(ns[0])),
            rustcrypto: Some(mbps(ns[6])),
            aws_lc: Some(mbps(ns[1])),
            peer: peer.into(),
            peer_value: Some(value),
            target: target.map(Target::RatioAtLeast),
        };
        let ring_target = if size >= 1024 { 0.9 } else { 0.6 };
        rows.push(row("raw ring AEAD", mbps(ns[2]), Some(ring_target)));
        rows.push(row(SnowResolver::Default.label(), mbps(ns[3]), None));
        rows.push(row(SnowResolver::Ring.label(), mbps(ns[4]), None));
        let tls_target = (size == 16 * 1024).then_some(1.2);
        rows.push(row("rustls TLS 1.3 records", mbps(ns[5]), tls_target));
    }
    Ok(rows)
}

pub fn rows(settings: Settings) -> BenchResult<Vec<Row>> {
    let mut rows = suite_rows(settings, CipherSuite::ChaChaPoly)?;
    rows.extend(suite_rows(settings, CipherSuite::AesGcm)?);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc_count::thread_allocations;

    /// What the transport rows claim for ours: encrypting and decrypting in place allocates nothing, with
    /// any provider and suite. (The counter sees the Rust allocator only; neither provider's per-message
    /// path calls into C code that allocates: AWS-LC's AES-GCM context is built once per key.)
    #[test]
    fn in_place_transport_allocates_nothing() {
        let probe = thread_allocations();
        drop(std::hint::black_box(vec![0u8; 16]));
        assert!(thread_allocations() > probe, "the counter sees allocations");

        for provider in providers() {
            for suite in [CipherSuite::ChaChaPoly, CipherSuite::AesGcm] {
                let (mut tx, mut rx) = Pair::new(provider, suite).unwrap().handshake().unwrap();
                let mut frame = vec![0u8; 1024 + FRAME_OVERHEAD];
                let before = thread_allocations();
                for i in 0..1_000u32 {
                    frame[8..12].copy_from_slice(&i.to_be_bytes());
                    tx.encrypt_in_place(&mut frame).unwrap();
                    let plain = rx.decrypt_in_place(&mut frame).unwrap();
                    assert_eq!(&plain[..4], &i.to_be_bytes());
                }
                assert_eq!(
                    thread_allocations(),
                    before,
                    "{} {suite:?}: allocations during 1,000 frames",
                    provider.name()
                );
            }
        }
    }
}
