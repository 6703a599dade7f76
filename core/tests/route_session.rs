//! The routed channel session (`latchkey_core::route::ChannelSession`) on a simulated network with a virtual
//! clock: scripted loss, duplication, reordering, cut connections and a dead path. Each run checks that
//! every message is delivered exactly once and in order, or that the sender is told it failed, and counts the
//! timer wakeups so a timer storm fails the test. Deterministic: a fixed-seed generator decides every fate.

mod common;

use common::Party;
use latchkey_core::channel::{Handshake, HandshakeConfig};
use latchkey_core::route::{
    Address, Arrival, ChannelSession, Delivery, Event, Instant, Route, RoutedMessage,
    SessionConfig, SessionError, KIND_FRAME,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// One end as its driver sees it.
struct End {
    session: ChannelSession,
    /// Payloads delivered to the application, in order.
    received: Vec<Vec<u8>>,
    delivered: Vec<u64>,
    failed: Vec<u64>,
    closed: Option<SessionError>,
    connected: bool,
    /// `handle_timeout` calls (each one is a wakeup of the driver).
    wakeups: u64,
    /// Deliveries to refuse with `Blocked` before taking them.
    block: usize,
    /// `Rekeyed` events.
    rekeyed: u64,
    /// `Undelivered` events (the far end had no such destination).
    undelivered: Vec<u64>,
    /// A paced reader: its application takes one message every this many ms (`Blocked` in between), and
    /// its driver calls `deliver` again when the reader has room (never on a session timer).
    pace: Option<u64>,
    /// When the paced reader next takes a message.
    next_take: u64,
}

impl End {
    fn new(session: ChannelSession) -> Self {
        End {
            session,
            received: vec![],
            delivered: vec![],
            failed: vec![],
            closed: None,
            connected: false,
            wakeups: 0,
            block: 0,
            rekeyed: 0,
            undelivered: vec![],
            pace: None,
            next_take: 0,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Initiator,
    Responder,
}

/// Fates of packets: a fixed-seed xorshift, so every run is the same.
struct Faults {
    state: u64,
    loss_permille: u64,
    dup_permille: u64,
    latency: u64,
    jitter: u64,
}

impl Faults {
    fn none() -> Self {
        Faults {
            state: 0x9e37_79b9_7f4a_7c15,
            loss_permille: 0,
            dup_permille: 0,
            latency: 5,
            jitter: 0,
        }
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    fn chance(&mut self, permille: u64) -> bool {
        self.next() % 1000 < permille
    }
}

type Tamper = Box<dyn FnMut(Side, &mut RoutedMessage)>;

/// Two nodes: the initiator reaches the responder's node over its connection `conn`; on the responder's
/// node the current connection from the initiator is `r_conn` (a cut replaces it with a new one, as a
/// reconnecting TCP client does). The listener is `api`; responder sessions are `r-dec#k`.
struct Sim {
    now: u64,
    faults: Faults,
    in_flight: BTreeMap<(u64, u64), (Side, RoutedMessage)>,
    counter: u64,
    initiator: End,
    responders: Vec<End>,
    r_conn: String,
    /// Until then every packet is lost (a cut connection); `u64::MAX`: the path is dead for good.
    down_until: u64,
    party_r: Party,
    /// When set, both ends re-handshake (responders made with this identity's handshakes).
    rekey_as: Option<HandshakeConfig>,
    config: SessionConfig,
    tamper: Option<Tamper>,
    /// Messages the initiator's application still has to send, and the responder's echo queue.
    to_send: Vec<Vec<u8>>,
    echo: Vec<Vec<u8>>,
    sent: Vec<Vec<u8>>,
    echoed: Vec<Vec<u8>>,
    packets: u64,
    /// Responders use this configuration instead of `config` (e.g. a smaller window: less credit).
    responder_config: Option<SessionConfig>,
    /// Responders read paced (see `End::pace`), the first message not before `next_take`.
    responder_pace: Option<(u64, u64)>,
    /// Whether the responder's application echoes what it receives.
    echo_back: bool,
    /// Every packet from the responder sent in `[from, until)` is lost (e.g. a window update).
    drop_from_responder: Option<(u64, u64)>,
    /// The most messages the initiator ever had in flight.
    max_in_flight: usize,
}

/// Makes re-handshakes with `config`'s identity.
fn factory(config: HandshakeConfig) -> latchkey_core::route::HandshakeFactory {
    Box::new(move |role| Handshake::new(config.clone(), role))
}

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

impl Sim {
    fn new(config: SessionConfig, faults: Faults) -> Self {
        Self::new_as(config, faults, &Party::new())
    }

    fn new_as(config: SessionConfig, faults: Faults, party_i: &Party) -> Self {
        let party_r = Party::new();
        let handshake = Handshake::initiator(party_i.config_any()).unwrap();
        let session = ChannelSession::initiator(
            config.clone(),
            handshake,
            "i-dec".into(),
            Route::from(["conn", "api"]),
            t(0),
        )
        .unwrap();
        Sim {
            now: 0,
            faults,
            in_flight: BTreeMap::new(),
            counter: 0,
            initiator: End::new(session),
            responders: vec![],
            r_conn: "r-in#0".into(),
            down_until: 0,
            party_r,
            rekey_as: None,
            config,
            tamper: None,
            to_send: vec![],
            echo: vec![],
            sent: vec![],
            echoed: vec![],
            packets: 0,
            responder_config: None,
            responder_pace: None,
            echo_back: true,
            drop_from_responder: None,
            max_in_flight: 0,
        }
    }

    /// Both ends re-handshake: the initiator with `initiator`'s proofs, responders with the responder's.
    fn with_rekey(config: SessionConfig, faults: Faults, initiator: &Party) -> Self {
        let mut sim = Sim::new_as(config, faults, initiator);
        sim.rekey_as = Some(sim.party_r.config_any());
        sim.initiator
            .session
            .set_rehandshake(factory(initiator.config_any()));
        sim
    }

    fn responder(&self) -> &End {
        let live: Vec<_> = self.responders.iter().filter(|r| r.connected).collect();
        assert_eq!(
            live.len(),
            1,
            "exactly one responder completes the handshake"
        );
        live[0]
    }

    fn transmit(&mut self, from: Side, mut m: RoutedMessage) {
        self.packets += 1;
        if let Some(tamper) = &mut self.tamper {
            tamper(from, &mut m);
        }
        if self.now < self.down_until || self.faults.chance(self.faults.loss_permille) {
            return;
        }
        if from == Side::Responder
            && self
                .drop_from_responder
                .is_some_and(|(from, until)| (from..until).contains(&self.now))
        {
            return;
        }
        let copies = if self.faults.chance(self.faults.dup_permille) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = if self.faults.jitter > 0 {
                self.faults.next() % self.faults.jitter
            } else {
                0
            };
            let at = self.now + self.faults.latency + jitter;
            self.counter += 1;
            self.in_flight.insert((at, self.counter), (from, m.clone()));
        }
    }

    /// What arrives on the far node: the sender's first hop is consumed, the receiver's connection is put
    /// in front of the return route.
    fn arrive(&mut self, from: Side, mut m: RoutedMessage) {
        let hop = m.onward.pop_front().expect("a first hop");
        match from {
            Side::Initiator => {
                assert_eq!(hop.as_str(), "conn");
                let conn: Address = self.r_conn.as_str().into();
                m.ret = m.ret.prepend(conn.clone());
                let arrival = Arrival::via(conn);
                let target = m.onward.first().expect("a target").as_str().to_string();
                if target == "api" {
                    let handshake = Handshake::responder(self.party_r.config_any()).unwrap();
                    let me = Address::new(format!("r-dec#{}", self.responders.len())).unwrap();
                    let config = self.responder_config.clone();
                    let config = config.unwrap_or_else(|| self.config.clone());
                    if let Ok(mut s) =
                        ChannelSession::responder(config, handshake, me, &m, arrival, t(self.now))
                    {
                        if let Some(as_who) = &self.rekey_as {
                            s.set_rehandshake(factory(as_who.clone()));
                        }
                        let mut end = End::new(s);
                        if let Some((pace, first)) = self.responder_pace {
                            end.pace = Some(pace);
                            end.next_take = first;
                        }
                        self.responders.push(end);
                    }
                } else if let Some(r) = self
                    .responders
                    .iter_mut()
                    .find(|r| r.session.address().as_str() == target)
                {
                    r.session.handle_input(t(self.now), m, &arrival);
                }
            }
            Side::Responder => {
                // Frames to an old connection are lost with it.
                if hop.as_str() != self.r_conn {
                    return;
                }
                m.ret = m.ret.prepend("conn");
                assert_eq!(m.onward.first().map(Address::as_str), Some("i-dec"));
                self.initiator
                    .session
                    .handle_input(t(self.now), m, &Arrival::via("conn".into()));
            }
        }
    }

    /// Runs every session's outputs until nothing is left to do at this instant.
    fn settle(&mut self) {
        let now = t(self.now);
        // The initiator's application sends while the window has room; the responder's echoes.
        while self.initiator.session.has_room() && !self.to_send.is_empty() {
            let payload = self.to_send.remove(0);
            let m =
                RoutedMessage::new(Route::from(["echo"]), Route::from(["app"]), payload.clone());
            self.initiator.session.send(now, &m).unwrap();
            self.sent.push(payload);
        }
        self.max_in_flight = self.max_in_flight.max(self.initiator.session.in_flight());
        for r in self.responders.iter_mut().filter(|r| r.connected) {
            while r.session.has_room() && !self.echo.is_empty() {
                let payload = self.echo.remove(0);
                let m = RoutedMessage::new(Route::from(["app"]), Route::new(), payload.clone());
                r.session.send(now, &m).unwrap();
                self.echoed.push(payload);
            }
        }
        let mut out = vec![];
        drain(
            &mut self.initiator,
            now,
            Side::Initiator,
            &mut out,
            &mut vec![],
        );
        let mut echo = vec![];
        for r in &mut self.responders {
            drain(r, now, Side::Responder, &mut out, &mut echo);
        }
        if self.echo_back {
            self.echo.extend(echo);
        }
        for (side, m) in out {
            self.transmit(side, m);
        }
    }

    fn next_time(&self) -> Option<u64> {
        let timers = std::iter::once(&self.initiator)
            .chain(&self.responders)
            .filter_map(|e| e.session.poll_timeout())
            .map(|i| i.as_millis());
        let packets = self.in_flight.keys().next().map(|k| k.0);
        // A paced reader's driver offers the held messages again when the reader has room.
        let readers = std::iter::once(&self.initiator)
            .chain(&self.responders)
            .filter(|e| e.pace.is_some() && e.session.pending_delivery())
            .map(|e| e.next_take.max(self.now));
        timers.chain(packets).chain(readers).min()
    }

    /// Runs until `until` (virtual ms) or until nothing is left to happen.
    fn run(&mut self, until: u64) {
        loop {
            self.settle();
            let Some(next) = self.next_time() else { return };
            if next > until {
                self.now = until;
                return;
            }
            assert!(
                next >= self.now,
                "a timer in the past: {next} < {}",
                self.now
            );
            self.now = next;
            while let Some(entry) = self.in_flight.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let (from, m) = entry.remove();
                self.arrive(from, m);
            }
            let now = t(self.now);
            for e in std::iter::once(&mut self.initiator).chain(&mut self.responders) {
                if e.session.poll_timeout().is_some_and(|at| at <= now) {
                    e.wakeups += 1;
                    e.session.handle_timeout(now);
                }
            }
        }
    }
}

/// Takes deliveries, transmits and events out of one end.
fn drain(
    e: &mut End,
    now: Instant,
    side: Side,
    out: &mut Vec<(Side, RoutedMessage)>,
    echo: &mut Vec<Vec<u8>>,
) {
    let (received, block) = (&mut e.received, &mut e.block);
    let (pace, next_take) = (e.pace, &mut e.next_take);
    e.session.deliver(now, |m| {
        if *block > 0 {
            *block -= 1;
            return Delivery::Blocked(m);
        }
        if let Some(pace) = pace {
            if now.as_millis() < *next_take {
                return Delivery::Blocked(m);
            }
            *next_take = now.as_millis() + pace;
        }
        if side == Side::Responder && m.payload.starts_with(b"nosuch") {
            return Delivery::NoSuchDestination;
        }
        if side == Side::Responder {
            assert_eq!(m.onward, Route::from(["echo"]));
            assert_eq!(m.ret, Route::from(["app"]));
            echo.push(m.payload.clone());
        }
        received.push(m.payload);
        Delivery::Delivered
    });
    while let Some(m) = e.session.poll_transmit() {
        out.push((side, m));
    }
    while let Some(event) = e.session.poll_event() {
        match event {
            Event::Connected => e.connected = true,
            Event::Delivered(seq) => e.delivered.push(seq),
            Event::Failed(seq) => e.failed.push(seq),
            Event::Closed(reason) => e.closed = Some(reason),
            Event::Rekeyed => e.rekeyed += 1,
            Event::Undelivered(seq) => e.undelivered.push(seq),
        }
    }
}

fn payloads(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("message {i}").into_bytes())
        .collect()
}

fn fast() -> SessionConfig {
    SessionConfig {
        window: 16,
        ..SessionConfig::default()
    }
}

/// Every message arrived once, in order, and its sender saw it confirmed, in both directions.
fn assert_exactly_once(sim: &Sim, n: usize) {
    let r = sim.responder();
    assert_eq!(
        r.received,
        payloads(n),
        "initiator → responder: exactly once, in order"
    );
    assert_eq!(
        sim.initiator.received,
        payloads(n),
        "responder → initiator: exactly once, in order"
    );
    let all: Vec<u64> = (0..n as u64).collect();
    let mut confirmed = sim.initiator.delivered.clone();
    confirmed.sort();
    assert_eq!(confirmed, all, "every message confirmed once");
    let mut confirmed = r.delivered.clone();
    confirmed.sort();
    assert_eq!(confirmed, all);
    assert!(sim.initiator.failed.is_empty() && r.failed.is_empty());
    assert!(sim.initiator.closed.is_none() && r.closed.is_none());
}

#[test]
fn a_clean_path_delivers_everything_without_retransmissions() {
    let mut sim = Sim::new(fast(), Faults::none());
    sim.to_send = payloads(300);
    sim.run(60_000);
    assert_exactly_once(&sim, 300);
    let r = sim.responder();
    assert_eq!(sim.initiator.session.stats().retransmissions, 0);
    assert_eq!(r.session.stats().retransmissions, 0);
    assert_eq!(r.session.stats().delivered, 300);
    // An idle minute after the transfer: keepalives only (12 of them), no storm.
    assert!(
        sim.initiator.wakeups <= 13,
        "initiator woke {} times",
        sim.initiator.wakeups
    );
    assert_eq!(
        r.wakeups, 0,
        "the responder needs no timer while it hears keepalives"
    );
}

#[test]
fn loss_duplication_and_reordering_still_deliver_exactly_once_in_order() {
    for (seed, loss, dup) in [(1u64, 100, 100), (2, 250, 50), (3, 50, 300)] {
        let mut faults = Faults::none();
        faults.state ^= seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
        faults.loss_permille = loss;
        faults.dup_permille = dup;
        faults.jitter = 80; // far more than the spacing of frames: heavy reordering
        let mut sim = Sim::new(fast(), faults);
        sim.to_send = payloads(400);
        sim.run(120_000);
        assert_exactly_once(&sim, 400);
        let stats = sim.initiator.session.stats();
        assert!(
            stats.retransmissions > 0,
            "seed {seed}: loss was not exercised"
        );
        assert!(
            stats.frames_replayed > 0
                || dup == 0
                || sim.responder().session.stats().frames_replayed > 0
        );
        // Wakeups follow retransmissions, not a fixed tick: each wakeup retransmits or keeps alive.
        let budget = stats.retransmissions + 120_000 / 5_000 + 40;
        assert!(
            sim.initiator.wakeups <= budget,
            "seed {seed}: {} wakeups for {} retransmissions",
            sim.initiator.wakeups,
            stats.retransmissions
        );
    }
}

#[test]
fn cut_connections_lose_nothing_and_the_responder_follows_the_new_one() {
    let mut sim = Sim::new(fast(), Faults::none());
    sim.to_send = payloads(600);
    for cut in 1..=4u64 {
        sim.run(cut * 1_000);
        // The connection drops: what was in flight is lost, nothing gets through for 700 ms, and the
        // initiator's transport reconnects (a new connection on the responder's node).
        sim.in_flight.clear();
        sim.down_until = sim.now + 700;
        sim.r_conn = format!("r-in#{cut}");
    }
    sim.run(120_000);
    assert_exactly_once(&sim, 600);
    let r = sim.responder();
    assert_eq!(
        r.session.remote(),
        Some(&Route::from(["r-in#4", "i-dec"])),
        "the responder follows the initiator's new connection"
    );
}

#[test]
fn a_dead_path_reports_every_undelivered_message_failed() {
    let config = SessionConfig {
        delivery_timeout: Duration::from_secs(3),
        idle_timeout: Duration::from_secs(8),
        ..fast()
    };
    let mut sim = Sim::new(config, Faults::none());
    sim.to_send = payloads(2_000);
    sim.run(300);
    sim.down_until = u64::MAX;
    sim.run(60_000);
    let got = sim.responder().received.clone();
    assert!(
        !got.is_empty() && got.len() < 2_000,
        "the path died during the transfer"
    );
    assert_eq!(
        got,
        payloads(got.len()),
        "what arrived is a prefix: in order, once"
    );
    let i = &sim.initiator;
    assert_eq!(i.closed, Some(SessionError::DeliveryTimeout));
    let mut accounted: Vec<u64> = i.delivered.iter().chain(&i.failed).copied().collect();
    accounted.sort();
    assert_eq!(
        accounted.len(),
        sim.sent.len(),
        "each message sent is either delivered or failed"
    );
    assert_eq!(accounted, (0..sim.sent.len() as u64).collect::<Vec<_>>());
    assert!(!i.failed.is_empty());
    assert!(
        i.delivered.len() <= got.len(),
        "nothing confirmed that was not delivered"
    );
    // The responder gives up too: its own echoes fail (or, had it sent nothing, its idle timeout ends it).
    assert!(matches!(
        sim.responder().closed,
        Some(SessionError::DeliveryTimeout | SessionError::PeerSilent)
    ));
    // Retransmissions every 200 ms for 3 s, not a timer storm.
    assert!(i.wakeups <= 3_000 / 200 + 5, "{} wakeups", i.wakeups);
    assert!(
        i.session.poll_timeout().is_none(),
        "a closed session has no timer"
    );
}

#[test]
fn an_idle_hour_costs_one_keepalive_every_five_seconds() {
    let mut sim = Sim::new(SessionConfig::default(), Faults::none());
    sim.to_send = payloads(1);
    sim.run(3_600_000);
    assert_exactly_once(&sim, 1);
    assert!(
        (715..=722).contains(&sim.initiator.wakeups),
        "{} wakeups in an hour",
        sim.initiator.wakeups
    );
    assert_eq!(sim.responder().wakeups, 0);
}

#[test]
fn a_blocked_destination_is_retried_and_confirmed_only_once_delivered() {
    let mut sim = Sim::new(fast(), Faults::none());
    sim.run(100);
    sim.responders.iter_mut().for_each(|r| r.block = 30);
    sim.to_send = payloads(5);
    // Until the destination takes the first message, nothing is confirmed and nothing retransmitted.
    sim.run(250);
    let r = sim.responder();
    assert!(r.received.is_empty());
    assert!(
        sim.initiator.delivered.is_empty(),
        "confirmed before delivery"
    );
    sim.run(10_000);
    assert_exactly_once(&sim, 5);
    assert_eq!(
        sim.initiator.session.stats().retransmissions,
        0,
        "selectively acknowledged messages are not retransmitted"
    );
    // 30 refusals, one retry every 10 ms: about 30 wakeups, not a storm.
    assert!(sim.responder().wakeups <= 32, "{}", sim.responder().wakeups);
}

#[test]
fn lost_handshake_messages_are_repeated_and_stray_responders_time_out() {
    let mut faults = Faults::none();
    faults.loss_permille = 500;
    faults.state = 7;
    let mut sim = Sim::new(fast(), faults);
    sim.run(30_000);
    assert!(
        sim.initiator.connected,
        "the handshake completed despite loss"
    );
    let stray = sim.responders.iter().filter(|r| !r.connected).count();
    for r in sim.responders.iter().filter(|r| !r.connected) {
        assert_eq!(r.closed, Some(SessionError::HandshakeTimeout));
    }
    eprintln!(
        "{} responders started, {stray} timed out",
        sim.responders.len()
    );
    let _ = sim.responder();
}

#[test]
fn a_dead_listener_fails_the_handshake_at_its_deadline_without_a_storm() {
    let mut sim = Sim::new(SessionConfig::default(), Faults::none());
    sim.down_until = u64::MAX;
    sim.run(60_000);
    assert_eq!(sim.initiator.closed, Some(SessionError::HandshakeTimeout));
    // Message 1 every 500 ms for 10 s.
    assert_eq!(sim.packets, 20);
    assert!(sim.initiator.wakeups <= 21);
}

#[test]
fn rewritten_return_routes_and_forged_frames_do_not_move_the_responder() {
    let mut sim = Sim::new(fast(), Faults::none());
    sim.run(100);
    // From now on every message up has its return route rewritten to end elsewhere, and a forged frame
    // with a valid-looking route follows each one.
    sim.tamper = Some(Box::new(|side, m| {
        if side == Side::Initiator {
            m.ret = m.ret.without_last().append("evil");
        }
    }));
    sim.to_send = payloads(20);
    sim.run(2_000);
    let r = sim.responder();
    assert_eq!(r.received, payloads(20), "authenticated frames still count");
    assert_eq!(
        r.session.remote(),
        Some(&Route::from(["r-in#0", "i-dec"])),
        "not moved"
    );
    // A forged frame on a new connection, ending at the initiator's decryptor: refused, route unchanged.
    sim.tamper = None;
    let idx = sim.responders.iter().position(|r| r.connected).unwrap();
    let forged = RoutedMessage::new(
        Route::from_addresses([sim.responders[idx].session.address().clone()]),
        Route::from(["attacker-conn", "i-dec"]),
        [&[KIND_FRAME][..], &[0xa5; 60][..]].concat(),
    );
    let r = &mut sim.responders[idx];
    r.session
        .handle_input(t(sim.now), forged, &Arrival::via("attacker-conn".into()));
    assert_eq!(r.session.stats().frames_rejected, 1);
    assert_eq!(r.session.remote(), Some(&Route::from(["r-in#0", "i-dec"])));
}

#[test]
fn message_three_only_from_the_handshakes_path() {
    let party_i = Party::new();
    let party_r = Party::new();
    let now = t(0);
    let mut i = ChannelSession::initiator(
        fast(),
        Handshake::initiator(party_i.config_any()).unwrap(),
        "i-dec".into(),
        Route::from(["conn", "api"]),
        now,
    )
    .unwrap();
    let mut m1 = i.poll_transmit().unwrap();
    m1.onward.pop_front();
    m1.ret = m1.ret.prepend("in#1");
    // A message 1 whose return route does not start where it arrived is refused.
    let bad = ChannelSession::responder(
        fast(),
        Handshake::responder(party_r.config_any()).unwrap(),
        "r-dec".into(),
        &m1,
        Arrival::via("in#2".into()),
        now,
    );
    assert!(matches!(bad, Err(SessionError::BadRoute(_))));
    let mut r = ChannelSession::responder(
        fast(),
        Handshake::responder(party_r.config_any()).unwrap(),
        "r-dec".into(),
        &m1,
        Arrival::via("in#1".into()),
        now,
    )
    .unwrap();
    let mut m2 = r.poll_transmit().unwrap();
    assert_eq!(m2.onward, Route::from(["in#1", "i-dec"]));
    m2.onward.pop_front();
    // Message 2 from another connection is ignored by the initiator.
    i.handle_input(now, m2.clone(), &Arrival::via("other".into()));
    assert!(i.poll_transmit().is_none());
    m2.ret = m2.ret.prepend("conn");
    i.handle_input(now, m2, &Arrival::via("conn".into()));
    let mut m3 = i.poll_transmit().unwrap();
    assert_eq!(m3.onward, Route::from(["conn", "r-dec"]));
    m3.onward.pop_front();
    // The genuine message 3 from another connection, or ending elsewhere: ignored, the handshake goes on.
    let mut elsewhere = m3.clone();
    elsewhere.ret = elsewhere.ret.prepend("in#2");
    r.handle_input(now, elsewhere, &Arrival::via("in#2".into()));
    let mut wrong_end = m3.clone();
    wrong_end.ret = Route::from(["in#1", "x-dec"]);
    r.handle_input(now, wrong_end, &Arrival::via("in#1".into()));
    assert!(r.poll_event().is_none() && r.poll_transmit().is_none());
    m3.ret = m3.ret.prepend("in#1");
    r.handle_input(now, m3, &Arrival::via("in#1".into()));
    assert_eq!(r.poll_event(), Some(Event::Connected));
    let mut confirmation = r.poll_transmit().unwrap();
    confirmation.onward.pop_front();
    confirmation.ret = confirmation.ret.prepend("conn");
    i.handle_input(now, confirmation, &Arrival::via("conn".into()));
    assert_eq!(i.poll_event(), Some(Event::Connected));
    assert_eq!(i.peer().unwrap().identifier, party_r.identity.identifier());
    assert_eq!(r.peer().unwrap().identifier, party_i.identity.identifier());
}

#[test]
fn a_message_with_no_such_destination_is_reported_undelivered_not_delivered() {
    let mut sim = Sim::new(fast(), Faults::none());
    let mut to_send = payloads(10);
    to_send[3] = b"nosuch 3".to_vec();
    to_send[7] = b"nosuch 7".to_vec();
    sim.to_send = to_send;
    sim.run(10_000);
    let i = &sim.initiator;
    assert_eq!(i.undelivered, vec![3, 7], "the sender hears which ones");
    let mut delivered = i.delivered.clone();
    delivered.sort();
    assert_eq!(
        delivered,
        vec![0, 1, 2, 4, 5, 6, 8, 9],
        "and never that they were delivered"
    );
    assert!(
        i.failed.is_empty() && i.closed.is_none(),
        "the channel goes on"
    );
    assert_eq!(sim.responder().received.len(), 8);
    assert_eq!(sim.responder().session.stats().undeliverable, 2);
}

#[test]
fn an_initiator_that_hears_nothing_is_closed_after_the_idle_timeout() {
    // The responder answers keepalives, so an idle initiator stays open (the idle hour test shows it); one
    // whose path died hears nothing and gives up instead of keeping a dead channel forever.
    let mut sim = Sim::new(SessionConfig::default(), Faults::none());
    sim.run(100);
    sim.down_until = u64::MAX;
    sim.run(59_000);
    assert!(sim.initiator.closed.is_none());
    sim.run(61_000);
    assert_eq!(sim.initiator.closed, Some(SessionError::PeerSilent));
    assert!(
        sim.initiator.wakeups <= 13,
        "{} wakeups",
        sim.initiator.wakeups
    );
}

#[test]
fn a_silent_initiator_is_closed_after_the_idle_timeout() {
    let mut sim = Sim::new(SessionConfig::default(), Faults::none());
    sim.run(100);
    sim.down_until = u64::MAX;
    sim.run(59_000);
    assert!(sim.responder().closed.is_none());
    sim.run(61_000);
    assert_eq!(sim.responder().closed, Some(SessionError::PeerSilent));
    assert_eq!(
        sim.responder().wakeups,
        1,
        "one timer, at the idle deadline"
    );
}

// ---- Re-handshakes (fresh Diffie-Hellman on a live channel; docs/RUNTIME.md, "Re-handshake") ----

fn rekeying(interval_ms: u64) -> SessionConfig {
    SessionConfig {
        rekey_interval: Duration::from_millis(interval_ms),
        ..fast()
    }
}

/// Feeds `n` messages to the initiator's application in chunks, `chunk` every `every` ms, so that sending
/// goes on across many re-handshakes; then runs until `until`.
fn send_continuously(sim: &mut Sim, n: usize, chunk: usize, every: u64, until: u64) {
    let mut all = payloads(n);
    while !all.is_empty() {
        let rest = all.split_off(chunk.min(all.len()));
        sim.to_send.extend(all);
        all = rest;
        let next = sim.now + every;
        sim.run(next);
    }
    sim.run(until);
}

#[test]
fn rehandshakes_under_continuous_sending_with_loss_and_reordering_lose_nothing() {
    for (seed, loss, dup) in [(11u64, 0, 0), (12, 100, 50), (13, 200, 100)] {
        let mut faults = Faults::none();
        faults.state ^= seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
        faults.loss_permille = loss;
        faults.dup_permille = dup;
        faults.jitter = 80;
        let party_i = Party::new();
        let mut sim = Sim::with_rekey(rekeying(1_000), faults, &party_i);
        sim.run(700);
        let first = sim.initiator.session.handshake_hash().expect("established");
        // 2,000 messages each way over 40 s of virtual time: about 40 re-handshakes meanwhile.
        send_continuously(&mut sim, 2_000, 50, 1_000, 60_000);
        // The run may stop inside a re-handshake (the responder on the new keys, the initiator not yet):
        // the initiator switches on the responder's next frame, at the latest its answer to a keepalive.
        for _ in 0..40 {
            if sim.initiator.session.key_generation() == sim.responder().session.key_generation() {
                break;
            }
            let next = sim.now + 250;
            sim.run(next);
        }
        assert_eq!(
            (
                sim.initiator.closed.clone(),
                sim.responder().closed.clone(),
                sim.responder().received.len()
            ),
            (None, None, 2_000),
            "seed {seed}: rekeys {}, stats {:?}, rto {:?} srtt {:?} in flight {} room {}",
            sim.initiator.session.stats().rekeys,
            sim.initiator.session.stats(),
            sim.initiator.session.rto(),
            sim.initiator.session.srtt(),
            sim.initiator.session.in_flight(),
            sim.initiator.session.has_room(),
        );
        assert_exactly_once(&sim, 2_000);
        let i = &sim.initiator;
        let r = sim.responder();
        let rekeys = i.session.stats().rekeys;
        assert!(
            rekeys >= 30,
            "seed {seed}: only {rekeys} re-handshakes in 60 s at a 1 s interval"
        );
        // Both ends agree on the keys and their generation, and the keys really changed.
        assert_eq!(i.session.key_generation(), r.session.key_generation());
        assert_eq!(i.rekeyed, rekeys);
        assert_eq!(r.rekeyed, rekeys);
        assert_eq!(i.session.handshake_hash(), r.session.handshake_hash());
        assert_ne!(i.session.handshake_hash(), Some(first));
        // Same peer as at the start.
        assert_eq!(
            i.session.peer().unwrap().identifier,
            sim.party_r.identity.identifier()
        );
        assert_eq!(
            r.session.peer().unwrap().identifier,
            party_i.identity.identifier()
        );
        // No timer storm: wakeups follow retransmissions and re-handshakes (a few timers each), not a tick.
        let stats = i.session.stats();
        let budget = stats.retransmissions + 6 * rekeys + 60_000 / 5_000 + 60;
        assert!(
            i.wakeups <= budget,
            "seed {seed}: {} initiator wakeups ({} retransmissions, {rekeys} re-handshakes)",
            i.wakeups,
            stats.retransmissions
        );
        let rs = r.session.stats();
        assert!(
            r.wakeups <= rs.retransmissions + 6 * rekeys + 60,
            "seed {seed}: {} responder wakeups",
            r.wakeups
        );
    }
}

#[test]
fn an_idle_channel_rehandshakes_at_its_interval_without_a_storm() {
    let party_i = Party::new();
    let mut sim = Sim::with_rekey(rekeying(120_000), Faults::none(), &party_i);
    sim.to_send = payloads(1);
    sim.run(3_600_000);
    assert_exactly_once(&sim, 1);
    let rekeys = sim.initiator.session.stats().rekeys;
    assert!(
        (29..=30).contains(&rekeys),
        "{rekeys} re-handshakes in an hour"
    );
    // Keepalives (720) plus a handful of timers per re-handshake.
    assert!(
        sim.initiator.wakeups <= 720 + 4 * rekeys,
        "{} wakeups",
        sim.initiator.wakeups
    );
    assert!(
        sim.responder().wakeups <= 4 * rekeys,
        "{} responder wakeups",
        sim.responder().wakeups
    );
}

#[test]
fn epoch_loss_beyond_the_skip_limit_recovers_by_rehandshake() {
    use latchkey_core::channel::MAX_EPOCH_SKIP;
    for lost_side in [Side::Initiator, Side::Responder] {
        let party_i = Party::new();
        // No periodic re-handshake in this test: only the recovery can make one.
        let mut sim = Sim::with_rekey(rekeying(3_600_000), Faults::none(), &party_i);
        sim.to_send = payloads(100);
        sim.run(2_000);
        // One side's frames are now too many key epochs ahead of its peer's decryptor (as after more than
        // MAX_EPOCH_SKIP epochs of lost frames).
        let idx = sim.responders.iter().position(|r| r.connected).unwrap();
        let sender = match lost_side {
            Side::Initiator => &mut sim.initiator,
            Side::Responder => &mut sim.responders[idx],
        };
        sender
            .session
            .skip_send_epochs_for_test(MAX_EPOCH_SKIP + 3)
            .unwrap();
        sim.to_send = payloads(300).split_off(100);
        sim.run(30_000);
        assert_exactly_once(&sim, 300);
        assert_eq!(
            sim.initiator.session.stats().rekeys,
            1,
            "{lost_side:?}: one re-handshake"
        );
        let receiver = match lost_side {
            Side::Initiator => sim.responder(),
            Side::Responder => &sim.initiator,
        };
        assert!(
            receiver.session.stats().frames_rejected > 0,
            "the loss was seen"
        );
    }
}

#[test]
fn without_rehandshakes_epoch_loss_still_fails_the_channel() {
    use latchkey_core::channel::MAX_EPOCH_SKIP;
    let config = SessionConfig {
        delivery_timeout: Duration::from_secs(3),
        ..fast()
    };
    let mut sim = Sim::new(config, Faults::none());
    sim.to_send = payloads(10);
    sim.run(1_000);
    sim.initiator
        .session
        .skip_send_epochs_for_test(MAX_EPOCH_SKIP + 3)
        .unwrap();
    sim.to_send = payloads(20).split_off(10);
    sim.run(30_000);
    assert_eq!(sim.initiator.closed, Some(SessionError::DeliveryTimeout));
    assert_eq!(sim.initiator.failed.len(), 10);
}

#[test]
fn a_rehandshake_proving_another_identity_closes_the_channel() {
    let party_i = Party::new();
    let mut sim = Sim::with_rekey(rekeying(1_000), Faults::none(), &party_i);
    // The responder's node answers re-handshakes with another (trusted) identity, as a relay holding its
    // own identity could try.
    let other = Party::new();
    sim.rekey_as = Some(other.config_any());
    sim.run(100);
    let idx = sim.responders.iter().position(|r| r.connected).unwrap();
    sim.responders[idx]
        .session
        .set_rehandshake(factory(other.config_any()));
    sim.to_send = payloads(50);
    sim.run(5_000);
    assert_eq!(sim.initiator.closed, Some(SessionError::IdentityChanged));
    assert_eq!(sim.initiator.session.stats().rekeys, 0, "never switched");
}

#[test]
fn forged_and_replayed_rehandshake_messages_change_nothing() {
    use latchkey_core::route::{parse_rehandshake, rehandshake_payload, KIND_REHANDSHAKE};
    let party_i = Party::new();
    let mut sim = Sim::with_rekey(rekeying(1_000), Faults::none(), &party_i);
    // Record every re-handshake message the initiator sends.
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::<RoutedMessage>::new()));
    let log = seen.clone();
    sim.tamper = Some(Box::new(move |side, m| {
        if side == Side::Initiator && m.payload.first() == Some(&KIND_REHANDSHAKE) {
            log.borrow_mut().push(m.clone());
        }
    }));
    sim.to_send = payloads(100);
    sim.run(3_500);
    sim.tamper = None;
    let idx = sim.responders.iter().position(|r| r.connected).unwrap();
    let generation = sim.responders[idx].session.key_generation();
    let hash = sim.responders[idx].session.handshake_hash();
    assert!(generation >= 2);
    let recorded = seen.borrow().clone();
    assert!(recorded.len() >= 4);
    let now = t(sim.now);
    let r = &mut sim.responders[idx];
    for mut m in recorded {
        // Replays of old messages 1 and 3 along the genuine path.
        m.onward.pop_front();
        m.ret = m.ret.prepend("r-in#0");
        r.session
            .handle_input(now, m.clone(), &Arrival::via("r-in#0".into()));
        // The same with a step/generation rewritten to look current.
        if let Some((_, step, noise)) = parse_rehandshake(&m.payload) {
            let mut forged = m.clone();
            forged.payload = rehandshake_payload(generation + 1, step, noise);
            r.session
                .handle_input(now, forged, &Arrival::via("r-in#0".into()));
        }
        // From a third party's connection.
        let mut stranger = m.clone();
        stranger.ret = Route::from(["attacker", "i-dec"]);
        r.session
            .handle_input(now, stranger, &Arrival::via("attacker".into()));
    }
    // Junk message 3 for the next generation.
    let junk = RoutedMessage::new(
        Route::from_addresses([r.session.address().clone()]),
        Route::from(["r-in#0", "i-dec"]),
        rehandshake_payload(generation + 1, 3, &[0x5a; 120]),
    );
    r.session
        .handle_input(now, junk, &Arrival::via("r-in#0".into()));
    assert_eq!(r.session.key_generation(), generation, "no key change");
    assert_eq!(r.session.handshake_hash(), hash);
    assert!(!r.session.is_closed());
    // The channel goes on, re-handshakes included, and nothing is lost.
    sim.to_send = payloads(200).split_off(100);
    sim.run(20_000);
    assert_exactly_once(&sim, 200);
    assert!(sim.responder().session.key_generation() > generation);
}

