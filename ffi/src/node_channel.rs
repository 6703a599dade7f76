//! Channel listeners and the secure channels between nodes.

use crate::buffer::input_str;
use crate::handle::SharedHandle;
use crate::mailbox::{LatchkeyMailbox, LatchkeyMessage};
use crate::queue::{Empty, Queue};
use crate::status::{FfiError, FfiResult, LatchkeyStatus};
use crate::wait::{arrival_limit, block_on, peer_limit};
use latchkey_facade::{ErrorCode, Listener, NodeChannel};
use std::ffi::{c_char, c_int};
use std::sync::Arc;

/// Where a node accepts secure channels (see `latchkey_node_listen`).
pub struct LatchkeyListener {
    inner: Arc<Listener>,
    accepted: Arc<Queue<Arc<NodeChannel>>>,
}

impl SharedHandle for LatchkeyListener {}

/// The error for a queue that could not get its notification socket.
pub(crate) fn no_socket(error: std::io::Error) -> FfiError {
    FfiError::new(
        ErrorCode::TransportError,
        format!("cannot create a notification socket: {error}"),
    )
}

/// The error a wait reports when nothing came.
pub(crate) fn nothing(why: Empty, what: &str, timeout_ms: u32) -> FfiError {
    match why {
        Empty::TimedOut => FfiError::new(
            ErrorCode::Timeout,
            format!("nothing arrived at the {what} within {timeout_ms} ms"),
        ),
        Empty::Closed => FfiError::new(ErrorCode::ChannelClosed, format!("the {what} is closed")),
    }
}

impl LatchkeyListener {
    pub(crate) fn start(inner: Arc<Listener>) -> FfiResult<Self> {
        let source = inner.clone();
        let accepted = Queue::start(move || {
            let source = source.clone();
            async move { source.accept().await.ok().flatten() }
        })
        .map_err(no_socket)?;
        Ok(LatchkeyListener { inner, accepted })
    }
}

impl LatchkeyListener {
    fn close(&self) {
        self.accepted.close(|| self.inner.close());
    }
}

impl Drop for LatchkeyListener {
    fn drop(&mut self) {
        self.close();
    }
}

/// Hands out the next channel the listener accepted (its peer proved an identity the listener trusts),
/// waiting up to `timeout_ms` milliseconds: 0 takes only a channel already accepted, `LATCHKEY_WAIT_FOREVER`
/// waits without limit. Fails with `LATCHKEY_ERR_TIMEOUT` when none came in time, and with
/// `LATCHKEY_ERR_CHANNEL_CLOSED` once the listener or its node is closed.
///
/// Ownership: borrows `listener`; on success `*out_channel` receives a channel to free with
/// `latchkey_node_channel_free`. On failure it is set to NULL.
/// Threading: any thread; several threads may wait at once (each channel goes to one of them).
#[no_mangle]
pub unsafe extern "C" fn latchkey_listener_accept(
    listener: *const LatchkeyListener,
    timeout_ms: u32,
    out_channel: *mut *const LatchkeyNodeChannel,
) -> LatchkeyStatus {
    ffi_boundary!({
        let slot = arg_out_handle!(out_channel);
        let listener = arg_ref!(listener);
        let inner = listener
            .accepted
            .pop(arrival_limit(timeout_ms))
            .map_err(|why| nothing(why, "listener", timeout_ms))?;
        *slot = LatchkeyNodeChannel { inner }.into_handle();
        Ok(())
    })
}

/// Writes a file descriptor that is readable while an accepted channel waits to be handed out by
/// `latchkey_listener_accept`, or once the listener is closed: for `poll`, `select` or `epoll`.
///
/// Ownership: borrows `listener`; the descriptor belongs to the listener and stays valid until
/// `latchkey_listener_free`. Do not read from it, write to it or close it.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_listener_fd(
    listener: *const LatchkeyListener,
    out_fd: *mut c_int,
) -> LatchkeyStatus {
    ffi_boundary!({
        let out = arg_out_value!(out_fd);
        *out = arg_ref!(listener).accepted.fd();
        Ok(())
    })
}

/// Stops handing out channels: waiting and later accepts fail with `LATCHKEY_ERR_CHANNEL_CLOSED`, channels
/// not yet handed out are dropped from the handle (they keep working). The node keeps accepting and serving
/// channels at the listener's address until it shuts down. Idempotent.
///
/// Ownership: borrows `listener`; it still has to be freed.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_listener_close(
    listener: *const LatchkeyListener,
) -> LatchkeyStatus {
    ffi_boundary!({
        arg_ref!(listener).close();
        Ok(())
    })
}

/// Frees a listener handle (closing it as `latchkey_listener_close` does). NULL is a no-op.
///
/// Ownership: takes `listener`; it must not be used again.
/// Threading: any thread, once no other thread uses this handle.
#[no_mangle]
pub unsafe extern "C" fn latchkey_listener_free(listener: *const LatchkeyListener) {
    ffi_infallible!((), { unsafe { LatchkeyListener::free_handle(listener) } })
}

/// One end of a secure channel between two nodes, carrying messages to services on the far side. Not to be
/// confused with the sans-IO `LatchkeyChannel`, which encrypts frames for a transport the caller runs.
pub struct LatchkeyNodeChannel {
    pub(crate) inner: Arc<NodeChannel>,
}

impl SharedHandle for LatchkeyNodeChannel {}

