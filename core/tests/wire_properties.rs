//! Property tests for every wire type: decode(encode(x)) == x; decoding arbitrary or mutated bytes returns an
//! error and never panics; and whatever does decode re-encodes to exactly the bytes it came from (one
//! structure, one encoding — which is what lets signatures and hashes be computed over encodings).

mod common;

use common::*;
use latchkey_core::channel::{Handshake, HandshakePayload, MAX_CREDENTIALS};
use latchkey_core::identity::{
    Attestation, AttestationData, Change, ChangeData, ChangeHistory, Identifier, Identity,
    PurposeKey,
};
use latchkey_core::vault::{PublicKey, Signature, SigningAlgorithm, SoftwareVault};
use latchkey_core::wire::{Decode, Encode};
use latchkey_core::Timestamp;
use proptest::prelude::*;
use std::fmt::Debug;
use std::str::FromStr;

fn bytes32() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn bytes64() -> impl Strategy<Value = [u8; 64]> {
    prop::collection::vec(any::<u8>(), 64).prop_map(|v| v.try_into().unwrap())
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    any::<u64>().prop_map(Timestamp)
}

fn algorithm() -> impl Strategy<Value = SigningAlgorithm> {
    prop_oneof![
        Just(SigningAlgorithm::Ed25519),
        Just(SigningAlgorithm::EcdsaP256)
    ]
}

fn public_key() -> impl Strategy<Value = PublicKey> {
    prop_oneof![
        bytes32().prop_map(PublicKey::Ed25519),
        bytes64().prop_map(|xy| {
            let mut point = [4u8; 65];
            point[1..].copy_from_slice(&xy);
            PublicKey::EcdsaP256(point)
        }),
    ]
}

fn signature() -> impl Strategy<Value = Signature> {
    (algorithm(), bytes64()).prop_map(|(a, b)| Signature::new(a, b))
}

fn identifier() -> impl Strategy<Value = Identifier> {
    bytes32().prop_map(Identifier::from_bytes)
}

fn change_data() -> impl Strategy<Value = ChangeData> {
    (bytes32(), public_key(), timestamp(), timestamp()).prop_map(
        |(previous, public_key, created_at, expires_at)| ChangeData {
            previous,
            public_key,
            created_at,
            expires_at,
        },
    )
}

fn change() -> impl Strategy<Value = Change> {
    (change_data(), signature(), prop::option::of(signature())).prop_map(
        |(data, self_signature, previous_signature)| Change {
            data,
            self_signature,
            previous_signature,
        },
    )
}

/// A real, verifiable history: Ed25519 keys from the given seeds, one rotation per extra seed.
fn history() -> impl Strategy<Value = ChangeHistory> {
    (
        prop::collection::vec(bytes32(), 1..4),
        0u64..4_000_000_000,
        1u64..100_000_000,
    )
        .prop_map(|(seeds, created, validity)| {
            let vault = SoftwareVault::new();
            let first = vault.import_ed25519_seed(&seeds[0]).unwrap();
            let mut identity =
                Identity::create_with_key(&vault, first, Timestamp(created), validity).unwrap();
            for (k, seed) in seeds[1..].iter().enumerate() {
                let key = vault.import_ed25519_seed(seed).unwrap();
                identity
                    .rotate_to_key(&vault, key, Timestamp(created + k as u64), validity)
                    .unwrap();
            }
            identity.history().clone()
        })
}

fn purpose_key() -> impl Strategy<Value = PurposeKey> {
    prop_oneof![
        bytes32().prop_map(PurposeKey::SecureChannel),
        public_key().prop_map(PurposeKey::CredentialSigning),
    ]
}

fn attestation_data() -> impl Strategy<Value = AttestationData> {
    (identifier(), purpose_key(), timestamp(), timestamp()).prop_map(
        |(subject, key, created_at, expires_at)| AttestationData {
            subject,
            key,
            created_at,
            expires_at,
        },
    )
}

fn attestation() -> impl Strategy<Value = Attestation> {
    (attestation_data(), signature()).prop_map(|(data, signature)| Attestation { data, signature })
}

fn handshake_payload() -> impl Strategy<Value = HandshakePayload> {
    (
        history(),
        attestation(),
        prop::collection::vec(
            prop::collection::vec(any::<u8>(), 0..64),
            0..=MAX_CREDENTIALS,
        ),
    )
        .prop_map(|(history, attestation, credentials)| HandshakePayload {
            history,
            attestation,
            credentials,
        })
}

fn round_trips<T: Encode + Decode + PartialEq + Debug>(value: &T) -> Result<(), TestCaseError> {
    let bytes = value.to_bytes();
    prop_assert_eq!(&T::from_bytes(&bytes)?, value);
    let mut extended = bytes.clone();
    extended.push(0);
    prop_assert!(T::from_bytes(&extended).is_err(), "trailing byte accepted");
    if !bytes.is_empty() {
        prop_assert!(
            T::from_bytes(&bytes[..bytes.len() - 1]).is_err(),
            "truncation accepted"
        );
    }
    Ok(())
}

/// Decoding never panics, and anything that decodes has exactly these bytes as its encoding.
fn decodes_canonically<T: Encode + Decode + Debug>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(value) = T::from_bytes(bytes) {
        prop_assert_eq!(value.to_bytes(), bytes, "non-canonical encoding accepted");
    }
    Ok(())
}

