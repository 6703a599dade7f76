//! Identity handles and the stateless history checks.

use crate::buffer::secret32;
use crate::handle::SharedHandle;
use crate::status::{FfiError, FfiResult, LatchkeyStatus};
use crate::vault::LatchkeyVault;
use crate::{LatchkeySeconds, LATCHKEY_ALGORITHM_ECDSA_P256, LATCHKEY_ALGORITHM_ED25519};
use latchkey_facade::{
    history_identifier, verify_history_update, Identity, IdentityOptions, SigningAlgorithm,
};
use std::ffi::c_char;

/// An identity this program controls: a signing key with its change history, and an attested
/// secure-channel key.
pub struct LatchkeyIdentity {
    pub(crate) inner: Identity,
}

impl SharedHandle for LatchkeyIdentity {}

/// `Some(seconds)` for a caller's time, `None` (the system clock) for 0.
pub(crate) fn optional_time(seconds: LatchkeySeconds) -> Option<u64> {
    (seconds != 0).then_some(seconds)
}

fn identity_options(
    algorithm: u32,
    key_validity_secs: LatchkeySeconds,
    attestation_validity_secs: LatchkeySeconds,
) -> FfiResult<IdentityOptions> {
    let defaults = IdentityOptions::default();
    let algorithm = match algorithm {
        LATCHKEY_ALGORITHM_ED25519 => SigningAlgorithm::Ed25519,
        LATCHKEY_ALGORITHM_ECDSA_P256 => SigningAlgorithm::EcdsaP256,
        other => {
            return Err(FfiError::InvalidArgument(format!(
                "unknown signing algorithm {other}"
            )))
        }
    };
    let or_default = |value: u64, default: u64| if value == 0 { default } else { value };
    Ok(IdentityOptions {
        algorithm,
        key_validity_secs: or_default(key_validity_secs, defaults.key_validity_secs),
        attestation_validity_secs: or_default(
            attestation_validity_secs,
            defaults.attestation_validity_secs,
        ),
    })
}

/// Creates an identity with fresh keys in `vault`.
///
/// `algorithm` is `LATCHKEY_ALGORITHM_ED25519` or `LATCHKEY_ALGORITHM_ECDSA_P256`. A validity of 0 takes
/// the default (5 years for the identity key, 30 days for the channel-key attestation). `now` is the
/// creation time in Unix seconds, 0 for the system clock.
///
/// Ownership: borrows `vault`; on success `*out_identity` receives a new identity that the caller frees with
/// `latchkey_identity_free`. On failure `*out_identity` is set to NULL and no key is left in `vault`.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_identity_create(
    vault: *const LatchkeyVault,
    algorithm: u32,
    key_validity_secs: LatchkeySeconds,
    attestation_validity_secs: LatchkeySeconds,
    now: LatchkeySeconds,
    out_identity: *mut *const LatchkeyIdentity,
) -> LatchkeyStatus {
    ffi_boundary!({
        let slot = arg_out_handle!(out_identity);
        let vault = arg_ref!(vault);
        let options = identity_options(algorithm, key_validity_secs, attestation_validity_secs)?;
        let inner = Identity::create(&vault.inner, options, optional_time(now))?;
        *slot = LatchkeyIdentity { inner }.into_handle();
        Ok(())
    })
}

/// Creates an Ed25519 identity from given secrets: for reproducing test vectors and for importing keys made
/// elsewhere. Both secrets are exactly `LATCHKEY_SECRET_LEN` (32) bytes; they are copied into `vault`.
/// Validities and `created_at` as in `latchkey_identity_create` (0 = default / system clock).
///
/// Ownership: borrows every argument; the caller should wipe its copies of the secrets. On success
/// `*out_identity` receives a new identity to free with `latchkey_identity_free`; on failure it is NULL and
/// no key is left in `vault`.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_identity_from_secrets(
    vault: *const LatchkeyVault,
    signing_seed: *const u8,
    signing_seed_len: usize,
    static_secret: *const u8,
    static_secret_len: usize,
    key_validity_secs: LatchkeySeconds,
    attestation_validity_secs: LatchkeySeconds,
    created_at: LatchkeySeconds,
    out_identity: *mut *const LatchkeyIdentity,
) -> LatchkeyStatus {
    ffi_boundary!({
        let slot = arg_out_handle!(out_identity);
        let vault = arg_ref!(vault);
        let signing_seed = secret32(arg_bytes!(signing_seed, signing_seed_len), "signing_seed")?;
        let static_secret = secret32(
            arg_bytes!(static_secret, static_secret_len),
            "static_secret",
        )?;
        let options = identity_options(
            LATCHKEY_ALGORITHM_ED25519,
            key_validity_secs,
            attestation_validity_secs,
        )?;
        let inner = Identity::from_secrets(
            &vault.inner,
            signing_seed,
            static_secret,
            options,
            optional_time(created_at),
        )?;
        *slot = LatchkeyIdentity { inner }.into_handle();
        Ok(())
    })
}

