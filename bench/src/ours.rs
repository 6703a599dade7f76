//! Latchkey parties and channels for the benchmarks, with each crypto provider.

use latchkey_core::channel::{
    ChannelIdentity, CipherSuite, Handshake, HandshakeConfig, SecureChannel, TrustIdentifiers,
};
use latchkey_core::crypto::{AwsLcProvider, CryptoProvider, RingProvider, RustCryptoProvider};
use latchkey_core::identity::Identity;
use latchkey_core::vault::{SecureChannelVault, SigningAlgorithm, SoftwareVault};
use latchkey_core::{Result, Timestamp};
use std::sync::Arc;

static RING: RingProvider = RingProvider;
static AWS_LC: AwsLcProvider = AwsLcProvider;
/// The pure-Rust provider a microcontroller uses, here on OS randomness.
static RUSTCRYPTO: RustCryptoProvider = RustCryptoProvider::os();

/// The three providers behind the seam: ring, AWS-LC, RustCrypto.
pub fn providers() -> [&'static dyn CryptoProvider; 3] {
    [&RING, &AWS_LC, &RUSTCRYPTO]
}

/// One side: an Ed25519 identity with a one-change history and an attested static key, as a real
/// deployment has them (the identity and attestation exist before any handshake).
pub struct Party {
    pub vault: Arc<SoftwareVault>,
    pub identity: Identity,
    pub channel: ChannelIdentity,
}

impl Party {
    pub fn new(provider: &'static dyn CryptoProvider, now: Timestamp) -> Result<Self> {
        let vault = Arc::new(SoftwareVault::with_provider(provider));
        let identity =
            Identity::create(vault.as_ref(), SigningAlgorithm::Ed25519, now, 365 * 86_400)?;
        let static_key = vault.generate_x25519_key()?;
        let channel = ChannelIdentity::attested(
            &identity,
            vault.as_ref(),
            vault.as_ref(),
            static_key,
            now,
            86_400,
        )?;
        Ok(Party {
            vault,
            identity,
            channel,
        })
    }

    /// A configuration that trusts exactly `peer`.
    pub fn config(
        &self,
        peer: &Party,
        provider: &'static dyn CryptoProvider,
        suite: CipherSuite,
        now: Timestamp,
    ) -> HandshakeConfig {
        let mut config = HandshakeConfig::new(
            self.vault.clone(),
            self.channel.clone(),
            Arc::new(TrustIdentifiers::new([peer.identity.identifier()])),
            now,
        );
        config.provider = provider;
        config.suite = suite;
        config
    }
}

/// Two parties that trust each other, and their configurations.
pub struct Pair {
    pub initiator: HandshakeConfig,
    pub responder: HandshakeConfig,
}

impl Pair {
    pub fn new(provider: &'static dyn CryptoProvider, suite: CipherSuite) -> Result<Self> {
        let now = Timestamp::now();
        let a = Party::new(provider, now)?;
        let b = Party::new(provider, now)?;
        Ok(Pair {
            initiator: a.config(&b, provider, suite, now),
            responder: b.config(&a, provider, suite, now),
        })
    }

    /// Two existing parties (e.g. several clients of one server, whose vault they then share).
    pub fn between(
        a: &Party,
        b: &Party,
        provider: &'static dyn CryptoProvider,
        suite: CipherSuite,
    ) -> Self {
        let now = Timestamp::now();
        Pair {
            initiator: a.config(b, provider, suite, now),
            responder: b.config(a, provider, suite, now),
        }
    }

    /// A full handshake, both sides in this thread: identities proved and verified, channels built.
    pub fn handshake(&self) -> Result<(SecureChannel, SecureChannel)> {
        let mut i = Handshake::initiator(self.initiator.clone())?;
        let mut r = Handshake::responder(self.responder.clone())?;
        r.read_message(&i.write_message()?)?;
        i.read_message(&r.write_message()?)?;
        r.read_message(&i.write_message()?)?;
        Ok((i.finish()?, r.finish()?))
    }
}
