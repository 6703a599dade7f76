//! The routed-message codec (docs/RUNTIME.md "Routed-message wire format"): what every transport decodes
//! from the network and what a channel's DATA frame carries. Uses the public re-export
//! `latchkey_runtime::Message`, wherever the codec itself lives. Input: the encoded message; its payload
//! is also tried as a relay registration name (`relay::forwarder_address`) and as an address.
//!
//! Checks: no panic; a decoded message re-encodes to exactly the input; routes hold at most 32 addresses of
//! 1..=255 bytes; a decoded message is never stamped with a remote origin; route edits that the runtime
//! makes (pop the first hop, prepend a return hop, drop the last hop) either encode or are refused for length.
#![no_main]

use latchkey_runtime::message::{MAX_ADDRESS_LEN, MAX_ROUTE_LEN};
use latchkey_runtime::relay::{forwarder_address, MAX_NAME_LEN};
use latchkey_runtime::{Address, Message, Origin};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(a) = Address::new(text) {
            assert!(!a.as_str().is_empty() && a.as_str().len() <= MAX_ADDRESS_LEN);
        }
    }
    let Ok(message) = Message::decode(data) else {
        return;
    };
    assert_eq!(
        message.encode().expect("a decoded message encodes"),
        data,
        "not canonical"
    );
    assert!(matches!(message.origin(), Origin::Local { .. }));
    assert!(message.peer().is_none());
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
            let back = Message::decode(&bytes).expect("re-decodes");
            assert_eq!((back.onward, back.ret), (received.onward, received.ret));
        }
        Err(_) => assert!(received.ret.len() > MAX_ROUTE_LEN),
    }
    // The payload as a relay name: a valid name always has a forwarder address.
    if let Ok(name) = std::str::from_utf8(&message.payload) {
        let forwarder = forwarder_address(name);
        if !name.is_empty() && name.len() <= MAX_NAME_LEN {
            assert_eq!(
                forwarder.expect("a valid name has a forwarder").as_str(),
                format!("fwd:{name}")
            );
        }
    }
});
