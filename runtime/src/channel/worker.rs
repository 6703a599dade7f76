//! The tasks behind a channel: handshake driving (initiator and responder) and the established channel's
//! event loop. The event loop never waits on another worker's full mailbox — it would risk a deadlock
//! between two channel ends — so outbound frames and local deliveries use non-blocking sends, and anything
//! not taken is retried (frames by retransmission, deliveries on the next tick).

use super::reliable::{Accepted, ReceiveWindow, SendWindow};
use super::{
    map_core, start_handshake, ChannelHandle, ChannelOptions, ChannelStats, Command, KIND_FRAME,
    KIND_HANDSHAKE, KIND_REFUSED, MAX_CHANNEL_PAYLOAD,
};
use crate::error::{Result, RuntimeError};
use crate::flow::Accepts;
use crate::identity::LocalIdentity;
use crate::message::{Address, Message, Route};
use crate::node::{Mailbox, Node, DEFAULT_MAILBOX};
use crate::origin::{ChannelOrigin, FlowId, Origin};
use latchkey_core::channel::{Decryptor, Encryptor, PeerIdentity};
use latchkey_core::Error as CoreError;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

const DATA: u8 = 1;
const ACK: u8 = 2;
const CLOSE: u8 = 3;
const TICK: Duration = Duration::from_millis(10);
/// Handshakes a listener runs at once.
pub const MAX_PENDING_HANDSHAKES: usize = 256;

fn wrap(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + body.len());
    v.push(kind);
    v.extend_from_slice(body);
    v
}

fn handshake_error(e: CoreError) -> RuntimeError {
    map_core(e)
}

pub(super) async fn initiate(
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
    let here = Route::from_addresses([decryptor_box.address().clone()]);
    let me = decryptor_box.address().clone();
    let mut handshake = start_handshake(identity, &options, true)?;
    let m1 = wrap(KIND_HANDSHAKE, &handshake.write_message()?);
    let deadline = Instant::now() + options.handshake_timeout;
    // -> e, until the responder answers.
    let m2 = loop {
        node.send_as(&me, Message::new(route.clone(), here.clone(), m1.clone()))
            .await?;
        match recv_until(&mut decryptor_box, options.handshake_retry, deadline).await? {
            Some(m) if !came_back_along(&m, &route) => continue,
            Some(m) if m.payload.first() == Some(&KIND_HANDSHAKE) => break m,
            Some(m) if m.payload.first() == Some(&KIND_REFUSED) => return Err(refused(&m)),
            _ => continue,
        }
    };
    handshake
        .read_message(&m2.payload[1..])
        .map_err(handshake_error)?;
    // The initiator keeps the route it was given (stable transport and relay addresses) and only swaps the
    // listener for the responder's decryptor; the responder follows return routes instead. The decryptor
    // address comes from an unauthenticated return route, but nothing is trusted until a frame encrypted
    // under this handshake comes back from it.
    let responder = m2.ret.last().ok_or(RuntimeError::EmptyRoute)?.clone();
    let remote = route.without_last().append(responder);
    let m3 = wrap(KIND_HANDSHAKE, &handshake.write_message()?);
    let channel = handshake.finish()?;
    let (encryptor, mut decryptor, peer) = channel.split();
    // -> s, se, until the responder confirms with its first frame (or refuses us).
    loop {
        node.send_as(&me, Message::new(remote.clone(), here.clone(), m3.clone()))
            .await?;
        match recv_until(&mut decryptor_box, options.handshake_retry, deadline).await? {
            Some(m) if !came_back_along(&m, &route) => continue,
            Some(m) if m.payload.first() == Some(&KIND_REFUSED) => return Err(refused(&m)),
            // The confirmation must be authenticated and come from the decryptor we answered.
            Some(m) if m.payload.first() == Some(&KIND_FRAME) && m.ret.last() == remote.last() => {
                let mut frame = m.payload[1..].to_vec();
                if decryptor.decrypt_in_place(&mut frame).is_ok() {
                    break;
                }
            }
            _ => continue,
        }
    }
    let flow = FlowId::random();
    let encryptor_box = node.register_producer(
        node.unique_address("sc-enc"),
        DEFAULT_MAILBOX,
        Accepts::local_only(),
        flow,
    )?;
    Ok(spawn_channel(
        node.clone(),
        encryptor_box,
        decryptor_box,
        encryptor,
        decryptor,
        peer,
        remote,
        options,
        flow,
        None,
    ))
}

