//! The authority service: enrollment tokens, online enrollment over a secure channel, credential refresh,
//! and revocation pushed to subscribed nodes over their channels.
//!
//! **Online enrollment (this module).** A device opens a secure channel to the authority (trusting the
//! authority's identifier, which its token names) and sends, through it, its token secret and its exported
//! history. The channel authenticated the device's identifier; the authority checks that the history is
//! that identifier's (identifier = hash of the first change; the import verifies every signature), then in
//! **one store transaction** consumes the token and inserts the member ([`AuthorityStore::enroll`]), then
//! answers with a membership credential bound to the device's identifier and history hash. The token
//! secret travels only inside the channel; the store keeps only its hash.
//!
//! The one-message X3DH enrollment that works while the authority is offline (through a relay mailbox) is
//! the core's `enroll` module's; it will feed the same [`AuthorityStore::enroll`] transaction.
//!
//! Messages to the service (address `authority` by convention) and their answers, all through a secure
//! channel (anything else is refused by the flow rules); byte formats in docs/RUNTIME.md, "Authority":
//!
//! | request | answer |
//! |---|---|
//! | `0x01 ‖ token id (16) ‖ token secret (32) ‖ history` enroll | `0x00 ‖ credential` or `0xFF ‖ code (u8) ‖ reason` |
//! | `0x02 ‖ history` refresh the credential | same |
//! | `0x03` subscribe to (or fetch) revocations | `0x10 ‖ signed revocation list` (core format), and again at each change |

use super::store::{
    AuthorityStore, EnrollRefusal, Enrollment, IssuedCredential, NewToken, RevocationState,
    Revoked, SqliteAuthorityStore,
};
use crate::error::{Result, RuntimeError};
use crate::flow::Accepts;
use crate::message::{Address, Message, Route};
use crate::node::{Node, DEFAULT_MAILBOX};
use latchkey_core::credential::{history_hash, Attributes, Credential, CredentialBody};
use latchkey_core::identity::{ChangeHistory, Identifier, LocalIdentity};
use latchkey_core::wire::{Decode, Encode};
use latchkey_core::Timestamp;
use std::path::Path;
use std::sync::{Arc, Mutex};

use latchkey_core::wire::authority::{
    AuthorityAnswer, AuthorityRequest, CredentialAnswer, Refusal, RefusalCode,
};

// The tags and codes are the core's (`latchkey_core::wire::authority`); these names stay for callers.
/// Request kinds.
pub const ENROLL: u8 = latchkey_core::wire::authority::TAG_ENROLL;
pub const REFRESH: u8 = latchkey_core::wire::authority::TAG_REFRESH;
pub const SUBSCRIBE: u8 = latchkey_core::wire::authority::TAG_SUBSCRIBE;
/// Answer kinds.
pub const ANSWER_CREDENTIAL: u8 = latchkey_core::wire::authority::TAG_ACCEPTED;
pub const ANSWER_REFUSED: u8 = latchkey_core::wire::authority::TAG_REFUSED;
pub const ANSWER_REVOCATIONS: u8 = latchkey_core::wire::authority::TAG_REVOCATIONS;

/// Refusal codes in a `0xFF` answer.
pub const REFUSED_TOKEN_UNKNOWN: u8 = RefusalCode::UnknownToken as u8;
pub const REFUSED_TOKEN_EXPIRED: u8 = RefusalCode::TokenExpired as u8;
pub const REFUSED_TOKEN_USED_UP: u8 = RefusalCode::TokenUsedUp as u8;
pub const REFUSED_REPLAY: u8 = RefusalCode::Replay as u8;
pub const REFUSED_ALREADY_MEMBER: u8 = RefusalCode::AlreadyMember as u8;
pub const REFUSED_PREKEY: u8 = RefusalCode::PrekeyUnavailable as u8;
pub const REFUSED_NOT_A_MEMBER: u8 = RefusalCode::NotAMember as u8;
pub const REFUSED_BAD_REQUEST: u8 = RefusalCode::BadRequest as u8;
pub const REFUSED_INTERNAL: u8 = RefusalCode::Internal as u8;

