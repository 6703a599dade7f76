//! A node: the workers of one process, each at an address with a bounded mailbox. Sending a message delivers
//! it to the worker named by the first hop of its onward route. Workers are tokio tasks that own a
//! [`Mailbox`]; dropping the mailbox unregisters the address.

use crate::error::{Result, RuntimeError};
use crate::flow::Accepts;
use crate::message::{Address, Message};
use crate::origin::{random_bytes, FlowId, Origin};
use crate::queue::{self, TrySendError};
use latchkey_core::route::ResetKey;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Most stateless resets a node sends per second (frames for unknown channels beyond that are dropped
/// unanswered, so a flood of junk frames cannot turn the node into a sender).
pub const MAX_RESETS_PER_SECOND: u32 = 1000;

/// Default mailbox capacity, in messages. Every queue in the runtime is bounded: a full mailbox makes
/// `send` wait (backpressure) or `try_send` fail.
pub const DEFAULT_MAILBOX: usize = 256;

struct Entry {
    sender: queue::Sender<Message>,
    accepts: Accepts,
    /// The flow of the messages this worker brings into the node (transports and channel encryptors), so a
    /// channel over a route can accept exactly the flow of the route's first hop.
    produces: Option<FlowId>,
    /// Distinguishes a re-registration from the entry a dropped mailbox must remove.
    generation: u64,
}

struct Inner {
    name: String,
    /// Relays forward remote messages into other transports and channels; no other node does.
    relay: bool,
    workers: Mutex<HashMap<Address, Entry>>,
    generation: AtomicU64,
    denied: AtomicU64,
    /// The node's stateless-reset key (docs/RUNTIME.md, "Stateless reset"): set explicitly, or derived
    /// from the first identity a channel or listener of this node uses, or random.
    reset_key: OnceLock<ResetKey>,
    /// Resets sent in the current second: (second, count).
    resets: Mutex<(u64, u32)>,
    resets_sent: AtomicU64,
    /// Transport workers still running (each holds a [`TransportRunning`]), so a shutdown can wait until
    /// what was queued for the wire (a last ACK, a CLOSE) has been written.
    transports: tokio::sync::watch::Sender<usize>,
    /// The deadlines of all the node's channel ends, served by one task (`crate::timer`).
    timers: Arc<crate::timer::Timers>,
    /// The tasks that drive all the node's established channel ends (`crate::channel::drivers`).
    drivers: crate::channel::drivers::ChannelDrivers,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.drivers.stop();
        self.timers.stop();
    }
}

/// Held by a running transport worker; dropping it tells [`Node::transports_stopped`].
pub(crate) struct TransportRunning(tokio::sync::watch::Sender<usize>);

impl Drop for TransportRunning {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// A handle to a node; cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.inner.name)
            .field("relay", &self.inner.relay)
            .finish()
    }
}

impl Node {
    /// A node that delivers remote messages only to the workers that declared their flows, and never
    /// forwards a remote message into another transport or channel.
    pub fn new(name: impl Into<String>) -> Self {
        Self::build(name.into(), false)
    }

    /// A relay node: its transport connections also accept remote messages, so what arrives on one
    /// connection (or out of one channel) can be forwarded down another. Use only for relays.
    pub fn relay(name: impl Into<String>) -> Self {
        Self::build(name.into(), true)
    }

    fn build(name: String, relay: bool) -> Self {
        Node {
            inner: Arc::new(Inner {
                name,
                relay,
                workers: Mutex::new(HashMap::new()),
                generation: AtomicU64::new(1),
                denied: AtomicU64::new(0),
                reset_key: OnceLock::new(),
                resets: Mutex::new((0, 0)),
                resets_sent: AtomicU64::new(0),
                transports: tokio::sync::watch::Sender::new(0),
                timers: crate::timer::Timers::new(),
                drivers: crate::channel::drivers::Drivers::new(),
            }),
        }
    }

    /// Counts a transport worker as running until the returned guard is dropped.
    pub(crate) fn transport_running(&self) -> TransportRunning {
        self.inner.transports.send_modify(|n| *n += 1);
        TransportRunning(self.inner.transports.clone())
    }

