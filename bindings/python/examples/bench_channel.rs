//! The Rust side of `bench/bench_channel.py`: per-call cost of `Channel::encrypt` / `Channel::decrypt` through
//! the facade (the same calls the Python binding makes), measured the same way as the Python script
//! (best of 7 rounds).
//!
//! Prints one line per measurement: `<suite> <op> <size> <nanoseconds per call>`.

use latchkey_facade::{
    Channel, CipherSuite, HandshakeSession, Identity, IdentityOptions, Role, Trust, Vault,
};
use std::time::Instant;

const ROUNDS: usize = 7;

fn open_pair(suite: CipherSuite) -> (Channel, Channel) {
    let vault = Vault::new();
    let a = Identity::create(&vault, IdentityOptions::default(), None).expect("identity");
    let b = Identity::create(&vault, IdentityOptions::default(), None).expect("identity");
    let mut i = HandshakeSession::new(
        &a,
        Role::Initiator,
        suite,
        &Trust::Identifiers(vec![b.identifier()]),
        None,
    )
    .expect("initiator");
    let mut r = HandshakeSession::new(
        &b,
        Role::Responder,
        suite,
        &Trust::Identifiers(vec![a.identifier()]),
        None,
    )
    .expect("responder");
    let m1 = i.step(None).expect("m1");
    let m2 = r.step(m1.as_deref()).expect("m2");
    let m3 = i.step(m2.as_deref()).expect("m3");
    r.step(m3.as_deref()).expect("finish");
    (
        i.into_channel().expect("open"),
        r.into_channel().expect("open"),
    )
}

fn calls_for(size: usize) -> usize {
    if size <= 1024 {
        20_000
    } else {
        2_000
    }
}

/// Best round (lowest mean time per call): on a shared machine the other rounds measure the neighbours.
fn best(samples: Vec<f64>) -> f64 {
    samples.into_iter().fold(f64::INFINITY, f64::min)
}

fn main() {
    for (name, suite) in [
        ("chachapoly", CipherSuite::ChaChaPoly),
        ("aesgcm", CipherSuite::AesGcm),
    ] {
        for size in [64usize, 16 * 1024] {
            let (mut sender, mut receiver) = open_pair(suite);
            let plaintext = vec![0x5a; size];
            let calls = calls_for(size);
            let (mut encrypt, mut decrypt) = (vec![], vec![]);
            for _ in 0..ROUNDS {
                let start = Instant::now();
                for _ in 0..calls {
                    std::hint::black_box(sender.encrypt(&plaintext).expect("encrypt"));
                }
                encrypt.push(start.elapsed().as_nanos() as f64 / calls as f64);
                let frames: Vec<Vec<u8>> = (0..calls)
                    .map(|_| sender.encrypt(&plaintext).expect("encrypt"))
                    .collect();
                let start = Instant::now();
                for frame in &frames {
                    std::hint::black_box(receiver.decrypt(frame).expect("decrypt"));
                }
                decrypt.push(start.elapsed().as_nanos() as f64 / calls as f64);
            }
            println!("{name} encrypt {size} {:.0}", best(encrypt));
            println!("{name} decrypt {size} {:.0}", best(decrypt));
        }
    }
}
