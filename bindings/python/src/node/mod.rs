//! The runtime `Node` for asyncio: each async method runs its Rust future on the shared tokio runtime (no
//! GIL held while it waits on the network or does crypto) and hands Python an awaitable (see `aio`).

use crate::errors::{to_py_err, IntoPyResult};
use latchkey_core::channel::{TrustAnyIdentity, TrustIdentifiers, TrustPolicy};
use latchkey_core::identity::Identifier;
use latchkey_facade::Error;
use latchkey_runtime::storage::{default_home, Store};
use latchkey_runtime::transport::tcp::{self, TcpListenerHandle, TcpOptions};
use latchkey_runtime::{
    create_channel, create_listener, services, Access, Address, ChannelHandle, ChannelOptions,
    LocalIdentity, Node, Route, RuntimeError,
};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

mod channel;
mod mailbox;

pub(crate) use channel::{PyChannelListener, PyNodeChannel};
pub(crate) use mailbox::{PyMailbox, PyNodeMessage};

const NODE_CLOSED: Error = Error::InvalidState("node is closed");

fn parse_trusted(trusted: &Option<Vec<String>>) -> PyResult<Option<Vec<Identifier>>> {
    trusted
        .as_ref()
        .map(|list| {
            list.iter()
                .map(|s| Identifier::from_str(s))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .into_py_result()
}

fn channel_options(trusted: &Option<Vec<String>>) -> PyResult<ChannelOptions> {
    let trust: Arc<dyn TrustPolicy> = match parse_trusted(trusted)? {
        Some(ids) => Arc::new(TrustIdentifiers::new(ids)),
        None => Arc::new(TrustAnyIdentity),
    };
    Ok(ChannelOptions::default().with_trust(trust))
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
    Address::new(name).into_py_result()
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

    /// Hosts an echo service at `address`; `trusted` limits it to channels from these identifiers.
    #[pyo3(signature = (address = "echo", *, trusted = None))]
    fn start_echo(&self, address: &str, trusted: Option<Vec<String>>) -> PyResult<()> {
        self.state.check_open()?;
        let access = match parse_trusted(&trusted)? {
            Some(ids) => Access::identifiers(ids),
            None => Access::Any,
        };
        let _runtime = crate::aio::runtime().enter();
        services::start_echo(&self.state.node, to_address(address)?, access).into_py_result()
    }

    /// Accepts secure channels at `address` (e.g. `"api"`) from peers in `trusted` (default: any identity).
    #[pyo3(signature = (address = "api", *, trusted = None))]
    fn listen(&self, address: &str, trusted: Option<Vec<String>>) -> PyResult<PyChannelListener> {
        self.state.check_open()?;
        let options = channel_options(&trusted)?;
        let _runtime = crate::aio::runtime().enter();
        let handle = create_listener(
            &self.state.node,
            &self.state.identity,
            to_address(address)?,
            options,
        )
        .into_py_result()?;
        Ok(PyChannelListener {
            address: address.to_owned(),
            state: self.state.clone(),
            handle: Arc::new(tokio::sync::Mutex::new(handle)),
            closer: Arc::new(Closer::default()),
        })
    }

    /// Connects over TCP to `address` (`host:port`) and opens a secure channel to the listener `service` on
    /// that node. Raises `UntrustedPeer` when `trusted` is given and the peer is not in it.
    #[pyo3(signature = (address, *, service = "api", trusted = None))]
    fn connect<'py>(
        &self,
        py: Python<'py>,
        address: String,
        service: &str,
        trusted: Option<Vec<String>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let options = channel_options(&trusted)?;
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

    /// A mailbox at `address` on this node: `async for message in mailbox`.
    fn mailbox(&self, address: String) -> PyResult<PyMailbox> {
        self.state.check_open()?;
        let mailbox = self
            .state
            .node
            .register(to_address(&address)?)
            .into_py_result()?;
        Ok(PyMailbox::new(self.state.clone(), mailbox))
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
