//! # latchkey-ffi
//!
//! The stable C ABI of Latchkey. Every function here only translates: C pointers and lengths become Rust
//! slices and handles, facade results become status codes and caller-buffer writes. Protocol logic lives in
//! `latchkey-core` and `latchkey-facade`, never here.
//!
//! Structure, one job per module:
//! - [`status`]: status codes, the error type of this layer and the thread-local last-error slot;
//! - `boundary`: the panic-boundary and null-check macros every exported body goes through;
//! - `handle`: how a Rust value becomes an opaque C handle (owned `Box` or shared `Arc`) and back;
//! - `buffer`: input slices, output buffers with needed-size reporting, C strings;
//! - `wait`: blocking a C thread on the facade's async methods; `queue`: what mailboxes and listeners hand
//!   out, queued for blocking receives with a timeout and for a pollable file descriptor;
//! - `vault`, `identity`, `handshake`, `channel`, `info`: the exported sans-IO functions, grouped by handle;
//! - `node`, `node_channel`, `mailbox` (feature `node`, on by default): nodes for hosted C, on the facade's
//!   runtime.
//!
//! The ABI rules (ownership, NULL handling, buffers, threading) are in `docs/C-API.md`; each exported
//! function restates its own in its doc comment, which cbindgen copies into `include/latchkey.h`.
//!
//! Exported functions are `unsafe extern "C"`: their safety contract is the C-API rules, written on each
//! function as "Ownership" and "Threading" lines rather than as a `# Safety` section.
#![allow(clippy::missing_safety_doc)]

#[macro_use]
mod boundary;
mod buffer;
mod channel;
mod handle;
mod handshake;
mod identity;
mod info;
#[cfg(feature = "node")]
mod mailbox;
#[cfg(feature = "node")]
mod node;
#[cfg(feature = "node")]
mod node_channel;
#[cfg(feature = "node")]
mod queue;
mod route_session;
pub mod status;
mod vault;
#[cfg(feature = "node")]
mod wait;

pub use channel::*;
pub use handshake::*;
pub use identity::*;
pub use info::*;
#[cfg(feature = "node")]
pub use mailbox::*;
#[cfg(feature = "node")]
pub use node::*;
#[cfg(feature = "node")]
pub use node_channel::*;
pub use route_session::*;
pub use status::*;
pub use vault::*;

/// Role value for `latchkey_handshake_new`: the side that sends the first message.
pub const LATCHKEY_ROLE_INITIATOR: u32 = 0;
/// Role value for `latchkey_handshake_new`: the side that answers.
pub const LATCHKEY_ROLE_RESPONDER: u32 = 1;

/// Cipher suite value: `Noise_XX_25519_ChaChaPoly_SHA256` (the default).
pub const LATCHKEY_SUITE_CHACHAPOLY: u32 = 0;
/// Cipher suite value: `Noise_XX_25519_AESGCM_SHA256`.
pub const LATCHKEY_SUITE_AESGCM: u32 = 1;

/// Signing algorithm value for `latchkey_identity_create`: Ed25519 (the default).
pub const LATCHKEY_ALGORITHM_ED25519: u32 = 0;
/// Signing algorithm value for `latchkey_identity_create`: ECDSA P-256, for hardware without Ed25519.
pub const LATCHKEY_ALGORITHM_ECDSA_P256: u32 = 1;

/// Bytes a transport frame adds to its plaintext (8-byte nonce + 16-byte tag).
pub const LATCHKEY_FRAME_OVERHEAD: usize = 24;
/// Largest plaintext one transport frame carries.
pub const LATCHKEY_MAX_PLAINTEXT_LEN: usize = 65519;
/// Largest handshake message: an output buffer this large always fits `latchkey_handshake_step`'s output.
pub const LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN: usize = 65535;
/// Bytes an identifier occupies as a C string: `lk` + 64 hex digits + the terminating NUL.
pub const LATCHKEY_IDENTIFIER_SIZE: usize = 67;
/// Bytes of a handshake hash.
pub const LATCHKEY_HANDSHAKE_HASH_LEN: usize = 32;
/// Bytes of a secret given to `latchkey_identity_from_secrets` and `latchkey_identity_rotate`.
pub const LATCHKEY_SECRET_LEN: usize = 32;

/// `timeout_ms` value for calls that wait for something to arrive (`latchkey_mailbox_receive`,
/// `latchkey_listener_accept`): wait without limit. Elsewhere it is simply the longest timeout.
pub const LATCHKEY_WAIT_FOREVER: u32 = u32::MAX;

/// Seconds; passed as `now` or a validity period, 0 means "the system clock" or "the default period".
pub type LatchkeySeconds = u64;

#[cfg(test)]
mod tests;
