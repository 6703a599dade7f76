//! The authority's side of the core's X3DH enrollment (`latchkey_core::enroll`): its keys, its published
//! bundle, and the store behind `handle_request`.
//!
//! - **Keys.** The X3DH key `IK`, the signed prekey `SPK` and the one-time prekeys `OPK` are X25519 keys in
//!   the authority identity's software vault; their secrets are persisted in the authority store (the same
//!   file as the tokens, 0600) and loaded into the vault when the authority opens. A consumed one-time
//!   prekey's secret is erased in the transaction that consumes it and deleted from the vault right after.
//! - **Replenishing.** The authority keeps [`crate::authority::AuthorityOptions::one_time_prekeys`]
//!   one-time prekeys; when fewer than a quarter are left after an enrollment (or at open), it makes more in
//!   one transaction and logs it. A bundle offers at most [`BUNDLE_PREKEYS`] of them.
//! - **When they run out** (enrollments faster than replenishing, or a bundle older than its keys): the
//!   request names a one-time prekey that is gone and is refused (`EnrollmentRefused`: "the one-time prekey
//!   is unknown or already used"), logged at `warn`, and the device retries with a fresh bundle. A bundle
//!   with no one-time prekeys left makes devices enroll with `IK` and `SPK` only (logged at `warn` when the
//!   bundle is made): the request hash is then recorded and a replay refused by it, and the single-use token
//!   is the rest of the defence.
//! - **Consumption** goes through [`AuthorityStore::enroll`]: token use, one-time prekey, request hash,
//!   member and its credential in one transaction. The cryptography (decrypt, verify, issue, seal) runs
//!   before it, on every core, and consumes nothing ([`Authority::handle_enrollments`]).

use super::service::Authority;
use super::store::{
    AuthorityStore, Enrollment, IssuedCredential, NewPrekey, PrekeyKind, SqliteAuthorityStore,
};
use crate::error::{Result, RuntimeError};
use latchkey_core::credential::{history_hash, Attributes};
use latchkey_core::enroll::{
    handle_request, Enrolled, EnrollmentClaim, EnrollmentStore, OneTimePrekey, PrekeyBundle,
    PrekeyBundleBody, TokenGrant,
};
use latchkey_core::vault::{KeyId, SecureChannelVault, SoftwareVault};
use latchkey_core::wire::Encode;
use std::collections::HashMap;
use std::sync::Arc;

/// Most enrollment requests handled per commit by the channel-less service.
pub const BATCH: usize = 64;

/// Most one-time prekeys one published bundle offers.
pub const BUNDLE_PREKEYS: usize = 64;

/// The authority's X3DH keys in its vault, by store id.
#[derive(Default)]
pub struct PrekeyKeys {
    x3dh: Option<(i64, KeyId)>,
    signed: Option<(i64, KeyId)>,
    one_time: HashMap<i64, KeyId>,
}

fn software_vault(a: &Authority) -> Result<&Arc<SoftwareVault>> {
    a.identity.vaults().software_vault().ok_or(RuntimeError::Insecure(
        "an X3DH enrollment authority needs a software secure-channel vault (its prekeys are persisted)",
    ))
}

fn new_keys(vault: &SoftwareVault, n: usize, now: i64) -> Result<Vec<(NewPrekey, KeyId)>> {
    (0..n)
        .map(|_| {
            let key = vault.generate_x25519_key()?;
            let public = vault.x25519_public_key(&key)?;
            let exported = vault.export_secret(&key)?;
            let mut secret = zeroize::Zeroizing::new([0u8; 32]);
            secret.copy_from_slice(&exported);
            Ok((
                NewPrekey {
                    public,
                    secret,
                    signature: Vec::new(),
                    created_at: now,
                },
                key,
            ))
        })
        .collect()
}

