//! An in-memory link between two nodes in one process, for tests: a pair of workers that move messages from
//! one node to the other exactly like a network transport would (encode, decode, return-route rewrite).

use crate::error::Result;
use crate::message::{Address, Message};
use crate::node::Node;

/// Connects `a` and `b`: returns (address on `a` that reaches `b`, address on `b` that reaches `a`).
pub fn link(a: &Node, b: &Node) -> Result<(Address, Address)> {
    let on_a = a.unique_address("mem");
    let on_b = b.unique_address("mem");
    spawn_direction(a, on_a.clone(), b, on_b.clone())?;
    spawn_direction(b, on_b.clone(), a, on_a.clone())?;
    Ok((on_a, on_b))
}

fn spawn_direction(from: &Node, here: Address, to: &Node, there: Address) -> Result<()> {
    let mut mailbox = from.register(here)?;
    let to = to.clone();
    tokio::spawn(async move {
        while let Some(mut message) = mailbox.recv().await {
            message.onward.pop_front();
            // Through the same encoding as a network transport, so local-only facts cannot leak across.
            let Ok(bytes) = message.encode() else {
                continue;
            };
            let Ok(mut delivered) = Message::decode(&bytes) else {
                continue;
            };
            delivered.ret = delivered.ret.prepend(there.clone());
            if let Err(e) = to.send(delivered).await {
                tracing::debug!("memory link: dropped message: {e}");
            }
        }
    });
    Ok(())
}
