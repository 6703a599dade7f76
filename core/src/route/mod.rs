//! The routed layer, sans-IO: secure channels over routes of hops (docs/RUNTIME.md, "Secure channels: the
//! protocol between two ends"), relay registration ([`relay`]), and a device behind a relay ([`device`]: the
//! registration, the phones' channels and their re-handshakes over one link, for firmware and bindings).
//!
//! A [`ChannelSession`] is one end of a channel. It owns the Noise handshake over a route (either role),
//! then reliable in-order delivery (DATA/ACK/CLOSE) with credit-based flow control, retransmission on an
//! RTT-based timer, keepalive and idle timers, and the
//! responder's authenticated route following. It reads no clock, opens no socket and spawns nothing: the
//! caller feeds it routed messages and the time, and takes out messages to send, the next timer and events,
//! in the style of quinn-proto:
//!
//! * inputs: [`ChannelSession::handle_input`] (a routed message that reached our decryptor, with how it
//!   arrived), [`ChannelSession::handle_timeout`], and the application's [`ChannelSession::send`] and
//!   [`ChannelSession::close`];
//! * outputs, polled in this order after every input: [`ChannelSession::deliver`] (received messages, in
//!   order, exactly once), [`ChannelSession::poll_transmit`] (routed messages to send, first hop first),
//!   [`ChannelSession::poll_timeout`] (when to call `handle_timeout` next) and
//!   [`ChannelSession::poll_event`].
//!
//! Time is a monotonic [`Instant`] in milliseconds chosen by the caller (any origin).

pub mod admission;
pub mod device;
mod frame;
pub mod relay;
pub mod reset;
mod session;
mod window;

pub use crate::wire::{Address, Route, RoutedMessage};
pub use admission::{Admission, AdmissionConfig, Admit, KIND_COOKIE, KIND_HANDSHAKE_WITH_COOKIE};
pub use frame::{
    parse_rehandshake, rehandshake_payload, ChannelFrame, ACK, ACK_LEN, CLOSE, DATA, PROBE, REKEY,
};
pub use reset::{ResetKey, ResetToken, KIND_RESET, RESET_TOKEN_LEN};
pub use session::{
    refuse_suite_offer, ChannelSession, Delivery, HandshakeFactory, UNSUPPORTED_SUITE,
};
pub use window::{Accepted, Acked, ReceiveWindow, RttEstimator, SendWindow};

use crate::error::Error;
use alloc::string::String;
use core::fmt;
use core::time::Duration;

/// First byte of a channel payload on the route: one Noise handshake message follows.
pub const KIND_HANDSHAKE: u8 = 1;
/// First byte of a channel payload on the route: one transport frame follows.
pub const KIND_FRAME: u8 = 2;
/// First byte of a channel payload on the route: the responder refused the handshake (UTF-8 reason).
pub const KIND_REFUSED: u8 = 3;
/// First byte of a channel payload on the route: one message of a re-handshake on an established channel,
/// `0x07 ‖ generation (u64 BE) ‖ step (1, 2 or 3) ‖ Noise message` (docs/RUNTIME.md, "Re-handshake").
pub const KIND_REHANDSHAKE: u8 = 7;

/// Largest payload of a message sent through a channel (the rest of a frame holds routes and headers).
pub const MAX_CHANNEL_PAYLOAD: usize = 60_000;

/// How often a delivery that the destination could not take is retried by default
/// ([`SessionConfig::delivery_retry`]).
pub const DELIVERY_RETRY: Duration = Duration::from_millis(10);

/// The credit a sender assumes before the peer's first ACK: it sends DATA numbered below this. Every
/// receiver takes at least this many messages ahead of what it delivered.
pub const INITIAL_CREDIT: u64 = 16;

/// A point on the caller's monotonic clock, in milliseconds from an origin the caller chooses.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    pub const fn from_millis(ms: u64) -> Self {
        Instant(ms)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Time elapsed since `earlier` (zero if `earlier` is later).
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// Whole milliseconds, rounded up (so a sub-millisecond timer never fires at once, over and over).
pub(crate) fn millis(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

impl core::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(millis(d)))
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// How a routed message reached the session: facts the caller knows about the path, never encoded.
///
/// `hop` is the first hop back, i.e. the connection or channel the message arrived on (`None` for a
/// message from the caller's own node, whose return route is trusted); `remote` is, for datagram
/// transports, the sender's address (the second hop back).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Arrival {
    pub hop: Option<Address>,
    pub remote: Option<Address>,
}

