//! Channels through a relay on loopback TCP: phone -> relay -> doorbell. The relay forwards ciphertext only;
//! a bit it flips is caught by the doorbell's decryptor and the message still arrives, once.

mod common;

use common::{init_logs, recv, sink};
use latchkey_runtime::channel::ChannelStats;
use latchkey_runtime::relay::{forwarder_address, register_at_relay, start_relay, Inspector};
use latchkey_runtime::services::start_echo;
use latchkey_runtime::transport::tcp::{self, TcpOptions};
use latchkey_runtime::{
    create_channel, create_listener, Access, Address, ChannelOptions, LocalIdentity, Message, Node,
    Route,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct World {
    phone: Node,
    doorbell: Node,
    phone_id: LocalIdentity,
    doorbell_id: LocalIdentity,
    to_doorbell: Route,
    forwarded: Arc<Mutex<Vec<Vec<u8>>>>,
    flip_next: Arc<AtomicUsize>,
    listener: latchkey_runtime::ListenerHandle,
}

async fn world() -> World {
    init_logs();
    let relay = Node::new("relay");
    let forwarded: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let flip_next = Arc::new(AtomicUsize::new(0));
    let (seen, flip) = (forwarded.clone(), flip_next.clone());
    let inspector: Inspector = Arc::new(move |name: &str, payload: &mut Vec<u8>| {
        seen.lock().unwrap().push(payload.clone());
        // Flip one bit inside the ciphertext of a data-sized frame heading to the doorbell, when asked.
        if name == "doorbell" && payload.len() > 60 && flip.load(Ordering::SeqCst) > 0 {
            flip.fetch_sub(1, Ordering::SeqCst);
            let i = payload.len() / 2;
            payload[i] ^= 0x01;
        }
    });
    start_relay(&relay, "relay".into(), Some(inspector)).unwrap();
    let relay_tcp = tcp::listen(&relay, "127.0.0.1:0", TcpOptions::default())
        .await
        .unwrap();
    let relay_addr = relay_tcp.local_addr.to_string();
    std::mem::forget(relay_tcp);

    let doorbell = Node::new("doorbell");
    let doorbell_id = LocalIdentity::create().unwrap();
    let phone_id = LocalIdentity::create().unwrap();
    let to_relay = tcp::connect(&doorbell, &relay_addr, TcpOptions::default())
        .await
        .unwrap();
    register_at_relay(
        &doorbell,
        Route::from_addresses([to_relay, "relay".into()]),
        "doorbell",
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    let listener = create_listener(
        &doorbell,
        &doorbell_id,
        "api".into(),
        ChannelOptions::default(),
    )
    .unwrap();
    start_echo(
        &doorbell,
        "echo".into(),
        Access::identifiers([phone_id.identifier()]),
    )
    .unwrap();

    let phone = Node::new("phone");
    let phone_to_relay = tcp::connect(&phone, &relay_addr, TcpOptions::default())
        .await
        .unwrap();
    let to_doorbell = Route::from_addresses([
        phone_to_relay,
        forwarder_address("doorbell").unwrap(),
        "api".into(),
    ]);
    World {
        phone,
        doorbell,
        phone_id,
        doorbell_id,
        to_doorbell,
        forwarded,
        flip_next,
        listener,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hops_relay_sees_only_ciphertext_and_a_flipped_bit_is_refused() {
    let mut w = world().await;
    let channel = create_channel(
        &w.phone,
        &w.phone_id,
        w.to_doorbell.clone(),
        ChannelOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(channel.peer(), w.doorbell_id.identifier());
    let doorbell_end = tokio::time::timeout(Duration::from_secs(5), w.listener.accepted())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doorbell_end.peer(), w.phone_id.identifier());

    let mut inbox = w.phone.register("inbox".into()).unwrap();
    let secret = b"the door code is 4711-SECRET-PLAINTEXT".to_vec();
    w.phone
        .send(Message::new(
            channel.route_to("echo"),
            Route::from(["inbox"]),
            secret.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(recv(&mut inbox, 10).await.payload, secret);

    // Now the relay flips a bit in the next data frame to the doorbell.
    w.flip_next.store(1, Ordering::SeqCst);
    let second = b"second SECRET message, tampered in transit once".to_vec();
    channel
        .send_confirmed(
            Route::from(["echo"]),
            Route::from(["inbox"]),
            second.clone(),
        )
        .await
        .expect("retransmitted after the tampered copy was refused");
    assert_eq!(recv(&mut inbox, 10).await.payload, second);
    assert_eq!(
        w.flip_next.load(Ordering::SeqCst),
        0,
        "the relay did tamper"
    );
    assert!(ChannelStats::get(&doorbell_end.stats().frames_rejected) >= 1);
    assert!(ChannelStats::get(&channel.stats().retransmissions) >= 1);
    // Exactly once: nothing else arrives.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), inbox.recv())
            .await
            .is_err()
    );

    let forwarded = w.forwarded.lock().unwrap();
    assert!(
        forwarded.len() >= 6,
        "handshake and data went through the relay"
    );
    for payload in forwarded.iter() {
        for needle in [&b"SECRET"[..], &b"4711"[..], &b"tampered"[..]] {
            assert!(
                !payload.windows(needle.len()).any(|w| w == needle),
                "relay saw plaintext"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_channel_inside_a_channel() {
    let w = world().await;
    let outer = create_channel(
        &w.phone,
        &w.phone_id,
        w.to_doorbell.clone(),
        ChannelOptions::default(),
    )
    .await
    .unwrap();
    // The inner channel's handshake and frames travel as messages inside the outer channel.
    let inner = create_channel(
        &w.phone,
        &w.phone_id,
        outer.route_to("api"),
        ChannelOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(inner.peer(), w.doorbell_id.identifier());
    assert_ne!(inner.address(), outer.address());
    let outer_frames_before = ChannelStats::get(&outer.stats().frames_sent);
    let mut inbox = w.phone.register("inbox".into()).unwrap();
    w.phone
        .send(Message::new(
            inner.route_to("echo"),
            Route::from(["inbox"]),
            b"nested hello".to_vec(),
        ))
        .await
        .unwrap();
    let reply = recv(&mut inbox, 10).await;
    assert_eq!(reply.payload, b"nested hello");
    // The reply came back through the inner channel's encryptor.
    assert_eq!(reply.ret.first(), Some(inner.address()));
    assert!(ChannelStats::get(&outer.stats().frames_sent) > outer_frames_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_peer_is_refused_and_service_access_is_enforced() {
    let w = world().await;
    // The doorbell accepts only a stranger: the phone is refused inside the handshake.
    let stranger = LocalIdentity::create().unwrap();
    let strict = ChannelOptions::default().with_trust(Arc::new(
        latchkey_core::channel::TrustIdentifiers::new([stranger.identifier()]),
    ));
    create_listener(&w.doorbell, &w.doorbell_id, "strict".into(), strict).unwrap();
    let mut route = w.to_doorbell.clone();
    route = Route::from_addresses(route.iter().take(2).cloned()).append(Address::from("strict"));
    let err = create_channel(&w.phone, &w.phone_id, route, ChannelOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");

    // The phone only trusts a stranger: it refuses the doorbell.
    let picky = ChannelOptions::default().with_trust(Arc::new(
        latchkey_core::channel::TrustIdentifiers::new([stranger.identifier()]),
    ));
    let err = create_channel(&w.phone, &w.phone_id, w.to_doorbell.clone(), picky)
        .await
        .unwrap_err();
    assert!(
        matches!(err, latchkey_runtime::RuntimeError::Untrusted(_)),
        "{err}"
    );

    // A stranger gets a channel to "api", but the echo service admits only the phone.
    let stranger_channel = create_channel(
        &w.phone,
        &stranger,
        w.to_doorbell.clone(),
        ChannelOptions::default(),
    )
    .await
    .unwrap();
    let got = sink(&w.phone, "stranger-inbox");
    stranger_channel
        .send_confirmed(
            Route::from(["echo"]),
            Route::from(["stranger-inbox"]),
            b"let me in".to_vec(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        got.lock().unwrap().is_empty(),
        "access control let a stranger in"
    );
    let _ = &w.doorbell;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_over_the_in_memory_transport() {
    init_logs();
    let (a, b) = (Node::new("a"), Node::new("b"));
    let (a_to_b, _) = latchkey_runtime::transport::memory::link(&a, &b).unwrap();
    let b_id = LocalIdentity::create().unwrap();
    create_listener(&b, &b_id, "api".into(), ChannelOptions::default()).unwrap();
    start_echo(&b, "echo".into(), Access::Any).unwrap();
    let channel = create_channel(
        &a,
        &LocalIdentity::create().unwrap(),
        Route::from_addresses([a_to_b, "api".into()]),
        ChannelOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(channel.peer(), b_id.identifier());
    let mut inbox = a.register("inbox".into()).unwrap();
    a.send(Message::new(
        channel.route_to("echo"),
        Route::from(["inbox"]),
        b"in memory".to_vec(),
    ))
    .await
    .unwrap();
    assert_eq!(recv(&mut inbox, 5).await.payload, b"in memory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_through_the_relay() {
    use latchkey_runtime::portal::{create_inlet, create_outlet};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = world().await;
    let service = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = service.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = service.accept().await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        buf.reverse();
        s.write_all(&buf).await.unwrap();
    });
    create_outlet(
        &w.doorbell,
        "outlet".into(),
        target.to_string(),
        Access::identifiers([w.phone_id.identifier()]),
    )
    .unwrap();
    let channel = create_channel(
        &w.phone,
        &w.phone_id,
        w.to_doorbell.clone(),
        ChannelOptions::default(),
    )
    .await
    .unwrap();
    let inlet = create_inlet(&w.phone, "127.0.0.1:0", channel.route_to("outlet"))
        .await
        .unwrap();
    let mut client = tokio::net::TcpStream::connect(inlet.local_addr)
        .await
        .unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    client.write_all(&data).await.unwrap();
    client.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), client.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    let mut expected = data.clone();
    expected.reverse();
    assert_eq!(back, expected);
    // The relay carried the bytes without ever seeing them: no 64-byte run of the pattern appears.
    let needle: Vec<u8> = (0..64u32).map(|i| (i % 251) as u8).collect();
    for payload in w.forwarded.lock().unwrap().iter() {
        assert!(!payload
            .windows(needle.len())
            .any(|x| x == needle.as_slice()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_registered_through_a_channel_belongs_to_its_identity() {
    init_logs();
    let relay = Node::new("relay");
    start_relay(&relay, "relay".into(), None).unwrap();
    create_listener(
        &relay,
        &LocalIdentity::create().unwrap(),
        "api".into(),
        ChannelOptions::default(),
    )
    .unwrap();
    let relay_addr = tcp::listen(&relay, "127.0.0.1:0", TcpOptions::default())
        .await
        .unwrap()
        .local_addr
        .to_string();

    // Registers `name` at the relay through a secure channel to it, as `identity`.
    async fn register_securely(
        node: &Node,
        identity: &LocalIdentity,
        relay_addr: &str,
        name: &str,
    ) -> latchkey_runtime::Result<()> {
        let link = tcp::connect(node, relay_addr, TcpOptions::default()).await?;
        let to_relay = create_channel(
            node,
            identity,
            Route::from_addresses([link, "api".into()]),
            ChannelOptions::default(),
        )
        .await?;
        register_at_relay(
            node,
            to_relay.route_to("relay"),
            name,
            Duration::from_millis(200),
        )
        .await
    }

    let doorbell = Node::new("doorbell");
    let doorbell_id = LocalIdentity::create().unwrap();
    register_securely(&doorbell, &doorbell_id, &relay_addr, "doorbell")
        .await
        .unwrap();
    create_listener(
        &doorbell,
        &doorbell_id,
        "api".into(),
        ChannelOptions::default(),
    )
    .unwrap();
    start_echo(&doorbell, "echo".into(), Access::Any).unwrap();

    // Another identity cannot take the name, with or without a channel.
    let impostor = Node::new("impostor");
    let err = register_securely(
        &impostor,
        &LocalIdentity::create().unwrap(),
        &relay_addr,
        "doorbell",
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("belongs to another identity"),
        "{err}"
    );
    let link = tcp::connect(&impostor, &relay_addr, TcpOptions::default())
        .await
        .unwrap();
    let err = register_at_relay(
        &impostor,
        Route::from_addresses([link, "relay".into()]),
        "doorbell",
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("belongs to another identity"),
        "{err}"
    );

    // The phone still reaches the real doorbell (its traffic runs inside the doorbell's channel to the relay).
    let phone = Node::new("phone");
    let link = tcp::connect(&phone, &relay_addr, TcpOptions::default())
        .await
        .unwrap();
    let route = Route::from_addresses([link, forwarder_address("doorbell").unwrap(), "api".into()]);
    let channel = create_channel(
        &phone,
        &LocalIdentity::create().unwrap(),
        route,
        ChannelOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(channel.peer(), doorbell_id.identifier());
    let mut inbox = phone.register("inbox".into()).unwrap();
    phone
        .send(Message::new(
            channel.route_to("echo"),
            Route::from(["inbox"]),
            b"ding".to_vec(),
        ))
        .await
        .unwrap();
    assert_eq!(recv(&mut inbox, 10).await.payload, b"ding");
}
