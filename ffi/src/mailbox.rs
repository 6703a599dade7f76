//! Mailboxes on a node and the messages they receive.

use crate::handle::SharedHandle;
use crate::node_channel::{no_socket, nothing};
use crate::queue::Queue;
use crate::status::{FfiError, FfiResult, LatchkeyStatus};
use crate::wait::{arrival_limit, block_on};
use latchkey_facade::{ErrorCode, Mailbox, MessageOrigin, ReceivedMessage};
use std::ffi::{c_char, c_int};
use std::sync::Arc;

/// Origin value from `latchkey_message_origin`: sent on this node.
pub const LATCHKEY_ORIGIN_LOCAL: u32 = 0;
/// Origin value: arrived on a transport connection, unauthenticated.
pub const LATCHKEY_ORIGIN_TRANSPORT: u32 = 1;
/// Origin value: came out of a secure channel, authenticated as sent by its peer
/// (`latchkey_message_peer_identifier`).
pub const LATCHKEY_ORIGIN_CHANNEL: u32 = 2;

/// A mailbox on a node (see `latchkey_node_mailbox`).
pub struct LatchkeyMailbox {
    pub(crate) inner: Arc<Mailbox>,
    received: Arc<Queue<Arc<ReceivedMessage>>>,
}

impl SharedHandle for LatchkeyMailbox {}

impl LatchkeyMailbox {
    pub(crate) fn start(inner: Arc<Mailbox>) -> FfiResult<Self> {
        let source = inner.clone();
        let received = Queue::start(move || {
            let source = source.clone();
            async move { source.recv().await.ok().flatten() }
        })
        .map_err(no_socket)?;
        Ok(LatchkeyMailbox { inner, received })
    }

    /// Tells the messages of this mailbox from those of others.
    fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }
}

impl LatchkeyMailbox {
    /// Closes the mailbox and returns once its address is free.
    fn close(&self) {
        self.received.close(|| self.inner.close());
    }
}

impl Drop for LatchkeyMailbox {
    fn drop(&mut self) {
        self.close();
    }
}

/// A message: what a mailbox received, or the reply to a request. Immutable.
pub struct LatchkeyMessage {
    payload: Vec<u8>,
    origin: u32,
    peer: Option<String>,
    /// For a message a mailbox received: the message and that mailbox's id, to reply through it.
    received: Option<(Arc<ReceivedMessage>, usize)>,
}

impl SharedHandle for LatchkeyMessage {}

impl LatchkeyMessage {
    fn received(message: Arc<ReceivedMessage>, mailbox: usize) -> Self {
        let (origin, peer) = match message.origin() {
            MessageOrigin::Local => (LATCHKEY_ORIGIN_LOCAL, None),
            MessageOrigin::Transport => (LATCHKEY_ORIGIN_TRANSPORT, None),
            MessageOrigin::Channel { peer_identifier } => {
                (LATCHKEY_ORIGIN_CHANNEL, Some(peer_identifier))
            }
        };
        LatchkeyMessage {
            payload: message.payload(),
            origin,
            peer,
            received: Some((message, mailbox)),
        }
    }

    /// The reply to a request, out of the channel to `peer`.
    pub(crate) fn reply(payload: Vec<u8>, peer: String) -> Self {
        LatchkeyMessage {
            payload,
            origin: LATCHKEY_ORIGIN_CHANNEL,
            peer: Some(peer),
            received: None,
        }
    }
}

/// Takes the next message, waiting up to `timeout_ms` milliseconds: 0 takes only a message already there,
/// `LATCHKEY_WAIT_FOREVER` waits without limit. Fails with `LATCHKEY_ERR_TIMEOUT` when none came in time, and
/// with `LATCHKEY_ERR_CHANNEL_CLOSED` once the mailbox is closed (by `latchkey_mailbox_close`, or by node
/// shutdown after the messages already received were taken).
///
/// A message is taken once: a wait that times out takes nothing, so none is lost between waits.
///
/// Ownership: borrows `mailbox`; on success `*out_message` receives a message to free with
/// `latchkey_message_free`. On failure it is set to NULL.
/// Threading: any thread; several threads may wait at once (each message goes to one of them).
#[no_mangle]
pub unsafe extern "C" fn latchkey_mailbox_receive(
    mailbox: *const LatchkeyMailbox,
    timeout_ms: u32,
    out_message: *mut *const LatchkeyMessage,
) -> LatchkeyStatus {
    ffi_boundary!({
        let slot = arg_out_handle!(out_message);
        let mailbox = arg_ref!(mailbox);
        let message = mailbox
            .received
            .pop(arrival_limit(timeout_ms))
            .map_err(|why| nothing(why, "mailbox", timeout_ms))?;
        *slot = LatchkeyMessage::received(message, mailbox.id()).into_handle();
        Ok(())
    })
}

