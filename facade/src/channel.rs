use crate::error::{Error, Result};
use crate::identity::{parse_identifiers, Identity};
use crate::now_or_clock;
use latchkey_core::channel::{
    CipherSuite, Handshake, Role, SecureChannel, TrustAnyIdentity, TrustIdentifiers, TrustPolicy,
};
use std::fmt;
use std::sync::Arc;

/// Whom a handshake accepts as its peer. There is deliberately no default: trusting any identity is said
/// explicitly, never implied by an omitted argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Only these identifiers (`lk…`); an empty list refuses every peer.
    Identifiers(Vec<String>),
    /// Any peer that proves an identity: check [`Channel::peer_identifier`] yourself afterwards.
    AnyIdentity,
}

impl Trust {
    /// The one-entry list that means [`Trust::AnyIdentity`] where trust is given as a list of strings (the C
    /// ABI's `LATCHKEY_TRUST_ANY`).
    pub const ANY_MARKER: &'static str = "*";

    /// A list of identifiers, or exactly `["*"]` for any identity.
    pub fn from_list(list: &[String]) -> Self {
        match list {
            [only] if only == Self::ANY_MARKER => Trust::AnyIdentity,
            _ => Trust::Identifiers(list.to_vec()),
        }
    }

    pub(crate) fn policy(&self) -> Result<Arc<dyn TrustPolicy>> {
        Ok(match self {
            Trust::Identifiers(list) => Arc::new(TrustIdentifiers::new(parse_identifiers(list)?)),
            Trust::AnyIdentity => Arc::new(TrustAnyIdentity),
        })
    }
}

/// A handshake driven by one call: [`HandshakeSession::step`].
///
/// Any failure of `step` (a bad, untrusted or refused peer message, or a call out of turn) ends the handshake:
/// its ephemeral key is wiped and every later call fails with `InvalidState` ("failed earlier"). The peer's
/// history is checked against the identity's pinned histories ([`Identity::peer_histories`]).
pub struct HandshakeSession {
    handshake: Option<Handshake>,
    failed: bool,
    /// Keeps the identity (and so its keys in the vault) alive while the handshake may still need them.
    _identity: Identity,
}

impl fmt::Debug for HandshakeSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeSession")
            .field("handshake", &self.handshake)
            .field("failed", &self.failed)
            .finish()
    }
}

impl HandshakeSession {
    /// Starts a handshake as `role`, accepting the peers that `trust` names (and whose histories pass the
    /// identity's pins).
    pub fn new(
        identity: &Identity,
        role: Role,
        suite: CipherSuite,
        trust: &Trust,
        now: Option<u64>,
    ) -> Result<Self> {
        let mut config = identity
            .local_identity()?
            .handshake_config(identity.pinning(trust.policy()?), now_or_clock(now));
        config.suite = suite;
        Ok(HandshakeSession {
            handshake: Some(Handshake::new(config, role)?),
            failed: false,
            _identity: identity.clone(),
        })
    }

    /// Uses a fixed ephemeral key. Only for reproducing test vectors: it destroys forward secrecy. Exists only
    /// with the `test-vectors` feature.
    #[cfg(feature = "test-vectors")]
    pub fn set_ephemeral_for_test_vectors(&mut self, secret: &[u8; 32]) -> Result<()> {
        Ok(self.active()?.set_ephemeral_for_test_vectors(*secret)?)
    }

    fn active(&mut self) -> Result<&mut Handshake> {
        if self.failed {
            return Err(Error::invalid_state(
                "the handshake failed earlier: start a new one",
            ));
        }
        self.handshake.as_mut().ok_or(Error::invalid_state(
            "handshake already turned into a channel",
        ))
    }

