//! Device handles: a device behind a relay, sans-IO (`latchkey_facade::DeviceSession`). The C program owns
//! the socket (or UART) and the clock; the library owns the routed channels, the relay registration and the
//! stream's framing. See docs/C-API.md, "A device behind a relay, bring your own socket".

use crate::buffer::{check_length, input_str, input_trust};
use crate::handle::OwnedHandle;
use crate::identity::{optional_time, LatchkeyIdentity};
use crate::status::{FfiError, FfiResult, LatchkeyStatus};
use crate::LatchkeySeconds;
use latchkey_facade::{
    CipherSuite, DeviceEvent, DeviceMessage, DeviceOptions, DeviceSession, SuiteSet,
};
use std::ffi::c_char;

/// `latchkey_device_poll_event`: no event waits.
pub const LATCHKEY_DEVICE_EVENT_NONE: u32 = 0;
/// The secure channel to the relay is up; the detail is the relay's identifier.
pub const LATCHKEY_DEVICE_EVENT_RELAY_CONNECTED: u32 = 1;
/// The relay accepted the name (once per relay channel); the detail is the name.
pub const LATCHKEY_DEVICE_EVENT_REGISTERED: u32 = 2;
/// The relay refused the name (asked again at each refresh); the detail says why.
pub const LATCHKEY_DEVICE_EVENT_REGISTRATION_REFUSED: u32 = 3;
/// The channel to the relay ended or could not be opened; a new one is opened on its own. The detail says
/// why.
pub const LATCHKEY_DEVICE_EVENT_RELAY_LOST: u32 = 4;
/// A phone's channel is up; `*out_channel` is its number, the detail the phone's identifier.
pub const LATCHKEY_DEVICE_EVENT_PHONE_CONNECTED: u32 = 5;
/// A phone's channel ended (or its handshake failed); `*out_channel` is its number, the detail says why.
pub const LATCHKEY_DEVICE_EVENT_PHONE_CLOSED: u32 = 6;

/// `latchkey_device_next_timeout`: no timer is due (only the stream can wake the device).
pub const LATCHKEY_DEVICE_NO_TIMEOUT: u64 = u64::MAX;
/// `latchkey_device_set_accepted_suites`: phones may offer either suite (the default; the same as
/// `LATCHKEY_SUITES_CHACHAPOLY | LATCHKEY_SUITES_AESGCM`).
pub const LATCHKEY_SUITES_BOTH: u32 = 0;
/// `latchkey_device_set_accepted_suites`: phones may offer `Noise_XX_25519_ChaChaPoly_SHA256`.
pub const LATCHKEY_SUITES_CHACHAPOLY: u32 = 1;
/// `latchkey_device_set_accepted_suites`: phones may offer `Noise_XX_25519_AESGCM_SHA256`.
pub const LATCHKEY_SUITES_AESGCM: u32 = 2;

/// The set a `latchkey_device_set_accepted_suites` value names: 0 is both, other bits are refused.
fn suite_set(value: u32) -> FfiResult<SuiteSet> {
    match value {
        LATCHKEY_SUITES_BOTH => Ok(SuiteSet::ALL),
        LATCHKEY_SUITES_CHACHAPOLY => Ok(SuiteSet::only(CipherSuite::ChaChaPoly)),
        LATCHKEY_SUITES_AESGCM => Ok(SuiteSet::only(CipherSuite::AesGcm)),
        v if v == LATCHKEY_SUITES_CHACHAPOLY | LATCHKEY_SUITES_AESGCM => Ok(SuiteSet::ALL),
        other => Err(FfiError::InvalidArgument(format!(
            "unknown cipher suite set {other}: `suites` is 0 (both) or LATCHKEY_SUITES_CHACHAPOLY and/or \
             LATCHKEY_SUITES_AESGCM"
        ))),
    }
}

/// Largest frame the device takes from or puts on the stream.
pub const LATCHKEY_DEVICE_MAX_FRAME: usize = latchkey_facade::DEVICE_MAX_FRAME;

/// A device behind a relay over one byte stream: owned, one thread at a time.
pub struct LatchkeyDevice {
    inner: DeviceSession,
}

