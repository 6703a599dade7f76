//! A bounded, process-wide cache of signature checks that passed (feature `std`; without it there is no
//! process-wide state and every signature is verified).
//!
//! Every handshake verifies the same few signatures again and again: each side re-checks its own attestation
//! when it starts, and a peer that reconnects presents the same history and attestation. Ed25519 (ring
//! and ed25519-dalek both refuse a non-canonical `S`) and ECDSA verification are deterministic functions of the public key,
//! the message and the signature, so remembering that exactly this triple verified gives the answer the
//! verifier would give again, without the ~30 µs it costs.
//!
//! Why this is sound:
//! - the entry is SHA-256 over a domain tag and the length-prefixed algorithm, public key, signature and
//!   message, so a hit needs a SHA-256 collision with a triple that really verified;
//! - only successes are stored: nothing a peer sends can make a later check pass that would fail;
//! - it caches signature checks only; expiry, identity binding, key purpose and the trust policy are checked
//!   by their callers on every handshake;
//! - it is bounded ([`CAPACITY`] entries of 32 bytes, emptied when full), so a peer cannot grow it.

use super::{PublicKey, Signature};
use crate::crypto::sig;
use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

/// Most entries held; the cache is emptied when it would grow beyond this.
pub const CAPACITY: usize = 4096;
const DOMAIN: &[u8] = b"latchkey/verified-signature/1";

static VERIFIED: LazyLock<Mutex<HashSet<[u8; 32]>>> =
    LazyLock::new(|| Mutex::new(HashSet::with_capacity(64)));

pub(crate) type Entry = [u8; 32];

pub(crate) fn entry(key: &PublicKey, message: &[u8], signature: &Signature) -> Entry {
    let key_bytes = key.as_bytes();
    sig::sha256(&[
        DOMAIN,
        &[signature.algorithm() as u8],
        &(key_bytes.len() as u64).to_be_bytes(),
        key_bytes,
        signature.as_bytes(),
        &(message.len() as u64).to_be_bytes(),
        message,
    ])
}

pub(crate) fn contains(entry: &Entry) -> bool {
    // A poisoned lock only costs a cache miss: the caller then verifies.
    VERIFIED
        .lock()
        .map(|set| set.contains(entry))
        .unwrap_or(false)
}

pub(crate) fn insert(entry: Entry) {
    if let Ok(mut set) = VERIFIED.lock() {
        if set.len() >= CAPACITY {
            set.clear();
        }
        set.insert(entry);
    }
}

/// Forgets every cached verification (e.g. to measure first-contact handshakes). Never needed for safety.
pub fn clear_verified_signature_cache() {
    if let Ok(mut set) = VERIFIED.lock() {
        set.clear();
    }
}

#[cfg(feature = "test-vectors")]
std::thread_local! {
    static REAL_VERIFICATIONS: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
}

/// Counts one signature verification that the cache did not answer (test builds only).
#[cfg(feature = "test-vectors")]
pub(crate) fn count_real_verification() {
    REAL_VERIFICATIONS.with(|n| n.set(n.get() + 1));
}

/// How many signatures this thread has really verified (not answered from the cache) so far: what the tests
/// count to show how many verifications a handshake costs. Per thread, so tests running in parallel do not
/// disturb each other's counts. Exists only with the `test-vectors` feature, which no release build has.
#[cfg(feature = "test-vectors")]
pub fn signatures_verified_on_this_thread() -> u64 {
    REAL_VERIFICATIONS.with(|n| n.get())
}

#[cfg(test)]
fn len() -> usize {
    VERIFIED.lock().map(|set| set.len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::{verify_signature, SigningAlgorithm, SigningVault, SoftwareVault};

    /// These tests look inside the shared cache, so they take turns (other tests only see verdicts, which the
    /// cache never changes).
    static TURN: Mutex<()> = Mutex::new(());

    fn signed(message: &[u8]) -> (PublicKey, Signature) {
        let vault = SoftwareVault::new();
        let key = vault
            .generate_signing_key(SigningAlgorithm::Ed25519)
            .unwrap();
        (
            vault.signing_public_key(&key).unwrap(),
            vault.sign(&key, message).unwrap(),
        )
    }

    #[test]
    fn a_cached_success_does_not_vouch_for_another_message_key_or_signature() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let (key, sig) = signed(b"message");
        verify_signature(&key, b"message", &sig).unwrap();
        assert!(contains(&entry(&key, b"message", &sig)));
        // Served from the cache now, and still right.
        verify_signature(&key, b"message", &sig).unwrap();
        assert!(verify_signature(&key, b"messagE", &sig).is_err());
        let (other_key, other_sig) = signed(b"message");
        assert!(verify_signature(&other_key, b"message", &sig).is_err());
        assert!(verify_signature(&key, b"message", &other_sig).is_err());
        let mut bytes = *sig.as_bytes();
        bytes[63] ^= 0x10;
        let tampered = Signature::new(SigningAlgorithm::Ed25519, bytes);
        assert!(verify_signature(&key, b"message", &tampered).is_err());
    }

    #[test]
    fn failures_are_never_cached() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let (key, sig) = signed(b"signed");
        for _ in 0..2 {
            assert!(verify_signature(&key, b"not signed", &sig).is_err());
            assert!(!contains(&entry(&key, b"not signed", &sig)));
        }
    }

    #[test]
    fn the_cache_stays_bounded_and_clearing_it_changes_no_verdict() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        let (some_key, _) = signed(b"x");
        for i in 0..(CAPACITY + 10) as u64 {
            insert(entry(
                &some_key,
                &i.to_be_bytes(),
                &Signature::new(SigningAlgorithm::Ed25519, [0; 64]),
            ));
            assert!(len() <= CAPACITY);
        }
        let (key, sig) = signed(b"after clearing");
        verify_signature(&key, b"after clearing", &sig).unwrap();
        clear_verified_signature_cache();
        assert!(!contains(&entry(&key, b"after clearing", &sig)));
        verify_signature(&key, b"after clearing", &sig).unwrap();
        assert!(verify_signature(&key, b"after clearinG", &sig).is_err());
    }
}
