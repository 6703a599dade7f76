//! Small services every node can host.

use crate::error::Result;
use crate::flow::Accepts;
use crate::message::{Address, Route};
use crate::node::{Node, DEFAULT_MAILBOX};

/// Answers every message with the same payload, back the way it came. `accepts` says who may use it
/// (e.g. `Accepts::flow(listener.flow).from_peers([phone])`); by default only local senders.
pub fn start_echo(node: &Node, address: Address, accepts: Accepts) -> Result<()> {
    let mut mailbox = node.register_with(address.clone(), DEFAULT_MAILBOX, accepts)?;
    let node = node.clone();
    tokio::spawn(async move {
        while let Some(message) = mailbox.recv().await {
            let payload = message.payload.clone();
            let reply = match message.reply_to_origin(Route::new(), payload) {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!("echo: not answering {}: {e}", message.origin());
                    continue;
                }
            };
            // Never wait on one slow requester: that would stall the service for everyone else.
            if let Err(e) = node.try_send_as(&address, reply) {
                tracing::debug!("echo: reply not sent: {e}");
            }
        }
    });
    Ok(())
}
