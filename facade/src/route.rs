//! A device behind a relay, sans-IO, over a byte stream: the std wrapper of the core's device
//! (`latchkey_core::route::device::Device`, `#![no_std]`, which firmware runs as it is) for bindings whose
//! host brings its own socket (the C ABI's `latchkey_device_*`, Python's `DeviceSession`).
//!
//! One [`DeviceSession`] owns one byte stream to a relay (a TCP connection, a UART): it opens a secure
//! channel to the relay's listener `api`, registers a name through it at the relay's service `relay`
//! (docs/RUNTIME.md, "Relays"), refreshes that registration, accepts phones' channels that the relay
//! forwards down the relay channel, delivers what phones send to the device's services, and carries the
//! replies back. When the relay channel ends (the relay restarted and reset it, or it went silent), it opens
//! a new one and registers again on its own; phones' channels are end to end and survive it. Every channel
//! re-handshakes (fresh keys every two minutes, and before the peer's proofs expire). All of that is the
//! core's; this wrapper adds the stream's framing, the facade's identities, trust and errors.
//!
//! The caller drives it (quinn-proto style):
//! * [`DeviceSession::connected`] / [`DeviceSession::disconnected`] when the stream comes up or goes down;
//! * [`DeviceSession::handle_bytes`] with every byte read from the stream;
//! * [`DeviceSession::take_output`] for the bytes to write to the stream, in order;
//! * [`DeviceSession::poll_timeout`] for when to call [`DeviceSession::handle_timeout`] next;
//! * [`DeviceSession::poll_event`] and [`DeviceSession::poll_message`] for what happened and what arrived,
//!   and [`DeviceSession::reply`] to answer a message through the channel it came out of.
//!
//! Time is a monotonic count of milliseconds chosen by the caller (any origin, never going back). Wall-clock
//! time, needed to check validity periods during handshakes, is the Unix time given at creation (or the
//! system clock's) advanced by that monotonic clock. Randomness (addresses, ephemeral keys) comes from the
//! identity's crypto provider.
//!
//! On the stream every routed message is one frame: a 4-byte big-endian length and the encoded message
//! (docs/RUNTIME.md, "Transports", TCP), exactly what `latchkey relay run` speaks.

use crate::channel::Trust;
use crate::error::{Error, ErrorCode, Result};
use crate::identity::Identity;
use latchkey_core::channel::SuiteSet;
use latchkey_core::crypto::default_provider;
use latchkey_core::route::device::{self as core_device, Device, DeviceConfig, DeviceError};
use latchkey_core::route::{Address, Instant, Route, RoutedMessage, SessionError};
use latchkey_core::Timestamp;
use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

pub use latchkey_core::route::device::{
    DeviceMessage, DeviceStats, DEVICE_LISTENER, DEVICE_MAX_FRAME,
    DEVICE_MAX_HANDSHAKES_PER_SECOND, DEVICE_MAX_MESSAGES, DEVICE_MAX_OUTPUT, RELAY_SERVICE,
};

/// What a device is told when it is created.
#[derive(Clone, Debug)]
pub struct DeviceOptions {
    /// The name to register at the relay (1..=200 bytes of UTF-8).
    pub name: String,
    /// Whom the device accepts as the relay.
    pub relay_trust: Trust,
    /// Whom the device accepts as phones (their channels, and so their messages).
    pub trust: Trust,
    /// The services messages may be addressed to (e.g. `"echo"`); anything else is dropped.
    pub services: Vec<String>,
    /// How often the registration is refreshed, in milliseconds (well inside the relay's lease; the CLI
    /// relay's is 30 s).
    pub refresh_ms: u64,
    /// Phone channels at once, handshakes in progress included.
    pub max_phones: usize,
    /// The Unix time (seconds) at the `now_ms` given to [`DeviceSession::new`]; `None` for the system clock.
    pub unix_now: Option<u64>,
}

impl DeviceOptions {
    /// Options with the defaults: refresh every 5 s, 8 phones.
    pub fn new(name: impl Into<String>, relay_trust: Trust, trust: Trust) -> Self {
        DeviceOptions {
            name: name.into(),
            relay_trust,
            trust,
            services: Vec::new(),
            refresh_ms: 5_000,
            max_phones: 8,
            unix_now: None,
        }
    }
}

/// What happened, in order ([`DeviceSession::poll_event`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceEvent {
    /// The secure channel to the relay is up (the relay's identifier).
    RelayConnected { relay: String },
    /// The relay accepted the name (once per relay channel; refreshes are silent).
    Registered { name: String },
    /// The relay refused the name (it keeps being asked at each refresh).
    RegistrationRefused { reason: String },
    /// The channel to the relay ended or could not be opened; a new one is opened on its own.
    RelayLost { reason: String },
    /// A phone's channel is up (its authenticated identifier).
    PhoneConnected { channel: u64, peer: String },
    /// A phone's channel ended (or its handshake failed).
    PhoneClosed { channel: u64, reason: String },
}

