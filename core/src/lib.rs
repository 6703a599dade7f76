//! # latchkey-core
//!
//! The sans-IO protocol core of Latchkey: vaults, identities with rotation, and Noise XX secure channels
//! that bind both sides' identities. No sockets, no async runtime, no clock: callers pass bytes and time in
//! and get bytes out, which is what lets C firmware and every language binding drive the same code.
//!
//! Layers, innermost first: [`wire`] (encodings), [`crypto`] (the provider seam), [`vault`] (secret keys
//! behind handles), [`identity`] (identifiers, change histories, attestations), [`channel`] (handshake and
//! transport), [`route`] (routed messages and the routed channel session).

extern crate alloc;

pub mod channel;
pub mod crypto;
mod error;
pub mod identity;
pub mod route;
mod time;
pub mod vault;
pub mod wire;

pub use error::{Error, Result};
pub use time::Timestamp;

/// The library version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
