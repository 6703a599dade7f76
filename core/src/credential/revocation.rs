//! Revocation lists: an authority's signed, sequence-numbered statement of what it has withdrawn —
//! identifiers (members), credential ids ([`Credential::id`]) and delegation link ids
//! ([`Delegation::link_ids`]) — and the monotonic rule a node applies when a new list arrives.
//!
//! ```text
//! let list = RevocationList::issue(&authority, RevocationBody { issuer, sequence: 7, issued_at: now,
//!                                  identifiers, credentials, delegations })?;
//! let mut state = RevocationState::new();
//! state.install(list, &authorities, now)?;        // Installed::New / Installed::Unchanged, or an error
//! state.check_peer(&peer_identifier)?;            // Revoked("identifier")
//! state.check_credential(&credential)?;           // Revoked("credential") (or its subject)
//! state.check_delegation(&chain)?;                // Revoked("delegation link") (or a delegate)
//! ```
//!
//! [`RevocationState::install`] refuses a list from an issuer that is not a trusted authority
//! (`UntrustedIssuer`), one not signed by that authority's current primary key (`InvalidSignature`), one
//! dated more than [`MAX_CLOCK_SKEW_SECS`] in the future (`Expired`), and — the monotonic rule — a list whose
//! sequence number is below the installed one, or equal to it with different contents
//! (`StaleRevocationList`): an older list never replaces a newer one, so a relay or an attacker replaying an
//! old list cannot un-revoke anything. The runtime persists the installed lists (at least each issuer's
//! highest sequence) so the rule survives restarts. Lists are complete, not deltas: each names everything
//! still revoked. Bytes: `docs/PROTOCOL.md` section 13.

use super::{Credential, Delegation, TrustedAuthorities, ID_LEN};
use crate::error::{Error, Result};
use crate::identity::{Identifier, LocalIdentity, MAX_CLOCK_SKEW_SECS};
use crate::prelude::*;
use crate::time::Timestamp;
use crate::vault::{verify_signature, KeyId, Signature, SigningVault};
use crate::wire::Encode;
use alloc::collections::{BTreeMap, BTreeSet};

/// Most entries (identifiers + credential ids + delegation ids) one list may hold.
pub const MAX_REVOKED: usize = 1 << 20;

pub(crate) const REVOCATION_DOMAIN: &[u8] = b"latchkey/revocation-list/v1";

/// What an authority signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationBody {
    pub issuer: Identifier,
    /// Strictly increasing per issuer.
    pub sequence: u64,
    pub issued_at: Timestamp,
    pub identifiers: BTreeSet<Identifier>,
    pub credentials: BTreeSet<[u8; ID_LEN]>,
    pub delegations: BTreeSet<[u8; ID_LEN]>,
}

impl RevocationBody {
    /// An empty list of `issuer` with this sequence number and date.
    pub fn new(issuer: Identifier, sequence: u64, issued_at: Timestamp) -> Self {
        RevocationBody {
            issuer,
            sequence,
            issued_at,
            identifiers: BTreeSet::new(),
            credentials: BTreeSet::new(),
            delegations: BTreeSet::new(),
        }
    }

    pub fn signing_message(&self) -> Vec<u8> {
        let mut msg = REVOCATION_DOMAIN.to_vec();
        self.encode_into(&mut msg);
        msg
    }

