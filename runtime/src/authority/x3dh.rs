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
//! - **Consumption** goes through [`AuthorityStore::enroll`]: token use, one-time prekey, request hash and
//!   member in one transaction; the credential is recorded just after (a crash in between leaves a member
//!   without a recorded credential, who refreshes over a channel).

use super::service::Authority;
use super::store::{
    AuthorityStore, Enrollment, IssuedCredential, NewPrekey, PrekeyKind, SqliteAuthorityStore,
};
use crate::error::{Result, RuntimeError};
use latchkey_core::credential::{history_hash, Attributes};
use latchkey_core::enroll::{
    handle_request, EnrollmentClaim, EnrollmentStore, OneTimePrekey, PrekeyBundle,
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
        let mut store = self.store();
        self.handle_in(&mut store, request)
    }

    /// Handles a queue of requests with one commit (group commit: one `fsync` for all): each is consumed in
    /// its own savepoint (a refusal undoes only its own changes), and no response exists before the commit;
    /// if the commit fails, every request fails and nothing was consumed.
    pub fn handle_enrollments(
        &self,
        requests: &[Vec<u8>],
    ) -> Vec<Result<(latchkey_core::identity::Identifier, Vec<u8>)>> {
        let mut store = self.store();
        if let Err(e) = store.begin_batch() {
            return requests
                .iter()
                .map(|_| Err(RuntimeError::Storage(e.to_string())))
                .collect();
        }
        let results: Vec<_> = requests
            .iter()
            .map(|r| self.handle_in(&mut store, r))
            .collect();
        match store.commit_batch() {
            Ok(()) => results,
            Err(e) => {
                tracing::warn!(
                    "authority: a batch of {} enrollments failed to commit: {e}",
                    requests.len()
                );
                requests
                    .iter()
                    .map(|_| Err(RuntimeError::Storage(e.to_string())))
                    .collect()
            }
        }
    }

    fn handle_in(
        &self,
        store: &mut SqliteAuthorityStore,
        request: &[u8],
    ) -> Result<(latchkey_core::identity::Identifier, Vec<u8>)> {
        let ik = {
            let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            keys.x3dh
                .as_ref()
                .map(|(_, k)| k.clone())
                .ok_or(RuntimeError::Insecure("the authority has no X3DH keys"))?
        };
        let now = self.now();
        let enrollment_store = X3dhStore {
            authority: self,
            store: std::cell::RefCell::new(store),
        };
        let enrolled = match handle_request(
            &self.identity,
            &ik,
            &enrollment_store,
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
        let store = enrollment_store.store.into_inner();
        let identifier = enrolled.device.identifier();
        let credential = enrolled.credential.to_bytes();
        store.record_credential(
            &identifier.to_string(),
            IssuedCredential {
                id: enrolled.credential.id(),
                bytes: &credential,
                expires_at: enrolled.credential.body.not_after.0 as i64,
            },
            now.0 as i64,
        )?;
        // The consumed one-time prekey leaves the vault; more are made when few are left.
        let parsed =
            <latchkey_core::enroll::EnrollmentRequest as latchkey_core::wire::Decode>::from_bytes(
                request,
            )?;
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = parsed.header.one_time_prekey_id {
            if let Some(key) = keys.one_time.remove(&(id as i64)) {
                let _ = software_vault(self)?.delete_x25519_key(&key);
            }
        }
        if let Err(e) = self.replenish(&mut keys, store) {
            tracing::warn!("authority: could not make one-time prekeys: {e}");
        }
        tracing::info!("authority: enrolled {identifier} (X3DH)");
        Ok((identifier, enrolled.response))
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

/// The store as the core's enrollment sees it.
struct X3dhStore<'a, 's> {
    authority: &'a Authority,
    store: std::cell::RefCell<&'s mut SqliteAuthorityStore>,
}

fn storage_failed(e: RuntimeError) -> latchkey_core::Error {
    tracing::warn!("authority: the store failed during an enrollment: {e}");
    latchkey_core::Error::InvalidState("the authority's store failed")
}

impl EnrollmentStore for X3dhStore<'_, '_> {
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
        let identifier = claim.device.identifier().to_string();
        let history = claim.device.export();
        let outcome = self
            .store
            .borrow_mut()
            .enroll(&Enrollment {
                token_hash: claim.secret_hash,
                one_time_prekey: claim.one_time_prekey.map(i64::from),
                message_hash: claim.request_hash,
                identifier: &identifier,
                history: &history,
                history_hash: history_hash(claim.device),
                credential: None,
                now: claim.now.0 as i64,
            })
            .map_err(storage_failed)?;
        match outcome {
            Ok(member) => Ok(TokenGrant {
                attributes: Attributes::from_pairs(member.attributes)?,
                credential_validity_secs: self.authority.options.credential_validity_secs,
            }),
            Err(refusal) => Err(latchkey_core::Error::EnrollmentRefused(refusal.reason())),
        }
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