use latchkey_core::enroll::{token_secret_hash, TOKEN_ID_LEN, TOKEN_SECRET_LEN};

/// The time source of an authority (tests inject one).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

pub use latchkey_core::enroll::EnrollmentToken;

/// A token's text form: `lkt` + hex of its bytes (at most 96 bytes: ≤ 195 characters; a QR code holds the
/// bytes). A secret: whoever holds it may enroll.
pub fn token_to_text(token: &EnrollmentToken) -> String {
    format!("lkt{}", hex::encode(token.to_bytes()))
}

/// Reads a token's text form.
pub fn token_from_text(s: &str) -> Result<EnrollmentToken> {
    let bad = || RuntimeError::Malformed("an enrollment token is 'lkt' and hex digits");
    let h = s.trim().strip_prefix("lkt").ok_or_else(bad)?;
    let bytes = zeroize::Zeroizing::new(hex::decode(h).map_err(|_| bad())?);
    Ok(EnrollmentToken::from_bytes(&bytes)?)
}

/// An authority's settings.
#[derive(Clone)]
pub struct AuthorityOptions {
    /// How long an issued credential is valid (default 1 day); members refresh before it ends.
    pub credential_validity_secs: u64,
    pub clock: Clock,
    /// One-time prekeys kept available (default 200): when fewer than a quarter are left, the authority
    /// makes more.
    pub one_time_prekeys: usize,
    /// How long a published prekey bundle is valid (default 7 days).
    pub bundle_validity_secs: u64,
}

impl Default for AuthorityOptions {
    fn default() -> Self {
        AuthorityOptions {
            credential_validity_secs: 24 * 3600,
            clock: Arc::new(Timestamp::now),
            one_time_prekeys: 200,
            bundle_validity_secs: 7 * 24 * 3600,
        }
    }
}

impl std::fmt::Debug for AuthorityOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorityOptions")
            .field("credential_validity_secs", &self.credential_validity_secs)
            .finish_non_exhaustive()
    }
}

/// How often a serving authority looks at its store for revocations that another process wrote (`latchkey
/// revoke` run beside `latchkey authority serve`) and pushes them to its subscribers: such a revocation
/// reaches subscribed nodes within this interval plus a push's transit.
pub const STORE_WATCH: std::time::Duration = std::time::Duration::from_secs(1);

/// A subscriber to revocations: where to push (a route through its channel).
struct Subscriber {
    node_route: Route,
    peer: Identifier,
}

/// An enrollment authority: its identity, its store, its subscribers.
pub struct Authority {
    pub(super) identity: LocalIdentity,
    store: Mutex<SqliteAuthorityStore>,
    pub(super) options: AuthorityOptions,
    subscribers: Mutex<Vec<Subscriber>>,
    node: Mutex<Option<(Node, Address)>>,
    /// The X3DH keys loaded into the identity's vault (see `x3dh`).
    pub(super) keys: Mutex<super::x3dh::PrekeyKeys>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("identifier", &self.identity.identifier())
            .finish_non_exhaustive()
    }
}

fn refusal_code(r: EnrollRefusal) -> RefusalCode {
    match r {
        EnrollRefusal::UnknownToken => RefusalCode::UnknownToken,
        EnrollRefusal::TokenExpired => RefusalCode::TokenExpired,
        EnrollRefusal::TokenUsedUp => RefusalCode::TokenUsedUp,
        EnrollRefusal::Replay => RefusalCode::Replay,
        EnrollRefusal::AlreadyMember => RefusalCode::AlreadyMember,
        EnrollRefusal::PrekeyUnavailable => RefusalCode::PrekeyUnavailable,
    }
}

fn refusal_of(code: RefusalCode) -> Option<EnrollRefusal> {
    Some(match code {
        RefusalCode::UnknownToken => EnrollRefusal::UnknownToken,
        RefusalCode::TokenExpired => EnrollRefusal::TokenExpired,
        RefusalCode::TokenUsedUp => EnrollRefusal::TokenUsedUp,
        RefusalCode::Replay => EnrollRefusal::Replay,
        RefusalCode::AlreadyMember => EnrollRefusal::AlreadyMember,
        RefusalCode::PrekeyUnavailable => EnrollRefusal::PrekeyUnavailable,
        _ => return None,
    })
}

