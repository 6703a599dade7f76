//! Signatures (Ed25519, ECDSA P-256) and the SHA-256 that names identity changes. They are not part of the
//! [`CryptoProvider`](super::CryptoProvider) seam: nothing per handshake signs, and `verify_signature` is a
//! function of public values alone, so one implementation serves every provider. With the `ring` feature
//! (the default) it is ring's; without it, `ed25519-dalek` and `sha2`, and `p256` when that feature is on
//! (otherwise P-256 operations fail with `Error::Crypto`). Both implementations are compiled in host test
//! builds and checked against each other below.
//!
//! Ed25519 verification is the cofactorless check in both (ring, and ed25519-dalek's `verify`): a
//! non-canonical `S` (S ≥ L) is refused and `R` is compared as bytes.
//!
//! ECDSA P-256 signatures have one form, low-s (`s ≤ n/2`, as Bitcoin's BIP 62 and Ethereum require): signing
//! replaces a high `s` by `n − s` (an equally valid signature), and verification refuses a high `s` before
//! the curve check. Without this, anyone could turn a valid signature `(r, s)` into a second valid one
//! `(r, n − s)`, so one history could be written two ways that compare as different.

/// The P-256 group order `n`, big-endian.
#[cfg_attr(not(any(feature = "ring", feature = "p256")), allow(dead_code))]
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];
/// `floor(n / 2)`, big-endian: the largest low `s`.
#[cfg_attr(not(any(feature = "ring", feature = "p256")), allow(dead_code))]
const P256_HALF_N: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// True when the `s` half of a fixed-size `r ‖ s` P-256 signature is above `n/2` (`s` is public: no need for
/// constant time). Big-endian byte strings of equal length compare as their numbers.
#[cfg_attr(not(any(feature = "ring", feature = "p256")), allow(dead_code))]
pub(crate) fn p256_is_high_s(signature: &[u8; 64]) -> bool {
    signature[32..] > P256_HALF_N[..]
}

/// `(r, n − s)`: the other valid form of a P-256 signature (for `0 < s < n`).
#[cfg_attr(not(any(feature = "ring", feature = "p256")), allow(dead_code))]
pub(crate) fn p256_negate_s(signature: &[u8; 64]) -> [u8; 64] {
    let mut out = *signature;
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let diff = P256_N[i] as i16 - signature[32 + i] as i16 - borrow;
        out[32 + i] = diff.rem_euclid(256) as u8;
        borrow = i16::from(diff < 0);
    }
    out
}

/// The low-s form of a P-256 signature (what every signer here returns).
#[cfg_attr(not(any(feature = "ring", feature = "p256")), allow(dead_code))]
pub(crate) fn p256_low_s(signature: [u8; 64]) -> [u8; 64] {
    if p256_is_high_s(&signature) {
        p256_negate_s(&signature)
    } else {
        signature
    }
}

/// False for the two kinds of Ed25519 public key encodings that verifiers disagree on, which every build
/// refuses before verifying: a `y` that is not reduced (`y ≥ p`, 2^255 − 19) and `x = 0` (`y = ±1`) with the
/// sign bit set. AWS-LC's decoder (s2n-bignum) refuses both; ring and ed25519-dalek accept them. Refusing them
/// everywhere keeps one verdict per signature on every build, whichever library verifies. Honest keys are
/// never of these kinds (a key generator encodes canonically, and `y = ±1` are the small-order points
/// `(0, 1)` and `(0, −1)`).
pub(crate) fn ed25519_key_is_canonical(key: &[u8; 32]) -> bool {
    let sign = key[31] >> 7;
    let mut y = *key;
    y[31] &= 0x7f;
    // p − 1 = 2^255 − 20 and p = 2^255 − 19, little-endian: 0xec/0xed, then 0xff…, then 0x7f.
    let high_all_ones = y[1..31].iter().all(|&b| b == 0xff) && y[31] == 0x7f;
    let not_reduced = high_all_ones && y[0] >= 0xed;
    let y_is_one = y[0] == 1 && y[1..].iter().all(|&b| b == 0);
    let y_is_minus_one = high_all_ones && y[0] == 0xec;
    !not_reduced && !(sign == 1 && (y_is_one || y_is_minus_one))
}

