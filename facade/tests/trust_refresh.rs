//! Credential refresh on live channels, over real TCP on loopback: an authority issuing 5-second
//! credentials, a machine node that requires them on every channel and message, an engineer node that
//! presents its own and refreshes it at half its validity. The channel outlives the first credentials by
//! several validities with every message answered; without refresh, the same channel is closed when the
//! credential expires.

use latchkey_facade::{
    enroll, AuthorityService, ConnectOptions, IdentityStore, Node, NodeOptions, NodeTrustOptions,
    Peer, Trust,
};
use std::time::{Duration, Instant};

const VALIDITY: u64 = 5;

struct World {
    _dir: tempfile::TempDir,
    home: String,
    authority: std::sync::Arc<AuthorityService>,
    authority_addr: String,
}

async fn world(members: &[&str]) -> World {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_str().unwrap().to_string();
    let authority =
        AuthorityService::open_with_validity("auth", Some(home.clone()), true, VALIDITY).unwrap();
    let authority_addr = authority.serve("127.0.0.1:0".into()).await.unwrap();
    let store = IdentityStore::open(Some(home.clone())).unwrap();
    store.create("machine").unwrap();
    for name in members {
        store.create(name).unwrap();
        let token = authority
            .create_token(vec![("role".into(), "engineer".into())], 60, 1)
            .unwrap();
        enroll(
            name.to_string(),
            Some(home.clone()),
            authority_addr.clone(),
            token,
        )
        .await
        .unwrap();
    }
    World {
        _dir: dir,
        home,
        authority,
        authority_addr,
    }
}

/// The machine: requires credentials of the authority on its listener and its echo service
/// `telemetry` (policy: engineers only), follows revocations.
async fn machine(w: &World) -> (std::sync::Arc<Node>, String) {
    let store = IdentityStore::open(Some(w.home.clone())).unwrap();
    let node = Node::new(&store.load("machine").unwrap(), NodeOptions::default()).unwrap();
    let reached = node
        .use_authorities(NodeTrustOptions {
            authorities: vec![w.authority.export_history()],
            authority_address: Some(w.authority_addr.clone()),
            refetch_secs: 30,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(reached);
    node.set_policy(
        "telemetry".into(),
        r#"subject.role = "engineer" and action.name = "send""#.into(),
    )
    .unwrap();
    node.listen("api".into(), Trust::AnyIdentity).unwrap();
    node.start_echo("telemetry".into(), Trust::AnyIdentity)
        .unwrap();
    let addr = node.listen_tcp("127.0.0.1:0".into()).await.unwrap();
    (node, addr)
}

/// The engineer's node, presenting its stored credential; refreshing it at the authority when `refresh`.
async fn engineer(w: &World, name: &str, refresh: bool) -> std::sync::Arc<Node> {
    let store = IdentityStore::open(Some(w.home.clone())).unwrap();
    let node = Node::new(&store.load(name).unwrap(), NodeOptions::default()).unwrap();
    let credential = latchkey_facade::stored_credential(name, Some(w.home.clone())).unwrap();
    node.use_authorities(NodeTrustOptions {
        credential: Some(credential),
        authority_address: refresh.then(|| w.authority_addr.clone()),
        save_as: Some((name.to_string(), Some(w.home.clone()))),
        ..Default::default()
    })
    .await
    .unwrap();
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_outlives_its_first_credentials_expiry_with_every_message_answered() {
    let w = world(&["engineer"]).await;
    let (machine, addr) = machine(&w).await;
    let engineer = engineer(&w, "engineer", true).await;
    let channel = engineer
        .connect(
            Peer::tcp(addr),
            Trust::Identifiers(vec![machine.identifier()]),
            ConnectOptions::default(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut answered = 0u32;
    // Three validities: the first credential, and at least the next one, expire meanwhile.
    while started.elapsed() < Duration::from_secs(3 * VALIDITY + 1) {
        let text = format!("reading {answered}");
        let reply = channel
            .request(
                "telemetry".into(),
                text.clone().into_bytes(),
                Duration::from_secs(5),
            )
            .await
            .unwrap_or_else(|e| panic!("message {answered} after {:?}: {e}", started.elapsed()));
        assert_eq!(reply, text.into_bytes());
        answered += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!channel.is_closed());
    let (revoked, expired, _) = machine.trust_counts();
    assert_eq!((revoked, expired), (0, 0), "the machine closed a channel");
    let (_, _, refreshed) = engineer.trust_counts();
    assert!(refreshed >= 3, "refreshed only {refreshed} times");
    eprintln!(
        "{answered} messages over {:?}, {refreshed} refreshes of a {VALIDITY} s credential",
        started.elapsed()
    );
    // The refreshed credential was saved in the home, for the next run.
    let saved = latchkey_facade::stored_credential("engineer", Some(w.home.clone())).unwrap();
    let info = latchkey_facade::credential_info(&saved).unwrap();
    assert!(info.not_after > latchkey_facade::Timestamp::now().0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_refresh_the_channel_closes_when_the_credential_expires() {
    let w = world(&["engineer"]).await;
    let (machine, addr) = machine(&w).await;
    let engineer = engineer(&w, "engineer", false).await;
    let channel = engineer
        .connect(
            Peer::tcp(addr),
            Trust::Identifiers(vec![machine.identifier()]),
            ConnectOptions::default(),
        )
        .await
        .unwrap();
    let reply = channel
        .request("telemetry".into(), b"x".to_vec(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(reply, b"x");
    let deadline = Instant::now() + Duration::from_secs(3 * VALIDITY);
    while !channel.is_closed() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(channel.is_closed(), "the channel outlived its credential");
    assert_eq!(machine.trust_counts().1, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_member_cannot_refresh_and_its_channel_is_closed() {
    let w = world(&["engineer"]).await;
    let (machine, addr) = machine(&w).await;
    let engineer = engineer(&w, "engineer", true).await;
    let channel = engineer
        .connect(
            Peer::tcp(addr.clone()),
            Trust::Identifiers(vec![machine.identifier()]),
            ConnectOptions::default(),
        )
        .await
        .unwrap();
    w.authority
        .revoke_identifier(&engineer.identifier())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3 * VALIDITY);
    while !channel.is_closed() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(channel.is_closed());
    assert_eq!(machine.trust_counts().0, 1, "closed for another reason");
    let again = engineer
        .connect(
            Peer::tcp(addr),
            Trust::Identifiers(vec![machine.identifier()]),
            ConnectOptions {
                timeout: Duration::from_secs(3),
            },
        )
        .await;
    assert!(again.is_err(), "a revoked member opened a new channel");
}
