//! Fast, specific errors: a handshake to a relay name that nobody registered fails at once with "no such
//! relay name" (the relay refuses it on the sender's own connection) instead of at the 10 s handshake
//! deadline, and a registered name is still reached.

mod common;

use common::{any_peer, world};
use latchkey_runtime::relay::forwarder_address;
use latchkey_runtime::{create_channel, Route, RuntimeError};
use std::time::{Duration, Instant};

#[tokio::test]
async fn an_unknown_relay_name_fails_fast_with_a_specific_error() {
    let w = world().await;
    let started = Instant::now();
    let route = Route::from_addresses([
        w.phone_link.clone(),
        forwarder_address("nosuch").unwrap(),
        "api".into(),
    ]);
    let e = create_channel(&w.phone, &w.phone_id, route, any_peer())
        .await
        .expect_err("nobody is registered as nosuch");
    let took = started.elapsed();
    assert!(
        matches!(&e, RuntimeError::Refused(why) if why == "no such relay name"),
        "{e}"
    );
    assert!(
        took < Duration::from_secs(2),
        "fast, not the handshake deadline: {took:?}"
    );
    // The registered name is still reachable.
    let c = create_channel(&w.phone, &w.phone_id, w.to_doorbell.clone(), any_peer())
        .await
        .unwrap();
    assert_eq!(c.peer(), w.doorbell_id.identifier());
}
