//! The doorbell: a tiny node on the device, driving the core's sans-IO routed sessions
//! (`latchkey_core::route::ChannelSession`) over the framed UART.
//!
//! Addresses on the device (docs/RUNTIME.md's vocabulary):
//! * `uart0`: the UART link, the first hop of everything the device sends to the host; a frame that arrives
//!   on it gets `uart0` put in front of its return route, and arrives `via("uart0")`;
//! * the relay channel: an initiator session to the relay's listener `api` along `[uart0, api]`, with
//!   decryptor `sc-dec#…` and encryptor `sc-enc#…` (the encryptor's address exists only on the device: a
//!   message routed to it is sent through the channel, and a message out of the channel has it put in front
//!   of its return route);
//! * `relay-client#…`: the mailbox of the relay registration exchange (`latchkey_core::route::relay`), which
//!   takes only messages out of the relay channel;
//! * `api`: the device's channel listener. It takes handshakes only out of the relay channel (what the
//!   relay's forwarder `fwd:NAME` sends down it), never from the UART directly; each one starts a responder
//!   session (`sc-dec#…`/`sc-enc#…`) trusting only the configured phones;
//! * `echo`: the service, open only to messages out of a phone channel; it answers along the request's
//!   return route (which starts at the phone channel's encryptor) with `doorbell: ` + the message.

use crate::uart;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use cortex_m_semihosting::hprintln;
use latchkey_core::channel::{Handshake, Role, TrustIdentifiers};
use latchkey_core::crypto::{CryptoProvider, RandomSource};
use latchkey_core::identity::{Identifier, IdentityOptions, LocalIdentity, Vaults};
use latchkey_core::route::relay::{self, Reply};
use latchkey_core::route::{
    Address, Arrival, ChannelSession, Delivery, Event, Instant, Route, RoutedMessage,
    SessionConfig, KIND_HANDSHAKE,
};
use latchkey_core::vault::SoftwareVault;
use latchkey_core::Timestamp;

const UART: &str = "uart0";
const LISTENER: &str = "api";
const ECHO: &str = "echo";
/// The relay's registration service (`latchkey relay run`).
const RELAY_SERVICE: &str = "relay";
/// The prefix of every echo reply.
pub const REPLY_PREFIX: &[u8] = b"doorbell: ";

/// Phone channels at once (handshakes in progress included).
const MAX_PHONES: usize = 4;
/// How often the registration is refreshed (the CLI relay's lease is 30 s by default).
const REFRESH_MS: u64 = 5_000;
/// Wait before opening a new relay channel after one failed or closed.
const RECONNECT_MS: u64 = 1_000;

/// What the device was told at boot.
pub struct Config {
    pub relay: Identifier,
    pub phones: Vec<Identifier>,
    pub name: String,
}

struct RelayLink {
    session: ChannelSession,
    encryptor: Address,
    mailbox: Address,
    registered: bool,
    next_refresh: Option<Instant>,
}

struct Phone {
    session: ChannelSession,
    encryptor: Address,
    /// Message 1 that started it, while the handshake runs (a repeat of it is not a new phone).
    first: Option<Vec<u8>>,
    rejected: u64,
}

/// Counters the device reports.
#[derive(Default, Clone, Copy)]
pub struct Counters {
    /// Frames refused: failed authentication in a channel (a flipped bit), or did not decode.
    pub refused: u64,
    pub undecodable: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Echo replies sent.
    pub served: u64,
    pub phone_channels: u64,
    pub registrations: u64,
}

pub struct Device {
    provider: &'static dyn CryptoProvider,
    random: &'static dyn RandomSource,
    identity: LocalIdentity,
    boot_unix: u64,
    config: Config,
    relay: Option<RelayLink>,
    relay_rejected: u64,
    reconnect_at: Instant,
    phones: Vec<Phone>,
    deframer: uart::Deframer,
    pub counters: Counters,
}

impl Device {
    /// A new identity in a software vault (its keys come from `random`), valid from `boot_unix`.
    pub fn new(
        provider: &'static dyn CryptoProvider,
        random: &'static dyn RandomSource,
        boot_unix: u64,
        config: Config,
    ) -> Result<Self, latchkey_core::Error> {
        let vault = Arc::new(SoftwareVault::with_provider(provider));
        let identity = LocalIdentity::create_in(
            Vaults::software(vault),
            IdentityOptions::default(),
            Timestamp(boot_unix),
        )?;
        Ok(Device {
            provider,
            random,
            identity,
            boot_unix,
            config,
            relay: None,
            relay_rejected: 0,
            reconnect_at: Instant::from_millis(0),
            phones: Vec::new(),
            deframer: uart::Deframer::default(),
            counters: Counters::default(),
        })
    }

    pub fn identifier(&self) -> Identifier {
        self.identity.identifier()
    }

