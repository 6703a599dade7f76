//! The core's device behind a relay (`latchkey_core::route::device::Device`) on a virtual clock, against a
//! scripted relay (the core's responder session for the device's relay channel, the registration service, a
//! forwarder `fwd:doorbell`) and a phone on the relay's side (the core's initiator session through the
//! forwarder). Every session on both sides has a re-handshake factory, as the runtime's channels do.
//!
//! Checked: the device's channels re-handshake on their own (the relay channel and a phone's channel), the
//! keys change (key generation and handshake hash), and no message or answer is lost or repeated; a phone
//! whose attestation is about to expire is re-authenticated with its renewed attestation instead of being
//! closed, and a phone with nothing fresher is closed at its expiry.

use latchkey_core::channel::{
    CipherSuite, Handshake, HandshakeConfig, Role, SuiteSet, TrustAnyIdentity, TrustIdentifiers,
    TrustPolicy,
};
use latchkey_core::crypto::{default_provider, CryptoProvider};
use latchkey_core::identity::{IdentityOptions, LocalIdentity, Vaults};
use latchkey_core::route::device::{Device, DeviceConfig, DeviceError, DeviceEvent};
use latchkey_core::route::relay::{self, Reply};
use latchkey_core::route::{
    Address, Arrival, ChannelSession, Delivery, HandshakeFactory, Instant, Route, RoutedMessage,
    SessionConfig, SessionError, KIND_HANDSHAKE,
};
use latchkey_core::vault::SoftwareVault;
use latchkey_core::Timestamp;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The Unix time at virtual time 0.
const UNIX_START: u64 = 1_800_000_000;
const HOP: &str = "tcp-in#1";
const ENCRYPTOR: &str = "sc-enc#relay";
const FORWARDER: &str = "fwd:doorbell";
const PHONE: &str = "sc-dec#phone";

fn provider() -> &'static dyn CryptoProvider {
    default_provider()
}

fn identity(attestation_secs: u64) -> LocalIdentity {
    let options = IdentityOptions {
        attestation_validity_secs: attestation_secs,
        ..IdentityOptions::default()
    };
    let vault = Arc::new(SoftwareVault::with_provider(provider()));
    LocalIdentity::create_in(Vaults::software(vault), options, Timestamp(UNIX_START)).unwrap()
}

/// The relay's and the phone's wall clock: the Unix time of the virtual clock's last reading.
#[derive(Clone, Default)]
struct Wall(Arc<AtomicU64>);

impl Wall {
    fn set(&self, now_ms: u64) {
        self.0.store(now_ms / 1000, Ordering::Relaxed);
    }

    fn now(&self) -> Timestamp {
        Timestamp(UNIX_START + self.0.load(Ordering::Relaxed))
    }
}

/// A re-handshake factory for `identity` trusting anyone; with `renew`, it re-attests the static key when
/// the attestation ends within a minute (what the runtime's `renew_attestation` does).
fn factory(identity: Arc<Mutex<LocalIdentity>>, wall: Wall, renew: bool) -> HandshakeFactory {
    suite_factory(identity, wall, renew, None)
}

/// [`factory`]; with `suite`, its handshakes offer that suite in message 1 (docs/PROTOCOL.md 5.1).
fn suite_factory(
    identity: Arc<Mutex<LocalIdentity>>,
    wall: Wall,
    renew: bool,
    suite: Option<CipherSuite>,
) -> HandshakeFactory {
    Box::new(move |role| {
        let now = wall.now();
        let mut identity = identity.lock().unwrap();
        let expires = identity.channel_identity().attestation.data.expires_at;
        if renew && expires.0 <= now.0 + 60 {
            *identity = identity.reattested(now)?;
        }
        let config = identity.handshake_config_with_provider(
            provider(),
            Arc::new(TrustAnyIdentity) as Arc<dyn TrustPolicy>,
            now,
        );
        Handshake::new(offering(config, suite), role)
    })
}

fn offering(mut config: HandshakeConfig, suite: Option<CipherSuite>) -> HandshakeConfig {
    if let Some(suite) = suite {
        config.suite = suite;
        config.announce_suite = true;
    }
    config
}