impl OwnedHandle for LatchkeyDevice {}

/// A message a phone sent to one of the device's services: owned, independent of the device.
pub struct LatchkeyDeviceMessage {
    inner: DeviceMessage,
}

impl OwnedHandle for LatchkeyDeviceMessage {}

/// Counters of a device (`latchkey_device_stats`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LatchkeyDeviceStats {
    /// Frames read from the stream and written to it, and their bytes.
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Frames that failed authentication in a channel (tampered on the way).
    pub frames_rejected: u64,
    /// Messages dropped because the stream was down or its output full (retransmitted later).
    pub output_dropped: u64,
    /// Registration answers `ok` (first registrations and refreshes).
    pub registrations: u64,
    /// Relay channels and phone channels established.
    pub relay_channels: u64,
    pub phone_channels: u64,
    /// Messages handed out by `latchkey_device_poll_message`.
    pub messages: u64,
    /// Stateless resets sent for frames to channels this device does not know.
    pub resets_sent: u64,
    /// Phones' handshakes not started because more than 20 came in one second.
    pub handshakes_dropped: u64,
    /// Re-handshakes completed (fresh keys) on the relay channel and the phones' channels. Appended after
    /// the first release's fields: the fields above keep their offsets.
    pub rekeys: u64,
}

/// A `(const char *const *list, size_t count)` list of names; NULL only with count 0.
unsafe fn input_names(
    list: *const *const c_char,
    count: usize,
    name: &'static str,
) -> FfiResult<Vec<String>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if list.is_null() {
        return Err(FfiError::NullArgument(name));
    }
    check_length(count.saturating_mul(size_of::<*const c_char>()), name)?;
    let pointers = unsafe { std::slice::from_raw_parts(list, count) };
    pointers
        .iter()
        .map(|&entry| unsafe { input_str(entry, "services[i]") }.map(str::to_owned))
        .collect()
}

/// Creates a device acting as `identity` that will register as `name` (1..=200 bytes of UTF-8) at a relay.
///
/// `relay_trusted` says whom it accepts as the relay, `trusted` whom it accepts as phones, each exactly as
/// `latchkey_handshake_new`'s `trusted` (identifiers, or `{LATCHKEY_TRUST_ANY}` with count 1; NULL with
/// count 0 is `LATCHKEY_ERR_INVALID_ARGUMENT`). `services` lists the `services_count` service names phones
/// may send to (e.g. `"echo"`); messages to anything else are dropped. `now_ms` is the caller's monotonic
/// clock in milliseconds (any origin; every later call passes the same clock, never going back);
/// `unix_now` is the Unix time in seconds at that moment (0: the system clock), used to check validity
/// periods during handshakes. Nothing is sent before `latchkey_device_connected`.
///
/// Ownership: borrows every argument (strings copied); on success `*out_device` receives a device to free
/// with `latchkey_device_free`. On failure `*out_device` is set to NULL.
/// Threading: any thread. The device must be used by one thread at a time.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn latchkey_device_new(
    identity: *const LatchkeyIdentity,
    name: *const c_char,
    relay_trusted: *const *const c_char,
    relay_trusted_count: usize,
    trusted: *const *const c_char,
    trusted_count: usize,
    services: *const *const c_char,
    services_count: usize,
    now_ms: u64,
    unix_now: LatchkeySeconds,
    out_device: *mut *mut LatchkeyDevice,
) -> LatchkeyStatus {
    ffi_boundary!({
        let slot = arg_out_handle!(out_device);
        let identity = arg_ref!(identity);
        let name = unsafe { input_str(name, "name")? };
        let relay_trust =
            unsafe { input_trust(relay_trusted, relay_trusted_count, "relay_trusted")? };
        let trust = unsafe { input_trust(trusted, trusted_count, "trusted")? };
        let services = unsafe { input_names(services, services_count, "services")? };
        let mut options = DeviceOptions::new(name, relay_trust, trust);
        options.services = services;
        options.unix_now = optional_time(unix_now);
        let inner = DeviceSession::new(&identity.inner, options, now_ms)?;
        *slot = LatchkeyDevice { inner }.into_handle();
        Ok(())
    })
}

