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

impl CipherSuite {
    pub fn protocol_name(self) -> &'static str {
        match self {
            CipherSuite::ChaChaPoly => "Noise_XX_25519_ChaChaPoly_SHA256",
            CipherSuite::AesGcm => "Noise_XX_25519_AESGCM_SHA256",
        }
    }

    pub fn aead(self) -> AeadAlgorithm {
        match self {
            CipherSuite::ChaChaPoly => AeadAlgorithm::ChaCha20Poly1305,
            CipherSuite::AesGcm => AeadAlgorithm::Aes256Gcm,
        }
    }
}

/// A peer that proved its identity in a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub identifier: Identifier,
    /// The verified history the peer presented (compare with a stored one via [`ChangeHistory::check_extends`]).
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
