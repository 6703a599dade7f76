//! The identity proof carried, encrypted, in handshake messages 2 and 3.

use crate::error::{Error, Result};
use crate::identity::{Attestation, ChangeHistory};
use crate::prelude::*;
use crate::wire::{check_var_len, Decode, Encode, Reader, Writer};

const PAYLOAD_VERSION: u8 = 1;
/// Most opaque credentials one side may present.
pub const MAX_CREDENTIALS: usize = 16;

/// `version ‖ history ‖ attestation ‖ credentials`. The history and attestation are verified after decoding;
/// credentials are opaque to the channel and handed to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakePayload {
    pub history: ChangeHistory,
    pub attestation: Attestation,
    pub credentials: Vec<Vec<u8>>,
}

impl HandshakePayload {
    /// Checks every length prefix before encoding, so encoding cannot truncate silently.
    pub(crate) fn check_sizes(&self) -> Result<()> {
        check_var_len(self.history.to_bytes().len())?;
        check_var_len(self.attestation.to_bytes().len())?;
        if self.credentials.len() > MAX_CREDENTIALS {
            return Err(Error::MessageTooLarge {
                len: self.credentials.len(),
                max: MAX_CREDENTIALS,
            });
        }
        for credential in &self.credentials {
            check_var_len(credential.len())?;
        }
        Ok(())
    }
}

impl Encode for HandshakePayload {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(PAYLOAD_VERSION);
        out.put_var_bytes(&self.history.to_bytes());
        out.put_var_bytes(&self.attestation.to_bytes());
        out.put_u8(self.credentials.len() as u8);
        for credential in &self.credentials {
            out.put_var_bytes(credential);
        }
    }
}

impl HandshakePayload {
    /// Decodes a payload whose history is **not yet verified** (its links and signatures): the handshake
    /// runs the cheap checks (allow-list, links, attestation structure, times) before the signatures
    /// (`Handshake::verify_peer`, PROTOCOL.md 5.4). Public for tests and tools that inspect a payload the
    /// full decode ([`Decode`], which verifies the history on its own) refuses; nothing decoded here says
    /// anything until it is verified.
    pub fn decode_unverified(bytes: &[u8]) -> Result<Self> {
        let mut reader = Reader::new(bytes);
        let payload = Self::decode_with(&mut reader, false)?;
        reader.finish()?;
        Ok(payload)
    }

    fn decode_with(reader: &mut Reader<'_>, verify: bool) -> Result<Self> {
        if reader.u8()? != PAYLOAD_VERSION {
            return Err(Error::Decode("unsupported handshake payload version"));
        }
        let changes = ChangeHistory::decode_unverified(reader.var_bytes()?)?;
        let history = if verify {
            ChangeHistory::new(changes)?
        } else {
            ChangeHistory::unverified(changes)
        };
        let attestation = Attestation::from_bytes(reader.var_bytes()?)?;
        let count = reader.u8()? as usize;
        if count > MAX_CREDENTIALS {
            return Err(Error::Decode("too many credentials"));
        }
        let mut credentials = Vec::with_capacity(count);
        for _ in 0..count {
            credentials.push(reader.var_bytes()?.to_vec());
        }
        Ok(HandshakePayload {
            history,
            attestation,
            credentials,
        })
    }
}

impl Decode for HandshakePayload {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Self::decode_with(reader, true)
    }
}
