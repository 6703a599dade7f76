//! Transport decryption (PROTOCOL.md §6) on a channel established with the vector handshake: arbitrary
//! frames, the peer's authentic frames delivered in any order, replayed, truncated, extended or with bits
//! flipped, through all three decrypt APIs.
//! Input: `vector: u8 ‖ receiver: u8 (bit 0: the initiator receives) ‖ op*`; op (`u8`): 0 arbitrary frame
//! (`api: u8 ‖ capacity: u16 ‖ chunk`), 1 peer encrypts a chunk (kept, not delivered), 2 deliver a kept
//! frame (`index: u8 ‖ position: u16 ‖ xor: u8`), 3 peer encrypts `u16 % 2048` empty frames (kept),
//! (at most 3000 in all), 4 deliver a kept frame resized (`index: u8 ‖ chunk`: truncated to or extended by the chunk's length),
//! 5 deliver a kept frame in place (`index: u8`).
//!
//! Checks, against a model written from §6.2–6.3: only frames the peer sent decrypt, each once, to what it
//! sent; an authentic fresh frame inside the window is accepted, a duplicate is `Replay`, one below the window
//! is `StaleMessage`; nothing a forged frame does changes what later frames get; a failed decryption leaves
//! the output untouched or wiped and never writes past the plaintext.
#![no_main]

use latchkey_core::channel::{
    Encryptor, FRAME_OVERHEAD, MAX_PLAINTEXT_LEN, REKEY_INTERVAL, REPLAY_WINDOW,
};
use latchkey_core::Error;
use latchkey_fuzz::fixtures::handshake_vector;
use latchkey_fuzz::{assert_untouched_or_wiped, Cursor, CANARY};
use libfuzzer_sys::fuzz_target;
use std::collections::{HashMap, HashSet};

/// What §6.2–6.3 say the receiver does with an authentic frame of nonce `n`.
#[derive(Default)]
struct Model {
    top: Option<u64>,
    accepted: HashSet<u64>,
    epoch: u64,
}

impl Model {
    fn expect(&self, n: u64) -> Result<(), Error> {
        if let Some(top) = self.top {
            if n <= top {
                if top - n >= REPLAY_WINDOW {
                    return Err(Error::StaleMessage);
                }
                if self.accepted.contains(&n) {
                    return Err(Error::Replay);
                }
            }
        }
        let e = n / REKEY_INTERVAL;
        if e + 1 < self.epoch {
            return Err(Error::StaleMessage);
        }
        if e > self.epoch + 16 {
            return Err(Error::TooFarAhead);
        }
        Ok(())
    }

    fn accept(&mut self, n: u64) {
        self.accepted.insert(n);
        self.top = Some(self.top.map_or(n, |t| t.max(n)));
        self.epoch = self.epoch.max(n / REKEY_INTERVAL);
    }
}

struct Sent {
    frames: Vec<(u64, Vec<u8>, Vec<u8>)>,
    by_frame: HashMap<Vec<u8>, (u64, Vec<u8>)>,
}

