//! The AWS-LC provider (feature `aws-lc`), the default where AWS-LC builds (64-bit x86 and ARM Linux and
//! macOS): AWS-LC's X25519 is about twice as fast as x25519-dalek's on x86-64, which is most of a handshake's
//! cost, and its AES-256-GCM is faster than ring's. Elsewhere the ring provider is the default.

use super::{AeadAlgorithm, AeadKey, CryptoProvider, RingProvider, Secret32, TAG_LEN};
use crate::error::{Error, Result};
use crate::prelude::*;
use aws_lc_rs::aead::{self, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::{digest, hmac};
use zeroize::Zeroize;

/// AWS-LC (through `aws-lc-rs`) for AES-256-GCM, hashing, HMAC and randomness, AWS-LC's X25519 directly, and
/// ring's ChaCha20-Poly1305 (why: see the comment in `aead_key`).
///
/// X25519 calls AWS-LC's `X25519` function rather than `aws_lc_rs::agreement`: the latter builds an
/// `EVP_PKEY` from the private bytes on every call, which recomputes the public key (a second scalar
/// multiplication) and so would give away the speed this provider exists for.
#[derive(Debug, Default, Clone, Copy)]
pub struct AwsLcProvider;

/// AES-256-GCM on AWS-LC. The context (key schedule and GHASH table, about 600 bytes of C memory) is built once
/// per key and reused for every message.
struct AwsLcAesGcm {
    key: LessSafeKey,
}

impl AwsLcAesGcm {
    /// Noise's AESGCM nonce: 4 zero bytes, then the counter big-endian.
    fn nonce(n: u64) -> Nonce {
        let mut bytes = [0u8; 12];
        bytes[4..].copy_from_slice(&n.to_be_bytes());
        Nonce::assume_unique_for_key(bytes)
    }
}

impl AeadKey for AwsLcAesGcm {
    fn seal_in_place(&self, nonce: u64, ad: &[u8], in_out: &mut [u8]) -> Result<[u8; TAG_LEN]> {
        let tag = self
            .key
            .seal_in_place_separate_tag(Self::nonce(nonce), aead::Aad::from(ad), in_out)
            .map_err(|_| Error::Crypto("aead seal"))?;
        tag.as_ref()
            .try_into()
            .map_err(|_| Error::Crypto("aead tag length"))
    }

    fn open_in_place(
        &self,
        nonce: u64,
        ad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<()> {
        self.key
            .open_in_place_separate_tag(Self::nonce(nonce), aead::Aad::from(ad), tag, in_out)
            .map(|_| ())
            .map_err(|_| Error::DecryptFailed)
    }
}

impl CryptoProvider for AwsLcProvider {
    fn name(&self) -> &'static str {
        "aws-lc"
    }

    fn prefers_aes_gcm(&self) -> bool {
        super::cpu_has_aes_gcm()
    }

    fn fill_random(&self, buf: &mut [u8]) -> Result<()> {
        SystemRandom::new()
            .fill(buf)
            .map_err(|_| Error::Crypto("system random"))
    }

    fn x25519_public_key(&self, secret: &Secret32) -> [u8; 32] {
        let mut public = [0u8; 32];
        // SAFETY: both pointers address 32-byte arrays that live for the whole call; AWS-LC reads exactly
        // 32 bytes of the private key and writes exactly 32 bytes of output.
        #[allow(unsafe_code)]
        unsafe {
            aws_lc_sys::X25519_public_from_private(public.as_mut_ptr(), secret.expose().as_ptr())
        };
        public
    }

    fn x25519(&self, secret: &Secret32, peer_public: &[u8; 32]) -> Result<Secret32> {
        let mut shared = [0u8; 32];
        // SAFETY: as above: three 32-byte arrays, read or written exactly as X25519 documents. X25519 returns
        // 0 when the result is all zeros (a low-order peer key), which RFC 7748 §6.1 says to reject.
        #[allow(unsafe_code)]
        let ok = unsafe {
            aws_lc_sys::X25519(
                shared.as_mut_ptr(),
                secret.expose().as_ptr(),
                peer_public.as_ptr(),
            )
        };
        let result = if ok == 1 {
            Ok(Secret32::new(shared))
        } else {
            Err(Error::InvalidPublicKey)
        };
        shared.zeroize();
        result
    }

    fn aead_key(&self, algorithm: AeadAlgorithm, key: &Secret32) -> Box<dyn AeadKey> {
        match algorithm {
            // ring's ChaCha20-Poly1305: AWS-LC's would add a ~600-byte C context per direction on top of the
            // Rust allocation. Both libraries run the same assembly here, so nothing is lost.
            AeadAlgorithm::ChaCha20Poly1305 => RingProvider.aead_key(algorithm, key),
            AeadAlgorithm::Aes256Gcm => {
                // AES-256-GCM takes exactly 32-byte keys, so construction fails only if AWS-LC cannot
                // allocate, which the trait (infallible, like the ring provider's) cannot report.
                let unbound =
                    UnboundKey::new(&aead::AES_256_GCM, key.expose()).expect("32-byte AEAD key");
                Box::new(AwsLcAesGcm {
                    key: LessSafeKey::new(unbound),
                })
            }
        }
    }

    fn sha256(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for part in parts {
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    fn hmac_sha256(&self, key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, key);
        let mut ctx = hmac::Context::with_key(&key);
        for part in parts {
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::RingProvider;

    /// RFC 7748 §6.1 test vector: Alice's and Bob's keys and their shared secret.
    #[test]
    fn x25519_matches_rfc7748_and_the_ring_provider() {
        let alice: [u8; 32] =
            hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap()
                .try_into()
                .unwrap();
        let bob_public: [u8; 32] =
            hex::decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
                .unwrap()
                .try_into()
                .unwrap();
        let alice = Secret32::new(alice);
        assert_eq!(
            hex::encode(AwsLcProvider.x25519_public_key(&alice)),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let shared = AwsLcProvider.x25519(&alice, &bob_public).unwrap();
        assert_eq!(
            hex::encode(shared.expose()),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
        assert_eq!(
            RingProvider.x25519(&alice, &bob_public).unwrap().expose(),
            shared.expose()
        );
    }

    #[test]
    fn x25519_rejects_a_low_order_point() {
        let secret = Secret32::new([7u8; 32]);
        assert!(matches!(
            AwsLcProvider.x25519(&secret, &[0u8; 32]),
            Err(Error::InvalidPublicKey)
        ));
    }

    #[test]
    fn aead_hash_and_hmac_agree_with_the_ring_provider() {
        let key = Secret32::new([0x42; 32]);
        for algorithm in [AeadAlgorithm::ChaCha20Poly1305, AeadAlgorithm::Aes256Gcm] {
            let ours = AwsLcProvider.aead_key(algorithm, &key);
            let theirs = RingProvider.aead_key(algorithm, &key);
            let mut a = *b"the same plaintext, both ways";
            let mut b = a;
            let tag_a = ours.seal_in_place(9, b"ad", &mut a).unwrap();
            let tag_b = theirs.seal_in_place(9, b"ad", &mut b).unwrap();
            assert_eq!((a, tag_a), (b, tag_b), "{algorithm:?}");
            theirs.open_in_place(9, b"ad", &mut a, &tag_a).unwrap();
            assert_eq!(&a, b"the same plaintext, both ways");
            let mut wrong = b;
            assert!(ours.open_in_place(10, b"ad", &mut wrong, &tag_b).is_err());
        }
        assert_eq!(
            AwsLcProvider.sha256(&[b"ab", b"c"]),
            RingProvider.sha256(&[b"abc"])
        );
        assert_eq!(
            AwsLcProvider.hmac_sha256(b"k", &[b"a", b"bc"]),
            RingProvider.hmac_sha256(b"k", &[b"abc"])
        );
    }

    /// The snow interop of `tests/snow_interop.rs`, with this provider on our side: a full handshake against
    /// snow's responder in both suites, then transport frames both ways.
    #[test]
    fn handshake_and_transport_interoperate_with_snow() {
        use crate::channel::{
            ChannelIdentity, CipherSuite, Handshake, HandshakeConfig, HandshakePayload,
            TrustAnyIdentity, FRAME_HEADER_LEN, PROLOGUE,
        };
        use crate::identity::{Identity, PurposeKey};
        use crate::vault::{SecureChannelVault, SigningAlgorithm, SoftwareVault};
        use crate::wire::{Decode, Encode};
        use crate::Timestamp;
        use std::sync::Arc;

        static PROVIDER: AwsLcProvider = AwsLcProvider;
        let now = Timestamp(1_800_000_000);
        let party = |vault: &SoftwareVault, static_key| {
            let identity = Identity::create(vault, SigningAlgorithm::Ed25519, now, 86_400).unwrap();
            let public = vault.x25519_public_key(&static_key).unwrap();
            let attestation = identity
                .attest(vault, PurposeKey::SecureChannel(public), now, 86_400)
                .unwrap();
            (identity, attestation, static_key)
        };
        for suite in [CipherSuite::ChaChaPoly, CipherSuite::AesGcm] {
            let vault = Arc::new(SoftwareVault::with_provider(&PROVIDER));
            let (ours, attestation, key) = party(&vault, vault.generate_x25519_key().unwrap());
            let mut config = HandshakeConfig::new(
                vault.clone(),
                ChannelIdentity {
                    history: ours.history().clone(),
                    attestation,
                    static_key: key,
                    credentials: vec![],
                },
                Arc::new(TrustAnyIdentity),
                now,
            );
            config.suite = suite;
            config.provider = &PROVIDER;

            let their_secret = [5u8; 32];
            let their_vault = SoftwareVault::new();
            let (theirs, their_attestation, _) = party(
                &their_vault,
                their_vault.import_x25519_secret(&their_secret).unwrap(),
            );
            let their_payload = HandshakePayload {
                history: theirs.history().clone(),
                attestation: their_attestation,
                credentials: vec![],
            }
            .to_bytes();
            let mut snow = snow::Builder::new(suite.protocol_name().parse().unwrap())
                .prologue(PROLOGUE)
                .unwrap()
                .local_private_key(&their_secret)
                .unwrap()
                .build_responder()
                .unwrap();

            let mut buf = vec![0u8; 65535];
            let mut hs = Handshake::initiator(config).unwrap();
            snow.read_message(&hs.write_message().unwrap(), &mut buf)
                .unwrap();
            let n = snow.write_message(&their_payload, &mut buf).unwrap();
            hs.read_message(&buf[..n]).unwrap();
            let n = snow
                .read_message(&hs.write_message().unwrap(), &mut buf)
                .unwrap();
            let seen = HandshakePayload::from_bytes(&buf[..n]).unwrap();
            assert_eq!(seen.history.identifier(), ours.identifier());
            assert_eq!(&hs.handshake_hash()[..], snow.get_handshake_hash());
            let mut channel = hs.finish().unwrap();
            assert_eq!(channel.peer_identifier(), theirs.identifier());
            let snow = snow.into_stateless_transport_mode().unwrap();

            let frame = channel.encrypt_to_vec(b"to snow").unwrap();
            let n = snow
                .read_message(0, &frame[FRAME_HEADER_LEN..], &mut buf)
                .unwrap();
            assert_eq!(&buf[..n], b"to snow");
            let mut frame = 4u64.to_be_bytes().to_vec();
            let n = snow.write_message(4, b"from snow", &mut buf).unwrap();
            frame.extend_from_slice(&buf[..n]);
            assert_eq!(channel.decrypt_to_vec(&frame).unwrap(), b"from snow");
        }
    }
}
