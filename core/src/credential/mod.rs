//! Credentials, delegation chains and revocation lists: who an authority says a peer is, what an owner lets
//! another identity do, and what an authority has withdrawn. Pure and sans-IO: every check takes `now`.
//!
//! # Credentials ([`Credential`])
//!
//! An authority (an identity the verifier names in [`TrustedAuthorities`]) signs, with its current primary
//! identity key (through a [`SigningVault`]), a statement about a **subject**: its [`Identifier`], the hash of
//! the subject's history as the authority saw it ([`history_hash`], the hash of its last change), a small map
//! of string attributes ([`Attributes`]) and a validity window. The credential id is not carried: it is the
//! first 16 bytes of the hash of the signed body ([`Credential::id`]), so a revocation list can name it.
//! The bytes are in `wire` (`docs/PROTOCOL.md` section 11); a typical credential (one attribute of ~14 bytes,
//! Ed25519) is 193 bytes.
//!
//! ```text
//! let cred = Credential::issue(&authority, CredentialBody { subject, subject_history, issuer, attributes,
//!                              not_before, not_after })?;             // authority: &LocalIdentity
//! let bytes = cred.to_bytes();                                        // ≤ 200 B typically
//! let cred = Credential::from_bytes(&bytes)?;                         // decode (no checks beyond syntax)
//! let ok = cred.verify(&authorities, &peer.identifier, &peer.history, now)?;  // → &Attributes
//! ```
//!
//! [`Credential::verify`] checks, in this order: the issuer is a trusted authority (`UntrustedIssuer`), the
//! signature is by that authority's **current** primary key (`InvalidCredential`: after an authority rotates,
//! it re-issues; a rotated-away key may be why it rotated), the window (`Expired`, with
//! [`MAX_CLOCK_SKEW_SECS`] allowed before `not_before`), and the subject: the presenting peer's identifier
//! is the subject and its verified history **contains** the change named by `subject_history`
//! (`SubjectMismatch`). Because each change names the hash of the previous one, containing that change means
//! the peer's history is the enrolled history, equal or extended by rotations: a device that rotates its
//! identity key keeps its membership, while a fork that drops the enrolled change does not match (and the
//! pinned-history store refuses forks anyway).
//!
//! Submodules: [`delegation`] (attenuated, offline-verifiable delegation chains), [`revocation`]
//! (authority-signed, sequence-numbered revocation lists).

use crate::crypto::sig;
use crate::error::{Error, Result};
use crate::identity::{ChangeHistory, Identifier, LocalIdentity, MAX_CLOCK_SKEW_SECS};
use crate::prelude::*;
use crate::time::Timestamp;
use crate::vault::{verify_signature, KeyId, PublicKey, Signature, SigningVault};
use crate::wire::Encode;
use alloc::collections::BTreeMap;

pub mod delegation;
pub mod revocation;

pub use delegation::{Caveats, Delegation, DelegationLink, LinkBody, MAX_LINKS};
pub use revocation::{Installed, RevocationBody, RevocationList, RevocationState};

/// Most attributes one credential carries.
pub const MAX_ATTRIBUTES: usize = 16;
/// Longest attribute name, in bytes (`[a-z0-9_.-]`, starting with a letter).
pub const MAX_ATTRIBUTE_NAME_LEN: usize = 32;
/// Longest attribute value, in bytes of UTF-8.
pub const MAX_ATTRIBUTE_VALUE_LEN: usize = 128;
/// Length of credential, delegation-link and revocation ids.
pub const ID_LEN: usize = 16;

/// Domain separation of what issuers sign and what ids hash.
pub(crate) const CREDENTIAL_DOMAIN: &[u8] = b"latchkey/credential/v1";
pub(crate) const CREDENTIAL_ID_DOMAIN: &[u8] = b"latchkey/credential-id/v1";

/// The hash that names a history's current state: the hash of its last change (`ChangeData::hash`). A
/// credential binds to it; the subject's later rotations extend the history and keep that change in it.
pub fn history_hash(history: &ChangeHistory) -> [u8; 32] {
    history
        .changes()
        .last()
        .expect("a verified history is never empty")
        .data
        .hash()
}

/// Whether `history` contains the change whose hash is `hash` (it is that history's state, or one it was
/// extended from).
pub fn history_contains(history: &ChangeHistory, hash: &[u8; 32]) -> bool {
    history.changes().iter().any(|c| &c.data.hash() == hash)
}

/// A small sorted map of attribute names to string values, within the limits above. Canonical: one map,
/// one encoding (names in ascending byte order, no duplicates).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Attributes(BTreeMap<String, String>);

impl Attributes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a map from pairs, checking every limit (`InvalidCredential` names the broken rule).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        let mut attributes = Attributes::new();
        for (k, v) in pairs {
            attributes.insert(k, v)?;
        }
        Ok(attributes)
    }

    /// Adds or replaces one attribute, checking the limits.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) -> Result<()> {
        let (name, value) = (name.into(), value.into());
        check_attribute_name(&name)?;
        if value.len() > MAX_ATTRIBUTE_VALUE_LEN {
            return Err(Error::InvalidCredential("attribute value too long"));
        }
        if !self.0.contains_key(&name) && self.0.len() >= MAX_ATTRIBUTES {
            return Err(Error::InvalidCredential("too many attributes"));
        }
        self.0.insert(name, value);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

