//! A framed UART: QEMU's mps2-an386 UART0 (an ARM CMSDK APB UART at 0x4000_4000, receive interrupt 0), which
//! `-chardev socket,...` connects to a socket on the host. The receive interrupt moves bytes into a ring
//! buffer; the main loop takes them out and cuts frames: a 4-byte big-endian length, then that many bytes (one
//! encoded routed message), the framing of the TCP transport. Transmission polls the one-byte buffer.
//!
//! The CMSDK UART has no FIFO: while the ring is full the interrupt is switched off and the byte stays in the
//! UART, which QEMU then stops feeding (the socket's own flow control holds the rest).

use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};
use cortex_m::peripheral::NVIC;

const BASE: usize = 0x4000_4000;
const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const INTSTATUS: usize = 0x0c;
const BAUDDIV: usize = 0x10;

const STATE_TXFULL: u32 = 1 << 0;
const STATE_RXFULL: u32 = 1 << 1;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;
const CTRL_RX_INTEN: u32 = 1 << 3;
const INT_RX: u32 = 1 << 1;

/// UART0's receive interrupt on mps2-an385/an386.
pub const RX_IRQ: u16 = 0;

/// Largest frame the device takes (a phone's handshake message 3 inside a relay-channel frame is under 1 KB).
pub const MAX_FRAME: usize = 8 * 1024;

#[derive(Clone, Copy)]
struct Irq(u16);

// SAFETY: 0 is an external interrupt line of the Cortex-M4 in mps2-an386.
unsafe impl cortex_m::interrupt::InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}

fn read(reg: usize) -> u32 {
    // SAFETY: a register of UART0.
    unsafe { core::ptr::read_volatile((BASE + reg) as *const u32) }
}

fn write(reg: usize, value: u32) {
    // SAFETY: a register of UART0.
    unsafe { core::ptr::write_volatile((BASE + reg) as *mut u32, value) }
}

/// The receive ring. QEMU's UART stops feeding while the ring is full (see above); a real UART without flow
/// control must hold what arrives during the longest stretch of work between two polls (a handshake's
/// X25519 and signature checks: a few tens of ms on a Cortex-M4, a few hundred bytes at 115200 baud).
const RING: usize = 1024;

/// Single producer (the interrupt), single consumer (the main loop).
struct Ring {
    buf: UnsafeCell<[u8; RING]>,
    head: AtomicUsize,
    tail: AtomicUsize,
}

// SAFETY: the producer writes only the slot at `head` before publishing it, the consumer reads only slots
// below `head` and publishes `tail` after; indices are atomics.
unsafe impl Sync for Ring {}

static RX: Ring = Ring {
    buf: UnsafeCell::new([0; RING]),
    head: AtomicUsize::new(0),
    tail: AtomicUsize::new(0),
};

impl Ring {
    fn is_full(&self) -> bool {
        self.head
            .load(Ordering::Acquire)
            .wrapping_sub(self.tail.load(Ordering::Acquire))
            >= RING
    }

    fn push(&self, b: u8) {
        let head = self.head.load(Ordering::Relaxed);
        // SAFETY: only the producer writes, and only a slot the consumer has released (not full).
        unsafe { (*self.buf.get())[head % RING] = b };
        self.head.store(head.wrapping_add(1), Ordering::Release);
    }

    fn pop(&self) -> Option<u8> {
        let tail = self.tail.load(Ordering::Relaxed);
        if tail == self.head.load(Ordering::Acquire) {
            return None;
        }
        // SAFETY: the slot was published by the producer and is not rewritten until `tail` moves past it.
        let b = unsafe { (*self.buf.get())[tail % RING] };
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        Some(b)
    }
}

/// 115200 baud (QEMU ignores the rate, but refuses to transmit with a divider below 16), 8N1, receive
/// interrupt on.
pub fn init() {
    write(BAUDDIV, super::clock::CPU_HZ / 115_200);
    write(CTRL, CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INTEN);
    // SAFETY: the handler (`on_interrupt`) is ready; nothing relies on the line being masked.
    unsafe { NVIC::unmask(Irq(RX_IRQ)) };
}

/// The receive interrupt: move every waiting byte into the ring.
pub fn on_interrupt() {
    // Acknowledge first: a byte that arrives after the last read below raises the interrupt again.
    write(INTSTATUS, INT_RX);
    while read(STATE) & STATE_RXFULL != 0 {
        if RX.is_full() {
            // Hold the byte in the UART; the main loop drains the ring and switches the interrupt back on.
            write(CTRL, read(CTRL) & !CTRL_RX_INTEN);
            break;
        }
        RX.push(read(DATA) as u8);
    }
}

/// Whether bytes are waiting to be taken.
pub fn has_input() -> bool {
    RX.head.load(Ordering::Acquire) != RX.tail.load(Ordering::Acquire)
}

/// Takes every byte received so far. Then, with interrupts off, moves a byte still waiting in the UART into
/// the ring and switches the receive interrupt (back) on: the interrupt is off after the ring filled up, and a
/// byte that arrived between the interrupt's last read and that switch raised no interrupt, so without this
/// poll the UART would hold it, and QEMU every byte after it, for good.
pub fn receive(mut each: impl FnMut(u8)) {
    // A few rounds at most, so that a flood of input cannot starve the timers.
    for _ in 0..4 {
        while let Some(b) = RX.pop() {
            each(b);
        }
        let more = cortex_m::interrupt::free(|_| {
            let mut more = false;
            while read(STATE) & STATE_RXFULL != 0 && !RX.is_full() {
                RX.push(read(DATA) as u8);
                more = true;
            }
            if !RX.is_full() {
                write(CTRL, read(CTRL) | CTRL_RX_INTEN);
            }
            more
        });
        if !more {
            return;
        }
    }
}

/// Sends bytes, waiting for the one-byte transmit buffer.
pub fn send(bytes: &[u8]) {
    for &b in bytes {
        while read(STATE) & STATE_TXFULL != 0 {}
        write(DATA, u32::from(b));
    }
}

/// Sends one frame: the 4-byte big-endian length, then the bytes.
pub fn send_frame(bytes: &[u8]) {
    send(&(bytes.len() as u32).to_be_bytes());
    send(bytes);
}

/// Cuts the byte stream into frames.
#[derive(Default)]
pub struct Deframer {
    header: [u8; 4],
    have: usize,
    body: Vec<u8>,
    /// Bytes still to skip of a frame above [`MAX_FRAME`].
    skip: usize,
    /// Frames skipped because they were too large.
    pub oversized: u32,
}

impl Deframer {
    /// Feeds one byte; returns a frame when it is complete.
    pub fn push(&mut self, b: u8) -> Option<Vec<u8>> {
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        if self.have < 4 {
            self.header[self.have] = b;
            self.have += 1;
            if self.have == 4 {
                let len = u32::from_be_bytes(self.header) as usize;
                if len > MAX_FRAME {
                    self.oversized += 1;
                    self.skip = len;
                    self.have = 0;
                } else if len == 0 {
                    self.have = 0;
                    return Some(Vec::new());
                } else {
                    self.body = Vec::with_capacity(len);
                }
            }
            return None;
        }
        self.body.push(b);
        let len = u32::from_be_bytes(self.header) as usize;
        if self.body.len() == len {
            self.have = 0;
            return Some(core::mem::take(&mut self.body));
        }
        None
    }
}
