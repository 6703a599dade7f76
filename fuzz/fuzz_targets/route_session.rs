//! The routed secure channel, sans-IO (`latchkey_core::route::ChannelSession`, docs/RUNTIME.md "Secure
//! channels: the protocol between two ends"): an initiator and a responder with the vector identities,
//! joined by a simulated transport (each side's link hop popped on sending, the receiving side's prepended to
//! the return route, as the runtime's transports do) that the fuzzer controls completely: it delivers,
//! reorders, drops, duplicates, replays and tampers with messages, injects its own along any path, moves the
//! clock, sends application messages, blocks and unblocks the receivers, and closes either end.
//! Input: `vector: u8 ‖ window: u8 ‖ op*`; op (`u8`): 0 deliver the oldest message in flight, 1 deliver
//! message `u8`, 2 drop it, 3 duplicate it, 4 change one byte of its payload (`u8 ‖ position: u16 ‖ xor: u8`),
//! 5 inject (`side: u8 ‖ target: u8 ‖ hop: u8 ‖ payload: chunk`), 6 advance the clock `u16` ms and run the
//! timers, 7 the application on `side: u8` sends a chunk, 8 close `side: u8`, 9 re-inject a message seen
//! before (`u8`), 10 toggle whether `side: u8`'s destination is full, 11 `side: u8`'s node restarts (its
//! session is gone; its node answers frames for the old decryptor with a stateless reset). Both ends carry
//! reset tokens; injected payloads may be handshakes, frames, refusals or resets.
//!
//! Checks: each side receives exactly the other side's application messages, each once, in order, with
//! their bytes (an injected or altered message is never delivered); `Delivered(seq)` is reported only for
//! messages the other side has delivered, and never together with `Failed(seq)`; `Connected` comes with the
//! other vector identity as the peer; nothing follows `Closed`; a session closes by reset only after a reset
//! with its peer's token reached it; a reset is never much larger than the frame it answers.
#![no_main]

use latchkey_core::channel::{Role, TrustAnyIdentity};
use latchkey_core::crypto::default_provider;
use latchkey_core::route::reset::{parse_reset, ResetKey, ResetToken, KIND_RESET};
use latchkey_core::route::{
    Arrival, ChannelSession, Delivery, Event, Instant, SessionConfig, SessionError, KIND_FRAME,
    KIND_HANDSHAKE,
};
use latchkey_core::wire::{Address, Route, RoutedMessage};
use latchkey_fuzz::fixtures::{handshake_vector, HandshakeVector};
use latchkey_fuzz::Cursor;
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use std::sync::Arc;

const LINK: [&str; 2] = ["tcp-out#i", "tcp-in#r"];
const DECRYPTOR: [&str; 2] = ["sc-dec#i", "sc-dec#r"];
const LISTENER: &str = "api";

/// One side: its session (the responder's appears with the first message 1) and what its application saw.
struct Side {
    session: Option<ChannelSession>,
    /// Payloads the application sent, in sequence order (index = sequence number).
    sent: Vec<Vec<u8>>,
    /// Payloads delivered to this side's application, in order.
    received: Vec<Vec<u8>>,
    delivered_events: HashSet<u64>,
    failed_events: HashSet<u64>,
    closed: bool,
    blocked: bool,
    /// This side's node restarted: its session is gone and its node answers frames with resets.
    restarted: bool,
    /// A reset with this side's peer's token reached this side.
    reset_arrived: bool,
}

impl Side {
    fn new() -> Self {
        Side {
            session: None,
            sent: Vec::new(),
            received: Vec::new(),
            delivered_events: HashSet::new(),
            failed_events: HashSet::new(),
            closed: false,
            blocked: false,
            restarted: false,
            reset_arrived: false,
        }
    }
}

/// A message on its way to `to`'s node, as that node's transport will hand it over.
#[derive(Clone)]
struct InFlight {
    to: usize,
    message: RoutedMessage,
    arrival: Arrival,
}

/// Each side's node reset key (fixed), and the token of its decryptor.
fn reset_key(side: usize) -> ResetKey {
    ResetKey::new([side as u8 + 1; 32])
}

fn token(side: usize) -> ResetToken {
    reset_key(side).token(default_provider(), &Address::from(DECRYPTOR[side]))
}

struct World {
    vector: &'static HandshakeVector,
    config: SessionConfig,
    now: Instant,
    sides: [Side; 2],
    network: Vec<InFlight>,
    seen: Vec<InFlight>,
}

impl World {
    /// A message a side emitted: its link hop is popped and the far node's link hop prepended to the return
    /// route, as the runtime's transports do. Misrouted messages are dropped.
    fn emit(&mut self, from: usize, mut message: RoutedMessage) {
        if message.onward.pop_front().as_ref().map(Address::as_str) != Some(LINK[from]) {
            return;
        }
        let to = 1 - from;
        message.ret = message.ret.prepend(Address::from(LINK[to]));
        self.network.push(InFlight {
            to,
            message,
            arrival: Arrival::via(Address::from(LINK[to])),
        });
    }

