//! TCP portals: an inlet listens on one node, an outlet connects to a TCP service from another, and the
//! bytes of each TCP connection travel between them as routed messages — through a secure channel when the
//! route goes through one — so an unmodified TCP service becomes reachable end-to-end encrypted.
//!
//! Per connection: the inlet sends `CONNECT` to the outlet service; the outlet connects to its target and
//! answers `CONNECTED` from a per-connection worker; then both sides exchange `DATA` chunks and one `EOF`
//! each. An `EOF` shuts down the write half on the other side, so closing either end closes the other.
//!
//! A portal is bound to its secure channel: the inlet's workers accept messages only out of the channel it
//! was opened through (so a relay on the path cannot answer a `CONNECT` in plain text or inject `DATA`), and
//! an outlet accepts `CONNECT` only out of a secure channel its flow rules admit, never from a transport.

use crate::channel::ChannelHandle;
use crate::error::{Result, RuntimeError};
use crate::flow::Accepts;
use crate::message::{Address, Message, Route};
use crate::node::{Mailbox, Node, DEFAULT_MAILBOX};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CONNECT: u8 = 0;
const CONNECTED: u8 = 1;
const DATA: u8 = 2;
const EOF: u8 = 3;
const REFUSED: u8 = 4;

/// Bytes per `DATA` message.
pub const CHUNK: usize = 16 * 1024;

/// A running inlet.
#[derive(Debug)]
pub struct InletHandle {
    pub local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl InletHandle {
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// Listens on `listen`; each accepted connection is carried through `channel` to the outlet at `outlet` on
/// the channel's far side.
pub async fn create_inlet(
    node: &Node,
    listen: &str,
    channel: &ChannelHandle,
    outlet: Address,
) -> Result<InletHandle> {
    let listener = TcpListener::bind(crate::transport::tcp::resolve(listen).await?).await?;
    let local_addr = listener.local_addr()?;
    let node = node.clone();
    let outlet_route = channel.route_to(outlet);
    // Replies are accepted only out of this channel, from its authenticated peer.
    let accepts = Accepts::flow(channel.flow()).from_peers([channel.peer()]);
    let task = tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("portal inlet {local_addr}: accept failed: {e}");
                    continue;
                }
            };
            let node = node.clone();
            let outlet_route = outlet_route.clone();
            let accepts = accepts.clone();
            tokio::spawn(async move {
                if let Err(e) = inlet_connection(&node, stream, outlet_route, accepts).await {
                    tracing::warn!("portal inlet {local_addr}: connection from {peer} failed: {e}");
                }
            });
        }
    });
    Ok(InletHandle { local_addr, task })
}

async fn inlet_connection(
    node: &Node,
    stream: TcpStream,
    outlet_route: Route,
    accepts: Accepts,
) -> Result<()> {
    let mut mailbox = node.register_with(node.unique_address("inlet"), DEFAULT_MAILBOX, accepts)?;
    let here = Route::from_addresses([mailbox.address().clone()]);
    node.send_as(
        mailbox.address(),
        Message::new(outlet_route, here, vec![CONNECT]),
    )
    .await?;
    let reply = tokio::time::timeout(Duration::from_secs(15), mailbox.recv())
        .await
        .map_err(|_| RuntimeError::Timeout("portal outlet did not answer"))?
        .ok_or(RuntimeError::ChannelClosed)?;
    match reply.payload.first() {
        Some(&CONNECTED) => pump(node, stream, mailbox, reply.ret).await,
        Some(&REFUSED) => Err(RuntimeError::Refused(
            String::from_utf8_lossy(&reply.payload[1..]).into_owned(),
        )),
        _ => Err(RuntimeError::Malformed("unexpected portal reply")),
    }
}

