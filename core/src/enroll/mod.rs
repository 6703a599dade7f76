//! X3DH-based enrollment: a device holding a one-time token sends the authority **one** message that proves
//! the token and delivers the device's identity, readable only by the authority, even while the authority is
//! offline (the message waits in a mailbox); the authority answers with a membership credential encrypted to
//! the device. Pure state machines: the caller moves the bytes, supplies `now`, and (authority side) the
//! storage behind [`EnrollmentStore`]. Bytes: `docs/PROTOCOL.md` section 14.
//!
//! # Pieces
//!
//! - [`EnrollmentToken`] (≤ 96 bytes, for a QR code): token id, 32-byte secret, the authority's identifier,
//!   an optional route hint of up to 14 bytes. The authority stores only [`EnrollmentToken::secret_hash`]
//!   together with what the token grants (attributes, expiry, uses left); see [`TokenGrant`].
//! - [`PrekeyBundle`]: signed by the authority's identity key: its history (so a device that knows only the
//!   identifier from the token can check the key), its X3DH key `IK` (X25519), a signed prekey `SPK` with an
//!   id, one-time prekeys `OPK` with ids, and a validity window. All three kinds of X25519 key live in the
//!   authority's `SecureChannelVault`; the core only ever asks the vault for a DH.
//! - [`DeviceEnrollment::start`] → the request; [`DeviceEnrollment::finish`] reads the response and returns
//!   the verified [`Credential`].
//! - [`handle_request`] on the authority: decrypts, verifies, has the store **consume the token and the
//!   one-time prekey atomically**, issues the credential and returns the encrypted response.
//!
//! # Keys
//!
//! The device makes an ephemeral X25519 key `EK` and computes `DH(EK, IK) ‖ DH(EK, SPK) ‖ DH(EK, OPK)` (the
//! last when the bundle offered a one-time prekey). HKDF-SHA-256 with the transcript hash as salt gives a
//! request key and a response key (ChaCha20-Poly1305, each used for one message with nonce 0).
//!
//! **What the device's identity key contributes.** X3DH's `DH(IK_device, SPK)` needs the device's identity
//! key to be an X25519 key. Ours are signing keys (Ed25519, or ECDSA P-256 in hardware that can do nothing
//! else), so instead the device **signs the transcript hash** with its current identity key, inside the
//! encrypted part. That proves possession of the key its history names now, binds that identity to this
//! enrollment (the transcript covers the token id, `EK` and the authority's keys, so the signature cannot be
//! replayed to another authority or in another enrollment), and hides the identity from anyone but the
//! authority. X3DH's deniability is deliberately given up: an authority should be able to show who asked.
//! The token secret authorises, the signature authenticates, the DHs give confidentiality to the authority.
//!
//! # Replay and races
//!
//! The store's [`EnrollmentStore::consume`] must, in one transaction, use up one use of the token (matching
//! id and secret hash, unexpired, uses left) **and** mark the one-time prekey used; both or neither. A replay
//! of the same request then fails: its one-time prekey is gone (the runtime deletes the key, so it cannot
//! even be decrypted again) and a single-use token is used up. Without a one-time prekey (they ran out) the
//! store must also refuse a `request_hash` it has seen. When two devices race for one one-time prekey, the
//! loser is refused (`EnrollmentRefused`) with its token untouched and retries with another prekey.

use crate::credential::{history_hash, Attributes, Credential, CredentialBody};
use crate::crypto::{sig, AeadAlgorithm, CryptoProvider, Secret32, TAG_LEN};
use crate::error::{Error, Result};
use crate::identity::{ChangeHistory, Identifier, LocalIdentity, MAX_CLOCK_SKEW_SECS};
use crate::prelude::*;
use crate::time::Timestamp;
use crate::vault::{verify_signature, KeyId, Signature};
use crate::wire::{Decode, Encode};
use core::fmt;
use zeroize::Zeroizing;

/// Length of a token id.
pub const TOKEN_ID_LEN: usize = 16;
/// Length of a token secret.
pub const TOKEN_SECRET_LEN: usize = 32;
/// Longest route hint a token carries (so that a token is at most [`MAX_TOKEN_LEN`] bytes).
pub const MAX_ROUTE_HINT_LEN: usize = 14;
/// Largest encoded token.
pub const MAX_TOKEN_LEN: usize = 96;
/// Most one-time prekeys one bundle offers.
pub const MAX_BUNDLE_PREKEYS: usize = 256;

