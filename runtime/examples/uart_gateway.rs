//! A UART gateway for the doorbell firmware (issue 15, part B; docs/FIRMWARE.md, "The device joins the
//! network"): it forwards frames between a device's serial port, which QEMU exposes as a socket on the host,
//! and a `latchkey relay run` over TCP. Both sides use the same framing (a 4-byte big-endian length, then one
//! encoded routed message), so the gateway is a dumb frame forwarder with one TCP connection to the relay per
//! UART link. It holds no key and never sees plaintext: everything past the routes is a channel's handshake
//! message or ciphertext. It logs what it forwards: direction, size, the routes (clear-text metadata on every
//! hop) and a hex prefix of the payload.
//!
//! For the test of tampering, `--flip N` flips one bit (the last bit of the frame, in the AEAD tag) in the
//! first N frames towards the device that carry a channel frame (payload kind 0x02) of at least
//! `--flip-min-len` bytes (default 200: the relay channel's frames that carry a phone's traffic, not its
//! bare acknowledgements). The device must refuse them, and retransmission must still deliver the message.
//!
//! ```sh
//! cargo run -p latchkey-runtime --example uart_gateway -- --uart unix:/tmp/uart.sock --relay 127.0.0.1:4000
//! ```
//!
//! `--dump FILE` also writes every frame it forwards, in full, as hex (one line per frame, direction first):
//! a complete record of what passed through the gateway, which the firmware's network test searches for the
//! plaintexts.
//!
//! `--uart unix:PATH` or `--uart tcp:HOST:PORT` (QEMU: `-chardev socket,id=uart,path=PATH,server=on,wait=off
//! -serial chardev:uart`, or `host=…,port=…`). The gateway connects to both sides (retrying for
//! `--connect-timeout` seconds, default 30), reconnects to the relay if that connection drops, and exits when
//! the UART side closes.

use latchkey_core::wire::RoutedMessage;
use std::io::{self, Read, Write};
use std::net::TcpStream;
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Frames above this are refused (the relay's own limit is 256 KiB).
const MAX_FRAME: usize = 256 * 1024;
/// Bytes of payload shown in the log.
const HEX_PREFIX: usize = 16;

trait Stream: Read + Write + Send {
    fn try_clone_box(&self) -> io::Result<Box<dyn Stream>>;
}

impl Stream for TcpStream {
    fn try_clone_box(&self) -> io::Result<Box<dyn Stream>> {
        Ok(Box::new(self.try_clone()?))
    }
}

#[cfg(unix)]
impl Stream for UnixStream {
    fn try_clone_box(&self) -> io::Result<Box<dyn Stream>> {
        Ok(Box::new(self.try_clone()?))
    }
}

struct Args {
    uart: String,
    relay: String,
    flip: u64,
    flip_min_len: usize,
    connect_timeout: Duration,
    dump: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        uart: String::new(),
        relay: String::new(),
        flip: 0,
        flip_min_len: 200,
        connect_timeout: Duration::from_secs(30),
        dump: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--uart" => args.uart = value()?,
            "--relay" => args.relay = value()?,
            "--dump" => args.dump = Some(value()?),
            "--flip" => args.flip = value()?.parse().map_err(|e| format!("--flip: {e}"))?,
            "--flip-min-len" => {
                args.flip_min_len = value()?
                    .parse()
                    .map_err(|e| format!("--flip-min-len: {e}"))?
            }
            "--connect-timeout" => {
                let secs: u64 = value()?
                    .parse()
                    .map_err(|e| format!("--connect-timeout: {e}"))?;
                args.connect_timeout = Duration::from_secs(secs);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.uart.is_empty() || args.relay.is_empty() {
        return Err(
            "usage: uart_gateway --uart unix:PATH|tcp:HOST:PORT --relay HOST:PORT [--flip N] \
             [--flip-min-len BYTES] [--dump FILE] [--connect-timeout SECS]"
                .into(),
        );
    }
    Ok(args)
}

fn log(line: String) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Connects, retrying until `timeout`.
fn connect<T>(what: &str, timeout: Duration, f: impl Fn() -> io::Result<T>) -> io::Result<T> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(s) => return Ok(s),
            Err(e) if start.elapsed() >= timeout => {
                return Err(io::Error::new(e.kind(), format!("{what}: {e}")))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn connect_uart(spec: &str, timeout: Duration) -> io::Result<Box<dyn Stream>> {
    if let Some(addr) = spec.strip_prefix("tcp:") {
        let s = connect("uart", timeout, || TcpStream::connect(addr))?;
        s.set_nodelay(true)?;
        return Ok(Box::new(s));
    }
    #[cfg(unix)]
    if let Some(path) = spec.strip_prefix("unix:") {
        return Ok(Box::new(connect("uart", timeout, || {
            UnixStream::connect(path)
        })?));
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("--uart {spec}: expected unix:PATH or tcp:HOST:PORT"),
    ))
}

fn connect_relay(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let s = connect("relay", timeout, || TcpStream::connect(addr))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
fn read_frame(r: &mut dyn Read) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 4];
    match r.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {MAX_FRAME}"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(Some(body))
}

fn write_frame(w: &mut dyn Write, body: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf)?;
    w.flush()
}