#[cfg(feature = "ring")]
pub(crate) use ring_impl::*;
#[cfg(not(feature = "ring"))]
pub(crate) use rustcrypto_impl::*;

#[cfg(feature = "ring")]
mod ring_impl {
    use crate::error::{Error, Result};
    use crate::prelude::*;
    use crate::vault::PublicKey;
    use ring::rand::SystemRandom;
    use ring::signature::{
        self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, UnparsedPublicKey,
        ECDSA_P256_SHA256_FIXED_SIGNING,
    };
    use zeroize::Zeroizing;

    pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in parts {
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    pub(crate) fn ed25519_public_key(seed: &[u8; 32]) -> Result<[u8; 32]> {
        let pair =
            Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| Error::InvalidPublicKey)?;
        pair.public_key()
            .as_ref()
            .try_into()
            .map_err(|_| Error::Crypto("ed25519 public key"))
    }

    pub(crate) fn ed25519_sign(seed: &[u8; 32], message: &[u8]) -> Result<[u8; 64]> {
        let pair =
            Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| Error::Crypto("ed25519 seed"))?;
        pair.sign(message)
            .as_ref()
            .try_into()
            .map_err(|_| Error::Crypto("ed25519 signature"))
    }

    /// A fresh P-256 key: its PKCS#8 document (what the vault stores) and its uncompressed public point.
    pub(crate) fn p256_generate(
        _provider: &dyn crate::crypto::CryptoProvider,
    ) -> Result<(Zeroizing<Vec<u8>>, [u8; 65])> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| Error::Crypto("p256 keygen"))?;
        let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|_| Error::Crypto("p256 parse"))?;
        let public: [u8; 65] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| Error::Crypto("p256 public key"))?;
        Ok((pkcs8, public))
    }

    pub(crate) fn p256_sign(
        secret: &[u8],
        message: &[u8],
        _provider: &dyn crate::crypto::CryptoProvider,
    ) -> Result<[u8; 64]> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, secret, &rng)
            .map_err(|_| Error::Crypto("p256 parse"))?;
        let sig = pair
            .sign(&rng, message)
            .map_err(|_| Error::Crypto("p256 sign"))?;
        let sig: [u8; 64] = sig
            .as_ref()
            .try_into()
            .map_err(|_| Error::Crypto("p256 signature"))?;
        Ok(super::p256_low_s(sig))
    }

    pub(crate) fn verify(key: &PublicKey, message: &[u8], signature: &[u8; 64]) -> Result<()> {
        let alg: &dyn signature::VerificationAlgorithm = match key {
            PublicKey::Ed25519(bytes) if !super::ed25519_key_is_canonical(bytes) => {
                return Err(Error::InvalidSignature)
            }
            // AWS-LC's Ed25519 verification (s2n-bignum on x86-64 and aarch64) where AWS-LC is built: about
            // a third cheaper than ring's, with the same checks once the key pre-check above has run
            // (S < L, R compared as bytes, cofactorless; `tests::aws_lc_and_ring_agree_on_ed25519`).
            // `ED25519_verify` is called directly: `aws_lc_rs::signature` wraps the same function in an
            // `EVP_PKEY` allocated and freed per call, which costs about 15% of a verification here
            // (`latchkey-bench-primitives`).
            #[cfg(latchkey_aws_lc)]
            PublicKey::Ed25519(bytes) => {
                return super::aws_lc_ed25519_verify(bytes, message, signature)
            }
            #[cfg(not(latchkey_aws_lc))]
            PublicKey::Ed25519(_) => &signature::ED25519,
            PublicKey::EcdsaP256(_) if super::p256_is_high_s(signature) => {
                return Err(Error::InvalidSignature)
            }
            PublicKey::EcdsaP256(_) => &signature::ECDSA_P256_SHA256_FIXED,
        };
        UnparsedPublicKey::new(alg, key.as_bytes())
            .verify(message, signature)
            .map_err(|_| Error::InvalidSignature)
    }
}

