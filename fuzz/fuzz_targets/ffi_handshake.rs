//! The C ABI's handshake entry points: `latchkey_handshake_new` (roles, suites and trust lists as C passes
//! them, including garbage), `_set_ephemeral_for_test_vectors`, `_step` with honest, tampered and arbitrary
//! peer messages and every kind of output buffer, `_is_finished`, `_hash`, `_into_channel`, then the
//! channels' `_encrypt`, `_decrypt`, `_peer_identifier` and `_peer_history` between the two sides.
//! Input: `vector: u8 ‖ (role: u8 ‖ suite: u8 ‖ trust: u8 ‖ [trust strings] ‖ flags: u8) × 2 ‖ op*`; see
//! `side()` and the `match` below for the fields (an op's low nibble is the action, bit 4 the side).
//!
//! Checks: no panic at the boundary; the last error; buffer rules; a message that did not fit is kept and
//! handed out by a call with no input (and a call with input meanwhile is refused); a channel exists only
//! after a finished handshake, with the other side's identity as its peer and a peer the trust list
//! accepts; only frames the peer's channel produced decrypt, to what it encrypted.
#![no_main]

use latchkey_ffi::*;
use latchkey_fuzz::ffi::{c_string, checked, identifier_text, in_ptr, vector_pair, Out};
use latchkey_fuzz::fixtures::handshake_vector;
use latchkey_fuzz::Cursor;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::ffi::c_char;

struct Side {
    handshake: *mut LatchkeyHandshake,
    channel: *mut LatchkeyChannel,
    /// Identifiers this side accepts (`None`: any).
    accepts: Option<Vec<String>>,
    /// Length of a produced message still waiting in the handle.
    pending: Option<usize>,
    /// The last message this side produced.
    last_message: Vec<u8>,
    /// Frames this side's channel produced, with their plaintexts.
    frames: HashMap<Vec<u8>, Vec<u8>>,
    last_frame: Vec<u8>,
}

fn side(
    input: &mut Cursor<'_>,
    identity: *const LatchkeyIdentity,
    peer_id: &str,
    party: &latchkey_fuzz::fixtures::Party,
    now: u64,
) -> Side {
    let role = match input.u8() % 3 {
        0 => LATCHKEY_ROLE_INITIATOR,
        1 => LATCHKEY_ROLE_RESPONDER,
        _ => 7,
    };
    let suite = match input.u8() % 3 {
        0 => LATCHKEY_SUITE_CHACHAPOLY,
        1 => LATCHKEY_SUITE_AESGCM,
        _ => 9,
    };
    let mode = input.u8() % 5;
    let strings: Vec<Vec<c_char>> = match mode {
        0 => vec![c_string(peer_id.as_bytes())],
        1 => vec![c_string(b"*")],
        2 => (0..input.u8() % 4)
            .map(|_| c_string(input.chunk()))
            .collect(),
        _ => vec![],
    };
    let pointers: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
    let (list, count) = match mode {
        3 => (std::ptr::null(), 0),
        _ => (pointers.as_ptr(), pointers.len()),
    };
    let accepts = if pointers.len() == 1 && strings[0] == c_string(b"*") {
        None
    } else {
        Some(
            strings
                .iter()
                .map(|s| s[..s.len() - 1].iter().map(|&c| c as u8 as char).collect())
                .collect(),
        )
    };
    let flags = input.u8();
    let now = if flags & 1 != 0 { input.u64() } else { now };
    let mut handshake = std::ptr::dangling_mut::<LatchkeyHandshake>();
    let status = checked(
        unsafe { latchkey_handshake_new(identity, role, suite, list, count, now, &mut handshake) },
        "handshake_new",
    );
    if mode == 3 {
        assert_eq!(
            status, LATCHKEY_ERR_INVALID_ARGUMENT,
            "trust implied by an omitted list"
        );
    }
    if status != LATCHKEY_OK {
        assert!(handshake.is_null(), "a failed handshake_new left a handle");
    } else if flags & 2 == 0 {
        let status = checked(
            unsafe {
                latchkey_handshake_set_ephemeral_for_test_vectors(
                    handshake,
                    party.ephemeral_secret.as_ptr(),
                    32,
                )
            },
            "set_ephemeral",
        );
        assert_eq!(status, LATCHKEY_OK);
    } else if flags & 4 != 0 {
        let secret = input.chunk();
        checked(
            unsafe {
                latchkey_handshake_set_ephemeral_for_test_vectors(
                    handshake,
                    in_ptr(secret, true),
                    secret.len(),
                )
            },
            "set_ephemeral",
        );
    }
    Side {
        handshake,
        channel: std::ptr::null_mut(),
        accepts,
        pending: None,
        last_message: Vec::new(),
        frames: HashMap::new(),
        last_frame: Vec::new(),
    }
}

