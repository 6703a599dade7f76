//! Enforcement on a node: which authorities it trusts, what their credentials must say, and what they
//! revoked.
//!
//! A [`Membership`] holds the node's trusted authorities, its current revocation state, and the channels it
//! watches. It is used three ways:
//! - **When a channel is accepted** (or initiated): [`Membership::trust`] is a
//!   [`TrustPolicy`] for [`crate::ChannelOptions::with_trust`]: the peer must present a credential from a
//!   trusted authority, about itself and its history ([`Credential::verify`]), not expired, not revoked (by
//!   identifier or credential id), and satisfying the requirement given (attributes). Otherwise the
//!   handshake fails and there is no channel.
//! - **On every message** to a service, portal inlet, outlet or relay forwarder: [`Membership::guard`] is an
//!   [`OriginGuard`] for [`crate::Accepts::with_guard`]; it reads the message's authenticated origin (the
//!   channel's peer and the credentials it presented), and refuses if the credential has expired, the peer
//!   or credential has been revoked since, or the requirement for this worker is not met.
//! - **Live channels**: [`Membership::watch`] registers a channel; [`Membership::apply_revocations`] closes
//!   at once the watched channels of revoked peers or credentials, and a sweeper closes channels whose
//!   credential expired, every [`EXPIRY_SWEEP`] (so a channel outlives its credential by at most that).
//!   Revocation lists are the core's (`latchkey_core::credential::revocation`): signed by a trusted
//!   authority, installed only if newer than the one in force (an older list is refused).
//!
//! Requirements are the core's attribute policies (`latchkey_core::policy`, docs/POLICY.md), evaluated
//! with `subject.*` = the credential's attributes plus `subject.identifier`, and `resource.name` /
//! `action.name` as given for the worker (at the handshake: `resource.name = "channel"`, `action.name =
//! "open"`).

use crate::channel::ChannelHandle;
use crate::flow::OriginGuard;
use crate::origin::Origin;
use latchkey_core::channel::{PeerIdentity, TrustPolicy};
use latchkey_core::credential::revocation::{Installed, RevocationList, RevocationState};
use latchkey_core::credential::{Attributes, Credential, TrustedAuthorities, ID_LEN};
use latchkey_core::identity::Identifier;
use latchkey_core::policy::{Environment, Policy, Scope};
use latchkey_core::wire::Decode;
use latchkey_core::{Error, Timestamp};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// How often watched channels are checked for an expired credential.
pub const EXPIRY_SWEEP: Duration = Duration::from_secs(1);

/// What a peer must satisfy at a worker: a policy, and the resource and action it is evaluated for.
#[derive(Clone, Debug)]
pub struct Requirement {
    pub policy: Arc<Policy>,
    pub resource: String,
    pub action: String,
}

impl Requirement {
    /// `policy` for `resource` (its `resource.name`) and `action` (its `action.name`).
    pub fn new(policy: Policy, resource: impl Into<String>, action: impl Into<String>) -> Self {
        Requirement {
            policy: Arc::new(policy),
            resource: resource.into(),
            action: action.into(),
        }
    }

    fn admits(&self, peer: &Identifier, attributes: &Attributes) -> bool {
        let mut env = Environment::new();
        for (k, v) in attributes.iter() {
            env.set(Scope::Subject, k, v);
        }
        env.set(Scope::Subject, "identifier", peer.to_string());
        env.set(Scope::Resource, "name", self.resource.clone());
        env.set(Scope::Action, "name", self.action.clone());
        self.policy.evaluate(&env)
    }
}

/// The clock a node checks credentials with (tests inject one).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// A node's trusted authorities, revocations and watched channels (see the module documentation).
pub struct Membership {
    authorities: TrustedAuthorities,
    revoked: RwLock<RevocationState>,
    clock: Clock,
    watched: Mutex<Vec<ChannelHandle>>,
    closed_by_revocation: std::sync::atomic::AtomicU64,
    closed_by_expiry: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field(
                "authorities",
                &self.authorities.identifiers().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The result of checking a peer's credentials.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub credential_id: [u8; ID_LEN],
    pub attributes: Attributes,
    pub not_after: Timestamp,
}

impl Membership {
    /// A node that trusts `authorities`, with the system clock. Starts the expiry sweeper (needs a tokio
    /// runtime).
    pub fn new(authorities: TrustedAuthorities) -> Arc<Self> {
        Self::with_clock(authorities, Arc::new(Timestamp::now))
    }

