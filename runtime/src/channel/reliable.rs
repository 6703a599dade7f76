//! Delivery bookkeeping inside a secure channel, without I/O: a sender window of unacknowledged messages
//! and a receiver window that puts messages back in order and drops duplicates. Retransmissions are new
//! Noise frames (new nonces) carrying the same sequence number, so the core's replay window and this layer's
//! de-duplication never conflict.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A message sent and not yet acknowledged.
#[derive(Debug)]
pub struct Outgoing<N> {
    pub body: Vec<u8>,
    pub first_sent: Instant,
    pub last_sent: Instant,
    pub notify: Option<N>,
    /// The receiver said it holds this message (selective acknowledgement): no more retransmissions, but
    /// not yet delivered, so its notifier waits for the cumulative acknowledgement.
    pub received: bool,
}

/// Messages in flight, by sequence number; bounded by `capacity`.
#[derive(Debug)]
pub struct SendWindow<N> {
    next_seq: u64,
    entries: BTreeMap<u64, Outgoing<N>>,
    capacity: usize,
}

impl<N> SendWindow<N> {
    pub fn new(capacity: usize) -> Self {
        SendWindow {
            next_seq: 0,
            entries: BTreeMap::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn has_room(&self) -> bool {
        self.entries.len() < self.capacity
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Records a new message; returns its sequence number.
    pub fn push(&mut self, body: Vec<u8>, notify: Option<N>, now: Instant) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.insert(
            seq,
            Outgoing {
                body,
                first_sent: now,
                last_sent: now,
                notify,
                received: false,
            },
        );
        seq
    }

    pub fn get(&self, seq: u64) -> Option<&Outgoing<N>> {
        self.entries.get(&seq)
    }

    /// The receiver has delivered every message below `cumulative`, and holds `selective` (buffered, not
    /// yet delivered). Returns the notifiers of the delivered entries: only delivery confirms a message,
    /// so a selectively acknowledged one is just no longer retransmitted.
    pub fn ack(&mut self, cumulative: u64, selective: Option<u64>) -> Vec<Option<N>> {
        let rest = self.entries.split_off(&cumulative);
        let done: Vec<Option<N>> = std::mem::replace(&mut self.entries, rest)
            .into_values()
            .map(|o| o.notify)
            .collect();
        if let Some(o) = selective.and_then(|seq| self.entries.get_mut(&seq)) {
            o.received = true;
        }
        done
    }

    /// Sequence numbers whose last transmission is older than `rto`; marks them sent now.
    pub fn due(&mut self, now: Instant, rto: Duration) -> Vec<u64> {
        let mut due = Vec::new();
        for (seq, o) in self.entries.iter_mut() {
            if !o.received && now.duration_since(o.last_sent) >= rto {
                o.last_sent = now;
                due.push(*seq);
            }
        }
        due
    }

    /// True when the oldest unacknowledged message has waited longer than `deadline`.
    pub fn expired(&self, now: Instant, deadline: Duration) -> bool {
        self.entries
            .values()
            .next()
            .is_some_and(|o| now.duration_since(o.first_sent) >= deadline)
    }

    /// Removes everything, returning the notifiers (to report failure).
    pub fn drain(&mut self) -> Vec<Option<N>> {
        std::mem::take(&mut self.entries)
            .into_values()
            .map(|o| o.notify)
            .collect()
    }
}

/// What the receiver did with an incoming message.
#[derive(Debug, PartialEq, Eq)]
pub enum Accepted {
    /// New: buffered for in-order delivery.
    New,
    /// Already delivered or buffered: dropped.
    Duplicate,
    /// Too far ahead of what has been delivered: dropped (the sender will retransmit).
    OutOfWindow,
}

/// Reorders incoming messages and hands them out exactly once, in sequence order.
#[derive(Debug)]
pub struct ReceiveWindow {
    next: u64,
    buffered: BTreeMap<u64, Vec<u8>>,
    capacity: u64,
}

impl ReceiveWindow {
    pub fn new(capacity: usize) -> Self {
        ReceiveWindow {
            next: 0,
            buffered: BTreeMap::new(),
            capacity: capacity.max(1) as u64,
        }
    }

    pub fn accept(&mut self, seq: u64, body: Vec<u8>) -> Accepted {
        if seq < self.next || self.buffered.contains_key(&seq) {
            return Accepted::Duplicate;
        }
        if seq - self.next >= self.capacity {
            return Accepted::OutOfWindow;
        }
        self.buffered.insert(seq, body);
        Accepted::New
    }

    /// The next message in order, if it has arrived (left in place until [`ReceiveWindow::advance`]).
    pub fn ready(&self) -> Option<&[u8]> {
        self.buffered.get(&self.next).map(Vec::as_slice)
    }

    /// Marks the message returned by `ready` as delivered.
    pub fn advance(&mut self) {
        self.buffered.remove(&self.next);
        self.next += 1;
    }

    /// Every sequence number below this has been delivered.
    pub fn next_expected(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_reorders_and_deduplicates() {
        let mut r = ReceiveWindow::new(8);
        assert_eq!(r.accept(1, b"b".to_vec()), Accepted::New);
        assert!(r.ready().is_none());
        assert_eq!(r.accept(0, b"a".to_vec()), Accepted::New);
        assert_eq!(r.accept(1, b"b".to_vec()), Accepted::Duplicate);
        let mut got = vec![];
        while let Some(m) = r.ready() {
            got.push(m.to_vec());
            r.advance();
        }
        assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(r.accept(0, b"a".to_vec()), Accepted::Duplicate);
        assert_eq!(r.accept(10, vec![]), Accepted::OutOfWindow);
    }

    #[test]
    fn sender_acks_retransmits_and_expires() {
        let t0 = Instant::now();
        let mut s: SendWindow<u32> = SendWindow::new(3);
        for i in 0..3 {
            s.push(vec![i], Some(i as u32), t0);
        }
        assert!(!s.has_room());
        // 0 is delivered; 2 is only held by the receiver: confirmed later, never retransmitted.
        assert_eq!(s.ack(1, Some(2)), vec![Some(0)]);
        assert_eq!(s.len(), 2);
        assert!(s.due(t0, Duration::from_millis(100)).is_empty());
        let later = t0 + Duration::from_millis(150);
        assert_eq!(s.due(later, Duration::from_millis(100)), vec![1]);
        assert!(!s.expired(later, Duration::from_secs(1)));
        assert!(s.expired(t0 + Duration::from_secs(2), Duration::from_secs(1)));
        assert_eq!(s.drain(), vec![Some(1), Some(2)]);
        s.push(vec![3], Some(3), t0);
        assert_eq!(s.ack(4, None), vec![Some(3)]);
    }
}
