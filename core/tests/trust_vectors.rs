//! The shared trust vectors, `tests/vectors/trust.json`: credentials, delegation chains, a revocation list,
//! an enrollment exchange (token, prekey bundle, request, response) and policy cases, all made from fixed
//! seeds (Ed25519 and X25519 are deterministic), reproduced here byte for byte through the core's API.
//! `LATCHKEY_WRITE_VECTORS=1 cargo test -p latchkey-core --test trust_vectors` rewrites the file (after a
//! deliberate format change; say so in docs/PROTOCOL.md).

use latchkey_core::credential::{
    history_hash, Attributes, Caveats, Credential, CredentialBody, Delegation, RevocationBody,
    RevocationList, TrustedAuthorities,
};
use latchkey_core::crypto::{default_provider, Secret32};
use latchkey_core::enroll::{
    handle_request, DeviceEnrollment, EnrollmentClaim, EnrollmentStore, EnrollmentToken,
    OneTimePrekey, PrekeyBundle, PrekeyBundleBody, TokenGrant,
};
use latchkey_core::identity::{IdentityOptions, LocalIdentity, Vaults};
use latchkey_core::policy::{Environment, Policy, Scope};
use latchkey_core::vault::{KeyId, SoftwareVault};
use latchkey_core::wire::{Decode, Encode};
use latchkey_core::{Error, Timestamp};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

const T0: Timestamp = Timestamp(1_800_000_000);
const DAY: u64 = 86_400;
const KEY_VALIDITY: u64 = 365 * DAY;

fn seed(tag: u8) -> [u8; 32] {
    std::array::from_fn(|i| tag.wrapping_mul(31).wrapping_add(i as u8 * 7))
}

/// An identity from a signing seed and a static secret, created at T0 with one-year keys.
fn identity(tag: u8) -> LocalIdentity {
    let vault = Arc::new(SoftwareVault::new());
    let primary = vault.import_ed25519_seed(&seed(tag)).unwrap();
    let static_key = vault.import_x25519_secret(&seed(tag ^ 0x80)).unwrap();
    LocalIdentity::create_with_keys(
        Vaults::software(vault),
        IdentityOptions {
            key_validity_secs: KEY_VALIDITY,
            ..IdentityOptions::default()
        },
        primary,
        static_key,
        T0,
    )
    .unwrap()
}

struct OneShotStore {
    spk: KeyId,
    opk: KeyId,
    token_hash: [u8; 32],
    used: std::sync::Mutex<bool>,
}

impl EnrollmentStore for OneShotStore {
    fn signed_prekey(&self, id: u32) -> latchkey_core::Result<Option<KeyId>> {
        Ok((id == 1).then(|| self.spk.clone()))
    }
    fn one_time_prekey(&self, id: u32) -> latchkey_core::Result<Option<KeyId>> {
        Ok((id == 100 && !*self.used.lock().unwrap()).then(|| self.opk.clone()))
    }
    fn consume(&self, claim: &EnrollmentClaim<'_>) -> latchkey_core::Result<TokenGrant> {
        let mut used = self.used.lock().unwrap();
        if *used || claim.secret_hash != self.token_hash || claim.one_time_prekey != Some(100) {
            return Err(Error::EnrollmentRefused("vector store"));
        }
        *used = true;
        Ok(TokenGrant {
            attributes: Attributes::from_pairs([("role", "sensor"), ("site", "lyon")]).unwrap(),
            credential_validity_secs: 30 * DAY,
        })
    }
}

fn h(bytes: &[u8]) -> Value {
    Value::String(hex::encode(bytes))
}