    pub fn with_clock(authorities: TrustedAuthorities, clock: Clock) -> Arc<Self> {
        let m = Arc::new(Membership {
            authorities,
            revoked: RwLock::default(),
            clock,
            watched: Mutex::default(),
            closed_by_revocation: Default::default(),
            closed_by_expiry: Default::default(),
        });
        let weak = Arc::downgrade(&m);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(EXPIRY_SWEEP).await;
                    let Some(m) = weak.upgrade() else { return };
                    m.sweep().await;
                }
            });
        }
        m
    }

    fn now(&self) -> Timestamp {
        (self.clock)()
    }

    /// Checks credentials presented by `peer` (identifier), with its verified `history` if known (at the
    /// handshake) or trusting the handshake's earlier check of it (per message: `None`). The first credential
    /// that verifies, is not revoked and meets `requirement` wins.
    fn check(
        &self,
        peer: &Identifier,
        history: Option<&latchkey_core::identity::ChangeHistory>,
        credentials: &[Vec<u8>],
        requirement: Option<&Requirement>,
    ) -> Result<Admitted, Error> {
        let revoked = self.revoked.read().unwrap_or_else(|e| e.into_inner());
        revoked.check_peer(peer)?;
        let now = self.now();
        let mut last = Error::UntrustedPeer(*peer);
        for bytes in credentials {
            let credential = match Credential::from_bytes(bytes) {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let verified = match history {
                Some(h) => credential
                    .verify(&self.authorities, peer, h, now)
                    .map(|_| ()),
                None => credential
                    .verify_issuer(&self.authorities, now)
                    .and_then(|_| {
                        if &credential.body.subject == peer {
                            Ok(())
                        } else {
                            Err(Error::SubjectMismatch(
                                "credential is about another identity",
                            ))
                        }
                    }),
            };
            if let Err(e) = verified {
                last = e;
                continue;
            }
            let id = credential.id();
            if let Err(e) = revoked.check_credential(&credential) {
                last = e;
                continue;
            }
            if let Some(req) = requirement {
                if !req.admits(peer, &credential.body.attributes) {
                    last =
                        Error::PolicyDenied("the credential's attributes do not meet the policy");
                    continue;
                }
            }
            return Ok(Admitted {
                credential_id: id,
                attributes: credential.body.attributes.clone(),
                not_after: credential.body.not_after,
            });
        }
        Err(last)
    }

    /// A trust policy for channels: the peer must present a valid, unrevoked credential meeting
    /// `requirement` (`None`: any credential of a trusted authority).
    pub fn trust(self: &Arc<Self>, requirement: Option<Requirement>) -> Arc<dyn TrustPolicy> {
        Arc::new(MembershipTrust {
            membership: self.clone(),
            requirement,
        })
    }

    /// A per-message guard for a worker: remote messages must come out of a channel whose peer presented a
    /// valid, unrevoked credential meeting `requirement`.
    pub fn guard(self: &Arc<Self>, requirement: Option<Requirement>) -> Arc<dyn OriginGuard> {
        Arc::new(MembershipGuard {
            membership: self.clone(),
            requirement,
        })
    }

    /// Watches a live channel: it is closed when its peer or credential is revoked, or its credential
    /// expires.
    pub fn watch(&self, channel: ChannelHandle) {
        let mut w = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        w.retain(|c| !c.is_closed());
        w.push(channel);
    }

    /// Verifies and installs a signed revocation list of a trusted authority (refused if older than the
    /// one in force: `StaleRevocationList`), then closes the watched channels it revokes. `Ok(false)`: the
    /// same list was already in force.
    pub async fn apply_revocations(&self, list: RevocationList) -> Result<bool, Error> {
        let installed = self
            .revoked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .install(list, &self.authorities, self.now())?;
        if installed == Installed::Unchanged {
            return Ok(false);
        }
        let to_close: Vec<ChannelHandle> = {
            let w = self.watched.lock().unwrap_or_else(|e| e.into_inner());
            w.iter()
                .filter(|c| !c.is_closed() && matches!(self.live_check(c), Err(Error::Revoked(_))))
                .cloned()
                .collect()
        };
        for c in to_close {
            tracing::info!("membership: closing the channel with {}: revoked", c.peer());
            self.closed_by_revocation
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            c.close().await;
        }
        Ok(true)
    }

    /// The sequence of `issuer`'s revocation list in force.
    pub fn revocation_sequence(&self, issuer: &Identifier) -> Option<u64> {
        self.revoked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .sequence(issuer)
    }

    /// Channels closed because of revocation, and because their credential expired.
    pub fn closed_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.closed_by_revocation.load(Relaxed),
            self.closed_by_expiry.load(Relaxed),
        )
    }

    fn live_check(&self, c: &ChannelHandle) -> Result<Admitted, Error> {
        let peer = c.peer_identity();
        self.check(
            &peer.identifier,
            Some(&peer.history),
            &peer.credentials,
            None,
        )
    }

    async fn sweep(&self) {
        let expired: Vec<ChannelHandle> = {
            let mut w = self.watched.lock().unwrap_or_else(|e| e.into_inner());
            w.retain(|c| !c.is_closed());
            w.iter()
                .filter(|c| matches!(self.live_check(c), Err(Error::Expired(_))))
                .cloned()
                .collect()
        };
        for c in expired {
            tracing::info!(
                "membership: closing the channel with {}: its credential expired",
                c.peer()
            );
            self.closed_by_expiry
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            c.close().await;
        }
    }
}

struct MembershipTrust {
    membership: Arc<Membership>,
    requirement: Option<Requirement>,
}

impl TrustPolicy for MembershipTrust {
    fn is_trusted(&self, peer: &PeerIdentity) -> bool {
        self.check(peer).is_ok()
    }

    fn check(&self, peer: &PeerIdentity) -> latchkey_core::Result<()> {
        self.membership
            .check(
                &peer.identifier,
                Some(&peer.history),
                &peer.credentials,
                self.requirement.as_ref(),
            )
            .map(|_| ())
    }
}

struct MembershipGuard {
    membership: Arc<Membership>,
    requirement: Option<Requirement>,
}

impl OriginGuard for MembershipGuard {
    fn check(&self, origin: &Origin) -> Result<(), String> {
        let Some(channel) = origin.channel() else {
            return Err("not out of a secure channel".into());
        };
        self.membership
            .check(
                &channel.peer,
                None,
                &channel.credentials,
                self.requirement.as_ref(),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
