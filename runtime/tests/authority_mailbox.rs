//! Relay mailboxes on loopback TCP: a device without a channel deposits for an offline recipient; only the
//! recipient, through its own secure channel, collects; the bounds refuse floods; mail survives a relay
//! restart (the SQLite file).

mod common;

use common::{any_peer, init_logs};
use latchkey_runtime::relay::mailbox::{
    deposit, start_mailbox, MailStore, MailboxClient, MailboxHandle, MailboxOptions,
};
use latchkey_runtime::transport::tcp::{self, TcpOptions};
use latchkey_runtime::{
    create_channel, create_listener, ChannelHandle, LocalIdentity, Node, Route, RuntimeError,
};
use std::path::Path;

struct MailRelay {
    node: Node,
    addr: String,
    handle: MailboxHandle,
}

async fn mail_relay(path: &Path, configure: impl FnOnce(&mut MailboxOptions)) -> MailRelay {
    let node = Node::relay("relay");
    let identity = LocalIdentity::create().unwrap();
    let listener = create_listener(&node, &identity, "api".into(), any_peer()).unwrap();
    let mut options = MailboxOptions::new(
        path.to_path_buf(),
        latchkey_runtime::Accepts::flow(listener.flow),
    );
    configure(&mut options);
    let handle = start_mailbox(&node, "mailbox".into(), "mailbox-owner".into(), options).unwrap();
    let tcp = tcp::listen(&node, "127.0.0.1:0", TcpOptions::default())
        .await
        .unwrap();
    let addr = tcp.local_addr.to_string();
    std::mem::forget(tcp);
    MailRelay { node, addr, handle }
}

/// A node and its channel to the relay, as `identity`.
async fn owner(
    relay: &MailRelay,
    identity: &LocalIdentity,
) -> (Node, ChannelHandle, MailboxClient) {
    let node = Node::new("owner");
    let link = tcp::connect(&node, &relay.addr, TcpOptions::default())
        .await
        .unwrap();
    let channel = create_channel(
        &node,
        identity,
        Route::from_addresses([link, "api".into()]),
        any_peer(),
    )
    .await
    .unwrap();
    let client = MailboxClient::new(&node, &channel, "mailbox-owner".into());
    (node, channel, client)
}

/// A device: a bare TCP connection to the relay (no channel, no identity).
async fn device(relay: &MailRelay) -> (Node, Route, latchkey_runtime::FlowId) {
    let node = Node::new("device");
    let link = tcp::connect(&node, &relay.addr, TcpOptions::default())
        .await
        .unwrap();
    let flow = node.flow_of(&link).unwrap();
    (node, Route::from_addresses([link, "mailbox".into()]), flow)
}

