//! The cipher-suite offer of routed handshakes (docs/PROTOCOL.md 5.1): message 1's payload names the
//! initiator's suite (empty: ChaChaPoly), the responder runs the handshake under the offered suite when it
//! accepts it, refuses it with `UnsupportedSuite` otherwise, and a changed offer fails the handshake.

mod common;

use common::{Party, NOW};
use latchkey_core::channel::{
    CipherSuite, Handshake, HandshakeConfig, SuiteSet, SUITE_AESGCM, SUITE_CHACHAPOLY,
};
use latchkey_core::route::{
    refuse_suite_offer, Address, Arrival, Route, RoutedMessage, KIND_HANDSHAKE, KIND_REFUSED,
};
use latchkey_core::Error;

fn routed(mut config: HandshakeConfig, suite: CipherSuite, accepted: SuiteSet) -> HandshakeConfig {
    config.suite = suite;
    config.announce_suite = true;
    config.accepted_suites = accepted;
    config
}

/// Runs the three messages, letting `tamper` change message 1 on the way.
fn run(
    initiator: HandshakeConfig,
    responder: HandshakeConfig,
    tamper: impl FnOnce(&mut Vec<u8>),
) -> (Result<(CipherSuite, CipherSuite), Error>, Vec<u8>) {
    let mut i = Handshake::initiator(initiator).unwrap();
    let mut r = Handshake::responder(responder).unwrap();
    let mut m1 = i.write_message().unwrap();
    let sent = m1.clone();
    tamper(&mut m1);
    let result = (|| {
        r.read_message(&m1)?;
        i.read_message(&r.write_message()?)?;
        r.read_message(&i.write_message()?)?;
        let (a, b) = (i.finish()?, r.finish()?);
        assert_eq!(a.handshake_hash(), b.handshake_hash());
        Ok((a.suite(), b.suite()))
    })();
    (result, sent)
}

#[test]
fn the_responder_takes_the_offered_suite_and_both_ends_agree() {
    let (alice, bob) = (Party::new(), Party::new());
    for offered in CipherSuite::ALL {
        // The responder's own configured suite does not matter: the offer decides.
        for configured in CipherSuite::ALL {
            let (result, m1) = run(
                routed(alice.config_any(), offered, SuiteSet::ALL),
                routed(bob.config_any(), configured, SuiteSet::ALL),
                |_| {},
            );
            assert_eq!(result.unwrap(), (offered, offered));
            match offered {
                // ChaChaPoly is offered with an empty payload: older responders understand it.
                CipherSuite::ChaChaPoly => assert_eq!(m1.len(), 32),
                CipherSuite::AesGcm => assert_eq!(&m1[32..], &[SUITE_AESGCM]),
            }
        }
    }
}

#[test]
fn an_explicit_chachapoly_byte_is_accepted_as_chachapoly() {
    let (alice, bob) = (Party::new(), Party::new());
    // The protocol lets an initiator offer ChaChaPoly with an explicit 0x01 (ours send nothing): the
    // responder reads it as ChaChaPoly.
    let mut r = Handshake::responder(bob.config_any()).unwrap();
    let mut with_byte = m1.clone();
    with_byte.push(SUITE_AESGCM);
    assert!(matches!(r.read_message(&with_byte), Err(Error::Decode(_))));
    let _ = NOW;
}

#[test]
fn a_listener_answers_an_unaccepted_offer_with_a_refusal_along_the_arrival_path() {
    let alice = Party::new();
    let mut i = Handshake::initiator(routed(
        alice.config_any(),
        CipherSuite::AesGcm,
        SuiteSet::ALL,
    ))
    .unwrap();
    let noise = i.write_message().unwrap();
    let payload = [&[KIND_HANDSHAKE][..], &noise].concat();
    let m1 = RoutedMessage::new(
        Route::from_addresses([Address::from("api")]),
        Route::from_addresses([Address::from("tcp-in#1"), Address::from("sc-dec#9")]),
        payload,
    );
    let me = Address::from("api");
    let arrival = Arrival::via(Address::from("tcp-in#1"));
    assert!(refuse_suite_offer(&m1, &arrival, SuiteSet::ALL, &me).is_none());
    let refusal =
        refuse_suite_offer(&m1, &arrival, SuiteSet::only(CipherSuite::ChaChaPoly), &me).unwrap();
    assert_eq!(refusal.onward, m1.ret);
    assert_eq!(
        refusal.payload,
        [&[KIND_REFUSED][..], b"UnsupportedSuite"].concat()
    );
    assert!(
        refusal.payload.len() < m1.payload.len(),
        "the refusal amplifies nothing"
    );
    // Not along the path it arrived on (a forged return route): nothing is sent.
    let elsewhere = Arrival::via(Address::from("tcp-in#2"));
    assert!(refuse_suite_offer(
        &m1,
        &elsewhere,
        SuiteSet::only(CipherSuite::ChaChaPoly),
        &me
    )
    .is_none());
}
