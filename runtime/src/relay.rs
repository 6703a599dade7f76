//! Relays: a node registers a name at a relay service and becomes reachable through it. The relay creates a
//! forwarder at `fwd:<name>` that sends whatever arrives there down the registering node's secure channel.
//! It forwards bytes it cannot read: everything end-to-end is inside a secure channel's frames.
//!
//! Registration happens only through a secure channel to the relay, so every name belongs to the identity
//! that registered it. A name lapses when its registration is not refreshed within the lease; each identity
//! may hold a bounded number of names, the relay a bounded total, and an optional list says who may register
//! which names.

/// Store-and-forward mailboxes for offline recipients (docs/RUNTIME.md, "Relay mailboxes").
#[path = "relay_mailbox.rs"]
pub mod mailbox;

use crate::channel::ChannelHandle;
use crate::error::{Result, RuntimeError};
use crate::flow::Accepts;
use crate::message::{Address, Message, Route};
use crate::node::{Mailbox, Node, DEFAULT_MAILBOX};
use latchkey_core::identity::Identifier;
use latchkey_core::route::relay::{self, Reply};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Observes (and, for demonstrations and tests, may alter) each payload a forwarder passes on.
pub type Inspector = Arc<dyn Fn(&str, &mut Vec<u8>) + Send + Sync>;

/// What the forwarder of a registered name accepts, given the name: a guarded relay's rule (see
/// [`RelayOptions::forward`]).
pub type ForwardAccepts = Arc<dyn Fn(&str) -> Accepts + Send + Sync>;

pub use latchkey_core::route::relay::{MAX_NAMES_PER_IDENTITY, MAX_NAME_LEN, MAX_RELAY_NAMES};

/// Replies of the registration service (docs/RUNTIME.md; `latchkey_core::route::relay::Reply`).
pub const REPLY_OK: &[u8] = b"ok";
pub const REPLY_TAKEN: &[u8] = b"taken";
pub const REPLY_QUOTA: &[u8] = b"quota";
pub const REPLY_FULL: &[u8] = b"full";
pub const REPLY_DENIED: &[u8] = b"denied";
pub const REPLY_BAD_NAME: &[u8] = b"bad-name";
pub const REPLY_BAD_ROUTE: &[u8] = b"bad-route";

/// The forwarder address for a registered name.
pub fn forwarder_address(name: &str) -> Result<Address> {
    relay::forwarder_address(name).map_err(crate::message::malformed)
}

/// A relay's settings.
#[derive(Clone)]
pub struct RelayOptions {
    /// Which secure channels may register names: normally `Accepts::flow(listener.flow)` for the relay's
    /// channel listener. Registrations that did not come out of a secure channel are refused regardless.
    pub accepts: Accepts,
    /// A name lapses (and its forwarder stops) when it has not been refreshed for this long.
    pub lease: Duration,
    /// Most names the relay serves.
    pub max_names: usize,
    /// Most names one identity may hold.
    pub max_names_per_identity: usize,
    /// Who may register which names (`"*"`: any name). `None`: any identity, any name.
    pub allowed: Option<Arc<HashMap<Identifier, Vec<String>>>>,
    /// Sees every forwarded payload (the doorbell demo shows what the relay handles with it).
    pub inspector: Option<Inspector>,
    /// A guarded relay: what each name's forwarder accepts (given the name), e.g. only messages out of the
    /// relay listener's channels, each checked by a guard on its authenticated origin (policy action
    /// `forward`, resource the name). Messages from bare transports are then refused by the flow rule,
    /// dropped and counted ([`Node::denied_count`]). A rule that takes any transport is refused at
    /// registration. `None`: every remote origin (an open relay; the end-to-end channel decides).
    pub forward: Option<ForwardAccepts>,
}

impl RelayOptions {
    /// Registrations from the channels of `listener_flow` (the relay's channel listener), default limits.
    pub fn new(listener_flow: crate::origin::FlowId) -> Self {
        RelayOptions {
            accepts: Accepts::flow(listener_flow),
            lease: Duration::from_secs(30),
            max_names: MAX_RELAY_NAMES,
            max_names_per_identity: MAX_NAMES_PER_IDENTITY,
            allowed: None,
            inspector: None,
            forward: None,
        }
    }
}

impl std::fmt::Debug for RelayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayOptions")
            .field("lease", &self.lease)
            .field("max_names", &self.max_names)
            .field("max_names_per_identity", &self.max_names_per_identity)
            .field("allowed", &self.allowed.as_ref().map(|a| a.len()))
            .field("guarded_forwarders", &self.forward.is_some())
            .finish_non_exhaustive()
    }
}

