//! A node opened from a stored identity presents the credential stored for it by itself (`enroll` wrote it
//! to `credentials/NAME.cred`), over real TCP on loopback to a node that requires an authority's credential
//! with an attribute policy. An explicit credential wins; an expired stored one is not presented until the
//! authority refreshes it; a damaged one is a typed error when the node is opened.

use latchkey_facade::{
    enroll, AuthorityService, ConnectOptions, ErrorCode, IdentityStore, Node, NodeOptions,
    NodeTrustOptions, Peer, Trust,
};
use std::sync::Arc;
use std::time::Duration;

struct World {
    _dir: tempfile::TempDir,
    home: String,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_str().unwrap().to_string();
        World { _dir: dir, home }
    }

    fn home(&self) -> Option<String> {
        Some(self.home.clone())
    }

    async fn authority(&self, name: &str, validity: u64) -> (Arc<AuthorityService>, String) {
        let a = AuthorityService::open_with_validity(name, self.home(), true, validity).unwrap();
        let addr = a.serve("127.0.0.1:0".into()).await.unwrap();
        (a, addr)
    }

    /// Creates `name` in the store (once) and enrolls it at the authority with `role`.
    async fn enroll(&self, name: &str, authority: &AuthorityService, at: &str, role: &str) {
        let store = IdentityStore::open(self.home()).unwrap();
        if store.load(name).is_err() {
            store.create(name).unwrap();
        }
        let token = authority
            .create_token(vec![("role".into(), role.into())], 60, 1)
            .unwrap();
        enroll(name.into(), self.home(), at.into(), token)
            .await
            .unwrap();
    }

    /// A machine node requiring credentials of `authority` on every channel, with its echo service
    /// `telemetry` for engineers only.
    async fn machine(&self, authority: &AuthorityService) -> (Arc<Node>, String) {
        let store = IdentityStore::open(self.home()).unwrap();
        let _ = store.create("machine");
        let node = Node::new(&store.load("machine").unwrap(), NodeOptions::default()).unwrap();
        node.use_authorities(NodeTrustOptions {
            authorities: vec![authority.export_history()],
            ..Default::default()
        })
        .await
        .unwrap();
        node.set_policy("telemetry".into(), r#"subject.role = "engineer""#.into())
            .unwrap();
        node.listen("api".into(), Trust::AnyIdentity).unwrap();
        node.start_echo("telemetry".into(), Trust::AnyIdentity)
            .unwrap();
        let addr = node.listen_tcp("127.0.0.1:0".into()).await.unwrap();
        (node, addr)
    }
}

