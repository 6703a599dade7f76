//! Stateless reset (docs/RUNTIME.md, "Stateless reset"), after QUIC's (RFC 9000 §10.3).
//!
//! Each channel end derives a **reset token** from its node's reset key and its own decryptor's address,
//! and gives it to its peer inside authenticated ACK frames. When a node later receives a channel frame
//! for a decryptor it does not know (it restarted, or the channel is gone), it recomputes the token of that
//! address and sends it back along the frame's return route as a `0x04` reset. The peer closes its end when
//! the token matches the one it learnt, and ignores any other reset: only a node holding the reset key can
//! produce the token, and an observer of the path never saw it (it travelled encrypted) until the reset is
//! sent, by which time that channel is gone at the resetting end.
//!
//! A node whose reset key survives a restart (the runtime derives it from the identity's static X25519 key,
//! [`ResetKey::derive`]) can therefore end its peers' stale channels at once, and they reopen new ones.

use super::KIND_FRAME;
use crate::crypto::{CryptoProvider, Secret32};
use crate::error::Result;
use crate::vault::{KeyId, SecureChannelVault};
use crate::wire::{Address, Route, RoutedMessage};
use alloc::vec::Vec;

/// First byte of a channel payload on the route: a stateless reset (the 16-byte token follows).
pub const KIND_RESET: u8 = 4;
/// Bytes in a reset token.
pub const RESET_TOKEN_LEN: usize = 16;
/// A reset token.
pub type ResetToken = [u8; RESET_TOKEN_LEN];

/// The public input of [`ResetKey::derive`]: an X25519 u-coordinate whose discrete logarithm nobody knows
/// (SHA-256 of this label), so the DH output with it is as secret as the static key.
pub const RESET_POINT_LABEL: &[u8] = b"latchkey stateless reset point v1";
/// HMAC label of the reset key (keyed with the DH output).
pub const RESET_KEY_LABEL: &[u8] = b"latchkey stateless reset key v1";
/// HMAC label of a token (keyed with the reset key), followed by the address's length byte and bytes.
pub const RESET_TOKEN_LABEL: &[u8] = b"latchkey stateless reset token v1";

/// A node's reset key: 32 secret bytes from which every channel end's token is derived.
pub struct ResetKey(Secret32);

impl core::fmt::Debug for ResetKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ResetKey(<redacted>)")
    }
}

impl ResetKey {
    /// A reset key from 32 secret bytes (random per node when nothing better is at hand; then a restarted
    /// node cannot reset its peers' old channels, which fail by their delivery deadline instead).
    pub fn new(bytes: [u8; 32]) -> Self {
        ResetKey(Secret32::new(bytes))
    }

    /// The reset key of an identity's static X25519 key: the same after a restart with the same identity.
    /// `HMAC-SHA256(X25519(static, SHA-256(RESET_POINT_LABEL)), RESET_KEY_LABEL)`.
    pub fn derive(
        vault: &dyn SecureChannelVault,
        static_key: &KeyId,
        provider: &dyn CryptoProvider,
    ) -> Result<Self> {
        let point = provider.sha256(&[RESET_POINT_LABEL]);
        let shared = vault.x25519(static_key, &point)?;
        Ok(Self::from_shared(shared.expose(), provider))
    }

    /// The reset key from an X25519 output (see [`ResetKey::derive`]).
    pub fn from_shared(shared: &[u8; 32], provider: &dyn CryptoProvider) -> Self {
        ResetKey(Secret32::new(
            provider.hmac_sha256(shared, &[RESET_KEY_LABEL]),
        ))
    }

