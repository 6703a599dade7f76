//! Encodings of the enrollment formats (docs/PROTOCOL.md section 14): token, prekey bundle, request (clear
//! header, encrypted payload) and response. The types and the state machines live in `crate::enroll`.

use super::{check_var_len, Decode, Encode, Reader, Writer};
use crate::enroll::{
    EnrollmentRequest, EnrollmentResponse, EnrollmentToken, OneTimePrekey, PrekeyBundle,
    PrekeyBundleBody, RequestHeader, RequestPayload, MAX_BUNDLE_PREKEYS, MAX_ROUTE_HINT_LEN,
};
use crate::error::{Error, Result};
use crate::identity::{ChangeHistory, Identifier};
use crate::prelude::*;
use crate::time::Timestamp;
use crate::vault::Signature;
use zeroize::Zeroizing;

/// Version byte of every enrollment structure.
pub const ENROLL_VERSION: u8 = 1;

impl Encode for EnrollmentToken {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(ENROLL_VERSION);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.secret[..]);
        self.authority.encode_into(out);
        out.put_u8(self.route_hint.len() as u8);
        out.extend_from_slice(&self.route_hint);
    }
}

impl Decode for EnrollmentToken {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        if reader.u8()? != ENROLL_VERSION {
            return Err(Error::Decode("unsupported enrollment token version"));
        }
        let id = reader.array()?;
        let secret = Zeroizing::new(reader.array()?);
        let authority = Identifier::decode_from(reader)?;
        let hint_len = reader.u8()? as usize;
        if hint_len > MAX_ROUTE_HINT_LEN {
            return Err(Error::Decode("route hint too long"));
        }
        Ok(EnrollmentToken {
            id,
            secret,
            authority,
            route_hint: reader.take(hint_len)?.to_vec(),
        })
    }
}

impl Encode for PrekeyBundleBody {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(ENROLL_VERSION);
        out.put_var_bytes(&self.authority.to_bytes());
        out.extend_from_slice(&self.x3dh_key);
        out.put_u32(self.signed_prekey_id);
        out.extend_from_slice(&self.signed_prekey);
        out.put_u64(self.created_at.0);
        out.put_u64(self.expires_at.0);
        out.put_u16(self.one_time_prekeys.len() as u16);
        for k in &self.one_time_prekeys {
            out.put_u32(k.id);
            out.extend_from_slice(&k.public);
        }
    }
}

impl Decode for PrekeyBundleBody {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        if reader.u8()? != ENROLL_VERSION {
            return Err(Error::Decode("unsupported prekey bundle version"));
        }
        let authority = ChangeHistory::import(reader.var_bytes()?)?;
        let x3dh_key = reader.array()?;
        let signed_prekey_id = reader.u32()?;
        let signed_prekey = reader.array()?;
        let created_at = Timestamp(reader.u64()?);
        let expires_at = Timestamp(reader.u64()?);
        let count = reader.u16()? as usize;
        if count > MAX_BUNDLE_PREKEYS {
            return Err(Error::Decode("too many one-time prekeys"));
        }
        let mut one_time_prekeys = Vec::with_capacity(count);
        for _ in 0..count {
            let key = OneTimePrekey {
                id: reader.u32()?,
                public: reader.array()?,
            };
            if one_time_prekeys
                .last()
                .is_some_and(|p: &OneTimePrekey| p.id >= key.id)
            {
                return Err(Error::Decode("one-time prekeys not in ascending id order"));
            }
            one_time_prekeys.push(key);
        }
        Ok(PrekeyBundleBody {
            authority,
            x3dh_key,
            signed_prekey_id,
            signed_prekey,
            created_at,
            expires_at,
            one_time_prekeys,
        })
    }
}

impl Encode for PrekeyBundle {
    fn encode_into(&self, out: &mut Vec<u8>) {
        self.body.encode_into(out);
        self.signature.encode_into(out);
    }
}

impl Decode for PrekeyBundle {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(PrekeyBundle {
            body: PrekeyBundleBody::decode_from(reader)?,
            signature: Signature::decode_from(reader)?,
        })
    }
}

impl Encode for RequestHeader {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(ENROLL_VERSION);
        out.extend_from_slice(&self.token_id);
        out.put_u32(self.signed_prekey_id);
        match self.one_time_prekey_id {
            None => out.put_u8(0),
            Some(id) => {
                out.put_u8(1);
                out.put_u32(id);
            }
        }
        out.extend_from_slice(&self.ephemeral);
    }
}

impl Decode for RequestHeader {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        if reader.u8()? != ENROLL_VERSION {
            return Err(Error::Decode("unsupported enrollment request version"));
        }
        let token_id = reader.array()?;
        let signed_prekey_id = reader.u32()?;
        let one_time_prekey_id = match reader.u8()? {
            0 => None,
            1 => Some(reader.u32()?),
            _ => return Err(Error::Decode("bad option tag")),
        };
        Ok(RequestHeader {
            token_id,
            signed_prekey_id,
            one_time_prekey_id,
            ephemeral: reader.array()?,
        })
    }
}

impl Encode for EnrollmentRequest {
    fn encode_into(&self, out: &mut Vec<u8>) {
        self.header.encode_into(out);
        out.put_var_bytes(&self.ciphertext);
    }
}

impl Decode for EnrollmentRequest {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(EnrollmentRequest {
            header: RequestHeader::decode_from(reader)?,
            ciphertext: reader.var_bytes()?.to_vec(),
        })
    }
}

impl Encode for RequestPayload {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.secret[..]);
        let history = self.history.to_bytes();
        debug_assert!(check_var_len(history.len()).is_ok());
        out.put_var_bytes(&history);
        self.signature.encode_into(out);
    }
}

impl Decode for RequestPayload {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(RequestPayload {
            secret: Zeroizing::new(reader.array()?),
            history: ChangeHistory::import(reader.var_bytes()?)?,
            signature: Signature::decode_from(reader)?,
        })
    }
}

impl Encode for EnrollmentResponse {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(ENROLL_VERSION);
        out.put_var_bytes(&self.ciphertext);
    }
}

impl Decode for EnrollmentResponse {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        if reader.u8()? != ENROLL_VERSION {
            return Err(Error::Decode("unsupported enrollment response version"));
        }
        Ok(EnrollmentResponse {
            ciphertext: reader.var_bytes()?.to_vec(),
        })
    }
}
