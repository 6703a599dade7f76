//! Mailboxes: where a node's application receives messages, each with its authenticated origin.

use super::{runtime, Closer, NodeState};
use crate::error::{Error, Result};
use latchkey_runtime::{Address, FlowId, Message, Origin, Route};
use std::sync::Arc;

/// Where a received message came from, as the node established it (never as the sender claimed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageOrigin {
    /// Sent on this node.
    Local,
    /// Arrived on a transport connection, unauthenticated.
    Transport,
    /// Came out of a secure channel: authenticated as sent by this peer.
    Channel { peer_identifier: String },
}

/// A message a mailbox received.
pub struct ReceivedMessage {
    message: Message,
}

impl std::fmt::Debug for ReceivedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The payload is not printed: it may be plaintext the user considers secret.
        f.debug_struct("ReceivedMessage")
            .field("origin", &self.origin())
            .field("payload_len", &self.message.payload.len())
            .finish()
    }
}

impl ReceivedMessage {
    pub fn payload(&self) -> Vec<u8> {
        self.message.payload.clone()
    }

    pub fn origin(&self) -> MessageOrigin {
        match self.message.origin() {
            Origin::Local { .. } => MessageOrigin::Local,
            Origin::Transport { .. } => MessageOrigin::Transport,
            Origin::Channel(c) => MessageOrigin::Channel {
                peer_identifier: c.peer.to_string(),
            },
        }
    }

    /// The authenticated peer, for messages that came out of a secure channel.
    pub fn peer_identifier(&self) -> Option<String> {
        self.message.peer().map(|p| p.to_string())
    }
}

/// A mailbox on a node (see [`super::Node::mailbox`]).
pub struct Mailbox {
    pub(crate) state: Arc<NodeState>,
    id: u64,
    address: Address,
    receiver: tokio::sync::Mutex<Option<latchkey_runtime::Mailbox>>,
    closer: Closer,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("address", &self.address)
            .finish()
    }
}

impl Mailbox {
    pub(crate) fn new(
        state: Arc<NodeState>,
        id: u64,
        mailbox: latchkey_runtime::Mailbox,
    ) -> Arc<Self> {
        Arc::new(Mailbox {
            state,
            id,
            address: mailbox.address().clone(),
            receiver: tokio::sync::Mutex::new(Some(mailbox)),
            closer: Closer::default(),
        })
    }

    pub fn address(&self) -> String {
        self.address.to_string()
    }

    pub(crate) fn runtime_address(&self) -> &Address {
        &self.address
    }

    /// Opens this mailbox to the messages out of one more channel (replies through it).
    pub(crate) fn open_to(&self, flow: FlowId) -> Result<()> {
        if self.closer.is_closed() {
            return Err(Error::closed("the mailbox"));
        }
        Ok(self.state.node.allow(&self.address, flow)?)
    }

    /// The next message, or `None` once the mailbox or its node is closed.
    pub async fn recv(self: Arc<Self>) -> Result<Option<Arc<ReceivedMessage>>> {
        let me = self.clone();
        runtime::run(async move {
            let mut receiver = me.receiver.lock().await;
            let Some(mailbox) = receiver.as_mut() else {
                return Ok(None);
            };
            let next = tokio::select! {
                next = mailbox.recv() => next,
                () = me.closer.closed() => None,
                () = me.state.closer.closed() => None,
            };
            Ok(next.map(|message| Arc::new(ReceivedMessage { message })))
        })
        .await
    }

    /// Answers `message` with `payload`, back the way it came (through its channel, if it came out of one).
    pub async fn reply(&self, message: Arc<ReceivedMessage>, payload: Vec<u8>) -> Result<()> {
        let reply = message.message.reply_to_origin(Route::new(), payload)?;
        let node = self.state.node.clone();
        runtime::run(async move { Ok(node.send(reply).await?) }).await
    }

    /// Stops receiving and frees the address. Idempotent.
    pub fn close(&self) {
        self.closer.close();
        self.state.forget_service(self.id);
        // Freed now if nobody is inside `recv`; otherwise when that `recv` returns.
        if let Ok(mut receiver) = self.receiver.try_lock() {
            receiver.take();
        }
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        self.state.forget_service(self.id);
    }
}
