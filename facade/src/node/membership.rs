//! Authorities and policies on a running node (`latchkey node run --authority … --credential --policy …`):
//! which authorities' credentials its peers must present, on every channel and every message; the
//! attribute policy of each service, portal and relay; following the authorities' revocations; and
//! presenting this node's own credential, refreshed before it expires.
//!
//! See docs/RUNTIME.md, "Authorities on a node".

use super::{runtime, NodeState, AUTHORITY_SERVICE};
use crate::error::{Error, ErrorCode, Result};
use latchkey_core::channel::{PeerIdentity, TrustPolicy};
use latchkey_core::credential::{Credential, TrustedAuthorities};
use latchkey_core::identity::{ChangeHistory, Identifier};
use latchkey_core::policy::Policy;
use latchkey_core::wire::{Decode, Encode};
use latchkey_core::Timestamp;
use latchkey_runtime::authority::enforce::Requirement;
use latchkey_runtime::authority::{client, Membership};
use latchkey_runtime::channel::{CredentialSlot, ResilientChannel};
use latchkey_runtime::flow::OriginGuard;
use latchkey_runtime::transport::tcp::{self, TcpOptions};
use latchkey_runtime::LocalIdentity;
use latchkey_runtime::{create_channel, ChannelHandle, ChannelOptions, Route};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The first retry after a failed refresh or a lost authority; it doubles up to [`REFRESH_RETRY_MAX`].
pub const REFRESH_RETRY_MIN: Duration = Duration::from_secs(1);
/// The longest wait between two attempts to reach the authority.
pub const REFRESH_RETRY_MAX: Duration = Duration::from_secs(30);

/// What a node requires of its peers and presents itself (see [`super::Node::use_authorities`]).
#[derive(Clone, Debug, Default)]
pub struct NodeTrustOptions {
    /// The exported histories of the authorities whose credentials this node accepts. When any is given,
    /// every peer must present a valid, unrevoked credential of one of them when its channel is accepted
    /// (or opened) and on every message to this node's services, portals and relay service.
    pub authorities: Vec<Vec<u8>>,
    /// This node's own credential, presented in its handshakes (and refreshed when `authority_address` is
    /// given). `None`: for a node opened from a stored identity ([`super::Node::with_stored_identity`]),
    /// the credential stored for it (`credentials/NAME.cred`, e.g. from `enroll`), if any — presented while
    /// it is valid; an expired one is presented only once refreshed, which needs `authority_address`.
    /// Otherwise, what the identity carries.
    pub credential: Option<Vec<u8>>,
    /// Where the authority serves (`latchkey authority serve`): this node follows its revocation lists
    /// (pushed, and fetched every `refetch_secs`) and refreshes its own credential there at half its
    /// validity (retrying with backoff while the authority is down; the old credential stays in use until
    /// it expires).
    pub authority_address: Option<String>,
    /// Fetch the revocation list again this often (besides pushes). 0: 30 s.
    pub refetch_secs: u64,
    /// Save each refreshed credential to `credentials/NAME.cred` in this home (`(NAME, home)`). `None`
    /// with the stored credential in use (no `credential` given): saved back where it was read.
    pub save_as: Option<(String, Option<String>)>,
}

/// Where a node's identity is stored ([`super::Node::with_stored_identity`]), and the credential stored for
/// it when the node was opened.
pub(crate) struct StoredAs {
    name: String,
    home: Option<String>,
    credential: Option<Credential>,
}

