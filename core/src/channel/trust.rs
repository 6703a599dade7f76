//! Who may have a channel with us: decided by the caller, after the peer proved its identity.

use super::PeerIdentity;
use crate::error::{Error, Result};
use crate::identity::Identifier;
use alloc::collections::BTreeSet;

/// Decides whether a peer that proved its identity gets a channel.
pub trait TrustPolicy: Send + Sync {
    fn is_trusted(&self, peer: &PeerIdentity) -> bool;

    /// A cheap answer before the peer's proof is verified: `false` only if no peer with this identifier
    /// could ever be trusted (an allow-list that does not name it). The handshake then refuses it without
    /// checking a single signature. The default, `true`, defers to [`TrustPolicy::is_trusted`].
    fn may_trust(&self, _identifier: &Identifier) -> bool {
        true
    }

    /// The decision the handshake asks for, inside the handshake and before any application data: `Ok` to
    /// accept, or the error that says why not. By default [`TrustPolicy::is_trusted`] decides and a refusal
    /// is `UntrustedPeer`; a policy that pins histories (the runtime's) refuses with `HistoryRollback`,
    /// `HistoryFork` or `KeyLifetimeExceeded` instead.
    fn check(&self, peer: &PeerIdentity) -> Result<()> {
        if self.is_trusted(peer) {
            Ok(())
        } else {
            Err(Error::UntrustedPeer(peer.identifier))
        }
    }
}

/// Any peer that proves some identity. Authentication still happens; only authorization is open.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustAnyIdentity;

impl TrustPolicy for TrustAnyIdentity {
    fn is_trusted(&self, _peer: &PeerIdentity) -> bool {
        true
    }
}

/// Only the listed identifiers.
#[derive(Debug, Clone, Default)]
pub struct TrustIdentifiers(pub BTreeSet<Identifier>);

impl TrustIdentifiers {
    pub fn new(identifiers: impl IntoIterator<Item = Identifier>) -> Self {
        Self(identifiers.into_iter().collect())
    }
}

impl TrustPolicy for TrustIdentifiers {
    fn is_trusted(&self, peer: &PeerIdentity) -> bool {
        self.0.contains(&peer.identifier)
    }

    fn may_trust(&self, identifier: &Identifier) -> bool {
        self.0.contains(identifier)
    }
}

impl<F> TrustPolicy for F
where
    F: Fn(&PeerIdentity) -> bool + Send + Sync,
{
    fn is_trusted(&self, peer: &PeerIdentity) -> bool {
        self(peer)
    }
}
