//! Change histories (`ChangeHistory::import`, PROTOCOL.md §3.3–3.5): the export format that handshake
//! payloads carry and that `latchkey_verify_history_update` reads. Input: the bytes to import.
//!
//! Checks: decoding never panics; whatever decodes re-encodes to the same bytes (one encoding per value),
//! with or without verification; `import` accepts exactly what decodes and verifies; a verified history
//! extends each of its prefixes (which verify too) and no strict prefix extends it.
#![no_main]

use latchkey_core::identity::ChangeHistory;
use latchkey_core::wire::{Decode, Encode};
use latchkey_core::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let unverified = ChangeHistory::decode_unverified(data);
    let imported = ChangeHistory::import(data);
    let decoded = ChangeHistory::from_bytes(data);
    // Both read the same format; they may name different errors (one checks trailing bytes first).
    assert_eq!(
        imported.as_ref().ok(),
        decoded.as_ref().ok(),
        "import and Decode disagree"
    );
    let Ok(changes) = unverified else {
        assert!(imported.is_err(), "imported what does not decode");
        return;
    };
    let mut encoded = vec![changes.len() as u8];
    for change in &changes {
        change.encode_into(&mut encoded);
    }
    assert_eq!(encoded, data, "unverified decode is not canonical");
    assert_eq!(
        ChangeHistory::new(changes.clone()),
        imported,
        "verification differs between import and new"
    );
    let Ok(history) = imported else { return };
    assert_eq!(history.export(), data, "export differs from the import");
    assert!(!history.changes().is_empty());
    let _ = history.identifier();
    let _ = history.check_not_expired(Timestamp(0));
    let _ = history.check_not_expired(Timestamp(u64::MAX));
    history
        .check_extends(&history)
        .expect("a history extends itself");
    for k in 1..changes.len() {
        let prefix =
            ChangeHistory::new(changes[..k].to_vec()).expect("a prefix of a valid history");
        assert_eq!(prefix.identifier(), history.identifier());
        history.check_extends(&prefix).expect("extends its prefix");
        assert!(
            prefix.check_extends(&history).is_err(),
            "a rollback was accepted"
        );
    }
});