impl StoredAs {
    /// Reads the credential stored for `name` in `dir` (none is fine). One that does not decode, or is
    /// about another identity than `identity`, is an `InvalidCredential` error: the node would otherwise
    /// silently present nothing and its peers refuse it for no visible reason.
    pub(crate) fn load(
        name: &str,
        home: Option<String>,
        dir: &Path,
        identity: &LocalIdentity,
    ) -> Result<Self> {
        let path = super::authority::credential_path(dir, name);
        let credential = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(Error::new(
                    ErrorCode::StorageError,
                    format!("cannot read {}: {e}", path.display()),
                ))
            }
            Ok(bytes) => {
                let c = Credential::from_bytes(&bytes).map_err(|e| {
                    Error::new(
                        ErrorCode::InvalidCredential,
                        format!("the credential stored for {name:?} does not decode: {e}"),
                    )
                })?;
                if c.body.subject != identity.identifier() {
                    return Err(Error::new(
                        ErrorCode::InvalidCredential,
                        format!("the credential stored for {name:?} is about another identity"),
                    ));
                }
                Some(c)
            }
        };
        Ok(StoredAs {
            name: name.to_string(),
            home,
            credential,
        })
    }

    /// The stored credential if it has not expired at `now`.
    fn valid(&self, now: Timestamp) -> Option<&Credential> {
        self.credential
            .as_ref()
            .filter(|c| now.0 < c.body.not_after.0)
    }

    /// The bytes to present in handshakes: the stored credential while it is valid at `now`. An expired one
    /// is not presented (peers would refuse it) and is logged once, here, when the identity is opened.
    pub(crate) fn presentable(&self, now: Timestamp) -> Option<Vec<u8>> {
        if let Some(c) = self.valid(now) {
            return Some(c.to_bytes());
        }
        if let Some(expired) = &self.credential {
            tracing::warn!(
                "the credential stored for {:?} expired at {}: not presented (use_authorities with the \
                 authority's address refreshes it)",
                self.name,
                expired.body.not_after.0
            );
        }
        None
    }
}

/// A node opened from a stored identity presents the credential stored for it (while valid) from the start,
/// without [`super::Node::use_authorities`]; that call may still replace it.
pub(crate) fn present_stored(state: &NodeState) {
    let Some(stored) = &state.stored else {
        return;
    };
    let Some(credential) = stored.presentable(Timestamp::now()) else {
        return;
    };
    let mut t = NodeTrust::new();
    t.slot = Some(CredentialSlot::new(vec![credential]));
    t.from_store = true;
    *state.trust.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(t);
}

/// A trust policy that needs both.
struct Both(Arc<dyn TrustPolicy>, Arc<dyn TrustPolicy>);

impl TrustPolicy for Both {
    fn is_trusted(&self, peer: &PeerIdentity) -> bool {
        self.check(peer).is_ok()
    }

    fn may_trust(&self, identifier: &Identifier) -> bool {
        self.0.may_trust(identifier) && self.1.may_trust(identifier)
    }

    fn check(&self, peer: &PeerIdentity) -> latchkey_core::Result<()> {
        self.0.check(peer)?;
        self.1.check(peer)
    }
}

/// A node's authorities, policies and own credential.
pub(crate) struct NodeTrust {
    /// Set when the node requires credentials of its peers.
    membership: Option<Arc<Membership>>,
    /// Set when the node presents a credential of its own.
    slot: Option<CredentialSlot>,
    /// Attribute policies by the address they guard.
    policies: Mutex<HashMap<String, Arc<Policy>>>,
    /// Channels that re-handshake on their own (portal inlets): asked to re-handshake after a refresh.
    resilient: Mutex<Vec<ResilientChannel>>,
    refreshed: std::sync::atomic::AtomicU64,
    /// Only the stored credential, installed when the node was opened ([`present_stored`]):
    /// [`super::Node::use_authorities`] may still replace it.
    from_store: bool,
}

impl NodeTrust {
    pub(crate) fn new() -> Self {
        NodeTrust {
            membership: None,
            slot: None,
            policies: Mutex::default(),
            resilient: Mutex::default(),
            refreshed: Default::default(),
            from_store: false,
        }
    }