/// Writes the identity's identifier (`lk` + 64 hex digits) as a NUL-terminated string.
///
/// Ownership: borrows `identity`; writes at most `out_capacity` bytes to `out`. `*out_len` receives the size
/// the string needs including its NUL (`LATCHKEY_IDENTIFIER_SIZE`); if that exceeds `out_capacity` the call
/// returns `LATCHKEY_ERR_BUFFER_TOO_SMALL` and writes nothing to `out`.
/// Threading: any thread, concurrently with other calls on the same identity.
#[no_mangle]
pub unsafe extern "C" fn latchkey_identity_identifier(
    identity: *const LatchkeyIdentity,
    out: *mut c_char,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let out = out.cast::<u8>();
        let buffer = arg_out_buffer!(out, out_capacity, out_len);
        buffer.write_str(&arg_ref!(identity).inner.identifier())
    })
}

/// Writes the identity's change history: public bytes that peers verify (see
/// `latchkey_verify_history_update`).
///
/// Ownership: borrows `identity`; `*out_len` receives the history's size; if it exceeds `out_capacity` the
/// call returns `LATCHKEY_ERR_BUFFER_TOO_SMALL` and writes nothing (pass NULL and 0 to query the size).
/// Threading: any thread, concurrently with other calls on the same identity.
#[no_mangle]
pub unsafe extern "C" fn latchkey_identity_export_history(
    identity: *const LatchkeyIdentity,
    out: *mut u8,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let buffer = arg_out_buffer!(out, out_capacity, out_len);
        buffer.write(&arg_ref!(identity).inner.export_history()?)
    })
}

/// Writes the number of changes in the identity's history (1 + number of rotations) to `*out_count`.
///
/// Ownership: borrows `identity`.
/// Threading: any thread, concurrently with other calls on the same identity.
#[no_mangle]
pub unsafe extern "C" fn latchkey_identity_change_count(
    identity: *const LatchkeyIdentity,
    out_count: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let out = arg_out_value!(out_count);
        *out = arg_ref!(identity).inner.change_count()?;
        Ok(())
    })
}

/// Rotates the identity's primary key and re-attests its channel key. `new_signing_seed` (exactly 32
/// bytes) makes the rotation deterministic for test vectors; pass NULL and 0 to generate a fresh key.
/// `now` in Unix seconds, 0 for the system clock. The previous primary key is deleted from the vault. On
/// failure the identity and the vault are unchanged (no new key is left behind).
///
/// Ownership: borrows every argument.
/// Threading: any thread; concurrent calls on the same identity are serialized. Handshakes started before
/// the rotation keep presenting the history they started with.
#[no_mangle]
pub unsafe extern "C" fn latchkey_identity_rotate(
    identity: *const LatchkeyIdentity,
    new_signing_seed: *const u8,
    new_signing_seed_len: usize,
    now: LatchkeySeconds,
) -> LatchkeyStatus {
    ffi_boundary!({
        let identity = arg_ref!(identity);
        let seed = if new_signing_seed.is_null() && new_signing_seed_len == 0 {
            None
        } else {
            Some(secret32(
                arg_bytes!(new_signing_seed, new_signing_seed_len),
                "new_signing_seed",
            )?)
        };
        identity.inner.rotate(seed, optional_time(now))?;
        Ok(())
    })
}

/// Frees an identity handle. NULL is a no-op. Its keys (primary and static) are deleted from the vault and
/// wiped — at once, or when the last handshake or node made from it is freed, since those still use them.
/// Channels and handshakes made from it stay valid. Its pinned peer histories are forgotten.
///
/// Ownership: takes `identity`; it must not be used again.
/// Threading: any thread, once no other thread uses this handle.
#[no_mangle]
pub unsafe extern "C" fn latchkey_identity_free(identity: *const LatchkeyIdentity) {
    ffi_infallible!((), { unsafe { LatchkeyIdentity::free_handle(identity) } })
}

/// Verifies exported history bytes (every change correctly signed) and writes the identity's identifier
/// as a NUL-terminated string, as `latchkey_identity_identifier` does.
///
/// Ownership: borrows `history`; output rules as in `latchkey_identity_identifier`.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_history_identifier(
    history: *const u8,
    history_len: usize,
    out: *mut c_char,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let out = out.cast::<u8>();
        let buffer = arg_out_buffer!(out, out_capacity, out_len);
        let history = arg_bytes!(history, history_len);
        buffer.write_str(&history_identifier(history)?)
    })
}

/// Accepts `new_history` as the next state of an identity known by `known_history`: both verify and the
/// new one extends the known one (same identifier, only appended rotations). Writes the identifier as in
/// `latchkey_identity_identifier`. Fails with `LATCHKEY_ERR_HISTORY_MISMATCH` for another identity or a
/// diverging history.
///
/// Ownership: borrows both histories; output rules as in `latchkey_identity_identifier`.
/// Threading: any thread.
#[no_mangle]
pub unsafe extern "C" fn latchkey_verify_history_update(
    known_history: *const u8,
    known_history_len: usize,
    new_history: *const u8,
    new_history_len: usize,
    out: *mut c_char,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let out = out.cast::<u8>();
        let buffer = arg_out_buffer!(out, out_capacity, out_len);
        let known = arg_bytes!(known_history, known_history_len);
        let new = arg_bytes!(new_history, new_history_len);
        buffer.write_str(&verify_history_update(known, new)?)
    })
}
