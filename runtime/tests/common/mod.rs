//! Shared test fixtures: nodes on loopback, a cuttable TCP proxy, an on-path proxy that sees and rewrites
//! routed messages, a lossy UDP proxy, and a collecting sink.
#![allow(dead_code)]

use latchkey_runtime::framing::{read_frame, write_frame};
use latchkey_runtime::relay::{
    forwarder_address, register_at_relay, start_relay, Inspector, RelayHandle, RelayOptions,
};
use latchkey_runtime::services::start_echo;
use latchkey_runtime::transport::tcp::{self, TcpOptions};
use latchkey_runtime::{
    create_channel, create_listener, Accepts, Address, ChannelHandle, ChannelOptions,
    LocalIdentity, Mailbox, Message, Node, Route,
};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Receives the next message or fails the test after `secs`.
pub async fn recv(mailbox: &mut Mailbox, secs: u64) -> Message {
    tokio::time::timeout(Duration::from_secs(secs), mailbox.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("mailbox closed")
}

/// A worker that records every payload it receives.
pub fn sink(node: &Node, address: &str) -> Arc<Mutex<Vec<Vec<u8>>>> {
    let mut mailbox = node.register(Address::from(address)).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let store = got.clone();
    tokio::spawn(async move {
        while let Some(m) = mailbox.recv().await {
            store.lock().unwrap().push(m.payload);
        }
    });
    got
}

/// A TCP proxy whose live connections can be cut at will (the listener keeps accepting).
/// A man in the middle on one TCP connection to `target`: every routed message going up (client to server)
/// passes through `up`, which may rewrite it; every message coming down is shown to `down`. Returns the
/// address the client connects to.
pub async fn message_proxy(
    target: SocketAddr,
    mut up: impl FnMut(&mut Message) + Send + 'static,
    mut down: impl FnMut(&Message) + Send + 'static,
) -> SocketAddr {
    const MAX_FRAME: usize = 1 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = TcpStream::connect(target).await.unwrap();
        let (mut client_r, mut client_w) = client.into_split();
        let (mut server_r, mut server_w) = server.into_split();
        tokio::spawn(async move {
            while let Ok(Some(frame)) = read_frame(&mut client_r, MAX_FRAME).await {
                let mut m = Message::decode(&frame).unwrap();
                up(&mut m);
                let frame = m.encode().unwrap();
                if write_frame(&mut server_w, &frame, MAX_FRAME).await.is_err() {
                    return;
                }
            }
        });
        while let Ok(Some(frame)) = read_frame(&mut server_r, MAX_FRAME).await {
            down(&Message::decode(&frame).unwrap());
            if write_frame(&mut client_w, &frame, MAX_FRAME).await.is_err() {
                return;
            }
        }
    });
    addr
}

pub struct CuttableProxy {
    pub addr: SocketAddr,
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl CuttableProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let list = connections.clone();
        let accepted: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut client, _) = listener.accept().await.unwrap();
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let task = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                list.lock().unwrap().push(task);
            }
        });
        CuttableProxy {
            addr,
            accepted,
            connections,
        }
    }

    /// Drops every live connection (both sockets close).
    pub fn cut(&self) -> usize {
        let tasks: Vec<_> = self.connections.lock().unwrap().drain(..).collect();
        let n = tasks.len();
        for t in tasks {
            t.abort();
        }
        n
    }
}

/// Counters of what a [`LossyUdpProxy`] did.
#[derive(Debug, Default)]
pub struct LossStats {
    pub forwarded: usize,
    pub dropped: usize,
    pub duplicated: usize,
    pub reordered: usize,
}

/// A UDP proxy between one client and `server` that drops, duplicates and reorders datagrams
/// deterministically (a fixed-seed generator), in both directions.
pub struct LossyUdpProxy {
    pub addr: SocketAddr,
    pub stats: Arc<Mutex<LossStats>>,
    task: JoinHandle<()>,
}

