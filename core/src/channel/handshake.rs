//! Noise XX as a sans-IO state machine:
//!
//! ```text
//! -> e
//! <- e, ee, s, es      + responder's HandshakePayload
//! -> s, se             + initiator's HandshakePayload
//! ```
//!
//! Each side's static DH goes through its [`SecureChannelVault`], so the static key never has to leave it.

use super::payload::HandshakePayload;
use super::symmetric::SymmetricState;
use super::transport::{Decryptor, Encryptor};
use super::trust::TrustPolicy;
use super::{CipherSuite, PeerIdentity, SecureChannel, SuiteSet};
use crate::crypto::{generate_secret, CryptoProvider, Secret32, TAG_LEN};
use crate::error::{Error, Result};
use crate::identity::{Attestation, ChangeHistory, Identifier, Identity, PurposeKey};
use crate::prelude::*;
use crate::time::Timestamp;
use crate::vault::{KeyId, SecureChannelVault, SigningVault};
use crate::wire::Encode;
use alloc::sync::Arc;
use core::fmt;

/// Mixed into the handshake hash by both sides, so a Latchkey handshake can never be confused with another
/// protocol's Noise XX.
pub const PROLOGUE: &[u8] = b"latchkey/noise/1";
/// The Noise limit on any single message.
pub const MAX_HANDSHAKE_MESSAGE_LEN: usize = 65535;
const DH_LEN: usize = 32;

/// What one side brings to a handshake: who it is and the key it proves it with.
#[derive(Clone)]
pub struct ChannelIdentity {
    pub history: ChangeHistory,
    /// Attestation of `static_key`'s public half by `history`'s primary key.
    pub attestation: Attestation,
    /// The Noise static key, in the vault.
    pub static_key: KeyId,
    /// Opaque credentials shown to the peer (e.g. membership credentials).
    pub credentials: Vec<Vec<u8>>,
}

impl ChannelIdentity {
    /// Attests `static_key` (held in `channel_vault`) with `identity`'s primary key (held in `signing_vault`),
    /// valid from `now` for `validity_secs`, and bundles the result with the identity's history. The two
    /// vaults may be one (a software vault) or differ (identity key in hardware). No credentials.
    pub fn attested(
        identity: &Identity,
        signing_vault: &dyn SigningVault,
        channel_vault: &dyn SecureChannelVault,
        static_key: KeyId,
        now: Timestamp,
        validity_secs: u64,
    ) -> Result<Self> {
        let public = channel_vault.x25519_public_key(&static_key)?;
        let attestation = identity.attest(
            signing_vault,
            PurposeKey::SecureChannel(public),
            now,
            validity_secs,
        )?;
        Ok(ChannelIdentity {
            history: identity.history().clone(),
            attestation,
            static_key,
            credentials: Vec::new(),
        })
    }
}

impl fmt::Debug for ChannelIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelIdentity")
            .field("identifier", &self.history.identifier())
            .field("static_key", &self.static_key)
            .field("credentials", &self.credentials.len())
            .finish()
    }
}

/// Everything a handshake needs.
#[derive(Clone)]
pub struct HandshakeConfig {
    /// The suite of this handshake. With [`HandshakeConfig::announce_suite`]: the initiator's offer (the
    /// responder takes the suite its peer offers instead).
    pub suite: CipherSuite,
    /// Routed channels (docs/PROTOCOL.md 5.1): the initiator announces `suite` in message 1's payload (one
    /// byte, none for ChaChaPoly, so older responders still understand it); the responder reads the offer
    /// there (none: ChaChaPoly) and runs the handshake under that suite if `accepted_suites` holds it,
    /// failing with `UnsupportedSuite` otherwise. The payload is mixed into the handshake hash, so a changed
    /// offer makes message 2 fail at the initiator. Off (the default): both sides must be configured with
    /// the same suite, and message 1 carries no payload (plain Noise, as direct channels and other Noise
    /// implementations expect).
    pub announce_suite: bool,
    /// The suites a responder with `announce_suite` accepts (both by default).
    pub accepted_suites: SuiteSet,
    pub provider: &'static dyn CryptoProvider,
    pub vault: Arc<dyn SecureChannelVault>,
    pub identity: ChannelIdentity,
    pub trust: Arc<dyn TrustPolicy>,
    /// The time against which expiries are checked.
    pub now: Timestamp,
}