/// Whether a message came back along the first hop of `route`: the connection or outer channel the
/// handshake went out on and, over datagrams, from the address it was sent to. The decryptor's flow rule
/// already keeps other transports out; this also keeps out other senders on the same UDP socket.
fn came_back_along(m: &Message, route: &Route) -> bool {
    match m.origin() {
        Origin::Local { .. } => true,
        Origin::Transport {
            connection, remote, ..
        } => {
            let same_peer = match remote {
                None => true,
                Some(from) => {
                    let parse = |a: &Address| a.as_str().parse::<std::net::SocketAddr>().ok();
                    let sent_to = route.iter().nth(1).and_then(parse);
                    sent_to.is_some() && sent_to == parse(from)
                }
            };
            route.first() == Some(connection) && same_peer
        }
        Origin::Channel(c) => route.first() == Some(&c.encryptor),
    }
}

fn refused(m: &Message) -> RuntimeError {
    RuntimeError::Refused(String::from_utf8_lossy(&m.payload[1..]).into_owned())
}

/// Waits for a message for at most `wait`, failing once the overall `deadline` has passed.
async fn recv_until(
    mailbox: &mut Mailbox,
    wait: Duration,
    deadline: Instant,
) -> Result<Option<Message>> {
    let now = Instant::now();
    if now >= deadline {
        return Err(RuntimeError::Timeout("secure channel handshake"));
    }
    match tokio::time::timeout(wait.min(deadline - now), mailbox.recv()).await {
        Ok(Some(m)) => Ok(Some(m)),
        Ok(None) => Err(RuntimeError::ChannelClosed),
        Err(_) => Ok(None),
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
    // Each handshake in progress holds state until it completes or times out; cap them so a flood of
    // first messages cannot grow memory without bound.
    let pending = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES));
    tokio::spawn(async move {
        while let Some(m1) = mailbox.recv().await {
            if m1.payload.first() != Some(&KIND_HANDSHAKE) {
                tracing::debug!(
                    "listener {}: ignoring a non-handshake message",
                    mailbox.address()
                );
                continue;
            }
            let Ok(permit) = pending.clone().try_acquire_owned() else {
                tracing::warn!(
                    "listener {}: {MAX_PENDING_HANDSHAKES} handshakes already in progress; dropping a new one",
                    mailbox.address()
                );
                continue;
            };
            let node = node.clone();
            let identity = identity.clone();
            let options = options.clone();
            let accepted = accepted.clone();
            tokio::spawn(async move {
                let result = respond(&node, &identity, m1, options, flow).await;
                drop(permit);
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
    identity: &LocalIdentity,
    m1: Message,
    options: ChannelOptions,
    listener_flow: FlowId,
) -> Result<ChannelHandle> {
    // The initiator's decryptor is pinned now: later messages of this channel must lead back to it.
    let initiator = m1.ret.last().ok_or(RuntimeError::EmptyRoute)?.clone();
    if m1
        .origin()
        .return_hop()
        .is_some_and(|hop| m1.ret.first() != Some(hop))
    {
        return Err(RuntimeError::Malformed(
            "handshake return route does not start where it arrived",
        ));
    }
    let mut handshake = start_handshake(identity, &options, false)?;
    handshake.read_message(&m1.payload[1..])?;
    // Our decryptor takes messages only from the flow the first message came on.
    let accepts = m1
        .origin()
        .primary_flow()
        .map_or_else(Accepts::local_only, Accepts::flow);
    let mut decryptor_box =
        node.register_with(node.unique_address("sc-dec"), DEFAULT_MAILBOX, accepts)?;
    let me = decryptor_box.address().clone();
    let here = Route::from_addresses([me.clone()]);
    let m2 = wrap(KIND_HANDSHAKE, &handshake.write_message()?);
    node.send_as(&me, Message::new(m1.ret.clone(), here.clone(), m2))
        .await?;
    let deadline = Instant::now() + options.handshake_timeout;
    // Only a message from the path the handshake started on, answering to the same initiator, may finish
    // (or fail) it: anything else is dropped and the handshake goes on.
    let m3 = loop {
        match recv_until(&mut decryptor_box, options.handshake_timeout, deadline).await? {
            Some(m)
                if m.payload.first() == Some(&KIND_HANDSHAKE)
                    && m.origin().same_path(m1.origin())
                    && m.ret.last() == Some(&initiator) =>
            {
                break m
            }
            Some(m) => tracing::debug!(
                "secure channel handshake: ignoring a message from {} that is not from the handshake's path",
                m.origin()
            ),
            None => {}
        }
    };
    if let Err(e) = handshake.read_message(&m3.payload[1..]) {
        let reason = match &e {
            CoreError::UntrustedPeer(_) => "not trusted".to_string(),
            other => other.name().to_string(),
        };
        let _ = node.try_send_as(
            &me,
            Message::new(m3.ret.clone(), here, wrap(KIND_REFUSED, reason.as_bytes())),
        );
        return Err(map_core(e));
    }
    let (encryptor, decryptor, peer) = handshake.finish()?.split();
    let flow = FlowId::random();
    let encryptor_box = node.register_producer(
        node.unique_address("sc-enc"),
        DEFAULT_MAILBOX,
        Accepts::local_only(),
        flow,
    )?;
    let handle = spawn_channel(
        node.clone(),
        encryptor_box,
        decryptor_box,
        encryptor,
        decryptor,
        peer,
        m3.ret.clone(),
        options,
        flow,
        Some(Responder {
            final_handshake: m3.payload,
            listener_flow,
        }),
    );
    Ok(handle)
}

/// What only the responder end keeps.
struct Responder {
    /// The initiator's last handshake message, to recognise a repeat of it.
    final_handshake: Vec<u8>,
    listener_flow: FlowId,
}

#[allow(clippy::too_many_arguments)]
fn spawn_channel(
    node: Node,
    encryptor_box: Mailbox,
    decryptor_box: Mailbox,
    encryptor: Encryptor,
    decryptor: Decryptor,
    peer: PeerIdentity,
    remote: Route,
    options: ChannelOptions,
    flow: FlowId,
    responder: Option<Responder>,
) -> ChannelHandle {
    let stats = Arc::new(ChannelStats::default());
    let (commands_tx, commands) = mpsc::channel(16);
    let handle = ChannelHandle {
        encryptor: encryptor_box.address().clone(),
        flow,
        peer: Arc::new(peer.clone()),
        stats: stats.clone(),
        commands: commands_tx,
    };
    let origin = Origin::Channel(Arc::new(ChannelOrigin {
        encryptor: encryptor_box.address().clone(),
        peer: peer.identifier,
        flow,
        listener: responder.as_ref().map(|r| r.listener_flow),
        credentials: peer.credentials.clone().into(),
    }));
    let mut end = ChannelEnd {
        node,
        decryptor_address: decryptor_box.address().clone(),
        here: Route::from_addresses([decryptor_box.address().clone()]),
        encryptor_address: encryptor_box.address().clone(),
        encryptor,
        decryptor,
        peer,
        origin,
        remote,
        sending: SendWindow::new(options.window),
        receiving: ReceiveWindow::new(options.window * 2),
        options,
        stats,
        initiator: responder.is_none(),
        final_handshake: responder.map(|r| r.final_handshake),
        last_sent: Instant::now(),
        last_heard: Instant::now(),
        closed_by_peer: false,
    };
    tokio::spawn(async move {
        if !end.initiator {
            // Confirms the handshake to the initiator.
            end.send_ack(None);
        }
        end.run(encryptor_box, decryptor_box, commands).await;
        end.stats.mark_closed();
    });
    handle
}

struct ChannelEnd {
    node: Node,
    decryptor_address: Address,
    here: Route,
    encryptor_address: Address,
    encryptor: Encryptor,
    decryptor: Decryptor,
    peer: PeerIdentity,
    /// Stamped on every message this channel delivers.
    origin: Origin,
    /// Where the far end's decryptor is; the responder follows the route of the latest authenticated frame
    /// (its last hop, the initiator's decryptor, never changes).
    remote: Route,
    sending: SendWindow<oneshot::Sender<Result<()>>>,
    receiving: ReceiveWindow,
    options: ChannelOptions,
    stats: Arc<ChannelStats>,
    initiator: bool,
    final_handshake: Option<Vec<u8>>,
    last_sent: Instant,
    /// When the last authenticated frame arrived.
    last_heard: Instant,
    closed_by_peer: bool,
}

impl ChannelEnd {
    async fn run(
        &mut self,
        mut encryptor_box: Mailbox,
        mut decryptor_box: Mailbox,
        mut commands: mpsc::Receiver<Command>,
    ) {
        loop {
            let room = self.sending.has_room();
            let wake = tokio::time::Instant::from_std(self.next_wake());
            tokio::select! {
                Some(message) = encryptor_box.recv(), if room => {
                    let mut message = message;
                    message.onward.pop_front();
                    self.enqueue(message, None);
                }
                // Dropped handles do not close a channel (a listener's channels usually have none).
                Some(command) = commands.recv(), if room => match command {
                    Command::Send { message, done } => self.enqueue(message, Some(done)),
                    Command::Close => {
                        self.send_frame(&[CLOSE]);
                        self.fail_all("channel closed");
                        return;
                    }
                },
                Some(message) = decryptor_box.recv() => {
                    self.on_inbound(message);
                    if self.closed_by_peer {
                        tracing::info!("secure channel with {}: closed by the peer", self.peer.identifier);
                        self.fail_all("channel closed by the peer");
                        return;
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    if !self.on_tick() {
                        return;
                    }
                }
            }
        }
    }

    fn enqueue(&mut self, message: Message, done: Option<oneshot::Sender<Result<()>>>) {
        let body = match message.encode() {
            Ok(b) if message.payload.len() <= MAX_CHANNEL_PAYLOAD => b,
            Ok(_) => {
                let e = RuntimeError::FrameTooLarge {
                    len: message.payload.len(),
                    max: MAX_CHANNEL_PAYLOAD,
                };
                tracing::warn!("secure channel: not sending: {e}");
                if let Some(done) = done {
                    let _ = done.send(Err(e));
                }
                return;
            }
            Err(e) => {
                if let Some(done) = done {
                    let _ = done.send(Err(e));
                }
                return;
            }
        };
        let seq = self.sending.push(body, done, Instant::now());
        self.transmit(seq);
    }

    fn transmit(&mut self, seq: u64) {
        let Some(entry) = self.sending.get(seq) else {
            return;
        };
        let mut plaintext = Vec::with_capacity(9 + entry.body.len());
        plaintext.push(DATA);
        plaintext.extend_from_slice(&seq.to_be_bytes());
        plaintext.extend_from_slice(&entry.body);
        self.send_frame(&plaintext);
    }

    fn send_ack(&mut self, selective: Option<u64>) {
        let mut plaintext = Vec::with_capacity(17);
        plaintext.push(ACK);
        plaintext.extend_from_slice(&self.receiving.next_expected().to_be_bytes());
        plaintext.extend_from_slice(&selective.unwrap_or(u64::MAX).to_be_bytes());
        self.send_frame(&plaintext);
    }

    fn send_frame(&mut self, plaintext: &[u8]) {
        let frame = match self.encryptor.encrypt_to_vec(plaintext) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!("secure channel: cannot encrypt: {e}");
                return;
            }
        };
        self.last_sent = Instant::now();
        self.stats.frames_sent.fetch_add(1, Ordering::Relaxed);
        let message = Message::new(
            self.remote.clone(),
            self.here.clone(),
            wrap(KIND_FRAME, &frame),
        );
        // A frame not taken now counts as lost: retransmission covers it.
        if let Err(e) = self.node.try_send_as(&self.decryptor_address, message) {
            tracing::debug!("secure channel: frame not sent ({e}); will retransmit");
        }
    }

    fn on_inbound(&mut self, message: Message) {
        match message.payload.first() {
            Some(&KIND_FRAME) => {}
            Some(&KIND_HANDSHAKE)
                if self.final_handshake.as_deref() == Some(&message.payload[..])
                    && self.leads_to_peer(&message) =>
            {
                // Our confirmation was lost and the initiator repeated its last handshake message. Answer
                // along its route, but do not move the channel: only authenticated frames may.
                let remote = std::mem::replace(&mut self.remote, message.ret);
                self.send_ack(None);
                self.remote = remote;
                return;
            }
            _ => return,
        }
        let mut frame = message.payload[1..].to_vec();
        let plaintext = match self.decryptor.decrypt_in_place(&mut frame) {
            Ok(p) => p.to_vec(),
            Err(CoreError::Replay) | Err(CoreError::StaleMessage) => {
                self.stats.frames_replayed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    "secure channel with {}: replayed frame refused",
                    self.peer.identifier
                );
                return;
            }
            Err(e) => {
                self.stats.frames_rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "secure channel with {}: frame refused: {e}",
                    self.peer.identifier
                );
                return;
            }
        };
        self.stats.frames_received.fetch_add(1, Ordering::Relaxed);
        self.last_heard = Instant::now();
        if plaintext.first() == Some(&CLOSE) {
            self.closed_by_peer = true;
            return;
        }
        // Only an authenticated frame may move the responder to a new route (the initiator's is fixed), and
        // only to one that the path built and that still ends at the initiator's decryptor.
        if !self.initiator && self.leads_to_peer(&message) {
            self.remote = message.ret;
        }
        if plaintext.len() < 9 {
            return;
        }
        let number = u64::from_be_bytes(plaintext[1..9].try_into().expect("8 bytes"));
        match plaintext[0] {
            DATA => {
                if self.receiving.accept(number, plaintext[9..].to_vec()) == Accepted::OutOfWindow {
                    return;
                }
                self.deliver_ready();
                self.send_ack(Some(number));
            }
            ACK if plaintext.len() >= 17 => {
                let selective = u64::from_be_bytes(plaintext[9..17].try_into().expect("8 bytes"));
                let selective = (selective != u64::MAX).then_some(selective);
                for done in self.sending.ack(number, selective).into_iter().flatten() {
                    let _ = done.send(Ok(()));
                }
            }
            _ => {}
        }
    }

    /// Whether `message`'s return route starts where it arrived and ends at the peer's pinned decryptor.
    fn leads_to_peer(&self, message: &Message) -> bool {
        message
            .origin()
            .return_hop()
            .is_none_or(|hop| message.ret.first() == Some(hop))
            && message.ret.last() == self.remote.last()
    }

    /// Hands in-order messages to their local workers; stops at a full mailbox and resumes on the next tick.
    fn deliver_ready(&mut self) {
        while let Some(body) = self.receiving.ready() {
            let mut inner = match Message::decode(body) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(
                        "secure channel: undecodable message from {}: {e}",
                        self.peer.identifier
                    );
                    self.receiving.advance();
                    continue;
                }
            };
            inner.ret = inner.ret.prepend(self.encryptor_address.clone());
            match self
                .node
                .try_deliver(inner.with_origin(self.origin.clone()))
            {
                Ok(()) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    self.receiving.advance();
                }
                Err(failed) if matches!(*failed, (RuntimeError::QueueFull(_), Some(_))) => return,
                Err(failed) => {
                    let e = failed.0;
                    tracing::warn!(
                        "secure channel: message from {} not delivered: {e}",
                        self.peer.identifier
                    );
                    self.receiving.advance();
                }
            }
        }
    }

    /// When `on_tick` next has work: soon while messages are in flight or waiting for a full mailbox,
    /// otherwise at the keepalive (initiator) or idle (responder) deadline — an idle channel costs no wakeups.
    fn next_wake(&self) -> Instant {
        if !self.sending.is_empty() || self.receiving.ready().is_some() {
            Instant::now() + TICK
        } else if self.initiator {
            self.last_sent + self.options.keepalive
        } else {
            self.last_heard + self.options.idle_timeout
        }
    }

    /// Retransmits, retries deliveries, sends keepalives; false when the channel has failed.
    fn on_tick(&mut self) -> bool {
        let now = Instant::now();
        if !self.initiator && now.duration_since(self.last_heard) >= self.options.idle_timeout {
            tracing::info!(
                "secure channel with {}: nothing heard for {:?}; closing",
                self.peer.identifier,
                self.options.idle_timeout
            );
            self.fail_all("the peer went silent");
            return false;
        }
        if self.sending.expired(now, self.options.delivery_timeout) {
            tracing::error!(
                "secure channel with {}: messages unacknowledged for {:?}; reporting {} message(s) failed and closing",
                self.peer.identifier,
                self.options.delivery_timeout,
                self.sending.len()
            );
            self.fail_all("not acknowledged before the delivery deadline");
            return false;
        }
        for seq in self.sending.due(now, self.options.retransmit_after) {
            self.stats.retransmissions.fetch_add(1, Ordering::Relaxed);
            self.transmit(seq);
        }
        let before = self.receiving.next_expected();
        self.deliver_ready();
        if self.receiving.next_expected() != before {
            self.send_ack(None);
        }
        if self.initiator && now.duration_since(self.last_sent) >= self.options.keepalive {
            self.send_ack(None);
        }
        true
    }

    fn fail_all(&mut self, why: &'static str) {
        for done in self.sending.drain() {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            if let Some(done) = done {
                let _ = done.send(Err(RuntimeError::DeliveryFailed(why)));
            }
        }
    }
}