    pub fn len(&self) -> usize {
        self.identifiers.len() + self.credentials.len() + self.delegations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A signed revocation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationList {
    pub body: RevocationBody,
    pub signature: Signature,
}

impl RevocationList {
    /// Signs `body` with `authority`'s current primary key (`body.issuer` must be its identifier).
    pub fn issue(authority: &LocalIdentity, body: RevocationBody) -> Result<Self> {
        if body.issuer != authority.identifier() {
            return Err(Error::InvalidState(
                "revocation issuer is not the signing identity",
            ));
        }
        Self::issue_with(
            authority.vaults().signing().as_ref(),
            authority.primary_key(),
            body,
        )
    }

    /// Signs `body` with `key` in `vault`.
    pub fn issue_with(vault: &dyn SigningVault, key: &KeyId, body: RevocationBody) -> Result<Self> {
        if body.len() > MAX_REVOKED {
            return Err(Error::MessageTooLarge {
                len: body.len(),
                max: MAX_REVOKED,
            });
        }
        let signature = vault.sign(key, &body.signing_message())?;
        Ok(RevocationList { body, signature })
    }

    /// Issuer trusted, signature by its current primary key, not dated in the future.
    pub fn verify(&self, authorities: &TrustedAuthorities, now: Timestamp) -> Result<()> {
        let key = authorities
            .key_of(&self.body.issuer)
            .ok_or(Error::UntrustedIssuer(self.body.issuer))?;
        verify_signature(key, &self.body.signing_message(), &self.signature)?;
        if self.body.issued_at > now.plus_secs(MAX_CLOCK_SKEW_SECS) {
            return Err(Error::Expired("revocation list dated in the future"));
        }
        Ok(())
    }
}

/// What [`RevocationState::install`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// The list is newer than what was installed for its issuer (or the first): it is now in force.
    New,
    /// The same list was already installed.
    Unchanged,
}

/// The revocation lists in force on a node: the newest verified list of each trusted authority.
#[derive(Debug, Clone, Default)]
pub struct RevocationState {
    lists: BTreeMap<Identifier, RevocationList>,
}

impl RevocationState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Verifies `list` and installs it under the monotonic rule (see the module documentation).
    pub fn install(
        &mut self,
        list: RevocationList,
        authorities: &TrustedAuthorities,
        now: Timestamp,
    ) -> Result<Installed> {
        list.verify(authorities, now)?;
        if let Some(current) = self.lists.get(&list.body.issuer) {
            let (have, got) = (current.body.sequence, list.body.sequence);
            if got < have || (got == have && current.body != list.body) {
                return Err(Error::StaleRevocationList {
                    current: have,
                    presented: got,
                });
            }
            if got == have {
                return Ok(Installed::Unchanged);
            }
        }
        self.lists.insert(list.body.issuer, list);
        Ok(Installed::New)
    }

    /// The installed sequence number of `issuer`'s list.
    pub fn sequence(&self, issuer: &Identifier) -> Option<u64> {
        self.lists.get(issuer).map(|l| l.body.sequence)
    }

    /// The installed list of `issuer`.
    pub fn list(&self, issuer: &Identifier) -> Option<&RevocationList> {
        self.lists.get(issuer)
    }

    /// Whether any list in force names `id` as a revoked identifier.
    pub fn is_revoked_identifier(&self, id: &Identifier) -> bool {
        self.lists.values().any(|l| l.body.identifiers.contains(id))
    }

    /// `Revoked("identifier")` when a list in force names the peer.
    pub fn check_peer(&self, id: &Identifier) -> Result<()> {
        if self.is_revoked_identifier(id) {
            return Err(Error::Revoked("identifier"));
        }
        Ok(())
    }

    /// `Revoked` when a list in force names the credential's id or its subject.
    pub fn check_credential(&self, credential: &Credential) -> Result<()> {
        let id = credential.id();
        if self
            .lists
            .values()
            .any(|l| l.body.credentials.contains(&id))
        {
            return Err(Error::Revoked("credential"));
        }
        self.check_peer(&credential.body.subject)
    }

    /// `Revoked` when a list in force names a link of the chain, or the owner or a delegate of it.
    pub fn check_delegation(&self, delegation: &Delegation) -> Result<()> {
        let ids = delegation.link_ids();
        if self
            .lists
            .values()
            .any(|l| ids.iter().any(|id| l.body.delegations.contains(id)))
        {
            return Err(Error::Revoked("delegation link"));
        }
        self.check_peer(&delegation.owner)?;
        for link in &delegation.links {
            self.check_peer(&link.body.delegate)?;
        }
        Ok(())
    }
}