impl Authority {
    /// Loads the X3DH keys from the store into the vault, making `IK`, `SPK` and one-time prekeys when
    /// missing or low. Called when the authority opens. (Identities without a software vault skip X3DH.)
    pub(super) fn load_prekeys(&self) -> Result<()> {
        let Ok(vault) = software_vault(self) else {
            tracing::info!(
                "authority: no software vault: X3DH enrollment is off, online enrollment only"
            );
            return Ok(());
        };
        let now = self.now().0 as i64;
        let mut store = self.store();
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        for kind in [PrekeyKind::X3dh, PrekeyKind::Signed] {
            let loaded = match store.current_prekey(kind)? {
                Some(rec) => (rec.id, vault.import_x25519_secret(&rec.secret)?),
                None => {
                    let mut made = new_keys(vault, 1, now)?;
                    let (record, key) = made.remove(0);
                    let id = store.add_prekeys(kind, &[record])?[0];
                    (id, key)
                }
            };
            match kind {
                PrekeyKind::X3dh => keys.x3dh = Some(loaded),
                _ => keys.signed = Some(loaded),
            }
        }
        for (id, _) in store.available_one_time_prekeys(usize::MAX >> 1)? {
            if let Some(rec) = store.prekey(PrekeyKind::OneTime, id)? {
                keys.one_time
                    .insert(id, vault.import_x25519_secret(&rec.secret)?);
            }
        }
        self.replenish(&mut keys, &mut store)
    }

    /// Makes one-time prekeys up to the target when fewer than a quarter of it are left.
    fn replenish(&self, keys: &mut PrekeyKeys, store: &mut SqliteAuthorityStore) -> Result<()> {
        let target = self.options.one_time_prekeys;
        if keys.one_time.len() * 4 >= target {
            return Ok(());
        }
        let vault = software_vault(self)?;
        let n = target - keys.one_time.len();
        let made = new_keys(vault, n, self.now().0 as i64)?;
        let records: Vec<NewPrekey> = made
            .iter()
            .map(|(r, _)| NewPrekey {
                public: r.public,
                secret: r.secret.clone(),
                signature: Vec::new(),
                created_at: r.created_at,
            })
            .collect();
        let ids = store.add_prekeys(PrekeyKind::OneTime, &records)?;
        for (id, (_, key)) in ids.into_iter().zip(made) {
            keys.one_time.insert(id, key);
        }
        tracing::info!(
            "authority: made {n} one-time prekeys ({} available)",
            keys.one_time.len()
        );
        Ok(())
    }

