//! Secret hygiene and pinned histories on the facade's own surfaces (issue 10 items 2 and 4): a vault holds
//! exactly the keys live identities use; failures leave nothing behind (no key, no plaintext); an out-of-turn
//! call ends a handshake; and the sans-IO `HandshakeSession` and the direct TCP channels refuse a peer that
//! rolls back or forks the history pinned at an earlier contact — over real loopback TCP for the latter.

use latchkey_facade::*;
use std::time::{SystemTime, UNIX_EPOCH};

const NOW: u64 = 1_800_000_000;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn options() -> IdentityOptions {
    IdentityOptions::default()
}

/// Runs a sans-IO handshake; returns the first error of either side.
fn handshake(a: &Identity, b: &Identity, now: u64) -> Result<(Channel, Channel)> {
    let mut i = HandshakeSession::new(
        a,
        Role::Initiator,
        CipherSuite::ChaChaPoly,
        &Trust::AnyIdentity,
        Some(now),
    )?;
    let mut r = HandshakeSession::new(
        b,
        Role::Responder,
        CipherSuite::ChaChaPoly,
        &Trust::AnyIdentity,
        Some(now),
    )?;
    let m1 = i.step(None)?.expect("m1");
    let m2 = r.step(Some(&m1))?.expect("m2");
    let m3 = i.step(Some(&m2))?.expect("m3");
    assert_eq!(r.step(Some(&m3))?, None);
    Ok((i.into_channel()?, r.into_channel()?))
}

#[test]
fn a_vault_holds_exactly_the_keys_of_live_identities() {
    let vault = Vault::new();
    // A failed create (a creation time so late that the key would expire before it is created) fails after
    // both keys were generated: it leaves none.
    let err = Identity::create(&vault, options(), Some(u64::MAX)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidHistory);
    assert_eq!(vault.key_count(), 0);

    let a = Identity::create(&vault, options(), Some(NOW)).unwrap();
    assert_eq!(vault.key_count(), 2, "a primary key and a static key");
    // A rotation deletes the rotated-away key; a failed one adds nothing.
    a.rotate(None, Some(NOW + 10)).unwrap();
    assert_eq!(vault.key_count(), 2);
    a.rotate(Some(&[7; 32]), Some(NOW + 20)).unwrap();
    assert_eq!(vault.key_count(), 2);
    assert_eq!(
        a.rotate(None, Some(u64::MAX)).unwrap_err().code(),
        ErrorCode::InvalidHistory
    );
    assert_eq!(
        a.rotate(Some(&[8; 32]), Some(u64::MAX)).unwrap_err().code(),
        ErrorCode::InvalidHistory
    );
    assert_eq!(vault.key_count(), 2);
    assert_eq!(a.change_count().unwrap(), 3);

    // A clone shares the keys; the last one dropped deletes them.
    let b = Identity::create(&vault, options(), Some(NOW)).unwrap();
    assert_eq!(vault.key_count(), 4);
    let a2 = a.clone();
    drop(a);
    assert_eq!(vault.key_count(), 4);
    drop(a2);
    assert_eq!(vault.key_count(), 2);

    // A handshake in progress keeps its identity's keys until it is done with them.
    let c = Identity::create(&vault, options(), Some(NOW)).unwrap();
    let mut i = HandshakeSession::new(
        &c,
        Role::Initiator,
        CipherSuite::AesGcm,
        &Trust::AnyIdentity,
        Some(NOW),
    )
    .unwrap();
    let mut r = HandshakeSession::new(
        &b,
        Role::Responder,
        CipherSuite::AesGcm,
        &Trust::AnyIdentity,
        Some(NOW),
    )
    .unwrap();
    drop(c);
    assert_eq!(vault.key_count(), 4);
    let m1 = i.step(None).unwrap().unwrap();
    let m2 = r.step(Some(&m1)).unwrap().unwrap();
    let m3 = i.step(Some(&m2)).unwrap().unwrap();
    r.step(Some(&m3)).unwrap();
    let channel = i.into_channel().unwrap();
    drop(i);
    assert_eq!(vault.key_count(), 2, "the channel needs no identity key");
    drop(channel);
    drop((r, b));
    assert_eq!(vault.key_count(), 0);

    // from_secrets: a failure leaves nothing either.
    let err = Identity::from_secrets(&vault, &[1; 32], &[2; 32], options(), Some(u64::MAX));
    assert!(err.is_err());
    assert_eq!(vault.key_count(), 0);
}

