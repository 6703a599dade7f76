//! Encodings of the trust formats (docs/PROTOCOL.md sections 11–14): credentials and their attributes,
//! delegation links and chains, revocation lists. The types live in `crate::credential`; their bytes live
//! here, in the one place that encodes and decodes. Same rules as the rest of `wire`: big-endian, length
//! prefixes, versions and tags refused when unknown, canonical order checked, no trailing bytes.

use super::{Decode, Encode, Reader, Writer};
use crate::credential::delegation::{
    Caveats, Delegation, DelegationLink, LinkBody, MAX_CAVEAT_ITEMS, MAX_CAVEAT_ITEM_LEN, MAX_LINKS,
};
use crate::credential::revocation::{RevocationBody, RevocationList, MAX_REVOKED};
use crate::credential::{
    check_attribute_name, Attributes, Credential, CredentialBody, ID_LEN, MAX_ATTRIBUTES,
    MAX_ATTRIBUTE_VALUE_LEN,
};
use crate::error::{Error, Result};
use crate::identity::Identifier;
use crate::prelude::*;
use crate::time::Timestamp;
use crate::vault::{PublicKey, Signature};

/// Version byte of a credential.
pub const CREDENTIAL_VERSION: u8 = 1;

/// A `u8`-length-prefixed UTF-8 string.
pub(crate) fn put_short_str(out: &mut Vec<u8>, s: &str) {
    debug_assert!(s.len() <= u8::MAX as usize);
    out.put_u8(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn short_str(reader: &mut Reader<'_>) -> Result<String> {
    let len = reader.u8()? as usize;
    let bytes = reader.take(len)?;
    core::str::from_utf8(bytes)
        .map(ToString::to_string)
        .map_err(|_| Error::Decode("string is not UTF-8"))
}

impl Encode for Attributes {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(self.len() as u8);
        for (name, value) in self.iter() {
            put_short_str(out, name);
            put_short_str(out, value);
        }
    }
}

impl Decode for Attributes {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        let count = reader.u8()? as usize;
        if count > MAX_ATTRIBUTES {
            return Err(Error::Decode("too many attributes"));
        }
        let mut attributes = Attributes::new();
        let mut previous: Option<String> = None;
        for _ in 0..count {
            let name = short_str(reader)?;
            let value = short_str(reader)?;
            check_attribute_name(&name).map_err(|_| Error::Decode("bad attribute name"))?;
            if value.len() > MAX_ATTRIBUTE_VALUE_LEN {
                return Err(Error::Decode("attribute value too long"));
            }
            if previous.as_deref().is_some_and(|p| p >= name.as_str()) {
                return Err(Error::Decode("attributes not in ascending order"));
            }
            previous = Some(name.clone());
            attributes
                .insert(name, value)
                .map_err(|_| Error::Decode("bad attribute"))?;
        }
        Ok(attributes)
    }
}

impl Encode for CredentialBody {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(CREDENTIAL_VERSION);
        self.subject.encode_into(out);
        out.extend_from_slice(&self.subject_history);
        self.issuer.encode_into(out);
        out.put_u64(self.not_before.0);
        out.put_u64(self.not_after.0);
        self.attributes.encode_into(out);
    }
}

impl Decode for CredentialBody {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        if reader.u8()? != CREDENTIAL_VERSION {
            return Err(Error::Decode("unsupported credential version"));
        }
        Ok(CredentialBody {
            subject: Identifier::decode_from(reader)?,
            subject_history: reader.array()?,
            issuer: Identifier::decode_from(reader)?,
            not_before: Timestamp(reader.u64()?),
            not_after: Timestamp(reader.u64()?),
            attributes: Attributes::decode_from(reader)?,
        })
    }
}

impl Encode for Credential {
    fn encode_into(&self, out: &mut Vec<u8>) {
        self.body.encode_into(out);
        self.signature.encode_into(out);
    }
}

impl Decode for Credential {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(Credential {
            body: CredentialBody::decode_from(reader)?,
            signature: Signature::decode_from(reader)?,
        })
    }
}

/// Version byte of a delegation chain.
pub const DELEGATION_VERSION: u8 = 1;

fn put_name_set(out: &mut Vec<u8>, set: &alloc::collections::BTreeSet<String>) {
    out.put_u8(set.len() as u8);
    for item in set {
        put_short_str(out, item);
    }
}

/// A sorted set of names: count, then names in strictly ascending byte order (one encoding per set).
fn name_set(reader: &mut Reader<'_>) -> Result<alloc::collections::BTreeSet<String>> {
    let count = reader.u8()? as usize;
    if count == 0 || count > MAX_CAVEAT_ITEMS {
        return Err(Error::Decode("caveat set of 1 to 16 names"));
    }
    let mut set = alloc::collections::BTreeSet::new();
    let mut previous: Option<String> = None;
    for _ in 0..count {
        let item = short_str(reader)?;
        if item.is_empty() || item.len() > MAX_CAVEAT_ITEM_LEN {
            return Err(Error::Decode("caveat name of 1 to 64 bytes"));
        }
        if previous.as_deref().is_some_and(|p| p >= item.as_str()) {
            return Err(Error::Decode("caveat names not in ascending order"));
        }
        previous = Some(item.clone());
        set.insert(item);
    }
    Ok(set)
}

