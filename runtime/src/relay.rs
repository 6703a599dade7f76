//! Relays: a node registers a name at a relay service and becomes reachable through it. The relay creates a
//! forwarder at `fwd:<name>` that sends whatever arrives there down the registering node's connection. It
//! forwards bytes it cannot read: everything end-to-end is inside a secure channel's frames.

use crate::error::{Result, RuntimeError};
use crate::message::{Address, Message, Route};
use crate::node::{Mailbox, Node};
use latchkey_core::identity::Identifier;
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

/// One registered name: where its forwarder sends, and the identity that owns the name, if it was
/// registered through a secure channel.
struct Registration {
    route: Arc<Mutex<Route>>,
    owner: Option<Identifier>,
}

/// What the relay answers a registration with.
const REPLY_OK: &[u8] = b"ok";
const REPLY_TAKEN: &[u8] = b"taken";
const REPLY_FULL: &[u8] = b"full";

/// Starts a relay service at `address` on `node`.
///
/// A name registered through a secure channel (the relay node also runs a channel listener) belongs to the
/// identity that registered it: later registrations of that name from any other identity, or from no
/// identity, are refused. A name registered without a channel is unowned and may be taken over.
pub fn start_relay(node: &Node, address: Address, inspector: Option<Inspector>) -> Result<()> {
    let mut mailbox = node.register(address)?;
    let node = node.clone();
    let mut names: HashMap<String, Registration> = HashMap::new();
    tokio::spawn(async move {
        while let Some(message) = mailbox.recv().await {
            let name = match std::str::from_utf8(&message.payload) {
                Ok(n) if !n.is_empty() && n.len() <= 200 => n.to_string(),
                _ => {
                    tracing::warn!("relay: bad registration (name must be 1..=200 bytes of UTF-8)");
                    continue;
                }
            };
            let claimant = message.local.peer;
            // The registrant's path: its return route minus its own last hop.
            let prefix = message.ret.without_last();
            let full = names.len() >= MAX_RELAY_NAMES;
            let reply = match names.get_mut(&name) {
                Some(existing) => {
                    match (existing.owner, claimant) {
                        (Some(owner), Some(who)) if owner == who => {
                            *existing.route.lock().unwrap_or_else(|e| e.into_inner()) = prefix;
                            REPLY_OK
                        }
                        (Some(owner), who) => {
                            tracing::warn!(
                            "relay: {name:?} belongs to {owner}; refused a registration from {}",
                            who.map_or_else(|| "an unauthenticated sender".into(), |w| w.to_string())
                        );
                            REPLY_TAKEN
                        }
                        (None, who) => {
                            *existing.route.lock().unwrap_or_else(|e| e.into_inner()) = prefix;
                            existing.owner = who;
                            REPLY_OK
                        }
                    }
                }
                None if full => {
                    tracing::warn!(
                        "relay: refusing {name:?}: {MAX_RELAY_NAMES} names already registered"
                    );
                    REPLY_FULL
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
                    spawn_forwarder(
                        node.clone(),
                        forwarder,
                        route.clone(),
                        name.clone(),
                        inspector.clone(),
                    );
                    match claimant {
                        Some(who) => tracing::info!("relay: {name:?} registered by {who}"),
                        None => tracing::info!("relay: {name:?} registered (unauthenticated)"),
                    }
                    names.insert(
                        name,
                        Registration {
                            route,
                            owner: claimant,
                        },
                    );
                    REPLY_OK
                }
            };
            let _ = node.try_send(message.reply(Route::new(), reply.to_vec()));
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
        Ok(Some(reply)) if reply.payload == REPLY_OK => {}
        Ok(Some(reply)) if reply.payload == REPLY_TAKEN => {
            return Err(RuntimeError::Refused(format!(
                "the relay name {name:?} belongs to another identity"
            )))
        }
        Ok(Some(reply)) => {
            return Err(RuntimeError::Refused(format!(
                "relay did not accept the registration ({:?})",
                String::from_utf8_lossy(&reply.payload)
            )))
        }
        Ok(None) => return Err(RuntimeError::ChannelClosed),
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
