//! The provider seam: every primitive the protocol uses goes through [`CryptoProvider`], so a faster
//! implementation can replace the default without touching protocol code.
//!
//! Providers: [`AwsLcProvider`] (feature `aws-lc`, the default on 64-bit x86 and ARM Linux and macOS),
//! [`RingProvider`] (feature `ring`, the default on other std targets) and
//! [`RustCryptoProvider`] (feature `rustcrypto`, pure Rust, builds without std; its randomness comes from a
//! caller-supplied [`RandomSource`]).
//!
//! Signatures and the identity hash are not per handshake and not part of the seam: they use ring when it is
//! compiled in, otherwise `ed25519-dalek`, `sha2` and (feature `p256`) `p256` (see `sig.rs`).

#[cfg(latchkey_aws_lc)]
mod aws_lc_provider;
#[cfg(feature = "ring")]
mod ring_provider;
#[cfg(feature = "rustcrypto")]
mod rustcrypto_provider;
pub(crate) mod sig;

#[cfg(latchkey_aws_lc)]
pub use aws_lc_provider::AwsLcProvider;
#[cfg(feature = "ring")]
pub use ring_provider::RingProvider;
#[cfg(feature = "rustcrypto")]
pub use rustcrypto_provider::{LockedRng, RustCryptoProvider};

use crate::error::Result;
use crate::prelude::*;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of an AEAD tag.
pub const TAG_LEN: usize = 16;

/// 32 secret bytes (a key or a DH output), wiped on drop, never printed.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Secret32([u8; 32]);

impl Secret32 {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl core::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secret32(<redacted>)")
    }
}

/// The AEAD cipher of a Noise suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AeadAlgorithm {
    ChaCha20Poly1305,
    Aes256Gcm,
}

/// An expanded AEAD key. Nonces are Noise's 64-bit counters; the provider lays them out as the Noise
/// specification says for its cipher (ChaChaPoly: 4 zero bytes then little-endian; AESGCM: big-endian).
pub trait AeadKey: Send + Sync {
    /// Encrypts `in_out` in place and returns the tag.
    fn seal_in_place(&self, nonce: u64, ad: &[u8], in_out: &mut [u8]) -> Result<[u8; TAG_LEN]>;

    /// Authenticates `in_out` (ciphertext) against `tag` and decrypts it in place. On failure the contents
    /// of `in_out` are unspecified; callers wipe them.
    fn open_in_place(
        &self,
        nonce: u64,
        ad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<()>;
}

/// Every primitive the protocol core needs.
pub trait CryptoProvider: Send + Sync + 'static {
    /// Short name, reported in benchmarks and diagnostics.
    fn name(&self) -> &'static str;

    /// Fills `buf` from a cryptographically secure RNG.
    fn fill_random(&self, buf: &mut [u8]) -> Result<()>;

    /// The X25519 public key of a secret scalar.
    fn x25519_public_key(&self, secret: &Secret32) -> [u8; 32];

    /// X25519; fails with `InvalidPublicKey` when the result is all zeros (a low-order peer key).
    fn x25519(&self, secret: &Secret32, peer_public: &[u8; 32]) -> Result<Secret32>;

    /// Expands an AEAD key.
    fn aead_key(&self, algorithm: AeadAlgorithm, key: &Secret32) -> Box<dyn AeadKey>;

    /// SHA-256 over the concatenation of `parts`.
    fn sha256(&self, parts: &[&[u8]]) -> [u8; 32];

    /// HMAC-SHA-256 over the concatenation of `parts`.
    fn hmac_sha256(&self, key: &[u8], parts: &[&[u8]]) -> [u8; 32];

    /// Whether AES-256-GCM is this provider's faster AEAD on this CPU: the suite a routed channel's
    /// initiator offers when it is left to choose (docs/PROTOCOL.md 5.1). No by default (a software AES is
    /// slower than ChaCha20-Poly1305 and not constant-time everywhere).
    fn prefers_aes_gcm(&self) -> bool {
        false
    }
}

/// Whether this CPU has AES and carry-less multiply instructions (x86_64: AES-NI and PCLMULQDQ; aarch64: the
/// AES extension, which includes PMULL), detected at run time. Providers with hardware AES-GCM (AWS-LC,
/// ring) prefer AES-GCM when it is true.
#[cfg(feature = "std")]
pub fn cpu_has_aes_gcm() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// A source of cryptographically secure random bytes, for providers that do not read the OS's: on a
/// microcontroller, its TRNG (behind whatever lock or critical section the device needs; `fill` takes
/// `&self` and may be called from any thread that uses the provider).
pub trait RandomSource: Send + Sync {
    /// Fills `buf` completely, or fails (e.g. `Error::Crypto("trng")`) without partial success.
    fn fill(&self, buf: &mut [u8]) -> Result<()>;
}

/// The operating system's random source (feature `std`), through `getrandom`.
#[cfg(feature = "std")]
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

#[cfg(feature = "std")]
impl RandomSource for OsRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<()> {
        getrandom::getrandom(buf).map_err(|_| crate::Error::Crypto("system random"))
    }
}

/// The default provider, the fastest one compiled in: AWS-LC where it is built (feature `aws-lc`, on by
/// default, on 64-bit x86 and ARM Linux and macOS: see `Cargo.toml`), else `ring` + `x25519-dalek` (feature
/// `ring`); with `std` and `rustcrypto` but neither of those, the RustCrypto provider on OS randomness. Builds
/// without a default provider (no_std) name theirs in
/// [`HandshakeConfig::with_provider`](crate::channel::HandshakeConfig::with_provider) and
/// [`SoftwareVault::with_provider`](crate::vault::SoftwareVault::with_provider).
#[cfg(any(feature = "ring", all(feature = "std", feature = "rustcrypto")))]
pub fn default_provider() -> &'static dyn CryptoProvider {
    #[cfg(latchkey_aws_lc)]
    {
        static DEFAULT: AwsLcProvider = AwsLcProvider;
        &DEFAULT
    }
    #[cfg(all(feature = "ring", not(latchkey_aws_lc)))]
    {
        static DEFAULT: RingProvider = RingProvider;
        &DEFAULT
    }
    #[cfg(not(feature = "ring"))]
    {
        static DEFAULT: RustCryptoProvider = RustCryptoProvider::new(&OsRandom);
        &DEFAULT
    }
}

/// Generates a fresh X25519 secret scalar with the provider's RNG.
pub fn generate_secret(provider: &dyn CryptoProvider) -> Result<Secret32> {
    let mut bytes = [0u8; 32];
    provider.fill_random(&mut bytes)?;
    let secret = Secret32::new(bytes);
    bytes.zeroize();
    Ok(secret)
}