#[test]
fn a_peer_with_fresh_proofs_is_reauthenticated_before_expiry_else_closed_at_it() {
    for renewed in [true, false] {
        let party_i = Party::new();
        let config = SessionConfig {
            rekey_before_expiry: Duration::from_secs(2),
            ..rekeying(3_600_000)
        };
        let mut sim = Sim::with_rekey(config, Faults::none(), &party_i);
        sim.run(100);
        // The initiator converts the responder's proofs' expiry to 5 s from now.
        sim.initiator.session.set_peer_expiry(t(5_100));
        sim.to_send = payloads(20);
        sim.run(4_000);
        assert_eq!(
            sim.initiator.session.stats().rekeys,
            1,
            "renewed={renewed}: one re-handshake, 2 s before expiry"
        );
        if renewed {
            // The peer presented fresh proofs: the caller converts their expiry again.
            sim.initiator.session.set_peer_expiry(t(60_000));
        }
        sim.run(20_000);
        if renewed {
            assert!(
                sim.initiator.closed.is_none(),
                "re-authenticated, still open"
            );
            assert_exactly_once(&sim, 20);
        } else {
            assert_eq!(sim.initiator.closed, Some(SessionError::PeerExpired));
            assert_eq!(
                sim.initiator.session.stats().rekeys,
                1,
                "nothing fresher: no second try"
            );
        }
    }
}