/// Restricts the cipher suites phones may offer in their routed handshakes (docs/PROTOCOL.md 5.1): `suites`
/// is `LATCHKEY_SUITES_BOTH` (0, the default of a new device), `LATCHKEY_SUITES_CHACHAPOLY`,
/// `LATCHKEY_SUITES_AESGCM`, or both bits. A phone offering a suite outside the set (or an unknown suite
/// byte) is answered at once with the refusal `0x03 "UnsupportedSuite"` and takes no phone slot. Applies to
/// handshakes that arrive afterwards (call it right after `latchkey_device_new`); phone channels already
/// open keep their suite. The device's own channel to the relay is not affected (it offers ChaChaPoly).
/// `LATCHKEY_ERR_INVALID_ARGUMENT` for any other value (the set is left unchanged).
///
/// Ownership: borrows `device`.
/// Threading: one thread at a time per device.
#[no_mangle]
pub unsafe extern "C" fn latchkey_device_set_accepted_suites(
    device: *mut LatchkeyDevice,
    suites: u32,
) -> LatchkeyStatus {
    ffi_boundary!({
        let device = arg_mut!(device);
        let suites = suite_set(suites)?;
        device.inner.set_accepted_suites(suites);
        Ok(())
    })
}

/// Frees a device (its channels end without notice; the relay and phones see them go silent). NULL is a
/// no-op.
///
/// Ownership: takes `device`, which must not be used again.
#[no_mangle]
pub unsafe extern "C" fn latchkey_device_free(device: *mut LatchkeyDevice) {
    ffi_infallible!((), { unsafe { LatchkeyDevice::free_handle(device) } })
}

/// Writes the device's identifier (`lk...`, NUL-terminated; `LATCHKEY_IDENTIFIER_SIZE` bytes suffice).
///
/// Ownership: borrows every argument.
/// Threading: one thread at a time per device.
#[no_mangle]
pub unsafe extern "C" fn latchkey_device_identifier(
    device: *const LatchkeyDevice,
    out: *mut c_char,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let device = arg_ref!(device);
        let out = out.cast::<u8>();
        let buffer = arg_out_buffer!(out, out_capacity, out_len);
        buffer.write_str(&device.inner.identifier())
    })
}

/// Tells the device its stream to the relay is up (a new connection): it opens the secure channel to the
/// relay (or, when one is up, refreshes the registration at once, so a relay that restarted is noticed).
/// `LATCHKEY_ERR_INVALID_STATE` when already connected (call `latchkey_device_disconnected` first).
/// Afterwards take the output (`latchkey_device_take_output`).
///
/// Ownership: borrows `device`.
/// Threading: one thread at a time per device.
#[no_mangle]
pub unsafe extern "C" fn latchkey_device_connected(
    device: *mut LatchkeyDevice,
    now_ms: u64,
) -> LatchkeyStatus {
    ffi_boundary!({
        let device = arg_mut!(device);
        device.inner.connected(now_ms)?;
        Ok(())
    })
}

/// Tells the device its stream went down: unread input and untaken output are discarded (its channels
/// retransmit what mattered once connected again). Idempotent.
///
/// Ownership: borrows `device`.
/// Threading: one thread at a time per device.
#[no_mangle]
pub unsafe extern "C" fn latchkey_device_disconnected(
    device: *mut LatchkeyDevice,
    now_ms: u64,
) -> LatchkeyStatus {
    ffi_boundary!({
        let device = arg_mut!(device);
        device.inner.disconnected(now_ms);
        Ok(())
    })
}