fn refused(r: latchkey_runtime::Result<()>) -> String {
    match r {
        Err(RuntimeError::MailboxRefused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_for_an_offline_recipient_waits_and_only_the_recipient_collects_it() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let relay = mail_relay(&dir.path().join("mail.sqlite3"), |_| {}).await;
    let authority = LocalIdentity::create().unwrap();
    let (dev, to_mailbox, flow) = device(&relay).await;

    // No mailbox yet: refused, nothing stored.
    let why = refused(
        deposit(
            &dev,
            to_mailbox.clone(),
            flow,
            &authority.identifier(),
            b"early",
        )
        .await,
    );
    assert!(why.contains("no-mailbox"), "{why}");

    // The authority opens its mailbox, then goes offline (its node and channel are dropped).
    {
        let (node, channel, client) = owner(&relay, &authority).await;
        client.open().await.unwrap();
        channel.close().await;
        drop(node);
    }
    for i in 0..3u8 {
        deposit(
            &dev,
            to_mailbox.clone(),
            flow,
            &authority.identifier(),
            &[i; 100],
        )
        .await
        .unwrap();
    }
    assert_eq!(relay.handle.stats().deposited, 3);

    // Someone else, authenticated as itself, reaches only its own (unopened, empty) mailbox: it cannot
    // name the authority's.
    let mallory = LocalIdentity::create().unwrap();
    let (_m, _mc, mallory_client) = owner(&relay, &mallory).await;
    assert!(mallory_client.collect(100).await.unwrap().is_empty());

    // The authority comes back and collects, in order; until it acknowledges, the mail stays.
    let (_n, _c, client) = owner(&relay, &authority).await;
    let batch = client.collect(100).await.unwrap();
    assert_eq!(
        batch.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>(),
        vec![vec![0u8; 100], vec![1u8; 100], vec![2u8; 100]]
    );
    assert_eq!(client.collect(100).await.unwrap().len(), 3);
    client.ack(batch[1].0).await.unwrap();
    let rest = client.collect(100).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].1, vec![2u8; 100]);
    client.ack(rest[0].0).await.unwrap();
    assert!(client.collect(100).await.unwrap().is_empty());

    // Closing the mailbox refuses further deposits.
    client.close().await.unwrap();
    let why = refused(deposit(&dev, to_mailbox, flow, &authority.identifier(), b"late").await);
    assert!(why.contains("no-mailbox"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposits_are_bounded_by_size_count_bytes_and_rate_per_source() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let relay = mail_relay(&dir.path().join("mail.sqlite3"), |o| {
        o.max_message = 1000;
        o.max_per_recipient = 8;
        o.max_bytes_per_recipient = 3000;
        o.per_source_rate = (0.001, 4.0);
    })
    .await;
    let authority = LocalIdentity::create().unwrap();
    let (_n, _c, client) = owner(&relay, &authority).await;
    client.open().await.unwrap();
    let to = authority.identifier();

    let (dev, route, flow) = device(&relay).await;
    let why = refused(deposit(&dev, route.clone(), flow, &to, &[0; 1001]).await);
    assert!(why.contains("too-large"), "{why}");
    // Three of 900 bytes fit in 3000 bytes; the fourth does not.
    for _ in 0..3 {
        deposit(&dev, route.clone(), flow, &to, &[1; 900])
            .await
            .unwrap();
    }
    let why = refused(deposit(&dev, route.clone(), flow, &to, &[1; 900]).await);
    assert!(why.contains("full"), "{why}");
    // This source has used its burst of 4 (the oversize one was refused before counting; the full one
    // counted).
    let why = refused(deposit(&dev, route.clone(), flow, &to, &[1; 10]).await);
    assert!(why.contains("rate"), "{why}");
    // Other connections have their own rates, and meet the count bound: 8 messages.
    let (dev2, route2, flow2) = device(&relay).await;
    for _ in 0..4 {
        deposit(&dev2, route2.clone(), flow2, &to, &[2; 10])
            .await
            .unwrap();
    }
    let (dev3, route3, flow3) = device(&relay).await;
    deposit(&dev3, route3.clone(), flow3, &to, &[3; 10])
        .await
        .unwrap();
    let why = refused(deposit(&dev3, route3.clone(), flow3, &to, &[3; 10]).await);
    assert!(why.contains("full"), "{why}");
    let (count, bytes) = {
        let store = MailStore::open(&dir.path().join("mail.sqlite3")).unwrap();
        store.waiting(&to).unwrap().unwrap()
    };
    assert_eq!(count, 8);
    assert_eq!(bytes, 3 * 900 + 5 * 10);
    assert!(relay.handle.stats().refused >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_operations_over_a_bare_transport_get_no_answer() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let relay = mail_relay(&dir.path().join("mail.sqlite3"), |_| {}).await;
    let node = Node::new("intruder");
    let link = tcp::connect(&node, &relay.addr, TcpOptions::default())
        .await
        .unwrap();
    let denied_before = relay.node.denied_count();
    let mut inbox = node
        .register_with(
            "inbox".into(),
            4,
            latchkey_runtime::Accepts::flow(node.flow_of(&link).unwrap()),
        )
        .unwrap();
    node.send(latchkey_runtime::Message::new(
        Route::from_addresses([link, "mailbox-owner".into()]),
        Route::from(["inbox"]),
        vec![latchkey_runtime::relay::mailbox::COLLECT, 0, 10],
    ))
    .await
    .unwrap();
    // The flow rules refuse it at the relay (counted), so nothing is answered.
    for _ in 0..100 {
        if relay.node.denied_count() > denied_before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(relay.node.denied_count() > denied_before);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), inbox.recv())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_survives_a_relay_restart() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mail.sqlite3");
    let authority = LocalIdentity::create().unwrap();
    {
        let relay = mail_relay(&path, |_| {}).await;
        let (_n, _c, client) = owner(&relay, &authority).await;
        client.open().await.unwrap();
        let (dev, route, flow) = device(&relay).await;
        deposit(&dev, route, flow, &authority.identifier(), b"enroll me")
            .await
            .unwrap();
    }
    // A new relay process on the same file (a new listener, new identity, new port).
    let relay = mail_relay(&path, |_| {}).await;
    let (_n, _c, client) = owner(&relay, &authority).await;
    let batch = client.collect(10).await.unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].1, b"enroll me");
}