impl HandshakeConfig {
    /// A configuration with the default suite (ChaChaPoly) and provider (builds that have one: see
    /// [`default_provider`](crate::crypto::default_provider)).
    #[cfg(any(feature = "ring", all(feature = "std", feature = "rustcrypto")))]
    pub fn new(
        vault: Arc<dyn SecureChannelVault>,
        identity: ChannelIdentity,
        trust: Arc<dyn TrustPolicy>,
        now: Timestamp,
    ) -> Self {
        Self::with_provider(
            crate::crypto::default_provider(),
            vault,
            identity,
            trust,
            now,
        )
    }

    /// A configuration with the default suite (ChaChaPoly) and the given provider: how a no_std build,
    /// which has no default provider, makes one.
    pub fn with_provider(
        provider: &'static dyn CryptoProvider,
        vault: Arc<dyn SecureChannelVault>,
        identity: ChannelIdentity,
        trust: Arc<dyn TrustPolicy>,
        now: Timestamp,
    ) -> Self {
        HandshakeConfig {
            suite: CipherSuite::default(),
            announce_suite: false,
            accepted_suites: SuiteSet::ALL,
            provider,
            vault,
            identity,
            trust,
            now,
        }
    }
}

impl fmt::Debug for HandshakeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeConfig")
            .field("suite", &self.suite)
            .field("announce_suite", &self.announce_suite)
            .field("accepted_suites", &self.accepted_suites)
            .field("provider", &self.provider.name())
            .field("identity", &self.identity)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// Which side of the handshake this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Initiator,
    Responder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Initiator writes `e`.
    WriteE,
    /// Responder reads `e`.
    ReadE,
    /// Responder writes `e, ee, s, es`.
    WriteEEsEs,
    /// Initiator reads `e, ee, s, es`.
    ReadEEsEs,
    /// Initiator writes `s, se`.
    WriteSSe,
    /// Responder reads `s, se`.
    ReadSSe,
    Done,
    Failed,
}

struct Ephemeral {
    secret: Secret32,
}