/// The relay's side: its end of the device's channel, the registration service, the forwarder, a phone.
struct Relay {
    /// The timers of the relay's and the phone's sessions (the same as the device's).
    session_config: SessionConfig,
    identity: Arc<Mutex<LocalIdentity>>,
    wall: Wall,
    session: Option<ChannelSession>,
    forwarder: bool,
    phone: Option<ChannelSession>,
    phone_identity: Option<Arc<Mutex<LocalIdentity>>>,
    /// What the phone received (the device's answers), in order.
    inbox: Vec<Vec<u8>>,
    phone_rekeys: u64,
    /// The suite the phone offers (`None`: it does not announce one, as before the offer existed).
    phone_suite: Option<CipherSuite>,
    /// The link between device and relay: `(generator state, percent lost, percent duplicated)`; batches
    /// are also reversed half the time. `None`: every frame arrives once, in order.
    faults: Option<(u64, u32)>,
}

impl Relay {
    fn new(session_config: SessionConfig) -> Self {
        Relay {
            session_config,
            identity: Arc::new(Mutex::new(identity(30 * 86_400))),
            wall: Wall::default(),
            session: None,
            forwarder: false,
            phone: None,
            phone_identity: None,
            inbox: Vec::new(),
            phone_rekeys: 0,
            phone_suite: None,
            faults: None,
        }
    }

    fn identifier(&self) -> latchkey_core::identity::Identifier {
        self.identity.lock().unwrap().identifier()
    }

    /// A phone with an attestation valid for `attestation_secs` (renewed by its re-handshakes when
    /// `renew`) opens a channel to `fwd:doorbell`.
    fn open_phone(&mut self, now: Instant, attestation_secs: u64, renew: bool) {
        let phone = Arc::new(Mutex::new(identity(attestation_secs)));
        let config = phone.lock().unwrap().handshake_config_with_provider(
            provider(),
            Arc::new(TrustAnyIdentity),
            self.wall.now(),
        );
        let handshake =
            Handshake::new(offering(config, self.phone_suite), Role::Initiator).unwrap();
        let route = Route::from_addresses([Address::from(FORWARDER), Address::from("api")]);
        let mut session = ChannelSession::initiator(
            self.session_config.clone(),
            handshake,
            Address::from(PHONE),
            route,
            now,
        )
        .unwrap();
        session.set_rehandshake(suite_factory(
            phone.clone(),
            self.wall.clone(),
            renew,
            self.phone_suite,
        ));
        self.phone = Some(session);
        self.phone_identity = Some(phone);
    }

    fn phone(&mut self) -> &mut ChannelSession {
        self.phone.as_mut().unwrap()
    }