impl Authority {
    /// An authority acting as `identity`, with its store at `store_path`.
    pub fn open(
        identity: LocalIdentity,
        store_path: &Path,
        options: AuthorityOptions,
    ) -> Result<Arc<Self>> {
        let authority = Arc::new(Authority {
            identity,
            store: Mutex::new(SqliteAuthorityStore::open(store_path)?),
            options,
            subscribers: Mutex::default(),
            node: Mutex::default(),
            keys: Mutex::default(),
        });
        authority.load_prekeys()?;
        Ok(authority)
    }

    pub fn identifier(&self) -> Identifier {
        self.identity.identifier()
    }

    pub fn history(&self) -> &ChangeHistory {
        self.identity.history()
    }

    /// The identity the authority acts as (for its node's channel listener).
    pub fn identity(&self) -> &LocalIdentity {
        &self.identity
    }

    pub(super) fn now(&self) -> Timestamp {
        (self.options.clock)()
    }

    pub(super) fn store(&self) -> std::sync::MutexGuard<'_, SqliteAuthorityStore> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the store (for inspection: members, tokens, integrity).
    pub fn with_store<T>(&self, f: impl FnOnce(&mut SqliteAuthorityStore) -> T) -> T {
        f(&mut self.store())
    }

    /// Creates a token: `uses` enrollments until `now + ttl_secs`, giving members `attributes`.
    pub fn create_token(
        &self,
        attributes: &Attributes,
        ttl_secs: u64,
        uses: u32,
    ) -> Result<EnrollmentToken> {
        self.create_token_with_hint(attributes, ttl_secs, uses, &[])
    }

    /// [`Authority::create_token`] with a route hint (≤ 14 bytes) telling the device where to reach the
    /// authority.
    pub fn create_token_with_hint(
        &self,
        attributes: &Attributes,
        ttl_secs: u64,
        uses: u32,
        route_hint: &[u8],
    ) -> Result<EnrollmentToken> {
        let token = EnrollmentToken::generate(
            latchkey_core::crypto::default_provider(),
            self.identifier(),
            route_hint,
        )?;
        let now = self.now();
        self.store().add_token(
            &NewToken {
                secret_hash: token.secret_hash(),
                attributes: attributes.as_map().clone(),
                expires_at: now.plus_secs(ttl_secs).0 as i64,
                uses,
            },
            now.0 as i64,
        )?;
        Ok(token)
    }

    fn issue(
        &self,
        subject: &ChangeHistory,
        attributes: &super::store::Attributes,
    ) -> Result<Credential> {
        let now = self.now();
        let attributes = Attributes::from_pairs(attributes.clone())?;
        Ok(Credential::issue(
            &self.identity,
            CredentialBody {
                subject: subject.identifier(),
                subject_history: history_hash(subject),
                issuer: self.identifier(),
                attributes,
                not_before: now,
                not_after: now.plus_secs(self.options.credential_validity_secs),
            },
        )?)
    }

