//! `SecureChannel`: a sans-IO handshake that turns into an encrypted channel, over the facade's
//! `HandshakeSession` and `Channel`. The caller moves the bytes; this type never touches a socket.

#[cfg(feature = "test-vectors")]
use crate::convert::secret32;
use crate::convert::{Bytes, PyCipherSuite, DETACH_THRESHOLD};
use crate::errors::{error, IntoPyResult};
use crate::identity::PyIdentity;
use crate::trust;
use latchkey_facade::{Channel, Error, ErrorCode, HandshakeSession, Role, Trust};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::sync::{Mutex, MutexGuard};

// One per channel, inside its Python object: boxing a variant would only add an indirection per call.
#[allow(clippy::large_enum_variant)]
enum State {
    Handshaking(HandshakeSession),
    Open(Channel),
    Closed,
}

fn invalid_state(message: &str) -> PyErr {
    error(ErrorCode::InvalidState, message)
}

fn closed() -> PyErr {
    invalid_state("channel is closed")
}

/// One end of a secure channel. Created with `initiator()` or `responder()`, driven through the handshake by
/// `handshake_step()`, then used with `encrypt()` / `decrypt()`. Closing (or leaving a `with` block) wipes
/// the channel's keys from memory (the expanded AEAD keys and the handshake's ephemeral key; the few
/// transient copies that are not wiped are listed in docs/SECURITY.md, "Key erasure"); any later use raises
/// `InvalidState`.
#[pyclass(name = "SecureChannel", module = "latchkey", frozen)]
pub(crate) struct PySecureChannel {
    // A lock rather than `&mut self`: methods may run with the GIL released, and a second thread must wait
    // for the first instead of failing with a borrow error.
    state: Mutex<State>,
    suite: PyCipherSuite,
    role: Role,
}

impl PySecureChannel {
    fn start(
        identity: &PyIdentity,
        role: Role,
        suite: PyCipherSuite,
        trust: Trust,
        now: Option<u64>,
    ) -> PyResult<Self> {
        let session = HandshakeSession::new(&identity.inner, role, suite.into(), &trust, now)
            .into_py_result()?;
        Ok(PySecureChannel {
            state: Mutex::new(State::Handshaking(session)),
            suite,
            role,
        })
    }

    fn lock(&self) -> PyResult<MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| invalid_state("channel lock poisoned"))
    }

    fn with_open<T>(&self, f: impl FnOnce(&mut Channel) -> Result<T, Error>) -> PyResult<T> {
        match &mut *self.lock()? {
            State::Open(channel) => f(channel).into_py_result(),
            State::Handshaking(_) => Err(invalid_state("handshake not finished")),
            State::Closed => Err(closed()),
        }
    }

    /// Runs `f` on the open channel, with the GIL released when the input is large.
    fn crypt<'py>(
        &self,
        py: Python<'py>,
        input: &[u8],
        f: impl FnOnce(&mut Channel, &[u8]) -> Result<Vec<u8>, Error> + Send,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let output = if input.len() >= DETACH_THRESHOLD {
            py.detach(|| self.with_open(|channel| f(channel, input)))?
        } else {
            self.with_open(|channel| f(channel, input))?
        };
        Ok(PyBytes::new(py, &output))
    }
}

#[pymethods]
impl PySecureChannel {
    /// Starts a handshake as the initiator (the side that sends the first message). The peer must be one of
    /// `trusted` (`UntrustedPeer` otherwise), or any peer that proves an identity with `trust_any=True`
    /// (check `peer_identifier` yourself). One of the two is required: neither raises `Insecure`.
    #[staticmethod]
    #[pyo3(signature = (identity, *, suite = PyCipherSuite::ChaChaPoly, trusted = None, trust_any = false, now = None))]
    fn initiator(
        identity: &PyIdentity,
        suite: PyCipherSuite,
        trusted: Option<Vec<String>>,
        trust_any: bool,
        now: Option<u64>,
    ) -> PyResult<Self> {
        let trust = trust::from_args(trusted, trust_any)?;
        Self::start(identity, Role::Initiator, suite, trust, now)
    }

    /// Starts a handshake as the responder (the side that receives the first message). Trust as in
    /// `initiator`: `trusted=[...]` or `trust_any=True`, one of the two.
    #[staticmethod]
    #[pyo3(signature = (identity, *, suite = PyCipherSuite::ChaChaPoly, trusted = None, trust_any = false, now = None))]
    fn responder(
        identity: &PyIdentity,
        suite: PyCipherSuite,
        trusted: Option<Vec<String>>,
        trust_any: bool,
        now: Option<u64>,
    ) -> PyResult<Self> {
        let trust = trust::from_args(trusted, trust_any)?;
        Self::start(identity, Role::Responder, suite, trust, now)
    }

