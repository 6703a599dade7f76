//! The runtime `Node` for asyncio: each async method runs its Rust future on the shared tokio runtime (no
//! GIL held while it waits on the network or does crypto) and hands Python an awaitable (see `aio`).

use crate::errors::{to_py_err, IntoPyResult};
use crate::trust::Trust;
use latchkey_core::channel::TrustIdentifiers;
use latchkey_facade::Error;
use latchkey_runtime::node::DEFAULT_MAILBOX;
use latchkey_runtime::storage::{default_home, Store};
use latchkey_runtime::transport::tcp::{self, TcpListenerHandle, TcpOptions};
use latchkey_runtime::{
    create_channel, create_listener, services, Accepts, Address, ChannelHandle, ChannelOptions,
    FlowId, LocalIdentity, Mailbox, Node, Route, RuntimeError,
};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

mod channel;
mod mailbox;

pub(crate) use channel::{PyChannelListener, PyNodeChannel};
pub(crate) use mailbox::{PyMailbox, PyNodeMessage};

const NODE_CLOSED: Error = Error::InvalidState("node is closed");

// `Trust` and its `from_args` (the `trusted=[...]` / `trust_any=True` pair) are shared with `SecureChannel`
// in `crate::trust`; what a trust decision means for the runtime's channels and flows is here.
impl Trust {
    fn channel_options(&self) -> ChannelOptions {
        match self {
            Trust::Peers(ids) => {
                ChannelOptions::default().with_trust(Arc::new(TrustIdentifiers::new(ids.clone())))
            }
            Trust::Any => ChannelOptions::default().trust_any(),
        }
    }

    /// What a service or mailbox accepts: local senders, and messages out of the channels of `flows` (this
    /// node's listeners), only from the trusted peers if any are named. Never raw transport messages.
    fn accepts(&self, flows: &[FlowId]) -> Accepts {
        let accepts = flows
            .iter()
            .fold(Accepts::local_only(), |a, f| a.and_flow(*f));
        match self {
            Trust::Peers(ids) => accepts.from_peers(ids.iter().copied()),
            Trust::Any => accepts,
        }
    }
}

/// The flows of this node's channel listeners, and the services and mailboxes open to all of them (those
/// that exist when a listener starts, and those that start later).
#[derive(Default)]
pub(super) struct Exposure {
    listener_flows: Vec<FlowId>,
    /// (id, address) of every live service and mailbox.
    services: Vec<(u64, Address)>,
    next_id: u64,
}

/// A mailbox registered as a service of the node; dropping it takes it off the list that later listeners
/// open.
pub(super) struct ServiceMailbox {
    state: Arc<NodeState>,
    id: u64,
    mailbox: Mailbox,
}

impl ServiceMailbox {
    pub(super) fn address(&self) -> &Address {
        self.mailbox.address()
    }

    pub(super) async fn recv(&mut self) -> Option<latchkey_runtime::Message> {
        self.mailbox.recv().await
    }
}

impl Drop for ServiceMailbox {
    fn drop(&mut self) {
        // Before the mailbox (a field) frees the address, so no later listener opens whatever takes it next.
        if let Ok(mut exposure) = self.state.exposure.lock() {
            exposure.services.retain(|(id, _)| *id != self.id);
        }
    }
}

/// Loads (or, with `create`, creates) a named identity from the runtime's SQLite store.
fn stored_identity(
    name: &str,
    home: Option<PathBuf>,
    create: bool,
) -> Result<LocalIdentity, RuntimeError> {
    let mut store = Store::open(&home.unwrap_or_else(default_home))?;
    match store.load_identity(name) {
        Err(RuntimeError::UnknownIdentity(_)) if create => Ok(store.create_identity(name)?.0),
        other => other,
    }
}

pub(super) fn to_address(name: &str) -> PyResult<Address> {
    latchkey_runtime::message::address(name).into_py_result()
}

/// A close signal that wakes whoever is waiting in `recv`/`accepted`, now or later.
#[derive(Default)]
pub(super) struct Closer {
    closed: AtomicBool,
    notify: Notify,
}

impl Closer {
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

pub(super) struct NodeState {
    pub(super) node: Node,
    identity: LocalIdentity,
    tcp_listeners: Mutex<Vec<TcpListenerHandle>>,
    channels: Mutex<Vec<ChannelHandle>>,
    exposure: Mutex<Exposure>,
    pub(super) closer: Closer,
}

impl NodeState {
    fn check_open(&self) -> PyResult<()> {
        if self.closer.is_closed() {
            Err(to_py_err(NODE_CLOSED))
        } else {
            Ok(())
        }
    }

    pub(super) fn track(&self, channel: &ChannelHandle) {
        if let Ok(mut channels) = self.channels.lock() {
            channels.retain(|c| !c.is_closed());
            channels.push(channel.clone());
        }
    }

