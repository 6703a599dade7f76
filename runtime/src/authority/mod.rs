//! The enrollment authority and what members and nodes do with it: its durable store ([`store`]), the
//! service ([`service`]: tokens, enrollment, credential refresh, revocation pushes), the member side
//! ([`client`]) and enforcement on nodes ([`enforce`]: trusted authorities, credentials at the handshake and
//! per message, revocation closing live channels). The credential format is the core's
//! (`latchkey_core::credential`).

pub mod client;
pub mod enforce;
pub mod service;
pub mod store;
pub mod x3dh;

pub use enforce::Membership;
pub use service::{Authority, AuthorityOptions, EnrollmentToken};
pub use store::{AuthorityStore, SqliteAuthorityStore};

/// The system clock in Unix seconds (the store takes the time from its caller everywhere else).
pub(crate) fn unix_now() -> i64 {
    latchkey_core::Timestamp::now().0 as i64
}
