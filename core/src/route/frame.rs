//! The plaintext of a channel's transport frames (docs/RUNTIME.md, "Frames").

use crate::error::Result;
use crate::wire::RoutedMessage;
use alloc::vec::Vec;

/// `0x01 ‖ seq (u64 BE) ‖ inner routed message`.
pub const DATA: u8 = 1;
/// `0x02 ‖ cumulative (u64 BE) ‖ selective (u64 BE) ‖ limit (u64 BE)`.
pub const ACK: u8 = 2;
/// Length of an ACK's plaintext before its extension (the reset token).
pub const ACK_LEN: usize = 25;
/// `0x03` alone.
pub const CLOSE: u8 = 3;
/// `0x04 ‖ generation (u64 BE)`: the responder asks the initiator for a re-handshake (its keys are
/// `generation`).
pub const REKEY: u8 = 4;
/// `0x05 ‖ seq (u64 BE) ‖ reason (u8)`: the receiver took DATA `seq` but could not deliver it (reason
/// [`NO_SUCH_DESTINATION`]); sent before the ACK that covers `seq`.
pub const UNDELIVERED: u8 = 5;
/// The only [`UNDELIVERED`] reason: the destination is not there or did not admit the message. The two are
/// not told apart, so a peer cannot probe for services it may not use.
pub const NO_SUCH_DESTINATION: u8 = 1;
/// `0x06 ‖ next (u64 BE)`: a window probe. The sender waits for credit or for a cumulative ACK (`next` is
/// the sequence number of its next new message); the receiver answers with an ACK.
pub const PROBE: u8 = 6;

/// Bytes before a DATA plaintext's inner message: the type and the sequence number (u64 BE).
pub const DATA_HEADER_LEN: usize = 1 + 8;

/// Bytes a DATA plaintext carrying `inner` takes: the type, the sequence number and the encoded message.
pub fn data_len(inner: &RoutedMessage) -> usize {
    DATA_HEADER_LEN + inner.encoded_len()
}

/// Appends a DATA plaintext (`0x01 ‖ seq ‖ inner encoded`) to `out`, encoding `inner` straight into it: its
/// payload is copied once, from where the sender keeps it into the buffer that is then sealed in place.
/// Fails, appending nothing, if a route of `inner` cannot be encoded.
pub fn encode_data_into(seq: u64, inner: &RoutedMessage, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    out.reserve(data_len(inner));
    out.push(DATA);
    out.extend_from_slice(&seq.to_be_bytes());
    inner.encode_into(out).inspect_err(|_| out.truncate(start))
}

/// One frame's plaintext, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelFrame<'a> {
    /// Application message number `seq`; `inner` is a routed message in the version-1 encoding.
    Data { seq: u64, inner: &'a [u8] },
    /// Every `seq < cumulative` was delivered; `selective` (unless `None`, i.e. `u64::MAX` on the wire) is
    /// one `seq` the receiver holds; `limit` is the credit: the receiver takes DATA with `seq < limit`.
    Ack {
        cumulative: u64,
        selective: Option<u64>,
        limit: u64,
    },
    /// The sender closed its end.
    Close,
    /// The sender (the channel's responder) asks for a re-handshake of the keys of `generation`.
    Rekey { generation: u64 },
    /// The sender received DATA `seq` but could not deliver it (`reason`: [`NO_SUCH_DESTINATION`]).
    Undelivered { seq: u64, reason: u8 },
    /// A window probe: answer with an ACK (`next`: the prober's next new sequence number).
    Probe { next: u64 },
}

impl<'a> ChannelFrame<'a> {
    /// Parses a plaintext; `None` for what the protocol ignores (an ACK shorter than 25 bytes, anything but
    /// CLOSE shorter than 9 bytes, an unknown type).
    pub fn parse(plaintext: &'a [u8]) -> Option<Self> {
        if plaintext.first() == Some(&CLOSE) {
            return Some(ChannelFrame::Close);
        }
        if plaintext.len() < 9 {
            return None;
        }
        let number = u64::from_be_bytes(plaintext[1..9].try_into().ok()?);
        match plaintext[0] {
            DATA => Some(ChannelFrame::Data {
                seq: number,
                inner: &plaintext[DATA_HEADER_LEN..],
            }),
            ACK if plaintext.len() >= ACK_LEN => {
                let selective = u64::from_be_bytes(plaintext[9..17].try_into().ok()?);
                let limit = u64::from_be_bytes(plaintext[17..25].try_into().ok()?);
                Some(ChannelFrame::Ack {
                    cumulative: number,
                    selective: (selective != u64::MAX).then_some(selective),
                    limit,
                })
            }
            PROBE => Some(ChannelFrame::Probe { next: number }),
            REKEY => Some(ChannelFrame::Rekey { generation: number }),
            UNDELIVERED if plaintext.len() >= 10 => Some(ChannelFrame::Undelivered {
                seq: number,
                reason: plaintext[9],
            }),
            _ => None,
        }
    }

