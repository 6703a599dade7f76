//! Writes the shared test vectors of the routed layer, `tests/vectors/routed.json`: routed-message
//! encodings (and encodings a decoder must refuse), channel payload kinds, the DATA/ACK/CLOSE plaintexts,
//! plaintexts a receiver ignores, and the relay registration exchange. Formats: docs/RUNTIME.md.
//!
//! ```text
//! cargo run -p latchkey-core --example gen_routed_vectors [-- <output dir>]
//! ```
//!
//! `core/tests/routed_vectors.rs` reproduces every byte of the committed file from its inputs.

use latchkey_core::crypto::{default_provider, Secret32};
use latchkey_core::route::admission;
use latchkey_core::route::relay::{self, Reply};
use latchkey_core::route::reset::{
    reset_payload, ResetKey, RESET_KEY_LABEL, RESET_POINT_LABEL, RESET_TOKEN_LABEL,
};
use latchkey_core::route::{
    Address, ChannelFrame, Route, RoutedMessage, KIND_FRAME, KIND_HANDSHAKE, KIND_REFUSED,
};
use serde_json::{json, Value};
use std::path::PathBuf;

type BoxError = Box<dyn std::error::Error>;

fn route(hops: &[&str]) -> Route {
    Route::from_addresses(hops.iter().map(|h| Address::from(*h)))
}

fn message(name: &str, onward: &[&str], ret: &[&str], payload: &[u8]) -> Result<Value, BoxError> {
    let m = RoutedMessage::new(route(onward), route(ret), payload.to_vec());
    Ok(json!({
        "name": name,
        "onward": onward,
        "ret": ret,
        "payload": hex::encode(payload),
        "encoded": hex::encode(m.encode()?),
    }))
}

fn inner(onward: &[&str], ret: &[&str], payload: &[u8]) -> Vec<u8> {
    RoutedMessage::new(route(onward), route(ret), payload.to_vec())
        .encode()
        .expect("valid")
}