    /// Whether every phone channel has nothing unacknowledged in flight (all replies delivered).
    pub fn idle(&self) -> bool {
        self.phones.iter().all(|p| p.session.in_flight() == 0)
            && self
                .relay
                .as_ref()
                .is_none_or(|r| r.session.in_flight() == 0)
    }

    fn unique(&self, prefix: &str) -> Address {
        let mut b = [0u8; 8];
        let _ = self.random.fill(&mut b);
        let mut s = String::with_capacity(prefix.len() + 17);
        s.push_str(prefix);
        s.push('#');
        for x in b {
            s.push_str(&format!("{x:02x}"));
        }
        Address::new(s).expect("a short address")
    }

    fn handshake(&self, now: Instant, role: Role, trust: &[Identifier]) -> Option<Handshake> {
        let wall = Timestamp(self.boot_unix + now.as_millis() / 1000);
        let config = self.identity.handshake_config_with_provider(
            self.provider,
            Arc::new(TrustIdentifiers::new(trust.iter().copied())),
            wall,
        );
        match Handshake::new(config, role) {
            Ok(h) => Some(h),
            Err(e) => {
                hprintln!("handshake could not start: {}", e);
                None
            }
        }
    }

    /// The earliest timer of any session or of the device itself.
    pub fn next_timer(&self) -> Instant {
        let mut next = Instant::from_millis(u64::MAX);
        if let Some(r) = &self.relay {
            next = next.min(r.session.poll_timeout().unwrap_or(next));
            if let Some(at) = r.next_refresh {
                next = next.min(at);
            }
        } else {
            next = next.min(self.reconnect_at);
        }
        for p in &self.phones {
            next = next.min(p.session.poll_timeout().unwrap_or(next));
        }
        next
    }

    /// Takes the UART's bytes, runs the timers that are due, and sends what that produced.
    pub fn poll(&mut self, now: Instant) {
        let mut frames = Vec::new();
        let deframer = &mut self.deframer;
        uart::receive(|b| {
            if let Some(frame) = deframer.push(b) {
                frames.push(frame);
            }
        });
        for frame in frames {
            self.on_frame(now, frame);
        }
        if self.relay.is_none() && now >= self.reconnect_at {
            self.open_relay_channel(now);
        }
        if let Some(r) = &mut self.relay {
            if r.session.poll_timeout().is_some_and(|t| t <= now) {
                r.session.handle_timeout(now);
            }
            if r.next_refresh.is_some_and(|t| t <= now) {
                self.register(now);
            }
        }
        for p in &mut self.phones {
            if p.session.poll_timeout().is_some_and(|t| t <= now) {
                p.session.handle_timeout(now);
            }
        }
        self.pump(now);
    }

    fn open_relay_channel(&mut self, now: Instant) {
        let relay_id = self.config.relay;
        let Some(handshake) = self.handshake(now, Role::Initiator, &[relay_id]) else {
            self.reconnect_at = now + core::time::Duration::from_millis(RECONNECT_MS);
            return;
        };
        let me = self.unique("sc-dec");
        let route = Route::from_addresses([Address::from(UART), Address::from(LISTENER)]);
        match ChannelSession::initiator(SessionConfig::default(), handshake, me, route, now) {
            Ok(session) => {
                hprintln!(
                    "relay: opening a channel to the relay's listener along [{}, {}]",
                    UART,
                    LISTENER
                );
                self.relay_rejected = 0;
                self.relay = Some(RelayLink {
                    session,
                    encryptor: self.unique("sc-enc"),
                    mailbox: self.unique("relay-client"),
                    registered: false,
                    next_refresh: None,
                });
            }
            Err(e) => {
                hprintln!("relay: cannot start the channel: {}", e);
                self.reconnect_at = now + core::time::Duration::from_millis(RECONNECT_MS);
            }
        }
    }

    /// Sends (or refreshes) the registration of our name through the relay channel.
    fn register(&mut self, now: Instant) {
        let Some(r) = &mut self.relay else { return };
        r.next_refresh = Some(now + core::time::Duration::from_millis(REFRESH_MS));
        let Ok(request) = relay::request(
            Address::from(RELAY_SERVICE),
            r.mailbox.clone(),
            &self.config.name,
        ) else {
            hprintln!("relay: {:?} is not a valid name", self.config.name);
            return;
        };
        if let Err(e) = r.session.send(now, &request) {
            hprintln!("relay: registration not sent: {}", e);
        }
    }

