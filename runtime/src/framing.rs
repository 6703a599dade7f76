//! Length-prefixed framing on byte streams: each frame is a 4-byte big-endian length and that many bytes.
//! The same framing serves the routed TCP transport and the direct-TCP channel (compatible with
//! `facade/examples/direct_peer.rs`).

use crate::error::{Result, RuntimeError};
use crate::message::{malformed, Message, MAX_ADDRESS_LEN, MAX_ROUTE_LEN, MESSAGE_VERSION};
use latchkey_core::wire::RoutedMessage;
use std::io::IoSlice;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;

/// Reads one frame; `Ok(None)` on a clean end of stream before a frame starts. A declared length above
/// `max` is refused before any allocation.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(RuntimeError::FrameTooLarge { len, max });
    }
    let mut frame = vec![0u8; len];
    reader.read_exact(&mut frame).await?;
    Ok(Some(frame))
}

/// Writes one frame (length prefix and body in one buffer, so a frame is one write).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &[u8],
    max: usize,
) -> Result<()> {
    if frame.len() > max {
        return Err(RuntimeError::FrameTooLarge {
            len: frame.len(),
            max,
        });
    }
    let mut buf = Vec::with_capacity(4 + frame.len());
    buf.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    buf.extend_from_slice(frame);
    writer.write_all(&buf).await?;
    Ok(())
}

/// The length prefix, version and routes of `message` as framed on a byte stream: `len ‖ version ‖ onward ‖
/// return`, where `len` counts the payload that follows too. Fails on a route that cannot be encoded.
pub(crate) fn message_head(message: &Message) -> Result<Vec<u8>> {
    // Room for a small payload too: `write_message` copies it behind the head without growing the vector.
    let small = if message.payload.len() < COPY_BELOW {
        message.payload.len()
    } else {
        0
    };
    let routes = message.onward.encoded_len() + message.ret.encoded_len();
    let mut head = Vec::with_capacity(5 + routes + small);
    head.extend_from_slice(&[0u8; 4]);
    head.push(MESSAGE_VERSION);
    message.onward.encode_into(&mut head).map_err(malformed)?;
    message.ret.encode_into(&mut head).map_err(malformed)?;
    let len = head.len() - 4 + message.payload.len();
    let len = u32::try_from(len).map_err(|_| RuntimeError::FrameTooLarge {
        len,
        max: u32::MAX as usize,
    })?;
    head[..4].copy_from_slice(&len.to_be_bytes());
    Ok(head)
}

/// Payloads up to this size are copied behind their head and written in one buffer; larger ones are written
/// from where they are, beside the head (one vectored write, no copy).
const COPY_BELOW: usize = 2048;

