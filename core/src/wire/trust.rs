//! Encodings of the trust formats (docs/PROTOCOL.md sections 11–14): credentials and their attributes,
//! delegation links and chains, revocation lists. The types live in `crate::credential`; their bytes live
//! here, in the one place that encodes and decodes. Same rules as the rest of `wire`: big-endian, length
//! prefixes, versions and tags refused when unknown, canonical order checked, no trailing bytes.

use super::{Decode, Encode, Reader, Writer};
use crate::credential::{
    check_attribute_name, Attributes, Credential, CredentialBody, MAX_ATTRIBUTES,
    MAX_ATTRIBUTE_VALUE_LEN,
};
use crate::error::{Error, Result};
use crate::identity::Identifier;
use crate::prelude::*;
use crate::time::Timestamp;
use crate::vault::Signature;

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
