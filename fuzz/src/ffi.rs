//! Calling the C ABI (`latchkey_ffi`'s `extern "C"` functions) from Rust the way a C program does, with the
//! checks every FFI target applies to every call: no `LATCHKEY_ERR_PANIC`, the last-error slot set exactly
//! when a call fails, and caller buffers handled as docs/C-API.md says.

use crate::{assert_untouched_or_wiped, CANARY};
use latchkey_ffi::*;
use std::ffi::{c_char, CStr};

/// The checks after every fallible call.
pub fn checked(status: LatchkeyStatus, what: &str) -> LatchkeyStatus {
    assert_ne!(
        status, LATCHKEY_ERR_PANIC,
        "{what}: a panic reached the C boundary"
    );
    let name = unsafe { CStr::from_ptr(latchkey_error_name(status)) };
    assert_ne!(
        name.to_bytes(),
        b"Unknown",
        "{what}: status {status} has no name"
    );
    let last = unsafe { CStr::from_ptr(latchkey_last_error()) };
    if status == LATCHKEY_OK {
        assert!(
            last.to_bytes().is_empty(),
            "{what}: stale last error after success"
        );
    } else {
        assert!(
            !last.to_bytes().is_empty(),
            "{what}: failed without a last error"
        );
    }
    status
}

/// An output buffer as a C caller would pass it: `capacity` bytes (NULL when `null` and capacity 0),
/// filled with [`CANARY`] so the checks see what a call wrote.
pub struct Out {
    pub buf: Vec<u8>,
    pub len: usize,
    null: bool,
}

impl Out {
    pub fn new(capacity: usize) -> Self {
        Out {
            buf: vec![CANARY; capacity],
            len: usize::MAX,
            null: false,
        }
    }

    /// NULL with capacity 0: a size query.
    pub fn query() -> Self {
        Out {
            buf: Vec::new(),
            len: usize::MAX,
            null: true,
        }
    }

    pub fn ptr(&mut self) -> *mut u8 {
        if self.null {
            std::ptr::null_mut()
        } else {
            self.buf.as_mut_ptr()
        }
    }

    pub fn cap(&self) -> usize {
        self.buf.len()
    }

    pub fn len_ptr(&mut self) -> *mut usize {
        &mut self.len
    }

    pub fn written(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The buffer rules of docs/C-API.md after `status`: on success `*out_len` bytes were written and
    /// nothing after them; on `BUFFER_TOO_SMALL` nothing was written and `*out_len` exceeds the capacity;
    /// on any other failure nothing partial is left.
    pub fn check(&self, status: LatchkeyStatus, what: &str) {
        assert_ne!(self.len, usize::MAX, "{what}: *out_len not set");
        match status {
            LATCHKEY_OK => {
                assert!(self.len <= self.cap(), "{what}: out_len beyond capacity");
                assert!(
                    self.buf[self.len..].iter().all(|&b| b == CANARY),
                    "{what}: wrote past *out_len"
                );
            }
            LATCHKEY_ERR_BUFFER_TOO_SMALL => {
                assert!(
                    self.len > self.cap(),
                    "{what}: too small, yet {} fits",
                    self.len
                );
                assert!(
                    self.buf.iter().all(|&b| b == CANARY),
                    "{what}: wrote into a too-small buffer"
                );
            }
            _ => assert_untouched_or_wiped(&self.buf, what),
        }
    }
}

/// A NUL-terminated copy of arbitrary bytes (cut at the first NUL, as C would read it).
pub fn c_string(bytes: &[u8]) -> Vec<c_char> {
    bytes
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as c_char)
        .chain(std::iter::once(0))
        .collect()
}

/// Reads an identifier string an FFI call wrote.
pub fn identifier_text(out: &Out) -> String {
    let bytes = out.written();
    assert_eq!(bytes.len(), LATCHKEY_IDENTIFIER_SIZE, "identifier size");
    assert_eq!(bytes.last(), Some(&0), "identifier not NUL-terminated");
    String::from_utf8(bytes[..bytes.len() - 1].to_vec()).expect("identifier is UTF-8")
}

/// A pointer for an input buffer; NULL for an empty one when `null_if_empty`.
pub fn in_ptr(bytes: &[u8], null_if_empty: bool) -> *const u8 {
    if bytes.is_empty() && null_if_empty {
        std::ptr::null()
    } else {
        bytes.as_ptr()
    }
}

/// A new vault, and an identity in it from a vector party's secrets.
pub fn vector_identity(
    party: &crate::fixtures::Party,
) -> (*const LatchkeyVault, *const LatchkeyIdentity) {
    let mut vault = std::ptr::null();
    assert_eq!(
        checked(unsafe { latchkey_vault_new(&mut vault) }, "vault"),
        LATCHKEY_OK
    );
    let mut identity = std::ptr::null();
    let status = unsafe {
        latchkey_identity_from_secrets(
            vault,
            party.signing_seed.as_ptr(),
            32,
            party.static_secret.as_ptr(),
            32,
            party.key_validity_secs,
            party.attestation_validity_secs,
            party.created_at,
            &mut identity,
        )
    };
    assert_eq!(checked(status, "identity"), LATCHKEY_OK);
    (vault, identity)
}

/// Vector identities created once through the C API and shared by every run (identity handles are
/// shared, immutable unless rotated, and usable from any thread), so each run spends its time on the
/// calls under test rather than on key generation.
pub struct VectorIdentities {
    /// (initiator, responder) of each handshake vector.
    pub pairs: Vec<(*const LatchkeyIdentity, *const LatchkeyIdentity)>,
}

// SAFETY: identity handles are reference-counted shared handles that docs/C-API.md allows on any thread
// concurrently; the vaults behind them are kept alive by the identities.
unsafe impl Send for VectorIdentities {}
unsafe impl Sync for VectorIdentities {}

pub fn vector_identities() -> &'static VectorIdentities {
    static CACHE: std::sync::LazyLock<VectorIdentities> =
        std::sync::LazyLock::new(|| VectorIdentities {
            pairs: crate::fixtures::handshake_vectors()
                .iter()
                .map(|v| {
                    let (vault_i, i) = vector_identity(&v.initiator);
                    let (vault_r, r) = vector_identity(&v.responder);
                    unsafe {
                        latchkey_vault_free(vault_i);
                        latchkey_vault_free(vault_r);
                    }
                    (i, r)
                })
                .collect(),
        });
    &CACHE
}

/// The cached identities of the handshake vector that `selector` picks (as `fixtures::handshake_vector`).
pub fn vector_pair(selector: u8) -> (*const LatchkeyIdentity, *const LatchkeyIdentity) {
    let pairs = &vector_identities().pairs;
    pairs[selector as usize % pairs.len()]
}
