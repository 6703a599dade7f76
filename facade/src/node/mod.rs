//! The runtime's node for every binding and the CLI: nodes, channels between nodes, listeners, mailboxes,
//! relays and portals, as `Arc` objects with `&self` methods, async network methods and plain owned values.
//! What a trust decision means for the runtime's flow rules, request/reply, lifetimes and closing all live
//! here once, so no binding re-implements them.

mod authority;
mod channel;
mod direct;
mod mailbox;
mod membership;
pub mod runtime;
mod store;

pub use authority::{
    check_policy, credential_info, delegate_attenuate, delegate_issue, delegate_verify, enroll,
    enroll_via_relay, parse_policy, serve_guarded, stored_credential, verify_credential,
    AuthorityService, CredentialInfo, GuardOptions, GuardedNode, MemberInfo, AUTHORITY_SERVICE,
};
pub use channel::{Listener, NodeChannel};
pub use direct::{DirectChannel, DirectListener};
pub use mailbox::{Mailbox, MessageOrigin, ReceivedMessage};
pub use membership::{NodeTrustOptions, REFRESH_RETRY_MAX, REFRESH_RETRY_MIN};
pub use store::{default_store_home, IdentityStore, StoredIdentity, StoredPeer};

use crate::channel::Trust;
use crate::error::{Error, ErrorCode, Result};
use crate::identity::{parse_identifiers, Identity};
use latchkey_core::channel::TrustIdentifiers;
use latchkey_core::identity::Identifier;
use latchkey_runtime::node::DEFAULT_MAILBOX;
use latchkey_runtime::pins::PinningTrust;
use latchkey_runtime::portal::InletHandle;
use latchkey_runtime::relay::{forwarder_address, RelayOptions as RuntimeRelayOptions};
use latchkey_runtime::storage::{default_home, PinNew, SharedStore, Store};
use latchkey_runtime::transport::tcp::{self, TcpListenerHandle, TcpOptions};
use latchkey_runtime::transport::udp;
use latchkey_runtime::{
    Accepts, Address, ChannelHandle, ChannelOptions, FlowId, LocalIdentity, Route, RuntimeError,
    SuiteChoice,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How a node is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeOptions {
    /// A name for logs.
    pub name: String,
    /// A relay node forwards remote messages between its connections; ordinary nodes never do.
    pub relay: bool,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            name: "node".into(),
            relay: false,
        }
    }
}

/// Where the peer's listener is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// `host:port` of the peer node, or of the relay when `relay_name` is set.
    pub address: String,
    /// Reach the node registered at the relay `address` under this name.
    pub relay_name: Option<String>,
    /// The channel listener's address on the peer node.
    pub listener: String,
    /// Datagrams instead of a TCP connection.
    pub udp: bool,
}

impl Peer {
    /// The listener `api` of the node at `address`, over TCP.
    pub fn tcp(address: impl Into<String>) -> Self {
        Peer {
            address: address.into(),
            relay_name: None,
            listener: "api".into(),
            udp: false,
        }
    }

    /// The listener `api` of the node registered as `name` at the relay `relay_address`, over TCP.
    pub fn via_relay(relay_address: impl Into<String>, name: impl Into<String>) -> Self {
        Peer {
            relay_name: Some(name.into()),
            ..Peer::tcp(relay_address)
        }
    }
}

/// How long connecting may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectOptions {
    /// The connection and the handshake together.
    pub timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            timeout: Duration::from_secs(10),
        }
    }
}

/// A relay service's limits (see docs/RUNTIME.md "Relays").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayServiceOptions {
    /// A name lapses when not refreshed for this long.
    pub lease: Duration,
    pub max_names: u32,
    pub max_names_per_identity: u32,
    /// `(identifier, name)` pairs that may register (`name` `"*"`: any). Empty: anyone the relay's listener
    /// trusts, any name.
    pub allowed: Vec<(String, String)>,
}

impl Default for RelayServiceOptions {
    fn default() -> Self {
        RelayServiceOptions {
            lease: Duration::from_secs(30),
            max_names: latchkey_runtime::relay::MAX_RELAY_NAMES as u32,
            max_names_per_identity: latchkey_runtime::relay::MAX_NAMES_PER_IDENTITY as u32,
            allowed: Vec::new(),
        }
    }
}

/// How often a registration at a relay is refreshed (well inside the default 30 s lease).
pub const RELAY_REFRESH: Duration = Duration::from_secs(2);

impl Trust {
    fn identifiers(&self) -> Result<Option<Vec<Identifier>>> {
        match self {
            Trust::Identifiers(list) => Ok(Some(parse_identifiers(list)?)),
            Trust::AnyIdentity => Ok(None),
        }
    }

    fn channel_options(&self) -> Result<ChannelOptions> {
        Ok(match self.identifiers()? {
            Some(ids) => ChannelOptions::default().with_trust(Arc::new(TrustIdentifiers::new(ids))),
            None => ChannelOptions::default().trust_any(),
        })
    }

