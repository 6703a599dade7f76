//! Secure channels as workers. A channel end owns two addresses on its node:
//!
//! * the **encryptor** (`sc-enc#n`): local workers send plaintext messages *through* it — a message routed
//!   `[sc-enc#n, service]` is encrypted, carried over the channel's route, decrypted at the other end and
//!   delivered to `service` there, with a return route that leads back through the channel;
//! * the **decryptor** (`sc-dec#n`): the far end's encrypted frames arrive here.
//!
//! Because a channel's route is just a route, it can cross any chain of transports and relays, and a channel
//! can run through another channel (nesting). Inside the channel, messages carry sequence numbers and are
//! acknowledged, retransmitted and reordered (docs/RUNTIME.md), so a channel survives the loss of the
//! connection under it. All of that protocol is the core's sans-IO `latchkey_core::route::ChannelSession`;
//! the channel ends here (driven by the node's few driver tasks, `drivers`) only move its messages between
//! mailboxes and run its timers.

pub(crate) mod drivers;
/// The delivery windows as the runtime exposed them before the channel moved into the core (kept for source
/// compatibility; the channel itself uses `latchkey_core::route`).
mod resilient;
mod worker;

pub use drivers::DriverStats;
pub use latchkey_core::channel::{CipherSuite, SuiteSet};
pub use resilient::{ResilientChannel, MAX_REOPEN_DELAY, REOPEN_DELAY};

use crate::error::{Result, RuntimeError};
use crate::flow::Accepts;
use crate::identity::LocalIdentity;
use crate::message::{Address, Message, Route};
use crate::node::Node;
use crate::origin::FlowId;
use latchkey_core::channel::{Handshake, PeerIdentity, TrustAnyIdentity, TrustPolicy};
use latchkey_core::crypto::CryptoProvider;
use latchkey_core::identity::Identifier;
use latchkey_core::route::{AdmissionConfig, SessionConfig, SessionError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Largest payload of a message sent through a channel (the rest of a frame holds routes and headers).
pub use latchkey_core::route::MAX_CHANNEL_PAYLOAD;

/// The cipher suite a channel's initiator offers (docs/PROTOCOL.md 5.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SuiteChoice {
    /// AES-256-GCM where the crypto provider has it in hardware
    /// ([`CryptoProvider::prefers_aes_gcm`]), ChaChaPoly otherwise; a listener that refuses AES-GCM gets
    /// one more handshake offering ChaChaPoly.
    #[default]
    Auto,
    /// This suite only (a refusal fails the channel with `UnsupportedSuite`).
    Only(CipherSuite),
}

impl SuiteChoice {
    /// The suite offered with `provider`.
    pub fn resolve(self, provider: &dyn CryptoProvider) -> CipherSuite {
        match self {
            SuiteChoice::Only(suite) => suite,
            SuiteChoice::Auto if provider.prefers_aes_gcm() => CipherSuite::AesGcm,
            SuiteChoice::Auto => CipherSuite::ChaChaPoly,
        }
    }
}

impl std::str::FromStr for SuiteChoice {
    type Err = RuntimeError;

    /// `auto`, `chachapoly` or `aesgcm`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(SuiteChoice::Auto),
            "chachapoly" => Ok(SuiteChoice::Only(CipherSuite::ChaChaPoly)),
            "aesgcm" => Ok(SuiteChoice::Only(CipherSuite::AesGcm)),
            _ => Err(RuntimeError::Malformed(
                "a cipher suite is auto, chachapoly or aesgcm",
            )),
        }
    }
}

