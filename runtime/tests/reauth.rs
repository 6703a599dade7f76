//! Re-authentication (issue 10, item 3): a channel never outlives its peer's proof. When the peer's
//! static-key attestation (or identity key) expires, both ends close the channel, on real loopback sockets.
//! docs/SECURITY.md names this test.

mod common;

use common::{init_logs, trusting};
use latchkey_core::identity::{IdentityOptions, LocalIdentity as CoreIdentity, Vaults};
use latchkey_core::vault::SoftwareVault;
use latchkey_runtime::transport::tcp::{self, TcpOptions};
use latchkey_runtime::{create_channel, create_listener, LocalIdentity, Node, Route};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_closes_when_the_peers_attestation_expires() {
    init_logs();
    // The server's static key is attested for 3 seconds only.
    let server_id: LocalIdentity = CoreIdentity::create_in(
        Vaults::software(Arc::new(SoftwareVault::new())),
        IdentityOptions {
            attestation_validity_secs: 3,
            ..IdentityOptions::default()
        },
        latchkey_core::Timestamp::now(),
    )
    .unwrap();
    let client_id = LocalIdentity::create().unwrap();
    let server = Node::new("server");
    let listener_tcp = tcp::listen(&server, "127.0.0.1:0", TcpOptions::default())
        .await
        .unwrap();
    let mut listener = create_listener(
        &server,
        &server_id,
        "api".into(),
        trusting([client_id.identifier()]),
    )
    .unwrap();
    let client = Node::new("client");
    let out = tcp::connect(
        &client,
        &listener_tcp.local_addr.to_string(),
        TcpOptions::default(),
    )
    .await
    .unwrap();
    let channel = create_channel(
        &client,
        &client_id,
        Route::from_addresses([out, "api".into()]),
        trusting([server_id.identifier()]),
    )
    .await
    .unwrap();
    let server_end = listener.accepted().await.unwrap();
    assert!(!channel.is_closed());
    // Within the attestation's life plus a margin (seconds are whole), the client's end closes, saying why.
    tokio::time::timeout(Duration::from_secs(10), channel.closed())
        .await
        .expect("the channel outlived its peer's attestation");
    let reason = channel.close_reason().unwrap();
    assert!(reason.contains("expired"), "{reason}");
    // The client told the server: its end closes too. A new channel needs a fresh attestation: the
    // expired one is refused.
    tokio::time::timeout(Duration::from_secs(5), server_end.closed())
        .await
        .expect("the server's end stayed open");
    let out = tcp::connect(
        &client,
        &listener_tcp.local_addr.to_string(),
        TcpOptions::default(),
    )
    .await
    .unwrap();
    let again = create_channel(
        &client,
        &client_id,
        Route::from_addresses([out, "api".into()]),
        latchkey_runtime::ChannelOptions {
            handshake_timeout: Duration::from_secs(2),
            ..trusting([server_id.identifier()])
        },
    )
    .await;
    assert!(again.is_err(), "a channel opened on an expired attestation");
}

/// Transparent re-authentication: the server's attestation lasts 4 s, but it renews it in its
/// re-handshakes (`renew_attestation`), which run 2 s before the expiry the client knows: the channel
/// stays open across several expiries, and messages keep arriving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_fresh_attestations_is_reauthenticated_instead_of_closed() {
    init_logs();
    let server_id: LocalIdentity = CoreIdentity::create_in(
        Vaults::software(Arc::new(SoftwareVault::new())),
        IdentityOptions {
            attestation_validity_secs: 4,
            ..IdentityOptions::default()
        },
        latchkey_core::Timestamp::now(),
    )
    .unwrap();
    let client_id = LocalIdentity::create().unwrap();
    let server = Node::new("server");
    let listener_tcp = tcp::listen(&server, "127.0.0.1:0", TcpOptions::default())
        .await
        .unwrap();
    let options = |trust| latchkey_runtime::ChannelOptions {
        rekey_before_expiry: Duration::from_secs(2),
        renew_attestation: true,
        ..trusting([trust])
    };
    let mut listener = create_listener(
        &server,
        &server_id,
        "api".into(),
        options(client_id.identifier()),
    )
    .unwrap();
    let got = common::sink(&server, "collect");
    server.allow(&"collect".into(), listener.flow).unwrap();
    let client = Node::new("client");
    let out = tcp::connect(
        &client,
        &listener_tcp.local_addr.to_string(),
        TcpOptions::default(),
    )
    .await
    .unwrap();
    let channel = create_channel(
        &client,
        &client_id,
        Route::from_addresses([out, "api".into()]),
        options(server_id.identifier()),
    )
    .await
    .unwrap();
    let _server_end = listener.accepted().await.unwrap();
    let first_expiry = channel.peer_identity().attestation_expires_at;
    for i in 0..10u8 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        channel
            .send_confirmed(Route::from(["collect"]), Route::new(), vec![i])
            .await
            .expect("the channel closed although the peer renewed its attestation");
    }
    assert!(!channel.is_closed());
    assert!(
        latchkey_core::Timestamp::now().0 > first_expiry.0,
        "the test ran past the first attestation's expiry"
    );
    let rekeys = latchkey_runtime::channel::ChannelStats::get(&channel.stats().rekeys);
    assert!(rekeys >= 2, "{rekeys} re-authentications");
    // Confirmed means handed to the sink's mailbox; the sink's task records it when it next runs.
    for _ in 0..100 {
        if got.lock().unwrap().len() == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let received = got.lock().unwrap().len();
    assert_eq!(received, 10);
}