pub(crate) const TOKEN_HASH_DOMAIN: &[u8] = b"latchkey/enroll-token/v1";
pub(crate) const BUNDLE_DOMAIN: &[u8] = b"latchkey/prekey-bundle/v1";
pub(crate) const TRANSCRIPT_DOMAIN: &[u8] = b"latchkey/enroll-transcript/v1";
pub(crate) const DEVICE_SIG_DOMAIN: &[u8] = b"latchkey/enroll-device/v1";
pub(crate) const KEYS_INFO: &[u8] = b"latchkey/enroll-keys/v1";
pub(crate) const RESPONSE_DOMAIN: &[u8] = b"latchkey/enroll-response/v1";

/// A one-time enrollment token: what an operator hands to a device (QR code, provisioning file).
#[derive(Clone, PartialEq, Eq)]
pub struct EnrollmentToken {
    pub id: [u8; TOKEN_ID_LEN],
    pub(crate) secret: Zeroizing<[u8; TOKEN_SECRET_LEN]>,
    pub authority: Identifier,
    /// Where to reach the authority, in whatever short form the runtime chooses (e.g. a relay name).
    pub route_hint: Vec<u8>,
}

impl fmt::Debug for EnrollmentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollmentToken")
            .field("id", &hex::encode(self.id))
            .field("authority", &self.authority)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl EnrollmentToken {
    /// A fresh token for `authority` with a random id and secret from `provider`.
    pub fn generate(
        provider: &dyn CryptoProvider,
        authority: Identifier,
        route_hint: &[u8],
    ) -> Result<Self> {
        let mut id = [0u8; TOKEN_ID_LEN];
        provider.fill_random(&mut id)?;
        let mut secret = Zeroizing::new([0u8; TOKEN_SECRET_LEN]);
        provider.fill_random(secret.as_mut())?;
        Self::from_parts(id, *secret, authority, route_hint)
    }

    /// A token from known parts (storage, test vectors).
    pub fn from_parts(
        id: [u8; TOKEN_ID_LEN],
        secret: [u8; TOKEN_SECRET_LEN],
        authority: Identifier,
        route_hint: &[u8],
    ) -> Result<Self> {
        if route_hint.len() > MAX_ROUTE_HINT_LEN {
            return Err(Error::MessageTooLarge {
                len: route_hint.len(),
                max: MAX_ROUTE_HINT_LEN,
            });
        }
        Ok(EnrollmentToken {
            id,
            secret: Zeroizing::new(secret),
            authority,
            route_hint: route_hint.to_vec(),
        })
    }

    /// The secret (to encode the token; never log it).
    pub fn secret(&self) -> &[u8; TOKEN_SECRET_LEN] {
        &self.secret
    }

    /// What the authority stores instead of the secret.
    pub fn secret_hash(&self) -> [u8; 32] {
        token_secret_hash(&self.id, &self.secret)
    }
}

/// `SHA-256(domain ‖ id ‖ secret)`.
pub fn token_secret_hash(id: &[u8; TOKEN_ID_LEN], secret: &[u8; TOKEN_SECRET_LEN]) -> [u8; 32] {
    sig::sha256(&[TOKEN_HASH_DOMAIN, id, secret])
}

/// A one-time prekey offered in a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneTimePrekey {
    pub id: u32,
    pub public: [u8; 32],
}

/// The signed part of a prekey bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrekeyBundleBody {
    pub authority: ChangeHistory,
    pub x3dh_key: [u8; 32],
    pub signed_prekey_id: u32,
    pub signed_prekey: [u8; 32],
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub one_time_prekeys: Vec<OneTimePrekey>,
}

impl PrekeyBundleBody {
    pub fn signing_message(&self) -> Vec<u8> {
        let mut msg = BUNDLE_DOMAIN.to_vec();
        self.encode_into(&mut msg);
        msg
    }
}

/// The authority's published, signed prekey bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrekeyBundle {
    pub body: PrekeyBundleBody,
    pub signature: Signature,
}

