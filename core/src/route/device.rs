//! A device behind a relay, sans-IO: one link to a relay (a TCP connection, a UART), a secure channel to the
//! relay's listener over it, the name registered through that channel (docs/RUNTIME.md, "Relays"), and the
//! phones' channels that the relay forwards down it. What firmware runs, and what the facade's
//! `DeviceSession` (C's `latchkey_device_*`, Python's `DeviceSession`) wraps with a byte-stream framing.
//!
//! A [`Device`] opens a channel to the relay's listener `api`, registers its name at the relay's service
//! `relay`, refreshes that registration, accepts phones' channels (responder sessions, each its own
//! end-to-end channel inside the relay channel), delivers what phones send to the device's services, and
//! carries the replies back. When the relay channel ends (the relay restarted and reset it, or it went
//! silent), it opens a new one and registers again on its own; phones' channels are end to end and survive
//! it. Every channel re-handshakes (fresh Diffie-Hellman every [`SessionConfig::rekey_interval`], and before
//! the peer's proofs expire, so a peer that renewed them is re-authenticated instead of closed).
//!
//! The caller drives it (quinn-proto style), with its own clock and no I/O here:
//! * [`Device::connected`] / [`Device::disconnected`] when the link comes up or goes down;
//! * [`Device::handle_frame`] with every routed message (encoded, one frame of the link) read from the link;
//! * [`Device::poll_frame`] for the encoded routed messages to write to the link, in order;
//! * [`Device::poll_timeout`] for when to call [`Device::handle_timeout`] next;
//! * [`Device::poll_event`] and [`Device::poll_message`] for what happened and what arrived, and
//!   [`Device::reply`] to answer a message through the channel it came out of.
//!
//! Time is the caller's monotonic [`Instant`]. Wall-clock time, needed to check validity periods during
//! handshakes, is the Unix time given at creation advanced by that monotonic clock. Randomness (addresses,
//! ephemeral keys) comes from the crypto provider the caller gives (on a microcontroller: its TRNG).

use super::relay::{self, Reply};
use super::reset::ResetKey;
use super::{
    refuse_suite_offer, Address, Arrival, ChannelSession, Delivery, Event, HandshakeFactory,
    Instant, Route, RoutedMessage, SessionConfig, SessionError, KIND_HANDSHAKE,
};
use crate::channel::{
    CipherSuite, Handshake, HandshakeConfig, PeerIdentity, Role, SuiteSet, TrustPolicy,
};
use crate::crypto::CryptoProvider;
use crate::error::Error;
use crate::identity::LocalIdentity;
use crate::Timestamp;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;

/// The relay's channel listener, and the device's own (what phones open channels to through the relay).
pub const DEVICE_LISTENER: &str = "api";
/// The relay's registration service.
pub const RELAY_SERVICE: &str = "relay";
/// Largest frame sent on the link by default (the relay's TCP default).
pub const DEVICE_MAX_FRAME: usize = 256 * 1024;
/// Bytes waiting in [`Device::poll_frame`] by default (each frame counted with 4 bytes of framing) beyond
/// which new messages are dropped (and retransmitted later by their sessions).
pub const DEVICE_MAX_OUTPUT: usize = 4 * 1024 * 1024;
/// Received messages kept for [`Device::poll_message`] by default; beyond it, deliveries wait in their
/// channel.
pub const DEVICE_MAX_MESSAGES: usize = 64;
/// Most phones' handshakes started per second by default (each costs the device Diffie-Hellman operations;
/// anyone who reaches the relay can send message 1 to the device's name). The phones' retries get through
/// later.
pub const DEVICE_MAX_HANDSHAKES_PER_SECOND: u32 = 20;
/// Events kept for [`Device::poll_event`]; the oldest are dropped beyond it.
const MAX_EVENTS: usize = 256;
/// The link's address on the device (the first hop of everything sent to the relay; never on the wire).
const LINK: &str = "link";
/// Most stateless resets sent per second.
const MAX_RESETS_PER_SECOND: u32 = 100;
/// Wait before opening a new relay channel after an attempt failed: doubles from this …
const RETRY_MIN_MS: u64 = 500;
/// … up to this.
const RETRY_MAX_MS: u64 = 8_000;
/// Framing counted per frame against [`DeviceConfig::max_output`].
const FRAME_OVERHEAD: usize = 4;

/// What a device is told when it is created (besides its identity and whom it trusts).
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    /// The name to register at the relay (1..=200 bytes of UTF-8).
    pub name: String,
    /// The services messages may be addressed to (e.g. `"echo"`); anything else is answered "no such
    /// destination".
    pub services: Vec<String>,
    /// How often the registration is refreshed (well inside the relay's lease; the CLI relay's is 30 s).
    pub refresh: Duration,
    /// Phone channels at once, handshakes in progress included.
    pub max_phones: usize,
    /// Phones' handshakes started per second at most.
    pub max_handshakes_per_second: u32,
    /// Received messages kept for [`Device::poll_message`].
    pub max_messages: usize,
    /// Largest encoded routed message sent on the link.
    pub max_frame: usize,
    /// Bytes waiting in [`Device::poll_frame`] at most.
    pub max_output: usize,
    /// Timers and limits of every channel (relay and phones).
    pub session: SessionConfig,
    /// Whether channels re-handshake (periodic rekey, renewed peer proofs). On by default.
    pub rehandshake: bool,
    /// The cipher suites phones may offer (docs/PROTOCOL.md 5.1): both by default; a phone offering
    /// another is refused with `UnsupportedSuite`. The device's own channel to the relay offers ChaChaPoly.
    pub accepted_suites: SuiteSet,
}