    /// Takes the device's frames, moves everything on the relay's side until nothing moves, and returns
    /// the frames for the device.
    fn exchange(&mut self, now: Instant, from_device: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        self.wall.set(now.as_millis());
        let mut to_device = Vec::new();
        for bytes in from_device {
            let mut m = RoutedMessage::decode(&bytes).unwrap();
            m.ret = std::mem::take(&mut m.ret).prepend(Address::from(HOP));
            let arrival = Arrival::via(Address::from(HOP));
            let to = m.onward.first().unwrap().as_str().to_owned();
            match &mut self.session {
                Some(s) if to == s.address().as_str() => s.handle_input(now, m, &arrival),
                _ if to == "api" && m.payload.first() == Some(&KIND_HANDSHAKE) => {
                    let config = self
                        .identity
                        .lock()
                        .unwrap()
                        .handshake_config_with_provider(
                            provider(),
                            Arc::new(TrustAnyIdentity),
                            self.wall.now(),
                        );
                    let handshake = Handshake::new(config, Role::Responder).unwrap();
                    let me = Address::from("sc-dec#relay");
                    let mut s = ChannelSession::responder(
                        self.session_config.clone(),
                        handshake,
                        me,
                        &m,
                        arrival,
                        now,
                    )
                    .unwrap();
                    s.set_rehandshake(factory(self.identity.clone(), self.wall.clone(), false));
                    self.session = Some(s);
                }
                _ => panic!("a frame for {to}, which this relay does not know"),
            }
        }
        for _ in 0..32 {
            let mut moved = false;
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
                        "relay" => {
                            assert_eq!(m.payload, b"doorbell");
                            relay::forwarder_route(&m.ret, Some(&Address::from(ENCRYPTOR)))
                                .unwrap();
                            self.forwarder = true;
                            let mut answer = relay::answer(&m.ret, Reply::Ok);
                            answer.onward.pop_front();
                            s.send(now, &answer).unwrap();
                        }
                        PHONE => {
                            // The phone reaches the device through the forwarder: what the device sends
                            // back arrives on that hop.
                            let mut m = m;
                            m.ret.pop_front();
                            m.ret = std::mem::take(&mut m.ret).prepend(Address::from(FORWARDER));
                            if let Some(p) = &mut self.phone {
                                p.handle_input(now, m, &Arrival::via(Address::from(FORWARDER)));
                            }
                        }
                        other => panic!("the device sent to {other}"),
                    }
                }
            }
            if let Some(p) = &mut self.phone {
                let inbox = &mut self.inbox;
                p.deliver(now, |m| {
                    inbox.push(m.payload);
                    Delivery::Delivered
                });
                while let Some(e) = p.poll_event() {
                    if e == latchkey_core::route::Event::Rekeyed {
                        self.phone_rekeys += 1;
                    }
                }
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
                    let mut m = m;
                    assert_eq!(m.onward.pop_front().unwrap().as_str(), HOP);
                    to_device.push(m.encode().unwrap());
                }
            }
            if !moved {
                break;
            }
        }
        to_device
    }

    /// The link's fate for a batch of frames (see `faults`).
    fn carry(&mut self, batch: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let Some((state, percent)) = &mut self.faults else {
            return batch;
        };
        let mut next = || {
            *state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (*state >> 33) as u32 % 100
        };
        let mut out = Vec::new();
        for frame in batch {
            match next() {
                x if x < *percent => {}
                x if x < 2 * *percent => {
                    out.push(frame.clone());
                    out.push(frame);
                }
                _ => out.push(frame),
            }
        }
        if next() < 50 {
            out.reverse();
        }
        out
    }

    fn due(&mut self, now: Instant) {
        self.wall.set(now.as_millis());
        for s in [&mut self.session, &mut self.phone].into_iter().flatten() {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
    }

    fn next(&self) -> Option<Instant> {
        [&self.session, &self.phone]
            .into_iter()
            .flatten()
            .filter_map(|s| s.poll_timeout())
            .min()
    }
}

/// A device trusting `relay` as its relay and anyone as a phone, with service `echo`.
fn device(relay: &Relay) -> Device {
    device_accepting(relay, SuiteSet::ALL)
}

/// [`device`], taking only the `accepted` suites from phones.
fn device_accepting(relay: &Relay, accepted: SuiteSet) -> Device {
    let mut config = DeviceConfig::new("doorbell");
    config.accepted_suites = accepted;
    config.services = vec!["echo".into()];
    config.session = relay.session_config.clone();
    Device::new(
        identity(30 * 86_400),
        provider(),
        Arc::new(TrustIdentifiers::new([relay.identifier()])),
        Arc::new(TrustAnyIdentity),
        config,
        Instant::from_millis(0),
        Timestamp(UNIX_START),
    )
    .unwrap()
}

/// Runs device and relay on the virtual clock until `until`, waking each at its own timers. The device
/// answers every message with "device: " + payload and records it in `received`.
fn run(
    device: &mut Device,
    relay: &mut Relay,
    now: &mut u64,
    until: u64,
    received: &mut Vec<Vec<u8>>,
) {
    loop {
        while let Some(m) = device.poll_message() {
            let reply = [&b"device: "[..], m.payload()].concat();
            device
                .reply(Instant::from_millis(*now), &m, &reply)
                .unwrap();
            received.push(m.payload().to_vec());
        }
        let out: Vec<_> = std::iter::from_fn(|| device.poll_frame()).collect();
        let out = relay.carry(out);
        let back = relay.exchange(Instant::from_millis(*now), out);
        let back = relay.carry(back);
        if !back.is_empty() {
            for frame in back {
                device
                    .handle_frame(Instant::from_millis(*now), &frame)
                    .unwrap();
            }
            continue;
        }
        if device.output_frames() > 0 || device.messages_waiting() > 0 {
            continue;
        }
        let next = [device.poll_timeout(), relay.next()]
            .into_iter()
            .flatten()
            .min()
            .map_or(u64::MAX, Instant::as_millis);
        if next > until {
            *now = until;
            return;
        }
        assert!(next >= *now, "a timer in the past: {next} < {now}");
        *now = next;
        let at = Instant::from_millis(next);
        if device.poll_timeout() == Some(at) {
            device.handle_timeout(at);
        }
        relay.due(at);
    }
}