    /// Local senders and the channels of `flows`, from the trusted peers only when some are named. Never raw
    /// transport messages.
    fn accepts(&self, flows: &[FlowId]) -> Result<Accepts> {
        let accepts = flows
            .iter()
            .fold(Accepts::local_only(), |a, f| a.and_flow(*f));
        Ok(match self.identifiers()? {
            Some(ids) => accepts.from_peers(ids),
            None => accepts,
        })
    }
}

/// A close signal that wakes whoever waits, now or later.
#[derive(Default)]
pub(crate) struct Closer {
    closed: AtomicBool,
    notify: Notify,
}

impl Closer {
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Resolves once closed.
    pub(crate) async fn closed(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

/// What a node has opened, so services reach every listener's channels (including listeners started
/// later), listeners take handshakes out of every relay channel, and shutdown finds everything.
#[derive(Default)]
struct Exposure {
    listener_flows: Vec<FlowId>,
    listeners: Vec<Address>,
    /// (id, address) of every live service and mailbox.
    services: Vec<(u64, Address)>,
    next_id: u64,
    tcp: Vec<TcpListenerHandle>,
    inlets: Vec<InletHandle>,
    /// Relay registrations kept alive across relay restarts (stopped at shutdown).
    registrations: Vec<latchkey_runtime::relay::RelayRegistration>,
    channels: Vec<ChannelHandle>,
}

pub(crate) struct NodeState {
    pub(crate) node: latchkey_runtime::Node,
    identity: LocalIdentity,
    exposure: Mutex<Exposure>,
    pub(crate) closer: Closer,
    /// The peer-history store every trust decision of this node consults, once [`Node::pin_peers`] set it.
    pins: Mutex<Option<(SharedStore, PinNew)>>,
    /// The facade identity this node acts as, if it was made from one: it owns the keys the node uses.
    keep_alive: Mutex<Option<Identity>>,
    /// Authorities, policies and this node's own credential ([`Node::use_authorities`]).
    trust: Mutex<Arc<membership::NodeTrust>>,
    /// The cipher suite its routed channels offer and accept ([`Node::set_suite`]).
    suite: Mutex<SuiteChoice>,
    /// The store entry this node's identity came from ([`Node::with_stored_identity`]), with the credential
    /// stored for it: presented by default, refreshed and saved back by [`Node::use_authorities`].
    pub(crate) stored: Option<membership::StoredAs>,
}

impl NodeState {
    pub(crate) fn trust(&self) -> Result<Arc<membership::NodeTrust>> {
        Ok(self
            .trust
            .lock()
            .map_err(|_| Error::invalid_state("node state lock poisoned"))?
            .clone())
    }

    /// [`NodeState::channel_options`], plus the credentials of the node's authorities (when it requires
    /// them) and its own credential.
    fn member_channel_options(&self, trust: &Trust) -> Result<ChannelOptions> {
        Ok(self.trust()?.channel_options(self.channel_options(trust)?))
    }

    /// Channel options for `trust`: its policy, then (when this node pins) the pinned-history check. Peers
    /// a trust list names are pinned at first contact; with `AnyIdentity`, only when trust on first use was
    /// asked for — but a peer already pinned is always held to its pin.
    fn channel_options(&self, trust: &Trust) -> Result<ChannelOptions> {
        let suite = *self
            .suite
            .lock()
            .map_err(|_| Error::invalid_state("node state lock poisoned"))?;
        let options = trust.channel_options()?.with_suite(suite);
        let pins = self
            .pins
            .lock()
            .map_err(|_| Error::invalid_state("node state lock poisoned"))?
            .clone();
        let Some((store, first_use)) = pins else {
            return Ok(options);
        };
        let inner = options
            .trust
            .clone()
            .ok_or_else(|| Error::invalid_state("trust without a policy"))?;
        let pin_new = match trust {
            Trust::Identifiers(_) => PinNew::Pin,
            Trust::AnyIdentity => first_use,
        };
        Ok(options.with_trust(Arc::new(PinningTrust::new(inner, store, pin_new))))
    }

    fn exposure(&self) -> Result<std::sync::MutexGuard<'_, Exposure>> {
        self.exposure
            .lock()
            .map_err(|_| Error::new(ErrorCode::InvalidState, "node state lock poisoned"))
    }

    fn check_open(&self) -> Result<()> {
        if self.closer.is_closed() {
            Err(Error::closed("the node"))
        } else {
            Ok(())
        }
    }

    pub(crate) fn track(&self, channel: &ChannelHandle) {
        if let Ok(mut e) = self.exposure() {
            e.channels.retain(|c| !c.is_closed());
            e.channels.push(channel.clone());
        }
    }

    /// Registers a service at `address` (with `start`, given what it accepts): open to the channels of every
    /// listener of this node, now and later, limited to the trusted peers. Returns its id.
    fn expose<T>(
        &self,
        address: Address,
        trust: &Trust,
        action: &str,
        start: impl FnOnce(Address, Accepts) -> Result<T, RuntimeError>,
    ) -> Result<(u64, T)> {
        // With authorities, every remote message must also come from a valid, unrevoked member meeting the
        // address's policy (resource.name = the address, action.name = `action`).
        let guard = self.trust()?.guard(address.as_str(), action);
        // Held while registering, so a listener starting meanwhile either is in `listener_flows` already or
        // finds this service on the list.
        let mut e = self.exposure()?;
        let accepts = trust.accepts(&e.listener_flows)?;
        let accepts = match guard {
            Some(g) => accepts.with_guard(g),
            None => accepts,
        };
        let started = runtime::enter(|| start(address.clone(), accepts))?;
        e.next_id += 1;
        let id = e.next_id;
        e.services.push((id, address));
        Ok((id, started))
    }

    pub(crate) fn forget_service(&self, id: u64) {
        if let Ok(mut e) = self.exposure() {
            e.services.retain(|(i, _)| *i != id);
        }
    }
}

pub(crate) fn address(text: &str) -> Result<Address> {
    Address::new(text)
        .map_err(|_| Error::invalid_argument(format!("{text:?} is not an address (1..=255 bytes)")))
}

/// A node: workers at addresses, transports, secure channels to other nodes, services. Create one per
/// identity; use it from any thread; `shutdown` ends it.
pub struct Node {
    state: Arc<NodeState>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.state.node.name())
            .field("identifier", &self.identifier())
            .finish()
    }
}

