//! Interoperability with `snow`, an independent Noise implementation: the Noise layer of our handshake must
//! be byte-compatible with it in both roles and both suites, and our transport frames must be what snow's
//! stateless transport produces and accepts for the same explicit nonce.

mod common;

use common::*;
use latchkey_core::channel::{
    CipherSuite, Handshake, HandshakePayload, SecureChannel, FRAME_HEADER_LEN, PROLOGUE,
    REKEY_INTERVAL,
};
use latchkey_core::crypto::CryptoProvider;
use latchkey_core::identity::PurposeKey;
use latchkey_core::vault::SoftwareVault;
use latchkey_core::wire::{Decode, Encode};
use snow::StatelessTransportState;

const SUITES: [CipherSuite; 2] = [CipherSuite::ChaChaPoly, CipherSuite::AesGcm];

/// A party whose static key is also known as raw bytes, so snow can hold the same key.
struct SnowParty {
    party: Party,
    static_secret: [u8; 32],
}

fn snow_party(seed: u8) -> SnowParty {
    let mut party = Party::new();
    let static_secret = [seed; 32];
    let vault: &SoftwareVault = &party.vault;
    let key = vault.import_x25519_secret(&static_secret).unwrap();
    let public = latchkey_core::vault::SecureChannelVault::x25519_public_key(vault, &key).unwrap();
    party.channel_identity.attestation = party
        .identity
        .attest(vault, PurposeKey::SecureChannel(public), NOW, DAY)
        .unwrap();
    party.channel_identity.static_key = key;
    SnowParty {
        party,
        static_secret,
    }
}

fn payload_of(party: &Party) -> Vec<u8> {
    HandshakePayload {
        history: party.channel_identity.history.clone(),
        attestation: party.channel_identity.attestation.clone(),
        credentials: vec![],
    }
    .to_bytes()
}

fn snow_builder(suite: CipherSuite, secret: &[u8; 32]) -> snow::Builder<'_> {
    snow::Builder::new(suite.protocol_name().parse().unwrap())
        .prologue(PROLOGUE)
        .unwrap()
        .local_private_key(secret)
        .unwrap()
}

/// Our initiator (on `provider`) against snow's responder.
fn ours_initiate_snow_responds(
    provider: &'static dyn CryptoProvider,
    suite: CipherSuite,
) -> (SecureChannel, StatelessTransportState) {
    let ours = Party::with_provider(provider);
    let theirs = snow_party(7);
    let mut i = Handshake::initiator(suite_config(ours.config_any(), suite)).unwrap();
    let mut r = snow_builder(suite, &theirs.static_secret)
        .build_responder()
        .unwrap();
    let mut buf = vec![0u8; 65535];

    let m1 = i.write_message().unwrap();
    let n = r.read_message(&m1, &mut buf).unwrap();
    assert_eq!(n, 0, "message 1 carries no payload");
    let n = r
        .write_message(&payload_of(&theirs.party), &mut buf)
        .unwrap();
    i.read_message(&buf[..n]).unwrap();
    let m3 = i.write_message().unwrap();
    let n = r.read_message(&m3, &mut buf).unwrap();
    let their_view = HandshakePayload::from_bytes(&buf[..n]).unwrap();
    assert_eq!(their_view.history.identifier(), ours.identity.identifier());

    assert!(i.is_finished() && r.is_handshake_finished());
    assert_eq!(&i.handshake_hash()[..], r.get_handshake_hash());
    let channel = i.finish().unwrap();
    assert_eq!(
        channel.peer_identifier(),
        theirs.party.identity.identifier()
    );
    (channel, r.into_stateless_transport_mode().unwrap())
}

