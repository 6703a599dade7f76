//! The messages an enrollment authority and its clients exchange (docs/RUNTIME.md, "Authority, enrollment and
//! enforcement"): requests to the channel service `authority` (online enrollment, refresh, revocation
//! subscription), requests to the channel-less X3DH service `enroll` (bundle, one enrollment request), the
//! answers to both, and the envelope a device deposits in an authority's relay mailbox.
//!
//! Every message starts with a tag byte; an unknown tag, a short or long field, a reason that is not UTF-8
//! or longer than [`MAX_REASON_LEN`], and trailing bytes are [`Error::Decode`]. The structures inside (change
//! histories, credentials, revocation lists, bundles, enrollment requests and responses) are the core's own
//! (PROTOCOL.md sections 3 and 11–14) and are decoded, and verified where their decoders verify, here.

use super::{Decode, Encode, Reader, Writer};
use crate::credential::revocation::RevocationList;
use crate::credential::Credential;
use crate::enroll::{EnrollmentRequest, TOKEN_ID_LEN, TOKEN_SECRET_LEN};
use crate::error::{Error, Result};
use crate::identity::{ChangeHistory, Identifier};
use crate::prelude::*;
use zeroize::Zeroizing;

/// Request tag (service `authority`): online enrollment.
pub const TAG_ENROLL: u8 = 0x01;
/// Request tag (service `authority`): a fresh credential for a member.
pub const TAG_REFRESH: u8 = 0x02;
/// Request tag (service `authority`): subscribe to (or fetch) the revocation list.
pub const TAG_SUBSCRIBE: u8 = 0x03;
/// Request tag (service `enroll`): the signed prekey bundle.
pub const TAG_GET_BUNDLE: u8 = 0x01;
/// Request tag (service `enroll`): one X3DH enrollment request.
pub const TAG_X3DH_REQUEST: u8 = 0x02;
/// Answer tag: the request succeeded (credential, bundle or enrollment response, by request).
pub const TAG_ACCEPTED: u8 = 0x00;
/// Answer tag: a signed revocation list (answer to a subscription, and each push).
pub const TAG_REVOCATIONS: u8 = 0x10;
/// Answer tag: a refusal, `code ‖ reason`.
pub const TAG_REFUSED: u8 = 0xFF;
/// Longest reason in a refusal, in bytes.
pub const MAX_REASON_LEN: usize = 200;

/// Why an authority refused a request (the code byte of a refusal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RefusalCode {
    UnknownToken = 1,
    TokenExpired = 2,
    TokenUsedUp = 3,
    Replay = 4,
    AlreadyMember = 5,
    PrekeyUnavailable = 6,
    NotAMember = 7,
    BadRequest = 8,
    Internal = 9,
}

impl RefusalCode {
    /// The code for a byte (`None` for an unassigned one).
    pub fn from_u8(code: u8) -> Option<Self> {
        use RefusalCode::*;
        Some(match code {
            1 => UnknownToken,
            2 => TokenExpired,
            3 => TokenUsedUp,
            4 => Replay,
            5 => AlreadyMember,
            6 => PrekeyUnavailable,
            7 => NotAMember,
            8 => BadRequest,
            9 => Internal,
            _ => return None,
        })
    }
}

/// A refusal: its code and a reason for people (UTF-8, at most [`MAX_REASON_LEN`] bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: RefusalCode,
    reason: String,
}

impl Refusal {
    /// A refusal whose reason is cut to [`MAX_REASON_LEN`] bytes at a character boundary.
    pub fn new(code: RefusalCode, reason: &str) -> Self {
        let mut end = reason.len().min(MAX_REASON_LEN);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Refusal {
            code,
            reason: reason[..end].to_string(),
        }
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl Encode for Refusal {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(TAG_REFUSED);
        out.put_u8(self.code as u8);
        out.extend_from_slice(self.reason.as_bytes());
    }
}

/// Reads `code ‖ reason` (the tag already read): the reason is the rest of the message.
fn refusal_after_tag(reader: &mut Reader<'_>) -> Result<Refusal> {
    let code = RefusalCode::from_u8(reader.u8()?).ok_or(Error::Decode("unknown refusal code"))?;
    let rest = reader.take(reader.remaining())?;
    if rest.len() > MAX_REASON_LEN {
        return Err(Error::Decode("refusal reason too long"));
    }
    let reason = core::str::from_utf8(rest).map_err(|_| Error::Decode("reason is not UTF-8"))?;
    Ok(Refusal {
        code,
        reason: reason.to_string(),
    })
}

/// A request to the authority service (through a secure channel; the channel authenticates the sender).
/// Its `Debug` never shows the token secret.
pub enum AuthorityRequest {
    /// `0x01 ‖ token id (16) ‖ token secret (32) ‖ ChangeHistory`: online enrollment.
    Enroll {
        token_id: [u8; TOKEN_ID_LEN],
        secret: Zeroizing<[u8; TOKEN_SECRET_LEN]>,
        history: ChangeHistory,
    },
    /// `0x02 ‖ ChangeHistory`: a fresh credential for a member.
    Refresh { history: ChangeHistory },
    /// `0x03`: subscribe to the revocation list (repeat to fetch it again).
    Subscribe,
}

impl core::fmt::Debug for AuthorityRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AuthorityRequest::Enroll {
                token_id, history, ..
            } => f
                .debug_struct("Enroll")
                .field("token_id", token_id)
                .field("subject", &history.identifier())
                .finish_non_exhaustive(),
            AuthorityRequest::Refresh { history } => f
                .debug_struct("Refresh")
                .field("subject", &history.identifier())
                .finish(),
            AuthorityRequest::Subscribe => f.write_str("Subscribe"),
        }
    }
}