fn events(device: &mut Device) -> Vec<DeviceEvent> {
    std::iter::from_fn(|| device.poll_event()).collect()
}

/// The device registers and a phone's channel comes up; returns the phone channel's number.
fn set_up(
    device: &mut Device,
    relay: &mut Relay,
    now: &mut u64,
    received: &mut Vec<Vec<u8>>,
    attestation_secs: u64,
    renew: bool,
) -> u64 {
    device.connected(Instant::from_millis(*now)).unwrap();
    run(device, relay, now, 1_000, received);
    assert!(device.is_registered());
    relay.open_phone(Instant::from_millis(*now), attestation_secs, renew);
    let until = *now + 1_000;
    run(device, relay, now, until, received);
    assert!(relay.phone().is_established());
    let seen = events(device);
    seen.iter()
        .find_map(|e| match e {
            DeviceEvent::PhoneConnected { channel, .. } => Some(*channel),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no phone connected: {seen:?}"))
}

/// The phone sends `text` to the device's echo service (answers to its inbox).
fn ring(relay: &mut Relay, now: u64, text: &[u8]) {
    let request = RoutedMessage::new(
        Route::from_addresses([Address::from("echo")]),
        Route::from_addresses([Address::from("inbox")]),
        text.to_vec(),
    );
    relay
        .phone()
        .send(Instant::from_millis(now), &request)
        .unwrap();
}

#[test]
fn device_channels_rehandshake_periodically_with_new_keys_and_nothing_lost() {
    periodic_rehandshakes(None, 8);
}

/// The same with 10% of the link's frames lost, 10% duplicated and batches reordered, both ways.
#[test]
fn device_channels_rehandshake_through_a_lossy_link_and_lose_nothing() {
    for seed in [1, 7, 42] {
        periodic_rehandshakes(Some((seed, 10)), 5);
    }
}

/// Two minutes of traffic over channels that re-handshake every 3 s (the link faulty from the first
/// message on, when given); at least `min_rekeys` re-handshakes of each channel.
fn periodic_rehandshakes(faults: Option<(u64, u32)>, min_rekeys: u64) {
    let mut relay = Relay::new(SessionConfig {
        rekey_interval: Duration::from_secs(3),
        ..SessionConfig::default()
    });
    let mut device = device(&relay);
    let (mut now, mut received) = (0, Vec::new());
    let channel = set_up(
        &mut device,
        &mut relay,
        &mut now,
        &mut received,
        86_400,
        false,
    );
    assert_eq!(device.phone_key_generation(channel), Some(0));
    assert_eq!(device.relay_key_generation(), Some(0));
    let first_hash = device.phone_handshake_hash(channel).unwrap();
    let mut hashes = vec![first_hash];
    relay.faults = faults;

    // 30 s of traffic, a message every 250 ms: about ten re-handshakes of each channel meanwhile.
    let mut sent = Vec::new();
    for i in 0..120 {
        let text = format!("ring {i}").into_bytes();
        ring(&mut relay, now, &text);
        sent.push(text);
        let until = now + 250;
        run(&mut device, &mut relay, &mut now, until, &mut received);
        let hash = device.phone_handshake_hash(channel).unwrap();
        if hashes.last() != Some(&hash) {
            hashes.push(hash);
        }
    }
    let until = now + 5_000;
    run(&mut device, &mut relay, &mut now, until, &mut received);

    // Every message once, in order, and every answer once, in order.
    assert_eq!(received, sent);
    let answers: Vec<Vec<u8>> = sent
        .iter()
        .map(|t| [&b"device: "[..], t].concat())
        .collect();
    assert_eq!(relay.inbox, answers);

    // The phone's channel re-handshook about every 3 s, each time with new keys on both ends.
    let generation = device.phone_key_generation(channel).unwrap();
    assert!(
        generation >= min_rekeys,
        "{generation} re-handshakes in 35 s ({faults:?})"
    );
    assert_eq!(relay.phone().key_generation(), generation);
    assert_eq!(relay.phone_rekeys, generation);
    assert_eq!(
        relay.phone().handshake_hash(),
        device.phone_handshake_hash(channel)
    );
    assert!(
        hashes.len() as u64 >= generation.min(min_rekeys),
        "{hashes:?}"
    );
    let mut distinct = hashes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), hashes.len(), "a key fingerprint came back");
    assert_ne!(device.phone_handshake_hash(channel), Some(first_hash));

    // The relay channel too (the device is its initiator).
    let relay_generation = device.relay_key_generation().unwrap();
    assert!(
        relay_generation >= 8,
        "{relay_generation} relay re-handshakes"
    );
    assert_eq!(
        relay.session.as_ref().unwrap().key_generation(),
        relay_generation
    );

    let seen = events(&mut device);
    let phone_rekeys = seen
        .iter()
        .filter(|e| matches!(e, DeviceEvent::PhoneRekeyed { channel: c } if *c == channel))
        .count() as u64;
    let relay_rekeys = seen
        .iter()
        .filter(|e| matches!(e, DeviceEvent::RelayRekeyed))
        .count() as u64;
    assert_eq!(phone_rekeys, generation);
    assert_eq!(relay_rekeys, relay_generation);
    assert_eq!(device.stats().rekeys, generation + relay_generation);
    assert!(
        !seen.iter().any(|e| matches!(
            e,
            DeviceEvent::PhoneClosed { .. } | DeviceEvent::RelayLost { .. }
        )),
        "{seen:?}"
    );
    assert_eq!(device.stats().relay_channels, 1);
    assert_eq!(device.stats().phone_channels, 1);
    if faults.is_none() {
        assert_eq!(device.stats().frames_rejected, 0);
    } else {
        // The faults were real: the phone and the relay had to retransmit.
        let retransmitted = relay.phone().stats().retransmissions
            + relay.session.as_ref().unwrap().stats().retransmissions;
        assert!(retransmitted > 10, "{retransmitted} retransmissions");
    }
}

