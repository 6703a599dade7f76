//! Relays: a node registers a name at a relay service and becomes reachable through it. The relay creates a
//! forwarder at `fwd:<name>` that sends whatever arrives there down the registering node's connection. It
//! forwards bytes it cannot read: everything end-to-end is inside a secure channel's frames.

use crate::error::{Result, RuntimeError};
use crate::message::{Address, Message, Route};
use crate::node::{Mailbox, Node};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Observes (and, for demonstrations and tests, may alter) each payload a forwarder passes on.
pub type Inspector = Arc<dyn Fn(&str, &mut Vec<u8>) + Send + Sync>;

/// Most names one relay serves; registrations beyond are refused, so a flood cannot grow it without bound.
pub const MAX_RELAY_NAMES: usize = 10_000;

/// The forwarder address for a registered name.
pub fn forwarder_address(name: &str) -> Result<Address> {
    Address::new(format!("fwd:{name}"))
}

/// Starts a relay service at `address` on `node`.
pub fn start_relay(node: &Node, address: Address, inspector: Option<Inspector>) -> Result<()> {
    let mut mailbox = node.register(address)?;
    let node = node.clone();
    let routes: Arc<Mutex<HashMap<String, Arc<Mutex<Route>>>>> = Arc::default();
    tokio::spawn(async move {
        while let Some(message) = mailbox.recv().await {
            let name = match std::str::from_utf8(&message.payload) {
                Ok(n) if !n.is_empty() && n.len() <= 200 => n.to_string(),
                _ => {
                    tracing::warn!("relay: bad registration (name must be 1..=200 bytes of UTF-8)");
                    continue;
                }
            };
            // The registrant's connection: its return route minus its own last hop.
            let prefix = message.ret.without_last();
            let existing = routes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
                .cloned();
            let fresh = match existing {
                Some(route) => {
                    *route.lock().unwrap_or_else(|e| e.into_inner()) = prefix;
                    false
                }
                None => {
                    let Ok(address) = forwarder_address(&name) else {
                        continue;
                    };
                    let forwarder = match node.register(address) {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!("relay: cannot register {name:?}: {e}");
                            continue;
                        }
                    };
                    let route = Arc::new(Mutex::new(prefix));
                    routes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(name.clone(), route.clone());
                    spawn_forwarder(
                        node.clone(),
                        forwarder,
                        route,
                        name.clone(),
                        inspector.clone(),
                    );
                    true
                }
            };
            if fresh {
                tracing::info!("relay: {name:?} registered");
            }
            let _ = node.try_send(message.reply(Route::new(), b"ok".to_vec()));
        }
    });
    Ok(())
}

fn spawn_forwarder(
    node: Node,
    mut mailbox: Mailbox,
    route: Arc<Mutex<Route>>,
    name: String,
    inspector: Option<Inspector>,
) {
    tokio::spawn(async move {
        while let Some(mut message) = mailbox.recv().await {
            message.onward.pop_front();
            let prefix = route.lock().unwrap_or_else(|e| e.into_inner()).clone();
            message.onward = prefix.concat(&message.onward);
            if let Some(inspect) = &inspector {
                inspect(&name, &mut message.payload);
            }
            // Waiting here is backpressure towards the sender's connection only.
            if let Err(e) = node.send(message).await {
                tracing::debug!("relay: forwarding to {name:?} failed: {e}");
            }
        }
    });
}

/// Registers `name` at the relay service reached by `relay_route` and keeps the registration fresh (so it
/// follows reconnections) every `refresh`. Returns once the first registration is confirmed.
pub async fn register_at_relay(
    node: &Node,
    relay_route: Route,
    name: &str,
    refresh: Duration,
) -> Result<()> {
    let mut mailbox = node.register(node.unique_address("relay-client"))?;
    let here = Route::from_addresses([mailbox.address().clone()]);
    let payload = name.as_bytes().to_vec();
    node.send(Message::new(
        relay_route.clone(),
        here.clone(),
        payload.clone(),
    ))
    .await?;
    match tokio::time::timeout(Duration::from_secs(5), mailbox.recv()).await {
        Ok(Some(reply)) if reply.payload == b"ok" => {}
        Ok(_) => {
            return Err(RuntimeError::Refused(
                "relay did not accept the registration".into(),
            ))
        }
        Err(_) => return Err(RuntimeError::Timeout("relay registration")),
    }
    let node = node.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(refresh).await;
            if let Err(e) = node
                .send(Message::new(
                    relay_route.clone(),
                    here.clone(),
                    payload.clone(),
                ))
                .await
            {
                tracing::warn!("relay registration refresh failed: {e}");
            }
            // Drain confirmations so the mailbox never fills.
            while let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(1), mailbox.recv()).await
            {}
        }
    });
    Ok(())
}
