//! Handshake handles: the sans-IO Noise XX exchange, driven with byte buffers.

use crate::buffer::input_trust;
#[cfg(feature = "test-vectors")]
use crate::buffer::secret32;
use crate::channel::LatchkeyChannel;
use crate::handle::OwnedHandle;
use crate::identity::{optional_time, LatchkeyIdentity};
use crate::status::{FfiError, FfiResult, LatchkeyStatus};
use crate::{
    LatchkeySeconds, LATCHKEY_ROLE_INITIATOR, LATCHKEY_ROLE_RESPONDER, LATCHKEY_SUITE_AESGCM,
    LATCHKEY_SUITE_CHACHAPOLY,
};
use latchkey_facade::{CipherSuite, HandshakeSession, Role};
use std::ffi::c_char;

/// A handshake in progress.
pub struct LatchkeyHandshake {
    session: HandshakeSession,
    /// A produced message the caller's buffer was too small for, handed out by the next `step`.
    pending: Option<Vec<u8>>,
}

impl OwnedHandle for LatchkeyHandshake {}

fn role(value: u32) -> FfiResult<Role> {
    match value {
        LATCHKEY_ROLE_INITIATOR => Ok(Role::Initiator),
        LATCHKEY_ROLE_RESPONDER => Ok(Role::Responder),
        other => Err(FfiError::InvalidArgument(format!("unknown role {other}"))),
    }
}

fn suite(value: u32) -> FfiResult<CipherSuite> {
    match value {
        LATCHKEY_SUITE_CHACHAPOLY => Ok(CipherSuite::ChaChaPoly),
        LATCHKEY_SUITE_AESGCM => Ok(CipherSuite::AesGcm),
        other => Err(FfiError::InvalidArgument(format!(
            "unknown cipher suite {other}"
        ))),
    }
}

/// Starts a Noise XX handshake for `identity`.
///
/// `role` is `LATCHKEY_ROLE_INITIATOR` or `LATCHKEY_ROLE_RESPONDER`; `suite` is `LATCHKEY_SUITE_CHACHAPOLY`
/// or `LATCHKEY_SUITE_AESGCM` (both sides must agree). `trusted` lists `trusted_count` identifiers
/// (NUL-terminated `lk...` strings) accepted as the peer. Trust is never implied: to accept any peer that
/// proves an identity, say so with the one-entry list `{LATCHKEY_TRUST_ANY}` and count 1 (then check
/// `latchkey_channel_peer_identifier` yourself); `"*"` beside other entries is not a wildcard but an invalid
/// identifier. `trusted == NULL` with count 0 fails with `LATCHKEY_ERR_INVALID_ARGUMENT` (the last error
/// says to list identifiers or pass `{LATCHKEY_TRUST_ANY}`); a non-NULL list with count 0 refuses every
/// peer. `now` is the time in Unix seconds used to check the peer's validity periods, 0 for the system
/// clock.
///
/// Pinned histories: the identity remembers, in memory, the history of every peer its handshakes accepted,
/// and a later handshake refuses a peer that presents an older history (`LATCHKEY_ERR_HISTORY_ROLLBACK`), a
/// diverging one (`LATCHKEY_ERR_HISTORY_FORK`) or a rotation outside the key-lifetime rules
/// (`LATCHKEY_ERR_KEY_LIFETIME_EXCEEDED`).
///
/// Ownership: borrows `identity` and the strings (copied); on success `*out_handshake` receives a handshake
/// to free with `latchkey_handshake_free`. On failure `*out_handshake` is set to NULL.
/// Threading: any thread. The new handshake must be used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn latchkey_handshake_new(
    identity: *const LatchkeyIdentity,
    role: u32,
    suite: u32,
    trusted: *const *const c_char,
    trusted_count: usize,
    now: LatchkeySeconds,
    out_handshake: *mut *mut LatchkeyHandshake,
) -> LatchkeyStatus {
    ffi_boundary!({
        let slot = arg_out_handle!(out_handshake);
        let identity = arg_ref!(identity);
        let role = self::role(role)?;
        let suite = self::suite(suite)?;
        let trust = unsafe { input_trust(trusted, trusted_count, "trusted")? };
        let session =
            HandshakeSession::new(&identity.inner, role, suite, &trust, optional_time(now))?;
        *slot = LatchkeyHandshake {
            session,
            pending: None,
        }
        .into_handle();
        Ok(())
    })
}

/// Uses a fixed ephemeral secret (exactly 32 bytes) instead of a random one. ONLY for reproducing test
/// vectors: it destroys forward secrecy. Call before the first `latchkey_handshake_step`.
///
/// Ownership: borrows both arguments.
/// Threading: one thread at a time per handshake.
///
/// Only in a library built with the `test-vectors` feature (the C tests' library); not in
/// include/latchkey.h (tests/c/latchkey_testing.h declares it).
#[cfg(feature = "test-vectors")]
#[no_mangle]
pub unsafe extern "C" fn latchkey_handshake_set_ephemeral_for_test_vectors(
    handshake: *mut LatchkeyHandshake,
    ephemeral_secret: *const u8,
    ephemeral_secret_len: usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let handshake = arg_mut!(handshake);
        let secret = secret32(
            arg_bytes!(ephemeral_secret, ephemeral_secret_len),
            "ephemeral_secret",
        )?;
        handshake.session.set_ephemeral_for_test_vectors(secret)?;
        Ok(())
    })
}

