//! Library-wide information: version, error names, the last error message.

use crate::status::{last_error_ptr, LatchkeyStatus, NAMES};
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
    ffi_infallible!(c"".as_ptr(), { VERSION.as_ptr() })
}

/// Returns the name of a status code ("Ok", "UntrustedPeer", "NullArgument", ...; the names match the
/// error names of every Latchkey binding), or "Unknown" for a code this library does not define.
///
/// Ownership: the string is static; do not free it.
/// Threading: any thread.
#[no_mangle]
pub extern "C" fn latchkey_error_name(status: LatchkeyStatus) -> *const c_char {
    ffi_infallible!(c"Unknown".as_ptr(), {
        NAMES
            .iter()
            .find(|(code, _)| *code == status)
            .map_or(c"Unknown".as_ptr(), |(_, name)| name.as_ptr())
    })
}

/// Returns the message of the last failed call on this thread ("Name: details"), or "" if the last call
/// succeeded. Every fallible call clears it first.
///
/// Ownership: the string belongs to the library; do not free it. It stays valid until the next Latchkey
/// call on this thread; copy it to keep it.
/// Threading: per thread: each thread sees its own last error.
#[no_mangle]
pub extern "C" fn latchkey_last_error() -> *const c_char {
    ffi_infallible!(c"".as_ptr(), { last_error_ptr() })
}