/// AWS-LC's `ED25519_verify` on a 32-byte public key, any message and a 64-byte signature: the function
/// `aws_lc_rs::signature::ED25519` ends in, without the `EVP_PKEY` around it.
#[cfg(latchkey_aws_lc)]
fn aws_lc_ed25519_verify(
    key: &[u8; 32],
    message: &[u8],
    signature: &[u8; 64],
) -> crate::error::Result<()> {
    // SAFETY: `message` points to `message.len()` readable bytes (any length, including 0, is allowed);
    // `signature` and `key` are 64- and 32-byte arrays, the exact sizes ED25519_verify reads. All three live
    // for the whole call and AWS-LC writes through none of them.
    #[allow(unsafe_code)]
    let ok = unsafe {
        aws_lc_sys::ED25519_verify(
            message.as_ptr(),
            message.len(),
            signature.as_ptr(),
            key.as_ptr(),
        )
    };
    if ok == 1 {
        Ok(())
    } else {
        Err(crate::error::Error::InvalidSignature)
    }
}

/// The pure-Rust implementation. Compiled in every build (its crates are small and `x25519-dalek` already
/// brings `curve25519-dalek`), so host tests can hold it to ring's answers.
#[cfg_attr(feature = "ring", allow(dead_code))]
mod rustcrypto_impl {
    use crate::error::{Error, Result};
    use crate::prelude::*;
    use crate::vault::PublicKey;
    use ed25519_dalek::{Signer as _, Verifier as _};
    use sha2::Digest as _;
    use zeroize::Zeroizing;

    pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
        let mut hasher = sha2::Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    pub(crate) fn ed25519_public_key(seed: &[u8; 32]) -> Result<[u8; 32]> {
        Ok(ed25519_dalek::SigningKey::from_bytes(seed)
            .verifying_key()
            .to_bytes())
    }

    pub(crate) fn ed25519_sign(seed: &[u8; 32], message: &[u8]) -> Result<[u8; 64]> {
        Ok(ed25519_dalek::SigningKey::from_bytes(seed)
            .sign(message)
            .to_bytes())
    }

