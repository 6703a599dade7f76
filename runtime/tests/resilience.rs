//! A channel survives its transport: TCP connections cut under it, and a UDP path that loses, duplicates
//! and reorders datagrams. Every message arrives exactly once, in order, or is reported failed.

mod common;

use common::{any_peer, init_logs, sink, CuttableProxy, LossyUdpProxy};
use latchkey_runtime::channel::ChannelStats;
use latchkey_runtime::transport::{tcp, udp};
use latchkey_runtime::{
    create_channel, create_listener, Address, ChannelOptions, LocalIdentity, Message, Node, Route,
    RuntimeError,
};
use std::time::{Duration, Instant};

fn numbered(i: u32) -> Vec<u8> {
    format!("message {i:05}").into_bytes()
}

async fn wait_for(got: &std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>, n: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while got.lock().unwrap().len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connection_killed_under_an_established_channel() {
    init_logs();
    let doorbell = Node::new("doorbell");
    let doorbell_id = LocalIdentity::create().unwrap();
    let listener_tcp = tcp::listen(&doorbell, "127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let mut listener = create_listener(&doorbell, &doorbell_id, "api".into(), any_peer()).unwrap();
    let got = sink(&doorbell, "sink");
    doorbell.allow(&"sink".into(), listener.flow).unwrap();
    let proxy = CuttableProxy::start(listener_tcp.local_addr).await;

    let phone = Node::new("phone");
    let phone_id = LocalIdentity::create().unwrap();
    let link = tcp::connect(&phone, &proxy.addr.to_string(), Default::default())
        .await
        .unwrap();
    let channel = create_channel(
        &phone,
        &phone_id,
        Route::from_addresses([link, "api".into()]),
        any_peer(),
    )
    .await
    .unwrap();
    let _accepted = listener.accepted().await.unwrap();
    let phone_inbox = sink(&phone, "inbox");
    phone.allow(&"inbox".into(), channel.flow()).unwrap();

    const N: u32 = 600;
    let mut cuts = 0;
    for i in 0..N {
        // Fire-and-forget through the encryptor: the channel's window applies backpressure here.
        phone
            .send(Message::new(
                channel.route_to("sink"),
                Route::from(["inbox"]),
                numbered(i),
            ))
            .await
            .unwrap();
        if i % 150 == 75 {
            cuts += proxy.cut();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    assert!(cuts >= 3, "the connection was cut {cuts} times");
    let connections = proxy.accepted.load(std::sync::atomic::Ordering::SeqCst);
    wait_for(&got, N as usize, 30).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = got.lock().unwrap().clone();
    let expected: Vec<Vec<u8>> = (0..N).map(numbered).collect();
    assert_eq!(received.len(), expected.len(), "lost or doubled messages");
    assert_eq!(received, expected, "order or content differs");

    // The same channel still works in the other direction too (the responder followed the new connection).
    let doorbell_end = _accepted;
    doorbell_end
        .send_confirmed(Route::from(["inbox"]), Route::new(), b"still here".to_vec())
        .await
        .unwrap();
    wait_for(&phone_inbox, 1, 5).await;
    assert_eq!(
        phone_inbox.lock().unwrap().as_slice(),
        &[b"still here".to_vec()]
    );
    assert!(
        connections >= 4,
        "the phone reconnected after each cut ({connections} connections)"
    );
    assert!(!channel.is_closed());
    assert_eq!(ChannelStats::get(&channel.stats().failed), 0);
    eprintln!(
        "cut {cuts} times over {connections} connections; {} retransmissions",
        ChannelStats::get(&channel.stats().retransmissions)
    );
    // No second handshake happened: the listener accepted exactly one channel.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), listener.accepted())
            .await
            .is_err()
    );
}

async fn udp_pair(
    drop_pct: u32,
    dup_pct: u32,
    reorder_pct: u32,
) -> (
    Node,
    Node,
    LossyUdpProxy,
    Route,
    latchkey_runtime::ListenerHandle,
) {
    init_logs();
    let doorbell = Node::new("doorbell");
    let doorbell_udp = udp::bind(&doorbell, "127.0.0.1:0").await.unwrap();
    let proxy = LossyUdpProxy::start(doorbell_udp.local_addr, drop_pct, dup_pct, reorder_pct).await;
    let listener = create_listener(
        &doorbell,
        &LocalIdentity::create().unwrap(),
        "api".into(),
        any_peer(),
    )
    .unwrap();
    let phone = Node::new("phone");
    let phone_udp = udp::bind(&phone, "127.0.0.1:0").await.unwrap();
    let route = Route::from_addresses([
        phone_udp.address,
        Address::new(proxy.addr.to_string()).unwrap(),
        "api".into(),
    ]);
    (phone, doorbell, proxy, route, listener)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_with_loss_duplication_and_reordering() {
    let (phone, doorbell, proxy, route, mut listener) = udp_pair(15, 10, 15).await;
    let got = sink(&doorbell, "sink");
    doorbell.allow(&"sink".into(), listener.flow).unwrap();
    let options = ChannelOptions {
        handshake_retry: Duration::from_millis(200),
        ..any_peer()
    };
    let channel = create_channel(&phone, &LocalIdentity::create().unwrap(), route, options)
        .await
        .unwrap();
    let doorbell_end = listener.accepted().await.unwrap();
    const N: u32 = 400;
    for i in 0..N {
        phone
            .send(Message::new(
                channel.route_to("sink"),
                Route::new(),
                numbered(i),
            ))
            .await
            .unwrap();
    }
    wait_for(&got, N as usize, 60).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expected: Vec<Vec<u8>> = (0..N).map(numbered).collect();
    assert_eq!(
        *got.lock().unwrap(),
        expected,
        "every message exactly once, in order"
    );
    let stats = proxy.stats.lock().unwrap();
    assert!(
        stats.dropped > 10 && stats.duplicated > 10 && stats.reordered > 10,
        "{stats:?}"
    );
    // Duplicated datagrams were refused by the core's replay window, at one end or the other.
    let replays = ChannelStats::get(&doorbell_end.stats().frames_replayed)
        + ChannelStats::get(&channel.stats().frames_replayed);
    assert!(replays > 0, "no replay was detected");
    assert!(ChannelStats::get(&channel.stats().retransmissions) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_path_reports_failure_instead_of_losing_silently() {
    let (phone, _doorbell, mut proxy, route, _listener) = udp_pair(0, 0, 0).await;
    let options = ChannelOptions {
        delivery_timeout: Duration::from_secs(1),
        ..any_peer()
    };
    let channel = create_channel(&phone, &LocalIdentity::create().unwrap(), route, options)
        .await
        .unwrap();
    // A full round trip over the path: the far end answers that "nowhere" does not exist.
    let answered = channel
        .send_confirmed(Route::from(["nowhere"]), Route::new(), b"before".to_vec())
        .await;
    assert!(
        matches!(
            answered,
            Err(latchkey_runtime::RuntimeError::UnknownAddress(_))
        ),
        "{answered:?}"
    );
    proxy.stop().await;
    let err = channel
        .send_confirmed(
            Route::from(["nowhere"]),
            Route::new(),
            b"into the void".to_vec(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::DeliveryFailed(_)), "{err}");
    assert_eq!(ChannelStats::get(&channel.stats().failed), 1);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !channel.is_closed() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(channel.is_closed());
    let err = channel
        .send_confirmed(Route::from(["nowhere"]), Route::new(), b"after".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::ChannelClosed), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_through_a_relay_survives_both_links_being_cut() {
    use latchkey_runtime::relay::forwarder_address;
    init_logs();
    let relay = common::start_relay_node(|_| {}).await;
    let relay_addr: std::net::SocketAddr = relay.addr.parse().unwrap();
    let doorbell_proxy = CuttableProxy::start(relay_addr).await;
    let phone_proxy = CuttableProxy::start(relay_addr).await;

    let doorbell = Node::new("doorbell");
    let listener = create_listener(
        &doorbell,
        &LocalIdentity::create().unwrap(),
        "api".into(),
        any_peer(),
    )
    .unwrap();
    common::register_securely(
        &doorbell,
        &LocalIdentity::create().unwrap(),
        &doorbell_proxy.addr.to_string(),
        "doorbell",
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    let got = sink(&doorbell, "sink");
    doorbell.allow(&"sink".into(), listener.flow).unwrap();

    let phone = Node::new("phone");
    let link = tcp::connect(&phone, &phone_proxy.addr.to_string(), Default::default())
        .await
        .unwrap();
    let route = Route::from_addresses([link, forwarder_address("doorbell").unwrap(), "api".into()]);
    let channel = create_channel(&phone, &LocalIdentity::create().unwrap(), route, any_peer())
        .await
        .unwrap();
    const N: u32 = 300;
    for i in 0..N {
        phone
            .send(Message::new(
                channel.route_to("sink"),
                Route::new(),
                numbered(i),
            ))
            .await
            .unwrap();
        if i == 100 {
            assert!(doorbell_proxy.cut() > 0);
        }
        if i == 200 {
            assert!(phone_proxy.cut() > 0);
        }
    }
    wait_for(&got, N as usize, 30).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expected: Vec<Vec<u8>> = (0..N).map(numbered).collect();
    assert_eq!(*got.lock().unwrap(), expected);
    assert_eq!(ChannelStats::get(&channel.stats().failed), 0);
}

async fn wait_closed(channel: &latchkey_runtime::ChannelHandle, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !channel.is_closed() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    channel.is_closed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_one_end_closes_the_other_and_silent_initiators_are_forgotten() {
    init_logs();
    let doorbell = Node::new("doorbell");
    let doorbell_udp = udp::bind(&doorbell, "127.0.0.1:0").await.unwrap();
    let mut proxy = LossyUdpProxy::start(doorbell_udp.local_addr, 0, 0, 0).await;
    let quick_idle = ChannelOptions {
        idle_timeout: Duration::from_secs(2),
        ..any_peer()
    };
    let chatty = ChannelOptions {
        keepalive: Duration::from_millis(300),
        ..any_peer()
    };
    let mut listener = create_listener(
        &doorbell,
        &LocalIdentity::create().unwrap(),
        "api".into(),
        quick_idle,
    )
    .unwrap();
    let phone = Node::new("phone");
    let phone_udp = udp::bind(&phone, "127.0.0.1:0").await.unwrap();
    let direct = Route::from_addresses([
        phone_udp.address.clone(),
        Address::new(doorbell_udp.local_addr.to_string()).unwrap(),
        "api".into(),
    ]);
    let via_proxy = Route::from_addresses([
        phone_udp.address,
        Address::new(proxy.addr.to_string()).unwrap(),
        "api".into(),
    ]);

    // An explicit close reaches the far end.
    let channel = create_channel(
        &phone,
        &LocalIdentity::create().unwrap(),
        direct,
        any_peer(),
    )
    .await
    .unwrap();
    let far = listener.accepted().await.unwrap();
    channel.close().await;
    assert!(wait_closed(&channel, 5).await);
    assert!(
        wait_closed(&far, 5).await,
        "the responder did not learn of the close"
    );

    // Keepalives keep an idle channel up past the idle timeout; silence closes it.
    let channel = create_channel(&phone, &LocalIdentity::create().unwrap(), via_proxy, chatty)
        .await
        .unwrap();
    let far = listener.accepted().await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!far.is_closed(), "an idle but live channel was closed");
    proxy.stop().await;
    assert!(
        wait_closed(&far, 5).await,
        "the responder kept a silent channel"
    );
    drop(channel);
}
