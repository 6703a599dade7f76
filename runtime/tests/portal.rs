//! A TCP portal through a secure channel carrying an unmodified TCP echo server: 100 MB, byte-identical,
//! and closing either end closes the other.

mod common;

use common::{any_peer, doorbell_and_phone, init_logs};
use latchkey_runtime::portal::{create_inlet, create_outlet};
use latchkey_runtime::Accepts;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A plain TCP echo server that knows nothing about Latchkey.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Portal from a phone-side inlet to `target` on the doorbell, through a secure channel over TCP.
async fn portal_to(target: SocketAddr) -> SocketAddr {
    init_logs();
    let nodes = doorbell_and_phone(any_peer()).await;
    create_outlet(
        &nodes.doorbell,
        "outlet".into(),
        target.to_string(),
        Accepts::flow(nodes.listener.flow).from_peers([nodes.phone_id.identifier()]),
    )
    .unwrap();
    let channel = nodes.channel(any_peer()).await;
    let inlet = create_inlet(&nodes.phone, "127.0.0.1:0", &channel, "outlet".into())
        .await
        .unwrap();
    std::mem::forget((nodes, channel));
    inlet.local_addr
}

/// Deterministic pseudo-random bytes.
fn pattern(offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let x = (offset + i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        *b = (x >> 56) as u8 ^ (x >> 17) as u8;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_through_a_portal_byte_identical() {
    let inlet = portal_to(echo_server().await).await;
    let stream = TcpStream::connect(inlet).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    const TOTAL: u64 = 100 * 1024 * 1024;
    let sender = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        while sent < TOTAL {
            let n = buf.len().min((TOTAL - sent) as usize);
            pattern(sent, &mut buf[..n]);
            writer.write_all(&buf[..n]).await.unwrap();
            sent += n as u64;
        }
        // Half-close: the echo server sees EOF through the portal, closes, and we see EOF back.
        writer.shutdown().await.unwrap();
    });
    let mut received = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut expected = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(30), reader.read(&mut buf))
            .await
            .expect("portal stalled")
            .unwrap();
        if n == 0 {
            break;
        }
        pattern(received, &mut expected[..n]);
        assert!(
            buf[..n] == expected[..n],
            "bytes differ at offset {received}"
        );
        received += n as u64;
    }
    sender.await.unwrap();
    assert_eq!(received, TOTAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_closing_closes_the_client() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"bye").await.unwrap();
        // Dropping closes the server's side entirely.
    });
    let inlet = portal_to(target).await;
    let mut client = TcpStream::connect(inlet).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut got))
        .await
        .expect("client never saw the server close")
        .unwrap();
    assert_eq!(got, b"bye");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_closing_closes_the_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got).await;
        let _ = tx.send(got);
    });
    let inlet = portal_to(target).await;
    let mut client = TcpStream::connect(inlet).await.unwrap();
    client.write_all(b"hello server").await.unwrap();
    drop(client);
    let got = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("server never saw the client close")
        .unwrap();
    assert_eq!(got, b"hello server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_stalls_the_server_instead_of_filling_memory() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    // A server that writes as fast as it can, forever, counting what the portal accepted from it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let chunk = vec![0x5au8; 64 * 1024];
        while s.write_all(&chunk).await.is_ok() {
            counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
    });
    let inlet = portal_to(target).await;
    let client = TcpStream::connect(inlet).await.unwrap();
    // The client never reads. Look for a 2-second window in which the server could write nothing more
    // (a loaded machine may pause the flow briefly; without backpressure it would never stop for good).
    let mut stalled_at = None;
    for _ in 0..10 {
        let before = written.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = written.load(Ordering::SeqCst);
        if after == before && after > 0 {
            stalled_at = Some(after);
            break;
        }
    }
    let stalled_at = stalled_at.expect("the server kept writing: nothing pushed back");
    // Socket buffers on both ends plus the bounded queues and channel windows in between.
    assert!(
        stalled_at < 96 * 1024 * 1024,
        "{stalled_at} bytes buffered before backpressure"
    );
    assert!(stalled_at > 0);
    eprintln!("server stalled after {stalled_at} bytes");
    drop(client);
}