impl Encode for AuthorityRequest {
    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            AuthorityRequest::Enroll {
                token_id,
                secret,
                history,
            } => {
                out.put_u8(TAG_ENROLL);
                out.extend_from_slice(token_id);
                out.extend_from_slice(&secret[..]);
                history.encode_into(out);
            }
            AuthorityRequest::Refresh { history } => {
                out.put_u8(TAG_REFRESH);
                history.encode_into(out);
            }
            AuthorityRequest::Subscribe => out.put_u8(TAG_SUBSCRIBE),
        }
    }
}

impl Decode for AuthorityRequest {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(match reader.u8()? {
            TAG_ENROLL => AuthorityRequest::Enroll {
                token_id: reader.array()?,
                secret: Zeroizing::new(reader.array()?),
                history: ChangeHistory::decode_from(reader)?,
            },
            TAG_REFRESH => AuthorityRequest::Refresh {
                history: ChangeHistory::decode_from(reader)?,
            },
            TAG_SUBSCRIBE => AuthorityRequest::Subscribe,
            _ => return Err(Error::Decode("unknown authority request")),
        })
    }
}

/// A request to the channel-less X3DH enrollment service.
#[derive(Debug)]
pub enum EnrollServiceRequest {
    /// `0x01`: the authority's signed prekey bundle.
    GetBundle,
    /// `0x02 ‖ EnrollmentRequest`: the device's one message.
    Request(EnrollmentRequest),
}

impl Encode for EnrollServiceRequest {
    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            EnrollServiceRequest::GetBundle => out.put_u8(TAG_GET_BUNDLE),
            EnrollServiceRequest::Request(r) => {
                out.put_u8(TAG_X3DH_REQUEST);
                r.encode_into(out);
            }
        }
    }
}

impl Decode for EnrollServiceRequest {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(match reader.u8()? {
            TAG_GET_BUNDLE => EnrollServiceRequest::GetBundle,
            TAG_X3DH_REQUEST => {
                EnrollServiceRequest::Request(EnrollmentRequest::decode_from(reader)?)
            }
            _ => return Err(Error::Decode("unknown enrollment service request")),
        })
    }
}

/// An answer of either service. `T` is what an accepted request carries: a [`Credential`] (enroll,
/// refresh), a [`crate::enroll::PrekeyBundle`] (get bundle) or a [`crate::enroll::EnrollmentResponse`]
/// (an X3DH request, also in a device's mailbox).
#[derive(Debug)]
pub enum AuthorityAnswer<T> {
    /// `0x00 ‖ T`.
    Accepted(T),
    /// `0x10 ‖ RevocationList`.
    Revocations(RevocationList),
    /// `0xFF ‖ code (u8) ‖ reason (UTF-8, the rest, ≤ 200 bytes)`.
    Refused(Refusal),
}

impl<T: Encode> Encode for AuthorityAnswer<T> {
    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            AuthorityAnswer::Accepted(t) => {
                out.put_u8(TAG_ACCEPTED);
                t.encode_into(out);
            }
            AuthorityAnswer::Revocations(list) => {
                out.put_u8(TAG_REVOCATIONS);
                list.encode_into(out);
            }
            AuthorityAnswer::Refused(r) => r.encode_into(out),
        }
    }
}

impl<T: Decode> Decode for AuthorityAnswer<T> {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(match reader.u8()? {
            TAG_ACCEPTED => AuthorityAnswer::Accepted(T::decode_from(reader)?),
            TAG_REVOCATIONS => AuthorityAnswer::Revocations(RevocationList::decode_from(reader)?),
            TAG_REFUSED => AuthorityAnswer::Refused(refusal_after_tag(reader)?),
            _ => return Err(Error::Decode("unknown authority answer")),
        })
    }
}

/// The answers of the authority service: a credential, a revocation list, or a refusal.
pub type CredentialAnswer = AuthorityAnswer<Credential>;

/// What a device deposits in its authority's relay mailbox: `device identifier (32) ‖ EnrollmentRequest`,
/// so the authority knows whose mailbox the answer goes to (only that device can read the answer).
#[derive(Debug)]
pub struct EnrollmentEnvelope {
    pub device: Identifier,
    pub request: EnrollmentRequest,
}

impl Encode for EnrollmentEnvelope {
    fn encode_into(&self, out: &mut Vec<u8>) {
        self.device.encode_into(out);
        self.request.encode_into(out);
    }
}

impl Decode for EnrollmentEnvelope {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(EnrollmentEnvelope {
            device: Identifier::decode_from(reader)?,
            request: EnrollmentRequest::decode_from(reader)?,
        })
    }
}
