//! Fixtures and seeds of the trust targets (`decode_trust`, `decode_enroll`, `decode_authority`,
//! `policy_parse`) from `tests/vectors/trust.json` (and `authority.json`): the vector histories as trusted authorities and owners, the enrollment
//! authority rebuilt from the vector seeds (its X3DH, signed and one-time prekeys), and the vector bytes.

use crate::seeds::Seed;
use crate::InputBuilder;
use latchkey_core::credential::TrustedAuthorities;
use latchkey_core::enroll::{EnrollmentClaim, EnrollmentStore, TokenGrant};
use latchkey_core::identity::{ChangeHistory, IdentityOptions, LocalIdentity, Vaults};
use latchkey_core::vault::{KeyId, SoftwareVault};
use latchkey_core::{Error, Timestamp};
use serde_json::Value;
use std::sync::{Arc, LazyLock};

const TRUST_JSON: &str = include_str!("../../tests/vectors/trust.json");
const AUTHORITY_JSON: &str = include_str!("../../tests/vectors/authority.json");

/// The parsed vectors, and what the targets need from them.
pub struct TrustVectors {
    pub json: Value,
    pub authority: ChangeHistory,
    pub device: ChangeHistory,
    pub owner: ChangeHistory,
    pub valet: ChangeHistory,
    /// authority and owner, as a verifier that trusts both.
    pub trusted: TrustedAuthorities,
}

fn hex_at(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("hex")
}

pub fn vectors() -> &'static TrustVectors {
    static V: LazyLock<TrustVectors> = LazyLock::new(|| {
        let json: Value = serde_json::from_str(TRUST_JSON).expect("trust.json");
        let history = |name: &str| {
            ChangeHistory::import(&hex_at(&json["identities"][name]["history"])).expect("history")
        };
        let (authority, device, owner, valet) = (
            history("authority"),
            history("device"),
            history("owner"),
            history("valet"),
        );
        let trusted = TrustedAuthorities::new()
            .with(authority.clone())
            .with(owner.clone());
        TrustVectors {
            json,
            authority,
            device,
            owner,
            valet,
            trusted,
        }
    });
    &V
}

pub fn bytes(path: &[&str]) -> Vec<u8> {
    let mut v = &vectors().json;
    for p in path {
        v = &v[*p];
    }
    hex_at(v)
}

/// The vector enrollment authority: identity from `seed(1)`, prekeys from the vector secrets.
pub struct VectorAuthority {
    pub identity: LocalIdentity,
    pub x3dh: KeyId,
    pub store: VectorStore,
}

/// Knows the vector token (its hash), signed prekey 1 and one-time prekey 100; consumes nothing, so every
/// fuzz input sees the same state.
pub struct VectorStore {
    spk: KeyId,
    opk: KeyId,
    token_hash: [u8; 32],
}

impl EnrollmentStore for VectorStore {
    fn signed_prekey(&self, id: u32) -> latchkey_core::Result<Option<KeyId>> {
        Ok((id == 1).then(|| self.spk.clone()))
    }
    fn one_time_prekey(&self, id: u32) -> latchkey_core::Result<Option<KeyId>> {
        Ok((id == 100).then(|| self.opk.clone()))
    }
    fn consume(&self, claim: &EnrollmentClaim<'_>) -> latchkey_core::Result<TokenGrant> {
        if claim.secret_hash != self.token_hash {
            return Err(Error::EnrollmentRefused("unknown token"));
        }
        Ok(TokenGrant {
            attributes: latchkey_core::credential::Attributes::from_pairs([
                ("role", "sensor"),
                ("site", "lyon"),
            ])?,
            credential_validity_secs: 30 * 86_400,
        })
    }
}

fn seed32(tag: u8) -> [u8; 32] {
    std::array::from_fn(|i| tag.wrapping_mul(31).wrapping_add(i as u8 * 7))
}

