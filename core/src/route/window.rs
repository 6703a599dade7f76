//! Delivery bookkeeping inside a channel: a sender window of unacknowledged messages, a receiver window
//! that puts messages back in order, drops duplicates and gives credit, and the round-trip estimator that
//! sets the retransmission timer. Retransmissions are new Noise frames (new nonces) carrying the same
//! sequence number, so the core's replay window and this layer's de-duplication never conflict.

use super::Instant;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::time::Duration;

/// A message sent and not yet acknowledged.
#[derive(Debug)]
struct Outgoing<T> {
    body: T,
    first_sent: Instant,
    last_sent: Instant,
    /// The receiver said it holds this message (selective acknowledgement): no more retransmissions, but
    /// not yet delivered, so it is confirmed only by the cumulative acknowledgement.
    received: bool,
    /// Sent more than once: its acknowledgement gives no round-trip sample (Karn's rule).
    retransmitted: bool,
    /// Orders transmissions (the caller's clock has millisecond steps): the number of this message's
    /// latest transmission.
    tx: u64,
}

/// A message not held by the receiver while one sent this many sequence numbers later, and transmitted
/// after it, is held counts as lost and is retransmitted at once (as QUIC's packet threshold, RFC 9002).
pub const LOSS_THRESHOLD: u64 = 3;

/// What an acknowledgement did to the [`SendWindow`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Acked {
    /// Sequence numbers now confirmed delivered, in order.
    pub delivered: Vec<u64>,
    /// A round-trip sample: the selectively acknowledged message was sent once, and this is the first
    /// acknowledgement of it.
    pub sample: Option<Duration>,
    /// Messages now deemed lost ([`LOSS_THRESHOLD`]) and marked sent again at `now`: the caller
    /// retransmits them at once.
    pub lost: Vec<u64>,
    /// The acknowledgement newly confirms a message sent only once (held or delivered): unambiguous
    /// evidence that the current timeout lets acknowledgements through, so a retransmission backoff ends.
    /// An acknowledgement of a retransmitted message does not end it (Karn's rule: the backed-off timeout
    /// stays until an unambiguous acknowledgement).
    pub progress: bool,
}

/// Messages in flight, by sequence number; bounded by `capacity`. `T` is what the sender keeps of each
/// message for its retransmissions (the routed session keeps the plaintext message itself, moved in, and
/// seals it afresh for each transmission).
#[derive(Debug)]
pub struct SendWindow<T = Vec<u8>> {
    next_seq: u64,
    entries: BTreeMap<u64, Outgoing<T>>,
    capacity: usize,
    /// Transmissions so far (see `Outgoing::tx`).
    transmissions: u64,
}

