//! Length-prefixed framing on byte streams: each frame is a 4-byte big-endian length and that many bytes.
//! The same framing serves the routed TCP transport and the direct-TCP channel (compatible with
//! `facade/examples/direct_peer.rs`).

use crate::error::{Result, RuntimeError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

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
