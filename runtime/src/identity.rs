//! Identities: the runtime uses the core's one identity type, [`LocalIdentity`] (history, keys by reference
//! in their vaults, an attested static key), so an identity made by any surface works in a node.

pub use latchkey_core::identity::{IdentityOptions, LocalIdentity, Vaults};
