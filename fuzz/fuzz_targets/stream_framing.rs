//! Stream framing (`latchkey_runtime::framing`: 4-byte big-endian length + body), used by the TCP transport
//! and direct TCP (PROTOCOL.md §7). Input: `max: u16 (×4) ‖ stream bytes`, read frame by frame from an
//! in-memory stream.
//!
//! Checks: no panic and no allocation beyond `max` (a larger declared length is refused before the body is
//! read); frames come back in order, each within `max`; a clean end (`None`) only at a frame boundary or
//! inside a length prefix; writing the frames back gives the stream read so far.
#![no_main]

use latchkey_fuzz::Cursor;
use latchkey_runtime::framing::{read_frame, write_frame};
use latchkey_runtime::RuntimeError;
use libfuzzer_sys::fuzz_target;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an in-memory stream never waits"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let max = input.u16() as usize * 4;
    let stream = input.rest();
    let mut reader: &[u8] = stream;
    let mut rewritten: Vec<u8> = Vec::new();
    loop {
        let before = reader.len();
        match ready(read_frame(&mut reader, max)) {
            Ok(Some(frame)) => {
                assert!(frame.len() <= max);
                assert_eq!(before - reader.len(), 4 + frame.len());
                ready(write_frame(&mut rewritten, &frame, max)).expect("write back");
            }
            Ok(None) => {
                assert!(before < 4, "clean end with {before} bytes left");
                break;
            }
            Err(RuntimeError::FrameTooLarge { len, max: m }) => {
                assert!(len > m && m == max);
                break;
            }
            Err(_) => break,
        }
    }
    assert_eq!(&stream[..rewritten.len()], &rewritten[..]);
});
