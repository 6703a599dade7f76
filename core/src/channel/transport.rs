//! Transport frames after the handshake: `nonce (8 bytes, big-endian) ‖ ciphertext ‖ tag (16)`.
//!
//! The nonce travels explicitly so that frames survive loss and reordering on datagram paths; the AEAD key is
//! rotated with Noise's REKEY every [`REKEY_INTERVAL`] nonces, so both sides derive the key of any frame from
//! its nonce alone, without a round trip.

use super::replay::{ReplayWindow, Verdict};
use crate::crypto::{AeadAlgorithm, AeadKey, CryptoProvider, Secret32, TAG_LEN};
use crate::error::{Error, Result};
use crate::prelude::*;

/// Bytes before the ciphertext.
pub const FRAME_HEADER_LEN: usize = 8;
/// Bytes a frame adds to its plaintext.
pub const FRAME_OVERHEAD: usize = FRAME_HEADER_LEN + TAG_LEN;
/// Largest plaintext per frame: the Noise message (ciphertext and tag) stays within 65535 bytes.
pub const MAX_PLAINTEXT_LEN: usize = 65535 - TAG_LEN;
/// Nonces per key epoch; epoch `e` uses the key REKEY applied `e` times to the split key.
pub const REKEY_INTERVAL: u64 = 1 << 16;
/// How many epochs a receiver derives forward for one frame before calling it `TooFarAhead`. Bounds the work
/// a forged frame can cause.
pub const MAX_EPOCH_SKIP: u64 = 16;

fn rekey(
    provider: &dyn CryptoProvider,
    algorithm: AeadAlgorithm,
    key: &dyn AeadKey,
) -> Result<Box<dyn AeadKey>> {
    let mut next = [0u8; 32];
    key.seal_in_place(u64::MAX, &[], &mut next)?;
    let next = Secret32::new(next);
    Ok(provider.aead_key(algorithm, &next))
}

/// The sending half of a channel.
pub struct Encryptor {
    provider: &'static dyn CryptoProvider,
    algorithm: AeadAlgorithm,
    key: Box<dyn AeadKey>,
    next_nonce: u64,
}

impl core::fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Encryptor")
            .field("next_nonce", &self.next_nonce)
            .finish_non_exhaustive()
    }
}

impl Encryptor {
    pub(crate) fn new(
        provider: &'static dyn CryptoProvider,
        algorithm: AeadAlgorithm,
        key: &Secret32,
    ) -> Self {
        Encryptor {
            provider,
            algorithm,
            key: provider.aead_key(algorithm, key),
            next_nonce: 0,
        }
    }

    /// The AEAD this direction seals with (the channel's suite).
    pub fn algorithm(&self) -> AeadAlgorithm {
        self.algorithm
    }

    /// The nonce the next frame will carry.
    pub fn next_nonce(&self) -> u64 {
        self.next_nonce
    }

    /// Encrypts in place. `frame` is laid out as `[8 bytes of space][plaintext][16 bytes of space]`; the header
    /// and tag are written into the spaces. Nothing is allocated. On failure the frame is left as the caller
    /// filled it (its own plaintext: nothing is encrypted, nothing of ours is added).
    pub fn encrypt_in_place(&mut self, frame: &mut [u8]) -> Result<()> {
        if frame.len() < FRAME_OVERHEAD {
            return Err(Error::BufferTooSmall {
                needed: FRAME_OVERHEAD,
            });
        }
        let plaintext_len = frame.len() - FRAME_OVERHEAD;
        if plaintext_len > MAX_PLAINTEXT_LEN {
            return Err(Error::MessageTooLarge {
                len: plaintext_len,
                max: MAX_PLAINTEXT_LEN,
            });
        }
        let nonce = self.next_nonce;
        // u64::MAX is reserved by Noise for REKEY.
        if nonce == u64::MAX {
            return Err(Error::NonceExhausted);
        }
        if nonce != 0 && nonce.is_multiple_of(REKEY_INTERVAL) {
            self.key = rekey(self.provider, self.algorithm, self.key.as_ref())?;
        }
        let (header, rest) = frame.split_at_mut(FRAME_HEADER_LEN);
        let (body, tag_space) = rest.split_at_mut(plaintext_len);
        let tag = self.key.seal_in_place(nonce, &[], body)?;
        header.copy_from_slice(&nonce.to_be_bytes());
        tag_space.copy_from_slice(&tag);
        self.next_nonce += 1;
        Ok(())
    }

    /// **Tests only**: moves `epochs` key epochs ahead (REKEY applied for each), as if that many epochs of
    /// frames had been sent and lost, to exercise a receiver's epoch-loss recovery. Behind `test-vectors`.
    #[cfg(feature = "test-vectors")]
    pub fn skip_epochs_for_test(&mut self, epochs: u64) -> Result<()> {
        // The epoch of the current key (at a boundary the next frame would rekey first).
        let n = self.next_nonce;
        let epoch = if n != 0 && n.is_multiple_of(REKEY_INTERVAL) {
            n / REKEY_INTERVAL - 1
        } else {
            n / REKEY_INTERVAL
        };
        for _ in 0..epochs {
            self.key = rekey(self.provider, self.algorithm, self.key.as_ref())?;
        }
        // Past the boundary nonce, where `encrypt_in_place` would rekey once more.
        self.next_nonce = (epoch + epochs) * REKEY_INTERVAL + 1;
        Ok(())
    }

