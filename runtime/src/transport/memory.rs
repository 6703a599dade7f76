//! An in-memory link between two nodes in one process, for tests: a pair of workers that move messages from
//! one node to the other exactly like a network transport would (encode, decode, return-route rewrite).

use crate::error::Result;
use crate::message::{Address, Message};
use crate::node::{Node, DEFAULT_MAILBOX};
use crate::origin::{FlowId, Origin};

/// Connects `a` and `b`: returns (address on `a` that reaches `b`, address on `b` that reaches `a`).
pub fn link(a: &Node, b: &Node) -> Result<(Address, Address)> {
    let on_a = (a.unique_address("mem"), FlowId::random());
    let on_b = (b.unique_address("mem"), FlowId::random());
    spawn_direction(a, on_a.clone(), b, on_b.clone())?;
    spawn_direction(b, on_b.clone(), a, on_a.clone())?;
    let (on_a, on_b) = (on_a.0, on_b.0);
    Ok((on_a, on_b))
}

/// `here` (an address and the flow it produces) is the link's end on `from`, `there` its end on `to`.
fn spawn_direction(
    from: &Node,
    here: (Address, FlowId),
    to: &Node,
    there: (Address, FlowId),
) -> Result<()> {
    let mut mailbox =
        from.register_producer(here.0, DEFAULT_MAILBOX, from.transport_accepts(), here.1)?;
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
            delivered.ret = delivered.ret.prepend(there.0.clone());
            let origin = Origin::Transport {
                connection: there.0.clone(),
                remote: None,
                flow: there.1,
            };
            if let Err(e) = to.deliver(delivered.with_origin(origin)).await {
                tracing::debug!("memory link: dropped message: {e}");
            }
        }
    });
    Ok(())
}
