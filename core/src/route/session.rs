//! One end of a secure channel over a route, as a sans-IO state machine (see the module documentation of
//! [`crate::route`] and docs/RUNTIME.md, "Secure channels: the protocol between two ends").

use super::admission::{
    parse_cookie_reply, with_cookie, COOKIE_LEN, KIND_COOKIE, KIND_HANDSHAKE_WITH_COOKIE,
};
use super::frame::{
    data_len, encode_data_into, parse_rehandshake, rehandshake_payload, ChannelFrame, ACK_LEN,
    DATA_HEADER_LEN, NO_SUCH_DESTINATION,
};
use super::reset::{parse_reset, tokens_match, ResetToken, RESET_TOKEN_LEN};
use super::window::{Accepted, ReceiveWindow, RttEstimator, SendWindow};
use super::{
    Arrival, Event, Instant, SessionConfig, SessionError, SessionStats, INITIAL_CREDIT, KIND_FRAME,
    KIND_HANDSHAKE, KIND_REFUSED,
};
use crate::channel::{
    CipherSuite, Decryptor, Encryptor, Handshake, PeerIdentity, Role, FRAME_HEADER_LEN,
};
use crate::crypto::TAG_LEN;
use crate::error::Error;
use crate::wire::{Address, Route, RoutedMessage, MAX_ROUTE_LEN};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

/// What the caller's delivery function did with one received message (see [`ChannelSession::deliver`]).
#[derive(Debug)]
pub enum Delivery {
    /// Handed to its destination: it counts as delivered (the cumulative ACK will say so).
    Delivered,
    /// Undeliverable for a reason the sender need not hear about (e.g. it did not decode): skipped, never
    /// retried.
    Dropped,
    /// Its destination is not there, or did not admit it (flow rules, policy): skipped, never retried, and
    /// the sender is told (an UNDELIVERED frame, so its send fails fast instead of counting as delivered).
    NoSuchDestination,
    /// The destination cannot take it now (a full queue): keep it and offer it again later. It stays
    /// acknowledged only selectively, so its sender does not retransmit it and does not count it delivered.
    Blocked(RoutedMessage),
}

/// A message waiting in [`ChannelSession::poll_transmit`]'s queue. ACKs are encrypted only when polled, so
/// their cumulative number includes the deliveries made in between.
#[derive(Debug)]
enum Out {
    Ready(RoutedMessage),
    /// An ACK along the session's route (`to: None`) or along another route (a repeated message 3).
    Ack {
        selective: Option<u64>,
        to: Option<Route>,
    },
    /// Tells the sender that its message `seq` was not delivered (ahead of the ACK that covers it).
    Undelivered {
        seq: u64,
    },
    /// A window probe: the peer answers with an ACK (its cumulative number and credit).
    Probe,
}

/// Makes a new handshake (fresh ephemeral key, the caller's current identity proofs, its trust policy and
/// clock) for a re-handshake on an established channel: [`ChannelSession::set_rehandshake`].
pub type HandshakeFactory = Box<dyn FnMut(Role) -> Result<Handshake, Error> + Send>;

/// Keys of a finished handshake: `(encryptor, decryptor, peer)` and the handshake hash.
type Keys = ((Encryptor, Decryptor, PeerIdentity), [u8; 32]);

/// A re-handshake in progress on an established channel (docs/RUNTIME.md, "Re-handshake"). Only the
/// channel's initiator starts one; the old keys stay in force until the new ones are confirmed.
enum Rekey {
    /// Initiator: message 1 sent.
    SentM1 {
        handshake: Box<Handshake>,
        m1: Vec<u8>,
        next_retry: Instant,
        deadline: Instant,
    },
    /// Initiator: message 3 sent and the new keys made; we still send under the old keys until a frame
    /// under the new ones arrives (the responder switched when it read message 3). Never abandoned: the
    /// responder may already use the new keys.
    SentM3 {
        m3: Vec<u8>,
        keys: Box<Keys>,
        next_retry: Instant,
        retries: u32,
        /// When message 3 was first sent: frames still sealed under the old keys a handshake timeout
        /// later show the responder never took it (it gave the attempt up), so the attempt ends.
        sent: Instant,
    },
    /// Responder: message 2 sent, waiting for message 3. Kept until message 3 completes it or another
    /// message 1 replaces it (no deadline: the initiator may already hold the keys and repeat message 3).
    SentM2 {
        handshake: Box<Handshake>,
        m1: Vec<u8>,
        m2: Vec<u8>,
        started: Instant,
    },
}

struct Established {
    encryptor: Encryptor,
    decryptor: Decryptor,
    peer: PeerIdentity,
    /// The Noise handshake hash of the current keys (a public fingerprint of them, not a secret).
    hash: [u8; 32],
    /// Re-handshakes completed: the current keys' generation.
    generation: u64,
    /// The decryptor of the previous generation, for frames sent before the peer switched, and when it is
    /// dropped (`None`: once a frame under the current keys shows the peer switched).
    previous: Option<(Decryptor, Option<Instant>)>,
    rekey: Option<Rekey>,
    /// When the next re-handshake is due (initiator: starts it; responder: asks for it).
    rekey_at: Instant,
    /// The peer expiry an expiry-driven re-handshake already refreshed (so a peer with nothing fresher is
    /// not asked again and again).
    expiry_refreshed: Option<Instant>,
    /// When the last re-handshake was started or asked for because frames were `TooFarAhead` (rate limit).
    recovery_at: Option<Instant>,
    /// The responder keeps the last re-handshake message 3 it accepted, to answer an exact repeat.
    final_rekey: Option<Vec<u8>>,
    /// Where the far end's decryptor is: fixed for the initiator; the responder follows authenticated
    /// frames (its last hop, the initiator's pinned decryptor, never changes).
    remote: Route,
    initiator: bool,
    /// The responder keeps the initiator's message 3, to answer an exact repeat of it.
    final_handshake: Option<Vec<u8>>,
    sending: SendWindow<RoutedMessage>,
    /// Decoded inner messages (`None`: did not decode; skipped in order).
    receiving: ReceiveWindow<Option<RoutedMessage>>,
    last_sent: Instant,
    last_heard: Instant,
    /// A delivery the destination could not take is retried at this time.
    retry_delivery: Option<Instant>,
    /// Our messages the far end reported undelivered and that its cumulative ACK has not yet passed: they
    /// end as [`Event::Undelivered`] instead of [`Event::Delivered`]. At most one window's worth.
    undelivered: Vec<u64>,
    /// The peer's credit: we send DATA numbered below this only. Only grows (ACKs may arrive reordered).
    peer_limit: u64,
    /// Round-trip estimate and retransmission timeout.
    rtt: RttEstimator,
    /// While we wait for credit or for a cumulative ACK with no retransmission pending (a lost ACK would
    /// otherwise stall us until the delivery deadline): when the next window probe goes out.
    probe_at: Option<Instant>,
    /// Probes sent since the peer's ACKs last made progress (each one doubles the interval).
    probes: u32,
}

enum State {
    /// Initiator: message 1 sent, waiting for message 2.
    AwaitM2 {
        handshake: Box<Handshake>,
        route: Route,
        m1: Vec<u8>,
        next_retry: Instant,
        deadline: Instant,
    },
    /// Initiator: message 3 sent, waiting for the responder's first frame.
    AwaitConfirmation {
        route: Route,
        m3: Vec<u8>,
        channel: Box<Established>,
        next_retry: Instant,
        deadline: Instant,
    },
    /// Responder: message 2 sent, waiting for message 3 along message 1's path.
    AwaitM3 {
        handshake: Box<Handshake>,
        path: Arrival,
        initiator: Address,
        deadline: Instant,
    },
    Established(Box<Established>),
    Closed(SessionError),
}

/// One end of a secure channel over a route (either role): handshake, reliable in-order delivery, timers.
pub struct ChannelSession {
    config: SessionConfig,
    /// `[our decryptor]`: the return route of everything we send.
    here: Route,
    state: State,
    transmits: VecDeque<Out>,
    events: VecDeque<Event>,
    stats: SessionStats,
    /// The latest time the caller gave us.
    now: Instant,
    /// Our stateless-reset token, carried in every ACK we send (see [`super::reset`]).
    reset_token: Option<ResetToken>,
    /// The peer's token, learnt from its authenticated ACKs: a reset carrying it closes the session.
    peer_reset_token: Option<ResetToken>,
    /// When the peer's attestation or identity key expires: the established session closes then.
    peer_expiry: Option<Instant>,
    /// Makes the handshakes of re-handshakes; without one the session never re-handshakes.
    factory: Option<HandshakeFactory>,
}

impl core::fmt::Debug for ChannelSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChannelSession")
            .field("here", &self.here)
            .field("state", &self.state_name())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn with_kind(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + body.len());
    v.push(kind);
    v.extend_from_slice(body);
    v
}

