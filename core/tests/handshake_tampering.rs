//! Every byte of every handshake message flipped, every truncation, and one extra byte: the handshake must
//! fail with the documented typed error (never a panic), and a failed handshake must refuse every later call.
//!
//! Both sides use fixed ephemeral keys, so each trial replays exactly the same transcript and only the
//! mutated byte differs.

mod common;

use common::*;
use latchkey_core::channel::{CipherSuite, Handshake, HandshakeConfig, MAX_HANDSHAKE_MESSAGE_LEN};
use latchkey_core::Error;

const SUITES: [CipherSuite; 2] = [CipherSuite::ChaChaPoly, CipherSuite::AesGcm];
const INITIATOR_EPHEMERAL: [u8; 32] = [0x11; 32];
const RESPONDER_EPHEMERAL: [u8; 32] = [0x22; 32];
/// Sizes from docs/PROTOCOL.md: an ephemeral key, a sealed static key, an AEAD tag.
const DH_LEN: usize = 32;
const TAG_LEN: usize = 16;

struct Fixture {
    initiator: HandshakeConfig,
    responder: HandshakeConfig,
}

impl Fixture {
    fn new(suite: CipherSuite) -> Self {
        let alice = Party::new();
        let bob = Party::new();
        Fixture {
            initiator: suite_config(alice.config_any(), suite),
            responder: suite_config(bob.config_any(), suite),
        }
    }

    fn initiator(&self) -> Handshake {
        let mut h = Handshake::initiator(self.initiator.clone()).unwrap();
        h.set_ephemeral_for_test_vectors(INITIATOR_EPHEMERAL)
            .unwrap();
        h
    }

    fn responder(&self) -> Handshake {
        let mut h = Handshake::responder(self.responder.clone()).unwrap();
        h.set_ephemeral_for_test_vectors(RESPONDER_EPHEMERAL)
            .unwrap();
        h
    }

    /// The untampered transcript.
    fn transcript(&self) -> [Vec<u8>; 3] {
        let mut i = self.initiator();
        let mut r = self.responder();
        let m1 = i.write_message().unwrap();
        r.read_message(&m1).unwrap();
        let m2 = r.write_message().unwrap();
        i.read_message(&m2).unwrap();
        let m3 = i.write_message().unwrap();
        r.read_message(&m3).unwrap();
        assert!(i.is_finished() && r.is_finished());
        [m1, m2, m3]
    }
}

/// Every mutation the issue asks for: each byte XORed with two masks (low bit, and the high bit, which
/// X25519 ignores in a public key but the transcript hash does not), each truncation, one extra byte.
fn mutations(message: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..message.len() {
        for mask in [0x01u8, 0x80] {
            let mut m = message.to_vec();
            m[i] ^= mask;
            out.push((format!("byte {i} ^ {mask:#04x}"), m));
        }
    }
    for len in 0..message.len() {
        out.push((format!("truncated to {len}"), message[..len].to_vec()));
    }
    let mut extended = message.to_vec();
    extended.push(0);
    out.push(("extended by one byte".into(), extended));
    out
}

/// A failed handshake refuses every later call with `InvalidState`, even with the genuine message.
fn assert_dead(h: &mut Handshake, genuine: &[u8], what: &str) {
    assert!(h.is_failed(), "{what}: not marked failed");
    assert!(!h.is_finished(), "{what}: finished after failure");
    assert!(
        matches!(h.write_message(), Err(Error::InvalidState(_))),
        "{what}: write after failure"
    );
    assert!(
        matches!(h.read_message(genuine), Err(Error::InvalidState(_))),
        "{what}: read after failure"
    );
}

#[test]
fn tampered_message_1_is_caught_by_the_responder_or_by_the_initiator_at_message_2() {
    for suite in SUITES {
        let fx = Fixture::new(suite);
        let [m1, ..] = fx.transcript();
        assert_eq!(m1.len(), DH_LEN, "message 1 is exactly the ephemeral key");
        for (what, bad) in mutations(&m1) {
            let mut i = fx.initiator();
            let mut r = fx.responder();
            assert_eq!(i.write_message().unwrap(), m1);
            match r.read_message(&bad) {
                Err(e) => {
                    // Only the length is checkable in message 1: it is unencrypted and unauthenticated.
                    assert_ne!(
                        bad.len(),
                        DH_LEN,
                        "{suite:?} {what}: refused a 32-byte key: {e:?}"
                    );
                    assert!(matches!(e, Error::Decode(_)), "{suite:?} {what}: {e:?}");
                    assert_dead(&mut r, &m1, &what);
                }
                Ok(()) => {
                    // A flipped ephemeral key is just another key to the responder. The transcripts now
                    // differ, so the initiator cannot open message 2.
                    assert_eq!(
                        bad.len(),
                        DH_LEN,
                        "{suite:?} {what}: accepted a wrong length"
                    );
                    let m2 = r.write_message().unwrap();
                    let err = i.read_message(&m2).unwrap_err();
                    assert_eq!(err, Error::DecryptFailed, "{suite:?} {what}");
                    assert_dead(&mut i, &m2, &what);
                }
            }
        }
    }
}

#[test]
fn tampered_message_2_fails_at_the_initiator() {
    for suite in SUITES {
        let fx = Fixture::new(suite);
        let [m1, m2, _] = fx.transcript();
        let min_len = DH_LEN + (DH_LEN + TAG_LEN) + TAG_LEN;
        for (what, bad) in mutations(&m2) {
            let mut i = fx.initiator();
            let mut r = fx.responder();
            assert_eq!(i.write_message().unwrap(), m1);
            r.read_message(&m1).unwrap();
            assert_eq!(r.write_message().unwrap(), m2);
            let err = i.read_message(&bad).unwrap_err();
            if bad.len() < min_len {
                assert!(matches!(err, Error::Decode(_)), "{suite:?} {what}: {err:?}");
            } else {
                assert_eq!(err, Error::DecryptFailed, "{suite:?} {what}");
            }
            assert!(i.peer().is_none(), "{suite:?} {what}: peer set on failure");
            assert_dead(&mut i, &m2, &what);
        }
    }
}