    /// Channel options with the membership's check added to `options`' trust (at the handshake:
    /// `resource.name = "channel"`, `action.name = "open"` against the `channel` policy, if any), and this
    /// node's credential slot.
    pub(crate) fn channel_options(&self, mut options: ChannelOptions) -> ChannelOptions {
        if let (Some(m), Some(inner)) = (&self.membership, options.trust.clone()) {
            let requirement = self.requirement("channel", "open");
            options.trust = Some(Arc::new(Both(inner, m.trust(requirement))));
        }
        if let Some(slot) = &self.slot {
            options.credentials = Some(slot.clone());
        }
        options
    }

    fn requirement(&self, address: &str, action: &str) -> Option<Requirement> {
        let policies = self.policies.lock().unwrap_or_else(|e| e.into_inner());
        policies.get(address).map(|p| Requirement {
            policy: p.clone(),
            resource: address.to_string(),
            action: action.to_string(),
        })
    }

    /// The per-message guard for the worker at `address` (its policy, if one was set, with
    /// `resource.name = address` and `action.name = action`), when the node requires credentials.
    pub(crate) fn guard(&self, address: &str, action: &str) -> Option<Arc<dyn OriginGuard>> {
        let m = self.membership.as_ref()?;
        Some(m.guard(self.requirement(address, action)))
    }

    /// Like [`Self::guard`], for the policy set at `policy` but evaluated with `resource.name` = `resource`
    /// (a relay's `forward` policy, for each registered name).
    pub(crate) fn guard_for(
        &self,
        policy: &str,
        resource: &str,
        action: &str,
    ) -> Option<Arc<dyn OriginGuard>> {
        let m = self.membership.as_ref()?;
        let requirement = self.requirement(policy, action).map(|mut r| {
            r.resource = resource.to_string();
            r
        });
        Some(m.guard(requirement))
    }

    pub(crate) fn watch(&self, channel: &ChannelHandle) {
        if let Some(m) = &self.membership {
            m.watch(channel.clone());
        }
    }

    pub(crate) fn keep_resilient(&self, channel: &ResilientChannel) {
        if self.slot.is_some() {
            self.resilient
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(channel.clone());
        }
    }

    /// Whether the node requires credentials or presents one.
    pub(crate) fn is_member(&self) -> bool {
        self.membership.is_some() || self.slot.is_some()
    }

    pub(crate) fn has_policy(&self, address: &str) -> bool {
        self.policies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(address)
    }
}

/// Parses `text` as the policy of `address`.
pub(crate) fn set_policy(state: &NodeState, address: &str, text: &str) -> Result<()> {
    let policy = Policy::parse(text)?;
    let trust = state.trust()?;
    if trust.membership.is_none() {
        return Err(Error::new(
            ErrorCode::InvalidState,
            "a policy needs the authorities whose credentials it reads: call use_authorities first",
        ));
    }
    trust
        .policies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(address.to_string(), Arc::new(policy));
    Ok(())
}

/// Counters: channels closed because of revocation, because their credential expired, and refreshes of
/// this node's own credential.
pub(crate) fn counts(state: &NodeState) -> (u64, u64, u64) {
    let Ok(trust) = state.trust() else {
        return (0, 0, 0);
    };
    let (revoked, expired) = trust
        .membership
        .as_ref()
        .map(|m| m.closed_counts())
        .unwrap_or_default();
    (
        revoked,
        expired,
        trust.refreshed.load(std::sync::atomic::Ordering::Relaxed),
    )
}

