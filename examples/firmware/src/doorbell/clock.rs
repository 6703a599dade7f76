//! The device's monotonic clock: SysTick interrupts once a millisecond (the core clock of QEMU's mps2-an386 is
//! 25 MHz), and the session's `Instant` is the count. A real device would use its own timer the same way.

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::{syst::SystClkSource, SYST};
use cortex_m_rt::exception;
use latchkey_core::route::Instant;

/// The core clock of mps2-an386 (SYSCLK, 25 MHz).
pub const CPU_HZ: u32 = 25_000_000;

static MILLIS: AtomicU32 = AtomicU32::new(0);

/// Starts the millisecond tick.
pub fn start(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(CPU_HZ / 1000 - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Milliseconds since [`start`] (wraps after 49 days, far beyond any run here).
pub fn now() -> Instant {
    Instant::from_millis(u64::from(MILLIS.load(Ordering::Relaxed)))
}

#[exception]
fn SysTick() {
    MILLIS.fetch_add(1, Ordering::Relaxed);
}
