//! The C ABI's history entry points, `latchkey_history_identifier` and `latchkey_verify_history_update`,
//! called as a C program calls them: arbitrary bytes, arbitrary output capacities, NULL where allowed and
//! where not. Input: `flags: u8 ‖ capacity: u8 ‖ known: chunk ‖ new: rest`; flags bit 0 passes NULL for
//! empty inputs, bit 1 a NULL output (capacity 0), bit 2 a NULL input pointer with a non-zero length,
//! bit 3 a NULL `out_len`.
//!
//! Checks: no panic reaches the boundary; the status is the core's result (same error code) — the C layer
//! only translates; buffer rules (needed size, nothing written when too small, NUL-terminated identifier);
//! NULL where not allowed is `NULL_ARGUMENT`; the last error is set exactly on failure.
#![no_main]

use latchkey_core::identity::ChangeHistory;
use latchkey_ffi::*;
use latchkey_fuzz::ffi::{checked, identifier_text, in_ptr, Out};
use latchkey_fuzz::Cursor;
use libfuzzer_sys::fuzz_target;

/// What the core says about the history: the C layer must report exactly this.
fn history_identifier(history: &[u8]) -> Result<String, latchkey_core::Error> {
    Ok(ChangeHistory::import(history)?.identifier().to_string())
}

fn verify_history_update(known: &[u8], new: &[u8]) -> Result<String, latchkey_core::Error> {
    let known = ChangeHistory::import(known)?;
    let new = ChangeHistory::import(new)?;
    new.check_extends(&known)?;
    Ok(new.identifier().to_string())
}

fn expect(result: &Result<String, latchkey_core::Error>, status: LatchkeyStatus, out: &Out) {
    match result {
        Ok(id) => {
            if status == LATCHKEY_OK {
                assert_eq!(&identifier_text(out), id);
            } else {
                assert_eq!(status, LATCHKEY_ERR_BUFFER_TOO_SMALL);
                assert_eq!(out.len, LATCHKEY_IDENTIFIER_SIZE);
            }
        }
        Err(e) => {
            assert_eq!(status, -e.code(), "C status differs from the core's {e:?}");
            assert_eq!(out.len, 0, "*out_len after a failure");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let flags = input.u8();
    let capacity = input.u8() as usize;
    let known = input.chunk();
    let new = input.rest();
    let null_empty = flags & 1 != 0;
    let mut out = if flags & 2 != 0 {
        Out::query()
    } else {
        Out::new(capacity)
    };

    if flags & 4 != 0 {
        let status = unsafe {
            latchkey_history_identifier(
                std::ptr::null(),
                new.len() + 1,
                out.ptr().cast(),
                out.cap(),
                out.len_ptr(),
            )
        };
        assert_eq!(checked(status, "NULL history"), LATCHKEY_ERR_NULL_ARGUMENT);
        return;
    }
    if flags & 8 != 0 {
        let status = unsafe {
            latchkey_history_identifier(
                in_ptr(new, null_empty),
                new.len(),
                out.ptr().cast(),
                out.cap(),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(checked(status, "NULL out_len"), LATCHKEY_ERR_NULL_ARGUMENT);
        assert!(out.buf.iter().all(|&b| b == latchkey_fuzz::CANARY));
        return;
    }

    let status = checked(
        unsafe {
            latchkey_history_identifier(
                in_ptr(new, null_empty),
                new.len(),
                out.ptr().cast(),
                out.cap(),
                out.len_ptr(),
            )
        },
        "history_identifier",
    );
    out.check(status, "history_identifier");
    expect(&history_identifier(new), status, &out);

    let mut out = if flags & 2 != 0 {
        Out::query()
    } else {
        Out::new(capacity)
    };
    let status = checked(
        unsafe {
            latchkey_verify_history_update(
                in_ptr(known, null_empty),
                known.len(),
                in_ptr(new, null_empty),
                new.len(),
                out.ptr().cast(),
                out.cap(),
                out.len_ptr(),
            )
        },
        "verify_history_update",
    );
    out.check(status, "verify_history_update");
    expect(&verify_history_update(known, new), status, &out);
});