// ---- Flow control (credit) and the retransmission timer (docs/RUNTIME.md, "Reliability") ----

/// The initiator may keep 64 messages in flight; the responder gives credit for 16 and its driver wakes
/// its paced reader itself (no delivery retry timer).
fn credit_16() -> (SessionConfig, SessionConfig) {
    let base = SessionConfig {
        delivery_retry: None,
        ..SessionConfig::default()
    };
    let sender = SessionConfig {
        window: 64,
        ..base.clone()
    };
    let receiver = SessionConfig { window: 16, ..base };
    (sender, receiver)
}

#[test]
fn a_slow_reader_pauses_the_sender_by_credit_without_retransmissions() {
    let (sender, receiver) = credit_16();
    let mut sim = Sim::new(sender, Faults::none());
    sim.responder_config = Some(receiver);
    // The reader takes one message every 20 ms; a round trip is 10 ms.
    sim.responder_pace = Some((20, 0));
    sim.to_send = payloads(300);
    sim.run(3_000);
    let r = sim.responder();
    assert!(
        r.received.len() < 160,
        "the reader's pace sets the rate: {} taken in 3 s",
        r.received.len()
    );
    assert!(!sim.to_send.is_empty(), "the sender paused");
    sim.run(30_000);
    assert_exactly_once(&sim, 300);
    let (i, r) = (&sim.initiator, sim.responder());
    // The sender never sent beyond the receiver's credit (its own window would allow 64), so the receiver
    // held at most 16 messages its reader had not taken, and nothing was dropped and sent again.
    assert_eq!(sim.max_in_flight, 16);
    assert_eq!(i.session.stats().retransmissions, 0);
    assert_eq!(r.session.stats().retransmissions, 0);
    assert_eq!(r.session.stats().frames_replayed, 0, "no duplicates");
    // No timer storm: the paced reader costs the responder's session no wakeup (its driver wakes it), and
    // the sender's wakeups are the rare probe and its keepalives.
    assert_eq!(r.wakeups, 0);
    let probes = i.session.stats().probes;
    assert!(probes <= 10, "{probes} probes");
    assert!(
        i.wakeups <= probes + 30_000 / 5_000 + 2,
        "{} initiator wakeups ({probes} probes)",
        i.wakeups
    );
}

