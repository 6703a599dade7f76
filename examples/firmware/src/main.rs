//! Latchkey on a Cortex-M4 with no OS: `latchkey-core` (no_std, RustCrypto provider) reproduces the shared
//! vectors (`tests/vectors/*.json`) byte for byte — identities with rotation, and each handshake with the device
//! as initiator and as responder, then transport frames both ways — reports over semihosting, prints the
//! measured RAM budget, and exits 0 only if every vector matched. Run by `make test-firmware` under
//! `qemu-system-arm -machine mps2-an386`.

#![no_std]
#![no_main]

extern crate alloc;

mod measure;
mod rng;
mod selftest;
mod vectors;

use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hprintln};
use latchkey_core::channel::{CipherSuite, Role};
use latchkey_core::crypto::{CryptoProvider, RustCryptoProvider};
use measure::CountingHeap;

#[global_allocator]
static HEAP: CountingHeap = CountingHeap::new();

/// TEST ONLY randomness (no TRNG in the emulator): see `rng.rs`.
static RANDOM: rng::TestOnlyFixedSeedRandom = rng::TestOnlyFixedSeedRandom::new();
static PROVIDER: RustCryptoProvider = RustCryptoProvider::new(&RANDOM);

/// The budget this program is held to (issue 15): flash is checked by `make test-firmware` with
/// `arm-none-eabi-size`, RAM here.
const RAM_GOAL: usize = 32 * 1024;

#[entry]
fn main() -> ! {
    HEAP.init();
    let provider: &'static dyn CryptoProvider = &PROVIDER;
    hprintln!(
        "latchkey-core {} on Cortex-M4, no_std, provider {}",
        latchkey_core::VERSION,
        provider.name()
    );

    let (mut passed, mut failed) = (0u32, 0u32);
    let (mut heap_peak, mut stack_peak) = (0, 0);
    let mut report = |what: &str, (outcome, heap, stack): (selftest::Outcome, usize, usize)| {
        heap_peak = heap_peak.max(heap);
        stack_peak = stack_peak.max(stack);
        match outcome {
            Ok(()) => {
                passed += 1;
                hprintln!("ok   {} (stack {} B, heap peak {} B)", what, stack, heap);
            }
            Err(why) => {
                failed += 1;
                hprintln!("FAIL {}: {}", what, why);
            }
        }
    };

    for v in vectors::IDENTITY_VECTORS {
        let what = alloc::format!("identity \"{}\" ({} rotations)", v.name, v.rotations.len());
        report(&what, measured(|| selftest::identity(provider, v)));
    }
    for v in vectors::HANDSHAKE_VECTORS {
        for role in [Role::Initiator, Role::Responder] {
            let suite = match v.suite {
                CipherSuite::ChaChaPoly => "ChaChaPoly",
                CipherSuite::AesGcm => "AESGCM",
            };
            let what = alloc::format!(
                "\"{}\" ({suite}) as {role:?}: 3 messages, hash, peer, {} frames, tampered frame refused",
                v.name,
                v.transport.len()
            );
            report(&what, measured(|| selftest::handshake(provider, v, role)));
        }
    }

    hprintln!(
        "test vectors embedded: {} B of flash (a device carries none of it)",
        vectors::VECTOR_BYTES
    );
    let stack = stack_peak;
    let heap_footprint = HEAP.footprint();
    let statics = measure::statics();
    let ram = stack + heap_footprint + statics;
    hprintln!(
        "heap live at end: {} B (everything freed: {})",
        HEAP.live(),
        HEAP.live() == 0
    );
    hprintln!("budget: stack high-water {} B", stack);
    hprintln!(
        "budget: heap peak {} B live, {} B of arena touched (incl. allocator overhead)",
        heap_peak,
        heap_footprint
    );
    hprintln!("budget: statics (.data + .bss) {} B", statics);
    hprintln!(
        "budget: peak RAM {} B = stack + heap arena touched + statics (goal <= {} B): {}",
        ram,
        RAM_GOAL,
        if ram <= RAM_GOAL { "within" } else { "OVER" }
    );
    hprintln!("result: {} passed, {} failed", passed, failed);
    debug::exit(if failed == 0 && passed > 0 {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}

/// Runs one check with the stack freshly painted and the heap's peak reset: its outcome, peak live heap bytes
/// and stack high-water mark (main's own frame included; the printing around it is not).
fn measured(check: impl FnOnce() -> selftest::Outcome) -> (selftest::Outcome, usize, usize) {
    HEAP.reset_peak();
    measure::paint_stack();
    let outcome = check();
    (outcome, HEAP.peak(), measure::stack_high_water())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    hprintln!("hard fault: {:?}", frame);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