    /// Feeds the peer's message (`None` for the initiator's first call) and returns the message to send, if
    /// any. Initiator: `step(None) → m1`, `step(m2) → m3`. Responder: `step(m1) → m2`, `step(m3) → None`.
    /// Any error ends the handshake (see the type's documentation); calling after it finished is
    /// `InvalidState` and changes nothing.
    pub fn step(&mut self, input: Option<&[u8]>) -> Result<Option<Vec<u8>>> {
        let handshake = self.active()?;
        if handshake.is_finished() {
            return Err(Error::invalid_state("handshake already finished"));
        }
        let result = Self::advance(handshake, input);
        if result.is_err() {
            // Dropping the core handshake wipes its ephemeral and chaining keys.
            self.handshake = None;
            self.failed = true;
        }
        result
    }

    fn advance(handshake: &mut Handshake, input: Option<&[u8]>) -> Result<Option<Vec<u8>>> {
        match input {
            Some(message) => {
                if handshake.is_my_turn() {
                    return Err(Error::invalid_state("expected to write, not read"));
                }
                handshake.read_message(message)?;
            }
            None if !handshake.is_my_turn() => {
                return Err(Error::invalid_state("a peer message is required"));
            }
            None => {}
        }
        if handshake.is_my_turn() {
            Ok(Some(handshake.write_message()?))
        } else {
            Ok(None)
        }
    }

    pub fn is_finished(&self) -> bool {
        self.handshake.as_ref().is_some_and(Handshake::is_finished)
    }

    /// True once a failure ended the handshake.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// The Noise handshake hash so far.
    pub fn handshake_hash(&self) -> Result<[u8; 32]> {
        if self.failed {
            return Err(Error::invalid_state("the handshake failed earlier"));
        }
        self.handshake
            .as_ref()
            .map(Handshake::handshake_hash)
            .ok_or(Error::invalid_state("no handshake"))
    }

    /// The established channel. Can be taken once.
    pub fn into_channel(&mut self) -> Result<Channel> {
        self.active()?;
        let handshake = self.handshake.take().ok_or(Error::invalid_state(
            "handshake already turned into a channel",
        ))?;
        if !handshake.is_finished() {
            self.handshake = Some(handshake);
            return Err(Error::invalid_state("handshake not finished"));
        }
        Ok(Channel {
            inner: handshake.finish()?,
        })
    }
}

/// An established channel.
#[derive(Debug)]
pub struct Channel {
    inner: SecureChannel,
}

impl Channel {
    pub fn peer_identifier(&self) -> String {
        self.inner.peer_identifier().to_string()
    }

    /// The peer's change history, as bytes, verified as presented in the handshake (docs/PROTOCOL.md 3.4,
    /// 5.4): links and every signature but the first change's self-signature, which the peer's attestation
    /// (or its second change's previous-signature) made redundant. So if the peer itself sent a bad first
    /// self-signature, these bytes carry it, and importing them as a standalone history (`history_identifier`,
    /// `verify_history_update`, pinning them) fails with `InvalidHistory`.
    pub fn peer_history(&self) -> Vec<u8> {
        self.inner.peer().history.export()
    }

    /// Opaque credentials the peer presented.
    pub fn peer_credentials(&self) -> Vec<Vec<u8>> {
        self.inner.peer().credentials.clone()
    }

    pub fn handshake_hash(&self) -> [u8; 32] {
        *self.inner.handshake_hash()
    }

    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>> {
        Ok(self.inner.encrypt_to_vec(plaintext)?)
    }

    /// Encrypts into `out` (needs `plaintext.len() + FRAME_OVERHEAD` bytes); returns the frame length.
    pub fn encrypt_into(&mut self, plaintext: &[u8], out: &mut [u8]) -> Result<usize> {
        Ok(self.inner.encrypt(plaintext, out)?)
    }

    pub fn decrypt(&mut self, frame: &[u8]) -> Result<Vec<u8>> {
        Ok(self.inner.decrypt_to_vec(frame)?)
    }

    /// Decrypts into `out` (needs `frame.len() - FRAME_OVERHEAD` bytes); returns the plaintext length.
    pub fn decrypt_into(&mut self, frame: &[u8], out: &mut [u8]) -> Result<usize> {
        Ok(self.inner.decrypt(frame, out)?)
    }

    /// The core channel, for Rust callers (e.g. to split it into encryptor and decryptor workers).
    pub fn into_inner(self) -> SecureChannel {
        self.inner
    }
}
