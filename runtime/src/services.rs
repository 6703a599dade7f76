//! Small services every node can host.

use crate::error::Result;
use crate::message::{Address, Message, Route};
use crate::node::{Access, Node, DEFAULT_MAILBOX};

/// Answers every message with the same payload, to its return route.
pub fn start_echo(node: &Node, address: Address, access: Access) -> Result<()> {
    let mut mailbox = node.register_with(address, DEFAULT_MAILBOX, access)?;
    let node = node.clone();
    tokio::spawn(async move {
        while let Some(message) = mailbox.recv().await {
            let reply = Message::new(message.ret.clone(), Route::new(), message.payload);
            // Never wait on one slow requester: that would stall the service for everyone else.
            if let Err(e) = node.try_send(reply) {
                tracing::debug!("echo: reply not sent: {e}");
            }
        }
    });
    Ok(())
}
