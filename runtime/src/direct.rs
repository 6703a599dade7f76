//! "Direct TCP": one secure channel straight over one TCP connection, no routing — the framing of
//! `facade/examples/direct_peer.rs` and the C/Python clients: every message (handshake 1..3, then transport
//! frames) is a 4-byte big-endian length and the bytes. The listener answers each message with
//! `"echo: " + message`.

use crate::error::{Result, RuntimeError};
use crate::framing::{read_frame, write_frame};
use crate::identity::LocalIdentity;
use latchkey_core::channel::{
    Handshake, SecureChannel, TrustPolicy, FRAME_OVERHEAD, MAX_PLAINTEXT_LEN,
};
use latchkey_core::identity::Identifier;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Largest message on a direct stream: a full transport frame.
pub const MAX_DIRECT_MESSAGE: usize = MAX_PLAINTEXT_LEN + FRAME_OVERHEAD;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client's channel over a direct TCP connection.
pub struct DirectChannel {
    stream: TcpStream,
    channel: SecureChannel,
}

impl std::fmt::Debug for DirectChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectChannel")
            .field("channel", &self.channel)
            .finish()
    }
}

impl DirectChannel {
    pub fn peer(&self) -> Identifier {
        self.channel.peer_identifier()
    }

    pub async fn send(&mut self, message: &[u8]) -> Result<()> {
        let frame = self.channel.encrypt_to_vec(message)?;
        write_frame(&mut self.stream, &frame, MAX_DIRECT_MESSAGE).await
    }

    pub async fn recv(&mut self) -> Result<Vec<u8>> {
        let frame = read_frame(&mut self.stream, MAX_DIRECT_MESSAGE)
            .await?
            .ok_or(RuntimeError::ChannelClosed)?;
        Ok(self.channel.decrypt_to_vec(&frame)?)
    }
}

async fn run_handshake(
    stream: &mut TcpStream,
    mut handshake: Handshake,
    limit: Duration,
) -> Result<SecureChannel> {
    let work =
        async {
            while !handshake.is_finished() {
                if handshake.is_my_turn() {
                    let m = handshake.write_message()?;
                    write_frame(stream, &m, MAX_DIRECT_MESSAGE).await?;
                } else {
                    let m = read_frame(stream, MAX_DIRECT_MESSAGE).await?.ok_or(
                        RuntimeError::Refused("connection closed during the handshake".into()),
                    )?;
                    handshake
                        .read_message(&m)
                        .map_err(crate::channel::map_core)?;
                }
            }
            Ok::<_, RuntimeError>(())
        };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| RuntimeError::Timeout("direct handshake"))??;
    Ok(handshake.finish()?)
}

/// Connects and completes the handshake as initiator.
pub async fn connect_direct(
    identity: &LocalIdentity,
    addr: &str,
    trust: Arc<dyn TrustPolicy>,
) -> Result<DirectChannel> {
    let mut stream = TcpStream::connect(crate::transport::tcp::resolve(addr).await?).await?;
    let handshake =
        Handshake::initiator(identity.handshake_config(trust, latchkey_core::Timestamp::now()))?;
    let channel = run_handshake(&mut stream, handshake, HANDSHAKE_TIMEOUT).await?;
    Ok(DirectChannel { stream, channel })
}

/// A running direct-TCP echo listener.
#[derive(Debug)]
pub struct DirectListener {
    pub local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DirectListener {
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// Limits of a direct listener (defaults in [`DirectOptions::default`]; docs/SECURITY.md, "Floods").
#[derive(Clone, Debug)]
pub struct DirectOptions {
    /// Connections served at once; more are closed at once with a log line.
    pub max_connections: usize,
    /// The handshake must complete within this long after the connection was accepted.
    pub handshake_timeout: Duration,
    /// An established connection on which no frame arrives for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for DirectOptions {
    fn default() -> Self {
        DirectOptions {
            max_connections: 256,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// Listens on `addr`, serving each connection (one task each) with the echo service, with the default
/// [`DirectOptions`].
pub async fn listen_direct(
    identity: LocalIdentity,
    addr: &str,
    trust: Arc<dyn TrustPolicy>,
) -> Result<DirectListener> {
    listen_direct_with(identity, addr, trust, DirectOptions::default()).await
}

/// [`listen_direct`] with explicit limits.
pub async fn listen_direct_with(
    identity: LocalIdentity,
    addr: &str,
    trust: Arc<dyn TrustPolicy>,
    options: DirectOptions,
) -> Result<DirectListener> {
    let listener = TcpListener::bind(crate::transport::tcp::resolve(addr).await?).await?;
    let local_addr = listener.local_addr()?;
    let active = Arc::new(tokio::sync::Semaphore::new(options.max_connections));
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let Ok(permit) = active.clone().try_acquire_owned() else {
                tracing::warn!(
                    "direct {peer}: refused, {} connections already open",
                    options.max_connections
                );
                continue;
            };
            let identity = identity.clone();
            let trust = trust.clone();
            let limits = options.clone();
            tokio::spawn(async move {
                match serve_echo(stream, &identity, trust, &limits).await {
                    Ok(()) => tracing::info!("direct {peer}: closed"),
                    Err(e) => tracing::warn!("direct {peer}: connection dropped: {e}"),
                }
                drop(permit);
            });
        }
    });
    Ok(DirectListener { local_addr, task })
}

async fn serve_echo(
    mut stream: TcpStream,
    identity: &LocalIdentity,
    trust: Arc<dyn TrustPolicy>,
    limits: &DirectOptions,
) -> Result<()> {
    let handshake =
        Handshake::responder(identity.handshake_config(trust, latchkey_core::Timestamp::now()))?;
    let mut channel = run_handshake(&mut stream, handshake, limits.handshake_timeout).await?;
    tracing::info!("direct: channel with {}", channel.peer_identifier());
    while let Some(frame) = tokio::time::timeout(
        limits.idle_timeout,
        read_frame(&mut stream, MAX_DIRECT_MESSAGE),
    )
    .await
    .map_err(|_| RuntimeError::Timeout("direct connection idle"))??
    {
        let message = channel.decrypt_to_vec(&frame)?;
        let mut reply = b"echo: ".to_vec();
        reply.extend_from_slice(&message);
        let out = channel.encrypt_to_vec(&reply)?;
        write_frame(&mut stream, &out, MAX_DIRECT_MESSAGE).await?;
    }
    Ok(())
}
