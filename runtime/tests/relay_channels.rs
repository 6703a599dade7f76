//! Channels through a relay on loopback TCP: phone -> relay -> doorbell. The relay forwards ciphertext only;
//! a bit it flips is caught by the doorbell's decryptor and the message still arrives, once.

mod common;

use common::{
    any_peer, init_logs, recv, register_securely, reply_box, sink, start_relay_node, trusting,
    world,
};
use latchkey_runtime::channel::ChannelStats;
use latchkey_runtime::relay::forwarder_address;
use latchkey_runtime::services::start_echo;
use latchkey_runtime::transport::tcp::{self, TcpOptions};
use latchkey_runtime::{
    create_channel, create_listener, Accepts, Address, LocalIdentity, Message, Node, Route,
};
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hops_relay_sees_only_ciphertext_and_a_flipped_bit_is_refused() {
    let mut w = world().await;
    let channel = create_channel(
        &w.phone,
        &w.phone_id,
        w.to_doorbell.clone(),
        trusting([w.doorbell_id.identifier()]),
    )
    .await
    .unwrap();
    assert_eq!(channel.peer(), w.doorbell_id.identifier());
    let doorbell_end = tokio::time::timeout(Duration::from_secs(5), w.listener.accepted())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doorbell_end.peer(), w.phone_id.identifier());

    let mut inbox = reply_box(&w.phone, "inbox", &channel);
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
    let outer = create_channel(&w.phone, &w.phone_id, w.to_doorbell.clone(), any_peer())
        .await
        .unwrap();
    // The doorbell's listener takes handshakes out of its own channels too (nesting is opted into).
    w.doorbell.allow(&"api".into(), w.listener.flow).unwrap();
    // The inner channel's handshake and frames travel as messages inside the outer channel.
    let inner = create_channel(&w.phone, &w.phone_id, outer.route_to("api"), any_peer())
        .await
        .unwrap();
    assert_eq!(inner.peer(), w.doorbell_id.identifier());
    assert_ne!(inner.address(), outer.address());
    let outer_frames_before = ChannelStats::get(&outer.stats().frames_sent);
    let mut inbox = reply_box(&w.phone, "inbox", &inner);
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
    let strict = trusting([stranger.identifier()]);
    create_listener(&w.doorbell, &w.doorbell_id, "strict".into(), strict).unwrap();
    // Reached through the relay, so the listener takes handshakes out of the doorbell's relay channel.
    w.doorbell
        .allow(&"strict".into(), w.doorbell_to_relay.flow())
        .unwrap();
    let mut route = w.to_doorbell.clone();
    route = Route::from_addresses(route.iter().take(2).cloned()).append(Address::from("strict"));
    let err = create_channel(&w.phone, &w.phone_id, route, any_peer())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");

    // The phone only trusts a stranger: it refuses the doorbell.
    let picky = trusting([stranger.identifier()]);
    let err = create_channel(&w.phone, &w.phone_id, w.to_doorbell.clone(), picky)
        .await
        .unwrap_err();
    assert!(
        matches!(err, latchkey_runtime::RuntimeError::Untrusted(_)),
        "{err}"
    );

    // A stranger gets a channel to "api", but the echo service admits only the phone.
    let stranger_channel = create_channel(&w.phone, &stranger, w.to_doorbell.clone(), any_peer())
        .await
        .unwrap();
    let got = sink(&w.phone, "stranger-inbox");
    w.phone
        .allow(&"stranger-inbox".into(), stranger_channel.flow())
        .unwrap();
    let refused = stranger_channel
        .send_confirmed(
            Route::from(["echo"]),
            Route::from(["stranger-inbox"]),
            b"let me in".to_vec(),
        )
        .await;
    // Refused at the far end, and the sender hears so (not which reason: no such service or not for it).
    assert!(
        matches!(
            refused,
            Err(latchkey_runtime::RuntimeError::UnknownAddress(_))
        ),
        "{refused:?}"
    );
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
    let listener = create_listener(&b, &b_id, "api".into(), any_peer()).unwrap();
    start_echo(&b, "echo".into(), Accepts::flow(listener.flow)).unwrap();
    let channel = create_channel(
        &a,
        &LocalIdentity::create().unwrap(),
        Route::from_addresses([a_to_b, "api".into()]),
        trusting([b_id.identifier()]),
    )
    .await
    .unwrap();
    assert_eq!(channel.peer(), b_id.identifier());
    let mut inbox = reply_box(&a, "inbox", &channel);
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
    let relay = start_relay_node(|_| {}).await;
    let doorbell = Node::new("doorbell");
    let doorbell_id = LocalIdentity::create().unwrap();
    let listener = create_listener(&doorbell, &doorbell_id, "api".into(), any_peer()).unwrap();
    register_securely(
        &doorbell,
        &doorbell_id,
        &relay.addr,
        "doorbell",
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    start_echo(&doorbell, "echo".into(), Accepts::flow(listener.flow)).unwrap();

    // Another identity cannot take the name.
    let impostor = Node::new("impostor");
    let err = register_securely(
        &impostor,
        &LocalIdentity::create().unwrap(),
        &relay.addr,
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
    let link = tcp::connect(&phone, &relay.addr, TcpOptions::default())
        .await
        .unwrap();
    let route = Route::from_addresses([link, forwarder_address("doorbell").unwrap(), "api".into()]);
    let channel = create_channel(
        &phone,
        &LocalIdentity::create().unwrap(),
        route,
        trusting([doorbell_id.identifier()]),
    )
    .await
    .unwrap();
    assert_eq!(channel.peer(), doorbell_id.identifier());
    let mut inbox = reply_box(&phone, "inbox", &channel);
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
