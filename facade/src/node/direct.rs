//! "Direct TCP": one secure channel straight over one TCP connection (docs/PROTOCOL.md §7), for devices and
//! peers that do not route: the listener answers each message with `"echo: "` + the message.

use super::runtime;
use crate::channel::Trust;
use crate::error::Result;
use crate::identity::Identity;
use std::sync::Arc;

/// A running direct-TCP listener.
pub struct DirectListener {
    inner: latchkey_runtime::direct::DirectListener,
    address: String,
    /// Keeps the identity's keys in its vault while the listener answers handshakes.
    _identity: Identity,
}

impl std::fmt::Debug for DirectListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectListener")
            .field("address", &self.address)
            .finish()
    }
}

impl DirectListener {
    /// Listens on `address` as `identity`, for peers `trust` names whose histories pass the identity's pins
    /// ([`Identity::peer_histories`]: a peer that rolls back or forks the history pinned at an earlier
    /// contact is refused).
    pub async fn start(identity: &Identity, address: String, trust: Trust) -> Result<Arc<Self>> {
        let local = identity.local_identity()?;
        let policy = identity.pinning(trust.policy()?);
        let identity = identity.clone();
        runtime::run(async move {
            let inner = latchkey_runtime::direct::listen_direct(local, &address, policy).await?;
            let address = inner.local_addr.to_string();
            Ok(Arc::new(DirectListener {
                inner,
                address,
                _identity: identity,
            }))
        })
        .await
    }

    /// The bound `host:port`.
    pub fn address(&self) -> String {
        self.address.clone()
    }

    pub fn stop(&self) {
        self.inner.stop();
    }
}

/// A client's channel over one direct TCP connection.
pub struct DirectChannel {
    inner: tokio::sync::Mutex<latchkey_runtime::direct::DirectChannel>,
    peer: String,
}

impl std::fmt::Debug for DirectChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectChannel")
            .field("peer", &self.peer)
            .finish()
    }
}

impl DirectChannel {
    /// Connects to `address` as `identity` and completes the handshake; the peer must pass `trust`, and its
    /// history the identity's pins (`HistoryRollback`, `HistoryFork`, `KeyLifetimeExceeded` otherwise).
    pub async fn connect(identity: &Identity, address: String, trust: Trust) -> Result<Arc<Self>> {
        let local = identity.local_identity()?;
        let policy = identity.pinning(trust.policy()?);
        runtime::run(async move {
            let inner = latchkey_runtime::direct::connect_direct(&local, &address, policy).await?;
            let peer = inner.peer().to_string();
            Ok(Arc::new(DirectChannel {
                inner: tokio::sync::Mutex::new(inner),
                peer,
            }))
        })
        .await
    }

    pub fn peer_identifier(&self) -> String {
        self.peer.clone()
    }

    /// Sends one message and waits for the next one from the peer.
    pub async fn exchange(self: Arc<Self>, message: Vec<u8>) -> Result<Vec<u8>> {
        runtime::run(async move {
            let mut inner = self.inner.lock().await;
            inner.send(&message).await?;
            Ok(inner.recv().await?)
        })
        .await
    }
}