impl DeviceConfig {
    /// The defaults: refresh every 5 s, 8 phones, the module's limits, re-handshakes on.
    pub fn new(name: impl Into<String>) -> Self {
        DeviceConfig {
            name: name.into(),
            services: Vec::new(),
            refresh: Duration::from_secs(5),
            max_phones: 8,
            max_handshakes_per_second: DEVICE_MAX_HANDSHAKES_PER_SECOND,
            max_messages: DEVICE_MAX_MESSAGES,
            max_frame: DEVICE_MAX_FRAME,
            max_output: DEVICE_MAX_OUTPUT,
            session: SessionConfig::default(),
            rehandshake: true,
            accepted_suites: SuiteSet::ALL,
        }
    }
}

/// Why a device call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// A configuration value is out of range (the reason says which).
    #[error("{0}")]
    InvalidConfig(String),
    /// [`Device::connected`] while connected.
    #[error("already connected: call disconnected first")]
    AlreadyConnected,
    /// A frame while the link is down.
    #[error("a frame from a link that is not connected (call connected first)")]
    NotConnected,
    /// A frame from the link is not a routed message: the link is broken (drop it).
    #[error("a frame from the link is not a routed message ({0})")]
    Malformed(Error),
    /// The channel a message came out of is gone.
    #[error("channel closed: the channel the message came out of")]
    ChannelGone,
    /// The message carried no return route beyond its channel: its sender wants no answer.
    #[error("the message has no return route: its sender wants no answer")]
    NoReturnRoute,
    /// The channel refused the reply (window full, too large, closed).
    #[error(transparent)]
    Session(SessionError),
    /// The identity or the crypto provider failed.
    #[error(transparent)]
    Core(#[from] Error),
}

/// What happened, in order ([`Device::poll_event`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceEvent {
    /// The secure channel to the relay is up (the relay's identifier).
    RelayConnected { relay: String },
    /// The relay accepted the name (once per relay channel; refreshes are silent).
    Registered { name: String },
    /// The relay refused the name (it keeps being asked at each refresh).
    RegistrationRefused { reason: String },
    /// The channel to the relay ended or could not be opened; a new one is opened on its own.
    RelayLost { reason: String },
    /// The relay channel re-handshook: new keys, the relay proved the same identity again.
    RelayRekeyed,
    /// A phone's channel is up (its authenticated identifier).
    PhoneConnected { channel: u64, peer: String },
    /// A phone's channel re-handshook: new keys, the phone proved the same identity again (with its
    /// current proofs, which now set the channel's end of life).
    PhoneRekeyed { channel: u64 },
    /// A phone's channel ended (or its handshake failed).
    PhoneClosed { channel: u64, reason: String },
}

/// A message a phone sent to one of the device's services.
#[derive(Clone)]
pub struct DeviceMessage {
    channel: u64,
    peer: String,
    service: String,
    payload: Vec<u8>,
    reply_route: Route,
}