/// Advances the handshake: feeds the peer's message (`input`, `input_len`; length 0 for none) and
/// writes the message to send next into `out`, setting `*out_len` to its length (0 when there is nothing
/// to send).
///
/// Initiator: step(NULL) -> m1, step(m2) -> m3. Responder: step(m1) -> m2, step(m3) -> nothing. The handshake
/// is done when `latchkey_handshake_is_finished` says so; then call `latchkey_handshake_into_channel`.
///
/// An `out_capacity` of `LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN` always suffices. If `out` is too small the call
/// returns `LATCHKEY_ERR_BUFFER_TOO_SMALL` with the needed size in `*out_len` and keeps the message: call
/// again with no input (length 0) and a large enough buffer to receive it (input given while such a message
/// waits is refused with `LATCHKEY_ERR_INVALID_STATE` and the message kept). Any other failure (a bad,
/// untrusted or refused peer message, a call out of turn) ends the handshake: its ephemeral key is wiped and
/// every later step fails with `LATCHKEY_ERR_INVALID_STATE`; free it.
///
/// Ownership: borrows every argument; writes at most `out_capacity` bytes to `out`.
/// Threading: one thread at a time per handshake.
#[no_mangle]
pub unsafe extern "C" fn latchkey_handshake_step(
    handshake: *mut LatchkeyHandshake,
    input: *const u8,
    input_len: usize,
    out: *mut u8,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let handshake = arg_mut!(handshake);
        let buffer = arg_out_buffer!(out, out_capacity, out_len);
        let message = match handshake.pending.take() {
            Some(pending) if input_len == 0 => Some(pending),
            Some(pending) => {
                handshake.pending = Some(pending);
                return Err(latchkey_facade::Error::new(
                    latchkey_facade::ErrorCode::InvalidState,
                    "a produced message is waiting: call step with no input to receive it",
                )
                .into());
            }
            None => {
                // No handshake message is empty, so length 0 can only mean "no input".
                let input = if input_len == 0 {
                    None
                } else {
                    Some(arg_bytes!(input, input_len))
                };
                handshake.session.step(input)?
            }
        };
        match message {
            None => Ok(()),
            Some(message) => match buffer.write(&message) {
                Ok(()) => Ok(()),
                Err(too_small) => {
                    handshake.pending = Some(message);
                    Err(too_small)
                }
            },
        }
    })
}

/// Writes whether the handshake is complete (both sides authenticated) to `*out_finished`.
///
/// Ownership: borrows `handshake`.
/// Threading: one thread at a time per handshake.
#[no_mangle]
pub unsafe extern "C" fn latchkey_handshake_is_finished(
    handshake: *const LatchkeyHandshake,
    out_finished: *mut bool,
) -> LatchkeyStatus {
    ffi_boundary!({
        let out = arg_out_value!(out_finished);
        *out = arg_ref!(handshake).session.is_finished();
        Ok(())
    })
}

/// Writes the Noise handshake hash so far (`LATCHKEY_HANDSHAKE_HASH_LEN` bytes); output rules as in
/// `latchkey_identity_export_history`.
///
/// Ownership: borrows `handshake`.
/// Threading: one thread at a time per handshake.
#[no_mangle]
pub unsafe extern "C" fn latchkey_handshake_hash(
    handshake: *const LatchkeyHandshake,
    out: *mut u8,
    out_capacity: usize,
    out_len: *mut usize,
) -> LatchkeyStatus {
    ffi_boundary!({
        let buffer = arg_out_buffer!(out, out_capacity, out_len);
        buffer.write(&arg_ref!(handshake).session.handshake_hash()?)
    })
}

/// Turns a finished handshake into a channel. Fails with `LATCHKEY_ERR_INVALID_STATE` if the handshake is not
/// finished (it stays usable) or was already turned into a channel.
///
/// Ownership: borrows `handshake`, which the caller still frees with `latchkey_handshake_free` (it is empty
/// afterwards). On success `*out_channel` receives a channel to free with `latchkey_channel_free`; on
/// failure it is set to NULL.
/// Threading: one thread at a time per handshake.
#[no_mangle]
pub unsafe extern "C" fn latchkey_handshake_into_channel(
    handshake: *mut LatchkeyHandshake,
    out_channel: *mut *mut LatchkeyChannel,
) -> LatchkeyStatus {
    ffi_boundary!({
        let slot = arg_out_handle!(out_channel);
        let handshake = arg_mut!(handshake);
        let channel = handshake.session.into_channel()?;
        *slot = LatchkeyChannel::from(channel).into_handle();
        Ok(())
    })
}

/// Frees a handshake handle, finished or not. NULL is a no-op.
///
/// Ownership: takes `handshake`; it must not be used again.
/// Threading: the thread that last used it, or any thread once it is no longer used.
#[no_mangle]
pub unsafe extern "C" fn latchkey_handshake_free(handshake: *mut LatchkeyHandshake) {
    ffi_infallible!((), { unsafe { LatchkeyHandshake::free_handle(handshake) } })
}
