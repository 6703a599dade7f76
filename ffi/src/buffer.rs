//! C buffers to Rust slices and back. Inputs are `(pointer, length)`; outputs are
//! `(pointer, capacity, size_t *out_len)` where `*out_len` always receives the size the full result needs,
//! so a caller with a too-small buffer learns what to allocate. Nothing partial is ever left in an output.

use crate::status::{FfiError, FfiResult};
use latchkey_facade::{Error, ErrorCode, Trust};
use std::ffi::{c_char, CStr};

/// Rust slices cannot exceed `isize::MAX` bytes; a larger C length is garbage, refused before it is used.
pub(crate) fn check_length(len: usize, name: &str) -> FfiResult<()> {
    if len > isize::MAX as usize {
        return Err(FfiError::InvalidArgument(format!(
            "length of `{name}` is not a plausible buffer size: {len}"
        )));
    }
    Ok(())
}

/// A borrowed input buffer. NULL is accepted only for an empty buffer.
///
/// # Safety
/// When `len > 0`, `ptr` must point to `len` readable bytes that stay valid for `'a`.
pub(crate) unsafe fn input_bytes<'a>(
    ptr: *const u8,
    len: usize,
    name: &'static str,
) -> FfiResult<&'a [u8]> {
    check_length(len, name)?;
    if len == 0 {
        Ok(&[])
    } else if ptr.is_null() {
        Err(FfiError::NullArgument(name))
    } else {
        // SAFETY: non-NULL, at most isize::MAX bytes (checked), readable for `'a` (this function's contract).
        Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
    }
}

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn input_str<'a>(ptr: *const c_char, name: &'static str) -> FfiResult<&'a str> {
    if ptr.is_null() {
        return Err(FfiError::NullArgument(name));
    }
    // SAFETY: non-NULL (checked) and NUL-terminated, valid for `'a` (this function's contract).
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|_| FfiError::InvalidUtf8(name))
}

/// Whom a call accepts, from a `(const char *const *list, size_t count)` argument named `name`: the listed
/// identifiers, or any identity when the list is exactly one entry equal to `LATCHKEY_TRUST_ANY` (`"*"`).
/// NULL with count 0 is an error: trust is never implied.
///
/// # Safety
/// `trusted` is NULL or points to `count` pointers, each NULL or a NUL-terminated string.
pub(crate) unsafe fn input_trust(
    trusted: *const *const c_char,
    count: usize,
    name: &'static str,
) -> FfiResult<Trust> {
    if trusted.is_null() {
        return Err(if count == 0 {
            FfiError::InvalidArgument(format!(
                "no trust given ({name} == NULL, {name}_count == 0): list the trusted identifiers, or pass \
                 {{LATCHKEY_TRUST_ANY}} (\"*\") with count 1 to accept any peer that proves an identity"
            ))
        } else {
            FfiError::NullArgument(name)
        });
    }
    check_length(count.saturating_mul(size_of::<*const c_char>()), name)?;
    // SAFETY: non-NULL (checked), `count` pointers readable (this function's contract), size checked above.
    let pointers = unsafe { std::slice::from_raw_parts(trusted, count) };
    let entry_name = match name {
        "relay_trusted" => "relay_trusted[i]",
        _ => "trusted[i]",
    };
    let list = pointers
        .iter()
        .map(|&entry| unsafe { input_str(entry, entry_name) }.map(str::to_owned))
        .collect::<FfiResult<Vec<_>>>()?;
    Ok(Trust::from_list(&list))
}

/// An optional string argument: NULL is `None`.
///
/// # Safety
/// As [`input_str`].
#[cfg(feature = "node")]
pub(crate) unsafe fn optional_str<'a>(
    ptr: *const c_char,
    name: &'static str,
) -> FfiResult<Option<&'a str>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        unsafe { input_str(ptr, name) }.map(Some)
    }
}

/// A fixed-size secret argument; anything but exactly 32 bytes is refused.
pub(crate) fn secret32<'a>(bytes: &'a [u8], name: &str) -> FfiResult<&'a [u8; 32]> {
    bytes.try_into().map_err(|_| {
        FfiError::InvalidArgument(format!("`{name}` must be 32 bytes, got {}", bytes.len()))
    })
}

/// `BufferTooSmall`, worded as the core words it (the needed size itself goes to `*out_len`).
fn too_small(needed: usize) -> FfiError {
    FfiError::new(
        ErrorCode::BufferTooSmall,
        format!("buffer too small: {needed} bytes needed"),
    )
}

/// A caller-provided output buffer and the `size_t *` that receives the needed size.
pub(crate) struct OutBuffer<'a> {
    buf: &'a mut [u8],
    needed: &'a mut usize,
}

impl<'a> OutBuffer<'a> {
    /// Checks the pointers and sets `*out_len` to 0 until a result is written. `ptr` may be NULL only with
    /// `capacity` 0 (a size query).
    ///
    /// # Safety
    /// `ptr` points to `capacity` writable bytes (or is NULL with capacity 0); `out_len` is NULL or writable.
    pub(crate) unsafe fn new(
        ptr: *mut u8,
        capacity: usize,
        out_len: *mut usize,
        name: &'static str,
        len_name: &'static str,
    ) -> FfiResult<Self> {
        // SAFETY: `out_len` is NULL (refused) or writable (this function's contract).
        let needed = unsafe { out_len.as_mut() }.ok_or(FfiError::NullArgument(len_name))?;
        *needed = 0;
        check_length(capacity, name)?;
        let buf: &mut [u8] = if capacity == 0 {
            &mut []
        } else if ptr.is_null() {
            return Err(FfiError::NullArgument(name));
        } else {
            // SAFETY: non-NULL, `capacity` writable bytes (this function's contract), at most isize::MAX.
            unsafe { std::slice::from_raw_parts_mut(ptr, capacity) }
        };
        Ok(OutBuffer { buf, needed })
    }

    /// Copies `data`, or reports its size as needed and writes nothing.
    pub(crate) fn write(self, data: &[u8]) -> FfiResult<()> {
        *self.needed = data.len();
        let target = self
            .buf
            .get_mut(..data.len())
            .ok_or_else(|| too_small(data.len()))?;
        target.copy_from_slice(data);
        Ok(())
    }

    /// Refuses a buffer smaller than `size` before anything happens, reporting `size` as needed: for calls
    /// that act first and report afterwards (a bound address), so a too-small buffer costs nothing.
    #[cfg(feature = "node")]
    pub(crate) fn require(self, size: usize) -> FfiResult<Self> {
        if self.buf.len() < size {
            *self.needed = size;
            return Err(too_small(size));
        }
        Ok(self)
    }

    /// Writes `text` as a NUL-terminated C string; the needed size includes the NUL.
    pub(crate) fn write_str(self, text: &str) -> FfiResult<()> {
        let mut bytes = Vec::with_capacity(text.len() + 1);
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(0);
        self.write(&bytes)
    }

    /// Lets a facade `*_into` function write straight into the buffer. Its `BufferTooSmall { needed }` is
    /// reported through `*out_len`; on any other failure the buffer is wiped.
    pub(crate) fn fill_with(
        self,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, Error>,
    ) -> FfiResult<()> {
        match fill(self.buf) {
            Ok(len) => {
                *self.needed = len;
                Ok(())
            }
            Err(e) if e.needed().is_some() => {
                *self.needed = e.needed().unwrap_or_default();
                Err(e.into())
            }
            Err(other) => {
                self.buf.fill(0);
                Err(other.into())
            }
        }
    }
}
