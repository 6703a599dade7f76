//! One timer service per node (docs/RUNTIME.md, "Secure channels: the protocol between two ends"): a thousand
//! idle channels over real TCP on loopback hold one slot each in their node's timer queue, are kept alive by
//! keepalives the service wakes them for, and an idle responder is never woken at all.

mod common;

use common::{admitting, any_peer, doorbell_and_phone, init_logs};
use latchkey_runtime::{ChannelOptions, Node, TimerStats};
use std::time::Duration;

const CHANNELS: usize = 1000;

/// Waits (up to a generous limit, for liveness only) until `done` holds for the node's timer stats.
async fn until(node: &Node, what: &str, done: impl Fn(&TimerStats) -> bool) -> TimerStats {
    for _ in 0..1200 {
        let s = node.timer_stats();
        if done(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: {:?}", node.timer_stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_channels_are_one_queue_of_deadlines_served_by_one_task() {
    init_logs();
    // Keepalives every 200 ms, idle close after 1 s without a frame: a channel whose keepalive timer did not
    // fire would be closed by its responder within the test.
    let quick = || ChannelOptions {
        keepalive: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(1),
        rekey_interval: Duration::from_secs(3600),
        admission: admitting(CHANNELS),
        ..any_peer()
    };
    let nodes = doorbell_and_phone(quick()).await;
    let channels = nodes.open_channels(CHANNELS, quick).await;
    let (doorbell, phone) = (&nodes.doorbell, &nodes.phone);

    // One slot per channel end on each node; no end has more than one live entry, so the queue holds at
    // most one entry per end beyond superseded ones still waiting to come up.
    let ends = until(doorbell, "every responder end holds a slot", |s| {
        s.slots == CHANNELS
    })
    .await;
    let phone_start = phone.timer_stats();
    assert_eq!(phone_start.slots, CHANNELS);

    // Each initiator is woken for its keepalives by the phone's one timer service (several rounds each), and
    // the responders hear them: every channel outlives several idle timeouts.
    let phone_end = until(phone, "keepalive rounds", |s| {
        s.fired >= phone_start.fired + 8 * CHANNELS as u64
    })
    .await;
    assert!(
        channels.iter().all(|c| !c.is_closed()),
        "a channel closed: {:?}",
        channels.iter().find_map(|c| c.close_reason())
    );
    let doorbell_end = doorbell.timer_stats();
    eprintln!("phone: {phone_start:?} -> {phone_end:?}\ndoorbell: {ends:?} -> {doorbell_end:?}");
    assert_eq!(doorbell_end.slots, CHANNELS, "no responder end closed");

    // The service serves many channels per wake-up when their deadlines coincide and never more wake-ups than
    // deadlines it served or nudges it got; idle channels do not grow the queue.
    assert!(phone_end.entries <= 2 * CHANNELS, "{phone_end:?}");
    assert!(doorbell_end.entries <= 2 * CHANNELS, "{doorbell_end:?}");
    assert!(
        phone_end.service_wakeups - phone_start.service_wakeups
            <= (phone_end.fired - phone_start.fired)
                + (phone_end.deferred - phone_start.deferred)
                + (phone_end.stale - phone_start.stale)
                + (phone_end.pushed - phone_start.pushed)
                + 2,
        "{phone_start:?} -> {phone_end:?}"
    );
    // The responders' idle deadlines move later with each keepalive heard: their entries come up, are
    // re-queued at the new deadline without waking the channel, and no responder is woken for a timer.
    assert_eq!(
        doorbell_end.fired, ends.fired,
        "an idle responder was woken for a timer: {ends:?} -> {doorbell_end:?}"
    );
    assert!(doorbell_end.deferred >= CHANNELS as u64, "{doorbell_end:?}");

    // Closing the channels frees their slots.
    for c in &channels {
        c.close().await;
    }
    until(phone, "slots freed", |s| s.slots == 0).await;
    until(doorbell, "responder slots freed", |s| s.slots == 0).await;
}