    /// A message reaches `to`'s node: the listener, or that side's decryptor.
    fn arrive(&mut self, packet: InFlight) {
        self.seen.push(packet.clone());
        if self.seen.len() > 64 {
            self.seen.remove(0);
        }
        let InFlight {
            to,
            message,
            arrival,
        } = packet;
        let now = self.now;
        if parse_reset(&message.payload) == Some(token(1 - to)) {
            self.sides[to].reset_arrived = true;
        }
        match message.onward.first().map(Address::as_str) {
            Some(LISTENER)
                if to == 1 && self.sides[1].session.is_none() && !self.sides[1].restarted =>
            {
                if message.payload.first() != Some(&KIND_HANDSHAKE) {
                    return;
                }
                let handshake =
                    self.vector
                        .handshake(Role::Responder, Arc::new(TrustAnyIdentity), true);
                if let Ok(session) = ChannelSession::responder(
                    self.config.clone(),
                    handshake,
                    Address::from(DECRYPTOR[1]),
                    &message,
                    arrival,
                    now,
                ) {
                    let mut session = session;
                    session.set_reset_token(token(1));
                    self.sides[1].session = Some(session);
                }
            }
            Some(a) if a == DECRYPTOR[to] => {
                if let Some(session) = self.sides[to].session.as_mut() {
                    session.handle_input(now, message, &arrival);
                } else if self.sides[to].restarted {
                    // The restarted node does not know this decryptor: it answers a frame with a reset.
                    if let Some(reset) = reset_key(to).answer_unknown(default_provider(), &message)
                    {
                        assert!(
                            reset.encoded_len() < message.encoded_len(),
                            "a reset amplifies"
                        );
                        self.emit(to, reset);
                    }
                }
            }
            _ => {}
        }
    }

    /// After every step: deliveries, transmissions and events of both sides, with the checks.
    fn pump(&mut self) {
        for s in 0..2 {
            let now = self.now;
            let mut out = Vec::new();
            let mut events = Vec::new();
            {
                let side = &mut self.sides[s];
                let Some(session) = side.session.as_mut() else {
                    continue;
                };
                let blocked = side.blocked;
                let received = &mut side.received;
                session.deliver(now, |m| {
                    if blocked {
                        return Delivery::Blocked(m);
                    }
                    assert_eq!(
                        m.onward,
                        Route::from(["svc"]),
                        "delivered with another route"
                    );
                    received.push(m.payload);
                    Delivery::Delivered
                });
                while let Some(m) = session.poll_transmit() {
                    out.push(m);
                }
                while let Some(e) = session.poll_event() {
                    events.push(e);
                }
            }
            // Exactly once, in order, only what the other side's application sent.
            let (this, other) = (&self.sides[s], &self.sides[1 - s]);
            assert!(
                this.received.len() <= other.sent.len(),
                "more delivered than sent"
            );
            assert_eq!(
                this.received[..],
                other.sent[..this.received.len()],
                "delivered out of order, twice, or something never sent"
            );
            for e in events {
                let side = &mut self.sides[s];
                assert!(!side.closed, "event {e:?} after Closed");
                match e {
                    Event::Connected => {
                        let peer = side.session.as_ref().and_then(|x| x.peer()).expect("peer");
                        let expected = if s == 0 {
                            &self.vector.responder
                        } else {
                            &self.vector.initiator
                        };
                        assert_eq!(peer.identifier, expected.identifier, "wrong peer");
                    }
                    Event::Delivered(seq) => {
                        let far = self.sides[1 - s].received.len() as u64;
                        assert!(
                            seq < far,
                            "{seq} reported delivered, the far side delivered {far}"
                        );
                        let side = &mut self.sides[s];
                        assert!(side.delivered_events.insert(seq), "{seq} delivered twice");
                        assert!(!side.failed_events.contains(&seq));
                    }
                    Event::Failed(seq) => {
                        assert!(
                            !side.delivered_events.contains(&seq),
                            "{seq} delivered and failed"
                        );
                        side.failed_events.insert(seq);
                    }
                    Event::Rekeyed | Event::Undelivered(_) => {}
                    Event::Closed(reason) => {
                        if reason == SessionError::Reset {
                            assert!(
                                side.reset_arrived,
                                "closed by a reset without the peer's token"
                            );
                        }
                        side.closed = true;
                    }
                }
            }
            for m in out {
                self.emit(s, m);
            }
        }
    }

