//! Secure channels: a Noise XX handshake that binds both sides' identities, then transport frames with
//! explicit nonces, a replay window and rekeying. Byte buffers in, byte buffers out; no I/O.

mod handshake;
mod payload;
mod replay;
mod symmetric;
mod transport;
mod trust;

pub use handshake::{
    ChannelIdentity, Handshake, HandshakeConfig, Role, MAX_HANDSHAKE_MESSAGE_LEN, PROLOGUE,
};
pub use payload::{HandshakePayload, MAX_CREDENTIALS};
pub use replay::REPLAY_WINDOW;
pub use transport::{
    Decryptor, Encryptor, FRAME_HEADER_LEN, FRAME_OVERHEAD, MAX_EPOCH_SKIP, MAX_PLAINTEXT_LEN,
    REKEY_INTERVAL,
};
pub use trust::{TrustAnyIdentity, TrustIdentifiers, TrustPolicy};

use crate::crypto::AeadAlgorithm;
use crate::error::Result;
use crate::identity::{ChangeHistory, Identifier};
use crate::prelude::*;
use crate::time::Timestamp;
use core::fmt;

/// The Noise cipher suite. Both use X25519 and SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CipherSuite {
    /// `Noise_XX_25519_ChaChaPoly_SHA256`: the default, fast without AES hardware.
    #[default]
    ChaChaPoly,
    /// `Noise_XX_25519_AESGCM_SHA256`: fastest where AES instructions exist.
    AesGcm,
}

/// Message 1's payload byte that offers [`CipherSuite::ChaChaPoly`] (an empty payload offers it too).
pub const SUITE_CHACHAPOLY: u8 = 0x01;
/// Message 1's payload byte that offers [`CipherSuite::AesGcm`].
pub const SUITE_AESGCM: u8 = 0x02;

impl CipherSuite {
    /// Every suite, ChaChaPoly first.
    pub const ALL: [CipherSuite; 2] = [CipherSuite::ChaChaPoly, CipherSuite::AesGcm];

    /// The byte that offers this suite in a routed handshake's message 1 (docs/PROTOCOL.md 5.1).
    pub fn id(self) -> u8 {
        match self {
            CipherSuite::ChaChaPoly => SUITE_CHACHAPOLY,
            CipherSuite::AesGcm => SUITE_AESGCM,
        }
    }

    /// The suite a byte offers; `UnsupportedSuite` for an unknown byte.
    pub fn from_id(id: u8) -> Result<Self> {
        match id {
            SUITE_CHACHAPOLY => Ok(CipherSuite::ChaChaPoly),
            SUITE_AESGCM => Ok(CipherSuite::AesGcm),
            other => Err(crate::error::Error::UnsupportedSuite(other)),
        }
    }

    /// The suite a routed handshake's Noise message 1 (`e ‖ payload`) offers, read without any handshake
    /// state: an empty payload offers ChaChaPoly (peers from before the offer existed), one byte offers the
    /// suite it names ([`CipherSuite::from_id`]). Any other length is a `Decode` error.
    pub fn offered_in(message1: &[u8]) -> Result<Self> {
        match message1.len() {
            32 => Ok(CipherSuite::ChaChaPoly),
            33 => CipherSuite::from_id(message1[32]),
            _ => Err(crate::error::Error::Decode(
                "message 1 must be an ephemeral key and at most one suite byte",
            )),
        }
    }

    /// The lower-case name used by options and the command line: `chachapoly` or `aesgcm`.
    pub fn name(self) -> &'static str {
        match self {
            CipherSuite::ChaChaPoly => "chachapoly",
            CipherSuite::AesGcm => "aesgcm",
        }
    }

    pub fn protocol_name(self) -> &'static str {
        match self {
            CipherSuite::ChaChaPoly => "Noise_XX_25519_ChaChaPoly_SHA256",
            CipherSuite::AesGcm => "Noise_XX_25519_AESGCM_SHA256",
        }
    }

    /// The suite whose AEAD is `aead`.
    pub fn of_aead(aead: AeadAlgorithm) -> Self {
        match aead {
            AeadAlgorithm::ChaCha20Poly1305 => CipherSuite::ChaChaPoly,
            AeadAlgorithm::Aes256Gcm => CipherSuite::AesGcm,
        }
    }

    pub fn aead(self) -> AeadAlgorithm {
        match self {
            CipherSuite::ChaChaPoly => AeadAlgorithm::ChaCha20Poly1305,
            CipherSuite::AesGcm => AeadAlgorithm::Aes256Gcm,
        }
    }
}