    /// Uses a fixed ephemeral key. Only for reproducing test vectors: it destroys forward secrecy. Only in a
    /// build with the `test-vectors` feature (the test suite's own build); the published wheel lacks it.
    #[cfg(feature = "test-vectors")]
    fn set_ephemeral_for_test_vectors(&self, secret: Bytes) -> PyResult<()> {
        let secret = secret32("secret", &secret)?;
        match &mut *self.lock()? {
            State::Handshaking(session) => session
                .set_ephemeral_for_test_vectors(&secret)
                .into_py_result(),
            State::Open(_) => Err(invalid_state("handshake already finished")),
            State::Closed => Err(closed()),
        }
    }

    /// Feeds the peer's handshake message (`None` for the initiator's first call) and returns the message to
    /// send, or `None` when there is nothing to send. Initiator: `step(None) -> m1`, `step(m2) -> m3`.
    /// Responder: `step(m1) -> m2`, `step(m3) -> None`. The channel is open once `is_finished` is true.
    #[pyo3(signature = (message))]
    fn handshake_step<'py>(
        &self,
        py: Python<'py>,
        message: Option<Bytes>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        // Handshake messages cost several Diffie-Hellman operations and signatures: always release the GIL.
        let reply = py.detach(|| -> PyResult<Option<Vec<u8>>> {
            let mut state = self.lock()?;
            let session = match &mut *state {
                State::Handshaking(session) => session,
                State::Open(_) => return Err(invalid_state("handshake already finished")),
                State::Closed => return Err(closed()),
            };
            let reply = session.step(message.as_deref()).into_py_result()?;
            if session.is_finished() {
                let channel = session.into_channel().into_py_result()?;
                *state = State::Open(channel);
            }
            Ok(reply)
        })?;
        Ok(reply.map(|r| PyBytes::new(py, &r)))
    }

    /// True once the handshake completed and the channel can encrypt and decrypt.
    #[getter]
    fn is_finished(&self) -> PyResult<bool> {
        Ok(matches!(&*self.lock()?, State::Open(_)))
    }

    /// True after `close()`.
    #[getter]
    fn is_closed(&self) -> PyResult<bool> {
        Ok(matches!(&*self.lock()?, State::Closed))
    }

    /// `"initiator"` or `"responder"`.
    #[getter]
    fn role(&self) -> &'static str {
        match self.role {
            Role::Initiator => "initiator",
            Role::Responder => "responder",
        }
    }

    #[getter]
    fn suite(&self) -> PyCipherSuite {
        self.suite
    }

    /// The Noise handshake hash: during the handshake, the hash so far; afterwards identical on both sides
    /// and unique to this channel (useful for channel binding).
    #[getter]
    fn handshake_hash<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let hash = match &*self.lock()? {
            State::Handshaking(session) => session.handshake_hash().into_py_result()?,
            State::Open(channel) => channel.handshake_hash(),
            State::Closed => return Err(closed()),
        };
        Ok(PyBytes::new(py, &hash))
    }

    /// The identifier the peer proved in the handshake.
    #[getter]
    fn peer_identifier(&self) -> PyResult<String> {
        self.with_open(|channel| Ok(channel.peer_identifier()))
    }

    /// The peer's verified change history (bytes), e.g. to store and later check rotations against. Checked
    /// as presented in the handshake (docs/PROTOCOL.md 3.4): its first self-signature was not verified, so if
    /// the peer itself sent a bad one, `history_identifier` / `verify_history_update` refuse these bytes.
    #[getter]
    fn peer_history<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let history = self.with_open(|channel| Ok(channel.peer_history()))?;
        Ok(PyBytes::new(py, &history))
    }

    /// Opaque credentials the peer presented.
    #[getter]
    fn peer_credentials<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let credentials = self.with_open(|channel| Ok(channel.peer_credentials()))?;
        Ok(credentials.iter().map(|c| PyBytes::new(py, c)).collect())
    }

    /// Encrypts one message into a transport frame (`len(plaintext) + FRAME_OVERHEAD` bytes).
    fn encrypt<'py>(&self, py: Python<'py>, plaintext: Bytes) -> PyResult<Bound<'py, PyBytes>> {
        self.crypt(py, &plaintext, |channel, input| channel.encrypt(input))
    }

    /// Authenticates and decrypts one transport frame. Frames may arrive out of order; a replayed or
    /// tampered frame raises and leaves the channel usable.
    fn decrypt<'py>(&self, py: Python<'py>, frame: Bytes) -> PyResult<Bound<'py, PyBytes>> {
        self.crypt(py, &frame, |channel, input| channel.decrypt(input))
    }

    /// Erases the channel's keys. Idempotent; any later use raises `InvalidState`.
    fn close(&self) -> PyResult<()> {
        *self.lock()? = State::Closed;
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        // Returning None lets an exception from the block propagate.
        self.close()
    }

    fn __repr__(&self) -> String {
        let state = match self.state.lock().as_deref() {
            Ok(State::Handshaking(_)) => "handshaking".to_string(),
            Ok(State::Open(channel)) => format!("open with {}", channel.peer_identifier()),
            Ok(State::Closed) => "closed".to_string(),
            Err(_) => "poisoned".to_string(),
        };
        format!("<latchkey.SecureChannel {} {state}>", self.role())
    }
}