/// Writes one framed message: `head` (from [`message_head`]) and then `payload`, without copying the payload
/// when it is large.
pub(crate) async fn write_message<W: AsyncWrite + Unpin>(
    writer: &mut W,
    mut head: Vec<u8>,
    payload: &[u8],
) -> Result<()> {
    if payload.len() < COPY_BELOW {
        head.extend_from_slice(payload);
        writer.write_all(&head).await?;
        return Ok(());
    }
    let mut slices = [IoSlice::new(&head), IoSlice::new(payload)];
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = writer.write_vectored(rest).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// Bytes a [`MessageReader`] reads from the socket at a time.
const READ_BUFFER: usize = 64 * 1024;

/// The longest possible `version ‖ onward ‖ return`.
const MAX_HEAD: usize = 1 + 2 * (1 + MAX_ROUTE_LEN * (1 + MAX_ADDRESS_LEN));

/// Reads framed routed messages from a TCP connection through one buffer: several small frames come in with
/// one read, and each payload is copied once from that buffer into a vector of its exact size (a payload
/// longer than what is buffered is read straight into its vector), so no frame is zeroed and no frame is
/// copied again to split off its routes. The buffer exists only while the socket has data: when nothing is
/// buffered and the socket has nothing to read, it is released before waiting, so an idle connection holds
/// none.
pub(crate) struct MessageReader {
    inner: OwnedReadHalf,
    /// Bytes read and not yet taken are `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
}

impl MessageReader {
    pub(crate) fn new(inner: OwnedReadHalf) -> Self {
        MessageReader {
            inner,
            buf: Vec::new(),
            start: 0,
        }
    }

    fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Reads until at least `need` bytes (at most the buffer's size) are buffered; false if the stream ended
    /// first.
    async fn fill(&mut self, need: usize) -> Result<bool> {
        while self.buffered() < need {
            if self.buf.capacity() - self.start < need {
                // Move what is buffered to the front (it is shorter than `need`).
                self.buf.drain(..self.start);
                self.start = 0;
            }
            if self.buf.capacity() == 0 {
                self.buf.reserve_exact(READ_BUFFER);
            }
            match self.inner.try_read_buf(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if self.buffered() == 0 {
                        // Nothing to keep: an idle connection waits without a buffer.
                        self.buf = Vec::new();
                        self.start = 0;
                    }
                    self.inner.readable().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    /// Reads one message; `Ok(None)` on a clean end of stream before a frame starts. A declared length above
    /// `max` is refused before any allocation; a frame that does not decode is `Malformed`. Not cancel-safe:
    /// a connection whose read is abandoned midway must be dropped.
    pub(crate) async fn read_message(&mut self, max: usize) -> Result<Option<Message>> {
        if !self.fill(4).await? {
            return Ok(None);
        }
        let mut prefix = [0u8; 4];
        prefix.copy_from_slice(&self.buf[self.start..self.start + 4]);
        let len = u32::from_be_bytes(prefix) as usize;
        if len > max {
            return Err(RuntimeError::FrameTooLarge { len, max });
        }
        let truncated = || std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        // Buffer enough of the frame to hold its routes: usually a few dozen bytes, at most MAX_HEAD.
        let most = len.min(MAX_HEAD);
        let mut want = most.min(256);
        let (onward, ret, head_len) = loop {
            if !self.fill(4 + want).await? {
                return Err(truncated().into());
            }
            let body = &self.buf[self.start + 4..];
            let body = &body[..body.len().min(len)];
            match RoutedMessage::decode_header(body) {
                Ok((onward, ret, rest)) => break (onward, ret, body.len() - rest.len()),
                // Routes cut by the end of what is buffered: read more, up to the longest possible head.
                Err(_) if body.len() < most => want = (want * 4).min(most),
                Err(e) => return Err(malformed(e)),
            }
        };
        self.start += 4 + head_len;
        let payload_len = len - head_len;
        let mut payload = Vec::with_capacity(payload_len);
        let here = self.buffered().min(payload_len);
        payload.extend_from_slice(&self.buf[self.start..self.start + here]);
        self.start += here;
        if self.buffered() == 0 {
            self.buf.clear();
            self.start = 0;
        }
        while payload.len() < payload_len {
            let left = (payload_len - payload.len()) as u64;
            // Into the vector's spare capacity, which is never zeroed.
            let n = (&mut self.inner).take(left).read_buf(&mut payload).await?;
            if n == 0 {
                return Err(truncated().into());
            }
        }
        Ok(Some(Message::new(onward, ret, payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Address, Route};
    use std::time::Duration;

    fn framed(m: &Message) -> Vec<u8> {
        let mut bytes = message_head(m).unwrap();
        bytes.extend_from_slice(&m.payload);
        bytes
    }

    /// A reader over a loopback TCP connection whose other end writes `data` in writes of `step` bytes
    /// (yielding between them, so frames arrive cut everywhere) and then closes.
    async fn reader_of(data: Vec<u8>, step: usize) -> MessageReader {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            for piece in data.chunks(step) {
                // The reader may have refused the frame and gone.
                if stream.write_all(piece).await.is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
            let _ = stream.shutdown().await;
        });
        let (stream, _) = listener.accept().await.unwrap();
        MessageReader::new(stream.into_split().0)
    }

    fn sample() -> Vec<Message> {
        let long_route = Route::from_addresses(
            (0..MAX_ROUTE_LEN).map(|i| Address::new(format!("{i:0>255}")).unwrap()),
        );
        vec![
            Message::new(Route::from(["a"]), Route::new(), vec![]),
            Message::new(
                Route::from(["sc-dec#1", "x"]),
                Route::from(["tcp-in#2"]),
                vec![7; 100],
            ),
            Message::new(Route::from(["b"]), Route::from(["c"]), vec![9; 200_000]),
            Message::new(long_route.clone(), long_route, vec![1; 3000]),
            Message::new(Route::from(["d"]), Route::new(), (0..=255).collect()),
        ]
    }

    #[tokio::test]
    async fn reads_back_what_was_written_whatever_the_read_sizes() {
        let messages = sample();
        let mut written = Vec::new();
        for m in &messages {
            write_message(&mut written, message_head(m).unwrap(), &m.payload)
                .await
                .unwrap();
            assert_eq!(&written[written.len() - framed(m).len()..], &framed(m)[..]);
        }
        for step in [7, 100, 4096, READ_BUFFER, usize::MAX] {
            let mut reader = reader_of(written.clone(), step).await;
            for m in &messages {
                let got = reader.read_message(1 << 20).await.unwrap().unwrap();
                assert_eq!(&got, m, "step {step}");
                assert_eq!(got.payload.capacity(), m.payload.len());
            }
            assert!(reader.read_message(1 << 20).await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn refuses_oversized_cut_and_malformed_frames() {
        let m = Message::new(Route::from(["a"]), Route::new(), vec![5; 50]);
        let bytes = framed(&m);
        let mut reader = reader_of(bytes.clone(), usize::MAX).await;
        assert!(matches!(
            reader.read_message(10).await,
            Err(RuntimeError::FrameTooLarge { len: 55, max: 10 })
        ));
        let mut reader = reader_of(bytes[..bytes.len() - 1].to_vec(), usize::MAX).await;
        assert!(matches!(
            reader.read_message(100).await,
            Err(RuntimeError::Io(_))
        ));
        // A route count above the limit, and a frame that ends inside its routes.
        for body in [&[1u8, 200][..], &[1, 1, 5, b'a']] {
            let mut bad = (body.len() as u32).to_be_bytes().to_vec();
            bad.extend_from_slice(body);
            let mut reader = reader_of(bad, usize::MAX).await;
            assert!(matches!(
                reader.read_message(100).await,
                Err(RuntimeError::Malformed(_))
            ));
        }
        let mut reader = reader_of(vec![0u8, 0], usize::MAX).await;
        assert!(reader.read_message(100).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_idle_connection_holds_no_read_buffer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut reader = MessageReader::new(server.into_split().0);
        let m = Message::new(Route::from(["a"]), Route::new(), vec![3; 10]);
        client.write_all(&framed(&m)).await.unwrap();
        assert_eq!(reader.read_message(100).await.unwrap().unwrap(), m);
        // Nothing more on the wire: the reader waits, and holds no buffer meanwhile.
        let waiting =
            tokio::time::timeout(Duration::from_millis(50), reader.read_message(100)).await;
        assert!(waiting.is_err(), "nothing was sent");
        assert_eq!(reader.buf.capacity(), 0);
        client.write_all(&framed(&m)).await.unwrap();
        assert_eq!(reader.read_message(100).await.unwrap().unwrap(), m);
    }
}
