//! UDP transport: one worker per bound socket. A message routed `[udp, "host:port", rest…]` leaves as one
//! datagram holding the encoded message with onward route `rest…`; on arrival the receiving transport puts
//! `[its address, "sender host:port"]` in front of the return route. Datagrams may be lost, duplicated or
//! reordered: the secure channel above detects replays and retransmits (see docs/RUNTIME.md).

use crate::error::{Result, RuntimeError};
use crate::message::{Address, Message};
use crate::node::{Node, DEFAULT_MAILBOX};
use crate::origin::{FlowId, Origin};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;

/// Largest datagram we send or accept.
pub const MAX_DATAGRAM: usize = 65507;

/// A bound UDP transport.
#[derive(Debug, Clone)]
pub struct UdpHandle {
    pub address: Address,
    pub local_addr: SocketAddr,
    /// The flow of every datagram arriving on this socket.
    pub flow: FlowId,
}

/// Binds `bind` and registers the transport worker at a fresh `udp#n` address.
pub async fn bind(node: &Node, bind: &str) -> Result<UdpHandle> {
    let socket = Arc::new(UdpSocket::bind(crate::transport::tcp::resolve(bind).await?).await?);
    let local_addr = socket.local_addr()?;
    let address = node.unique_address("udp");
    let flow = FlowId::random();
    let mut mailbox = node.register_producer(
        address.clone(),
        DEFAULT_MAILBOX,
        node.transport_accepts(),
        flow,
    )?;
    let recv_socket = socket.clone();
    let recv_node = node.clone();
    let here = address.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        loop {
            let (len, from) = match recv_socket.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!("udp {here}: receive error: {e}");
                    continue;
                }
            };
            let mut message = match Message::decode(&buf[..len]) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("udp {here}: dropping datagram from {from}: {e}");
                    continue;
                }
            };
            let Ok(sender) = Address::new(from.to_string()) else {
                continue;
            };
            message.ret = message.ret.prepend(sender.clone()).prepend(here.clone());
            let origin = Origin::Transport {
                connection: here.clone(),
                remote: Some(sender),
                flow,
            };
            // A datagram transport must not stall on one slow worker: drop instead of waiting.
            if let Err(e) = recv_node
                .try_deliver(message.with_origin(origin))
                .map_err(|b| b.0)
            {
                tracing::debug!("udp {here}: datagram from {from} dropped: {e}");
            }
        }
    });
    let send_address = address.clone();
    tokio::spawn(async move {
        while let Some(mut message) = mailbox.recv().await {
            message.onward.pop_front();
            let Some(peer) = message.onward.pop_front() else {
                tracing::warn!("udp {send_address}: message without a peer address");
                continue;
            };
            let Ok(peer) = peer.as_str().parse::<SocketAddr>() else {
                tracing::warn!("udp {send_address}: bad peer address {peer}");
                continue;
            };
            match message.encode() {
                Ok(bytes) if bytes.len() <= MAX_DATAGRAM => {
                    if let Err(e) = socket.send_to(&bytes, peer).await {
                        tracing::debug!("udp {send_address}: send to {peer} failed: {e}");
                    }
                }
                Ok(bytes) => tracing::warn!(
                    "udp {send_address}: {}",
                    RuntimeError::FrameTooLarge {
                        len: bytes.len(),
                        max: MAX_DATAGRAM
                    }
                ),
                Err(e) => tracing::warn!("udp {send_address}: {e}"),
            }
        }
    });
    Ok(UdpHandle {
        address,
        local_addr,
        flow,
    })
}
