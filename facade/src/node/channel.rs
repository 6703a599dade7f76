//! Secure channels between nodes and the listeners that accept them.

use super::{runtime, Closer, NodeState};
use crate::error::{Error, ErrorCode, Result};
use latchkey_runtime::node::DEFAULT_MAILBOX;
use latchkey_runtime::{Accepts, Address, ChannelHandle, ListenerHandle, Route};
use std::sync::Arc;
use std::time::Duration;

/// One end of a secure channel between two nodes, carrying messages to services on the far side.
pub struct NodeChannel {
    state: Arc<NodeState>,
    handle: ChannelHandle,
}

impl std::fmt::Debug for NodeChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeChannel")
            .field("peer", &self.peer_identifier())
            .field("closed", &self.is_closed())
            .finish()
    }
}

fn service_route(service: &str) -> Result<Route> {
    Ok(Route::from_addresses([super::address(service)?]))
}

impl NodeChannel {
    pub(crate) fn new(state: Arc<NodeState>, handle: ChannelHandle) -> Arc<Self> {
        Arc::new(NodeChannel { state, handle })
    }

    pub(crate) fn handle(&self) -> &ChannelHandle {
        &self.handle
    }

    /// The identifier the peer proved in the handshake.
    pub fn peer_identifier(&self) -> String {
        self.handle.peer().to_string()
    }

    /// This end's address on its node.
    pub fn address(&self) -> String {
        self.handle.address().to_string()
    }

    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Sends `payload` to `service` on the far side and waits until it is delivered there (once), or fails.
    /// Replies, if any, go to the mailbox `reply_to` on this node, which this opens to this channel.
    pub async fn send(
        &self,
        service: String,
        payload: Vec<u8>,
        reply_to: Option<Arc<super::Mailbox>>,
    ) -> Result<()> {
        let onward = service_route(&service)?;
        let ret = match reply_to {
            Some(mailbox) => {
                if !Arc::ptr_eq(&mailbox.state, &self.state) {
                    return Err(Error::invalid_argument(
                        "reply_to must be a mailbox of the channel's own node",
                    ));
                }
                mailbox.open_to(self.handle.flow())?;
                Route::from_addresses([mailbox.runtime_address().clone()])
            }
            None => Route::new(),
        };
        let handle = self.handle.clone();
        runtime::run(async move {
            handle
                .send_confirmed(onward, ret, payload)
                .await
                .map_err(|e| name_service(e, &service))
        })
        .await
    }

    /// Sends `payload` to `service` on the far side and returns its first reply (`Timeout` after `timeout`).
    pub async fn request(
        &self,
        service: String,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>> {
        let onward = service_route(&service)?;
        let handle = self.handle.clone();
        let node = self.state.node.clone();
        runtime::run(async move {
            // Only the reply out of this channel, from its peer, may reach this mailbox.
            let accepts = Accepts::flow(handle.flow()).from_peers([handle.peer()]);
            let mut inbox =
                node.register_with(node.unique_address("reply"), DEFAULT_MAILBOX, accepts)?;
            let ret = Route::from_addresses([inbox.address().clone()]);
            handle
                .send_confirmed(onward, ret, payload)
                .await
                .map_err(|e| name_service(e, &service))?;
            let reply = tokio::select! {
                reply = tokio::time::timeout(timeout, inbox.recv()) => reply.map_err(|_| {
                    Error::new(ErrorCode::Timeout, format!("no reply from {service:?} within {timeout:?}"))
                })?,
                () = handle.closed() => None,
            };
            reply
                .map(|m| m.payload)
                .ok_or_else(|| Error::closed("the channel"))
        })
        .await
    }

    /// Closes this end (telling the far end) and returns once it has stopped; later sends fail with
    /// `ChannelClosed`.
    pub async fn close(&self) -> Result<()> {
        let handle = self.handle.clone();
        runtime::run(async move {
            handle.close().await;
            Ok(())
        })
        .await
    }
}

/// The far end reports a message undelivered as `UnknownAddress` (no such service, or one that does not
/// admit this channel: it does not say which): name the service the caller used.
fn name_service(e: latchkey_runtime::RuntimeError, service: &str) -> Error {
    match e {
        latchkey_runtime::RuntimeError::UnknownAddress(_) => Error::new(
            ErrorCode::UnknownAddress,
            format!(
                "no such service {service:?} at the far end (or it does not admit this channel)"
            ),
        ),
        e => e.into(),
    }
}

/// The channels a node accepts at one address.
pub struct Listener {
    state: Arc<NodeState>,
    address: Address,
    accepted: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<ChannelHandle>>,
    closer: Closer,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .finish()
    }
}

impl Listener {
    pub(crate) fn new(state: Arc<NodeState>, mut handle: ListenerHandle) -> Arc<Self> {
        // Every accepted channel is watched by the node's authorities (closed when its peer is revoked or
        // its credential expires) and tracked (asked to re-handshake after our credential is refreshed),
        // whether or not anyone calls `accept`.
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let handle_address = handle.address.clone();
        let st = state.clone();
        runtime::enter(|| {
            tokio::spawn(async move {
                while let Some(channel) = handle.accepted().await {
                    if let Ok(trust) = st.trust() {
                        trust.watch(&channel);
                        if trust.is_member() {
                            st.track(&channel);
                        }
                    }
                    // Channels nobody accepts keep working; only the hand-over is skipped.
                    let _ = tx.try_send(channel);
                }
            })
        });
        Arc::new(Listener {
            state,
            address: handle_address,
            accepted: tokio::sync::Mutex::new(rx),
            closer: Closer::default(),
        })
    }

    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// The next channel this listener accepts, or `None` once the listener or its node is closed. Channels are
    /// accepted (and served) whether or not anyone calls this.
    pub async fn accept(self: Arc<Self>) -> Result<Option<Arc<NodeChannel>>> {
        let me = self.clone();
        runtime::run(async move {
            let mut accepted = me.accepted.lock().await;
            let next = tokio::select! {
                next = accepted.recv() => next,
                () = me.closer.closed() => None,
                () = me.state.closer.closed() => None,
            };
            Ok(next.map(|handle| {
                me.state.track(&handle);
                NodeChannel::new(me.state.clone(), handle)
            }))
        })
        .await
    }

    /// Stops handing out channels (those already accepted keep working until closed).
    pub fn close(&self) {
        self.closer.close();
    }
}