/// Feeds bytes read from the stream (any split: partial frames are kept until complete). Afterwards take
/// the output, the events and the messages.
///
/// `LATCHKEY_ERR_INVALID_STATE` when not connected. `LATCHKEY_ERR_FRAME_TOO_LARGE` (a frame above
/// `LATCHKEY_DEVICE_MAX_FRAME`) or `LATCHKEY_ERR_MALFORMED_MESSAGE` (a frame that is not a routed message)
/// mean the stream is broken: close the connection and call `latchkey_device_disconnected`. Frames that
/// fail authentication are not errors: they are dropped and counted (`frames_rejected`).
///
/// Ownership: borrows every argument.
/// Threading: one thread at a time per device.
#[no_mangle]
pub unsafe extern "C" fn latchkey_device_receive(
    device: *mut LatchkeyDevice,
    now_ms: u64,
    bytes: *const u8,
    bytes_len: usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let device = arg_mut!(device);
        let bytes = arg_bytes!(bytes, bytes_len);
        device.inner.handle_bytes(now_ms, bytes)?;
        Ok(())
    })
}

/// Takes up to `out_capacity` bytes to write to the stream into `out`; `*out_len` receives how many (0 when
/// nothing waits or the stream is down). Unlike other outputs this is a byte stream, never
/// `LATCHKEY_ERR_BUFFER_TOO_SMALL`: the bytes taken are gone from the device, so write all of them, in
/// order, before taking more (or drop the connection). Call it until `*out_len` is 0 after every other call.
///
/// Ownership: borrows every argument; writes at most `out_capacity` bytes to `out`.
/// Threading: one thread at a time per device.
#[no_mangle]
pub unsafe extern "C" fn latchkey_device_take_output(
    device: *mut LatchkeyDevice,
    out: *mut u8,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let device = arg_mut!(device);
        let len = arg_out_value!(out_len);
        *len = 0;
        check_length(out_capacity, "out")?;
        if out_capacity == 0 {
            return Ok(());
        }
        if out.is_null() {
            return Err(FfiError::NullArgument("out"));
        }
        let buffer = unsafe { std::slice::from_raw_parts_mut(out, out_capacity) };
        *len = device.inner.take_output(buffer);
        Ok(())
    })
}

/// Writes to `*out_ms` when `latchkey_device_handle_timeout` must next be called (on the caller's clock;
/// it may be in the past: call it at once), or `LATCHKEY_DEVICE_NO_TIMEOUT` when no timer is due.
///
/// Ownership: borrows every argument.
/// Threading: one thread at a time per device.
#[no_mangle]
pub unsafe extern "C" fn latchkey_device_next_timeout(
    device: *const LatchkeyDevice,
    out_ms: *mut u64,
) -> LatchkeyStatus {
    ffi_boundary!({
        let device = arg_ref!(device);
        let slot = arg_out_value!(out_ms);
        *slot = device
            .inner
            .poll_timeout()
            .unwrap_or(LATCHKEY_DEVICE_NO_TIMEOUT);
        Ok(())
    })
}

/// Runs what is due at `now_ms` (retransmissions, keepalives, the registration refresh, reopening the relay
/// channel). Calling it early is harmless. Afterwards take the output, the events and the messages.
///
/// Ownership: borrows `device`.
/// Threading: one thread at a time per device.
#[no_mangle]
pub unsafe extern "C" fn latchkey_device_handle_timeout(
    device: *mut LatchkeyDevice,
    now_ms: u64,
) -> LatchkeyStatus {
    ffi_boundary!({
        let device = arg_mut!(device);
        device.inner.handle_timeout(now_ms);
        Ok(())
    })
}

fn event_parts(event: &DeviceEvent) -> (u32, u64, &str) {
    match event {
        DeviceEvent::RelayConnected { relay } => (LATCHKEY_DEVICE_EVENT_RELAY_CONNECTED, 0, relay),
        DeviceEvent::Registered { name } => (LATCHKEY_DEVICE_EVENT_REGISTERED, 0, name),
        DeviceEvent::RegistrationRefused { reason } => {
            (LATCHKEY_DEVICE_EVENT_REGISTRATION_REFUSED, 0, reason)
        }
        DeviceEvent::RelayLost { reason } => (LATCHKEY_DEVICE_EVENT_RELAY_LOST, 0, reason),
        DeviceEvent::PhoneConnected { channel, peer } => {
            (LATCHKEY_DEVICE_EVENT_PHONE_CONNECTED, *channel, peer)
        }
        DeviceEvent::PhoneClosed { channel, reason } => {
            (LATCHKEY_DEVICE_EVENT_PHONE_CLOSED, *channel, reason)
        }
    }
}