    /// A frame from the UART: a routed message for one of our decryptors (only the relay channel's is
    /// reachable from the link).
    fn on_frame(&mut self, now: Instant, frame: Vec<u8>) {
        self.counters.frames_in += 1;
        self.counters.bytes_in += frame.len() as u64;
        let mut message = match RoutedMessage::decode_vec(frame) {
            Ok(m) => m,
            Err(e) => {
                self.counters.undecodable += 1;
                self.counters.refused += 1;
                hprintln!(
                    "refused: a frame from the UART that does not decode ({}); refused so far: {}",
                    e,
                    self.counters.refused
                );
                return;
            }
        };
        let link = Address::from(UART);
        message.ret = core::mem::take(&mut message.ret).prepend(link.clone());
        let Some(r) = &mut self.relay else { return };
        if message.onward.first() != Some(r.session.address()) {
            return;
        }
        r.session.handle_input(now, message, &Arrival::via(link));
        let rejected = r.session.stats().frames_rejected;
        if rejected > self.relay_rejected {
            self.counters.refused += rejected - self.relay_rejected;
            self.relay_rejected = rejected;
            hprintln!(
                "refused: a frame on the relay channel failed authentication (tampered on the way); refused so far: {}",
                self.counters.refused
            );
        }
    }

    /// Moves messages between the sessions, the services and the UART until nothing is left to do.
    fn pump(&mut self, now: Instant) {
        for _ in 0..16 {
            let mut progress = false;
            // Phone channels: deliveries go to the echo service, frames into the relay channel.
            let mut k = 0;
            while k < self.phones.len() {
                let encryptor = self.phones[k].encryptor.clone();
                let mut delivered = Vec::new();
                self.phones[k].session.deliver(now, |mut m| {
                    if m.onward.first().map(Address::as_str) != Some(ECHO) {
                        // The phone hears "no such service" (an UNDELIVERED frame).
                        return Delivery::NoSuchDestination;
                    }
                    m.ret = core::mem::take(&mut m.ret).prepend(encryptor.clone());
                    delivered.push(m);
                    Delivery::Delivered
                });
                let peer = self.phones[k].session.peer().map(|p| p.identifier);
                for m in delivered {
                    progress = true;
                    self.echo(now, &peer, m);
                }
                while let Some(m) = self.phones[k].session.poll_transmit() {
                    progress = true;
                    self.route(now, m);
                }
                let mut closed = false;
                while let Some(event) = self.phones[k].session.poll_event() {
                    match event {
                        Event::Connected => {
                            self.counters.phone_channels += 1;
                            self.phones[k].first = None;
                            let peer = self.phones[k].session.peer().map(|p| p.identifier);
                            hprintln!(
                                "phone: secure channel established with {}",
                                peer.map(|p| p.to_string()).unwrap_or_default()
                            );
                        }
                        Event::Closed(reason) => {
                            hprintln!("phone: channel closed: {}", reason);
                            closed = true;
                        }
                        _ => {}
                    }
                }
                let rejected = self.phones[k].session.stats().frames_rejected;
                if rejected > self.phones[k].rejected {
                    self.counters.refused += rejected - self.phones[k].rejected;
                    self.phones[k].rejected = rejected;
                    hprintln!(
                        "refused: a frame on a phone channel failed authentication; refused so far: {}",
                        self.counters.refused
                    );
                }
                if closed {
                    self.phones.swap_remove(k);
                } else {
                    k += 1;
                }
            }
            // The relay channel: deliveries to the listener, the phones' decryptors and the registration
            // mailbox; frames onto the UART.
            let Some(r) = &mut self.relay else { break };
            let known: Vec<Address> = self
                .phones
                .iter()
                .map(|p| p.session.address().clone())
                .chain([Address::from(LISTENER), r.mailbox.clone()])
                .collect();
            let encryptor = r.encryptor.clone();
            let mut delivered = Vec::new();
            r.session.deliver(now, |mut m| {
                if !m.onward.first().is_some_and(|a| known.contains(a)) {
                    return Delivery::Dropped;
                }
                m.ret = core::mem::take(&mut m.ret).prepend(encryptor.clone());
                delivered.push(m);
                Delivery::Delivered
            });
            let mut out = Vec::new();
            while let Some(m) = r.session.poll_transmit() {
                out.push(m);
            }
            let mut events = Vec::new();
            while let Some(e) = r.session.poll_event() {
                events.push(e);
            }
            for m in delivered {
                progress = true;
                self.out_of_relay_channel(now, m, &encryptor);
            }
            for m in out {
                progress = true;
                self.route(now, m);
            }
            for e in events {
                progress = true;
                self.on_relay_event(now, e);
            }
            if !progress {
                break;
            }
        }
    }

    fn on_relay_event(&mut self, now: Instant, event: Event) {
        match event {
            Event::Connected => {
                let peer = self
                    .relay
                    .as_ref()
                    .and_then(|r| r.session.peer())
                    .map(|p| p.identifier.to_string())
                    .unwrap_or_default();
                hprintln!("relay: secure channel established with {}", peer);
                self.register(now);
            }
            Event::Closed(reason) => {
                hprintln!(
                    "relay: channel closed ({}); opening a new one in {} ms",
                    reason,
                    RECONNECT_MS
                );
                // The phones' channels ran inside it: they are gone with it.
                self.relay = None;
                self.phones.clear();
                self.reconnect_at = now + core::time::Duration::from_millis(RECONNECT_MS);
            }
            _ => {}
        }
    }