    /// Enrolls `device` (its verified history, authenticated as `peer`) with a token secret: one store
    /// transaction consumes the token and makes the member; then the credential.
    pub fn enroll(
        &self,
        peer: &Identifier,
        device: &ChangeHistory,
        token_id: &[u8; TOKEN_ID_LEN],
        secret: &[u8; TOKEN_SECRET_LEN],
        request_hash: [u8; 32],
    ) -> Result<Credential> {
        if &device.identifier() != peer {
            return Err(RuntimeError::Malformed(
                "the history is not the channel peer's",
            ));
        }
        let hash = token_secret_hash(token_id, secret);
        let now = self.now();
        let mut store = self.store();
        let token = store.token(&hash)?;
        let attributes = token.map(|t| t.attributes).unwrap_or_default();
        // The credential is made before the transaction (it needs the token's attributes) and stored in it;
        // if the transaction refuses, it is dropped unseen.
        let credential = self.issue(device, &attributes)?;
        let bytes = credential.to_bytes();
        let id = credential.id();
        let identifier = peer.to_string();
        let history = device.export();
        let outcome = store.enroll(&Enrollment {
            token_hash: hash,
            one_time_prekey: None,
            message_hash: request_hash,
            identifier: &identifier,
            history: &history,
            history_hash: history_hash(device),
            credential: Some(IssuedCredential {
                id,
                bytes: &bytes,
                expires_at: credential.body.not_after.0 as i64,
            }),
            now: now.0 as i64,
        })?;
        match outcome {
            Ok(_) => {
                tracing::info!("authority: enrolled {peer}");
                Ok(credential)
            }
            Err(refusal) => {
                tracing::info!("authority: refused to enroll {peer}: {refusal}");
                Err(RuntimeError::EnrollmentRefused(refusal))
            }
        }
    }

    /// A fresh credential for a member (before its current one expires, or after it rotated its key): the
    /// member must be known and not revoked.
    pub fn refresh(&self, peer: &Identifier, device: &ChangeHistory) -> Result<Credential> {
        if &device.identifier() != peer {
            return Err(RuntimeError::Malformed(
                "the history is not the channel peer's",
            ));
        }
        let identifier = peer.to_string();
        let mut store = self.store();
        let member = store
            .member(&identifier)?
            .ok_or_else(|| RuntimeError::NotAMember(identifier.clone()))?;
        let revoked = store.revocations()?;
        if revoked
            .entries
            .contains(&Revoked::Identifier(identifier.clone()))
        {
            return Err(RuntimeError::NotAMember(format!("{identifier} is revoked")));
        }
        // The presented history must be the enrolled one, or extend it (a rotation keeps membership).
        let enrolled = ChangeHistory::import(&member.history)?;
        device.check_extends(&enrolled)?;
        let credential = self.issue(device, &member.attributes)?;
        store.update_member(
            &identifier,
            &device.export(),
            history_hash(device),
            IssuedCredential {
                id: credential.id(),
                bytes: &credential.to_bytes(),
                expires_at: credential.body.not_after.0 as i64,
            },
            self.now().0 as i64,
        )?;
        Ok(credential)
    }

    /// Revokes `entries` (one sequence step) and pushes the new state to every subscriber.
    pub fn revoke(&self, entries: &[Revoked]) -> Result<u64> {
        let now = self.now().0 as i64;
        let sequence = self.store().revoke(entries, now)?;
        for entry in entries {
            if let Revoked::Identifier(id) = entry {
                self.store().remove_member(id)?;
            }
        }
        self.push_revocations();
        Ok(sequence)
    }

    pub fn revocations(&self) -> Result<RevocationState> {
        self.store().revocations()
    }

    /// The signed revocation list in force (signed and stored when the store has moved past the last one
    /// signed; sequence 0 is the empty list).
    pub fn revocation_list(&self) -> Result<latchkey_core::credential::revocation::RevocationList> {
        use latchkey_core::credential::revocation::{RevocationBody, RevocationList};
        let mut store = self.store();
        let state = store.revocations()?;
        if let Some((seq, bytes)) = store.latest_revocation_list()? {
            if seq == state.sequence {
                return Ok(RevocationList::from_bytes(&bytes)?);
            }
        }
        let mut body = RevocationBody::new(self.identifier(), state.sequence, self.now());
        for e in &state.entries {
            match e {
                Revoked::Identifier(s) => {
                    if let Ok(id) = s.parse() {
                        body.identifiers.insert(id);
                    }
                }
                Revoked::Credential(id) => {
                    body.credentials.insert(*id);
                }
                Revoked::Delegation(id) => {
                    body.delegations.insert(*id);
                }
            }
        }
        let list = RevocationList::issue(&self.identity, body)?;
        store.put_revocation_list(state.sequence, &list.to_bytes())?;
        Ok(list)
    }

