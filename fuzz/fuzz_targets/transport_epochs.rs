//! Key epochs, the replay window and explicit nonces (PROTOCOL.md §6.1–6.3) against a model of the spec:
//! `snow` (an independent Noise implementation) is the peer, because only it can seal a frame at any nonce
//! and REKEY at will; our initiator (the vector's identity) receives.
//! Input: `vector: u8 ‖ op*`; op (`u8`): 0 snow seals at nonce `snow_epoch · 2^16 + u16`, 1 snow seals at an
//! arbitrary `u64` nonce under its current key (authentic only if that nonce is in its epoch), 2 snow REKEYs
//! (at most 40 times), 3 redeliver an earlier frame (`index: u8`), 4 an earlier frame with one byte changed
//! (`index: u8 ‖ position: u16 ‖ xor: u8`). Plaintexts are `u8` bytes long.
//!
//! Checks: every result is exactly what the model derived from §6 predicts (`Ok` with the sent plaintext,
//! `Replay`, `StaleMessage`, `TooFarAhead` or `DecryptFailed`), including that no refused frame changes
//! state.
#![no_main]

use latchkey_core::channel::{
    Role, TrustAnyIdentity, MAX_EPOCH_SKIP, REKEY_INTERVAL, REPLAY_WINDOW,
};
use latchkey_core::Error;
use latchkey_fuzz::fixtures::{handshake_vector, snow_peer};
use latchkey_fuzz::Cursor;
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use std::sync::Arc;

#[derive(Default)]
struct Model {
    top: Option<u64>,
    accepted: HashSet<u64>,
    epoch: u64,
}

impl Model {
    /// The result §6 gives a frame with nonce `n` sealed under the key of epoch `key_epoch`.
    fn expect(&self, n: u64, key_epoch: u64) -> Result<(), Error> {
        if n == u64::MAX {
            return Err(Error::DecryptFailed);
        }
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
        if e > self.epoch + MAX_EPOCH_SKIP {
            return Err(Error::TooFarAhead);
        }
        if e != key_epoch {
            return Err(Error::DecryptFailed);
        }
        Ok(())
    }

    fn accept(&mut self, n: u64) {
        self.accepted.insert(n);
        self.top = Some(self.top.map_or(n, |t| t.max(n)));
        self.epoch = self.epoch.max(n / REKEY_INTERVAL);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let vector = handshake_vector(input.u8());
    let responder = &vector.responder;
    let mut ours = vector.handshake(Role::Initiator, Arc::new(TrustAnyIdentity), true);
    let mut snow = snow_peer(
        vector.suite,
        false,
        &responder.static_secret,
        &responder.ephemeral_secret,
    );
    let mut buf = vec![0u8; 65535];
    let m1 = ours.write_message().expect("m1");
    snow.read_message(&m1, &mut buf).expect("snow m1");
    let n = snow
        .write_message(&responder.payload(), &mut buf)
        .expect("snow m2");
    ours.read_message(&buf[..n]).expect("m2");
    let m3 = ours.write_message().expect("m3");
    snow.read_message(&m3, &mut buf).expect("snow m3");
    let mut channel = ours.finish().expect("channel");
    let mut snow = snow
        .into_stateless_transport_mode()
        .expect("snow transport");

    let mut model = Model::default();
    let mut snow_epoch = 0u64;
    // (frame, nonce, key epoch, plaintext)
    let mut frames: Vec<(Vec<u8>, u64, u64, Vec<u8>)> = Vec::new();
    while !input.is_empty() {
        let (frame, nonce, key_epoch, plaintext, tampered) = match input.u8() % 5 {
            op @ (0 | 1) => {
                let nonce = if op == 0 {
                    (snow_epoch << 16) | u64::from(input.u16())
                } else {
                    input.u64()
                };
                let plaintext = vec![0x5a; input.u8() as usize];
                let mut frame = nonce.to_be_bytes().to_vec();
                let Ok(n) = snow.write_message(nonce, &plaintext, &mut buf) else {
                    continue; // snow refuses nonce 2^64 - 1 itself
                };
                frame.extend_from_slice(&buf[..n]);
                frames.push((frame.clone(), nonce, snow_epoch, plaintext.clone()));
                (frame, nonce, snow_epoch, plaintext, false)
            }
            2 => {
                if snow_epoch < 40 {
                    snow.rekey_outgoing();
                    snow_epoch += 1;
                }
                continue;
            }
            op => {
                if frames.is_empty() {
                    continue;
                }
                let (mut frame, nonce, key_epoch, plaintext) =
                    frames[input.u8() as usize % frames.len()].clone();
                let mut tampered = false;
                if op == 4 {
                    let pos = input.u16() as usize % frame.len();
                    let xor = input.u8();
                    frame[pos] ^= xor;
                    tampered = xor != 0;
                }
                (frame, nonce, key_epoch, plaintext, tampered)
            }
        };
        let result = channel.decrypt_to_vec(&frame);
        if tampered {
            assert!(result.is_err(), "a tampered frame decrypted");
            continue;
        }
        let expected = model.expect(nonce, key_epoch);
        match (&expected, &result) {
            (Ok(()), Ok(p)) => {
                assert_eq!(p, &plaintext);
                model.accept(nonce);
            }
            (Err(e), Err(got)) => assert_eq!(e, got, "nonce {nonce:#x}, key epoch {key_epoch}"),
            _ => panic!(
                "nonce {nonce:#x} (key epoch {key_epoch}, receiver epoch {}): expected {expected:?}, got {result:?}",
                model.epoch
            ),
        }
        assert_eq!(channel.decryptor().highest_nonce(), model.top);
    }
});