impl<T> SendWindow<T> {
    pub fn new(capacity: usize) -> Self {
        SendWindow {
            next_seq: 0,
            entries: BTreeMap::new(),
            capacity: capacity.max(1),
            transmissions: 0,
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

    /// The sequence number of the next new message.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Messages are in flight and the receiver holds every one of them: no retransmission timer runs, only
    /// its cumulative acknowledgement (sent when its destination takes them) can confirm them.
    pub fn only_awaiting_cumulative(&self) -> bool {
        !self.entries.is_empty() && self.entries.values().all(|o| o.received)
    }

    /// Records a new message; returns its sequence number.
    pub fn push(&mut self, body: T, now: Instant) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.transmissions += 1;
        let tx = self.transmissions;
        self.entries.insert(
            seq,
            Outgoing {
                body,
                first_sent: now,
                last_sent: now,
                received: false,
                retransmitted: false,
                tx,
            },
        );
        seq
    }

    /// The message `seq`, while it is in flight.
    pub fn body(&self, seq: u64) -> Option<&T> {
        self.entries.get(&seq).map(|o| &o.body)
    }

    /// The receiver has delivered every message below `cumulative`, and holds `selective` (buffered, not
    /// yet delivered), at `now`. Only delivery confirms a message, so a selectively acknowledged one is
    /// just no longer retransmitted. Round-trip samples come only from the first selective acknowledgement
    /// of a message sent once: the receiver sends it as the message arrives, while a cumulative one waits
    /// for the receiving application and would measure its pace, not the path's.
    pub fn ack(&mut self, cumulative: u64, selective: Option<u64>, now: Instant) -> Acked {
        let mut acked = Acked::default();
        if let Some(o) = selective.and_then(|seq| self.entries.get_mut(&seq)) {
            if !o.received && !o.retransmitted {
                acked.sample = Some(now.saturating_duration_since(o.first_sent));
            }
            acked.progress |= !o.received && !o.retransmitted;
            o.received = true;
        }
        let rest = self.entries.split_off(&cumulative);
        for (seq, o) in core::mem::replace(&mut self.entries, rest) {
            acked.progress |= !o.received && !o.retransmitted;
            acked.delivered.push(seq);
        }
        // Loss detection from the selective acknowledgement: earlier messages transmitted before it and
        // still not held are lost (each is found again only by a message transmitted after its
        // retransmission, so one acknowledgement cannot make it go out twice).
        let held = selective.and_then(|s| self.entries.get(&s).map(|o| (s, o.tx)));
        if let Some((s, s_tx)) = held {
            let below = s.saturating_sub(LOSS_THRESHOLD - 1);
            for (seq, o) in self.entries.range_mut(..below) {
                if !o.received && o.tx < s_tx {
                    self.transmissions += 1;
                    o.tx = self.transmissions;
                    o.last_sent = now;
                    o.retransmitted = true;
                    acked.lost.push(*seq);
                }
            }
        }
        acked
    }

    /// Sequence numbers whose last transmission is at least `rto` old; marks them sent now.
    pub fn due(&mut self, now: Instant, rto: Duration) -> Vec<u64> {
        let mut due = Vec::new();
        for (seq, o) in self.entries.iter_mut() {
            if !o.received && o.last_sent + rto <= now {
                o.last_sent = now;
                o.retransmitted = true;
                self.transmissions += 1;
                o.tx = self.transmissions;
                due.push(*seq);
            }
        }
        due
    }

    /// When the next retransmission falls due, if any message still needs one.
    pub fn next_due(&self, rto: Duration) -> Option<Instant> {
        self.entries
            .values()
            .filter(|o| !o.received)
            .map(|o| o.last_sent + rto)
            .min()
    }

    /// When the oldest unacknowledged message passes `deadline`, if any is in flight.
    pub fn deadline(&self, deadline: Duration) -> Option<Instant> {
        self.entries
            .values()
            .next()
            .map(|o| o.first_sent + deadline)
    }

    /// True when the oldest unacknowledged message has waited `deadline` or longer.
    pub fn expired(&self, now: Instant, deadline: Duration) -> bool {
        self.deadline(deadline).is_some_and(|d| d <= now)
    }

    /// Removes everything, returning the sequence numbers (to report failure).
    pub fn drain(&mut self) -> Vec<u64> {
        core::mem::take(&mut self.entries).into_keys().collect()
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
pub struct ReceiveWindow<T> {
    next: u64,
    buffered: BTreeMap<u64, T>,
    capacity: u64,
}

impl<T> ReceiveWindow<T> {
    pub fn new(capacity: usize) -> Self {
        ReceiveWindow {
            next: 0,
            buffered: BTreeMap::new(),
            capacity: capacity.max(1) as u64,
        }
    }

    /// Whether `seq` would be taken ([`Accepted::New`]), without taking it.
    pub fn check(&self, seq: u64) -> Accepted {
        if seq < self.next || self.buffered.contains_key(&seq) {
            Accepted::Duplicate
        } else if seq - self.next >= self.capacity {
            Accepted::OutOfWindow
        } else {
            Accepted::New
        }
    }

    pub fn accept(&mut self, seq: u64, body: T) -> Accepted {
        let verdict = self.check(seq);
        if verdict == Accepted::New {
            self.buffered.insert(seq, body);
        }
        verdict
    }

    /// Whether the next message in order has arrived.
    pub fn is_ready(&self) -> bool {
        self.buffered.contains_key(&self.next)
    }

    /// Takes the next message in order, if it has arrived, and counts it delivered.
    pub fn pop_ready(&mut self) -> Option<T> {
        let body = self.buffered.remove(&self.next)?;
        self.next += 1;
        Some(body)
    }

    /// Puts back the message [`ReceiveWindow::pop_ready`] just returned: it was not delivered after all.
    pub fn unpop(&mut self, body: T) {
        self.next -= 1;
        self.buffered.insert(self.next, body);
    }

    /// Every sequence number below this has been delivered.
    pub fn next_expected(&self) -> u64 {
        self.next
    }

    /// The credit to advertise: messages numbered below this are taken. It moves only as messages are
    /// delivered (not as they arrive), so what the receiver holds stays within `capacity`, and it never
    /// decreases.
    pub fn limit(&self) -> u64 {
        self.next.saturating_add(self.capacity)
    }

    /// Messages waiting (arrived early, or not yet taken by their destination).
    pub fn buffered(&self) -> usize {
        self.buffered.len()
    }
}

/// Clock granularity in the RTO formula (RFC 6298's G): the caller's clock counts milliseconds.
const GRANULARITY: Duration = Duration::from_millis(1);

/// Round-trip estimation and the retransmission timeout, as RFC 6298: SRTT and RTTVAR from samples
/// (taken only from messages sent once, Karn's rule), RTO = SRTT + max(G, 4·RTTVAR) clamped to
/// `[min, max]`, doubled on every timeout that retransmits (up to `max`) until a new sample arrives.
#[derive(Clone, Debug)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    /// The RTO before backoff.
    base: Duration,
    backoff: u32,
    min: Duration,
    max: Duration,
}

impl RttEstimator {
    /// Before any sample the RTO is `initial` (clamped to `[min, max]`).
    pub fn new(initial: Duration, min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            base: initial.clamp(min, max),
            backoff: 0,
            min,
            max,
        }
    }

    /// Takes one round-trip sample; ends any backoff.
    pub fn sample(&mut self, rtt: Duration) {
        let (srtt, rttvar) = match self.srtt {
            None => (rtt, rtt / 2),
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                ((srtt * 7 + rtt) / 8, (self.rttvar * 3 + diff) / 4)
            }
        };
        self.srtt = Some(srtt);
        self.rttvar = rttvar;
        self.base = (srtt + GRANULARITY.max(rttvar * 4)).clamp(self.min, self.max);
        self.backoff = 0;
    }

