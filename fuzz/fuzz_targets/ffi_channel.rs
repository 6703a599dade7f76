//! The C ABI's channel decryption, `latchkey_channel_decrypt`, on channels established through the C API
//! with the vector handshake: arbitrary frames, the peer's frames delivered in any order, replayed or
//! tampered, every output capacity, and NULL arguments.
//! Input: `vector: u8 ‖ receiver: u8 ‖ op*`; op (`u8`): 0 arbitrary frame (`capacity: u16 ‖ chunk`),
//! 1 the peer encrypts a chunk (kept), 2 deliver a kept frame (`index: u8 ‖ capacity: u16`, 0xFFFF: exact),
//! 3 deliver it with a byte changed (`index: u8 ‖ position: u16 ‖ xor: u8`), 4 NULL arguments
//! (`which: u8 ‖ length: u16`), 5 the peer encrypts `u16 % 2048` empty frames (kept; at most 3000 in all).
//!
//! Checks: no panic at the boundary; buffer rules (a too-small buffer costs nothing: the frame still
//! decrypts afterwards); only the peer's frames decrypt, each once (`LATCHKEY_ERR_REPLAY` after), to what
//! it encrypted; a frame below the replay window is `LATCHKEY_ERR_STALE_MESSAGE`; NULL is
//! `LATCHKEY_ERR_NULL_ARGUMENT`.
#![no_main]

use latchkey_ffi::*;
use latchkey_fuzz::ffi::{checked, in_ptr, vector_pair, Out};
use latchkey_fuzz::fixtures::handshake_vector;
use latchkey_fuzz::{Cursor, CANARY};
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use std::ffi::c_char;

