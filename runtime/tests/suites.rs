//! The cipher suite of routed channels (docs/PROTOCOL.md 5.1), between two runtime nodes on loopback TCP:
//! the initiator offers its suite in message 1, the listener takes it or refuses it at once with
//! `UnsupportedSuite`, and a suite byte changed on the wire fails the handshake instead of downgrading it.

mod common;

use common::{init_logs, recv, reply_box};
use latchkey_core::channel::{CipherSuite, SuiteSet, TrustAnyIdentity, SUITE_AESGCM};
use latchkey_core::crypto::default_provider;
use latchkey_runtime::services::start_echo;
use latchkey_runtime::transport::tcp;
use latchkey_runtime::{
    create_channel, create_listener, Accepts, ChannelHandle, ChannelOptions, ListenerHandle,
    LocalIdentity, Node, Route, RuntimeError, SuiteChoice,
};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn options(suite: SuiteChoice) -> ChannelOptions {
    ChannelOptions::default()
        .with_trust(Arc::new(TrustAnyIdentity))
        .with_suite(suite)
}

/// A node listening on loopback TCP with a channel listener `api` (accepting `accepted`) and an echo.
async fn listener_node(accepted: SuiteSet) -> (Node, SocketAddr, ListenerHandle) {
    init_logs();
    let node = Node::new("doorbell");
    let identity = LocalIdentity::create().unwrap();
    let tcp = tcp::listen(&node, "127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let mut options = options(SuiteChoice::Auto);
    options.accepted_suites = accepted;
    let listener = create_listener(&node, &identity, "api".into(), options).unwrap();
    start_echo(&node, "echo".into(), Accepts::flow(listener.flow)).unwrap();
    let addr = tcp.local_addr;
    std::mem::forget(tcp);
    (node, addr, listener)
}

async fn open(
    phone: &Node,
    addr: SocketAddr,
    suite: SuiteChoice,
) -> Result<ChannelHandle, RuntimeError> {
    let link = tcp::connect(phone, &addr.to_string(), Default::default())
        .await
        .unwrap();
    create_channel(
        phone,
        &LocalIdentity::create().unwrap(),
        Route::from_addresses([link, "api".into()]),
        options(suite),
    )
    .await
}

/// Sends through the channel to the far end's echo and back.
async fn echo(phone: &Node, channel: &ChannelHandle, inbox: &str) {
    let mut replies = reply_box(phone, inbox, channel);
    channel
        .send_confirmed(
            Route::from(["echo"]),
            Route::from([inbox]),
            b"ping".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(recv(&mut replies, 10).await.payload, b"ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_channel_runs_the_suite_its_initiator_offers_and_both_ends_report_it() {
    let (_doorbell, addr, mut listener) = listener_node(SuiteSet::ALL).await;
    let phone = Node::new("phone");
    for (i, suite) in CipherSuite::ALL.into_iter().enumerate() {
        let channel = open(&phone, addr, SuiteChoice::Only(suite)).await.unwrap();
        let accepted = listener.accepted().await.unwrap();
        assert_eq!(channel.suite(), suite);
        assert_eq!(accepted.suite(), suite);
        echo(&phone, &channel, &format!("inbox{i}")).await;
    }
    // Left to choose: AES-GCM exactly when the provider has it in hardware.
    let expected = if default_provider().prefers_aes_gcm() {
        CipherSuite::AesGcm
    } else {
        CipherSuite::ChaChaPoly
    };
    let channel = open(&phone, addr, SuiteChoice::Auto).await.unwrap();
    assert_eq!(channel.suite(), expected);
    assert_eq!(listener.accepted().await.unwrap().suite(), expected);
    echo(&phone, &channel, "inbox-auto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_accepts_only_chachapoly_refuses_an_aes_gcm_offer_with_unsupported_suite() {
    let (_doorbell, addr, mut listener) =
        listener_node(SuiteSet::only(CipherSuite::ChaChaPoly)).await;
    let phone = Node::new("phone");
    // The refusal comes back at once: the error is the typed refusal, not the 10 s handshake timeout.
    match open(&phone, addr, SuiteChoice::Only(CipherSuite::AesGcm)).await {
        Err(RuntimeError::Core(latchkey_core::Error::UnsupportedSuite(id))) => {
            assert_eq!(id, SUITE_AESGCM)
        }
        other => panic!("expected UnsupportedSuite, got {other:?}"),
    }
    // ChaChaPoly is still served.
    let channel = open(&phone, addr, SuiteChoice::Only(CipherSuite::ChaChaPoly))
        .await
        .unwrap();
    assert_eq!(
        listener.accepted().await.unwrap().suite(),
        CipherSuite::ChaChaPoly
    );
    echo(&phone, &channel, "inbox").await;
    // `Auto` on AES hardware offers AES-GCM, is refused, and retries once with ChaChaPoly.
    let channel = open(&phone, addr, SuiteChoice::Auto).await.unwrap();
    assert_eq!(channel.suite(), CipherSuite::ChaChaPoly);
    echo(&phone, &channel, "inbox-auto").await;
}

/// A man in the middle on one TCP connection that rewrites the Noise message 1 of the handshakes going up
/// (payload `0x01 ‖ e ‖ offer`) with `tamper`, and records every message-1 payload it saw.
async fn tampering_proxy(
    target: SocketAddr,
    tamper: fn(&mut Vec<u8>),
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
) -> SocketAddr {
    common::message_proxy(
        target,
        move |m| {
            let is_m1 =
                m.onward.last().map(|a| a.as_str()) == Some("api") && m.payload.first() == Some(&1);
            if is_m1 {
                seen.lock().unwrap().push(m.payload.clone());
                tamper(&mut m.payload);
            }
        },
        |_| {},
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suite_byte_changed_on_the_wire_fails_the_handshake_and_never_downgrades() {
    let (_doorbell, addr, mut listener) = listener_node(SuiteSet::ALL).await;
    let phone = Node::new("phone");
    let downgrade: [fn(&mut Vec<u8>); 2] = [
        // 0x02 (AES-GCM) rewritten to 0x01 (ChaChaPoly), then removed (an empty offer is ChaChaPoly).
        |p| {
            if p.len() == 34 {
                p[33] = 0x01
            }
        },
        |p| {
            if p.len() == 34 {
                p.pop();
            }
        },
    ];
    for tamper in downgrade {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let proxy = tampering_proxy(addr, tamper, seen.clone()).await;
        let result = open(&phone, proxy, SuiteChoice::Only(CipherSuite::AesGcm)).await;
        assert!(
            matches!(
                result,
                Err(RuntimeError::Core(latchkey_core::Error::DecryptFailed))
            ),
            "{result:?}"
        );
        // The offer went out as 0x01 ‖ e ‖ 0x02.
        let sent = seen.lock().unwrap().clone();
        assert!(!sent.is_empty());
        assert!(sent.iter().all(|p| p.len() == 34 && p[33] == SUITE_AESGCM));
    }
    // An upgrade (an empty offer given 0x02) fails the same way.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let proxy = tampering_proxy(addr, |p| p.push(SUITE_AESGCM), seen.clone()).await;
    let result = open(&phone, proxy, SuiteChoice::Only(CipherSuite::ChaChaPoly)).await;
    assert!(
        matches!(
            result,
            Err(RuntimeError::Core(latchkey_core::Error::DecryptFailed))
        ),
        "{result:?}"
    );
    // A ChaChaPoly offer is the legacy message 1: a bare ephemeral key, no payload.
    assert!(seen.lock().unwrap().iter().all(|p| p.len() == 33));
    // None of these became a channel at the listener.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.accepted())
            .await
            .is_err()
    );
}