    /// A fresh P-256 key: its 32-byte secret scalar (what the vault stores without ring) and its uncompressed
    /// public point. The scalar comes from the provider's random source.
    #[cfg(feature = "p256")]
    pub(crate) fn p256_generate(
        provider: &dyn crate::crypto::CryptoProvider,
    ) -> Result<(Zeroizing<Vec<u8>>, [u8; 65])> {
        let mut bytes = Zeroizing::new(vec![0u8; 32]);
        // A uniformly random 32-byte string is a valid scalar except with probability ~2^-32.
        for _ in 0..16 {
            provider.fill_random(&mut bytes)?;
            if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&bytes) {
                let point = key.verifying_key().to_encoded_point(false);
                let public: [u8; 65] = point
                    .as_bytes()
                    .try_into()
                    .map_err(|_| Error::Crypto("p256 public key"))?;
                return Ok((bytes, public));
            }
        }
        Err(Error::Crypto("p256 keygen"))
    }

    /// Deterministic ECDSA (RFC 6979) over SHA-256 of `message`: fixed-size `r ‖ s`.
    #[cfg(feature = "p256")]
    pub(crate) fn p256_sign(
        secret: &[u8],
        message: &[u8],
        _provider: &dyn crate::crypto::CryptoProvider,
    ) -> Result<[u8; 64]> {
        let key =
            p256::ecdsa::SigningKey::from_slice(secret).map_err(|_| Error::Crypto("p256 key"))?;
        let signature: p256::ecdsa::Signature = key.sign(message);
        Ok(super::p256_low_s(signature.to_bytes().into()))
    }

    #[cfg(not(feature = "p256"))]
    pub(crate) fn p256_generate(
        _provider: &dyn crate::crypto::CryptoProvider,
    ) -> Result<(Zeroizing<Vec<u8>>, [u8; 65])> {
        Err(P256_UNSUPPORTED)
    }

    #[cfg(not(feature = "p256"))]
    pub(crate) fn p256_sign(
        _secret: &[u8],
        _message: &[u8],
        _provider: &dyn crate::crypto::CryptoProvider,
    ) -> Result<[u8; 64]> {
        Err(P256_UNSUPPORTED)
    }

    #[cfg(not(feature = "p256"))]
    const P256_UNSUPPORTED: Error =
        Error::Crypto("ECDSA P-256 is not in this build (enable the `p256` or `ring` feature)");

    pub(crate) fn verify(key: &PublicKey, message: &[u8], signature: &[u8; 64]) -> Result<()> {
        match key {
            PublicKey::Ed25519(bytes) if !super::ed25519_key_is_canonical(bytes) => {
                Err(Error::InvalidSignature)
            }
            PublicKey::Ed25519(bytes) => {
                let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
                    .map_err(|_| Error::InvalidSignature)?;
                key.verify(message, &ed25519_dalek::Signature::from_bytes(signature))
                    .map_err(|_| Error::InvalidSignature)
            }
            #[cfg(feature = "p256")]
            PublicKey::EcdsaP256(_) if super::p256_is_high_s(signature) => {
                Err(Error::InvalidSignature)
            }
            #[cfg(feature = "p256")]
            PublicKey::EcdsaP256(bytes) => {
                use p256::ecdsa::signature::Verifier as _;
                let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                    .map_err(|_| Error::InvalidSignature)?;
                let signature = p256::ecdsa::Signature::from_slice(signature)
                    .map_err(|_| Error::InvalidSignature)?;
                key.verify(message, &signature)
                    .map_err(|_| Error::InvalidSignature)
            }
            #[cfg(not(feature = "p256"))]
            PublicKey::EcdsaP256(_) => Err(P256_UNSUPPORTED),
        }
    }
}

#[cfg(all(test, feature = "ring"))]
mod tests {
    use super::{ring_impl, rustcrypto_impl};
    use crate::vault::PublicKey;

    #[test]
    fn sha256_and_ed25519_agree_with_ring() {
        assert_eq!(
            ring_impl::sha256(&[b"ab", b"", b"c"]),
            rustcrypto_impl::sha256(&[b"abc"])
        );
        for seed in [[0u8; 32], [7; 32], [0xff; 32]] {
            let public = ring_impl::ed25519_public_key(&seed).unwrap();
            assert_eq!(rustcrypto_impl::ed25519_public_key(&seed).unwrap(), public);
            let sig = ring_impl::ed25519_sign(&seed, b"message").unwrap();
            // Ed25519 is deterministic: both produce the same bytes.
            assert_eq!(
                rustcrypto_impl::ed25519_sign(&seed, b"message").unwrap(),
                sig
            );
            let key = PublicKey::Ed25519(public);
            rustcrypto_impl::verify(&key, b"message", &sig).unwrap();
            assert!(rustcrypto_impl::verify(&key, b"messagE", &sig).is_err());
            let mut bad = sig;
            bad[10] ^= 1;
            assert!(rustcrypto_impl::verify(&key, b"message", &bad).is_err());
            assert!(ring_impl::verify(&key, b"message", &bad).is_err());
            // A non-canonical S (S + L) is refused by both.
            let mut s_plus_l = sig;
            add_group_order(&mut s_plus_l[32..]);
            assert!(ring_impl::verify(&key, b"message", &s_plus_l).is_err());
            assert!(rustcrypto_impl::verify(&key, b"message", &s_plus_l).is_err());
        }
    }