#[test]
fn a_slow_reader_over_a_lossy_reordering_path_still_gets_everything_exactly_once() {
    for (seed, loss, dup) in [(21u64, 100, 100), (22, 200, 50)] {
        let mut faults = Faults::none();
        faults.state ^= seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
        faults.loss_permille = loss;
        faults.dup_permille = dup;
        faults.jitter = 40;
        let (sender, receiver) = credit_16();
        let mut sim = Sim::new(sender, faults);
        sim.responder_config = Some(receiver);
        sim.responder_pace = Some((15, 0));
        sim.to_send = payloads(300);
        sim.run(120_000);
        assert_exactly_once(&sim, 300);
        assert!(sim.max_in_flight <= 16, "seed {seed}: beyond the credit");
        let stats = sim.initiator.session.stats();
        assert!(stats.retransmissions > 0, "seed {seed}: loss not exercised");
        let budget = stats.retransmissions + stats.probes + 120_000 / 5_000 + 40;
        assert!(
            sim.initiator.wakeups <= budget,
            "seed {seed}: {} wakeups",
            sim.initiator.wakeups
        );
    }
}

#[test]
fn a_lost_window_update_does_not_deadlock() {
    let (sender, receiver) = credit_16();
    // No keepalive in the meantime (its answer would also carry the credit): only the probe can help.
    let sender = SessionConfig {
        keepalive: Duration::from_secs(60),
        ..sender
    };
    let mut sim = Sim::new(sender, Faults::none());
    sim.responder_config = Some(receiver);
    sim.echo_back = false;
    // The reader takes nothing until 2 s, then everything at once.
    sim.responder_pace = Some((0, 2_000));
    sim.to_send = payloads(64);
    sim.run(1_990);
    assert_eq!(sim.initiator.session.in_flight(), 16);
    assert!(!sim.initiator.session.has_room(), "no credit left");
    assert!(sim.responder().received.is_empty());
    // Everything the responder sends as its reader takes the 16 messages (the ACK that gives new credit)
    // is lost: only the sender's window probe can get it going again.
    let probes_before = sim.initiator.session.stats().probes;
    sim.drop_from_responder = Some((1_990, 2_100));
    // The probe interval has backed off to at most `max_rto` (5 s) by now.
    sim.run(8_000);
    assert_eq!(sim.initiator.closed, None);
    assert_eq!(sim.responder().received, payloads(64));
    assert_eq!(sim.initiator.delivered, (0..64).collect::<Vec<u64>>());
    let stats = sim.initiator.session.stats();
    assert!(stats.probes > probes_before, "the sender probed");
    assert_eq!(stats.retransmissions, 0, "probes, not retransmissions");
}