    /// An acknowledgement of something new arrived: the backoff ends (as QUIC resets its PTO count), the
    /// round-trip estimate stays.
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    /// A retransmission timer expired: the next one waits twice as long (up to the maximum).
    pub fn back_off(&mut self) {
        if self.rto() < self.max {
            self.backoff += 1;
        }
    }

    /// The current retransmission timeout, backoff included.
    pub fn rto(&self) -> Duration {
        let factor = 1u32 << self.backoff.min(16);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The smoothed round-trip time, once a sample was taken.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn receiver_reorders_and_deduplicates() {
        let mut r = ReceiveWindow::new(8);
        assert_eq!(r.accept(1, b"b".to_vec()), Accepted::New);
        assert!(!r.is_ready());
        assert_eq!(r.accept(0, b"a".to_vec()), Accepted::New);
        assert_eq!(r.accept(1, b"b".to_vec()), Accepted::Duplicate);
        let a = r.pop_ready().unwrap();
        r.unpop(a);
        let mut got = vec![];
        while let Some(m) = r.pop_ready() {
            got.push(m);
        }
        assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(r.accept(0, b"a".to_vec()), Accepted::Duplicate);
        assert_eq!(r.limit(), 10);
        assert_eq!(r.accept(10, vec![]), Accepted::OutOfWindow);
        assert_eq!(r.accept(9, vec![]), Accepted::New);
    }

    #[test]
    fn sender_acks_retransmits_and_expires() {
        let t0 = Instant::from_millis(1000);
        let ms = Duration::from_millis;
        let mut s = SendWindow::new(3);
        for i in 0..3 {
            s.push(vec![i], t0);
        }
        assert!(!s.has_room());
        // 0 is delivered; 2 is only held by the receiver: confirmed later, never retransmitted.
        let acked = s.ack(1, Some(2), t0 + ms(7));
        assert_eq!(acked.delivered, vec![0]);
        assert_eq!(acked.sample, Some(ms(7)));
        assert_eq!(s.len(), 2);
        assert!(s.due(t0, ms(100)).is_empty());
        assert_eq!(s.next_due(ms(100)), Some(t0 + ms(100)));
        let later = t0 + ms(150);
        assert_eq!(s.due(later, ms(100)), vec![1]);
        assert_eq!(s.next_due(ms(100)), Some(later + ms(100)));
        assert!(!s.expired(later, Duration::from_secs(1)));
        assert!(s.expired(t0 + Duration::from_secs(2), Duration::from_secs(1)));
        // 1 was retransmitted: its acknowledgement is no sample (Karn's rule); nor is a repeated one.
        assert_eq!(s.ack(1, Some(1), later).sample, None);
        assert_eq!(s.ack(1, Some(2), later).sample, None);
        assert!(s.only_awaiting_cumulative());
        assert_eq!(s.drain(), vec![1, 2]);
        s.push(vec![3], t0);
        assert_eq!(s.next_seq(), 4);
        assert_eq!(s.ack(4, None, t0).delivered, vec![3]);
    }

    #[test]
    fn a_gap_below_a_later_selective_ack_is_retransmitted_once() {
        let t0 = Instant::from_millis(0);
        let ms = Duration::from_millis;
        let mut s = SendWindow::new(8);
        for i in 0..6 {
            s.push(vec![i], t0);
        }
        // 0 lost; 1 and 2 held: not yet 3 later.
        assert!(s.ack(0, Some(1), t0 + ms(5)).lost.is_empty());
        assert!(s.ack(0, Some(2), t0 + ms(5)).lost.is_empty());
        let acked = s.ack(0, Some(3), t0 + ms(6));
        assert_eq!(acked.lost, vec![0]);
        // 4 was sent before 0's retransmission: it does not make 0 go out again; nor does a repeat.
        assert!(s.ack(0, Some(4), t0 + ms(7)).lost.is_empty());
        assert!(s.ack(0, Some(3), t0 + ms(7)).lost.is_empty());
        // A message sent after the retransmission and held, while 0 still is not: lost again.
        s.push(vec![6], t0 + ms(8));
        s.push(vec![7], t0 + ms(8));
        // (5 is not 3 below 6; 7 went out before 0's new retransmission.)
        assert_eq!(s.ack(0, Some(6), t0 + ms(9)).lost, vec![0]);
        assert!(s.ack(0, Some(7), t0 + ms(9)).lost.is_empty());
        // Each retransmission is due only a timeout after it went out (5: its first transmission).
        assert_eq!(s.due(t0 + ms(50), ms(50)), vec![5]);
        assert_eq!(s.next_due(ms(50)), Some(t0 + ms(59)));
        assert_eq!(s.due(t0 + ms(59), ms(50)), vec![0]);
    }

    #[test]
    fn rto_follows_samples_clamps_and_backs_off() {
        let ms = Duration::from_millis;
        let mut r = RttEstimator::new(ms(200), ms(50), ms(5000));
        assert_eq!(r.rto(), ms(200));
        r.sample(ms(300));
        // SRTT 300, RTTVAR 150: 300 + 600.
        assert_eq!(r.rto(), ms(900));
        r.back_off();
        assert_eq!(r.rto(), ms(1800));
        for _ in 0..10 {
            r.back_off();
        }
        assert_eq!(r.rto(), ms(5000));
        r.reset_backoff();
        assert_eq!(r.rto(), ms(900));
        let mut fast = RttEstimator::new(ms(200), ms(50), ms(5000));
        for _ in 0..20 {
            fast.sample(ms(5));
        }
        assert_eq!(fast.rto(), ms(50), "clamped to the minimum");
        assert_eq!(fast.srtt(), Some(ms(5)));
    }
}