/// `0x02 ‖ frame(plaintext ‖ extension)`, sealed in place in the buffer that will be sent. The only
/// extension is an ACK's reset token.
fn seal(
    encryptor: &mut Encryptor,
    frame: &ChannelFrame<'_>,
    extension: &[u8],
) -> Result<Vec<u8>, Error> {
    let body_len = match frame {
        ChannelFrame::Data { inner, .. } => 9 + inner.len(),
        ChannelFrame::Ack { .. } => ACK_LEN,
        ChannelFrame::Probe { .. } => 9,
        ChannelFrame::Close => 1,
        ChannelFrame::Rekey { .. } => 9,
        ChannelFrame::Undelivered { .. } => 10,
    };
    seal_with(encryptor, body_len + extension.len(), |v| {
        frame.encode_into(v);
        v.extend_from_slice(extension);
        Ok(())
    })
}

/// `0x02 ‖ frame(DATA seq ‖ inner)`: the message kept in the send window is encoded straight into the
/// buffer that will be sent (its payload copied once) and sealed there in place.
fn seal_data(encryptor: &mut Encryptor, seq: u64, inner: &RoutedMessage) -> Result<Vec<u8>, Error> {
    seal_with(encryptor, data_len(inner), |v| {
        encode_data_into(seq, inner, v)
    })
}

/// One buffer of exactly the frame's size: the kind, room for the frame header, the plaintext `write`
/// appends (`plaintext_len` bytes), room for the tag; then encrypted in place.
fn seal_with(
    encryptor: &mut Encryptor,
    plaintext_len: usize,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), Error>,
) -> Result<Vec<u8>, Error> {
    let mut v = Vec::with_capacity(1 + FRAME_HEADER_LEN + plaintext_len + TAG_LEN);
    v.push(KIND_FRAME);
    v.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    write(&mut v)?;
    v.extend_from_slice(&[0u8; TAG_LEN]);
    encryptor.encrypt_in_place(&mut v[1..])?;
    Ok(v)
}

impl ChannelSession {
    /// Starts the initiator's handshake towards the listener at the end of `route` (e.g.
    /// `[tcp-out#…, "api"]`); `me` is our decryptor's address, where the answers must arrive. Message 1 is
    /// ready in [`ChannelSession::poll_transmit`].
    pub fn initiator(
        config: SessionConfig,
        mut handshake: Handshake,
        me: Address,
        route: Route,
        now: Instant,
    ) -> Result<Self, SessionError> {
        if route.is_empty() {
            return Err(SessionError::BadRoute("empty route"));
        }
        let m1 = with_kind(KIND_HANDSHAKE, &handshake.write_message()?);
        let mut session = ChannelSession::new(config, me, now);
        session.queue(RoutedMessage::new(
            route.clone(),
            session.here.clone(),
            m1.clone(),
        ));
        session.state = State::AwaitM2 {
            handshake: Box::new(handshake),
            route,
            m1,
            next_retry: now + session.config.handshake_retry,
            deadline: now + session.config.handshake_timeout,
        };
        Ok(session)
    }

    /// Answers message 1 as the responder; `me` is our decryptor's address. Refuses a message 1 whose return
    /// route does not start where it arrived, and pins the initiator's decryptor (its last hop). Message 2
    /// is ready in [`ChannelSession::poll_transmit`].
    pub fn responder(
        config: SessionConfig,
        mut handshake: Handshake,
        me: Address,
        m1: &RoutedMessage,
        arrival: Arrival,
        now: Instant,
    ) -> Result<Self, SessionError> {
        if m1.payload.first() != Some(&KIND_HANDSHAKE) {
            return Err(SessionError::Core(Error::Decode("not a handshake message")));
        }
        let initiator = m1
            .ret
            .last()
            .ok_or(SessionError::BadRoute("empty return route"))?
            .clone();
        if !arrival.starts(&m1.ret) {
            return Err(SessionError::BadRoute(
                "handshake return route does not start where it arrived",
            ));
        }
        handshake.read_message(&m1.payload[1..])?;
        let m2 = with_kind(KIND_HANDSHAKE, &handshake.write_message()?);
        let mut session = ChannelSession::new(config, me, now);
        session.queue(RoutedMessage::new(m1.ret.clone(), session.here.clone(), m2));
        session.state = State::AwaitM3 {
            handshake: Box::new(handshake),
            path: arrival,
            initiator,
            deadline: now + session.config.handshake_timeout,
        };
        Ok(session)
    }

    fn new(config: SessionConfig, me: Address, now: Instant) -> Self {
        ChannelSession {
            config,
            here: Route::from_addresses([me]),
            state: State::Closed(SessionError::NotEstablished),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: SessionStats::default(),
            now,
            reset_token: None,
            peer_reset_token: None,
            peer_expiry: None,
            factory: None,
        }
    }

    /// Enables re-handshakes (docs/RUNTIME.md, "Re-handshake"): every
    /// [`SessionConfig::rekey_interval`](super::SessionConfig), before the peer's proofs expire, and when
    /// frames arrive too many key epochs ahead, a new Noise handshake with fresh Diffie-Hellman replaces the
    /// keys without losing a message. `factory` makes each handshake (with the caller's current identity
    /// proofs and trust policy); the peer must prove the same identity again. Both ends need one.
    pub fn set_rehandshake(&mut self, factory: HandshakeFactory) {
        self.factory = Some(factory);
        let now = self.now;
        let config = self.config.clone();
        if let State::Established(e) = &mut self.state {
            schedule_rekey(&config, self.peer_expiry, e, now);
        }
    }

    /// Re-handshakes completed on this channel (0 until the first one).
    pub fn key_generation(&self) -> u64 {
        match &self.state {
            State::Established(e) => e.generation,
            _ => 0,
        }
    }

    /// A public fingerprint of the current keys: the Noise handshake hash that made them (it changes with
    /// every re-handshake; it reveals nothing of the keys).
    pub fn handshake_hash(&self) -> Option<[u8; 32]> {
        match &self.state {
            State::Established(e) => Some(e.hash),
            _ => None,
        }
    }

    /// **Tests only**: moves our encryptor `epochs` key epochs ahead, as if that many epochs of frames had
    /// been sent and lost (to exercise the recovery from epoch loss beyond the skip limit). Behind the
    /// `test-vectors` feature.
    #[cfg(feature = "test-vectors")]
    pub fn skip_send_epochs_for_test(&mut self, epochs: u64) -> Result<(), Error> {
        match &mut self.state {
            State::Established(e) => e.encryptor.skip_epochs_for_test(epochs),
            _ => Err(Error::InvalidState("not established")),
        }
    }

    /// Sets our stateless-reset token (`ResetKey::token` of our node's reset key and our decryptor's
    /// address): every ACK we send carries it, so the peer can later tell a reset from our node apart from
    /// a forged one. Without it the peer cannot be reset (its channel then fails by its delivery deadline).
    pub fn set_reset_token(&mut self, token: ResetToken) {
        self.reset_token = Some(token);
    }

    /// Closes the session with [`SessionError::PeerExpired`] at `at` (on the caller's clock): the caller
    /// converts the earlier of the peer's attestation expiry and identity-key expiry
    /// ([`PeerIdentity::expires_at`](crate::channel::PeerIdentity)) into its monotonic time when the
    /// handshake completes. A channel then never outlives its peer's proof.
    pub fn set_peer_expiry(&mut self, at: Instant) {
        self.peer_expiry = Some(at);
        let now = self.now;
        let config = self.config.clone();
        if let State::Established(e) = &mut self.state {
            schedule_rekey(&config, self.peer_expiry, e, now);
        }
    }

    /// Re-handshakes at the next timeout instead of waiting for the re-handshake timer: the initiator
    /// starts one, the responder asks for one. For an end whose handshake proofs changed (a renewed
    /// credential from the factory) so the peer sees them now. Does nothing without a factory, before the
    /// channel is established, or while an attempt is in flight.
    pub fn rehandshake_soon(&mut self, now: Instant) {
        if self.factory.is_none() {
            return;
        }
        if let State::Established(e) = &mut self.state {
            if matches!(e.rekey, None | Some(Rekey::SentM2 { .. })) {
                e.rekey_at = e.rekey_at.min(now);
            }
        }
    }

    /// The peer's stateless-reset token, once an authenticated ACK carried it.
    pub fn peer_reset_token(&self) -> Option<&ResetToken> {
        self.peer_reset_token.as_ref()
    }

