//! Re-handshakes on live channels (issue 10, item 3): fresh Diffie-Hellman every second through a relay on
//! loopback TCP, under load, loses no message and really changes the keys; a channel whose frames are
//! more key epochs ahead than the receiver derives recovers by re-handshake. docs/SECURITY.md names these
//! tests.

mod common;

use common::{init_logs, sink, world};
use latchkey_core::channel::MAX_EPOCH_SKIP;
use latchkey_runtime::channel::ChannelStats;
use latchkey_runtime::{create_channel, create_listener, ChannelHandle, ChannelOptions, Route};
use std::collections::HashMap;
use std::time::Duration;

fn rekeying(every: Duration) -> ChannelOptions {
    ChannelOptions {
        rekey_interval: every,
        ..ChannelOptions::default().trust_any()
    }
}

/// A channel from the phone through the relay to the doorbell's listener `fast` (opened to the doorbell's
/// relay channel), both ends with `options`; returns both ends and what the doorbell's `collect` received.
async fn through_the_relay(
    options: ChannelOptions,
) -> (
    common::World,
    ChannelHandle,
    ChannelHandle,
    std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
) {
    let w = world().await;
    let mut listener =
        create_listener(&w.doorbell, &w.doorbell_id, "fast".into(), options.clone()).unwrap();
    w.doorbell
        .allow(&"fast".into(), w.doorbell_to_relay.flow())
        .unwrap();
    let got = sink(&w.doorbell, "collect");
    w.doorbell.allow(&"collect".into(), listener.flow).unwrap();
    let route = Route::from_addresses(w.to_doorbell.iter().take(2).cloned())
        .append(latchkey_runtime::Address::from("fast"));
    let phone_end = create_channel(&w.phone, &w.phone_id, route, options)
        .await
        .unwrap();
    let doorbell_end = tokio::time::timeout(Duration::from_secs(5), listener.accepted())
        .await
        .unwrap()
        .unwrap();
    (w, phone_end, doorbell_end, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rehandshakes_every_second_under_load_lose_no_message_and_change_the_keys() {
    init_logs();
    let (_w, phone_end, doorbell_end, got) =
        through_the_relay(rekeying(Duration::from_secs(1))).await;
    let first = phone_end.key_fingerprint();
    assert_eq!(first, doorbell_end.key_fingerprint());
    // Eight senders, each in order, confirmed one by one, for five seconds (about five re-handshakes).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut tasks = vec![];
    for t in 0..8u32 {
        let ch = phone_end.clone();
        tasks.push(tokio::spawn(async move {
            let mut confirmed = 0u32;
            while tokio::time::Instant::now() < deadline {
                let payload = format!("{t}:{confirmed}").into_bytes();
                ch.send_confirmed(Route::from(["collect"]), Route::new(), payload)
                    .await
                    .expect("a confirmed send failed during re-handshakes");
                confirmed += 1;
            }
            confirmed
        }));
    }
    let mut sent = vec![];
    for task in tasks {
        sent.push(task.await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Exactly once, and in order per sender.
    let received = got.lock().unwrap().clone();
    let mut next: HashMap<u32, u32> = HashMap::new();
    for p in &received {
        let text = String::from_utf8(p.clone()).unwrap();
        let (t, i) = text.split_once(':').unwrap();
        let (t, i): (u32, u32) = (t.parse().unwrap(), i.parse().unwrap());
        let expected = next.entry(t).or_insert(0);
        assert_eq!(i, *expected, "sender {t}: out of order or duplicated");
        *expected += 1;
    }
    for (t, n) in sent.iter().enumerate() {
        assert_eq!(
            next.get(&(t as u32)).copied().unwrap_or(0),
            *n,
            "sender {t}: every confirmed message arrived"
        );
    }
    let total: u32 = sent.iter().sum();
    let rekeys = ChannelStats::get(&phone_end.stats().rekeys);
    println!(
        "re-handshakes: {rekeys} in 5 s under load; messages confirmed and delivered once: {total}"
    );
    assert!(total > 100, "only {total} messages in 5 s");
    assert!(
        rekeys >= 3,
        "only {rekeys} re-handshakes in 5 s at a 1 s interval"
    );
    // Both ends agree on the current keys (wait out a re-handshake in progress), and they changed.
    let mut agreed = false;
    for _ in 0..50 {
        if phone_end.key_fingerprint() == doorbell_end.key_fingerprint()
            && ChannelStats::get(&phone_end.stats().rekeys)
                == ChannelStats::get(&doorbell_end.stats().rekeys)
        {
            agreed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(agreed, "the two ends disagree on the keys");
    assert_ne!(phone_end.key_fingerprint(), first, "the keys never changed");
    assert!(!phone_end.is_closed() && !doorbell_end.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_epoch_loss_recovers_by_rehandshake() {
    init_logs();
    // No periodic re-handshake during the test: only the recovery makes one.
    let (_w, phone_end, doorbell_end, got) =
        through_the_relay(rekeying(Duration::from_secs(3_600))).await;
    for i in 0..20u32 {
        phone_end
            .send_confirmed(
                Route::from(["collect"]),
                Route::new(),
                i.to_be_bytes().to_vec(),
            )
            .await
            .unwrap();
    }
    // The phone's frames are now more epochs ahead than the doorbell derives forward (as after more than
    // MAX_EPOCH_SKIP epochs of lost frames): without recovery every later frame is refused for good.
    phone_end
        .skip_send_epochs_for_test(MAX_EPOCH_SKIP + 3)
        .await;
    for i in 20..60u32 {
        tokio::time::timeout(
            Duration::from_secs(10),
            phone_end.send_confirmed(
                Route::from(["collect"]),
                Route::new(),
                i.to_be_bytes().to_vec(),
            ),
        )
        .await
        .expect("no recovery from the epoch loss")
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let received: Vec<u32> = got
        .lock()
        .unwrap()
        .iter()
        .map(|p| u32::from_be_bytes(p[..4].try_into().unwrap()))
        .collect();
    assert_eq!(
        received,
        (0..60).collect::<Vec<_>>(),
        "exactly once, in order"
    );
    assert_eq!(ChannelStats::get(&phone_end.stats().rekeys), 1);
    assert!(
        ChannelStats::get(&doorbell_end.stats().frames_rejected) > 0,
        "the doorbell saw the loss"
    );
}