impl PrekeyBundle {
    /// Signs a bundle with the authority's current primary key. `body.authority` must be its history.
    pub fn sign(authority: &LocalIdentity, body: PrekeyBundleBody) -> Result<Self> {
        if &body.authority != authority.history() {
            return Err(Error::InvalidState("the bundle names another history"));
        }
        if body.one_time_prekeys.len() > MAX_BUNDLE_PREKEYS {
            return Err(Error::MessageTooLarge {
                len: body.one_time_prekeys.len(),
                max: MAX_BUNDLE_PREKEYS,
            });
        }
        let signature = authority
            .vaults()
            .signing()
            .sign(authority.primary_key(), &body.signing_message())?;
        Ok(PrekeyBundle { body, signature })
    }

    /// The bundle is `authority`'s (its history's identifier; `UntrustedIssuer` otherwise), signed by that
    /// history's current key (`InvalidSignature`), and valid at `now` (`Expired`).
    pub fn verify(&self, authority: &Identifier, now: Timestamp) -> Result<()> {
        if &self.body.authority.identifier() != authority {
            return Err(Error::UntrustedIssuer(self.body.authority.identifier()));
        }
        verify_signature(
            self.body.authority.primary_public_key(),
            &self.body.signing_message(),
            &self.signature,
        )?;
        if now.plus_secs(MAX_CLOCK_SKEW_SECS) < self.body.created_at {
            return Err(Error::Expired("prekey bundle not yet valid"));
        }
        if now >= self.body.expires_at {
            return Err(Error::Expired("prekey bundle"));
        }
        Ok(())
    }
}

/// The clear header of an enrollment request (also authenticated: it is part of the transcript).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    pub token_id: [u8; TOKEN_ID_LEN],
    pub signed_prekey_id: u32,
    pub one_time_prekey_id: Option<u32>,
    pub ephemeral: [u8; 32],
}

/// A device's enrollment request: header and the AEAD ciphertext of the [`RequestPayload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentRequest {
    pub header: RequestHeader,
    pub ciphertext: Vec<u8>,
}

/// The encrypted part of a request: the token secret, the device's history, the device's signature over the
/// transcript hash.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RequestPayload {
    pub(crate) secret: Zeroizing<[u8; TOKEN_SECRET_LEN]>,
    pub(crate) history: ChangeHistory,
    pub(crate) signature: Signature,
}

/// The authority's answer: the AEAD ciphertext of the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentResponse {
    pub ciphertext: Vec<u8>,
}

/// `SHA-256(domain ‖ header ‖ IK ‖ SPK ‖ OPK?)`: binds everything both sides agree on.
fn transcript_hash(
    header: &RequestHeader,
    ik: &[u8; 32],
    spk: &[u8; 32],
    opk: Option<&[u8; 32]>,
) -> [u8; 32] {
    let header = header.to_bytes();
    let opk: &[u8] = opk.map_or(&[], |k| k.as_slice());
    sig::sha256(&[TRANSCRIPT_DOMAIN, &header, ik, spk, opk])
}

/// HKDF-SHA-256 (RFC 5869) with salt = transcript hash, 64 bytes of output: request key, response key.
fn derive_keys(
    provider: &dyn CryptoProvider,
    transcript: &[u8; 32],
    dhs: &[&Secret32],
) -> (Secret32, Secret32) {
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * dhs.len()));
    for dh in dhs {
        ikm.extend_from_slice(dh.expose());
    }
    let prk = Secret32::new(provider.hmac_sha256(transcript, &[&ikm]));
    let t1 = Secret32::new(provider.hmac_sha256(prk.expose(), &[KEYS_INFO, &[1]]));
    let t2 = Secret32::new(provider.hmac_sha256(prk.expose(), &[t1.expose(), KEYS_INFO, &[2]]));
    (t1, t2)
}

fn seal(
    provider: &dyn CryptoProvider,
    key: &Secret32,
    ad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let aead = provider.aead_key(AeadAlgorithm::ChaCha20Poly1305, key);
    let mut buf = plaintext.to_vec();
    let tag = aead.seal_in_place(0, ad, &mut buf)?;
    buf.extend_from_slice(&tag);
    Ok(buf)
}