    /// The current signed prekey bundle (what devices fetch, directly or from the relay).
    pub fn prekey_bundle(&self) -> Result<PrekeyBundle> {
        let vault = software_vault(self)?;
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let (Some((_, ik)), Some((spk_id, spk))) = (&keys.x3dh, &keys.signed) else {
            return Err(RuntimeError::Insecure("the authority has no X3DH keys"));
        };
        let mut one_time: Vec<_> = keys.one_time.iter().collect();
        one_time.sort_by_key(|(id, _)| **id);
        // A window at a random place, so that devices holding different bundles rarely pick the same key.
        let mut r = [0u8; 4];
        latchkey_core::crypto::default_provider().fill_random(&mut r)?;
        let start = (u32::from_be_bytes(r) as usize) % one_time.len().max(1);
        one_time.rotate_left(start);
        one_time.truncate(BUNDLE_PREKEYS);
        one_time.sort_by_key(|(id, _)| **id); // the bundle lists them in ascending id order
        let one_time_prekeys = one_time
            .into_iter()
            .map(|(id, k)| {
                Ok(OneTimePrekey {
                    id: *id as u32,
                    public: vault.x25519_public_key(k)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if one_time_prekeys.is_empty() {
            tracing::warn!(
                "authority: the bundle offers no one-time prekeys: devices enroll with the signed prekey only"
            );
        }
        let now = self.now();
        Ok(PrekeyBundle::sign(
            &self.identity,
            PrekeyBundleBody {
                authority: self.identity.history().clone(),
                x3dh_key: vault.x25519_public_key(ik)?,
                signed_prekey_id: *spk_id as u32,
                signed_prekey: vault.x25519_public_key(spk)?,
                created_at: now,
                expires_at: now.plus_secs(self.options.bundle_validity_secs),
                one_time_prekeys,
            },
        )?)
    }

    /// Handles one X3DH enrollment request (from a direct route or a mailbox): token and one-time prekey
    /// consumed atomically with the member insert, credential issued and recorded. Returns the encrypted
    /// response for the device and the device's identifier.
    pub fn handle_enrollment(
        &self,
        request: &[u8],
    ) -> Result<(latchkey_core::identity::Identifier, Vec<u8>)> {
        self.handle_enrollments(std::slice::from_ref(&request.to_vec()))
            .pop()
            .unwrap_or(Err(RuntimeError::Malformed("no enrollment result")))
    }

    /// Handles a queue of requests with one commit (group commit: one `fsync` for all), in two phases:
    ///
    /// 1. **Compute, on every core, consuming nothing**: each request is decrypted, the device's history
    ///    and signature verified, the token's attributes read, the credential issued and the response
    ///    sealed (the core's `handle_request`, with a store that only reads). Nothing leaves this function
    ///    yet, so a credential made here for a request phase 2 refuses is simply dropped.
    /// 2. **Consume, in one transaction**: each request in arrival order, in its own savepoint, consumes
    ///    its token use and one-time prekey, records its hash and inserts the member with its credential
    ///    ([`AuthorityStore::enroll`]); a refusal undoes only its own changes. Then one commit.
    ///
    /// No response exists before the commit; if the commit fails, every request fails and nothing was
    /// consumed.
    pub fn handle_enrollments(
        &self,
        requests: &[Vec<u8>],
    ) -> Vec<Result<(latchkey_core::identity::Identifier, Vec<u8>)>> {
        let prepared = self.prepare_all(requests);
        let mut store = self.store();
        if let Err(e) = store.begin_batch() {
            return requests
                .iter()
                .map(|_| Err(RuntimeError::Storage(e.to_string())))
                .collect();
        }
        let mut consumed_prekeys = Vec::new();
        let mut inconsistent = false;
        let results: Vec<_> = prepared
            .into_iter()
            .map(|p| {
                let p = p?;
                let opk = p.one_time_prekey;
                let done = self.consume(&mut store, p, &mut inconsistent)?;
                consumed_prekeys.extend(opk);
                Ok(done)
            })
            .collect();
        if inconsistent {
            store.rollback_batch();
            return requests
                .iter()
                .map(|_| {
                    Err(RuntimeError::Storage(
                        "a token's attributes changed during an enrollment batch".into(),
                    ))
                })
                .collect();
        }
        if let Err(e) = store.commit_batch() {
            tracing::warn!(
                "authority: a batch of {} enrollments failed to commit: {e}",
                requests.len()
            );
            return requests
                .iter()
                .map(|_| Err(RuntimeError::Storage(e.to_string())))
                .collect();
        }
        // The consumed one-time prekeys leave the vault; more are made when few are left.
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        for id in consumed_prekeys {
            if let Some(key) = keys.one_time.remove(&(id as i64)) {
                if let Ok(vault) = software_vault(self) {
                    let _ = vault.delete_x25519_key(&key);
                }
            }
        }
        if let Err(e) = self.replenish(&mut keys, &mut store) {
            tracing::warn!("authority: could not make one-time prekeys: {e}");
        }
        for (identifier, _) in results.iter().flatten() {
            tracing::info!("authority: enrolled {identifier} (X3DH)");
        }
        results
    }

    /// Phase 1 of [`Authority::handle_enrollments`] for every request, spread over the machine's cores (at
    /// most 4 threads; one request or one core: this thread).
    fn prepare_all(&self, requests: &[Vec<u8>]) -> Vec<Result<Prepared>> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(4)
            .min(requests.len());
        if threads <= 1 {
            return requests.iter().map(|r| self.prepare(r)).collect();
        }
        let per_thread = requests.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = requests
                .chunks(per_thread)
                .map(|chunk| {
                    scope.spawn(move || chunk.iter().map(|r| self.prepare(r)).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| {
                    h.join().unwrap_or_else(|_| {
                        vec![Err(RuntimeError::Malformed("enrollment worker panicked"))]
                    })
                })
                .collect()
        })
    }

    /// Phase 1 for one request: everything computed, nothing consumed.
    fn prepare(&self, request: &[u8]) -> Result<Prepared> {
        let ik = {
            let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            keys.x3dh
                .as_ref()
                .map(|(_, k)| k.clone())
                .ok_or(RuntimeError::Insecure("the authority has no X3DH keys"))?
        };
        let now = self.now();
        let reading = ReadingStore {
            authority: self,
            claim: std::cell::RefCell::new(None),
        };
        let enrolled = match handle_request(
            &self.identity,
            &ik,
            &reading,
            latchkey_core::crypto::default_provider(),
            request,
            now,
        ) {
            Ok(e) => e,
            Err(e) => {
                if let latchkey_core::Error::EnrollmentRefused(why) = &e {
                    if why.contains("prekey") {
                        tracing::warn!("authority: enrollment refused: {why} (the device retries with a fresh bundle)");
                    } else {
                        tracing::info!("authority: enrollment refused: {why}");
                    }
                }
                return Err(e.into());
            }
        };
        let claim = reading
            .claim
            .into_inner()
            .ok_or(RuntimeError::Malformed("the enrollment made no claim"))?;
        Ok(Prepared {
            token_hash: claim.secret_hash,
            one_time_prekey: claim.one_time_prekey,
            request_hash: claim.request_hash,
            attributes: claim.attributes,
            now: now.0 as i64,
            enrolled,
        })
    }

    /// Phase 2 for one request, inside the batch's transaction: the store's one atomic consumption (token
    /// use, one-time prekey, request hash, member and credential).
    fn consume(
        &self,
        store: &mut SqliteAuthorityStore,
        p: Prepared,
        inconsistent: &mut bool,
    ) -> Result<(latchkey_core::identity::Identifier, Vec<u8>)> {
        let identifier = p.enrolled.device.identifier();
        let credential = p.enrolled.credential.to_bytes();
        let outcome = store.enroll(&Enrollment {
            token_hash: p.token_hash,
            one_time_prekey: p.one_time_prekey.map(i64::from),
            message_hash: p.request_hash,
            identifier: &identifier.to_string(),
            history: &p.enrolled.device.export(),
            history_hash: history_hash(&p.enrolled.device),
            credential: Some(IssuedCredential {
                id: p.enrolled.credential.id(),
                bytes: &credential,
                expires_at: p.enrolled.credential.body.not_after.0 as i64,
            }),
            now: p.now,
        })?;
        match outcome {
            // The credential carries the attributes phase 1 read from the token; the member row has the
            // token's attributes as this transaction sees them. Tokens never change their attributes, so
            // these agree; if they ever did not, the whole batch is rolled back (its savepoint is already
            // released) rather than commit a member with a wrong credential.
            Ok(member) if member.attributes != p.attributes => {
                *inconsistent = true;
                Err(RuntimeError::Storage(
                    "a token's attributes changed during an enrollment".into(),
                ))
            }
            Ok(_) => Ok((identifier, p.enrolled.response)),
            Err(refusal) => {
                let why = refusal.reason();
                if why.contains("prekey") {
                    tracing::warn!("authority: enrollment refused: {why} (the device retries with a fresh bundle)");
                } else {
                    tracing::info!("authority: enrollment refused: {why}");
                }
                Err(latchkey_core::Error::EnrollmentRefused(why).into())
            }
        }
    }

    /// One-time prekeys available now.
    pub fn one_time_prekeys_available(&self) -> usize {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .one_time
            .len()
    }
}

/// Phase 1's result for one request.
struct Prepared {
    token_hash: [u8; 32],
    one_time_prekey: Option<u32>,
    request_hash: [u8; 32],
    /// The token's attributes as phase 1 read them (what the credential carries).
    attributes: std::collections::BTreeMap<String, String>,
    now: i64,
    enrolled: Enrolled,
}

/// What the core's enrollment claimed, kept for phase 2.
struct Claim {
    secret_hash: [u8; 32],
    one_time_prekey: Option<u32>,
    request_hash: [u8; 32],
    attributes: std::collections::BTreeMap<String, String>,
}

/// The store as the core's enrollment sees it in phase 1: prekeys from the vault's table, the token's
/// attributes read (nothing consumed; an unknown token reads as no attributes, and phase 2 refuses it with
/// the store's reason).
struct ReadingStore<'a> {
    authority: &'a Authority,
    claim: std::cell::RefCell<Option<Claim>>,
}

fn storage_failed(e: RuntimeError) -> latchkey_core::Error {
    tracing::warn!("authority: the store failed during an enrollment: {e}");
    latchkey_core::Error::InvalidState("the authority's store failed")
}

impl EnrollmentStore for ReadingStore<'_> {
    fn signed_prekey(&self, id: u32) -> latchkey_core::Result<Option<KeyId>> {
        let keys = self
            .authority
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Ok(keys
            .signed
            .as_ref()
            .filter(|(i, _)| *i == id as i64)
            .map(|(_, k)| k.clone()))
    }

    fn one_time_prekey(&self, id: u32) -> latchkey_core::Result<Option<KeyId>> {
        let keys = self
            .authority
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Ok(keys.one_time.get(&(id as i64)).cloned())
    }

    fn consume(&self, claim: &EnrollmentClaim<'_>) -> latchkey_core::Result<TokenGrant> {
        let token = self
            .authority
            .store()
            .token(&claim.secret_hash)
            .map_err(storage_failed)?;
        let attributes = token.map(|t| t.attributes).unwrap_or_default();
        *self.claim.borrow_mut() = Some(Claim {
            secret_hash: claim.secret_hash,
            one_time_prekey: claim.one_time_prekey,
            request_hash: claim.request_hash,
            attributes: attributes.clone(),
        });
        Ok(TokenGrant {
            attributes: Attributes::from_pairs(attributes)?,
            credential_validity_secs: self.authority.options.credential_validity_secs,
        })
    }
}

/// Requests to the channel-less enrollment service (docs/RUNTIME.md, "Authority"; the core's
/// `wire::authority::EnrollServiceRequest`): `0x01` → `0x00 ‖ bundle`; `0x02 ‖ request` → `0x00 ‖ response`,
/// or `0xFF ‖ code ‖ reason` for either.
pub const GET_BUNDLE: u8 = latchkey_core::wire::authority::TAG_GET_BUNDLE;
pub const X3DH_REQUEST: u8 = latchkey_core::wire::authority::TAG_X3DH_REQUEST;

/// The answer to an X3DH request or a bundle fetch: `0x00 ‖ T`, or the refusal the error stands for.
fn answer<T: Encode>(result: Result<T>) -> Vec<u8> {
    use latchkey_core::wire::authority::{AuthorityAnswer, Refusal};
    match result {
        Ok(t) => AuthorityAnswer::Accepted(t).to_bytes(),
        Err(e) => {
            let (code, why) = super::service::refusal_for(&e);
            AuthorityAnswer::<T>::Refused(Refusal::new(code, &why)).to_bytes()
        }
    }
}

/// The encrypted response (the bytes `handle_request` made) as its typed form.
fn response(bytes: Vec<u8>) -> Result<latchkey_core::enroll::EnrollmentResponse> {
    use latchkey_core::wire::Decode;
    Ok(latchkey_core::enroll::EnrollmentResponse::from_bytes(
        &bytes,
    )?)
}

impl Authority {
    /// Serves X3DH enrollment without a channel at `address` on `node`: anyone connected may fetch the
    /// bundle and send one request (the request proves the token; the response is readable only by the
    /// device). Requests are handled one at a time, in arrival order, from a bounded queue.
    pub fn serve_x3dh(self: &Arc<Self>, node: &crate::Node, address: crate::Address) -> Result<()> {
        software_vault(self)?;
        let mut mailbox = node.register_with(
            address.clone(),
            crate::node::DEFAULT_MAILBOX,
            crate::Accepts::any_transport().and_any_channel(),
        )?;
        let this = self.clone();
        let node = node.clone();
        tokio::spawn(async move {
            while let Some(first) = mailbox.recv().await {
                // Whatever else is already queued joins this batch (group commit), up to BATCH.
                let mut messages = vec![first];
                while messages.len() < BATCH {
                    match tokio::time::timeout(std::time::Duration::ZERO, mailbox.recv()).await {
                        Ok(Some(m)) => messages.push(m),
                        _ => break,
                    }
                }
                let this = this.clone();
                let Ok(replies) = tokio::task::spawn_blocking(move || {
                    use latchkey_core::enroll::EnrollmentResponse;
                    use latchkey_core::wire::authority::EnrollServiceRequest;
                    use latchkey_core::wire::Decode;
                    let parsed: Vec<_> = messages
                        .iter()
                        .map(|m| EnrollServiceRequest::from_bytes(&m.payload))
                        .collect();
                    // The well-formed requests' bytes, handled in one batch (in arrival order).
                    let requests: Vec<Vec<u8>> = messages
                        .iter()
                        .zip(&parsed)
                        .filter(|(_, p)| matches!(p, Ok(EnrollServiceRequest::Request(_))))
                        .map(|(m, _)| m.payload[1..].to_vec())
                        .collect();
                    let mut results = this.handle_enrollments(&requests).into_iter();
                    messages
                        .into_iter()
                        .zip(parsed)
                        .map(|(m, p)| {
                            let reply = match p {
                                Ok(EnrollServiceRequest::GetBundle) => answer(this.prekey_bundle()),
                                Ok(EnrollServiceRequest::Request(_)) => answer(
                                    results
                                        .next()
                                        .unwrap_or(Err(RuntimeError::Malformed("lost")))
                                        .and_then(|(_, r)| response(r)),
                                ),
                                Err(e) => answer::<EnrollmentResponse>(Err(e.into())),
                            };
                            (m, reply)
                        })
                        .collect::<Vec<_>>()
                })
                .await
                else {
                    continue;
                };
                for (message, reply) in replies {
                    if let Ok(r) = message.reply_to_origin(crate::Route::new(), reply) {
                        let _ = node.try_send_as(&address, r);
                    }
                }
            }
        });
        Ok(())
    }