/// Channel tuning.
#[derive(Clone)]
pub struct ChannelOptions {
    /// Who may be our peer (checked inside the handshake, before any application data). There is no
    /// default: a channel or listener without one refuses to start, so trust is never implied by an
    /// omitted setting. [`ChannelOptions::trust_any`] says "any authenticated identity" explicitly.
    pub trust: Option<Arc<dyn TrustPolicy>>,
    /// Give up establishing a channel after this long.
    pub handshake_timeout: Duration,
    /// Resend an unanswered handshake message after this long.
    pub handshake_retry: Duration,
    /// Messages in flight (unacknowledged) per direction; senders wait when it is full. It is also the
    /// credit each end gives: it holds at most this many received messages that its local destination has
    /// not taken yet, and the far end's sender pauses until they are taken.
    pub window: usize,
    /// The retransmission timeout until the round trip is measured; then it follows the measured round
    /// trip (RFC 6298, between 50 ms and 5 s, doubling on repeated loss).
    pub retransmit_after: Duration,
    /// A message not acknowledged within this time fails, and with it the channel (see docs/RUNTIME.md).
    pub delivery_timeout: Duration,
    /// The initiator sends an empty acknowledgement this often when idle, so the responder learns a new
    /// route after the initiator's connection changed.
    pub keepalive: Duration,
    /// The responder closes its end after hearing nothing authenticated for this long (the initiator's
    /// keepalives prevent that while it lives), so vanished initiators do not leave channels behind.
    pub idle_timeout: Duration,
    /// A listener's limits on first messages: handshakes in progress in all and per source, a per-source
    /// rate, and when a cookie (stateless address validation) is required (docs/SECURITY.md, "Floods").
    pub admission: AdmissionConfig,
    /// A re-handshake with fresh Diffie-Hellman replaces the channel's keys this often (docs/RUNTIME.md,
    /// "Re-handshake"; two minutes, as WireGuard). Both ends re-handshake: the initiator starts, the
    /// responder asks.
    pub rekey_interval: Duration,
    /// The re-handshake also runs this long before the peer's attestation or identity key expires, so a
    /// peer that presents fresh proofs keeps the channel (transparent re-authentication).
    pub rekey_before_expiry: Duration,
    /// Our re-handshakes present a freshly made attestation of our static key when ours would expire
    /// within `rekey_before_expiry` (the identity key in our vault signs it), so our peers keep their
    /// channels across our attestation's expiry. Off by default: the channel then closes when our
    /// attestation expires, as a node whose attestations are renewed by an operator expects.
    pub renew_attestation: bool,
    /// The credentials this end presents in its handshakes and re-handshakes, read at each one, so a
    /// renewed credential reaches live channels at their next re-handshake (see
    /// [`ChannelHandle::rehandshake_soon`]). `None`: the identity's own credentials.
    pub credentials: Option<CredentialSlot>,
    /// The suite this end offers when it opens a channel (and in its re-handshakes): `Auto` by default.
    pub suite: SuiteChoice,
    /// The suites a listener (and the responder of a re-handshake) accepts: both by default. A
    /// handshake offering another is refused with `UnsupportedSuite`.
    pub accepted_suites: SuiteSet,
}

impl std::fmt::Debug for ChannelOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelOptions")
            .field("window", &self.window)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("suite", &self.suite)
            .field("accepted_suites", &self.accepted_suites)
            .finish_non_exhaustive()
    }
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            trust: None,
            handshake_timeout: Duration::from_secs(10),
            handshake_retry: Duration::from_millis(500),
            window: 128,
            retransmit_after: Duration::from_millis(200),
            delivery_timeout: Duration::from_secs(20),
            keepalive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            admission: AdmissionConfig::default(),
            rekey_interval: Duration::from_secs(120),
            rekey_before_expiry: Duration::from_secs(60),
            renew_attestation: false,
            credentials: None,
            suite: SuiteChoice::Auto,
            accepted_suites: SuiteSet::ALL,
        }
    }
}

impl ChannelOptions {
    pub fn with_trust(mut self, trust: Arc<dyn TrustPolicy>) -> Self {
        self.trust = Some(trust);
        self
    }

    /// Accept any peer that proves *an* identity: only for peers that are authorized later (per service,
    /// by the flow rules' peer lists) or for demos. Logged as a warning where a listener starts with it.
    pub fn trust_any(self) -> Self {
        self.with_trust(Arc::new(TrustAnyIdentity))
    }

    /// Offers `choice` and accepts only what it names (`Auto`: offers the preferred suite, accepts both):
    /// what the command line's `--suite` sets.
    pub fn with_suite(mut self, choice: SuiteChoice) -> Self {
        self.suite = choice;
        self.accepted_suites = match choice {
            SuiteChoice::Auto => SuiteSet::ALL,
            SuiteChoice::Only(suite) => SuiteSet::only(suite),
        };
        self
    }