fn open(
    provider: &dyn CryptoProvider,
    key: &Secret32,
    ad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let body_len = ciphertext
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(Error::DecryptFailed)?;
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&ciphertext[body_len..]);
    let mut buf = Zeroizing::new(ciphertext[..body_len].to_vec());
    let aead = provider.aead_key(AeadAlgorithm::ChaCha20Poly1305, key);
    if aead.open_in_place(0, ad, &mut buf, &tag).is_err() {
        zeroize::Zeroize::zeroize(&mut *buf);
        return Err(Error::DecryptFailed);
    }
    Ok(buf)
}

fn device_signing_message(transcript: &[u8; 32]) -> Vec<u8> {
    [DEVICE_SIG_DOMAIN, transcript.as_slice()].concat()
}

fn response_ad(transcript: &[u8; 32]) -> [u8; 32] {
    sig::sha256(&[RESPONSE_DOMAIN, transcript])
}

/// The device's side: made by [`DeviceEnrollment::start`], finished by [`DeviceEnrollment::finish`]. Holds
/// the response key until then (wiped on drop).
pub struct DeviceEnrollment {
    authority: ChangeHistory,
    device: Identifier,
    device_history: [u8; 32],
    response_key: Secret32,
    transcript: [u8; 32],
    provider: &'static dyn CryptoProvider,
}

impl fmt::Debug for DeviceEnrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceEnrollment")
            .field("authority", &self.authority.identifier())
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl DeviceEnrollment {
    /// Verifies `bundle` against the token's authority, picks one of its one-time prekeys at random (none if
    /// it offers none), and builds the request. Returns the state to finish with and the request bytes.
    pub fn start(
        token: &EnrollmentToken,
        bundle: &PrekeyBundle,
        device: &LocalIdentity,
        provider: &'static dyn CryptoProvider,
        now: Timestamp,
    ) -> Result<(Self, Vec<u8>)> {
        let prekeys = &bundle.body.one_time_prekeys;
        let choice = if prekeys.is_empty() {
            None
        } else {
            let mut r = [0u8; 4];
            provider.fill_random(&mut r)?;
            Some(prekeys[(u32::from_be_bytes(r) as usize) % prekeys.len()].id)
        };
        let ephemeral = crate::crypto::generate_secret(provider)?;
        Self::start_inner(token, bundle, device, provider, now, choice, ephemeral)
    }

    /// [`DeviceEnrollment::start`] with the one-time prekey chosen by the caller (`None`: none), e.g. to retry
    /// with another prekey after the authority refused one that another device had used. The ephemeral key
    /// is fresh.
    pub fn start_with_prekey(
        token: &EnrollmentToken,
        bundle: &PrekeyBundle,
        device: &LocalIdentity,
        provider: &'static dyn CryptoProvider,
        now: Timestamp,
        one_time_prekey: Option<u32>,
    ) -> Result<(Self, Vec<u8>)> {
        let ephemeral = crate::crypto::generate_secret(provider)?;
        Self::start_inner(
            token,
            bundle,
            device,
            provider,
            now,
            one_time_prekey,
            ephemeral,
        )
    }

    /// [`DeviceEnrollment::start`] with the one-time prekey and the ephemeral secret chosen by the caller
    /// (test vectors; callers that make their own randomness). The ephemeral secret **must** be fresh for every
    /// request: a reused one gives two enrollments the same keys. Prefer [`DeviceEnrollment::start`] or
    /// [`DeviceEnrollment::start_with_prekey`], which make it.
    pub fn start_with(
        token: &EnrollmentToken,
        bundle: &PrekeyBundle,
        device: &LocalIdentity,
        provider: &'static dyn CryptoProvider,
        now: Timestamp,
        one_time_prekey: Option<u32>,
        ephemeral: Secret32,
    ) -> Result<(Self, Vec<u8>)> {
        Self::start_inner(
            token,
            bundle,
            device,
            provider,
            now,
            one_time_prekey,
            ephemeral,
        )
    }

    fn start_inner(
        token: &EnrollmentToken,
        bundle: &PrekeyBundle,
        device: &LocalIdentity,
        provider: &'static dyn CryptoProvider,
        now: Timestamp,
        one_time_prekey: Option<u32>,
        ephemeral: Secret32,
    ) -> Result<(Self, Vec<u8>)> {
        bundle.verify(&token.authority, now)?;
        let opk = match one_time_prekey {
            None => None,
            Some(id) => Some(
                bundle
                    .body
                    .one_time_prekeys
                    .iter()
                    .find(|k| k.id == id)
                    .ok_or(Error::InvalidState(
                        "the bundle offers no such one-time prekey",
                    ))?
                    .public,
            ),
        };
        let header = RequestHeader {
            token_id: token.id,
            signed_prekey_id: bundle.body.signed_prekey_id,
            one_time_prekey_id: one_time_prekey,
            ephemeral: provider.x25519_public_key(&ephemeral),
        };
        let ik = &bundle.body.x3dh_key;
        let spk = &bundle.body.signed_prekey;
        let transcript = transcript_hash(&header, ik, spk, opk.as_ref());
        let dh1 = provider.x25519(&ephemeral, ik)?;
        let dh2 = provider.x25519(&ephemeral, spk)?;
        let (request_key, response_key) = match &opk {
            Some(opk) => {
                let dh3 = provider.x25519(&ephemeral, opk)?;
                derive_keys(provider, &transcript, &[&dh1, &dh2, &dh3])
            }
            None => derive_keys(provider, &transcript, &[&dh1, &dh2]),
        };
        let signature = device
            .vaults()
            .signing()
            .sign(device.primary_key(), &device_signing_message(&transcript))?;
        let payload = RequestPayload {
            secret: token.secret.clone(),
            history: device.history().clone(),
            signature,
        };
        let plaintext = Zeroizing::new(payload.to_bytes());
        let ciphertext = seal(provider, &request_key, &transcript, &plaintext)?;
        let request = EnrollmentRequest { header, ciphertext };
        Ok((
            DeviceEnrollment {
                authority: bundle.body.authority.clone(),
                device: device.identifier(),
                device_history: history_hash(device.history()),
                response_key,
                transcript,
                provider,
            },
            request.to_bytes(),
        ))
    }

    /// Reads the authority's response: decrypts it (`DecryptFailed` if it is not from the authority that
    /// holds the keys), and checks the credential is the authority's, about this device and its history,
    /// and valid at `now`.
    pub fn finish(self, response: &[u8], now: Timestamp) -> Result<Credential> {
        let response = EnrollmentResponse::from_bytes(response)?;
        let plaintext = open(
            self.provider,
            &self.response_key,
            &response_ad(&self.transcript),
            &response.ciphertext,
        )?;
        let credential = Credential::from_bytes(&plaintext)?;
        let authorities = crate::credential::TrustedAuthorities::new().with(self.authority.clone());
        credential.verify_issuer(&authorities, now)?;
        if credential.body.subject != self.device
            || credential.body.subject_history != self.device_history
        {
            return Err(Error::SubjectMismatch(
                "the credential is about another device",
            ));
        }
        Ok(credential)
    }
}

