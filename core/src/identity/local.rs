use super::{
    Attestation, AttestationData, Change, ChangeData, ChangeHistory, Identifier, PurposeKey,
};
use crate::error::{Error, Result};
use crate::prelude::*;
use crate::time::Timestamp;
use crate::vault::{KeyId, SigningAlgorithm, SigningVault};

/// An identity we control: its history plus the handle of its current primary key in a signing vault.
#[derive(Debug, Clone)]
pub struct Identity {
    history: ChangeHistory,
    primary_key: KeyId,
}

impl Identity {
    /// Creates a new identity with a fresh primary key valid for `validity_secs` from `now`.
    pub fn create(
        vault: &dyn SigningVault,
        algorithm: SigningAlgorithm,
        now: Timestamp,
        validity_secs: u64,
    ) -> Result<Self> {
        let key = vault.generate_signing_key(algorithm)?;
        Self::create_with_key(vault, key, now, validity_secs)
    }

    /// Creates a new identity whose first primary key is an existing vault key.
    pub fn create_with_key(
        vault: &dyn SigningVault,
        key: KeyId,
        now: Timestamp,
        validity_secs: u64,
    ) -> Result<Self> {
        let data = ChangeData {
            previous: [0u8; 32],
            public_key: vault.signing_public_key(&key)?,
            created_at: now,
            expires_at: now.plus_secs(validity_secs.max(1)),
        };
        let self_signature = vault.sign(&key, &data.hash())?;
        let history = ChangeHistory::new(vec![Change {
            data,
            self_signature,
            previous_signature: None,
        }])?;
        Ok(Identity {
            history,
            primary_key: key,
        })
    }

    /// Re-attaches an exported history to its primary key held in `vault`, checking they match.
    pub fn from_parts(
        vault: &dyn SigningVault,
        history: ChangeHistory,
        primary_key: KeyId,
    ) -> Result<Self> {
        if &vault.signing_public_key(&primary_key)? != history.primary_public_key() {
            return Err(Error::WrongKeyType);
        }
        Ok(Identity {
            history,
            primary_key,
        })
    }

    pub fn identifier(&self) -> Identifier {
        self.history.identifier()
    }

    pub fn history(&self) -> &ChangeHistory {
        &self.history
    }

    pub fn primary_key(&self) -> &KeyId {
        &self.primary_key
    }

    /// Rotates to a fresh primary key. The new change is signed by the old key and the new one; on any
    /// failure the identity is unchanged. The old key stays in the vault for the caller to delete.
    pub fn rotate(
        &mut self,
        vault: &dyn SigningVault,
        algorithm: SigningAlgorithm,
        now: Timestamp,
        validity_secs: u64,
    ) -> Result<KeyId> {
        let new_key = vault.generate_signing_key(algorithm)?;
        match self.rotate_to_key(vault, new_key.clone(), now, validity_secs) {
            Ok(old) => Ok(old),
            Err(e) => {
                let _ = vault.delete_signing_key(&new_key);
                Err(e)
            }
        }
    }

    /// Rotates to an existing vault key; returns the previous primary key's id.
    pub fn rotate_to_key(
        &mut self,
        vault: &dyn SigningVault,
        new_key: KeyId,
        now: Timestamp,
        validity_secs: u64,
    ) -> Result<KeyId> {
        let last = self
            .history
            .changes()
            .last()
            .expect("verified history is never empty");
        let data = ChangeData {
            previous: last.data.hash(),
            public_key: vault.signing_public_key(&new_key)?,
            created_at: now.max(last.data.created_at),
            expires_at: now
                .max(last.data.created_at)
                .plus_secs(validity_secs.max(1)),
        };
        let hash = data.hash();
        let change = Change {
            self_signature: vault.sign(&new_key, &hash)?,
            previous_signature: Some(vault.sign(&self.primary_key, &hash)?),
            data,
        };
        self.history = self.history.with_change(change)?;
        Ok(core::mem::replace(&mut self.primary_key, new_key))
    }

    /// Signs an attestation that `key` is this identity's, valid from `now` for `validity_secs`.
    pub fn attest(
        &self,
        vault: &dyn SigningVault,
        key: PurposeKey,
        now: Timestamp,
        validity_secs: u64,
    ) -> Result<Attestation> {
        let data = AttestationData {
            subject: self.identifier(),
            key,
            created_at: now,
            expires_at: now.plus_secs(validity_secs),
        };
        let signature = vault.sign(&self.primary_key, &data.signing_message())?;
        Ok(Attestation { data, signature })
    }
}