/// Writes a file descriptor that is readable while a message waits in the mailbox, or once the mailbox is
/// closed: for `poll`, `select` or `epoll`. When it is readable, `latchkey_mailbox_receive` with timeout 0
/// returns a message (or `LATCHKEY_ERR_CHANNEL_CLOSED`), unless another thread took it first.
///
/// Ownership: borrows `mailbox`; the descriptor belongs to the mailbox and stays valid until
/// `latchkey_mailbox_free`. Do not read from it, write to it or close it.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_mailbox_fd(
    mailbox: *const LatchkeyMailbox,
    out_fd: *mut c_int,
) -> LatchkeyStatus {
    ffi_boundary!({
        let out = arg_out_value!(out_fd);
        *out = arg_ref!(mailbox).received.fd();
        Ok(())
    })
}

/// Answers `message`, which this mailbox received, with `payload` (`payload_len` bytes; 0 is allowed), back
/// the way it came: through its channel to the sender's reply address. Blocks until the reply is on its way
/// (a sender that gave no reply address drops it on arrival).
///
/// Fails with `LATCHKEY_ERR_INVALID_ARGUMENT` for a message another mailbox received or a request's reply,
/// `LATCHKEY_ERR_CHANNEL_CLOSED` when the channel it came through is closed.
///
/// Ownership: borrows every argument (the payload is copied); `message` still has to be freed.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_mailbox_reply(
    mailbox: *const LatchkeyMailbox,
    message: *const LatchkeyMessage,
    payload: *const u8,
    payload_len: usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let mailbox = arg_ref!(mailbox);
        let message = arg_ref!(message);
        let payload = arg_bytes!(payload, payload_len);
        let received = match &message.received {
            Some((received, from)) if *from == mailbox.id() => received.clone(),
            Some(_) => {
                return Err(FfiError::InvalidArgument(
                    "the message was received by another mailbox: reply through that one".into(),
                ))
            }
            None => {
                return Err(FfiError::InvalidArgument(
                    "the message is a request's reply, not something a mailbox received".into(),
                ))
            }
        };
        block_on(mailbox.inner.reply(received, payload.to_vec()))?;
        Ok(())
    })
}

/// Closes the mailbox: it stops receiving and frees its address; messages not yet taken are dropped, and
/// waiting and later receives fail with `LATCHKEY_ERR_CHANNEL_CLOSED`. Idempotent.
///
/// Ownership: borrows `mailbox`; it still has to be freed.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_mailbox_close(mailbox: *const LatchkeyMailbox) -> LatchkeyStatus {
    ffi_boundary!({
        arg_ref!(mailbox).close();
        Ok(())
    })
}

/// Frees a mailbox handle, closing the mailbox as `latchkey_mailbox_close` does. NULL is a no-op. Messages
/// it received stay valid until freed (but can no longer be replied to through it).
///
/// Ownership: takes `mailbox`; it must not be used again.
/// Threading: any thread, once no other thread uses this handle.
#[no_mangle]
pub unsafe extern "C" fn latchkey_mailbox_free(mailbox: *const LatchkeyMailbox) {
    ffi_infallible!((), { unsafe { LatchkeyMailbox::free_handle(mailbox) } })
}

/// Copies the message's payload to `out`; `*out_len` receives its size. If that exceeds `out_capacity` the
/// call returns `LATCHKEY_ERR_BUFFER_TOO_SMALL` and writes nothing (pass NULL and 0 to query the size; the
/// message is unchanged, so ask again with a larger buffer).
///
/// Ownership: borrows `message`.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_message_payload(
    message: *const LatchkeyMessage,
    out: *mut u8,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let buffer = arg_out_buffer!(out, out_capacity, out_len);
        buffer.write(&arg_ref!(message).payload)
    })
}

/// Writes where the message came from, as the node established it (never as the sender claimed):
/// `LATCHKEY_ORIGIN_CHANNEL` (authenticated: see `latchkey_message_peer_identifier`),
/// `LATCHKEY_ORIGIN_LOCAL` or `LATCHKEY_ORIGIN_TRANSPORT`, to `*out_origin`.
///
/// Ownership: borrows `message`.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_message_origin(
    message: *const LatchkeyMessage,
    out_origin: *mut u32,
) -> LatchkeyStatus {
    ffi_boundary!({
        let out = arg_out_value!(out_origin);
        *out = arg_ref!(message).origin;
        Ok(())
    })
}

/// Writes the identifier of the peer that sent the message through a secure channel (authenticated by the
/// channel's handshake) as a NUL-terminated string; output rules as in `latchkey_identity_identifier`. Fails
/// with `LATCHKEY_ERR_INVALID_STATE` for a message whose origin is not `LATCHKEY_ORIGIN_CHANNEL`.
///
/// Ownership: borrows `message`.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_message_peer_identifier(
    message: *const LatchkeyMessage,
    out: *mut c_char,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let out = out.cast::<u8>();
        let buffer = arg_out_buffer!(out, out_capacity, out_len);
        match &arg_ref!(message).peer {
            Some(peer) => buffer.write_str(peer),
            None => Err(FfiError::new(
                ErrorCode::InvalidState,
                "the message did not come out of a secure channel: it has no authenticated peer",
            )),
        }
    })
}

/// Frees a message. NULL is a no-op.
///
/// Ownership: takes `message`; it must not be used again.
/// Threading: any thread, once no other thread uses this handle.
#[no_mangle]
pub unsafe extern "C" fn latchkey_message_free(message: *const LatchkeyMessage) {
    ffi_infallible!((), { unsafe { LatchkeyMessage::free_handle(message) } })
}
