//! TCP transport: each routed message is one length-prefixed frame. The listening side gives every accepted
//! connection its own worker (`tcp-in#n`); the connecting side gets one worker (`tcp-out#n`) whose address
//! stays the same across reconnections, so routes (and the secure channels over them) outlive a dropped
//! connection. A connection that sends an oversized or malformed frame, or stops reading for longer than
//! the write timeout, is logged and dropped; every other connection is unaffected.

use crate::error::{Result, RuntimeError};
use crate::framing::{message_head, write_message, MessageReader};
use crate::message::{Address, Message};
use crate::node::{Mailbox, Node, DEFAULT_MAILBOX};
use crate::origin::{FlowId, Origin};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Default largest frame accepted or sent.
pub const DEFAULT_MAX_FRAME: usize = 256 * 1024;

/// Sees (and, for demonstrations and tests, may alter) every message a transport is about to write, with
/// the address of the connection worker writing it.
pub type WireTap = Arc<dyn Fn(&Address, &mut Message) + Send + Sync>;

/// Transport tuning.
#[derive(Clone)]
pub struct TcpOptions {
    pub max_frame: usize,
    /// A write that makes no progress for this long means the peer stopped reading: drop the connection.
    pub write_timeout: Duration,
    /// Delay before reconnecting after a connection ended or an attempt failed; doubles up to
    /// `max_reconnect_delay`, and starts again from here only after a connection on which the peer sent a
    /// message, or that lived at least `max_reconnect_delay`.
    pub reconnect_delay: Duration,
    pub max_reconnect_delay: Duration,
    /// Most connections a listener serves at once; more are refused (closed) with a log line.
    pub max_connections: usize,
    /// An accepted connection must deliver its first complete frame within this long, or it is closed
    /// (connections that never speak, or trickle a frame, cannot hold a listener's slots).
    pub read_timeout: Duration,
    /// An accepted connection on which no complete frame arrives for this long is closed. A live channel's
    /// initiator sends a keepalive every 5 s, relay registrations refresh every 2 s.
    pub idle_timeout: Duration,
    /// Optional tap on outgoing messages (the doorbell demo shows what a relay forwards with it).
    pub tap: Option<WireTap>,
}

impl std::fmt::Debug for TcpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpOptions")
            .field("max_frame", &self.max_frame)
            .field("write_timeout", &self.write_timeout)
            .field("max_connections", &self.max_connections)
            .field("read_timeout", &self.read_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("tap", &self.tap.is_some())
            .finish()
    }
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            max_frame: DEFAULT_MAX_FRAME,
            write_timeout: Duration::from_secs(10),
            reconnect_delay: Duration::from_millis(50),
            max_reconnect_delay: Duration::from_secs(2),
            max_connections: 1024,
            read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            tap: None,
        }
    }
}

/// Parses `host:port`, resolving names; a clear `BadAddress` otherwise.
pub async fn resolve(addr: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|_| RuntimeError::BadAddress(addr.to_string()))?
        .next()
        .ok_or_else(|| RuntimeError::BadAddress(addr.to_string()))
}

/// A running TCP listener.
#[derive(Debug)]
pub struct TcpListenerHandle {
    pub local_addr: SocketAddr,
    /// The flow of every message arriving on this listener's connections.
    pub flow: FlowId,
    task: tokio::task::JoinHandle<()>,
}

impl TcpListenerHandle {
    /// Stops accepting; existing connections continue.
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// Accepts connections on `addr`; messages arriving on them are delivered on `node`.
pub async fn listen(node: &Node, addr: &str, options: TcpOptions) -> Result<TcpListenerHandle> {
    let listener = TcpListener::bind(resolve(addr).await?).await?;
    let local_addr = listener.local_addr()?;
    let flow = FlowId::random();
    let node = node.clone();
    let active = Arc::new(tokio::sync::Semaphore::new(options.max_connections));
    let task = tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("tcp listener {local_addr}: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = active.clone().try_acquire_owned() else {
                tracing::warn!(
                    "tcp {peer}: refused, {} connections already open",
                    options.max_connections
                );
                continue;
            };
            let address = node.unique_address("tcp-in");
            let mailbox = match node.register_producer(
                address.clone(),
                DEFAULT_MAILBOX,
                node.transport_accepts(),
                flow,
            ) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("tcp {peer}: {e}");
                    continue;
                }
            };
            tracing::debug!("tcp {peer}: accepted as {address}");
            let node = node.clone();
            let options = options.clone();
            let running = node.transport_running();
            tokio::spawn(async move {
                let _running = running;
                let mut mailbox = mailbox;
                let reason = serve_connection(
                    &node,
                    stream,
                    &mut mailbox,
                    flow,
                    &options,
                    &Arc::default(),
                    true,
                )
                .await;
                tracing::info!("tcp {peer} ({address}): connection closed: {reason}");
                drop(permit);
            });
        }
    });
    Ok(TcpListenerHandle {
        local_addr,
        flow,
        task,
    })
}

