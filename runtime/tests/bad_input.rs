//! Bad input on a node's TCP listener: oversized frames, garbage bytes, a peer that stops reading. Each bad
//! connection is logged and dropped; the node keeps serving a well-behaved client throughout.

use latchkey_runtime::framing::{read_frame, write_frame};
use latchkey_runtime::services::start_echo;
use latchkey_runtime::transport::tcp::{self, TcpOptions};
use latchkey_runtime::{Accepts, Message, Node, Route};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Everything the runtime logs in this test binary.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("latchkey_runtime=info")
            .with_ansi(false)
            .with_writer(move || Capture(sink.clone()))
            .try_init();
        buf
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        std::io::stderr().write_all(b)?;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn wait_for_log(needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if String::from_utf8_lossy(&logs().lock().unwrap()).contains(needle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A well-behaved raw client: one routed message to "echo", one reply.
async fn echo_once(stream: &mut TcpStream, payload: &[u8]) -> Vec<u8> {
    let m = Message::new(Route::from(["echo"]), Route::from(["me"]), payload.to_vec());
    write_frame(stream, &m.encode().unwrap(), 1 << 20)
        .await
        .unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(5), read_frame(stream, 1 << 20))
        .await
        .expect("node stopped serving the good client")
        .unwrap()
        .unwrap();
    let reply = Message::decode(&frame).unwrap();
    assert_eq!(reply.onward, Route::from(["me"]));
    reply.payload
}

/// True when the node closed this connection.
async fn closed_by_node(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            _ => {}
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_connections_are_dropped_and_the_node_keeps_serving() {
    logs();
    let node = Node::new("server");
    let options = TcpOptions {
        max_frame: 64 * 1024,
        write_timeout: Duration::from_millis(500),
        ..TcpOptions::default()
    };
    let listener = tcp::listen(&node, "127.0.0.1:0", options).await.unwrap();
    // Deliberately open to plain TCP clients of this listener: the test speaks raw frames.
    start_echo(&node, "echo".into(), Accepts::flow(listener.flow)).unwrap();
    let addr = listener.local_addr;
    let mut good = TcpStream::connect(addr).await.unwrap();
    assert_eq!(echo_once(&mut good, b"one").await, b"one");

    // 1. An oversized frame: a declared length beyond the limit.
    let mut big = TcpStream::connect(addr).await.unwrap();
    big.write_all(&(10_000_000u32).to_be_bytes()).await.unwrap();
    assert!(
        closed_by_node(&mut big).await,
        "oversized frame did not close the connection"
    );
    assert!(wait_for_log("frame of 10000000 bytes exceeds the limit of 65536").await);
    assert_eq!(echo_once(&mut good, b"two").await, b"two");

    // 2. Garbage: a well-sized frame that is not a routed message.
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage.write_all(&[0, 0, 0, 12]).await.unwrap();
    garbage.write_all(b"GET / HTTP/1").await.unwrap();
    assert!(
        closed_by_node(&mut garbage).await,
        "garbage did not close the connection"
    );
    assert!(wait_for_log("dropping connection: malformed message").await);
    assert_eq!(echo_once(&mut good, b"three").await, b"three");

    // 3. A peer that asks for echoes and never reads them.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    let chunk = Message::new(
        Route::from(["echo"]),
        Route::from(["me"]),
        vec![7u8; 60_000],
    )
    .encode()
    .unwrap();
    let writer = tokio::spawn(async move {
        // Keeps asking (never reading) until the node hangs up, or gives up after a while.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if write_frame(&mut stalled, &chunk, 1 << 20).await.is_err() {
                return true;
            }
        }
        false
    });
    assert!(
        wait_for_log("peer stopped reading").await,
        "stalled reader not detected"
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(10), writer)
            .await
            .unwrap()
            .unwrap(),
        "the stalled connection was not dropped"
    );
    assert_eq!(echo_once(&mut good, b"four").await, b"four");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_back_off_when_the_peer_accepts_and_closes_at_once() {
    // A peer that accepts every connection and closes it at once: a successful connect must not reset the
    // reconnect delay, or the node opens a connection per loop turn (tens of thousands a second).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(s);
        }
    });
    let node = Node::new("client");
    let _link = tcp::connect(&node, &addr, TcpOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
    // 50 ms doubling to 2 s: about 7 connections in 3 s.
    assert!((3..=12).contains(&n), "{n} connections in 3 s");
}