#[test]
fn without_rehandshakes_the_keys_never_change() {
    let session = SessionConfig {
        rekey_interval: Duration::from_secs(3),
        ..SessionConfig::default()
    };
    let mut relay = Relay::new(session.clone());
    let mut config = DeviceConfig::new("doorbell");
    config.services = vec!["echo".into()];
    config.session = session;
    config.rehandshake = false;
    let mut device = Device::new(
        identity(30 * 86_400),
        provider(),
        Arc::new(TrustIdentifiers::new([relay.identifier()])),
        Arc::new(TrustAnyIdentity),
        config,
        Instant::from_millis(0),
        Timestamp(UNIX_START),
    )
    .unwrap();
    let (mut now, mut received) = (0, Vec::new());
    let channel = set_up(
        &mut device,
        &mut relay,
        &mut now,
        &mut received,
        86_400,
        false,
    );
    let hash = device.phone_handshake_hash(channel);
    for i in 0..40 {
        ring(&mut relay, now, format!("ring {i}").as_bytes());
        let until = now + 250;
        run(&mut device, &mut relay, &mut now, until, &mut received);
    }
    assert_eq!(received.len(), 40);
    assert_eq!(device.phone_key_generation(channel), Some(0));
    assert_eq!(device.phone_handshake_hash(channel), hash);
    assert_eq!(device.relay_key_generation(), Some(0));
    assert_eq!(device.stats().rekeys, 0);
}

/// A phone attested for 10 minutes, and half an hour of traffic (a message every 30 s); the channels'
/// periodic rekey is off (a day) unless given, so only the phone's expiry drives re-handshakes. Returns the
/// device, the relay, the phone's channel, the device's events and what it received.
fn expiring_phone(renew: bool) -> (Device, Relay, u64, Vec<DeviceEvent>, Vec<Vec<u8>>) {
    expiring_phone_with(renew, Duration::from_secs(86_400))
}

fn expiring_phone_with(
    renew: bool,
    rekey_interval: Duration,
) -> (Device, Relay, u64, Vec<DeviceEvent>, Vec<Vec<u8>>) {
    let mut relay = Relay::new(SessionConfig {
        rekey_interval,
        ..SessionConfig::default()
    });
    let mut device = device(&relay);
    let (mut now, mut received) = (0, Vec::new());
    let channel = set_up(&mut device, &mut relay, &mut now, &mut received, 600, renew);
    let mut seen = Vec::new();
    for i in 0..60 {
        if relay.phone().is_established() {
            ring(&mut relay, now, format!("ring {i}").as_bytes());
        }
        let until = now + 30_000;
        run(&mut device, &mut relay, &mut now, until, &mut received);
        seen.extend(events(&mut device));
    }
    (device, relay, channel, seen, received)
}

