//! Node handles, for hosted C (Linux gateways, Raspberry-Pi-class devices): a node acting as an identity,
//! its TCP listeners, channel listeners, services, mailboxes, relay registration and shutdown. Each function
//! is one facade call; those that do network work block the calling thread until it is done (see `wait`).

use crate::buffer::{input_str, input_trust, optional_str};
use crate::handle::SharedHandle;
use crate::identity::LatchkeyIdentity;
use crate::mailbox::LatchkeyMailbox;
use crate::node_channel::{LatchkeyListener, LatchkeyNodeChannel};
use crate::status::{FfiError, LatchkeyStatus};
use crate::wait::{block_on, peer_limit};
use latchkey_facade::{
    CipherSuite, ConnectOptions, ErrorCode, Node, NodeOptions, Peer, RelayServiceOptions,
    SuiteChoice,
};
use std::ffi::c_char;
use std::sync::Arc;

/// Flag for `latchkey_node_new`: a relay node, which forwards messages between its connections (start its
/// registration service with `latchkey_node_start_relay`). Ordinary nodes never forward.
pub const LATCHKEY_NODE_RELAY: u32 = 1;

/// Suite for `latchkey_node_set_suite` (the default of a new node): routed channels offer AES-256-GCM where
/// the CPU has AES instructions, ChaCha20-Poly1305 otherwise, and accept both. (The values match the
/// device's `LATCHKEY_SUITES_*` sets: 0 = both.)
pub const LATCHKEY_NODE_SUITE_AUTO: u32 = 0;
/// Suite for `latchkey_node_set_suite`: offer and accept `Noise_XX_25519_ChaChaPoly_SHA256` only.
pub const LATCHKEY_NODE_SUITE_CHACHAPOLY: u32 = 1;
/// Suite for `latchkey_node_set_suite`: offer and accept `Noise_XX_25519_AESGCM_SHA256` only.
pub const LATCHKEY_NODE_SUITE_AESGCM: u32 = 2;

/// Bytes that always hold a bound socket address (`host:port`, IPv6 in brackets with a scope) as a C string,
/// as `latchkey_node_listen_tcp` writes it.
pub const LATCHKEY_SOCKET_ADDRESS_SIZE: usize = 72;

/// A node: workers at addresses, transports, secure channels to other nodes, services and mailboxes, all
/// acting as one identity. Its work runs on the library's own threads.
pub struct LatchkeyNode {
    pub(crate) inner: Arc<Node>,
    relay: bool,
}

impl SharedHandle for LatchkeyNode {}

/// Creates a node acting as `identity` (a snapshot: a later `latchkey_identity_rotate` applies to nodes
/// created afterwards). `name` is a label for logs. `flags` is 0 or `LATCHKEY_NODE_RELAY`.
///
/// The first node starts the library's background threads (a small thread pool, kept until the process
/// exits); the sans-IO handshake and channel functions never use them.
///
/// Ownership: borrows `identity` and `name`; on success `*out_node` receives a node to shut down and free
/// with `latchkey_node_free`. On failure `*out_node` is set to NULL.
/// Threading: any thread. The node may be used from several threads at once.
#[no_mangle]
pub unsafe extern "C" fn latchkey_node_new(
    identity: *const LatchkeyIdentity,
    name: *const c_char,
    flags: u32,
    out_node: *mut *const LatchkeyNode,
) -> LatchkeyStatus {
    ffi_boundary!({
        let slot = arg_out_handle!(out_node);
        let identity = arg_ref!(identity);
        let name = unsafe { input_str(name, "name")? };
        if flags & !LATCHKEY_NODE_RELAY != 0 {
            return Err(FfiError::InvalidArgument(format!(
                "unknown node flags {flags:#x}"
            )));
        }
        let relay = flags & LATCHKEY_NODE_RELAY != 0;
        let options = NodeOptions {
            name: name.to_owned(),
            relay,
        };
        let inner = Node::new(&identity.inner, options)?;
        *slot = LatchkeyNode { inner, relay }.into_handle();
        Ok(())
    })
}