impl DeviceEvent {
    /// The facade's event for one of the core's (`None` for re-handshakes, which only count in
    /// [`DeviceStats::rekeys`]).
    fn from_core(event: core_device::DeviceEvent) -> Option<Self> {
        use core_device::DeviceEvent as E;
        Some(match event {
            E::RelayConnected { relay } => DeviceEvent::RelayConnected { relay },
            E::Registered { name } => DeviceEvent::Registered { name },
            E::RegistrationRefused { reason } => DeviceEvent::RegistrationRefused { reason },
            E::RelayLost { reason } => DeviceEvent::RelayLost { reason },
            E::PhoneConnected { channel, peer } => DeviceEvent::PhoneConnected { channel, peer },
            E::PhoneClosed { channel, reason } => DeviceEvent::PhoneClosed { channel, reason },
            E::RelayRekeyed | E::PhoneRekeyed { .. } => return None,
            _ => return None,
        })
    }

    fn into_core(self) -> core_device::DeviceEvent {
        use core_device::DeviceEvent as E;
        match self {
            DeviceEvent::RelayConnected { relay } => E::RelayConnected { relay },
            DeviceEvent::Registered { name } => E::Registered { name },
            DeviceEvent::RegistrationRefused { reason } => E::RegistrationRefused { reason },
            DeviceEvent::RelayLost { reason } => E::RelayLost { reason },
            DeviceEvent::PhoneConnected { channel, peer } => E::PhoneConnected { channel, peer },
            DeviceEvent::PhoneClosed { channel, reason } => E::PhoneClosed { channel, reason },
        }
    }
}

/// A routed message's parts, as [`decode_routed_message`] reads them and [`encode_routed_message`] takes them
/// (docs/RUNTIME.md, "Routed messages"): the onward route (addresses still to visit, the next first), the
/// return route (how an answer gets back) and the payload. For bindings and tools that inspect or build the
/// frames of a byte stream to a relay (a device's, a test's); the bytes are read by the core's `wire` module.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RoutedParts {
    pub onward: Vec<String>,
    pub ret: Vec<String>,
    pub payload: Vec<u8>,
}

impl fmt::Debug for RoutedParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The payload is not printed: it may be plaintext the user considers secret.
        f.debug_struct("RoutedParts")
            .field("onward", &self.onward)
            .field("ret", &self.ret)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

fn route_of(addresses: &[String], what: &str) -> Result<Route> {
    let mut route = Vec::with_capacity(addresses.len());
    for address in addresses {
        route
            .push(Address::new(address.clone()).map_err(|e| {
                Error::invalid_argument(format!("{what} address {address:?}: {e}"))
            })?);
    }
    Ok(Route::from_addresses(route))
}

/// Encodes a routed message (`version ‖ onward ‖ return ‖ payload`, without the stream's 4-byte length).
/// `InvalidArgument` for an address that is empty or above 255 bytes, or a route above 32 addresses.
pub fn encode_routed_message(onward: &[String], ret: &[String], payload: &[u8]) -> Result<Vec<u8>> {
    let message = RoutedMessage::new(
        route_of(onward, "onward")?,
        route_of(ret, "return")?,
        payload.to_vec(),
    );
    message
        .encode()
        .map_err(|e| Error::invalid_argument(format!("routed message: {e}")))
}

/// Decodes one routed message (without the stream's 4-byte length). `DecodeError` for an unknown version, a
/// route above 32 addresses, an empty or non-UTF-8 address, or bytes that end inside a route.
pub fn decode_routed_message(bytes: &[u8]) -> Result<RoutedParts> {
    let message = RoutedMessage::decode(bytes)?;
    let names = |route: &Route| route.iter().map(|a| a.as_str().to_owned()).collect();
    Ok(RoutedParts {
        onward: names(&message.onward),
        ret: names(&message.ret),
        payload: message.payload,
    })
}

/// The facade error for a session's failure.
pub(crate) fn session_error(e: SessionError) -> Error {
    let code = match &e {
        SessionError::Core(core) => return Error::from(core.clone()),
        SessionError::Refused(_) => ErrorCode::Refused,
        SessionError::HandshakeTimeout => ErrorCode::Timeout,
        SessionError::BadRoute(_) => ErrorCode::MalformedMessage,
        SessionError::NotEstablished => ErrorCode::InvalidState,
        SessionError::WindowFull => ErrorCode::QueueFull,
        SessionError::TooLarge { .. } => ErrorCode::MessageTooLarge,
        SessionError::Closed => ErrorCode::ChannelClosed,
        _ => ErrorCode::DeliveryFailed,
    };
    Error::new(code, e.to_string())
}