/// Serves an outlet at `address`: each `CONNECT` that comes out of a secure channel admitted by `accepts`
/// (e.g. `Accepts::flow(listener.flow).from_peers([phone])`) opens a connection to `target`. An outlet
/// open to every transport is refused: a portal must be end-to-end.
pub fn create_outlet(
    node: &Node,
    address: Address,
    target: String,
    accepts: Accepts,
) -> Result<()> {
    if accepts.takes_any_transport() {
        return Err(RuntimeError::Insecure(
            "a portal outlet must take CONNECT only out of secure channels",
        ));
    }
    let mut mailbox = node.register_with(address.clone(), DEFAULT_MAILBOX, accepts)?;
    let node = node.clone();
    tokio::spawn(async move {
        while let Some(request) = mailbox.recv().await {
            if request.payload.first() != Some(&CONNECT) {
                continue;
            }
            // Belt and braces: whatever the flows say, a portal connection needs an authenticated channel.
            let Some(channel) = request.origin().channel() else {
                tracing::warn!(
                    "portal outlet {address}: refusing a CONNECT from {}",
                    request.origin()
                );
                continue;
            };
            // The connection's worker accepts only this channel and this peer.
            let accepts = Accepts::flow(channel.flow).from_peers([channel.peer]);
            let node = node.clone();
            let target = target.clone();
            let service = address.clone();
            tokio::spawn(async move {
                let stream = match TcpStream::connect(&target).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("portal outlet: cannot reach {target}: {e}");
                        let reason = format!("outlet cannot reach {target}: {e}");
                        if let Ok(reply) = request.reply_to_origin(
                            Route::new(),
                            [&[REFUSED][..], reason.as_bytes()].concat(),
                        ) {
                            let _ = node.send_as(&service, reply).await;
                        }
                        return;
                    }
                };
                let worker = match node.register_with(
                    node.unique_address("outlet"),
                    DEFAULT_MAILBOX,
                    accepts,
                ) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!("portal outlet: {e}");
                        return;
                    }
                };
                let here = Route::from_addresses([worker.address().clone()]);
                let Ok(reply) = request.reply_to_origin(here, vec![CONNECTED]) else {
                    return;
                };
                if node.send_as(worker.address(), reply).await.is_err() {
                    return;
                }
                if let Err(e) = pump(&node, stream, worker, request.ret.clone()).await {
                    tracing::info!("portal outlet connection to {target} ended: {e}");
                }
            });
        }
    });
    Ok(())
}

/// Moves bytes both ways between a TCP stream and the far side of the portal until both directions end.
async fn pump(node: &Node, stream: TcpStream, mut mailbox: Mailbox, remote: Route) -> Result<()> {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let me = mailbox.address().clone();
    let here = Route::from_addresses([me.clone()]);
    let read_node = node.clone();
    let read_remote = remote.clone();
    // Returns true when the far side became unreachable (its channel or worker is gone).
    let mut outbound = tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK + 1];
        loop {
            buf[0] = DATA;
            let n = match reader.read(&mut buf[1..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // Waiting here is the backpressure that keeps a slow far side from growing our memory.
            let chunk = Message::new(read_remote.clone(), here.clone(), buf[..=n].to_vec());
            if let Err(e) = read_node.send_as(&me, chunk).await {
                tracing::info!("portal: far side unreachable ({e}); closing the connection");
                return true;
            }
        }
        let _ = read_node
            .send_as(&me, Message::new(read_remote, here, vec![EOF]))
            .await;
        false
    });
    let mut outbound_done = false;
    let mut inbound_done = false;
    while !(outbound_done && inbound_done) {
        tokio::select! {
            gone = &mut outbound, if !outbound_done => {
                outbound_done = true;
                if gone.unwrap_or(true) {
                    break;
                }
            }
            message = mailbox.recv(), if !inbound_done => {
                let Some(message) = message else { break };
                match message.payload.first() {
                    Some(&DATA) if writer.write_all(&message.payload[1..]).await.is_err() => {
                        inbound_done = true;
                    }
                    Some(&EOF) => {
                        let _ = writer.shutdown().await;
                        inbound_done = true;
                    }
                    _ => {}
                }
            }
        }
    }
    outbound.abort();
    let _ = node; // the worker's mailbox is dropped here, freeing its address
    Ok(())
}