impl Node {
    /// A node acting as `identity` (a snapshot: later rotations of `identity` apply to new nodes).
    pub fn new(identity: &Identity, options: NodeOptions) -> Result<Arc<Node>> {
        let node = Self::with_local_identity(identity.local_identity()?, options);
        // The node uses the identity's keys for as long as it lives.
        *node
            .state
            .keep_alive
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(identity.clone());
        Ok(node)
    }

    /// A node acting as the identity `name` from the store in `home` (default `$LATCHKEY_HOME`, else
    /// `~/.latchkey`: the CLI's store), created there first when `create` is true.
    ///
    /// The credential stored for it (`credentials/NAME.cred`, written by `enroll` and by refreshes) is
    /// presented in this node's handshakes from the start while it is valid; an expired one is not presented
    /// (logged as a warning) until [`Node::use_authorities`] with the authority's address refreshes it.
    /// [`Node::use_authorities`] with an explicit credential presents that one instead. A stored credential
    /// that does not decode or names another identity is `InvalidCredential`. To present nothing, load the
    /// identity ([`IdentityStore::load`]), clear its credentials ([`Identity::set_credentials`]) and make
    /// the node with [`Node::new`].
    pub fn with_stored_identity(
        name: &str,
        home: Option<String>,
        create: bool,
        options: NodeOptions,
    ) -> Result<Arc<Node>> {
        let dir = home.clone().map(PathBuf::from).unwrap_or_else(default_home);
        let mut store = Store::open(&dir)?;
        let identity = match store.load_identity(name) {
            Err(RuntimeError::UnknownIdentity(_)) if create => {
                store::check_name(name)?;
                store.create_identity(name)?.0
            }
            other => other?,
        };
        let stored = membership::StoredAs::load(name, home, &dir, &identity)?;
        let node = Self::build(identity, options, Some(stored));
        membership::present_stored(&node.state);
        Ok(node)
    }

    /// A node acting as a core identity (Rust callers, the CLI).
    pub fn with_local_identity(identity: LocalIdentity, options: NodeOptions) -> Arc<Node> {
        Self::build(identity, options, None)
    }

    fn build(
        identity: LocalIdentity,
        options: NodeOptions,
        stored: Option<membership::StoredAs>,
    ) -> Arc<Node> {
        let node = if options.relay {
            latchkey_runtime::Node::relay(options.name)
        } else {
            latchkey_runtime::Node::new(options.name)
        };
        Arc::new(Node {
            state: Arc::new(NodeState {
                node,
                identity,
                exposure: Mutex::new(Exposure::default()),
                closer: Closer::default(),
                pins: Mutex::new(None),
                keep_alive: Mutex::new(None),
                trust: Mutex::new(Arc::new(membership::NodeTrust::new())),
                suite: Mutex::new(SuiteChoice::Auto),
                stored,
            }),
        })
    }

    /// The cipher suite of the routed channels this node opens from now on, and of the listeners it starts
    /// from now on (docs/PROTOCOL.md 5.1): a listener keeps the choice it was started with. `Auto` (the
    /// default): offer AES-256-GCM where the CPU has AES instructions, ChaChaPoly otherwise, and accept both. `Only(suite)`: offer and accept that suite only (a peer offering the
    /// other is refused with `UnsupportedSuite`).
    pub fn set_suite(&self, suite: SuiteChoice) -> Result<()> {
        *self
            .state
            .suite
            .lock()
            .map_err(|_| Error::invalid_state("node state lock poisoned"))? = suite;
        Ok(())
    }