/// Installs `options` on `state` (once, before the node's listeners, services and channels start) and, with
/// an authority address, starts following it (waits up to `ANSWER_TIMEOUT` for the first revocation list;
/// if the authority cannot be reached, keeps trying in the background). Returns whether the authority was
/// reached.
pub(crate) async fn install(state: Arc<NodeState>, options: NodeTrustOptions) -> Result<bool> {
    let mut authorities = TrustedAuthorities::new();
    let mut ids = Vec::new();
    for bytes in &options.authorities {
        let history = ChangeHistory::import(bytes)?;
        ids.push(history.identifier());
        authorities = authorities.with(history);
    }
    // `present`: the credential the handshakes show from now on; `own`: the one refreshed (also an expired
    // stored one, refreshed at once when the authority's address is given).
    let mut save_as = options.save_as.clone();
    let (own, present) = match &options.credential {
        Some(bytes) => {
            let c = Credential::from_bytes(bytes)?;
            if c.body.subject != state.identity.identifier() {
                return Err(Error::invalid_argument(
                    "the credential is about another identity than this node's",
                ));
            }
            (Some(c.clone()), Some(c))
        }
        None => match &state.stored {
            Some(stored) if stored.credential.is_some() => {
                if save_as.is_none() {
                    save_as = Some((stored.name.clone(), stored.home.clone()));
                }
                match stored.valid(Timestamp::now()) {
                    Some(c) => (Some(c.clone()), Some(c.clone())),
                    None if options.authority_address.is_some() => {
                        (stored.credential.clone(), None)
                    }
                    None => (None, None),
                }
            }
            _ => (None, None),
        },
    };
    if options.authorities.is_empty() && own.is_none() {
        return Err(Error::invalid_argument(
            "give the authorities to trust, or a credential to present (or both)",
        ));
    }
    let issuer = own.as_ref().map(|c| c.body.issuer);
    let refetch = Duration::from_secs(if options.refetch_secs == 0 {
        30
    } else {
        options.refetch_secs
    });
    let address = options.authority_address.clone();
    let st = state.clone();
    runtime::run(async move {
        let membership = (!options.authorities.is_empty()).then(|| Membership::new(authorities));
        {
            let mut slot = st
                .trust
                .lock()
                .map_err(|_| Error::invalid_state("node state lock poisoned"))?;
            if slot.membership.is_some() || (slot.slot.is_some() && !slot.from_store) {
                return Err(Error::new(
                    ErrorCode::InvalidState,
                    "this node's authorities are already set",
                ));
            }
            let mut t = NodeTrust::new();
            t.membership = membership.clone();
            // An expired stored credential being refreshed: a slot presenting nothing until then.
            t.slot = match (&present, &own) {
                (Some(c), _) => Some(CredentialSlot::new(vec![c.to_bytes()])),
                (None, Some(_)) => Some(CredentialSlot::new(Vec::new())),
                (None, None) => None,
            };
            *slot = Arc::new(t);
        }
        let Some(address) = address else {
            return Ok(false);
        };
        // The channel to the authority trusts the authorities named (or our credential's issuer).
        let mut trusted: Vec<Identifier> = ids.clone();
        trusted.extend(issuer);
        let link = Link {
            state: st.clone(),
            address,
            trusted,
            membership,
            own: Mutex::new(own),
            refetch,
            save_as,
        };
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(link.run(ready_tx));
        Ok(matches!(
            tokio::time::timeout(client::ANSWER_TIMEOUT, ready_rx).await,
            Ok(Ok(true))
        ))
    })
    .await
}

/// The node's link to its authority: revocations in, fresh credentials in, across authority restarts.
struct Link {
    state: Arc<NodeState>,
    address: String,
    trusted: Vec<Identifier>,
    membership: Option<Arc<Membership>>,
    own: Mutex<Option<Credential>>,
    refetch: Duration,
    save_as: Option<(String, Option<String>)>,
}

impl Link {
    async fn run(self, ready: tokio::sync::oneshot::Sender<bool>) {
        let mut ready = Some(ready);
        let mut backoff = REFRESH_RETRY_MIN;
        while !self.state.closer.is_closed() {
            match self.connect().await {
                Ok(channel) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(true);
                    }
                    backoff = REFRESH_RETRY_MIN;
                    self.serve(&channel).await;
                    channel.close().await;
                }
                Err(e) => {
                    tracing::warn!("node: cannot reach the authority at {}: {e}", self.address);
                    if let Some(r) = ready.take() {
                        let _ = r.send(false);
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = self.state.closer.closed() => return,
            }
            backoff = (backoff * 2).min(REFRESH_RETRY_MAX);
        }
    }