/// Whether `node` gets its message to `telemetry` echoed by the machine.
async fn admitted(node: &Node, machine: &Node, addr: &str) -> bool {
    let channel = node
        .connect(
            Peer::tcp(addr),
            Trust::Identifiers(vec![machine.identifier()]),
            ConnectOptions {
                timeout: Duration::from_secs(3),
            },
        )
        .await;
    let Ok(channel) = channel else {
        return false;
    };
    let reply = channel
        .request(
            "telemetry".into(),
            b"reading".to_vec(),
            Duration::from_secs(3),
        )
        .await;
    let _ = channel.close().await;
    match reply {
        Ok(r) => {
            assert_eq!(r, b"reading");
            true
        }
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_identity_presents_its_stored_credential_without_being_told() {
    let w = World::new();
    let (authority, at) = w.authority("auth", 3600).await;
    IdentityStore::open(w.home())
        .unwrap()
        .create("engineer")
        .unwrap();
    // Opened before it enrolled: nothing stored, nothing presented, no channel…
    let bare =
        Node::with_stored_identity("engineer", w.home(), false, NodeOptions::default()).unwrap();
    w.enroll("engineer", &authority, &at, "engineer").await;
    let (machine, addr) = w.machine(&authority).await;
    assert!(!admitted(&bare, &machine, &addr).await);
    // … opened after `enroll` stored its credential, the node presents it without being told.
    let stored =
        Node::with_stored_identity("engineer", w.home(), false, NodeOptions::default()).unwrap();
    assert_eq!(stored.identifier(), bare.identifier());
    assert!(admitted(&stored, &machine, &addr).await);
    // So does a node made from the identity as the store loads it.
    let loaded = IdentityStore::open(w.home())
        .unwrap()
        .load("engineer")
        .unwrap();
    let from_store = Node::new(&loaded, NodeOptions::default()).unwrap();
    assert!(admitted(&from_store, &machine, &addr).await);
    // use_authorities without a credential keeps presenting the stored one (here: following the
    // authority, which it reaches with that credential's issuer as the trusted peer).
    let stored =
        Node::with_stored_identity("engineer", w.home(), false, NodeOptions::default()).unwrap();
    let reached = stored
        .use_authorities(NodeTrustOptions {
            authority_address: Some(at.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(reached);
    assert!(admitted(&stored, &machine, &addr).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_credential_wins_over_the_stored_one() {
    let w = World::new();
    let (other, other_at) = w.authority("other", 3600).await;
    let (authority, at) = w.authority("auth", 3600).await;
    // Enrolled at the machine's authority first, then at another one: the store keeps the last.
    w.enroll("engineer", &authority, &at, "engineer").await;
    let good = latchkey_facade::stored_credential("engineer", w.home()).unwrap();
    w.enroll("engineer", &other, &other_at, "engineer").await;
    let stored_bytes = latchkey_facade::stored_credential("engineer", w.home()).unwrap();
    assert_ne!(good, stored_bytes);
    let (machine, addr) = w.machine(&authority).await;

    let stored =
        Node::with_stored_identity("engineer", w.home(), false, NodeOptions::default()).unwrap();
    assert!(
        !admitted(&stored, &machine, &addr).await,
        "the other authority's credential was accepted"
    );
    let explicit =
        Node::with_stored_identity("engineer", w.home(), false, NodeOptions::default()).unwrap();
    explicit
        .use_authorities(NodeTrustOptions {
            credential: Some(good),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(admitted(&explicit, &machine, &addr).await);
    // Explicitly given credentials are set once, as before.
    let again = explicit
        .use_authorities(NodeTrustOptions {
            credential: Some(stored_bytes),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), ErrorCode::InvalidState);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_stored_credential_is_not_presented_until_refreshed_and_saved() {
    let w = World::new();
    let (authority, at) = w.authority("auth", 2).await;
    w.enroll("engineer", &authority, &at, "engineer").await;
    let (machine, addr) = w.machine(&authority).await;
    let old = latchkey_facade::stored_credential("engineer", w.home()).unwrap();
    let not_after = latchkey_facade::credential_info(&old).unwrap().not_after;
    while latchkey_facade::Timestamp::now().0 < not_after {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let node =
        Node::with_stored_identity("engineer", w.home(), false, NodeOptions::default()).unwrap();
    assert!(!admitted(&node, &machine, &addr).await);
    // The identity loaded from the store does not carry the expired credential either.
    let loaded = IdentityStore::open(w.home())
        .unwrap()
        .load("engineer")
        .unwrap();
    assert!(loaded
        .local_identity()
        .unwrap()
        .channel_identity()
        .credentials
        .is_empty());
    let from_store = Node::new(&loaded, NodeOptions::default()).unwrap();
    assert!(!admitted(&from_store, &machine, &addr).await);
    // Without the authority's address there is nothing to present or refresh.
    let err = node
        .use_authorities(NodeTrustOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
    // With it, the node refreshes at once, presents the fresh credential and saves it back.
    let reached = node
        .use_authorities(NodeTrustOptions {
            authority_address: Some(at.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(reached);
    let mut waited = 0;
    while node.trust_counts().2 == 0 && waited < 100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    assert!(node.trust_counts().2 >= 1, "never refreshed");
    assert!(admitted(&node, &machine, &addr).await);
    let saved = latchkey_facade::stored_credential("engineer", w.home()).unwrap();
    assert_ne!(saved, old);
    let info = latchkey_facade::credential_info(&saved).unwrap();
    assert_eq!(info.subject, node.identifier());
    assert!(info.not_after > not_after);
}

#[test]
fn a_damaged_or_foreign_stored_credential_is_a_typed_error() {
    let w = World::new();
    let store = IdentityStore::open(w.home()).unwrap();
    store.create("engineer").unwrap();
    store.create("visitor").unwrap();
    let dir = std::path::Path::new(&w.home).join("credentials");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("engineer.cred"), b"not a credential").unwrap();
    let err = Node::with_stored_identity("engineer", w.home(), false, NodeOptions::default())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidCredential);
    assert_eq!(
        store.load("engineer").unwrap_err().code(),
        ErrorCode::InvalidCredential
    );

    // A real credential, but about another identity.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (authority, at) = w.authority("auth", 3600).await;
        w.enroll("visitor", &authority, &at, "guest").await;
    });
    let visitors = latchkey_facade::stored_credential("visitor", w.home()).unwrap();
    std::fs::write(dir.join("engineer.cred"), visitors).unwrap();
    let err = Node::with_stored_identity("engineer", w.home(), false, NodeOptions::default())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidCredential);
    assert_eq!(
        store.load("engineer").unwrap_err().code(),
        ErrorCode::InvalidCredential
    );
    // Without a stored credential the node opens and presents nothing.
    std::fs::remove_file(dir.join("engineer.cred")).unwrap();
    Node::with_stored_identity("engineer", w.home(), false, NodeOptions::default()).unwrap();
}
