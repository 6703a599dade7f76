//! The cipher-suite offer of routed handshakes (docs/PROTOCOL.md 5.1): message 1's payload names the
//! initiator's suite (empty: ChaChaPoly), the responder runs the handshake under the offered suite when it
//! accepts it, refuses it with `UnsupportedSuite` otherwise, and a changed offer fails the handshake.

mod common;

use common::Party;
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
    let mut r =
        Handshake::responder(routed(bob.config_any(), CipherSuite::AesGcm, SuiteSet::ALL)).unwrap();
    let mut i = Handshake::initiator(alice.config_any()).unwrap();
    let mut m1 = i.write_message().unwrap();
    m1.push(SUITE_CHACHAPOLY);
    r.read_message(&m1).unwrap();
    assert_eq!(r.suite(), CipherSuite::ChaChaPoly);
}

#[test]
fn a_legacy_empty_message_1_is_accepted_as_chachapoly() {
    let (alice, bob) = (Party::new(), Party::new());
    // The initiator does not announce (a peer from before the offer existed).
    let (result, m1) = run(
        alice.config_any(),
        routed(bob.config_any(), CipherSuite::AesGcm, SuiteSet::ALL),
        |_| {},
    );
    assert_eq!(m1.len(), 32);
    assert_eq!(
        result.unwrap(),
        (CipherSuite::ChaChaPoly, CipherSuite::ChaChaPoly)
    );
}

#[test]
fn a_suite_the_responder_does_not_accept_is_refused_with_unsupported_suite() {
    let (alice, bob) = (Party::new(), Party::new());
    let chacha_only = SuiteSet::only(CipherSuite::ChaChaPoly);
    let (result, _) = run(
        routed(alice.config_any(), CipherSuite::AesGcm, SuiteSet::ALL),
        routed(bob.config_any(), CipherSuite::ChaChaPoly, chacha_only),
        |_| {},
    );
    assert_eq!(result.unwrap_err(), Error::UnsupportedSuite(SUITE_AESGCM));
    // An AES-only responder refuses the empty (ChaChaPoly) offer too.
    let (result, _) = run(
        routed(alice.config_any(), CipherSuite::ChaChaPoly, SuiteSet::ALL),
        routed(
            bob.config_any(),
            CipherSuite::AesGcm,
            SuiteSet::only(CipherSuite::AesGcm),
        ),
        |_| {},
    );
    assert_eq!(
        result.unwrap_err(),
        Error::UnsupportedSuite(SUITE_CHACHAPOLY)
    );
}

#[test]
fn an_unknown_suite_byte_is_refused_and_a_longer_payload_does_not_decode() {
    let (alice, bob) = (Party::new(), Party::new());
    let (result, _) = run(
        routed(alice.config_any(), CipherSuite::AesGcm, SuiteSet::ALL),
        routed(bob.config_any(), CipherSuite::ChaChaPoly, SuiteSet::ALL),
        |m1| m1[32] = 0x07,
    );
    assert_eq!(result.unwrap_err(), Error::UnsupportedSuite(0x07));
    let (result, _) = run(
        routed(alice.config_any(), CipherSuite::AesGcm, SuiteSet::ALL),
        routed(bob.config_any(), CipherSuite::ChaChaPoly, SuiteSet::ALL),
        |m1| m1.push(0),
    );
    assert!(matches!(result.unwrap_err(), Error::Decode(_)));
}

#[test]
fn a_downgraded_offer_fails_the_handshake_at_the_initiator() {
    let (alice, bob) = (Party::new(), Party::new());
    // 0x02 rewritten to 0x01, or removed: the responder runs ChaChaPoly, but the initiator mixed 0x02 under
    // the AES-GCM protocol name, so message 2 does not decrypt. Never a silent downgrade.
    for tamper in [
        (|m1: &mut Vec<u8>| m1[32] = SUITE_CHACHAPOLY) as fn(&mut Vec<u8>),
        |m1: &mut Vec<u8>| {
            m1.pop();
        },
    ] {
        let (result, _) = run(
            routed(alice.config_any(), CipherSuite::AesGcm, SuiteSet::ALL),
            routed(bob.config_any(), CipherSuite::AesGcm, SuiteSet::ALL),
            tamper,
        );
        assert_eq!(result.unwrap_err(), Error::DecryptFailed);
    }
    // And upgraded: an empty offer given a 0x02 byte.
    let (result, _) = run(
        routed(alice.config_any(), CipherSuite::ChaChaPoly, SuiteSet::ALL),
        routed(bob.config_any(), CipherSuite::ChaChaPoly, SuiteSet::ALL),
        |m1| m1.push(SUITE_AESGCM),
    );
    assert_eq!(result.unwrap_err(), Error::DecryptFailed);
}

#[test]
fn direct_handshakes_keep_their_configured_suite_and_plain_message_1() {
    let (alice, bob) = (Party::new(), Party::new());
    // Without the offer, an AES-GCM initiator sends a bare ephemeral key (plain Noise, as snow does).
    let mut i = Handshake::initiator(common::suite_config(
        alice.config_any(),
        CipherSuite::AesGcm,
    ))
    .unwrap();
    let m1 = i.write_message().unwrap();
    assert_eq!(m1.len(), 32);
    // A direct responder does not read a suite byte.
    let mut r = Handshake::responder(bob.config_any()).unwrap();
    let mut with_byte = m1.clone();
    with_byte.push(SUITE_AESGCM);
    assert!(matches!(r.read_message(&with_byte), Err(Error::Decode(_))));
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