    /// Appends the plaintext to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match *self {
            ChannelFrame::Data { seq, inner } => {
                out.push(DATA);
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(inner);
            }
            ChannelFrame::Ack {
                cumulative,
                selective,
                limit,
            } => {
                out.push(ACK);
                out.extend_from_slice(&cumulative.to_be_bytes());
                out.extend_from_slice(&selective.unwrap_or(u64::MAX).to_be_bytes());
                out.extend_from_slice(&limit.to_be_bytes());
            }
            ChannelFrame::Close => out.push(CLOSE),
            ChannelFrame::Rekey { generation } => {
                out.push(REKEY);
                out.extend_from_slice(&generation.to_be_bytes());
            }
            ChannelFrame::Undelivered { seq, reason } => {
                out.push(UNDELIVERED);
                out.extend_from_slice(&seq.to_be_bytes());
                out.push(reason);
            }
            ChannelFrame::Probe { next } => {
                out.push(PROBE);
                out.extend_from_slice(&next.to_be_bytes());
            }
        }
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v
    }
}

/// A re-handshake message's payload on the route: `0x07 ‖ generation (u64 BE) ‖ step ‖ Noise message`.
/// `generation` numbers the keys the re-handshake creates (the first handshake's are 0); `step` is the
/// Noise XX message number (1, 2 or 3).
pub fn rehandshake_payload(generation: u64, step: u8, noise: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(10 + noise.len());
    v.push(super::KIND_REHANDSHAKE);
    v.extend_from_slice(&generation.to_be_bytes());
    v.push(step);
    v.extend_from_slice(noise);
    v
}

/// Parses [`rehandshake_payload`]: `(generation, step, noise)`; `None` for another kind, a step other than
/// 1 to 3, or a payload without a Noise message.
pub fn parse_rehandshake(payload: &[u8]) -> Option<(u64, u8, &[u8])> {
    if payload.first() != Some(&super::KIND_REHANDSHAKE) || payload.len() < 11 {
        return None;
    }
    let generation = u64::from_be_bytes(payload[1..9].try_into().ok()?);
    let step = payload[9];
    (1..=3)
        .contains(&step)
        .then_some((generation, step, &payload[10..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_and_ignored_plaintexts() {
        let ack = ChannelFrame::Ack {
            cumulative: 3,
            selective: None,
            limit: 0x0102,
        };
        let bytes = ack.to_vec();
        assert_eq!(bytes.len(), ACK_LEN);
        assert_eq!(&bytes[..9], &[2, 0, 0, 0, 0, 0, 0, 0, 3]);
        assert_eq!(&bytes[9..17], &[0xff; 8]);
        assert_eq!(&bytes[17..], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(ChannelFrame::parse(&bytes), Some(ack));
        assert_eq!(ChannelFrame::parse(&bytes[..24]), None);
        let probe = ChannelFrame::Probe { next: 9 };
        assert_eq!(probe.to_vec(), [6, 0, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(ChannelFrame::parse(&probe.to_vec()), Some(probe));
        assert_eq!(ChannelFrame::parse(&[3]), Some(ChannelFrame::Close));
        assert_eq!(ChannelFrame::parse(&[3, 9, 9]), Some(ChannelFrame::Close));
        assert_eq!(ChannelFrame::parse(&[1, 0, 0]), None);
        assert_eq!(ChannelFrame::parse(&[9; 20]), None);
        let data = ChannelFrame::Data {
            seq: 7,
            inner: b"xy",
        };
        assert_eq!(ChannelFrame::parse(&data.to_vec()), Some(data));
        let rekey = ChannelFrame::Rekey { generation: 2 };
        assert_eq!(rekey.to_vec(), [4, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(ChannelFrame::parse(&rekey.to_vec()), Some(rekey));
        assert_eq!(ChannelFrame::parse(&[4, 0, 0]), None);
        let p = rehandshake_payload(1, 3, b"noise");
        assert_eq!(&p[..10], &[7, 0, 0, 0, 0, 0, 0, 0, 1, 3]);
        assert_eq!(parse_rehandshake(&p), Some((1, 3, &b"noise"[..])));
        assert_eq!(parse_rehandshake(&rehandshake_payload(1, 4, b"x")), None);
        assert_eq!(parse_rehandshake(&p[..10]), None);
    }

    #[test]
    fn data_encoded_from_the_kept_message_is_the_documented_layout() {
        use crate::wire::Route;
        let m = RoutedMessage::new(
            Route::from(["echo", "x"]),
            Route::from(["app"]),
            (0..=255u8).cycle().take(5000).collect(),
        );
        let inner = m.encode().unwrap();
        let mut out = alloc::vec![0xAA];
        encode_data_into(0x0102, &m, &mut out).unwrap();
        assert_eq!(out[0], 0xAA, "appended after what the buffer held");
        let expected = ChannelFrame::Data {
            seq: 0x0102,
            inner: &inner,
        };
        assert_eq!(out[1..], expected.to_vec()[..]);
        assert_eq!(out.len() - 1, data_len(&m));
        // A route that cannot be encoded appends nothing.
        let long = Route::from_addresses((0..33).map(|_| crate::wire::Address::from("a")));
        let bad = RoutedMessage::new(long, Route::new(), alloc::vec![1, 2, 3]);
        assert!(encode_data_into(1, &bad, &mut out).is_err());
        assert_eq!(out.len() - 1, data_len(&m));
    }
}
