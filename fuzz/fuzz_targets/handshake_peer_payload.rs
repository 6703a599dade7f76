//! The peer's identity proof behind the Noise layer: the independent `snow` implementation plays the peer
//! and encrypts a payload the fuzzer writes, so every input reaches `Handshake::verify_peer` (PROTOCOL.md §5.4)
//! instead of stopping at the AEAD. Input:
//! `vector: u8 ‖ flags: u8 ‖ [static secret: 32 bytes if flags bit 2] ‖ payload (rest)`;
//! flags bit 0: test the initiator (snow responds, payload in message 2), else the responder (payload in
//! message 3); bit 1: trust any identity, else only the vector's peer.
//!
//! Checks: no panic; a handshake that accepts the payload has exactly that payload's identity, the static
//! key snow used, an attestation that verifies for it, and a peer the trust policy accepts; its history is
//! valid as presented (PROTOCOL.md 3.4), and the full check refuses it for nothing but the first change's
//! self-signature, which a handshake does not check; a failure is final; an accepted channel interoperates
//! with snow in both directions.
#![no_main]

use latchkey_core::channel::{
    HandshakePayload, Role, TrustAnyIdentity, TrustPolicy, FRAME_HEADER_LEN,
    MAX_HANDSHAKE_MESSAGE_LEN,
};
use latchkey_core::identity::PurposeKey;
use latchkey_core::wire::Decode;
use latchkey_core::Error;
use latchkey_fuzz::fixtures::{handshake_vector, snow_peer};
use latchkey_fuzz::Cursor;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let vector = handshake_vector(input.u8());
    let flags = input.u8();
    let role = if flags & 1 != 0 {
        Role::Initiator
    } else {
        Role::Responder
    };
    let trust_any = flags & 2 != 0;
    let peer = vector.peer(role);
    let static_secret: [u8; 32] = if flags & 4 != 0 {
        let mut s = [0u8; 32];
        let got = input.bytes(32);
        s[..got.len()].copy_from_slice(got);
        s
    } else {
        peer.static_secret
    };
    // Room for message 3's encrypted static key and tags within one Noise message.
    let payload = {
        let p = input.rest();
        &p[..p.len().min(MAX_HANDSHAKE_MESSAGE_LEN - 32 - 48 - 16)]
    };
    let trust: Arc<dyn TrustPolicy> = if trust_any {
        Arc::new(TrustAnyIdentity)
    } else {
        vector.trust_peer(role)
    };
    let mut ours = vector.handshake(role, trust, true);
    let mut snow = snow_peer(
        vector.suite,
        role == Role::Responder,
        &static_secret,
        &peer.ephemeral_secret,
    );
    let mut buf = vec![0u8; 65535];
    let mut plain = vec![0u8; 65535];

    let result = match role {
        Role::Responder => {
            let n = snow.write_message(&[], &mut buf).expect("snow m1");
            ours.read_message(&buf[..n])
                .expect("any 32 bytes are a message 1");
            let m2 = ours.write_message().expect("m2");
            snow.read_message(&m2, &mut plain)
                .expect("snow reads our m2");
            let n = snow.write_message(payload, &mut buf).expect("snow m3");
            ours.read_message(&buf[..n])
        }
        Role::Initiator => {
            let m1 = ours.write_message().expect("m1");
            snow.read_message(&m1, &mut plain).expect("snow reads m1");
            let n = snow.write_message(payload, &mut buf).expect("snow m2");
            ours.read_message(&buf[..n])
        }
    };
    if result.is_err() {
        assert!(
            ours.is_failed(),
            "a refused payload did not fail the handshake"
        );
        return;
    }
    let proof = presented_proof(payload);
    let seen = ours.peer().expect("accepted peer").clone();
    assert_eq!(seen.identifier, proof.history.identifier());
    assert_eq!(seen.history, proof.history);
    assert_eq!(seen.credentials, proof.credentials);
    let static_public = snow_static_public(&static_secret);
    assert_eq!(
        seen.static_key, static_public,
        "attested key is not the Noise key"
    );
    proof
        .attestation
        .verify(
            &proof.history,
            &PurposeKey::SecureChannel(static_public),
            vector.now,
        )
        .expect("accepted attestation verifies");
    if !trust_any {
        assert_eq!(seen.identifier, peer.identifier, "untrusted peer accepted");
    }
    if role == Role::Initiator {
        let m3 = ours.write_message().expect("m3");
        let n = snow.read_message(&m3, &mut plain).expect("snow reads m3");
        assert_eq!(
            plain[..n],
            vector.party(role).payload()[..],
            "snow saw another payload"
        );
    }
    assert!(ours.is_finished());
    assert_eq!(&ours.handshake_hash()[..], snow.get_handshake_hash());
    let mut channel = ours.finish().expect("finished");
    let snow = snow
        .into_stateless_transport_mode()
        .expect("snow transport");
    let frame = channel.encrypt_to_vec(b"to snow").expect("encrypt");
    let n = snow
        .read_message(0, &frame[FRAME_HEADER_LEN..], &mut plain)
        .expect("snow reads our frame");
    assert_eq!(&plain[..n], b"to snow");
    let mut frame = 7u64.to_be_bytes().to_vec();
    let n = snow
        .write_message(7, b"from snow", &mut buf)
        .expect("snow frame");
    frame.extend_from_slice(&buf[..n]);
    assert_eq!(
        channel.decrypt_to_vec(&frame).expect("decrypt"),
        b"from snow"
    );
});

fn snow_static_public(secret: &[u8; 32]) -> [u8; 32] {
    let provider = latchkey_core::crypto::default_provider();
    provider.x25519_public_key(&latchkey_core::crypto::Secret32::new(*secret))
}

/// An accepted payload as the handshake read it. The full decode (`from_bytes`, which verifies the history
/// on its own) may refuse it only for the first change's self-signature; then the payload's history is valid
/// as presented (its links and every other signature).
fn presented_proof(payload: &[u8]) -> HandshakePayload {
    let err = match HandshakePayload::from_bytes(payload) {
        Ok(proof) => return proof,
        Err(e) => e,
    };
    assert_eq!(
        err,
        Error::InvalidHistory("bad signature by the new key"),
        "an accepted payload fails the full check for another reason"
    );
    let proof = HandshakePayload::decode_unverified(payload).expect("an accepted payload decodes");
    proof.history.verify_links().expect("accepted links");
    proof
        .history
        .verify_presented_signatures()
        .expect("an accepted history is valid as presented");
    proof
}
