//! The vertical slice on loopback TCP: an operator creates a token; a device enrolls with it through a
//! secure channel to the authority and gets a credential; the same token fails the second time; 100 devices
//! racing for one single-use token make exactly one member; an expired token fails; the maintenance
//! engineer's credential opens the machine's telemetry service and nothing else; revocation and expiry
//! close the live channel.

mod common;

use common::{any_peer, init_logs, trusting};
use latchkey_core::credential::{Attributes, TrustedAuthorities};
use latchkey_core::policy::Policy;
use latchkey_core::Timestamp;
use latchkey_runtime::authority::enforce::Requirement;
use latchkey_runtime::authority::store::{EnrollRefusal, Revoked};
use latchkey_runtime::authority::{client, Authority, AuthorityOptions, Membership};
use latchkey_runtime::services::start_echo;
use latchkey_runtime::transport::tcp::{self, TcpOptions};
use latchkey_runtime::{
    create_channel, create_listener, Accepts, Address, ChannelHandle, LocalIdentity, Message, Node,
    Route, RuntimeError,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct AuthorityNode {
    authority: Arc<Authority>,
    addr: String,
    clock: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
}

async fn authority_node() -> AuthorityNode {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicU64::new(Timestamp::now().0));
    let c = clock.clone();
    let options = AuthorityOptions {
        credential_validity_secs: 3600,
        clock: Arc::new(move || Timestamp(c.load(Ordering::SeqCst))),
        ..Default::default()
    };
    let identity = LocalIdentity::create().unwrap();
    let authority = Authority::open(
        identity.clone(),
        &dir.path().join("authority.sqlite3"),
        options,
    )
    .unwrap();
    let node = Node::new("authority");
    // Devices are not known before they enroll: the listener takes any authenticated identity, and the
    // service takes only that listener's channels.
    let listener = create_listener(&node, &identity, "api".into(), any_peer()).unwrap();
    authority
        .serve(&node, "authority".into(), Accepts::flow(listener.flow))
        .unwrap();
    let tcp = tcp::listen(&node, "127.0.0.1:0", TcpOptions::default())
        .await
        .unwrap();
    let addr = tcp.local_addr.to_string();
    std::mem::forget(tcp);
    std::mem::forget(listener);
    AuthorityNode {
        authority,
        addr,
        clock,
        _dir: dir,
    }
}

/// A device's channel to the authority (trusting only the authority's identifier).
async fn to_authority(a: &AuthorityNode, id: &LocalIdentity) -> (Node, ChannelHandle) {
    let node = Node::new("device");
    let link = tcp::connect(&node, &a.addr, TcpOptions::default())
        .await
        .unwrap();
    let channel = create_channel(
        &node,
        id,
        Route::from_addresses([link, "api".into()]),
        trusting([a.authority.identifier()]),
    )
    .await
    .unwrap();
    (node, channel)
}

async fn enroll(
    a: &AuthorityNode,
    id: &LocalIdentity,
    token: &latchkey_runtime::authority::EnrollmentToken,
) -> latchkey_runtime::Result<latchkey_core::credential::Credential> {
    let (node, channel) = to_authority(a, id).await;
    client::enroll(&node, &channel, &"authority".into(), token, id.history()).await
}

