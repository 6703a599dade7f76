use crate::error::{Error, Result};
use crate::prelude::*;
use crate::wire::{Decode, Encode, Reader};
use core::fmt;
use core::str::FromStr;

const PREFIX: &str = "lk";

/// An identity's permanent name: the hash of its first change. Text form: `lk` followed by 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identifier([u8; 32]);

impl Identifier {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identifier({self})")
    }
}

impl FromStr for Identifier {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let hex_part = s
            .strip_prefix(PREFIX)
            .ok_or(Error::Decode("identifier must start with 'lk'"))?;
        if hex_part.len() != 64 {
            return Err(Error::Decode("identifier must have 64 hex digits"));
        }
        // One text form per identifier: lower-case only, so string comparison is identity comparison.
        if hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(Error::Decode("identifier must be lower-case hex"));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out)
            .map_err(|_| Error::Decode("identifier is not hex"))?;
        Ok(Identifier(out))
    }
}

impl Encode for Identifier {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

impl Decode for Identifier {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(Identifier(reader.array()?))
    }
}
