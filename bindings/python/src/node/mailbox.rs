//! `Mailbox` (a queue on the node, iterated with `async for`) and the `NodeMessage`s it yields.

use crate::aio::{self, PyCoroutine};
use crate::convert::Bytes;
use latchkey_facade::{Mailbox, MessageOrigin, ReceivedMessage};
use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::IntoPyObjectExt;
use std::sync::Arc;

/// A message received in a mailbox.
#[pyclass(name = "NodeMessage", module = "latchkey", frozen)]
pub(crate) struct PyNodeMessage {
    mailbox: Arc<Mailbox>,
    message: Arc<ReceivedMessage>,
}

fn origin_name(origin: &MessageOrigin) -> &'static str {
    match origin {
        MessageOrigin::Local => "local",
        MessageOrigin::Transport => "transport",
        MessageOrigin::Channel { .. } => "channel",
    }
}

#[pymethods]
impl PyNodeMessage {
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.message.payload())
    }

    /// The identifier of the peer that authenticated the secure channel it came out of; `None` when it did
    /// not come out of a secure channel (see `origin`).
    #[getter]
    fn peer_identifier(&self) -> Option<String> {
        self.message.peer_identifier()
    }

    /// Where it came from, as the node recorded it on arrival (never from anything in the message):
    /// `"channel"` (out of a secure channel, `peer_identifier` proved), `"transport"` (straight off a
    /// network connection, unauthenticated) or `"local"` (sent on this node).
    #[getter]
    fn origin(&self) -> &'static str {
        origin_name(&self.message.origin())
    }

    /// Sends `payload` back the way the message came (through the channel it came out of); raises
    /// `MalformedMessage` if its return route does not lead back there.
    fn reply(&self, payload: Bytes) -> PyCoroutine {
        let (mailbox, message) = (self.mailbox.clone(), self.message.clone());
        let payload = payload.to_vec();
        aio::coroutine_none("NodeMessage.reply", async move {
            mailbox.reply(message, payload).await
        })
    }

    fn __repr__(&self) -> String {
        let length = self.message.payload().len();
        match self.message.origin() {
            MessageOrigin::Channel { peer_identifier } => {
                format!(
                    "<latchkey.NodeMessage {length} bytes out of a channel with {peer_identifier}>"
                )
            }
            other => format!(
                "<latchkey.NodeMessage {length} bytes from a {} sender>",
                origin_name(&other)
            ),
        }
    }
}

/// A queue on the node: `async for message in mailbox`, until `close()`.
#[pyclass(name = "Mailbox", module = "latchkey", frozen)]
pub(crate) struct PyMailbox {
    pub(super) inner: Arc<Mailbox>,
}

impl PyMailbox {
    pub(super) fn new(inner: Arc<Mailbox>) -> Self {
        PyMailbox { inner }
    }

    /// The next message; `end` says what the end (mailbox or node closed) becomes.
    fn next(&self, name: &'static str, end: fn(Python<'_>) -> PyResult<Py<PyAny>>) -> PyCoroutine {
        let mailbox = self.inner.clone();
        aio::coroutine_with(
            name,
            mailbox.clone().recv(),
            move |py, received| match received.map_err(crate::errors::to_py_err)? {
                Some(message) => PyNodeMessage { mailbox, message }.into_py_any(py),
                None => end(py),
            },
        )
    }
}

#[pymethods]
impl PyMailbox {
    #[getter]
    fn address(&self) -> String {
        self.inner.address()
    }

    /// The next message, or `None` once the mailbox or its node is closed.
    fn recv(&self) -> PyCoroutine {
        self.next("Mailbox.recv", |py| Ok(py.None()))
    }

    /// Frees the address; pending and future `recv` calls return `None`. Idempotent.
    fn close(&self) {
        self.inner.close();
    }

    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__(&self) -> PyCoroutine {
        self.next("Mailbox.__anext__", |_| {
            Err(PyStopAsyncIteration::new_err(()))
        })
    }

    fn __repr__(&self) -> String {
        format!("<latchkey.Mailbox {}>", self.inner.address())
    }
}
