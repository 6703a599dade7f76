//! A guarded relay (docs/RUNTIME.md, "Guarded forwarders"): a name's forwarder takes only messages out of
//! secure channels *to the relay* and checks the authenticated origin of every one. A phone reaches the
//! doorbell by opening a channel to the relay and routing its end-to-end channel through it; the relay still
//! sees only the inner channel's ciphertext. A phone the guard refuses, and a phone over bare TCP, do not get
//! through, and the relay counts what it dropped. All over loopback TCP.

mod common;

use common::{any_peer, init_logs, recv, register_securely, reply_box, start_relay_node, trusting};
use latchkey_core::identity::Identifier;
use latchkey_runtime::flow::OriginGuard;
use latchkey_runtime::origin::Origin;
use latchkey_runtime::relay::{forwarder_address, ForwardAccepts, Inspector};
use latchkey_runtime::services::start_echo;
use latchkey_runtime::transport::tcp::{self, TcpOptions};
use latchkey_runtime::{
    create_channel, create_listener, Accepts, Address, ChannelHandle, ChannelOptions,
    LocalIdentity, Message, Node, Route,
};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Admits the origins whose channel peer is in `members` (standing in for a credential + `forward` policy:
/// the facade plugs in the authority's guard), and counts what it was asked, per forwarder name.
struct Members {
    name: String,
    members: Arc<HashSet<Identifier>>,
    checked: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    admitted: Arc<Mutex<HashSet<Identifier>>>,
}

impl OriginGuard for Members {
    fn check(&self, origin: &Origin) -> Result<(), String> {
        self.checked.fetch_add(1, Ordering::SeqCst);
        match origin.peer() {
            Some(peer) if self.members.contains(&peer) && self.name == "doorbell" => {
                self.admitted.lock().unwrap().insert(peer);
                Ok(())
            }
            _ => {
                self.refused.fetch_add(1, Ordering::SeqCst);
                Err("not a member allowed to forward".into())
            }
        }
    }
}

/// Opens a channel from `phone` to the relay's listener over a fresh TCP connection.
async fn channel_to_relay(
    phone: &Node,
    id: &LocalIdentity,
    relay_addr: &str,
    relay_id: Identifier,
) -> ChannelHandle {
    let link = tcp::connect(phone, relay_addr, TcpOptions::default())
        .await
        .unwrap();
    create_channel(
        phone,
        id,
        Route::from_addresses([link, "api".into()]),
        trusting([relay_id]),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guarded_forwarder_takes_only_checked_channels_to_the_relay() {
    init_logs();
    let member_id = LocalIdentity::create().unwrap();
    let outsider_id = LocalIdentity::create().unwrap();
    let bare_id = LocalIdentity::create().unwrap();
    let members = Arc::new(HashSet::from([member_id.identifier()]));
    let (checked, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let admitted: Arc<Mutex<HashSet<Identifier>>> = Arc::default();
    let forwarded: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let seen = forwarded.clone();
    let inspector: Inspector = Arc::new(move |_name: &str, payload: &mut Vec<u8>| {
        seen.lock().unwrap().push(payload.clone());
    });
    let (c, r, a) = (checked.clone(), refused.clone(), admitted.clone());
    let relay = start_relay_node(move |o| {
        o.inspector = Some(inspector);
        // Only messages out of the relay listener's channels, each checked.
        let base = o.accepts.clone();
        let rule: ForwardAccepts = Arc::new(move |name: &str| {
            base.clone().with_guard(Arc::new(Members {
                name: name.to_string(),
                members: members.clone(),
                checked: c.clone(),
                refused: r.clone(),
                admitted: a.clone(),
            }))
        });
        o.forward = Some(rule);
    })
    .await;
    let relay_id = relay.identity.identifier();

    // The doorbell registers through its channel to the relay (unchanged by the guard).
    let doorbell = Node::new("doorbell");
    let doorbell_id = LocalIdentity::create().unwrap();
    let listener = create_listener(&doorbell, &doorbell_id, "api".into(), any_peer()).unwrap();
    let _doorbell_to_relay = register_securely(
        &doorbell,
        &doorbell_id,
        &relay.addr,
        "doorbell",
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    start_echo(&doorbell, "echo".into(), Accepts::flow(listener.flow)).unwrap();
    let fwd: Address = forwarder_address("doorbell").unwrap();

    // 1. A member: channel to the relay, then the end-to-end channel to the doorbell inside it.
    let phone = Node::new("member-phone");
    let outer = channel_to_relay(&phone, &member_id, &relay.addr, relay_id).await;
    let inner_route = Route::from_addresses([outer.address().clone(), fwd.clone(), "api".into()]);
    let inner = create_channel(
        &phone,
        &member_id,
        inner_route,
        trusting([doorbell_id.identifier()]),
    )
    .await
    .expect("a member reaches the doorbell through the guarded relay");
    assert_eq!(inner.peer(), doorbell_id.identifier());
    let mut inbox = reply_box(&phone, "inbox", &inner);
    let secret = b"open the door: code 4711-SECRET-PLAINTEXT".to_vec();
    phone
        .send(Message::new(
            inner.route_to("echo"),
            Route::from(["inbox"]),
            secret.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(recv(&mut inbox, 10).await.payload, secret);
    // Forwarded first: each was checked before it was forwarded, so the later count covers it.
    let forwarded_to_doorbell = forwarded.lock().unwrap().len() as u64;
    let checked_after_member = checked.load(Ordering::SeqCst);
    assert!(forwarded_to_doorbell >= 2, "handshake and data forwarded");
    // Every message the forwarder passed on was checked (replies come back the other way, unchecked
    // by this forwarder).
    assert!(
        checked_after_member >= forwarded_to_doorbell,
        "{checked_after_member} checks for {forwarded_to_doorbell} forwarded messages"
    );
    assert_eq!(refused.load(Ordering::SeqCst), 0);
    // The relay saw only ciphertext.
    for payload in forwarded.lock().unwrap().iter() {
        for needle in [&b"SECRET"[..], &b"4711"[..], &b"open the door"[..]] {
            assert!(
                !payload.windows(needle.len()).any(|w| w == needle),
                "relay saw plaintext"
            );
        }
    }

    // 2. An authenticated non-member: its channel to the relay opens (the relay's listener takes any
    // identity), but the forwarder's guard refuses every message, so the handshake never arrives.
    let outsider = Node::new("outsider-phone");
    let outer = channel_to_relay(&outsider, &outsider_id, &relay.addr, relay_id).await;
    let denied_before = relay.node.denied_count();
    let options = ChannelOptions {
        handshake_timeout: Duration::from_secs(2),
        ..trusting([doorbell_id.identifier()])
    };
    let err = create_channel(
        &outsider,
        &outsider_id,
        Route::from_addresses([outer.address().clone(), fwd.clone(), "api".into()]),
        options,
    )
    .await
    .expect_err("a non-member must not reach the doorbell");
    eprintln!("non-member: {err}");
    assert!(refused.load(Ordering::SeqCst) >= 1, "the guard refused it");
    assert!(
        relay.node.denied_count() > denied_before,
        "and it was counted"
    );
    // (The member's channel may still forward an ACK meanwhile, so count admissions, not payloads: a
    // message the guard refuses is never forwarded.)
    assert_eq!(
        *admitted.lock().unwrap(),
        HashSet::from([member_id.identifier()]),
        "only the member was ever admitted"
    );

    // 3. A phone over bare TCP to the forwarder: refused by the flow rule before any guard.
    let bare = Node::new("bare-phone");
    let link = tcp::connect(&bare, &relay.addr, TcpOptions::default())
        .await
        .unwrap();
    let denied_before = relay.node.denied_count();
    let refused_before = refused.load(Ordering::SeqCst);
    let options = ChannelOptions {
        handshake_timeout: Duration::from_secs(2),
        ..trusting([doorbell_id.identifier()])
    };
    let err = create_channel(
        &bare,
        &bare_id,
        Route::from_addresses([link, fwd.clone(), "api".into()]),
        options,
    )
    .await
    .expect_err("a bare transport must not reach a guarded forwarder");
    eprintln!("bare tcp: {err}");
    assert!(
        relay.node.denied_count() > denied_before,
        "dropped and counted"
    );
    assert_eq!(
        refused.load(Ordering::SeqCst),
        refused_before,
        "the flow rule refused it, not the guard"
    );
    assert_eq!(
        *admitted.lock().unwrap(),
        HashSet::from([member_id.identifier()]),
        "only the member was ever admitted"
    );

    // The member's channel still works afterwards.
    phone
        .send(Message::new(
            inner.route_to("echo"),
            Route::from(["inbox"]),
            b"again".to_vec(),
        ))
        .await
        .unwrap();
    assert_eq!(recv(&mut inbox, 10).await.payload, b"again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_rule_that_takes_bare_transports_is_refused_at_registration() {
    init_logs();
    let relay = start_relay_node(|o| {
        let rule: ForwardAccepts = Arc::new(|_name: &str| Accepts::relay());
        o.forward = Some(rule);
    })
    .await;
    let node = Node::new("doorbell");
    let id = LocalIdentity::create().unwrap();
    let err = register_securely(&node, &id, &relay.addr, "doorbell", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("denied") || err.to_string().contains("refused"),
        "{err}"
    );
    assert!(relay.handle.names().is_empty());
}