    fn state_name(&self) -> &'static str {
        match self.state {
            State::AwaitM2 { .. } => "awaiting message 2",
            State::AwaitConfirmation { .. } => "awaiting confirmation",
            State::AwaitM3 { .. } => "awaiting message 3",
            State::Established(_) => "established",
            State::Closed(_) => "closed",
        }
    }

    fn established(
        config: &SessionConfig,
        keys: Keys,
        remote: Route,
        initiator: bool,
        now: Instant,
    ) -> Box<Established> {
        let ((encryptor, decryptor, peer), hash) = keys;
        Box::new(Established {
            encryptor,
            decryptor,
            peer,
            hash,
            generation: 0,
            previous: None,
            rekey: None,
            // The responder asks only when the initiator is late (see `schedule_rekey`).
            rekey_at: now
                + config.rekey_interval
                + if initiator {
                    core::time::Duration::ZERO
                } else {
                    config.handshake_retry
                },
            expiry_refreshed: None,
            recovery_at: None,
            final_rekey: None,
            remote,
            initiator,
            final_handshake: None,
            sending: SendWindow::new(config.window),
            receiving: ReceiveWindow::new(
                config
                    .window
                    .max(usize::try_from(INITIAL_CREDIT).unwrap_or(usize::MAX)),
            ),
            last_sent: now,
            last_heard: now,
            retry_delivery: None,
            undelivered: Vec::new(),
            peer_limit: INITIAL_CREDIT,
            rtt: RttEstimator::new(config.retransmit_after, config.min_rto, config.max_rto),
            probe_at: None,
            probes: 0,
        })
    }

    /// The channel's cipher suite: the one its keys use once established, the one its handshake runs
    /// under before (a responder knows it from message 1); `None` once closed.
    pub fn suite(&self) -> Option<CipherSuite> {
        match &self.state {
            State::AwaitM2 { handshake, .. } | State::AwaitM3 { handshake, .. } => {
                Some(handshake.suite())
            }
            State::AwaitConfirmation { channel, .. } => {
                Some(CipherSuite::of_aead(channel.encryptor.algorithm()))
            }
            State::Established(e) => Some(CipherSuite::of_aead(e.encryptor.algorithm())),
            State::Closed(_) => None,
        }
    }

    /// Our decryptor's address.
    pub fn address(&self) -> &Address {
        self.here.first().expect("set at creation")
    }

    /// The authenticated peer, once the handshake completed (also after the session closed).
    pub fn peer(&self) -> Option<&PeerIdentity> {
        match &self.state {
            State::Established(e) => Some(&e.peer),
            _ => None,
        }
    }

    /// The route frames currently take to the far end's decryptor.
    pub fn remote(&self) -> Option<&Route> {
        match &self.state {
            State::Established(e) => Some(&e.remote),
            State::AwaitConfirmation { channel, .. } => Some(&channel.remote),
            _ => None,
        }
    }

    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established(_))
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<&SessionError> {
        match &self.state {
            State::Closed(e) => Some(e),
            _ => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Whether [`ChannelSession::send`] would take a message now (established, window not full, and the
    /// peer's credit not used up).
    pub fn has_room(&self) -> bool {
        match &self.state {
            State::Established(e) => e.sending.has_room() && e.sending.next_seq() < e.peer_limit,
            _ => false,
        }
    }

    /// Received messages, next in order, that a destination could not take yet ([`Delivery::Blocked`]):
    /// call [`ChannelSession::deliver`] again when it has room. They are held here, within the credit we
    /// gave, and the sender neither retransmits them nor sees them delivered.
    pub fn pending_delivery(&self) -> bool {
        match &self.state {
            State::Established(e) => e.receiving.is_ready(),
            _ => false,
        }
    }

    /// The current retransmission timeout (from the measured round trip once a sample was taken).
    pub fn rto(&self) -> Option<core::time::Duration> {
        match &self.state {
            State::Established(e) => Some(e.rtt.rto()),
            _ => None,
        }
    }

    /// The smoothed round-trip time, once measured.
    pub fn srtt(&self) -> Option<core::time::Duration> {
        match &self.state {
            State::Established(e) => e.rtt.srtt(),
            _ => None,
        }
    }

    /// Gives back the memory of the output queues while they are empty (call it when the caller goes idle): an
    /// idle session then keeps no buffers for messages or events it no longer holds.
    pub fn release_idle_buffers(&mut self) {
        if self.transmits.is_empty() && self.transmits.capacity() > 0 {
            self.transmits = VecDeque::new();
        }
        if self.events.is_empty() && self.events.capacity() > 0 {
            self.events = VecDeque::new();
        }
    }

    /// Messages sent and not yet delivered.
    pub fn in_flight(&self) -> usize {
        match &self.state {
            State::Established(e) => e.sending.len(),
            _ => 0,
        }
    }

    fn queue(&mut self, message: RoutedMessage) {
        self.transmits.push_back(Out::Ready(message));
    }

    /// Sends `message` to `message.onward` on the far side (its return route there is `message.ret`, after
    /// the far end's own hop): it is numbered, kept until the far end acknowledges it cumulatively
    /// ([`Event::Delivered`]) and retransmitted meanwhile. Returns its sequence number. Keeps a copy of
    /// `message`: a caller that owns it uses [`ChannelSession::send_owned`], which does not.
    pub fn send(&mut self, now: Instant, message: &RoutedMessage) -> Result<u64, SessionError> {
        self.check_send(message)?;
        self.send_owned(now, message.clone())
    }

    /// [`ChannelSession::send`] for a message the caller hands over: the send window keeps it as it is
    /// (moved in, not copied, not encoded) and each transmission encodes and seals it into the buffer that
    /// is sent, so its payload is copied once per transmission and never otherwise. On an error the
    /// message is dropped.
    pub fn send_owned(
        &mut self,
        now: Instant,
        message: RoutedMessage,
    ) -> Result<u64, SessionError> {
        self.check_send(&message)?;
        self.now = self.now.max(now);
        let now = self.now;
        let State::Established(e) = &mut self.state else {
            // `check_send` accepts only an established session.
            return Err(SessionError::NotEstablished);
        };
        let seq = e.sending.push(message, now);
        let frame = Self::data_frame(e, &self.here, seq)?;
        e.last_sent = now;
        update_probe(e, now);
        self.stats.frames_sent += 1;
        self.queue(frame);
        Ok(seq)
    }

    /// Whether `message` may be sent now: the session is established, the payload fits, the routes encode,
    /// and the window and the peer's credit have room.
    fn check_send(&self, message: &RoutedMessage) -> Result<(), SessionError> {
        let max = self.config.max_payload;
        let e = match &self.state {
            State::Established(e) => e,
            State::Closed(reason) => return Err(reason.clone()),
            _ => return Err(SessionError::NotEstablished),
        };
        if message.payload.len() > max {
            return Err(SessionError::TooLarge {
                len: message.payload.len(),
                max,
            });
        }
        if message.onward.len() > MAX_ROUTE_LEN || message.ret.len() > MAX_ROUTE_LEN {
            return Err(Error::Decode("route too long").into());
        }
        if !e.sending.has_room() || e.sending.next_seq() >= e.peer_limit {
            return Err(SessionError::WindowFull);
        }
        Ok(())
    }

    /// Seals message `seq` of the send window (a first transmission or a retransmission: the same
    /// plaintext under a new nonce).
    fn data_frame(e: &mut Established, here: &Route, seq: u64) -> Result<RoutedMessage, Error> {
        let inner = e
            .sending
            .body(seq)
            .ok_or(Error::InvalidState("not in flight"))?;
        let payload = seal_data(&mut e.encryptor, seq, inner)?;
        Ok(RoutedMessage::new(e.remote.clone(), here.clone(), payload))
    }

    /// Closes this end: tells the far end (CLOSE, best effort) and reports every undelivered message failed.
    pub fn close(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.close_because(SessionError::Closed);
    }

    /// Ends an established channel for `reason` and tells the far end (CLOSE under the current keys, best
    /// effort), so that it closes at once instead of at its next frame's stateless reset.
    fn close_because(&mut self, reason: SessionError) {
        if let State::Established(e) = &mut self.state {
            if let Ok(payload) = seal(&mut e.encryptor, &ChannelFrame::Close, &[]) {
                let m = RoutedMessage::new(e.remote.clone(), self.here.clone(), payload);
                self.stats.frames_sent += 1;
                self.queue(m);
            }
        }
        self.fail(reason);
    }

    /// Ends the session: every undelivered message is reported failed, then `Closed(reason)`.
    fn fail(&mut self, reason: SessionError) {
        if let State::Closed(_) = self.state {
            return;
        }
        if let State::Established(e) = &mut self.state {
            for seq in e.sending.drain() {
                self.stats.failed += 1;
                self.events.push_back(Event::Failed(seq));
            }
        }
        // ACKs not yet encrypted can no longer be; ready messages (a refusal, CLOSE) still go out.
        self.transmits.retain(|o| matches!(o, Out::Ready(_)));
        self.state = State::Closed(reason.clone());
        self.events.push_back(Event::Closed(reason));
    }

    /// A routed message that reached our decryptor, and how it arrived. Anything that does not belong to
    /// this session (wrong path, wrong kind, unauthenticated) is ignored.
    pub fn handle_input(&mut self, now: Instant, message: RoutedMessage, arrival: &Arrival) {
        self.now = self.now.max(now);
        let now = self.now;
        if let Some(token) = parse_reset(&message.payload) {
            // A stateless reset: valid only with the token the peer gave us inside the channel. It needs
            // no path check (the token is the proof); anything else is ignored.
            if self
                .peer_reset_token
                .as_ref()
                .is_some_and(|known| tokens_match(known, &token))
                && matches!(
                    self.state,
                    State::Established(_) | State::AwaitConfirmation { .. }
                )
            {
                self.fail(SessionError::Reset);
            }
            return;
        }
        let state =
            core::mem::replace(&mut self.state, State::Closed(SessionError::NotEstablished));
        self.state = match state {
            State::AwaitM2 {
                handshake,
                route,
                m1,
                next_retry,
                deadline,
            } => self.on_m2(
                now, message, arrival, handshake, route, m1, next_retry, deadline,
            ),
            State::AwaitConfirmation {
                route,
                m3,
                channel,
                next_retry,
                deadline,
            } => self.on_confirmation(
                now, message, arrival, route, m3, channel, next_retry, deadline,
            ),
            State::AwaitM3 {
                handshake,
                path,
                initiator,
                deadline,
            } => self.on_m3(now, message, arrival, handshake, path, initiator, deadline),
            State::Established(mut e) => {
                let outcome = self.on_frame(now, message, arrival, &mut e);
                self.state = State::Established(e);
                match outcome {
                    Ok(()) => {}
                    // The peer closed: nothing to tell it.
                    Err(reason @ SessionError::ClosedByPeer) => self.fail(reason),
                    // Only authenticated frames of the channel's peer end it here (a refused
                    // re-handshake, another identity): tell it, so it closes at once.
                    Err(reason) => self.close_because(reason),
                }
                return;
            }
            closed @ State::Closed(_) => closed,
        };
    }

    // Not inlined without std (like the device's pumps): `handle_input` then holds one state's frame at a
    // time on a microcontroller's stack, not the four merged into its own. Host builds inline as before.
    #[cfg_attr(not(feature = "std"), inline(never))]
    #[allow(clippy::too_many_arguments)]
    fn on_m2(
        &mut self,
        now: Instant,
        message: RoutedMessage,
        arrival: &Arrival,
        mut handshake: Box<Handshake>,
        route: Route,
        m1: Vec<u8>,
        next_retry: Instant,
        deadline: Instant,
    ) -> State {
        let waiting = |handshake, route, m1| State::AwaitM2 {
            handshake,
            route,
            m1,
            next_retry,
            deadline,
        };
        // Only back along the first hop (and, over datagrams, from the address message 1 went to).
        if !arrival.came_back_along(&route) {
            return waiting(handshake, route, m1);
        }
        match message.payload.first() {
            Some(&KIND_HANDSHAKE) => {}
            Some(&KIND_REFUSED) => {
                let reason = match refusal(&message) {
                    SessionError::Core(Error::UnsupportedSuite(_)) => {
                        SessionError::Core(Error::UnsupportedSuite(handshake.suite().id()))
                    }
                    other => other,
                };
                return self.closed(reason);
            }
            Some(&KIND_COOKIE) => {
                // The listener wants its address validated: send message 1 again with its cookie, at once
                // (only when the cookie is new, so a repeated reply cannot make us loop), and on retries.
                let Some(cookie) = parse_cookie_reply(&message.payload) else {
                    return waiting(handshake, route, m1);
                };
                let noise = match m1.first() {
                    Some(&KIND_HANDSHAKE_WITH_COOKIE) => &m1[1 + COOKIE_LEN..],
                    _ => &m1[1..],
                };
                let again = with_cookie(&cookie, noise);
                if again != m1 {
                    self.queue(RoutedMessage::new(
                        route.clone(),
                        self.here.clone(),
                        again.clone(),
                    ));
                }
                return waiting(handshake, route, again);
            }
            _ => return waiting(handshake, route, m1),
        }
        if let Err(e) = handshake.read_message(&message.payload[1..]) {
            return self.closed(e.into());
        }
        // Keep our own path (stable transport and relay addresses) and replace only the listener with the
        // responder's decryptor. It came from an unauthenticated return route; nothing is trusted until a
        // frame under this handshake's keys comes back from it.
        let Some(responder) = message.ret.last() else {
            return self.closed(SessionError::BadRoute(
                "message 2 has an empty return route",
            ));
        };
        let remote = route.without_last().append(responder);
        let m3 = match handshake.write_message() {
            Ok(m) => with_kind(KIND_HANDSHAKE, &m),
            Err(e) => return self.closed(e.into()),
        };
        let channel = match handshake.finish() {
            Ok(c) => keys_of(c),
            Err(e) => return self.closed(e.into()),
        };
        self.queue(RoutedMessage::new(
            remote.clone(),
            self.here.clone(),
            m3.clone(),
        ));
        State::AwaitConfirmation {
            route,
            m3,
            channel: Self::established(&self.config, channel, remote, true, now),
            next_retry: now + self.config.handshake_retry,
            deadline,
        }
    }

    // Not inlined without std (like the device's pumps): `handle_input` then holds one state's frame at a
    // time on a microcontroller's stack, not the four merged into its own. Host builds inline as before.
    #[cfg_attr(not(feature = "std"), inline(never))]
    #[allow(clippy::too_many_arguments)]
    fn on_confirmation(
        &mut self,
        now: Instant,
        mut message: RoutedMessage,
        arrival: &Arrival,
        route: Route,
        m3: Vec<u8>,
        mut channel: Box<Established>,
        next_retry: Instant,
        deadline: Instant,
    ) -> State {
        if arrival.came_back_along(&route) {
            let kind = message.payload.first().copied();
            if kind == Some(KIND_REFUSED) {
                return self.closed(refusal(&message));
            }
            // The confirmation must be authenticated and come from the decryptor we answered. Its content
            // is not processed: a DATA frame is retransmitted by the responder later.
            let confirmation =
                if kind == Some(KIND_FRAME) && message.ret.last() == channel.remote.last() {
                    channel
                        .decryptor
                        .decrypt_in_place(&mut message.payload[1..])
                        .ok()
                } else {
                    None
                };
            if let Some(plaintext) = confirmation {
                if let Some(token) = ack_reset_token(plaintext) {
                    self.peer_reset_token = Some(token);
                }
                if let Some(ChannelFrame::Ack { limit, .. }) = ChannelFrame::parse(plaintext) {
                    channel.peer_limit = channel.peer_limit.max(limit);
                }
                channel.last_sent = now;
                channel.last_heard = now;
                self.events.push_back(Event::Connected);
                if self.reset_token.is_some() {
                    // Give the responder our reset token at once (it rides on every ACK).
                    self.transmits.push_back(Out::Ack {
                        selective: None,
                        to: None,
                    });
                }
                return State::Established(channel);
            }
        }
        State::AwaitConfirmation {
            route,
            m3,
            channel,
            next_retry,
            deadline,
        }
    }

    // Not inlined without std (like the device's pumps): `handle_input` then holds one state's frame at a
    // time on a microcontroller's stack, not the four merged into its own. Host builds inline as before.
    #[cfg_attr(not(feature = "std"), inline(never))]
    #[allow(clippy::too_many_arguments)]
    fn on_m3(
        &mut self,
        now: Instant,
        message: RoutedMessage,
        arrival: &Arrival,
        mut handshake: Box<Handshake>,
        path: Arrival,
        initiator: Address,
        deadline: Instant,
    ) -> State {
        // Only a message from the path the handshake started on, answering to the pinned initiator, may
        // finish (or fail) it: anything else is ignored and the handshake goes on.
        if message.payload.first() != Some(&KIND_HANDSHAKE)
            || !arrival.same_path(&path)
            || message.ret.last() != Some(&initiator)
        {
            return State::AwaitM3 {
                handshake,
                path,
                initiator,
                deadline,
            };
        }
        if let Err(e) = handshake.read_message(&message.payload[1..]) {
            let reason = match &e {
                Error::UntrustedPeer(_) => "not trusted",
                other => other.name(),
            };
            let refusal = with_kind(KIND_REFUSED, reason.as_bytes());
            self.queue(RoutedMessage::new(
                message.ret.clone(),
                self.here.clone(),
                refusal,
            ));
            return self.closed(e.into());
        }
        let channel = match handshake.finish() {
            Ok(c) => keys_of(c),
            Err(e) => return self.closed(e.into()),
        };
        let mut e = Self::established(&self.config, channel, message.ret, false, now);
        e.final_handshake = Some(message.payload);
        // The first frame confirms the handshake to the initiator.
        self.transmits.push_back(Out::Ack {
            selective: None,
            to: None,
        });
        self.events.push_back(Event::Connected);
        State::Established(e)
    }

    /// The session's state after it failed with `reason` (events queued; the caller installs the state).
    fn closed(&mut self, reason: SessionError) -> State {
        self.events.push_back(Event::Closed(reason.clone()));
        State::Closed(reason)
    }

    // Not inlined without std (like the device's pumps): `handle_input` then holds one state's frame at a
    // time on a microcontroller's stack, not the four merged into its own. Host builds inline as before.
    #[cfg_attr(not(feature = "std"), inline(never))]
    fn on_frame(
        &mut self,
        now: Instant,
        mut message: RoutedMessage,
        arrival: &Arrival,
        e: &mut Established,
    ) -> Result<(), SessionError> {
        match message.payload.first() {
            Some(&KIND_FRAME) => {}
            Some(&KIND_HANDSHAKE)
                if e.final_handshake.as_deref() == Some(&message.payload[..])
                    && leads_to(arrival, &message.ret, &e.remote) =>
            {
                // Our confirmation was lost and the initiator repeated message 3. Answer along its route,
                // but do not move the channel: only authenticated frames may.
                self.transmits.push_back(Out::Ack {
                    selective: None,
                    to: Some(message.ret),
                });
                return Ok(());
            }
            Some(&super::KIND_REHANDSHAKE) => return self.on_rehandshake(now, message, arrival, e),
            _ => return Ok(()),
        }
        let plaintext = match self.open_frame(now, &mut message.payload[1..], e) {
            Ok(p) => p,
            Err(Error::Replay) | Err(Error::StaleMessage) => {
                self.stats.frames_replayed += 1;
                return Ok(());
            }
            Err(Error::TooFarAhead) => {
                // More epochs lost than a receiver derives forward (or a forgery claiming so: the nonce is
                // checked before the tag): recover with new keys, rate-limited.
                self.stats.frames_rejected += 1;
                self.recover(now, e);
                return Ok(());
            }
            Err(_) => {
                self.stats.frames_rejected += 1;
                return Ok(());
            }
        };
        self.stats.frames_received += 1;
        e.last_heard = now;
        if let Some(token) = ack_reset_token(plaintext) {
            self.peer_reset_token = Some(token);
        }
        let frame = ChannelFrame::parse(plaintext);
        if frame == Some(ChannelFrame::Close) {
            return Err(SessionError::ClosedByPeer);
        }
        // Only an authenticated frame may move the responder to a new route (the initiator's is fixed),
        // and only to one that the path built and that still ends at the initiator's decryptor.
        if !e.initiator && leads_to(arrival, &message.ret, &e.remote) {
            e.remote = core::mem::take(&mut message.ret);
        }
        match frame {
            Some(ChannelFrame::Data { seq, inner }) => {
                let verdict = e.receiving.check(seq);
                if verdict == Accepted::OutOfWindow {
                    return Ok(());
                }
                if verdict == Accepted::New {
                    // The inner message is taken out of the buffer it arrived and was decrypted in: its
                    // routes are decoded, and its payload stays in that buffer (moved to the front, no
                    // new allocation).
                    let decoded = RoutedMessage::decode_header(inner)
                        .ok()
                        .map(|(o, r, rest)| {
                            // Where `rest` lies in the payload: the kind byte, the frame header,
                            // the DATA header, then the inner message's routes.
                            let start =
                                1 + FRAME_HEADER_LEN + DATA_HEADER_LEN + (inner.len() - rest.len());
                            (o, r, start, start + rest.len())
                        });
                    let decoded = decoded.map(|(onward, ret, start, end)| {
                        let mut body = core::mem::take(&mut message.payload);
                        body.truncate(end);
                        body.drain(..start);
                        RoutedMessage::new(onward, ret, body)
                    });
                    e.receiving.accept(seq, decoded);
                }
                self.transmits.push_back(Out::Ack {
                    selective: Some(seq),
                    to: None,
                });
            }
            Some(ChannelFrame::Ack {
                cumulative,
                selective,
                limit,
            }) => {
                let acked = e.sending.ack(cumulative, selective, now);
                if let Some(sample) = acked.sample {
                    e.rtt.sample(sample);
                }
                if acked.progress {
                    e.rtt.reset_backoff();
                }
                for seq in acked.lost {
                    // Deemed lost by a later message's selective ACK: retransmitted now, no timeout.
                    if let Ok(frame) = Self::data_frame(e, &self.here, seq) {
                        self.stats.retransmissions += 1;
                        self.stats.frames_sent += 1;
                        e.last_sent = now;
                        self.transmits.push_back(Out::Ready(frame));
                    }
                }
                if !acked.delivered.is_empty() || limit > e.peer_limit {
                    // Progress: the probe interval starts over.
                    e.probes = 0;
                    e.probe_at = None;
                }
                e.peer_limit = e.peer_limit.max(limit);
                for seq in acked.delivered {
                    if let Some(i) = e.undelivered.iter().position(|s| *s == seq) {
                        e.undelivered.swap_remove(i);
                        self.events.push_back(Event::Undelivered(seq));
                    } else {
                        self.events.push_back(Event::Delivered(seq));
                    }
                }
                // The responder answers the initiator's keepalives (and its other ACKs without a
                // selective number), so an initiator that hears nothing for `idle_timeout` knows the path
                // or the peer is gone. The initiator never answers an ACK: no ping-pong.
                if !e.initiator
                    && selective.is_none()
                    && !self
                        .transmits
                        .iter()
                        .any(|o| matches!(o, Out::Ack { to: None, .. }))
                {
                    self.transmits.push_back(Out::Ack {
                        selective: None,
                        to: None,
                    });
                }
            }
            // Only for a message of ours still waiting for its ACK (a window's worth at most).
            Some(ChannelFrame::Undelivered { seq, .. })
                if e.sending.body(seq).is_some() && !e.undelivered.contains(&seq) =>
            {
                e.undelivered.push(seq);
            }
            // A window probe: answer with our cumulative number and credit (one ACK queued at most).
            Some(ChannelFrame::Probe { .. })
                if !self
                    .transmits
                    .iter()
                    .any(|o| matches!(o, Out::Ack { to: None, .. })) =>
            {
                self.transmits.push_back(Out::Ack {
                    selective: None,
                    to: None,
                });
            }
            Some(ChannelFrame::Rekey { generation })
                if e.initiator && generation == e.generation && e.rekey.is_none() =>
            {
                // The responder asks (authenticated) for new keys: its timer, its peer's expiry, or its
                // epoch loss. Rate-limited like our own recovery.
                let due = e.recovery_at.is_none_or(|at| at <= now);
                if due {
                    e.recovery_at = Some(now + self.config.handshake_retry);
                    self.start_rekey(now, e);
                }
            }
            _ => {}
        }
        update_probe(e, now);
        Ok(())
    }

    /// Authenticates a frame under the keys that may have sealed it: during a re-handshake the new ones
    /// (the initiator's, once the responder switched) or the previous ones (stragglers). Switches the
    /// initiator to the new keys on the first frame under them. Tries at most two keys.
    fn open_frame<'a>(
        &mut self,
        now: Instant,
        frame: &'a mut [u8],
        e: &mut Established,
    ) -> Result<&'a mut [u8], Error> {
        if e.previous
            .as_ref()
            .is_some_and(|(_, until)| until.is_some_and(|u| u <= now))
        {
            e.previous = None;
        }
        let pending = matches!(e.rekey, Some(Rekey::SentM3 { .. }));
        if pending {
            let copy = frame.to_vec();
            if let Some(Rekey::SentM3 { keys, .. }) = &mut e.rekey {
                if let Ok(p) = keys.0 .1.decrypt_in_place(frame) {
                    let len = p.len();
                    self.switch_initiator(now, e);
                    return Ok(&mut frame[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len]);
                }
            }
            frame.copy_from_slice(&copy);
            let opened = e.decryptor.decrypt_in_place(frame);
            if opened.is_ok()
                && matches!(&e.rekey, Some(Rekey::SentM3 { sent, .. })
                    if *sent + self.config.handshake_timeout <= now)
            {
                // Still the old keys long after message 3: the responder never took it. Give up these
                // keys (the responder cannot be using them) and re-handshake afresh.
                e.rekey = None;
                e.rekey_at = now;
            }
            return opened;
        }
        let Some((previous, until)) = &mut e.previous else {
            return e.decryptor.decrypt_in_place(frame);
        };
        let copy = frame.to_vec();
        match e.decryptor.decrypt_in_place(frame) {
            Ok(p) => {
                let len = p.len();
                // The peer uses the current keys: the previous ones serve stragglers a little longer.
                if until.is_none() {
                    *until =
                        Some(now + self.config.retransmit_after + self.config.retransmit_after);
                }
                Ok(&mut frame[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len])
            }
            Err(current) => {
                frame.copy_from_slice(&copy);
                match previous.decrypt_in_place(frame) {
                    Ok(p) => {
                        let len = p.len();
                        Ok(&mut frame[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len])
                    }
                    Err(_) => Err(current),
                }
            }
        }
    }

    /// The initiator's switch to the keys of its re-handshake (a frame under them authenticated).
    fn switch_initiator(&mut self, now: Instant, e: &mut Established) {
        let Some(Rekey::SentM3 { keys, .. }) = e.rekey.take() else {
            return;
        };
        let grace = self.config.retransmit_after + self.config.retransmit_after;
        self.install(now, e, *keys, Some(now + grace));
    }

    /// New keys take over: sending at once, receiving with the previous decryptor kept until `until`.
    fn install(&mut self, now: Instant, e: &mut Established, keys: Keys, until: Option<Instant>) {
        let ((encryptor, decryptor, peer), hash) = keys;
        e.encryptor = encryptor;
        let old = core::mem::replace(&mut e.decryptor, decryptor);
        e.previous = Some((old, until));
        e.peer = peer;
        e.hash = hash;
        e.generation += 1;
        // Only a re-handshake inside the window before the peer's expiry counts as the attempt to refresh
        // it: a periodic one earlier must not stop the one before expiry (the peer renews only then).
        if self
            .peer_expiry
            .is_some_and(|x| now >= before(x, &self.config))
        {
            e.expiry_refreshed = self.peer_expiry;
        }
        self.stats.rekeys = e.generation;
        schedule_rekey(&self.config, self.peer_expiry, e, now);
        self.events.push_back(Event::Rekeyed);
    }

    /// Frames arrive too many epochs ahead: the initiator re-handshakes, the responder asks it to (at most
    /// once per handshake retry interval).
    fn recover(&mut self, now: Instant, e: &mut Established) {
        let busy = match &e.rekey {
            None => false,
            Some(Rekey::SentM2 { started, .. }) => *started + self.config.handshake_timeout > now,
            Some(_) => true,
        };
        if self.factory.is_none() || busy || e.recovery_at.is_some_and(|at| at > now) {
            return;
        }
        e.recovery_at = Some(now + self.config.handshake_retry);
        if e.initiator {
            self.start_rekey(now, e);
        } else {
            self.ask_rekey(e);
        }
    }

    /// The responder asks for a re-handshake with an authenticated REKEY frame.
    fn ask_rekey(&mut self, e: &mut Established) {
        let frame = ChannelFrame::Rekey {
            generation: e.generation,
        };
        if let Ok(payload) = seal(&mut e.encryptor, &frame, &[]) {
            self.stats.frames_sent += 1;
            e.last_sent = self.now;
            self.queue(RoutedMessage::new(
                e.remote.clone(),
                self.here.clone(),
                payload,
            ));
        }
    }

    /// The initiator starts a re-handshake (message 1 along the channel's route).
    fn start_rekey(&mut self, now: Instant, e: &mut Established) {
        if e.rekey.is_some() {
            return;
        }
        let Some(factory) = self.factory.as_mut() else {
            return;
        };
        let started = factory(Role::Initiator).and_then(|mut h| {
            let m = h.write_message()?;
            Ok((h, m))
        });
        let Ok((handshake, noise)) = started else {
            // Our own proofs cannot make a handshake now (e.g. our attestation expired): try later.
            e.rekey_at = now + self.config.handshake_timeout;
            return;
        };
        let m1 = rehandshake_payload(e.generation + 1, 1, &noise);
        self.queue(RoutedMessage::new(
            e.remote.clone(),
            self.here.clone(),
            m1.clone(),
        ));
        e.rekey = Some(Rekey::SentM1 {
            handshake: Box::new(handshake),
            m1,
            next_retry: now + self.config.handshake_retry,
            deadline: now + self.config.handshake_timeout,
        });
    }

    /// A re-handshake message on an established channel. It is not authenticated by the channel's keys,
    /// so it never moves the route, never closes the channel (except a proof of another identity, or the
    /// channel's own peer proving itself and our trust policy refusing it — only the holder of the peer's
    /// keys can cause either) and changes keys only once the Noise handshake completed with the channel's
    /// peer.
    // Not inlined without std: `on_frame`'s data path does not carry the re-handshake's frame (see `on_m2`).
    #[cfg_attr(not(feature = "std"), inline(never))]
    fn on_rehandshake(
        &mut self,
        now: Instant,
        message: RoutedMessage,
        arrival: &Arrival,
        e: &mut Established,
    ) -> Result<(), SessionError> {
        if parse_rehandshake(&message.payload).is_none()
            || self.factory.is_none()
            || !leads_to(arrival, &message.ret, &e.remote)
        {
            return Ok(());
        }
        if e.initiator {
            self.rehandshake_as_initiator(now, &message.payload, e)
        } else {
            self.rehandshake_as_responder(now, message, e)
        }
    }

    /// [`on_rehandshake`](Self::on_rehandshake) on the channel's initiator: message 2 of its re-handshake.
    /// Not inlined without std, nor is the responder's half: a microcontroller's stack holds one half's
    /// frame, not both merged.
    #[cfg_attr(not(feature = "std"), inline(never))]
    fn rehandshake_as_initiator(
        &mut self,
        now: Instant,
        payload: &[u8],
        e: &mut Established,
    ) -> Result<(), SessionError> {
        let Some((generation, step, noise)) = parse_rehandshake(payload) else {
            return Ok(());
        };
        if step != 2
            || generation != e.generation + 1
            || !matches!(e.rekey, Some(Rekey::SentM1 { .. }))
        {
            // (A repeated message 2 while message 3 is out: its retransmission covers it.)
            return Ok(());
        }
        let Some(Rekey::SentM1 {
            mut handshake,
            deadline,
            ..
        }) = e.rekey.take()
        else {
            return Ok(());
        };
        if let Err(err) = handshake.read_message(noise) {
            // The channel's own peer proved itself and our trust policy refused it (a credential
            // of another subject, revoked or expired): the channel ends.
            if handshake.refused_peer() == Some(&e.peer.identifier) {
                return Err(SessionError::Core(err));
            }
            // Forged, or proofs that do not verify: keep the old keys, try later.
            e.rekey_at = deadline.max(now + self.config.handshake_retry);
            return Ok(());
        }
        let finished = handshake
            .write_message()
            .and_then(|m3| Ok((m3, keys_of(handshake.finish()?))));
        let (noise3, keys) = match finished {
            Ok(x) => x,
            Err(_) => {
                // Refused (untrusted, expired proofs) or forged: keep the old keys, try later.
                e.rekey_at = deadline.max(now + self.config.handshake_retry);
                return Ok(());
            }
        };
        if keys.0 .2.identifier != e.peer.identifier {
            return Err(SessionError::IdentityChanged);
        }
        let m3 = rehandshake_payload(generation, 3, &noise3);
        self.queue(RoutedMessage::new(
            e.remote.clone(),
            self.here.clone(),
            m3.clone(),
        ));
        e.rekey = Some(Rekey::SentM3 {
            m3,
            keys: Box::new(keys),
            next_retry: now + self.config.handshake_retry,
            retries: 0,
            sent: now,
        });
        Ok(())
    }

    /// [`on_rehandshake`](Self::on_rehandshake) on the channel's responder: messages 1 and 3.
    #[cfg_attr(not(feature = "std"), inline(never))]
    fn rehandshake_as_responder(
        &mut self,
        now: Instant,
        message: RoutedMessage,
        e: &mut Established,
    ) -> Result<(), SessionError> {
        let Some((generation, step, _)) = parse_rehandshake(&message.payload) else {
            return Ok(());
        };
        if generation == e.generation && step == 3 {
            if e.final_rekey.as_deref() == Some(&message.payload[..]) {
                // Our confirmation was lost: confirm again, under the new keys.
                self.transmits.push_back(Out::Ack {
                    selective: None,
                    to: None,
                });
            }
            return Ok(());
        }
        if generation != e.generation + 1 {
            return Ok(());
        }
        match (step, e.rekey.take()) {
            (
                1,
                Some(Rekey::SentM2 {
                    handshake,
                    m1,
                    m2,
                    started,
                }),
            ) if m1 == message.payload || started + self.config.handshake_retry > now => {
                // A repeat (message 2 was lost: send it again, no new work), or another message 1 too
                // soon after the one in progress (rate limit: a forged one cannot displace it at will).
                if m1 == message.payload {
                    self.queue(RoutedMessage::new(
                        e.remote.clone(),
                        self.here.clone(),
                        m2.clone(),
                    ));
                }
                e.rekey = Some(Rekey::SentM2 {
                    handshake,
                    m1,
                    m2,
                    started,
                });
            }
            (1, earlier) => {
                return self.rehandshake_answer(now, &message.payload, earlier, e);
            }
            (3, Some(Rekey::SentM2 { handshake, .. })) => {
                return self.rehandshake_confirmed(now, message, handshake, e);
            }
            (_, other) => e.rekey = other,
        }
        Ok(())
    }

    /// Message 1 of a re-handshake on the responder: answers it with message 2 (a new attempt replaces
    /// `earlier` only if it reads). Not inlined without std (see
    /// [`rehandshake_confirmed`](Self::rehandshake_confirmed)).
    #[cfg_attr(not(feature = "std"), inline(never))]
    fn rehandshake_answer(
        &mut self,
        now: Instant,
        payload: &[u8],
        earlier: Option<Rekey>,
        e: &mut Established,
    ) -> Result<(), SessionError> {
        let Some((generation, _, noise)) = parse_rehandshake(payload) else {
            e.rekey = earlier;
            return Ok(());
        };
        let Some(factory) = self.factory.as_mut() else {
            return Ok(());
        };
        // A message 1 that does not even read leaves the attempt in progress alone.
        e.rekey = earlier;
        let answered = factory(Role::Responder).and_then(|mut h| {
            h.read_message(noise)?;
            let m = h.write_message()?;
            Ok((h, m))
        });
        if let Ok((handshake, noise2)) = answered {
            let m2 = rehandshake_payload(generation, 2, &noise2);
            self.queue(RoutedMessage::new(
                e.remote.clone(),
                self.here.clone(),
                m2.clone(),
            ));
            e.rekey = Some(Rekey::SentM2 {
                handshake: Box::new(handshake),
                m1: payload.to_vec(),
                m2,
                started: now,
            });
        }
        Ok(())
    }

    /// Message 3 of a re-handshake on the responder: the peer's proofs, then the new keys. Not inlined
    /// without std: the deepest call of a re-handshake (verifying the peer's proofs) does not carry message
    /// 1's frame.
    #[cfg_attr(not(feature = "std"), inline(never))]
    fn rehandshake_confirmed(
        &mut self,
        now: Instant,
        message: RoutedMessage,
        mut handshake: Box<Handshake>,
        e: &mut Established,
    ) -> Result<(), SessionError> {
        let Some((_, _, noise)) = parse_rehandshake(&message.payload) else {
            return Ok(());
        };
        if let Err(err) = handshake.read_message(noise) {
            // The channel's own peer proved itself and our trust policy refused it: the channel
            // ends. Anything else (forged, proofs that do not verify) ends only this attempt.
            if handshake.refused_peer() == Some(&e.peer.identifier) {
                return Err(SessionError::Core(err));
            }
            return Ok(());
        }
        let Ok(channel) = handshake.finish() else {
            return Ok(());
        };
        let keys = keys_of(channel);
        if keys.0 .2.identifier != e.peer.identifier {
            return Err(SessionError::IdentityChanged);
        }
        // The initiator made these keys before sending message 3: switch sending now, keep the
        // old decryptor until the initiator's frames show it switched too.
        self.install(now, e, keys, None);
        e.final_rekey = Some(message.payload);
        self.transmits.push_back(Out::Ack {
            selective: None,
            to: None,
        });
        Ok(())
    }

    /// Hands the received messages that are next in order to `deliver`, exactly once each, until it reports
    /// [`Delivery::Blocked`] (that message is offered again on a later call; the session asks for one with
    /// a timer). Call it after every input and timeout, before [`ChannelSession::poll_transmit`].
    pub fn deliver(&mut self, now: Instant, mut deliver: impl FnMut(RoutedMessage) -> Delivery) {
        self.now = self.now.max(now);
        let now = self.now;
        let State::Established(e) = &mut self.state else {
            return;
        };
        let before = e.receiving.next_expected();
        let mut blocked = false;
        loop {
            let seq = e.receiving.next_expected();
            let Some(next) = e.receiving.pop_ready() else {
                break;
            };
            let Some(message) = next else {
                self.stats.undeliverable += 1;
                continue;
            };
            match deliver(message) {
                Delivery::Delivered => self.stats.delivered += 1,
                Delivery::Dropped => self.stats.undeliverable += 1,
                Delivery::NoSuchDestination => {
                    self.stats.undeliverable += 1;
                    // Ahead of any ACK already queued: the sender must hear it before the cumulative ACK
                    // that covers `seq` (on an ordered path it then always does).
                    self.transmits.push_front(Out::Undelivered { seq });
                }
                Delivery::Blocked(message) => {
                    e.receiving.unpop(Some(message));
                    blocked = true;
                    break;
                }
            }
        }
        e.retry_delivery = self
            .config
            .delivery_retry
            .filter(|_| blocked)
            .map(|every| now + every);
        // Tell the sender at once when deliveries advanced and no ACK is already on its way.
        if e.receiving.next_expected() != before
            && !self
                .transmits
                .iter()
                .any(|o| matches!(o, Out::Ack { to: None, .. }))
        {
            self.transmits.push_back(Out::Ack {
                selective: None,
                to: None,
            });
        }
    }

    /// The next routed message to send, first hop first (for the runtime: to be delivered on the local node
    /// as sent by our decryptor). A message not sent counts as lost; retransmission covers it.
    pub fn poll_transmit(&mut self) -> Option<RoutedMessage> {
        loop {
            let out = self.transmits.pop_front()?;
            match out {
                Out::Ready(m) => return Some(m),
                Out::Ack { selective, to } => {
                    let State::Established(e) = &mut self.state else {
                        continue;
                    };
                    let ack = ChannelFrame::Ack {
                        cumulative: e.receiving.next_expected(),
                        selective,
                        limit: e.receiving.limit(),
                    };
                    let token = self.reset_token.as_ref().map_or(&[][..], |t| &t[..]);
                    let Ok(payload) = seal(&mut e.encryptor, &ack, token) else {
                        continue;
                    };
                    self.stats.frames_sent += 1;
                    e.last_sent = self.now;
                    let onward = to.unwrap_or_else(|| e.remote.clone());
                    return Some(RoutedMessage::new(onward, self.here.clone(), payload));
                }
                Out::Undelivered { .. } | Out::Probe => {
                    let State::Established(e) = &mut self.state else {
                        continue;
                    };
                    let frame = match out {
                        Out::Undelivered { seq } => ChannelFrame::Undelivered {
                            seq,
                            reason: NO_SUCH_DESTINATION,
                        },
                        _ => ChannelFrame::Probe {
                            next: e.sending.next_seq(),
                        },
                    };
                    let Ok(payload) = seal(&mut e.encryptor, &frame, &[]) else {
                        continue;
                    };
                    self.stats.frames_sent += 1;
                    e.last_sent = self.now;
                    return Some(RoutedMessage::new(
                        e.remote.clone(),
                        self.here.clone(),
                        payload,
                    ));
                }
            }
        }
    }

    /// When [`ChannelSession::handle_timeout`] must next be called (never before the latest time the caller
    /// gave); `None` once closed. An idle channel has one timer: the initiator's keepalive or the
    /// responder's idle deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::AwaitM2 {
                next_retry,
                deadline,
                ..
            }
            | State::AwaitConfirmation {
                next_retry,
                deadline,
                ..
            } => Some((*next_retry).min(*deadline)),
            State::AwaitM3 { deadline, .. } => Some(*deadline),
            State::Established(e) => {
                let c = &self.config;
                let silent = e.last_heard + c.idle_timeout;
                let idle = if e.initiator {
                    (e.last_sent + c.keepalive).min(silent)
                } else {
                    silent
                };
                [
                    Some(idle),
                    self.peer_expiry,
                    e.sending.next_due(e.rtt.rto()),
                    e.sending.deadline(c.delivery_timeout),
                    e.retry_delivery,
                    e.probe_at,
                    self.rekey_timeout(e),
                ]
                .into_iter()
                .flatten()
                .min()
                // A retransmission timeout that shrank with a new round-trip sample can put a message's
                // retransmission before the latest input: it is due now, never in the past.
                .map(|at| at.max(self.now))
            }
            State::Closed(_) => None,
        }
    }

    /// Runs the timers that are due at `now`: handshake retries and deadline, retransmissions, delivery
    /// deadline, keepalive, idle close, delivery retries.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        let now = self.now;
        let retry = self.config.handshake_retry;
        match &mut self.state {
            State::AwaitM2 {
                route,
                m1,
                next_retry,
                deadline,
                ..
            } => {
                if now >= *deadline {
                    self.fail(SessionError::HandshakeTimeout);
                } else if now >= *next_retry {
                    *next_retry = now + retry;
                    let m = RoutedMessage::new(route.clone(), self.here.clone(), m1.clone());
                    self.queue(m);
                }
            }
            State::AwaitConfirmation {
                m3,
                channel,
                next_retry,
                deadline,
                ..
            } => {
                if now >= *deadline {
                    self.fail(SessionError::HandshakeTimeout);
                } else if now >= *next_retry {
                    *next_retry = now + retry;
                    let m =
                        RoutedMessage::new(channel.remote.clone(), self.here.clone(), m3.clone());
                    self.queue(m);
                }
            }
            State::AwaitM3 { deadline, .. } => {
                if now >= *deadline {
                    self.fail(SessionError::HandshakeTimeout);
                }
            }
            State::Established(_) => self.established_timeout(now),
            State::Closed(_) => {}
        }
    }

    fn established_timeout(&mut self, now: Instant) {
        let state =
            core::mem::replace(&mut self.state, State::Closed(SessionError::NotEstablished));
        let State::Established(mut e) = state else {
            self.state = state;
            return;
        };
        let outcome = self.established_timers(now, &mut e);
        self.state = State::Established(e);
        if let Err(reason) = outcome {
            self.fail(reason);
        }
    }

    fn established_timers(
        &mut self,
        now: Instant,
        e: &mut Established,
    ) -> Result<(), SessionError> {
        let c = self.config.clone();
        let here = self.here.clone();
        if self.peer_expiry.is_some_and(|at| at <= now) {
            // Tell the far end (best effort), as `close` does.
            if let Ok(payload) = seal(&mut e.encryptor, &ChannelFrame::Close, &[]) {
                let m = RoutedMessage::new(e.remote.clone(), here, payload);
                self.stats.frames_sent += 1;
                self.queue(m);
            }
            return Err(SessionError::PeerExpired);
        }
        // Either end closes after `idle_timeout` without an authenticated frame: the responder answers the
        // initiator's keepalives, so an initiator that hears nothing has lost its peer or its path.
        if e.last_heard + c.idle_timeout <= now {
            return Err(SessionError::PeerSilent);
        }
        if e.sending.expired(now, c.delivery_timeout) {
            return Err(SessionError::DeliveryTimeout);
        }
        let due = e.sending.due(now, e.rtt.rto());
        if !due.is_empty() {
            // A timeout: the next one waits twice as long, until a new round-trip sample.
            e.rtt.back_off();
        }
        for seq in due {
            if let Ok(frame) = Self::data_frame(e, &here, seq) {
                self.stats.retransmissions += 1;
                self.stats.frames_sent += 1;
                e.last_sent = now;
                self.transmits.push_back(Out::Ready(frame));
            }
        }
        if e.retry_delivery.is_some_and(|at| at <= now) {
            // The caller's next `deliver` retries; ask again later if it is still blocked.
            e.retry_delivery = c.delivery_retry.map(|every| now + every);
        }
        if e.probe_at.is_some_and(|at| at <= now) {
            // Waiting for credit or for a cumulative ACK with nothing to retransmit: ask the peer where it
            // stands (its ACK may have been lost). The interval doubles up to `max_rto`, so a peer that
            // never gives credit costs one small frame every `max_rto`.
            e.probes = e.probes.saturating_add(1);
            self.stats.probes += 1;
            self.transmits.push_back(Out::Probe);
            let interval = e
                .rtt
                .rto()
                .saturating_mul(1u32 << e.probes.min(16))
                .min(c.max_rto.max(c.min_rto));
            e.probe_at = Some(now + interval);
        }
        update_probe(e, now);
        self.rekey_timers(now, e);
        if e.initiator && e.last_sent + c.keepalive <= now {
            e.last_sent = now;
            self.transmits.push_back(Out::Ack {
                selective: None,
                to: None,
            });
        }
        Ok(())
    }

    /// Re-handshake timers: retries and deadlines of one in progress, the previous keys' end, and the next
    /// re-handshake (the initiator starts it, the responder asks for it).
    fn rekey_timers(&mut self, now: Instant, e: &mut Established) {
        let c = &self.config;
        if e.previous
            .as_ref()
            .is_some_and(|(_, until)| until.is_some_and(|u| u <= now))
        {
            e.previous = None;
        }
        let here = self.here.clone();
        match &mut e.rekey {
            Some(Rekey::SentM1 {
                m1,
                next_retry,
                deadline,
                ..
            }) => {
                if now >= *deadline {
                    e.rekey = None;
                    e.rekey_at = now + c.handshake_timeout;
                } else if now >= *next_retry {
                    *next_retry = now + c.handshake_retry;
                    let m = RoutedMessage::new(e.remote.clone(), here, m1.clone());
                    self.transmits.push_back(Out::Ready(m));
                }
            }
            Some(Rekey::SentM3 {
                m3,
                next_retry,
                retries,
                ..
            }) => {
                if now >= *next_retry {
                    // Backs off to the keepalive period: the channel's own deadlines end a dead path.
                    *retries = retries.saturating_add(1);
                    let backoff = c.handshake_retry * (1u32 << (*retries).min(6));
                    *next_retry = now + backoff.min(c.keepalive.max(c.handshake_retry));
                    let m = RoutedMessage::new(e.remote.clone(), here, m3.clone());
                    self.transmits.push_back(Out::Ready(m));
                }
            }
            // A responder's attempt that has waited a handshake timeout no longer stops it from asking
            // (it stays, for a late message 3, until a new message 1 replaces it).
            Some(Rekey::SentM2 { started, .. }) if *started + c.handshake_timeout > now => {}
            Some(Rekey::SentM2 { .. }) | None => {
                if self.factory.is_some() && e.rekey_at <= now {
                    if self.peer_expiry.is_some_and(|x| e.rekey_at >= before(x, c)) {
                        // This attempt is the one before the peer's expiry.
                        e.expiry_refreshed = self.peer_expiry;
                    }
                    // Again later if this one does not complete (completion reschedules).
                    e.rekey_at = now + c.handshake_timeout.max(c.handshake_retry);
                    if e.initiator {
                        self.start_rekey(now, e);
                    } else {
                        self.ask_rekey(e);
                    }
                }
            }
        }
    }

    /// When the next re-handshake timer of an established session fires.
    fn rekey_timeout(&self, e: &Established) -> Option<Instant> {
        let previous = e.previous.as_ref().and_then(|(_, until)| *until);
        let rekey = match &e.rekey {
            Some(Rekey::SentM1 {
                next_retry,
                deadline,
                ..
            }) => Some((*next_retry).min(*deadline)),
            Some(Rekey::SentM3 { next_retry, .. }) => Some(*next_retry),
            Some(Rekey::SentM2 { started, .. }) => self
                .factory
                .is_some()
                .then_some(e.rekey_at.max(*started + self.config.handshake_timeout)),
            None => self.factory.is_some().then_some(e.rekey_at),
        };
        [previous, rekey].into_iter().flatten().min()
    }

    /// The next event, in order.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