/// A handshake in progress. Drive it with [`Handshake::write_message`] when [`Handshake::is_my_turn`],
/// [`Handshake::read_message`] otherwise, until [`Handshake::is_finished`]; then [`Handshake::finish`].
/// Any error is final: the handshake moves to a failed state and every later call fails with `InvalidState`.
pub struct Handshake {
    config: HandshakeConfig,
    role: Role,
    step: Step,
    symmetric: SymmetricState,
    local_static_public: [u8; 32],
    ephemeral: Option<Ephemeral>,
    fixed_ephemeral: Option<Secret32>,
    remote_ephemeral: Option<[u8; 32]>,
    remote_static: Option<[u8; 32]>,
    peer: Option<PeerIdentity>,
    /// A peer that proved its identity here but that the trust policy refused.
    refused: Option<Identifier>,
    /// Our encoded `HandshakePayload`, sent in message 2 (responder) or 3 (initiator).
    local_payload: Vec<u8>,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("role", &self.role)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl Handshake {
    pub fn initiator(config: HandshakeConfig) -> Result<Self> {
        Self::new(config, Role::Initiator)
    }

    pub fn responder(config: HandshakeConfig) -> Result<Self> {
        Self::new(config, Role::Responder)
    }

    /// Starts a handshake, first checking that our own attestation covers our static key and is valid now:
    /// a misconfigured side fails here rather than being refused by its peer.
    pub fn new(config: HandshakeConfig, role: Role) -> Result<Self> {
        let local_static_public = config
            .vault
            .x25519_public_key(&config.identity.static_key)?;
        config.identity.history.check_not_expired(config.now)?;
        config.identity.attestation.verify(
            &config.identity.history,
            &PurposeKey::SecureChannel(local_static_public),
            config.now,
        )?;
        let payload = HandshakePayload {
            history: config.identity.history.clone(),
            attestation: config.identity.attestation.clone(),
            credentials: config.identity.credentials.clone(),
        };
        payload.check_sizes()?;
        // Encoded once: exactly one of messages 2 and 3 carries it.
        let local_payload = payload.to_bytes();
        let symmetric = initial_state(&config);
        let step = match role {
            Role::Initiator => Step::WriteE,
            Role::Responder => Step::ReadE,
        };
        Ok(Handshake {
            config,
            role,
            step,
            symmetric,
            local_static_public,
            ephemeral: None,
            fixed_ephemeral: None,
            remote_ephemeral: None,
            remote_static: None,
            peer: None,
            refused: None,
            local_payload,
        })
    }

    /// Uses `secret` as this side's ephemeral key instead of a random one.
    ///
    /// **Only for reproducing test vectors.** Reusing an ephemeral key destroys forward secrecy. Exists only
    /// with the `test-vectors` feature, which no release build has.
    #[cfg(feature = "test-vectors")]
    pub fn set_ephemeral_for_test_vectors(&mut self, secret: [u8; 32]) -> Result<()> {
        if self.ephemeral.is_some() {
            return Err(Error::InvalidState("ephemeral key already generated"));
        }
        self.fixed_ephemeral = Some(Secret32::new(secret));
        Ok(())
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The handshake's cipher suite: a responder with [`HandshakeConfig::announce_suite`] knows it once it
    /// read message 1.
    pub fn suite(&self) -> CipherSuite {
        self.config.suite
    }

    /// True when the next call must be [`Handshake::write_message`].
    pub fn is_my_turn(&self) -> bool {
        matches!(self.step, Step::WriteE | Step::WriteEEsEs | Step::WriteSSe)
    }

    pub fn is_finished(&self) -> bool {
        self.step == Step::Done
    }

    pub fn is_failed(&self) -> bool {
        self.step == Step::Failed
    }

    /// The Noise handshake hash so far (after completion: the channel binding value).
    pub fn handshake_hash(&self) -> [u8; 32] {
        self.symmetric.handshake_hash()
    }

    /// The peer, once it has proved its identity.
    pub fn peer(&self) -> Option<&PeerIdentity> {
        self.peer.as_ref()
    }

    /// The identifier of a peer that proved its identity in this handshake (history, attestation and static
    /// key all verified, so it holds that identity's keys) but that the trust policy then refused: its
    /// credentials, pins or the policy no longer admit it. `None` otherwise (no proof yet, a bad proof).
    pub fn refused_peer(&self) -> Option<&Identifier> {
        self.refused.as_ref()
    }

    /// Produces our next handshake message.
    pub fn write_message(&mut self) -> Result<Vec<u8>> {
        let result = match self.step {
            Step::WriteE => self.write_e(),
            Step::WriteEEsEs => self.write_e_ee_s_es(),
            Step::WriteSSe => self.write_s_se(),
            Step::Failed => return Err(Error::InvalidState("handshake failed earlier")),
            _ => return Err(Error::InvalidState("not our turn to write")),
        };
        self.fail_on_error(result)
    }

    /// Consumes the peer's handshake message.
    pub fn read_message(&mut self, message: &[u8]) -> Result<()> {
        let result = match self.step {
            Step::ReadE => self.read_e(message),
            Step::ReadEEsEs => self.read_e_ee_s_es(message),
            Step::ReadSSe => self.read_s_se(message),
            Step::Failed => return Err(Error::InvalidState("handshake failed earlier")),
            _ => return Err(Error::InvalidState("not our turn to read")),
        };
        self.fail_on_error(result)
    }

    /// Turns a finished handshake into a channel.
    pub fn finish(self) -> Result<SecureChannel> {
        if self.step != Step::Done {
            return Err(Error::InvalidState("handshake not finished"));
        }
        let peer = self
            .peer
            .ok_or(Error::InvalidState("handshake not finished"))?;
        let (initiator_to_responder, responder_to_initiator) = self.symmetric.split();
        let (send, receive) = match self.role {
            Role::Initiator => (initiator_to_responder, responder_to_initiator),
            Role::Responder => (responder_to_initiator, initiator_to_responder),
        };
        let provider = self.config.provider;
        let aead = self.config.suite.aead();
        Ok(SecureChannel {
            encryptor: Encryptor::new(provider, aead, &send),
            decryptor: Decryptor::new(provider, aead, &receive),
            peer,
            handshake_hash: self.symmetric.handshake_hash(),
            role: self.role,
            suite: self.config.suite,
        })
    }

    fn fail_on_error<T>(&mut self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.step = Step::Failed;
            self.ephemeral = None;
        }
        result
    }

    fn new_ephemeral(&mut self) -> Result<[u8; 32]> {
        let secret = match self.fixed_ephemeral.take() {
            Some(secret) => secret,
            None => generate_secret(self.config.provider)?,
        };
        let public = self.config.provider.x25519_public_key(&secret);
        self.ephemeral = Some(Ephemeral { secret });
        self.symmetric.mix_hash(&public);
        Ok(public)
    }

    fn dh_ephemeral(&self, remote: &[u8; 32]) -> Result<Secret32> {
        let e = self
            .ephemeral
            .as_ref()
            .ok_or(Error::InvalidState("no ephemeral key"))?;
        self.config.provider.x25519(&e.secret, remote)
    }

    fn dh_static(&self, remote: &[u8; 32]) -> Result<Secret32> {
        self.config
            .vault
            .x25519(&self.config.identity.static_key, remote)
    }

    fn write_e(&mut self) -> Result<Vec<u8>> {
        let mut out = self.new_ephemeral()?.to_vec();
        // Message 1's payload travels unencrypted: empty, or the suite offer of a routed channel (none for
        // ChaChaPoly).
        let offer: &[u8] = match self.config.suite {
            CipherSuite::AesGcm if self.config.announce_suite => &[super::SUITE_AESGCM],
            _ => &[],
        };
        self.symmetric.encrypt_and_hash(offer, &mut out)?;
        self.step = Step::ReadEEsEs;
        Ok(out)
    }

    fn read_e(&mut self, message: &[u8]) -> Result<()> {
        check_len(message)?;
        if self.config.announce_suite {
            let offered = CipherSuite::offered_in(message)?;
            if !self.config.accepted_suites.contains(offered) {
                return Err(Error::UnsupportedSuite(offered.id()));
            }
            if offered != self.config.suite {
                // Nothing but the prologue was mixed yet: start again under the offered suite's name.
                self.config.suite = offered;
                self.symmetric = initial_state(&self.config);
            }
        } else if message.len() != DH_LEN {
            return Err(Error::Decode("message 1 must be exactly an ephemeral key"));
        }
        let re = read_key(&message[..DH_LEN])?;
        self.symmetric.mix_hash(&re);
        self.symmetric.decrypt_and_hash(&message[DH_LEN..])?;
        self.remote_ephemeral = Some(re);
        self.step = Step::WriteEEsEs;
        Ok(())
    }

    fn write_e_ee_s_es(&mut self) -> Result<Vec<u8>> {
        let re = self
            .remote_ephemeral
            .ok_or(Error::InvalidState("no remote ephemeral"))?;
        let payload = core::mem::take(&mut self.local_payload);
        let mut out = Vec::with_capacity(DH_LEN + DH_LEN + TAG_LEN + payload.len() + TAG_LEN);
        out.extend_from_slice(&self.new_ephemeral()?);
        let ee = self.dh_ephemeral(&re)?;
        self.symmetric.mix_key(&ee);
        let s = self.local_static_public;
        self.symmetric.encrypt_and_hash(&s, &mut out)?;
        let es = self.dh_static(&re)?;
        self.symmetric.mix_key(&es);
        self.symmetric.encrypt_and_hash(&payload, &mut out)?;
        check_len(&out)?;
        self.step = Step::ReadSSe;
        Ok(out)
    }

    fn read_e_ee_s_es(&mut self, message: &[u8]) -> Result<()> {
        check_len(message)?;
        let sealed_static = DH_LEN + TAG_LEN;
        if message.len() < DH_LEN + sealed_static + TAG_LEN {
            return Err(Error::Decode("message 2 too short"));
        }
        let re = read_key(&message[..DH_LEN])?;
        self.symmetric.mix_hash(&re);
        self.remote_ephemeral = Some(re);
        let ee = self.dh_ephemeral(&re)?;
        self.symmetric.mix_key(&ee);
        let rs = read_key(
            &self
                .symmetric
                .decrypt_and_hash(&message[DH_LEN..DH_LEN + sealed_static])?,
        )?;
        let es = self.dh_ephemeral(&rs)?;
        self.symmetric.mix_key(&es);
        let payload = self
            .symmetric
            .decrypt_and_hash(&message[DH_LEN + sealed_static..])?;
        self.peer = Some(self.accept_peer(&payload, rs)?);
        self.remote_static = Some(rs);
        self.step = Step::WriteSSe;
        Ok(())
    }

    fn write_s_se(&mut self) -> Result<Vec<u8>> {
        let re = self
            .remote_ephemeral
            .ok_or(Error::InvalidState("no remote ephemeral"))?;
        let payload = core::mem::take(&mut self.local_payload);
        let mut out = Vec::with_capacity(DH_LEN + TAG_LEN + payload.len() + TAG_LEN);
        let s = self.local_static_public;
        self.symmetric.encrypt_and_hash(&s, &mut out)?;
        let se = self.dh_static(&re)?;
        self.symmetric.mix_key(&se);
        self.symmetric.encrypt_and_hash(&payload, &mut out)?;
        check_len(&out)?;
        self.step = Step::Done;
        self.ephemeral = None;
        Ok(out)
    }

    fn read_s_se(&mut self, message: &[u8]) -> Result<()> {
        check_len(message)?;
        let sealed_static = self.symmetric.sealed_len(DH_LEN);
        if message.len() < sealed_static + TAG_LEN {
            return Err(Error::Decode("message 3 too short"));
        }
        let rs = read_key(&self.symmetric.decrypt_and_hash(&message[..sealed_static])?)?;
        let se = self.dh_ephemeral(&rs)?;
        self.symmetric.mix_key(&se);
        let payload = self.symmetric.decrypt_and_hash(&message[sealed_static..])?;
        self.peer = Some(self.accept_peer(&payload, rs)?);
        self.remote_static = Some(rs);
        self.step = Step::Done;
        self.ephemeral = None;
        Ok(())
    }

    /// [`Handshake::verify_peer`], remembering a peer that proved itself but that the trust policy refused
    /// ([`Handshake::refused_peer`]).
    fn accept_peer(&mut self, payload: &[u8], remote_static: [u8; 32]) -> Result<PeerIdentity> {
        let peer = self.verify_peer(payload, remote_static)?;
        if let Err(e) = self.config.trust.check(&peer) {
            self.refused = Some(peer.identifier);
            return Err(e);
        }
        Ok(peer)
    }

    /// The peer's proof: a valid history, an unexpired primary key, an attestation of exactly the static key
    /// it used in this handshake (the trust policy is asked afterwards). The cheap checks run first — the
    /// identifier against an allow-list ([`TrustPolicy::may_trust`]), the history's links and times, the
    /// primary key's expiry, the attestation's subject, key and validity — so a peer that fails any of them
    /// costs no signature verification (a history may carry up to 128 signatures).
    ///
    /// The history is checked as presented ([`ChangeHistory::verify_presented_signatures`], PROTOCOL.md 3.4):
    /// every signature but the first change's self-signature, which the attestation (one change) or the
    /// second change's previous-signature (more) makes redundant. The attestation's signature, checked
    /// last, is what makes that sound for a one-change history: do not drop or reorder it.
    fn verify_peer(&self, payload: &[u8], remote_static: [u8; 32]) -> Result<PeerIdentity> {
        let payload = HandshakePayload::decode_unverified(payload)?;
        let now = self.config.now;
        let history = &payload.history;
        history.verify_links()?;
        let identifier = history.identifier();
        if !self.config.trust.may_trust(&identifier) {
            return Err(Error::UntrustedPeer(identifier));
        }
        history.check_not_expired(now)?;
        let expected = PurposeKey::SecureChannel(remote_static);
        payload.attestation.check_structure(history, &expected)?;
        payload.attestation.check_time(now)?;
        history.verify_presented_signatures()?;
        payload.attestation.verify_signature(history)?;
        let peer = PeerIdentity {
            identifier,
            history: payload.history,
            static_key: remote_static,
            attestation_expires_at: payload.attestation.data.expires_at,
            credentials: payload.credentials,
        };
        Ok(peer)
    }
}

/// Noise's `InitializeSymmetric(protocol_name)` and `MixHash(prologue)`.
fn initial_state(config: &HandshakeConfig) -> SymmetricState {
    let mut symmetric = SymmetricState::new(
        config.provider,
        config.suite.aead(),
        config.suite.protocol_name().as_bytes(),
    );
    symmetric.mix_hash(PROLOGUE);
    symmetric
}

fn check_len(message: &[u8]) -> Result<()> {
    if message.len() > MAX_HANDSHAKE_MESSAGE_LEN {
        return Err(Error::MessageTooLarge {
            len: message.len(),
            max: MAX_HANDSHAKE_MESSAGE_LEN,
        });
    }
    Ok(())
}

fn read_key(bytes: &[u8]) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| Error::Decode("expected a 32-byte key"))
}
