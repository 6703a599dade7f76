//! The tokio driver of the core's channel session (`latchkey_core::route::ChannelSession`): it moves the
//! session's routed messages between the node's mailboxes and runs its timers. All protocol decisions
//! (handshake over the route, path binding, DATA/ACK/CLOSE, retransmission, keepalive, idle close, route
//! following) are the session's.
//!
//! The established loop never waits on another worker's full mailbox — it would risk a deadlock between two
//! channel ends — so outbound frames and local deliveries use non-blocking sends. A frame not taken is
//! retransmitted. A delivery not taken stays in the session (within the credit it gave the sender, which
//! therefore pauses instead of retransmitting), and the loop waits for room in that mailbox as one more
//! `select!` branch (`reserve`), beside its inputs and timers: the delivery resumes as soon as there is
//! room, never on a timer, and the loop never blocks on it.

use super::{
    failure_reason, session_error, start_handshake, ChannelHandle, ChannelOptions, ChannelStats,
    Command, SuiteChoice,
};
use crate::error::{Result, RuntimeError};
use crate::flow::Accepts;
use crate::identity::LocalIdentity;
use crate::message::{Message, Route};
use crate::node::{Mailbox, Node, DEFAULT_MAILBOX};
use crate::origin::{ChannelOrigin, FlowId, Origin};
use crate::timer::{instant_of, now, Timer};
use latchkey_core::channel::{CipherSuite, Role};
use latchkey_core::route::{
    refuse_suite_offer, Admission, Admit, Arrival, ChannelSession, Delivery, Event,
    HandshakeFactory, Instant as Tick, SessionError, KIND_HANDSHAKE, KIND_HANDSHAKE_WITH_COOKIE,
};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How soon a held delivery is tried again when its mailbox could not be found to wait on (it went away
/// between the attempt and the look-up; the next attempt reports what became of it). Not the usual path:
/// a full mailbox is waited on.
const DELIVERY_RECHECK: Duration = Duration::from_millis(10);

/// When a handshake in progress wakes for its timer (`None`: no timer; a day is as good as never).
fn wake_at(timer: Option<Tick>) -> tokio::time::Instant {
    match timer {
        Some(t) => instant_of(t),
        None => tokio::time::Instant::now() + Duration::from_secs(86_400),
    }
}

/// What a channel's re-handshakes are made from: our identity and the channel options. A listener shares
/// one for all the channels it accepts, so an idle channel carries a pointer to it, not copies.
pub(super) type RekeySource = Arc<(LocalIdentity, ChannelOptions)>;

/// Makes the handshakes of a channel's re-handshakes: our identity's current proofs (re-attested when
/// `renew_attestation` asks and ours expires soon) and the same trust policy as the first handshake
/// (pinned histories included), checked at the time of each re-handshake; the credentials in
/// `options.credentials` as they are at each one (a renewed credential is presented at the next).
fn rehandshakes(source: RekeySource) -> HandshakeFactory {
    // A renewed attestation is this channel's own (the shared source keeps the identity it was given).
    let mut renewed: Option<Box<LocalIdentity>> = None;
    Box::new(move |role| {
        let (identity, options) = &*source;
        let now = latchkey_core::Timestamp::now();
        let mut current = renewed.as_deref().unwrap_or(identity);
        if options.renew_attestation {
            let expires = current.channel_identity().attestation.data.expires_at;
            if expires.0 <= now.0 + options.rekey_before_expiry.as_secs() {
                renewed = Some(Box::new(current.reattested(now)?));
                current = renewed.as_deref().unwrap_or(identity);
            }
        }
        start_handshake(current, options, role == Role::Initiator).map_err(|e| match e {
            RuntimeError::Core(e) => e,
            _ => latchkey_core::Error::InvalidState("no trust policy for a re-handshake"),
        })
    })
}

/// Now, on the sessions' clock, at the wall-clock expiry of the peer's attestation or identity key.
fn peer_expiry(peer: &latchkey_core::channel::PeerIdentity) -> Tick {
    let expires = peer
        .attestation_expires_at
        .min(peer.history.primary_key_expires_at());
    let left = expires.0.saturating_sub(latchkey_core::Timestamp::now().0);
    now() + Duration::from_secs(left)
}

/// How a message reached a decryptor, in the session's terms.
fn arrival(origin: &Origin) -> Arrival {
    match origin {
        Origin::Local { .. } => Arrival::local(),
        Origin::Transport {
            connection, remote, ..
        } => Arrival {
            hop: Some(connection.clone()),
            remote: remote.clone(),
        },
        Origin::Channel(c) => Arrival::via(c.encryptor.clone()),
    }
}

pub(super) async fn initiate(
    node: &Node,
    identity: &LocalIdentity,
    route: Route,
    options: ChannelOptions,
) -> Result<ChannelHandle> {
    // Left to choose, we offer AES-GCM where the CPU has it; a listener that does not accept it refuses
    // (fast, unauthenticated): one retry offering ChaChaPoly, which every listener accepts by default. An
    // explicit suite is never changed.
    let fallback = options.suite == SuiteChoice::Auto
        && options
            .suite
            .resolve(latchkey_core::crypto::default_provider())
            != CipherSuite::ChaChaPoly;
    match initiate_once(node, identity, route.clone(), options.clone()).await {
        Err(RuntimeError::Core(latchkey_core::Error::UnsupportedSuite(_))) if fallback => {
            tracing::info!("the listener refused AES-GCM: offering ChaChaPoly instead");
            let options = ChannelOptions {
                suite: SuiteChoice::Only(CipherSuite::ChaChaPoly),
                ..options
            };
            initiate_once(node, identity, route, options).await
        }
        other => other,
    }
}

async fn initiate_once(
    node: &Node,
    identity: &LocalIdentity,
    route: Route,
    options: ChannelOptions,
) -> Result<ChannelHandle> {
    // Our decryptor takes messages only from the flow of the route's first hop (the connection or outer
    // channel the handshake goes out on), so nobody else can answer the handshake or inject frames.
    let path_flow = route.first().and_then(|first| node.flow_of(first));
    let accepts = path_flow.map_or_else(Accepts::local_only, Accepts::flow);
    let mut decryptor_box =
        node.register_with(node.unique_address("sc-dec"), DEFAULT_MAILBOX, accepts)?;
    let handshake = start_handshake(identity, &options, true)?;
    node.adopt_reset_key(identity);
    let mut session = ChannelSession::initiator(
        options.session_config(),
        handshake,
        decryptor_box.address().clone(),
        route,
        now(),
    )
    .map_err(session_error)?;
    session.set_reset_token(node.reset_token(decryptor_box.address()));
    session.set_rehandshake(rehandshakes(Arc::new((identity.clone(), options))));
    drive_handshake(node, &mut session, &mut decryptor_box).await?;
    let flow = FlowId::random();
    let encryptor_box = node.register_producer(
        node.unique_address("sc-enc"),
        DEFAULT_MAILBOX,
        node.encryptor_accepts(),
        flow,
    )?;
    Ok(spawn_channel(
        node.clone(),
        encryptor_box,
        decryptor_box,
        session,
        flow,
        None,
    ))
}

/// Runs a session until its handshake completes (or fails).
async fn drive_handshake(
    node: &Node,
    session: &mut ChannelSession,
    mailbox: &mut Mailbox,
) -> Result<()> {
    let me = mailbox.address().clone();
    loop {
        while let Some(m) = session.poll_transmit() {
            let sent = node.send_as(&me, Message::from(m)).await;
            // A refusal (sent as the session closes) is best effort; handshake messages must go out.
            if let (Err(e), false) = (sent, session.is_closed()) {
                return Err(e);
            }
        }
        while let Some(event) = session.poll_event() {
            match event {
                Event::Connected => return Ok(()),
                Event::Closed(e) => return Err(session_error(e)),
                _ => {}
            }
        }
        let wake = wake_at(session.poll_timeout());
        tokio::select! {
            m = mailbox.recv() => match m {
                Some(m) => {
                    let arrived = arrival(m.origin());
                    session.handle_input(now(), m.into_routed(), &arrived);
                }
                None => return Err(RuntimeError::ChannelClosed),
            },
            _ = tokio::time::sleep_until(wake) => session.handle_timeout(now()),
        }
    }
}

pub(super) fn spawn_listener(
    node: Node,
    identity: LocalIdentity,
    mut mailbox: Mailbox,
    options: ChannelOptions,
    flow: FlowId,
    accepted: mpsc::Sender<ChannelHandle>,
) {
    // Each handshake in progress holds state until it completes or times out, and costs two X25519
    // operations to start: the core's admission caps them (in all and per source), rate-limits each source,
    // and asks for a cookie (stateless address validation) over datagrams and under load.
    let provider = latchkey_core::crypto::default_provider();
    let mut key = [0u8; 32];
    if provider.fill_random(&mut key).is_err() {
        tracing::error!(
            "listener {}: no randomness for its cookie key",
            mailbox.address()
        );
        return;
    }
    let admission = Arc::new(Mutex::new(Admission::new(options.admission.clone(), key)));
    key.fill(0);
    let source: RekeySource = Arc::new((identity, options));
    tokio::spawn(async move {
        while let Some(m1) = mailbox.recv().await {
            if !matches!(
                m1.payload.first(),
                Some(&KIND_HANDSHAKE) | Some(&KIND_HANDSHAKE_WITH_COOKIE)
            ) {
                tracing::debug!(
                    "listener {}: ignoring a non-handshake message",
                    mailbox.address()
                );
                continue;
            }
            let arrived = arrival(m1.origin());
            let limit_source = matches!(m1.origin(), Origin::Transport { .. });
            let origin = m1.origin().clone();
            let routed = m1.into_routed();
            let verdict = admission.lock().unwrap_or_else(|e| e.into_inner()).admit(
                provider,
                now(),
                &routed,
                &arrived,
                limit_source,
            );
            let (m1, ticket) = match verdict {
                Admit::Start { message, ticket } => {
                    // A suite offer we do not take is refused at once, before any handshake state.
                    if let Some(refusal) = refuse_suite_offer(
                        &message,
                        &arrived,
                        source.1.accepted_suites,
                        mailbox.address(),
                    ) {
                        admission
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .finished(ticket);
                        tracing::info!(
                            "listener {}: refused a handshake offering a suite it does not accept",
                            mailbox.address()
                        );
                        if let Err(e) = node.try_send_as(mailbox.address(), Message::from(refusal))
                        {
                            tracing::debug!(
                                "listener {}: refusal not sent: {e}",
                                mailbox.address()
                            );
                        }
                        continue;
                    }
                    (Message::from_routed(message, origin), ticket)
                }
                Admit::Answer(reply) => {
                    if let Err(e) = node.try_send_as(mailbox.address(), Message::from(reply)) {
                        tracing::debug!(
                            "listener {}: cookie reply not sent: {e}",
                            mailbox.address()
                        );
                    }
                    continue;
                }
                Admit::Drop(why) => {
                    tracing::debug!(
                        "listener {}: first message dropped: {why}",
                        mailbox.address()
                    );
                    continue;
                }
            };
            let node = node.clone();
            let source = source.clone();
            let accepted = accepted.clone();
            let admission = admission.clone();
            tokio::spawn(async move {
                let result = respond(&node, source, m1, flow).await;
                admission
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .finished(ticket);
                match result {
                    Ok(handle) => {
                        tracing::info!("secure channel accepted from {}", handle.peer());
                        let _ = accepted.try_send(handle);
                    }
                    Err(e) => tracing::warn!("secure channel refused: {e}"),
                }
            });
        }
    });
}

async fn respond(
    node: &Node,
    source: RekeySource,
    m1: Message,
    listener_flow: FlowId,
) -> Result<ChannelHandle> {
    let (identity, options) = &*source;
    let handshake = start_handshake(identity, options, false)?;
    // Our decryptor takes messages only from the flow the first message came on.
    let accepts = m1
        .origin()
        .primary_flow()
        .map_or_else(Accepts::local_only, Accepts::flow);
    let arrived = arrival(m1.origin());
    let me = node.unique_address("sc-dec");
    // The session refuses a message 1 whose return route does not start where it arrived and pins the
    // initiator's decryptor; our decryptor exists only once message 1 was read.
    let mut session = ChannelSession::responder(
        options.session_config(),
        handshake,
        me.clone(),
        &m1.into_routed(),
        arrived,
        now(),
    )
    .map_err(session_error)?;
    node.adopt_reset_key(identity);
    session.set_reset_token(node.reset_token(&me));
    session.set_rehandshake(rehandshakes(source.clone()));
    let mut decryptor_box = node.register_with(me, DEFAULT_MAILBOX, accepts)?;
    drive_handshake(node, &mut session, &mut decryptor_box).await?;
    let flow = FlowId::random();
    let encryptor_box = node.register_producer(
        node.unique_address("sc-enc"),
        DEFAULT_MAILBOX,
        node.encryptor_accepts(),
        flow,
    )?;
    Ok(spawn_channel(
        node.clone(),
        encryptor_box,
        decryptor_box,
        session,
        flow,
        Some(listener_flow),
    ))
}

fn spawn_channel(
    node: Node,
    encryptor_box: Mailbox,
    decryptor_box: Mailbox,
    session: ChannelSession,
    flow: FlowId,
    listener_flow: Option<FlowId>,
) -> ChannelHandle {
    let peer = session
        .peer()
        .expect("spawned after the handshake completed")
        .clone();
    // The channel outlives neither the peer's attestation nor its identity key.
    let mut session = session;
    session.set_peer_expiry(peer_expiry(&peer));
    let stats = Arc::new(ChannelStats::default());
    if let Some(hash) = session.handshake_hash() {
        *stats.fingerprint.lock().unwrap_or_else(|e| e.into_inner()) = hash;
    }
    stats.set_suite(session.suite());
    let (commands_tx, commands) = crate::queue::bounded(16);
    let shared_peer = Arc::new(std::sync::RwLock::new(Arc::new(peer.clone())));
    let handle = ChannelHandle {
        encryptor: encryptor_box.address().clone(),
        flow,
        peer: shared_peer.clone(),
        stats: stats.clone(),
        commands: commands_tx,
    };
    let origin = Origin::Channel(Arc::new(ChannelOrigin {
        encryptor: encryptor_box.address().clone(),
        peer: peer.identifier,
        flow,
        listener: listener_flow,
        credentials: peer.credentials.clone().into(),
    }));
    let end = ChannelEnd {
        node,
        decryptor_address: decryptor_box.address().clone(),
        encryptor_address: encryptor_box.address().clone(),
        session,
        peer: peer.identifier,
        shared_peer,
        origin,
        stats,
        waiting: HashMap::new(),
        failed: Vec::new(),
        seen: Default::default(),
        blocked_on: None,
    };
    let timer = end.node.timer();
    let node = end.node.clone();
    node.channel_drivers().add(ChannelTask {
        end,
        encryptor_box,
        decryptor_box,
        commands,
        timer,
        room: None,
        done: false,
    });
    handle
}

struct ChannelEnd {
    node: Node,
    decryptor_address: crate::message::Address,
    encryptor_address: crate::message::Address,
    session: ChannelSession,
    peer: latchkey_core::identity::Identifier,
    /// The handles' view of the peer's proofs, replaced after each re-handshake.
    shared_peer: Arc<std::sync::RwLock<Arc<latchkey_core::channel::PeerIdentity>>>,
    /// Stamped on every message this channel delivers.
    origin: Origin,
    stats: Arc<ChannelStats>,
    /// `send_confirmed` callers, by sequence number.
    waiting: HashMap<u64, oneshot::Sender<Result<()>>>,
    /// Sequence numbers reported failed, answered when the session says why it closed.
    failed: Vec<u64>,
    /// The session's counters as last published (to log what changed).
    seen: latchkey_core::route::SessionStats,
    /// The full mailbox a held delivery waits for.
    blocked_on: Option<crate::queue::Sender<Message>>,
}

/// Rounds of work one poll of a channel end does before it yields to the other ends and tasks.
const ROUNDS_PER_POLL: usize = 32;

/// One established channel end: a hand-written future rather than an `async` loop with `select!`, so that an
/// idle channel carries only its state, its slot in the node's timer service and three queue handles (the
/// queues keep their receivers' wakers themselves). It is not a tokio task: one of the node's channel drivers
/// (`super::drivers`) owns it and polls it when its waker fires. It polls, in turn, the encryptor's
/// mailbox and the command queue (while the session has room), the decryptor's mailbox, and hands what it
/// gets to the session; once the session's next deadline has passed it calls `handle_timeout`, and otherwise
/// leaves that deadline with the node's timer service (`crate::timer`), which wakes it then. Every round
/// flushes the session's output.
pub(crate) struct ChannelTask {
    end: ChannelEnd,
    encryptor_box: Mailbox,
    decryptor_box: Mailbox,
    /// Dropped handles do not close a channel (a listener's channels usually have none).
    commands: crate::queue::Receiver<Command>,
    /// This end's slot in the node's timer service: wakes the end at the session's next deadline.
    timer: Timer,
    /// While a held delivery waits for room in a full mailbox: resolves when that mailbox has room (or is
    /// gone). Allocated only while something waits, so idle channels carry no waiting state.
    room: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    done: bool,
}

impl std::future::Future for ChannelTask {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        use std::task::Poll;
        // Every field is Unpin.
        let task = self.get_mut();
        if task.done {
            return Poll::Ready(());
        }
        for _ in 0..ROUNDS_PER_POLL {
            if !task.end.flush() {
                task.done = true;
                // The addresses are freed before anyone waiting in `ChannelHandle::closed` is woken.
                task.encryptor_box.close();
                task.decryptor_box.close();
                task.end.stats.mark_closed();
                return Poll::Ready(());
            }
            let mut progressed = false;
            if task.end.session.has_room() {
                if let Poll::Ready(Some(mut message)) = task.encryptor_box.poll_recv(cx) {
                    message.onward.pop_front();
                    task.end.enqueue(message, None);
                    progressed = true;
                }
            }
            if task.end.session.has_room() {
                if let Poll::Ready(Some(command)) = task.commands.poll_recv(cx) {
                    match command {
                        Command::Send { message, done } => task.end.enqueue(message, Some(done)),
                        Command::Close => task.end.session.close(now()),
                        Command::Rehandshake => task.end.session.rehandshake_soon(now()),
                        #[cfg(feature = "test-vectors")]
                        Command::SkipEpochs(n) => {
                            let _ = task.end.session.skip_send_epochs_for_test(n);
                        }
                    }
                    progressed = true;
                }
            }
            if let Poll::Ready(Some(message)) = task.decryptor_box.poll_recv(cx) {
                let arrived = arrival(message.origin());
                task.end
                    .session
                    .handle_input(now(), message.into_routed(), &arrived);
                progressed = true;
            }
            // A held delivery waits for room in its mailbox, not for a timer: the next `flush` hands it
            // over (through the node, with its checks).
            if let Some(queue) = task.end.blocked_on.take() {
                task.room = Some(Box::pin(queue.room()));
            }
            if let Some(room) = task.room.as_mut() {
                if room.as_mut().poll(cx).is_ready() {
                    task.room = None;
                    progressed = true;
                }
            }
            // Held deliveries whose mailbox could not be found again (it went away meanwhile): the next
            // attempt, soon, finds out what became of it.
            let recheck = (task.room.is_none() && task.end.session.pending_delivery())
                .then(|| now() + DELIVERY_RECHECK);
            let next = match (task.end.session.poll_timeout(), recheck) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match next {
                Some(at) if at <= now() => {
                    task.end.session.handle_timeout(now());
                    progressed = true;
                }
                // Woken by the node's timer service once `next` has passed (or not at all without a timer).
                _ if !progressed => task.timer.arm(next, cx.waker()),
                _ => {}
            }
            if !progressed {
                // Idle until woken: the session's output queues are empty now (flushed above).
                task.end.session.release_idle_buffers();
                return Poll::Pending;
            }
        }
        // Plenty to do: let the other ends and tasks run, and come back (the driver polls it again next round).
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl ChannelEnd {
    fn enqueue(&mut self, message: Message, done: Option<oneshot::Sender<Result<()>>>) {
        match self.session.send_owned(now(), message.into_routed()) {
            Ok(seq) => {
                if let Some(done) = done {
                    self.waiting.insert(seq, done);
                }
            }
            Err(e) => {
                let e = session_error(e);
                tracing::warn!("secure channel: not sending: {e}");
                if let Some(done) = done {
                    let _ = done.send(Err(e));
                }
            }
        }
    }

    /// Everything the session has for us after an input: deliveries, messages to send, events. False once
    /// the session has closed.
    fn flush(&mut self) -> bool {
        let (node, encryptor, origin, peer) =
            (&self.node, &self.encryptor_address, &self.origin, self.peer);
        let mut blocked_on = None;
        self.session.deliver(now(), |mut inner| {
            // The far side's return route continues through our encryptor.
            inner.ret = inner.ret.prepend(encryptor.clone());
            match node.try_deliver(Message::from_routed(inner, origin.clone())) {
                Ok(()) => Delivery::Delivered,
                Err(failed) => match *failed {
                    (RuntimeError::QueueFull(_), Some(mut message)) => {
                        blocked_on = node.queue_of(&message);
                        message.ret.pop_front();
                        Delivery::Blocked(message.into_routed())
                    }
                    (
                        e @ (RuntimeError::UnknownAddress(_) | RuntimeError::AccessDenied { .. }),
                        _,
                    ) => {
                        // The sender hears "no such destination" (the two are not told apart).
                        tracing::warn!("secure channel: message from {peer} not delivered: {e}");
                        Delivery::NoSuchDestination
                    }
                    (e, _) => {
                        tracing::warn!("secure channel: message from {peer} not delivered: {e}");
                        Delivery::Dropped
                    }
                },
            }
        });
        self.blocked_on = blocked_on;
        while let Some(m) = self.session.poll_transmit() {
            // A frame not taken now counts as lost: retransmission covers it.
            if let Err(e) = self
                .node
                .try_send_as(&self.decryptor_address, Message::from(m))
            {
                tracing::debug!("secure channel: frame not sent ({e}); will retransmit");
            }
        }
        self.publish_stats();
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Delivered(seq) => {
                    if let Some(done) = self.waiting.remove(&seq) {
                        let _ = done.send(Ok(()));
                    }
                }
                Event::Failed(seq) => self.failed.push(seq),
                Event::Undelivered(seq) => {
                    if let Some(done) = self.waiting.remove(&seq) {
                        let _ = done.send(Err(RuntimeError::UnknownAddress(
                            "the far end has no such destination, or it does not admit this channel"
                                .into(),
                        )));
                    }
                }
                Event::Closed(reason) => {
                    self.closed(&reason);
                    return false;
                }
                Event::Rekeyed => {
                    // Fresh proofs (a renewed attestation) move the channel's end of life.
                    if let Some(peer) = self.session.peer().cloned() {
                        let at = peer_expiry(&peer);
                        self.session.set_peer_expiry(at);
                        self.renewed_proofs(peer);
                    }
                    if let Some(hash) = self.session.handshake_hash() {
                        *self
                            .stats
                            .fingerprint
                            .lock()
                            .unwrap_or_else(|e| e.into_inner()) = hash;
                    }
                    self.stats.set_suite(self.session.suite());
                    tracing::debug!(
                        "secure channel with {}: re-handshake {} done",
                        self.peer,
                        self.session.key_generation()
                    );
                }
                Event::Connected => {}
            }
        }
        true
    }

    /// The re-handshake's trust policy accepted `peer` (same identifier, the session checked): its
    /// credentials, possibly renewed, now stand for the channel, in the handles and on every message
    /// delivered from now on.
    fn renewed_proofs(&mut self, peer: latchkey_core::channel::PeerIdentity) {
        if let Origin::Channel(c) = &self.origin {
            if *c.credentials != peer.credentials[..] {
                let mut renewed = (**c).clone();
                renewed.credentials = peer.credentials.clone().into();
                self.origin = Origin::Channel(Arc::new(renewed));
            }
        }
        *self.shared_peer.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(peer);
    }

    fn closed(&mut self, reason: &SessionError) {
        let failed = self.failed.len();
        match reason {
            SessionError::ClosedByPeer => {
                tracing::info!("secure channel with {}: closed by the peer", self.peer)
            }
            SessionError::PeerSilent => {
                tracing::info!("secure channel with {}: nothing heard; closing", self.peer)
            }
            SessionError::PeerExpired => tracing::info!(
                "secure channel with {}: the peer's attestation or identity key expired; closing",
                self.peer
            ),
            SessionError::Reset => tracing::warn!(
                "secure channel with {}: reset by the peer's node (it no longer knows this channel); {failed} message(s) failed",
                self.peer
            ),
            SessionError::DeliveryTimeout => tracing::error!(
                "secure channel with {}: messages unacknowledged before the delivery deadline; reporting {failed} message(s) failed and closing",
                self.peer
            ),
            _ => {}
        }
        let why = failure_reason(reason);
        self.stats.set_reason(reason.to_string());
        if *reason == SessionError::Reset {
            self.stats.was_reset.store(true, Ordering::Relaxed);
        }
        for seq in self.failed.drain(..) {
            if let Some(done) = self.waiting.remove(&seq) {
                let _ = done.send(Err(RuntimeError::DeliveryFailed(why)));
            }
        }
    }

    /// Copies the session's counters into the handle's, logging refused frames.
    fn publish_stats(&mut self) {
        let s = self.session.stats();
        if s.frames_rejected > self.seen.frames_rejected {
            tracing::warn!(
                "secure channel with {}: {} frame(s) refused (authentication failed)",
                self.peer,
                s.frames_rejected - self.seen.frames_rejected
            );
        }
        if s.frames_replayed > self.seen.frames_replayed {
            tracing::debug!("secure channel with {}: replayed frame refused", self.peer);
        }
        let st = &self.stats;
        st.frames_sent.store(s.frames_sent, Ordering::Relaxed);
        st.frames_received
            .store(s.frames_received, Ordering::Relaxed);
        st.frames_rejected
            .store(s.frames_rejected, Ordering::Relaxed);
        st.frames_replayed
            .store(s.frames_replayed, Ordering::Relaxed);
        st.retransmissions
            .store(s.retransmissions, Ordering::Relaxed);
        st.delivered.store(s.delivered, Ordering::Relaxed);
        st.failed.store(s.failed, Ordering::Relaxed);
        st.rekeys.store(s.rekeys, Ordering::Relaxed);
        self.seen = s;
    }
}