#[test]
fn tampered_message_3_fails_at_the_responder() {
    for suite in SUITES {
        let fx = Fixture::new(suite);
        let [m1, _, m3] = fx.transcript();
        let min_len = (DH_LEN + TAG_LEN) + TAG_LEN;
        for (what, bad) in mutations(&m3) {
            let mut i = fx.initiator();
            let mut r = fx.responder();
            i.write_message().unwrap();
            r.read_message(&m1).unwrap();
            i.read_message(&r.write_message().unwrap()).unwrap();
            assert_eq!(i.write_message().unwrap(), m3);
            let err = r.read_message(&bad).unwrap_err();
            if bad.len() < min_len {
                assert!(matches!(err, Error::Decode(_)), "{suite:?} {what}: {err:?}");
            } else {
                assert_eq!(err, Error::DecryptFailed, "{suite:?} {what}");
            }
            assert!(r.peer().is_none(), "{suite:?} {what}: peer set on failure");
            assert_dead(&mut r, &m3, &what);
            assert!(matches!(r.finish(), Err(Error::InvalidState(_))));
        }
    }
}

#[test]
fn oversized_messages_are_refused_before_any_crypto() {
    let fx = Fixture::new(CipherSuite::ChaChaPoly);
    let [m1, m2, m3] = fx.transcript();
    let huge = vec![0u8; MAX_HANDSHAKE_MESSAGE_LEN + 1];
    let expected = Error::MessageTooLarge {
        len: MAX_HANDSHAKE_MESSAGE_LEN + 1,
        max: MAX_HANDSHAKE_MESSAGE_LEN,
    };

    let mut r = fx.responder();
    assert_eq!(r.read_message(&huge).unwrap_err(), expected);
    assert_dead(&mut r, &m1, "oversized m1");

    let mut i = fx.initiator();
    let mut r = fx.responder();
    i.write_message().unwrap();
    assert_eq!(i.read_message(&huge).unwrap_err(), expected);
    assert_dead(&mut i, &m2, "oversized m2");

    r.read_message(&m1).unwrap();
    r.write_message().unwrap();
    assert_eq!(r.read_message(&huge).unwrap_err(), expected);
    assert_dead(&mut r, &m3, "oversized m3");
}

#[test]
fn messages_out_of_turn_are_invalid_state_and_do_not_break_the_handshake() {
    let fx = Fixture::new(CipherSuite::ChaChaPoly);
    let [m1, m2, m3] = fx.transcript();
    let mut i = fx.initiator();
    let mut r = fx.responder();
    // Initiator must write first; responder must read first.
    assert!(matches!(i.read_message(&m2), Err(Error::InvalidState(_))));
    assert!(matches!(r.write_message(), Err(Error::InvalidState(_))));
    // Out-of-turn calls are refused without failing the handshake: the caller misused the API, no attacker
    // bytes were processed.
    assert!(!i.is_failed() && !r.is_failed());
    assert!(matches!(
        Handshake::initiator(fx.initiator.clone()).unwrap().finish(),
        Err(Error::InvalidState(_))
    ));
    assert_eq!(i.write_message().unwrap(), m1);
    assert!(matches!(i.write_message(), Err(Error::InvalidState(_))));
    r.read_message(&m1).unwrap();
    assert!(matches!(r.read_message(&m1), Err(Error::InvalidState(_))));
    assert_eq!(r.write_message().unwrap(), m2);
    i.read_message(&m2).unwrap();
    assert_eq!(i.write_message().unwrap(), m3);
    r.read_message(&m3).unwrap();
    // Both finished: nothing more to read or write.
    assert!(matches!(i.write_message(), Err(Error::InvalidState(_))));
    assert!(matches!(r.read_message(&m3), Err(Error::InvalidState(_))));
    let (a, b) = (i.finish().unwrap(), r.finish().unwrap());
    assert_eq!(a.handshake_hash(), b.handshake_hash());
}

#[test]
fn a_message_from_another_session_is_refused() {
    // Same parties, different ephemerals: message 2 of one session must not complete another.
    let fx = Fixture::new(CipherSuite::ChaChaPoly);
    let [m1, ..] = fx.transcript();
    let mut other = Handshake::responder(fx.responder.clone()).unwrap();
    other.read_message(&m1).unwrap();
    let foreign_m2 = other.write_message().unwrap(); // random ephemeral

    let mut i = fx.initiator();
    i.write_message().unwrap();
    let mut r = fx.responder();
    r.read_message(&m1).unwrap();
    let genuine_m2 = r.write_message().unwrap();
    assert_ne!(foreign_m2, genuine_m2);
    // Both answer the same m1, so the initiator accepts either (Noise XX binds m2 to m1, not to one responder
    // object); from then on it is bound to the session it accepted, and the other one refuses its m3.
    i.read_message(&foreign_m2).unwrap();
    let m3 = i.write_message().unwrap();
    assert_eq!(r.read_message(&m3).unwrap_err(), Error::DecryptFailed);
    assert_dead(&mut r, &m3, "m3 of another session");
    other.read_message(&m3).unwrap();
    assert_eq!(
        i.finish().unwrap().handshake_hash(),
        other.finish().unwrap().handshake_hash()
    );
}
