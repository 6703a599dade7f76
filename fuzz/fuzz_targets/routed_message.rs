//! The routed-message codec (docs/RUNTIME.md "Routed-message wire format": what every transport decodes from
//! the network and what a channel's DATA frame carries) and the small parsers that read routed payloads:
//! the channel frame plaintext (`ChannelFrame::parse`, "Frames") and relay registration (`route::relay`:
//! names, replies, the forwarder route check). Input: an encoded routed message.
//!
//! The codec is reached both through the runtime's public `latchkey_runtime::Message::decode` (as the
//! runtime's transports call it) and through the core's `RoutedMessage::{decode, decode_vec,
//! decode_header}`; all must agree.
//!
//! Checks: no panic; a decoded message re-encodes to exactly the input; routes hold at most 32 addresses of
//! 1..=255 bytes; a decoded message carries no remote origin; route edits that transports and forwarders
//! make either encode or are refused for length; a frame plaintext that parses re-encodes to what was read;
//! relay names, replies and forwarder routes follow their rules; a message 1's suite offer
//! (`CipherSuite::offered_in`, docs/PROTOCOL.md 5.1) is refused by a listener exactly when it is unknown or not
//! accepted, and the refusal goes back along the return route only.
#![no_main]

use latchkey_core::channel::{CipherSuite, SuiteSet};
use latchkey_core::route::relay::{
    forward, forwarder_address, forwarder_route, parse_name, request, Reply, MAX_NAME_LEN,
};
use latchkey_core::route::{refuse_suite_offer, Arrival, ChannelFrame, KIND_HANDSHAKE};
use latchkey_core::wire::{RoutedMessage, MAX_ADDRESS_LEN, MAX_ROUTE_LEN};
use latchkey_runtime::{Address, Message, Origin};
use libfuzzer_sys::fuzz_target;

/// The suite offer of a message 1, read as a listener does (`route::refuse_suite_offer`).
fn suite_offer(message: &RoutedMessage) {
    let Some((&KIND_HANDSHAKE, noise)) = message.payload.split_first() else {
        return;
    };
    let offered = CipherSuite::offered_in(noise);
    let me = Address::from("api");
    let arrival = Arrival::via(
        message
            .ret
            .first()
            .cloned()
            .unwrap_or_else(|| Address::from("tcp-in#1")),
    );
    for accepted in [
        SuiteSet::ALL,
        SuiteSet::only(CipherSuite::ChaChaPoly),
        SuiteSet::only(CipherSuite::AesGcm),
    ] {
        let refusal = refuse_suite_offer(message, &arrival, accepted, &me);
        let expected = match &offered {
            Ok(suite) => !accepted.contains(*suite),
            Err(latchkey_core::Error::UnsupportedSuite(_)) => true,
            Err(_) => false,
        };
        assert_eq!(
            refusal.is_some(),
            expected && !message.ret.is_empty(),
            "{offered:?}"
        );
        if let Some(r) = refusal {
            assert_eq!(r.onward, message.ret);
            assert_eq!(r.payload, b"\x03UnsupportedSuite");
            assert!(
                r.encoded_len() < message.encoded_len(),
                "the refusal amplifies"
            );
        }
    }
}

fn frame_and_relay_payload(payload: &[u8], message: &RoutedMessage) {
    // The plaintext of a channel frame.
    if let Some(frame) = ChannelFrame::parse(payload) {
        let encoded = frame.to_vec();
        assert!(
            payload.starts_with(&encoded),
            "frame {frame:?} re-encodes differently"
        );
        if let ChannelFrame::Data { .. } = frame {
            assert_eq!(encoded, payload);
        }
    }
    // A registration: the payload is the name, the return route is checked against the channel.
    match parse_name(payload) {
        Ok(name) => {
            assert!(!name.is_empty() && name.len() <= MAX_NAME_LEN);
            let forwarder = forwarder_address(name).expect("a valid name has a forwarder");
            assert_eq!(forwarder.as_str(), format!("fwd:{name}"));
            let req = request(
                Address::from("relay"),
                Address::from("relay-client#1"),
                name,
            )
            .expect("a valid name makes a request");
            assert_eq!(req.payload, payload);
        }
        Err(reply) => {
            assert_eq!(reply, Reply::BadName);
            assert!(std::str::from_utf8(payload)
                .map_or(true, |n| n.is_empty() || n.len() > MAX_NAME_LEN));
        }
    }
    if let Some(reply) = Reply::parse(payload) {
        assert_eq!(reply.as_bytes(), payload);
    }
    let _ = Reply::explain(payload, "doorbell");
    for channel in [message.ret.first(), message.onward.first(), None] {
        match forwarder_route(&message.ret, channel) {
            Ok(route) => {
                assert!(
                    message.ret.len() >= 2 && channel.is_some() && message.ret.first() == channel
                );
                assert_eq!(route, message.ret.without_last());
                let forwarded = forward(&message.onward, &route);
                assert_eq!(
                    forwarded.len(),
                    route.len() + message.onward.len().saturating_sub(1)
                );
                assert_eq!(
                    forwarded.first(),
                    route.first(),
                    "a forwarder left the channel"
                );
            }
            Err(reply) => assert_eq!(reply, Reply::BadRoute),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(a) = Address::new(text) {
            assert!(!a.as_str().is_empty() && a.as_str().len() <= MAX_ADDRESS_LEN);
        }
    }
    let core = RoutedMessage::decode(data);
    let core_vec = RoutedMessage::decode_vec(data.to_vec());
    let header = RoutedMessage::decode_header(data);
    let runtime = Message::decode(data);
    assert_eq!(
        core.as_ref().ok(),
        core_vec.as_ref().ok(),
        "decode and decode_vec disagree"
    );
    assert_eq!(
        runtime.is_ok(),
        core.is_ok(),
        "the runtime and the core disagree"
    );
    let Ok(message) = core else {
        assert!(header.is_err());
        return;
    };
    let (onward, ret, payload) = header.expect("header decodes");
    assert_eq!(
        (&onward, &ret, payload),
        (&message.onward, &message.ret, &message.payload[..])
    );
    assert_eq!(
        message.encode().expect("a decoded message encodes"),
        data,
        "not canonical"
    );
    assert_eq!(message.encoded_len(), data.len());
    let runtime = runtime.expect("decodes");
    assert_eq!(
        (&runtime.onward, &runtime.ret, &runtime.payload),
        (&message.onward, &message.ret, &message.payload)
    );
    assert_eq!(runtime.encode().expect("encodes"), data);
    assert!(matches!(runtime.origin(), Origin::Local { .. }));
    assert!(runtime.peer().is_none());
    for route in [&message.onward, &message.ret] {
        assert!(route.len() <= MAX_ROUTE_LEN);
        for a in route.iter() {
            assert!((1..=MAX_ADDRESS_LEN).contains(&a.as_str().len()));
        }
    }
    // What a transport does on receipt and a forwarder on sending.
    let mut received = message.clone();
    received.ret = received
        .ret
        .prepend(Address::from("tcp-in#0123456789abcdef"));
    received.onward.pop_front();
    received.onward = received.onward.without_last();
    match received.encode() {
        Ok(bytes) => {
            let back = RoutedMessage::decode(&bytes).expect("re-decodes");
            assert_eq!(back, received);
        }
        Err(_) => assert!(received.ret.len() > MAX_ROUTE_LEN),
    }
    frame_and_relay_payload(&message.payload, &message);
    suite_offer(&message);
});
