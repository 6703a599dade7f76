//! The delivery bookkeeping of a routed channel (`latchkey_core::route::{SendWindow, ReceiveWindow}`, which
//! `ChannelSession` and so the runtime use), driven by the sequence numbers of DATA and ACK frames
//! (docs/RUNTIME.md "Frames"). Input: op*; op (`u8`): 0 the receiver accepts `seq: u64`, 1 it accepts
//! `next + u8`, 2 it delivers what is ready (putting the last one back if `u8` is odd, as a blocked
//! destination does), 3 the sender pushes, 4 the sender takes an ACK (`cumulative: u64`, `selective: u64`,
//! `u64::MAX` = none), 5 an ACK near its window (`u8`, `u8`), 6 retransmissions and expiry at `+u16` ms,
//! 7 the sender drains.
//!
//! Checks against a model: the receiver hands out each sequence number once, in order, with its body,
//! including after a message is put back; `check` agrees with `accept`; the sender confirms each message
//! once, only when cumulatively acknowledged, never retransmits a selectively acknowledged one, keeps the
//! bodies of what is in flight, and its timers agree with what `due` and `expired` do.
#![no_main]

use latchkey_core::route::{Accepted, Instant, ReceiveWindow, SendWindow};
use latchkey_fuzz::Cursor;
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const CAPACITY: usize = 16;
const RTO: Duration = Duration::from_millis(200);
const DEADLINE: Duration = Duration::from_secs(20);

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let mut now = Instant::from_millis(1_000);
    let mut receiver: ReceiveWindow<Vec<u8>> = ReceiveWindow::new(CAPACITY);
    let mut next = 0u64;
    let mut buffered: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut sender = SendWindow::new(CAPACITY);
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
                assert_eq!(receiver.check(seq), expected, "check({seq}), next {next}");
                assert_eq!(
                    receiver.accept(seq, body),
                    expected,
                    "accept({seq}), next {next}"
                );
            }
            2 => {
                let put_back = input.u8() & 1 == 1;
                assert_eq!(receiver.is_ready(), buffered.contains_key(&next));
                let mut last = None;
                while let Some(body) = receiver.pop_ready() {
                    let expected = buffered.remove(&next).expect("ready only in order");
                    assert_eq!(body, expected);
                    next += 1;
                    last = Some(body);
                }
                if let (true, Some(body)) = (put_back, last) {
                    next -= 1;
                    buffered.insert(next, body.clone());
                    receiver.unpop(body);
                }
                assert_eq!(receiver.next_expected(), next);
                assert_eq!(receiver.buffered(), buffered.len());
            }
            3 => {
                if sender.has_room() {
                    let seq = sender.push(pushed.to_be_bytes().to_vec(), now);
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
                let done = sender.ack(cumulative, selective, now).delivered;
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
                    assert!(sender.body(s).is_none());
                }
                if let Some(s) = selective.filter(|s| outstanding.contains(s)) {
                    held.insert(s);
                }
            }
            6 => {
                now = now + Duration::from_millis(u64::from(input.u16()));
                let next_due = sender.next_due(RTO);
                let due = sender.due(now, RTO);
                for &seq in &due {
                    assert!(
                        outstanding.contains(&seq) && !held.contains(&seq),
                        "retransmitted {seq}"
                    );
                }
                if next_due.is_some_and(|t| t <= now) {
                    assert!(
                        !due.is_empty(),
                        "a retransmission fell due but none was made"
                    );
                }
                assert_eq!(
                    sender.expired(now, DEADLINE),
                    sender.deadline(DEADLINE).is_some_and(|d| d <= now)
                );
            }
            _ => {
                let drained = sender.drain();
                assert_eq!(drained, outstanding.iter().copied().collect::<Vec<_>>());
                outstanding.clear();
                held.clear();
                assert!(sender.is_empty());
            }
        }
        assert_eq!(sender.len(), outstanding.len());
        for &s in &outstanding {
            assert_eq!(
                sender.body(s).map(Vec::as_slice),
                Some(&s.to_be_bytes()[..]),
                "body of {s} lost"
            );
        }
    }
});
