//! The one place that turns structures into bytes and back.
//!
//! Integers are big-endian. Variable-length fields carry a `u16` length prefix (every handshake message must
//! fit Noise's 65535-byte limit, so nothing larger is ever needed). Decoders never panic: every read is
//! bounds-checked and trailing bytes are an error, so one structure has exactly one encoding.

use crate::error::{Error, Result};
use crate::prelude::*;

pub mod authority;
mod enroll;
pub mod mailbox;
mod route;
mod trust;
pub use enroll::ENROLL_VERSION;
pub use route::{Address, Route, RoutedMessage, MAX_ADDRESS_LEN, MAX_ROUTE_LEN, MESSAGE_VERSION};
pub use trust::{CREDENTIAL_VERSION, DELEGATION_VERSION, REVOCATION_VERSION};

/// A type with one canonical byte encoding.
pub trait Encode {
    /// Append the encoding to `out`.
    fn encode_into(&self, out: &mut Vec<u8>);

    /// The encoding as a fresh vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

/// A type that can be read back from its canonical encoding.
pub trait Decode: Sized {
    /// Read one value from the reader, leaving the rest.
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self>;

    /// Decode a value that must span exactly `bytes`.
    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut reader = Reader::new(bytes);
        let value = Self::decode_from(&mut reader)?;
        reader.finish()?;
        Ok(value)
    }
}

/// A bounds-checked cursor over input bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < len {
            return Err(Error::Decode("truncated"));
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A `u16`-length-prefixed byte string.
    pub fn var_bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.u16()? as usize;
        self.take(len)
    }

    /// Succeeds only when every byte was consumed.
    pub fn finish(self) -> Result<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(Error::Decode("trailing bytes"))
        }
    }
}

/// Append helpers matching [`Reader`].
pub(crate) trait Writer {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    /// Writes a `u16` length prefix; callers guarantee `bytes.len() <= u16::MAX` via the type's own limits.
    fn put_var_bytes(&mut self, bytes: &[u8]);
}

impl Writer for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_var_bytes(&mut self, bytes: &[u8]) {
        debug_assert!(bytes.len() <= u16::MAX as usize);
        self.put_u16(bytes.len() as u16);
        self.extend_from_slice(bytes);
    }
}

/// Checks a length against the `u16` prefix limit before encoding.
pub(crate) fn check_var_len(len: usize) -> Result<()> {
    if len > u16::MAX as usize {
        Err(Error::MessageTooLarge {
            len,
            max: u16::MAX as usize,
        })
    } else {
        Ok(())
    }
}
