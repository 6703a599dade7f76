//! Channel handles: transport encryption into caller buffers.

use crate::handle::OwnedHandle;
use crate::status::LatchkeyStatus;
use latchkey_facade::Channel;
use std::ffi::c_char;

/// An established secure channel: encrypts frames for the peer and decrypts the peer's frames (with a
/// replay window, so frames may arrive reordered but never twice).
pub struct LatchkeyChannel {
    inner: Channel,
}

impl From<Channel> for LatchkeyChannel {
    fn from(inner: Channel) -> Self {
        LatchkeyChannel { inner }
    }
}

impl OwnedHandle for LatchkeyChannel {}

/// Encrypts `plaintext` (at most `LATCHKEY_MAX_PLAINTEXT_LEN` bytes; 0 is allowed) into a transport frame
/// of `plaintext_len + LATCHKEY_FRAME_OVERHEAD` bytes written to `out`, its length in `*out_len`.
///
/// If `out_capacity` is too small the call returns `LATCHKEY_ERR_BUFFER_TOO_SMALL` with the needed size in
/// `*out_len`, writes nothing and uses no nonce. On any other failure `out` is wiped.
///
/// Ownership: borrows every argument; `plaintext` and `out` must not overlap.
/// Threading: one thread at a time per channel.
#[no_mangle]
pub unsafe extern "C" fn latchkey_channel_encrypt(
    channel: *mut LatchkeyChannel,
    plaintext: *const u8,
    plaintext_len: usize,
    out: *mut u8,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let channel = arg_mut!(channel);
        let plaintext = arg_bytes!(plaintext, plaintext_len);
        let buffer = arg_out_buffer!(out, out_capacity, out_len);
        buffer.fill_with(|out| channel.inner.encrypt_into(plaintext, out))
    })
}

/// Authenticates and decrypts a transport frame from the peer into `out` (which needs
/// `frame_len - LATCHKEY_FRAME_OVERHEAD` bytes), the plaintext length in `*out_len`.
///
/// A tampered, replayed or too old frame fails (`LATCHKEY_ERR_DECRYPT_FAILED`, `LATCHKEY_ERR_REPLAY`,
/// `LATCHKEY_ERR_STALE_MESSAGE`, ...) and leaves the channel unchanged, so later frames still decrypt; `out`
/// is wiped. A too small `out` gives `LATCHKEY_ERR_BUFFER_TOO_SMALL` with the needed size in `*out_len`.
///
/// Ownership: borrows every argument; `frame` and `out` must not overlap.
/// Threading: one thread at a time per channel.
#[no_mangle]
pub unsafe extern "C" fn latchkey_channel_decrypt(
    channel: *mut LatchkeyChannel,
    frame: *const u8,
    frame_len: usize,
    out: *mut u8,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let channel = arg_mut!(channel);
        let frame = arg_bytes!(frame, frame_len);
        let buffer = arg_out_buffer!(out, out_capacity, out_len);
        buffer.fill_with(|out| channel.inner.decrypt_into(frame, out))
    })
}

/// Writes the authenticated peer's identifier as a NUL-terminated string; output rules as in
/// `latchkey_identity_identifier` (`LATCHKEY_IDENTIFIER_SIZE` bytes suffice).
///
/// Ownership: borrows `channel`.
/// Threading: one thread at a time per channel.
#[no_mangle]
pub unsafe extern "C" fn latchkey_channel_peer_identifier(
    channel: *const LatchkeyChannel,
    out: *mut c_char,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let out = out.cast::<u8>();
        let buffer = arg_out_buffer!(out, out_capacity, out_len);
        buffer.write_str(&arg_ref!(channel).inner.peer_identifier())
    })
}

/// Writes the change history the peer presented and proved (to store, and to check later updates with
/// `latchkey_verify_history_update`); output rules as in `latchkey_identity_export_history`. It was checked
/// as presented in the handshake (docs/PROTOCOL.md 3.4): its first self-signature was not verified (the
/// attestation proves the same), so if the peer itself sent a bad one, these bytes fail the full check of
/// `latchkey_history_identifier` / `latchkey_verify_history_update` with `InvalidHistory`.
///
/// Ownership: borrows `channel`.
/// Threading: one thread at a time per channel.
#[no_mangle]
pub unsafe extern "C" fn latchkey_channel_peer_history(
    channel: *const LatchkeyChannel,
    out: *mut u8,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let buffer = arg_out_buffer!(out, out_capacity, out_len);
        buffer.write(&arg_ref!(channel).inner.peer_history())
    })
}

/// Writes the channel's Noise handshake hash (`LATCHKEY_HANDSHAKE_HASH_LEN` bytes, identical on both sides,
/// unique to this channel); output rules as in `latchkey_identity_export_history`.
///
/// Ownership: borrows `channel`.
/// Threading: one thread at a time per channel.
#[no_mangle]
pub unsafe extern "C" fn latchkey_channel_handshake_hash(
    channel: *const LatchkeyChannel,
    out: *mut u8,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let buffer = arg_out_buffer!(out, out_capacity, out_len);
        buffer.write(&arg_ref!(channel).inner.handshake_hash())
    })
}

/// Frees a channel handle. NULL is a no-op.
///
/// Ownership: takes `channel`; it must not be used again.
/// Threading: the thread that last used it, or any thread once it is no longer used.
#[no_mangle]
pub unsafe extern "C" fn latchkey_channel_free(channel: *mut LatchkeyChannel) {
    ffi_infallible!((), { unsafe { LatchkeyChannel::free_handle(channel) } })
}