/// Chooses the cipher suite of the routed channels this node opens and accepts (docs/PROTOCOL.md 5.1): a
/// channel listener takes the suite chosen when it is started (`latchkey_node_listen`), a connection the one
/// chosen when it is opened; listeners and channels already there keep theirs, so choose before starting
/// them. `suite` is `LATCHKEY_NODE_SUITE_AUTO` (the
/// default), `LATCHKEY_NODE_SUITE_CHACHAPOLY` or `LATCHKEY_NODE_SUITE_AESGCM`: a fixed suite is the only
/// one offered and accepted, and a peer offering the other is refused with
/// `LATCHKEY_ERR_UNSUPPORTED_SUITE` (both ends see it). Any other value fails with
/// `LATCHKEY_ERR_INVALID_ARGUMENT` and leaves the choice as it was.
///
/// Ownership: borrows `node`.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_node_set_suite(
    node: *const LatchkeyNode,
    suite: u32,
) -> LatchkeyStatus {
    ffi_boundary!({
        let node = arg_ref!(node);
        let choice = match suite {
            LATCHKEY_NODE_SUITE_AUTO => SuiteChoice::Auto,
            LATCHKEY_NODE_SUITE_CHACHAPOLY => SuiteChoice::Only(CipherSuite::ChaChaPoly),
            LATCHKEY_NODE_SUITE_AESGCM => SuiteChoice::Only(CipherSuite::AesGcm),
            other => {
                return Err(FfiError::InvalidArgument(format!(
                    "unknown node suite {other}"
                )))
            }
        };
        node.inner.set_suite(choice)?;
        Ok(())
    })
}

/// Writes the node's identifier (its identity's, what peers trust) as a NUL-terminated string; output rules
/// as in `latchkey_identity_identifier` (`LATCHKEY_IDENTIFIER_SIZE` bytes suffice).
///
/// Ownership: borrows `node`.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_node_identifier(
    node: *const LatchkeyNode,
    out: *mut c_char,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let out = out.cast::<u8>();
        let buffer = arg_out_buffer!(out, out_capacity, out_len);
        buffer.write_str(&arg_ref!(node).inner.identifier())
    })
}

/// Accepts TCP connections on `address` (`"host:port"`, port 0 for any free port) and writes the bound
/// address (e.g. `"127.0.0.1:40123"`) as a NUL-terminated string to `out`. Blocks until bound.
///
/// `out_capacity` must be at least `LATCHKEY_SOCKET_ADDRESS_SIZE`; a smaller buffer is refused with
/// `LATCHKEY_ERR_BUFFER_TOO_SMALL` (and that size in `*out_len`) before anything is bound. Pass `out` NULL,
/// `out_capacity` 0 and `out_len` NULL when the bound address is not wanted. Fails with
/// `LATCHKEY_ERR_BAD_ADDRESS` for an address that does not parse or resolve, `LATCHKEY_ERR_ADDRESS_IN_USE` for
/// a port in use, `LATCHKEY_ERR_CHANNEL_CLOSED` after shutdown. The listener runs until the node shuts down.
///
/// Ownership: borrows every argument.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_node_listen_tcp(
    node: *const LatchkeyNode,
    address: *const c_char,
    out: *mut c_char,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let node = arg_ref!(node);
        let address = unsafe { input_str(address, "address")? };
        let out = out.cast::<u8>();
        let buffer = if out.is_null() && out_capacity == 0 && out_len.is_null() {
            None
        } else {
            Some(
                arg_out_buffer!(out, out_capacity, out_len)
                    .require(LATCHKEY_SOCKET_ADDRESS_SIZE)?,
            )
        };
        let bound = block_on(node.inner.listen_tcp(address.to_owned()))?;
        match buffer {
            Some(buffer) => buffer.write_str(&bound),
            None => Ok(()),
        }
    })
}

/// Accepts secure channels at the address `address` on this node (peers connect to `"api"` unless told
/// otherwise) from the peers `trusted` names, given as in `latchkey_handshake_new`: `trusted_count`
/// identifiers, or `{LATCHKEY_TRUST_ANY}` with count 1; NULL with count 0 is `LATCHKEY_ERR_INVALID_ARGUMENT`.
/// Channels come in over any transport of the node and through the relays it registered at; they reach the
/// node's services and mailboxes, each of which has its own trust list too.
///
/// Channels are accepted and served whether or not `latchkey_listener_accept` is called; the listener
/// handle only hands them out. Freeing or closing the handle stops handing out; the node keeps accepting at
/// `address` until it shuts down.
///
/// Ownership: borrows every argument (strings are copied); on success `*out_listener` receives a listener
/// to free with `latchkey_listener_free`. On failure it is set to NULL.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_node_listen(
    node: *const LatchkeyNode,
    address: *const c_char,
    trusted: *const *const c_char,
    trusted_count: usize,
    out_listener: *mut *const LatchkeyListener,
) -> LatchkeyStatus {
    ffi_boundary!({
        let slot = arg_out_handle!(out_listener);
        let node = arg_ref!(node);
        let address = unsafe { input_str(address, "address")? };
        let trust = unsafe { input_trust(trusted, trusted_count, "trusted")? };
        let listener = node.inner.listen(address.to_owned(), trust)?;
        *slot = LatchkeyListener::start(listener)?.into_handle();
        Ok(())
    })
}

