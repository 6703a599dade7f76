//! The runtime `Node` for asyncio: each async method runs its Rust future on the shared tokio runtime (no
//! GIL held while it waits on the network or does crypto) and hands Python an awaitable (see `aio`).

use crate::errors::{to_py_err, IntoPyResult};
use latchkey_core::channel::{TrustAnyIdentity, TrustIdentifiers, TrustPolicy};
use latchkey_core::identity::Identifier;
use latchkey_facade::Error;
use latchkey_runtime::transport::tcp::{self, TcpListenerHandle, TcpOptions};
use latchkey_runtime::{
    create_channel, create_listener, services, Access, Address, ChannelHandle, ChannelOptions,
    ListenerHandle, LocalIdentity, Mailbox, Message, Node, Route,
};
use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyTuple};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How long `NodeChannel.close()` waits for the channel's worker to stop.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

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

fn to_address(name: &str) -> PyResult<Address> {
    Address::new(name).into_py_result()
}

/// A close signal that wakes whoever is waiting in `recv`/`accepted`, now or later.
#[derive(Default)]
struct Closer {
    closed: AtomicBool,
    notify: Notify,
}

impl Closer {
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

struct NodeState {
    node: Node,
    identity: LocalIdentity,
    tcp_listeners: Mutex<Vec<TcpListenerHandle>>,
    channels: Mutex<Vec<ChannelHandle>>,
    closer: Closer,
}

impl NodeState {
    fn check_open(&self) -> PyResult<()> {
        if self.closer.is_closed() {
            Err(to_py_err(NODE_CLOSED))
        } else {
            Ok(())
        }
    }

    fn track(&self, channel: &ChannelHandle) {
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
    #[new]
    #[pyo3(signature = (name = "python"))]
    fn new(name: &str) -> PyResult<Self> {
        let identity = LocalIdentity::create().into_py_result()?;
        Ok(PyNode {
            state: Arc::new(NodeState {
                node: Node::new(name),
                identity,
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

/// A secure channel between two nodes, carrying messages to services on the far side.
#[pyclass(name = "NodeChannel", module = "latchkey", frozen)]
pub(crate) struct PyNodeChannel {
    state: Arc<NodeState>,
    channel: ChannelHandle,
}

impl PyNodeChannel {
    fn new(state: Arc<NodeState>, channel: ChannelHandle) -> Self {
        PyNodeChannel { state, channel }
    }
}

#[pymethods]
impl PyNodeChannel {
    /// The identifier the peer proved in the handshake.
    #[getter]
    fn peer_identifier(&self) -> String {
        self.channel.peer().to_string()
    }

    /// This end's address on the local node.
    #[getter]
    fn address(&self) -> String {
        self.channel.address().to_string()
    }

    #[getter]
    fn is_closed(&self) -> bool {
        self.channel.is_closed()
    }

    /// Sends `payload` to `service` on the far side and waits for its acknowledgement (delivered once, or an
    /// exception). Replies, if any, go to `reply_to` (a mailbox on this node).
    #[pyo3(signature = (service, payload, *, reply_to = None))]
    fn send<'py>(
        &self,
        py: Python<'py>,
        service: String,
        payload: PyBackedBytes,
        reply_to: Option<PyRef<'py, PyMailbox>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let onward = Route::from_addresses([to_address(&service)?]);
        let ret = match reply_to {
            Some(mailbox) => Route::from_addresses([mailbox.address.clone()]),
            None => Route::new(),
        };
        let channel = self.channel.clone();
        let payload = payload.to_vec();
        crate::aio::spawn(py, async move {
            channel
                .send_confirmed(onward, ret, payload)
                .await
                .into_py_result()
        })
    }

    /// Sends `payload` to `service` on the far side and returns its first reply (`Timeout` after `timeout`
    /// seconds).
    #[pyo3(signature = (service, payload, *, timeout = 10.0))]
    fn request<'py>(
        &self,
        py: Python<'py>,
        service: String,
        payload: PyBackedBytes,
        timeout: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let onward = Route::from_addresses([to_address(&service)?]);
        let wait = Duration::try_from_secs_f64(timeout).map_err(|_| {
            pyo3::exceptions::PyValueError::new_err(
                "timeout must be a non-negative number of seconds",
            )
        })?;
        let channel = self.channel.clone();
        let node = self.state.node.clone();
        let payload = payload.to_vec();
        crate::aio::spawn(py, async move {
            let mut inbox = node
                .register(node.unique_address("py-reply"))
                .into_py_result()?;
            let ret = Route::from_addresses([inbox.address().clone()]);
            channel
                .send_confirmed(onward, ret, payload)
                .await
                .into_py_result()?;
            let reply = tokio::time::timeout(wait, inbox.recv())
                .await
                .map_err(|_| {
                    crate::errors::runtime_to_py_err(latchkey_runtime::RuntimeError::Timeout(
                        "no reply",
                    ))
                })?
                .ok_or_else(|| {
                    crate::errors::runtime_to_py_err(latchkey_runtime::RuntimeError::ChannelClosed)
                })?;
            Ok(reply.payload)
        })
    }

    /// Closes this end of the channel and waits until it is closed; later sends raise `ChannelClosed`.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let channel = self.channel.clone();
        crate::aio::spawn(py, async move {
            channel.close().await;
            // The runtime's close only queues the command; its worker marks the channel closed when it
            // stops. Wait for that (bounded) so `is_closed` is true when `await close()` returns.
            let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
            while !channel.is_closed() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Ok(())
        })
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let channel: Py<Self> = slf.unbind();
        crate::aio::spawn(py, async move { Ok(channel) })
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
        format!("<latchkey.NodeChannel with {}>", self.channel.peer())
    }
}

/// Accepts secure channels: `async for channel in listener`.
#[pyclass(name = "ChannelListener", module = "latchkey", frozen)]
pub(crate) struct PyChannelListener {
    address: String,
    state: Arc<NodeState>,
    handle: Arc<tokio::sync::Mutex<ListenerHandle>>,
    closer: Arc<Closer>,
}

#[pymethods]
impl PyChannelListener {
    #[getter]
    fn address(&self) -> String {
        self.address.clone()
    }

    /// The next accepted channel, or `None` once the listener or its node is closed.
    fn accept<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (handle, closer, state) =
            (self.handle.clone(), self.closer.clone(), self.state.clone());
        crate::aio::spawn(py, async move {
            Ok(next_channel(&handle, &closer, &state)
                .await
                .map(|c| PyNodeChannel::new(state.clone(), c)))
        })
    }

    /// Stops handing out channels (those already accepted keep working). Idempotent.
    fn close(&self) {
        self.closer.close();
    }

    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (handle, closer, state) =
            (self.handle.clone(), self.closer.clone(), self.state.clone());
        crate::aio::spawn(py, async move {
            match next_channel(&handle, &closer, &state).await {
                Some(c) => Ok(PyNodeChannel::new(state.clone(), c)),
                None => Err(PyStopAsyncIteration::new_err(())),
            }
        })
    }
}

async fn next_channel(
    handle: &tokio::sync::Mutex<ListenerHandle>,
    closer: &Closer,
    state: &NodeState,
) -> Option<ChannelHandle> {
    let mut handle = handle.lock().await;
    let channel = tokio::select! {
        c = handle.accepted() => c,
        _ = wait_closed(closer) => None,
        _ = wait_closed(&state.closer) => None,
    }?;
    state.track(&channel);
    Some(channel)
}

async fn wait_closed(closer: &Closer) {
    loop {
        let notified = closer.notify.notified();
        if closer.is_closed() {
            return;
        }
        notified.await;
    }
}

/// A message received in a mailbox.
#[pyclass(name = "NodeMessage", module = "latchkey", frozen)]
pub(crate) struct PyNodeMessage {
    node: Node,
    message: Message,
}

#[pymethods]
impl PyNodeMessage {
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.message.payload)
    }

