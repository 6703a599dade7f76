//! Seed inputs for every target, built from `tests/vectors/*.json` (the hex fields: histories, identifiers,
//! secrets, handshake messages, transport frames) in each target's input format. `examples/seed_corpus.rs`
//! writes them to `corpus/<target>/seed-*`; the fuzzers start from valid protocol messages instead of
//! having to discover the formats.

use crate::fixtures::{handshake_vectors, identity_vectors, Party};
use crate::InputBuilder;
use latchkey_core::channel::{CipherSuite, HandshakePayload};
use latchkey_core::identity::ChangeHistory;
use latchkey_core::wire::Encode;

/// One seed: the target it is for, a file name, and the bytes.
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub data: Vec<u8>,
}

fn seed(out: &mut Vec<Seed>, target: &'static str, name: impl Into<String>, data: Vec<u8>) {
    out.push(Seed {
        target,
        name: name.into(),
        data,
    });
}

fn all_parties() -> Vec<&'static Party> {
    let mut parties: Vec<&Party> = Vec::new();
    for v in handshake_vectors() {
        parties.push(&v.initiator);
        parties.push(&v.responder);
    }
    for v in identity_vectors() {
        parties.push(&v.party);
    }
    parties
}

fn payload_with_credentials(party: &Party, credentials: Vec<Vec<u8>>) -> Vec<u8> {
    HandshakePayload {
        history: party.channel.history.clone(),
        attestation: party.channel.attestation.clone(),
        credentials,
    }
    .to_bytes()
}

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let mut out = Vec::new();
    let histories: Vec<Vec<u8>> = identity_vectors()
        .iter()
        .flat_map(|v| v.histories.clone())
        .collect();
    let now = handshake_vectors()[0].now.0;

    // Decoders.
    for (k, h) in histories.iter().enumerate() {
        seed(
            &mut out,
            "decode_history",
            format!("history-{k}"),
            h.clone(),
        );
    }
    for (k, p) in all_parties().into_iter().enumerate() {
        let attestation = p.channel.attestation.to_bytes();
        seed(
            &mut out,
            "decode_attestation",
            format!("attestation-{k}"),
            InputBuilder::new().u64(now).bytes(&attestation).build(),
        );
        seed(
            &mut out,
            "decode_payload",
            format!("payload-{k}"),
            InputBuilder::new().u64(now).bytes(&p.payload()).build(),
        );
        let with = payload_with_credentials(p, vec![b"member:doorbell".to_vec(), vec![]]);
        seed(
            &mut out,
            "decode_payload",
            format!("payload-credentials-{k}"),
            InputBuilder::new().u64(now).bytes(&with).build(),
        );
        let id = p.identifier;
        seed(
            &mut out,
            "decode_keys",
            format!("id-text-{k}"),
            [&[0u8][..], id.to_string().as_bytes()].concat(),
        );
        seed(
            &mut out,
            "decode_keys",
            format!("id-bytes-{k}"),
            [&[1u8][..], id.as_bytes()].concat(),
        );
        let history = &p.channel.history;
        for (c, change) in history.changes().iter().enumerate() {
            let key = change.data.public_key.to_bytes();
            let signature = change.self_signature.to_bytes();
            seed(
                &mut out,
                "decode_keys",
                format!("key-{k}-{c}"),
                [&[2u8][..], &key].concat(),
            );
            seed(
                &mut out,
                "decode_keys",
                format!("sig-{k}-{c}"),
                [&[3u8][..], &signature].concat(),
            );
            seed(
                &mut out,
                "decode_keys",
                format!("change-data-{k}-{c}"),
                [&[4u8][..], &change.data.to_bytes()].concat(),
            );
            seed(
                &mut out,
                "decode_keys",
                format!("change-{k}-{c}"),
                [&[5u8][..], &change.to_bytes()].concat(),
            );
            seed(
                &mut out,
                "decode_keys",
                format!("verify-{k}-{c}"),
                [&[6u8][..], &key, &signature, &change.data.hash()].concat(),
            );
        }
    }

    // Handshakes, both roles, on the vectors' exact messages and frames.
    for (v, vector) in handshake_vectors().iter().enumerate() {
        let [m1, m2, m3] = [
            &vector.messages[0],
            &vector.messages[1],
            &vector.messages[2],
        ];
        let frames = |from_initiator: bool| {
            vector
                .transport
                .iter()
                .filter(move |f| f.from_initiator == from_initiator)
                .map(|f| f.frame.clone())
        };
        for flags in [0u8, 1] {
            let mut responder = InputBuilder::new()
                .u8(v as u8)
                .u8(flags)
                .u8(0)
                .chunk(m1)
                .u8(2)
                .u8(0)
                .chunk(m3)
                .u8(3);
            for f in frames(true) {
                responder = responder.chunk(&f);
            }
            seed(
                &mut out,
                "handshake_responder",
                format!("vector-{v}-{flags}"),
                responder.build(),
            );
            let mut initiator = InputBuilder::new()
                .u8(v as u8)
                .u8(flags)
                .u8(2)
                .u8(0)
                .chunk(m2)
                .u8(2)
                .u8(3);
            for f in frames(false) {
                initiator = initiator.chunk(&f);
            }
            seed(
                &mut out,
                "handshake_initiator",
                format!("vector-{v}-{flags}"),
                initiator.build(),
            );
        }
        // Out of turn, then the real exchange.
        seed(
            &mut out,
            "handshake_responder",
            format!("out-of-turn-{v}"),
            InputBuilder::new()
                .u8(v as u8)
                .u8(0)
                .u8(2)
                .u8(0)
                .chunk(m1)
                .u8(0)
                .chunk(m1)
                .u8(2)
                .build(),
        );
        for role_flag in [0u8, 1] {
            for trust_any in [0u8, 2] {
                let flags = role_flag | trust_any;
                let peer = if role_flag == 1 {
                    &vector.responder
                } else {
                    &vector.initiator
                };
                seed(
                    &mut out,
                    "handshake_peer_payload",
                    format!("vector-{v}-{flags}"),
                    InputBuilder::new()
                        .u8(v as u8)
                        .u8(flags)
                        .bytes(&peer.payload())
                        .build(),
                );
            }
            let peer = if role_flag == 1 {
                &vector.responder
            } else {
                &vector.initiator
            };
            seed(
                &mut out,
                "handshake_peer_payload",
                format!("credentials-{v}-{role_flag}"),
                InputBuilder::new()
                    .u8(v as u8)
                    .u8(role_flag)
                    .bytes(&payload_with_credentials(peer, vec![vec![7u8; 40]; 3]))
                    .build(),
            );
            // Another identity's proof for the vector peer's static key: refused by attestation rules.
            seed(
                &mut out,
                "handshake_peer_payload",
                format!("wrong-identity-{v}-{role_flag}"),
                InputBuilder::new()
                    .u8(v as u8)
                    .u8(role_flag | 2)
                    .bytes(&identity_vectors()[0].party.payload())
                    .build(),
            );
        }

        // Transport.
        let vector_frames: Vec<Vec<u8>> =
            vector.transport.iter().map(|f| f.frame.clone()).collect();
        for receiver in [0u8, 1] {
            let mut t = InputBuilder::new()
                .u8(v as u8)
                .u8(receiver)
                .u8(1)
                .chunk(b"hello")
                .u8(1)
                .chunk(b"")
                .u8(1)
                .chunk(&[0x42; 300])
                .u8(5)
                .u8(1)
                .u8(2)
                .u8(0)
                .u16(0)
                .u8(0)
                .u8(2)
                .u8(0)
                .u16(0)
                .u8(0)
                .u8(2)
                .u8(2)
                .u16(9)
                .u8(0x80)
                .u8(4)
                .u8(1)
                .chunk(b"x")
                .u8(3)
                .u16(1100)
                .u8(5)
                .u8(255)
                .u8(5)
                .u8(0);
            for f in &vector_frames {
                t = t.u8(0).u8(0).u16(64).chunk(f);
            }
            seed(
                &mut out,
                "transport_decrypt",
                format!("vector-{v}-{receiver}"),
                t.build(),
            );
        }
        seed(
            &mut out,
            "transport_epochs",
            format!("epochs-{v}"),
            InputBuilder::new()
                .u8(v as u8)
                .u8(0)
                .u16(3)
                .u8(4)
                .u8(0)
                .u16(1)
                .u8(0)
                .u8(3)
                .u8(0)
                .u8(2)
                .u8(0)
                .u16(7)
                .u8(16)
                .u8(3)
                .u8(1)
                .u8(2)
                .u8(2)
                .u8(2)
                .u8(0)
                .u16(0)
                .u8(1)
                .u8(4)
                .u8(0)
                .u16(3)
                .u8(1)
                .u8(1)
                .u64(0x0002_0000_0000_0005)
                .u8(2)
                .u8(1)
                .u64(u64::MAX)
                .u8(1)
                .u8(0)
                .u16(0xFFFF)
                .u8(0)
                .build(),
        );
        seed(
            &mut out,
            "transport_epochs",
            format!("window-{v}"),
            InputBuilder::new()
                .u8(v as u8)
                .u8(0)
                .u16(2000)
                .u8(1)
                .u8(0)
                .u16(900)
                .u8(1)
                .u8(0)
                .u16(975)
                .u8(1)
                .u8(0)
                .u16(976)
                .u8(1)
                .u8(3)
                .u8(0)
                .u8(3)
                .u8(2)
                .build(),
        );

        // The C ABI: the same handshake through latchkey_handshake_step, then channel traffic.
        let suite = match vector.suite {
            CipherSuite::ChaChaPoly => 0u8,
            CipherSuite::AesGcm => 1,
        };
        let side = |b: InputBuilder, role: u8, trust: u8| b.u8(role).u8(suite).u8(trust).u8(0);
        let start = InputBuilder::new().u8(v as u8);
        let start = side(side(start, 0, 0), 1, 0);
        let exchange = start
            .u8(0x03)
            .u16(0xFFFF) // initiator: m1
            .u8(0x10)
            .u16(0xFFFF) // responder: m1 -> m2
            .u8(0x00)
            .u16(100) // initiator: m2 -> m3, buffer too small
            .u8(0x01)
            .chunk(b"junk")
            .u16(0xFFFF) // input while m3 waits
            .u8(0x03)
            .u16(0xFFFF) // collect m3
            .u8(0x10)
            .u16(0xFFFF) // responder: m3
            .u8(0x04)
            .u8(32)
            .u8(0x05)
            .u8(0x15)
            .u8(0x06)
            .chunk(b"ring")
            .u16(0xFFFF)
            .u8(0x17)
            .u8(0)
            .u16(0xFFFF)
            .u8(0x17)
            .u8(0)
            .u16(0xFFFF)
            .u8(0x16)
            .chunk(b"dong")
            .u16(20)
            .u8(0x16)
            .chunk(b"dong")
            .u16(0xFFFF)
            .u8(0x07)
            .u8(0)
            .u16(3)
            .u8(0x07)
            .u8(0)
            .u16(0xFFFF)
            .u8(0x08)
            .u16(1000)
            .u8(0x18)
            .u16(10);
        seed(
            &mut out,
            "ffi_handshake",
            format!("vector-{v}"),
            exchange.build(),
        );
        let any = InputBuilder::new().u8(v as u8);
        let any = side(side(any, 0, 1), 1, 1)
            .u8(0x03)
            .u16(0xFFFF)
            .u8(0x10)
            .u16(0xFFFF)
            .u8(0x02)
            .u16(40)
            .u8(1);
        seed(
            &mut out,
            "ffi_handshake",
            format!("tampered-{v}"),
            any.build(),
        );
        let lists = InputBuilder::new()
            .u8(v as u8)
            .u8(0)
            .u8(suite)
            .u8(2)
            .u8(2)
            .chunk(b"*")
            .chunk(vector.responder.identifier.to_string().as_bytes())
            .u8(0)
            .u8(1)
            .u8(suite)
            .u8(3)
            .u8(4)
            .chunk(&[1u8; 31])
            .u8(0x03)
            .u16(0xFFFF)
            .u8(0x10)
            .u16(0xFFFF)
            .u8(0x09);
        seed(
            &mut out,
            "ffi_handshake",
            format!("trust-lists-{v}"),
            lists.build(),
        );
        for receiver in [0u8, 1] {
            let c = InputBuilder::new()
                .u8(v as u8)
                .u8(receiver)
                .u8(1)
                .chunk(b"ding")
                .u8(1)
                .chunk(b"")
                .u8(2)
                .u8(0)
                .u16(0xFFFF)
                .u8(2)
                .u8(0)
                .u16(0xFFFF)
                .u8(2)
                .u8(1)
                .u16(0)
                .u8(2)
                .u8(1)
                .u16(0xFFFF)
                .u8(3)
                .u8(0)
                .u16(5)
                .u8(1)
                .u8(4)
                .u8(0)
                .u16(10)
                .u8(4)
                .u8(1)
                .u16(10)
                .u8(4)
                .u8(2)
                .u16(10)
                .u8(5)
                .u16(1100)
                .u8(2)
                .u8(0)
                .u16(0xFFFF)
                .u8(0)
                .u16(100)
                .chunk(&vector.transport[0].frame);
            seed(
                &mut out,
                "ffi_channel",
                format!("vector-{v}-{receiver}"),
                c.build(),
            );
        }
    }

    // The C ABI's history and identity entry points.
    for (k, w) in histories.windows(2).enumerate() {
        for (flags, capacity) in [(0u8, 67u8), (1, 255), (0, 10), (2, 0), (4, 67), (8, 67)] {
            seed(
                &mut out,
                "ffi_history",
                format!("update-{k}-{flags}-{capacity}"),
                InputBuilder::new()
                    .u8(flags)
                    .u8(capacity)
                    .chunk(&w[0])
                    .bytes(&w[1])
                    .build(),
            );
        }
    }
    for v in identity_vectors() {
        let p = &v.party;
        let mut ops = InputBuilder::new()
            .u8(0)
            .chunk(&p.signing_seed)
            .chunk(&p.static_secret)
            .u64(p.key_validity_secs)
            .u64(p.attestation_validity_secs)
            .u64(p.created_at);
        for k in 1..v.histories.len() {
            // Rotation seeds are not kept in the fixture; any 32 bytes rotate.
            ops = ops
                .u8(2)
                .u8(0)
                .chunk(&[k as u8; 32])
                .u64(p.created_at + 100 * k as u64);
        }
        ops = ops
            .u8(3)
            .u8(0)
            .u16(10)
            .u8(3)
            .u8(0)
            .u16(2000)
            .u8(4)
            .u8(0)
            .u8(7)
            .u8(0)
            .u8(66)
            .u8(1)
            .u8(1)
            .u64(0)
            .u64(0)
            .u64(p.created_at)
            .u8(2)
            .u8(1)
            .chunk(b"")
            .u64(p.created_at + 5)
            .u8(6)
            .u8(0)
            .u8(5)
            .u8(0);
        seed(
            &mut out,
            "ffi_identity",
            v.name.replace(' ', "-"),
            ops.build(),
        );
    }
    seed(
        &mut out,
        "ffi_identity",
        "bad-arguments",
        InputBuilder::new()
            .u8(0)
            .chunk(&[1; 31])
            .chunk(&[2; 32])
            .u64(1)
            .u64(1)
            .u64(1)
            .u8(1)
            .u8(2)
            .u64(0)
            .u64(0)
            .u64(1)
            .u8(0)
            .chunk(&[1; 32])
            .chunk(&[2; 32])
            .u64(u64::MAX)
            .u64(u64::MAX)
            .u64(u64::MAX)
            .build(),
    );

    // Runtime codecs.
    let messages = runtime_messages();
    for (k, m) in messages.iter().enumerate() {
        seed(
            &mut out,
            "routed_message",
            format!("message-{k}"),
            m.clone(),
        );
        let mut stream = InputBuilder::new().u16(0x4000);
        for m in &messages[..=k] {
            stream = stream.bytes(&(m.len() as u32).to_be_bytes()).bytes(m);
        }
        seed(
            &mut out,
            "stream_framing",
            format!("stream-{k}"),
            stream.build(),
        );
    }
    seed(
        &mut out,
        "reliable_windows",
        "exchange",
        InputBuilder::new()
            .u8(3)
            .u8(3)
            .u8(3)
            .u8(1)
            .u8(1)
            .u8(1)
            .u8(0)
            .u8(2)
            .u8(5)
            .u8(1)
            .u8(2)
            .u8(6)
            .u16(300)
            .u8(4)
            .u64(2)
            .u64(u64::MAX)
            .u8(0)
            .u64(u64::MAX)
            .u8(1)
            .u8(200)
            .u8(7)
            .build(),
    );
    for v in 0..handshake_vectors().len() as u8 {
        seed(
            &mut out,
            "route_session",
            format!("exchange-{v}"),
            InputBuilder::new()
                .u8(v)
                .u8(3)
                .u8(0) // message 1 reaches the listener
                .u8(0) // message 2
                .u8(0) // message 3
                .u8(0) // the confirming ACK
                .u8(7)
                .u8(0)
                .chunk(b"ding")
                .u8(7)
                .u8(1)
                .chunk(b"dong")
                .u8(0)
                .u8(0)
                .u8(0)
                .u8(0)
                .u8(3)
                .u8(0)
                .u8(6)
                .u16(250)
                .u8(1)
                .u8(1)
                .u8(4)
                .u8(0)
                .u16(20)
                .u8(1)
                .u8(0)
                .u8(0)
                .u8(10)
                .u8(1)
                .u8(7)
                .u8(0)
                .chunk(b"blocked")
                .u8(0)
                .u8(0)
                .u8(10)
                .u8(1)
                .u8(6)
                .u16(20)
                .u8(0)
                .u8(0)
                .u8(9)
                .u8(0)
                .u8(5)
                .u8(1)
                .u8(0)
                .u8(0x88)
                .chunk(&[0u8; 40])
                .u8(8)
                .u8(0)
                .u8(0)
                .u8(0)
                .u8(6)
                .u16(60000)
                .build(),
        );
        seed(
            &mut out,
            "route_session",
            format!("restart-{v}"),
            InputBuilder::new()
                .u8(v)
                .u8(4)
                .u8(0)
                .u8(0)
                .u8(0)
                .u8(0)
                .u8(7)
                .u8(1)
                .chunk(b"token")
                .u8(0)
                .u8(0)
                .u8(0)
                .u8(11)
                .u8(1)
                .u8(7)
                .u8(0)
                .chunk(b"after the restart")
                .u8(0)
                .u8(0)
                .u8(5)
                .u8(0)
                .u8(0)
                .u8(0x18)
                .chunk(&[0u8; 16])
                .u8(6)
                .u16(300)
                .u8(0)
                .u8(0)
                .build(),
        );
        seed(
            &mut out,
            "route_session",
            format!("lossy-{v}"),
            InputBuilder::new()
                .u8(v)
                .u8(1)
                .u8(2)
                .u8(0)
                .u8(6)
                .u16(600)
                .u8(3)
                .u8(0)
                .u8(0)
                .u8(0)
                .u8(0)
                .u8(0)
                .u8(5)
                .u8(0)
                .u8(0)
                .u8(0x10)
                .chunk(b"refused")
                .u8(0)
                .u8(6)
                .u16(600)
                .u8(0)
                .u8(0)
                .u8(0)
                .build(),
        );
    }
    // Signature consensus: the vectors' real signatures raw, and honest ones bent every way.
    for (k, p) in all_parties().into_iter().enumerate().take(4) {
        let change = &p.channel.history.changes()[0];
        let key = change.data.public_key.as_bytes().to_vec();
        seed(
            &mut out,
            "signature_consensus",
            format!("raw-{k}"),
            InputBuilder::new()
                .u8(0)
                .bytes(&key)
                .bytes(change.self_signature.as_bytes())
                .bytes(&change.data.hash())
                .build(),
        );
        for bend in 0..6u8 {
            seed(
                &mut out,
                "signature_consensus",
                format!("ed25519-{k}-{bend}"),
                InputBuilder::new()
                    .u8(1)
                    .bytes(&p.signing_seed)
                    .u8(bend)
                    .u8(k as u8)
                    .u8(3)
                    .bytes(b"latchkey")
                    .build(),
            );
        }
        for bend in 0..3u8 {
            seed(
                &mut out,
                "signature_consensus",
                format!("p256-{k}-{bend}"),
                InputBuilder::new()
                    .u8(3)
                    .bytes(&p.static_secret)
                    .u8(bend)
                    .u8(k as u8)
                    .bytes(b"latchkey")
                    .build(),
            );
        }
    }
    for (k, m) in runtime_node_seeds().into_iter().enumerate() {
        seed(&mut out, "runtime_node", format!("node-{k}"), m);
    }
    let _ = ChangeHistory::import(&histories[0]).expect("vector history");
    crate::trust::seeds(&mut out);
    out
}