unsafe fn step(hs: *mut LatchkeyHandshake, input: &[u8]) -> Vec<u8> {
    let mut out = Out::new(LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN);
    let status = checked(
        unsafe {
            latchkey_handshake_step(
                hs,
                in_ptr(input, true),
                input.len(),
                out.ptr(),
                out.cap(),
                out.len_ptr(),
            )
        },
        "step",
    );
    assert_eq!(status, LATCHKEY_OK);
    out.written().to_vec()
}

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let selector = input.u8();
    let vector = handshake_vector(selector);
    let suite = match vector.suite {
        latchkey_core::channel::CipherSuite::ChaChaPoly => LATCHKEY_SUITE_CHACHAPOLY,
        latchkey_core::channel::CipherSuite::AesGcm => LATCHKEY_SUITE_AESGCM,
    };
    let (id_i, id_r) = vector_pair(selector);
    let any = [c"*".as_ptr() as *const c_char];
    let mut handshakes = [std::ptr::null_mut(), std::ptr::null_mut()];
    for (k, (id, role, party)) in [
        (id_i, LATCHKEY_ROLE_INITIATOR, &vector.initiator),
        (id_r, LATCHKEY_ROLE_RESPONDER, &vector.responder),
    ]
    .into_iter()
    .enumerate()
    {
        let status = checked(
            unsafe {
                latchkey_handshake_new(
                    id,
                    role,
                    suite,
                    any.as_ptr(),
                    1,
                    vector.now.0,
                    &mut handshakes[k],
                )
            },
            "handshake_new",
        );
        assert_eq!(status, LATCHKEY_OK);
        let status = checked(
            unsafe {
                latchkey_handshake_set_ephemeral_for_test_vectors(
                    handshakes[k],
                    party.ephemeral_secret.as_ptr(),
                    32,
                )
            },
            "ephemeral",
        );
        assert_eq!(status, LATCHKEY_OK);
    }
    let m1 = unsafe { step(handshakes[0], &[]) };
    let m2 = unsafe { step(handshakes[1], &m1) };
    let m3 = unsafe { step(handshakes[0], &m2) };
    assert!(unsafe { step(handshakes[1], &m3) }.is_empty());
    assert_eq!([m1, m2, m3].as_slice(), vector.messages.as_slice());
    let mut channels = [std::ptr::null_mut(), std::ptr::null_mut()];
    for k in 0..2 {
        let status = checked(
            unsafe { latchkey_handshake_into_channel(handshakes[k], &mut channels[k]) },
            "into_channel",
        );
        assert_eq!(status, LATCHKEY_OK);
    }
    let (sender, receiver) = if input.u8() & 1 != 0 {
        (channels[1], channels[0])
    } else {
        (channels[0], channels[1])
    };

    let mut kept: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut accepted: HashSet<usize> = HashSet::new();
    let encrypt = |plaintext: &[u8], kept: &mut Vec<(Vec<u8>, Vec<u8>)>| {
        let mut out = Out::new(plaintext.len() + LATCHKEY_FRAME_OVERHEAD);
        let status = checked(
            unsafe {
                latchkey_channel_encrypt(
                    sender,
                    in_ptr(plaintext, true),
                    plaintext.len(),
                    out.ptr(),
                    out.cap(),
                    out.len_ptr(),
                )
            },
            "encrypt",
        );
        out.check(status, "encrypt");
        if status == LATCHKEY_OK {
            kept.push((out.written().to_vec(), plaintext.to_vec()));
        } else {
            assert!(
                plaintext.len() > LATCHKEY_MAX_PLAINTEXT_LEN,
                "encrypt failed: {status}"
            );
        }
    };
    // Encryptions are the slow part of an input: bound them (still enough to leave the replay window).
    let mut budget = 3000u32;
    while !input.is_empty() {
        let (frame, index, capacity): (Vec<u8>, Option<usize>, usize) = match input.u8() % 6 {
            0 => {
                let capacity = input.u16() as usize;
                (input.chunk().to_vec(), None, capacity)
            }
            1 => {
                encrypt(input.chunk(), &mut kept);
                continue;
            }
            5 => {
                let n = u32::from(input.u16() % 2048).min(budget);
                budget -= n;
                for _ in 0..n {
                    encrypt(&[], &mut kept);
                }
                continue;
            }
            op @ (2 | 3) => {
                if kept.is_empty() {
                    continue;
                }
                let i = input.u8() as usize % kept.len();
                let mut frame = kept[i].0.clone();
                if op == 2 {
                    let capacity = match input.u16() {
                        0xFFFF => frame.len() - LATCHKEY_FRAME_OVERHEAD,
                        c => c as usize,
                    };
                    (frame, Some(i), capacity)
                } else {
                    let pos = input.u16() as usize % frame.len();
                    frame[pos] ^= input.u8().max(1);
                    let capacity = frame.len();
                    (frame, None, capacity)
                }
            }
            _ => {
                let which = input.u8() % 3;
                let len = input.u16() as usize + 1;
                let mut out = vec![CANARY; len];
                let mut out_len = 0usize;
                let frame = vec![0u8; len];
                let status = checked(
                    unsafe {
                        match which {
                            0 => latchkey_channel_decrypt(
                                receiver,
                                std::ptr::null(),
                                len,
                                out.as_mut_ptr(),
                                len,
                                &mut out_len,
                            ),
                            1 => latchkey_channel_decrypt(
                                receiver,
                                frame.as_ptr(),
                                len,
                                std::ptr::null_mut(),
                                len,
                                &mut out_len,
                            ),
                            _ => latchkey_channel_decrypt(
                                receiver,
                                frame.as_ptr(),
                                len,
                                out.as_mut_ptr(),
                                len,
                                std::ptr::null_mut(),
                            ),
                        }
                    },
                    "decrypt with NULL",
                );
                assert_eq!(status, LATCHKEY_ERR_NULL_ARGUMENT);
                assert!(out.iter().all(|&b| b == CANARY));
                continue;
            }
        };
        let mut out = if capacity == 0 {
            Out::query()
        } else {
            Out::new(capacity)
        };
        let status = checked(
            unsafe {
                latchkey_channel_decrypt(
                    receiver,
                    in_ptr(&frame, true),
                    frame.len(),
                    out.ptr(),
                    out.cap(),
                    out.len_ptr(),
                )
            },
            "decrypt",
        );
        out.check(status, "decrypt");
        let Some(i) = index else {
            if status == LATCHKEY_OK {
                let sent = kept
                    .iter()
                    .position(|(f, _)| f == &frame)
                    .expect("a frame the peer never produced decrypted");
                assert!(accepted.insert(sent), "a frame decrypted twice");
            }
            continue;
        };
        if status == LATCHKEY_ERR_BUFFER_TOO_SMALL {
            assert_eq!(out.len, frame.len() - LATCHKEY_FRAME_OVERHEAD);
            continue;
        }
        let top = accepted.iter().max().copied();
        let expected = if accepted.contains(&i) {
            LATCHKEY_ERR_REPLAY
        } else if top.is_some_and(|t| t >= i && t - i >= 1024) {
            LATCHKEY_ERR_STALE_MESSAGE
        } else {
            LATCHKEY_OK
        };
        assert_eq!(status, expected, "frame {i} (highest accepted {top:?})");
        if status == LATCHKEY_OK {
            assert_eq!(out.written(), &kept[i].1[..]);
            accepted.insert(i);
        }
    }
    unsafe {
        for k in 0..2 {
            latchkey_channel_free(channels[k]);
            latchkey_handshake_free(handshakes[k]);
        }
    }
});