#[test]
fn an_out_of_turn_call_ends_the_handshake() {
    let vault = Vault::new();
    let a = Identity::create(&vault, options(), Some(NOW)).unwrap();
    let b = Identity::create(&vault, options(), Some(NOW)).unwrap();
    for out_of_turn in [0, 1] {
        let mut i = HandshakeSession::new(
            &a,
            Role::Initiator,
            CipherSuite::ChaChaPoly,
            &Trust::AnyIdentity,
            Some(NOW),
        )
        .unwrap();
        let mut r = HandshakeSession::new(
            &b,
            Role::Responder,
            CipherSuite::ChaChaPoly,
            &Trust::AnyIdentity,
            Some(NOW),
        )
        .unwrap();
        let m1 = i.step(None).unwrap().unwrap();
        // The initiator, waiting for m2, is called with nothing; or the responder is fed nothing.
        let err = if out_of_turn == 0 {
            i.step(None).unwrap_err()
        } else {
            r.step(None).unwrap_err()
        };
        assert_eq!(err.code(), ErrorCode::InvalidState);
        let (dead, live_m1) = if out_of_turn == 0 {
            (&mut i, None)
        } else {
            (&mut r, Some(m1.clone()))
        };
        assert!(dead.is_failed());
        // The doc's promise: the handshake is over. Even the right message now fails.
        let again = dead.step(live_m1.as_deref()).unwrap_err();
        assert_eq!(again.code(), ErrorCode::InvalidState);
        assert!(again.message().contains("failed earlier"), "{again}");
        assert!(dead.handshake_hash().is_err());
        assert!(dead.into_channel().is_err());
    }
}

#[test]
fn a_failed_encrypt_leaves_no_plaintext_in_the_output_buffer() {
    let vault = Vault::new();
    let a = Identity::create(&vault, options(), Some(NOW)).unwrap();
    let b = Identity::create(&vault, options(), Some(NOW)).unwrap();
    let (mut ca, _cb) = handshake(&a, &b, NOW).unwrap();
    // 65,520 bytes, one over the limit: MessageTooLarge even with a buffer big enough, nothing written.
    let plaintext = vec![0x5au8; MAX_PLAINTEXT_LEN + 1];
    let mut out = vec![0u8; plaintext.len() + FRAME_OVERHEAD];
    let err = ca.encrypt_into(&plaintext, &mut out).unwrap_err();
    assert_eq!(err.code(), ErrorCode::MessageTooLarge);
    assert!(out.iter().all(|&b| b == 0));
    // With a small buffer too: not a BufferTooSmall whose size could never succeed.
    let err = ca.encrypt_into(&plaintext, &mut [0u8; 8]).unwrap_err();
    assert_eq!(err.code(), ErrorCode::MessageTooLarge);
    assert_eq!(err.needed(), None);
}

/// Three versions of one identity (same secrets, same creation): `v1` (created), `v2` (v1 + a rotation) and
/// `fork` (v1 + a different rotation), plus `v3` (v2 + one more rotation). Each in its own vault.
struct Versions {
    v1: Identity,
    v2: Identity,
    v3: Identity,
    fork: Identity,
}

fn versions(created: u64) -> Versions {
    let make = |rotations: &[[u8; 32]]| {
        let id = Identity::from_secrets(
            &Vault::new(),
            &[11; 32],
            &[12; 32],
            options(),
            Some(created),
        )
        .unwrap();
        for (k, seed) in rotations.iter().enumerate() {
            id.rotate(Some(seed), Some(created + 1 + k as u64)).unwrap();
        }
        id
    };
    Versions {
        v1: make(&[]),
        v2: make(&[[21; 32]]),
        v3: make(&[[21; 32], [22; 32]]),
        fork: make(&[[31; 32]]),
    }
}

