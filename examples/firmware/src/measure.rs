//! The RAM budget, measured rather than estimated:
//! - **stack**: every word between the end of the statics and the stack pointer is painted at start; after the
//!   run, the lowest word no longer holding the paint is the stack's high-water mark;
//! - **heap**: a counting wrapper around the allocator records the peak of live bytes, and the heap arena is
//!   painted too, so the highest word the allocator ever touched gives the arena a device must reserve
//!   (live bytes plus the allocator's headers and fragmentation);
//! - **statics**: `.data` + `.bss` from the linker's symbols (the heap arena lives apart, in `.uninit`).

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use embedded_alloc::LlffHeap;

const PAINT: u32 = 0x5aa5_c33c;

/// The heap arena: large enough never to be the limit here; the figure that matters is how much of it the
/// run touched ([`CountingHeap::footprint`]).
pub const ARENA_SIZE: usize = 128 * 1024;

#[link_section = ".uninit.HEAP"]
static mut ARENA: MaybeUninit<[u32; ARENA_SIZE / 4]> = MaybeUninit::uninit();

extern "C" {
    static __sdata: u32;
    static __edata: u32;
    static __sbss: u32;
    static __ebss: u32;
    static __sheap: u32;
    static _stack_start: u32;
}

fn paint(from: usize, to: usize) {
    let mut p = from;
    while p + 4 <= to {
        // SAFETY: callers pass memory nothing else uses yet (free stack below the current frame, or the heap
        // arena before the allocator is initialised), 4-byte aligned.
        unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

fn painted(p: usize) -> bool {
    // SAFETY: p is a word of RAM inside the painted region.
    unsafe { core::ptr::read_volatile(p as *const u32) == PAINT }
}

/// Paints the free stack: from the end of the statics up to just below the caller's frame.
#[inline(never)]
pub fn paint_stack() {
    let bottom = addr_of!(__sheap) as usize;
    let sp = cortex_m::register::msp::read() as usize;
    paint(bottom, sp - 64);
}

/// Bytes of stack ever used, from the top of RAM down to the lowest word that lost its paint.
pub fn stack_high_water() -> usize {
    let bottom = addr_of!(__sheap) as usize;
    let top = addr_of!(_stack_start) as usize;
    let mut p = bottom;
    while p < top && painted(p) {
        p += 4;
    }
    top - p
}

/// `.data` + `.bss`, in bytes.
pub fn statics() -> usize {
    (addr_of!(__edata) as usize - addr_of!(__sdata) as usize)
        + (addr_of!(__ebss) as usize - addr_of!(__sbss) as usize)
}

/// The global allocator: a linked-list heap that counts what it hands out.
pub struct CountingHeap {
    heap: LlffHeap,
    live: AtomicUsize,
    peak: AtomicUsize,
}

impl CountingHeap {
    pub const fn new() -> Self {
        CountingHeap {
            heap: LlffHeap::empty(),
            live: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Paints the arena and hands it to the allocator. Call once, before the first allocation.
    pub fn init(&self) {
        let start = addr_of_mut!(ARENA) as usize;
        paint(start, start + ARENA_SIZE);
        // SAFETY: called once, with a static region used by nothing else.
        unsafe { self.heap.init(start, ARENA_SIZE) }
    }

    /// Starts a new peak measurement from what is live now.
    pub fn reset_peak(&self) {
        self.peak.store(self.live.load(Relaxed), Relaxed);
    }

    /// The most bytes live at once since the last reset.
    pub fn peak(&self) -> usize {
        self.peak.load(Relaxed)
    }

    pub fn live(&self) -> usize {
        self.live.load(Relaxed)
    }

    /// How far into the arena the allocator ever wrote (first fit allocates from the bottom): the heap a
    /// device must reserve for this workload, allocator headers and fragmentation included.
    pub fn footprint(&self) -> usize {
        let start = addr_of_mut!(ARENA) as usize;
        let mut p = start + ARENA_SIZE;
        while p > start && painted(p - 4) {
            p -= 4;
        }
        p - start
    }
}

unsafe impl GlobalAlloc for CountingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = self.heap.alloc(layout);
        if !ptr.is_null() {
            let live = self.live.fetch_add(layout.size(), Relaxed) + layout.size();
            self.peak.fetch_max(live, Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.heap.dealloc(ptr, layout);
        self.live.fetch_sub(layout.size(), Relaxed);
    }
}