    pub fn name(&self) -> String {
        self.state.node.name().to_string()
    }

    /// Pins peer histories in `store`: from now on every trust decision of this node (listeners, channels,
    /// relay registrations made afterwards) also checks the history the peer presents against the one pinned
    /// for it, inside the handshake. First contact with a peer a trust list names pins its history; with
    /// `trust_on_first_use`, so does first contact under `Trust::AnyIdentity` (otherwise such peers are
    /// checked only if already pinned). Later contacts must present the pinned history or an extension of
    /// it (the pin then moves on); a rollback, a fork or a rotation that breaks the key-lifetime rules is
    /// refused with `HistoryRollback`, `HistoryFork` or `KeyLifetimeExceeded`.
    pub fn pin_peers(&self, store: &IdentityStore, trust_on_first_use: bool) -> Result<()> {
        let first_use = if trust_on_first_use {
            PinNew::Pin
        } else {
            PinNew::DoNotPin
        };
        *self
            .state
            .pins
            .lock()
            .map_err(|_| Error::invalid_state("node state lock poisoned"))? =
            Some((store.shared(), first_use));
        Ok(())
    }

    /// This node's identifier (`lk…`): what peers see and trust.
    pub fn identifier(&self) -> String {
        self.state.identity.identifier().to_string()
    }

    pub fn is_closed(&self) -> bool {
        self.state.closer.is_closed()
    }

    /// How many deliveries the flow rules have refused on this node.
    pub fn denied_count(&self) -> u64 {
        self.state.node.denied_count()
    }

    /// Makes this node a member: it requires of its peers a valid, unrevoked credential of one of
    /// `options.authorities` (at every handshake, and on every message to its services, portal outlets and
    /// inlets and relay service, each also under its policy: [`Node::set_policy`]), presents
    /// `options.credential`, and with `options.authority_address` follows the authority's revocations
    /// (closing the live channels of revoked peers) and refreshes its credential at half its validity
    /// (docs/RUNTIME.md, "Authorities on a node"). Call it once, before starting listeners, services,
    /// portals and channels: those started earlier are not checked. Returns whether the authority was
    /// reached (if not, the node keeps trying in the background).
    pub async fn use_authorities(&self, options: NodeTrustOptions) -> Result<bool> {
        self.state.check_open()?;
        membership::install(self.state.clone(), options).await
    }

    /// The attribute policy (docs/POLICY.md) for the worker at `address`, evaluated for every message to it
    /// with `resource.name` = `address` and `action.name` = `"send"` (services, mailboxes), `"connect"`
    /// (portal outlets; `"inlet"` for this node's inlets) or `"register"` (`"relay"`), and at the handshake
    /// for `"channel"` (`action.name = "open"`). Set it after [`Node::use_authorities`] and before starting
    /// what it guards (`InvalidState` if that already runs). A refused message is dropped and counted; the
    /// peer hears only that there is no such destination for it.
    pub fn set_policy(&self, address: String, policy: String) -> Result<()> {
        self.state.check_open()?;
        let a = self::address(&address)?;
        let running = self.state.node.is_registered(&a)
            || (address == "inlet" && !self.state.exposure()?.inlets.is_empty())
            || (address == "channel" && !self.state.exposure()?.listeners.is_empty());
        if running {
            return Err(Error::new(
                ErrorCode::InvalidState,
                format!("{address:?} already runs: set its policy before starting it"),
            ));
        }
        membership::set_policy(&self.state, &address, &policy)
    }

    /// Whether a policy is set for `address`.
    pub fn has_policy(&self, address: String) -> bool {
        self.state
            .trust()
            .map(|t| t.has_policy(&address))
            .unwrap_or(false)
    }

    /// Channels closed because their peer was revoked, because their peer's credential expired, and how
    /// many times this node's own credential was refreshed.
    pub fn trust_counts(&self) -> (u64, u64, u64) {
        membership::counts(&self.state)
    }

    /// Accepts TCP connections on `address` (`host:port`, port 0 for any); returns the bound address.
    pub async fn listen_tcp(&self, address: String) -> Result<String> {
        let state = self.state.clone();
        runtime::run(async move {
            state.check_open()?;
            let handle = tcp::listen(&state.node, &address, TcpOptions::default()).await?;
            let bound = handle.local_addr.to_string();
            state.exposure()?.tcp.push(handle);
            Ok(bound)
        })
        .await
    }

    /// Receives datagrams on `address`; returns the bound address.
    pub async fn bind_udp(&self, address: String) -> Result<String> {
        let state = self.state.clone();
        runtime::run(async move {
            state.check_open()?;
            Ok(udp::bind(&state.node, &address)
                .await?
                .local_addr
                .to_string())
        })
        .await
    }