fn main() -> Result<(), BoxError> {
    let out_dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors"));
    std::fs::create_dir_all(&out_dir)?;

    let long_address = "a".repeat(255);
    let full_route: Vec<String> = (0..32).map(|i| format!("hop{i}")).collect();
    let full_route: Vec<&str> = full_route.iter().map(String::as_str).collect();
    let routed_messages = vec![
        message("empty routes, empty payload", &[], &[], b"")?,
        message(
            "message 1 of the worked example, as sent",
            &["api"],
            &["sc-dec#A"],
            &[KIND_HANDSHAKE, 0xaa, 0xbb],
        )?,
        message(
            "through a relay",
            &["tcp-out#0123456789abcdef", "fwd:doorbell", "api"],
            &["sc-dec#fedcba9876543210"],
            b"hello",
        )?,
        message(
            "utf-8 address",
            &["caf\u{e9}", "\u{1f514}"],
            &["r"],
            &[0, 1, 2, 255],
        )?,
        message("longest address", &[&long_address], &[], b"x")?,
        message("32 hops", &full_route, &["back"], b"")?,
    ];
    let invalid = json!([
        {"name": "empty", "encoded": "", "error": "empty message"},
        {"name": "unknown version", "encoded": "020000", "error": "unknown message version"},
        {"name": "33 onward hops", "encoded": "0121", "error": "route too long"},
        {"name": "ends inside an address", "encoded": "01010561", "error": "truncated message"},
        {"name": "ends before the return route", "encoded": "0100", "error": "truncated message"},
        {"name": "empty address", "encoded": "01010000", "error": "address must be 1..=255 bytes"},
        {"name": "address not utf-8", "encoded": "010102fffe00", "error": "address not utf-8"},
    ]);
    for v in invalid.as_array().expect("array") {
        let bytes = hex::decode(v["encoded"].as_str().expect("hex"))?;
        let e = RoutedMessage::decode(&bytes).expect_err("refused");
        assert!(matches!(e, latchkey_core::Error::Decode(why) if why == v["error"]));
    }
    let channel_payloads = json!([
        {"name": "handshake message", "kind": KIND_HANDSHAKE, "body": "00112233", "payload": "0100112233"},
        {"name": "transport frame", "kind": KIND_FRAME, "body": "0000000000000000aabbccdd", "payload": "020000000000000000aabbccdd"},
        {"name": "refused: trust policy", "kind": KIND_REFUSED, "body": hex::encode("not trusted"), "payload": hex::encode([&[KIND_REFUSED][..], b"not trusted"].concat())},
        {"name": "refused: suite offer not accepted", "kind": KIND_REFUSED, "body": hex::encode("UnsupportedSuite"), "payload": hex::encode([&[KIND_REFUSED][..], b"UnsupportedSuite"].concat())},
        {"name": "refused: core error name", "kind": KIND_REFUSED, "body": hex::encode("InvalidAttestation"), "payload": hex::encode([&[KIND_REFUSED][..], b"InvalidAttestation"].concat())},
        {"name": "re-handshake: generation 1, message 1", "kind": latchkey_core::route::KIND_REHANDSHAKE, "body": hex::encode([&1u64.to_be_bytes()[..], &[1], &[0x33; 32]].concat()), "payload": hex::encode(latchkey_core::route::rehandshake_payload(1, 1, &[0x33; 32])), "generation": 1, "step": 1, "noise": hex::encode([0x33; 32])},
        {"name": "re-handshake: generation 258, message 3", "kind": latchkey_core::route::KIND_REHANDSHAKE, "body": hex::encode([&258u64.to_be_bytes()[..], &[3], &[0x44; 64]].concat()), "payload": hex::encode(latchkey_core::route::rehandshake_payload(258, 3, &[0x44; 64])), "generation": 258, "step": 3, "noise": hex::encode([0x44; 64])},
    ]);
    let data_inner = inner(&["echo"], &["inbox"], b"ding");
    let reply_inner = inner(&["inbox"], &[], b"ding");
    let frames: Vec<Value> = [
        (
            "DATA 0: a request to echo, replies to inbox",
            ChannelFrame::Data {
                seq: 0,
                inner: &data_inner,
            },
        ),
        (
            "DATA 0: echo's reply",
            ChannelFrame::Data {
                seq: 0,
                inner: &reply_inner,
            },
        ),
        (
            "DATA 2^40",
            ChannelFrame::Data {
                seq: 1 << 40,
                inner: &data_inner,
            },
        ),
        (
            "ACK: handshake confirmation, credit for 0..128",
            ChannelFrame::Ack {
                cumulative: 0,
                selective: None,
                limit: 128,
            },
        ),
        (
            "ACK: delivered 0..5, holds 7, takes up to 132",
            ChannelFrame::Ack {
                cumulative: 5,
                selective: Some(7),
                limit: 133,
            },
        ),
        (
            "ACK: keepalive, no credit beyond what is held",
            ChannelFrame::Ack {
                cumulative: 300,
                selective: None,
                limit: 300,
            },
        ),
        ("CLOSE", ChannelFrame::Close),
        (
            "REKEY: the responder asks for new keys after generation 3",
            ChannelFrame::Rekey { generation: 3 },
        ),
        (
            "UNDELIVERED: message 4 had no such destination",
            ChannelFrame::Undelivered { seq: 4, reason: 1 },
        ),
        (
            "PROBE: the sender waits, its next message is 2^33",
            ChannelFrame::Probe { next: 1 << 33 },
        ),
    ]
    .into_iter()
    .map(|(name, f)| {
        let mut v = match f {
            ChannelFrame::Data { seq, inner } => {
                json!({"type": "DATA", "seq": seq, "inner": hex::encode(inner)})
            }
            ChannelFrame::Ack {
                cumulative,
                selective,
                limit,
            } => {
                json!({"type": "ACK", "cumulative": cumulative, "selective": selective, "limit": limit})
            }
            ChannelFrame::Close => json!({"type": "CLOSE"}),
            ChannelFrame::Rekey { generation } => {
                json!({"type": "REKEY", "generation": generation})
            }
            ChannelFrame::Undelivered { seq, reason } => {
                json!({"type": "UNDELIVERED", "seq": seq, "reason": reason})
            }
            ChannelFrame::Probe { next } => json!({"type": "PROBE", "next": next}),
        };
        v["name"] = json!(name);
        v["plaintext"] = json!(hex::encode(f.to_vec()));
        v
    })
    .collect();
    let ignored = json!([
        {"name": "empty", "plaintext": ""},
        {"name": "DATA shorter than 9 bytes", "plaintext": "0100000000000000"},
        {"name": "ACK shorter than 25 bytes (the layout without a limit)", "plaintext": "0200000000000000050000000000000007"},
        {"name": "PROBE shorter than 9 bytes", "plaintext": "0600000000000001"},
        {"name": "unknown type", "plaintext": "09000000000000000000000000000000ff"},
        {"name": "REKEY shorter than 9 bytes", "plaintext": "0400000000000003"},
        {"name": "UNDELIVERED without its reason", "plaintext": "050000000000000004"},
    ]);
    for v in ignored.as_array().expect("array") {
        let bytes = hex::decode(v["plaintext"].as_str().expect("hex"))?;
        assert_eq!(ChannelFrame::parse(&bytes), None);
    }

    let request = relay::request(
        "relay".into(),
        "relay-client#00112233aabbccdd".into(),
        "doorbell",
    )
    .map_err(|r| format!("{r:?}"))?;
    let at_relay = route(&["sc-enc#C-at-relay", "relay-client#00112233aabbccdd"]);
    let forwarder = relay::forwarder_route(&at_relay, Some(&"sc-enc#C-at-relay".into()))
        .map_err(|r| format!("{r:?}"))?;
    let arriving = route(&["fwd:doorbell", "api"]);
    // Message 1 to a name the relay does not serve, as it arrived at the relay.
    let unknown_m1 = RoutedMessage::new(
        route(&["fwd:nosuch", "api"]),
        route(&["tcp-in#00000000000000bb", "sc-dec#fedcba9876543210"]),
        [&[KIND_HANDSHAKE][..], &[0x11; 32]].concat(),
    );
    let relay_vectors = json!({
        "request": {
            "service": "relay",
            "reply_to": "relay-client#00112233aabbccdd",
            "name": "doorbell",
            "inner_message": hex::encode(request.encode()?),
        },
        "replies": Reply::ALL.iter().map(|r| json!({"reply": String::from_utf8_lossy(r.as_bytes()), "bytes": hex::encode(r.as_bytes())})).collect::<Vec<_>>(),
        "reply_message": {
            "request_ret_at_relay": at_relay.iter().map(Address::as_str).collect::<Vec<_>>(),
            "reply": "ok",
            "encoded": hex::encode(relay::answer(&at_relay, Reply::Ok).encode()?),
        },
        "forwarding": {
            "request_ret_at_relay": at_relay.iter().map(Address::as_str).collect::<Vec<_>>(),
            "arrival_hop": "sc-enc#C-at-relay",
            "forwarder": relay::forwarder_address("doorbell")?.as_str(),
            "forwarder_route": forwarder.iter().map(Address::as_str).collect::<Vec<_>>(),
            "arriving_onward": arriving.iter().map(Address::as_str).collect::<Vec<_>>(),
            "forwarded_onward": relay::forward(&arriving, &forwarder).iter().map(Address::as_str).collect::<Vec<_>>(),
        },
        "bad_routes": [
            {"request_ret_at_relay": ["sc-enc#C-at-relay"], "arrival_hop": "sc-enc#C-at-relay", "reply": "bad-route"},
            {"request_ret_at_relay": ["tcp-in#1", "relay-client#1"], "arrival_hop": "sc-enc#C-at-relay", "reply": "bad-route"},
        ],
        "unknown_name": {
            "reason": relay::NO_SUCH_NAME,
            "arrived": hex::encode(unknown_m1.encode()?),
            "refusal": hex::encode(relay::unknown_name_refusal(&unknown_m1).ok_or("refused")?.encode()?),
        },
        "bad_names": [
            {"name_bytes": "", "reply": "bad-name"},
            {"name_bytes": hex::encode([b'n'; 201]), "reply": "bad-name"},
            {"name_bytes": "fffe", "reply": "bad-name"},
            {"name_bytes": hex::encode([b'n'; 200]), "reply": null},
        ],
    });

    // Stateless reset: the key from a static X25519 secret, tokens, the ACK that carries one, a reset.
    let p = default_provider();
    let static_secret = [0x42u8; 32];
    let point = p.sha256(&[RESET_POINT_LABEL]);
    let shared = p.x25519(&Secret32::new(static_secret), &point)?;
    let reset_key = p.hmac_sha256(shared.expose(), &[RESET_KEY_LABEL]);
    let derived = ResetKey::from_shared(shared.expose(), p);
    let key = ResetKey::new(reset_key);
    let decryptor: Address = "sc-dec#0123456789abcdef".into();
    let token = key.token(p, &decryptor);
    assert_eq!(token, derived.token(p, &decryptor));
    let tokens: Vec<Value> = ["sc-dec#0123456789abcdef", "sc-dec#fedcba9876543210", "r"]
        .iter()
        .map(|a| json!({"decryptor": a, "token": hex::encode(key.token(p, &Address::from(*a)))}))
        .collect();
    let mut ack_with_token = ChannelFrame::Ack {
        cumulative: 0,
        selective: None,
        limit: 128,
    }
    .to_vec();
    ack_with_token.extend_from_slice(&token);
    let trigger = RoutedMessage::new(
        route(&["sc-dec#0123456789abcdef"]),
        route(&["tcp-in#00000000000000aa", "sc-dec#fedcba9876543210"]),
        [&[KIND_FRAME][..], &[0x5a; 40]].concat(),
    );
    let reset = key
        .answer_unknown(p, &trigger)
        .ok_or("a frame gets a reset")?;
    let reset_vectors = json!({
        "kind": latchkey_core::route::KIND_RESET,
        "token_len": 16,
        "labels": {
            "point": String::from_utf8_lossy(RESET_POINT_LABEL),
            "key": String::from_utf8_lossy(RESET_KEY_LABEL),
            "token": String::from_utf8_lossy(RESET_TOKEN_LABEL),
        },
        "key_derivation": {
            "static_secret": hex::encode(static_secret),
            "reset_point": hex::encode(point),
            "shared": hex::encode(shared.expose()),
            "reset_key": hex::encode(reset_key),
        },
        "tokens": tokens,
        "ack_with_token": {"cumulative": 0, "selective": null, "limit": 128, "token": hex::encode(token), "plaintext": hex::encode(&ack_with_token)},
        "answer": {
            "arrived": hex::encode(trigger.encode()?),
            "reset": hex::encode(reset.encode()?),
            "payload": hex::encode(reset_payload(&token)),
        },
        "not_answered": [
            {"name": "a reset", "arrived": hex::encode(RoutedMessage::new(route(&["sc-dec#0123456789abcdef"]), route(&["tcp-in#1"]), reset_payload(&token)).encode()?)},
            {"name": "a frame no longer than a reset", "arrived": hex::encode(RoutedMessage::new(route(&["sc-dec#0123456789abcdef"]), route(&["tcp-in#1"]), vec![KIND_FRAME; 17]).encode()?)},
            {"name": "a handshake message", "arrived": hex::encode(RoutedMessage::new(route(&["sc-dec#0123456789abcdef"]), route(&["tcp-in#1"]), vec![KIND_HANDSHAKE; 64]).encode()?)},
            {"name": "no return route", "arrived": hex::encode(RoutedMessage::new(route(&["sc-dec#0123456789abcdef"]), route(&[]), vec![KIND_FRAME; 64]).encode()?)},
        ],
    });
    for v in reset_vectors["not_answered"].as_array().expect("array") {
        let m = RoutedMessage::decode(&hex::decode(v["arrived"].as_str().expect("hex"))?)?;
        assert!(key.answer_unknown(p, &m).is_none());
    }

    // Cookies (admission of first messages): the cookie of a path and initiator, the reply, message 1 with it.
    let cookie_key = [0x17u8; 32];
    let m1 = RoutedMessage::new(
        route(&["api"]),
        route(&[
            "udp#00000000000000aa",
            "192.0.2.7:40000",
            "sc-dec#0123456789abcdef",
        ]),
        [&[KIND_HANDSHAKE][..], &[0x33; 32]].concat(),
    );
    let arrival = latchkey_core::route::Arrival::datagram(
        "udp#00000000000000aa".into(),
        "192.0.2.7:40000".into(),
    );
    let initiator: Address = "sc-dec#0123456789abcdef".into();
    let period = 14_000_000u64;
    let c = admission::cookie(p, &cookie_key, period, &arrival, &initiator);
    let reply = admission::cookie_reply(&m1, &c);
    let with = RoutedMessage::new(
        m1.onward.clone(),
        m1.ret.clone(),
        admission::with_cookie(&c, &m1.payload[1..]),
    );
    assert!(reply.encode()?.len() < m1.encode()?.len());
    let cookie_vectors = json!({
        "kind_cookie": admission::KIND_COOKIE,
        "kind_handshake_with_cookie": admission::KIND_HANDSHAKE_WITH_COOKIE,
        "label": String::from_utf8_lossy(admission::COOKIE_LABEL),
        "period_secs": admission::COOKIE_PERIOD.as_secs(),
        "key": hex::encode(cookie_key),
        "period": period,
        "arrival": {"hop": "udp#00000000000000aa", "remote": "192.0.2.7:40000"},
        "initiator": initiator.as_str(),
        "cookie": hex::encode(c),
        "message_1": hex::encode(m1.encode()?),
        "reply": hex::encode(reply.encode()?),
        "message_1_with_cookie": hex::encode(with.encode()?),
    });

    // Suite offers (docs/PROTOCOL.md 5.1): the Noise message 1 of a routed handshake, e ‖ offer; what a
    // responder accepting both suites reads from it; the refusal a listener accepting only ChaChaPoly answers.
    let e = [0x33u8; 32];
    let offers: Vec<Value> = [
        ("empty offer (legacy): ChaChaPoly", &[][..]),
        ("0x01: ChaChaPoly", &[latchkey_core::channel::SUITE_CHACHAPOLY][..]),
        ("0x02: AES-GCM", &[latchkey_core::channel::SUITE_AESGCM][..]),
        ("unknown suite byte 0x07", &[0x07][..]),
        ("two bytes", &[0x02, 0x00][..]),
    ]
    .iter()
    .map(|(name, offer)| {
        let noise = [&e[..], offer].concat();
        let (suite, error) = match latchkey_core::channel::CipherSuite::offered_in(&noise) {
            Ok(suite) => (json!(suite.name()), Value::Null),
            Err(e) => (Value::Null, json!(e.name())),
        };
        json!({"name": name, "noise_message_1": hex::encode(&noise), "suite": suite, "error": error})
    })
    .collect();
    let aes_m1 = RoutedMessage::new(
        route(&["api"]),
        route(&["tcp-in#00000000000000aa", "sc-dec#0123456789abcdef"]),
        [
            &[KIND_HANDSHAKE][..],
            &e,
            &[latchkey_core::channel::SUITE_AESGCM],
        ]
        .concat(),
    );
    let refusal = latchkey_core::route::refuse_suite_offer(
        &aes_m1,
        &latchkey_core::route::Arrival::via("tcp-in#00000000000000aa".into()),
        latchkey_core::channel::SuiteSet::only(latchkey_core::channel::CipherSuite::ChaChaPoly),
        &"api".into(),
    )
    .ok_or("refused")?;
    let suite_vectors = json!({
        "offers": offers,
        "refusal": {
            "listener": "api",
            "arrival_hop": "tcp-in#00000000000000aa",
            "accepted": ["chachapoly"],
            "arrived": hex::encode(aes_m1.encode()?),
            "refusal": hex::encode(refusal.encode()?),
            "payload": hex::encode(&refusal.payload),
        },
    });

    let routed = json!({
        "description": "Latchkey routed-layer vectors (docs/RUNTIME.md). routed_messages: RoutedMessage::new(onward, \
            ret, payload).encode() = encoded, and decode(encoded) gives the inputs back; invalid_routed_messages: \
            decode(encoded) fails with DecodeError(error). channel_payloads: kind byte ‖ body (re-handshake, 0x07: \
            generation u64 BE ‖ step ‖ Noise message). frames: the \
            plaintext inside a channel's transport frame (DATA seq ‖ inner routed message, ACK cumulative ‖ \
            selective with null = u64::MAX ‖ limit, all u64 BE, CLOSE, REKEY generation u64 BE, UNDELIVERED seq \
            u64 BE ‖ reason, PROBE next u64 BE); ignored_plaintexts parse to nothing. relay: the registration \
            request sent into the channel to the relay, the reply bytes, the reply message, and how a forwarder \
            rewrites a route, and the refusal a relay answers message 1 to an unknown name with. stateless_reset: reset_point = SHA-256(labels.point), shared = X25519(static_secret, \
            reset_point), reset_key = HMAC-SHA-256(shared, labels.key), token = HMAC-SHA-256(reset_key, \
            labels.token ‖ len(decryptor) ‖ decryptor)[..16]; the ACK plaintext that carries a token; the reset \
            a node answers a frame for an unknown decryptor with (encoded routed messages), and messages it \
            does not answer. cookies: cookie = HMAC-SHA-256(key, label ‖ period (u64 BE) ‖ len(hop) ‖ hop ‖ \
            len(remote) ‖ remote ‖ len(initiator) ‖ initiator)[..16]; the cookie reply a listener answers \
            message_1 with (0x05 ‖ cookie, onward = its return route, return empty), and message 1 sent again \
            with it (0x06 ‖ cookie ‖ Noise message 1). suite_offers: a routed handshake's Noise message 1 (e ‖ \
            offer, docs/PROTOCOL.md 5.1) and the suite it offers (chachapoly, aesgcm) or the error a responder \
            fails with (UnsupportedSuite, DecodeError); the refusal a listener that accepts only ChaChaPoly \
            answers an AES-GCM offer with (0x03 ‖ \"UnsupportedSuite\" from the listener, onward = message 1's \
            return route). Lowercase hex; addresses as UTF-8 strings.",
        "routed_messages": routed_messages,
        "invalid_routed_messages": invalid,
        "channel_payloads": channel_payloads,
        "frames": frames,
        "ignored_plaintexts": ignored,
        "relay": relay_vectors,
        "stateless_reset": reset_vectors,
        "cookies": cookie_vectors,
        "suite_offers": suite_vectors,
    });
    let path = out_dir.join("routed.json");
    std::fs::write(&path, serde_json::to_string_pretty(&routed)? + "\n")?;
    println!("wrote {}", path.display());
    Ok(())
}
