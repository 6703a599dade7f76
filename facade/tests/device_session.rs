//! The sans-IO device (`DeviceSession`) driven over a plain `std::net::TcpStream` and a monotonic clock, as the
//! C ABI's `latchkey_device_*` and firmware drive it, behind a real relay node on loopback, reached by name by
//! a phone node. The relay goes away and comes back on the same port while the phone's channel stays open:
//! the device reconnects, re-handshakes with the relay, registers again, and the phone's open channel (end to
//! end, through the relay) carries on without losing or repeating a message.

#![cfg(feature = "runtime")]

use latchkey_facade::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn identity() -> Identity {
    Identity::create(&Vault::new(), IdentityOptions::default(), None).unwrap()
}

#[derive(Default)]
struct Log {
    events: Vec<DeviceEvent>,
    /// (channel, peer, payload) of every message the device received.
    messages: Vec<(u64, String, Vec<u8>)>,
    connections: usize,
}

/// The device's event loop on its own thread: connect (again), move bytes both ways, answer each message
/// with "device: " + its payload, run the timers.
fn drive(mut device: DeviceSession, relay: String, stop: Arc<AtomicBool>, log: Arc<Mutex<Log>>) {
    let start = Instant::now();
    let now = || start.elapsed().as_millis() as u64 + 5_000;
    let mut stream: Option<TcpStream> = None;
    let mut reconnect_at = 0;
    let mut buffer = vec![0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        if stream.is_none() && now() >= reconnect_at {
            match TcpStream::connect(&relay) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
                    s.set_nodelay(true).unwrap();
                    device.connected(now()).unwrap();
                    log.lock().unwrap().connections += 1;
                    stream = Some(s);
                }
                Err(_) => reconnect_at = now() + 100,
            }
        }
        let mut broken = false;
        while let Some(s) = stream.as_mut() {
            let n = device.take_output(&mut buffer);
            if n == 0 {
                break;
            }
            if s.write_all(&buffer[..n]).is_err() {
                broken = true;
                break;
            }
        }
        while let Some(event) = device.poll_event() {
            log.lock().unwrap().events.push(event);
        }
        while let Some(message) = device.poll_message() {
            let mut reply = b"device: ".to_vec();
            reply.extend_from_slice(message.payload());
            device.reply(now(), &message, &reply).unwrap();
            log.lock().unwrap().messages.push((
                message.channel(),
                message.peer_identifier().to_owned(),
                message.payload().to_vec(),
            ));
        }
        match stream.as_mut().map(|s| s.read(&mut buffer)) {
            Some(Ok(0)) => broken = true,
            Some(Ok(n)) => {
                if device.handle_bytes(now(), &buffer[..n]).is_err() {
                    broken = true;
                }
            }
            Some(Err(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Some(Err(_)) => broken = true,
            None => std::thread::sleep(Duration::from_millis(5)),
        }
        if broken {
            stream = None;
            device.disconnected(now());
            reconnect_at = now() + 100;
        }
        device.handle_timeout(now());
    }
}

fn registrations(log: &Mutex<Log>) -> usize {
    log.lock()
        .unwrap()
        .events
        .iter()
        .filter(|e| matches!(e, DeviceEvent::Registered { .. }))
        .count()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn relay_node(identity: &Identity, address: &str) -> (std::sync::Arc<Node>, String) {
    let relay = Node::new(
        identity,
        NodeOptions {
            name: "relay".into(),
            relay: true,
        },
    )
    .unwrap();
    // The port of a relay that just stopped may take a moment to be free again.
    let mut attempts = 0;
    let bound = loop {
        match relay.listen_tcp(address.into()).await {
            Ok(bound) => break bound,
            Err(e) if e.code() == ErrorCode::AddressInUse && attempts < 100 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot listen on {address}: {e:?}"),
        }
    };
    relay.listen("api".into(), Trust::AnyIdentity).unwrap();
    relay.start_relay(RelayServiceOptions::default()).unwrap();
    (relay, bound)
}

#[tokio::test(flavor = "current_thread")]
async fn a_sans_io_device_behind_a_relay_keeps_a_phone_channel_across_a_relay_restart() {
    let (relay_id, device_id, phone_id) = (identity(), identity(), identity());
    let (relay, address) = relay_node(&relay_id, "127.0.0.1:0").await;

    let mut options = DeviceOptions::new(
        "doorbell",
        Trust::Identifiers(vec![relay_id.identifier()]),
        Trust::Identifiers(vec![phone_id.identifier()]),
    );
    options.services = vec!["echo".into()];
    options.refresh_ms = 1_000;
    let device = DeviceSession::new(&device_id, options, 5_000).unwrap();
    assert_eq!(device.identifier(), device_id.identifier());
    let (stop, log) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(Mutex::new(Log::default())),
    );
    let driver = {
        let (address, stop, log) = (address.clone(), stop.clone(), log.clone());
        std::thread::spawn(move || drive(device, address, stop, log))
    };
    wait_for("the first registration", || registrations(&log) >= 1).await;

    let phone = Node::new(&phone_id, NodeOptions::default()).unwrap();
    let channel = phone
        .connect(
            Peer::via_relay(address.clone(), "doorbell"),
            Trust::Identifiers(vec![device_id.identifier()]),
            ConnectOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(channel.peer_identifier(), device_id.identifier());
    let reply = channel
        .request("echo".into(), b"before".to_vec(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(reply, b"device: before");

    // The relay goes away; a new relay node with the same identity takes the same port.
    relay.shutdown().await.unwrap();
    drop(relay);
    let (relay, again) = relay_node(&relay_id, &address).await;
    assert_eq!(again, address);
    wait_for("a registration at the new relay", || {
        registrations(&log) >= 2
    })
    .await;

    // The phone's channel, opened before the restart, still reaches the device and gets its answers.
    for text in ["after", "and again"] {
        let reply = channel
            .request(
                "echo".into(),
                text.as_bytes().to_vec(),
                Duration::from_secs(20),
            )
            .await
            .unwrap();
        assert_eq!(reply, format!("device: {text}").into_bytes());
    }

    let _ = channel.close().await;
    for node in [phone, relay] {
        node.shutdown().await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    driver.join().unwrap();
    let log = log.lock().unwrap();
    // Each message once, in order, on the one phone channel, from the authenticated phone.
    let received: Vec<_> = log.messages.iter().map(|(_, _, p)| p.as_slice()).collect();
    assert_eq!(received, [&b"before"[..], b"after", b"and again"]);
    assert!(log
        .messages
        .iter()
        .all(|(c, p, _)| *c == log.messages[0].0 && *p == phone_id.identifier()));
    let phones = log
        .events
        .iter()
        .filter(|e| matches!(e, DeviceEvent::PhoneConnected { .. }))
        .count();
    assert_eq!(
        phones, 1,
        "one phone channel, kept across the restart: {:?}",
        log.events
    );
    assert!(log.connections >= 2, "the device reconnected");
    assert!(log
        .events
        .iter()
        .any(|e| matches!(e, DeviceEvent::RelayLost { .. })));
    assert!(log.events.iter().any(|e| *e
        == DeviceEvent::RelayConnected {
            relay: relay_id.identifier()
        }));
}
