//! Credit-based flow control over real TCP on loopback: a destination that reads slowly, behind a small
//! mailbox, receives every message exactly once and in order, while the sending end pauses on the credit
//! instead of retransmitting (docs/RUNTIME.md, "Reliability").

mod common;

use common::{any_peer, doorbell_and_phone, init_logs};
use latchkey_runtime::channel::ChannelStats;
use latchkey_runtime::{Accepts, ChannelOptions, Message, Route};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_behind_a_small_mailbox_gets_everything_exactly_once_without_retransmissions(
) {
    init_logs();
    // The doorbell's channels give 16 messages of credit (the phone's window would allow 128).
    let receiver = ChannelOptions {
        window: 16,
        ..any_peer()
    };
    let nodes = doorbell_and_phone(receiver).await;
    let (doorbell, phone, listener) = (&nodes.doorbell, &nodes.phone, &nodes.listener);
    // The destination: a mailbox of 4, read one message every 2 ms.
    let mut sink = doorbell
        .register_with(
            "slow".into(),
            4,
            Accepts::flow(listener.flow).from_peers([nodes.phone_id.identifier()]),
        )
        .unwrap();
    const COUNT: u32 = 400;
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < COUNT as usize {
            let m = tokio::time::timeout(Duration::from_secs(30), sink.recv())
                .await
                .expect("the slow consumer stalled")
                .expect("mailbox closed");
            got.push(m.payload);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Nothing more arrives: every message came exactly once.
        let extra = tokio::time::timeout(Duration::from_millis(300), sink.recv()).await;
        assert!(extra.is_err(), "a message arrived twice");
        got
    });
    let channel = nodes.channel(any_peer()).await;
    for i in 0..COUNT {
        let mut payload = i.to_be_bytes().to_vec();
        payload.resize(1024, 0xa5);
        // Waits while the channel has neither window nor credit: the backpressure reaches the sender.
        phone
            .send(Message::new(
                channel.route_to("slow"),
                Route::new(),
                payload,
            ))
            .await
            .unwrap();
    }
    let got = reader.await.unwrap();
    let order: Vec<u32> = got
        .iter()
        .map(|p| u32::from_be_bytes(p[..4].try_into().unwrap()))
        .collect();
    assert_eq!(
        order,
        (0..COUNT).collect::<Vec<_>>(),
        "exactly once, in order"
    );
    let stats = channel.stats();
    assert!(!channel.is_closed());
    assert_eq!(
        ChannelStats::get(&stats.retransmissions),
        0,
        "the sender paused on credit; nothing was dropped and sent again"
    );
    assert!(ChannelStats::get(&stats.frames_sent) >= u64::from(COUNT));
}
