//! Transport frames as docs/PROTOCOL.md defines them: explicit nonces, a replay window of `REPLAY_WINDOW`
//! nonces, rekey every `REKEY_INTERVAL` nonces with the previous epoch still readable, `MAX_EPOCH_SKIP`, and
//! typed errors for every refusal. A refused frame never changes the receiver's state.

mod common;

use common::*;
use latchkey_core::channel::{
    CipherSuite, SecureChannel, FRAME_HEADER_LEN, FRAME_OVERHEAD, MAX_EPOCH_SKIP,
    MAX_PLAINTEXT_LEN, REKEY_INTERVAL, REPLAY_WINDOW,
};
use latchkey_core::Error;

const SUITES: [CipherSuite; 2] = [CipherSuite::ChaChaPoly, CipherSuite::AesGcm];

fn channels(suite: CipherSuite) -> (SecureChannel, SecureChannel) {
    let alice = Party::new();
    let bob = Party::new();
    handshake(
        suite_config(alice.config_any(), suite),
        suite_config(bob.config_any(), suite),
    )
    .unwrap()
}

fn nonce_of(frame: &[u8]) -> u64 {
    u64::from_be_bytes(frame[..FRAME_HEADER_LEN].try_into().unwrap())
}

fn message(n: u64) -> Vec<u8> {
    format!("message {n}").into_bytes()
}

/// A frame with the given nonce and a body that cannot authenticate.
fn forged(nonce: u64, body_len: usize) -> Vec<u8> {
    let mut frame = nonce.to_be_bytes().to_vec();
    frame.resize(FRAME_OVERHEAD + body_len, 0xa5);
    frame
}

#[test]
fn frames_carry_their_nonce_and_round_trip_both_ways() {
    for suite in SUITES {
        let (mut a, mut b) = channels(suite);
        for n in 0..5u64 {
            let frame = a.encrypt_to_vec(&message(n)).unwrap();
            assert_eq!(frame.len(), message(n).len() + FRAME_OVERHEAD);
            assert_eq!(nonce_of(&frame), n);
            assert_eq!(b.decrypt_to_vec(&frame).unwrap(), message(n));
            let empty = b.encrypt_to_vec(&[]).unwrap();
            assert_eq!(empty.len(), FRAME_OVERHEAD);
            assert_eq!(a.decrypt_to_vec(&empty).unwrap(), b"");
        }
        assert_eq!(b.decryptor().highest_nonce(), Some(4));
        assert_eq!(a.encryptor().next_nonce(), 5);
    }
}

#[test]
fn duplicated_and_replayed_frames_are_refused_after_the_first() {
    for suite in SUITES {
        let (mut a, mut b) = channels(suite);
        let first = a.encrypt_to_vec(b"pay 10").unwrap();
        let second = a.encrypt_to_vec(b"pay 20").unwrap();
        assert_eq!(b.decrypt_to_vec(&first).unwrap(), b"pay 10");
        assert_eq!(b.decrypt_to_vec(&first).unwrap_err(), Error::Replay);
        assert_eq!(b.decrypt_to_vec(&second).unwrap(), b"pay 20");
        assert_eq!(b.decrypt_to_vec(&second).unwrap_err(), Error::Replay);
        assert_eq!(b.decrypt_to_vec(&first).unwrap_err(), Error::Replay);
        // A replay with a damaged body is still a replay: the window is checked before the AEAD.
        let mut damaged = first.clone();
        damaged[FRAME_HEADER_LEN] ^= 1;
        assert_eq!(b.decrypt_to_vec(&damaged).unwrap_err(), Error::Replay);
    }
}

#[test]
fn frames_reordered_inside_the_window_are_accepted_once_each() {
    for suite in SUITES {
        let (mut a, mut b) = channels(suite);
        let count = 300u64;
        let frames: Vec<_> = (0..count)
            .map(|n| a.encrypt_to_vec(&message(n)).unwrap())
            .collect();
        // A fixed permutation: multiply by a unit modulo 300.
        let order: Vec<u64> = (0..count).map(|k| (k * 7 + 13) % count).collect();
        for &n in &order {
            assert_eq!(b.decrypt_to_vec(&frames[n as usize]).unwrap(), message(n));
        }
        for &n in &order {
            assert_eq!(
                b.decrypt_to_vec(&frames[n as usize]).unwrap_err(),
                Error::Replay
            );
        }
        // Backwards delivery is the deepest in-window reordering.
        let (mut a, mut b) = channels(suite);
        let frames: Vec<_> = (0..REPLAY_WINDOW)
            .map(|n| a.encrypt_to_vec(&message(n)).unwrap())
            .collect();
        for (n, frame) in frames.iter().enumerate().rev() {
            assert_eq!(b.decrypt_to_vec(frame).unwrap(), message(n as u64));
        }
    }
}

