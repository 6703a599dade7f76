//! `Mailbox` (a worker's queue on the node, iterated with `async for`) and the `NodeMessage`s it yields.

use super::{wait_closed, Closer, NodeState, ServiceMailbox};
use crate::errors::IntoPyResult;
use latchkey_runtime::{Address, Message, Node, Origin, Route};
use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;
use std::sync::Arc;

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

    /// The identifier of the peer that authenticated the secure channel it came out of; `None` when it did
    /// not come out of a secure channel (see `origin`).
    #[getter]
    fn peer_identifier(&self) -> Option<String> {
        self.message.peer().map(|p| p.to_string())
    }

    /// Where it came from, as the node recorded it on arrival (never from anything in the message):
    /// `"channel"` (out of a secure channel, `peer_identifier` proved), `"transport"` (straight off a
    /// network connection, unauthenticated) or `"local"` (sent on this node).
    #[getter]
    fn origin(&self) -> &'static str {
        origin_name(self.message.origin())
    }

    /// Sends `payload` back the way the message came (through the channel it came out of); raises
    /// `MalformedMessage` if its return route does not lead back there.
    fn reply<'py>(&self, py: Python<'py>, payload: PyBackedBytes) -> PyResult<Bound<'py, PyAny>> {
        let reply = self
            .message
            .reply_to_origin(Route::new(), payload.to_vec())
            .into_py_result()?;
        let node = self.node.clone();
        crate::aio::spawn(py, async move { node.send(reply).await.into_py_result() })
    }

    fn __repr__(&self) -> String {
        let length = self.message.payload.len();
        match self.message.peer() {
            Some(peer) => {
                format!("<latchkey.NodeMessage {length} bytes out of a channel with {peer}>")
            }
            None => format!(
                "<latchkey.NodeMessage {length} bytes from a {} sender>",
                origin_name(self.message.origin())
            ),
        }
    }
}

fn origin_name(origin: &Origin) -> &'static str {
    match origin {
        Origin::Local { .. } => "local",
        Origin::Transport { .. } => "transport",
        Origin::Channel(_) => "channel",
    }
}

/// A worker's queue on the node: `async for message in mailbox`, until `close()`.
#[pyclass(name = "Mailbox", module = "latchkey", frozen)]
pub(crate) struct PyMailbox {
    pub(super) address: Address,
    pub(super) state: Arc<NodeState>,
    mailbox: Arc<tokio::sync::Mutex<Option<ServiceMailbox>>>,
    pub(super) closer: Arc<Closer>,
}

impl PyMailbox {
    pub(super) fn new(state: Arc<NodeState>, mailbox: ServiceMailbox) -> Self {
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