    /// Accepts secure channels at `address` (e.g. `"api"`) from the peers `trust` names. Its channels may
    /// reach this node's services; handshakes may arrive from any transport, and through the relays this
    /// node registers at afterwards.
    pub fn listen(&self, address: String, trust: Trust) -> Result<Arc<Listener>> {
        self.state.check_open()?;
        let options = self.state.member_channel_options(&trust)?;
        let address = self::address(&address)?;
        let mut e = self.state.exposure()?;
        let handle = runtime::enter(|| {
            latchkey_runtime::create_listener(
                &self.state.node,
                &self.state.identity,
                address.clone(),
                options,
            )
        })?;
        let node = &self.state.node;
        // A service whose address is gone (its mailbox was dropped) is skipped.
        e.services
            .retain(|(_, service)| node.allow(service, handle.flow).is_ok());
        e.listener_flows.push(handle.flow);
        e.listeners.push(address);
        drop(e);
        Ok(Listener::new(self.state.clone(), handle))
    }

    /// Opens a secure channel to `peer`'s listener, accepting it only if `trust` does. Fails with
    /// `UntrustedPeer` for another identity, `Timeout` when nothing answers within `options.timeout`.
    pub async fn connect(
        &self,
        peer: Peer,
        trust: Trust,
        options: ConnectOptions,
    ) -> Result<Arc<NodeChannel>> {
        let channel_options = ChannelOptions {
            handshake_timeout: options.timeout,
            ..self.state.member_channel_options(&trust)?
        };
        let state = self.state.clone();
        let handle = runtime::run(async move {
            state.check_open()?;
            let work = async {
                let route = route_to(&state.node, &peer).await?;
                Ok::<_, Error>(
                    latchkey_runtime::create_channel(
                        &state.node,
                        &state.identity,
                        route,
                        channel_options,
                    )
                    .await?,
                )
            };
            let handle = tokio::time::timeout(options.timeout, work)
                .await
                .map_err(|_| {
                    Error::new(
                        ErrorCode::Timeout,
                        format!(
                            "no secure channel to {} within {:?}",
                            peer.address, options.timeout
                        ),
                    )
                })??;
            state.track(&handle);
            state.trust()?.watch(&handle);
            Ok(handle)
        })
        .await?;
        Ok(NodeChannel::new(self.state.clone(), handle))
    }