/// The reset token an ACK plaintext carries after its 25 bytes
/// (`0x02 ‖ cumulative ‖ selective ‖ limit ‖ token`).
fn ack_reset_token(plaintext: &[u8]) -> Option<ResetToken> {
    if plaintext.first() != Some(&super::ACK) || plaintext.len() < ACK_LEN + RESET_TOKEN_LEN {
        return None;
    }
    plaintext[ACK_LEN..ACK_LEN + RESET_TOKEN_LEN]
        .try_into()
        .ok()
}

/// Arms the window probe while the sender is stalled (the peer's credit used up, or every message in
/// flight held by the peer, so no retransmission timer runs), and disarms it otherwise.
fn update_probe(e: &mut Established, now: Instant) {
    let stalled = e.sending.only_awaiting_cumulative() || e.sending.next_seq() >= e.peer_limit;
    if !stalled {
        e.probe_at = None;
        e.probes = 0;
    } else if e.probe_at.is_none() {
        e.probe_at = Some(now + e.rtt.rto());
    }
}

/// The parts of a finished handshake and its hash.
fn keys_of(channel: crate::channel::SecureChannel) -> Keys {
    let hash = *channel.handshake_hash();
    (channel.split(), hash)
}

/// `rekey_before_expiry` before the peer's expiry `at`.
fn before(at: Instant, c: &SessionConfig) -> Instant {
    Instant(at.0.saturating_sub(super::millis(c.rekey_before_expiry)))
}