impl Sent {
    fn send(&mut self, encryptor: &mut Encryptor, plaintext: &[u8]) {
        let nonce = encryptor.next_nonce();
        let frame = encryptor.encrypt_to_vec(plaintext).expect("encrypt");
        self.by_frame
            .insert(frame.clone(), (nonce, plaintext.to_vec()));
        self.frames.push((nonce, frame, plaintext.to_vec()));
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let vector = handshake_vector(input.u8());
    let (initiator, responder) = vector.established();
    let receiver_is_initiator = input.u8() & 1 != 0;
    let (mut sender, mut receiver) = if receiver_is_initiator {
        (responder, initiator)
    } else {
        (initiator, responder)
    };
    let mut model = Model::default();
    let mut sent = Sent {
        frames: Vec::new(),
        by_frame: HashMap::new(),
    };
    // The vector's own frames are genuine frames of this session (same keys): authentic too.
    for f in vector
        .transport
        .iter()
        .filter(|f| f.from_initiator != receiver_is_initiator)
    {
        sent.by_frame
            .insert(f.frame.clone(), (f.nonce, f.plaintext.clone()));
    }

    // Encryptions are the slow part of an input: bound them (still enough to leave the replay window).
    let mut budget = 3000u32;
    while !input.is_empty() {
        let op = input.u8() % 6;
        let (frame, api, capacity): (Vec<u8>, u8, Option<usize>) = match op {
            0 => {
                let api = input.u8();
                let capacity = input.u16() as usize;
                (input.chunk().to_vec(), api, Some(capacity))
            }
            1 => {
                let p = input.chunk();
                sent.send(sender.encryptor(), &p[..p.len().min(MAX_PLAINTEXT_LEN)]);
                continue;
            }
            3 => {
                let n = u32::from(input.u16() % 2048).min(budget);
                budget -= n;
                for _ in 0..n {
                    sent.send(sender.encryptor(), &[]);
                }
                continue;
            }
            _ => {
                if sent.frames.is_empty() {
                    continue;
                }
                let i = input.u8() as usize % sent.frames.len();
                let mut frame = sent.frames[i].1.clone();
                match op {
                    2 => {
                        let pos = input.u16() as usize % frame.len();
                        frame[pos] ^= input.u8();
                        (frame, 0, None)
                    }
                    4 => {
                        let extra = input.chunk();
                        if extra.len().is_multiple_of(2) {
                            frame.truncate(frame.len().saturating_sub(extra.len() / 2));
                        } else {
                            frame.extend_from_slice(extra);
                        }
                        (frame, 0, None)
                    }
                    _ => (frame, 1, None),
                }
            }
        };
        let authentic = sent.by_frame.get(&frame).cloned();
        let body_len = frame.len().saturating_sub(FRAME_OVERHEAD);
        let result: Result<Vec<u8>, Error> = match api % 3 {
            0 => {
                let cap = capacity.unwrap_or(body_len);
                let mut out = vec![CANARY; cap];
                let r = receiver.decrypt(&frame, &mut out);
                match &r {
                    Ok(n) => assert!(
                        out[*n..].iter().all(|&b| b == CANARY),
                        "wrote past the plaintext"
                    ),
                    Err(_) => {
                        let written = body_len.min(cap);
                        assert_untouched_or_wiped(&out[..written], "decrypt");
                        assert!(
                            out[written..].iter().all(|&b| b == CANARY),
                            "wrote past the body"
                        );
                    }
                }
                if let Err(Error::BufferTooSmall { needed }) = r {
                    assert_eq!(needed, body_len);
                    assert!(cap < body_len);
                    assert!(out.iter().all(|&b| b == CANARY));
                }
                r.map(|n| out[..n].to_vec())
            }
            1 => {
                let mut buf = frame.clone();
                let r = receiver.decrypt_in_place(&mut buf).map(|p| p.to_vec());
                if r.is_err() && frame.len() >= FRAME_OVERHEAD && body_len <= MAX_PLAINTEXT_LEN {
                    let body = &buf[8..8 + body_len];
                    assert!(
                        body == &frame[8..8 + body_len] || body.iter().all(|&b| b == 0),
                        "in-place failure left decrypted bytes"
                    );
                }
                r
            }
            _ => receiver.decrypt_to_vec(&frame),
        };
        match (&authentic, &result) {
            (None, Ok(_)) => panic!("a frame the peer never sent decrypted"),
            (None, Err(_)) => {}
            (Some((nonce, plaintext)), r) => {
                if matches!(r, Err(Error::BufferTooSmall { .. })) {
                    continue;
                }
                let expected = model.expect(*nonce);
                match (expected, r) {
                    (Ok(()), Ok(p)) => {
                        assert_eq!(p, plaintext, "wrong plaintext");
                        model.accept(*nonce);
                    }
                    (Err(e), Err(got)) => assert_eq!(&e, got, "nonce {nonce}"),
                    (e, got) => panic!("nonce {nonce}: expected {e:?}, got {got:?}"),
                }
            }
        }
        assert_eq!(receiver.decryptor().highest_nonce(), model.top);
    }
});