fn generate() -> Value {
    let authority = identity(1);
    let device = identity(2);
    let owner = identity(3);
    let friend = identity(4);
    let valet = identity(5);

    // Credential.
    let credential = Credential::issue(
        &authority,
        CredentialBody {
            subject: device.identifier(),
            subject_history: history_hash(device.history()),
            issuer: authority.identifier(),
            attributes: Attributes::from_pairs([("role", "engineer")]).unwrap(),
            not_before: T0,
            not_after: T0.plus_secs(30 * DAY),
        },
    )
    .unwrap();

    // Delegation: one link (owner → friend), two links (→ valet).
    let one = Delegation::issue(
        &owner,
        friend.history(),
        Caveats::new(["car"], ["open", "start"], T0.plus_secs(DAY)).unwrap(),
    )
    .unwrap();
    let two = one
        .attenuate(
            &friend,
            valet.history(),
            Caveats::new(["car"], ["start"], T0.plus_secs(DAY / 2)).unwrap(),
        )
        .unwrap();

    // Revocation list.
    let mut body = RevocationBody::new(authority.identifier(), 7, T0.plus_secs(60));
    body.identifiers.insert(valet.identifier());
    body.credentials.insert(credential.id());
    body.delegations.insert(two.link_ids()[1]);
    let revocation = RevocationList::issue(&authority, body).unwrap();

    // Enrollment.
    let sc = authority.vaults().secure_channel().clone();
    let software = authority.vaults().software_vault().unwrap().clone();
    let (ik_secret, spk_secret, opk_secret) = (seed(10), seed(11), seed(12));
    let ik = software.import_x25519_secret(&ik_secret).unwrap();
    let spk = software.import_x25519_secret(&spk_secret).unwrap();
    let opk = software.import_x25519_secret(&opk_secret).unwrap();
    let bundle = PrekeyBundle::sign(
        &authority,
        PrekeyBundleBody {
            authority: authority.history().clone(),
            x3dh_key: sc.x25519_public_key(&ik).unwrap(),
            signed_prekey_id: 1,
            signed_prekey: sc.x25519_public_key(&spk).unwrap(),
            created_at: T0,
            expires_at: T0.plus_secs(7 * DAY),
            one_time_prekeys: vec![OneTimePrekey {
                id: 100,
                public: sc.x25519_public_key(&opk).unwrap(),
            }],
        },
    )
    .unwrap();
    let token =
        EnrollmentToken::from_parts([0x42; 16], seed(13), authority.identifier(), b"auth").unwrap();
    let ephemeral = seed(14);
    let now = T0.plus_secs(3600);
    let (pending, request) = DeviceEnrollment::start_with(
        &token,
        &bundle,
        &device,
        default_provider(),
        now,
        Some(100),
        Secret32::new(ephemeral),
    )
    .unwrap();
    let store = OneShotStore {
        spk,
        opk,
        token_hash: token.secret_hash(),
        used: std::sync::Mutex::new(false),
    };
    let enrolled =
        handle_request(&authority, &ik, &store, default_provider(), &request, now).unwrap();
    let enrolled_credential = pending.finish(&enrolled.response, now).unwrap();
    assert_eq!(enrolled_credential, enrolled.credential);

    // Policies: (source, environment, result) and (source, error).
    let env = Environment::new()
        .with(Scope::Subject, "role", "engineer")
        .with(Scope::Subject, "level", "3")
        .with(Scope::Resource, "name", "telemetry")
        .with(Scope::Action, "name", "read");
    let allow_cases = [
        r#"subject.role = "engineer" and resource.name in ["telemetry"] and action.name = "read""#,
        "subject.level < 10",
        "subject.level > 3",
        "subject.admin != \"yes\"",
        "not subject.admin = \"yes\"",
        "false and false or true",
        "exists subject.role and not exists subject.admin",
    ];
    let error_cases = [
        "subject.role = and",
        "(subject.role = \"a\"",
        "role = \"a\"",
    ];
    let policies: Vec<Value> = allow_cases
        .iter()
        .map(|src| json!({"source": src, "allows": Policy::parse(src).unwrap().evaluate(&env)}))
        .chain(error_cases.iter().map(|src| {
            let Err(Error::PolicySyntax(message)) = Policy::parse(src) else {
                panic!("{src} parsed")
            };
            json!({"source": src, "error": message})
        }))
        .collect();

    json!({
        "description": "Latchkey trust vectors (docs/PROTOCOL.md sections 11-14, docs/POLICY.md), reproduced by core/tests/trust_vectors.rs. Identities: LocalIdentity::create_with_keys with Ed25519 seed signing_seed and X25519 static secret, created at 1800000000, key validity 31536000 s. Seeds: seed(tag)[i] = (tag*31 + 7*i) mod 256; identity tags: authority 1, device 2, owner 3, friend 4, valet 5 (static secret from tag^0x80). Enrollment X25519 secrets: IK seed(10), SPK seed(11) id 1, OPK seed(12) id 100, token secret seed(13), device ephemeral seed(14), now 1800003600; the token grants role=sensor, site=lyon for 30 days.",
        "identities": {
            "authority": {"signing_seed": h(&seed(1)), "identifier": authority.identifier().to_string(), "history": h(&authority.history().to_bytes())},
            "device": {"signing_seed": h(&seed(2)), "identifier": device.identifier().to_string(), "history": h(&device.history().to_bytes())},
            "owner": {"signing_seed": h(&seed(3)), "identifier": owner.identifier().to_string(), "history": h(&owner.history().to_bytes())},
            "friend": {"signing_seed": h(&seed(4)), "identifier": friend.identifier().to_string(), "history": h(&friend.history().to_bytes())},
            "valet": {"signing_seed": h(&seed(5)), "identifier": valet.identifier().to_string(), "history": h(&valet.history().to_bytes())}
        },
        "credential": {
            "bytes": h(&credential.to_bytes()),
            "id": h(&credential.id()),
            "valid_at": T0.0 + DAY,
            "attributes": {"role": "engineer"}
        },
        "delegation": {
            "one_link": h(&one.to_bytes()),
            "two_links": h(&two.to_bytes()),
            "link_ids": two.link_ids().iter().map(|id| h(id)).collect::<Vec<_>>(),
            "valid_at": T0.0 + 3600
        },
        "revocation_list": h(&revocation.to_bytes()),
        "enrollment": {
            "x3dh_secret": h(&ik_secret),
            "signed_prekey_secret": h(&spk_secret),
            "one_time_prekey_secret": h(&opk_secret),
            "ephemeral_secret": h(&ephemeral),
            "now": now.0,
            "token": h(&token.to_bytes()),
            "token_secret_hash": h(&token.secret_hash()),
            "bundle": h(&bundle.to_bytes()),
            "request": h(&request),
            "response": h(&enrolled.response),
            "credential": h(&enrolled.credential.to_bytes())
        },
        "policies": {
            "environment": {
                "subject": {"role": "engineer", "level": "3"},
                "resource": {"name": "telemetry"},
                "action": {"name": "read"}
            },
            "cases": policies
        }
    })
}

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/trust.json")
}

