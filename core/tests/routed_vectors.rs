//! Reproduces `tests/vectors/routed.json` (written by `core/examples/gen_routed_vectors.rs`) byte for byte
//! from its inputs: routed-message encodings and refusals, channel payload kinds, DATA/ACK/CLOSE plaintexts,
//! ignored plaintexts, the relay registration exchange, and the suite offers of message 1.

mod common;

use latchkey_core::route::relay::{self, Reply};
use latchkey_core::route::{Address, ChannelFrame, Route, RoutedMessage};
use latchkey_core::Error;
use serde_json::Value;

fn load() -> Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/routed.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("JSON")
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("hex")
}

fn route(v: &Value) -> Route {
    Route::from_addresses(
        v.as_array()
            .expect("array")
            .iter()
            .map(|a| Address::new(a.as_str().expect("string")).expect("address")),
    )
}

fn list(v: &Value) -> &Vec<Value> {
    v.as_array().expect("array")
}

#[test]
fn routed_messages_encode_and_decode_byte_for_byte() {
    let all = load();
    let cases = list(&all["routed_messages"]);
    assert!(cases.len() >= 6);
    for v in cases {
        let m = RoutedMessage::new(route(&v["onward"]), route(&v["ret"]), bytes(&v["payload"]));
        let encoded = bytes(&v["encoded"]);
        assert_eq!(m.encode().unwrap(), encoded, "{}", v["name"]);
        assert_eq!(RoutedMessage::decode(&encoded).unwrap(), m, "{}", v["name"]);
    }
    for v in list(&all["invalid_routed_messages"]) {
        match RoutedMessage::decode(&bytes(&v["encoded"])) {
            Err(Error::Decode(why)) => assert_eq!(why, v["error"], "{}", v["name"]),
            other => panic!("{}: {other:?}", v["name"]),
        }
    }
}

#[test]
fn channel_payloads_and_frame_plaintexts_reproduce() {
    let all = load();
    for v in list(&all["channel_payloads"]) {
        let mut payload = vec![v["kind"].as_u64().unwrap() as u8];
        payload.extend(bytes(&v["body"]));
        assert_eq!(payload, bytes(&v["payload"]), "{}", v["name"]);
        if let Some(generation) = v["generation"].as_u64() {
            let step = v["step"].as_u64().unwrap() as u8;
            let noise = bytes(&v["noise"]);
            assert_eq!(
                latchkey_core::route::rehandshake_payload(generation, step, &noise),
                payload
            );
            assert_eq!(
                latchkey_core::route::parse_rehandshake(&payload),
                Some((generation, step, &noise[..]))
            );
        }
    }
    for v in list(&all["frames"]) {
        let inner;
        let frame = match v["type"].as_str().unwrap() {
            "DATA" => {
                inner = bytes(&v["inner"]);
                RoutedMessage::decode(&inner).expect("the inner message is a routed message");
                ChannelFrame::Data {
                    seq: v["seq"].as_u64().unwrap(),
                    inner: &inner,
                }
            }
            "ACK" => ChannelFrame::Ack {
                cumulative: v["cumulative"].as_u64().unwrap(),
                selective: v["selective"].as_u64(),
                limit: v["limit"].as_u64().unwrap(),
            },
            "PROBE" => ChannelFrame::Probe {
                next: v["next"].as_u64().unwrap(),
            },
            "CLOSE" => ChannelFrame::Close,
            "REKEY" => ChannelFrame::Rekey {
                generation: v["generation"].as_u64().unwrap(),
            },
            "UNDELIVERED" => ChannelFrame::Undelivered {
                seq: v["seq"].as_u64().unwrap(),
                reason: v["reason"].as_u64().unwrap() as u8,
            },
            other => panic!("unknown frame type {other}"),
        };
        let plaintext = bytes(&v["plaintext"]);
        assert_eq!(frame.to_vec(), plaintext, "{}", v["name"]);
        assert_eq!(
            ChannelFrame::parse(&plaintext),
            Some(frame),
            "{}",
            v["name"]
        );
    }
    for v in list(&all["ignored_plaintexts"]) {
        assert_eq!(
            ChannelFrame::parse(&bytes(&v["plaintext"])),
            None,
            "{}",
            v["name"]
        );
    }
}