#[test]
fn a_handshake_session_refuses_a_rolled_back_or_forked_history() {
    let me = Identity::create(&Vault::new(), options(), Some(NOW)).unwrap();
    let peer = versions(NOW - 100);
    // First contact pins v2.
    handshake(&me, &peer.v2, NOW).unwrap();
    let pinned = me
        .peer_histories()
        .history(&peer.v2.identifier())
        .unwrap()
        .unwrap();
    assert_eq!(pinned, peer.v2.export_history().unwrap());
    // As initiator (checks at message 2) and as responder (message 3).
    let err = handshake(&me, &peer.v1, NOW).unwrap_err();
    assert_eq!(err.code(), ErrorCode::HistoryRollback, "{err}");
    let err = handshake(&peer.v1, &me, NOW).unwrap_err();
    assert_eq!(err.code(), ErrorCode::HistoryRollback, "{err}");
    let err = handshake(&me, &peer.fork, NOW).unwrap_err();
    assert_eq!(err.code(), ErrorCode::HistoryFork, "{err}");
    let err = handshake(&peer.fork, &me, NOW).unwrap_err();
    assert_eq!(err.code(), ErrorCode::HistoryFork, "{err}");
    // The pin did not move; the legitimate history and its extension are accepted, and the pin follows.
    assert_eq!(
        me.peer_histories().history(&peer.v2.identifier()).unwrap(),
        Some(pinned)
    );
    handshake(&me, &peer.v2, NOW).unwrap();
    handshake(&peer.v3, &me, NOW).unwrap();
    assert_eq!(
        me.peer_histories()
            .history(&peer.v3.identifier())
            .unwrap()
            .unwrap(),
        peer.v3.export_history().unwrap()
    );
    let err = handshake(&me, &peer.v2, NOW).unwrap_err();
    assert_eq!(err.code(), ErrorCode::HistoryRollback);
    // Forgetting the peer makes the next contact a first contact again.
    assert!(me.peer_histories().forget(&peer.v1.identifier()).unwrap());
    handshake(&me, &peer.v1, NOW).unwrap();
    // Pinning by hand follows the same rules: v2 extends the pinned v1; the fork then no longer does.
    me.peer_histories()
        .pin(&peer.v2.export_history().unwrap())
        .unwrap();
    assert_eq!(
        me.peer_histories()
            .pin(&peer.fork.export_history().unwrap())
            .unwrap_err()
            .code(),
        ErrorCode::HistoryFork
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_direct_tcp_client_refuses_a_listener_that_rolls_back_or_forks_its_history() {
    let client = Identity::create(&Vault::new(), options(), None).unwrap();
    let listener = versions(unix_now() - 100);
    let connect = |server: Identity| {
        let client = client.clone();
        async move {
            let l = DirectListener::start(&server, "127.0.0.1:0".into(), Trust::AnyIdentity)
                .await
                .unwrap();
            let result = DirectChannel::connect(&client, l.address(), Trust::AnyIdentity).await;
            let result = match result {
                Ok(channel) => channel.exchange(b"ping".to_vec()).await.map(|_| ()),
                Err(e) => Err(e),
            };
            l.stop();
            result
        }
    };
    connect(listener.v2.clone()).await.unwrap();
    let err = connect(listener.v1.clone()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::HistoryRollback, "{err}");
    let err = connect(listener.fork.clone()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::HistoryFork, "{err}");
    connect(listener.v3.clone()).await.unwrap();
    let err = connect(listener.v2.clone()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::HistoryRollback, "{err}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_direct_tcp_listener_refuses_a_client_that_rolls_back_or_forks_its_history() {
    let server = Identity::create(&Vault::new(), options(), None).unwrap();
    let l = DirectListener::start(&server, "127.0.0.1:0".into(), Trust::AnyIdentity)
        .await
        .unwrap();
    let client = versions(unix_now() - 100);
    let id = client.v2.identifier();
    let talk = |identity: Identity| {
        let address = l.address();
        async move {
            let channel = DirectChannel::connect(&identity, address, Trust::AnyIdentity).await?;
            channel.exchange(b"ping".to_vec()).await
        }
    };
    assert_eq!(talk(client.v2.clone()).await.unwrap(), b"echo: ping");
    let pinned = server.peer_histories().history(&id).unwrap().unwrap();
    assert_eq!(pinned, client.v2.export_history().unwrap());
    // The listener refuses at message 3: the client learns only that the connection ended.
    assert!(talk(client.v1.clone()).await.is_err());
    assert!(talk(client.fork.clone()).await.is_err());
    assert_eq!(server.peer_histories().history(&id).unwrap(), Some(pinned));
    assert_eq!(talk(client.v3.clone()).await.unwrap(), b"echo: ping");
    assert_eq!(
        server.peer_histories().history(&id).unwrap().unwrap(),
        client.v3.export_history().unwrap()
    );
    l.stop();
}
