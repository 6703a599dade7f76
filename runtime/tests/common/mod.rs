//! Shared test fixtures: nodes on loopback, a cuttable TCP proxy, a lossy UDP proxy, and a collecting sink.
#![allow(dead_code)]

use latchkey_runtime::{Address, Mailbox, Message, Node};
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
