//! Software vault handles.

use crate::handle::SharedHandle;
use crate::status::LatchkeyStatus;
use latchkey_facade::Vault;

/// A software vault: holds the secret keys of the identities created in it, in process memory.
pub struct LatchkeyVault {
    pub(crate) inner: Vault,
}

impl SharedHandle for LatchkeyVault {}

/// Creates an empty software vault.
///
/// Ownership: on success `*out_vault` receives a new vault that the caller frees with `latchkey_vault_free`
/// (identities created in it keep the keys alive on their own, so the vault may be freed first). On failure
/// `*out_vault` is set to NULL.
/// Threading: any thread. The vault may be used from several threads at once.
#[no_mangle]
pub unsafe extern "C" fn latchkey_vault_new(
    out_vault: *mut *const LatchkeyVault,
) -> LatchkeyStatus {
    ffi_boundary!({
        let slot = arg_out_handle!(out_vault);
        *slot = LatchkeyVault {
            inner: Vault::new(),
        }
        .into_handle();
        Ok(())
    })
}

/// Writes the number of keys the vault holds to `*out_count`.
///
/// Ownership: borrows `vault` for the call.
/// Threading: any thread, concurrently with other calls on the same vault.
#[no_mangle]
pub unsafe extern "C" fn latchkey_vault_key_count(
    vault: *const LatchkeyVault,
    out_count: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let out = arg_out_value!(out_count);
        *out = arg_ref!(vault).inner.key_count();
        Ok(())
    })
}

/// Frees a vault handle. NULL is a no-op. The keys of identities created in it live on with those identities
/// (which may still be used): each identity's keys are deleted and wiped when `latchkey_identity_free` frees
/// it (or, if a handshake or node made from it is still running, when the last of those is freed); a
/// rotation deletes the rotated-away key at once.
///
/// Ownership: takes `vault`; it must not be used again.
/// Threading: any thread, once no other thread uses this handle.
#[no_mangle]
pub unsafe extern "C" fn latchkey_vault_free(vault: *const LatchkeyVault) {
    ffi_infallible!((), { unsafe { LatchkeyVault::free_handle(vault) } })
}