    /// A message that came out of the relay channel (its return route starts at the channel's encryptor).
    fn out_of_relay_channel(&mut self, now: Instant, m: RoutedMessage, channel: &Address) {
        let Some(to) = m.onward.first().cloned() else {
            return;
        };
        let arrival = Arrival::via(channel.clone());
        if to.as_str() == LISTENER {
            self.accept(now, m, arrival);
        } else if self.relay.as_ref().is_some_and(|r| r.mailbox == to) {
            self.on_registration_reply(&m.payload);
        } else if let Some(p) = self.phones.iter_mut().find(|p| *p.session.address() == to) {
            p.session.handle_input(now, m, &arrival);
        }
    }

    /// The listener: a handshake message 1 from a phone, through the relay's forwarder.
    fn accept(&mut self, now: Instant, m1: RoutedMessage, arrival: Arrival) {
        if m1.payload.first() != Some(&KIND_HANDSHAKE) {
            return;
        }
        if self
            .phones
            .iter()
            .any(|p| p.first.as_deref() == Some(&m1.payload[..]))
        {
            // A repeat of a message 1 that a responder already answered (through the reliable relay channel).
            return;
        }
        if self.phones.len() >= MAX_PHONES {
            hprintln!(
                "listener: {} phone channels already; dropping a handshake",
                MAX_PHONES
            );
            return;
        }
        let phones = self.config.phones.clone();
        let Some(handshake) = self.handshake(now, Role::Responder, &phones) else {
            return;
        };
        let me = self.unique("sc-dec");
        let first = m1.payload.clone();
        match ChannelSession::responder(SessionConfig::default(), handshake, me, &m1, arrival, now)
        {
            Ok(session) => {
                hprintln!("listener: a phone's handshake arrived through the relay");
                self.phones.push(Phone {
                    session,
                    encryptor: self.unique("sc-enc"),
                    first: Some(first),
                    rejected: 0,
                });
            }
            Err(e) => hprintln!("listener: handshake refused: {}", e),
        }
    }

    fn on_registration_reply(&mut self, payload: &[u8]) {
        let Some(r) = &mut self.relay else { return };
        match Reply::explain(payload, &self.config.name) {
            None => {
                self.counters.registrations += 1;
                if !r.registered {
                    r.registered = true;
                    hprintln!(
                        "relay: registered as {:?} (forwarder fwd:{} leads into this channel)",
                        self.config.name,
                        self.config.name
                    );
                }
            }
            Some(why) => hprintln!("relay: registration refused: {}", why),
        }
    }

    /// The echo service: answers along the request's return route (which starts at the phone channel's
    /// encryptor, so the answer goes back into that channel and nowhere else).
    fn echo(&mut self, now: Instant, peer: &Option<Identifier>, request: RoutedMessage) {
        let mut reply = Vec::with_capacity(REPLY_PREFIX.len() + request.payload.len());
        reply.extend_from_slice(REPLY_PREFIX);
        reply.extend_from_slice(&request.payload);
        hprintln!(
            "echo: {} B from {}: {:?}",
            request.payload.len(),
            peer.map(|p| p.to_string()).unwrap_or_default(),
            String::from_utf8_lossy(&request.payload)
        );
        self.counters.served += 1;
        self.route(now, RoutedMessage::new(request.ret, Route::new(), reply));
    }

    /// Sends a message along its onward route from the device: onto the UART, or into a channel.
    fn route(&mut self, now: Instant, mut m: RoutedMessage) {
        let Some(first) = m.onward.first().cloned() else {
            return;
        };
        if first.as_str() == UART {
            m.onward.pop_front();
            match m.encode() {
                Ok(bytes) => {
                    self.counters.frames_out += 1;
                    self.counters.bytes_out += bytes.len() as u64;
                    uart::send_frame(&bytes);
                }
                Err(e) => hprintln!("uart: cannot encode a message: {}", e),
            }
            return;
        }
        let session = if let Some(r) = self.relay.as_mut().filter(|r| r.encryptor == first) {
            &mut r.session
        } else if let Some(p) = self.phones.iter_mut().find(|p| p.encryptor == first) {
            &mut p.session
        } else {
            return;
        };
        m.onward.pop_front();
        // A message not taken (window full, channel not up) counts as lost: the sender's session retransmits.
        if let Err(e) = session.send(now, &m) {
            hprintln!("channel: a message was not taken: {}", e);
        }
    }
}

/// Hex of an identifier-sized seed (`seed=` on the command line).
pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
