//! The doorbell: Latchkey firmware on a Cortex-M4 that joins the routed network through a framed UART.
//!
//! Under `qemu-system-arm -machine mps2-an386`, UART0 is a socket on the host, where a gateway forwards the
//! frames to a `latchkey relay run` over TCP. The device opens a secure channel to the relay through the
//! gateway, registers its name through that channel, and answers phones whose channels reach it through the
//! relay's forwarder, inside the relay channel: their handshakes and frames are end-to-end between phone and
//! device, and the gateway and the relay see only ciphertext. It reports over semihosting.
//!
//! Command line (semihosting, `key=value`): `relay=ID` (the relay's identifier, required), `phone=ID`
//! (repeatable: the phones it answers), `name=NAME` (default `doorbell`), `seed=HEX` (**test only**: the
//! emulator has no TRNG, see `rng.rs`), `serve=N` (exit 0 after N echo replies are acknowledged), `deadline=S`
//! (exit 1 if not done after S seconds; default 300).

#![no_std]
#![no_main]

extern crate alloc;

mod clock;
mod device;
mod host;
#[allow(dead_code)]
#[path = "../measure.rs"]
mod measure;
#[path = "../rng.rs"]
mod rng;
mod uart;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::time::Duration;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hprintln};
use latchkey_core::crypto::{CryptoProvider, RustCryptoProvider};
use latchkey_core::identity::Identifier;
use latchkey_core::route::Instant;
use measure::CountingHeap;

#[global_allocator]
static HEAP: CountingHeap = CountingHeap::new();

/// TEST ONLY randomness (no TRNG in the emulator): see `rng.rs`.
static RANDOM: rng::TestOnlyFixedSeedRandom = rng::TestOnlyFixedSeedRandom::new();
static PROVIDER: RustCryptoProvider = RustCryptoProvider::new(&RANDOM);

#[entry]
fn main() -> ! {
    measure::paint_stack();
    HEAP.init();
    let peripherals = cortex_m::Peripherals::take().expect("taken once");
    // The setup (command line, identity) runs in its own frame, gone before the loop: the loop's deepest
    // path (a phone's handshake message inside a relay-channel frame) does not stack on top of it.
    let (mut device, serve, deadline_s) = setup();
    clock::start(peripherals.SYST);
    uart::init();
    // The UART is always there.
    if let Err(e) = device.connect(clock::now()) {
        hprintln!("cannot open the relay channel: {}", e);
        exit(false);
    }
    run(&mut device, serve, deadline_s)
}

/// Reads the command line and creates the device (exits on a bad command line or a failed identity).
#[inline(never)]
fn setup() -> (Box<device::Device>, u64, u64) {
    let provider: &'static dyn CryptoProvider = &PROVIDER;
    let mut relay = None;
    let mut phones = Vec::new();
    let mut name = alloc::string::String::from("doorbell");
    let mut serve = 0u64;
    let mut deadline_s = 300u64;
    for arg in host::args() {
        let Some((key, value)) = arg.split_once('=') else {
            continue;
        };
        match key {
            "relay" => relay = value.parse::<Identifier>().ok(),
            "phone" => match value.parse::<Identifier>() {
                Ok(id) => phones.push(id),
                Err(e) => hprintln!(
                    "bad phone identifier \"{}\": {}",
                    device::Printable(value.as_bytes()),
                    e
                ),
            },
            "name" => name = value.into(),
            "seed" => match device::parse_hex(value) {
                Some(seed) => RANDOM.set_seed(&seed),
                None => hprintln!("bad seed (hex expected)"),
            },
            "serve" => serve = value.parse().unwrap_or(0),
            "deadline" => deadline_s = value.parse().unwrap_or(deadline_s),
            _ => hprintln!("unknown argument \"{}\"", device::Printable(arg.as_bytes())),
        }
    }
    let Some(relay) = relay else {
        hprintln!("usage: relay=ID [phone=ID]... [name=NAME] [seed=HEX] [serve=N] [deadline=S]");
        exit(false);
    };
    let boot_unix = host::unix_time();
    hprintln!(
        "latchkey-core {} doorbell on Cortex-M4, no_std, provider {}",
        latchkey_core::VERSION,
        provider.name()
    );
    hprintln!(
        "TEST ONLY: keys and ephemerals come from a seeded generator (the emulator has no TRNG)"
    );
    let config = device::Config {
        relay,
        phones,
        name,
    };
    let device = match device::Device::new(provider, &RANDOM, boot_unix, config) {
        Ok(d) => Box::new(d),
        Err(e) => {
            hprintln!("cannot create the device identity: {}", e);
            exit(false);
        }
    };
    // The test reads this line to trust the device (relay registration, phones).
    hprintln!("device identifier {}", device.identifier());
    (device, serve, deadline_s)
}

/// The main loop: polls the device until it has served `serve` replies (then exits 0) or the deadline.
fn run(device: &mut device::Device, serve: u64, deadline_s: u64) -> ! {
    let deadline = Instant::from_millis(deadline_s * 1000);
    let mut done_at: Option<Instant> = None;
    loop {
        let now = clock::now();
        device.poll(now);
        if serve > 0 && device.counters().served >= serve && device.idle() {
            // Every reply was acknowledged; linger a moment so our last acknowledgements go out too.
            let at = *done_at.get_or_insert(now + Duration::from_millis(500));
            if now >= at {
                report(device, true);
            }
        } else {
            done_at = None;
        }
        if now >= deadline {
            hprintln!("deadline of {} s reached", deadline_s);
            report(device, false);
        }
        if !uart::has_input() && device.next_timer() > clock::now() {
            // Woken by the next byte from the UART or the next millisecond tick.
            cortex_m::asm::wfi();
        }
    }
}

#[inline(never)]
fn report(device: &device::Device, ok: bool) -> ! {
    let c = device.counters();
    let s = device.stats();
    hprintln!(
        "uart: {} frames ({} B) in, {} frames ({} B) out",
        s.frames_in,
        s.bytes_in,
        s.frames_out,
        s.bytes_out
    );
    hprintln!(
        "served {} echo replies on {} phone channel(s); registrations acknowledged: {}; re-handshakes: {}",
        c.served,
        s.phone_channels,
        s.registrations,
        s.rekeys
    );
    hprintln!(
        "refused frames: {} ({} did not decode, the rest failed authentication)",
        c.refused,
        c.undecodable
    );
    let stack = measure::stack_high_water();
    let heap = HEAP.footprint();
    let statics = measure::statics();
    hprintln!("budget: stack high-water {} B", stack);
    hprintln!(
        "budget: heap peak {} B live, {} B of arena touched (incl. allocator overhead)",
        HEAP.peak(),
        heap
    );
    hprintln!("budget: statics (.data + .bss) {} B", statics);
    hprintln!(
        "budget: peak RAM {} B = stack + heap arena touched + statics",
        stack + heap + statics
    );
    hprintln!("result: {}", if ok { "done" } else { "FAILED" });
    exit(ok)
}

fn exit(ok: bool) -> ! {
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == uart::RX_IRQ as i16 {
        uart::on_interrupt();
    }
}

/// Reports where it panicked, not the message: formatting the message would keep every panic site's
/// formatting code (and the `Debug` of the values it prints) in flash, about 8 KB here.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    match info.location() {
        Some(at) => hprintln!("panic at {}:{}", at.file(), at.line()),
        None => hprintln!("panic"),
    }
    exit(false)
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    hprintln!("hard fault: {:?}", frame);
    exit(false)
}