/// Snow's initiator against our responder (on `provider`).
fn snow_initiates_ours_responds(
    provider: &'static dyn CryptoProvider,
    suite: CipherSuite,
) -> (SecureChannel, StatelessTransportState) {
    let ours = Party::with_provider(provider);
    let theirs = snow_party(9);
    let mut i = snow_builder(suite, &theirs.static_secret)
        .build_initiator()
        .unwrap();
    let mut r = Handshake::responder(suite_config(ours.config_any(), suite)).unwrap();
    let mut buf = vec![0u8; 65535];

    let n = i.write_message(&[], &mut buf).unwrap();
    r.read_message(&buf[..n]).unwrap();
    let m2 = r.write_message().unwrap();
    let n = i.read_message(&m2, &mut buf).unwrap();
    let their_view = HandshakePayload::from_bytes(&buf[..n]).unwrap();
    assert_eq!(their_view.history.identifier(), ours.identity.identifier());
    let n = i
        .write_message(&payload_of(&theirs.party), &mut buf)
        .unwrap();
    r.read_message(&buf[..n]).unwrap();

    assert!(r.is_finished() && i.is_handshake_finished());
    assert_eq!(&r.handshake_hash()[..], i.get_handshake_hash());
    let channel = r.finish().unwrap();
    assert_eq!(
        channel.peer_identifier(),
        theirs.party.identity.identifier()
    );
    (channel, i.into_stateless_transport_mode().unwrap())
}

fn snow_frame(snow: &StatelessTransportState, nonce: u64, plaintext: &[u8]) -> Vec<u8> {
    let mut frame = nonce.to_be_bytes().to_vec();
    let mut body = vec![0u8; plaintext.len() + 16];
    let n = snow.write_message(nonce, plaintext, &mut body).unwrap();
    frame.extend_from_slice(&body[..n]);
    frame
}

fn snow_open(snow: &StatelessTransportState, frame: &[u8]) -> Vec<u8> {
    let nonce = u64::from_be_bytes(frame[..FRAME_HEADER_LEN].try_into().unwrap());
    let mut out = vec![0u8; frame.len()];
    let n = snow
        .read_message(nonce, &frame[FRAME_HEADER_LEN..], &mut out)
        .unwrap();
    out.truncate(n);
    out
}

fn check_transport(mut ours: SecureChannel, theirs: StatelessTransportState) {
    // Ours → snow, byte-identical to what snow would have sent with the same nonce.
    for i in 0..5u64 {
        let msg = format!("frame {i}").into_bytes();
        let frame = ours.encrypt_to_vec(&msg).unwrap();
        assert_eq!(u64::from_be_bytes(frame[..8].try_into().unwrap()), i);
        assert_eq!(snow_open(&theirs, &frame), msg);
    }
    // Snow → ours, out of order, with gaps.
    for nonce in [3u64, 0, 7, 1, 2] {
        let msg = format!("snow {nonce}").into_bytes();
        assert_eq!(
            ours.decrypt_to_vec(&snow_frame(&theirs, nonce, &msg))
                .unwrap(),
            msg
        );
    }
}

#[test]
fn handshake_and_transport_interoperate_with_snow_in_both_roles_and_suites() {
    for provider in providers() {
        for suite in SUITES {
            let (ours, theirs) = ours_initiate_snow_responds(provider, suite);
            check_transport(ours, theirs);
            let (ours, theirs) = snow_initiates_ours_responds(provider, suite);
            check_transport(ours, theirs);
        }
    }
}

#[test]
fn rekey_after_the_interval_matches_snow_rekey() {
    for (provider, suite) in providers().into_iter().flat_map(|p| SUITES.map(|s| (p, s))) {
        let (mut ours, mut theirs) = ours_initiate_snow_responds(provider, suite);
        let mut last = Vec::new();
        for _ in 0..=REKEY_INTERVAL {
            last = ours.encrypt_to_vec(b"x").unwrap();
        }
        assert_eq!(
            u64::from_be_bytes(last[..8].try_into().unwrap()),
            REKEY_INTERVAL
        );
        theirs.rekey_incoming();
        assert_eq!(snow_open(&theirs, &last), b"x");

        // Snow sends straight into epoch 1 and 2; we derive the keys from the nonce alone.
        theirs.rekey_outgoing();
        let frame = snow_frame(&theirs, REKEY_INTERVAL + 5, b"epoch one");
        assert_eq!(ours.decrypt_to_vec(&frame).unwrap(), b"epoch one");
        theirs.rekey_outgoing();
        let frame = snow_frame(&theirs, 2 * REKEY_INTERVAL + 1, b"epoch two");
        assert_eq!(ours.decrypt_to_vec(&frame).unwrap(), b"epoch two");
    }
}
