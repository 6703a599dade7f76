//! `DeviceSession`: a device behind a relay, sans-IO, over the facade's `DeviceSession`. The Python program
//! owns the socket (or serial line) and the clock; the facade owns the routed channels, the relay
//! registration and the stream's framing. Also the routed-message codec (`encode_routed_message`,
//! `decode_routed_message`) for programs and tests that look at the stream's frames.

use crate::convert::Bytes;
use crate::errors::{error, IntoPyResult};
use crate::identity::PyIdentity;
use crate::trust;
use latchkey_facade::{DeviceEvent, DeviceMessage, DeviceOptions, DeviceSession, ErrorCode};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::sync::{Mutex, MutexGuard};

/// A device behind a relay over one byte stream (a TCP connection, a UART), driven with bytes and the
/// caller's clock: call `connected()` / `disconnected()` when the stream comes up or goes down, feed every
/// byte read to `receive()`, write everything `take_output()` returns, call `handle_timeout()` at
/// `next_timeout()`, and take `poll_event()` / `poll_message()` after each call. `reply()` answers a message
/// through the phone channel it came out of. Times are milliseconds on one monotonic clock of the caller's
/// choosing (e.g. ``int(time.monotonic() * 1000)``), never going back. Safe to share between threads (calls
/// are serialised); `connected`, `receive`, `handle_timeout` and `reply`, which may run handshakes and
/// encryption, release the GIL.
#[pyclass(name = "DeviceSession", module = "latchkey", frozen)]
pub(crate) struct PyDeviceSession {
    inner: Mutex<DeviceSession>,
}

impl PyDeviceSession {
    fn lock(&self) -> PyResult<MutexGuard<'_, DeviceSession>> {
        self.inner
            .lock()
            .map_err(|_| error(ErrorCode::InvalidState, "device lock poisoned"))
    }
}