/// What an enrollment asks the store to consume, atomically.
#[derive(Debug, Clone, Copy)]
pub struct EnrollmentClaim<'a> {
    pub token_id: [u8; TOKEN_ID_LEN],
    /// [`token_secret_hash`] of the secret the device proved; the store compares it with the stored hash.
    pub secret_hash: [u8; 32],
    /// The one-time prekey to mark used, if the request used one.
    pub one_time_prekey: Option<u32>,
    /// SHA-256 of the whole request: a store must refuse one it has seen when `one_time_prekey` is `None`.
    pub request_hash: [u8; 32],
    /// The device's verified history (a store may record the member in the same transaction).
    pub device: &'a ChangeHistory,
    pub now: Timestamp,
}

/// What a token grants, as the store recorded it when the operator created the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub attributes: Attributes,
    /// How long the membership credential is valid from the moment of enrollment.
    pub credential_validity_secs: u64,
}

/// The authority's storage, as enrollment needs it. The runtime implements it over SQLite; tests over a map.
pub trait EnrollmentStore {
    /// The vault handle of the signed prekey `id` if it is still accepted (it may be older than the one
    /// the current bundle offers), else `None`.
    fn signed_prekey(&self, id: u32) -> Result<Option<KeyId>>;
    /// The vault handle of the one-time prekey `id` if it exists and is unused, else `None`.
    fn one_time_prekey(&self, id: u32) -> Result<Option<KeyId>>;
    /// In one transaction, both or neither: use one use of the token `claim.token_id` whose stored secret
    /// hash equals `claim.secret_hash`, not expired at `claim.now`, with uses left; mark
    /// `claim.one_time_prekey` used (it must be unused); without a one-time prekey, record
    /// `claim.request_hash` and refuse one already recorded. Refusals are
    /// `Error::EnrollmentRefused(reason)`; storage failures any other error. Returns the token's grant.
    fn consume(&self, claim: &EnrollmentClaim<'_>) -> Result<TokenGrant>;
}

/// The result of a successful enrollment on the authority.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// The device's verified history (the member).
    pub device: ChangeHistory,
    /// The membership credential issued.
    pub credential: Credential,
    /// The response bytes to send back to the device.
    pub response: Vec<u8>,
    /// The token that was used.
    pub token_id: [u8; TOKEN_ID_LEN],
}

