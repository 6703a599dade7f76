//! The channel must rely on no more than the `CryptoProvider` contract promises. `AeadKey::open_in_place`
//! leaves its buffer *unspecified* on failure (ring zeroes it, other providers need not), so the channel
//! itself must make sure no unauthenticated bytes reach the caller. This provider delegates to each real
//! provider in turn but, on a failed open, leaves recognisable junk behind, as a provider is allowed to.

mod common;

use common::*;
use latchkey_core::channel::{CipherSuite, FRAME_HEADER_LEN};
use latchkey_core::crypto::{AeadAlgorithm, AeadKey, CryptoProvider, Secret32, TAG_LEN};
use latchkey_core::{Error, Result};

const JUNK: u8 = 0xee;

struct JunkOnFailure(Box<dyn AeadKey>);

impl AeadKey for JunkOnFailure {
    fn seal_in_place(&self, nonce: u64, ad: &[u8], in_out: &mut [u8]) -> Result<[u8; TAG_LEN]> {
        self.0.seal_in_place(nonce, ad, in_out)
    }

    fn open_in_place(
        &self,
        nonce: u64,
        ad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<()> {
        let result = self.0.open_in_place(nonce, ad, in_out, tag);
        if result.is_err() {
            in_out.fill(JUNK);
        }
        result
    }
}

struct JunkProvider(&'static dyn CryptoProvider);

impl CryptoProvider for JunkProvider {
    fn name(&self) -> &'static str {
        "junk-on-failure"
    }
    fn fill_random(&self, buf: &mut [u8]) -> Result<()> {
        self.0.fill_random(buf)
    }
    fn x25519_public_key(&self, secret: &Secret32) -> [u8; 32] {
        self.0.x25519_public_key(secret)
    }
    fn x25519(&self, secret: &Secret32, peer_public: &[u8; 32]) -> Result<Secret32> {
        self.0.x25519(secret, peer_public)
    }
    fn aead_key(&self, algorithm: AeadAlgorithm, key: &Secret32) -> Box<dyn AeadKey> {
        Box::new(JunkOnFailure(self.0.aead_key(algorithm, key)))
    }
    fn sha256(&self, parts: &[&[u8]]) -> [u8; 32] {
        self.0.sha256(parts)
    }
    fn hmac_sha256(&self, key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        self.0.hmac_sha256(key, parts)
    }
}

#[test]
fn failed_decryption_never_leaves_provider_junk_in_the_callers_buffer() {
    for (provider, suite) in providers()
        .into_iter()
        .flat_map(|p| [CipherSuite::ChaChaPoly, CipherSuite::AesGcm].map(|s| (p, s)))
    {
        let junk: &'static JunkProvider = Box::leak(Box::new(JunkProvider(provider)));
        let alice = Party::with_provider(provider);
        let bob = Party::with_provider(provider);
        let mut ci = suite_config(alice.config_any(), suite);
        let mut cr = suite_config(bob.config_any(), suite);
        ci.provider = junk;
        cr.provider = junk;
        let (mut a, mut b) = handshake(ci, cr).unwrap();

        let plaintext = b"authenticated bytes only";
        let mut frame = a.encrypt_to_vec(plaintext).unwrap();
        *frame.last_mut().unwrap() ^= 1;
        let body = FRAME_HEADER_LEN..FRAME_HEADER_LEN + plaintext.len();

        let mut in_place = frame.clone();
        assert_eq!(
            b.decrypt_in_place(&mut in_place).unwrap_err(),
            Error::DecryptFailed
        );
        assert!(
            !in_place[body.clone()].contains(&JUNK),
            "{} {suite:?}: in-place decryption left the provider's failed output in the frame",
            provider.name()
        );

        let mut out = vec![0x55u8; plaintext.len()];
        assert_eq!(
            b.decrypt(&frame, &mut out).unwrap_err(),
            Error::DecryptFailed
        );
        assert!(
            out.iter().all(|&x| x == 0),
            "{} {suite:?}: out not wiped",
            provider.name()
        );

        // The channel still works after both failures.
        let good = a.encrypt_to_vec(plaintext).unwrap();
        assert_eq!(b.decrypt_to_vec(&good).unwrap(), plaintext);
    }
}