impl Encode for Caveats {
    fn encode_into(&self, out: &mut Vec<u8>) {
        put_name_set(out, &self.resources);
        put_name_set(out, &self.actions);
        out.put_u64(self.not_after.0);
    }
}

impl Decode for Caveats {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(Caveats {
            resources: name_set(reader)?,
            actions: name_set(reader)?,
            not_after: Timestamp(reader.u64()?),
        })
    }
}

impl Encode for LinkBody {
    fn encode_into(&self, out: &mut Vec<u8>) {
        self.delegate.encode_into(out);
        self.delegate_key.encode_into(out);
        self.caveats.encode_into(out);
    }
}

impl Decode for LinkBody {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(LinkBody {
            delegate: Identifier::decode_from(reader)?,
            delegate_key: PublicKey::decode_from(reader)?,
            caveats: Caveats::decode_from(reader)?,
        })
    }
}

impl Encode for DelegationLink {
    fn encode_into(&self, out: &mut Vec<u8>) {
        self.body.encode_into(out);
        self.signature.encode_into(out);
    }
}

impl Decode for DelegationLink {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(DelegationLink {
            body: LinkBody::decode_from(reader)?,
            signature: Signature::decode_from(reader)?,
        })
    }
}

impl Encode for Delegation {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(DELEGATION_VERSION);
        self.owner.encode_into(out);
        out.put_u8(self.links.len() as u8);
        for link in &self.links {
            link.encode_into(out);
        }
    }
}

impl Decode for Delegation {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        if reader.u8()? != DELEGATION_VERSION {
            return Err(Error::Decode("unsupported delegation version"));
        }
        let owner = Identifier::decode_from(reader)?;
        let count = reader.u8()? as usize;
        if count == 0 || count > MAX_LINKS {
            return Err(Error::Decode("a delegation has 1 to 8 links"));
        }
        let mut links = Vec::with_capacity(count);
        for _ in 0..count {
            links.push(DelegationLink::decode_from(reader)?);
        }
        Ok(Delegation { owner, links })
    }
}

/// Version byte of a revocation list.
pub const REVOCATION_VERSION: u8 = 1;

/// A `u32` count then fixed-size entries in strictly ascending order; the count is checked against the bytes
/// left before anything is allocated.
fn fixed_set<const N: usize>(
    reader: &mut Reader<'_>,
) -> Result<alloc::collections::BTreeSet<[u8; N]>> {
    let count = reader.u32()? as usize;
    if count > MAX_REVOKED || count.saturating_mul(N) > reader.remaining() {
        return Err(Error::Decode("revocation entry count"));
    }
    let mut set = alloc::collections::BTreeSet::new();
    let mut previous: Option<[u8; N]> = None;
    for _ in 0..count {
        let item: [u8; N] = reader.array()?;
        if previous.is_some_and(|p| p >= item) {
            return Err(Error::Decode("revocation entries not in ascending order"));
        }
        previous = Some(item);
        set.insert(item);
    }
    Ok(set)
}

fn put_fixed_set<'a, const N: usize>(
    out: &mut Vec<u8>,
    items: impl ExactSizeIterator<Item = &'a [u8; N]>,
) {
    out.put_u32(items.len() as u32);
    for item in items {
        out.extend_from_slice(item);
    }
}

impl Encode for RevocationBody {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(REVOCATION_VERSION);
        self.issuer.encode_into(out);
        out.put_u64(self.sequence);
        out.put_u64(self.issued_at.0);
        put_fixed_set(out, self.identifiers.iter().map(Identifier::as_bytes));
        put_fixed_set(out, self.credentials.iter());
        put_fixed_set(out, self.delegations.iter());
    }
}

impl Decode for RevocationBody {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        if reader.u8()? != REVOCATION_VERSION {
            return Err(Error::Decode("unsupported revocation list version"));
        }
        let issuer = Identifier::decode_from(reader)?;
        let sequence = reader.u64()?;
        let issued_at = Timestamp(reader.u64()?);
        let identifiers = fixed_set::<32>(reader)?
            .into_iter()
            .map(Identifier::from_bytes)
            .collect();
        let credentials = fixed_set::<ID_LEN>(reader)?;
        let delegations = fixed_set::<ID_LEN>(reader)?;
        let body = RevocationBody {
            issuer,
            sequence,
            issued_at,
            identifiers,
            credentials,
            delegations,
        };
        if body.len() > MAX_REVOKED {
            return Err(Error::Decode("too many revocation entries"));
        }
        Ok(body)
    }
}

impl Encode for RevocationList {
    fn encode_into(&self, out: &mut Vec<u8>) {
        self.body.encode_into(out);
        self.signature.encode_into(out);
    }
}

impl Decode for RevocationList {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(RevocationList {
            body: RevocationBody::decode_from(reader)?,
            signature: Signature::decode_from(reader)?,
        })
    }
}