    /// The token of the channel end whose decryptor is `decryptor`:
    /// `HMAC-SHA256(key, RESET_TOKEN_LABEL ‖ len(decryptor) ‖ decryptor)[..16]`.
    pub fn token(&self, provider: &dyn CryptoProvider, decryptor: &Address) -> ResetToken {
        let bytes = decryptor.as_str().as_bytes();
        let len = [u8::try_from(bytes.len()).unwrap_or(u8::MAX)];
        let mac = provider.hmac_sha256(self.0.expose(), &[RESET_TOKEN_LABEL, &len, bytes]);
        let mut token = [0u8; RESET_TOKEN_LEN];
        token.copy_from_slice(&mac[..RESET_TOKEN_LEN]);
        token
    }

    /// The reset a node sends when `message`, a routed message as it arrived, is addressed to a decryptor
    /// it does not know (`message.onward`'s first hop). `None` unless the message is a channel frame (kind
    /// `0x02`) longer than the reset itself (so a reset never amplifies, and never answers a reset) with a
    /// return route to answer along. The reset: onward = the frame's return route, return route empty,
    /// payload `0x04 ‖ token`.
    pub fn answer_unknown(
        &self,
        provider: &dyn CryptoProvider,
        message: &RoutedMessage,
    ) -> Option<RoutedMessage> {
        let unknown = message.onward.first()?;
        if message.payload.first() != Some(&KIND_FRAME)
            || message.payload.len() <= 1 + RESET_TOKEN_LEN
            || message.ret.is_empty()
        {
            return None;
        }
        Some(RoutedMessage::new(
            message.ret.clone(),
            Route::new(),
            reset_payload(&self.token(provider, unknown)),
        ))
    }
}

/// `0x04 ‖ token`.
pub fn reset_payload(token: &ResetToken) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + RESET_TOKEN_LEN);
    v.push(KIND_RESET);
    v.extend_from_slice(token);
    v
}

/// The token of a reset payload (exactly `0x04` and 16 bytes), or `None`.
pub fn parse_reset(payload: &[u8]) -> Option<ResetToken> {
    if payload.len() != 1 + RESET_TOKEN_LEN || payload[0] != KIND_RESET {
        return None;
    }
    payload[1..].try_into().ok()
}

/// Compares two tokens in time independent of where they differ.
pub fn tokens_match(a: &ResetToken, b: &ResetToken) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(all(test, feature = "ring"))]
mod tests {
    use super::*;
    use crate::crypto::default_provider;

    #[test]
    fn tokens_depend_on_key_and_address_and_resets_answer_only_frames() {
        let p = default_provider();
        let k = ResetKey::new([7; 32]);
        let a = Address::from("sc-dec#00");
        let t = k.token(p, &a);
        assert_eq!(t, k.token(p, &a));
        assert_ne!(t, k.token(p, &"sc-dec#01".into()));
        assert_ne!(t, ResetKey::new([8; 32]).token(p, &a));
        let frame = RoutedMessage::new(
            Route::from(["sc-dec#00"]),
            Route::from(["tcp-in#1", "sc-dec#99"]),
            [&[KIND_FRAME][..], &[0; 40]].concat(),
        );
        let reset = k.answer_unknown(p, &frame).expect("a frame gets a reset");
        assert_eq!(reset.onward, frame.ret);
        assert!(reset.ret.is_empty());
        assert_eq!(parse_reset(&reset.payload), Some(t));
        assert!(
            k.answer_unknown(p, &reset).is_none(),
            "a reset is never answered"
        );
        let short = RoutedMessage::new(
            frame.onward.clone(),
            frame.ret.clone(),
            alloc::vec![KIND_FRAME; 17],
        );
        assert!(
            k.answer_unknown(p, &short).is_none(),
            "never larger than the trigger"
        );
        let no_ret = RoutedMessage::new(frame.onward.clone(), Route::new(), frame.payload.clone());
        assert!(k.answer_unknown(p, &no_ret).is_none());
        assert!(tokens_match(&t, &t));
        let mut other = t;
        other[15] ^= 1;
        assert!(!tokens_match(&t, &other));
        assert_eq!(parse_reset(&reset.payload[..16]), None);
    }
}
