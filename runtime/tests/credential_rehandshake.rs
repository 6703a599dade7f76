//! Credentials renewed on a live channel, over loopback TCP with injected clocks: the initiator's
//! `CredentialSlot` is read at every re-handshake; the responder replaces the channel's credentials (its
//! handles and the origin of every later message) only after its membership check accepts the new ones. A
//! re-handshake presenting another member's credential closes the channel; a fresh credential of its own
//! keeps the channel past the old one's expiry.

mod common;

use common::{any_peer, init_logs, trusting};
use latchkey_core::credential::{Attributes, Credential, TrustedAuthorities};
use latchkey_core::policy::Policy;
use latchkey_core::wire::Encode;
use latchkey_core::Timestamp;
use latchkey_runtime::authority::enforce::Requirement;
use latchkey_runtime::authority::{client, Authority, AuthorityOptions, Membership};
use latchkey_runtime::channel::{ChannelStats, CredentialSlot};
use latchkey_runtime::services::start_echo;
use latchkey_runtime::transport::tcp::{self, TcpOptions};
use latchkey_runtime::{
    create_channel, create_listener, Accepts, Address, ChannelHandle, LocalIdentity, Message, Node,
    Route,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const VALIDITY: u64 = 3600;

struct World {
    authority: Arc<Authority>,
    authority_clock: Arc<AtomicU64>,
    authority_addr: String,
    machine_addr: String,
    machine_clock: Arc<AtomicU64>,
    membership: Arc<Membership>,
    accepted: tokio::sync::mpsc::Receiver<ChannelHandle>,
    _dir: tempfile::TempDir,
}

fn clock_fn(c: &Arc<AtomicU64>) -> Arc<dyn Fn() -> Timestamp + Send + Sync> {
    let c = c.clone();
    Arc::new(move || Timestamp(c.load(Ordering::SeqCst)))
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let authority_clock = Arc::new(AtomicU64::new(Timestamp::now().0));
    let identity = LocalIdentity::create().unwrap();
    let authority = Authority::open(
        identity.clone(),
        &dir.path().join("authority.sqlite3"),
        AuthorityOptions {
            credential_validity_secs: VALIDITY,
            clock: clock_fn(&authority_clock),
            ..Default::default()
        },
    )
    .unwrap();
    let anode = Node::new("authority");
    let listener = create_listener(&anode, &identity, "api".into(), any_peer()).unwrap();
    authority
        .serve(&anode, "authority".into(), Accepts::flow(listener.flow))
        .unwrap();
    let tcp = tcp::listen(&anode, "127.0.0.1:0", TcpOptions::default())
        .await
        .unwrap();
    let authority_addr = tcp.local_addr.to_string();
    std::mem::forget((tcp, listener, anode));

    // The machine: its listener and its `telemetry` service require the authority's engineers.
    let machine_clock = Arc::new(AtomicU64::new(Timestamp::now().0));
    let membership = Membership::with_clock(
        TrustedAuthorities::new().with(authority.history().clone()),
        clock_fn(&machine_clock),
    );
    let mid = LocalIdentity::create().unwrap();
    let node = Node::new("machine");
    let options = latchkey_runtime::ChannelOptions::default().with_trust(membership.trust(None));
    let mut listener = create_listener(&node, &mid, "api".into(), options).unwrap();
    let policy = Policy::parse(r#"subject.role = "engineer""#).unwrap();
    start_echo(
        &node,
        "telemetry".into(),
        Accepts::flow(listener.flow).with_guard(membership.guard(Some(Requirement::new(
            policy,
            "telemetry",
            "send",
        )))),
    )
    .unwrap();
    let (tx, accepted) = tokio::sync::mpsc::channel(8);
    let m = membership.clone();
    tokio::spawn(async move {
        while let Some(c) = listener.accepted().await {
            m.watch(c.clone());
            let _ = tx.send(c).await;
        }
    });
    let tcp = tcp::listen(&node, "127.0.0.1:0", TcpOptions::default())
        .await
        .unwrap();
    let machine_addr = tcp.local_addr.to_string();
    std::mem::forget((tcp, node));
    World {
        authority,
        authority_clock,
        authority_addr,
        machine_addr,
        machine_clock,
        membership,
        accepted,
        _dir: dir,
    }
}

async fn to_authority(w: &World, id: &LocalIdentity) -> (Node, ChannelHandle) {
    let node = Node::new("member");
    let link = tcp::connect(&node, &w.authority_addr, TcpOptions::default())
        .await
        .unwrap();
    let channel = create_channel(
        &node,
        id,
        Route::from_addresses([link, "api".into()]),
        trusting([w.authority.identifier()]),
    )
    .await
    .unwrap();
    (node, channel)
}

async fn member(w: &World, role: &str) -> (LocalIdentity, Credential) {
    let id = LocalIdentity::create().unwrap();
    let token = w
        .authority
        .create_token(&Attributes::from_pairs([("role", role)]).unwrap(), 600, 1)
        .unwrap();
    let (node, channel) = to_authority(w, &id).await;
    let c = client::enroll(&node, &channel, &"authority".into(), &token, id.history())
        .await
        .unwrap();
    (id, c)
}

/// The engineer's channel to the machine, presenting what `slot` holds, with an inbox for replies.
async fn engineer_channel(
    w: &mut World,
    id: &LocalIdentity,
    slot: &CredentialSlot,
) -> (
    Node,
    ChannelHandle,
    latchkey_runtime::Mailbox,
    ChannelHandle,
) {
    let node = Node::new("engineer");
    let link = tcp::connect(&node, &w.machine_addr, TcpOptions::default())
        .await
        .unwrap();
    let mut options = any_peer();
    options.credentials = Some(slot.clone());
    let channel = create_channel(
        &node,
        id,
        Route::from_addresses([link, "api".into()]),
        options,
    )
    .await
    .unwrap();
    let inbox = node
        .register_with(
            "inbox".into(),
            16,
            Accepts::flow(channel.flow()).from_peers([channel.peer()]),
        )
        .unwrap();
    let far = tokio::time::timeout(Duration::from_secs(5), w.accepted.recv())
        .await
        .unwrap()
        .unwrap();
    (node, channel, inbox, far)
}

async fn ask(
    node: &Node,
    channel: &ChannelHandle,
    inbox: &mut latchkey_runtime::Mailbox,
) -> Option<Vec<u8>> {
    node.send(Message::new(
        channel.route_to(Address::from("telemetry")),
        Route::from(["inbox"]),
        b"reading".to_vec(),
    ))
    .await
    .ok()?;
    tokio::time::timeout(Duration::from_millis(1500), inbox.recv())
        .await
        .ok()
        .flatten()
        .map(|m| m.payload)
}

fn rekeys(c: &ChannelHandle) -> u64 {
    ChannelStats::get(&c.stats().rekeys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehandshake_presenting_another_members_credential_closes_the_channel() {
    init_logs();
    let mut w = world().await;
    let (engineer, mine) = member(&w, "engineer").await;
    let (_other, theirs) = member(&w, "engineer").await;
    let slot = CredentialSlot::new(vec![mine.to_bytes()]);
    let (node, channel, mut inbox, far) = engineer_channel(&mut w, &engineer, &slot).await;
    assert!(ask(&node, &channel, &mut inbox).await.is_some());

    // Another member's (valid) credential: the engineer proves its own identity in the re-handshake, the
    // machine's membership check refuses it, and the machine closes the channel (not only the attempt).
    slot.set(vec![theirs.to_bytes()]);
    channel.rehandshake_soon().await;
    tokio::time::timeout(Duration::from_secs(5), far.closed())
        .await
        .expect("the machine kept a channel whose peer presented another's credential");
    tokio::time::timeout(Duration::from_secs(5), channel.closed())
        .await
        .expect("the engineer's end stayed open");
    assert_eq!(
        rekeys(&channel),
        0,
        "a re-handshake with another's credential completed"
    );
    assert_eq!(far.peer_identity().credentials, vec![mine.to_bytes()]);
    eprintln!("machine's close reason: {:?}", far.close_reason());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshed_credential_replaces_the_channels_after_a_rehandshake_and_keeps_it_past_the_old_expiry(
) {
    init_logs();
    let mut w = world().await;
    let (engineer, first) = member(&w, "engineer").await;
    let slot = CredentialSlot::new(vec![first.to_bytes()]);
    let (node, channel, mut inbox, far) = engineer_channel(&mut w, &engineer, &slot).await;
    assert!(ask(&node, &channel, &mut inbox).await.is_some());

    // Half the validity later (both clocks), the member refreshes and re-handshakes at once.
    w.authority_clock.fetch_add(VALIDITY / 2, Ordering::SeqCst);
    w.machine_clock.fetch_add(VALIDITY / 2, Ordering::SeqCst);
    let (anode, achannel) = to_authority(&w, &engineer).await;
    let fresh = client::refresh(&anode, &achannel, &"authority".into(), engineer.history())
        .await
        .unwrap();
    assert!(fresh.body.not_after.0 > first.body.not_after.0);
    slot.set(vec![fresh.to_bytes()]);
    channel.rehandshake_soon().await;
    for _ in 0..50 {
        if far.peer_identity().credentials == vec![fresh.to_bytes()] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(far.peer_identity().credentials, vec![fresh.to_bytes()]);
    assert!(rekeys(&channel) >= 1);

    // Past the first credential's expiry: the channel stays, and messages still pass the guard (their
    // origin carries the fresh credential).
    w.machine_clock
        .fetch_add(VALIDITY / 2 + 1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!channel.is_closed());
    assert_eq!(w.membership.closed_counts(), (0, 0));
    assert_eq!(
        ask(&node, &channel, &mut inbox).await.as_deref(),
        Some(&b"reading"[..])
    );
}
