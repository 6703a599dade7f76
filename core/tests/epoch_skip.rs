//! The test-only `Encryptor::skip_epochs_for_test` (used to force epoch loss in the routed-channel tests)
//! moves the sender exactly as sending and losing that many epochs of frames would: a receiver derives the
//! same key up to `MAX_EPOCH_SKIP` epochs ahead, and refuses beyond it with `TooFarAhead`.

mod common;

use common::{handshake, Party};
use latchkey_core::channel::{MAX_EPOCH_SKIP, REKEY_INTERVAL};
use latchkey_core::Error;

#[test]
fn skipped_epochs_match_what_the_receiver_derives() {
    let (i, r) = (Party::new(), Party::new());
    for (sent_first, skip) in [(0u64, 1u64), (5, MAX_EPOCH_SKIP), (0, MAX_EPOCH_SKIP + 1)] {
        let (mut a, mut b) = handshake(i.config_any(), r.config_any()).unwrap();
        for _ in 0..sent_first {
            let f = a.encryptor().encrypt_to_vec(b"before").unwrap();
            b.decryptor().decrypt_to_vec(&f).unwrap();
        }
        a.encryptor().skip_epochs_for_test(skip).unwrap();
        let frame = a.encryptor().encrypt_to_vec(b"after").unwrap();
        let nonce = u64::from_be_bytes(frame[..8].try_into().unwrap());
        assert_eq!(nonce / REKEY_INTERVAL, skip, "the frame is in epoch {skip}");
        let opened = b.decryptor().decrypt_to_vec(&frame);
        if skip <= MAX_EPOCH_SKIP {
            assert_eq!(
                opened.unwrap(),
                b"after",
                "skip {skip}: same key as derived"
            );
        } else {
            assert_eq!(opened.unwrap_err(), Error::TooFarAhead);
        }
    }
}

#[test]
fn a_skip_from_an_epoch_boundary_counts_from_the_current_key() {
    let (i, r) = (Party::new(), Party::new());
    let (mut a, mut b) = handshake(i.config_any(), r.config_any()).unwrap();
    // Into epoch 1, then up to its last nonce: the next frame would be the first of epoch 2, and the
    // sender's key is still epoch 1's.
    a.encryptor().skip_epochs_for_test(1).unwrap();
    let f = a.encryptor().encrypt_to_vec(b"x").unwrap();
    b.decryptor().decrypt_to_vec(&f).unwrap();
    while a.encryptor().next_nonce() < 2 * REKEY_INTERVAL {
        a.encryptor().encrypt_to_vec(b"lost").unwrap();
    }
    a.encryptor().skip_epochs_for_test(2).unwrap();
    let f = a.encryptor().encrypt_to_vec(b"y").unwrap();
    assert_eq!(
        u64::from_be_bytes(f[..8].try_into().unwrap()) / REKEY_INTERVAL,
        3,
        "two epochs after epoch 1"
    );
    assert_eq!(b.decryptor().decrypt_to_vec(&f).unwrap(), b"y");
}
