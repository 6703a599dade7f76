//! Shared pieces of the Latchkey fuzz targets: a byte cursor that turns fuzz input into a structured input
//! (and a writer that builds the same format for seeds), the deterministic fixtures of
//! `tests/vectors/handshake.json` and `identity.json`, and the seed inputs of every target
//! (`examples/seed_corpus.rs` writes them).
//!
//! Input formats are documented on each target. They are built from four pieces: `u8`, `u16`, `u64` (big-endian;
//! missing bytes read as zero, so every input is valid) and a *chunk* (`u16` length, then up to that many bytes).

pub mod drive;
pub mod ffi;
pub mod fixtures;
pub mod seeds;
pub mod trust;

/// Reads a fuzz input as a sequence of fields. Never fails: a short input reads as zeros and empty chunks.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }

    pub fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    pub fn u16(&mut self) -> u16 {
        let mut b = [0u8; 2];
        let got = self.bytes(2);
        b[..got.len()].copy_from_slice(got);
        u16::from_be_bytes(b)
    }

    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let got = self.bytes(8);
        b[..got.len()].copy_from_slice(got);
        u64::from_be_bytes(b)
    }

    /// A `u16`-length-prefixed chunk (shorter if the input ends first).
    pub fn chunk(&mut self) -> &'a [u8] {
        let n = self.u16() as usize;
        self.bytes(n)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }
}

/// Builds inputs in the [`Cursor`] format (for seeds).
#[derive(Debug, Clone, Default)]
pub struct InputBuilder(pub Vec<u8>);

impl InputBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    pub fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    pub fn chunk(self, b: &[u8]) -> Self {
        let len = u16::try_from(b.len()).expect("seed chunk fits a u16 length");
        self.u16(len).bytes(b)
    }
    pub fn build(self) -> Vec<u8> {
        self.0
    }
}

/// Fills a buffer with a pattern no decryption produces by accident, to see afterwards what a call wrote.
pub const CANARY: u8 = 0xA5;

/// Asserts that a failed call left `buf` either untouched (all [`CANARY`]) or wiped (all zero): no partial
/// plaintext, no stray bytes.
pub fn assert_untouched_or_wiped(buf: &[u8], what: &str) {
    let untouched = buf.iter().all(|&b| b == CANARY);
    let wiped = buf.iter().all(|&b| b == 0);
    assert!(
        untouched || wiped,
        "{what}: a failed call left bytes in the output buffer"
    );
}
