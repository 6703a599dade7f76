//! The runtime's workers with hostile input, in process: a relay node (channel listener `api`, relay
//! registration service `relay`, portal outlet `outlet`, `echo`) and a client node joined by an in-memory
//! link (which encodes and decodes like a network transport), with one secure channel C from the client
//! to the relay's listener. The relay registration and portal payload handling run only inside these
//! tokio workers (no pure function holds them), so this target reaches them the way a peer does.
//! Input: op*; op (`u8`): 0 a registration through C (`return route: u8 ‖ name: chunk`), 1 a portal
//! message through C to `outlet` (`return route: u8 ‖ payload: chunk`), 2 an echo request through C,
//! 3 a raw message over the link (`target: u8 ‖ payload: chunk`; targets: the listener, the relay service,
//! a forwarder, echo, the outlet), 4 raw routed-message bytes over the link (`chunk`, decoded on the client
//! first, then sent on with the link's hop in front). Return routes: 0 `[inbox]`, 1 `[]`, 2
//! `[x, inbox]`, 3 `[inbox, inbox]`.
//!
//! Checks: no worker panics (a panic in any tokio task aborts the fuzzer); after every input C still
//! carries an echo request to the relay and back (nothing an authenticated peer sends through its channel,
//! and nothing sent over the transport, stops the relay's end or the channel).
#![no_main]

use latchkey_fuzz::Cursor;
use latchkey_runtime::channel::MAX_CHANNEL_PAYLOAD;
use latchkey_runtime::portal::create_outlet;
use latchkey_runtime::relay::{start_relay, RelayOptions};
use latchkey_runtime::services::start_echo;
use latchkey_runtime::transport::memory;
use latchkey_runtime::{
    create_channel, create_listener, Accepts, Address, ChannelHandle, ChannelOptions,
    LocalIdentity, Mailbox, Message, Node, Route,
};
use libfuzzer_sys::fuzz_target;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

struct World {
    runtime: tokio::runtime::Runtime,
    client: Node,
    link: Address,
    channel: ChannelHandle,
    /// Replies to the client's requests through C (echo replies arrive here).
    inbox: Mutex<Mailbox>,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let (client, link, channel, inbox) = runtime.block_on(async {
        let relay = Node::relay("relay");
        let relay_identity = LocalIdentity::create().expect("relay identity");
        let listener = create_listener(
            &relay,
            &relay_identity,
            "api".into(),
            ChannelOptions::default().trust_any(),
        )
        .expect("listener");
        let mut options = RelayOptions::new(listener.flow);
        options.lease = Duration::from_secs(2);
        options.max_names = 64;
        start_relay(&relay, "relay".into(), options).expect("relay");
        // Nothing listens on port 1: each CONNECT gets a REFUSED reply.
        create_outlet(
            &relay,
            "outlet".into(),
            "127.0.0.1:1".into(),
            Accepts::flow(listener.flow),
        )
        .expect("outlet");
        start_echo(&relay, "echo".into(), Accepts::flow(listener.flow)).expect("echo");

        let client = Node::new("client");
        let (link, _) = memory::link(&client, &relay).expect("link");
        let identity = LocalIdentity::create().expect("client identity");
        let channel = create_channel(
            &client,
            &identity,
            Route::from_addresses([link.clone(), "api".into()]),
            ChannelOptions::default().trust_any(),
        )
        .await
        .expect("channel to the relay");
        let inbox = client
            .register_with("inbox".into(), 4096, Accepts::flow(channel.flow()))
            .expect("inbox");
        // Messages forwarded through registered names come out of C at `x` on the client.
        let mut sink = client
            .register_with("x".into(), 4096, Accepts::flow(channel.flow()))
            .expect("x");
        tokio::spawn(async move { while sink.recv().await.is_some() {} });
        (client, link, channel, inbox)
    });
    World {
        runtime,
        client,
        link,
        channel,
        inbox: Mutex::new(inbox),
    }
});

fn return_route(selector: u8) -> Route {
    match selector % 4 {
        0 => Route::from(["inbox"]),
        1 => Route::new(),
        2 => Route::from(["x", "inbox"]),
        _ => Route::from(["inbox", "inbox"]),
    }
}

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    let mut input = Cursor::new(data);
    let mut inbox = world.inbox.lock().unwrap_or_else(|e| e.into_inner());
    world.runtime.block_on(async {
        while !input.is_empty() {
            let op = input.u8() % 5;
            let message = match op {
                0..=2 => {
                    let service = ["relay", "outlet", "echo"][op as usize];
                    let ret = return_route(input.u8());
                    let payload = input.chunk();
                    let payload = payload[..payload.len().min(MAX_CHANNEL_PAYLOAD)].to_vec();
                    Message::new(world.channel.route_to(service), ret, payload)
                }
                3 => {
                    let selector = input.u8();
                    let target =
                        ["api", "relay", "fwd:doorbell", "echo", "outlet"][selector as usize % 5];
                    let mut onward = Route::from_addresses([world.link.clone(), target.into()]);
                    if selector & 0x80 != 0 {
                        onward = onward.append("x");
                    }
                    Message::new(onward, return_route(selector >> 3), input.chunk().to_vec())
                }
                _ => {
                    let Ok(m) = Message::decode(input.chunk()) else {
                        continue;
                    };
                    let onward = Route::from_addresses([world.link.clone()]).concat(&m.onward);
                    Message::new(onward, m.ret.clone(), m.payload.clone())
                }
            };
            // Sending can fail (no such worker here, a route too long): that is the sender's business.
            let _ = tokio::time::timeout(Duration::from_secs(5), world.client.send(message)).await;
        }
        // Drop whatever replies arrived, then check the channel still works end to end.
        while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, inbox.recv()).await {}
        let ping = b"still there?".to_vec();
        world
            .client
            .send(Message::new(
                world.channel.route_to("echo"),
                Route::from(["inbox"]),
                ping.clone(),
            ))
            .await
            .expect("send through C");
        loop {
            let reply = tokio::time::timeout(Duration::from_secs(20), inbox.recv())
                .await
                .expect("the relay stopped answering through C")
                .expect("inbox open");
            if reply.payload == ping {
                break;
            }
        }
    });
});