impl LossyUdpProxy {
    pub async fn start(server: SocketAddr, drop_pct: u32, dup_pct: u32, reorder_pct: u32) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let stats: Arc<Mutex<LossStats>> = Arc::default();
        let s = stats.clone();
        let task = tokio::spawn(async move {
            let mut client: Option<SocketAddr> = None;
            let mut held: Option<(Vec<u8>, SocketAddr)> = None;
            let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
            let mut buf = vec![0u8; 70_000];
            loop {
                let (len, from) = socket.recv_from(&mut buf).await.unwrap();
                let to = if from == server {
                    match client {
                        Some(c) => c,
                        None => continue,
                    }
                } else {
                    client = Some(from);
                    server
                };
                let packet = buf[..len].to_vec();
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let roll = (seed % 100) as u32;
                if roll < drop_pct {
                    s.lock().unwrap().dropped += 1;
                    continue;
                }
                if roll < drop_pct + reorder_pct && held.is_none() {
                    // Sent after the next datagram.
                    s.lock().unwrap().reordered += 1;
                    held = Some((packet, to));
                    continue;
                }
                let _ = socket.send_to(&packet, to).await;
                s.lock().unwrap().forwarded += 1;
                if roll < drop_pct + reorder_pct + dup_pct {
                    let _ = socket.send_to(&packet, to).await;
                    s.lock().unwrap().duplicated += 1;
                }
                if let Some((p, t)) = held.take() {
                    let _ = socket.send_to(&p, t).await;
                    s.lock().unwrap().forwarded += 1;
                }
            }
        });
        LossyUdpProxy { addr, stats, task }
    }

    /// Stops forwarding entirely (the path goes dark). Waits until the forwarding task has ended: `abort`
    /// alone only takes effect at the task's next await, so a datagram already in hand could still go through.
    pub async fn stop(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

/// Channel options that trust exactly these identifiers.
pub fn trusting(
    ids: impl IntoIterator<Item = latchkey_core::identity::Identifier>,
) -> ChannelOptions {
    ChannelOptions::default()
        .with_trust(Arc::new(latchkey_core::channel::TrustIdentifiers::new(ids)))
}

/// Channel options that trust any authenticated identity (explicitly).
pub fn any_peer() -> ChannelOptions {
    ChannelOptions::default().trust_any()
}

/// A relay node as `latchkey relay run` builds it: a relay node with a channel listener `api` (any identity)
/// and the registration service `relay`, on loopback TCP.
pub struct Relay {
    pub node: Node,
    pub identity: LocalIdentity,
    pub addr: String,
    pub handle: RelayHandle,
}

pub async fn start_relay_node(configure: impl FnOnce(&mut RelayOptions)) -> Relay {
    let node = Node::relay("relay");
    let identity = LocalIdentity::create().unwrap();
    let listener = create_listener(&node, &identity, "api".into(), any_peer()).unwrap();
    let mut options = RelayOptions::new(listener.flow);
    configure(&mut options);
    let handle = start_relay(&node, "relay".into(), options).unwrap();
    let tcp = tcp::listen(&node, "127.0.0.1:0", TcpOptions::default())
        .await
        .unwrap();
    let addr = tcp.local_addr.to_string();
    std::mem::forget(tcp);
    Relay {
        node,
        identity,
        addr,
        handle,
    }
}

/// Registers `name` at the relay through a secure channel, as `identity`; returns that channel. The node's
/// listener `api` (if any) is opened to the channel so peers reach it through the relay.
pub async fn register_securely(
    node: &Node,
    identity: &LocalIdentity,
    relay_addr: &str,
    name: &str,
    refresh: Duration,
) -> latchkey_runtime::Result<ChannelHandle> {
    let link = tcp::connect(node, relay_addr, TcpOptions::default()).await?;
    let to_relay = create_channel(
        node,
        identity,
        Route::from_addresses([link, "api".into()]),
        any_peer(),
    )
    .await?;
    register_at_relay(node, &to_relay, "relay".into(), name, refresh).await?;
    let _ = node.allow(&"api".into(), to_relay.flow());
    Ok(to_relay)
}

/// phone -> relay -> doorbell: the doorbell registered as "doorbell" through a channel, with a listener
/// `api` that trusts anyone and an echo service open only to the phone's channels; the phone connected to
/// the relay. `forwarded` records every payload the relay forwards; `flip_next` makes it flip a bit in the
/// next data-sized frame to the doorbell.
pub struct World {
    pub relay: Relay,
    pub phone: Node,
    pub doorbell: Node,
    pub phone_id: LocalIdentity,
    pub doorbell_id: LocalIdentity,
    pub phone_link: Address,
    pub to_doorbell: Route,
    pub forwarded: Arc<Mutex<Vec<Vec<u8>>>>,
    pub flip_next: Arc<std::sync::atomic::AtomicUsize>,
    pub listener: latchkey_runtime::ListenerHandle,
    pub doorbell_to_relay: ChannelHandle,
}

pub async fn world() -> World {
    use std::sync::atomic::Ordering;
    init_logs();
    let forwarded: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let flip_next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (seen, flip) = (forwarded.clone(), flip_next.clone());
    let inspector: Inspector = Arc::new(move |name: &str, payload: &mut Vec<u8>| {
        seen.lock().unwrap().push(payload.clone());
        // Flip one bit inside the ciphertext of a data-sized frame heading to the doorbell, when asked. An
        // ACK with its reset token is 66 bytes (0x02, 8-byte header, 25 + 16 bytes of plaintext, 16-byte
        // tag); the DATA frames the tests tamper with are longer.
        if name == "doorbell" && payload.len() > 80 && flip.load(Ordering::SeqCst) > 0 {
            flip.fetch_sub(1, Ordering::SeqCst);
            let i = payload.len() / 2;
            payload[i] ^= 0x01;
        }
    });
    let relay = start_relay_node(|o| o.inspector = Some(inspector)).await;

    let doorbell = Node::new("doorbell");
    let doorbell_id = LocalIdentity::create().unwrap();
    let phone_id = LocalIdentity::create().unwrap();
    let listener = create_listener(&doorbell, &doorbell_id, "api".into(), any_peer()).unwrap();
    let doorbell_to_relay = register_securely(
        &doorbell,
        &doorbell_id,
        &relay.addr,
        "doorbell",
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    start_echo(
        &doorbell,
        "echo".into(),
        Accepts::flow(listener.flow).from_peers([phone_id.identifier()]),
    )
    .unwrap();

    let phone = Node::new("phone");
    let phone_link = tcp::connect(&phone, &relay.addr, TcpOptions::default())
        .await
        .unwrap();
    let to_doorbell = Route::from_addresses([
        phone_link.clone(),
        forwarder_address("doorbell").unwrap(),
        "api".into(),
    ]);
    World {
        relay,
        phone,
        doorbell,
        phone_id,
        doorbell_id,
        phone_link,
        to_doorbell,
        forwarded,
        flip_next,
        listener,
        doorbell_to_relay,
    }
}

/// A mailbox on `node` open to the messages that come out of `channel` (replies through it).
pub fn reply_box(node: &Node, address: &str, channel: &ChannelHandle) -> Mailbox {
    node.register_with(
        Address::from(address),
        64,
        Accepts::flow(channel.flow()).from_peers([channel.peer()]),
    )
    .unwrap()
}

/// Admission that takes `n` handshakes from one source at once, without cookies: for tests that open many
/// channels from one node.
pub fn admitting(n: usize) -> latchkey_core::route::AdmissionConfig {
    latchkey_core::route::AdmissionConfig {
        max_pending: n,
        cookie_threshold: n,
        per_source_pending: n,
        per_source_rate: 1_000_000,
        per_source_burst: 1_000_000,
        ..Default::default()
    }
}

/// A doorbell node on loopback TCP with a channel listener `api` (made with `options`), and a phone node
/// connected to it.
pub struct DoorbellAndPhone {
    pub doorbell: Node,
    pub doorbell_tcp: tcp::TcpListenerHandle,
    pub listener: latchkey_runtime::ListenerHandle,
    pub phone: Node,
    pub phone_id: LocalIdentity,
    /// The phone's connection to the doorbell.
    pub link: Address,
}

pub async fn doorbell_and_phone(options: ChannelOptions) -> DoorbellAndPhone {
    let doorbell = Node::new("doorbell");
    let doorbell_id = LocalIdentity::create().unwrap();
    let doorbell_tcp = tcp::listen(&doorbell, "127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let listener = create_listener(&doorbell, &doorbell_id, "api".into(), options).unwrap();
    let phone = Node::new("phone");
    let link = tcp::connect(
        &phone,
        &doorbell_tcp.local_addr.to_string(),
        Default::default(),
    )
    .await
    .unwrap();
    DoorbellAndPhone {
        doorbell,
        doorbell_tcp,
        listener,
        phone,
        phone_id: LocalIdentity::create().unwrap(),
        link,
    }
}

impl DoorbellAndPhone {
    /// Opens one channel from the phone to the doorbell's `api`.
    pub async fn channel(&self, options: ChannelOptions) -> ChannelHandle {
        let route = Route::from_addresses([self.link.clone(), "api".into()]);
        create_channel(&self.phone, &self.phone_id, route, options)
            .await
            .expect("channel opened")
    }

    /// Opens `count` channels from the phone to the doorbell's `api`, 32 handshakes in flight, each with
    /// `options()`.
    pub async fn open_channels(
        &self,
        count: usize,
        options: impl Fn() -> ChannelOptions,
    ) -> Vec<ChannelHandle> {
        let mut opening = tokio::task::JoinSet::new();
        let mut channels = Vec::with_capacity(count);
        for _ in 0..count {
            if opening.len() >= 32 {
                channels.push(opening.join_next().await.unwrap().unwrap());
            }
            let (phone, id) = (self.phone.clone(), self.phone_id.clone());
            let route = Route::from_addresses([self.link.clone(), "api".into()]);
            let options = options();
            opening.spawn(async move {
                create_channel(&phone, &id, route, options)
                    .await
                    .expect("channel opened")
            });
        }
        while let Some(c) = opening.join_next().await {
            channels.push(c.unwrap());
        }
        channels
    }
}
