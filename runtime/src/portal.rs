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

use crate::channel::{ChannelHandle, ResilientChannel};
use crate::error::{Result, RuntimeError};
use crate::flow::{Accepts, OriginGuard};
use crate::message::{Address, Message, Route};
use crate::node::{Mailbox, Node, DEFAULT_MAILBOX};
use std::net::SocketAddr;
use std::sync::Arc;
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

/// Where an inlet's connections go: one channel, or a channel that reopens itself.
#[derive(Clone)]
enum Through {
    Fixed(ChannelHandle),
    Resilient(ResilientChannel),
}

/// Listens on `listen`; each accepted connection is carried through `channel` to the outlet at `outlet` on
/// the channel's far side. When the channel closes, the connections it carries are reset (the client sees
/// an error, not a hang) and new connections are refused; [`create_inlet_resilient`] reopens it instead.
pub async fn create_inlet(
    node: &Node,
    listen: &str,
    channel: &ChannelHandle,
    outlet: Address,
) -> Result<InletHandle> {
    start_inlet(node, listen, Through::Fixed(channel.clone()), outlet, None).await
}

/// Like [`create_inlet`], and every message from the outlet's side must also pass `guard` (as in
/// [`create_inlet_resilient_with_guard`]).
pub async fn create_inlet_with_guard(
    node: &Node,
    listen: &str,
    channel: &ChannelHandle,
    outlet: Address,
    guard: Arc<dyn OriginGuard>,
) -> Result<InletHandle> {
    start_inlet(
        node,
        listen,
        Through::Fixed(channel.clone()),
        outlet,
        Some(guard),
    )
    .await
}

/// Like [`create_inlet`], through a channel that re-handshakes on its own: after the outlet's node
/// restarted (its reset closes the channel) or the channel failed, the next connection opens a new
/// channel, and a connection whose `CONNECT` met a stale channel is retried once on a new one. While no
/// channel can be opened, connections are reset at once (with the channel's backoff between attempts).
pub async fn create_inlet_resilient(
    node: &Node,
    listen: &str,
    channel: &ResilientChannel,
    outlet: Address,
) -> Result<InletHandle> {
    start_inlet(
        node,
        listen,
        Through::Resilient(channel.clone()),
        outlet,
        None,
    )
    .await
}

/// Like [`create_inlet_resilient`], and every message from the outlet's side (its answer to `CONNECT`, the
/// connection's data) must also pass `guard` (e.g. `Membership::guard`: the outlet node's credential still
/// valid, unrevoked, meeting a policy); a refused message is dropped (the outlet side hears "no such
/// destination"), and a refused answer to `CONNECT` resets the client.
pub async fn create_inlet_resilient_with_guard(
    node: &Node,
    listen: &str,
    channel: &ResilientChannel,
    outlet: Address,
    guard: Arc<dyn OriginGuard>,
) -> Result<InletHandle> {
    start_inlet(
        node,
        listen,
        Through::Resilient(channel.clone()),
        outlet,
        Some(guard),
    )
    .await
}

async fn start_inlet(
    node: &Node,
    listen: &str,
    through: Through,
    outlet: Address,
    guard: Option<Arc<dyn OriginGuard>>,
) -> Result<InletHandle> {
    let listener = TcpListener::bind(crate::transport::tcp::resolve(listen).await?).await?;
    let local_addr = listener.local_addr()?;
    let node = node.clone();
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
            let through = through.clone();
            let outlet = outlet.clone();
            let guard = guard.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_inlet_connection(&node, stream, through, outlet, guard).await
                {
                    tracing::warn!("portal inlet {local_addr}: connection from {peer} failed: {e}");
                }
            });
        }
    });
    Ok(InletHandle { local_addr, task })
}

/// Carries one accepted connection; on failure the client's connection is reset, so it sees an error.
async fn serve_inlet_connection(
    node: &Node,
    stream: TcpStream,
    through: Through,
    outlet: Address,
    guard: Option<Arc<dyn OriginGuard>>,
) -> Result<()> {
    // A stale channel (its peer's node restarted) is found out when CONNECT meets the reset: then one
    // more attempt on a new channel.
    let mut attempts = match through {
        Through::Fixed(_) => 1,
        Through::Resilient(_) => 2,
    };
    loop {
        attempts -= 1;
        let channel = match &through {
            Through::Fixed(c) if c.is_closed() => Err(RuntimeError::ChannelClosed),
            Through::Fixed(c) => Ok(c.clone()),
            Through::Resilient(r) => r.channel().await,
        };
        let channel = match channel {
            Ok(c) => c,
            Err(e) => {
                reset_client(&stream);
                return Err(e);
            }
        };
        match connect_through(node, &channel, outlet.clone(), guard.clone()).await {
            Ok((mailbox, remote)) => {
                return pump(node, stream, mailbox, remote, Some(channel)).await;
            }
            Err(e) if channel.is_closed() && attempts > 0 => {
                tracing::info!("portal inlet: {e}; trying a new channel");
            }
            Err(e) => {
                reset_client(&stream);
                return Err(e);
            }
        }
    }
}

