//! The C ABI's identity entry points with arbitrary arguments: `latchkey_identity_from_secrets` (key import),
//! `_create`, `_rotate`, `_export_history`, `_identifier`, `_change_count`, `_free`, and the histories they
//! export fed back through `latchkey_history_identifier` and `latchkey_verify_history_update`.
//! Input: op*; op (`u8`): 0 import (`seed: chunk ‖ secret: chunk ‖ key validity: u64 ‖ attestation
//! validity: u64 ‖ created: u64`), 1 create (`algorithm: u8 ‖ u64 ‖ u64 ‖ now: u64`), 2 rotate
//! (`identity: u8 ‖ seed: chunk, NULL if empty ‖ now: u64`), 3 export (`identity: u8 ‖ capacity: u16`),
//! 4 change count, 5 free, 6 vault key count, 7 identifier (`identity: u8 ‖ capacity: u8`).
//!
//! Checks: no panic at the boundary; a failed constructor leaves NULL; an import gives the core's
//! identity; a rotation adds exactly one change and its history extends the previous one (and a failed one
//! changes nothing); every exported history verifies to the identity's identifier; buffer rules.
#![no_main]

use latchkey_core::identity::{Identity, DEFAULT_KEY_VALIDITY_SECS};
use latchkey_core::vault::SoftwareVault;
use latchkey_core::Timestamp;
use latchkey_ffi::*;
use latchkey_fuzz::ffi::{checked, identifier_text, in_ptr, Out};
use latchkey_fuzz::Cursor;
use libfuzzer_sys::fuzz_target;

struct Held {
    handle: *const LatchkeyIdentity,
    history: Vec<u8>,
    identifier: String,
}

unsafe fn export(identity: *const LatchkeyIdentity) -> Vec<u8> {
    let mut out = Out::query();
    let status = checked(
        unsafe { latchkey_identity_export_history(identity, out.ptr(), 0, out.len_ptr()) },
        "export size",
    );
    assert_eq!(status, LATCHKEY_ERR_BUFFER_TOO_SMALL);
    let mut out = Out::new(out.len);
    let status = checked(
        unsafe { latchkey_identity_export_history(identity, out.ptr(), out.cap(), out.len_ptr()) },
        "export",
    );
    assert_eq!(status, LATCHKEY_OK);
    out.written().to_vec()
}

unsafe fn identifier(identity: *const LatchkeyIdentity) -> String {
    let mut out = Out::new(LATCHKEY_IDENTIFIER_SIZE);
    let status = checked(
        unsafe {
            latchkey_identity_identifier(identity, out.ptr().cast(), out.cap(), out.len_ptr())
        },
        "identifier",
    );
    assert_eq!(status, LATCHKEY_OK);
    identifier_text(&out)
}

unsafe fn history_id(history: &[u8]) -> String {
    let mut out = Out::new(LATCHKEY_IDENTIFIER_SIZE);
    let status = checked(
        unsafe {
            latchkey_history_identifier(
                history.as_ptr(),
                history.len(),
                out.ptr().cast(),
                out.cap(),
                out.len_ptr(),
            )
        },
        "history_identifier",
    );
    assert_eq!(status, LATCHKEY_OK, "an exported history does not verify");
    identifier_text(&out)
}

