use super::{ChangeHistory, Identifier, ATTESTATION_DOMAIN};
use crate::error::{Error, Result};
use crate::prelude::*;
use crate::time::Timestamp;
use crate::vault::{verify_signature, PublicKey, Signature};
use crate::wire::{Decode, Encode, Reader, Writer};

const ATTESTATION_VERSION: u8 = 1;
/// How far a verifier's clock may lag the attester's: without it, a peer a few seconds behind would refuse a
/// freshly created or rotated identity. Expiry gets no such allowance.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// What an attested key may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// The Noise static X25519 key of secure channels.
    SecureChannel,
    /// A key that signs credentials on the identity's behalf.
    CredentialSigning,
}

/// The attested key; its form follows from the purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurposeKey {
    SecureChannel([u8; 32]),
    CredentialSigning(PublicKey),
}

impl PurposeKey {
    pub fn purpose(&self) -> Purpose {
        match self {
            PurposeKey::SecureChannel(_) => Purpose::SecureChannel,
            PurposeKey::CredentialSigning(_) => Purpose::CredentialSigning,
        }
    }
}

/// The signed content of an attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationData {
    pub subject: Identifier,
    pub key: PurposeKey,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

impl Encode for AttestationData {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(ATTESTATION_VERSION);
        self.subject.encode_into(out);
        match &self.key {
            PurposeKey::SecureChannel(key) => {
                out.put_u8(1);
                out.extend_from_slice(key);
            }
            PurposeKey::CredentialSigning(key) => {
                out.put_u8(2);
                key.encode_into(out);
            }
        }
        out.put_u64(self.created_at.0);
        out.put_u64(self.expires_at.0);
    }
}

impl Decode for AttestationData {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        if reader.u8()? != ATTESTATION_VERSION {
            return Err(Error::Decode("unsupported attestation version"));
        }
        let subject = Identifier::decode_from(reader)?;
        let key = match reader.u8()? {
            1 => PurposeKey::SecureChannel(reader.array()?),
            2 => PurposeKey::CredentialSigning(PublicKey::decode_from(reader)?),
            _ => return Err(Error::Decode("unknown attestation purpose")),
        };
        Ok(AttestationData {
            subject,
            key,
            created_at: Timestamp(reader.u64()?),
            expires_at: Timestamp(reader.u64()?),
        })
    }
}

impl AttestationData {
    /// The bytes the identity key signs.
    pub fn signing_message(&self) -> Vec<u8> {
        let mut msg = ATTESTATION_DOMAIN.to_vec();
        self.encode_into(&mut msg);
        msg
    }
}

/// An identity's signed statement that a purpose key is its own until an expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    pub data: AttestationData,
    pub signature: Signature,
}

impl Encode for Attestation {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_var_bytes(&self.data.to_bytes());
        self.signature.encode_into(out);
    }
}

impl Decode for Attestation {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        let data = AttestationData::from_bytes(reader.var_bytes()?)?;
        Ok(Attestation {
            data,
            signature: Signature::decode_from(reader)?,
        })
    }
}

impl Attestation {
    /// Checks that the attestation is by `history`'s current primary key, about `history`'s identifier, for
    /// exactly `expected` key, and valid at `now`.
    pub fn verify(
        &self,
        history: &ChangeHistory,
        expected: &PurposeKey,
        now: Timestamp,
    ) -> Result<()> {
        self.check_structure(history, expected)?;
        self.verify_signature(history)?;
        self.check_time(now)
    }

    /// The cheap checks of [`Attestation::verify`]: for this identity, this purpose, exactly this key.
    pub fn check_structure(&self, history: &ChangeHistory, expected: &PurposeKey) -> Result<()> {
        if self.data.subject != history.identifier() {
            return Err(Error::InvalidAttestation(
                "attestation is for another identity",
            ));
        }
        if self.data.key.purpose() != expected.purpose() {
            return Err(Error::InvalidAttestation(
                "attestation is for another purpose",
            ));
        }
        if &self.data.key != expected {
            return Err(Error::InvalidAttestation("attestation is for another key"));
        }
        Ok(())
    }

    /// The signature of [`Attestation::verify`]: by the identity's primary key.
    pub fn verify_signature(&self, history: &ChangeHistory) -> Result<()> {
        verify_signature(
            history.primary_public_key(),
            &self.data.signing_message(),
            &self.signature,
        )
        .map_err(|_| Error::InvalidAttestation("not signed by the identity's primary key"))
    }

    /// The validity window of [`Attestation::verify`] (with `MAX_CLOCK_SKEW_SECS` before `created_at`).
    pub fn check_time(&self, now: Timestamp) -> Result<()> {
        if now.plus_secs(MAX_CLOCK_SKEW_SECS) < self.data.created_at {
            return Err(Error::Expired("attestation not yet valid"));
        }
        if now >= self.data.expires_at {
            return Err(Error::Expired("attestation"));
        }
        Ok(())
    }
}