#[test]
fn relay_registration_reproduces() {
    let all = load();
    let r = &all["relay"];
    let q = &r["request"];
    let request = relay::request(
        Address::new(q["service"].as_str().unwrap()).unwrap(),
        Address::new(q["reply_to"].as_str().unwrap()).unwrap(),
        q["name"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(request.encode().unwrap(), bytes(&q["inner_message"]));
    for v in list(&r["replies"]) {
        let wire = bytes(&v["bytes"]);
        assert_eq!(wire, v["reply"].as_str().unwrap().as_bytes());
        assert_eq!(Reply::parse(&wire).map(Reply::as_bytes), Some(&wire[..]));
    }
    assert_eq!(list(&r["replies"]).len(), Reply::ALL.len());
    let m = &r["reply_message"];
    let reply = Reply::parse(m["reply"].as_str().unwrap().as_bytes()).unwrap();
    assert_eq!(
        relay::answer(&route(&m["request_ret_at_relay"]), reply)
            .encode()
            .unwrap(),
        bytes(&m["encoded"])
    );
    let f = &r["forwarding"];
    let hop = Address::new(f["arrival_hop"].as_str().unwrap()).unwrap();
    let forwarder = relay::forwarder_route(&route(&f["request_ret_at_relay"]), Some(&hop)).unwrap();
    assert_eq!(forwarder, route(&f["forwarder_route"]));
    assert_eq!(
        relay::forwarder_address("doorbell").unwrap().as_str(),
        f["forwarder"].as_str().unwrap()
    );
    assert_eq!(
        relay::forward(&route(&f["arriving_onward"]), &forwarder),
        route(&f["forwarded_onward"])
    );
    for v in list(&r["bad_routes"]) {
        let hop = Address::new(v["arrival_hop"].as_str().unwrap()).unwrap();
        let refused = relay::forwarder_route(&route(&v["request_ret_at_relay"]), Some(&hop));
        assert_eq!(
            refused.map_err(Reply::as_bytes),
            Err(v["reply"].as_str().unwrap().as_bytes())
        );
    }
    let u = &r["unknown_name"];
    assert_eq!(u["reason"], relay::NO_SUCH_NAME);
    let arrived = RoutedMessage::decode(&bytes(&u["arrived"])).unwrap();
    let refusal = relay::unknown_name_refusal(&arrived).unwrap();
    assert_eq!(refusal.encode().unwrap(), bytes(&u["refusal"]));
    assert_eq!(refusal.onward, arrived.ret);
    for v in list(&r["bad_names"]) {
        let outcome = relay::parse_name(&bytes(&v["name_bytes"]))
            .err()
            .map(Reply::as_bytes);
        assert_eq!(outcome, v["reply"].as_str().map(str::as_bytes));
    }
}

#[test]
fn stateless_reset_key_tokens_ack_and_answer_reproduce() {
    use latchkey_core::crypto::{default_provider, Secret32};
    use latchkey_core::route::reset::{
        parse_reset, reset_payload, ResetKey, RESET_KEY_LABEL, RESET_POINT_LABEL, RESET_TOKEN_LABEL,
    };
    let all = load();
    let v = &all["stateless_reset"];
    let p = default_provider();
    assert_eq!(v["kind"], latchkey_core::route::KIND_RESET);
    assert_eq!(
        v["labels"]["point"].as_str().unwrap().as_bytes(),
        RESET_POINT_LABEL
    );
    assert_eq!(
        v["labels"]["key"].as_str().unwrap().as_bytes(),
        RESET_KEY_LABEL
    );
    assert_eq!(
        v["labels"]["token"].as_str().unwrap().as_bytes(),
        RESET_TOKEN_LABEL
    );
    let d = &v["key_derivation"];
    let point = p.sha256(&[RESET_POINT_LABEL]);
    assert_eq!(point.to_vec(), bytes(&d["reset_point"]));
    let secret: [u8; 32] = bytes(&d["static_secret"]).try_into().unwrap();
    let shared = p.x25519(&Secret32::new(secret), &point).unwrap();
    assert_eq!(shared.expose().to_vec(), bytes(&d["shared"]));
    let reset_key: [u8; 32] = bytes(&d["reset_key"]).try_into().unwrap();
    assert_eq!(
        p.hmac_sha256(shared.expose(), &[RESET_KEY_LABEL]),
        reset_key
    );
    let key = ResetKey::new(reset_key);
    let derived = ResetKey::from_shared(shared.expose(), p);
    for t in list(&v["tokens"]) {
        let a = Address::new(t["decryptor"].as_str().unwrap()).unwrap();
        assert_eq!(key.token(p, &a).to_vec(), bytes(&t["token"]));
        assert_eq!(derived.token(p, &a).to_vec(), bytes(&t["token"]));
    }
    let ack = &v["ack_with_token"];
    let plaintext = bytes(&ack["plaintext"]);
    let limit = ack["limit"].as_u64().unwrap();
    let mut expected = ChannelFrame::Ack {
        cumulative: 0,
        selective: None,
        limit,
    }
    .to_vec();
    expected.extend(bytes(&ack["token"]));
    assert_eq!(plaintext, expected);
    assert_eq!(
        ChannelFrame::parse(&plaintext),
        Some(ChannelFrame::Ack {
            cumulative: 0,
            selective: None,
            limit,
        }),
        "a receiver that knows nothing of tokens still reads the ACK"
    );
    let arrived = RoutedMessage::decode(&bytes(&v["answer"]["arrived"])).unwrap();
    let reset = key.answer_unknown(p, &arrived).unwrap();
    assert_eq!(reset.encode().unwrap(), bytes(&v["answer"]["reset"]));
    assert_eq!(reset.payload, bytes(&v["answer"]["payload"]));
    let token: [u8; 16] = bytes(&ack["token"]).try_into().unwrap();
    assert_eq!(reset_payload(&token), reset.payload);
    assert_eq!(parse_reset(&reset.payload), Some(token));
    for n in list(&v["not_answered"]) {
        let m = RoutedMessage::decode(&bytes(&n["arrived"])).unwrap();
        assert!(key.answer_unknown(p, &m).is_none(), "{}", n["name"]);
    }
}

#[test]
fn cookies_reproduce() {
    use latchkey_core::crypto::default_provider;
    use latchkey_core::route::admission::{
        self, cookie, cookie_reply, parse_cookie_reply, with_cookie, COOKIE_LABEL,
    };
    use latchkey_core::route::Arrival;
    let all = load();
    let v = &all["cookies"];
    let p = default_provider();
    assert_eq!(v["kind_cookie"], admission::KIND_COOKIE);
    assert_eq!(
        v["kind_handshake_with_cookie"],
        admission::KIND_HANDSHAKE_WITH_COOKIE
    );
    assert_eq!(v["label"].as_str().unwrap().as_bytes(), COOKIE_LABEL);
    assert_eq!(v["period_secs"], admission::COOKIE_PERIOD.as_secs());
    let key: [u8; 32] = bytes(&v["key"]).try_into().unwrap();
    let arrival = Arrival::datagram(
        Address::new(v["arrival"]["hop"].as_str().unwrap()).unwrap(),
        Address::new(v["arrival"]["remote"].as_str().unwrap()).unwrap(),
    );
    let initiator = Address::new(v["initiator"].as_str().unwrap()).unwrap();
    let c = cookie(p, &key, v["period"].as_u64().unwrap(), &arrival, &initiator);
    assert_eq!(c.to_vec(), bytes(&v["cookie"]));
    let m1 = RoutedMessage::decode(&bytes(&v["message_1"])).unwrap();
    let reply = cookie_reply(&m1, &c);
    assert_eq!(reply.encode().unwrap(), bytes(&v["reply"]));
    assert_eq!(parse_cookie_reply(&reply.payload), Some(c));
    let with = RoutedMessage::new(
        m1.onward.clone(),
        m1.ret.clone(),
        with_cookie(&c, &m1.payload[1..]),
    );
    assert_eq!(with.encode().unwrap(), bytes(&v["message_1_with_cookie"]));
}

#[test]
fn suite_offers_read_by_a_responder_and_the_refusal_reproduce() {
    use latchkey_core::channel::{CipherSuite, Handshake, SuiteSet};
    let all = load();
    let party = common::Party::new();
    for v in list(&all["suite_offers"]["offers"]) {
        // Through a routed responder's handshake (the one parser of the offer), accepting both suites.
        let mut config = party.config_any();
        config.announce_suite = true;
        let mut responder = Handshake::responder(config).unwrap();
        match responder.read_message(&bytes(&v["noise_message_1"])) {
            Ok(()) => assert_eq!(
                Some(responder.suite().name()),
                v["suite"].as_str(),
                "{}",
                v["name"]
            ),
            Err(e) => assert_eq!(Some(e.name()), v["error"].as_str(), "{}", v["name"]),
        }
    }
    let r = &all["suite_offers"]["refusal"];
    assert_eq!(r["accepted"], serde_json::json!(["chachapoly"]));
    let arrived = RoutedMessage::decode(&bytes(&r["arrived"])).unwrap();
    let refusal = latchkey_core::route::refuse_suite_offer(
        &arrived,
        &latchkey_core::route::Arrival::via(
            Address::new(r["arrival_hop"].as_str().unwrap()).unwrap(),
        ),
        SuiteSet::only(CipherSuite::ChaChaPoly),
        &Address::new(r["listener"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(refusal.encode().unwrap(), bytes(&r["refusal"]));
    assert_eq!(refusal.payload, bytes(&r["payload"]));
    // Accepting AES-GCM too, the same message 1 is not refused.
    assert!(latchkey_core::route::refuse_suite_offer(
        &arrived,
        &latchkey_core::route::Arrival::via(
            Address::new(r["arrival_hop"].as_str().unwrap()).unwrap()
        ),
        SuiteSet::ALL,
        &Address::new(r["listener"].as_str().unwrap()).unwrap(),
    )
    .is_none());
}
