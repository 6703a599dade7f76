//! The runtime attacked as an attacker would, on real loopback sockets: an anonymous network peer (raw TCP
//! frames, no identity), a malicious relay (it runs the relay node and may send anything from it), and a
//! malicious authenticated peer (a stranger with a valid channel). Each attack must fail while the victim
//! keeps serving legitimate peers. docs/SECURITY.md names these tests beside the claims they check.
//!
//! Where an attack needs a worker address, the attacker is given the real one (read from the victim's flow
//! table), which is stronger than guessing: random addresses are only defence in depth, the flow rules are
//! the fix.

mod common;

use common::{
    any_peer, init_logs, recv, register_securely, reply_box, sink, start_relay_node, trusting,
    world,
};
use latchkey_core::channel::{Handshake, TrustAnyIdentity};
use latchkey_runtime::channel::ChannelStats;
use latchkey_runtime::framing::{read_frame, write_frame};
use latchkey_runtime::portal::{create_inlet, create_outlet};
use latchkey_runtime::relay::MAX_NAMES_PER_IDENTITY;
use latchkey_runtime::services::start_echo;
use latchkey_runtime::transport::{tcp, udp};
use latchkey_runtime::{
    create_channel, create_listener, Accepts, Address, LocalIdentity, Message, Node, Route,
    RuntimeError,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const MAX_FRAME: usize = 1 << 20;

/// An anonymous network peer: raw length-prefixed routed messages on a plain TCP connection.
struct RawClient {
    stream: TcpStream,
}

impl RawClient {
    async fn connect(addr: &str) -> Self {
        RawClient {
            stream: TcpStream::connect(addr).await.unwrap(),
        }
    }

    async fn send(&mut self, onward: &[&str], ret: &[&str], payload: &[u8]) {
        let route = |hops: &[&str]| Route::from_addresses(hops.iter().map(|h| Address::from(*h)));
        let frame = Message::new(route(onward), route(ret), payload.to_vec())
            .encode()
            .unwrap();
        write_frame(&mut self.stream, &frame, MAX_FRAME)
            .await
            .unwrap();
    }

    /// The next message, or `None` after `wait`.
    async fn recv(&mut self, wait: Duration) -> Option<Message> {
        match tokio::time::timeout(wait, read_frame(&mut self.stream, MAX_FRAME)).await {
            Ok(Ok(Some(frame))) => Some(Message::decode(&frame).unwrap()),
            _ => None,
        }
    }
}

/// Addresses on `node` that start with `prefix`, from its flow table.
fn addresses(node: &Node, prefix: &str) -> Vec<Address> {
    node.flow_table()
        .into_iter()
        .map(|(a, _)| a)
        .filter(|a| a.as_str().starts_with(prefix))
        .collect()
}

async fn quiet<T>(what: impl std::future::Future<Output = Option<T>>, ms: u64) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_millis(ms), what).await,
        Err(_) | Ok(None)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_client_cannot_inject_into_a_channel_encryptor_through_the_relay() {
    let mut w = world().await;
    let channel = create_channel(
        &w.phone,
        &w.phone_id,
        w.to_doorbell.clone(),
        trusting([w.doorbell_id.identifier()]),
    )
    .await
    .unwrap();
    let doorbell_end = w.listener.accepted().await.unwrap();
    let mut inbox = reply_box(&w.phone, "inbox", &channel);
    let denied_before = w.doorbell.denied_count();

    // Routed into the doorbell's end of the phone's channel: were it accepted, the phone would receive it
    // as authenticated by the doorbell. The attacker knows the real encryptor address and tries counters.
    let mut attacker = RawClient::connect(&w.relay.addr).await;
    let real = doorbell_end.address().as_str().to_string();
    attacker
        .send(
            &["fwd:doorbell", &real, "inbox"],
            &[],
            b"open the door (forged)",
        )
        .await;
    for n in 1..30 {
        let guess = format!("sc-enc#{n}");
        attacker
            .send(&["fwd:doorbell", &guess, "inbox"], &[], b"guessed")
            .await;
    }
    assert!(
        quiet(inbox.recv(), 1000).await,
        "a forged message reached the phone as authenticated by the doorbell"
    );
    assert!(
        w.doorbell.denied_count() > denied_before,
        "the forged message never reached the doorbell, so the test proved nothing"
    );

    // The doorbell keeps serving the phone.
    w.phone
        .send(Message::new(
            channel.route_to("echo"),
            Route::from(["inbox"]),
            b"ding".to_vec(),
        ))
        .await
        .unwrap();
    let reply = recv(&mut inbox, 10).await;
    assert_eq!(reply.payload, b"ding");
    assert_eq!(reply.peer(), Some(w.doorbell_id.identifier()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_client_cannot_make_a_node_send_through_its_tcp_out_or_udp() {
    let w = world().await;
    // A canary node the doorbell is connected to, whose sink takes anything from its TCP listener.
    let canary = Node::new("canary");
    let canary_tcp = tcp::listen(&canary, "127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let got = sink(&canary, "sink");
    canary.allow(&"sink".into(), canary_tcp.flow).unwrap();
    let to_canary = tcp::connect(
        &w.doorbell,
        &canary_tcp.local_addr.to_string(),
        Default::default(),
    )
    .await
    .unwrap();
    let doorbell_udp = udp::bind(&w.doorbell, "127.0.0.1:0").await.unwrap();
    let canary_udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let canary_udp_addr = canary_udp.local_addr().unwrap().to_string();
    let doorbell_tcp = tcp::listen(&w.doorbell, "127.0.0.1:0", Default::default())
        .await
        .unwrap();

    // The doorbell's own code may use its connection: the canary works.
    w.doorbell
        .send(Message::new(
            Route::from_addresses([to_canary.clone(), "sink".into()]),
            Route::new(),
            b"local".to_vec(),
        ))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(got.lock().unwrap().as_slice(), &[b"local".to_vec()]);
    let denied_before = w.doorbell.denied_count();

    // Through the relay, and straight at the doorbell's own listener.
    let via_relay = RawClient::connect(&w.relay.addr).await;
    let direct = RawClient::connect(&doorbell_tcp.local_addr.to_string()).await;
    for (mut attacker, prefix) in [(via_relay, vec!["fwd:doorbell"]), (direct, vec![])] {
        let mut tcp_route = prefix.clone();
        tcp_route.extend([to_canary.as_str(), "sink"]);
        attacker
            .send(&tcp_route, &[], b"sent by the doorbell?")
            .await;
        let mut udp_route = prefix.clone();
        udp_route.extend([doorbell_udp.address.as_str(), &canary_udp_addr, "sink"]);
        attacker
            .send(&udp_route, &[], b"sent by the doorbell?")
            .await;
        std::mem::forget(attacker);
    }
    let mut buf = [0u8; 2048];
    assert!(
        tokio::time::timeout(Duration::from_millis(1000), canary_udp.recv_from(&mut buf))
            .await
            .is_err(),
        "the doorbell sent a datagram for an anonymous client"
    );
    assert_eq!(
        got.lock().unwrap().len(),
        1,
        "the doorbell forwarded into its TCP connection"
    );
    assert!(w.doorbell.denied_count() >= denied_before + 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_cannot_answer_a_portal_inlet_or_inject_data() {
    let w = world().await;
    // The doorbell's camera: a plain TCP service that sends a picture and reads the request.
    let camera = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let camera_addr = camera.local_addr().unwrap();
    let picture: Vec<u8> = (0..150_000u32)
        .map(|i| b"CAMERA-PICTURE-"[(i % 15) as usize])
        .collect();
    let served = picture.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = camera.accept().await {
            let served = served.clone();
            tokio::spawn(async move {
                let _ = s.write_all(&served).await;
                let _ = s.shutdown().await;
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink).await;
            });
        }
    });
    create_outlet(
        &w.doorbell,
        "outlet".into(),
        camera_addr.to_string(),
        Accepts::flow(w.listener.flow).from_peers([w.phone_id.identifier()]),
    )
    .unwrap();
    let channel = create_channel(
        &w.phone,
        &w.phone_id,
        w.to_doorbell.clone(),
        trusting([w.doorbell_id.identifier()]),
    )
    .await
    .unwrap();
    let inlet = create_inlet(&w.phone, "127.0.0.1:0", &channel, "outlet".into())
        .await
        .unwrap();

    // The malicious relay answers every inlet connection worker in plain text, from its own node, down
    // every connection it has: CONNECTED, then DATA, then EOF.
    let stop = Arc::new(AtomicBool::new(false));
    let injected = Arc::new(AtomicUsize::new(0));
    let (relay_node, phone, halt, count) = (
        w.relay.node.clone(),
        w.phone.clone(),
        stop.clone(),
        injected.clone(),
    );
    let injector = tokio::spawn(async move {
        while !halt.load(Ordering::SeqCst) {
            for inlet_worker in addresses(&phone, "inlet#") {
                for connection in addresses(&relay_node, "tcp-in#") {
                    for payload in [&[1u8][..], &b"\x02INJECTED-BY-RELAY"[..], &[3u8][..]] {
                        let onward =
                            Route::from_addresses([connection.clone(), inlet_worker.clone()]);
                        let m = Message::new(onward, Route::from(["relay-sink"]), payload.to_vec());
                        if relay_node.try_send(m).is_ok() {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });

    let mut client = TcpStream::connect(inlet.local_addr).await.unwrap();
    // Keep the connection (and so its inlet worker) open until the relay's injections have reached the
    // phone: otherwise a fast transfer can end before the first one and the test proves nothing.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(injected.load(Ordering::SeqCst) > 0 && w.phone.denied_count() > 0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    client
        .write_all(b"GET /live CLIENT-PLAINTEXT-REQUEST")
        .await
        .unwrap();
    client.shutdown().await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), client.read_to_end(&mut received))
        .await
        .expect("portal stalled")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    injector.await.unwrap();

    assert_eq!(
        received, picture,
        "the user received something other than the camera's bytes"
    );
    assert!(
        injected.load(Ordering::SeqCst) > 0 && w.phone.denied_count() > 0,
        "the relay's injections never reached the phone, so the test proved nothing"
    );
    for payload in w.forwarded.lock().unwrap().iter() {
        for needle in [&b"CLIENT-PLAINTEXT"[..], &b"CAMERA-PICTURE"[..]] {
            assert!(
                !payload.windows(needle.len()).any(|x| x == needle),
                "the relay saw portal plaintext"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_connect_to_an_outlet_is_refused() {
    init_logs();
    let doorbell = Node::new("doorbell");
    let doorbell_id = LocalIdentity::create().unwrap();
    let phone_id = LocalIdentity::create().unwrap();
    let doorbell_tcp = tcp::listen(&doorbell, "127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let listener = create_listener(
        &doorbell,
        &doorbell_id,
        "api".into(),
        trusting([phone_id.identifier()]),
    )
    .unwrap();
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_addr = target.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = target.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });

    // An outlet open to transports is refused outright.
    let err = create_outlet(
        &doorbell,
        "open-outlet".into(),
        target_addr.to_string(),
        Accepts::any_transport(),
    )
    .unwrap_err();
    assert!(matches!(err, RuntimeError::Insecure(_)), "{err}");
    create_outlet(
        &doorbell,
        "outlet".into(),
        target_addr.to_string(),
        Accepts::flow(listener.flow).from_peers([phone_id.identifier()]),
    )
    .unwrap();

    let mut attacker = RawClient::connect(&doorbell_tcp.local_addr.to_string()).await;
    for _ in 0..5 {
        attacker.send(&["outlet"], &["me"], &[0]).await;
    }
    assert!(
        attacker.recv(Duration::from_millis(700)).await.is_none(),
        "the outlet answered"
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "a plain CONNECT opened a connection"
    );
    assert!(doorbell.denied_count() >= 5);

    // The phone, through its channel, still gets its portal.
    let phone = Node::new("phone");
    let link = tcp::connect(
        &phone,
        &doorbell_tcp.local_addr.to_string(),
        Default::default(),
    )
    .await
    .unwrap();
    let channel = create_channel(
        &phone,
        &phone_id,
        Route::from_addresses([link, "api".into()]),
        trusting([doorbell_id.identifier()]),
    )
    .await
    .unwrap();
    let inlet = create_inlet(&phone, "127.0.0.1:0", &channel, "outlet".into())
        .await
        .unwrap();
    let mut client = TcpStream::connect(inlet.local_addr).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut rest)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_names_cannot_be_taken_over_or_registered_without_a_channel() {
    init_logs();
    let relay = start_relay_node(|_| {}).await;
    let doorbell = Node::new("doorbell");
    let doorbell_id = LocalIdentity::create().unwrap();
    let refresh = Duration::from_millis(200);
    register_securely(&doorbell, &doorbell_id, &relay.addr, "doorbell", refresh)
        .await
        .unwrap();

    // Without a channel: no answer, and nothing changes.
    let mut anonymous = RawClient::connect(&relay.addr).await;
    anonymous.send(&["relay"], &["me"], b"doorbell").await;
    anonymous.send(&["relay"], &["me"], b"a-fresh-name").await;
    assert!(anonymous.recv(Duration::from_millis(500)).await.is_none());
    assert_eq!(
        relay.handle.names(),
        vec![("doorbell".to_string(), doorbell_id.identifier())]
    );

    // Another identity, through its own channel: refused.
    let impostor = Node::new("impostor");
    let err = register_securely(
        &impostor,
        &LocalIdentity::create().unwrap(),
        &relay.addr,
        "doorbell",
        refresh,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("belongs to another identity"),
        "{err}"
    );
    assert_eq!(relay.handle.names().len(), 1);

    // Through a channel, but with a return route that ends at the channel: the forwarder would deliver on
    // the relay itself, as a local sender. Refused.
    let hijacker = Node::new("hijacker");
    let hijacker_id = LocalIdentity::create().unwrap();
    let link = tcp::connect(&hijacker, &relay.addr, Default::default())
        .await
        .unwrap();
    let channel = create_channel(
        &hijacker,
        &hijacker_id,
        Route::from_addresses([link, "api".into()]),
        any_peer(),
    )
    .await
    .unwrap();
    channel
        .send_confirmed(Route::from(["relay"]), Route::new(), b"hijack".to_vec())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!relay.node.is_registered(&"fwd:hijack".into()));
    assert_eq!(relay.handle.names().len(), 1);

    // An allow list: only the camera, only its name.
    let camera = LocalIdentity::create().unwrap();
    let allowed = HashMap::from([(camera.identifier(), vec!["camera".to_string()])]);
    let strict = start_relay_node(|o| o.allowed = Some(Arc::new(allowed))).await;
    let node = Node::new("camera");
    register_securely(&node, &camera, &strict.addr, "camera", refresh)
        .await
        .unwrap();
    for (who, name) in [(&camera, "another-name"), (&doorbell_id, "doorbell")] {
        let err = register_securely(&Node::new("x"), who, &strict.addr, name, refresh)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("may not register"), "{err}");
    }
    assert_eq!(
        strict.handle.names(),
        vec![("camera".to_string(), camera.identifier())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_name_is_released_and_a_refreshed_one_is_kept() {
    init_logs();
    let relay = start_relay_node(|o| o.lease = Duration::from_millis(600)).await;
    let keeper = LocalIdentity::create().unwrap();
    let squatter = LocalIdentity::create().unwrap();
    let _k = register_securely(
        &Node::new("keeper"),
        &keeper,
        &relay.addr,
        "kept",
        Duration::from_millis(150),
    )
    .await
    .unwrap();
    // Registers once and never refreshes (as a squatter that went away would).
    let _s = register_securely(
        &Node::new("squatter"),
        &squatter,
        &relay.addr,
        "squat",
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    assert_eq!(relay.handle.names().len(), 2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        relay.handle.names(),
        vec![("kept".to_string(), keeper.identifier())]
    );
    assert!(!relay.node.is_registered(&"fwd:squat".into()));
    // The lapsed name is free for someone else.
    let newcomer = LocalIdentity::create().unwrap();
    register_securely(
        &Node::new("newcomer"),
        &newcomer,
        &relay.addr,
        "squat",
        Duration::from_millis(150),
    )
    .await
    .unwrap();
    assert!(relay
        .handle
        .names()
        .contains(&("squat".to_string(), newcomer.identifier())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_registrations_hit_the_quota_and_others_still_register() {
    init_logs();
    let relay = start_relay_node(|_| {}).await;
    let greedy = Node::new("greedy");
    let greedy_id = LocalIdentity::create().unwrap();
    let link = tcp::connect(&greedy, &relay.addr, Default::default())
        .await
        .unwrap();
    let channel = create_channel(
        &greedy,
        &greedy_id,
        Route::from_addresses([link, "api".into()]),
        trusting([relay.identity.identifier()]),
    )
    .await
    .unwrap();
    let mut replies = reply_box(&greedy, "replies", &channel);
    let (mut ok, mut quota) = (0usize, 0usize);
    const TOTAL: usize = 10_000;
    const BATCH: usize = 100;
    for batch in 0..TOTAL / BATCH {
        for i in 0..BATCH {
            let name = format!("name-{}", batch * BATCH + i);
            greedy
                .send(Message::new(
                    channel.route_to("relay"),
                    Route::from(["replies"]),
                    name.into_bytes(),
                ))
                .await
                .unwrap();
        }
        for _ in 0..BATCH {
            match recv(&mut replies, 20).await.payload.as_slice() {
                b"ok" => ok += 1,
                b"quota" => quota += 1,
                other => panic!("unexpected reply {:?}", String::from_utf8_lossy(other)),
            }
        }
    }
    assert_eq!(
        (ok, quota),
        (MAX_NAMES_PER_IDENTITY, TOTAL - MAX_NAMES_PER_IDENTITY)
    );
    assert_eq!(relay.handle.names().len(), MAX_NAMES_PER_IDENTITY);
    assert!(!relay.node.is_registered(&"fwd:name-9999".into()));

    // A legitimate device still registers, and the greedy one gets a clear error.
    let doorbell_id = LocalIdentity::create().unwrap();
    register_securely(
        &Node::new("doorbell"),
        &doorbell_id,
        &relay.addr,
        "doorbell",
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    let err = register_securely(
        &Node::new("greedy-again"),
        &greedy_id,
        &relay.addr,
        "one-more",
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("as many relay names"), "{err}");
    eprintln!(
        "{TOTAL} registrations from one identity: {ok} accepted, {quota} refused by the quota"
    );
}

/// A doorbell node with a TCP listener and a channel listener `api` that trusts anyone, plus an echo
/// service open to that listener's channels.
async fn doorbell_node() -> (
    Node,
    LocalIdentity,
    SocketAddr,
    latchkey_runtime::ListenerHandle,
) {
    init_logs();
    let node = Node::new("doorbell");
    let identity = LocalIdentity::create().unwrap();
    let tcp = tcp::listen(&node, "127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let listener = create_listener(&node, &identity, "api".into(), any_peer()).unwrap();
    start_echo(&node, "echo".into(), Accepts::flow(listener.flow)).unwrap();
    let addr = tcp.local_addr;
    std::mem::forget(tcp);
    (node, identity, addr, listener)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guessed_decryptor_cannot_end_a_handshake_in_progress() {
    let (_doorbell, doorbell_id, addr, mut listener) = doorbell_node().await;
    // The initiator speaks the wire protocol by hand, so the attacker can strike between messages 2 and 3.
    let phone_id = LocalIdentity::create().unwrap();
    let mut handshake = Handshake::initiator(
        phone_id.handshake_config(Arc::new(TrustAnyIdentity), latchkey_core::Timestamp::now()),
    )
    .unwrap();
    let mut phone = RawClient::connect(&addr.to_string()).await;
    let m1 = [&[1u8][..], &handshake.write_message().unwrap()].concat();
    phone.send(&["api"], &["phone-decryptor"], &m1).await;
    let m2 = phone.recv(Duration::from_secs(5)).await.expect("message 2");
    assert_eq!(m2.payload[0], 1);
    let responder = m2.ret.last().unwrap().as_str().to_string();
    assert!(responder.starts_with("sc-dec#") && responder.len() == "sc-dec#".len() + 16);
    handshake.read_message(&m2.payload[1..]).unwrap();

    // The attacker, on its own connection, knows the decryptor and sends it a bogus message 3, a
    // refusal and a junk frame.
    let mut attacker = RawClient::connect(&addr.to_string()).await;
    let mut bogus_m3 = vec![1u8];
    bogus_m3.extend(std::iter::repeat_n(0xAA, 200));
    attacker
        .send(&[&responder], &["phone-decryptor"], &bogus_m3)
        .await;
    attacker
        .send(&[&responder], &["phone-decryptor"], b"\x03no")
        .await;
    attacker
        .send(&[&responder], &["phone-decryptor"], &[2u8; 60])
        .await;
    assert!(attacker.recv(Duration::from_millis(300)).await.is_none());

    // The real message 3 still completes the handshake: the responder confirms with a frame.
    let m3 = [&[1u8][..], &handshake.write_message().unwrap()].concat();
    phone.send(&[&responder], &["phone-decryptor"], &m3).await;
    let confirmation = phone
        .recv(Duration::from_secs(5))
        .await
        .expect("confirmation");
    assert_eq!(confirmation.payload[0], 2, "a frame, not a refusal");
    let (_encryptor, mut decryptor, peer) = handshake.finish().unwrap().split();
    assert_eq!(peer.identifier, doorbell_id.identifier());
    let mut frame = confirmation.payload[1..].to_vec();
    decryptor
        .decrypt_in_place(&mut frame)
        .expect("authenticated confirmation");
    let accepted = tokio::time::timeout(Duration::from_secs(5), listener.accepted())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(accepted.peer(), phone_id.identifier());

    // After the handshake, a forged frame from the attacker is refused and changes nothing.
    attacker
        .send(&[&responder], &["attacker"], &[2u8; 80])
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!accepted.is_closed());
    assert!(attacker.recv(Duration::from_millis(300)).await.is_none());
}

/// A man in the middle on one TCP connection that can rewrite the return route of every routed message
/// going up (client to server) so it ends at `evil`, and counts the messages coming down that are
/// addressed to `evil`.
async fn rewriting_proxy(
    target: SocketAddr,
    rewrite: Arc<AtomicBool>,
    redirected: Arc<AtomicUsize>,
) -> SocketAddr {
    common::message_proxy(
        target,
        move |m| {
            if rewrite.load(Ordering::SeqCst) {
                m.ret = m.ret.without_last().append("evil");
            }
        },
        move |m| {
            if m.onward.first().map(|a| a.as_str()) == Some("evil") {
                redirected.fetch_add(1, Ordering::SeqCst);
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_return_route_does_not_redirect_the_responder() {
    let (_doorbell, doorbell_id, addr, mut listener) = doorbell_node().await;
    let rewrite = Arc::new(AtomicBool::new(false));
    let redirected = Arc::new(AtomicUsize::new(0));
    let proxy = rewriting_proxy(addr, rewrite.clone(), redirected.clone()).await;
    let phone = Node::new("phone");
    let link = tcp::connect(&phone, &proxy.to_string(), Default::default())
        .await
        .unwrap();
    let channel = create_channel(
        &phone,
        &LocalIdentity::create().unwrap(),
        Route::from_addresses([link, "api".into()]),
        trusting([doorbell_id.identifier()]),
    )
    .await
    .unwrap();
    let doorbell_end = listener.accepted().await.unwrap();
    let mut inbox = reply_box(&phone, "inbox", &channel);

    // From now on every authenticated frame the doorbell receives claims it should answer to "evil".
    rewrite.store(true, Ordering::SeqCst);
    for i in 0..20u32 {
        let text = format!("request {i}").into_bytes();
        channel
            .send_confirmed(Route::from(["echo"]), Route::from(["inbox"]), text.clone())
            .await
            .unwrap();
        assert_eq!(recv(&mut inbox, 10).await.payload, text);
    }
    assert!(ChannelStats::get(&doorbell_end.stats().frames_received) >= 20);
    assert_eq!(
        redirected.load(Ordering::SeqCst),
        0,
        "the responder followed a return route that did not lead to its peer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_peer_reaches_only_the_services_opened_to_it() {
    let mut w = world().await;
    let channel = create_channel(
        &w.phone,
        &w.phone_id,
        w.to_doorbell.clone(),
        trusting([w.doorbell_id.identifier()]),
    )
    .await
    .unwrap();
    let doorbell_end = w.listener.accepted().await.unwrap();
    let mut inbox = reply_box(&w.phone, "inbox", &channel);

    // A stranger with a valid identity gets a channel to the doorbell's listener (it trusts anyone)…
    let stranger = Node::new("stranger");
    let link = tcp::connect(&stranger, &w.relay.addr, Default::default())
        .await
        .unwrap();
    let route = Route::from_addresses([link, "fwd:doorbell".into(), "api".into()]);
    let theirs = create_channel(
        &stranger,
        &LocalIdentity::create().unwrap(),
        route,
        trusting([w.doorbell_id.identifier()]),
    )
    .await
    .unwrap();
    let mut stranger_inbox = reply_box(&stranger, "inbox", &theirs);
    let denied_before = w.doorbell.denied_count();
    // …but the echo service is the phone's, the phone's channel encryptor and the doorbell's connection
    // to the relay are local-only.
    let targets = [
        Route::from(["echo"]),
        Route::from_addresses([doorbell_end.address().clone(), "inbox".into()]),
        Route::from_addresses([
            addresses(&w.doorbell, "tcp-out#")[0].clone(),
            "fwd:doorbell".into(),
            "api".into(),
        ]),
    ];
    for onward in targets {
        // The far end refuses each at once and says so (UNDELIVERED), without telling which reason.
        let refused = theirs
            .send_confirmed(onward, Route::from(["inbox"]), b"let me in".to_vec())
            .await;
        assert!(
            matches!(refused, Err(RuntimeError::UnknownAddress(_))),
            "{refused:?}"
        );
    }
    assert!(quiet(stranger_inbox.recv(), 500).await);
    assert!(
        quiet(inbox.recv(), 200).await,
        "the stranger reached the phone"
    );
    assert!(w.doorbell.denied_count() >= denied_before + 3);

    // The phone is still served.
    channel
        .send_confirmed(
            Route::from(["echo"]),
            Route::from(["inbox"]),
            b"hi".to_vec(),
        )
        .await
        .unwrap();
    let reply = recv(&mut inbox, 10).await;
    assert_eq!(
        (reply.payload.as_slice(), reply.peer()),
        (&b"hi"[..], Some(w.doorbell_id.identifier()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_trust_policy_means_no_listener_and_no_channel() {
    init_logs();
    let node = Node::new("n");
    let id = LocalIdentity::create().unwrap();
    let err = create_listener(&node, &id, "api".into(), Default::default()).unwrap_err();
    assert!(matches!(err, RuntimeError::Insecure(_)), "{err}");
    assert!(!node.is_registered(&"api".into()));
    let err = create_channel(&node, &id, Route::from(["api"]), Default::default())
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Insecure(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_on_the_same_udp_socket_cannot_refuse_a_handshake() {
    init_logs();
    // The "listener" is a silent UDP socket: it receives message 1 and never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let phone = Node::new("phone");
    let phone_udp = udp::bind(&phone, "127.0.0.1:0").await.unwrap();
    let route = Route::from_addresses([
        phone_udp.address.clone(),
        Address::new(silent.local_addr().unwrap().to_string()).unwrap(),
        "api".into(),
    ]);
    let options = latchkey_runtime::ChannelOptions {
        handshake_timeout: Duration::from_secs(2),
        ..any_peer()
    };
    let phone_id = LocalIdentity::create().unwrap();
    let attempt =
        tokio::spawn(async move { create_channel(&phone, &phone_id, route, options).await });
    let mut buf = vec![0u8; 70_000];
    let (len, _) = silent.recv_from(&mut buf).await.unwrap();
    let m1 = Message::decode(&buf[..len]).unwrap();
    let decryptor = m1.ret.last().unwrap().clone();
    // Another host sends the initiator's decryptor a refusal, over and over.
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let refusal = Message::new(
        Route::from_addresses([decryptor]),
        Route::from(["responder"]),
        b"\x03not trusted".to_vec(),
    )
    .encode()
    .unwrap();
    for _ in 0..20 {
        stranger
            .send_to(&refusal, phone_udp.local_addr)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = attempt.await.unwrap().unwrap_err();
    assert!(
        matches!(err, RuntimeError::Timeout(_)),
        "the stranger's refusal ended the handshake: {err}"
    );
}