#[test]
fn a_peer_that_never_gives_credit_costs_a_bounded_probe_rate_and_ends_at_the_delivery_deadline() {
    let (sender, receiver) = credit_16();
    let mut sim = Sim::new(sender, Faults::none());
    sim.responder_config = Some(receiver);
    sim.echo_back = false;
    sim.responder_pace = Some((0, u64::MAX));
    sim.to_send = payloads(1_000);
    sim.run(60_000);
    // It held 16 messages (the credit it gave) and no more; the sender's 16 failed at the deadline.
    assert_eq!(sim.max_in_flight, 16);
    assert_eq!(sim.initiator.closed, Some(SessionError::DeliveryTimeout));
    assert_eq!(sim.initiator.failed.len(), 16);
    assert_eq!(
        sim.sent.len(),
        16,
        "the application was held back, not buffered"
    );
    let stats = sim.initiator.session.stats();
    // Probes back off to one per `max_rto` (5 s): a handful in 20 s, not one per round trip.
    assert!(
        (3..=12).contains(&stats.probes),
        "{} probes in 20 s",
        stats.probes
    );
    assert!(sim.initiator.wakeups <= stats.probes + 4 + 2);
    assert_eq!(stats.retransmissions, 0);
}

#[test]
fn the_retransmission_timeout_follows_the_measured_round_trip() {
    let mut rto = vec![];
    for one_way in [2u64, 150] {
        let mut faults = Faults::none();
        faults.latency = one_way;
        let mut sim = Sim::new(fast(), faults);
        sim.to_send = payloads(200);
        sim.run(120_000);
        assert_exactly_once(&sim, 200);
        let s = &sim.initiator.session;
        let srtt = s.srtt().expect("measured").as_millis() as u64;
        assert!(
            srtt.abs_diff(2 * one_way) <= 1,
            "srtt {srtt} ms for a {} ms round trip",
            2 * one_way
        );
        rto.push((s.rto().unwrap(), s.stats().retransmissions));
    }
    let ((fast_rto, _), (slow_rto, slow_retransmissions)) = (rto[0], rto[1]);
    // 4 ms round trip: the minimum (50 ms); 300 ms: above the round trip.
    assert_eq!(fast_rto, Duration::from_millis(50));
    assert!(
        slow_rto > Duration::from_millis(300) && slow_rto < Duration::from_millis(400),
        "{slow_rto:?}"
    );
    // The initial 200 ms timeout is shorter than a 300 ms round trip: only the first flight (one window,
    // 16 messages) is sent twice, then the timer has learnt the path. A fixed 200 ms timer would have
    // sent every one of the 200 messages twice.
    assert!(
        slow_retransmissions <= 16,
        "{slow_retransmissions} retransmissions"
    );
}