    /// The timers and limits the core's channel session runs with.
    pub fn session_config(&self) -> SessionConfig {
        SessionConfig {
            handshake_timeout: self.handshake_timeout,
            handshake_retry: self.handshake_retry,
            window: self.window,
            retransmit_after: self.retransmit_after,
            delivery_timeout: self.delivery_timeout,
            keepalive: self.keepalive,
            idle_timeout: self.idle_timeout,
            max_payload: MAX_CHANNEL_PAYLOAD,
            rekey_interval: self.rekey_interval,
            rekey_before_expiry: self.rekey_before_expiry,
            // The worker waits for room in a full mailbox itself: no delivery retry timer.
            delivery_retry: None,
            ..SessionConfig::default()
        }
    }

    pub(crate) fn trust_policy(&self) -> Result<Arc<dyn TrustPolicy>> {
        self.trust.clone().ok_or(RuntimeError::Insecure(
            "no trust policy: name the identifiers to trust, or trust any identity explicitly",
        ))
    }
}

/// Credentials a node presents in its handshakes, replaceable while its channels live (a credential
/// refresher writes, every handshake and re-handshake reads). Its `Debug` shows only how many.
#[derive(Clone, Default)]
pub struct CredentialSlot(Arc<std::sync::RwLock<Option<Vec<Vec<u8>>>>>);

impl CredentialSlot {
    /// A slot presenting `credentials`.
    pub fn new(credentials: Vec<Vec<u8>>) -> Self {
        let slot = CredentialSlot::default();
        slot.set(credentials);
        slot
    }

    /// Presents `credentials` from the next handshake on.
    pub fn set(&self, credentials: Vec<Vec<u8>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(credentials);
    }

    /// What the next handshake presents (`None`: the identity's own credentials).
    pub fn get(&self) -> Option<Vec<Vec<u8>>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl std::fmt::Debug for CredentialSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.get().map(|c| c.len());
        f.debug_struct("CredentialSlot")
            .field("credentials", &n)
            .finish()
    }
}

/// Counters of one channel end.
#[derive(Debug, Default)]
pub struct ChannelStats {
    pub frames_sent: AtomicU64,
    pub frames_received: AtomicU64,
    /// Frames that failed authentication (tampered, truncated, wrong key).
    pub frames_rejected: AtomicU64,
    /// Frames refused by the replay window (duplicates, too old).
    pub frames_replayed: AtomicU64,
    pub retransmissions: AtomicU64,
    pub delivered: AtomicU64,
    /// Messages that were not acknowledged in time (reported failed; the channel then closes).
    pub failed: AtomicU64,
    /// Re-handshakes completed: the generation of the channel's current keys.
    pub rekeys: AtomicU64,
    /// The Noise handshake hash of the current keys: a public fingerprint that changes with every
    /// re-handshake ([`ChannelHandle::key_fingerprint`]).
    pub(crate) fingerprint: std::sync::Mutex<[u8; 32]>,
    pub closed: AtomicBool,
    /// Woken when the channel's worker has stopped (after `closed` is set).
    pub(crate) stopped: tokio::sync::Notify,
    /// Why the channel closed, once it has (see [`ChannelHandle::close_reason`]).
    pub(crate) reason: std::sync::Mutex<Option<String>>,
    pub(crate) was_reset: AtomicBool,
    /// The current keys' suite ([`CipherSuite::id`]; 0 before the handshake).
    pub(crate) suite: std::sync::atomic::AtomicU8,
}

impl ChannelStats {
    pub(crate) fn set_suite(&self, suite: Option<CipherSuite>) {
        if let Some(suite) = suite {
            self.suite.store(suite.id(), Ordering::Relaxed);
        }
    }

    /// Marks the channel stopped and wakes whoever waits in [`ChannelHandle::closed`].
    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.stopped.notify_waiters();
    }
}

impl ChannelStats {
    pub(crate) fn set_reason(&self, reason: String) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        r.get_or_insert(reason);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

pub(crate) enum Command {
    Send {
        message: Message,
        done: oneshot::Sender<Result<()>>,
    },
    Close,
    /// Re-handshake now (see [`ChannelHandle::rehandshake_soon`]).
    Rehandshake,
    /// Tests only: see `ChannelHandle::skip_send_epochs_for_test`.
    #[cfg(feature = "test-vectors")]
    SkipEpochs(u64),
}

/// One end of an established channel.
#[derive(Clone)]
pub struct ChannelHandle {
    encryptor: Address,
    flow: FlowId,
    /// The peer's proofs as of the last (re-)handshake: its identifier never changes, its credentials may.
    peer: Arc<std::sync::RwLock<Arc<PeerIdentity>>>,
    stats: Arc<ChannelStats>,
    commands: crate::queue::Sender<Command>,
}

impl std::fmt::Debug for ChannelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelHandle")
            .field("encryptor", &self.encryptor)
            .field("peer", &self.peer())
            .finish()
    }
}