impl Arrival {
    /// A message from the caller's own node.
    pub fn local() -> Self {
        Arrival::default()
    }

    /// A message that arrived on the connection (or out of the channel) `hop`.
    pub fn via(hop: Address) -> Self {
        Arrival {
            hop: Some(hop),
            remote: None,
        }
    }

    /// A datagram from `remote` that arrived on the socket `hop`.
    pub fn datagram(hop: Address, remote: Address) -> Self {
        Arrival {
            hop: Some(hop),
            remote: Some(remote),
        }
    }

    /// Whether two messages came along the same path: the same connection (and datagram sender), or the
    /// same channel.
    pub fn same_path(&self, other: &Arrival) -> bool {
        self == other
    }

    /// Whether `ret` starts at the hop this message arrived on (always true for routes that transports and
    /// channels built; local senders' routes are trusted).
    pub fn starts(&self, ret: &Route) -> bool {
        self.hop.as_ref().is_none_or(|hop| ret.first() == Some(hop))
    }

    /// Whether this message came back along the first hop of `route` (the connection or outer channel a
    /// handshake went out on) and, over datagrams, from the address it was sent to.
    pub fn came_back_along(&self, route: &Route) -> bool {
        let Some(hop) = &self.hop else {
            return true;
        };
        if route.first() != Some(hop) {
            return false;
        }
        match &self.remote {
            None => true,
            Some(from) => route
                .get(1)
                .is_some_and(|sent_to| same_socket(sent_to, from)),
        }
    }
}

/// Two socket addresses written as text: equal as text, or equal once parsed.
fn same_socket(a: &Address, b: &Address) -> bool {
    if a == b {
        return true;
    }
    let parse = |x: &Address| x.as_str().parse::<core::net::SocketAddr>().ok();
    matches!((parse(a), parse(b)), (Some(x), Some(y)) if x == y)
}

/// Timers and limits of a session (the runtime's `ChannelOptions` without the trust policy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Give up establishing the channel after this long.
    pub handshake_timeout: Duration,
    /// The initiator resends an unanswered handshake message after this long.
    pub handshake_retry: Duration,
    /// Messages in flight (unacknowledged) per direction, and the receiver's credit: it holds at most this
    /// many messages (at least [`INITIAL_CREDIT`]) beyond what its destinations took.
    pub window: usize,
    /// The retransmission timeout until the first round-trip sample; then it follows the measured
    /// round trip (RFC 6298), between `min_rto` and `max_rto`.
    pub retransmit_after: Duration,
    /// The smallest retransmission timeout, however short the measured round trip.
    pub min_rto: Duration,
    /// The largest retransmission timeout (backoff included), and the longest interval between window
    /// probes.
    pub max_rto: Duration,
    /// When a destination cannot take a message ([`Delivery::Blocked`]), [`ChannelSession::poll_timeout`]
    /// asks for a retry this often. `None` when the caller calls [`ChannelSession::deliver`] itself as soon
    /// as its destination has room (the tokio runtime does): no timer then.
    pub delivery_retry: Option<Duration>,
    /// A message not acknowledged within this time fails, and with it the session.
    pub delivery_timeout: Duration,
    /// The initiator sends an empty acknowledgement when it has sent nothing for this long.
    pub keepalive: Duration,
    /// The responder closes after hearing nothing authenticated for this long.
    pub idle_timeout: Duration,
    /// Largest application payload per message.
    pub max_payload: usize,
    /// A re-handshake with fresh Diffie-Hellman replaces the channel's keys this often (when the caller
    /// gave the session a [`HandshakeFactory`]): what a leaked transport key exposes ends there. Two
    /// minutes, as WireGuard: a full handshake costs well under a millisecond, so even a thousand channels
    /// spend a negligible share of a core on it, while a stolen key reads at most two minutes of traffic.
    pub rekey_interval: Duration,
    /// The re-handshake also runs this long before the peer's attestation or identity key expires
    /// ([`ChannelSession::set_peer_expiry`]), so a peer that renewed them is re-authenticated without
    /// closing the channel (at most once per expiry time: a peer with nothing fresher is closed at expiry).
    pub rekey_before_expiry: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            handshake_timeout: Duration::from_secs(10),
            handshake_retry: Duration::from_millis(500),
            window: 128,
            retransmit_after: Duration::from_millis(200),
            min_rto: Duration::from_millis(50),
            max_rto: Duration::from_secs(5),
            delivery_retry: Some(DELIVERY_RETRY),
            delivery_timeout: Duration::from_secs(20),
            keepalive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_payload: MAX_CHANNEL_PAYLOAD,
            rekey_interval: Duration::from_secs(120),
            rekey_before_expiry: Duration::from_secs(60),
        }
    }
}

