//! The enrollment authority's runtime parts: its durable store ([`store`]). The enrollment messages,
//! credentials, policies and revocation lists themselves are the core's (`latchkey_core::{credential,
//! policy, enroll}`); this module keeps their state and serves them.

pub mod store;

pub use store::{AuthorityStore, SqliteAuthorityStore};

/// The system clock in Unix seconds (the store takes the time from its caller everywhere else).
pub(crate) fn unix_now() -> i64 {
    latchkey_core::Timestamp::now().0 as i64
}
