//! Memory row: heap bytes each established channel keeps, counted by the global allocator (Rust allocations)
//! and by glibc malloc (which also sees AWS-LC's C allocations).

use crate::alloc_count::{live_bytes, malloc_in_use};
use crate::ours::{providers, Pair};
use crate::peers::BenchResult;
use crate::report::{Row, Target, Unit};
use latchkey_core::channel::{CipherSuite, SecureChannel};

/// Channel pairs created per measurement.
const PAIRS: usize = 2_000;

/// Bytes per channel (Rust-counted, malloc-counted) with `provider`.
fn per_channel(
    provider: &'static dyn latchkey_core::crypto::CryptoProvider,
    suite: CipherSuite,
) -> BenchResult<(f64, Option<f64>)> {
    let pair = Pair::new(provider, suite)?;
    // Warm every lazy initialisation (CPU feature detection, RNG) before the first snapshot.
    pair.handshake()?;
    let mut kept: Vec<Box<SecureChannel>> = Vec::with_capacity(2 * PAIRS);
    let (rust_before, malloc_before) = (live_bytes(), malloc_in_use());
    for _ in 0..PAIRS {
        let (a, b) = pair.handshake()?;
        kept.push(Box::new(a));
        kept.push(Box::new(b));
    }
    let (rust_after, malloc_after) = (live_bytes(), malloc_in_use());
    let n = kept.len() as f64;
    drop(kept);
    let malloc = match (malloc_before, malloc_after) {
        (Some(b), Some(a)) => Some((a as f64 - b as f64) / n),
        _ => None,
    };
    Ok(((rust_after - rust_before) as f64 / n, malloc))
}

pub fn rows() -> BenchResult<Vec<Row>> {
    let [ring, aws_lc, rustcrypto] = providers();
    let mut rows = Vec::new();
    for (suite, name) in [
        (CipherSuite::ChaChaPoly, "ChaChaPoly"),
        (CipherSuite::AesGcm, "AESGCM"),
    ] {
        let (ring_rust, ring_malloc) = per_channel(ring, suite)?;
        let (aws_rust, aws_malloc) = per_channel(aws_lc, suite)?;
        let (rustcrypto_rust, rustcrypto_malloc) = per_channel(rustcrypto, suite)?;
        rows.push(Row {
            measurement: format!(
                "Heap per established channel ({name}), Rust allocator, incl. the channel struct"
            ),
            unit: Unit::Bytes,
            ring: Some(ring_rust),
            rustcrypto: Some(rustcrypto_rust),
            aws_lc: Some(aws_rust),
            peer: "—".into(),
            peer_value: None,
            // Informational: AWS-LC's contexts are C allocations this count cannot see; the target is judged
            // on the malloc row below.
            target: None,
        });
        rows.push(Row {
            measurement: format!(
                "Heap per established channel ({name}), glibc malloc incl. C allocations and chunk headers"
            ),
            unit: Unit::Bytes,
            ring: ring_malloc,
            rustcrypto: rustcrypto_malloc,
            aws_lc: aws_malloc,
            peer: "—".into(),
            peer_value: None,
            target: Some(Target::AtMost(1024.0)),
        });
    }
    Ok(rows)
}
