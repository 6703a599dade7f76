//! Pinned peer histories in memory, for the two surfaces that have no SQLite store: the sans-IO
//! [`HandshakeSession`](crate::HandshakeSession) (what C and Python drive) and the direct TCP channels. Each
//! [`Identity`](crate::Identity) carries one [`PeerHistories`], shared by its clones, and every handshake made
//! as that identity consults it, exactly as a node consults its store (`runtime/src/pins.rs`): the trust
//! policy decides who may talk to us, then the core's `ChangeHistory::check_pinned` decides whether the
//! history presented is acceptable. A peer met for the first time (and accepted by the trust policy) is
//! pinned; later it must present its pinned history or an extension of it, else the handshake fails with
//! `HistoryRollback`, `HistoryFork` or `KeyLifetimeExceeded`.

use crate::error::{Error, Result};
use latchkey_core::channel::{PeerIdentity, TrustPolicy};
use latchkey_core::identity::{ChangeHistory, Identifier, PinCheck};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// The histories of the peers an identity has met (or was told about with [`PeerHistories::pin`]), by
/// identifier. Cheap to clone (shared); memory only: a new process starts with none.
#[derive(Clone, Default)]
pub struct PeerHistories {
    pinned: Arc<Mutex<BTreeMap<Identifier, ChangeHistory>>>,
}

impl fmt::Debug for PeerHistories {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerHistories")
            .field("peers", &self.len())
            .finish()
    }
}

impl PeerHistories {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Identifier, ChangeHistory>> {
        // A poisoned lock: a panic elsewhere mid-insert of a whole value; the map itself is consistent.
        self.pinned.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies the pinning rules to a verified history and, when they pass, pins it (first contact) or
    /// moves the pin forward (an extension).
    pub(crate) fn check_and_pin(&self, history: &ChangeHistory) -> latchkey_core::Result<PinCheck> {
        let mut pinned = self.lock();
        let identifier = history.identifier();
        let check = history.check_pinned(pinned.get(&identifier))?;
        if check != PinCheck::Unchanged {
            pinned.insert(identifier, history.clone());
        }
        Ok(check)
    }

    /// Pins exported history bytes (e.g. learned at enrollment), under the same rules as a handshake: a
    /// history that rolls back or forks a pinned one is refused. Returns the identifier.
    pub fn pin(&self, history: &[u8]) -> Result<String> {
        let history = ChangeHistory::import(history)?;
        self.check_and_pin(&history)?;
        Ok(history.identifier().to_string())
    }

    /// The pinned history of `identifier` (`lk…`), as bytes. A pin made by a handshake holds the history as
    /// the peer presented it, checked as presented (docs/PROTOCOL.md 3.4): its first self-signature was never
    /// checked, so [`PeerHistories::pin`] of these bytes (a full check) fails if the peer sent a bad one.
    pub fn history(&self, identifier: &str) -> Result<Option<Vec<u8>>> {
        let identifier: Identifier = identifier
            .parse()
            .map_err(|e: latchkey_core::Error| Error::from(e))?;
        Ok(self.lock().get(&identifier).map(ChangeHistory::export))
    }

    /// Forgets a peer, so that its next contact is a first contact. Returns whether it was pinned.
    pub fn forget(&self, identifier: &str) -> Result<bool> {
        let identifier: Identifier = identifier
            .parse()
            .map_err(|e: latchkey_core::Error| Error::from(e))?;
        Ok(self.lock().remove(&identifier).is_some())
    }

    /// Number of pinned peers.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `inner`, followed by the pin check.
    pub(crate) fn policy(&self, inner: Arc<dyn TrustPolicy>) -> Arc<dyn TrustPolicy> {
        Arc::new(Pinning {
            inner,
            pins: self.clone(),
        })
    }
}

/// A trust policy followed by the pinned-history check.
struct Pinning {
    inner: Arc<dyn TrustPolicy>,
    pins: PeerHistories,
}

impl TrustPolicy for Pinning {
    fn is_trusted(&self, peer: &PeerIdentity) -> bool {
        self.check(peer).is_ok()
    }

    fn may_trust(&self, identifier: &Identifier) -> bool {
        self.inner.may_trust(identifier)
    }

    fn check(&self, peer: &PeerIdentity) -> latchkey_core::Result<()> {
        self.inner.check(peer)?;
        self.pins.check_and_pin(&peer.history).map(|_| ())
    }
}
