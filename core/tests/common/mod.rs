//! Shared fixtures for the core's integration tests.
#![allow(dead_code)]

use latchkey_core::channel::{
    ChannelIdentity, CipherSuite, Handshake, HandshakeConfig, SecureChannel, TrustAnyIdentity,
    TrustPolicy,
};
use latchkey_core::crypto::{default_provider, CryptoProvider};
use latchkey_core::identity::Identity;
use latchkey_core::vault::{SecureChannelVault, SigningAlgorithm, SoftwareVault};
use latchkey_core::{Result, Timestamp};
use std::sync::Arc;

pub const NOW: Timestamp = Timestamp(1_800_000_000);
pub const DAY: u64 = 86_400;

/// Every provider compiled into this test build, the default first: AWS-LC where it is built (feature
/// `aws-lc` on a target that has it), else ring (or, without ring, the RustCrypto provider on OS randomness);
/// then ring and AWS-LC when compiled in, RustCrypto with feature `rustcrypto`. Suites
/// that are about the provider seam (snow interop, the shared vectors, the provider contract) run once per
/// entry; `cargo test --workspace` turns both optional providers on (the bench crate uses them).
pub fn providers() -> Vec<&'static dyn CryptoProvider> {
    #[allow(unused_mut)]
    let mut all = vec![default_provider()];
    #[cfg(feature = "ring")]
    {
        static RING: latchkey_core::crypto::RingProvider = latchkey_core::crypto::RingProvider;
        all.push(&RING);
    }
    #[cfg(latchkey_aws_lc)]
    {
        static AWS_LC: latchkey_core::crypto::AwsLcProvider = latchkey_core::crypto::AwsLcProvider;
        all.push(&AWS_LC);
    }
    #[cfg(feature = "rustcrypto")]
    {
        static RUSTCRYPTO: latchkey_core::crypto::RustCryptoProvider =
            latchkey_core::crypto::RustCryptoProvider::os();
        all.push(&RUSTCRYPTO);
    }
    let mut seen = Vec::new();
    all.retain(|p| {
        let new = !seen.contains(&p.name());
        seen.push(p.name());
        new
    });
    all
}

/// A party: its vault, identity and channel identity (static key attested for a day).
pub struct Party {
    pub vault: Arc<SoftwareVault>,
    pub identity: Identity,
    pub channel_identity: ChannelIdentity,
    /// The provider of its vault and its handshakes.
    pub provider: &'static dyn CryptoProvider,
}

impl Party {
    pub fn new() -> Self {
        Self::with_algorithm(SigningAlgorithm::Ed25519)
    }

    pub fn with_algorithm(algorithm: SigningAlgorithm) -> Self {
        Self::with(algorithm, default_provider())
    }

    pub fn with_provider(provider: &'static dyn CryptoProvider) -> Self {
        Self::with(SigningAlgorithm::Ed25519, provider)
    }

    pub fn with(algorithm: SigningAlgorithm, provider: &'static dyn CryptoProvider) -> Self {
        let vault = Arc::new(SoftwareVault::with_provider(provider));
        let identity = Identity::create(vault.as_ref(), algorithm, NOW, 365 * DAY).unwrap();
        let static_key = vault.generate_x25519_key().unwrap();
        let channel_identity = ChannelIdentity::attested(
            &identity,
            vault.as_ref(),
            vault.as_ref(),
            static_key,
            NOW,
            DAY,
        )
        .unwrap();
        Party {
            vault,
            identity,
            channel_identity,
            provider,
        }
    }

    pub fn config(&self, trust: Arc<dyn TrustPolicy>) -> HandshakeConfig {
        HandshakeConfig::with_provider(
            self.provider,
            self.vault.clone(),
            self.channel_identity.clone(),
            trust,
            NOW,
        )
    }

    pub fn config_any(&self) -> HandshakeConfig {
        self.config(Arc::new(TrustAnyIdentity))
    }
}

/// Runs a handshake to completion, returning both channels.
pub fn handshake(
    initiator: HandshakeConfig,
    responder: HandshakeConfig,
) -> Result<(SecureChannel, SecureChannel)> {
    let mut i = Handshake::initiator(initiator)?;
    let mut r = Handshake::responder(responder)?;
    r.read_message(&i.write_message()?)?;
    i.read_message(&r.write_message()?)?;
    r.read_message(&i.write_message()?)?;
    Ok((i.finish()?, r.finish()?))
}

pub fn suite_config(mut config: HandshakeConfig, suite: CipherSuite) -> HandshakeConfig {
    config.suite = suite;
    config
}