#[test]
fn a_phone_that_renewed_its_attestation_is_reauthenticated_instead_of_closed() {
    let (device, mut relay, channel, seen, received) = expiring_phone(true);
    // Half an hour with a 10-minute attestation: the channel outlived three of them.
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, DeviceEvent::PhoneClosed { .. })),
        "{seen:?}"
    );
    assert_eq!(received.len(), 60);
    assert_eq!(relay.inbox.len(), 60);
    let generation = device.phone_key_generation(channel).unwrap();
    // Before each expiry (at 9, 19 and 29 minutes) and never more: no periodic rekey.
    assert!((2..=3).contains(&generation), "{generation} re-handshakes");
    assert_eq!(
        seen.iter()
            .filter(|e| matches!(e, DeviceEvent::PhoneRekeyed { .. }))
            .count() as u64,
        generation
    );
    assert!(relay.phone().is_established());
    // The phone's identity now holds an attestation renewed after the first one expired.
    let phone = relay.phone_identity.as_ref().unwrap().lock().unwrap();
    assert!(phone.channel_identity().attestation.data.expires_at.0 > UNIX_START + 1_200);
}

#[test]
fn a_phone_with_nothing_fresher_is_closed_at_its_expiry() {
    let (device, _relay, channel, seen, received) = expiring_phone(false);
    let closed: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            DeviceEvent::PhoneClosed { channel: c, reason } if *c == channel => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(closed.len(), 1, "{seen:?}");
    assert!(closed[0].contains("expired"), "{}", closed[0]);
    // It was asked once before the expiry (the phone presented the same attestation again), not again.
    assert_eq!(
        seen.iter()
            .filter(|e| matches!(e, DeviceEvent::PhoneRekeyed { .. }))
            .count(),
        1,
        "{seen:?}"
    );
    // Messages up to the expiry (one every 30 s for 10 minutes) arrived; none after.
    assert!((19..=21).contains(&received.len()), "{}", received.len());
    assert_eq!(device.phone_key_generation(channel), None);
}

/// With the default periodic re-handshake (2 minutes) as well: the periodic one shortly before the expiry
/// window (at 8 minutes, when the phone does not renew yet) must not stand in for the one inside it.
#[test]
fn a_phone_that_renewed_its_attestation_is_kept_with_periodic_rehandshakes_too() {
    let (device, mut relay, channel, seen, received) =
        expiring_phone_with(true, SessionConfig::default().rekey_interval);
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, DeviceEvent::PhoneClosed { .. })),
        "{seen:?}"
    );
    assert_eq!(received.len(), 60);
    assert_eq!(relay.inbox.len(), 60);
    assert!(relay.phone().is_established());
    // Fifteen periodic ones in half an hour, and those before each expiry.
    let generation = device.phone_key_generation(channel).unwrap();
    assert!(
        (15..=20).contains(&generation),
        "{generation} re-handshakes"
    );
}