/// A set of cipher suites: the ones a routed responder accepts
/// ([`HandshakeConfig::accepted_suites`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SuiteSet(u8);

impl SuiteSet {
    /// Both suites: a responder's default.
    pub const ALL: SuiteSet = SuiteSet(0b11);

    /// Exactly one suite.
    pub const fn only(suite: CipherSuite) -> Self {
        SuiteSet(match suite {
            CipherSuite::ChaChaPoly => 0b01,
            CipherSuite::AesGcm => 0b10,
        })
    }

    pub const fn contains(self, suite: CipherSuite) -> bool {
        self.0 & SuiteSet::only(suite).0 != 0
    }

    /// This set and `suite`.
    pub const fn with(self, suite: CipherSuite) -> Self {
        SuiteSet(self.0 | SuiteSet::only(suite).0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The suites in the set, ChaChaPoly first.
    pub fn iter(self) -> impl Iterator<Item = CipherSuite> {
        CipherSuite::ALL
            .into_iter()
            .filter(move |s| self.contains(*s))
    }
}

impl Default for SuiteSet {
    fn default() -> Self {
        SuiteSet::ALL
    }
}

impl fmt::Debug for SuiteSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// A peer that proved its identity in a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub identifier: Identifier,
    /// The history the peer presented, verified as presented (compare with a stored one via
    /// [`ChangeHistory::check_extends`]): links and every signature but the first change's self-signature,
    /// which the verified attestation (or the second change's previous-signature) makes redundant
    /// ([`ChangeHistory::verify_presented_signatures`], PROTOCOL.md 3.4). Its export can therefore carry a
    /// first self-signature that was never checked (only if the peer itself sent a bad one), and
    /// [`ChangeHistory::import`] of that export would fail.
    pub history: ChangeHistory,
    /// The peer's Noise static public key, attested by its identity.
    pub static_key: [u8; 32],
    pub attestation_expires_at: Timestamp,
    /// Opaque credentials the peer presented, for the caller's authorization layer.
    pub credentials: Vec<Vec<u8>>,
}

/// An established channel: both directions plus what the handshake proved.
pub struct SecureChannel {
    encryptor: Encryptor,
    decryptor: Decryptor,
    peer: PeerIdentity,
    handshake_hash: [u8; 32],
    role: Role,
    suite: CipherSuite,
}

impl fmt::Debug for SecureChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureChannel")
            .field("peer", &self.peer.identifier)
            .field("role", &self.role)
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl SecureChannel {
    pub fn peer(&self) -> &PeerIdentity {
        &self.peer
    }

    pub fn peer_identifier(&self) -> Identifier {
        self.peer.identifier
    }

    /// The Noise handshake hash: identical on both sides, unique to this channel.
    pub fn handshake_hash(&self) -> &[u8; 32] {
        &self.handshake_hash
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn suite(&self) -> CipherSuite {
        self.suite
    }

    pub fn encryptor(&mut self) -> &mut Encryptor {
        &mut self.encryptor
    }

    pub fn decryptor(&mut self) -> &mut Decryptor {
        &mut self.decryptor
    }

    /// See [`Encryptor::encrypt_in_place`].
    pub fn encrypt_in_place(&mut self, frame: &mut [u8]) -> Result<()> {
        self.encryptor.encrypt_in_place(frame)
    }

    /// See [`Encryptor::encrypt`].
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut [u8]) -> Result<usize> {
        self.encryptor.encrypt(plaintext, out)
    }

    pub fn encrypt_to_vec(&mut self, plaintext: &[u8]) -> Result<Vec<u8>> {
        self.encryptor.encrypt_to_vec(plaintext)
    }

    /// See [`Decryptor::decrypt_in_place`].
    pub fn decrypt_in_place<'a>(&mut self, frame: &'a mut [u8]) -> Result<&'a mut [u8]> {
        self.decryptor.decrypt_in_place(frame)
    }

    /// See [`Decryptor::decrypt`].
    pub fn decrypt(&mut self, frame: &[u8], out: &mut [u8]) -> Result<usize> {
        self.decryptor.decrypt(frame, out)
    }

    pub fn decrypt_to_vec(&mut self, frame: &[u8]) -> Result<Vec<u8>> {
        self.decryptor.decrypt_to_vec(frame)
    }

    /// Separates the two directions (e.g. for an encryptor worker and a decryptor worker).
    pub fn split(self) -> (Encryptor, Decryptor, PeerIdentity) {
        (self.encryptor, self.decryptor, self.peer)
    }
}