#[test]
fn frames_older_than_the_window_are_stale() {
    for suite in SUITES {
        let (mut a, mut b) = channels(suite);
        let frames: Vec<_> = (0..=REPLAY_WINDOW + 1)
            .map(|n| a.encrypt_to_vec(&message(n)).unwrap())
            .collect();
        let top = REPLAY_WINDOW + 1;
        b.decrypt_to_vec(&frames[top as usize]).unwrap();
        // Accepted: nonces top - REPLAY_WINDOW + 1 ..= top. Stale: anything older.
        assert_eq!(
            b.decrypt_to_vec(&frames[0]).unwrap_err(),
            Error::StaleMessage
        );
        assert_eq!(
            b.decrypt_to_vec(&frames[1]).unwrap_err(),
            Error::StaleMessage
        );
        assert_eq!(b.decrypt_to_vec(&frames[2]).unwrap(), message(2));
        assert_eq!(
            b.decrypt_to_vec(&frames[top as usize - 1]).unwrap(),
            message(top - 1)
        );
        assert_eq!(b.decryptor().highest_nonce(), Some(top));
    }
}

#[test]
fn a_damaged_frame_is_refused_and_leaves_the_channel_usable() {
    for suite in SUITES {
        let (mut a, mut b) = channels(suite);
        let frame = a.encrypt_to_vec(b"intact").unwrap();
        for i in 0..frame.len() {
            for mask in [0x01u8, 0x80] {
                let mut bad = frame.clone();
                bad[i] ^= mask;
                let err = b.decrypt_to_vec(&bad).unwrap_err();
                // A changed nonce may land beyond the epochs the receiver is willing to derive.
                let expected = if nonce_of(&bad) / REKEY_INTERVAL > MAX_EPOCH_SKIP {
                    Error::TooFarAhead
                } else {
                    Error::DecryptFailed
                };
                assert_eq!(err, expected, "byte {i} ^ {mask:#x}");
            }
        }
        for len in 0..frame.len() {
            assert_eq!(
                b.decrypt_to_vec(&frame[..len]).unwrap_err(),
                Error::DecryptFailed,
                "truncated to {len}"
            );
        }
        let mut extended = frame.clone();
        extended.push(0);
        assert_eq!(
            b.decrypt_to_vec(&extended).unwrap_err(),
            Error::DecryptFailed
        );
        assert_eq!(b.decryptor().highest_nonce(), None, "nothing was accepted");
        assert_eq!(b.decrypt_to_vec(&frame).unwrap(), b"intact");
        let next = a.encrypt_to_vec(b"still working").unwrap();
        assert_eq!(b.decrypt_to_vec(&next).unwrap(), b"still working");
    }
}

#[test]
fn forged_frames_move_neither_the_window_nor_the_key_epoch() {
    for suite in SUITES {
        let (mut a, mut b) = channels(suite);
        let genuine: Vec<_> = (0..3)
            .map(|n| a.encrypt_to_vec(&message(n)).unwrap())
            .collect();
        // Same epoch, far ahead in the window; next epoch; the furthest epoch still derived.
        for nonce in [5_000, REKEY_INTERVAL, MAX_EPOCH_SKIP * REKEY_INTERVAL + 17] {
            assert_eq!(
                b.decrypt_to_vec(&forged(nonce, 10)).unwrap_err(),
                Error::DecryptFailed,
                "nonce {nonce}"
            );
        }
        assert_eq!(b.decryptor().highest_nonce(), None);
        // Had the forgeries moved the window or the epoch, nonce 0 would now be stale.
        for (n, frame) in genuine.iter().enumerate() {
            assert_eq!(b.decrypt_to_vec(frame).unwrap(), message(n as u64));
        }
    }
}

#[test]
fn frames_beyond_max_epoch_skip_are_too_far_ahead() {
    for suite in SUITES {
        let (mut a, mut b) = channels(suite);
        let first_refused = (MAX_EPOCH_SKIP + 1) * REKEY_INTERVAL;
        assert_eq!(
            b.decrypt_to_vec(&forged(first_refused, 0)).unwrap_err(),
            Error::TooFarAhead
        );
        assert_eq!(
            b.decrypt_to_vec(&forged(u64::MAX - 1, 0)).unwrap_err(),
            Error::TooFarAhead
        );
        // u64::MAX is Noise's reserved rekey nonce and never a valid frame.
        assert_eq!(
            b.decrypt_to_vec(&forged(u64::MAX, 0)).unwrap_err(),
            Error::DecryptFailed
        );
        let frame = a.encrypt_to_vec(b"fine").unwrap();
        assert_eq!(b.decrypt_to_vec(&frame).unwrap(), b"fine");
    }
}