#[pymethods]
impl PyDeviceSession {
    /// A device acting as `identity` that registers as `name` (1..=200 bytes of UTF-8) at a relay. Whom it
    /// accepts as the relay: `relay_trusted=[identifiers]` or an explicit `relay_trust_any=True`; as phones:
    /// `trusted=[...]` or `trust_any=True` (neither raises `Insecure`). `services` are the service names phones
    /// may send to; messages to anything else are dropped. `now_ms` is the caller's monotonic clock now;
    /// `unix_now` the Unix time in seconds at that moment (`None`: the system clock), used to check validity
    /// periods during handshakes. `refresh_ms`: how often the registration is refreshed (at least 100);
    /// `max_phones`: phone channels at once (at least 1). Nothing is sent before `connected()`.
    #[new]
    #[pyo3(signature = (identity, name, *, now_ms, relay_trusted = None, relay_trust_any = false,
        trusted = None, trust_any = false, services = Vec::new(), unix_now = None, refresh_ms = 5000,
        max_phones = 8))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        identity: &PyIdentity,
        name: String,
        now_ms: u64,
        relay_trusted: Option<Vec<String>>,
        relay_trust_any: bool,
        trusted: Option<Vec<String>>,
        trust_any: bool,
        services: Vec<String>,
        unix_now: Option<u64>,
        refresh_ms: u64,
        max_phones: usize,
    ) -> PyResult<Self> {
        let relay_trust = trust::from_named_args(
            relay_trusted,
            relay_trust_any,
            "relay_trusted",
            "relay_trust_any",
        )?;
        let trust = trust::from_args(trusted, trust_any)?;
        let mut options = DeviceOptions::new(name, relay_trust, trust);
        options.services = services;
        options.unix_now = unix_now;
        options.refresh_ms = refresh_ms;
        options.max_phones = max_phones;
        let inner = DeviceSession::new(&identity.inner, options, now_ms).into_py_result()?;
        Ok(PyDeviceSession {
            inner: Mutex::new(inner),
        })
    }

    /// This device's identifier (``lk...``).
    #[getter]
    fn identifier(&self) -> PyResult<String> {
        Ok(self.lock()?.identifier())
    }

    /// Whether the relay has accepted the name on the current relay channel.
    #[getter]
    fn is_registered(&self) -> PyResult<bool> {
        Ok(self.lock()?.is_registered())
    }

    /// Whether the stream is up (between `connected()` and `disconnected()`).
    #[getter]
    fn is_connected(&self) -> PyResult<bool> {
        Ok(self.lock()?.is_connected())
    }

    /// Phone channels established now.
    #[getter]
    fn phone_count(&self) -> PyResult<usize> {
        Ok(self.lock()?.phone_count())
    }

    /// Bytes waiting for `take_output()`.
    #[getter]
    fn output_len(&self) -> PyResult<usize> {
        Ok(self.lock()?.output_len())
    }

    /// The stream to the relay is up (a new connection): opens the relay channel, or, when one is up,
    /// refreshes the registration at once. Raises `InvalidState` when already connected.
    fn connected(&self, py: Python<'_>, now_ms: u64) -> PyResult<()> {
        py.detach(|| self.lock()?.connected(now_ms).into_py_result())
    }

    /// The stream went down: unread input and untaken output are discarded (the channels retransmit what
    /// mattered once connected again). Idempotent.
    fn disconnected(&self, now_ms: u64) -> PyResult<()> {
        self.lock()?.disconnected(now_ms);
        Ok(())
    }

    /// Feeds bytes read from the stream (any split: partial frames are kept). Raises `InvalidState` when not
    /// connected; `FrameTooLarge` or `MalformedMessage` mean the stream is broken: close the connection and
    /// call `disconnected()`. Frames that fail authentication are dropped and counted, not raised.
    fn receive(&self, py: Python<'_>, now_ms: u64, data: Bytes) -> PyResult<()> {
        let data: &[u8] = &data;
        py.detach(|| self.lock()?.handle_bytes(now_ms, data).into_py_result())
    }

    /// Takes the bytes to write to the stream, in order (at most `max_bytes`; all of them when `None`).
    /// They are gone from the device: write all of them before taking more, or drop the connection. Empty
    /// when nothing waits or the stream is down.
    #[pyo3(signature = (max_bytes = None))]
    fn take_output<'py>(
        &self,
        py: Python<'py>,
        max_bytes: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut device = self.lock()?;
        let n = max_bytes.map_or(device.output_len(), |m| m.min(device.output_len()));
        PyBytes::new_with(py, n, |buffer| {
            let taken = device.take_output(buffer);
            debug_assert_eq!(taken, n);
            Ok(())
        })
    }

    /// When `handle_timeout()` must next be called (milliseconds on the caller's clock; it may be in the
    /// past: call it at once), or `None` when only the stream can wake the device.
    fn next_timeout(&self) -> PyResult<Option<u64>> {
        Ok(self.lock()?.poll_timeout())
    }

    /// Runs what is due at `now_ms`: retransmissions, keepalives, the registration refresh, reopening the
    /// relay channel. Calling it early is harmless.
    fn handle_timeout(&self, py: Python<'_>, now_ms: u64) -> PyResult<()> {
        py.detach(|| {
            self.lock()?.handle_timeout(now_ms);
            Ok(())
        })
    }

    /// The next event, in order, or `None`.
    fn poll_event(&self) -> PyResult<Option<PyDeviceEvent>> {
        Ok(self.lock()?.poll_event().map(PyDeviceEvent::from))
    }

    /// The next message a phone sent to one of the services (in order per channel), or `None`. Taking one
    /// makes room for deliveries that waited.
    fn poll_message(&self) -> PyResult<Option<PyDeviceMessage>> {
        Ok(self
            .lock()?
            .poll_message()
            .map(|inner| PyDeviceMessage { inner }))
    }

    /// Answers `message` through the phone channel it came out of, reliably (retransmitted until
    /// acknowledged). Raises `ChannelClosed` when that channel is gone, `QueueFull` when its send window is
    /// full (try again after more input or a timeout), `MessageTooLarge` above the channel's payload limit,
    /// `InvalidArgument` when the sender wants no answer.
    fn reply(
        &self,
        py: Python<'_>,
        now_ms: u64,
        message: &PyDeviceMessage,
        payload: Bytes,
    ) -> PyResult<()> {
        let payload: &[u8] = &payload;
        py.detach(|| {
            self.lock()?
                .reply(now_ms, &message.inner, payload)
                .into_py_result()
        })
    }

    /// The device's counters: `frames_in`, `frames_out`, `bytes_in`, `bytes_out`, `frames_rejected`,
    /// `output_dropped`, `registrations`, `relay_channels`, `phone_channels`, `messages`, `resets_sent`,
    /// `handshakes_dropped`, `rekeys` (re-handshakes completed on the relay and phone channels).
    fn stats(&self) -> PyResult<std::collections::BTreeMap<&'static str, u64>> {
        let s = self.lock()?.stats();
        Ok([
            ("frames_in", s.frames_in),
            ("frames_out", s.frames_out),
            ("bytes_in", s.bytes_in),
            ("bytes_out", s.bytes_out),
            ("frames_rejected", s.frames_rejected),
            ("output_dropped", s.output_dropped),
            ("registrations", s.registrations),
            ("relay_channels", s.relay_channels),
            ("phone_channels", s.phone_channels),
            ("messages", s.messages),
            ("resets_sent", s.resets_sent),
            ("handshakes_dropped", s.handshakes_dropped),
            ("rekeys", s.rekeys),
        ]
        .into_iter()
        .collect())
    }

    fn __repr__(&self) -> PyResult<String> {
        let device = self.lock()?;
        Ok(format!(
            "DeviceSession(identifier={:?}, connected={}, registered={}, phones={})",
            device.identifier(),
            device.is_connected(),
            device.is_registered(),
            device.phone_count()
        ))
    }
}