/// One registered name.
struct Registration {
    /// Where its forwarder sends: the registrant's channel.
    route: Arc<Mutex<Route>>,
    owner: Identifier,
    expires: Instant,
}

/// A running relay service: what it has registered.
#[derive(Clone)]
pub struct RelayHandle {
    names: Arc<Mutex<HashMap<String, Registration>>>,
}

impl RelayHandle {
    /// The names currently registered and their owners.
    pub fn names(&self) -> Vec<(String, Identifier)> {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = names.iter().map(|(n, r)| (n.clone(), r.owner)).collect();
        v.sort();
        v
    }
}

/// Starts a relay service at `address` on `node`, which must be a relay node ([`Node::relay`]).
pub fn start_relay(node: &Node, address: Address, options: RelayOptions) -> Result<RelayHandle> {
    if !node.is_relay() {
        return Err(RuntimeError::Insecure(
            "start_relay needs a node created with Node::relay",
        ));
    }
    if options.accepts.takes_any_transport() {
        return Err(RuntimeError::Insecure(
            "relay registrations must come out of secure channels",
        ));
    }
    let mut mailbox =
        node.register_with(address.clone(), DEFAULT_MAILBOX, options.accepts.clone())?;
    let node = node.clone();
    let handle = RelayHandle {
        names: Arc::default(),
    };
    let names = handle.names.clone();
    tokio::spawn(async move {
        let sweep_every = (options.lease / 4).max(Duration::from_millis(50));
        loop {
            let message = tokio::select! {
                m = mailbox.recv() => match m { Some(m) => m, None => return },
                _ = tokio::time::sleep(sweep_every) => {
                    sweep(&node, &names, Instant::now());
                    continue;
                }
            };
            sweep(&node, &names, Instant::now());
            let reply = register(&node, &names, &options, &message);
            if let Ok(reply) = message.reply_to_origin(Route::new(), reply.to_vec()) {
                let _ = node.try_send_as(&address, reply);
            }
        }
    });
    Ok(handle)
}

/// Removes names whose lease ran out; their forwarders stop.
fn sweep(node: &Node, names: &Mutex<HashMap<String, Registration>>, now: Instant) {
    let mut names = names.lock().unwrap_or_else(|e| e.into_inner());
    names.retain(|name, r| {
        let live = r.expires > now;
        if !live {
            tracing::info!("relay: {name:?} of {} lapsed", r.owner);
            if let Ok(a) = forwarder_address(name) {
                node.unregister(&a);
            }
        }
        live
    });
}

/// Handles one registration and says what to answer.
fn register(
    node: &Node,
    names: &Mutex<HashMap<String, Registration>>,
    options: &RelayOptions,
    message: &Message,
) -> &'static [u8] {
    let Some(claimant) = message.peer() else {
        tracing::warn!(
            "relay: refusing a registration from {}: only through a secure channel",
            message.origin()
        );
        return REPLY_DENIED;
    };
    let name = match relay::parse_name(&message.payload) {
        Ok(n) => n.to_string(),
        Err(reply) => return reply.as_bytes(),
    };
    if let Some(allowed) = &options.allowed {
        let ok = allowed
            .get(&claimant)
            .is_some_and(|list| list.iter().any(|n| n == "*" || *n == name));
        if !ok {
            tracing::warn!("relay: {claimant} may not register {name:?}");
            return REPLY_DENIED;
        }
    }
    // The forwarder's route is the return route minus the registrant's own last hop, and must lead into
    // the registrant's channel: start at that channel's encryptor here, with the registrant's address after
    // it. (An empty forwarder route would deliver on the relay itself, as a local sender.)
    let prefix = match relay::forwarder_route(&message.ret, message.origin().return_hop()) {
        Ok(prefix) => prefix,
        Err(reply) => {
            tracing::warn!("relay: refusing {claimant}'s registration: its return route does not lead back into its channel");
            return reply.as_bytes();
        }
    };
    let expires = Instant::now() + options.lease;
    let mut names = names.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(existing) = names.get_mut(&name) {
        if existing.owner != claimant {
            tracing::warn!(
                "relay: {name:?} belongs to {}; refused it to {claimant}",
                existing.owner
            );
            return REPLY_TAKEN;
        }
        // A refresh: follow the registrant's current channel and extend the lease.
        *existing.route.lock().unwrap_or_else(|e| e.into_inner()) = prefix;
        existing.expires = expires;
        return REPLY_OK;
    }
    let held = names.values().filter(|r| r.owner == claimant).count();
    if held >= options.max_names_per_identity {
        tracing::warn!(
            "relay: {claimant} already holds {held} names; refused {name:?} (quota {})",
            options.max_names_per_identity
        );
        return REPLY_QUOTA;
    }
    if names.len() >= options.max_names {
        tracing::warn!(
            "relay: refusing {name:?}: {} names already registered",
            options.max_names
        );
        return REPLY_FULL;
    }
    let Ok(address) = forwarder_address(&name) else {
        return REPLY_BAD_NAME;
    };
    // On an open relay anyone may send to a registered name (that is what a relay is for); the end-to-end
    // channel inside decides who gets anywhere. A guarded relay takes only what its rule admits.
    let accepts = match &options.forward {
        None => Accepts::relay(),
        Some(rule) => {
            let accepts = rule(&name);
            if accepts.takes_any_transport() {
                tracing::warn!(
                    "relay: the forwarder rule for {name:?} takes bare transports; refused"
                );
                return REPLY_DENIED;
            }
            accepts
        }
    };
    let forwarder = match node.register_with(address, DEFAULT_MAILBOX, accepts) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("relay: cannot register {name:?}: {e}");
            return REPLY_FULL;
        }
    };
    let route = Arc::new(Mutex::new(prefix));
    spawn_forwarder(
        node.clone(),
        forwarder,
        route.clone(),
        name.clone(),
        options.inspector.clone(),
    );
    tracing::info!("relay: {name:?} registered by {claimant}");
    names.insert(
        name,
        Registration {
            route,
            owner: claimant,
            expires,
        },
    );
    REPLY_OK
}