/// Routed messages as the runtime sends them: a plain request, a relay registration, channel handshake and
/// frame payloads, portal messages (docs/RUNTIME.md).
fn runtime_messages() -> Vec<Vec<u8>> {
    use latchkey_runtime::{Message, Route};
    let v = &handshake_vectors()[0];
    let frame = [&[0x02u8][..], &v.transport[0].frame].concat();
    let list: Vec<(Route, Route, Vec<u8>)> = vec![
        (
            Route::from(["tcp-out#1", "fwd:doorbell", "api"]),
            Route::from(["sc#4"]),
            b"hello".to_vec(),
        ),
        (
            Route::from(["relay"]),
            Route::from(["sc-enc#0123456789abcdef", "relay-client#fedcba9876543210"]),
            b"doorbell".to_vec(),
        ),
        (
            Route::from(["api"]),
            Route::from(["sc-dec#0011223344556677"]),
            [&[0x01u8][..], &v.messages[0]].concat(),
        ),
        // Message 1 offering AES-GCM (docs/PROTOCOL.md 5.1).
        (
            Route::from(["api"]),
            Route::from(["tcp-in#1", "sc-dec#0011223344556677"]),
            [&[0x01u8][..], &v.messages[0], &[0x02]].concat(),
        ),
        (
            Route::from(["sc-dec#0011223344556677"]),
            Route::from(["sc-dec#8899aabbccddeeff"]),
            [&[0x01u8][..], &v.messages[1]].concat(),
        ),
        (
            Route::from(["sc-dec#8899aabbccddeeff"]),
            Route::from(["sc-dec#0011223344556677"]),
            frame,
        ),
        (
            Route::from(["sc-dec#8899aabbccddeeff"]),
            Route::new(),
            b"\x03not trusted".to_vec(),
        ),
        (
            Route::from(["outlet"]),
            Route::from(["inlet#0123456789abcdef"]),
            vec![0x00],
        ),
        (
            Route::from(["inlet#0123456789abcdef"]),
            Route::from(["outlet#0123456789abcdef"]),
            vec![0x01],
        ),
        (
            Route::from(["outlet#0123456789abcdef"]),
            Route::from(["inlet#0123456789abcdef"]),
            b"\x02GET / HTTP/1.0\r\n\r\n".to_vec(),
        ),
        (
            Route::from(["inlet#0123456789abcdef"]),
            Route::new(),
            b"\x04outlet cannot reach 127.0.0.1:1".to_vec(),
        ),
        (Route::new(), Route::new(), vec![]),
    ];
    list.into_iter()
        .map(|(onward, ret, payload)| {
            Message::new(onward, ret, payload)
                .encode()
                .expect("encodes")
        })
        .collect()
}

