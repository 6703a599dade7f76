//! The messages of a relay's store-and-forward mailboxes (docs/RUNTIME.md, "Relay mailboxes"): requests at
//! the deposit address (deposit, fetch) and at the owner address (open, collect, acknowledge, close,
//! publish), and the replies (a status word, a batch of mail, a published blob).
//!
//! A mailbox body and a published blob are opaque here (the relay cannot read them). Unknown tags, unknown
//! status words, bodies over [`MAX_MAIL_BODY`], blobs over [`MAX_PUBLISHED`], a collect of 0 messages, batch
//! ids not strictly ascending, and trailing bytes are [`Error::Decode`].

use super::{Decode, Encode, Reader, Writer};
use crate::error::{Error, Result};
use crate::identity::Identifier;
use crate::prelude::*;

/// Request tag (deposit address): `0x01 ‖ recipient (32) ‖ body`.
pub const TAG_DEPOSIT: u8 = 0x01;
/// Request tag (owner address): `0x02`, open the peer's mailbox.
pub const TAG_OPEN: u8 = 0x02;
/// Request tag (owner address): `0x03 ‖ max (u16, ≥ 1)`, collect.
pub const TAG_COLLECT: u8 = 0x03;
/// Request tag (owner address): `0x04 ‖ last id (u64)`, acknowledge.
pub const TAG_ACK: u8 = 0x04;
/// Request tag (owner address): `0x05`, close and erase.
pub const TAG_CLOSE: u8 = 0x05;
/// Reply tag: a batch of mail.
pub const TAG_BATCH: u8 = 0x06;
/// Request tag (owner address): `0x07 ‖ blob`, publish.
pub const TAG_PUBLISH: u8 = 0x07;
/// Request tag (deposit address): `0x08 ‖ recipient (32)`, fetch the published blob.
pub const TAG_FETCH: u8 = 0x08;
/// Reply tag: the published blob.
pub const TAG_PUBLISHED: u8 = 0x09;

/// Largest body or published blob a mailbox message can carry: what one message through a channel holds.
pub const MAX_MAIL_BODY: usize = crate::route::MAX_CHANNEL_PAYLOAD;
/// Largest published blob.
pub const MAX_PUBLISHED: usize = 32 * 1024;

/// A request to a relay's mailbox service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailboxRequest {
    /// Anyone: store `body` for `recipient` (whose mailbox must be open).
    Deposit {
        recipient: Identifier,
        body: Vec<u8>,
    },
    /// Owner: open the channel peer's mailbox.
    Open,
    /// Owner: up to `max` (≥ 1) waiting messages, oldest first.
    Collect { max: u16 },
    /// Owner: delete the messages up to and including `last`.
    Ack { last: u64 },
    /// Owner: close the mailbox and erase what it holds.
    Close,
    /// Owner: publish `blob` (≤ [`MAX_PUBLISHED`]) for anyone to fetch, replacing the last one.
    Publish { blob: Vec<u8> },
    /// Anyone: the blob `recipient` published.
    Fetch { recipient: Identifier },
}

impl MailboxRequest {
    /// Whether the request is for the owner address (else the deposit address).
    pub fn is_owner_request(&self) -> bool {
        !matches!(
            self,
            MailboxRequest::Deposit { .. } | MailboxRequest::Fetch { .. }
        )
    }
}

impl Encode for MailboxRequest {
    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            MailboxRequest::Deposit { recipient, body } => {
                debug_assert!(body.len() <= MAX_MAIL_BODY);
                out.put_u8(TAG_DEPOSIT);
                recipient.encode_into(out);
                out.extend_from_slice(body);
            }
            MailboxRequest::Open => out.put_u8(TAG_OPEN),
            MailboxRequest::Collect { max } => {
                out.put_u8(TAG_COLLECT);
                out.put_u16(*max);
            }
            MailboxRequest::Ack { last } => {
                out.put_u8(TAG_ACK);
                out.put_u64(*last);
            }
            MailboxRequest::Close => out.put_u8(TAG_CLOSE),
            MailboxRequest::Publish { blob } => {
                debug_assert!(blob.len() <= MAX_PUBLISHED);
                out.put_u8(TAG_PUBLISH);
                out.extend_from_slice(blob);
            }
            MailboxRequest::Fetch { recipient } => {
                out.put_u8(TAG_FETCH);
                recipient.encode_into(out);
            }
        }
    }
}

fn rest_at_most(reader: &mut Reader<'_>, max: usize, what: &'static str) -> Result<Vec<u8>> {
    if reader.remaining() > max {
        return Err(Error::Decode(what));
    }
    Ok(reader.take(reader.remaining())?.to_vec())
}