/// The next re-handshake: after the interval, or before the peer's proofs expire (unless a re-handshake
/// already refreshed that expiry and the peer had nothing fresher), never in the past.
fn schedule_rekey(c: &SessionConfig, expiry: Option<Instant>, e: &mut Established, now: Instant) {
    // The responder asks only when the initiator is late (it switched keys a round trip after us).
    let slack = if e.initiator {
        core::time::Duration::ZERO
    } else {
        c.handshake_retry
    };
    let mut at = now + c.rekey_interval + slack;
    if let Some(x) = expiry.filter(|x| Some(*x) != e.expiry_refreshed) {
        at = at.min(before(x, c).max(now));
    }
    e.rekey_at = at;
}

/// Whether a return route starts where the message arrived and ends at the peer's pinned decryptor.
fn leads_to(arrival: &Arrival, ret: &Route, remote: &Route) -> bool {
    arrival.starts(ret) && ret.last().is_some() && ret.last() == remote.last()
}

fn refusal(message: &RoutedMessage) -> SessionError {
    let reason = &message.payload[1..];
    // The listener did not accept our suite offer: the typed error (unauthenticated, like every refusal;
    // the worst it can do is end this attempt, which an attacker on the path can do anyway).
    if reason == UNSUPPORTED_SUITE.as_bytes() {
        return SessionError::Core(Error::UnsupportedSuite(0));
    }
    SessionError::Refused(String::from_utf8_lossy(reason).into_owned())
}

