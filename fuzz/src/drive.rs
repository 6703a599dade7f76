//! The handshake state machine driven by fuzz input, for either role (targets `handshake_initiator` and
//! `handshake_responder`).
//!
//! Input: `vector: u8 ‖ flags: u8 ‖ op*`, where `flags` bit 0 trusts any identity (otherwise only the vector's
//! peer) and bit 1 uses a random ephemeral key (otherwise the vector's, so the vector's messages are valid
//! input); each `op` is a `u8`: 0 and 1 read the next chunk as the peer's message, 2 writes our next
//! message, 3 finishes the handshake if it is finished and then treats every further chunk as a transport
//! frame from the peer.
//!
//! Checks (PROTOCOL.md §5.2): out-of-turn calls fail with `InvalidState` and change nothing; any other failure
//! is final (`is_failed`, then `InvalidState` forever); a finished handshake has a proven peer that the trust
//! policy accepts; with the vector's ephemeral key, reading the vector's messages reproduces the vector's
//! replies, hash and peer; `finish` succeeds exactly when finished.

use crate::fixtures::handshake_vector;
use crate::{assert_untouched_or_wiped, Cursor, CANARY};
use latchkey_core::channel::{Handshake, Role, TrustAnyIdentity, TrustPolicy, FRAME_OVERHEAD};
use latchkey_core::Error;
use std::sync::Arc;

pub fn handshake(role: Role, data: &[u8]) {
    let mut input = Cursor::new(data);
    let vector = handshake_vector(input.u8());
    let flags = input.u8();
    let trust_any = flags & 1 != 0;
    let trust: Arc<dyn TrustPolicy> = if trust_any {
        Arc::new(TrustAnyIdentity)
    } else {
        vector.trust_peer(role)
    };
    let fixed = flags & 2 == 0;
    let mut hs: Handshake = vector.handshake(role, trust, fixed);
    // Which of the vector's messages we have seen or sent, in order: while this matches the vector exactly,
    // our output must be the vector's too.
    let mut transcript: Vec<Vec<u8>> = Vec::new();
    let mut on_vector_path = fixed;

    while !input.is_empty() {
        let op = input.u8() % 4;
        match op {
            0 | 1 => {
                let message = input.chunk();
                let was_failed = hs.is_failed();
                let out_of_turn = hs.is_my_turn() || hs.is_finished();
                let step_before = (hs.is_my_turn(), hs.is_finished(), hs.handshake_hash());
                let result = hs.read_message(message);
                if was_failed || out_of_turn {
                    assert!(
                        matches!(result, Err(Error::InvalidState(_))),
                        "out-of-turn read: {result:?}"
                    );
                    assert_eq!(
                        hs.is_failed(),
                        was_failed,
                        "an out-of-turn call changed state"
                    );
                    assert_eq!(
                        step_before,
                        (hs.is_my_turn(), hs.is_finished(), hs.handshake_hash())
                    );
                    continue;
                }
                transcript.push(message.to_vec());
                match result {
                    Ok(()) => check_peer(&hs, role, trust_any, vector),
                    Err(e) => {
                        assert!(hs.is_failed(), "error {e:?} did not fail the handshake");
                        on_vector_path = false;
                    }
                }
            }
            2 => {
                let was_failed = hs.is_failed();
                let out_of_turn = !hs.is_my_turn();
                let result = hs.write_message();
                if was_failed || out_of_turn {
                    assert!(
                        matches!(result, Err(Error::InvalidState(_))),
                        "out-of-turn write: {result:?}"
                    );
                    assert_eq!(
                        hs.is_failed(),
                        was_failed,
                        "an out-of-turn call changed state"
                    );
                    continue;
                }
                match result {
                    Ok(message) => {
                        assert!(message.len() <= latchkey_core::channel::MAX_HANDSHAKE_MESSAGE_LEN);
                        transcript.push(message);
                        if on_vector_path {
                            let n = transcript.len();
                            if vector.messages[..n] == transcript[..] {
                                // Still the vector's exchange: fine.
                            } else {
                                // Our own message may differ only if a peer message differed before it.
                                let ours_differ = transcript
                                    .iter()
                                    .zip(&vector.messages)
                                    .position(|(a, b)| a != b)
                                    .expect("differs somewhere");
                                assert_ne!(
                                    ours_differ,
                                    n - 1,
                                    "with the vector's keys and messages we wrote something else"
                                );
                                on_vector_path = false;
                            }
                        }
                    }
                    Err(e) => {
                        assert!(
                            hs.is_failed(),
                            "write error {e:?} did not fail the handshake"
                        );
                        on_vector_path = false;
                    }
                }
            }
            _ => {
                if !hs.is_finished() {
                    continue;
                }
                let vector_exchange = on_vector_path && transcript == vector.messages;
                let hash = hs.handshake_hash();
                let mut channel = hs.finish().expect("a finished handshake finishes");
                assert_eq!(channel.handshake_hash(), &hash);
                if vector_exchange {
                    assert_eq!(channel.handshake_hash(), &vector.handshake_hash);
                    assert_eq!(channel.peer_identifier(), vector.peer(role).identifier);
                }
                while !input.is_empty() {
                    let frame = input.chunk();
                    let mut out = vec![CANARY; frame.len()];
                    match channel.decrypt(frame, &mut out) {
                        Ok(n) => {
                            if vector_exchange {
                                let from_peer = role == Role::Responder;
                                assert!(
                                    vector
                                        .transport
                                        .iter()
                                        .any(|f| f.from_initiator == from_peer
                                            && f.frame == frame
                                            && f.plaintext == out[..n]),
                                    "a frame the peer never sent decrypted"
                                );
                            }
                        }
                        Err(_) => {
                            let body = frame.len().saturating_sub(FRAME_OVERHEAD);
                            assert_untouched_or_wiped(&out[..body], "decrypt");
                            assert!(
                                out[body..].iter().all(|&b| b == CANARY),
                                "wrote past the body"
                            );
                        }
                    }
                }
                return;
            }
        }
    }
    // Whatever state we stopped in, finish() agrees with is_finished().
    let finished = hs.is_finished();
    assert_eq!(hs.finish().is_ok(), finished);
}

fn check_peer(
    hs: &Handshake,
    role: Role,
    trust_any: bool,
    vector: &crate::fixtures::HandshakeVector,
) {
    // The initiator learns its peer at message 2, the responder at message 3 (when it is finished).
    let proven = match role {
        Role::Initiator => hs.is_my_turn() || hs.is_finished(),
        Role::Responder => hs.is_finished(),
    };
    if proven {
        let peer = hs.peer().expect("a proven peer");
        if !trust_any {
            assert_eq!(
                peer.identifier,
                vector.peer(role).identifier,
                "untrusted peer accepted"
            );
        }
        assert_eq!(peer.identifier, peer.history.identifier());
    }
}
