//! Recovery on real loopback sockets: a node "process" is a node on its own tokio runtime, killed by
//! shutting that runtime down (every task and socket goes at once, as with `kill -9`) and restarted as a
//! new node on the same port with the same identity. Checked: a restarted node answers frames for the
//! channels it forgot with a stateless reset that ends them at once with a clear error (and a reset with
//! the wrong token ends nothing); a registration survives a relay restart and the name is reachable again
//! within seconds; a resilient portal inlet serves new connections after its outlet's node restarted, and
//! a download in flight ends with an error instead of hanging.

mod common;

use common::{any_peer, init_logs, reply_box};
use latchkey_runtime::channel::ResilientChannel;
use latchkey_runtime::portal::{create_inlet_resilient, create_outlet};
use latchkey_runtime::relay::{
    forwarder_address, register_at_relay_resilient, start_relay, RelayOptions,
};
use latchkey_runtime::services::start_echo;
use latchkey_runtime::transport::tcp::{self, TcpOptions};
use latchkey_runtime::{
    create_channel, create_listener, Accepts, Address, LocalIdentity, Message, Node, Route,
    RuntimeError,
};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A node on its own runtime: killing it drops every task and socket at once.
struct Process {
    rt: Option<tokio::runtime::Runtime>,
}

impl Process {
    async fn start<T: Send + 'static>(
        setup: impl Future<Output = T> + Send + 'static,
    ) -> (Process, T) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let value = rt.spawn(setup).await.unwrap();
        (Process { rt: Some(rt) }, value)
    }

    fn kill(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A node with listener `api` (any peer) and `echo` open to its channels, on TCP `addr`.
async fn echo_node(identity: LocalIdentity, addr: String) -> (Node, String) {
    let node = Node::new("b");
    let listener = create_listener(&node, &identity, "api".into(), any_peer()).unwrap();
    start_echo(&node, "echo".into(), Accepts::flow(listener.flow)).unwrap();
    let tcp = tcp::listen(&node, &addr, TcpOptions::default())
        .await
        .unwrap();
    let addr = tcp.local_addr.to_string();
    std::mem::forget(tcp);
    std::mem::forget(listener);
    (node, addr)
}

/// Binds the same port again (the old socket may take a moment to go).
async fn restart<T: Send + 'static, F: Future<Output = T> + Send + 'static>(
    make: impl Fn() -> F,
) -> (Process, T) {
    for _ in 0..50 {
        let attempt = make();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        match rt.spawn(attempt).await {
            Ok(v) => return (Process { rt: Some(rt) }, v),
            Err(_) => {
                rt.shutdown_background();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!("could not restart on the same port");
}

#[tokio::test]
async fn a_restarted_node_resets_the_channels_it_forgot_and_a_forged_reset_ends_nothing() {
    init_logs();
    let b_id = LocalIdentity::create().unwrap();
    let (mut b, (b_node, addr)) =
        Process::start(echo_node(b_id.clone(), "127.0.0.1:0".into())).await;

    let a = Node::new("a");
    let link = tcp::connect(&a, &addr, TcpOptions::default())
        .await
        .unwrap();
    let channel = create_channel(
        &a,
        &LocalIdentity::create().unwrap(),
        Route::from_addresses([link, "api".into()]),
        any_peer(),
    )
    .await
    .unwrap();
    let mut inbox = reply_box(&a, "inbox", &channel);
    channel
        .send_confirmed(Route::from(["echo"]), Route::from(["inbox"]), b"1".to_vec())
        .await
        .unwrap();
    common::recv(&mut inbox, 5).await;

    // Whoever is on the path (here: B's own node, which knows A's decryptor and the connection) sends
    // resets with wrong tokens: A's channel ignores them.
    let table = |n: &Node, prefix: &str| -> Vec<Address> {
        n.flow_table()
            .into_iter()
            .map(|(a, _)| a)
            .filter(|a| a.as_str().starts_with(prefix))
            .collect()
    };
    let a_dec = table(&a, "sc-dec#").pop().unwrap();
    let b_conn = table(&b_node, "tcp-in#").pop().unwrap();
    for token in [[0u8; 16], [0xff; 16]] {
        let mut payload = vec![latchkey_core::route::KIND_RESET];
        payload.extend_from_slice(&token);
        b_node
            .send(Message::new(
                Route::from_addresses([b_conn.clone(), a_dec.clone()]),
                Route::new(),
                payload,
            ))
            .await
            .unwrap();
    }
    channel
        .send_confirmed(Route::from(["echo"]), Route::from(["inbox"]), b"2".to_vec())
        .await
        .expect("forged resets end nothing");
    common::recv(&mut inbox, 5).await;
    assert!(!channel.is_closed());

    // B is killed and restarted on the same port, same identity: it no longer knows the channel.
    b.kill();
    let (_b2, (b2_node, _)) = restart(|| echo_node(b_id.clone(), addr.clone())).await;
    let started = Instant::now();
    let e = channel
        .send_confirmed(Route::from(["echo"]), Route::from(["inbox"]), b"3".to_vec())
        .await
        .expect_err("the restarted node does not know the channel");
    let took = started.elapsed();
    assert!(
        matches!(e, RuntimeError::DeliveryFailed(why) if why.contains("reset")),
        "a clear error: {e}"
    );
    assert!(channel.was_reset());
    assert!(channel.close_reason().unwrap().contains("stateless reset"));
    assert!(b2_node.resets_sent() >= 1);
    assert!(
        took < Duration::from_secs(5),
        "ended by the reset, not by the 20 s delivery deadline ({took:?})"
    );
}

#[tokio::test]
async fn a_stranger_node_with_another_key_cannot_reset_a_channel() {
    init_logs();
    let b_id = LocalIdentity::create().unwrap();
    let (mut b, (_, addr)) = Process::start(echo_node(b_id.clone(), "127.0.0.1:0".into())).await;
    let a = Node::new("a");
    let link = tcp::connect(&a, &addr, TcpOptions::default())
        .await
        .unwrap();
    let options = latchkey_runtime::ChannelOptions {
        delivery_timeout: Duration::from_secs(3),
        ..any_peer()
    };
    let channel = create_channel(
        &a,
        &LocalIdentity::create().unwrap(),
        Route::from_addresses([link, "api".into()]),
        options,
    )
    .await
    .unwrap();
    // Another identity takes the port: its resets carry tokens of another key and are ignored, so the
    // channel ends only at its delivery deadline.
    b.kill();
    let (_other, (other_node, _)) =
        restart(|| echo_node(LocalIdentity::create().unwrap(), addr.clone())).await;
    let e = channel
        .send_confirmed(Route::from(["echo"]), Route::new(), b"x".to_vec())
        .await
        .expect_err("nobody delivers it");
    assert!(other_node.resets_sent() >= 1, "the stranger did answer");
    assert!(!channel.was_reset(), "{e}");
    assert!(matches!(e, RuntimeError::DeliveryFailed(why) if why.contains("deadline")));
}

/// A relay node as `latchkey relay run` builds it, on `addr`.
async fn relay_node(identity: LocalIdentity, addr: String) -> String {
    let node = Node::relay("relay");
    let listener = create_listener(&node, &identity, "api".into(), any_peer()).unwrap();
    let mut options = RelayOptions::new(listener.flow);
    options.lease = Duration::from_secs(5);
    start_relay(&node, "relay".into(), options).unwrap();
    let tcp = tcp::listen(&node, &addr, TcpOptions::default())
        .await
        .unwrap();
    let addr = tcp.local_addr.to_string();
    std::mem::forget((tcp, listener, node));
    addr
}

/// Opens a channel from `phone` to the doorbell by name and gets one echo back; retries until `secs`.
async fn reach_by_name(
    phone: &Node,
    phone_id: &LocalIdentity,
    link: &Address,
    secs: u64,
) -> Duration {
    let started = Instant::now();
    let route = Route::from_addresses([
        link.clone(),
        forwarder_address("doorbell").unwrap(),
        "api".into(),
    ]);
    loop {
        let options = latchkey_runtime::ChannelOptions {
            handshake_timeout: Duration::from_secs(1),
            ..any_peer()
        };
        if let Ok(c) = create_channel(phone, phone_id, route.clone(), options).await {
            let address = phone.unique_address("inbox");
            let mut inbox = reply_box(phone, address.as_str(), &c);
            let sent = c
                .send_confirmed(
                    Route::from(["echo"]),
                    Route::from_addresses([address]),
                    b"ding".to_vec(),
                )
                .await;
            if sent.is_ok() {
                let reply = tokio::time::timeout(Duration::from_secs(2), inbox.recv()).await;
                if let Ok(Some(reply)) = reply {
                    assert_eq!(reply.payload, b"ding");
                    return started.elapsed();
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "the doorbell was not reachable by name within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_relay_restart_is_survived_and_the_name_is_reachable_again_within_seconds() {
    init_logs();
    let relay_id = LocalIdentity::create().unwrap();
    let (mut relay, addr) =
        Process::start(relay_node(relay_id.clone(), "127.0.0.1:0".into())).await;

    let doorbell = Node::new("doorbell");
    let doorbell_id = LocalIdentity::create().unwrap();
    let listener = create_listener(&doorbell, &doorbell_id, "api".into(), any_peer()).unwrap();
    start_echo(&doorbell, "echo".into(), Accepts::flow(listener.flow)).unwrap();
    let link = tcp::connect(&doorbell, &addr, TcpOptions::default())
        .await
        .unwrap();
    let to_relay = ResilientChannel::open(
        &doorbell,
        &doorbell_id,
        Route::from_addresses([link, "api".into()]),
        any_peer(),
    )
    .await
    .unwrap();
    let registration = register_at_relay_resilient(
        &doorbell,
        &to_relay,
        "relay".into(),
        "doorbell",
        Duration::from_secs(1),
        vec!["api".into()],
    )
    .await
    .unwrap();

    let phone = Node::new("phone");
    let phone_id = LocalIdentity::create().unwrap();
    let phone_link = tcp::connect(&phone, &addr, TcpOptions::default())
        .await
        .unwrap();
    reach_by_name(&phone, &phone_id, &phone_link, 5).await;

    for round in 0..2 {
        relay.kill();
        let before = registration.confirmed();
        let (new_relay, _) = restart(|| relay_node(relay_id.clone(), addr.clone())).await;
        relay = new_relay;
        let took = reach_by_name(&phone, &phone_id, &phone_link, 10).await;
        assert!(registration.confirmed() > before);
        eprintln!("round {round}: reachable by name again after {took:?}");
    }
}

/// A TCP server that sends an endless stream (16 KiB every 5 ms) to each client.
async fn endless_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let chunk = vec![7u8; 16 * 1024];
                while s.write_all(&chunk).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
        }
    });
    addr
}

async fn outlet_node(identity: LocalIdentity, addr: String, target: String) -> String {
    let node = Node::new("outlet");
    let listener = create_listener(&node, &identity, "api".into(), any_peer()).unwrap();
    create_outlet(&node, "outlet".into(), target, Accepts::flow(listener.flow)).unwrap();
    let tcp = tcp::listen(&node, &addr, TcpOptions::default())
        .await
        .unwrap();
    let addr = tcp.local_addr.to_string();
    std::mem::forget((tcp, listener, node));
    addr
}

/// Reads until `n` bytes arrived.
async fn read_some(s: &mut TcpStream, n: usize) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < n {
        let k = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("data flows")
            .unwrap();
        assert!(k > 0);
        got += k;
    }
}

#[tokio::test]
async fn an_inlet_survives_its_outlets_restart_and_a_download_in_flight_ends_with_an_error() {
    init_logs();
    let target = endless_server().await;
    let outlet_id = LocalIdentity::create().unwrap();
    let (mut outlet, addr) = Process::start(outlet_node(
        outlet_id.clone(),
        "127.0.0.1:0".into(),
        target.clone(),
    ))
    .await;

    let inlet_node = Node::new("inlet");
    let link = tcp::connect(&inlet_node, &addr, TcpOptions::default())
        .await
        .unwrap();
    let channel = ResilientChannel::open(
        &inlet_node,
        &LocalIdentity::create().unwrap(),
        Route::from_addresses([link, "api".into()]),
        any_peer(),
    )
    .await
    .unwrap();
    let inlet = create_inlet_resilient(&inlet_node, "127.0.0.1:0", &channel, "outlet".into())
        .await
        .unwrap();

    let mut download = TcpStream::connect(inlet.local_addr).await.unwrap();
    read_some(&mut download, 1 << 20).await;

    // kill -9 and restart of the outlet's node, same port, same identity.
    outlet.kill();
    let (_outlet2, _) =
        restart(|| outlet_node(outlet_id.clone(), addr.clone(), target.clone())).await;
    // The download in flight ends with an error (a reset connection), not a hang and not a clean end:
    // the inlet's next frame (at the latest its keepalive) meets the restarted node's reset.
    let started = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let end = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match download.read(&mut buf).await {
                Ok(0) => break Ok(()),
                Ok(_) => continue,
                Err(e) => break Err(e),
            }
        }
    })
    .await
    .expect("the download in flight must end, not hang");
    assert!(
        channel.current().await.is_none(),
        "the old channel was reset"
    );
    let e = end.expect_err("ends with an error, not as if the download were complete");
    eprintln!("download ended after {:?}: {e}", started.elapsed());

    // The inlet serves new connections, with nothing restarted by hand.
    let started = Instant::now();
    loop {
        let mut s = TcpStream::connect(inlet.local_addr).await.unwrap();
        let mut first = [0u8; 1];
        if let Ok(Ok(1)) = tokio::time::timeout(Duration::from_secs(3), s.read(&mut first)).await {
            read_some(&mut s, 1 << 20).await;
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the inlet did not serve new connections after the outlet's restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("inlet serving again after {:?}", started.elapsed());
}