/// The reason of the refusal (`0x03`) a listener sends for a message 1 whose suite offer it does not accept.
pub const UNSUPPORTED_SUITE: &str = "UnsupportedSuite";

/// The listener's answer to a routed message 1 that offers a suite outside `accepted` (or an unknown suite
/// byte): a refusal `0x03 ‖ "UnsupportedSuite"` from `me` back along message 1's return route, so the
/// initiator fails at once with `UnsupportedSuite` instead of timing out. `None` when the offer is accepted,
/// when `m1` is not a well-formed message 1 (it fails later, silently, as before) or when its return route
/// does not start where it arrived (nothing is sent to a route the sender may have forged). The refusal is
/// shorter than message 1, so it amplifies nothing.
pub fn refuse_suite_offer(
    m1: &RoutedMessage,
    arrival: &Arrival,
    accepted: crate::channel::SuiteSet,
    me: &Address,
) -> Option<RoutedMessage> {
    if m1.payload.first() != Some(&KIND_HANDSHAKE) || !arrival.starts(&m1.ret) {
        return None;
    }
    match CipherSuite::offered_in(&m1.payload[1..]) {
        Ok(suite) if accepted.contains(suite) => None,
        Ok(_) | Err(Error::UnsupportedSuite(_)) => Some(RoutedMessage::new(
            m1.ret.clone(),
            Route::from_addresses([me.clone()]),
            with_kind(KIND_REFUSED, UNSUPPORTED_SUITE.as_bytes()),
        )),
        Err(_) => None,
    }
}