/// Seeds of `runtime_node` (its input format is documented in that target).
fn runtime_node_seeds() -> Vec<Vec<u8>> {
    let v = &handshake_vectors()[0];
    vec![
        // A registration, a refresh, a bad name, a second name; then portal and echo requests.
        InputBuilder::new()
            .u8(0)
            .u8(0)
            .chunk(b"doorbell")
            .u8(0)
            .u8(0)
            .chunk(b"doorbell")
            .u8(0)
            .u8(1)
            .chunk(&[0xff, 0xfe])
            .u8(0)
            .u8(2)
            .chunk(b"phone")
            .u8(1)
            .u8(0)
            .chunk(&[0x00])
            .u8(1)
            .u8(0)
            .chunk(b"\x02data")
            .u8(2)
            .u8(0)
            .chunk(b"ping")
            .build(),
        // Raw transport messages at the listener, the relay service and a forwarder.
        InputBuilder::new()
            .u8(3)
            .u8(0)
            .chunk(&[&[0x01u8][..], &v.messages[0]].concat())
            .u8(3)
            .u8(1)
            .chunk(b"doorbell")
            .u8(0)
            .u8(0)
            .chunk(b"doorbell")
            .u8(3)
            .u8(2)
            .chunk(&[0x02, 0, 0, 0])
            .u8(4)
            .chunk(b"\x01\x01\x03api\x00\x01")
            .build(),
    ]
}
