//! `NodeChannel` (a secure channel between two nodes) and `ChannelListener` (the channels a node accepts).

use super::{to_address, wait_closed, Closer, NodeState};
use crate::errors::IntoPyResult;
use latchkey_runtime::node::DEFAULT_MAILBOX;
use latchkey_runtime::{Accepts, ChannelHandle, ListenerHandle, Route};
use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyTuple;
use std::sync::Arc;
use std::time::Duration;

/// How long `NodeChannel.close()` waits for the channel's worker to stop.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A secure channel between two nodes, carrying messages to services on the far side.
#[pyclass(name = "NodeChannel", module = "latchkey", frozen)]
pub(crate) struct PyNodeChannel {
    state: Arc<NodeState>,
    channel: ChannelHandle,
}

impl PyNodeChannel {
    pub(super) fn new(state: Arc<NodeState>, channel: ChannelHandle) -> Self {
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
    /// exception). Replies, if any, go to `reply_to` (a mailbox on this node, which this opens to the
    /// replies out of this channel).
    #[pyo3(signature = (service, payload, *, reply_to = None))]
    fn send<'py>(
        &self,
        py: Python<'py>,
        service: String,
        payload: PyBackedBytes,
        reply_to: Option<PyRef<'py, super::PyMailbox>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let onward = Route::from_addresses([to_address(&service)?]);
        let ret = match reply_to {
            Some(mailbox) => {
                // The replies come out of this channel: open the mailbox to it (its own peer list, if
                // any, still applies). A closed mailbox's address may belong to someone else by now.
                if Arc::ptr_eq(&mailbox.state, &self.state) && !mailbox.closer.is_closed() {
                    let _ = self.state.node.allow(&mailbox.address, self.channel.flow());
                }
                Route::from_addresses([mailbox.address.clone()])
            }
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
            // Only the reply out of this channel, from its peer, may reach this mailbox.
            let accepts = Accepts::flow(channel.flow()).from_peers([channel.peer()]);
            let mut inbox = node
                .register_with(node.unique_address("py-reply"), DEFAULT_MAILBOX, accepts)
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
    pub(super) address: String,
    pub(super) state: Arc<NodeState>,
    pub(super) handle: Arc<tokio::sync::Mutex<ListenerHandle>>,
    pub(super) closer: Arc<Closer>,
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
