//! Pinned histories in every trust decision: [`PinningTrust`] wraps a node's trust policy so that a peer the
//! policy accepts must also pass the peer-history store (`storage::Store::check_and_pin`, which applies the
//! core's pure `ChangeHistory::check_pinned`). It runs inside the handshake — at message 2 for an initiator,
//! message 3 for a responder — so a rolled-back, forked or expired-key history is refused before any
//! application data, with `HistoryRollback`, `HistoryFork` or `KeyLifetimeExceeded`.

use crate::storage::{PinNew, SharedStore};
use latchkey_core::channel::{PeerIdentity, TrustPolicy};
use std::sync::Arc;

/// A trust policy followed by the pin check.
pub struct PinningTrust {
    inner: Arc<dyn TrustPolicy>,
    store: SharedStore,
    pin_new: PinNew,
}

impl PinningTrust {
    /// `inner` decides who may talk to us; then the store decides whether the history they presented is
    /// acceptable (a pinned peer must present its pinned history or an extension of it). `pin_new` says
    /// whether a peer met for the first time is pinned.
    pub fn new(inner: Arc<dyn TrustPolicy>, store: SharedStore, pin_new: PinNew) -> Self {
        PinningTrust {
            inner,
            store,
            pin_new,
        }
    }
}

impl TrustPolicy for PinningTrust {
    fn is_trusted(&self, peer: &PeerIdentity) -> bool {
        self.check(peer).is_ok()
    }

    /// The wrapped policy's cheap answer (an allow-list refuses strangers before any signature check).
    fn may_trust(&self, identifier: &latchkey_core::identity::Identifier) -> bool {
        self.inner.may_trust(identifier)
    }

    fn check(&self, peer: &PeerIdentity) -> latchkey_core::Result<()> {
        self.inner.check(peer)?;
        // A poisoned lock: a panic elsewhere mid-call; SQLite's transactions kept the file consistent.
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        match store.check_and_pin(&peer.history, self.pin_new) {
            Ok(_) => Ok(()),
            Err(crate::RuntimeError::Core(e)) => {
                tracing::warn!(peer = %peer.identifier, error = %e, "pinned history check refused a peer");
                Err(e)
            }
            // Fail closed: a store we cannot read accepts no one.
            Err(e) => {
                tracing::error!(peer = %peer.identifier, error = %e, "peer-history store failed");
                Err(latchkey_core::Error::InvalidState(
                    "the peer-history store failed (see the log); refusing the peer",
                ))
            }
        }
    }
}
