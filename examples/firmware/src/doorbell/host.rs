//! What the emulator's host tells the device over semihosting: its command line (`key=value` words: the
//! relay's and the phones' identifiers, the relay name, the test-only seed) and the wall-clock time at boot.
//! A real device would have these in its provisioning data and its RTC.

use alloc::string::String;
use alloc::vec::Vec;
use cortex_m_semihosting::{nr, syscall1};

/// The command line QEMU was given (`-semihosting-config ...,arg=WORD,arg=WORD`), as words. Not inlined: its
/// buffer is off the stack before the identity is made.
#[inline(never)]
pub fn args() -> Vec<String> {
    let mut buf = [0u8; 2048];
    let mut block = [buf.as_mut_ptr() as usize, buf.len()];
    // SAFETY: SYS_GET_CMDLINE writes at most `block[1]` bytes into `buf` and the length into `block[1]`.
    let status = unsafe { syscall1(nr::GET_CMDLINE, block.as_mut_ptr() as usize) };
    // SAFETY: the host may have written `block[1]`.
    let len = unsafe { core::ptr::read_volatile(&block[1]) };
    if status != 0 || len > buf.len() {
        return Vec::new();
    }
    String::from_utf8_lossy(&buf[..len])
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Seconds since the Unix epoch on the host (SYS_TIME): the device's wall clock for identity and attestation
/// validity (a real device: its RTC, or the time a gateway last told it).
pub fn unix_time() -> u64 {
    // SAFETY: SYS_TIME takes no argument block.
    unsafe { syscall1(nr::TIME, 0) as u64 }
}