fn every_decoder_on(bytes: &[u8]) -> Result<(), TestCaseError> {
    decodes_canonically::<PublicKey>(bytes)?;
    decodes_canonically::<Signature>(bytes)?;
    decodes_canonically::<Identifier>(bytes)?;
    decodes_canonically::<ChangeData>(bytes)?;
    decodes_canonically::<Change>(bytes)?;
    decodes_canonically::<ChangeHistory>(bytes)?;
    decodes_canonically::<AttestationData>(bytes)?;
    decodes_canonically::<Attestation>(bytes)?;
    decodes_canonically::<HandshakePayload>(bytes)?;
    if let Ok(history) = ChangeHistory::import(bytes) {
        prop_assert_eq!(history.export(), bytes);
    }
    let _ = ChangeHistory::decode_unverified(bytes);
    Ok(())
}

/// A valid encoding with one mutation: the inputs most likely to reach deep decoder paths.
fn mutate(bytes: &[u8], kind: u8, at: usize, value: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if out.is_empty() {
        out.push(value);
        return out;
    }
    let at = at % out.len();
    match kind % 4 {
        0 => out[at] ^= value.max(1),
        1 => out.truncate(at),
        2 => out.insert(at, value),
        _ => {
            out.remove(at);
        }
    }
    out
}

proptest! {
    #[test]
    fn public_key_round_trips(x in public_key()) { round_trips(&x)?; }

    #[test]
    fn signature_round_trips(x in signature()) { round_trips(&x)?; }

    #[test]
    fn identifier_round_trips_in_binary_and_text(x in identifier()) {
        round_trips(&x)?;
        let text = x.to_string();
        prop_assert_eq!(text.len(), 66);
        prop_assert!(text.starts_with("lk"));
        prop_assert_eq!(Identifier::from_str(&text)?, x);
        // Only the lower-case form parses, so equal identifiers have equal text.
        prop_assert!(Identifier::from_str(&text.to_uppercase().replacen("LK", "lk", 1)).is_err());
    }

    #[test]
    fn change_data_round_trips(x in change_data()) { round_trips(&x)?; }

    #[test]
    fn change_round_trips(x in change()) { round_trips(&x)?; }

    #[test]
    fn attestation_data_round_trips(x in attestation_data()) { round_trips(&x)?; }

    #[test]
    fn attestation_round_trips(x in attestation()) { round_trips(&x)?; }

    #[test]
    fn identifier_text_parser_never_panics(s in ".{0,80}") {
        if let Ok(id) = Identifier::from_str(&s) {
            prop_assert_eq!(id.to_string(), s.to_lowercase());
        }
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        every_decoder_on(&bytes)?;
    }

    #[test]
    fn decoders_never_panic_on_mutated_encodings(
        (change, attestation) in (change(), attestation()),
        kind in any::<u8>(), at in any::<usize>(), value in any::<u8>(),
    ) {
        for bytes in [change.to_bytes(), change.data.to_bytes(), attestation.to_bytes(),
                      attestation.data.to_bytes()] {
            every_decoder_on(&mutate(&bytes, kind, at, value))?;
        }
    }
}

proptest! {
    // Each case signs and verifies real histories: fewer cases keep the suite quick.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn change_history_round_trips_and_verifies(x in history()) {
        round_trips(&x)?;
        prop_assert_eq!(&ChangeHistory::import(&x.export())?, &x);
        prop_assert_eq!(ChangeHistory::decode_unverified(&x.export())?, x.changes().to_vec());
        prop_assert_eq!(x.identifier(), Identifier::from_bytes(x.changes()[0].data.hash()));
    }

    #[test]
    fn handshake_payload_round_trips(x in handshake_payload()) { round_trips(&x)?; }

    #[test]
    fn decoders_never_panic_on_mutated_histories_and_payloads(
        x in handshake_payload(), kind in any::<u8>(), at in any::<usize>(), value in any::<u8>(),
    ) {
        every_decoder_on(&mutate(&x.history.export(), kind, at, value))?;
        every_decoder_on(&mutate(&x.to_bytes(), kind, at, value))?;
    }

    #[test]
    fn handshake_readers_refuse_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let alice = Party::new();
        let bob = Party::new();
        // Message 1 is unauthenticated: any 32 bytes are an ephemeral key, anything else is refused.
        let mut r = Handshake::responder(bob.config_any()).unwrap();
        prop_assert_eq!(r.read_message(&bytes).is_ok(), bytes.len() == 32);
        // Messages 2 and 3 are authenticated: arbitrary bytes never pass.
        let mut i = Handshake::initiator(alice.config_any()).unwrap();
        let m1 = i.write_message().unwrap();
        prop_assert!(i.read_message(&bytes).is_err());
        let mut r = Handshake::responder(bob.config_any()).unwrap();
        r.read_message(&m1).unwrap();
        r.write_message().unwrap();
        prop_assert!(r.read_message(&bytes).is_err());
    }

    #[test]
    fn transport_refuses_arbitrary_frames(frames in prop::collection::vec(
        prop::collection::vec(any::<u8>(), 0..100), 1..20)) {
        let (mut a, mut b) = handshake(Party::new().config_any(), Party::new().config_any()).unwrap();
        for frame in &frames {
            prop_assert!(b.decrypt_to_vec(frame).is_err());
            let mut copy = frame.clone();
            prop_assert!(b.decrypt_in_place(&mut copy).is_err());
        }
        // The channel is untouched by all of it.
        let frame = a.encrypt_to_vec(b"after the noise").unwrap();
        prop_assert_eq!(b.decrypt_to_vec(&frame)?, b"after the noise".to_vec());
    }
}