    /// Encrypts `plaintext` into `out`, returning the frame length (`plaintext.len() + FRAME_OVERHEAD`).
    ///
    /// A plaintext above [`MAX_PLAINTEXT_LEN`] is `MessageTooLarge` whatever the size of `out` (so a reported
    /// `BufferTooSmall { needed }` is always a size that can succeed). On any failure `out` holds no
    /// plaintext: nothing was written, or what was written is wiped.
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut [u8]) -> Result<usize> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(Error::MessageTooLarge {
                len: plaintext.len(),
                max: MAX_PLAINTEXT_LEN,
            });
        }
        let len = plaintext.len() + FRAME_OVERHEAD;
        if out.len() < len {
            return Err(Error::BufferTooSmall { needed: len });
        }
        out[FRAME_HEADER_LEN..FRAME_HEADER_LEN + plaintext.len()].copy_from_slice(plaintext);
        if let Err(e) = self.encrypt_in_place(&mut out[..len]) {
            out[..len].fill(0);
            return Err(e);
        }
        Ok(len)
    }

    /// Convenience: encrypts into a new vector.
    pub fn encrypt_to_vec(&mut self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = vec![0u8; plaintext.len() + FRAME_OVERHEAD];
        self.encrypt(plaintext, &mut out)?;
        Ok(out)
    }
}

/// The receiving half of a channel.
pub struct Decryptor {
    provider: &'static dyn CryptoProvider,
    algorithm: AeadAlgorithm,
    epoch: u64,
    current: Box<dyn AeadKey>,
    /// The key of `epoch - 1`, kept for frames reordered across an epoch boundary.
    previous: Option<Box<dyn AeadKey>>,
    window: ReplayWindow,
}

impl core::fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Decryptor")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl Decryptor {
    pub(crate) fn new(
        provider: &'static dyn CryptoProvider,
        algorithm: AeadAlgorithm,
        key: &Secret32,
    ) -> Self {
        Decryptor {
            provider,
            algorithm,
            epoch: 0,
            current: provider.aead_key(algorithm, key),
            previous: None,
            window: ReplayWindow::default(),
        }
    }

    /// Authenticates and decrypts a frame in place, returning the plaintext (a sub-slice of `frame`).
    /// State changes (replay window, key epoch) only after the frame authenticated, so a forged or damaged
    /// frame leaves the channel exactly as it was. On failure the frame's body is wiped.
    pub fn decrypt_in_place<'a>(&mut self, frame: &'a mut [u8]) -> Result<&'a mut [u8]> {
        let (nonce, plaintext_len) = parse_frame(frame)?;
        let (header_and_body, tag) = frame.split_at_mut(FRAME_HEADER_LEN + plaintext_len);
        let tag: &[u8; TAG_LEN] = (&*tag).try_into().map_err(|_| Error::DecryptFailed)?;
        let body = &mut header_and_body[FRAME_HEADER_LEN..];
        if let Err(e) = self.open(nonce, body, tag) {
            // A failed open leaves the buffer unspecified (provider contract): never leave unauthenticated
            // plaintext in the caller's frame.
            body.fill(0);
            return Err(e);
        }
        Ok(&mut frame[FRAME_HEADER_LEN..FRAME_HEADER_LEN + plaintext_len])
    }

    /// Decrypts `frame` into `out` (which needs `frame.len() - FRAME_OVERHEAD` bytes), returning the plaintext
    /// length. `frame` is not modified; on failure `out` is wiped.
    pub fn decrypt(&mut self, frame: &[u8], out: &mut [u8]) -> Result<usize> {
        let (nonce, plaintext_len) = parse_frame(frame)?;
        if out.len() < plaintext_len {
            return Err(Error::BufferTooSmall {
                needed: plaintext_len,
            });
        }
        let body = &mut out[..plaintext_len];
        body.copy_from_slice(&frame[FRAME_HEADER_LEN..FRAME_HEADER_LEN + plaintext_len]);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&frame[FRAME_HEADER_LEN + plaintext_len..]);
        if let Err(e) = self.open(nonce, body, &tag) {
            body.fill(0);
            return Err(e);
        }
        Ok(plaintext_len)
    }

    /// Convenience: decrypts into a new vector.
    pub fn decrypt_to_vec(&mut self, frame: &[u8]) -> Result<Vec<u8>> {
        let mut out = vec![0u8; frame.len().saturating_sub(FRAME_OVERHEAD)];
        let len = self.decrypt(frame, &mut out)?;
        out.truncate(len);
        Ok(out)
    }

    /// The highest nonce accepted so far, if any.
    pub fn highest_nonce(&self) -> Option<u64> {
        self.window.highest()
    }

    fn open(&mut self, nonce: u64, body: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<()> {
        match self.window.check(nonce) {
            Verdict::Fresh => {}
            Verdict::Replay => return Err(Error::Replay),
            Verdict::Stale => return Err(Error::StaleMessage),
        }
        let epoch = nonce / REKEY_INTERVAL;
        if epoch == self.epoch {
            self.current.open_in_place(nonce, &[], body, tag)?;
        } else if epoch + 1 == self.epoch {
            let key = self.previous.as_ref().ok_or(Error::StaleMessage)?;
            key.open_in_place(nonce, &[], body, tag)?;
        } else if epoch < self.epoch {
            return Err(Error::StaleMessage);
        } else {
            if epoch - self.epoch > MAX_EPOCH_SKIP {
                return Err(Error::TooFarAhead);
            }
            // Derive tentatively; keep the keys only if the frame authenticates under them.
            let mut before = None;
            let mut key = rekey(self.provider, self.algorithm, self.current.as_ref())?;
            for _ in self.epoch + 1..epoch {
                let next = rekey(self.provider, self.algorithm, key.as_ref())?;
                before = Some(core::mem::replace(&mut key, next));
            }
            key.open_in_place(nonce, &[], body, tag)?;
            let old_current = core::mem::replace(&mut self.current, key);
            self.previous = Some(before.unwrap_or(old_current));
            self.epoch = epoch;
        }
        self.window.commit(nonce);
        Ok(())
    }
}