/// Writes the identifier the peer proved in the handshake as a NUL-terminated string; output rules as in
/// `latchkey_identity_identifier` (`LATCHKEY_IDENTIFIER_SIZE` bytes suffice).
///
/// Ownership: borrows `channel`.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_node_channel_peer_identifier(
    channel: *const LatchkeyNodeChannel,
    out: *mut c_char,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let out = out.cast::<u8>();
        let buffer = arg_out_buffer!(out, out_capacity, out_len);
        buffer.write_str(&arg_ref!(channel).inner.peer_identifier())
    })
}

/// Sends `payload` (`payload_len` bytes; 0 is allowed) to the service at `service` (e.g. `"inbox"`) on the
/// far side and blocks until the far end of the channel acknowledged it: it arrived on the peer's node, once.
/// A service missing there, or closed to this peer, makes the far end answer that it was not delivered:
/// `LATCHKEY_ERR_UNKNOWN_ADDRESS`. With `reply_to` (a mailbox
/// of this channel's own node), replies to it arrive in that mailbox, which this opens to this channel; NULL
/// for no replies.
///
/// Fails with `LATCHKEY_ERR_CHANNEL_CLOSED` on a closed channel, `LATCHKEY_ERR_DELIVERY_FAILED` when it was
/// not delivered in time (the channel is then closed), `LATCHKEY_ERR_INVALID_ARGUMENT` for a `reply_to` of
/// another node.
///
/// Ownership: borrows every argument (the payload is copied).
/// Threading: any thread; several threads may send on one channel at once.
#[no_mangle]
pub unsafe extern "C" fn latchkey_node_channel_send(
    channel: *const LatchkeyNodeChannel,
    service: *const c_char,
    payload: *const u8,
    payload_len: usize,
    reply_to: *const LatchkeyMailbox,
) -> LatchkeyStatus {
    ffi_boundary!({
        let channel = arg_ref!(channel);
        let service = unsafe { input_str(service, "service")? };
        let payload = arg_bytes!(payload, payload_len);
        // SAFETY: NULL (no reply mailbox) or a live mailbox handle (the caller's contract).
        let reply_to = unsafe { reply_to.as_ref() }.map(|mailbox| mailbox.inner.clone());
        block_on(
            channel
                .inner
                .send(service.to_owned(), payload.to_vec(), reply_to),
        )?;
        Ok(())
    })
}

/// Sends `payload` to the service at `service` on the far side (as `latchkey_node_channel_send`) and blocks
/// until its first reply, at most `timeout_ms` milliseconds (at least 1). The reply comes only out of this
/// channel, from its peer.
///
/// Fails with `LATCHKEY_ERR_TIMEOUT` when no reply came in time, `LATCHKEY_ERR_CHANNEL_CLOSED` when the
/// channel is or gets closed, and as `latchkey_node_channel_send` does.
///
/// Ownership: borrows every argument; on success `*out_reply` receives the reply as a message (origin
/// `LATCHKEY_ORIGIN_CHANNEL`, the channel's peer) to free with `latchkey_message_free`. On failure it is set
/// to NULL.
/// Threading: any thread; several requests may wait on one channel at once.
#[no_mangle]
pub unsafe extern "C" fn latchkey_node_channel_request(
    channel: *const LatchkeyNodeChannel,
    service: *const c_char,
    payload: *const u8,
    payload_len: usize,
    timeout_ms: u32,
    out_reply: *mut *const LatchkeyMessage,
) -> LatchkeyStatus {
    ffi_boundary!({
        let slot = arg_out_handle!(out_reply);
        let channel = arg_ref!(channel);
        let service = unsafe { input_str(service, "service")? };
        let payload = arg_bytes!(payload, payload_len);
        let timeout = peer_limit(timeout_ms, "timeout_ms")?;
        let reply = block_on(
            channel
                .inner
                .request(service.to_owned(), payload.to_vec(), timeout),
        )?;
        *slot = LatchkeyMessage::reply(reply, channel.inner.peer_identifier()).into_handle();
        Ok(())
    })
}

/// Closes the channel (telling the far end) and blocks until it has stopped; later sends and requests fail
/// with `LATCHKEY_ERR_CHANNEL_CLOSED`. Idempotent.
///
/// Ownership: borrows `channel`; it still has to be freed.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_node_channel_close(
    channel: *const LatchkeyNodeChannel,
) -> LatchkeyStatus {
    ffi_boundary!({
        block_on(arg_ref!(channel).inner.close())?;
        Ok(())
    })
}

/// Writes whether the channel is closed (by either end, by a failed delivery, or by node shutdown) to
/// `*out_closed`.
///
/// Ownership: borrows `channel`.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_node_channel_is_closed(
    channel: *const LatchkeyNodeChannel,
    out_closed: *mut bool,
) -> LatchkeyStatus {
    ffi_boundary!({
        let out = arg_out_value!(out_closed);
        *out = arg_ref!(channel).inner.is_closed();
        Ok(())
    })
}

/// Frees a channel handle. NULL is a no-op. Freeing does not close the channel: close it first with
/// `latchkey_node_channel_close` when done, or it stays open until the peer closes it or the node shuts
/// down (a channel the listener accepted keeps serving its peer whether or not anyone holds a handle).
///
/// Ownership: takes `channel`; it must not be used again.
/// Threading: any thread, once no other thread uses this handle.
#[no_mangle]
pub unsafe extern "C" fn latchkey_node_channel_free(channel: *const LatchkeyNodeChannel) {
    ffi_infallible!((), { unsafe { LatchkeyNodeChannel::free_handle(channel) } })
}