fn spawn_forwarder(
    node: Node,
    mut mailbox: Mailbox,
    route: Arc<Mutex<Route>>,
    name: String,
    inspector: Option<Inspector>,
) {
    tokio::spawn(async move {
        let me = mailbox.address().clone();
        while let Some(mut message) = mailbox.recv().await {
            let prefix = route.lock().unwrap_or_else(|e| e.into_inner()).clone();
            message.onward = relay::forward(&message.onward, &prefix);
            if let Some(inspect) = &inspector {
                inspect(&name, &mut message.payload);
            }
            // Waiting here is backpressure towards the sender's connection only.
            if let Err(e) = node.send_as(&me, message).await {
                tracing::debug!("relay: forwarding to {name:?} failed: {e}");
            }
        }
    });
}

/// Registers `name` at the relay service `service` on the far side of `channel` (a secure channel to the
/// relay node) and keeps the registration fresh every `refresh` (well inside the relay's lease), so it
/// follows reconnections. Returns once the first registration is confirmed.
pub async fn register_at_relay(
    node: &Node,
    channel: &ChannelHandle,
    service: Address,
    name: &str,
    refresh: Duration,
) -> Result<()> {
    // Answers are taken only out of this channel, from the relay.
    let accepts = Accepts::flow(channel.flow()).from_peers([channel.peer()]);
    let mut mailbox = node.register_with(
        node.unique_address("relay-client"),
        DEFAULT_MAILBOX,
        accepts,
    )?;
    let me = mailbox.address().clone();
    let here = Route::from_addresses([me.clone()]);
    let relay_route = channel.route_to(service);
    let payload = name.as_bytes().to_vec();
    node.send_as(
        &me,
        Message::new(relay_route.clone(), here.clone(), payload.clone()),
    )
    .await?;
    match tokio::time::timeout(Duration::from_secs(5), mailbox.recv()).await {
        Ok(Some(reply)) => registration_result(name, &reply.payload)?,
        Ok(None) => return Err(RuntimeError::ChannelClosed),
        Err(_) => return Err(RuntimeError::Timeout("relay registration")),
    }
    let node = node.clone();
    let channel = channel.clone();
    let name = name.to_string();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(refresh).await;
            if channel.is_closed() {
                tracing::warn!("relay registration of {name:?}: the channel to the relay closed");
                return;
            }
            let refresh = Message::new(relay_route.clone(), here.clone(), payload.clone());
            if let Err(e) = node.send_as(&me, refresh).await {
                tracing::warn!("relay registration refresh failed: {e}");
            }
            // Drain confirmations so the mailbox never fills.
            while let Ok(Some(reply)) =
                tokio::time::timeout(Duration::from_millis(1), mailbox.recv()).await
            {
                if let Err(e) = registration_result(&name, &reply.payload) {
                    tracing::warn!("relay registration refresh: {e}");
                }
            }
        }
    });
    Ok(())
}