pub fn authority() -> &'static VectorAuthority {
    static A: LazyLock<VectorAuthority> = LazyLock::new(|| {
        let vault = Arc::new(SoftwareVault::new());
        let primary = vault.import_ed25519_seed(&seed32(1)).expect("seed");
        let static_key = vault.import_x25519_secret(&seed32(0x81)).expect("static");
        let identity = LocalIdentity::create_with_keys(
            Vaults::software(vault.clone()),
            IdentityOptions {
                key_validity_secs: 365 * 86_400,
                ..IdentityOptions::default()
            },
            primary,
            static_key,
            Timestamp(1_800_000_000),
        )
        .expect("identity");
        assert_eq!(identity.history(), &vectors().authority, "vector authority");
        let key = |field: &str| {
            let secret: [u8; 32] = bytes(&["enrollment", field]).try_into().expect("32 bytes");
            vault.import_x25519_secret(&secret).expect("x25519")
        };
        let token_hash = bytes(&["enrollment", "token_secret_hash"])
            .try_into()
            .expect("32");
        VectorAuthority {
            identity,
            x3dh: key("x3dh_secret"),
            store: VectorStore {
                spk: key("signed_prekey_secret"),
                opk: key("one_time_prekey_secret"),
                token_hash,
            },
        }
    });
    &A
}

/// Seeds of the trust targets.
pub fn seeds(out: &mut Vec<Seed>) {
    let v = vectors();
    let mut add = |target: &'static str, name: &str, data: Vec<u8>| {
        out.push(Seed {
            target,
            name: name.to_string(),
            data,
        })
    };
    let at = |x: &Value| x.as_u64().expect("time");
    for (selector, name, path, now) in [
        (
            0u8,
            "credential",
            vec!["credential", "bytes"],
            at(&v.json["credential"]["valid_at"]),
        ),
        (
            1,
            "delegation-1",
            vec!["delegation", "one_link"],
            at(&v.json["delegation"]["valid_at"]),
        ),
        (
            1,
            "delegation-2",
            vec!["delegation", "two_links"],
            at(&v.json["delegation"]["valid_at"]),
        ),
        (
            2,
            "revocation",
            vec!["revocation_list"],
            at(&v.json["delegation"]["valid_at"]),
        ),
    ] {
        add(
            "decode_trust",
            name,
            InputBuilder::new()
                .u8(selector)
                .u64(now)
                .bytes(&bytes(&path))
                .build(),
        );
    }
    let now = at(&v.json["enrollment"]["now"]);
    for (selector, name) in [
        (0u8, "token"),
        (1, "bundle"),
        (2, "request"),
        (3, "response"),
    ] {
        add(
            "decode_enroll",
            name,
            InputBuilder::new()
                .u8(selector)
                .u64(now)
                .bytes(&bytes(&["enrollment", name]))
                .build(),
        );
    }
    // decode_authority: every message of tests/vectors/authority.json behind its decoder's selector.
    let authority: Value = serde_json::from_str(AUTHORITY_JSON).expect("authority.json");
    let selectors = [
        "AuthorityRequest",
        "EnrollServiceRequest",
        "AuthorityAnswer<Credential>",
        "AuthorityAnswer<PrekeyBundle>",
        "AuthorityAnswer<EnrollmentResponse>",
        "EnrollmentEnvelope",
        "MailboxRequest",
        "MailboxReply",
    ];
    for section in ["authority", "mailbox"] {
        for case in authority[section].as_array().expect("vectors") {
            let message = case["message"].as_str().expect("message");
            let selector = selectors
                .iter()
                .position(|s| *s == message)
                .expect("known message") as u8;
            let name = case["name"].as_str().expect("name").replace(' ', "-");
            add(
                "decode_authority",
                &format!("{section}-{name}"),
                InputBuilder::new()
                    .u8(selector)
                    .bytes(&hex_at(&case["bytes"]))
                    .build(),
            );
        }
    }
    for (k, case) in v.json["policies"]["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .enumerate()
    {
        add(
            "policy_parse",
            &format!("case-{k}"),
            case["source"].as_str().expect("source").as_bytes().to_vec(),
        );
    }
}