    /// Opens a secure channel to the node registered as `name` at the relay at `relay` (`host:port`) *through
    /// a secure channel to the relay* (nested), for relays that forward only such traffic (a `forward`
    /// policy: docs/POLICY.md). The outer channel must be accepted by `relay_trust` and shows the relay this
    /// node's credential; the inner, end-to-end channel must be accepted by `trust` and is all the relay
    /// sees (ciphertext). `options.timeout` covers both handshakes; a relay that refuses to forward for this
    /// node drops the handshake, so that is a `Timeout`. Closing either channel closes the other (the outer
    /// one fails, e.g., at its delivery deadline once the relay is gone).
    pub async fn connect_via_relay_channel(
        &self,
        relay: String,
        relay_trust: Trust,
        name: String,
        trust: Trust,
        options: ConnectOptions,
    ) -> Result<Arc<NodeChannel>> {
        let forwarder = forwarder_address(&name)
            .map_err(|_| Error::invalid_argument(format!("{name:?} is not a valid relay name")))?;
        let mut outer_options = ChannelOptions {
            handshake_timeout: options.timeout,
            ..self.state.channel_options(&relay_trust)?
        };
        outer_options.credentials = self.state.member_channel_options(&relay_trust)?.credentials;
        let inner_options = ChannelOptions {
            handshake_timeout: options.timeout,
            ..self.state.member_channel_options(&trust)?
        };
        let state = self.state.clone();
        let handle = runtime::run(async move {
            state.check_open()?;
            let work = async {
                let route = route_to(&state.node, &Peer::tcp(relay.clone())).await?;
                let outer = latchkey_runtime::create_channel(
                    &state.node,
                    &state.identity,
                    route,
                    outer_options,
                )
                .await?;
                // Kept (and closed at shutdown) with the node's channels: it carries the inner one.
                state.track(&outer);
                let inner = latchkey_runtime::create_channel(
                    &state.node,
                    &state.identity,
                    outer.route_to(forwarder).append(Address::from("api")),
                    inner_options,
                )
                .await;
                let inner = match inner {
                    Ok(inner) => inner,
                    Err(e) => {
                        outer.close().await;
                        return Err(e.into());
                    }
                };
                // The two live and die together: the inner channel's route runs through the outer one, and
                // the outer one exists only to carry it.
                let (o, i) = (outer.clone(), inner.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        () = o.closed() => i.close().await,
                        () = i.closed() => o.close().await,
                    }
                });
                Ok::<_, Error>(inner)
            };
            let handle = tokio::time::timeout(options.timeout, work)
                .await
                .map_err(|_| {
                    Error::new(
                        ErrorCode::Timeout,
                        format!(
                            "no secure channel to {name:?} through a channel to relay {relay} within {:?}",
                            options.timeout
                        ),
                    )
                })??;
            state.track(&handle);
            state.trust()?.watch(&handle);
            Ok(handle)
        })
        .await?;
        Ok(NodeChannel::new(self.state.clone(), handle))
    }

    /// Registers this node as `name` at the relay at `relay` (`host:port`), through a secure channel to the
    /// relay that `relay_trust` must accept, and keeps the registration fresh — across lost connections and
    /// relay restarts (the channel re-handshakes and the name is registered again). The listeners this node
    /// has when it registers (start them first) take the handshakes that come through the relay. Returns the
    /// identifier the relay proved.
    pub async fn register_at_relay(
        &self,
        relay: String,
        relay_trust: Trust,
        name: String,
    ) -> Result<String> {
        // The relay carries ciphertext: it needs no credential of ours' authorities, but is shown ours.
        let mut channel_options = ChannelOptions {
            handshake_timeout: ConnectOptions::default().timeout,
            ..self.state.channel_options(&relay_trust)?
        };
        channel_options.credentials = self.state.member_channel_options(&relay_trust)?.credentials;
        let state = self.state.clone();
        runtime::run(async move {
            state.check_open()?;
            let route = route_to(&state.node, &Peer::tcp(relay)).await?;
            // A channel that re-handshakes on its own, so the registration survives relay restarts and lost
            // connections: the runtime re-registers and reopens this node's listeners to each new channel.
            let channel = latchkey_runtime::channel::ResilientChannel::open(
                &state.node,
                &state.identity,
                route,
                channel_options,
            )
            .await?;
            let listeners = state.exposure()?.listeners.clone();
            let registration = latchkey_runtime::relay::register_at_relay_resilient(
                &state.node,
                &channel,
                "relay".into(),
                &name,
                RELAY_REFRESH,
                listeners,
            )
            .await?;
            let relay_id = channel
                .current()
                .await
                .map(|c| c.peer().to_string())
                .ok_or_else(|| Error::closed("the channel to the relay"))?;
            state.exposure()?.registrations.push(registration);
            Ok(relay_id)
        })
        .await
    }

    /// Makes this (relay) node a relay: a registration service `relay` for the channels of its listeners.
    pub fn start_relay(&self, options: RelayServiceOptions) -> Result<()> {
        self.state.check_open()?;
        let e = self.state.exposure()?;
        let mut accepts = Accepts::local_only();
        for flow in &e.listener_flows {
            accepts = accepts.and_flow(*flow);
        }
        // With authorities: each registration (and refresh) must come from a valid member meeting the
        // `relay` policy (action.name = "register").
        if let Some(g) = self.state.trust()?.guard("relay", "register") {
            accepts = accepts.with_guard(g);
        }
        if e.listener_flows.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidState,
                "start a channel listener first: relay registrations come through secure channels",
            ));
        }
        let mut allowed: HashMap<Identifier, Vec<String>> = HashMap::new();
        for (id, name) in &options.allowed {
            let id = parse_identifiers(std::slice::from_ref(id))?.remove(0);
            allowed.entry(id).or_default().push(name.clone());
        }
        // With a `forward` policy: each name's forwarder takes only messages out of these listeners'
        // channels (never bare transports), each from a valid member meeting the policy with
        // `resource.name` = the registered name and `action.name` = "forward".
        let forward: Option<latchkey_runtime::relay::ForwardAccepts> =
            if self.state.trust()?.has_policy("forward") {
                let trust = self.state.trust()?.clone();
                let base = accepts_without_guard(&e.listener_flows);
                Some(Arc::new(move |name: &str| {
                    match trust.guard_for("forward", name, "forward") {
                        Some(g) => base.clone().with_guard(g),
                        // Unreachable while the policy is set; never an unguarded forwarder then.
                        None => Accepts::local_only(),
                    }
                }))
            } else {
                None
            };
        let relay_options = RuntimeRelayOptions {
            accepts,
            lease: options.lease,
            max_names: options.max_names as usize,
            max_names_per_identity: options.max_names_per_identity as usize,
            allowed: (!allowed.is_empty()).then(|| Arc::new(allowed)),
            inspector: None,
            forward,
        };
        runtime::enter(|| {
            latchkey_runtime::relay::start_relay(&self.state.node, "relay".into(), relay_options)
        })?;
        Ok(())
    }

    /// Makes this (relay) node keep store-and-forward mailboxes in the SQLite file `path` (docs/RUNTIME.md,
    /// "Relay mailboxes"): deposits at `mailbox` from anyone, owner operations at `mailbox-owner` from the
    /// channels of this node's listeners (each identity only its own mailbox). Start a listener first.
    pub fn start_relay_mailbox(&self, path: String) -> Result<()> {
        self.state.check_open()?;
        let e = self.state.exposure()?;
        if e.listener_flows.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidState,
                "start a channel listener first: mailbox owners come through secure channels",
            ));
        }
        let accepts = e
            .listener_flows
            .iter()
            .fold(Accepts::local_only(), |a, f| a.and_flow(*f));
        drop(e);
        let options = latchkey_runtime::relay::mailbox::MailboxOptions::new(path.into(), accepts);
        runtime::enter(|| {
            latchkey_runtime::relay::mailbox::start_mailbox(
                &self.state.node,
                "mailbox".into(),
                "mailbox-owner".into(),
                options,
            )
        })?;
        Ok(())
    }

    /// An echo service at `address` for the channels of this node's listeners, from the peers `trust` names.
    pub fn start_echo(&self, address: String, trust: Trust) -> Result<()> {
        self.state.check_open()?;
        let node = &self.state.node;
        self.state
            .expose(
                self::address(&address)?,
                &trust,
                "send",
                |address, accepts| latchkey_runtime::services::start_echo(node, address, accepts),
            )
            .map(|_| ())
    }

    /// A mailbox at `address`: local senders, and messages out of the channels of this node's listeners (now
    /// and later) from the peers `trust` names (`Trust::Identifiers(vec![])`: local senders only). Never raw
    /// transport messages. A channel's `send(.., reply_to)` also opens it to that channel's replies.
    pub fn mailbox(&self, address: String, trust: Trust) -> Result<Arc<Mailbox>> {
        self.state.check_open()?;
        let node = &self.state.node;
        let (id, mailbox) = self.state.expose(
            self::address(&address)?,
            &trust,
            "send",
            |address, accepts| node.register_with(address, DEFAULT_MAILBOX, accepts),
        )?;
        Ok(Mailbox::new(self.state.clone(), id, mailbox))
    }

    /// A TCP portal outlet at `address`: each connection request that comes out of a channel of this node's
    /// listeners, from a peer `trust` names, opens a TCP connection to `target`.
    pub fn create_outlet(&self, address: String, target: String, trust: Trust) -> Result<()> {
        self.state.check_open()?;
        let node = &self.state.node;
        self.state
            .expose(
                self::address(&address)?,
                &trust,
                "connect",
                |address, accepts| {
                    latchkey_runtime::portal::create_outlet(node, address, target, accepts)
                },
            )
            .map(|_| ())
    }

    /// A TCP portal inlet listening on `listen`: each connection is carried through `channel` to the outlet
    /// `outlet` on its far side. Returns the bound address.
    pub async fn create_inlet(
        &self,
        listen: String,
        channel: Arc<NodeChannel>,
        outlet: String,
    ) -> Result<String> {
        let outlet = address(&outlet)?;
        let state = self.state.clone();
        runtime::run(async move {
            state.check_open()?;
            let inlet = latchkey_runtime::portal::create_inlet(
                &state.node,
                &listen,
                channel.handle(),
                outlet,
            )
            .await?;
            let bound = inlet.local_addr.to_string();
            state.exposure()?.inlets.push(inlet);
            Ok(bound)
        })
        .await
    }

    /// A TCP portal inlet on `listen` to the outlet `outlet` of the node registered as `name` at the relay at
    /// `relay` (`host:port`), through a secure channel to the relay (nested, as
    /// [`Node::connect_via_relay_channel`]: for relays with a `forward` policy, which drop bare TCP traffic to
    /// their names). Only the peer `trust` accepts can answer or send data through it; with authorities, the
    /// `inlet` policy guards what comes back, as for [`Node::create_inlet_to`]. Unlike that one, the portal's
    /// channel is not reopened on its own: once it closes (the relay or the outlet's node restarted, a
    /// revocation), connections in flight are reset and new ones refused — watch the returned channel
    /// ([`NodeChannel::is_closed`]) and make a new inlet. Returns the bound address and the channel.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_inlet_via_relay_channel(
        &self,
        listen: String,
        relay: String,
        relay_trust: Trust,
        name: String,
        trust: Trust,
        options: ConnectOptions,
        outlet: String,
    ) -> Result<(String, Arc<NodeChannel>)> {
        let outlet = address(&outlet)?;
        let guard = self.state.trust()?.guard("inlet", "connect");
        let channel = self
            .connect_via_relay_channel(relay, relay_trust, name, trust, options)
            .await?;
        let state = self.state.clone();
        let handle = channel.handle().clone();
        let started = runtime::run(async move {
            state.check_open()?;
            let inlet = match guard {
                Some(guard) => {
                    latchkey_runtime::portal::create_inlet_with_guard(
                        &state.node,
                        &listen,
                        &handle,
                        outlet,
                        guard,
                    )
                    .await?
                }
                None => {
                    latchkey_runtime::portal::create_inlet(&state.node, &listen, &handle, outlet)
                        .await?
                }
            };
            let bound = inlet.local_addr.to_string();
            state.exposure()?.inlets.push(inlet);
            Ok::<_, Error>(bound)
        })
        .await;
        match started {
            Ok(bound) => Ok((bound, channel)),
            Err(e) => {
                let _ = channel.close().await;
                Err(e)
            }
        }
    }

    /// A TCP portal inlet on `listen` to the outlet `outlet` of `peer`, through a secure channel that
    /// re-handshakes on its own: after the relay or the outlet's node restarted, the next connection opens a
    /// new channel (connections in flight when the old one died are reset, so their clients see an error
    /// instead of hanging). The first channel must open (an untrusted peer or a wrong address fails here).
    /// Returns the bound address and the identifier the peer proved.
    pub async fn create_inlet_to(
        &self,
        listen: String,
        peer: Peer,
        trust: Trust,
        options: ConnectOptions,
        outlet: String,
    ) -> Result<(String, String)> {
        let outlet = address(&outlet)?;
        let channel_options = ChannelOptions {
            handshake_timeout: options.timeout,
            ..self.state.member_channel_options(&trust)?
        };
        let guard = self.state.trust()?.guard("inlet", "connect");
        let state = self.state.clone();
        runtime::run(async move {
            state.check_open()?;
            let open = async {
                let route = route_to(&state.node, &peer).await?;
                Ok::<_, Error>(
                    latchkey_runtime::channel::ResilientChannel::open(
                        &state.node,
                        &state.identity,
                        route,
                        channel_options,
                    )
                    .await?,
                )
            };
            let channel = tokio::time::timeout(options.timeout, open)
                .await
                .map_err(|_| {
                    Error::new(
                        ErrorCode::Timeout,
                        format!(
                            "no secure channel to {} within {:?}",
                            peer.address, options.timeout
                        ),
                    )
                })??;
            let peer_id = channel
                .current()
                .await
                .map(|c| c.peer().to_string())
                .ok_or_else(|| Error::closed("the portal's channel"))?;
            state.trust()?.keep_resilient(&channel);
            let inlet = match guard {
                Some(guard) => {
                    latchkey_runtime::portal::create_inlet_resilient_with_guard(
                        &state.node,
                        &listen,
                        &channel,
                        outlet,
                        guard,
                    )
                    .await?
                }
                None => {
                    latchkey_runtime::portal::create_inlet_resilient(
                        &state.node,
                        &listen,
                        &channel,
                        outlet,
                    )
                    .await?
                }
            };
            let bound = inlet.local_addr.to_string();
            state.exposure()?.inlets.push(inlet);
            Ok((bound, peer_id))
        })
        .await
    }

    /// Stops accepting (TCP listeners, portal inlets), closes every channel this node opened or accepted and
    /// waits until each has stopped, and ends every service and mailbox. Idempotent.
    pub async fn shutdown(&self) -> Result<()> {
        let state = self.state.clone();
        runtime::run(async move {
            state.closer.close();
            let (tcp, inlets, channels) = {
                let mut e = state.exposure()?;
                for registration in std::mem::take(&mut e.registrations) {
                    registration.stop();
                }
                (
                    std::mem::take(&mut e.tcp),
                    std::mem::take(&mut e.inlets),
                    std::mem::take(&mut e.channels),
                )
            };
            for listener in tcp {
                listener.stop();
            }
            for inlet in inlets {
                inlet.stop();
            }
            for channel in channels {
                channel.close().await;
            }
            // Ends every worker: their mailboxes close once unregistered.
            for (address, _) in state.node.flow_table() {
                state.node.unregister(&address);
            }
            // Transports write what was queued (the channels' last ACKs and CLOSE) before they stop; wait
            // for that briefly, so a process that exits after `shutdown` does not cut it off.
            // (A peer that stopped reading cannot hold the shutdown longer than that.)
            state.node.transports_stopped(SHUTDOWN_FLUSH).await;
            Ok(())
        })
        .await
    }
}

/// How long [`Node::shutdown`] waits for transports to write their last frames.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// Connects a transport to `peer` and returns the route to its listener.
/// Local senders plus the channels of `flows` (a relay's listeners).
fn accepts_without_guard(flows: &[latchkey_runtime::FlowId]) -> Accepts {
    flows
        .iter()
        .fold(Accepts::local_only(), |a, f| a.and_flow(*f))
}

async fn route_to(node: &latchkey_runtime::Node, peer: &Peer) -> Result<Route> {
    let mut route = if peer.udp {
        let handle = udp::bind(node, "0.0.0.0:0").await?;
        let remote = tcp::resolve(&peer.address).await?;
        Route::from_addresses([handle.address, address(&remote.to_string())?])
    } else {
        Route::from_addresses([tcp::connect(node, &peer.address, TcpOptions::default()).await?])
    };
    if let Some(name) = &peer.relay_name {
        route =
            route.append(forwarder_address(name).map_err(|_| {
                Error::invalid_argument(format!("{name:?} is not a valid relay name"))
            })?);
    }
    Ok(route.append(address(&peer.listener)?))
}