/// The authority's side: handles one request. `x3dh_key` is the handle of the bundle's X3DH key in the
/// authority's secure-channel vault (as are the prekeys the store names). Checks, in order: the signed
/// prekey and one-time prekey are known and unused (`EnrollmentRefused`), the ciphertext decrypts
/// (`DecryptFailed`), the device's history is valid (`InvalidHistory`), keeps the key-lifetime rules and its
/// key is not expired, its signature over the transcript verifies (`InvalidSignature`); then the store
/// consumes token and prekey atomically (`EnrollmentRefused`) and the credential is issued.
pub fn handle_request(
    authority: &LocalIdentity,
    x3dh_key: &KeyId,
    store: &dyn EnrollmentStore,
    provider: &dyn CryptoProvider,
    request: &[u8],
    now: Timestamp,
) -> Result<Enrolled> {
    let parsed = EnrollmentRequest::from_bytes(request)?;
    let header = &parsed.header;
    let vault = authority.vaults().secure_channel();
    let spk = store
        .signed_prekey(header.signed_prekey_id)?
        .ok_or(Error::EnrollmentRefused("unknown or retired signed prekey"))?;
    let opk = match header.one_time_prekey_id {
        None => None,
        Some(id) => Some(store.one_time_prekey(id)?.ok_or(Error::EnrollmentRefused(
            "one-time prekey unknown or already used",
        ))?),
    };
    let ik_public = vault.x25519_public_key(x3dh_key)?;
    let spk_public = vault.x25519_public_key(&spk)?;
    let opk_public = match &opk {
        Some(k) => Some(vault.x25519_public_key(k)?),
        None => None,
    };
    let transcript = transcript_hash(header, &ik_public, &spk_public, opk_public.as_ref());
    let dh1 = vault.x25519(x3dh_key, &header.ephemeral)?;
    let dh2 = vault.x25519(&spk, &header.ephemeral)?;
    let (request_key, response_key) = match &opk {
        Some(k) => {
            let dh3 = vault.x25519(k, &header.ephemeral)?;
            derive_keys(provider, &transcript, &[&dh1, &dh2, &dh3])
        }
        None => derive_keys(provider, &transcript, &[&dh1, &dh2]),
    };
    let plaintext = open(provider, &request_key, &transcript, &parsed.ciphertext)?;
    let payload = RequestPayload::from_bytes(&plaintext)?;
    let device = payload.history;
    device.check_pinned(None)?;
    device.check_not_expired(now)?;
    verify_signature(
        device.primary_public_key(),
        &device_signing_message(&transcript),
        &payload.signature,
    )?;
    let claim = EnrollmentClaim {
        token_id: header.token_id,
        secret_hash: token_secret_hash(&header.token_id, &payload.secret),
        one_time_prekey: header.one_time_prekey_id,
        request_hash: sig::sha256(&[request]),
        device: &device,
        now,
    };
    let grant = store.consume(&claim)?;
    let credential = Credential::issue(
        authority,
        CredentialBody {
            subject: device.identifier(),
            subject_history: history_hash(&device),
            issuer: authority.identifier(),
            attributes: grant.attributes,
            not_before: now,
            not_after: now.plus_secs(grant.credential_validity_secs.max(1)),
        },
    )?;
    let ciphertext = seal(
        provider,
        &response_key,
        &response_ad(&transcript),
        &credential.to_bytes(),
    )?;
    Ok(Enrolled {
        device,
        credential,
        response: EnrollmentResponse { ciphertext }.to_bytes(),
        token_id: header.token_id,
    })
}
