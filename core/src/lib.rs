//! # latchkey-core
//!
//! The sans-IO protocol core of Latchkey: vaults, identities with rotation, and Noise XX secure channels
//! that bind both sides' identities. No sockets, no async runtime, no clock: callers pass bytes and time in
//! and get bytes out, which is what lets C firmware and every language binding drive the same code.
//!
//! Layers, innermost first: [`wire`] (encodings), [`crypto`] (the provider seam), [`vault`] (secret keys
//! behind handles), [`identity`] (identifiers, change histories, attestations), [`channel`] (handshake and
//! transport), [`route`] (routed messages and the routed channel session); and for trust at scale
//! [`credential`] (credentials, delegation chains, revocation lists), [`policy`] (attribute policies) and
//! [`enroll`] (X3DH-based enrollment).
//!
//! The crate is `#![no_std]` with `alloc`. The default features (`std`, `ring`) add the system clock
//! ([`Timestamp::now`]), OS randomness, the ring provider and a process-wide verified-signature cache.
//! Without them (`default-features = false, features = ["rustcrypto"]`) it runs on a microcontroller: the
//! caller supplies time and a random source (see [`crypto::RustCryptoProvider`]).

#![no_std]
// No `unsafe` anywhere in the core, except the two FFI calls of the AWS-LC provider (feature `aws-lc`), which
// are allowed one by one there.
#![cfg_attr(not(latchkey_aws_lc), forbid(unsafe_code))]
#![cfg_attr(latchkey_aws_lc, deny(unsafe_code))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod channel;
pub mod credential;
pub mod crypto;
pub mod enroll;
mod error;
pub mod identity;
pub mod policy;
pub mod route;
mod sync;
mod time;
pub mod vault;
pub mod wire;

pub use error::{Error, Result};
pub use time::Timestamp;

/// The library version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What `std`'s prelude would give the rest of the crate.
#[allow(unused_imports)]
mod prelude {
    pub(crate) use alloc::borrow::ToOwned;
    pub(crate) use alloc::boxed::Box;
    pub(crate) use alloc::format;
    pub(crate) use alloc::string::{String, ToString};
    pub(crate) use alloc::vec;
    pub(crate) use alloc::vec::Vec;
}