#[test]
fn the_trust_vectors_are_reproduced_byte_for_byte() {
    let generated = generate();
    if std::env::var_os("LATCHKEY_WRITE_VECTORS").is_some() {
        std::fs::write(
            path(),
            serde_json::to_string_pretty(&generated).unwrap() + "\n",
        )
        .unwrap();
    }
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(path()).expect("tests/vectors/trust.json"))
            .unwrap();
    assert_eq!(
        generated, committed,
        "regenerate with LATCHKEY_WRITE_VECTORS=1 only for a deliberate change"
    );
}

#[test]
fn the_committed_vectors_decode_re_encode_and_verify() {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(path()).expect("tests/vectors/trust.json"))
            .unwrap();
    let bytes = |x: &Value| hex::decode(x.as_str().unwrap()).unwrap();
    let history = |name: &str| {
        latchkey_core::identity::ChangeHistory::import(&bytes(&v["identities"][name]["history"]))
            .unwrap()
    };
    let (authority, device, owner, valet) = (
        history("authority"),
        history("device"),
        history("owner"),
        history("valet"),
    );

    let cred_bytes = bytes(&v["credential"]["bytes"]);
    let cred = Credential::from_bytes(&cred_bytes).unwrap();
    assert_eq!(cred.to_bytes(), cred_bytes);
    assert_eq!(cred.id().to_vec(), bytes(&v["credential"]["id"]));
    let trusted = TrustedAuthorities::new().with(authority.clone());
    let at = Timestamp(v["credential"]["valid_at"].as_u64().unwrap());
    assert_eq!(
        cred.verify(&trusted, &device.identifier(), &device, at)
            .unwrap()
            .get("role"),
        Some("engineer")
    );

    let two_bytes = bytes(&v["delegation"]["two_links"]);
    let two = Delegation::from_bytes(&two_bytes).unwrap();
    assert_eq!(two.to_bytes(), two_bytes);
    let owners = TrustedAuthorities::new().with(owner);
    let at = Timestamp(v["delegation"]["valid_at"].as_u64().unwrap());
    two.authorize(&owners, &valet.identifier(), "car", "start", at)
        .unwrap();
    let ids: Vec<Vec<u8>> = v["delegation"]["link_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(bytes)
        .collect();
    assert_eq!(
        two.link_ids()
            .iter()
            .map(|i| i.to_vec())
            .collect::<Vec<_>>(),
        ids
    );

    let list_bytes = bytes(&v["revocation_list"]);
    let list = RevocationList::from_bytes(&list_bytes).unwrap();
    assert_eq!(list.to_bytes(), list_bytes);
    list.verify(&trusted, Timestamp(T0.0 + 60)).unwrap();

    let e = &v["enrollment"];
    let token = EnrollmentToken::from_bytes(&bytes(&e["token"])).unwrap();
    assert_eq!(token.to_bytes().len(), 86);
    assert_eq!(token.secret_hash().to_vec(), bytes(&e["token_secret_hash"]));
    let bundle = PrekeyBundle::from_bytes(&bytes(&e["bundle"])).unwrap();
    bundle
        .verify(
            &authority.identifier(),
            Timestamp(e["now"].as_u64().unwrap()),
        )
        .unwrap();
    let enrolled = Credential::from_bytes(&bytes(&e["credential"])).unwrap();
    enrolled
        .verify(
            &trusted,
            &device.identifier(),
            &device,
            Timestamp(e["now"].as_u64().unwrap()),
        )
        .unwrap();

    let env_json = &v["policies"]["environment"];
    let mut env = Environment::new();
    for (scope, key) in [
        (Scope::Subject, "subject"),
        (Scope::Resource, "resource"),
        (Scope::Action, "action"),
    ] {
        for (name, value) in env_json[key].as_object().unwrap() {
            env.set(scope, name.clone(), value.as_str().unwrap());
        }
    }
    for case in v["policies"]["cases"].as_array().unwrap() {
        let source = case["source"].as_str().unwrap();
        match (case.get("allows"), case.get("error")) {
            (Some(allows), _) => assert_eq!(
                Policy::parse(source).unwrap().evaluate(&env),
                allows.as_bool().unwrap(),
                "{source}"
            ),
            (_, Some(error)) => assert_eq!(
                Policy::parse(source),
                Err(Error::PolicySyntax(error.as_str().unwrap().to_string()))
            ),
            _ => panic!("bad case"),
        }
    }
}