    /// The key pre-check: the non-reduced encodings and `x = 0` with the sign bit are refused by every
    /// implementation (ring and ed25519-dalek alone would accept a signature under the non-canonical identity
    /// key), honest keys pass.
    #[test]
    fn non_canonical_ed25519_keys_are_refused_everywhere() {
        use super::ed25519_key_is_canonical;
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        let mut p_plus_1 = p;
        p_plus_1[0] = 0xee; // ≡ 1: the identity point, encoded non-canonically
        let mut minus_one = p;
        minus_one[0] = 0xec;
        let mut one = [0u8; 32];
        one[0] = 1;
        let mut one_signed = one;
        one_signed[31] |= 0x80;
        let mut minus_one_signed = minus_one;
        minus_one_signed[31] |= 0x80;
        for bad in [p, p_plus_1, one_signed, minus_one_signed] {
            assert!(!ed25519_key_is_canonical(&bad), "{bad:02x?}");
        }
        assert!(ed25519_key_is_canonical(&one));
        assert!(ed25519_key_is_canonical(&minus_one));
        // Under the identity key, R = identity and S = 0 "sign" any message. Encoded non-canonically (p + 1),
        // every build refuses it; canonically (1), every build gives the same verdict.
        let mut sig = [0u8; 64];
        sig[0] = 1;
        let non_canonical = PublicKey::Ed25519(p_plus_1);
        assert!(ring_impl::verify(&non_canonical, b"anything", &sig).is_err());
        assert!(rustcrypto_impl::verify(&non_canonical, b"anything", &sig).is_err());
        let canonical = PublicKey::Ed25519(one);
        assert_eq!(
            ring_impl::verify(&canonical, b"anything", &sig).is_ok(),
            rustcrypto_impl::verify(&canonical, b"anything", &sig).is_ok()
        );
        for seed in [[0u8; 32], [7; 32], [0xff; 32]] {
            assert!(ed25519_key_is_canonical(
                &ring_impl::ed25519_public_key(&seed).unwrap()
            ));
        }
    }

    /// Where AWS-LC verifies Ed25519, it gives ring's verdicts on honest and bent signatures.
    #[cfg(latchkey_aws_lc)]
    #[test]
    fn aws_lc_and_ring_agree_on_ed25519() {
        use ring::signature::{UnparsedPublicKey, ED25519};
        for seed in [[1u8; 32], [9; 32], [0x80; 32]] {
            let public = ring_impl::ed25519_public_key(&seed).unwrap();
            let sig = ring_impl::ed25519_sign(&seed, b"message").unwrap();
            let key = PublicKey::Ed25519(public);
            let mut s_plus_l = sig;
            add_group_order(&mut s_plus_l[32..]);
            let mut flipped = sig;
            flipped[5] ^= 0x10;
            for (candidate, message) in [
                (sig, &b"message"[..]),
                (sig, &b"other"[..]),
                (s_plus_l, &b"message"[..]),
                (flipped, &b"message"[..]),
            ] {
                let ring_says = UnparsedPublicKey::new(&ED25519, &public)
                    .verify(message, &candidate)
                    .is_ok();
                assert_eq!(
                    ring_impl::verify(&key, message, &candidate).is_ok(),
                    ring_says
                );
                assert_eq!(
                    rustcrypto_impl::verify(&key, message, &candidate).is_ok(),
                    ring_says
                );
            }
        }
    }

