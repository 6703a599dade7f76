//! C buffers to Rust slices and back. Inputs are `(pointer, length)`; outputs are
//! `(pointer, capacity, size_t *out_len)` where `*out_len` always receives the size the full result needs,
//! so a caller with a too-small buffer learns what to allocate. Nothing partial is ever left in an output.

use crate::status::{FfiError, FfiResult};
use latchkey_facade::Error;
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
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|_| FfiError::InvalidUtf8(name))
}

/// A fixed-size secret argument; anything but exactly 32 bytes is refused.
pub(crate) fn secret32<'a>(bytes: &'a [u8], name: &str) -> FfiResult<&'a [u8; 32]> {
    bytes.try_into().map_err(|_| {
        FfiError::InvalidArgument(format!("`{name}` must be 32 bytes, got {}", bytes.len()))
    })
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
        let needed = unsafe { out_len.as_mut() }.ok_or(FfiError::NullArgument(len_name))?;
        *needed = 0;
        check_length(capacity, name)?;
        let buf: &mut [u8] = if capacity == 0 {
            &mut []
        } else if ptr.is_null() {
            return Err(FfiError::NullArgument(name));
        } else {
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
            .ok_or(latchkey_core::Error::BufferTooSmall { needed: data.len() })
            .map_err(Error::from)?;
        target.copy_from_slice(data);
        Ok(())
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
