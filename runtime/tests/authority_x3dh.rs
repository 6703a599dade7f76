//! X3DH enrollment (the core's `enroll`) on loopback TCP: directly over a channel-less route, and through a
//! relay mailbox while the authority is down; replay refused; one-time prekeys replenished.

mod common;

use common::{any_peer, init_logs};
use latchkey_core::credential::{Attributes, TrustedAuthorities};
use latchkey_core::enroll::{DeviceEnrollment, PrekeyBundle};
use latchkey_core::wire::Decode;
use latchkey_core::Timestamp;
use latchkey_runtime::authority::store::EnrollRefusal;
use latchkey_runtime::authority::x3dh::{GET_BUNDLE, X3DH_REQUEST};
use latchkey_runtime::authority::{client, Authority, AuthorityOptions};
use latchkey_runtime::relay::mailbox::{start_mailbox, MailboxClient, MailboxOptions};
use latchkey_runtime::transport::tcp::{self, TcpOptions};
use latchkey_runtime::{
    create_channel, create_listener, Accepts, ChannelHandle, LocalIdentity, Message, Node, Route,
    RuntimeError,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn authority(dir: &Path, identity: &LocalIdentity, one_time: usize) -> Arc<Authority> {
    Authority::open(
        identity.clone(),
        &dir.join("authority.sqlite3"),
        AuthorityOptions {
            one_time_prekeys: one_time,
            ..Default::default()
        },
    )
    .unwrap()
}

/// An authority node serving X3DH at `enroll` on TCP.
async fn direct(a: &Arc<Authority>) -> String {
    let node = Node::new("authority");
    a.serve_x3dh(&node, "enroll".into()).unwrap();
    let tcp = tcp::listen(&node, "127.0.0.1:0", TcpOptions::default())
        .await
        .unwrap();
    let addr = tcp.local_addr.to_string();
    std::mem::forget(tcp);
    std::mem::forget(node);
    addr
}

async fn device_link(addr: &str) -> (Node, Route, latchkey_runtime::FlowId) {
    let node = Node::new("device");
    let link = tcp::connect(&node, addr, TcpOptions::default())
        .await
        .unwrap();
    let flow = node.flow_of(&link).unwrap();
    (node, Route::from_addresses([link, "enroll".into()]), flow)
}

async fn raw(
    node: &Node,
    route: &Route,
    flow: latchkey_runtime::FlowId,
    payload: Vec<u8>,
) -> Vec<u8> {
    let mut inbox = node
        .register_with(node.unique_address("raw"), 4, Accepts::flow(flow))
        .unwrap();
    let me = inbox.address().clone();
    node.send(Message::new(
        route.clone(),
        Route::from_addresses([me.clone()]),
        payload,
    ))
    .await
    .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), inbox.recv())
        .await
        .unwrap()
        .unwrap()
        .payload;
    node.unregister(&me);
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x3dh_enrollment_over_tcp_once_per_token_and_a_replay_is_refused() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let id = LocalIdentity::create().unwrap();
    let a = authority(dir.path(), &id, 8);
    let addr = direct(&a).await;
    let token = a
        .create_token(
            &Attributes::from_pairs([("role", "sensor")]).unwrap(),
            600,
            1,
        )
        .unwrap();

    let device = LocalIdentity::create().unwrap();
    let (node, route, flow) = device_link(&addr).await;
    let credential = client::enroll_x3dh(&node, route.clone(), flow, &token, &device)
        .await
        .unwrap();
    credential
        .verify(
            &TrustedAuthorities::new().with(id.history().clone()),
            &device.identifier(),
            device.history(),
            Timestamp::now(),
        )
        .unwrap();
    assert_eq!(credential.body.attributes.get("role"), Some("sensor"));

    // The same token, another device: used up.
    let other = LocalIdentity::create().unwrap();
    match client::enroll_x3dh(&node, route.clone(), flow, &token, &other).await {
        Err(RuntimeError::EnrollmentRefused(EnrollRefusal::TokenUsedUp)) => {}
        r => panic!("expected TokenUsedUp, got {r:?}"),
    }

    // A replayed request (same bytes twice) with a multi-use token: the second is refused, and only one
    // member is made.
    let multi = a.create_token(&Attributes::new(), 600, 5).unwrap();
    let third = LocalIdentity::create().unwrap();
    let bundle = raw(&node, &route, flow, vec![GET_BUNDLE]).await;
    let bundle = PrekeyBundle::from_bytes(&bundle[1..]).unwrap();
    let (_state, request) = DeviceEnrollment::start(
        &multi,
        &bundle,
        &third,
        latchkey_core::crypto::default_provider(),
        Timestamp::now(),
    )
    .unwrap();
    let first = raw(
        &node,
        &route,
        flow,
        [&[X3DH_REQUEST][..], &request].concat(),
    )
    .await;
    assert_eq!(
        first[0],
        0x00,
        "first request refused: {:?}",
        String::from_utf8_lossy(&first)
    );
    let again = raw(
        &node,
        &route,
        flow,
        [&[X3DH_REQUEST][..], &request].concat(),
    )
    .await;
    assert_eq!(again[0], 0xFF);
    let members = a.with_store(|s| {
        use latchkey_runtime::authority::AuthorityStore;
        (
            s.members().unwrap().len(),
            s.token(&multi.secret_hash()).unwrap().unwrap().uses_left,
        )
    });
    assert_eq!(members, (2, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_prekeys_are_replenished_as_enrollments_consume_them() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let id = LocalIdentity::create().unwrap();
    let a = authority(dir.path(), &id, 8);
    assert_eq!(a.one_time_prekeys_available(), 8);
    let addr = direct(&a).await;
    let token = a.create_token(&Attributes::new(), 600, 30).unwrap();
    let (node, route, flow) = device_link(&addr).await;
    let mut least = usize::MAX;
    for _ in 0..20 {
        let device = LocalIdentity::create().unwrap();
        client::enroll_x3dh(&node, route.clone(), flow, &token, &device)
            .await
            .unwrap();
        least = least.min(a.one_time_prekeys_available());
    }
    // 20 enrollments used 20 one-time prekeys out of a pool of 8: replenished, never empty.
    assert!(least >= 1, "ran out of one-time prekeys");
    // The prekeys survive a restart (persisted; the consumed ones are gone).
    let available = a.one_time_prekeys_available();
    drop(a);
    let reopened = authority(dir.path(), &id, 8);
    assert_eq!(reopened.one_time_prekeys_available(), available);
}

struct Relay {
    addr: String,
}

async fn relay(dir: &Path) -> Relay {
    let node = Node::relay("relay");
    let identity = LocalIdentity::create().unwrap();
    let listener = create_listener(&node, &identity, "api".into(), any_peer()).unwrap();
    start_mailbox(
        &node,
        "mailbox".into(),
        "mailbox-owner".into(),
        MailboxOptions::new(dir.join("mail.sqlite3"), Accepts::flow(listener.flow)),
    )
    .unwrap();
    let tcp = tcp::listen(&node, "127.0.0.1:0", TcpOptions::default())
        .await
        .unwrap();
    let addr = tcp.local_addr.to_string();
    std::mem::forget(tcp);
    std::mem::forget(listener);
    std::mem::forget(node);
    Relay { addr }
}

async fn channel_to_relay(relay: &Relay, id: &LocalIdentity) -> (Node, ChannelHandle) {
    let node = Node::new("to-relay");
    let link = tcp::connect(&node, &relay.addr, TcpOptions::default())
        .await
        .unwrap();
    let channel = create_channel(
        &node,
        id,
        Route::from_addresses([link, "api".into()]),
        any_peer(),
    )
    .await
    .unwrap();
    (node, channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_through_the_mailbox_while_the_authority_is_down_completes_when_it_returns() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let id = LocalIdentity::create().unwrap();
    let a = authority(dir.path(), &id, 16);
    let token = a
        .create_token(
            &Attributes::from_pairs([("role", "meter")]).unwrap(),
            600,
            1,
        )
        .unwrap();

    // The authority opens its mailbox and publishes its bundle, then goes down.
    {
        let (node, channel) = channel_to_relay(&relay, &id).await;
        let client = MailboxClient::new(&node, &channel, "mailbox-owner".into());
        let a2 = a.clone();
        let n2 = node.clone();
        let serving = tokio::spawn(async move {
            a2.serve_mailbox(&n2, client, "mailbox".into(), Duration::from_millis(100))
                .await
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        serving.abort();
        channel.close().await;
    }

    // The device enrolls while the authority is down: its request waits in the authority's mailbox.
    let device = LocalIdentity::create().unwrap();
    let (dnode, dchannel) = channel_to_relay(&relay, &device).await;
    let (t, d) = (token.clone(), device.clone());
    let enrolling = tokio::spawn(async move {
        client::enroll_via_mailbox(
            &dnode,
            &dchannel,
            &client::MailboxServices::default(),
            &t,
            &d,
            Duration::from_secs(30),
        )
        .await
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !enrolling.is_finished(),
        "answered while the authority was down"
    );
    assert!(a
        .with_store(|s| {
            use latchkey_runtime::authority::AuthorityStore;
            s.members()
        })
        .unwrap()
        .is_empty());

    // The authority comes back: it collects the request, enrolls the device and answers through the relay.
    let (node, channel) = channel_to_relay(&relay, &id).await;
    let client = MailboxClient::new(&node, &channel, "mailbox-owner".into());
    let a2 = a.clone();
    let n2 = node.clone();
    let _serving = tokio::spawn(async move {
        a2.serve_mailbox(&n2, client, "mailbox".into(), Duration::from_millis(100))
            .await
    });
    let credential = tokio::time::timeout(Duration::from_secs(20), enrolling)
        .await
        .expect("no answer after the authority returned")
        .unwrap()
        .unwrap();
    assert_eq!(credential.body.subject, device.identifier());
    assert_eq!(credential.body.attributes.get("role"), Some("meter"));
    let members = a.with_store(|s| {
        use latchkey_runtime::authority::AuthorityStore;
        s.members().unwrap()
    });
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].credential_id, Some(credential.id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_commit_keeps_each_refusal_to_itself() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let id = LocalIdentity::create().unwrap();
    let a = authority(dir.path(), &id, 16);
    let once = a.create_token(&Attributes::new(), 600, 1).unwrap();
    let many = a.create_token(&Attributes::new(), 600, 10).unwrap();
    let bundle = a.prekey_bundle().unwrap();
    let provider = latchkey_core::crypto::default_provider();
    let request = |token, opk: Option<u32>| {
        let device = LocalIdentity::create().unwrap();
        let eph = latchkey_core::crypto::generate_secret(provider).unwrap();
        DeviceEnrollment::start_with(
            token,
            &bundle,
            &device,
            provider,
            Timestamp::now(),
            opk,
            eph,
        )
        .unwrap()
        .1
    };
    let opk = bundle.body.one_time_prekeys[0].id;
    let batch = vec![
        request(&once, None),      // ok
        request(&once, None),      // the single-use token again: refused
        request(&many, Some(opk)), // ok, consumes the one-time prekey
        request(&many, Some(opk)), // the same one-time prekey: refused
        request(&many, None),      // ok
    ];
    let replay = batch[4].clone();
    let mut with_replay = batch.clone();
    with_replay.push(replay); // the same request twice in one batch: refused
    let results = a.handle_enrollments(&with_replay);
    let ok: Vec<bool> = results.iter().map(|r| r.is_ok()).collect();
    assert_eq!(ok, vec![true, false, true, false, true, false]);
    let (members, once_left, many_left) = a.with_store(|s| {
        use latchkey_runtime::authority::AuthorityStore;
        (
            s.members().unwrap().len(),
            s.token(&once.secret_hash()).unwrap().unwrap().uses_left,
            s.token(&many.secret_hash()).unwrap().unwrap().uses_left,
        )
    });
    assert_eq!((members, once_left, many_left), (3, 0, 8));
    a.with_store(|s| s.integrity_check()).unwrap();
}

/// The child side of the group-commit crash test: enrolls in batches until killed, printing each
/// enrolled identifier after its batch committed.
fn batch_child(home: &str, token: &str) {
    use std::io::Write;
    let identity = latchkey_runtime::storage::Store::open(Path::new(home))
        .unwrap()
        .load_identity("auth")
        .unwrap();
    let a = authority(Path::new(home), &identity, 16);
    let token = latchkey_runtime::authority::service::token_from_text(token).unwrap();
    let bundle = a.prekey_bundle().unwrap();
    let provider = latchkey_core::crypto::default_provider();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").unwrap();
    loop {
        let batch: Vec<(String, Vec<u8>)> = (0..16)
            .map(|_| {
                let device = LocalIdentity::create().unwrap();
                let eph = latchkey_core::crypto::generate_secret(provider).unwrap();
                let request = DeviceEnrollment::start_with(
                    &token,
                    &bundle,
                    &device,
                    provider,
                    Timestamp::now(),
                    None,
                    eph,
                )
                .unwrap()
                .1;
                (device.identifier().to_string(), request)
            })
            .collect();
        let requests: Vec<Vec<u8>> = batch.iter().map(|(_, r)| r.clone()).collect();
        for ((id, _), result) in batch.iter().zip(a.handle_enrollments(&requests)) {
            if result.is_ok() {
                writeln!(out, "{id}").unwrap();
            }
        }
        out.flush().unwrap();
    }
}

#[test]
fn kill_9_during_group_commits_loses_no_acknowledged_member() {
    use std::io::{BufRead, BufReader};
    if let (Ok(home), Ok(token)) = (
        std::env::var("LATCHKEY_BATCH_CHILD_HOME"),
        std::env::var("LATCHKEY_BATCH_CHILD_TOKEN"),
    ) {
        batch_child(&home, &token);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (identity, _) = latchkey_runtime::storage::Store::open(dir.path())
        .unwrap()
        .create_identity("auth")
        .unwrap();
    let token = {
        let a = authority(dir.path(), &identity, 16);
        let t = a.create_token(&Attributes::new(), 3600, 100_000).unwrap();
        latchkey_runtime::authority::service::token_to_text(&t)
    };
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill_9_during_group_commits_loses_no_acknowledged_member",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LATCHKEY_BATCH_CHILD_HOME", dir.path())
        .env("LATCHKEY_BATCH_CHILD_TOKEN", &token)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acknowledged = std::collections::HashSet::new();
    for line in lines.by_ref().map_while(Result::ok) {
        if line.starts_with("lk") {
            acknowledged.insert(line);
            if acknowledged.len() >= 64 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL, in the middle of a batch
    for line in lines.map_while(Result::ok) {
        if line.starts_with("lk") {
            acknowledged.insert(line);
        }
    }
    child.wait().unwrap();
    let a = authority(dir.path(), &identity, 16);
    let t = latchkey_runtime::authority::service::token_from_text(&token).unwrap();
    let (members, uses_left) = a.with_store(|s| {
        use latchkey_runtime::authority::AuthorityStore;
        s.integrity_check().unwrap();
        (
            s.members().unwrap(),
            s.token(&t.secret_hash()).unwrap().unwrap().uses_left,
        )
    });
    let present: std::collections::HashSet<_> =
        members.iter().map(|m| m.identifier.clone()).collect();
    assert!(
        acknowledged.is_subset(&present),
        "an acknowledged member was lost"
    );
    assert_eq!((100_000 - uses_left) as usize, members.len());
    // Every member's credential was recorded in its batch.
    assert!(members.iter().all(|m| m.credential_id.is_some()));
}