/// The facade error for a device's failure.
fn device_error(e: DeviceError) -> Error {
    match e {
        DeviceError::InvalidConfig(reason) => Error::invalid_argument(reason),
        DeviceError::AlreadyConnected => {
            Error::invalid_state("already connected: call disconnected first")
        }
        DeviceError::NotConnected => {
            Error::invalid_state("bytes from a stream that is not connected (call connected first)")
        }
        DeviceError::Malformed(e) => Error::new(
            ErrorCode::MalformedMessage,
            format!("a frame from the stream is not a routed message ({e}): drop the connection"),
        ),
        DeviceError::ChannelGone => Error::closed("the channel the message came out of"),
        DeviceError::NoReturnRoute => {
            Error::invalid_argument("the message has no return route: its sender wants no answer")
        }
        DeviceError::Session(e) => session_error(e),
        DeviceError::Core(e) => Error::from(e),
        other => Error::new(ErrorCode::InvalidState, other.to_string()),
    }
}

/// A device behind a relay over one byte stream (see the module documentation).
pub struct DeviceSession {
    device: Device,
    /// Keeps the identity's keys in the vault while the device lives (the last clone deletes them).
    _owner: Identity,
    /// Bytes read from the stream and not yet a whole frame.
    input: Vec<u8>,
    /// The framed bytes of the frame being taken by [`DeviceSession::take_output`].
    output: VecDeque<u8>,
}

impl fmt::Debug for DeviceSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceSession")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl DeviceSession {
    /// A device acting as `identity`, created at `now_ms` on the caller's monotonic clock. Nothing is sent
    /// until [`DeviceSession::connected`].
    pub fn new(identity: &Identity, options: DeviceOptions, now_ms: u64) -> Result<Self> {
        let mut config = DeviceConfig::new(options.name);
        config.services = options.services;
        config.max_phones = options.max_phones;
        config.refresh = Duration::from_millis(options.refresh_ms);
        let owner = identity.clone();
        let local = identity.local_identity()?;
        let relay_policy = options.relay_trust.policy()?;
        let phone_policy = options.trust.policy()?;
        let unix_now = options.unix_now.map_or_else(Timestamp::now, Timestamp);
        let device = Device::new(
            local,
            default_provider(),
            relay_policy,
            phone_policy,
            config,
            Instant::from_millis(now_ms),
            unix_now,
        )
        .map_err(device_error)?;
        Ok(DeviceSession {
            device,
            _owner: owner,
            input: Vec::new(),
            output: VecDeque::new(),
        })
    }

    /// The core's device this session drives.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// This device's identifier.
    pub fn identifier(&self) -> String {
        self.device.identity().identifier().to_string()
    }

    /// Whether the relay has accepted the name on the current relay channel.
    pub fn is_registered(&self) -> bool {
        self.device.is_registered()
    }

    pub fn is_connected(&self) -> bool {
        self.device.is_connected()
    }

    pub fn stats(&self) -> DeviceStats {
        self.device.stats()
    }

    /// Restricts the cipher suites phones may offer in their handshakes (both by default); a phone offering
    /// another is refused with `UnsupportedSuite`. Applies to handshakes that arrive afterwards; channels
    /// already open keep their suite. The device's own channel to the relay offers ChaChaPoly either way.
    pub fn set_accepted_suites(&mut self, suites: SuiteSet) {
        self.device.set_accepted_suites(suites);
    }

    /// The cipher suites phones may offer.
    pub fn accepted_suites(&self) -> SuiteSet {
        self.device.accepted_suites()
    }

    /// Phone channels established now.
    pub fn phone_count(&self) -> usize {
        self.device.phone_count()
    }

    /// The stream to the relay is up (a new connection). Opens the relay channel, or, when one is up,
    /// refreshes the registration at once (a relay that restarted meanwhile resets the old channel at its
    /// first frame, and a new one is opened). Fails with `InvalidState` when already connected.
    pub fn connected(&mut self, now_ms: u64) -> Result<()> {
        self.device
            .connected(Instant::from_millis(now_ms))
            .map_err(device_error)?;
        self.input.clear();
        self.output.clear();
        Ok(())
    }

    /// The stream went down: unread input and unsent output are discarded (the sessions retransmit what
    /// mattered once connected again). Idempotent.
    pub fn disconnected(&mut self, now_ms: u64) {
        self.device.disconnected(Instant::from_millis(now_ms));
        self.input.clear();
        self.output.clear();
    }

    /// Bytes read from the stream. A frame above [`DEVICE_MAX_FRAME`] (`FrameTooLarge`) or one that is not a
    /// routed message (`MalformedMessage`) means the stream is broken: the call fails and the caller should
    /// drop the connection (and call [`DeviceSession::disconnected`]). `InvalidState` when not connected.
    pub fn handle_bytes(&mut self, now_ms: u64, bytes: &[u8]) -> Result<()> {
        let now = Instant::from_millis(now_ms);
        if !self.device.is_connected() {
            return Err(device_error(DeviceError::NotConnected));
        }
        self.input.extend_from_slice(bytes);
        let mut consumed = 0;
        let mut failure = None;
        while self.input.len() - consumed >= 4 {
            let header: [u8; 4] = self.input[consumed..consumed + 4]
                .try_into()
                .expect("four bytes");
            let len = u32::from_be_bytes(header) as usize;
            if len > DEVICE_MAX_FRAME {
                failure = Some(Error::new(
                    ErrorCode::FrameTooLarge,
                    format!(
                        "frame of {len} bytes exceeds the limit of {DEVICE_MAX_FRAME}: drop the connection"
                    ),
                ));
                break;
            }
            if self.input.len() - consumed - 4 < len {
                break;
            }
            let frame = &self.input[consumed + 4..consumed + 4 + len];
            consumed += 4 + len;
            if let Err(e) = self.device.handle_frame(now, frame) {
                failure = Some(device_error(e));
                break;
            }
        }
        if failure.is_some() {
            self.input.clear();
        } else {
            self.input.drain(..consumed);
        }
        failure.map_or(Ok(()), Err)
    }

    /// Moves up to `out.len()` bytes to write to the stream into `out`, returning how many. They are taken:
    /// write all of them, in order, before taking more (or drop the connection). 0 when nothing waits or
    /// the stream is down.
    pub fn take_output(&mut self, out: &mut [u8]) -> usize {
        let mut n = 0;
        while n < out.len() {
            if self.output.is_empty() {
                let Some(frame) = self.device.poll_frame() else {
                    break;
                };
                self.output
                    .extend((frame.len() as u32).to_be_bytes().iter().copied());
                self.output.extend(frame);
            }
            let k = (out.len() - n).min(self.output.len());
            for (slot, byte) in out[n..n + k].iter_mut().zip(self.output.drain(..k)) {
                *slot = byte;
            }
            n += k;
        }
        n
    }

    /// Bytes waiting for [`DeviceSession::take_output`].
    pub fn output_len(&self) -> usize {
        self.output.len() + self.device.output_bytes() + 4 * self.device.output_frames()
    }

    /// When [`DeviceSession::handle_timeout`] must next be called (milliseconds on the caller's clock);
    /// `None` when only the stream can wake the device (it is down and nothing else is due).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.device.poll_timeout().map(Instant::as_millis)
    }

    /// Runs what is due at `now_ms`: retransmissions, keepalives, re-handshakes, the registration refresh,
    /// reopening the relay channel.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.device.handle_timeout(Instant::from_millis(now_ms));
    }

    /// The next event, in order.
    pub fn poll_event(&mut self) -> Option<DeviceEvent> {
        loop {
            if let Some(event) = DeviceEvent::from_core(self.device.poll_event()?) {
                return Some(event);
            }
        }
    }

    /// Puts back an event taken by [`DeviceSession::poll_event`] (a binding whose caller's buffer was too
    /// small for it): it is the next one again.
    pub fn unpoll_event(&mut self, event: DeviceEvent) {
        self.device.unpoll_event(event.into_core());
    }

    /// The next message a phone sent to one of the services, in order per channel. Taking one makes room
    /// for deliveries that waited.
    pub fn poll_message(&mut self) -> Option<DeviceMessage> {
        self.device.poll_message()
    }

    /// Answers `message` through the channel it came out of, along its return route (the phone's `reply_to`).
    /// Delivered once, retransmitted until acknowledged. Fails with `ChannelClosed` when that channel is gone,
    /// `QueueFull` when its send window is full (try again after [`DeviceSession::handle_timeout`] or more
    /// input), `MessageTooLarge` above the channel's payload limit, `InvalidArgument` when the message
    /// carried no return route (its sender wants no answer).
    pub fn reply(&mut self, now_ms: u64, message: &DeviceMessage, payload: &[u8]) -> Result<()> {
        self.device
            .reply(Instant::from_millis(now_ms), message, payload)
            .map_err(device_error)
    }
}