    /// The direct `ED25519_verify` call gives the verdicts of `aws_lc_rs::signature::ED25519` (its `EVP_PKEY`
    /// path) and of ring, also where cofactored and cofactorless checks part ways: under a canonical
    /// small-order key (y = 0, a point of order 4) the all-identity "signature" (R = identity, S = 0) passes
    /// the cofactorless check exactly when the challenge hash is a multiple of the key's order, so some
    /// messages pass and others do not; every verifier must say the same for each.
    #[cfg(latchkey_aws_lc)]
    #[test]
    fn direct_aws_lc_call_agrees_with_aws_lc_rs_and_ring_on_small_order_keys() {
        use ring::signature::{UnparsedPublicKey, ED25519};
        let small_order = [0u8; 32];
        let mut sig = [0u8; 64];
        sig[0] = 1; // R = the identity point, S = 0
        let mut seen = [false; 2];
        for i in 0..64u32 {
            let message = i.to_be_bytes();
            let ring_says = UnparsedPublicKey::new(&ED25519, &small_order)
                .verify(&message, &sig)
                .is_ok();
            let aws_lc_rs_says = aws_lc_rs::signature::UnparsedPublicKey::new(
                &aws_lc_rs::signature::ED25519,
                &small_order,
            )
            .verify(&message, &sig)
            .is_ok();
            let key = PublicKey::Ed25519(small_order);
            assert_eq!(aws_lc_rs_says, ring_says, "message {i}");
            assert_eq!(
                ring_impl::verify(&key, &message, &sig).is_ok(),
                ring_says,
                "message {i}"
            );
            assert_eq!(
                rustcrypto_impl::verify(&key, &message, &sig).is_ok(),
                ring_says,
                "message {i}"
            );
            seen[usize::from(ring_says)] = true;
        }
        assert_eq!(
            seen,
            [true, true],
            "both verdicts occur, so the comparison means something"
        );
    }

    /// Adds the Ed25519 group order L to a little-endian scalar (no overflow for the scalars used here).
    fn add_group_order(s: &mut [u8]) {
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (byte, l) in s.iter_mut().zip(L) {
            let sum = *byte as u16 + l as u16 + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
    }

    /// Low-s only: every signature made is low-s; the `(r, n − s)` twin of a valid signature verifies under
    /// ring's raw ECDSA (the malleability is real) but is refused by ours, with both implementations.
    #[test]
    fn p256_signatures_are_low_s_and_the_n_minus_s_twin_is_refused() {
        use super::{p256_is_high_s, p256_negate_s};
        use crate::crypto::default_provider;
        use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
        let provider = default_provider();
        let (pkcs8, public) = ring_impl::p256_generate(provider).unwrap();
        let key = PublicKey::EcdsaP256(public);
        // ring's k is random, so about half of its raw signatures are high-s: 64 runs all low means the
        // normalisation works (a miss would happen with probability 2^-64).
        for i in 0..64u32 {
            let message = i.to_be_bytes();
            let sig = ring_impl::p256_sign(&pkcs8, &message, provider).unwrap();
            assert!(!p256_is_high_s(&sig), "signature {i} is high-s");
            ring_impl::verify(&key, &message, &sig).unwrap();
            let twin = p256_negate_s(&sig);
            assert!(p256_is_high_s(&twin));
            assert_eq!(p256_negate_s(&twin), sig, "n - (n - s) = s");
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public)
                .verify(&message, &twin)
                .expect("the raw primitive accepts both forms");
            assert!(ring_impl::verify(&key, &message, &twin).is_err());
            assert!(rustcrypto_impl::verify(&key, &message, &twin).is_err());
        }
    }

    #[cfg(feature = "p256")]
    #[test]
    fn p256_signatures_cross_verify_with_ring() {
        use crate::crypto::default_provider;
        let provider = default_provider();
        // ring signs, the pure-Rust verifier accepts; and the other way round.
        let (pkcs8, public) = ring_impl::p256_generate(provider).unwrap();
        let key = PublicKey::EcdsaP256(public);
        let sig = ring_impl::p256_sign(&pkcs8, b"message", provider).unwrap();
        rustcrypto_impl::verify(&key, b"message", &sig).unwrap();
        assert!(rustcrypto_impl::verify(&key, b"other", &sig).is_err());

        let (scalar, public) = rustcrypto_impl::p256_generate(provider).unwrap();
        let key = PublicKey::EcdsaP256(public);
        let sig = rustcrypto_impl::p256_sign(&scalar, b"message", provider).unwrap();
        ring_impl::verify(&key, b"message", &sig).unwrap();
        rustcrypto_impl::verify(&key, b"message", &sig).unwrap();
        assert!(ring_impl::verify(&key, b"other", &sig).is_err());
    }
}