    fn push_revocations(&self) {
        let list = match self.revocation_list() {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("authority: cannot sign the revocation list: {e}");
                return;
            }
        };
        let payload = encode_revocations(&list);
        let node = self.node.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some((node, me)) = node else { return };
        let subscribers = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        for s in subscribers.iter() {
            let m = Message::new(s.node_route.clone(), Route::new(), payload.clone());
            if let Err(e) = node.try_send_as(&me, m) {
                tracing::debug!("authority: revocation push to {} failed: {e}", s.peer);
            }
        }
    }

    /// Serves enrollment, refresh and revocation subscriptions at `address` on `node`, to the secure
    /// channels `accepts` admits (normally the authority listener's flow).
    pub fn serve(self: &Arc<Self>, node: &Node, address: Address, accepts: Accepts) -> Result<()> {
        if accepts.takes_any_transport() {
            return Err(RuntimeError::Insecure(
                "the authority serves only secure channels",
            ));
        }
        let mut mailbox = node.register_with(address.clone(), DEFAULT_MAILBOX, accepts)?;
        *self.node.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((node.clone(), address.clone()));
        self.watch_store(mailbox.address().clone());
        let this = self.clone();
        let node = node.clone();
        tokio::spawn(async move {
            while let Some(message) = mailbox.recv().await {
                let this = this.clone();
                let answer = tokio::task::spawn_blocking(move || {
                    let answer = this.handle(&message);
                    (message, answer)
                })
                .await;
                let Ok((message, answer)) = answer else {
                    continue;
                };
                if let Ok(reply) = message.reply_to_origin(Route::new(), answer) {
                    let _ = node.try_send_as(&address, reply);
                }
            }
        });
        Ok(())
    }

    /// Every [`STORE_WATCH`], while the service at `address` is registered: if another connection wrote
    /// the store (`PRAGMA data_version` moved) and the revocation sequence grew, push the new list.
    fn watch_store(self: &Arc<Self>, address: Address) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut seen: Option<(i64, u64)> = None;
            let mut tick = tokio::time::interval(STORE_WATCH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else { return };
                let serving = this
                    .node
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .is_some_and(|(node, a)| a == &address && node.is_registered(a));
                if !serving {
                    return;
                }
                let looked = tokio::task::spawn_blocking(move || {
                    let store = this.store();
                    let version = store.data_version()?;
                    if seen.is_some_and(|(v, _)| v == version) {
                        return Ok::<_, RuntimeError>((version, None, this.clone()));
                    }
                    drop(store);
                    let sequence = this.revocations()?.sequence;
                    Ok((version, Some(sequence), this.clone()))
                })
                .await;
                match looked {
                    Ok(Ok((version, Some(sequence), this))) => {
                        if seen.is_some_and(|(_, s)| sequence > s) {
                            tracing::info!(
                                "authority: revocation sequence {sequence} written to the store; pushing"
                            );
                            this.push_revocations();
                        }
                        seen = Some((version, sequence));
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!("authority: cannot read the store: {e}"),
                    Err(_) => return,
                }
            }
        });
    }

    fn handle(&self, message: &Message) -> Vec<u8> {
        let Some(peer) = message.peer() else {
            return refused(RefusalCode::BadRequest, "only through a secure channel");
        };
        let p = &message.payload;
        let request = match AuthorityRequest::from_bytes(p) {
            Ok(r) => r,
            Err(e) => return refused(RefusalCode::BadRequest, &e.to_string()),
        };
        let result = match request {
            AuthorityRequest::Enroll {
                token_id,
                secret,
                history,
            } => {
                let hash = latchkey_core::crypto::default_provider()
                    .sha256(&[b"latchkey/enrollment-request/v1", p]);
                self.enroll(&peer, &history, &token_id, &secret, hash)
            }
            AuthorityRequest::Refresh { history } => self.refresh(&peer, &history),
            AuthorityRequest::Subscribe => {
                let list = match self.revocation_list() {
                    Ok(l) => l,
                    Err(e) => return refused(RefusalCode::Internal, &e.to_string()),
                };
                let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
                // The push route is the request's return route (through the subscriber's channel).
                subs.retain(|s| s.node_route != message.ret);
                if subs.len() < 100_000 {
                    subs.push(Subscriber {
                        node_route: message.ret.clone(),
                        peer,
                    });
                }
                return encode_revocations(&list);
            }
        };
        match result {
            Ok(credential) => CredentialAnswer::Accepted(credential).to_bytes(),
            Err(e) => {
                if !matches!(
                    e,
                    RuntimeError::EnrollmentRefused(_)
                        | RuntimeError::NotAMember(_)
                        | RuntimeError::Core(_)
                        | RuntimeError::Malformed(_)
                ) {
                    tracing::warn!("authority: request from {peer} failed: {e}");
                }
                let (code, why) = refusal_for(&e);
                refused(code, &why)
            }
        }
    }
}