    /// Starts a service or mailbox at `address` (with `start`, given what it accepts): open to the channels
    /// of every listener of this node, now and later, limited to the trusted peers. Returns its id on the
    /// exposure list.
    fn expose<T>(
        &self,
        address: Address,
        trust: &Trust,
        start: impl FnOnce(Address, Accepts) -> Result<T, RuntimeError>,
    ) -> PyResult<(u64, T)> {
        // Held while registering, so a listener starting meanwhile either is in `listener_flows` already or
        // finds this service on the list.
        let mut exposure = self.exposure.lock().map_err(poisoned)?;
        let started =
            start(address.clone(), trust.accepts(&exposure.listener_flows)).into_py_result()?;
        exposure.next_id += 1;
        let id = exposure.next_id;
        exposure.services.push((id, address));
        Ok((id, started))
    }

    /// Registers a mailbox as a service of this node (see [`NodeState::expose`]).
    fn service_mailbox(
        self: &Arc<Self>,
        address: Address,
        trust: &Trust,
    ) -> PyResult<ServiceMailbox> {
        let node = &self.node;
        let (id, mailbox) = self.expose(address, trust, |address, accepts| {
            node.register_with(address, DEFAULT_MAILBOX, accepts)
        })?;
        Ok(ServiceMailbox {
            state: self.clone(),
            id,
            mailbox,
        })
    }

    /// Starts a channel listener and opens every service and mailbox of the node to its channels.
    fn add_listener(
        &self,
        address: Address,
        options: ChannelOptions,
    ) -> PyResult<latchkey_runtime::ListenerHandle> {
        let mut exposure = self.exposure.lock().map_err(poisoned)?;
        let handle =
            create_listener(&self.node, &self.identity, address, options).into_py_result()?;
        exposure.listener_flows.push(handle.flow);
        // A service whose address is gone (its mailbox was dropped without taking itself off) is skipped.
        let node = &self.node;
        exposure
            .services
            .retain(|(_, service)| node.allow(service, handle.flow).is_ok());
        Ok(handle)
    }
}

/// A runtime node with its own identity: hosts services and mailboxes, listens on and connects over TCP,
/// and carries messages through secure channels. Use it as `async with latchkey.Node() as node:`.
#[pyclass(name = "Node", module = "latchkey", frozen)]
pub(crate) struct PyNode {
    state: Arc<NodeState>,
}

#[pymethods]
impl PyNode {
    /// A node named `name`. Without `identity` it gets a fresh identity for this run; with it, the identity
    /// of that name from the store in `home` (default `$LATCHKEY_HOME`, else `~/.latchkey`, the CLI's store),
    /// created there first when `create` is true.
    #[new]
    #[pyo3(signature = (name = "python", *, identity = None, home = None, create = false))]
    fn new(
        py: Python<'_>,
        name: &str,
        identity: Option<String>,
        home: Option<PathBuf>,
        create: bool,
    ) -> PyResult<Self> {
        let local = match identity {
            None => LocalIdentity::create().into_py_result()?,
            Some(identity) => py
                .detach(|| stored_identity(&identity, home, create))
                .into_py_result()?,
        };
        Ok(PyNode {
            state: Arc::new(NodeState {
                node: Node::new(name),
                identity: local,
                tcp_listeners: Mutex::new(vec![]),
                channels: Mutex::new(vec![]),
                exposure: Mutex::new(Exposure::default()),
                closer: Closer::default(),
            }),
        })
    }

    #[getter]
    fn name(&self) -> String {
        self.state.node.name().to_string()
    }

    /// This node's identifier (`lk…`), what peers see and trust.
    #[getter]
    fn identifier(&self) -> String {
        self.state.identity.identifier().to_string()
    }

    #[getter]
    fn is_closed(&self) -> bool {
        self.state.closer.is_closed()
    }