    async fn connect(&self) -> Result<ChannelHandle> {
        let node = &self.state.node;
        let link = tcp::connect(node, &self.address, TcpOptions::default()).await?;
        let trust = Arc::new(latchkey_core::channel::TrustIdentifiers::new(
            self.trusted.iter().copied(),
        ));
        let mut options = ChannelOptions::default().with_trust(trust);
        if let Ok(t) = self.state.trust() {
            options.credentials = t.slot.clone();
        }
        let channel = create_channel(
            node,
            &self.state.identity,
            Route::from_addresses([link, "api".into()]),
            options,
        )
        .await?;
        if let Some(m) = &self.membership {
            let followed = client::follow_revocations(
                node,
                &channel,
                &AUTHORITY_SERVICE.into(),
                m.clone(),
                self.refetch,
            )
            .await;
            if let Err(e) = followed {
                channel.close().await;
                return Err(e.into());
            }
        }
        Ok(channel)
    }

    /// Refreshes our credential at half its validity through `channel`, until the channel closes.
    async fn serve(&self, channel: &ChannelHandle) {
        let mut retry = REFRESH_RETRY_MIN;
        loop {
            let wait = match &*self.own.lock().unwrap_or_else(|e| e.into_inner()) {
                Some(c) => refresh_wait(c, Timestamp::now()),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = channel.closed() => return,
                () = self.state.closer.closed() => return,
            }
            if self.own.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
                continue;
            }
            match self.refresh(channel).await {
                Ok(()) => retry = REFRESH_RETRY_MIN,
                Err(e) => {
                    tracing::warn!(
                        "node: credential refresh failed ({e}); keeping the current one, retrying in {retry:?}"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(retry) => {}
                        () = channel.closed() => return,
                    }
                    retry = (retry * 2).min(REFRESH_RETRY_MAX);
                }
            }
        }
    }

    async fn refresh(&self, channel: &ChannelHandle) -> Result<()> {
        let fresh = client::refresh(
            &self.state.node,
            channel,
            &AUTHORITY_SERVICE.into(),
            self.state.identity.history(),
        )
        .await?;
        let now = Timestamp::now();
        if fresh.body.subject != self.state.identity.identifier()
            || fresh.body.issuer != channel.peer()
            || fresh.body.not_after.0 <= now.0
        {
            return Err(Error::new(
                ErrorCode::InvalidCredential,
                "the authority answered with a credential that is not ours, not its own, or expired",
            ));
        }
        let bytes = fresh.to_bytes();
        let trust = self.state.trust()?;
        if let Some(slot) = &trust.slot {
            slot.set(vec![bytes.clone()]);
        }
        if let Some((name, home)) = &self.save_as {
            let home = home
                .clone()
                .map(PathBuf::from)
                .unwrap_or_else(latchkey_runtime::storage::default_home);
            super::authority::save_credential(&home, name, &bytes)?;
        }
        tracing::info!(
            "node: credential refreshed, valid until {}",
            fresh.body.not_after.0
        );
        *self.own.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh);
        trust
            .refreshed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Our peers see the new credential at once, not at the next scheduled re-handshake.
        let channels: Vec<ChannelHandle> = match self.state.exposure() {
            Ok(e) => e
                .channels
                .iter()
                .filter(|c| !c.is_closed())
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        };
        for c in channels {
            c.rehandshake_soon().await;
        }
        let resilient = trust
            .resilient
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for r in resilient {
            if let Some(c) = r.current().await {
                c.rehandshake_soon().await;
            }
        }
        channel.rehandshake_soon().await;
        Ok(())
    }
}

/// How long until `credential` should be refreshed: at half its validity (at once if that has passed).
pub(crate) fn refresh_wait(credential: &Credential, now: Timestamp) -> Duration {
    let from = credential.body.not_before.0;
    let until = credential.body.not_after.0;
    let half = from + until.saturating_sub(from) / 2;
    Duration::from_secs(half.saturating_sub(now.0))
}
