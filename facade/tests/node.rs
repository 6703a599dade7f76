//! The facade's node surface on real loopback sockets, driven from a caller's own executor (a current-thread
//! tokio runtime here; Python's asyncio or a C thread elsewhere): the facade runs its work on its own runtime.

use latchkey_facade::*;
use std::time::Duration;

fn identity() -> Identity {
    Identity::create(&Vault::new(), IdentityOptions::default(), None).unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn a_phone_reaches_a_doorbell_service_and_a_mailbox_sees_the_authenticated_origin() {
    let (doorbell_id, phone_id) = (identity(), identity());
    let doorbell = Node::new(&doorbell_id, NodeOptions::default()).unwrap();
    let address = doorbell.listen_tcp("127.0.0.1:0".into()).await.unwrap();
    let phone_only = Trust::Identifiers(vec![phone_id.identifier()]);
    let listener = doorbell.listen("api".into(), phone_only.clone()).unwrap();
    doorbell
        .start_echo("echo".into(), phone_only.clone())
        .unwrap();
    let inbox = doorbell.mailbox("inbox".into(), phone_only).unwrap();

    let phone = Node::new(&phone_id, NodeOptions::default()).unwrap();
    let channel = phone
        .connect(
            Peer::tcp(address.clone()),
            Trust::Identifiers(vec![doorbell_id.identifier()]),
            ConnectOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(channel.peer_identifier(), doorbell_id.identifier());
    let reply = channel
        .request("echo".into(), b"ding".to_vec(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(reply, b"ding");

    channel
        .send("inbox".into(), b"hello".to_vec(), None)
        .await
        .unwrap();
    let message = inbox.clone().recv().await.unwrap().unwrap();
    assert_eq!(message.payload(), b"hello");
    assert_eq!(
        message.origin(),
        MessageOrigin::Channel {
            peer_identifier: phone_id.identifier()
        }
    );
    let accepted = listener.clone().accept().await.unwrap().unwrap();
    assert_eq!(accepted.peer_identifier(), phone_id.identifier());

    // A mailbox reply goes back through the channel to the phone's reply mailbox (open to the doorbell).
    let replies = phone
        .mailbox(
            "replies".into(),
            Trust::Identifiers(vec![doorbell_id.identifier()]),
        )
        .unwrap();
    channel
        .send("inbox".into(), b"answer me".to_vec(), Some(replies.clone()))
        .await
        .unwrap();
    let question = inbox.clone().recv().await.unwrap().unwrap();
    inbox.reply(question, b"answered".to_vec()).await.unwrap();
    let answer = replies.clone().recv().await.unwrap().unwrap();
    assert_eq!(answer.payload(), b"answered");
    assert_eq!(answer.peer_identifier(), Some(doorbell_id.identifier()));

    // Close completes; later use fails with a typed error.
    channel.close().await.unwrap();
    assert!(channel.is_closed());
    let err = channel
        .send("inbox".into(), b"late".to_vec(), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ChannelClosed);

    // Shutdown ends the node's mailboxes and listeners.
    doorbell.shutdown().await.unwrap();
    assert!(inbox.clone().recv().await.unwrap().is_none());
    assert!(listener.accept().await.unwrap().is_none());
    let err = doorbell.listen_tcp("127.0.0.1:0".into()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::ChannelClosed);
}

#[tokio::test(flavor = "current_thread")]
async fn untrusted_peers_unreachable_addresses_and_missing_trust_are_typed_errors() {
    let (doorbell_id, phone_id) = (identity(), identity());
    let doorbell = Node::new(&doorbell_id, NodeOptions::default()).unwrap();
    let address = doorbell.listen_tcp("127.0.0.1:0".into()).await.unwrap();
    doorbell.listen("api".into(), Trust::AnyIdentity).unwrap();
    let phone = Node::new(&phone_id, NodeOptions::default()).unwrap();
    let stranger = identity().identifier();
    let err = phone
        .connect(
            Peer::tcp(address),
            Trust::Identifiers(vec![stranger]),
            ConnectOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::UntrustedPeer, "{err}");
    let err = phone
        .connect(
            Peer::tcp("not an address"),
            Trust::AnyIdentity,
            ConnectOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadAddress, "{err}");
    let taken = doorbell.listen_tcp("127.0.0.1:0".into()).await.unwrap();
    let err = phone.listen_tcp(taken).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::AddressInUse, "{err}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_device_registered_at_a_relay_is_reached_by_name_and_a_portal_crosses_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (relay_id, doorbell_id, phone_id) = (identity(), identity(), identity());
    let relay = Node::new(
        &relay_id,
        NodeOptions {
            name: "relay".into(),
            relay: true,
        },
    )
    .unwrap();
    let relay_address = relay.listen_tcp("127.0.0.1:0".into()).await.unwrap();
    relay.listen("api".into(), Trust::AnyIdentity).unwrap();
    relay.start_relay(RelayServiceOptions::default()).unwrap();

    let camera = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let camera_address = camera.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut s, _) = camera.accept().await.unwrap();
        s.write_all(b"picture").await.unwrap();
        s.shutdown().await.unwrap();
    });
    let doorbell = Node::new(&doorbell_id, NodeOptions::default()).unwrap();
    let phone_only = Trust::Identifiers(vec![phone_id.identifier()]);
    doorbell.listen("api".into(), phone_only.clone()).unwrap();
    doorbell
        .start_echo("echo".into(), phone_only.clone())
        .unwrap();
    doorbell
        .create_outlet("outlet".into(), camera_address, phone_only)
        .unwrap();
    doorbell
        .register_at_relay(
            relay_address.clone(),
            Trust::Identifiers(vec![relay_id.identifier()]),
            "doorbell".into(),
        )
        .await
        .unwrap();

    let phone = Node::new(&phone_id, NodeOptions::default()).unwrap();
    let channel = phone
        .connect(
            Peer::via_relay(relay_address, "doorbell"),
            Trust::Identifiers(vec![doorbell_id.identifier()]),
            ConnectOptions::default(),
        )
        .await
        .unwrap();
    let reply = channel
        .request("echo".into(), b"ding".to_vec(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(reply, b"ding");
    let inlet = phone
        .create_inlet("127.0.0.1:0".into(), channel.clone(), "outlet".into())
        .await
        .unwrap();
    let mut client = tokio::net::TcpStream::connect(inlet).await.unwrap();
    let mut picture = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut picture))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(picture, b"picture");
    for node in [phone, doorbell, relay] {
        node.shutdown().await.unwrap();
    }
}