unsafe fn adopt(handle: *const LatchkeyIdentity) -> Held {
    let history = unsafe { export(handle) };
    let identifier = unsafe { identifier(handle) };
    assert_eq!(unsafe { history_id(&history) }, identifier);
    Held {
        handle,
        history,
        identifier,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let mut vault = std::ptr::null();
    assert_eq!(
        checked(unsafe { latchkey_vault_new(&mut vault) }, "vault"),
        LATCHKEY_OK
    );
    let mut held: Vec<Held> = Vec::new();
    while !input.is_empty() {
        match input.u8() % 8 {
            0 => {
                let seed = input.chunk();
                let secret = input.chunk();
                let (key_validity, attestation_validity, created) =
                    (input.u64(), input.u64(), input.u64());
                let mut out = std::ptr::dangling::<LatchkeyIdentity>();
                let status = checked(
                    unsafe {
                        latchkey_identity_from_secrets(
                            vault,
                            in_ptr(seed, true),
                            seed.len(),
                            in_ptr(secret, true),
                            secret.len(),
                            key_validity,
                            attestation_validity,
                            created,
                            &mut out,
                        )
                    },
                    "from_secrets",
                );
                if status != LATCHKEY_OK {
                    assert!(out.is_null(), "a failed import left a handle");
                    continue;
                }
                let h = unsafe { adopt(out) };
                if created != 0 {
                    // The history is the core's, from the same key and times.
                    let vault = SoftwareVault::new();
                    let seed: &[u8; 32] = seed.try_into().expect("import took 32 bytes");
                    let key = vault.import_ed25519_seed(seed).expect("seed");
                    let validity = if key_validity == 0 {
                        DEFAULT_KEY_VALIDITY_SECS
                    } else {
                        key_validity
                    };
                    let core = Identity::create_with_key(&vault, key, Timestamp(created), validity)
                        .expect("the core accepts what the C ABI accepted");
                    assert_eq!(core.identifier().to_string(), h.identifier);
                    assert_eq!(core.history().export(), h.history);
                }
                held.push(h);
            }
            1 => {
                let algorithm = u32::from(input.u8() % 3);
                let (key_validity, attestation_validity, now) =
                    (input.u64(), input.u64(), input.u64());
                let mut out = std::ptr::dangling::<LatchkeyIdentity>();
                let status = checked(
                    unsafe {
                        latchkey_identity_create(
                            vault,
                            algorithm,
                            key_validity,
                            attestation_validity,
                            now,
                            &mut out,
                        )
                    },
                    "create",
                );
                if status == LATCHKEY_OK {
                    held.push(unsafe { adopt(out) });
                } else {
                    assert!(out.is_null(), "a failed create left a handle");
                }
            }
            op => {
                if held.is_empty() {
                    continue;
                }
                let i = input.u8() as usize % held.len();
                let h = &mut held[i];
                match op {
                    2 => {
                        let seed = input.chunk();
                        let now = input.u64();
                        let status = checked(
                            unsafe {
                                latchkey_identity_rotate(
                                    h.handle,
                                    in_ptr(seed, true),
                                    seed.len(),
                                    now,
                                )
                            },
                            "rotate",
                        );
                        let history = unsafe { export(h.handle) };
                        if status != LATCHKEY_OK {
                            assert_eq!(history, h.history, "a failed rotation changed the history");
                            continue;
                        }
                        assert_eq!(history[0], h.history[0] + 1, "a rotation adds one change");
                        let mut out = Out::new(LATCHKEY_IDENTIFIER_SIZE);
                        let status = checked(
                            unsafe {
                                latchkey_verify_history_update(
                                    h.history.as_ptr(),
                                    h.history.len(),
                                    history.as_ptr(),
                                    history.len(),
                                    out.ptr().cast(),
                                    out.cap(),
                                    out.len_ptr(),
                                )
                            },
                            "verify_history_update",
                        );
                        assert_eq!(status, LATCHKEY_OK, "a rotation is not an extension");
                        assert_eq!(identifier_text(&out), h.identifier);
                        h.history = history;
                    }
                    3 => {
                        let mut out = Out::new(input.u16() as usize);
                        let status = checked(
                            unsafe {
                                latchkey_identity_export_history(
                                    h.handle,
                                    out.ptr(),
                                    out.cap(),
                                    out.len_ptr(),
                                )
                            },
                            "export",
                        );
                        out.check(status, "export");
                        assert_eq!(out.len, h.history.len());
                        if status == LATCHKEY_OK {
                            assert_eq!(out.written(), &h.history[..]);
                        }
                    }
                    4 => {
                        let mut count = usize::MAX;
                        let status = checked(
                            unsafe { latchkey_identity_change_count(h.handle, &mut count) },
                            "change_count",
                        );
                        assert_eq!(status, LATCHKEY_OK);
                        assert_eq!(count, h.history[0] as usize);
                    }
                    5 => {
                        let h = held.swap_remove(i);
                        unsafe { latchkey_identity_free(h.handle) };
                    }
                    6 => {
                        let mut count = usize::MAX;
                        let status = checked(
                            unsafe { latchkey_vault_key_count(vault, &mut count) },
                            "key_count",
                        );
                        assert_eq!(status, LATCHKEY_OK);
                        assert_ne!(count, usize::MAX);
                    }
                    _ => {
                        let mut out = Out::new(input.u8() as usize);
                        let status = checked(
                            unsafe {
                                latchkey_identity_identifier(
                                    h.handle,
                                    out.ptr().cast(),
                                    out.cap(),
                                    out.len_ptr(),
                                )
                            },
                            "identifier",
                        );
                        out.check(status, "identifier");
                        assert_eq!(out.len, LATCHKEY_IDENTIFIER_SIZE);
                        if status == LATCHKEY_OK {
                            assert_eq!(identifier_text(&out), h.identifier);
                        }
                    }
                }
            }
        }
    }
    for h in held {
        unsafe { latchkey_identity_free(h.handle) };
    }
    unsafe { latchkey_vault_free(vault) };
});