/// Opens a secure channel to the channel listener `listener` (usually `"api"`) of a peer node, over TCP, and
/// blocks until the handshake is done. With `relay_name` NULL, `address` (`"host:port"`) is the peer's;
/// otherwise `address` is a relay's and the peer is the node registered there as `relay_name`. The channel
/// is end to end: the relay forwards it but cannot read it. The peer must be one that `trusted` names (as in
/// `latchkey_handshake_new`). `timeout_ms` (at least 1) bounds the connection and the handshake together.
///
/// Fails with `LATCHKEY_ERR_UNTRUSTED_PEER` for a peer outside `trusted`, `LATCHKEY_ERR_REFUSED` when the peer
/// does not trust us, `LATCHKEY_ERR_TIMEOUT` when nothing answers in time (also: no node registered as
/// `relay_name`, no listener at `listener`), `LATCHKEY_ERR_BAD_ADDRESS` for an address that does not parse
/// or resolve, `LATCHKEY_ERR_TRANSPORT_ERROR` when it cannot be reached (e.g. connection refused),
/// `LATCHKEY_ERR_CHANNEL_CLOSED` after shutdown.
///
/// Ownership: borrows every argument (strings are copied); on success `*out_channel` receives a channel to
/// free with `latchkey_node_channel_free`. On failure it is set to NULL.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_node_connect(
    node: *const LatchkeyNode,
    address: *const c_char,
    relay_name: *const c_char,
    listener: *const c_char,
    trusted: *const *const c_char,
    trusted_count: usize,
    timeout_ms: u32,
    out_channel: *mut *const LatchkeyNodeChannel,
) -> LatchkeyStatus {
    ffi_boundary!({
        let slot = arg_out_handle!(out_channel);
        let node = arg_ref!(node);
        let address = unsafe { input_str(address, "address")? };
        let relay_name = unsafe { optional_str(relay_name, "relay_name")? };
        let listener = unsafe { input_str(listener, "listener")? };
        let trust = unsafe { input_trust(trusted, trusted_count, "trusted")? };
        let timeout = peer_limit(timeout_ms, "timeout_ms")?;
        let mut peer = Peer::tcp(address);
        peer.relay_name = relay_name.map(str::to_owned);
        peer.listener = listener.to_owned();
        let options = ConnectOptions { timeout };
        let inner = block_on(node.inner.connect(peer, trust, options))?;
        *slot = LatchkeyNodeChannel { inner }.into_handle();
        Ok(())
    })
}

/// Registers this node as `name` at the relay at `relay_address` (`"host:port"`, e.g. a `latchkey relay run`
/// process), through a secure channel to the relay that `relay_trusted` must accept (given as `trusted` in
/// `latchkey_handshake_new`; the relay prints its identifier), and keeps the registration fresh until the
/// node shuts down. Peers then reach this node's channel listeners by that name (`latchkey_node_connect`
/// with `relay_name`). Blocks until the relay confirmed the name (at most about 10 s to connect).
///
/// Fails with `LATCHKEY_ERR_UNTRUSTED_PEER` for a relay outside `relay_trusted`, `LATCHKEY_ERR_REFUSED` when
/// the relay refuses the name (taken by another identity, not allowed, too many) or refuses us,
/// `LATCHKEY_ERR_TIMEOUT`, `LATCHKEY_ERR_BAD_ADDRESS` or `LATCHKEY_ERR_TRANSPORT_ERROR` when the relay cannot be
/// reached.
///
/// Ownership: borrows every argument.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_node_register_at_relay(
    node: *const LatchkeyNode,
    relay_address: *const c_char,
    relay_trusted: *const *const c_char,
    relay_trusted_count: usize,
    name: *const c_char,
) -> LatchkeyStatus {
    ffi_boundary!({
        let node = arg_ref!(node);
        let relay_address = unsafe { input_str(relay_address, "relay_address")? };
        let relay_trust =
            unsafe { input_trust(relay_trusted, relay_trusted_count, "relay_trusted")? };
        let name = unsafe { input_str(name, "name")? };
        // The relay's identifier, when the facade reports it, is not needed: the caller named whom to trust.
        let _relay = block_on(node.inner.register_at_relay(
            relay_address.to_owned(),
            relay_trust,
            name.to_owned(),
        ))?;
        Ok(())
    })
}