/// Connects to `addr` and returns the address of a worker that carries messages there. The worker
/// reconnects when the connection drops, keeping its address; messages queued meanwhile wait in its
/// bounded mailbox. The first connection must succeed (an unreachable peer is an error here).
pub async fn connect(node: &Node, addr: &str, options: TcpOptions) -> Result<Address> {
    let target = resolve(addr).await?;
    let stream = TcpStream::connect(target).await?;
    let address = node.unique_address("tcp-out");
    let flow = FlowId::random();
    let mut mailbox = node.register_producer(
        address.clone(),
        DEFAULT_MAILBOX,
        node.transport_accepts(),
        flow,
    )?;
    let node = node.clone();
    let worker = address.clone();
    let running = node.transport_running();
    tokio::spawn(async move {
        let _running = running;
        let mut stream = Some(stream);
        let mut delay = options.reconnect_delay;
        loop {
            let current = match stream.take() {
                Some(s) => s,
                None => match TcpStream::connect(target).await {
                    Ok(s) => {
                        tracing::info!("tcp {target} ({worker}): reconnected");
                        s
                    }
                    Err(e) => {
                        tracing::debug!("tcp {target} ({worker}): reconnect failed: {e}");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(options.max_reconnect_delay);
                        continue;
                    }
                },
            };
            let started = tokio::time::Instant::now();
            let heard = Arc::new(AtomicBool::new(false));
            let reason =
                serve_connection(&node, current, &mut mailbox, flow, &options, &heard, false).await;
            if reason.is_shutdown() {
                return;
            }
            // Back off whatever ended the connection: a peer that accepts and closes at once must not get
            // a connection per loop turn. A connection that worked (the peer sent a message on it) or lived
            // a while is replaced at once, and the delay starts again from the beginning.
            if heard.load(Ordering::Relaxed) || started.elapsed() >= options.max_reconnect_delay {
                delay = options.reconnect_delay;
                tracing::info!("tcp {target} ({worker}): connection lost ({reason}); reconnecting");
                continue;
            }
            tracing::info!(
                "tcp {target} ({worker}): connection lost ({reason}); reconnecting in {delay:?}"
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(options.max_reconnect_delay);
        }
    });
    Ok(address)
}

/// Why a connection ended.
#[derive(Debug)]
enum Closed {
    ByPeer,
    Error(RuntimeError),
    StoppedReading,
    /// An accepted connection sent no complete frame within the read or idle timeout.
    Silent,
    /// The worker's address was dropped: nothing more to send, ever.
    Shutdown,
}

impl Closed {
    fn is_shutdown(&self) -> bool {
        matches!(self, Closed::Shutdown)
    }
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::ByPeer => write!(f, "peer closed the connection"),
            Closed::Error(e) => write!(f, "{e}"),
            Closed::StoppedReading => write!(f, "peer stopped reading (write timed out)"),
            Closed::Silent => write!(f, "no complete frame within the read or idle timeout"),
            Closed::Shutdown => write!(f, "worker stopped"),
        }
    }
}

/// Runs one connection: a reader task delivering inbound frames, and this task writing outbound ones.
async fn serve_connection(
    node: &Node,
    stream: TcpStream,
    mailbox: &mut Mailbox,
    flow: FlowId,
    options: &TcpOptions,
    heard: &Arc<AtomicBool>,
    accepted: bool,
) -> Closed {
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    let (done_tx, mut done_rx) = oneshot::channel::<Closed>();
    let here = mailbox.address().clone();
    let reader_node = node.clone();
    let max = options.max_frame;
    let heard_by_reader = heard.clone();
    // Only accepted connections are timed: the first frame within `read_timeout`, then one at least every
    // `idle_timeout`. (A connecting side reads what its peer sends, whenever it sends.)
    let (first_wait, idle_wait) = if accepted {
        (Some(options.read_timeout), Some(options.idle_timeout))
    } else {
        (None, None)
    };
    let reader_task = tokio::spawn(async move {
        let mut reader = MessageReader::new(reader);
        let mut wait = first_wait;
        let result = loop {
            let next = match wait {
                Some(limit) => match tokio::time::timeout(limit, reader.read_message(max)).await {
                    Ok(r) => r,
                    Err(_) => break Closed::Silent,
                },
                None => reader.read_message(max).await,
            };
            wait = idle_wait;
            match next {
                Ok(None) => break Closed::ByPeer,
                Err(e) => break Closed::Error(e),
                Ok(Some(mut message)) => {
                    heard_by_reader.store(true, Ordering::Relaxed);
                    message.ret = message.ret.prepend(here.clone());
                    let origin = Origin::Transport {
                        connection: here.clone(),
                        remote: None,
                        flow,
                    };
                    if let Err(e) = reader_node.deliver(message.with_origin(origin)).await {
                        tracing::debug!("tcp ({here}): inbound message dropped: {e}");
                    }
                }
            }
        };
        let _ = done_tx.send(result);
    });
    let result = loop {
        tokio::select! {
            reason = &mut done_rx => break reason.unwrap_or(Closed::ByPeer),
            next = mailbox.recv() => {
                let Some(mut message) = next else { break Closed::Shutdown };
                message.onward.pop_front();
                if let Some(tap) = &options.tap {
                    tap(mailbox.address(), &mut message);
                }
                // The routes are encoded in front of the payload, which is written from where it is.
                let head = match message_head(&message) {
                    Ok(h) => h,
                    Err(e) => { tracing::warn!("tcp: cannot send {message:?}: {e}"); continue; }
                };
                let len = head.len() - 4 + message.payload.len();
                if len > options.max_frame {
                    tracing::warn!("tcp: not sending a {len}-byte frame (limit {})", options.max_frame);
                    continue;
                }
                match tokio::time::timeout(options.write_timeout, write_message(&mut writer, head, &message.payload)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => break Closed::Error(e),
                    Err(_) => break Closed::StoppedReading,
                }
            }
        }
    };
    reader_task.abort();
    if let Closed::Error(e) = &result {
        match e {
            RuntimeError::FrameTooLarge { .. } | RuntimeError::Malformed(_) => {
                tracing::warn!("tcp ({}): dropping connection: {e}", mailbox.address())
            }
            _ => {}
        }
    }
    if matches!(result, Closed::StoppedReading) {
        tracing::warn!(
            "tcp ({}): dropping connection: peer stopped reading",
            mailbox.address()
        );
    }
    result
}
