//! The boundary every exported function body runs inside: no panic unwinds into C, every error becomes a
//! status code plus a last-error message, and every pointer is checked for NULL in one way.

use crate::status::{
    clear_last_error, record_error, FfiError, FfiResult, LatchkeyStatus, LATCHKEY_OK,
};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Wraps the body of a fallible exported function. The body evaluates to `FfiResult<()>`; the function
/// returns `LATCHKEY_OK` or the error's code, with the message in the thread's last-error slot.
macro_rules! ffi_boundary {
    ($body:block) => {
        $crate::boundary::run_status(move || -> $crate::status::FfiResult<()> { $body })
    };
}

/// Wraps the body of an exported function that reports no status (the `_free` functions): it clears the
/// thread's last error on entry like every other call (so no stale message survives a call that cannot report
/// one), a panic still stops at the boundary, and `$fallback` is returned instead.
macro_rules! ffi_infallible {
    ($fallback:expr, $body:block) => {
        $crate::boundary::run_infallible($fallback, move || $body)
    };
}

/// Wraps the body of one of the four library-information functions (`latchkey_version`,
/// `latchkey_error_name`, `latchkey_error_description`, `latchkey_last_error`): the only calls that leave the
/// last error as it is, so that a caller can name a failed status and read its message in any order.
macro_rules! ffi_info {
    ($fallback:expr, $body:block) => {
        $crate::boundary::run_info($fallback, move || $body)
    };
}

/// A shared reference from a handle or struct pointer, or `NullArgument` naming the parameter.
macro_rules! arg_ref {
    ($ptr:ident) => {
        // SAFETY: the caller's contract (docs/C-API.md): a handle pointer is NULL (checked here) or a live
        // handle of this type, not freed, used by the threads its "Threading" line allows.
        match unsafe { $ptr.as_ref() } {
            Some(value) => value,
            None => return Err($crate::status::FfiError::NullArgument(stringify!($ptr))),
        }
    };
}

/// An exclusive reference from an owned-handle pointer, or `NullArgument` naming the parameter.
macro_rules! arg_mut {
    ($ptr:ident) => {
        // SAFETY: as `arg_ref!`; an owned handle is used by one thread at a time, so this is the only
        // reference to it during the call.
        match unsafe { $ptr.as_mut() } {
            Some(value) => value,
            None => return Err($crate::status::FfiError::NullArgument(stringify!($ptr))),
        }
    };
}

/// An input byte buffer `(ptr, len)`: NULL is allowed only when `len` is 0.
macro_rules! arg_bytes {
    ($ptr:ident, $len:ident) => {
        // SAFETY: the caller's contract: `$ptr` addresses `$len` readable bytes for the call (checked for
        // NULL and plausible length inside).
        unsafe { $crate::buffer::input_bytes($ptr, $len, stringify!($ptr))? }
    };
}

/// An output byte buffer `(ptr, capacity, out_len)`; see `buffer::OutBuffer`.
macro_rules! arg_out_buffer {
    ($ptr:ident, $cap:ident, $len:ident) => {
        // SAFETY: the caller's contract: `$ptr` addresses `$cap` writable bytes and `$len` one writable
        // `size_t`, for the call (NULLs checked inside).
        unsafe {
            $crate::buffer::OutBuffer::new($ptr, $cap, $len, stringify!($ptr), stringify!($len))?
        }
    };
}

/// A `T **out` parameter for a new handle: checked, then set to NULL so that no failure leaves a stale
/// pointer behind.
macro_rules! arg_out_handle {
    ($ptr:ident) => {
        // SAFETY: the caller's contract: an out-parameter is NULL (checked) or points to a writable slot.
        match unsafe { $ptr.as_mut() } {
            Some(slot) => {
                // `as _` serves both `T *` (owned) and `const T *` (shared) handle slots.
                *slot = std::ptr::null_mut::<()>() as _;
                slot
            }
            None => return Err($crate::status::FfiError::NullArgument(stringify!($ptr))),
        }
    };
}

/// A plain `T *out` scalar result parameter.
macro_rules! arg_out_value {
    ($ptr:ident) => {
        // SAFETY: the caller's contract: an out-parameter is NULL (checked) or points to a writable value.
        match unsafe { $ptr.as_mut() } {
            Some(slot) => slot,
            None => return Err($crate::status::FfiError::NullArgument(stringify!($ptr))),
        }
    };
}

pub(crate) fn run_status(body: impl FnOnce() -> FfiResult<()>) -> LatchkeyStatus {
    clear_last_error();
    // AssertUnwindSafe: after a caught panic the caller is told (LATCHKEY_ERR_PANIC) to free the handles
    // involved, so no possibly half-updated state is used again.
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => LATCHKEY_OK,
        Ok(Err(error)) => record_error(&error),
        Err(payload) => record_error(&FfiError::Panic(panic_text(payload.as_ref()))),
    }
}

pub(crate) fn run_infallible<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    clear_last_error();
    run_info(fallback, body)
}

pub(crate) fn run_info<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        record_error(&FfiError::Panic(panic_text(payload.as_ref())));
        fallback
    })
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-text panic payload".to_owned()
    }
}