/// Sends `CONNECT` through `channel` and waits for the outlet's answer (15 s at most, or until the channel
/// closes). Returns the connection's mailbox and the route to the outlet's connection worker.
async fn connect_through(
    node: &Node,
    channel: &ChannelHandle,
    outlet: Address,
    guard: Option<Arc<dyn OriginGuard>>,
) -> Result<(Mailbox, Route)> {
    // Replies are accepted only out of this channel, from its authenticated peer (and its guard's checks).
    let accepts = Accepts::flow(channel.flow()).from_peers([channel.peer()]);
    let accepts = match guard {
        Some(g) => accepts.with_guard(g),
        None => accepts,
    };
    let mut mailbox = node.register_with(node.unique_address("inlet"), DEFAULT_MAILBOX, accepts)?;
    let here = Route::from_addresses([mailbox.address().clone()]);
    // Confirmed: an outlet that does not admit this channel (its policy, a revoked or expired credential)
    // answers "undelivered" at once, and the client is reset without waiting for the answer's timeout.
    channel
        .send_confirmed(Route::from_addresses([outlet]), here, vec![CONNECT])
        .await?;
    let reply = tokio::select! {
        reply = tokio::time::timeout(Duration::from_secs(15), mailbox.recv()) => reply
            .map_err(|_| RuntimeError::Timeout("portal outlet did not answer"))?
            .ok_or(RuntimeError::ChannelClosed)?,
        _ = channel.closed() => return Err(channel_gone(channel)),
    };
    match reply.payload.first() {
        Some(&CONNECTED) => Ok((mailbox, reply.ret)),
        Some(&REFUSED) => Err(RuntimeError::Refused(
            String::from_utf8_lossy(&reply.payload[1..]).into_owned(),
        )),
        _ => Err(RuntimeError::Malformed("unexpected portal reply")),
    }
}

/// The error for a connection whose channel closed under it.
fn channel_gone(channel: &ChannelHandle) -> RuntimeError {
    if channel.was_reset() {
        RuntimeError::DeliveryFailed(
            "the portal's channel was reset: the outlet's node no longer knows it",
        )
    } else {
        RuntimeError::ChannelClosed
    }
}

/// Makes the client's connection end with a reset (an error), not an orderly close that could pass for
/// the end of the data.
// A zero linger never blocks on drop (the deprecation is about a non-zero one): the kernel sends RST.
#[allow(deprecated)]
fn reset_client(stream: &TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
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
    // The outlet's guard (credential, policy, revocation) also checks every message of its connections.
    let guard = accepts.guard().cloned();
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
            let accepts = match &guard {
                Some(g) => accepts.with_guard(g.clone()),
                None => accepts,
            };
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
                if let Err(e) = pump(&node, stream, worker, request.ret.clone(), None).await {
                    tracing::info!("portal outlet connection to {target} ended: {e}");
                }
            });
        }
    });
    Ok(())
}

/// Moves bytes both ways between a TCP stream and the far side of the portal until both directions end.
/// On the inlet side, `channel` is the channel the connection goes through: when it closes, the
/// connection is reset (the client sees an error instead of waiting forever).
async fn pump(
    node: &Node,
    stream: TcpStream,
    mut mailbox: Mailbox,
    remote: Route,
    channel: Option<ChannelHandle>,
) -> Result<()> {
    let watched = channel.clone();
    let channel_closed = async move {
        match watched {
            Some(c) => c.closed().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(channel_closed);
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let me = mailbox.address().clone();
    let here = Route::from_addresses([me.clone()]);
    let read_node = node.clone();
    let read_remote = remote.clone();
    // Returns true when the far side became unreachable (its channel or worker is gone).
    let mut outbound = tokio::spawn(async move {
        loop {
            // Read straight into the chunk's own buffer (not zeroed, not copied afterwards).
            let mut chunk = Vec::with_capacity(CHUNK + 1);
            chunk.push(DATA);
            match (&mut reader).take(CHUNK as u64).read_buf(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            // Waiting here is the backpressure that keeps a slow far side from growing our memory.
            let chunk = Message::new(read_remote.clone(), here.clone(), chunk);
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
    let mut result = Ok(());
    while !(outbound_done && inbound_done) {
        tokio::select! {
            () = &mut channel_closed => {
                result = Err(channel.as_ref().map_or(RuntimeError::ChannelClosed, channel_gone));
                break;
            }
            gone = &mut outbound, if !outbound_done => {
                outbound_done = true;
                if gone.unwrap_or(true) {
                    result = Err(RuntimeError::ChannelClosed);
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
    if result.is_err() {
        // End the client's connection with a reset: dropping the write half would send a FIN first,
        // which a client could take for the end of the data. The socket closes with the read half.
        reset_client(writer.as_ref());
        writer.forget();
    }
    outbound.abort();
    if !outbound_done {
        let _ = outbound.await;
    }
    let _ = node; // the worker's mailbox is dropped here, freeing its address
    result
}
