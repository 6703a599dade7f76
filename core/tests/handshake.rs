mod common;

use common::*;

#[test]
fn two_parties_authenticate_each_other_and_exchange_frames() {
    let alice = Party::new();
    let bob = Party::new();
    let (mut a, mut b) = handshake(alice.config_any(), bob.config_any()).unwrap();
    assert_eq!(a.peer_identifier(), bob.identity.identifier());
    assert_eq!(b.peer_identifier(), alice.identity.identifier());
    assert_eq!(a.handshake_hash(), b.handshake_hash());
    let frame = a.encrypt_to_vec(b"ding dong").unwrap();
    assert_eq!(b.decrypt_to_vec(&frame).unwrap(), b"ding dong");
    let frame = b.encrypt_to_vec(b"who's there").unwrap();
    assert_eq!(a.decrypt_to_vec(&frame).unwrap(), b"who's there");
}
