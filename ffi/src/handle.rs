//! How Rust values become opaque C handles. The kind is part of each handle type, so creation, borrowing
//! and `_free` cannot disagree about it:
//! - [`OwnedHandle`] (`Box`): one owner, mutable state, one thread at a time (handshakes, channels).
//!   C sees `T *`; `_free` drops the box.
//! - [`SharedHandle`] (`Arc`): immutable through the handle, `Send + Sync`, usable from several threads at
//!   once (vaults, identities). C sees `const T *`; `_free` drops one reference.

use std::sync::Arc;

pub(crate) trait OwnedHandle: Sized {
    fn into_handle(self) -> *mut Self {
        Box::into_raw(Box::new(self))
    }

    /// Drops a handle made by `into_handle`; NULL is a no-op.
    ///
    /// # Safety
    /// `handle` is NULL or came from `into_handle` and was not freed before.
    unsafe fn free_handle(handle: *mut Self) {
        if !handle.is_null() {
            // SAFETY: per this function's contract the pointer came from `Box::into_raw` and is freed once.
            drop(unsafe { Box::from_raw(handle) });
        }
    }
}

pub(crate) trait SharedHandle: Sized + Send + Sync {
    fn into_handle(self) -> *const Self {
        Arc::into_raw(Arc::new(self))
    }

    /// Drops one reference made by `into_handle`; NULL is a no-op.
    ///
    /// # Safety
    /// `handle` is NULL or came from `into_handle` and was not freed before.
    unsafe fn free_handle(handle: *const Self) {
        if !handle.is_null() {
            // SAFETY: per this function's contract the pointer came from `Arc::into_raw` and this reference
            // is released once.
            drop(unsafe { Arc::from_raw(handle) });
        }
    }
}