/// The refusal code and reason an error is answered with.
pub(super) fn refusal_for(e: &RuntimeError) -> (RefusalCode, String) {
    match e {
        RuntimeError::EnrollmentRefused(r) => (refusal_code(*r), r.to_string()),
        RuntimeError::Core(latchkey_core::Error::EnrollmentRefused(why)) => {
            let code = [
                EnrollRefusal::UnknownToken,
                EnrollRefusal::TokenExpired,
                EnrollRefusal::TokenUsedUp,
                EnrollRefusal::Replay,
                EnrollRefusal::AlreadyMember,
                EnrollRefusal::PrekeyUnavailable,
            ]
            .into_iter()
            .find(|r| r.reason() == *why)
            .map(refusal_code)
            .unwrap_or(if why.contains("prekey") {
                RefusalCode::PrekeyUnavailable
            } else {
                RefusalCode::BadRequest
            });
            (code, why.to_string())
        }
        RuntimeError::NotAMember(why) => (RefusalCode::NotAMember, why.clone()),
        RuntimeError::Core(_) | RuntimeError::Malformed(_) => {
            (RefusalCode::BadRequest, e.to_string())
        }
        _ => (RefusalCode::Internal, "internal error".into()),
    }
}

/// A refusal answer (the reason cut to 200 bytes at a character boundary).
pub(super) fn refused(code: RefusalCode, why: &str) -> Vec<u8> {
    CredentialAnswer::Refused(Refusal::new(code, why)).to_bytes()
}

/// A revocation push or fetch answer: `0x10 ‖ signed revocation list` (the core's bytes).
pub fn encode_revocations(list: &latchkey_core::credential::revocation::RevocationList) -> Vec<u8> {
    CredentialAnswer::Revocations(list.clone()).to_bytes()
}

/// Reads a revocation push or fetch answer (a refusal becomes its error).
pub fn decode_revocations(
    b: &[u8],
) -> Result<latchkey_core::credential::revocation::RevocationList> {
    match CredentialAnswer::from_bytes(b)? {
        AuthorityAnswer::Revocations(list) => Ok(list),
        AuthorityAnswer::Refused(r) => Err(refusal_error(r)),
        AuthorityAnswer::Accepted(_) => Err(RuntimeError::Malformed("revocation list answer")),
    }
}

/// The error a refusal stands for.
pub(super) fn refusal_error(r: Refusal) -> RuntimeError {
    match refusal_of(r.code) {
        Some(e) => RuntimeError::EnrollmentRefused(e),
        None if r.code == RefusalCode::NotAMember => RuntimeError::NotAMember(r.reason().into()),
        None => RuntimeError::Refused(r.reason().into()),
    }
}

/// Reads an authority's answer: the credential, or the refusal as an error.
pub fn credential_answer(answer: &[u8]) -> Result<Credential> {
    accepted(CredentialAnswer::from_bytes(answer)?)
}

/// What an accepted answer carries, or the refusal as an error.
pub(super) fn accepted<T>(answer: AuthorityAnswer<T>) -> Result<T> {
    match answer {
        AuthorityAnswer::Accepted(t) => Ok(t),
        AuthorityAnswer::Refused(r) => Err(refusal_error(r)),
        AuthorityAnswer::Revocations(_) => Err(RuntimeError::Malformed("authority answer")),
    }
}