/// Splits a frame into its nonce and plaintext length, checking sizes.
fn parse_frame(frame: &[u8]) -> Result<(u64, usize)> {
    if frame.len() < FRAME_OVERHEAD {
        return Err(Error::DecryptFailed);
    }
    let plaintext_len = frame.len() - FRAME_OVERHEAD;
    if plaintext_len > MAX_PLAINTEXT_LEN {
        return Err(Error::MessageTooLarge {
            len: plaintext_len,
            max: MAX_PLAINTEXT_LEN,
        });
    }
    let mut nonce_bytes = [0u8; FRAME_HEADER_LEN];
    nonce_bytes.copy_from_slice(&frame[..FRAME_HEADER_LEN]);
    let nonce = u64::from_be_bytes(nonce_bytes);
    // u64::MAX is reserved by Noise for REKEY and never sent.
    if nonce == u64::MAX {
        return Err(Error::DecryptFailed);
    }
    Ok((nonce, plaintext_len))
}

#[cfg(all(test, feature = "ring"))]
mod tests {
    use super::*;
    use crate::crypto::default_provider;

    fn encryptor() -> Encryptor {
        Encryptor::new(
            default_provider(),
            AeadAlgorithm::ChaCha20Poly1305,
            &Secret32::new([3; 32]),
        )
    }

    /// A failure after the plaintext was copied into `out` (here: the nonces are used up) leaves no plaintext
    /// in `out`.
    #[test]
    fn a_failed_encrypt_leaves_no_plaintext_in_out() {
        let plaintext = [0xa5u8; 100];
        let mut enc = encryptor();
        enc.next_nonce = u64::MAX;
        let mut out = [0x11u8; 200];
        assert!(matches!(
            enc.encrypt(&plaintext, &mut out),
            Err(Error::NonceExhausted)
        ));
        assert!(!out.windows(4).any(|w| w == [0xa5; 4]), "plaintext in out");
        // A working encryptor, for contrast, does write (ciphertext) there.
        let mut enc = encryptor();
        assert_eq!(enc.encrypt(&plaintext, &mut out).unwrap(), 124);
    }

    /// One byte over the limit is `MessageTooLarge` whatever the buffer: never a `BufferTooSmall` whose
    /// needed size could not succeed, and nothing is written.
    #[test]
    fn an_oversized_plaintext_is_message_too_large_not_buffer_too_small() {
        let plaintext = vec![0xa5u8; MAX_PLAINTEXT_LEN + 1];
        assert_eq!(plaintext.len(), 65_520);
        let mut enc = encryptor();
        for out_len in [0, 100, MAX_PLAINTEXT_LEN + 1 + FRAME_OVERHEAD] {
            let mut out = vec![0u8; out_len];
            assert!(matches!(
                enc.encrypt(&plaintext, &mut out),
                Err(Error::MessageTooLarge {
                    len: 65_520,
                    max: MAX_PLAINTEXT_LEN
                })
            ));
            assert!(out.iter().all(|&b| b == 0));
        }
        // The largest plaintext fits in exactly the size a BufferTooSmall reports.
        let plaintext = vec![0xa5u8; MAX_PLAINTEXT_LEN];
        let needed = match enc.encrypt(&plaintext, &mut []) {
            Err(Error::BufferTooSmall { needed }) => needed,
            other => panic!("{other:?}"),
        };
        let mut out = vec![0u8; needed];
        assert_eq!(enc.encrypt(&plaintext, &mut out).unwrap(), needed);
    }
}
