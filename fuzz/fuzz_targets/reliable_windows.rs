//! The delivery bookkeeping inside a runtime channel (`latchkey_runtime::channel::reliable`), which the
//! sequence numbers of DATA and ACK frames (docs/RUNTIME.md "Frames") drive. Input: op*; op (`u8`): 0 the
//! receiver accepts `seq: u64`, 1 it accepts `next + u8`, 2 it delivers what is ready, 3 the sender pushes,
//! 4 the sender takes an ACK (`cumulative: u64`, `selective: u64`, `u64::MAX` = none), 5 an ACK near its
//! window (`u8`, `u8`), 6 retransmission and expiry at `+u16` ms, 7 the sender drains.
//!
//! Checks against a model: the receiver hands out each sequence number once, in order, with its body;
//! duplicates and messages outside its window are reported as such; the sender confirms each message once,
//! only when cumulatively acknowledged, never retransmits a selectively acknowledged one, and stays bounded.
#![no_main]

use latchkey_fuzz::Cursor;
use latchkey_runtime::channel::reliable::{Accepted, ReceiveWindow, SendWindow};
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const CAPACITY: usize = 16;

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let t0 = Instant::now();
    let mut receiver = ReceiveWindow::new(CAPACITY);
    let mut next = 0u64;
    let mut buffered: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut sender: SendWindow<u64> = SendWindow::new(CAPACITY);
    let mut pushed = 0u64;
    let mut outstanding: BTreeSet<u64> = BTreeSet::new();
    let mut held: BTreeSet<u64> = BTreeSet::new();
    let mut confirmed: BTreeSet<u64> = BTreeSet::new();
    while !input.is_empty() {
        match input.u8() % 8 {
            op @ (0 | 1) => {
                let seq = if op == 0 {
                    input.u64()
                } else {
                    next.saturating_add(u64::from(input.u8()))
                };
                let body = seq.to_be_bytes().to_vec();
                let expected = if seq < next || buffered.contains_key(&seq) {
                    Accepted::Duplicate
                } else if seq - next >= CAPACITY as u64 {
                    Accepted::OutOfWindow
                } else {
                    buffered.insert(seq, body.clone());
                    Accepted::New
                };
                assert_eq!(
                    receiver.accept(seq, body),
                    expected,
                    "seq {seq}, next {next}"
                );
            }
            2 => {
                while let Some(body) = receiver.ready() {
                    let expected = buffered.remove(&next).expect("ready only in order");
                    assert_eq!(body, &expected[..]);
                    receiver.advance();
                    next += 1;
                }
                assert!(!buffered.contains_key(&next));
                assert_eq!(receiver.next_expected(), next);
            }
            3 => {
                if sender.has_room() {
                    let seq = sender.push(vec![], Some(pushed), t0);
                    assert_eq!(seq, pushed);
                    outstanding.insert(seq);
                    pushed += 1;
                }
                assert!(sender.len() <= CAPACITY);
            }
            op @ (4 | 5) => {
                let (cumulative, selective) = if op == 4 {
                    (input.u64(), input.u64())
                } else {
                    let base = outstanding.first().copied().unwrap_or(pushed);
                    (
                        base + u64::from(input.u8() % 4),
                        base + u64::from(input.u8() % 20),
                    )
                };
                let selective = (selective != u64::MAX).then_some(selective);
                let done: Vec<u64> = sender
                    .ack(cumulative, selective)
                    .into_iter()
                    .flatten()
                    .collect();
                let expected: Vec<u64> = outstanding
                    .iter()
                    .copied()
                    .filter(|&s| s < cumulative)
                    .collect();
                assert_eq!(
                    done, expected,
                    "ack({cumulative}, {selective:?}) confirmed the wrong messages"
                );
                for s in done {
                    assert!(confirmed.insert(s), "{s} confirmed twice");
                    outstanding.remove(&s);
                    held.remove(&s);
                }
                if let Some(s) = selective.filter(|s| outstanding.contains(s)) {
                    held.insert(s);
                }
            }
            6 => {
                let now = t0 + Duration::from_millis(u64::from(input.u16()));
                for seq in sender.due(now, Duration::from_millis(200)) {
                    assert!(
                        outstanding.contains(&seq) && !held.contains(&seq),
                        "retransmitted {seq}"
                    );
                }
                let _ = sender.expired(now, Duration::from_secs(20));
            }
            _ => {
                let drained: Vec<u64> = sender.drain().into_iter().flatten().collect();
                assert_eq!(drained, outstanding.iter().copied().collect::<Vec<_>>());
                outstanding.clear();
                held.clear();
                assert!(sender.is_empty());
            }
        }
        assert_eq!(sender.len(), outstanding.len());
    }
});