#[test]
fn frames_reordered_across_a_rekey_boundary_are_accepted() {
    for suite in SUITES {
        let (mut a, mut b) = channels(suite);
        let mut buf = vec![0u8; 64];
        // Run the sender up to just before the boundary without keeping frames we do not need.
        let mut frames = std::collections::BTreeMap::new();
        let keep = |n: u64| n < 2 || n.abs_diff(REKEY_INTERVAL) <= 3 || n >= 2 * REKEY_INTERVAL - 2;
        for n in 0..2 * REKEY_INTERVAL + 3 {
            let len = a.encrypt(&n.to_be_bytes(), &mut buf).unwrap();
            if keep(n) {
                frames.insert(n, buf[..len].to_vec());
            }
        }
        let open = |b: &mut SecureChannel, n: u64| b.decrypt_to_vec(&frames[&n]);
        assert_eq!(open(&mut b, 0).unwrap(), 0u64.to_be_bytes());
        // The first frame of epoch 1 arrives before the last ones of epoch 0.
        let e1 = REKEY_INTERVAL;
        assert_eq!(open(&mut b, e1 + 1).unwrap(), (e1 + 1).to_be_bytes());
        assert_eq!(open(&mut b, e1 - 1).unwrap(), (e1 - 1).to_be_bytes());
        assert_eq!(open(&mut b, e1).unwrap(), e1.to_be_bytes());
        assert_eq!(open(&mut b, e1 - 2).unwrap(), (e1 - 2).to_be_bytes());
        assert_eq!(open(&mut b, e1 - 1).unwrap_err(), Error::Replay);
        assert_eq!(open(&mut b, e1 + 1).unwrap_err(), Error::Replay);
        // Epoch 0's frames far below the window are stale, whatever their key.
        assert_eq!(open(&mut b, 1).unwrap_err(), Error::StaleMessage);
        // Jump two epochs at once: the receiver derives epoch 2 and keeps epoch 1 as the previous key.
        let e2 = 2 * REKEY_INTERVAL;
        assert_eq!(open(&mut b, e2 + 2).unwrap(), (e2 + 2).to_be_bytes());
        assert_eq!(open(&mut b, e2 - 1).unwrap(), (e2 - 1).to_be_bytes());
        assert_eq!(open(&mut b, e2).unwrap(), e2.to_be_bytes());
        assert_eq!(open(&mut b, e1 + 2).unwrap_err(), Error::StaleMessage);
        assert_eq!(b.decryptor().highest_nonce(), Some(e2 + 2));
    }
}

#[test]
fn a_receiver_that_skips_epochs_derives_the_same_keys() {
    // Only the nonce tells the receiver which epoch a frame is in: a receiver that saw nothing of epochs 0..3
    // must still open the first frame of epoch 3 and then later ones in order.
    let (mut a, mut b) = channels(CipherSuite::ChaChaPoly);
    let mut buf = vec![0u8; 64];
    for _ in 0..3 * REKEY_INTERVAL {
        a.encrypt(b"x", &mut buf).unwrap();
    }
    for n in 0..3 {
        let frame = a.encrypt_to_vec(&message(n)).unwrap();
        assert_eq!(nonce_of(&frame), 3 * REKEY_INTERVAL + n);
        assert_eq!(b.decrypt_to_vec(&frame).unwrap(), message(n));
    }
}

#[test]
fn buffer_too_small_reports_the_size_needed_and_changes_nothing() {
    for suite in SUITES {
        let (mut a, mut b) = channels(suite);
        let plaintext = b"twelve bytes";
        let mut small = vec![0u8; plaintext.len() + FRAME_OVERHEAD - 1];
        assert_eq!(
            a.encrypt(plaintext, &mut small).unwrap_err(),
            Error::BufferTooSmall {
                needed: plaintext.len() + FRAME_OVERHEAD
            }
        );
        let mut tiny = [0u8; FRAME_OVERHEAD - 1];
        assert_eq!(
            a.encrypt_in_place(&mut tiny).unwrap_err(),
            Error::BufferTooSmall {
                needed: FRAME_OVERHEAD
            }
        );
        assert_eq!(a.encryptor().next_nonce(), 0, "no nonce used by a refusal");

        let frame = a.encrypt_to_vec(plaintext).unwrap();
        assert_eq!(nonce_of(&frame), 0);
        let mut out = vec![0u8; plaintext.len() - 1];
        assert_eq!(
            b.decrypt(&frame, &mut out).unwrap_err(),
            Error::BufferTooSmall {
                needed: plaintext.len()
            }
        );
        let mut out = vec![0u8; plaintext.len() + 5];
        let n = b.decrypt(&frame, &mut out).unwrap();
        assert_eq!(&out[..n], plaintext);
    }
}