/// Starts an echo service at the address `address` (e.g. `"echo"`): every message from a peer `trusted`
/// names (as in `latchkey_handshake_new`), out of a channel this node's listeners accepted, is answered with
/// itself. It runs until the node shuts down.
///
/// Ownership: borrows every argument.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_node_start_echo(
    node: *const LatchkeyNode,
    address: *const c_char,
    trusted: *const *const c_char,
    trusted_count: usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let node = arg_ref!(node);
        let address = unsafe { input_str(address, "address")? };
        let trust = unsafe { input_trust(trusted, trusted_count, "trusted")? };
        node.inner.start_echo(address.to_owned(), trust)?;
        Ok(())
    })
}

/// Opens a mailbox at the address `address` (e.g. `"inbox"`): it receives what peers send to that service,
/// from the peers `trusted` names (as in `latchkey_handshake_new`; a non-NULL list with count 0 takes only
/// replies to this node's own `latchkey_node_channel_send(..., reply_to)`), out of the channels of this
/// node's listeners, now and later. Never raw transport messages. Receive with `latchkey_mailbox_receive`
/// (blocking, with a timeout) or poll `latchkey_mailbox_fd`; answer with `latchkey_mailbox_reply`.
///
/// Fails with `LATCHKEY_ERR_ADDRESS_IN_USE` when something already listens at `address`.
///
/// Ownership: borrows every argument; on success `*out_mailbox` receives a mailbox to free with
/// `latchkey_mailbox_free` (which closes it and frees the address). On failure it is set to NULL.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_node_mailbox(
    node: *const LatchkeyNode,
    address: *const c_char,
    trusted: *const *const c_char,
    trusted_count: usize,
    out_mailbox: *mut *const LatchkeyMailbox,
) -> LatchkeyStatus {
    ffi_boundary!({
        let slot = arg_out_handle!(out_mailbox);
        let node = arg_ref!(node);
        let address = unsafe { input_str(address, "address")? };
        let trust = unsafe { input_trust(trusted, trusted_count, "trusted")? };
        let mailbox = node.inner.mailbox(address.to_owned(), trust)?;
        *slot = LatchkeyMailbox::start(mailbox)?.into_handle();
        Ok(())
    })
}

/// Makes a node created with `LATCHKEY_NODE_RELAY` a relay: a registration service (default limits: names
/// lapse 30 s after their owner's last refresh, at most 8 names per identity and 10000 in all) for the peers
/// its channel listeners accept. Start a channel listener (`latchkey_node_listen`) and a TCP listener
/// first. Fails with `LATCHKEY_ERR_INVALID_STATE` for an ordinary node or one without a channel listener.
///
/// Ownership: borrows `node`.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_node_start_relay(node: *const LatchkeyNode) -> LatchkeyStatus {
    ffi_boundary!({
        let node = arg_ref!(node);
        if !node.relay {
            return Err(FfiError::new(
                ErrorCode::InvalidState,
                "only a node created with LATCHKEY_NODE_RELAY can be a relay",
            ));
        }
        node.inner.start_relay(RelayServiceOptions::default())?;
        Ok(())
    })
}

/// Shuts the node down and blocks until it has: stops its TCP listeners, closes every channel it opened or
/// accepted (telling each peer) and waits until each has stopped, ends its services, mailboxes and relay
/// registrations. Waiting receives and accepts return `LATCHKEY_ERR_CHANNEL_CLOSED`, and so does every later
/// call that needs the node running. Idempotent.
///
/// Ownership: borrows `node`; it still has to be freed.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_node_shutdown(node: *const LatchkeyNode) -> LatchkeyStatus {
    ffi_boundary!({
        let node = arg_ref!(node);
        block_on(node.inner.shutdown())?;
        Ok(())
    })
}

/// Frees a node handle, first shutting the node down (as `latchkey_node_shutdown`, blocking) if that was not
/// done. NULL is a no-op. Handles from the node (listeners, channels, mailboxes, messages) stay valid to
/// free; their calls report `LATCHKEY_ERR_CHANNEL_CLOSED`.
///
/// Ownership: takes `node`; it must not be used again.
/// Threading: any thread, once no other thread uses this handle.
#[no_mangle]
pub unsafe extern "C" fn latchkey_node_free(node: *const LatchkeyNode) {
    ffi_infallible!((), {
        // SAFETY: NULL or a live node handle (the caller's contract for `_free`).
        if let Some(node) = unsafe { node.as_ref() } {
            if !node.inner.is_closed() {
                let _ = block_on(node.inner.shutdown());
            }
        }
        unsafe { LatchkeyNode::free_handle(node) }
    })
}