#[test]
fn repeated_loss_backs_the_timer_off_exponentially() {
    let mut sim = Sim::new(fast(), Faults::none());
    sim.run(1_000);
    let rto = sim.initiator.session.rto().unwrap();
    // The path dies with one message in flight: retransmissions at RTO, 2·RTO, 4·RTO, … (≤ 5 s).
    sim.down_until = u64::MAX;
    sim.to_send = payloads(1);
    let start = sim.now;
    sim.run(start + 15_000);
    let stats = sim.initiator.session.stats();
    let base = rto.as_millis() as u64;
    // Within 15 s: at base·(1+2+4+…) ≤ 15 s, capped at 5 s each.
    let mut expected = 0;
    let (mut at, mut step) = (0u64, base);
    while at + step <= 15_000 {
        at += step;
        expected += 1;
        step = (step * 2).min(5_000);
    }
    assert_eq!(stats.retransmissions, expected, "RTO {rto:?}");
    assert!(
        expected < 15_000 / base / 4,
        "far fewer than at a fixed timer"
    );
}

/// A large payload whose bytes differ from one message to the next and along the message.
fn varied(i: usize, len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64 ^ (i as u64 + 1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn a_retransmission_carries_exactly_the_message_the_window_holds_under_a_new_nonce() {
    // The send window keeps each message as sent and seals it afresh for every transmission. With the
    // path down, every first transmission (and the retransmissions while it stays down) is lost: what the
    // responder gets comes only from later retransmissions, and must be the very bytes sent.
    let mut sim = Sim::new(fast(), Faults::none());
    sim.echo_back = false;
    sim.run(200);
    assert!(sim.initiator.connected, "the handshake completes first");
    let frames: std::rc::Rc<std::cell::RefCell<Vec<Vec<u8>>>> = Default::default();
    let seen = frames.clone();
    sim.tamper = Some(Box::new(move |side, m| {
        if side == Side::Initiator
            && m.payload.first() == Some(&KIND_FRAME)
            && m.payload.len() > 1000
        {
            seen.borrow_mut().push(m.payload.clone());
        }
    }));
    let sent: Vec<Vec<u8>> = (0..6).map(|i| varied(i, 16 * 1024 + i)).collect();
    sim.down_until = sim.now + 1_500;
    sim.to_send = sent.clone();
    sim.run(60_000);
    let r = sim.responder();
    assert_eq!(r.received.len(), sent.len());
    assert!(
        r.received == sent,
        "the retransmitted bytes are the bytes sent, in order"
    );
    let stats = sim.initiator.session.stats();
    assert!(
        stats.retransmissions >= sent.len() as u64,
        "every message was retransmitted"
    );
    let mut delivered = sim.initiator.delivered.clone();
    delivered.sort();
    assert_eq!(delivered, (0..sent.len() as u64).collect::<Vec<_>>());
    // Each transmission of a message is a new frame: same length, a new nonce, another ciphertext.
    let frames = frames.borrow();
    assert!(frames.len() as u64 >= 2 * sent.len() as u64);
    for (i, a) in frames.iter().enumerate() {
        for b in &frames[i + 1..] {
            assert_ne!(a[1..9], b[1..9], "a nonce is never reused");
            assert_ne!(a, b);
        }
    }
}