/// Takes the next event: `*out_kind` is a `LATCHKEY_DEVICE_EVENT_*` value (`_NONE` when none waits, with
/// `*out_channel` 0 and an empty detail), `*out_channel` the phone channel it concerns (0 for the relay's
/// events), and `detail` a NUL-terminated text (an identifier, a name or a reason; the remote party may
/// have chosen part of it: print it, do not parse it). A `detail` too small gives
/// `LATCHKEY_ERR_BUFFER_TOO_SMALL` with the needed size in `*detail_len` and keeps the event; 256 bytes
/// suffice for every event but refusals that quote the relay.
///
/// Ownership: borrows every argument.
/// Threading: one thread at a time per device.
#[no_mangle]
pub unsafe extern "C" fn latchkey_device_poll_event(
    device: *mut LatchkeyDevice,
    out_kind: *mut u32,
    out_channel: *mut u64,
    detail: *mut c_char,
    detail_capacity: usize,
    detail_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let device = arg_mut!(device);
        let kind = arg_out_value!(out_kind);
        let channel = arg_out_value!(out_channel);
        *kind = LATCHKEY_DEVICE_EVENT_NONE;
        *channel = 0;
        let detail = detail.cast::<u8>();
        let buffer = arg_out_buffer!(detail, detail_capacity, detail_len);
        let Some(event) = device.inner.poll_event() else {
            return buffer.write_str("");
        };
        let (k, c, text) = event_parts(&event);
        let text = text.to_owned();
        match buffer.write_str(&text) {
            Ok(()) => {
                *kind = k;
                *channel = c;
                Ok(())
            }
            Err(e) => {
                device.inner.unpoll_event(event);
                Err(e)
            }
        }
    })
}

/// Takes the next message a phone sent to one of the device's services: `*out_message` receives it, or
/// NULL when none waits (still `LATCHKEY_OK`). Messages come in order per channel; taking one makes room
/// for deliveries that waited (at most 64 are held).
///
/// Ownership: borrows `device`; a message written to `*out_message` belongs to the caller, to free with
/// `latchkey_device_message_free` (it does not depend on the device).
/// Threading: one thread at a time per device.
#[no_mangle]
pub unsafe extern "C" fn latchkey_device_poll_message(
    device: *mut LatchkeyDevice,
    out_message: *mut *mut LatchkeyDeviceMessage,
) -> LatchkeyStatus {
    ffi_boundary!({
        let slot = arg_out_handle!(out_message);
        let device = arg_mut!(device);
        if let Some(inner) = device.inner.poll_message() {
            *slot = LatchkeyDeviceMessage { inner }.into_handle();
        }
        Ok(())
    })
}

/// Answers `message` through the phone channel it came out of (to the phone's reply address), reliably:
/// retransmitted until acknowledged. `LATCHKEY_ERR_CHANNEL_CLOSED` when that channel is gone,
/// `LATCHKEY_ERR_QUEUE_FULL` when its send window is full (try again after more input or a timeout),
/// `LATCHKEY_ERR_MESSAGE_TOO_LARGE` above the channel's payload limit (60000 bytes),
/// `LATCHKEY_ERR_INVALID_ARGUMENT` when the sender gave no reply address. Afterwards take the output.
///
/// Ownership: borrows every argument (the payload is copied; the message stays the caller's).
/// Threading: one thread at a time per device.
#[no_mangle]
pub unsafe extern "C" fn latchkey_device_reply(
    device: *mut LatchkeyDevice,
    now_ms: u64,
    message: *const LatchkeyDeviceMessage,
    payload: *const u8,
    payload_len: usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let device = arg_mut!(device);
        let message = arg_ref!(message);
        let payload = arg_bytes!(payload, payload_len);
        device.inner.reply(now_ms, &message.inner, payload)?;
        Ok(())
    })
}

