//! X3DH-based enrollment (core/src/enroll): the whole exchange between a device and an authority over bytes,
//! with the authority's storage as an in-memory `EnrollmentStore` that consumes token and one-time prekey
//! under one lock (the runtime's SQLite store does the same in one transaction). Replays, reused and
//! expired tokens, wrong secrets, tampering, forged bundles and racing devices are refused.

use latchkey_core::credential::{Attributes, TrustedAuthorities};
use latchkey_core::crypto::{default_provider, CryptoProvider};
use latchkey_core::enroll::{
    handle_request, DeviceEnrollment, EnrollmentClaim, EnrollmentStore, EnrollmentToken,
    OneTimePrekey, PrekeyBundle, PrekeyBundleBody, TokenGrant, MAX_TOKEN_LEN,
};
use latchkey_core::identity::{IdentityOptions, LocalIdentity, Vaults};
use latchkey_core::vault::{KeyId, SigningAlgorithm, SoftwareVault};
use latchkey_core::wire::{Decode, Encode};
use latchkey_core::{Error, Timestamp};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

const T0: Timestamp = Timestamp(1_800_000_000);
const DAY: u64 = 86_400;

fn identity(algorithm: SigningAlgorithm) -> LocalIdentity {
    let options = IdentityOptions {
        algorithm,
        ..IdentityOptions::default()
    };
    LocalIdentity::create_in(
        Vaults::software(Arc::new(SoftwareVault::new())),
        options,
        T0,
    )
    .unwrap()
}

struct StoredToken {
    hash: [u8; 32],
    expires: Timestamp,
    uses_left: u32,
    grant: TokenGrant,
}

#[derive(Default)]
struct State {
    tokens: HashMap<[u8; 16], StoredToken>,
    signed: HashMap<u32, KeyId>,
    one_time: HashMap<u32, (KeyId, bool)>,
    seen_requests: HashSet<[u8; 32]>,
    members: Vec<latchkey_core::identity::Identifier>,
}

#[derive(Default)]
struct MemoryStore(Mutex<State>);

impl EnrollmentStore for MemoryStore {
    fn signed_prekey(&self, id: u32) -> latchkey_core::Result<Option<KeyId>> {
        Ok(self.0.lock().unwrap().signed.get(&id).cloned())
    }

    fn one_time_prekey(&self, id: u32) -> latchkey_core::Result<Option<KeyId>> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .one_time
            .get(&id)
            .filter(|(_, used)| !used)
            .map(|(k, _)| k.clone()))
    }

    fn consume(&self, claim: &EnrollmentClaim<'_>) -> latchkey_core::Result<TokenGrant> {
        let mut state = self.0.lock().unwrap();
        let token = state
            .tokens
            .get(&claim.token_id)
            .filter(|t| t.hash == claim.secret_hash)
            .ok_or(Error::EnrollmentRefused("unknown token"))?;
        if claim.now >= token.expires {
            return Err(Error::EnrollmentRefused("token expired"));
        }
        if token.uses_left == 0 {
            return Err(Error::EnrollmentRefused("token already used"));
        }
        let grant = token.grant.clone();
        match claim.one_time_prekey {
            Some(id) => match state.one_time.get(&id) {
                Some((_, false)) => {}
                _ => return Err(Error::EnrollmentRefused("one-time prekey already used")),
            },
            None => {
                if state.seen_requests.contains(&claim.request_hash) {
                    return Err(Error::EnrollmentRefused("replayed request"));
                }
            }
        }
        // Every check passed: now change both (one lock = one transaction).
        state.tokens.get_mut(&claim.token_id).unwrap().uses_left -= 1;
        match claim.one_time_prekey {
            Some(id) => state.one_time.get_mut(&id).unwrap().1 = true,
            None => {
                state.seen_requests.insert(claim.request_hash);
            }
        }
        state.members.push(claim.device.identifier());
        Ok(grant)
    }
}

struct Authority {
    identity: LocalIdentity,
    x3dh: KeyId,
    store: MemoryStore,
    bundle: PrekeyBundle,
}

fn provider() -> &'static dyn CryptoProvider {
    default_provider()
}

impl Authority {
    fn new(one_time_prekeys: u32) -> Self {
        let identity = identity(SigningAlgorithm::Ed25519);
        let vault = identity.vaults().secure_channel().clone();
        let x3dh = vault.generate_x25519_key().unwrap();
        let spk = vault.generate_x25519_key().unwrap();
        let store = MemoryStore::default();
        let mut opks = Vec::new();
        {
            let mut state = store.0.lock().unwrap();
            state.signed.insert(7, spk.clone());
            for id in 1..=one_time_prekeys {
                let k = vault.generate_x25519_key().unwrap();
                opks.push(OneTimePrekey {
                    id,
                    public: vault.x25519_public_key(&k).unwrap(),
                });
                state.one_time.insert(id, (k, false));
            }
        }
        let bundle = PrekeyBundle::sign(
            &identity,
            PrekeyBundleBody {
                authority: identity.history().clone(),
                x3dh_key: vault.x25519_public_key(&x3dh).unwrap(),
                signed_prekey_id: 7,
                signed_prekey: vault.x25519_public_key(&spk).unwrap(),
                created_at: T0,
                expires_at: T0.plus_secs(7 * DAY),
                one_time_prekeys: opks,
            },
        )
        .unwrap();
        Authority {
            identity,
            x3dh,
            store,
            bundle,
        }
    }