fn attrs(pairs: &[(&str, &str)]) -> Attributes {
    Attributes::from_pairs(pairs.iter().copied()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_enrolls_once_and_an_expired_token_fails() {
    init_logs();
    let a = authority_node().await;
    let token = a
        .authority
        .create_token(&attrs(&[("role", "sensor")]), 600, 1)
        .unwrap();
    // The token round-trips through its text form (what the operator hands over).
    let token = latchkey_runtime::authority::service::token_from_text(
        &latchkey_runtime::authority::service::token_to_text(&token),
    )
    .unwrap();

    let device = LocalIdentity::create().unwrap();
    let credential = enroll(&a, &device, &token).await.unwrap();
    assert_eq!(credential.body.subject, device.identifier());
    assert_eq!(credential.body.issuer, a.authority.identifier());
    assert_eq!(credential.body.attributes.get("role"), Some("sensor"));
    let trusted = TrustedAuthorities::new().with(a.authority.history().clone());
    credential
        .verify(
            &trusted,
            &device.identifier(),
            device.history(),
            Timestamp::now(),
        )
        .unwrap();

    // The same token a second time (another device): refused, and that device is not a member.
    let second = LocalIdentity::create().unwrap();
    match enroll(&a, &second, &token).await {
        Err(RuntimeError::EnrollmentRefused(EnrollRefusal::TokenUsedUp)) => {}
        other => panic!("expected TokenUsedUp, got {other:?}"),
    }
    // An expired token.
    let short = a.authority.create_token(&Attributes::new(), 60, 5).unwrap();
    a.clock.fetch_add(61, Ordering::SeqCst);
    match enroll(&a, &second, &short).await {
        Err(RuntimeError::EnrollmentRefused(EnrollRefusal::TokenExpired)) => {}
        other => panic!("expected TokenExpired, got {other:?}"),
    }
    let members = a.authority.with_store(|s| {
        use latchkey_runtime::authority::AuthorityStore;
        s.members().unwrap()
    });
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].identifier, device.identifier().to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_devices_racing_for_one_single_use_token_make_one_member() {
    init_logs();
    let a = Arc::new(authority_node().await);
    let token = a
        .authority
        .create_token(&Attributes::new(), 600, 1)
        .unwrap();
    // Channels first (the race is for the token, not for the handshakes).
    let mut devices = Vec::new();
    for _ in 0..100 {
        let id = LocalIdentity::create().unwrap();
        let (node, channel) = to_authority(&a, &id).await;
        devices.push((id, node, channel));
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = devices
        .into_iter()
        .map(|(id, node, channel)| {
            let (token, barrier) = (token.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                client::enroll(&node, &channel, &"authority".into(), &token, id.history()).await
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(RuntimeError::EnrollmentRefused(EnrollRefusal::TokenUsedUp)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(wins, 1);
    let n = a.authority.with_store(|s| {
        use latchkey_runtime::authority::AuthorityStore;
        s.members().unwrap().len()
    });
    assert_eq!(n, 1);
}

/// The machine: a listener that admits only members of the authority, a telemetry service for engineers
/// and a control service for operators, each guarded per message; it follows the authority's revocations.
struct Machine {
    node: Node,
    addr: String,
    membership: Arc<Membership>,
    clock: Arc<AtomicU64>,
    _to_authority: ChannelHandle,
}

async fn machine(a: &AuthorityNode) -> Machine {
    let id = LocalIdentity::create().unwrap();
    let clock = Arc::new(AtomicU64::new(Timestamp::now().0));
    let c = clock.clone();
    let membership = Membership::with_clock(
        TrustedAuthorities::new().with(a.authority.history().clone()),
        Arc::new(move || Timestamp(c.load(Ordering::SeqCst))),
    );
    let node = Node::new("machine");
    let options = latchkey_runtime::ChannelOptions::default().with_trust(membership.trust(None));
    let mut listener = create_listener(&node, &id, "api".into(), options).unwrap();
    // One policy for the machine's services: engineers read telemetry; operators use control.
    let policy = Policy::parse(
        r#"(subject.role = "engineer" and resource.name = "telemetry" and action.name = "read")
           or (subject.role = "operator" and resource.name in ["telemetry", "control"])"#,
    )
    .unwrap();
    for service in ["telemetry", "control"] {
        start_echo(
            &node,
            service.into(),
            Accepts::flow(listener.flow).with_guard(membership.guard(Some(Requirement::new(
                policy.clone(),
                service,
                "read",
            )))),
        )
        .unwrap();
    }
    // Every accepted channel is watched (closed on revocation or expiry).
    let m = membership.clone();
    tokio::spawn(async move {
        while let Some(c) = listener.accepted().await {
            m.watch(c);
        }
    });
    let tcp = tcp::listen(&node, "127.0.0.1:0", TcpOptions::default())
        .await
        .unwrap();
    let addr = tcp.local_addr.to_string();
    std::mem::forget(tcp);
    // The machine subscribes to the authority's revocations over its own channel to it.
    let (anode, to_authority) = to_authority(a, &id).await;
    client::follow_revocations(
        &anode,
        &to_authority,
        &"authority".into(),
        membership.clone(),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    std::mem::forget(anode);
    Machine {
        node,
        addr,
        membership,
        clock,
        _to_authority: to_authority,
    }
}

/// The engineer's node, channel to the machine and an inbox for replies.
async fn engineer_channel(
    m: &Machine,
    id: &LocalIdentity,
    machine_id: Option<latchkey_core::identity::Identifier>,
) -> latchkey_runtime::Result<(Node, ChannelHandle, latchkey_runtime::Mailbox)> {
    let node = Node::new("engineer");
    let link = tcp::connect(&node, &m.addr, TcpOptions::default()).await?;
    let trust = match machine_id {
        Some(i) => trusting([i]),
        None => any_peer(),
    };
    let channel = create_channel(
        &node,
        id,
        Route::from_addresses([link, "api".into()]),
        trust,
    )
    .await?;
    let inbox = node.register_with(
        "inbox".into(),
        16,
        Accepts::flow(channel.flow()).from_peers([channel.peer()]),
    )?;
    Ok((node, channel, inbox))
}

async fn ask(
    node: &Node,
    channel: &ChannelHandle,
    inbox: &mut latchkey_runtime::Mailbox,
    service: &str,
) -> Option<Vec<u8>> {
    node.send(Message::new(
        channel.route_to(Address::from(service)),
        Route::from(["inbox"]),
        service.as_bytes().to_vec(),
    ))
    .await
    .ok()?;
    tokio::time::timeout(Duration::from_millis(1500), inbox.recv())
        .await
        .ok()
        .flatten()
        .map(|m| m.payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engineers_credential_opens_telemetry_only_and_revocation_closes_the_channel() {
    init_logs();
    let a = authority_node().await;
    let m = machine(&a).await;
    let token = a
        .authority
        .create_token(&attrs(&[("role", "engineer")]), 600, 1)
        .unwrap();
    let engineer = LocalIdentity::create().unwrap();
    let credential = enroll(&a, &engineer, &token).await.unwrap();
    let engineer_with = engineer
        .clone()
        .with_credentials(vec![latchkey_core::wire::Encode::to_bytes(&credential)]);

    // Without a credential there is no channel at all.
    match engineer_channel(&m, &engineer, None).await {
        Err(_) => {}
        Ok(_) => panic!("a channel without a credential was accepted"),
    }

    let (node, channel, mut inbox) = engineer_channel(&m, &engineer_with, None).await.unwrap();
    assert_eq!(
        ask(&node, &channel, &mut inbox, "telemetry")
            .await
            .as_deref(),
        Some(&b"telemetry"[..])
    );
    let denied = m.node.denied_count();
    assert_eq!(ask(&node, &channel, &mut inbox, "control").await, None);
    assert!(
        m.node.denied_count() > denied,
        "control was not refused by the guard"
    );

    // Revocation: the authority revokes the engineer; the machine closes the live channel.
    let t = Instant::now();
    a.authority
        .revoke(&[Revoked::Identifier(engineer.identifier().to_string())])
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), channel.closed())
        .await
        .expect("the revoked engineer's channel stayed open");
    eprintln!("revocation reached the live channel in {:?}", t.elapsed());
    assert_eq!(m.membership.closed_counts().0, 1);
    // And a new channel is refused.
    assert!(engineer_channel(&m, &engineer_with, None).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_credential_closes_the_live_channel_and_a_refresh_restores_access() {
    init_logs();
    let a = authority_node().await;
    let m = machine(&a).await;
    let token = a
        .authority
        .create_token(&attrs(&[("role", "engineer")]), 600, 1)
        .unwrap();
    let engineer = LocalIdentity::create().unwrap();
    let credential = enroll(&a, &engineer, &token).await.unwrap();
    let with = engineer
        .clone()
        .with_credentials(vec![latchkey_core::wire::Encode::to_bytes(&credential)]);
    let (node, channel, mut inbox) = engineer_channel(&m, &with, None).await.unwrap();
    assert!(ask(&node, &channel, &mut inbox, "telemetry")
        .await
        .is_some());

    // The machine's clock passes the credential's end (validity 3600 s).
    m.clock.fetch_add(3601, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(5), channel.closed())
        .await
        .expect("the channel outlived its credential");
    assert_eq!(m.membership.closed_counts().1, 1);

    // The member refreshes with the authority (whose clock moved too) and is admitted again.
    a.clock.fetch_add(3601, Ordering::SeqCst);
    let (anode, achannel) = to_authority(&a, &engineer).await;
    let fresh = client::refresh(&anode, &achannel, &"authority".into(), engineer.history())
        .await
        .unwrap();
    assert_ne!(fresh.id(), credential.id());
    let with = engineer
        .clone()
        .with_credentials(vec![latchkey_core::wire::Encode::to_bytes(&fresh)]);
    let (node, channel, mut inbox) = engineer_channel(&m, &with, None).await.unwrap();
    assert!(ask(&node, &channel, &mut inbox, "telemetry")
        .await
        .is_some());

    // A device that never enrolled cannot refresh.
    let stranger = LocalIdentity::create().unwrap();
    let (snode, schannel) = to_authority(&a, &stranger).await;
    match client::refresh(&snode, &schannel, &"authority".into(), stranger.history()).await {
        Err(RuntimeError::NotAMember(_)) => {}
        other => panic!("expected NotAMember, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_revocation_lists_from_strangers_and_older_lists() {
    use latchkey_core::credential::revocation::{RevocationBody, RevocationList};
    init_logs();
    let a = authority_node().await;
    let membership = Membership::new(TrustedAuthorities::new().with(a.authority.history().clone()));
    let victim = LocalIdentity::create().unwrap();
    // A list signed by someone else, naming a member, is refused.
    let mallory = LocalIdentity::create().unwrap();
    let mut body = RevocationBody::new(mallory.identifier(), 5, Timestamp::now());
    body.identifiers.insert(victim.identifier());
    let forged = RevocationList::issue(&mallory, body).unwrap();
    assert!(membership.apply_revocations(forged).await.is_err());
    // The authority's lists install in order; an older one afterwards is refused.
    a.authority
        .revoke(&[Revoked::Identifier(victim.identifier().to_string())])
        .unwrap();
    let first = a.authority.revocation_list().unwrap();
    a.authority.revoke(&[Revoked::Credential([9; 16])]).unwrap();
    let second = a.authority.revocation_list().unwrap();
    assert!(membership.apply_revocations(second).await.unwrap());
    match membership.apply_revocations(first).await {
        Err(latchkey_core::Error::StaleRevocationList { .. }) => {}
        r => panic!("expected StaleRevocationList, got {r:?}"),
    }
    assert_eq!(
        membership.revocation_sequence(&a.authority.identifier()),
        Some(2)
    );
}