/// Why a session could not start, refused a call, or ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The handshake failed in the core (untrusted peer, bad attestation, tampering, …).
    #[error(transparent)]
    Core(#[from] Error),
    /// The responder refused the handshake with this reason (a `0x03` message; not authenticated).
    #[error("refused by peer: {0}")]
    Refused(String),
    /// The handshake did not complete in time.
    #[error("secure channel handshake timed out")]
    HandshakeTimeout,
    /// A route breaks the channel's rules (empty, or a return route that does not start where it arrived).
    #[error("bad route: {0}")]
    BadRoute(&'static str),
    /// `send` before the handshake completed.
    #[error("the secure channel is not established yet")]
    NotEstablished,
    /// `send` while the window is full or the peer gave no credit: wait for acknowledgements
    /// ([`ChannelSession::has_room`]).
    #[error("the send window is full")]
    WindowFull,
    /// A payload above [`SessionConfig::max_payload`].
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    /// Closed by our side.
    #[error("channel closed")]
    Closed,
    /// The peer sent CLOSE.
    #[error("channel closed by the peer")]
    ClosedByPeer,
    /// A message was not acknowledged before the delivery deadline.
    #[error("not acknowledged before the delivery deadline")]
    DeliveryTimeout,
    /// The responder heard nothing authenticated for the idle timeout.
    #[error("the peer went silent")]
    PeerSilent,
    /// The peer's node answered with a valid stateless reset: it no longer knows this channel (it
    /// restarted, or its end is gone). Open a new channel.
    #[error("the peer's node no longer knows this channel (stateless reset)")]
    Reset,
    /// The peer's static-key attestation or identity key expired ([`ChannelSession::set_peer_expiry`]):
    /// the channel outlives neither. Open a new channel (the peer must present a fresh attestation).
    #[error("the peer's attestation or identity key expired")]
    PeerExpired,
    /// A re-handshake on this channel proved a different identity than the channel's peer (an attack, or a
    /// relay answering with its own trusted identity): the new keys are refused and the channel closes.
    #[error("a re-handshake proved a different identity than the channel's peer")]
    IdentityChanged,
}

/// What the session tells its caller, in order (see [`ChannelSession::poll_event`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed: the peer proved its identity ([`ChannelSession::peer`]).
    Connected,
    /// The message with this sequence number was delivered (acknowledged cumulatively by the far end).
    Delivered(u64),
    /// The message with this sequence number was not delivered; a `Closed` event follows.
    Failed(u64),
    /// The far end received the message with this sequence number, but its destination was not there or
    /// did not admit it (e.g. no such service): it was not delivered, and will not be retried.
    Undelivered(u64),
    /// The session ended (or never started); nothing more will happen.
    Closed(SessionError),
    /// A re-handshake completed: the channel's keys changed (fresh Diffie-Hellman), the peer proved the
    /// same identity again, and [`ChannelSession::peer`] holds its newly presented proofs (e.g. a renewed
    /// attestation: the caller converts its expiry again with [`ChannelSession::set_peer_expiry`]).
    Rekeyed,
}

/// Counters of one session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub frames_sent: u64,
    pub frames_received: u64,
    /// Frames that failed authentication (tampered, truncated, wrong key).
    pub frames_rejected: u64,
    /// Frames refused by the replay window (duplicates, too old).
    pub frames_replayed: u64,
    pub retransmissions: u64,
    /// Window probes sent (waiting for credit or for a cumulative ACK that may have been lost).
    pub probes: u64,
    /// Messages handed to their destination.
    pub delivered: u64,
    /// Messages reported failed.
    pub failed: u64,
    /// Received messages that did not decode, or that their destination refused (skipped, in order).
    pub undeliverable: u64,
    /// Re-handshakes completed (the key generation: 0 for the first handshake's keys).
    pub rekeys: u64,
}