    /// Accepts TCP connections on `address`; returns the bound `host:port`.
    #[pyo3(signature = (address = "127.0.0.1:0"))]
    fn listen_tcp<'py>(&self, py: Python<'py>, address: &str) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state.clone();
        let address = address.to_owned();
        crate::aio::spawn(py, async move {
            state.check_open()?;
            let handle = tcp::listen(&state.node, &address, TcpOptions::default())
                .await
                .into_py_result()?;
            let bound = handle.local_addr.to_string();
            if let Ok(mut listeners) = state.tcp_listeners.lock() {
                listeners.push(handle);
            }
            Ok(bound)
        })
    }

    /// Hosts an echo service at `address` for the channels of this node's listeners (now and later): only
    /// from the peers in `trusted`, or from any of them with `trust_any=True`. One of the two is required.
    #[pyo3(signature = (address = "echo", *, trusted = None, trust_any = false))]
    fn start_echo(
        &self,
        address: &str,
        trusted: Option<Vec<String>>,
        trust_any: bool,
    ) -> PyResult<()> {
        self.state.check_open()?;
        let trust = Trust::from_args(trusted, trust_any)?;
        let address = to_address(address)?;
        let _runtime = crate::aio::runtime().enter();
        let node = &self.state.node;
        self.state
            .expose(address, &trust, |address, accepts| {
                services::start_echo(node, address, accepts)
            })
            .map(|_| ())
    }

    /// Accepts secure channels at `address` (e.g. `"api"`) from the peers in `trusted`, or from any
    /// authenticated identity with `trust_any=True`. One of the two is required.
    #[pyo3(signature = (address = "api", *, trusted = None, trust_any = false))]
    fn listen(
        &self,
        address: &str,
        trusted: Option<Vec<String>>,
        trust_any: bool,
    ) -> PyResult<PyChannelListener> {
        self.state.check_open()?;
        let options = Trust::from_args(trusted, trust_any)?.channel_options();
        let _runtime = crate::aio::runtime().enter();
        let handle = self.state.add_listener(to_address(address)?, options)?;
        Ok(PyChannelListener {
            address: address.to_owned(),
            state: self.state.clone(),
            handle: Arc::new(tokio::sync::Mutex::new(handle)),
            closer: Arc::new(Closer::default()),
        })
    }

    /// Connects over TCP to `address` (`host:port`) and opens a secure channel to the listener `service` on
    /// that node. The peer must be one of `trusted` (`UntrustedPeer` otherwise), or any authenticated
    /// identity with `trust_any=True`. One of the two is required.
    #[pyo3(signature = (address, *, service = "api", trusted = None, trust_any = false))]
    fn connect<'py>(
        &self,
        py: Python<'py>,
        address: String,
        service: &str,
        trusted: Option<Vec<String>>,
        trust_any: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let options = Trust::from_args(trusted, trust_any)?.channel_options();
        let service = to_address(service)?;
        let state = self.state.clone();
        crate::aio::spawn(py, async move {
            state.check_open()?;
            let transport = tcp::connect(&state.node, &address, TcpOptions::default())
                .await
                .into_py_result()?;
            let route = Route::from_addresses([transport, service]);
            let channel = create_channel(&state.node, &state.identity, route, options)
                .await
                .into_py_result()?;
            state.track(&channel);
            Ok(PyNodeChannel::new(state.clone(), channel))
        })
    }

    /// A mailbox at `address` on this node: `async for message in mailbox`. Besides local senders it
    /// receives messages out of the channels of this node's listeners (now and later), only from the peers
    /// in `trusted` (`trusted=[]`: local senders only), or from any of them with `trust_any=True`; one of the
    /// two is required. Never raw transport messages. `NodeChannel.send(..., reply_to=mailbox)` also opens
    /// it to that channel's replies.
    #[pyo3(signature = (address, *, trusted = None, trust_any = false))]
    fn mailbox(
        &self,
        address: String,
        trusted: Option<Vec<String>>,
        trust_any: bool,
    ) -> PyResult<PyMailbox> {
        self.state.check_open()?;
        let trust = Trust::from_args(trusted, trust_any)?;
        let mailbox = self.state.service_mailbox(to_address(&address)?, &trust)?;
        Ok(PyMailbox::new(self.state.clone(), mailbox))
    }

    /// How many messages the flow rules have refused on this node (e.g. raw transport messages addressed to
    /// a service, or channel messages from a peer a service does not trust).
    #[getter]
    fn denied_count(&self) -> u64 {
        self.state.node.denied_count()
    }

    /// Stops the TCP listeners and closes every channel this node opened. Idempotent.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state.clone();
        crate::aio::spawn(py, async move {
            state.closer.close();
            let listeners = std::mem::take(&mut *state.tcp_listeners.lock().map_err(poisoned)?);
            for listener in listeners {
                listener.stop();
            }
            let channels = std::mem::take(&mut *state.channels.lock().map_err(poisoned)?);
            for channel in channels {
                channel.close().await;
            }
            Ok(())
        })
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let node: Py<Self> = slf.unbind();
        crate::aio::spawn(py, async move { Ok(node) })
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.close(py)
    }

    fn __repr__(&self) -> String {
        format!(
            "<latchkey.Node {:?} {}>",
            self.state.node.name(),
            self.state.identity.identifier()
        )
    }
}

fn poisoned<T>(_: T) -> PyErr {
    to_py_err(Error::InvalidState("node lock poisoned"))
}

pub(super) async fn wait_closed(closer: &Closer) {
    loop {
        let notified = closer.notify.notified();
        if closer.is_closed() {
            return;
        }
        notified.await;
    }
}