#[cfg(test)]
mod tests {
    //! The device on a virtual clock against a scripted relay (the core's responder session for the device's
    //! relay channel, the registration service answering `ok`, a forwarder `fwd:doorbell`) and a phone on the
    //! relay's side (the core's initiator session through the forwarder): registration and its refresh, a
    //! phone's messages and the device's answers exactly once under loss, duplication and reordering on the
    //! stream, the relay's restart (a stateless reset) with the phone's channel kept, timers that never storm.
    use super::*;
    use crate::identity::IdentityOptions;
    use crate::Vault;
    use latchkey_core::channel::{Handshake, Role, TrustAnyIdentity};
    use latchkey_core::identity::LocalIdentity;
    use latchkey_core::route::relay::{self, Reply};
    use latchkey_core::route::{
        Arrival, ChannelSession, Delivery, ResetKey, SessionConfig, KIND_HANDSHAKE,
    };
    use std::sync::Arc;

    fn identity() -> Identity {
        Identity::create(&Vault::new(), IdentityOptions::default(), None).unwrap()
    }

    fn device(relay: &Identity, refresh_ms: u64) -> DeviceSession {
        let mut options = DeviceOptions::new(
            "doorbell",
            Trust::Identifiers(vec![relay.identifier()]),
            Trust::AnyIdentity,
        );
        options.services = vec!["echo".into()];
        options.refresh_ms = refresh_ms;
        DeviceSession::new(&identity(), options, 0).unwrap()
    }

