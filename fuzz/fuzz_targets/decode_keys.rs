//! The small structures: identifiers (text and binary, PROTOCOL.md §3.6), public keys (§2.1), signatures
//! (§2.2), `ChangeData` and `Change` (§3.1, §3.3), and `verify_signature` over whatever decodes.
//! Input: `selector: u8 ‖ bytes`.
//!
//! Checks: no panic; canonical re-encoding; an identifier's text form is the one the parser accepted
//! (lower case only); a signature never verifies under a key of another algorithm.
#![no_main]

use latchkey_core::identity::{Change, ChangeData, Identifier};
use latchkey_core::vault::{verify_signature, PublicKey, Signature};
use latchkey_core::wire::{Decode, Encode, Reader};
use latchkey_fuzz::Cursor;
use libfuzzer_sys::fuzz_target;
use std::str::FromStr;

fn canonical<T: Decode + Encode>(bytes: &[u8]) -> Option<T> {
    let value = T::from_bytes(bytes).ok()?;
    assert_eq!(value.to_bytes(), bytes, "not canonical");
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let selector = input.u8();
    let bytes = input.rest();
    match selector % 7 {
        0 => {
            if let Ok(text) = std::str::from_utf8(bytes) {
                if let Ok(id) = Identifier::from_str(text) {
                    assert_eq!(id.to_string(), text, "identifier has a second text form");
                }
            }
        }
        1 => {
            if let Some(id) = canonical::<Identifier>(bytes) {
                assert_eq!(Identifier::from_str(&id.to_string()), Ok(id));
            }
        }
        2 => {
            let _ = canonical::<PublicKey>(bytes);
        }
        3 => {
            let _ = canonical::<Signature>(bytes);
        }
        4 => {
            if let Some(data) = canonical::<ChangeData>(bytes) {
                let _ = data.hash();
            }
        }
        5 => {
            let _ = canonical::<Change>(bytes);
        }
        _ => {
            // key ‖ signature ‖ message, read with the wire Reader as the decoders do.
            let mut reader = Reader::new(bytes);
            let (Ok(key), Ok(signature)) = (
                PublicKey::decode_from(&mut reader),
                Signature::decode_from(&mut reader),
            ) else {
                return;
            };
            let message = reader.take(reader.remaining()).expect("rest");
            let verified = verify_signature(&key, message, &signature);
            if key.algorithm() != signature.algorithm() {
                assert!(verified.is_err(), "cross-algorithm signature verified");
            }
            // The cache of successes must answer like the verifier.
            assert_eq!(verify_signature(&key, message, &signature), verified);
        }
    }
});
