//! Delegation chains: an owner lets another identity use a resource, narrowed by caveats; a holder may pass
//! a narrower grant on; anyone who trusts the owner verifies the whole chain offline.
//!
//! A [`Delegation`] is the owner's identifier and a list of at most [`MAX_LINKS`] [`DelegationLink`]s. Link
//! `i` names a **delegate** (identifier and the public key the delegate signs the next link with) and
//! [`Caveats`] (resources, actions, `not_after`), and is signed by the owner (link 0) or by the key that link
//! `i-1` delegated to. Each signature covers the hash of everything before it, so links cannot be reordered,
//! dropped from the middle or moved to another chain. Bytes: `docs/PROTOCOL.md` section 12; a one-link chain
//! with two actions is about 190 bytes.
//!
//! ```text
//! let d = Delegation::issue(&owner, friend_history, Caveats::new(["car"], ["open", "start"], day1_end)?)?;
//! let d2 = d.attenuate(&friend, other_history, Caveats::new(["car"], ["open"], noon)?)?;  // narrower only
//! d2.authorize(&owners, &presenting_peer, "car", "open", now)?;   // on the verifier (the car)
//! ```
//!
//! [`Delegation::verify`] refuses: an owner the verifier does not trust (`UntrustedIssuer`), a link whose
//! signature is not by the owner or previous delegate (`InvalidDelegation`: a forged or re-ordered link), a
//! link that grants a resource or action its predecessor did not or a later `not_after` (`CaveatWidened`),
//! a chain past its `not_after` (`Expired`), and a presenter that is not the last delegate
//! (`SubjectMismatch`). [`Delegation::authorize`] then requires the resource and action to be granted
//! (`PolicyDenied`). Revocation lists name links by [`Delegation::link_ids`]: revoking one link revokes every
//! chain through it.
//!
//! The delegate's key is fixed in the link that names it: a delegate that rotates its identity key can still
//! present the chain (the channel authenticates its identifier), but attenuates only with the key it was
//! granted under, or after the grant is re-issued.

use super::{TrustedAuthorities, ID_LEN};
use crate::crypto::sig;
use crate::error::{Error, Result};
use crate::identity::{ChangeHistory, Identifier, LocalIdentity};
use crate::prelude::*;
use crate::time::Timestamp;
use crate::vault::{verify_signature, KeyId, PublicKey, Signature, SigningVault};
use crate::wire::Encode;
use alloc::collections::BTreeSet;

/// Most links in one chain.
pub const MAX_LINKS: usize = 8;
/// Most resources, and most actions, in one link's caveats.
pub const MAX_CAVEAT_ITEMS: usize = 16;
/// Longest resource or action name, in bytes of UTF-8.
pub const MAX_CAVEAT_ITEM_LEN: usize = 64;

pub(crate) const LINK_DOMAIN: &[u8] = b"latchkey/delegation-link/v1";
pub(crate) const CHAIN_ROOT_DOMAIN: &[u8] = b"latchkey/delegation-root/v1";
pub(crate) const CHAIN_HASH_DOMAIN: &[u8] = b"latchkey/delegation-hash/v1";

/// What a link grants: these resources, these actions, until `not_after` (exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caveats {
    pub(crate) resources: BTreeSet<String>,
    pub(crate) actions: BTreeSet<String>,
    pub not_after: Timestamp,
}

impl Caveats {
    /// Caveats from lists of resources and actions (each 1 to 16 names of 1 to 64 bytes).
    pub fn new<R: Into<String>, A: Into<String>>(
        resources: impl IntoIterator<Item = R>,
        actions: impl IntoIterator<Item = A>,
        not_after: Timestamp,
    ) -> Result<Self> {
        let caveats = Caveats {
            resources: resources.into_iter().map(Into::into).collect(),
            actions: actions.into_iter().map(Into::into).collect(),
            not_after,
        };
        caveats.check()?;
        Ok(caveats)
    }

    pub(crate) fn check(&self) -> Result<()> {
        for set in [&self.resources, &self.actions] {
            if set.is_empty() || set.len() > MAX_CAVEAT_ITEMS {
                return Err(Error::InvalidDelegation(
                    "a caveat lists 1 to 16 resources and 1 to 16 actions",
                ));
            }
            if set
                .iter()
                .any(|s| s.is_empty() || s.len() > MAX_CAVEAT_ITEM_LEN)
            {
                return Err(Error::InvalidDelegation(
                    "resource and action names are 1 to 64 bytes",
                ));
            }
        }
        Ok(())
    }