/// Where `--dump` writes every frame in full.
type Dump = Option<Arc<Mutex<std::fs::File>>>;

fn dump(to: &Dump, dir: &str, n: u64, frame: &[u8]) {
    if let Some(file) = to {
        let mut f = file.lock().expect("not poisoned");
        let _ = writeln!(f, "{dir} #{n} {}", hex(frame));
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One log line: what the gateway can see of a frame (its routes are clear-text metadata on every hop; the
/// payload is a handshake message or ciphertext).
fn describe(dir: &str, n: u64, frame: &[u8]) -> String {
    match RoutedMessage::decode_header(frame) {
        Ok((onward, ret, payload)) => {
            let kind = match payload.first() {
                Some(1) => "handshake",
                Some(2) => "channel frame",
                Some(3) => "refusal",
                _ => "other",
            };
            format!(
                "{dir} #{n}: {} B, onward {onward:?}, return {ret:?}, payload {} B ({kind}) {}…",
                frame.len(),
                payload.len(),
                hex(&payload[..payload.len().min(HEX_PREFIX)])
            )
        }
        Err(e) => format!(
            "{dir} #{n}: {} B, not a routed message ({e}) {}…",
            frame.len(),
            hex(&frame[..frame.len().min(HEX_PREFIX)])
        ),
    }
}

fn is_channel_frame(frame: &[u8]) -> bool {
    RoutedMessage::decode_header(frame).is_ok_and(|(_, _, payload)| payload.first() == Some(&2))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> io::Result<()> {
    let uart = connect_uart(&args.uart, args.connect_timeout)?;
    log(format!("gateway: uart link {} connected", args.uart));
    let relay = connect_relay(&args.relay, args.connect_timeout)?;
    log(format!("gateway: relay {} connected", args.relay));
    // The current relay connection: replaced when it drops.
    let relay_w = Arc::new(Mutex::new(relay.try_clone()?));
    let flipped = Arc::new(AtomicU64::new(0));
    let dump_to: Dump = match &args.dump {
        Some(path) => Some(Arc::new(Mutex::new(std::fs::File::create(path)?))),
        None => None,
    };

    // Relay -> device, one thread per relay connection.
    let spawn_down = {
        let uart_w = uart.try_clone_box()?;
        let flipped = flipped.clone();
        let flip = args.flip;
        let flip_min_len = args.flip_min_len;
        let counter = Arc::new(AtomicU64::new(0));
        let dump_to = dump_to.clone();
        move |mut relay_r: TcpStream| {
            let dump_to = dump_to.clone();
            let flipped = flipped.clone();
            let counter = counter.clone();
            let mut uart_w = uart_w.try_clone_box().expect("clone the uart stream");
            std::thread::spawn(move || loop {
                let mut frame = match read_frame(&mut relay_r) {
                    Ok(Some(f)) => f,
                    Ok(None) => {
                        log("gateway: relay closed the connection".into());
                        return;
                    }
                    Err(e) => {
                        log(format!("gateway: relay connection: {e}"));
                        return;
                    }
                };
                let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                log(describe("relay -> device", n, &frame));
                dump(&dump_to, "relay -> device", n, &frame);
                if frame.len() >= flip_min_len
                    && is_channel_frame(&frame)
                    && flipped.load(Ordering::Relaxed) < flip
                {
                    flipped.fetch_add(1, Ordering::Relaxed);
                    let last = frame.len() - 1;
                    frame[last] ^= 1;
                    log(format!(
                        "gateway: FLIPPED bit 0 of byte {last} (the last, in the AEAD tag) of frame #{n} to the device"
                    ));
                }
                if let Err(e) = write_frame(&mut uart_w, &frame) {
                    log(format!("gateway: uart link: {e}"));
                    return;
                }
            })
        }
    };
    spawn_down(relay);

    // Device -> relay, on this thread; reconnects to the relay when that connection has dropped.
    let mut uart_r = uart;
    let mut n = 0u64;
    loop {
        let frame = match read_frame(&mut uart_r) {
            Ok(Some(f)) => f,
            Ok(None) => {
                log("gateway: uart link closed; exiting".into());
                return Ok(());
            }
            Err(e) => {
                log(format!("gateway: uart link: {e}; exiting"));
                return Ok(());
            }
        };
        n += 1;
        log(describe("device -> relay", n, &frame));
        dump(&dump_to, "device -> relay", n, &frame);
        let mut w = relay_w.lock().expect("not poisoned");
        if write_frame(&mut *w, &frame).is_err() {
            log("gateway: relay connection lost; reconnecting".into());
            match connect_relay(&args.relay, args.connect_timeout) {
                Ok(s) => {
                    *w = s.try_clone()?;
                    spawn_down(s);
                    log(format!("gateway: relay {} reconnected", args.relay));
                    if let Err(e) = write_frame(&mut *w, &frame) {
                        log(format!("gateway: relay connection: {e}"));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}