impl ChannelHandle {
    /// The encryptor's address: the first hop of any route through this channel.
    pub fn address(&self) -> &Address {
        &self.encryptor
    }

    /// The flow of the messages that come out of this channel on this node: open a local worker to it
    /// with [`Node::allow`] (or [`crate::Accepts::flow`]) so the peer may reach it.
    pub fn flow(&self) -> FlowId {
        self.flow
    }

    /// The route to `service` on the far side of this channel.
    pub fn route_to(&self, service: impl Into<Address>) -> Route {
        Route::from_addresses([self.encryptor.clone(), service.into()])
    }

    pub fn peer(&self) -> Identifier {
        self.peer_identity().identifier
    }

    /// The cipher suite of the channel's current keys (docs/PROTOCOL.md 5.1).
    pub fn suite(&self) -> CipherSuite {
        CipherSuite::from_id(self.stats.suite.load(Ordering::Relaxed)).unwrap_or_default()
    }

    /// What the peer proved in the last completed (re-)handshake: the same identifier always, and the
    /// credentials it presented most recently.
    pub fn peer_identity(&self) -> Arc<PeerIdentity> {
        self.peer.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Asks for a re-handshake now rather than at the re-handshake timer (the initiator starts it, the
    /// responder asks the initiator), e.g. after this node's credential was renewed, so the peer sees the
    /// new one (see [`ChannelOptions::credentials`]).
    pub async fn rehandshake_soon(&self) {
        let _ = self.commands.send(Command::Rehandshake).await;
    }

    pub fn stats(&self) -> &ChannelStats {
        &self.stats
    }

    pub fn is_closed(&self) -> bool {
        self.stats.closed.load(Ordering::Relaxed)
    }

    /// Why this end closed (closed by us or the peer, reset by the peer's node, delivery deadline, idle),
    /// once it has; `None` while it is open.
    pub fn close_reason(&self) -> Option<String> {
        self.stats
            .reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A public fingerprint of the channel's current keys (the Noise handshake hash that made them): it
    /// changes with every re-handshake and is the same at both ends. It reveals nothing of the keys.
    pub fn key_fingerprint(&self) -> [u8; 32] {
        *self
            .stats
            .fingerprint
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// **Tests only**: moves this end's sending keys more epochs ahead than the peer derives forward, as
    /// if that many epochs of frames had been lost (the channel must recover by re-handshake). Behind the
    /// `test-vectors` feature.
    #[cfg(feature = "test-vectors")]
    pub async fn skip_send_epochs_for_test(&self, epochs: u64) {
        let _ = self.commands.send(Command::SkipEpochs(epochs)).await;
    }

    /// Whether this end was closed by a valid stateless reset from the peer's node (it no longer knows
    /// the channel, e.g. after a restart): open a new channel.
    pub fn was_reset(&self) -> bool {
        self.stats.was_reset.load(Ordering::Relaxed)
    }

    /// Sends `payload` to `onward` on the far side (return route `ret` there starts at this channel) and
    /// waits until the far end acknowledges it: `Ok` means delivered once, an error means it was not.
    pub async fn send_confirmed(&self, onward: Route, ret: Route, payload: Vec<u8>) -> Result<()> {
        let (done, wait) = oneshot::channel();
        let message = Message::new(onward, ret, payload);
        self.commands
            .send(Command::Send { message, done })
            .await
            .map_err(|_| RuntimeError::ChannelClosed)?;
        wait.await.map_err(|_| RuntimeError::ChannelClosed)?
    }

    /// Closes this end and tells the far end (best effort): addresses are freed and unacknowledged messages
    /// are reported failed. Returns once this end has stopped.
    pub async fn close(&self) {
        let _ = self.commands.send(Command::Close).await;
        self.closed().await;
    }

    /// Waits until this end has stopped (closed by either side, failed, or gone idle).
    pub async fn closed(&self) {
        loop {
            let stopped = self.stats.stopped.notified();
            if self.is_closed() {
                return;
            }
            stopped.await;
        }
    }
}

/// Opens a channel to the listener at the end of `route` (e.g. `[tcp-out#1, "api"]`).
pub async fn create_channel(
    node: &Node,
    identity: &LocalIdentity,
    route: Route,
    options: ChannelOptions,
) -> Result<ChannelHandle> {
    worker::initiate(node, identity, route, options).await
}

/// A running listener; yields each channel it accepts.
#[derive(Debug)]
pub struct ListenerHandle {
    pub address: Address,
    /// The flow of the messages that come out of every channel this listener accepts: open services to it
    /// with [`Node::allow`] (or [`crate::Accepts::flow`]).
    pub flow: FlowId,
    accepted: mpsc::Receiver<ChannelHandle>,
}

impl ListenerHandle {
    /// The next accepted channel. Accepted channels work whether or not anyone calls this.
    pub async fn accepted(&mut self) -> Option<ChannelHandle> {
        self.accepted.recv().await
    }
}

/// Accepts channels at `address` on `node`, for peers that `options.trust` accepts. The listener takes
/// handshakes from any transport; to take them out of a channel too (nesting, a relay channel), open it to
/// that channel's flow with [`Node::allow`].
pub fn create_listener(
    node: &Node,
    identity: &LocalIdentity,
    address: Address,
    options: ChannelOptions,
) -> Result<ListenerHandle> {
    options.trust_policy()?;
    node.adopt_reset_key(identity);
    let mailbox = node.register_with(
        address.clone(),
        crate::node::DEFAULT_MAILBOX,
        Accepts::any_transport(),
    )?;
    let (tx, accepted) = mpsc::channel(64);
    let flow = FlowId::random();
    worker::spawn_listener(node.clone(), identity.clone(), mailbox, options, flow, tx);
    Ok(ListenerHandle {
        address,
        flow,
        accepted,
    })
}

pub(crate) fn start_handshake(
    identity: &LocalIdentity,
    options: &ChannelOptions,
    initiator: bool,
) -> Result<Handshake> {
    let trust = options.trust_policy()?;
    let now = latchkey_core::Timestamp::now();
    let mut config = match options.credentials.as_ref().and_then(CredentialSlot::get) {
        Some(credentials) => identity
            .clone()
            .with_credentials(credentials)
            .handshake_config(trust, now),
        None => identity.handshake_config(trust, now),
    };
    // Routed: the suite is offered in message 1 and the responder takes the offer if it accepts it.
    config.suite = options.suite.resolve(config.provider);
    config.announce_suite = true;
    config.accepted_suites = options.accepted_suites;
    Ok(if initiator {
        Handshake::initiator(config)?
    } else {
        Handshake::responder(config)?
    })
}

pub(crate) fn map_core(e: latchkey_core::Error) -> RuntimeError {
    match e {
        latchkey_core::Error::UntrustedPeer(id) => RuntimeError::Untrusted(id),
        other => RuntimeError::Core(other),
    }
}

/// A session's failure as a runtime error.
pub(crate) fn session_error(e: SessionError) -> RuntimeError {
    match e {
        SessionError::Core(e) => map_core(e),
        SessionError::Refused(reason) => RuntimeError::Refused(reason),
        SessionError::HandshakeTimeout => RuntimeError::Timeout("secure channel handshake"),
        SessionError::BadRoute(why) => RuntimeError::Malformed(why),
        SessionError::TooLarge { len, max } => RuntimeError::FrameTooLarge { len, max },
        SessionError::DeliveryTimeout
        | SessionError::ClosedByPeer
        | SessionError::PeerSilent
        | SessionError::Reset
        | SessionError::PeerExpired
        | SessionError::IdentityChanged
        | SessionError::Closed => RuntimeError::DeliveryFailed(failure_reason(&e)),
        _ => RuntimeError::ChannelClosed,
    }
}

/// Why undelivered messages failed, as `DeliveryFailed` says it.
pub(crate) fn failure_reason(e: &SessionError) -> &'static str {
    match e {
        SessionError::DeliveryTimeout => "not acknowledged before the delivery deadline",
        SessionError::ClosedByPeer => "channel closed by the peer",
        SessionError::PeerSilent => "the peer went silent",
        SessionError::Reset => "channel reset: the peer's node no longer knows it (restarted?)",
        SessionError::PeerExpired => "the peer's attestation or identity key expired",
        SessionError::IdentityChanged => {
            "a re-handshake proved another identity than the channel's peer"
        }
        _ => "channel closed",
    }
}