/// Attribute (and policy) names: 1 to 32 bytes of `[a-z0-9_.-]`, the first a lower-case letter.
pub fn check_attribute_name(name: &str) -> Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > MAX_ATTRIBUTE_NAME_LEN {
        return Err(Error::InvalidCredential("attribute name length"));
    }
    if !b[0].is_ascii_lowercase()
        || !b
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_.-".contains(c))
    {
        return Err(Error::InvalidCredential(
            "attribute name must be [a-z][a-z0-9_.-]*",
        ));
    }
    Ok(())
}

/// What an issuer signs about a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialBody {
    pub subject: Identifier,
    /// [`history_hash`] of the subject's history when the credential was issued.
    pub subject_history: [u8; 32],
    pub issuer: Identifier,
    pub attributes: Attributes,
    pub not_before: Timestamp,
    /// First second at which the credential is no longer valid.
    pub not_after: Timestamp,
}

impl CredentialBody {
    /// The bytes the issuer signs: the domain, then the body's encoding.
    pub fn signing_message(&self) -> Vec<u8> {
        let mut msg = CREDENTIAL_DOMAIN.to_vec();
        self.encode_into(&mut msg);
        msg
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.not_after <= self.not_before {
            return Err(Error::InvalidCredential(
                "not_after is not after not_before",
            ));
        }
        Ok(())
    }
}

/// An issuer's signed statement about a subject (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub body: CredentialBody,
    pub signature: Signature,
}

impl Credential {
    /// Signs `body` with `issuer`'s current primary key. `body.issuer` must be `issuer`'s identifier.
    pub fn issue(issuer: &LocalIdentity, body: CredentialBody) -> Result<Self> {
        if body.issuer != issuer.identifier() {
            return Err(Error::InvalidCredential(
                "issuer is not the signing identity",
            ));
        }
        Self::issue_with(
            issuer.vaults().signing().as_ref(),
            issuer.primary_key(),
            body,
        )
    }

    /// Signs `body` with the key `key` in `vault` (the caller vouches that it is `body.issuer`'s current
    /// primary key; verification refuses anything else).
    pub fn issue_with(vault: &dyn SigningVault, key: &KeyId, body: CredentialBody) -> Result<Self> {
        body.check()?;
        let signature = vault.sign(key, &body.signing_message())?;
        Ok(Credential { body, signature })
    }

    /// The credential id: the first 16 bytes of SHA-256 over a domain and the signed body.
    pub fn id(&self) -> [u8; ID_LEN] {
        let hash = sig::sha256(&[CREDENTIAL_ID_DOMAIN, &self.body.to_bytes()]);
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&hash[..ID_LEN]);
        id
    }

    /// Signature and window only (issuer trusted, subject not checked): see [`Credential::verify`].
    pub fn verify_issuer(&self, authorities: &TrustedAuthorities, now: Timestamp) -> Result<()> {
        self.body.check()?;
        let key = authorities
            .key_of(&self.body.issuer)
            .ok_or(Error::UntrustedIssuer(self.body.issuer))?;
        verify_signature(key, &self.body.signing_message(), &self.signature).map_err(|_| {
            Error::InvalidCredential("not signed by the issuer's current primary key")
        })?;
        if now.plus_secs(MAX_CLOCK_SKEW_SECS) < self.body.not_before {
            return Err(Error::Expired("credential not yet valid"));
        }
        if now >= self.body.not_after {
            return Err(Error::Expired("credential"));
        }
        Ok(())
    }

    /// The full check for a credential a peer presented: [`Credential::verify_issuer`], then the subject is
    /// `peer` and `peer_history` (verified, e.g. from the handshake) contains the credential's history hash.
    /// Returns the attributes the verifier may now rely on.
    pub fn verify(
        &self,
        authorities: &TrustedAuthorities,
        peer: &Identifier,
        peer_history: &ChangeHistory,
        now: Timestamp,
    ) -> Result<&Attributes> {
        self.verify_issuer(authorities, now)?;
        if &self.body.subject != peer || &peer_history.identifier() != peer {
            return Err(Error::SubjectMismatch(
                "credential is about another identity",
            ));
        }
        if !history_contains(peer_history, &self.body.subject_history) {
            return Err(Error::SubjectMismatch(
                "the peer's history does not contain the credential's history",
            ));
        }
        Ok(&self.body.attributes)
    }
}

/// The authorities a node trusts to issue credentials, sign delegation roots (owners) and revocation lists:
/// each by its verified history, whose current primary key is the one accepted.
#[derive(Debug, Clone, Default)]
pub struct TrustedAuthorities {
    by_id: BTreeMap<Identifier, ChangeHistory>,
}

impl TrustedAuthorities {
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the identity of `history` (a verified history); a later, extended history of the same
    /// identity replaces it (the caller checks the extension, e.g. with `check_pinned`).
    pub fn add(&mut self, history: ChangeHistory) {
        self.by_id.insert(history.identifier(), history);
    }

    pub fn with(mut self, history: ChangeHistory) -> Self {
        self.add(history);
        self
    }

    pub fn remove(&mut self, id: &Identifier) -> Option<ChangeHistory> {
        self.by_id.remove(id)
    }

    pub fn contains(&self, id: &Identifier) -> bool {
        self.by_id.contains_key(id)
    }

    /// The current primary key of a trusted authority.
    pub fn key_of(&self, id: &Identifier) -> Option<&PublicKey> {
        self.by_id.get(id).map(|h| h.primary_public_key())
    }

    pub fn history_of(&self, id: &Identifier) -> Option<&ChangeHistory> {
        self.by_id.get(id)
    }

    pub fn identifiers(&self) -> impl Iterator<Item = &Identifier> {
        self.by_id.keys()
    }
}