    /// Splits the device's output into routed messages.
    fn frames(device: &mut DeviceSession) -> Vec<RoutedMessage> {
        let mut bytes = vec![0u8; device.output_len()];
        assert_eq!(device.take_output(&mut bytes), bytes.len());
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            out.push(RoutedMessage::decode(&rest[4..4 + len]).unwrap());
            rest = &rest[4 + len..];
        }
        out
    }

    fn framed(m: &RoutedMessage) -> Vec<u8> {
        let body = m.encode().unwrap();
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend(body);
        v
    }

    const HOP: &str = "tcp-in#1";
    const ENCRYPTOR: &str = "sc-enc#relay";
    const FORWARDER: &str = "fwd:doorbell";
    const PHONE: &str = "sc-dec#phone";

    /// The relay's side: its end of the device's channel, as `latchkey relay run` runs it, and a phone.
    struct Relay {
        identity: LocalIdentity,
        session: Option<ChannelSession>,
        reset_key: ResetKey,
        /// Registration requests answered (when).
        requests: Vec<Instant>,
        /// The forwarder exists (a registration through the current channel).
        forwarder: bool,
        phone: Option<ChannelSession>,
        /// The phone's identity (its keys live as long as it does).
        phone_identity: Option<Identity>,
        /// What the phone received (the device's answers).
        inbox: Vec<Vec<u8>>,
    }

    impl Relay {
        fn new(identity: &Identity) -> Self {
            let identity = identity.local_identity().unwrap();
            let reset_key = ResetKey::derive(
                identity.vaults().secure_channel().as_ref(),
                identity.static_key(),
                default_provider(),
            )
            .unwrap();
            Relay {
                identity,
                session: None,
                reset_key,
                requests: Vec::new(),
                forwarder: false,
                phone: None,
                phone_identity: None,
                inbox: Vec::new(),
            }
        }

        /// The relay restarts: every channel and forwarder is gone (the phone, elsewhere, stays).
        fn restart(&mut self) {
            self.session = None;
            self.forwarder = false;
        }

        fn open_phone(&mut self, now: Instant, trusted: &str) {
            let owner = identity();
            let phone = owner.local_identity().unwrap();
            self.phone_identity = Some(owner);
            let policy = Arc::new(latchkey_core::channel::TrustIdentifiers::new([trusted
                .parse()
                .unwrap()]));
            let handshake = Handshake::new(
                phone.handshake_config(policy, Timestamp::now()),
                Role::Initiator,
            )
            .unwrap();
            let route = Route::from_addresses([Address::from(FORWARDER), Address::from("api")]);
            self.phone = Some(
                ChannelSession::initiator(
                    SessionConfig::default(),
                    handshake,
                    Address::from(PHONE),
                    route,
                    now,
                )
                .unwrap(),
            );
        }

        /// Takes the device's frames, moves everything on the relay's side until nothing moves, and returns
        /// the frames for the device.
        fn exchange(
            &mut self,
            now: Instant,
            from_device: Vec<RoutedMessage>,
        ) -> Vec<RoutedMessage> {
            let mut to_device = Vec::new();
            for mut m in from_device {
                m.ret = std::mem::take(&mut m.ret).prepend(Address::from(HOP));
                let arrival = Arrival::via(Address::from(HOP));
                let to = m.onward.first().unwrap().as_str().to_owned();
                match &mut self.session {
                    Some(s) if to == s.address().as_str() => s.handle_input(now, m, &arrival),
                    _ if to == DEVICE_LISTENER && m.payload.first() == Some(&KIND_HANDSHAKE) => {
                        let config = self
                            .identity
                            .handshake_config(Arc::new(TrustAnyIdentity), Timestamp::now());
                        let handshake = Handshake::new(config, Role::Responder).unwrap();
                        let me = Address::from("sc-dec#relay");
                        let mut s = ChannelSession::responder(
                            SessionConfig::default(),
                            handshake,
                            me.clone(),
                            &m,
                            arrival,
                            now,
                        )
                        .unwrap();
                        s.set_reset_token(self.reset_key.token(default_provider(), &me));
                        self.session = Some(s);
                    }
                    // A frame for a channel this relay does not know (it restarted): a stateless reset.
                    _ => to_device.extend(self.reset_key.answer_unknown(default_provider(), &m)),
                }
            }
            for _ in 0..32 {
                let mut moved = false;
                // Out of the device's channel: registrations, and the device's frames to the phone.
                if let Some(s) = &mut self.session {
                    let mut out = Vec::new();
                    s.deliver(now, |mut m| {
                        m.ret = std::mem::take(&mut m.ret).prepend(Address::from(ENCRYPTOR));
                        out.push(m);
                        Delivery::Delivered
                    });
                    for m in out {
                        moved = true;
                        match m.onward.first().unwrap().as_str() {
                            RELAY_SERVICE => {
                                assert_eq!(m.payload, b"doorbell");
                                relay::forwarder_route(&m.ret, Some(&Address::from(ENCRYPTOR)))
                                    .unwrap();
                                self.requests.push(now);
                                self.forwarder = true;
                                let mut answer = relay::answer(&m.ret, Reply::Ok);
                                answer.onward.pop_front();
                                s.send(now, &answer).unwrap();
                            }
                            PHONE => {
                                if let Some(p) = &mut self.phone {
                                    p.handle_input(now, m, &Arrival::via(Address::from(FORWARDER)));
                                }
                            }
                            other if other.starts_with("sc-dec#stranger") => {}
                            other => panic!("the device sent to {other}"),
                        }
                    }
                }
                // The phone: its answers to the inbox, its frames through the forwarder.
                if let Some(p) = &mut self.phone {
                    let inbox = &mut self.inbox;
                    p.deliver(now, |m| {
                        inbox.push(m.payload);
                        Delivery::Delivered
                    });
                    while let Some(m) = p.poll_transmit() {
                        moved = true;
                        assert_eq!(m.onward.first().unwrap().as_str(), FORWARDER);
                        let (Some(s), true) = (&mut self.session, self.forwarder) else {
                            continue; // no such name (yet): lost, the phone retransmits
                        };
                        let mut onward = relay::forward(
                            &m.onward,
                            &Route::from_addresses([Address::from(ENCRYPTOR)]),
                        );
                        onward.pop_front();
                        let _ = s.send(now, &RoutedMessage::new(onward, m.ret, m.payload));
                    }
                }
                if let Some(s) = &mut self.session {
                    while let Some(m) = s.poll_transmit() {
                        moved = true;
                        to_device.push(m);
                    }
                }
                if !moved {
                    break;
                }
            }
            to_device
                .into_iter()
                .map(|mut m| {
                    assert_eq!(m.onward.pop_front().unwrap().as_str(), HOP);
                    m
                })
                .collect()
        }

        fn due(&mut self, now: Instant) {
            for s in [&mut self.session, &mut self.phone].into_iter().flatten() {
                if s.poll_timeout().is_some_and(|t| t <= now) {
                    s.handle_timeout(now);
                }
            }
        }

        fn next(&self) -> Option<u64> {
            [&self.session, &self.phone]
                .into_iter()
                .flatten()
                .filter_map(|s| s.poll_timeout())
                .min()
                .map(Instant::as_millis)
        }
    }

    fn events(device: &mut DeviceSession) -> Vec<DeviceEvent> {
        std::iter::from_fn(|| device.poll_event()).collect()
    }

    /// What the stream does to one frame.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Fate {
        Deliver,
        Lose,
        Duplicate,
    }

    /// A deterministic stream: loses, duplicates and reorders frames from a seeded generator.
    struct Lossy(u64, u32);

    impl Lossy {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32 % 100
        }

        fn fate(&mut self) -> Fate {
            match self.next() {
                x if x < self.1 => Fate::Lose,
                x if x < 2 * self.1 => Fate::Duplicate,
                _ => Fate::Deliver,
            }
        }

        /// Applies fates, and reverses the batch's order half the time.
        fn carry(&mut self, batch: Vec<RoutedMessage>) -> Vec<RoutedMessage> {
            let mut out = Vec::new();
            for m in batch {
                match self.fate() {
                    Fate::Lose => {}
                    Fate::Duplicate => {
                        out.push(m.clone());
                        out.push(m);
                    }
                    Fate::Deliver => out.push(m),
                }
            }
            if self.1 > 0 && self.next() < 50 {
                out.reverse();
            }
            out
        }
    }

    /// Runs device and relay on the virtual clock until `until`, waking each at its own timers, every frame
    /// crossing the stream through `stream`. The device answers every message with "device: " + payload, and
    /// records it in `received`. Returns the device's wakeups.
    fn run(
        device: &mut DeviceSession,
        relay: &mut Relay,
        now: &mut u64,
        until: u64,
        stream: &mut Lossy,
        received: &mut Vec<Vec<u8>>,
    ) -> usize {
        let mut wakeups = 0;
        loop {
            while let Some(m) = device.poll_message() {
                let mut reply = b"device: ".to_vec();
                reply.extend_from_slice(m.payload());
                device.reply(*now, &m, &reply).unwrap();
                received.push(m.payload().to_vec());
            }
            let out = stream.carry(frames(device));
            let back = stream.carry(relay.exchange(Instant::from_millis(*now), out));
            if !back.is_empty() {
                let bytes: Vec<u8> = back.iter().flat_map(framed).collect();
                device.handle_bytes(*now, &bytes).unwrap();
                continue;
            }
            if device.output_len() > 0 {
                continue;
            }
            let next = [device.poll_timeout(), relay.next()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(u64::MAX);
            if next > until {
                *now = until;
                return wakeups;
            }
            assert!(next >= *now, "a timer in the past: {next} < {now}");
            *now = next;
            if device.poll_timeout() == Some(next) {
                wakeups += 1;
                device.handle_timeout(next);
            }
            relay.due(Instant::from_millis(next));
        }
    }

    #[test]
    fn registers_refreshes_and_recovers_from_loss_and_a_relay_restart_on_a_virtual_clock() {
        let relay_identity = identity();
        let mut relay = Relay::new(&relay_identity);
        let mut device = device(&relay_identity, 1_000);
        let (mut now, mut clean, mut received) = (0, Lossy(1, 0), Vec::new());
        assert_eq!(
            device.poll_timeout(),
            None,
            "nothing happens before the stream is up"
        );
        device.connected(now).unwrap();
        run(
            &mut device,
            &mut relay,
            &mut now,
            100,
            &mut clean,
            &mut received,
        );
        assert!(device.is_registered());
        assert_eq!(
            events(&mut device),
            [
                DeviceEvent::RelayConnected {
                    relay: relay_identity.identifier()
                },
                DeviceEvent::Registered {
                    name: "doorbell".into()
                }
            ]
        );

        // Ten seconds: a refresh a second, answered silently; idle timers only (no storm).
        let wakeups = run(
            &mut device,
            &mut relay,
            &mut now,
            10_100,
            &mut clean,
            &mut received,
        );
        assert_eq!(relay.requests.len(), 11, "{:?}", relay.requests);
        assert!(wakeups <= 15, "{wakeups} wakeups in 10 s");
        assert!(events(&mut device).is_empty());

        // The stream loses every frame for 3 s: the refreshes are retransmitted and arrive.
        let before = relay.requests.len();
        run(
            &mut device,
            &mut relay,
            &mut now,
            13_100,
            &mut Lossy(1, 100),
            &mut received,
        );
        run(
            &mut device,
            &mut relay,
            &mut now,
            14_100,
            &mut clean,
            &mut received,
        );
        assert!(relay.requests.len() > before);
        assert!(device.is_registered());
        assert_eq!(device.stats().relay_channels, 1);

        // The connection drops and the relay restarts (same identity, no channel): the device's first frame
        // on the new connection is reset, it opens a new channel and registers again at once.
        device.disconnected(now);
        relay.restart();
        device.connected(now).unwrap();
        let until = now + 100;
        run(
            &mut device,
            &mut relay,
            &mut now,
            until,
            &mut clean,
            &mut received,
        );
        let seen = events(&mut device);
        assert!(
            matches!(&seen[..], [DeviceEvent::RelayLost { reason }, DeviceEvent::RelayConnected { .. }, DeviceEvent::Registered { .. }] if reason.contains("reset")),
            "{seen:?}"
        );
        assert_eq!(device.stats().relay_channels, 2);
        assert!(device.is_registered());
        assert!(received.is_empty());
    }

    #[test]
    fn a_phone_is_answered_exactly_once_in_order_through_a_lossy_stream_and_a_relay_restart() {
        let relay_identity = identity();
        let mut relay = Relay::new(&relay_identity);
        let mut device = device(&relay_identity, 2_000);
        let (mut now, mut received) = (0, Vec::new());
        // 10% of frames lost, 10% duplicated, batches reordered, both ways.
        let mut stream = Lossy(7, 10);
        device.connected(now).unwrap();
        run(
            &mut device,
            &mut relay,
            &mut now,
            5_000,
            &mut stream,
            &mut received,
        );
        assert!(device.is_registered());
        relay.open_phone(Instant::from_millis(now), &device.identifier());
        let until = now + 5_000;
        run(
            &mut device,
            &mut relay,
            &mut now,
            until,
            &mut stream,
            &mut received,
        );
        assert!(relay.phone.as_ref().unwrap().is_established());
        assert_eq!(device.phone_count(), 1);

        let mut sent = Vec::new();
        for round in 0..3 {
            for i in 0..20 {
                let text = format!("ring {round}.{i}").into_bytes();
                let request = RoutedMessage::new(
                    Route::from_addresses([Address::from("echo")]),
                    Route::from_addresses([Address::from("inbox")]),
                    text.clone(),
                );
                relay
                    .phone
                    .as_mut()
                    .unwrap()
                    .send(Instant::from_millis(now), &request)
                    .unwrap();
                sent.push(text);
                let until = now + 50;
                run(
                    &mut device,
                    &mut relay,
                    &mut now,
                    until,
                    &mut stream,
                    &mut received,
                );
            }
            if round == 1 {
                // The relay restarts under the open phone channel (the phone is elsewhere and keeps it).
                device.disconnected(now);
                relay.restart();
                device.connected(now).unwrap();
            }
            let until = now + 15_000;
            run(
                &mut device,
                &mut relay,
                &mut now,
                until,
                &mut stream,
                &mut received,
            );
        }
        // Every message once, in order, and every answer once, in order.
        assert_eq!(received, sent);
        let answers: Vec<Vec<u8>> = sent
            .iter()
            .map(|t| [&b"device: "[..], t].concat())
            .collect();
        assert_eq!(relay.inbox, answers);
        let seen = events(&mut device);
        let phones = seen
            .iter()
            .filter(|e| matches!(e, DeviceEvent::PhoneConnected { .. }))
            .count();
        assert_eq!(phones, 1, "the phone's channel was kept: {seen:?}");
        assert!(!seen
            .iter()
            .any(|e| matches!(e, DeviceEvent::PhoneClosed { .. })));
        assert!(device.stats().relay_channels >= 2);
        assert!(device.stats().messages == 60);
    }

    #[test]
    fn a_burst_of_handshakes_through_the_relay_is_rate_limited_and_bounded() {
        let relay_identity = identity();
        let mut relay = Relay::new(&relay_identity);
        let mut device = device(&relay_identity, 2_000);
        let (mut now, mut clean, mut received) = (0, Lossy(1, 0), Vec::new());
        device.connected(now).unwrap();
        run(
            &mut device,
            &mut relay,
            &mut now,
            1_000,
            &mut clean,
            &mut received,
        );
        assert!(device.is_registered());
        // 60 strangers' message 1s, forwarded to the device's listener within one second.
        let stranger_owner = identity();
        let stranger = stranger_owner.local_identity().unwrap();
        for i in 0..60 {
            let config = stranger.handshake_config(Arc::new(TrustAnyIdentity), Timestamp::now());
            let mut handshake = Handshake::new(config, Role::Initiator).unwrap();
            let mut m1 = vec![KIND_HANDSHAKE];
            m1.extend(handshake.write_message().unwrap());
            let ret = Route::from_addresses([Address::new(format!("sc-dec#stranger{i}")).unwrap()]);
            let message =
                RoutedMessage::new(Route::from_addresses([Address::from("api")]), ret, m1);
            relay
                .session
                .as_mut()
                .unwrap()
                .send(Instant::from_millis(now), &message)
                .unwrap();
        }
        let until = now + 10;
        run(
            &mut device,
            &mut relay,
            &mut now,
            until,
            &mut clean,
            &mut received,
        );
        assert_eq!(
            device.stats().handshakes_dropped,
            60 - u64::from(DEVICE_MAX_HANDSHAKES_PER_SECOND)
        );
        let slots = device.device().phone_slots();
        assert!(slots <= 8, "{slots} phones");
        assert_eq!(device.phone_count(), 0);
        // The channel to the relay is unharmed.
        assert!(device.is_registered());
    }

    #[test]
    fn a_silent_relay_costs_bounded_retries_that_back_off() {
        let relay_identity = identity();
        let mut device = device(&relay_identity, 5_000);
        let mut now = 0;
        device.connected(now).unwrap();
        let (mut wakeups, mut sent, mut last) = (0, 0, None);
        // Ten minutes with nobody answering.
        while let Some(next) = device.poll_timeout() {
            if next > 600_000 {
                break;
            }
            assert!(
                last.is_none_or(|l| next > l),
                "the timer did not move on: {next}"
            );
            last = Some(next);
            now = next;
            device.handle_timeout(now);
            wakeups += 1;
            sent += frames(&mut device).len();
        }
        let lost = events(&mut device)
            .into_iter()
            .filter(
                |e| matches!(e, DeviceEvent::RelayLost { reason } if reason.contains("timed out")),
            )
            .count();
        // Each attempt: message 1 every 500 ms for 10 s; between attempts 0.5 s doubling to 8 s.
        assert!((30..=40).contains(&lost), "{lost} attempts in 10 minutes");
        assert!(wakeups < 25 * lost, "{wakeups} wakeups for {lost} attempts");
        assert!(sent <= 21 * lost, "{sent} frames for {lost} attempts");
        assert!(!device.is_registered());
    }

    /// The facade's routed-message codec (what bindings call) reproduces tests/vectors/routed.json both ways.
    #[test]
    fn routed_message_codec_reproduces_the_shared_vectors() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/routed.json");
        let vectors: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect()
        };
        let hex_of = |v: &serde_json::Value| hex::decode(v.as_str().unwrap()).unwrap();
        let valid = vectors["routed_messages"].as_array().unwrap();
        assert!(!valid.is_empty());
        for v in valid {
            let (onward, ret, payload) = (
                strings(&v["onward"]),
                strings(&v["ret"]),
                hex_of(&v["payload"]),
            );
            let encoded = encode_routed_message(&onward, &ret, &payload).unwrap();
            assert_eq!(encoded, hex_of(&v["encoded"]), "{}", v["name"]);
            let parts = decode_routed_message(&encoded).unwrap();
            assert_eq!(
                (parts.onward, parts.ret, parts.payload),
                (onward, ret, payload)
            );
        }
        for v in vectors["invalid_routed_messages"].as_array().unwrap() {
            let e = decode_routed_message(&hex_of(&v["encoded"])).unwrap_err();
            assert_eq!(e.code(), ErrorCode::DecodeError, "{}", v["name"]);
            assert!(e.to_string().contains(v["error"].as_str().unwrap()), "{e}");
        }
        let e = encode_routed_message(&[String::new()], &[], b"").unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        let e = encode_routed_message(&vec!["hop".to_owned(); 33], &[], b"").unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
    }
}