impl fmt::Debug for DeviceMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceMessage")
            .field("channel", &self.channel)
            .field("peer", &self.peer)
            .field("service", &self.service)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl DeviceMessage {
    /// The phone channel it came out of.
    pub fn channel(&self) -> u64 {
        self.channel
    }

    /// The sender's identifier, authenticated by the channel.
    pub fn peer_identifier(&self) -> &str {
        &self.peer
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

/// Counters of a device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Frames that failed authentication in a channel (tampered on the way).
    pub frames_rejected: u64,
    /// Messages dropped because the link was down or its output full (their sessions retransmit).
    pub output_dropped: u64,
    /// Registration answers `ok` (first registrations and refreshes).
    pub registrations: u64,
    /// Relay channels established.
    pub relay_channels: u64,
    /// Phone channels established.
    pub phone_channels: u64,
    /// Messages handed to [`Device::poll_message`].
    pub messages: u64,
    /// Stateless resets sent for frames to decryptors this device does not know.
    pub resets_sent: u64,
    /// Phones' handshakes not started: above [`DeviceConfig::max_handshakes_per_second`].
    pub handshakes_dropped: u64,
    /// Re-handshakes completed on the relay channel and the phones' channels.
    pub rekeys: u64,
}

struct RelayLink {
    session: ChannelSession,
    /// The handshake completed (so when it ends, a new one is opened at once rather than after a backoff).
    established: bool,
    registered: bool,
    next_refresh: Option<Instant>,
    rejected: u64,
}

struct Phone {
    id: u64,
    session: ChannelSession,
    encryptor: Address,
    /// Message 1 that started it, while the handshake runs (a repeat of it is not a new phone).
    first: Option<Vec<u8>>,
    peer: Option<String>,
    rejected: u64,
}

/// The device's wall clock, shared with the channels' re-handshake factories (which run inside the
/// sessions' timers): the Unix time at creation and the seconds elapsed since on the caller's clock.
#[derive(Clone)]
struct WallClock {
    unix_at_start: u64,
    start: Instant,
    elapsed: Arc<AtomicU32>,
}

impl WallClock {
    fn advance(&self, now: Instant) {
        let secs = now.saturating_duration_since(self.start).as_secs();
        self.elapsed
            .store(u32::try_from(secs).unwrap_or(u32::MAX), Ordering::Relaxed);
    }

    fn now(&self) -> Timestamp {
        Timestamp(
            self.unix_at_start
                .saturating_add(u64::from(self.elapsed.load(Ordering::Relaxed))),
        )
    }
}

/// A device behind a relay over one link (see the module documentation).
pub struct Device {
    identity: Arc<LocalIdentity>,
    provider: &'static dyn CryptoProvider,
    relay_policy: Arc<dyn TrustPolicy>,
    phone_policy: Arc<dyn TrustPolicy>,
    config: DeviceConfig,
    clock: WallClock,
    now: Instant,
    reset_key: ResetKey,
    link: Address,
    /// The relay channel's encryptor and registration mailbox: the same for every relay channel, so the
    /// routes of phones' channels (which start at the encryptor) stay valid when the relay channel is
    /// replaced.
    relay_encryptor: Address,
    relay_mailbox: Address,
    relay: Option<RelayLink>,
    retry_at: Instant,
    retry_ms: u64,
    phones: Vec<Phone>,
    next_channel: u64,
    connected: bool,
    output: VecDeque<Vec<u8>>,
    output_bytes: usize,
    events: VecDeque<DeviceEvent>,
    messages: VecDeque<DeviceMessage>,
    resets_window: (u64, u32),
    handshakes_window: (u64, u32),
    stats: DeviceStats,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("identifier", &self.identity.identifier())
            .field("name", &self.config.name)
            .field("connected", &self.connected)
            .field("registered", &self.is_registered())
            .field("phones", &self.phones.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// A random address `prefix#<16 hex digits>`.
/// A routed channel's handshake configuration: the suite announced in message 1, ChaChaPoly offered (the
/// device keeps the suite every firmware has in hardware-free form), `accepted` taken from phones.
fn routed(mut config: HandshakeConfig, accepted: SuiteSet) -> HandshakeConfig {
    config.suite = CipherSuite::ChaChaPoly;
    config.announce_suite = true;
    config.accepted_suites = accepted;
    config
}

fn unique(provider: &dyn CryptoProvider, prefix: &str) -> Result<Address, Error> {
    let mut b = [0u8; 8];
    provider.fill_random(&mut b)?;
    let mut s = String::with_capacity(prefix.len() + 17);
    s.push_str(prefix);
    s.push('#');
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    Address::new(s)
}

impl Device {
    /// A device acting as `identity`, created at `now` on the caller's monotonic clock, when the Unix time
    /// is `unix_now`. Phones are checked with `phone_trust`, the relay with `relay_trust`; addresses and
    /// handshakes draw their randomness from `provider`. Nothing is sent until [`Device::connected`].
    pub fn new(
        identity: LocalIdentity,
        provider: &'static dyn CryptoProvider,
        relay_trust: Arc<dyn TrustPolicy>,
        phone_trust: Arc<dyn TrustPolicy>,
        mut config: DeviceConfig,
        now: Instant,
        unix_now: Timestamp,
    ) -> Result<Self, DeviceError> {
        relay::parse_name(config.name.as_bytes()).map_err(|_| {
            DeviceError::InvalidConfig(format!(
                "{:?} is not a valid relay name (1..=200 bytes of UTF-8)",
                config.name
            ))
        })?;
        let mut services = Vec::with_capacity(config.services.len());
        for service in &config.services {
            let address = Address::new(service.clone())
                .map_err(|e| DeviceError::InvalidConfig(format!("service {service:?}: {e}")))?;
            if [DEVICE_LISTENER, LINK].contains(&address.as_str()) {
                return Err(DeviceError::InvalidConfig(format!(
                    "{service:?} is the device's own address, not a service name"
                )));
            }
            services.push(address.as_str().to_string());
        }
        config.services = services;
        if config.max_phones == 0 {
            return Err(DeviceError::InvalidConfig(
                "max_phones must be at least 1".into(),
            ));
        }
        if config.max_messages == 0 {
            return Err(DeviceError::InvalidConfig(
                "max_messages must be at least 1".into(),
            ));
        }
        if config.refresh < Duration::from_millis(100) {
            return Err(DeviceError::InvalidConfig(
                "the registration refresh must be at least 100 ms".into(),
            ));
        }
        let reset_key = match ResetKey::derive(
            identity.vaults().secure_channel().as_ref(),
            identity.static_key(),
            provider,
        ) {
            Ok(key) => key,
            Err(_) => {
                let mut bytes = [0u8; 32];
                provider.fill_random(&mut bytes)?;
                ResetKey::new(bytes)
            }
        };
        Ok(Device {
            identity: Arc::new(identity),
            provider,
            relay_policy: relay_trust,
            phone_policy: phone_trust,
            config,
            clock: WallClock {
                unix_at_start: unix_now.0,
                start: now,
                elapsed: Arc::new(AtomicU32::new(0)),
            },
            now,
            reset_key,
            link: Address::from(LINK),
            relay_encryptor: unique(provider, "sc-enc")?,
            relay_mailbox: unique(provider, "relay-client")?,
            relay: None,
            retry_at: now,
            retry_ms: RETRY_MIN_MS,
            phones: Vec::new(),
            next_channel: 1,
            connected: false,
            output: VecDeque::new(),
            output_bytes: 0,
            events: VecDeque::new(),
            messages: VecDeque::new(),
            resets_window: (0, 0),
            handshakes_window: (0, 0),
            stats: DeviceStats::default(),
        })
    }

    /// This device's identity.
    pub fn identity(&self) -> &LocalIdentity {
        &self.identity
    }

    /// The cipher suites phones may offer from now on ([`DeviceConfig::accepted_suites`]): handshakes that
    /// arrive afterwards (and re-handshakes of channels opened afterwards) are checked against them; channels
    /// already open keep the suite they run.
    pub fn set_accepted_suites(&mut self, suites: SuiteSet) {
        self.config.accepted_suites = suites;
    }

    /// The cipher suites phones may offer.
    pub fn accepted_suites(&self) -> SuiteSet {
        self.config.accepted_suites
    }

    /// Whether the relay has accepted the name on the current relay channel.
    pub fn is_registered(&self) -> bool {
        self.relay.as_ref().is_some_and(|r| r.registered)
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    pub fn stats(&self) -> DeviceStats {
        self.stats
    }

    /// Phone channels established now.
    pub fn phone_count(&self) -> usize {
        self.phones.iter().filter(|p| p.peer.is_some()).count()
    }

    /// Phone channels, handshakes in progress included (at most [`DeviceConfig::max_phones`]).
    pub fn phone_slots(&self) -> usize {
        self.phones.len()
    }

    /// Whether no channel has anything unacknowledged in flight (every reply delivered).
    pub fn idle(&self) -> bool {
        self.phones.iter().all(|p| p.session.in_flight() == 0)
            && self
                .relay
                .as_ref()
                .is_none_or(|r| r.session.in_flight() == 0)
    }

    /// The key generation of a phone channel (re-handshakes completed on it), `None` when it is gone.
    pub fn phone_key_generation(&self, channel: u64) -> Option<u64> {
        self.phones
            .iter()
            .find(|p| p.id == channel)
            .map(|p| p.session.key_generation())
    }

    /// The public fingerprint (handshake hash) of a phone channel's current keys, once established.
    pub fn phone_handshake_hash(&self, channel: u64) -> Option<[u8; 32]> {
        self.phones
            .iter()
            .find(|p| p.id == channel)
            .and_then(|p| p.session.handshake_hash())
    }

    /// The key generation of the relay channel, `None` when there is none.
    pub fn relay_key_generation(&self) -> Option<u64> {
        self.relay.as_ref().map(|r| r.session.key_generation())
    }

    fn tick(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.clock.advance(self.now);
        self.now
    }

    fn policy(&self, role: Role) -> Arc<dyn TrustPolicy> {
        match role {
            Role::Initiator => self.relay_policy.clone(),
            Role::Responder => self.phone_policy.clone(),
        }
    }

    fn handshake(&self, role: Role) -> Result<Handshake, Error> {
        let config = self.identity.handshake_config_with_provider(
            self.provider,
            self.policy(role),
            self.clock.now(),
        );
        Handshake::new(routed(config, self.config.accepted_suites), role)
    }

    /// The re-handshake factory of a channel in `role`: the device's identity and the same trust policy as
    /// the first handshake, checked at the wall-clock time of each re-handshake.
    fn factory(&self, role: Role) -> HandshakeFactory {
        let identity = self.identity.clone();
        let provider = self.provider;
        let policy = self.policy(role);
        let clock = self.clock.clone();
        let accepted = self.config.accepted_suites;
        Box::new(move |role| {
            let config =
                identity.handshake_config_with_provider(provider, policy.clone(), clock.now());
            Handshake::new(routed(config, accepted), role)
        })
    }

    /// When `peer`'s proofs expire, on the caller's clock.
    fn peer_expiry(&self, peer: &PeerIdentity) -> Instant {
        let expires = peer
            .attestation_expires_at
            .min(peer.history.primary_key_expires_at());
        // From the creation's Unix time, not from now: the same proofs always give the same instant (a
        // re-handshake that presented nothing fresher leaves the expiry exactly where it was).
        let after_start = expires.0.saturating_sub(self.clock.unix_at_start);
        self.clock.start + Duration::from_secs(after_start)
    }

    /// The link to the relay is up (a new connection). Opens the relay channel, or, when one is up,
    /// refreshes the registration at once (a relay that restarted meanwhile resets the old channel at its
    /// first frame, and a new one is opened). [`DeviceError::AlreadyConnected`] when already connected.
    pub fn connected(&mut self, now: Instant) -> Result<(), DeviceError> {
        let now = self.tick(now);
        if self.connected {
            return Err(DeviceError::AlreadyConnected);
        }
        self.connected = true;
        self.clear_output();
        match &self.relay {
            None => self.retry_at = self.retry_at.min(now),
            Some(r) if r.session.is_established() => self.register(now),
            Some(_) => {}
        }
        self.run_timers(now);
        self.pump(now);
        Ok(())
    }

    /// The link went down: unsent output is discarded (the sessions retransmit what mattered once connected
    /// again). Idempotent.
    pub fn disconnected(&mut self, now: Instant) {
        self.tick(now);
        self.connected = false;
        self.clear_output();
    }

    fn clear_output(&mut self) {
        self.output.clear();
        self.output_bytes = 0;
    }

    /// One frame read from the link: an encoded routed message. [`DeviceError::Malformed`] when it is not
    /// one (the link is broken: drop it and call [`Device::disconnected`]); [`DeviceError::NotConnected`]
    /// when the link is down.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8]) -> Result<(), DeviceError> {
        let now = self.tick(now);
        if !self.connected {
            return Err(DeviceError::NotConnected);
        }
        self.stats.frames_in += 1;
        self.stats.bytes_in += frame.len() as u64;
        let message = RoutedMessage::decode(frame).map_err(DeviceError::Malformed)?;
        self.on_frame(now, message);
        self.pump(now);
        Ok(())
    }

    /// The next frame to write to the link (an encoded routed message), in order. Taken: write it, or drop
    /// the connection.
    pub fn poll_frame(&mut self) -> Option<Vec<u8>> {
        let frame = self.output.pop_front()?;
        self.output_bytes -= frame.len() + FRAME_OVERHEAD;
        Some(frame)
    }

    /// Frames waiting in [`Device::poll_frame`].
    pub fn output_frames(&self) -> usize {
        self.output.len()
    }

    /// Bytes of the frames waiting in [`Device::poll_frame`] (without framing).
    pub fn output_bytes(&self) -> usize {
        self.output_bytes - FRAME_OVERHEAD * self.output.len()
    }

    /// When [`Device::handle_timeout`] must next be called; `None` when only the link can wake the device
    /// (it is down and nothing else is due).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let relay = match &self.relay {
            Some(r) => [r.session.poll_timeout(), r.next_refresh],
            None if self.connected => [Some(self.retry_at), None],
            None => [None, None],
        };
        relay
            .into_iter()
            .chain(self.phones.iter().map(|p| p.session.poll_timeout()))
            .flatten()
            .min()
    }

    /// Runs what is due at `now`: retransmissions, keepalives, re-handshakes, the registration refresh,
    /// reopening the relay channel.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.tick(now);
        self.run_timers(now);
        self.pump(now);
    }

    fn run_timers(&mut self, now: Instant) {
        if self.relay.is_none() && self.connected && now >= self.retry_at {
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
    }

    /// The next event, in order.
    pub fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.events.pop_front()
    }

    /// Puts back an event taken by [`Device::poll_event`] (a binding whose caller's buffer was too small for
    /// it): it is the next one again.
    pub fn unpoll_event(&mut self, event: DeviceEvent) {
        self.events.push_front(event);
    }

    /// The next message a phone sent to one of the services, in order per channel. Taking one makes room
    /// for deliveries that waited.
    pub fn poll_message(&mut self) -> Option<DeviceMessage> {
        self.messages.pop_front()
    }

    /// Messages waiting in [`Device::poll_message`].
    pub fn messages_waiting(&self) -> usize {
        self.messages.len()
    }

    /// Answers `message` through the channel it came out of, along its return route (the phone's
    /// `reply_to`). Delivered once, retransmitted until acknowledged. [`DeviceError::ChannelGone`] when that
    /// channel is gone, [`DeviceError::Session`] when it does not take it (window full: try again after
    /// [`Device::handle_timeout`] or more input; too large), [`DeviceError::NoReturnRoute`] when the
    /// message carried no return route (its sender wants no answer).
    pub fn reply(
        &mut self,
        now: Instant,
        message: &DeviceMessage,
        payload: &[u8],
    ) -> Result<(), DeviceError> {
        let now = self.tick(now);
        let mut onward = message.reply_route.clone();
        let first = onward.pop_front().ok_or(DeviceError::NoReturnRoute)?;
        if onward.is_empty() {
            return Err(DeviceError::NoReturnRoute);
        }
        let phone = self
            .phones
            .iter_mut()
            .find(|p| p.encryptor == first && p.id == message.channel)
            .ok_or(DeviceError::ChannelGone)?;
        phone
            .session
            .send(
                now,
                &RoutedMessage::new(onward, Route::new(), payload.to_vec()),
            )
            .map_err(DeviceError::Session)?;
        self.pump(now);
        Ok(())
    }

    // Not inlined: a microcontroller's stack holds one of these frames at a time, not all of them merged.
    #[inline(never)]
    fn open_relay_channel(&mut self, now: Instant) {
        let attempt = self.handshake(Role::Initiator).and_then(|handshake| {
            let me = unique(self.provider, "sc-dec")?;
            let route = Route::from_addresses([self.link.clone(), Address::from(DEVICE_LISTENER)]);
            ChannelSession::initiator(self.config.session.clone(), handshake, me, route, now)
                .map_err(|e| match e {
                    SessionError::Core(e) => e,
                    _ => Error::InvalidState("cannot start the relay channel"),
                })
        });
        match attempt {
            Ok(mut session) => {
                session.set_reset_token(self.reset_key.token(self.provider, session.address()));
                if self.config.rehandshake {
                    session.set_rehandshake(self.factory(Role::Initiator));
                }
                self.relay = Some(RelayLink {
                    session,
                    established: false,
                    registered: false,
                    next_refresh: None,
                    rejected: 0,
                })
            }
            Err(e) => {
                self.event(DeviceEvent::RelayLost {
                    reason: format!("cannot start a channel to the relay: {e}"),
                });
                self.back_off(now);
            }
        }
    }

    fn back_off(&mut self, now: Instant) {
        self.retry_at = now + Duration::from_millis(self.retry_ms);
        self.retry_ms = (self.retry_ms * 2).min(RETRY_MAX_MS);
    }

    /// Sends (or refreshes) the registration through the relay channel.
    fn register(&mut self, now: Instant) {
        let Some(r) = &mut self.relay else { return };
        r.next_refresh = Some(now + self.config.refresh);
        let Ok(request) = relay::request(
            Address::from(RELAY_SERVICE),
            self.relay_mailbox.clone(),
            &self.config.name,
        ) else {
            return;
        };
        // Not taken (window full): the next refresh asks again.
        let _ = r.session.send(now, &request);
    }

    fn event(&mut self, event: DeviceEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// A routed message from the link.
    // Not inlined: a microcontroller's stack holds one of these frames at a time, not all of them merged.
    #[inline(never)]
    fn on_frame(&mut self, now: Instant, mut message: RoutedMessage) {
        // A message without a return route cannot be answered: a reset to it would lead nowhere.
        let answerable = !message.ret.is_empty();
        message.ret = core::mem::take(&mut message.ret).prepend(self.link.clone());
        let arrival = Arrival::via(self.link.clone());
        match &mut self.relay {
            Some(r) if message.onward.first() == Some(r.session.address()) => {
                r.session.handle_input(now, message, &arrival);
                let rejected = r.session.stats().frames_rejected;
                self.stats.frames_rejected += rejected - r.rejected;
                r.rejected = rejected;
            }
            // A frame for a relay channel this device no longer has: tell the relay to drop its end.
            _ if answerable => self.answer_unknown(now, &message),
            _ => {}
        }
    }

    // Not inlined: a microcontroller's stack holds one of these frames at a time, not all of them merged.
    #[inline(never)]
    fn answer_unknown(&mut self, now: Instant, message: &RoutedMessage) {
        let second = now.as_millis() / 1000;
        if self.resets_window.0 != second {
            self.resets_window = (second, 0);
        }
        if self.resets_window.1 >= MAX_RESETS_PER_SECOND {
            return;
        }
        if let Some(reset) = self.reset_key.answer_unknown(self.provider, message) {
            self.resets_window.1 += 1;
            self.stats.resets_sent += 1;
            self.route(now, reset);
        }
    }

    /// Moves messages between the sessions, the services and the link until nothing is left to do.
    fn pump(&mut self, now: Instant) {
        for _ in 0..16 {
            let mut progress = false;
            let mut k = 0;
            while k < self.phones.len() {
                let (closed, moved) = self.pump_phone(now, k);
                progress |= moved;
                if closed {
                    self.phones.swap_remove(k);
                } else {
                    k += 1;
                }
            }
            progress |= self.pump_relay(now);
            if !progress {
                break;
            }
        }
    }

    /// One phone channel: deliveries to the services, frames into the relay channel, events. Returns
    /// (closed, progress).
    // Not inlined: a microcontroller's stack holds one of these frames at a time, not all of them merged.
    #[inline(never)]
    fn pump_phone(&mut self, now: Instant, k: usize) -> (bool, bool) {
        let mut progress = false;
        let room = self.config.max_messages.saturating_sub(self.messages.len());
        let phone = &mut self.phones[k];
        let (id, encryptor) = (phone.id, phone.encryptor.clone());
        let peer = phone.peer.clone();
        let services = &self.config.services;
        let mut delivered = Vec::new();
        phone.session.deliver(now, |mut m| {
            let Some(service) = m.onward.first().map(|a| a.as_str().to_string()) else {
                return Delivery::Dropped;
            };
            if m.onward.len() != 1 || !services.contains(&service) {
                // The phone hears "no such service" (an UNDELIVERED frame) instead of "delivered".
                return Delivery::NoSuchDestination;
            }
            if delivered.len() >= room {
                return Delivery::Blocked(m);
            }
            m.ret = core::mem::take(&mut m.ret).prepend(encryptor.clone());
            delivered.push(DeviceMessage {
                channel: id,
                peer: peer.clone().unwrap_or_default(),
                service,
                payload: core::mem::take(&mut m.payload),
                reply_route: m.ret,
            });
            Delivery::Delivered
        });
        let out: Vec<_> = core::iter::from_fn(|| phone.session.poll_transmit()).collect();
        let events: Vec<_> = core::iter::from_fn(|| phone.session.poll_event()).collect();
        let rejected = phone.session.stats().frames_rejected;
        self.stats.frames_rejected += rejected - phone.rejected;
        phone.rejected = rejected;
        for m in delivered {
            progress = true;
            self.stats.messages += 1;
            self.messages.push_back(m);
        }
        for m in out {
            progress = true;
            self.route(now, m);
        }
        let mut closed = false;
        for e in events {
            progress = true;
            match e {
                Event::Connected => {
                    self.phones[k].first = None;
                    let Some(peer) = self.phones[k].session.peer().cloned() else {
                        continue;
                    };
                    let expiry = self.peer_expiry(&peer);
                    let phone = &mut self.phones[k];
                    phone.session.set_peer_expiry(expiry);
                    let identifier = peer.identifier.to_string();
                    phone.peer = Some(identifier.clone());
                    self.stats.phone_channels += 1;
                    self.event(DeviceEvent::PhoneConnected {
                        channel: id,
                        peer: identifier,
                    });
                }
                Event::Rekeyed => {
                    // Fresh proofs (a renewed attestation) move the channel's end of life.
                    if let Some(peer) = self.phones[k].session.peer().cloned() {
                        let expiry = self.peer_expiry(&peer);
                        self.phones[k].session.set_peer_expiry(expiry);
                    }
                    self.stats.rekeys += 1;
                    self.event(DeviceEvent::PhoneRekeyed { channel: id });
                }
                Event::Closed(reason) => {
                    closed = true;
                    self.event(DeviceEvent::PhoneClosed {
                        channel: id,
                        reason: reason.to_string(),
                    });
                }
                _ => {}
            }
        }
        (closed, progress)
    }

    /// The relay channel: deliveries (phones' handshakes, their frames, registration answers), frames onto
    /// the link, events. Returns whether anything moved.
    // Not inlined: a microcontroller's stack holds one of these frames at a time, not all of them merged.
    #[inline(never)]
    fn pump_relay(&mut self, now: Instant) -> bool {
        let Some(r) = &mut self.relay else {
            return false;
        };
        let encryptor = self.relay_encryptor.clone();
        let mut delivered = Vec::new();
        r.session.deliver(now, |mut m| {
            m.ret = core::mem::take(&mut m.ret).prepend(encryptor.clone());
            delivered.push(m);
            Delivery::Delivered
        });
        let out: Vec<_> = core::iter::from_fn(|| r.session.poll_transmit()).collect();
        let events: Vec<_> = core::iter::from_fn(|| r.session.poll_event()).collect();
        let progress = !(delivered.is_empty() && out.is_empty() && events.is_empty());
        for m in delivered {
            self.out_of_relay_channel(now, m);
        }
        for m in out {
            self.route(now, m);
        }
        for e in events {
            self.on_relay_event(now, e);
        }
        progress
    }

    // Not inlined: a microcontroller's stack holds one of these frames at a time, not all of them merged.
    #[inline(never)]
    fn on_relay_event(&mut self, now: Instant, event: Event) {
        match event {
            Event::Connected => {
                let peer = self.relay.as_ref().and_then(|r| r.session.peer()).cloned();
                let expiry = peer.as_ref().map(|p| self.peer_expiry(p));
                self.retry_ms = RETRY_MIN_MS;
                self.stats.relay_channels += 1;
                if let Some(r) = &mut self.relay {
                    r.established = true;
                    if let Some(at) = expiry {
                        r.session.set_peer_expiry(at);
                    }
                }
                let relay = peer.map(|p| p.identifier.to_string()).unwrap_or_default();
                self.event(DeviceEvent::RelayConnected { relay });
                self.register(now);
            }
            Event::Rekeyed => {
                let peer = self.relay.as_ref().and_then(|r| r.session.peer()).cloned();
                if let Some(peer) = peer {
                    let at = self.peer_expiry(&peer);
                    if let Some(r) = &mut self.relay {
                        r.session.set_peer_expiry(at);
                    }
                }
                self.stats.rekeys += 1;
                self.event(DeviceEvent::RelayRekeyed);
            }
            Event::Closed(reason) => {
                let was_up = self.relay.as_ref().is_some_and(|r| r.established);
                self.relay = None;
                self.event(DeviceEvent::RelayLost {
                    reason: reason.to_string(),
                });
                // Phones' channels are end to end: they go on through the next relay channel.
                if was_up {
                    self.retry_at = now;
                } else {
                    self.back_off(now);
                }
            }
            _ => {}
        }
    }

    /// A message that came out of the relay channel (its return route starts at the channel's encryptor).
    // Not inlined: a microcontroller's stack holds one of these frames at a time, not all of them merged.
    #[inline(never)]
    fn out_of_relay_channel(&mut self, now: Instant, m: RoutedMessage) {
        let Some(to) = m.onward.first().cloned() else {
            return;
        };
        let arrival = Arrival::via(self.relay_encryptor.clone());
        if to.as_str() == DEVICE_LISTENER {
            self.accept(now, m, arrival);
        } else if to == self.relay_mailbox {
            self.on_registration_reply(&m.payload);
        } else if let Some(p) = self.phones.iter_mut().find(|p| *p.session.address() == to) {
            p.session.handle_input(now, m, &arrival);
        } else {
            // A phone's frame for a channel this device no longer knows (restarted, or closed).
            self.answer_unknown(now, &m);
        }
    }

    /// The listener: message 1 of a phone's handshake, through the relay's forwarder.
    // Not inlined: a microcontroller's stack holds one of these frames at a time, not all of them merged.
    #[inline(never)]
    fn accept(&mut self, now: Instant, m1: RoutedMessage, arrival: Arrival) {
        if m1.payload.first() != Some(&KIND_HANDSHAKE)
            || self
                .phones
                .iter()
                .any(|p| p.first.as_deref() == Some(&m1.payload[..]))
        {
            return;
        }
        let second = now.as_millis() / 1000;
        if self.handshakes_window.0 != second {
            self.handshakes_window = (second, 0);
        }
        if self.handshakes_window.1 >= self.config.max_handshakes_per_second {
            self.stats.handshakes_dropped += 1;
            return;
        }
        self.handshakes_window.1 += 1;
        // A suite we do not accept: refused at once (rate-limited with the handshakes), no slot taken.
        if let Some(refusal) = refuse_suite_offer(
            &m1,
            &arrival,
            self.config.accepted_suites,
            &Address::from(DEVICE_LISTENER),
        ) {
            self.route(now, refusal);
            return;
        }
        if self.phones.len() >= self.config.max_phones {
            // Make room by dropping a handshake still in progress, if any (a burst of message 1s cannot lock
            // established phones out, nor hold every slot for long).
            match self.phones.iter().position(|p| p.first.is_some()) {
                Some(oldest) => {
                    let phone = self.phones.remove(oldest);
                    self.event(DeviceEvent::PhoneClosed {
                        channel: phone.id,
                        reason: "handshake dropped: too many phones at once".into(),
                    });
                }
                None => return,
            }
        }
        let Ok(handshake) = self.handshake(Role::Responder) else {
            return;
        };
        let (Ok(me), Ok(encryptor)) = (
            unique(self.provider, "sc-dec"),
            unique(self.provider, "sc-enc"),
        ) else {
            return;
        };
        let first = m1.payload.clone();
        let Ok(mut session) = ChannelSession::responder(
            self.config.session.clone(),
            handshake,
            me,
            &m1,
            arrival,
            now,
        ) else {
            return;
        };
        session.set_reset_token(self.reset_key.token(self.provider, session.address()));
        if self.config.rehandshake {
            session.set_rehandshake(self.factory(Role::Responder));
        }
        let id = self.next_channel;
        self.next_channel += 1;
        self.phones.push(Phone {
            id,
            session,
            encryptor,
            first: Some(first),
            peer: None,
            rejected: 0,
        });
    }

    fn on_registration_reply(&mut self, payload: &[u8]) {
        let Some(r) = &mut self.relay else { return };
        match Reply::explain(payload, &self.config.name) {
            None => {
                self.stats.registrations += 1;
                if !r.registered {
                    r.registered = true;
                    let name = self.config.name.clone();
                    self.event(DeviceEvent::Registered { name });
                }
            }
            Some(reason) => {
                r.registered = false;
                self.event(DeviceEvent::RegistrationRefused { reason });
            }
        }
    }

    /// Sends a message along its onward route from the device: onto the link, or into a channel.
    // Not inlined: a microcontroller's stack holds one of these frames at a time, not all of them merged.
    #[inline(never)]
    fn route(&mut self, now: Instant, mut m: RoutedMessage) {
        let Some(first) = m.onward.first().cloned() else {
            return;
        };
        if first == self.link {
            m.onward.pop_front();
            let Ok(bytes) = m.encode() else { return };
            if !self.connected
                || bytes.len() > self.config.max_frame
                || self.output_bytes + FRAME_OVERHEAD + bytes.len() > self.config.max_output
            {
                self.stats.output_dropped += 1;
                return;
            }
            self.stats.frames_out += 1;
            self.stats.bytes_out += bytes.len() as u64;
            self.output_bytes += FRAME_OVERHEAD + bytes.len();
            self.output.push_back(bytes);
            return;
        }
        let session = if first == self.relay_encryptor {
            match self.relay.as_mut() {
                Some(r) => &mut r.session,
                None => {
                    self.stats.output_dropped += 1;
                    return;
                }
            }
        } else if let Some(p) = self.phones.iter_mut().find(|p| p.encryptor == first) {
            &mut p.session
        } else {
            return;
        };
        m.onward.pop_front();
        // A message not taken (window full, channel not up) counts as lost: its sender's session retransmits.
        if session.send_owned(now, m).is_err() {
            self.stats.output_dropped += 1;
        }
    }
}
