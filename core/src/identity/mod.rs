//! Identities: an [`Identifier`] fixed by an identity's first change, a [`ChangeHistory`] that rotates its
//! primary key, and [`Attestation`]s by which the identity vouches for purpose keys (the Noise static key).

mod attestation;
mod history;
mod identifier;
mod local;
mod local_identity;

pub use attestation::{Attestation, AttestationData, Purpose, PurposeKey, MAX_CLOCK_SKEW_SECS};
pub use history::{
    Change, ChangeData, ChangeHistory, PinCheck, MAX_CHANGES, MAX_KEY_LIFETIME_SECS,
};
pub use identifier::Identifier;
pub use local::Identity;
pub use local_identity::{
    IdentityOptions, LocalIdentity, Vaults, DEFAULT_ATTESTATION_VALIDITY_SECS,
    DEFAULT_KEY_VALIDITY_SECS,
};

/// Domain separation prefixes: a signature made for one structure can never verify as another.
pub(crate) const CHANGE_DOMAIN: &[u8] = b"latchkey/change/v1";
pub(crate) const ATTESTATION_DOMAIN: &[u8] = b"latchkey/attestation/v1";