/// Writes whether the relay has accepted the name on the current relay channel.
///
/// Ownership: borrows every argument.
/// Threading: one thread at a time per device.
#[no_mangle]
pub unsafe extern "C" fn latchkey_device_is_registered(
    device: *const LatchkeyDevice,
    out_registered: *mut bool,
) -> LatchkeyStatus {
    ffi_boundary!({
        let device = arg_ref!(device);
        let slot = arg_out_value!(out_registered);
        *slot = device.inner.is_registered();
        Ok(())
    })
}

/// Writes the device's counters.
///
/// Ownership: borrows every argument.
/// Threading: one thread at a time per device.
#[no_mangle]
pub unsafe extern "C" fn latchkey_device_stats(
    device: *const LatchkeyDevice,
    out_stats: *mut LatchkeyDeviceStats,
) -> LatchkeyStatus {
    ffi_boundary!({
        let device = arg_ref!(device);
        let slot = arg_out_value!(out_stats);
        let s = device.inner.stats();
        *slot = LatchkeyDeviceStats {
            frames_in: s.frames_in,
            frames_out: s.frames_out,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            frames_rejected: s.frames_rejected,
            output_dropped: s.output_dropped,
            registrations: s.registrations,
            relay_channels: s.relay_channels,
            phone_channels: s.phone_channels,
            messages: s.messages,
            resets_sent: s.resets_sent,
            handshakes_dropped: s.handshakes_dropped,
            rekeys: s.rekeys,
        };
        Ok(())
    })
}

/// Frees a message. NULL is a no-op.
///
/// Ownership: takes `message`, which must not be used again.
#[no_mangle]
pub unsafe extern "C" fn latchkey_device_message_free(message: *mut LatchkeyDeviceMessage) {
    ffi_infallible!((), {
        unsafe { LatchkeyDeviceMessage::free_handle(message) }
    })
}

/// Writes the message's payload (`*out_len`: its size; `LATCHKEY_ERR_BUFFER_TOO_SMALL` writes nothing).
///
/// Ownership: borrows every argument.
/// Threading: any thread, one at a time per message.
#[no_mangle]
pub unsafe extern "C" fn latchkey_device_message_payload(
    message: *const LatchkeyDeviceMessage,
    out: *mut u8,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let message = arg_ref!(message);
        let buffer = arg_out_buffer!(out, out_capacity, out_len);
        buffer.write(message.inner.payload())
    })
}

/// Writes the service the message was sent to, NUL-terminated (at most 256 bytes).
///
/// Ownership: borrows every argument.
/// Threading: any thread, one at a time per message.
#[no_mangle]
pub unsafe extern "C" fn latchkey_device_message_service(
    message: *const LatchkeyDeviceMessage,
    out: *mut c_char,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let message = arg_ref!(message);
        let out = out.cast::<u8>();
        let buffer = arg_out_buffer!(out, out_capacity, out_len);
        buffer.write_str(message.inner.service())
    })
}

/// Writes the sender's identifier, authenticated by the channel (`LATCHKEY_IDENTIFIER_SIZE` bytes).
///
/// Ownership: borrows every argument.
/// Threading: any thread, one at a time per message.
#[no_mangle]
pub unsafe extern "C" fn latchkey_device_message_peer_identifier(
    message: *const LatchkeyDeviceMessage,
    out: *mut c_char,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let message = arg_ref!(message);
        let out = out.cast::<u8>();
        let buffer = arg_out_buffer!(out, out_capacity, out_len);
        buffer.write_str(message.inner.peer_identifier())
    })
}

/// Writes the number of the phone channel the message came out of (as in the `PHONE_*` events).
///
/// Ownership: borrows every argument.
/// Threading: any thread, one at a time per message.
#[no_mangle]
pub unsafe extern "C" fn latchkey_device_message_channel(
    message: *const LatchkeyDeviceMessage,
    out_channel: *mut u64,
) -> LatchkeyStatus {
    ffi_boundary!({
        let message = arg_ref!(message);
        let slot = arg_out_value!(out_channel);
        *slot = message.inner.channel();
        Ok(())
    })
}