#[test]
fn decrypt_into_a_buffer_wipes_it_on_failure() {
    let (mut a, mut b) = channels(CipherSuite::ChaChaPoly);
    let mut frame = a.encrypt_to_vec(b"secret-ish").unwrap();
    *frame.last_mut().unwrap() ^= 1;
    let mut out = vec![0x77u8; 32];
    assert_eq!(
        b.decrypt(&frame, &mut out).unwrap_err(),
        Error::DecryptFailed
    );
    assert!(
        out[..10].iter().all(|&x| x == 0),
        "partial plaintext left behind"
    );
}

#[test]
fn in_place_encryption_and_decryption_use_the_callers_buffer() {
    for suite in SUITES {
        let (mut a, mut b) = channels(suite);
        let plaintext = b"in place";
        let mut frame = vec![0u8; FRAME_OVERHEAD + plaintext.len()];
        frame[FRAME_HEADER_LEN..FRAME_HEADER_LEN + plaintext.len()].copy_from_slice(plaintext);
        a.encrypt_in_place(&mut frame).unwrap();
        assert_ne!(
            &frame[FRAME_HEADER_LEN..FRAME_HEADER_LEN + plaintext.len()],
            plaintext
        );
        let opened = b.decrypt_in_place(&mut frame).unwrap();
        assert_eq!(opened, plaintext);
    }
}

#[test]
fn the_plaintext_limit_is_max_plaintext_len() {
    for suite in SUITES {
        let (mut a, mut b) = channels(suite);
        let big = vec![0x42u8; MAX_PLAINTEXT_LEN];
        let frame = a.encrypt_to_vec(&big).unwrap();
        assert_eq!(frame.len(), MAX_PLAINTEXT_LEN + FRAME_OVERHEAD);
        assert_eq!(
            frame.len() - FRAME_HEADER_LEN,
            65535,
            "a Noise message at most"
        );
        assert_eq!(b.decrypt_to_vec(&frame).unwrap(), big);

        let too_big = vec![0u8; MAX_PLAINTEXT_LEN + 1];
        let expected = Error::MessageTooLarge {
            len: MAX_PLAINTEXT_LEN + 1,
            max: MAX_PLAINTEXT_LEN,
        };
        assert_eq!(a.encrypt_to_vec(&too_big).unwrap_err(), expected);
        assert_eq!(a.encryptor().next_nonce(), 1);
        assert_eq!(
            b.decrypt_to_vec(&forged(1, MAX_PLAINTEXT_LEN + 1))
                .unwrap_err(),
            expected
        );
    }
}

#[test]
fn frames_from_another_channel_or_the_other_direction_are_refused() {
    for suite in SUITES {
        let (mut a, mut b) = channels(suite);
        let (mut c, _d) = channels(suite);
        let foreign = c.encrypt_to_vec(b"elsewhere").unwrap();
        assert_eq!(
            b.decrypt_to_vec(&foreign).unwrap_err(),
            Error::DecryptFailed
        );
        // Reflection: a's own frame sent back to a.
        let own = a.encrypt_to_vec(b"to b").unwrap();
        assert_eq!(a.decrypt_to_vec(&own).unwrap_err(), Error::DecryptFailed);
        assert_eq!(b.decrypt_to_vec(&own).unwrap(), b"to b");
    }
}

#[test]
fn split_halves_work_independently_across_threads() {
    let (a, b) = channels(CipherSuite::AesGcm);
    let (mut a_enc, mut a_dec, _) = a.split();
    let (mut b_enc, mut b_dec, peer) = b.split();
    assert!(!peer.history.changes().is_empty());
    let sender = std::thread::spawn(move || {
        (0..100u64)
            .map(|n| a_enc.encrypt_to_vec(&message(n)).unwrap())
            .collect::<Vec<_>>()
    });
    let replies = std::thread::spawn(move || {
        (0..100u64)
            .map(|n| b_enc.encrypt_to_vec(&message(n + 1000)).unwrap())
            .collect::<Vec<_>>()
    });
    for (n, frame) in sender.join().unwrap().iter().enumerate() {
        assert_eq!(b_dec.decrypt_to_vec(frame).unwrap(), message(n as u64));
    }
    for (n, frame) in replies.join().unwrap().iter().enumerate() {
        assert_eq!(
            a_dec.decrypt_to_vec(frame).unwrap(),
            message(n as u64 + 1000)
        );
    }
}