    fn token(&self, uses: u32, expires: Timestamp, role: &str) -> EnrollmentToken {
        let token =
            EnrollmentToken::generate(provider(), self.identity.identifier(), b"relay:auth")
                .unwrap();
        self.store.0.lock().unwrap().tokens.insert(
            token.id,
            StoredToken {
                hash: token.secret_hash(),
                expires,
                uses_left: uses,
                grant: TokenGrant {
                    attributes: Attributes::from_pairs([("role", role)]).unwrap(),
                    credential_validity_secs: 30 * DAY,
                },
            },
        );
        token
    }

    fn handle(
        &self,
        request: &[u8],
        now: Timestamp,
    ) -> latchkey_core::Result<latchkey_core::enroll::Enrolled> {
        handle_request(
            &self.identity,
            &self.x3dh,
            &self.store,
            provider(),
            request,
            now,
        )
    }

    fn one_time_left(&self) -> usize {
        self.store
            .0
            .lock()
            .unwrap()
            .one_time
            .values()
            .filter(|(_, used)| !used)
            .count()
    }
}

#[test]
fn a_device_enrolls_with_one_message_and_gets_a_credential_only_it_can_read() {
    let authority = Authority::new(4);
    let token = authority.token(1, T0.plus_secs(DAY), "sensor");
    let qr = token.to_bytes();
    assert_eq!(qr.len(), 82 + 10, "token with a 10-byte route hint");
    assert!(qr.len() <= MAX_TOKEN_LEN);
    assert!(!format!("{token:?}").contains(&hex::encode(token.secret())));
    let token = EnrollmentToken::from_bytes(&qr).unwrap();

    // The device got the bundle from a mailbox or relay: bytes only.
    let bundle = PrekeyBundle::from_bytes(&authority.bundle.to_bytes()).unwrap();
    let device = identity(SigningAlgorithm::Ed25519);
    let now = T0.plus_secs(3600);
    let (pending, request) =
        DeviceEnrollment::start(&token, &bundle, &device, provider(), now).unwrap();
    // The request never shows the device's identifier, history or the token secret in clear.
    for secret in [
        device.identifier().as_bytes().to_vec(),
        device.history().to_bytes()[..40].to_vec(),
        token.secret().to_vec(),
    ] {
        assert!(!request
            .windows(secret.len())
            .any(|w| w == secret.as_slice()));
    }

    let enrolled = authority.handle(&request, now).unwrap();
    assert_eq!(enrolled.device.identifier(), device.identifier());
    assert_eq!(enrolled.token_id, token.id);
    assert_eq!(authority.one_time_left(), 3);
    let credential = pending.finish(&enrolled.response, now).unwrap();
    assert_eq!(credential, enrolled.credential);
    assert_eq!(credential.body.attributes.get("role"), Some("sensor"));
    let trusted = TrustedAuthorities::new().with(authority.identity.history().clone());
    credential
        .verify(&trusted, &device.identifier(), device.history(), now)
        .unwrap();
    // The device rotates later and keeps its membership.
    let (rotated, _) = device.rotated(None, now.plus_secs(DAY)).unwrap();
    credential
        .verify(
            &trusted,
            &device.identifier(),
            rotated.history(),
            now.plus_secs(2 * DAY),
        )
        .unwrap();

    // Replaying the same request: its one-time prekey is consumed.
    assert_eq!(
        authority.handle(&request, now).err(),
        Some(Error::EnrollmentRefused(
            "one-time prekey unknown or already used"
        ))
    );
    // A second device with the same single-use token and a fresh prekey: the token is used up, and the
    // prekey it tried is not consumed (both or neither).
    let second = identity(SigningAlgorithm::Ed25519);
    let unused = {
        let state = authority.store.0.lock().unwrap();
        *state
            .one_time
            .iter()
            .find(|(_, (_, used))| !used)
            .expect("an unused prekey")
            .0
    };
    let (_, again) = DeviceEnrollment::start_with_prekey(
        &token,
        &bundle,
        &second,
        provider(),
        now,
        Some(unused),
    )
    .unwrap();
    let left = authority.one_time_left();
    assert_eq!(
        authority.handle(&again, now).err(),
        Some(Error::EnrollmentRefused("token already used"))
    );
    assert_eq!(authority.one_time_left(), left);
}