fn out_for(capacity: u16) -> Out {
    match capacity {
        0 => Out::query(),
        0xFFFF => Out::new(LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN),
        c => Out::new(c as usize),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let selector = input.u8();
    let vector = handshake_vector(selector);
    let now = vector.now.0;
    let (id_i, id_r) = vector_pair(selector);
    let ids = [
        vector.initiator.identifier.to_string(),
        vector.responder.identifier.to_string(),
    ];
    let mut sides = [
        side(&mut input, id_i, &ids[1], &vector.initiator, now),
        side(&mut input, id_r, &ids[0], &vector.responder, now),
    ];

    while !input.is_empty() {
        let op = input.u8();
        let s = (op >> 4) as usize & 1;
        let other = 1 - s;
        match (op & 0x0f) % 10 {
            op @ 0..=3 => {
                let message: Vec<u8> = match op {
                    0 => sides[other].last_message.clone(),
                    1 => input.chunk().to_vec(),
                    2 => {
                        let mut m = sides[other].last_message.clone();
                        if !m.is_empty() {
                            let pos = input.u16() as usize % m.len();
                            m[pos] ^= input.u8().max(1);
                        }
                        m
                    }
                    _ => Vec::new(),
                };
                let mut out = out_for(input.u16());
                let side = &mut sides[s];
                let status = checked(
                    unsafe {
                        latchkey_handshake_step(
                            side.handshake,
                            in_ptr(&message, true),
                            message.len(),
                            out.ptr(),
                            out.cap(),
                            out.len_ptr(),
                        )
                    },
                    "step",
                );
                if side.handshake.is_null() {
                    assert_eq!(status, LATCHKEY_ERR_NULL_ARGUMENT);
                    continue;
                }
                out.check(status, "step");
                if let Some(waiting) = side.pending {
                    if !message.is_empty() {
                        assert_eq!(
                            status, LATCHKEY_ERR_INVALID_STATE,
                            "input while a message waits"
                        );
                        continue;
                    }
                    assert_eq!(out.len, waiting, "the waiting message changed size");
                }
                match status {
                    LATCHKEY_OK => {
                        side.pending = None;
                        if out.len > 0 {
                            side.last_message = out.written().to_vec();
                        }
                    }
                    LATCHKEY_ERR_BUFFER_TOO_SMALL => side.pending = Some(out.len),
                    _ => {}
                }
            }
            4 => {
                let mut finished = false;
                let status = checked(
                    unsafe { latchkey_handshake_is_finished(sides[s].handshake, &mut finished) },
                    "is_finished",
                );
                let mut out = Out::new(input.u8() as usize);
                let hash = checked(
                    unsafe {
                        latchkey_handshake_hash(
                            sides[s].handshake,
                            out.ptr(),
                            out.cap(),
                            out.len_ptr(),
                        )
                    },
                    "hash",
                );
                if sides[s].handshake.is_null() {
                    assert_eq!(
                        (status, hash),
                        (LATCHKEY_ERR_NULL_ARGUMENT, LATCHKEY_ERR_NULL_ARGUMENT)
                    );
                } else {
                    assert_eq!(status, LATCHKEY_OK);
                    out.check(hash, "hash");
                }
            }
            5 => {
                let mut finished = false;
                let known = !sides[s].handshake.is_null()
                    && unsafe { latchkey_handshake_is_finished(sides[s].handshake, &mut finished) }
                        == LATCHKEY_OK;
                let mut channel = std::ptr::dangling_mut::<LatchkeyChannel>();
                let status = checked(
                    unsafe { latchkey_handshake_into_channel(sides[s].handshake, &mut channel) },
                    "into_channel",
                );
                if status != LATCHKEY_OK {
                    assert!(channel.is_null(), "a failed into_channel left a handle");
                    continue;
                }
                assert!(known && finished, "a channel from an unfinished handshake");
                let mut out = Out::new(LATCHKEY_IDENTIFIER_SIZE);
                let st = checked(
                    unsafe {
                        latchkey_channel_peer_identifier(
                            channel,
                            out.ptr().cast(),
                            out.cap(),
                            out.len_ptr(),
                        )
                    },
                    "peer_identifier",
                );
                assert_eq!(st, LATCHKEY_OK);
                let peer = identifier_text(&out);
                assert_eq!(peer, ids[other], "the channel's peer is not the other side");
                if let Some(list) = &sides[s].accepts {
                    assert!(
                        list.contains(&peer),
                        "a peer outside the trust list got a channel"
                    );
                }
                unsafe { latchkey_channel_free(sides[s].channel) };
                sides[s].channel = channel;
            }
            6 => {
                let plaintext = input.chunk().to_vec();
                let mut out = out_for(input.u16());
                let status = checked(
                    unsafe {
                        latchkey_channel_encrypt(
                            sides[s].channel,
                            in_ptr(&plaintext, true),
                            plaintext.len(),
                            out.ptr(),
                            out.cap(),
                            out.len_ptr(),
                        )
                    },
                    "encrypt",
                );
                if sides[s].channel.is_null() {
                    assert_eq!(status, LATCHKEY_ERR_NULL_ARGUMENT);
                    continue;
                }
                out.check(status, "encrypt");
                if status == LATCHKEY_OK {
                    assert_eq!(out.len, plaintext.len() + LATCHKEY_FRAME_OVERHEAD);
                    sides[s].last_frame = out.written().to_vec();
                    sides[s].frames.insert(out.written().to_vec(), plaintext);
                }
            }
            7 => {
                let frame = if input.u8() & 1 == 0 {
                    sides[other].last_frame.clone()
                } else {
                    input.chunk().to_vec()
                };
                let mut out = out_for(input.u16());
                let status = checked(
                    unsafe {
                        latchkey_channel_decrypt(
                            sides[s].channel,
                            in_ptr(&frame, true),
                            frame.len(),
                            out.ptr(),
                            out.cap(),
                            out.len_ptr(),
                        )
                    },
                    "decrypt",
                );
                if sides[s].channel.is_null() {
                    assert_eq!(status, LATCHKEY_ERR_NULL_ARGUMENT);
                    continue;
                }
                out.check(status, "decrypt");
                if status == LATCHKEY_OK {
                    let sent = sides[other]
                        .frames
                        .get(&frame)
                        .expect("a frame the peer never produced decrypted");
                    assert_eq!(out.written(), &sent[..]);
                }
            }
            8 => {
                let mut out = Out::new(input.u16() as usize);
                let status = checked(
                    unsafe {
                        latchkey_channel_peer_history(
                            sides[s].channel,
                            out.ptr(),
                            out.cap(),
                            out.len_ptr(),
                        )
                    },
                    "peer_history",
                );
                if !sides[s].channel.is_null() {
                    out.check(status, "peer_history");
                }
            }
            _ => {
                unsafe { latchkey_handshake_free(sides[s].handshake) };
                sides[s].handshake = std::ptr::null_mut();
                sides[s].pending = None;
            }
        }
    }
    for side in sides {
        unsafe {
            latchkey_handshake_free(side.handshake);
            latchkey_channel_free(side.channel);
        }
    }
});