    pub fn resources(&self) -> impl Iterator<Item = &str> {
        self.resources.iter().map(String::as_str)
    }

    pub fn actions(&self) -> impl Iterator<Item = &str> {
        self.actions.iter().map(String::as_str)
    }

    pub fn allows(&self, resource: &str, action: &str, now: Timestamp) -> bool {
        now < self.not_after && self.resources.contains(resource) && self.actions.contains(action)
    }

    /// `Ok` when `self` grants nothing `parent` does not; otherwise which caveat widened.
    pub fn check_narrower_than(&self, parent: &Caveats) -> Result<()> {
        if !self.resources.is_subset(&parent.resources) {
            return Err(Error::CaveatWidened(
                "a resource the previous link does not grant",
            ));
        }
        if !self.actions.is_subset(&parent.actions) {
            return Err(Error::CaveatWidened(
                "an action the previous link does not grant",
            ));
        }
        if self.not_after > parent.not_after {
            return Err(Error::CaveatWidened(
                "a later expiry than the previous link",
            ));
        }
        Ok(())
    }
}

/// The signed part of a link: to whom, with which key, under which caveats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkBody {
    pub delegate: Identifier,
    /// The key the delegate signs the next link with (its primary key when it was granted).
    pub delegate_key: PublicKey,
    pub caveats: Caveats,
}

/// One signed link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationLink {
    pub body: LinkBody,
    pub signature: Signature,
}

/// A chain of links rooted at an owner (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    pub owner: Identifier,
    pub links: Vec<DelegationLink>,
}

/// The message that signs `body` after the chain state `previous`.
fn signing_message(previous: &[u8; 32], body: &LinkBody) -> Vec<u8> {
    let mut msg = LINK_DOMAIN.to_vec();
    msg.extend_from_slice(previous);
    body.encode_into(&mut msg);
    msg
}

/// The chain state after `link`: what the next link's signature covers, and (its first 16 bytes) the link id.
/// It covers the signed content, not the signature: an ECDSA signature has a second valid form `(r, n - s)`,
/// and a holder must not be able to change a link's id (and slip past a revocation list) by re-encoding it.
fn chain_hash(previous: &[u8; 32], link: &DelegationLink) -> [u8; 32] {
    sig::sha256(&[CHAIN_HASH_DOMAIN, previous, &link.body.to_bytes()])
}

fn root_hash(owner: &Identifier) -> [u8; 32] {
    sig::sha256(&[CHAIN_ROOT_DOMAIN, owner.as_bytes()])
}

impl Delegation {
    /// The owner grants `caveats` to the identity of `delegate` (its verified history, for its identifier
    /// and current primary key).
    pub fn issue(
        owner: &LocalIdentity,
        delegate: &ChangeHistory,
        caveats: Caveats,
    ) -> Result<Self> {
        Self::issue_with(
            owner.vaults().signing().as_ref(),
            owner.primary_key(),
            owner.identifier(),
            delegate.identifier(),
            delegate.primary_public_key().clone(),
            caveats,
        )
    }

    /// [`Delegation::issue`] with the owner's key given by vault and handle.
    pub fn issue_with(
        vault: &dyn SigningVault,
        key: &KeyId,
        owner: Identifier,
        delegate: Identifier,
        delegate_key: PublicKey,
        caveats: Caveats,
    ) -> Result<Self> {
        Delegation {
            owner,
            links: Vec::new(),
        }
        .extend_unchecked(vault, key, delegate, delegate_key, caveats)
    }

    /// The holder (the last delegate) passes a narrower grant to `delegate`. Refuses a holder that is not
    /// the last delegate or whose key is not the delegated one (`InvalidDelegation`), caveats wider than the
    /// last link's (`CaveatWidened`), and a chain already [`MAX_LINKS`] long.
    pub fn attenuate(
        &self,
        holder: &LocalIdentity,
        delegate: &ChangeHistory,
        caveats: Caveats,
    ) -> Result<Self> {
        let last = self
            .links
            .last()
            .ok_or(Error::InvalidDelegation("empty chain"))?;
        if last.body.delegate != holder.identifier() {
            return Err(Error::InvalidDelegation(
                "the holder is not the last delegate",
            ));
        }
        let signing = holder.vaults().signing();
        if signing.signing_public_key(holder.primary_key())? != last.body.delegate_key {
            return Err(Error::InvalidDelegation(
                "the holder's key is not the key the grant was made to",
            ));
        }
        caveats.check_narrower_than(&last.body.caveats)?;
        self.extend_unchecked(
            signing.as_ref(),
            holder.primary_key(),
            delegate.identifier(),
            delegate.primary_public_key().clone(),
            caveats,
        )
    }

