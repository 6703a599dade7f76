//! Library-wide information: version, error names, the last error message.

use crate::status::{description_of, last_error_ptr, name_of, LatchkeyStatus};
use std::ffi::c_char;

/// The library version, e.g. "0.1.0", from the crate that was built.
const VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
) {
    Ok(version) => version,
    Err(_) => panic!("version contains NUL"),
};

/// Returns the library version as a static NUL-terminated string (e.g. "0.1.0").
///
/// Ownership: the string is static; do not free it.
/// Threading: any thread.
#[no_mangle]
pub extern "C" fn latchkey_version() -> *const c_char {
    ffi_info!(c"".as_ptr(), { VERSION.as_ptr() })
}

/// Returns the name of a status code ("Ok", "UntrustedPeer", "Timeout", "NullArgument", ...), or "Unknown"
/// for a code this library does not define. The names and codes come from the one error table every
/// Latchkey binding expands (Python raises an exception class of the same name).
///
/// Ownership: the string is static; do not free it.
/// Threading: any thread.
#[no_mangle]
pub extern "C" fn latchkey_error_name(status: LatchkeyStatus) -> *const c_char {
    ffi_info!(c"Unknown".as_ptr(), { name_of(status).as_ptr() })
}

/// Returns one sentence on what a status code means (from the same table as `latchkey_error_name`), e.g.
/// "A peer did not answer in time." for `LATCHKEY_ERR_TIMEOUT`; "Success." for `LATCHKEY_OK`; "Not a
/// Latchkey status code." for anything else.
///
/// Ownership: the string is static; do not free it.
/// Threading: any thread.
#[no_mangle]
pub extern "C" fn latchkey_error_description(status: LatchkeyStatus) -> *const c_char {
    ffi_info!(c"".as_ptr(), { description_of(status).as_ptr() })
}

/// Returns the message of the last failed call on this thread ("Name: details"), or "" if the last call
/// succeeded. Rule: every exported function clears it on entry (the `_free` functions too, which report no
/// status), except the four library-information functions (`latchkey_version`, `latchkey_error_name`,
/// `latchkey_error_description` and this one), which never change it. So it always describes the last
/// call that did something, and is "" after any call that did not fail.
///
/// Ownership: the string belongs to the library; do not free it. It stays valid until the next Latchkey
/// call on this thread; copy it to keep it.
/// Threading: per thread: each thread sees its own last error.
#[no_mangle]
pub extern "C" fn latchkey_last_error() -> *const c_char {
    ffi_info!(c"".as_ptr(), { last_error_ptr() })
}
