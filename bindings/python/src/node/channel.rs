//! `NodeChannel` (a secure channel between two nodes) and `ChannelListener` (the channels a node accepts).

use super::PyMailbox;
use crate::aio::{self, PyCoroutine};
use crate::convert::{seconds, Bytes};
use latchkey_facade::{Listener, NodeChannel};
use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::IntoPyObjectExt;
use std::sync::Arc;

/// A secure channel between two nodes, carrying messages to services on the far side.
#[pyclass(name = "NodeChannel", module = "latchkey", frozen)]
pub(crate) struct PyNodeChannel {
    pub(super) inner: Arc<NodeChannel>,
}

impl PyNodeChannel {
    pub(super) fn new(inner: Arc<NodeChannel>) -> Self {
        PyNodeChannel { inner }
    }
}

#[pymethods]
impl PyNodeChannel {
    /// The identifier the peer proved in the handshake.
    #[getter]
    fn peer_identifier(&self) -> String {
        self.inner.peer_identifier()
    }

    /// This end's address on the local node.
    #[getter]
    fn address(&self) -> String {
        self.inner.address()
    }

    #[getter]
    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Sends `payload` to `service` on the far side and waits for its acknowledgement (delivered once, or an
    /// exception). Replies, if any, go to `reply_to` (a mailbox on this node, which this opens to the
    /// replies out of this channel).
    #[pyo3(signature = (service, payload, *, reply_to = None))]
    fn send(
        &self,
        service: String,
        payload: Bytes,
        reply_to: Option<PyRef<'_, PyMailbox>>,
    ) -> PyCoroutine {
        let channel = self.inner.clone();
        let reply_to = reply_to.map(|m| m.inner.clone());
        let payload = payload.to_vec();
        aio::coroutine_none("NodeChannel.send", async move {
            channel.send(service, payload, reply_to).await
        })
    }

    /// Sends `payload` to `service` on the far side and returns its first reply (`Timeout` after `timeout`
    /// seconds).
    #[pyo3(signature = (service, payload, *, timeout = 10.0))]
    fn request(&self, service: String, payload: Bytes, timeout: f64) -> PyResult<PyCoroutine> {
        let timeout = seconds("timeout", timeout)?;
        let channel = self.inner.clone();
        let payload = payload.to_vec();
        Ok(aio::coroutine_with(
            "NodeChannel.request",
            async move { channel.request(service, payload, timeout).await },
            |py, reply| {
                let reply = reply.map_err(crate::errors::to_py_err)?;
                Ok(pyo3::types::PyBytes::new(py, &reply).into_any().unbind())
            },
        ))
    }

    /// Closes this end of the channel (telling the far end) and returns once it has stopped; later sends
    /// raise `ChannelClosed`.
    fn close(&self) -> PyCoroutine {
        let channel = self.inner.clone();
        aio::coroutine_none("NodeChannel.close", async move { channel.close().await })
    }

    fn __aenter__(slf: Bound<'_, Self>) -> PyCoroutine {
        aio::ready("NodeChannel.__aenter__", slf.into_any().unbind())
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__(&self, _exc: &Bound<'_, PyTuple>) -> PyCoroutine {
        self.close()
    }

    fn __repr__(&self) -> String {
        format!(
            "<latchkey.NodeChannel with {}>",
            self.inner.peer_identifier()
        )
    }
}

/// Accepts secure channels: `async for channel in listener`.
#[pyclass(name = "ChannelListener", module = "latchkey", frozen)]
pub(crate) struct PyChannelListener {
    inner: Arc<Listener>,
}

impl PyChannelListener {
    pub(super) fn new(inner: Arc<Listener>) -> Self {
        PyChannelListener { inner }
    }

    /// The next accepted channel; `end` says what the end (listener or node closed) becomes.
    fn next(&self, name: &'static str, end: fn(Python<'_>) -> PyResult<Py<PyAny>>) -> PyCoroutine {
        let listener = self.inner.clone();
        aio::coroutine_with(name, listener.accept(), move |py, accepted| match accepted
            .map_err(crate::errors::to_py_err)?
        {
            Some(channel) => PyNodeChannel::new(channel).into_py_any(py),
            None => end(py),
        })
    }
}

#[pymethods]
impl PyChannelListener {
    #[getter]
    fn address(&self) -> String {
        self.inner.address()
    }

    /// The next accepted channel, or `None` once the listener or its node is closed.
    fn accept(&self) -> PyCoroutine {
        self.next("ChannelListener.accept", |py| Ok(py.None()))
    }

    /// Stops handing out channels (those already accepted keep working). Idempotent.
    fn close(&self) {
        self.inner.close();
    }

    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__(&self) -> PyCoroutine {
        self.next("ChannelListener.__anext__", |_| {
            Err(PyStopAsyncIteration::new_err(()))
        })
    }

    fn __repr__(&self) -> String {
        format!("<latchkey.ChannelListener {}>", self.inner.address())
    }
}