/// The registration service's answer as a result.
fn registration_result(name: &str, reply: &[u8]) -> Result<()> {
    match Reply::explain(reply, name) {
        None => Ok(()),
        Some(why) => Err(RuntimeError::Refused(why)),
    }
}

/// A registration that [`register_at_relay_resilient`] keeps alive (dropping the handle does not stop it): across lost connections, relay
/// restarts and closed channels it reopens the channel to the relay and registers again.
#[derive(Debug)]
pub struct RelayRegistration {
    task: tokio::task::JoinHandle<()>,
    registrations: Arc<std::sync::atomic::AtomicU64>,
}

impl RelayRegistration {
    /// Confirmed registrations and refreshes so far.
    pub fn confirmed(&self) -> u64 {
        self.registrations
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops refreshing (the name lapses at the relay after its lease).
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// Like [`register_at_relay`], but through a [`ResilientChannel`](crate::channel::ResilientChannel): when the channel to the relay closes
/// (the relay restarted and reset it, or it failed), the registration reopens it (with the channel's
/// backoff) and registers again at once, and it opens each of `open_to` (e.g. the node's listener `api`)
/// to every new channel's flow, so what the relay forwards keeps arriving. Returns once the first
/// registration is confirmed (a refusal is an error here; later refusals are logged and retried).
pub async fn register_at_relay_resilient(
    node: &Node,
    channel: &crate::channel::ResilientChannel,
    service: Address,
    name: &str,
    refresh: Duration,
    open_to: Vec<Address>,
) -> Result<RelayRegistration> {
    let (mut current, _) = channel.channel_with_generation().await?;
    let mut mailbox = reply_mailbox(node, &current, &open_to)?;
    register_once(node, &current, &mut mailbox, &service, name).await?;
    let registrations = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let counter = registrations.clone();
    let node = node.clone();
    let channel = channel.clone();
    let name = name.to_string();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(refresh) => {}
                _ = current.closed() => {}
            }
            if current.is_closed() {
                // Reopen (at once after a reset; with backoff after failed handshakes).
                let generation = loop {
                    match channel.channel_with_generation().await {
                        Ok((c, g)) => {
                            current = c;
                            break g;
                        }
                        Err(_) => channel.backoff().await,
                    }
                };
                mailbox = match reply_mailbox(&node, &current, &open_to) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!("relay registration of {name:?}: {e}");
                        continue;
                    }
                };
                tracing::info!(
                    "relay registration of {name:?}: registering again through channel #{generation}"
                );
            }
            match register_once(&node, &current, &mut mailbox, &service, &name).await {
                Ok(()) => {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => tracing::warn!("relay registration of {name:?}: {e}"),
            }
        }
    });
    Ok(RelayRegistration {
        task,
        registrations,
    })
}

/// A reply mailbox for registrations through `channel` (open only to it and the relay), after opening
/// `open_to` to the channel's flow.
fn reply_mailbox(node: &Node, channel: &ChannelHandle, open_to: &[Address]) -> Result<Mailbox> {
    for address in open_to {
        node.allow(address, channel.flow())?;
    }
    node.register_with(
        node.unique_address("relay-client"),
        DEFAULT_MAILBOX,
        Accepts::flow(channel.flow()).from_peers([channel.peer()]),
    )
}

/// Sends one registration (or refresh) and waits for its answer, for at most 5 s or until the channel
/// closes.
async fn register_once(
    node: &Node,
    channel: &ChannelHandle,
    mailbox: &mut Mailbox,
    service: &Address,
    name: &str,
) -> Result<()> {
    let me = mailbox.address().clone();
    let request = Message::new(
        channel.route_to(service.clone()),
        Route::from_addresses([me.clone()]),
        name.as_bytes().to_vec(),
    );
    node.send_as(&me, request).await?;
    tokio::select! {
        reply = tokio::time::timeout(Duration::from_secs(5), mailbox.recv()) => match reply {
            Ok(Some(reply)) => registration_result(name, &reply.payload),
            Ok(None) => Err(RuntimeError::ChannelClosed),
            Err(_) => Err(RuntimeError::Timeout("relay registration")),
        },
        _ = channel.closed() => Err(match channel.close_reason() {
            Some(_) if channel.was_reset() => RuntimeError::DeliveryFailed(
                "the relay reset the channel (it no longer knows it; restarted?)",
            ),
            _ => RuntimeError::ChannelClosed,
        }),
    }
}