    fn run_timers(&mut self) {
        for side in &mut self.sides {
            if let Some(session) = side.session.as_mut() {
                if session.poll_timeout().is_some_and(|t| t <= self.now) {
                    session.handle_timeout(self.now);
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let vector = handshake_vector(input.u8());
    let config = SessionConfig {
        window: 1 + (input.u8() % 8) as usize,
        ..SessionConfig::default()
    };
    let handshake = vector.handshake(Role::Initiator, vector.trust_peer(Role::Initiator), true);
    let now = Instant::from_millis(1_000);
    let initiator = ChannelSession::initiator(
        config.clone(),
        handshake,
        Address::from(DECRYPTOR[0]),
        Route::from([LINK[0], LISTENER]),
        now,
    )
    .expect("initiator");
    let mut initiator = initiator;
    initiator.set_reset_token(token(0));
    let mut world = World {
        vector,
        config,
        now,
        sides: [Side::new(), Side::new()],
        network: Vec::new(),
        seen: Vec::new(),
    };
    world.sides[0].session = Some(initiator);
    world.pump();

    while !input.is_empty() {
        let op = input.u8() % 12;
        match op {
            0 => {
                if !world.network.is_empty() {
                    let p = world.network.remove(0);
                    world.arrive(p);
                }
            }
            1..=4 => {
                if world.network.is_empty() {
                    continue;
                }
                let k = input.u8() as usize % world.network.len();
                match op {
                    1 => {
                        let p = world.network.remove(k);
                        world.arrive(p);
                    }
                    2 => {
                        world.network.remove(k);
                    }
                    3 => {
                        let p = world.network[k].clone();
                        world.network.push(p);
                    }
                    _ => {
                        let payload = &mut world.network[k].message.payload;
                        let pos = input.u16() as usize;
                        let xor = input.u8();
                        if !payload.is_empty() {
                            let len = payload.len();
                            payload[pos % len] ^= xor;
                        }
                    }
                }
            }
            5 => {
                let to = (input.u8() & 1) as usize;
                let target = match input.u8() % 3 {
                    0 => DECRYPTOR[to],
                    1 => LISTENER,
                    _ => "svc",
                };
                let hop = input.u8();
                let (arrival, first) = match hop % 3 {
                    0 => (Arrival::via(Address::from(LINK[to])), LINK[to]),
                    1 => (Arrival::via(Address::from("tcp-in#evil")), "tcp-in#evil"),
                    _ => (Arrival::local(), "inbox"),
                };
                let mut ret = Route::from([first]);
                if hop & 0x80 != 0 {
                    ret = ret.append(DECRYPTOR[1 - to]);
                }
                let kind = [KIND_HANDSHAKE, KIND_FRAME, 3, KIND_RESET][(hop as usize >> 3) % 4];
                let payload = [&[kind][..], input.chunk()].concat();
                world.arrive(InFlight {
                    to,
                    message: RoutedMessage::new(Route::from([target]), ret, payload),
                    arrival,
                });
            }
            6 => {
                world.now = world.now + std::time::Duration::from_millis(u64::from(input.u16()));
                world.run_timers();
            }
            7 => {
                let s = (input.u8() & 1) as usize;
                let payload = input.chunk().to_vec();
                let now = world.now;
                let side = &mut world.sides[s];
                if let Some(session) = side.session.as_mut() {
                    let message = RoutedMessage::new(
                        Route::from(["svc"]),
                        Route::from(["inbox"]),
                        payload.clone(),
                    );
                    if let Ok(seq) = session.send(now, &message) {
                        assert_eq!(
                            seq,
                            side.sent.len() as u64,
                            "sequence numbers not consecutive"
                        );
                        side.sent.push(payload);
                    }
                }
            }
            8 => {
                let s = (input.u8() & 1) as usize;
                let now = world.now;
                if let Some(session) = world.sides[s].session.as_mut() {
                    session.close(now);
                }
            }
            9 => {
                if world.seen.is_empty() {
                    continue;
                }
                let k = input.u8() as usize % world.seen.len();
                let p = world.seen[k].clone();
                world.arrive(p);
            }
            10 => {
                let s = (input.u8() & 1) as usize;
                world.sides[s].blocked = !world.sides[s].blocked;
            }
            _ => {
                // Side `s`'s node restarts: its session is gone.
                let s = (input.u8() & 1) as usize;
                if world.sides[s].session.take().is_some() {
                    world.sides[s].restarted = true;
                }
            }
        }
        world.pump();
    }
    if std::env::var_os("LATCHKEY_FUZZ_DEBUG").is_some() {
        for (s, side) in world.sides.iter().enumerate() {
            eprintln!(
                "side {s}: sent {} received {} delivered events {} failed {} closed {} session {:?}",
                side.sent.len(),
                side.received.len(),
                side.delivered_events.len(),
                side.failed_events.len(),
                side.closed,
                side.session
            );
        }
    }
});