    /// Appends a link signed by `key` **without** checking who signs or that it narrows: verification does
    /// both. For tools and tests (a widened or forged link must be refused by [`Delegation::verify`]).
    pub fn extend_unchecked(
        &self,
        vault: &dyn SigningVault,
        key: &KeyId,
        delegate: Identifier,
        delegate_key: PublicKey,
        caveats: Caveats,
    ) -> Result<Self> {
        caveats.check()?;
        if self.links.len() >= MAX_LINKS {
            return Err(Error::InvalidDelegation("chain too long"));
        }
        let body = LinkBody {
            delegate,
            delegate_key,
            caveats,
        };
        let previous = self
            .chain_hashes()
            .last()
            .copied()
            .unwrap_or(root_hash(&self.owner));
        let signature = vault.sign(key, &signing_message(&previous, &body))?;
        let mut next = self.clone();
        next.links.push(DelegationLink { body, signature });
        Ok(next)
    }

    fn chain_hashes(&self) -> Vec<[u8; 32]> {
        let mut previous = root_hash(&self.owner);
        self.links
            .iter()
            .map(|link| {
                previous = chain_hash(&previous, link);
                previous
            })
            .collect()
    }

    /// Each link's id (first 16 bytes of the chain hash after it), in chain order, for revocation lists.
    pub fn link_ids(&self) -> Vec<[u8; ID_LEN]> {
        self.chain_hashes()
            .iter()
            .map(|h| {
                let mut id = [0u8; ID_LEN];
                id.copy_from_slice(&h[..ID_LEN]);
                id
            })
            .collect()
    }

    /// The last delegate: who may present this chain.
    pub fn holder(&self) -> Option<&Identifier> {
        self.links.last().map(|l| &l.body.delegate)
    }

    /// Verifies the chain offline for a `presenter` (the authenticated peer) at `now`, given the owners the
    /// verifier trusts. Returns the effective caveats (the last link's). Errors: see the module
    /// documentation.
    pub fn verify(
        &self,
        owners: &TrustedAuthorities,
        presenter: &Identifier,
        now: Timestamp,
    ) -> Result<&Caveats> {
        if self.links.is_empty() || self.links.len() > MAX_LINKS {
            return Err(Error::InvalidDelegation("a chain has 1 to 8 links"));
        }
        let owner_key = owners
            .key_of(&self.owner)
            .ok_or(Error::UntrustedIssuer(self.owner))?;
        let mut previous = root_hash(&self.owner);
        let mut signer = owner_key;
        let mut parent: Option<&Caveats> = None;
        for link in &self.links {
            link.body.caveats.check()?;
            verify_signature(
                signer,
                &signing_message(&previous, &link.body),
                &link.signature,
            )
            .map_err(|_| {
                Error::InvalidDelegation(
                    "a link is not signed by the owner or the previous delegate",
                )
            })?;
            if let Some(parent) = parent {
                link.body.caveats.check_narrower_than(parent)?;
            }
            previous = chain_hash(&previous, link);
            signer = &link.body.delegate_key;
            parent = Some(&link.body.caveats);
        }
        let last = &self.links[self.links.len() - 1];
        if now >= last.body.caveats.not_after {
            return Err(Error::Expired("delegation"));
        }
        if &last.body.delegate != presenter {
            return Err(Error::SubjectMismatch(
                "the delegation was granted to another identity",
            ));
        }
        Ok(&last.body.caveats)
    }

    /// [`Delegation::verify`], then the request (`resource`, `action`) must be granted (`PolicyDenied`).
    pub fn authorize(
        &self,
        owners: &TrustedAuthorities,
        presenter: &Identifier,
        resource: &str,
        action: &str,
        now: Timestamp,
    ) -> Result<()> {
        let caveats = self.verify(owners, presenter, now)?;
        if !caveats.resources.contains(resource) {
            return Err(Error::PolicyDenied(
                "the delegation does not grant this resource",
            ));
        }
        if !caveats.actions.contains(action) {
            return Err(Error::PolicyDenied(
                "the delegation does not grant this action",
            ));
        }
        Ok(())
    }
}