impl Decode for MailboxRequest {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(match reader.u8()? {
            TAG_DEPOSIT => MailboxRequest::Deposit {
                recipient: Identifier::decode_from(reader)?,
                body: rest_at_most(reader, MAX_MAIL_BODY, "mailbox body too large")?,
            },
            TAG_OPEN => MailboxRequest::Open,
            TAG_COLLECT => match reader.u16()? {
                0 => return Err(Error::Decode("a collect asks for at least one message")),
                max => MailboxRequest::Collect { max },
            },
            TAG_ACK => MailboxRequest::Ack {
                last: reader.u64()?,
            },
            TAG_CLOSE => MailboxRequest::Close,
            TAG_PUBLISH => MailboxRequest::Publish {
                blob: rest_at_most(reader, MAX_PUBLISHED, "published blob too large")?,
            },
            TAG_FETCH => MailboxRequest::Fetch {
                recipient: Identifier::decode_from(reader)?,
            },
            _ => return Err(Error::Decode("unknown mailbox request")),
        })
    }
}

/// The status words a mailbox answers deposits and owner operations with (ASCII, the whole reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MailboxStatus {
    /// `ok`: done (a deposit: committed to disk).
    Ok,
    /// `no-mailbox`: no open mailbox for this recipient.
    NoMailbox,
    /// `full`: the mailbox holds its maximum count or bytes.
    Full,
    /// `too-large`: the body exceeds the relay's maximum.
    TooLarge,
    /// `rate`: the source (or the relay) deposits faster than allowed.
    Rate,
    /// `bad`: the request does not parse.
    Bad,
    /// `denied`: an owner operation not from a secure channel, or the relay serves its maximum mailboxes.
    Denied,
    /// `error`: the relay could not store it; nothing was stored.
    Error,
}

impl MailboxStatus {
    const ALL: [MailboxStatus; 8] = [
        MailboxStatus::Ok,
        MailboxStatus::NoMailbox,
        MailboxStatus::Full,
        MailboxStatus::TooLarge,
        MailboxStatus::Rate,
        MailboxStatus::Bad,
        MailboxStatus::Denied,
        MailboxStatus::Error,
    ];

    /// The status word's bytes.
    pub fn word(self) -> &'static str {
        match self {
            MailboxStatus::Ok => "ok",
            MailboxStatus::NoMailbox => "no-mailbox",
            MailboxStatus::Full => "full",
            MailboxStatus::TooLarge => "too-large",
            MailboxStatus::Rate => "rate",
            MailboxStatus::Bad => "bad",
            MailboxStatus::Denied => "denied",
            MailboxStatus::Error => "error",
        }
    }
}

/// A reply of the mailbox service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailboxReply {
    /// A status word.
    Status(MailboxStatus),
    /// `0x06` then, per message, `id (u64) ‖ length (u32) ‖ body`, ids strictly ascending (oldest first).
    Batch(Vec<(u64, Vec<u8>)>),
    /// `0x09 ‖ blob`.
    Published(Vec<u8>),
}

impl Encode for MailboxReply {
    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            MailboxReply::Status(s) => out.extend_from_slice(s.word().as_bytes()),
            MailboxReply::Batch(mail) => {
                out.put_u8(TAG_BATCH);
                for (id, body) in mail {
                    debug_assert!(body.len() <= MAX_MAIL_BODY);
                    out.put_u64(*id);
                    out.put_u32(body.len() as u32);
                    out.extend_from_slice(body);
                }
            }
            MailboxReply::Published(blob) => {
                out.put_u8(TAG_PUBLISHED);
                out.extend_from_slice(blob);
            }
        }
    }
}

impl Decode for MailboxReply {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        let rest = reader.take(reader.remaining())?;
        let mut r = Reader::new(rest);
        Ok(match r.u8()? {
            TAG_BATCH => {
                let mut mail: Vec<(u64, Vec<u8>)> = Vec::new();
                while r.remaining() > 0 {
                    let id = r.u64()?;
                    if mail.last().is_some_and(|(last, _)| *last >= id) {
                        return Err(Error::Decode("mailbox batch ids not ascending"));
                    }
                    let len = r.u32()? as usize;
                    if len > MAX_MAIL_BODY {
                        return Err(Error::Decode("mailbox body too large"));
                    }
                    mail.push((id, r.take(len)?.to_vec()));
                }
                MailboxReply::Batch(mail)
            }
            TAG_PUBLISHED => MailboxReply::Published(rest_at_most(
                &mut r,
                MAX_PUBLISHED,
                "published blob too large",
            )?),
            _ => MailboxReply::Status(
                MailboxStatus::ALL
                    .into_iter()
                    .find(|s| s.word().as_bytes() == rest)
                    .ok_or(Error::Decode("unknown mailbox reply"))?,
            ),
        })
    }
}
