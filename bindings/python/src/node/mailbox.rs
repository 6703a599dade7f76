//! `Mailbox` (a worker's queue on the node, iterated with `async for`) and the `NodeMessage`s it yields.

use super::{wait_closed, Closer, NodeState};
use crate::errors::IntoPyResult;
use latchkey_runtime::{Address, Mailbox, Message, Node, Route};
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
    pub(super) address: Address,
    state: Arc<NodeState>,
    mailbox: Arc<tokio::sync::Mutex<Option<Mailbox>>>,
    closer: Arc<Closer>,
}

impl PyMailbox {
    pub(super) fn new(state: Arc<NodeState>, mailbox: Mailbox) -> Self {
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