    /// The identifier of the secure-channel peer it came through, or `None` for a local, unauthenticated
    /// sender.
    #[getter]
    fn peer_identifier(&self) -> Option<String> {
        self.message.local.peer.map(|p| p.to_string())
    }

    /// Sends `payload` back along the message's return route.
    fn reply<'py>(&self, py: Python<'py>, payload: PyBackedBytes) -> PyResult<Bound<'py, PyAny>> {
        let reply = Message::new(self.message.ret.clone(), Route::new(), payload.to_vec());
        let node = self.node.clone();
        crate::aio::spawn(py, async move { node.send(reply).await.into_py_result() })
    }

    fn __repr__(&self) -> String {
        format!(
            "<latchkey.NodeMessage {} bytes from {}>",
            self.message.payload.len(),
            self.message
                .local
                .peer
                .map_or_else(|| "a local sender".to_string(), |p| p.to_string())
        )
    }
}

/// A worker's queue on the node: `async for message in mailbox`, until `close()`.
#[pyclass(name = "Mailbox", module = "latchkey", frozen)]
pub(crate) struct PyMailbox {
    address: Address,
    state: Arc<NodeState>,
    mailbox: Arc<tokio::sync::Mutex<Option<Mailbox>>>,
    closer: Arc<Closer>,
}

impl PyMailbox {
    fn new(state: Arc<NodeState>, mailbox: Mailbox) -> Self {
        PyMailbox {
            address: mailbox.address().clone(),
            state,
            mailbox: Arc::new(tokio::sync::Mutex::new(Some(mailbox))),
            closer: Arc::new(Closer::default()),
        }
    }

    fn next<'py>(
        &self,
        py: Python<'py>,
        end: fn() -> PyResult<Option<PyNodeMessage>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (mailbox, closer, state) = (
            self.mailbox.clone(),
            self.closer.clone(),
            self.state.clone(),
        );
        crate::aio::spawn(py, async move {
            let mut guard = mailbox.lock().await;
            let received = match guard.as_mut() {
                Some(mailbox) => tokio::select! {
                    m = mailbox.recv() => m,
                    _ = wait_closed(&closer) => None,
                    _ = wait_closed(&state.closer) => None,
                },
                None => None,
            };
            match received {
                Some(message) => Ok(Some(PyNodeMessage {
                    node: state.node.clone(),
                    message,
                })),
                None => {
                    // Closed: free the address now rather than when Python collects the object.
                    guard.take();
                    end()
                }
            }
        })
    }
}

#[pymethods]
impl PyMailbox {
    #[getter]
    fn address(&self) -> String {
        self.address.to_string()
    }

    /// The next message, or `None` once the mailbox or its node is closed.
    fn recv<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.next(py, || Ok(None))
    }

    /// Frees the address; pending and future `recv` calls return `None`. Idempotent.
    fn close(&self) {
        self.closer.close();
    }

    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.next(py, || Err(PyStopAsyncIteration::new_err(())))
    }

    fn __repr__(&self) -> String {
        format!("<latchkey.Mailbox {}>", self.address)
    }
}