/// Something that happened to a device (`DeviceSession.poll_event()`). `kind` is one of
/// ``"relay_connected"`` (detail: the relay's identifier), ``"registered"`` (the name), ``"registration_refused"``
/// (why), ``"relay_lost"`` (why; a new relay channel is opened on its own), ``"phone_connected"`` (the phone's
/// identifier) and ``"phone_closed"`` (why). `channel` is the phone channel's number (0 for the relay's events).
/// Details may be partly chosen by the remote party: print them, do not parse them.
#[pyclass(name = "DeviceEvent", module = "latchkey", frozen, get_all)]
pub(crate) struct PyDeviceEvent {
    kind: &'static str,
    channel: u64,
    detail: String,
}

impl From<DeviceEvent> for PyDeviceEvent {
    fn from(event: DeviceEvent) -> Self {
        let (kind, channel, detail) = match event {
            DeviceEvent::RelayConnected { relay } => ("relay_connected", 0, relay),
            DeviceEvent::Registered { name } => ("registered", 0, name),
            DeviceEvent::RegistrationRefused { reason } => ("registration_refused", 0, reason),
            DeviceEvent::RelayLost { reason } => ("relay_lost", 0, reason),
            DeviceEvent::PhoneConnected { channel, peer } => ("phone_connected", channel, peer),
            DeviceEvent::PhoneClosed { channel, reason } => ("phone_closed", channel, reason),
        };
        PyDeviceEvent {
            kind,
            channel,
            detail,
        }
    }
}

#[pymethods]
impl PyDeviceEvent {
    fn __repr__(&self) -> String {
        format!(
            "DeviceEvent(kind={:?}, channel={}, detail={:?})",
            self.kind, self.channel, self.detail
        )
    }
}

/// A message a phone sent to one of the device's services (`DeviceSession.poll_message()`); answer it with
/// `DeviceSession.reply()`. Independent of the device once taken.
#[pyclass(name = "DeviceMessage", module = "latchkey", frozen)]
pub(crate) struct PyDeviceMessage {
    inner: DeviceMessage,
}

#[pymethods]
impl PyDeviceMessage {
    /// The phone channel it came out of (as in the ``phone_*`` events).
    #[getter]
    fn channel(&self) -> u64 {
        self.inner.channel()
    }

    /// The sender's identifier, authenticated by the channel.
    #[getter]
    fn peer_identifier(&self) -> &str {
        self.inner.peer_identifier()
    }

    /// The service it was sent to.
    #[getter]
    fn service(&self) -> &str {
        self.inner.service()
    }

    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.payload())
    }

    fn __repr__(&self) -> String {
        // The payload is not printed: it may be a secret.
        format!(
            "DeviceMessage(channel={}, peer_identifier={:?}, service={:?}, payload_len={})",
            self.inner.channel(),
            self.inner.peer_identifier(),
            self.inner.service(),
            self.inner.payload().len()
        )
    }
}

/// Encodes a routed message (docs/RUNTIME.md: version, onward route, return route, payload; without the
/// stream's 4-byte length). Raises `InvalidArgument` for an empty address or one above 255 bytes, or a route
/// above 32 addresses.
#[pyfunction]
pub(crate) fn encode_routed_message<'py>(
    py: Python<'py>,
    onward: Vec<String>,
    ret: Vec<String>,
    payload: Bytes,
) -> PyResult<Bound<'py, PyBytes>> {
    let bytes = latchkey_facade::encode_routed_message(&onward, &ret, &payload).into_py_result()?;
    Ok(PyBytes::new(py, &bytes))
}

/// Decodes one routed message (without the stream's 4-byte length) into ``(onward, ret, payload)``. Raises
/// `DecodeError` for an unknown version, a route above 32 addresses, an empty or non-UTF-8 address, or bytes
/// that end inside a route.
#[pyfunction]
pub(crate) fn decode_routed_message<'py>(
    py: Python<'py>,
    data: Bytes,
) -> PyResult<(Vec<String>, Vec<String>, Bound<'py, PyBytes>)> {
    let parts = latchkey_facade::decode_routed_message(&data).into_py_result()?;
    Ok((parts.onward, parts.ret, PyBytes::new(py, &parts.payload)))
}
