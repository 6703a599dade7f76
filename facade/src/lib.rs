//! # latchkey-facade
//!
//! The one surface every binding (C ABI, Python, Node, JVM) wraps. Types here are simple and owned
//! (`String` identifiers, `Vec<u8>` messages, `Arc` handles that are `Send + Sync`), each operation is one
//! method, and errors are the core's [`Error`], so bindings only convert values and errors — they never hold
//! protocol logic of their own.

#![forbid(unsafe_code)]

mod channel;
pub mod error;
mod identity;
#[cfg(feature = "runtime")]
pub mod node;
mod pins;
pub mod route;

pub use channel::{Channel, HandshakeSession, Trust};
pub use error::{Error, ErrorCode, Result};
pub use identity::{
    check_identifier, history_identifier, verify_history_update, Identity, IdentityOptions, Vault,
};
pub use latchkey_core::channel::{CipherSuite, Role, SuiteSet, FRAME_OVERHEAD, MAX_PLAINTEXT_LEN};
pub use latchkey_core::vault::SigningAlgorithm;
pub use latchkey_core::{Timestamp, VERSION};
#[cfg(feature = "runtime")]
pub use latchkey_runtime::SuiteChoice;
#[cfg(feature = "runtime")]
pub use node::{
    check_policy, credential_info, default_store_home, delegate_attenuate, delegate_issue,
    delegate_verify, enroll, enroll_via_relay, parse_policy, serve_guarded, stored_credential,
    verify_credential, AuthorityService, ConnectOptions, CredentialInfo, DirectChannel,
    DirectListener, GuardOptions, GuardedNode, IdentityStore, Listener, Mailbox, MemberInfo,
    MessageOrigin, Node, NodeChannel, NodeOptions, NodeTrustOptions, Peer, ReceivedMessage,
    RelayServiceOptions, StoredIdentity, StoredPeer,
};
pub use pins::PeerHistories;
pub use route::{decode_routed_message, encode_routed_message, RoutedParts};
pub use route::{
    DeviceEvent, DeviceMessage, DeviceOptions, DeviceSession, DeviceStats, DEVICE_LISTENER,
    DEVICE_MAX_FRAME, DEVICE_MAX_HANDSHAKES_PER_SECOND, DEVICE_MAX_MESSAGES, DEVICE_MAX_OUTPUT,
    RELAY_SERVICE,
};

/// The caller's time or, when it has none, the system clock.
pub(crate) fn now_or_clock(now: Option<u64>) -> Timestamp {
    now.map(Timestamp).unwrap_or_else(Timestamp::now)
}
