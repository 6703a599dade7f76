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
    let relay_peer = doorbell
        .register_at_relay(
            relay_address.clone(),
            Trust::Identifiers(vec![relay_id.identifier()]),
            "doorbell".into(),
        )
        .await
        .unwrap();
    assert_eq!(relay_peer, relay_id.identifier());

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

#[test]
fn a_bad_identity_name_or_identifier_is_an_argument_error_not_a_storage_error() {
    let home = std::env::temp_dir().join(format!(
        "latchkey-facade-store-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    let store = IdentityStore::open(Some(home.to_string_lossy().into_owned())).unwrap();
    for name in ["has space", "", "../up", &"x".repeat(65)] {
        let err = store.create(name).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidArgument, "{name:?}: {err}");
        assert!(err.message().contains("invalid identity name"), "{err}");
    }
    let err = Node::with_stored_identity(
        "has space",
        Some(home.to_string_lossy().into_owned()),
        true,
        NodeOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    assert!(store.list().unwrap().is_empty());
    let made = store.create("ok-name_1.2").unwrap();
    assert!(check_identifier(&made.identifier).is_ok());
    let err = check_identifier("lk00").unwrap_err();
    assert_eq!(err.code(), ErrorCode::DecodeError, "{err}");
    let _ = std::fs::remove_dir_all(home);
}

#[tokio::test(flavor = "current_thread")]
async fn closing_a_mailbox_while_someone_waits_frees_its_address() {
    let node = Node::new(&identity(), NodeOptions::default()).unwrap();
    let mailbox = node
        .mailbox("box".into(), Trust::Identifiers(vec![]))
        .unwrap();
    let waiting = tokio::spawn(mailbox.clone().recv());
    // Long enough for the receive to be waiting inside the mailbox (the case this is about).
    tokio::time::sleep(Duration::from_millis(50)).await;
    mailbox.close();
    assert!(waiting.await.unwrap().unwrap().is_none());
    // The address is free again although `mailbox` is still referenced.
    node.mailbox("box".into(), Trust::Identifiers(vec![]))
        .unwrap();
    node.shutdown().await.unwrap();
}