    /// Waits until every transport worker has stopped (after their addresses were unregistered, each
    /// writes what was queued for it and stops), or until `limit` has passed; returns whether all stopped.
    /// A shutdown calls it so that its last frames (ACKs, CLOSE) reach the wire before the process exits.
    pub async fn transports_stopped(&self, limit: std::time::Duration) -> bool {
        let mut running = self.inner.transports.subscribe();
        let stopped = tokio::time::timeout(limit, running.wait_for(|n| *n == 0))
            .await
            .is_ok();
        stopped
    }

    /// A timer slot in this node's timer service, for one channel end.
    pub(crate) fn timer(&self) -> crate::timer::Timer {
        self.inner.timers.timer()
    }

    /// What this node's timer service holds and has done: every channel end's deadline is one entry in one
    /// queue served by one task (docs/RUNTIME.md, "Secure channels: the protocol between two ends").
    pub fn timer_stats(&self) -> crate::timer::TimerStats {
        self.inner.timers.stats()
    }

    /// The driver tasks (shards) of this node's established channel ends.
    pub(crate) fn channel_drivers(&self) -> &crate::channel::drivers::ChannelDrivers {
        &self.inner.drivers
    }

    /// What this node's channel drivers hold and have done: every established channel end is driven by one
    /// of a few shard tasks (one per worker thread of the runtime), not by a task of its own
    /// (docs/RUNTIME.md, "Secure channels: the protocol between two ends").
    pub fn driver_stats(&self) -> crate::channel::DriverStats {
        self.inner.drivers.stats()
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn is_relay(&self) -> bool {
        self.inner.relay
    }

    /// A fresh address `prefix#<16 hex digits>`, random so that a remote party cannot guess it.
    pub fn unique_address(&self, prefix: &str) -> Address {
        let suffix = hex::encode(random_bytes());
        Address::new(format!("{prefix}#{suffix}")).expect("prefix is short")
    }

    /// Sets this node's stateless-reset key, unless it already has one (returns whether it was set). A
    /// node that restarts with the same key can reset its peers' stale channels at once. Without a call,
    /// the first channel or listener opened on the node derives the key from its identity's static key
    /// (so a node restarted with the same identity keeps its key), and a node that never had an identity
    /// uses a random one.
    pub fn set_reset_key(&self, key: ResetKey) -> bool {
        self.inner.reset_key.set(key).is_ok()
    }

    /// Derives the reset key from `identity` if the node has none yet.
    pub(crate) fn adopt_reset_key(&self, identity: &crate::identity::LocalIdentity) {
        if self.inner.reset_key.get().is_some() {
            return;
        }
        let provider = latchkey_core::crypto::default_provider();
        match ResetKey::derive(
            identity.vaults().secure_channel().as_ref(),
            identity.static_key(),
            provider,
        ) {
            Ok(key) => {
                let _ = self.inner.reset_key.set(key);
            }
            Err(e) => tracing::debug!("no reset key from the identity ({e}); using a random one"),
        }
    }

    fn reset_key(&self) -> &ResetKey {
        self.inner.reset_key.get_or_init(|| {
            let mut bytes = [0u8; 32];
            latchkey_core::crypto::default_provider()
                .fill_random(&mut bytes)
                .expect("the operating system's random source failed");
            ResetKey::new(bytes)
        })
    }

    /// The stateless-reset token of the channel end whose decryptor is `decryptor` on this node.
    pub(crate) fn reset_token(&self, decryptor: &Address) -> latchkey_core::route::ResetToken {
        self.reset_key()
            .token(latchkey_core::crypto::default_provider(), decryptor)
    }

    /// How many stateless resets this node has sent.
    pub fn resets_sent(&self) -> u64 {
        self.inner.resets_sent.load(Ordering::Relaxed)
    }

    /// One answer (a reset or a refusal) out of this second's budget of [`MAX_RESETS_PER_SECOND`].
    fn take_answer_budget(&self) -> bool {
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut window = self.inner.resets.lock().unwrap_or_else(|e| e.into_inner());
        if window.0 != second {
            *window = (second, 0);
        }
        if window.1 >= MAX_RESETS_PER_SECOND {
            return false;
        }
        window.1 += 1;
        true
    }

    /// A remote channel frame for an address this node does not know: answer with a stateless reset along
    /// its return route (the return route starts where it arrived; see docs/RUNTIME.md).
    fn answer_unknown(&self, message: &Message) {
        use latchkey_core::route::{reset, KIND_FRAME, RESET_TOKEN_LEN};
        let (Some(unknown), Some(hop)) = (message.onward.first(), message.origin().return_hop())
        else {
            return;
        };
        if message.ret.first() != Some(hop) {
            return;
        }
        if self.inner.relay {
            // A handshake to a name this relay does not serve: refuse it at once, to the sender's own
            // connection (or channel) only.
            let header = latchkey_core::wire::RoutedMessage::new(
                message.onward.clone(),
                message.ret.clone(),
                message.payload.iter().take(64).copied().collect(),
            );
            if let Some(refusal) = latchkey_core::route::relay::unknown_name_refusal(&header) {
                if self.take_answer_budget() {
                    tracing::debug!("relay: no such name {unknown}; refusing the handshake");
                    let refusal = Message::from(refusal);
                    let _ = self.try_deliver(refusal.with_origin(Origin::worker(unknown)));
                }
                return;
            }
        }
        if message.payload.first() != Some(&KIND_FRAME)
            || message.payload.len() <= 1 + RESET_TOKEN_LEN
        {
            return;
        }
        if !self.take_answer_budget() {
            return;
        }
        let token = self.reset_token(unknown);
        let reset = Message::new(
            message.ret.clone(),
            crate::message::Route::new(),
            reset::reset_payload(&token),
        );
        tracing::debug!(
            "stateless reset for unknown {unknown} back along {:?}",
            message.ret
        );
        if self
            .try_deliver(reset.with_origin(Origin::worker(unknown)))
            .is_ok()
        {
            self.inner.resets_sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Registers a worker that accepts local senders only, with the default mailbox size.
    pub fn register(&self, address: Address) -> Result<Mailbox> {
        self.register_with(address, DEFAULT_MAILBOX, Accepts::local_only())
    }

    /// Registers a worker with a mailbox of `capacity` messages that accepts `accepts` (see [`crate::flow`]).
    pub fn register_with(
        &self,
        address: Address,
        capacity: usize,
        accepts: Accepts,
    ) -> Result<Mailbox> {
        self.register_entry(address, capacity, accepts, None)
    }

    /// Registers a worker that brings the messages of `flow` into the node (a transport connection or a
    /// channel's encryptor side).
    pub(crate) fn register_producer(
        &self,
        address: Address,
        capacity: usize,
        accepts: Accepts,
        flow: FlowId,
    ) -> Result<Mailbox> {
        self.register_entry(address, capacity, accepts, Some(flow))
    }

    fn register_entry(
        &self,
        address: Address,
        capacity: usize,
        accepts: Accepts,
        produces: Option<FlowId>,
    ) -> Result<Mailbox> {
        let (sender, receiver) = queue::bounded(capacity.max(1));
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
        let mut workers = self.lock();
        if workers.get(&address).is_some_and(|e| !e.sender.is_closed()) {
            return Err(RuntimeError::AddressInUse(address.to_string()));
        }
        workers.insert(
            address.clone(),
            Entry {
                sender,
                accepts,
                produces,
                generation,
            },
        );
        Ok(Mailbox {
            address,
            receiver,
            node: Arc::downgrade(&self.inner),
            generation,
        })
    }

    /// What a transport connection worker accepts on this node: local senders, plus every remote origin on
    /// a relay.
    pub(crate) fn transport_accepts(&self) -> Accepts {
        if self.inner.relay {
            Accepts::relay()
        } else {
            Accepts::local_only()
        }
    }

    /// What a channel encryptor accepts on this node: local senders, plus, on a relay, messages out of any
    /// secure channel (replies forwarded back to a peer that reached a name through a channel to the relay;
    /// never bare transports).
    pub(crate) fn encryptor_accepts(&self) -> Accepts {
        if self.inner.relay {
            Accepts::local_only().and_any_channel()
        } else {
            Accepts::local_only()
        }
    }

    /// Opens the worker at `address` to the messages of `flow` as well (e.g. a service to the channels of a
    /// listener, or a reply mailbox to one channel).
    pub fn allow(&self, address: &Address, flow: FlowId) -> Result<()> {
        let mut workers = self.lock();
        let entry = workers
            .get_mut(address)
            .ok_or_else(|| RuntimeError::UnknownAddress(address.to_string()))?;
        entry.accepts.add_flow(flow);
        Ok(())
    }

    /// The flow of messages that the worker at `address` brings into this node, if it is a transport
    /// connection or a channel encryptor.
    pub fn flow_of(&self, address: &Address) -> Option<FlowId> {
        self.lock().get(address).and_then(|e| e.produces)
    }

    /// The flow table: every worker's address and what it accepts, sorted by address.
    pub fn flow_table(&self) -> Vec<(Address, Accepts)> {
        let mut rows: Vec<_> = self
            .lock()
            .iter()
            .map(|(a, e)| (a.clone(), e.accepts.clone()))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    }

    /// How many deliveries the flow rules have refused on this node.
    pub fn denied_count(&self) -> u64 {
        self.inner.denied.load(Ordering::Relaxed)
    }

    /// Removes a worker's address. Its mailbox then ends (`recv` returns `None`) once drained, which is how
    /// long-lived workers such as a reconnecting `tcp-out` are told to stop.
    pub fn unregister(&self, address: &Address) -> bool {
        self.lock().remove(address).is_some()
    }

    pub fn is_registered(&self, address: &Address) -> bool {
        self.lock().contains_key(address)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Address, Entry>> {
        // A poisoned map only means a panic elsewhere while holding it; the map itself stays consistent.
        self.inner.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn target(&self, message: &Message) -> Result<(Address, queue::Sender<Message>)> {
        let address = message.onward.first().ok_or(RuntimeError::EmptyRoute)?;
        let workers = self.lock();
        let entry = workers
            .get(address)
            .ok_or_else(|| RuntimeError::UnknownAddress(address.to_string()))?;
        if let Err(denied) = entry.accepts.admits(message.origin()) {
            self.inner.denied.fetch_add(1, Ordering::Relaxed);
            let origin = message.origin();
            // Debug level: remote parties choose how often this happens, so it must not flood the log.
            tracing::debug!("flow rules: {origin} may not reach {address} ({denied:?})");
            return Err(RuntimeError::AccessDenied {
                service: address.to_string(),
                peer: match origin.peer() {
                    Some(p) => p.to_string(),
                    None => origin.to_string(),
                },
            });
        }
        Ok((address.clone(), entry.sender.clone()))
    }

    /// Delivers a message from application code (origin: local) to the first hop of its onward route,
    /// waiting while the mailbox is full.
    pub async fn send(&self, message: Message) -> Result<()> {
        self.deliver(message.with_origin(Origin::local())).await
    }

    /// Delivers a message from the runtime worker at `worker` (origin: that local worker).
    pub(crate) async fn send_as(&self, worker: &Address, message: Message) -> Result<()> {
        self.deliver(message.with_origin(Origin::worker(worker)))
            .await
    }

    /// Delivers with the origin the message already carries (set by the transport or channel it came in
    /// on).
    pub(crate) async fn deliver(&self, message: Message) -> Result<()> {
        let (address, sender) = match self.target(&message) {
            Ok(t) => t,
            Err(e) => {
                if matches!(e, RuntimeError::UnknownAddress(_)) {
                    self.answer_unknown(&message);
                }
                return Err(e);
            }
        };
        sender
            .send(message)
            .await
            .map_err(|_| RuntimeError::WorkerStopped(address.to_string()))
    }

    /// Delivers from application code without waiting; a full mailbox is `QueueFull`.
    pub fn try_send(&self, message: Message) -> Result<()> {
        self.try_deliver(message.with_origin(Origin::local()))
            .map_err(|b| b.0)
    }

    /// Like [`Node::try_send`] for a runtime worker (origin: that worker).
    pub(crate) fn try_send_as(&self, worker: &Address, message: Message) -> Result<()> {
        self.try_deliver(message.with_origin(Origin::worker(worker)))
            .map_err(|b| b.0)
    }

    /// The queue of the worker that `message` would be delivered to (its first hop, if it admits the
    /// message's origin): a caller whose `try_deliver` found it full waits on it for room (`reserve`)
    /// without holding the message.
    pub(crate) fn queue_of(&self, message: &Message) -> Option<queue::Sender<Message>> {
        self.target(message).ok().map(|(_, sender)| sender)
    }

    /// Delivers with the message's own origin without waiting; returns the message when it could not be
    /// queued so the caller can retry.
    pub(crate) fn try_deliver(
        &self,
        message: Message,
    ) -> Result<(), Box<(RuntimeError, Option<Message>)>> {
        let (address, sender) = match self.target(&message) {
            Ok(t) => t,
            Err(e) => {
                if matches!(e, RuntimeError::UnknownAddress(_)) {
                    self.answer_unknown(&message);
                }
                return Err(Box::new((e, None)));
            }
        };
        sender.try_send(message).map_err(|e| match e {
            TrySendError::Full(m) => {
                Box::new((RuntimeError::QueueFull(address.to_string()), Some(m)))
            }
            TrySendError::Closed(_) => {
                Box::new((RuntimeError::WorkerStopped(address.to_string()), None))
            }
        })
    }
}

/// A worker's incoming queue. Dropping it frees the address.
pub struct Mailbox {
    address: Address,
    receiver: queue::Receiver<Message>,
    node: Weak<Inner>,
    generation: u64,
}

impl Mailbox {
    pub fn address(&self) -> &Address {
        &self.address
    }

    pub async fn recv(&mut self) -> Option<Message> {
        self.receiver.recv().await
    }

    /// Polls for the next message (see [`Mailbox::recv`]).
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Message>> {
        self.receiver.poll_recv(cx)
    }

    /// Frees the address and refuses further messages now, as dropping the mailbox does.
    pub(crate) fn close(&mut self) {
        self.receiver.close();
        self.unregister();
    }

    fn unregister(&mut self) {
        if let Some(inner) = self.node.upgrade() {
            let mut workers = inner.workers.lock().unwrap_or_else(|e| e.into_inner());
            if workers
                .get(&self.address)
                .is_some_and(|e| e.generation == self.generation)
            {
                workers.remove(&self.address);
            }
        }
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        self.unregister();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Route;
    use crate::origin::{FlowId, Origin};

    #[tokio::test]
    async fn delivers_to_first_hop_and_unregisters_on_drop() {
        let node = Node::new("n");
        let mut mb = node.register("a".into()).unwrap();
        node.send(Message::new(
            Route::from(["a", "b"]),
            Route::new(),
            b"x".to_vec(),
        ))
        .await
        .unwrap();
        assert_eq!(mb.recv().await.unwrap().payload, b"x");
        assert!(matches!(
            node.register("a".into()),
            Err(RuntimeError::AddressInUse(_))
        ));
        assert!(node.unregister(&"a".into()));
        assert!(mb.recv().await.is_none(), "mailbox ends once unregistered");
        drop(mb);
        assert!(matches!(
            node.send(Message::new(Route::from(["a"]), Route::new(), vec![]))
                .await,
            Err(RuntimeError::UnknownAddress(_))
        ));
    }

    #[tokio::test]
    async fn bounded_mailbox_reports_full() {
        let node = Node::new("n");
        let _mb = node
            .register_with("a".into(), 2, Accepts::local_only())
            .unwrap();
        let m = Message::new(Route::from(["a"]), Route::new(), vec![]);
        node.try_send(m.clone()).unwrap();
        node.try_send(m.clone()).unwrap();
        assert!(matches!(node.try_send(m), Err(RuntimeError::QueueFull(_))));
    }

    #[tokio::test]
    async fn remote_origins_are_refused_unless_declared_and_allow_opens_a_flow() {
        let node = Node::new("n");
        let mut mb = node.register("svc".into()).unwrap();
        let flow = FlowId::random();
        let remote = |m: Message| {
            m.with_origin(Origin::Transport {
                connection: "tcp-in#1".into(),
                remote: None,
                flow,
            })
        };
        let m = Message::new(Route::from(["svc"]), Route::from(["tcp-in#1"]), vec![]);
        assert!(matches!(
            node.try_deliver(remote(m.clone())).map_err(|b| b.0),
            Err(RuntimeError::AccessDenied { .. })
        ));
        assert_eq!(node.denied_count(), 1);
        node.allow(&"svc".into(), flow).unwrap();
        node.try_deliver(remote(m)).map_err(|b| b.0).unwrap();
        assert!(!mb.recv().await.unwrap().origin().is_local());
    }

    #[tokio::test]
    async fn public_send_always_stamps_local_and_addresses_are_random() {
        let node = Node::new("n");
        let mut mb = node.register("a".into()).unwrap();
        let forged =
            Message::new(Route::from(["a"]), Route::new(), vec![]).with_origin(Origin::Transport {
                connection: "x".into(),
                remote: None,
                flow: FlowId::random(),
            });
        node.send(forged).await.unwrap();
        assert!(mb.recv().await.unwrap().origin().is_local());
        let (a, b) = (node.unique_address("sc-dec"), node.unique_address("sc-dec"));
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), "sc-dec#".len() + 16);
    }
}
