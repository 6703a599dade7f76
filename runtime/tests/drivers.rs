//! Channel ends are driven by a few driver tasks per node ("shards", one per worker thread of the runtime),
//! not by a tokio task each (docs/RUNTIME.md, "Secure channels: the protocol between two ends"). Over real
//! TCP on loopback: two busy channels sharing one shard both make progress, and a thousand channels opened
//! and closed leave no end in the drivers, no slot in the timer service and, once the nodes are dropped, no
//! task at all.

mod common;

use common::{admitting, any_peer, doorbell_and_phone, init_logs, DoorbellAndPhone};
use latchkey_runtime::{Accepts, Address, ChannelHandle, ChannelOptions, Message, Node, Route};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Waits (up to a generous limit, for liveness only) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..2400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

/// Streams messages tagged `tag` through `channel` to the doorbell's counter until `stop` is set, waiting
/// whenever the channel's encryptor mailbox is full.
fn stream(phone: &Node, channel: &ChannelHandle, tag: u8, stop: Arc<AtomicBool>) {
    let (phone, route) = (phone.clone(), channel.route_to("count"));
    tokio::spawn(async move {
        let mut payload = vec![0u8; 1024];
        payload[0] = tag;
        while !stop.load(Ordering::Relaxed) {
            let m = Message::new(route.clone(), Route::new(), payload.clone());
            if phone.send(m).await.is_err() {
                break;
            }
        }
    });
}

#[tokio::test(flavor = "current_thread")]
async fn two_busy_channels_on_one_shard_both_make_progress() {
    init_logs();
    let nodes = doorbell_and_phone(any_peer()).await;
    let (doorbell, phone) = (&nodes.doorbell, &nodes.phone);
    // The doorbell counts what each channel delivers.
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let mut count_box = doorbell
        .register_with(
            Address::from("count"),
            256,
            Accepts::flow(nodes.listener.flow),
        )
        .unwrap();
    let counted = counts.clone();
    tokio::spawn(async move {
        while let Some(m) = count_box.recv().await {
            counted[usize::from(m.payload[0] == b'b')].fetch_add(1, Ordering::Relaxed);
        }
    });
    let a = nodes.channel(any_peer()).await;
    let b = nodes.channel(any_peer()).await;
    // A current-thread runtime has one worker: both ends of the phone share its one shard.
    let drivers = phone.driver_stats();
    assert_eq!((drivers.shards, drivers.ends.clone()), (1, vec![2]));
    let delivered = |i: usize| counts[i].load(Ordering::Relaxed);

    let stop = Arc::new(AtomicBool::new(false));
    stream(phone, &a, b'a', stop.clone());
    until("channel a streams", || delivered(0) >= 2_000).await;
    stream(phone, &b, b'b', stop.clone());
    // While both stream, each gets a fair part of what is delivered: neither is starved by the other.
    let start = (delivered(0), delivered(1));
    until("20,000 more messages delivered", || {
        delivered(0) + delivered(1) >= start.0 + start.1 + 20_000
    })
    .await;
    let (da, db) = (delivered(0) - start.0, delivered(1) - start.1);
    eprintln!("while both streamed: a delivered {da}, b delivered {db}");
    assert!(da >= 2_000, "channel a starved: a {da}, b {db}");
    assert!(db >= 2_000, "channel b starved: a {da}, b {db}");
    stop.store(true, Ordering::Relaxed);
    assert!(!a.is_closed() && !b.is_closed());
    a.close().await;
    b.close().await;
    until("the phone's ends are gone", || {
        phone.driver_stats().total_ends() == 0
    })
    .await;
    assert_eq!(phone.driver_stats().panicked, 0);
}

const CHANNELS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_channels_opened_and_closed_leave_nothing_behind() {
    init_logs();
    let alive = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let baseline = alive();
    let quick = || ChannelOptions {
        admission: admitting(CHANNELS),
        ..any_peer()
    };
    let nodes = doorbell_and_phone(quick()).await;
    let channels = nodes.open_channels(CHANNELS, quick).await;
    let DoorbellAndPhone {
        doorbell,
        doorbell_tcp,
        listener,
        phone,
        ..
    } = nodes;
    until("every responder end is driven", || {
        doorbell.driver_stats().total_ends() == CHANNELS
    })
    .await;
    // Two worker threads: two shards per node, the ends spread over both, and a few tasks in all where a
    // task per end would be a thousand per node.
    let (p, d) = (phone.driver_stats(), doorbell.driver_stats());
    eprintln!("phone {p:?}\ndoorbell {d:?}; {} tasks alive", alive());
    for s in [&p, &d] {
        assert_eq!(
            (s.shards, s.running, s.total_ends()),
            (2, 2, CHANNELS),
            "{s:?}"
        );
        assert!(s.ends.iter().all(|&n| n >= CHANNELS / 4), "{s:?}");
    }
    assert!(
        alive() < baseline + CHANNELS / 10,
        "{} tasks alive for {CHANNELS} channels",
        alive()
    );

    for c in &channels {
        c.close().await;
    }
    until("the phone's ends are gone", || {
        phone.driver_stats().total_ends() == 0
    })
    .await;
    until("the doorbell's ends are gone", || {
        doorbell.driver_stats().total_ends() == 0
    })
    .await;
    until("the timer slots are freed", || {
        phone.timer_stats().slots == 0 && doorbell.timer_stats().slots == 0
    })
    .await;
    for s in [phone.driver_stats(), doorbell.driver_stats()] {
        assert_eq!((s.running, s.panicked), (2, 0), "{s:?}");
        assert!(s.polls >= CHANNELS as u64, "{s:?}");
    }

    // The nodes go: every worker address is unregistered (their tasks end), the TCP listener stops, the
    // handles are dropped. Then nothing of them runs: no transport, listener, timer service or driver task.
    drop(channels);
    drop(listener);
    doorbell_tcp.stop();
    for node in [&phone, &doorbell] {
        for (address, _) in node.flow_table() {
            node.unregister(&address);
        }
    }
    drop((phone, doorbell, doorbell_tcp));
    until("every task of the nodes has ended", || alive() == baseline).await;
}
