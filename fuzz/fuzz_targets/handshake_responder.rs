//! The responder's handshake state machine fed arbitrary peer messages at each step, then arbitrary transport
//! frames once established. Input format and checks: `latchkey_fuzz::drive` (fuzz/src/drive.rs).
#![no_main]

use latchkey_core::channel::Role;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| latchkey_fuzz::drive::handshake(Role::Responder, data));