    /// Serves enrollment through a relay mailbox: through `client` (a channel to the relay, as this
    /// authority) it opens its mailbox and publishes its bundle, then every `poll` collects waiting
    /// requests, handles them, deposits each response in the device's own mailbox at the relay, and
    /// acknowledges them. Runs until the channel closes.
    pub async fn serve_mailbox(
        self: &Arc<Self>,
        node: &crate::Node,
        client: crate::relay::mailbox::MailboxClient,
        deposit_service: crate::Address,
        poll: std::time::Duration,
    ) -> Result<()> {
        client.open().await?;
        client.publish(&self.prekey_bundle()?.to_bytes()).await?;
        loop {
            if client.channel().is_closed() {
                return Err(RuntimeError::ChannelClosed);
            }
            let batch = client.collect(64).await?;
            let Some(last) = batch.last().map(|(id, _)| *id) else {
                tokio::time::sleep(poll).await;
                continue;
            };
            for (_, body) in batch {
                // Anyone may deposit: what is not an envelope is dropped (there is nobody to answer).
                let envelope = match <latchkey_core::wire::authority::EnrollmentEnvelope as latchkey_core::wire::Decode>::from_bytes(&body) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::debug!("authority: a mailbox deposit is not an enrollment envelope: {e}");
                        continue;
                    }
                };
                let device = envelope.device;
                let this = self.clone();
                let request = envelope.request.to_bytes();
                let result = tokio::task::spawn_blocking(move || this.handle_enrollment(&request))
                    .await
                    .map_err(|_| RuntimeError::Malformed("enrollment task failed"))
                    .and_then(|r| r);
                let reply = match result {
                    Ok((enrolled, r)) if enrolled == device => answer(response(r)),
                    Ok((enrolled, _)) => {
                        tracing::warn!(
                            "authority: an envelope for {device} enrolled {enrolled}; no reply"
                        );
                        continue;
                    }
                    Err(e) => answer::<latchkey_core::enroll::EnrollmentResponse>(Err(e)),
                };
                let channel = client.channel();
                if let Err(e) = crate::relay::mailbox::deposit(
                    node,
                    channel.route_to(deposit_service.clone()),
                    channel.flow(),
                    &device,
                    &reply,
                )
                .await
                {
                    tracing::warn!("authority: could not deposit the answer for {device}: {e}");
                }
            }
            client.ack(last).await?;
            // Prekeys were consumed: publish the bundle again.
            client.publish(&self.prekey_bundle()?.to_bytes()).await?;
        }
    }
}