#[test]
fn wrong_secret_expired_token_tampering_and_forged_bundles_are_refused() {
    let authority = Authority::new(8);
    let device = identity(SigningAlgorithm::EcdsaP256);
    let now = T0.plus_secs(60);
    let token = authority.token(1, T0.plus_secs(600), "member");

    // A guessed secret for a real token id.
    let guessed = EnrollmentToken::from_parts(token.id, [9; 32], token.authority, b"").unwrap();
    let (_, request) =
        DeviceEnrollment::start(&guessed, &authority.bundle, &device, provider(), now).unwrap();
    assert_eq!(
        authority.handle(&request, now).err(),
        Some(Error::EnrollmentRefused("unknown token"))
    );
    // Expired.
    let (_, request) =
        DeviceEnrollment::start(&token, &authority.bundle, &device, provider(), now).unwrap();
    assert_eq!(
        authority.handle(&request, T0.plus_secs(600)).err(),
        Some(Error::EnrollmentRefused("token expired"))
    );
    // Every byte of a request flipped: refused, and nothing consumed.
    let left = authority.one_time_left();
    for i in 0..request.len() {
        let mut b = request.clone();
        b[i] ^= 0x01;
        assert!(
            authority.handle(&b, now).is_err(),
            "flipped byte {i} accepted"
        );
    }
    assert_eq!(authority.one_time_left(), left);
    // The untouched request still works (P-256 device), exactly once.
    let (pending, request) =
        DeviceEnrollment::start(&token, &authority.bundle, &device, provider(), now).unwrap();
    let enrolled = authority.handle(&request, now).unwrap();
    // A tampered response is refused by the device.
    let mut response = enrolled.response.clone();
    let last = response.len() - 1;
    response[last] ^= 1;
    assert_eq!(
        DeviceEnrollment::start(&token, &authority.bundle, &device, provider(), now)
            .unwrap()
            .0
            .finish(&enrolled.response, now)
            .err(),
        Some(Error::DecryptFailed),
        "another enrollment's keys do not open this response"
    );
    assert_eq!(
        pending.finish(&response, now).err(),
        Some(Error::DecryptFailed)
    );

    // A bundle signed by someone else, claiming the authority's history.
    let impostor = identity(SigningAlgorithm::Ed25519);
    let mut forged = authority.bundle.clone();
    forged.signature = impostor
        .vaults()
        .signing()
        .sign(impostor.primary_key(), &forged.body.signing_message())
        .unwrap();
    assert_eq!(
        DeviceEnrollment::start(&token, &forged, &device, provider(), now).err(),
        Some(Error::InvalidSignature)
    );
    // The impostor's own, valid bundle: not the authority the token names.
    let other = Authority::new(1);
    assert_eq!(
        DeviceEnrollment::start(&token, &other.bundle, &device, provider(), now).err(),
        Some(Error::UntrustedIssuer(other.identity.identifier()))
    );
    // An expired bundle.
    assert!(matches!(
        DeviceEnrollment::start(
            &token,
            &authority.bundle,
            &device,
            provider(),
            T0.plus_secs(7 * DAY)
        ),
        Err(Error::Expired(_))
    ));
}

#[test]
fn without_one_time_prekeys_a_replay_is_refused_by_the_request_hash() {
    let authority = Authority::new(0);
    let token = authority.token(3, T0.plus_secs(DAY), "member");
    let device = identity(SigningAlgorithm::Ed25519);
    let (pending, request) =
        DeviceEnrollment::start(&token, &authority.bundle, &device, provider(), T0).unwrap();
    let enrolled = authority.handle(&request, T0).unwrap();
    pending.finish(&enrolled.response, T0).unwrap();
    assert_eq!(
        authority.handle(&request, T0).err(),
        Some(Error::EnrollmentRefused("replayed request"))
    );
    // The multi-use token still enrolls another device.
    let other = identity(SigningAlgorithm::Ed25519);
    let (pending, request) =
        DeviceEnrollment::start(&token, &authority.bundle, &other, provider(), T0).unwrap();
    pending
        .finish(&authority.handle(&request, T0).unwrap().response, T0)
        .unwrap();
}

#[test]
fn devices_racing_for_one_single_use_token_exactly_one_wins() {
    let authority = Arc::new(Authority::new(100));
    let token = authority.token(1, T0.plus_secs(DAY), "member");
    let requests: Vec<Vec<u8>> = (1..=100)
        .map(|opk| {
            let device = identity(SigningAlgorithm::Ed25519);
            DeviceEnrollment::start_with_prekey(
                &token,
                &authority.bundle,
                &device,
                provider(),
                T0,
                Some(opk),
            )
            .unwrap()
            .1
        })
        .collect();
    let threads: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let authority = authority.clone();
            std::thread::spawn(move || authority.handle(&request, T0).is_ok())
        })
        .collect();
    let wins = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|won| *won)
        .count();
    assert_eq!(wins, 1);
    assert_eq!(authority.one_time_left(), 99);
    assert_eq!(authority.store.0.lock().unwrap().members.len(), 1);
}