#[test]
fn bad_configurations_and_frames_are_typed_errors() {
    let relay = Relay::new(SessionConfig::default());
    let make = |config: DeviceConfig| {
        Device::new(
            identity(86_400),
            provider(),
            Arc::new(TrustIdentifiers::new([relay.identifier()])),
            Arc::new(TrustAnyIdentity),
            config,
            Instant::from_millis(0),
            Timestamp(UNIX_START),
        )
    };
    let invalid = |config: DeviceConfig, what: &str| match make(config) {
        Err(DeviceError::InvalidConfig(reason)) => assert!(reason.contains(what), "{reason}"),
        other => panic!("{what}: {other:?}"),
    };
    invalid(DeviceConfig::new(""), "not a valid relay name");
    invalid(DeviceConfig::new("x".repeat(201)), "not a valid relay name");
    let mut config = DeviceConfig::new("doorbell");
    config.services = vec!["api".into()];
    invalid(config, "the device's own address");
    let mut config = DeviceConfig::new("doorbell");
    config.services = vec![String::new()];
    invalid(config, "service");
    let mut config = DeviceConfig::new("doorbell");
    config.max_phones = 0;
    invalid(config, "max_phones");
    let mut config = DeviceConfig::new("doorbell");
    config.max_messages = 0;
    invalid(config, "max_messages");
    let mut config = DeviceConfig::new("doorbell");
    config.refresh = Duration::from_millis(99);
    invalid(config, "refresh");

    let mut device = make(DeviceConfig::new("doorbell")).unwrap();
    let now = Instant::from_millis(0);
    assert_eq!(
        device.poll_timeout(),
        None,
        "nothing to do before the link is up"
    );
    assert_eq!(
        device.handle_frame(now, b"\x01"),
        Err(DeviceError::NotConnected)
    );
    device.connected(now).unwrap();
    assert_eq!(device.connected(now), Err(DeviceError::AlreadyConnected));
    // Message 1 to the relay's listener is out at once.
    let first = device.poll_frame().expect("message 1 to the relay");
    let m1 = RoutedMessage::decode(&first).unwrap();
    assert_eq!(m1.onward, Route::from_addresses([Address::from("api")]));
    assert_eq!(m1.payload.first(), Some(&KIND_HANDSHAKE));
    assert!(matches!(
        device.handle_frame(now, b"\xff\x00"),
        Err(DeviceError::Malformed(_))
    ));
    // Down: output discarded, frames refused.
    device.disconnected(now);
    assert_eq!(device.output_frames(), 0);
    assert_eq!(
        device.handle_frame(now, &first),
        Err(DeviceError::NotConnected)
    );
}

#[test]
fn a_phone_offering_aes_gcm_gets_it_across_rehandshakes_and_a_chachapoly_only_device_refuses_it() {
    // A device accepting both suites (the default) runs the phone's AES-GCM, also in its re-handshakes.
    let mut relay = Relay::new(SessionConfig {
        rekey_interval: Duration::from_secs(3),
        ..SessionConfig::default()
    });
    relay.phone_suite = Some(CipherSuite::AesGcm);
    let mut device = device(&relay);
    let (mut now, mut received) = (0, Vec::new());
    let channel = set_up(
        &mut device,
        &mut relay,
        &mut now,
        &mut received,
        86_400,
        false,
    );
    assert_eq!(relay.phone().suite(), Some(CipherSuite::AesGcm));
    for i in 0..40 {
        ring(&mut relay, now, format!("ring {i}").as_bytes());
        let until = now + 250;
        run(&mut device, &mut relay, &mut now, until, &mut received);
    }
    assert_eq!(received.len(), 40);
    assert_eq!(relay.inbox.len(), 40);
    assert!(device.phone_key_generation(channel).unwrap() >= 2);
    assert!(relay.phone_rekeys >= 2);
    assert_eq!(relay.phone().suite(), Some(CipherSuite::AesGcm));

    // A device that accepts ChaChaPoly only refuses the offer at once: the phone's handshake ends with
    // UnsupportedSuite well before its handshake timeout, and no phone channel exists on the device.
    let mut relay = Relay::new(SessionConfig::default());
    relay.phone_suite = Some(CipherSuite::AesGcm);
    let mut device = device_accepting(&relay, SuiteSet::only(CipherSuite::ChaChaPoly));
    let (mut now, mut received) = (0, Vec::new());
    device.connected(Instant::from_millis(now)).unwrap();
    run(&mut device, &mut relay, &mut now, 1_000, &mut received);
    assert!(device.is_registered());
    relay.open_phone(Instant::from_millis(now), 86_400, false);
    // One exchange: message 1 through the forwarder, the refusal back (no timer needed).
    let until = now + 1;
    run(&mut device, &mut relay, &mut now, until, &mut received);
    assert_eq!(
        relay.phone().close_reason(),
        Some(&SessionError::Core(latchkey_core::Error::UnsupportedSuite(
            latchkey_core::channel::SUITE_AESGCM
        )))
    );
    assert_eq!(device.phone_slots(), 0);
    assert!(!events(&mut device)
        .iter()
        .any(|e| matches!(e, DeviceEvent::PhoneConnected { .. })));

    // The same device takes a phone offering ChaChaPoly.
    relay.phone_suite = Some(CipherSuite::ChaChaPoly);
    relay.open_phone(Instant::from_millis(now), 86_400, false);
    let until = now + 1_000;
    run(&mut device, &mut relay, &mut now, until, &mut received);
    assert_eq!(relay.phone().suite(), Some(CipherSuite::ChaChaPoly));
}
