//! The doorbell story, on loopback with real sockets (run with `make demo`):
//!
//! * a **relay** that anyone can reach, forwarding bytes it cannot read;
//! * a **doorbell** behind it: it registers the name "doorbell" at the relay and runs a camera (a plain TCP
//!   server that knows nothing about Latchkey) behind a portal outlet that only the phone may use;
//! * a **phone** that opens a secure channel to "doorbell" *through the relay*, opens a portal inlet, and
//!   watches the camera's video stream through it.
//!
//! Left column: every frame the relay wrote to a socket (size and first bytes: ciphertext). Right column:
//! what the phone's video player received. Midway the relay flips one bit of a video frame; the phone's
//! channel refuses that frame and the retransmitted copy arrives instead, so the video stays intact.

use latchkey_runtime::channel::ChannelStats;
use latchkey_runtime::portal::{create_inlet, create_outlet};
use latchkey_runtime::relay::{forwarder_address, register_at_relay, start_relay};
use latchkey_runtime::transport::tcp::{self, TcpOptions, WireTap};
use latchkey_runtime::{
    create_channel, create_listener, Access, Address, ChannelOptions, LocalIdentity, Message, Node,
    Route,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const FRAMES: usize = 12;
const TAMPER_FRAME: usize = 6;
const WIDTH: usize = 62;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Prints rows of a two-column table; the lock keeps rows whole.
#[derive(Clone)]
struct Table {
    start: Instant,
    lock: Arc<Mutex<()>>,
}

impl Table {
    fn left(&self, text: &str) {
        let _g = self.lock.lock().unwrap();
        println!(
            "{:>6.3}s  {:<WIDTH$} |",
            self.start.elapsed().as_secs_f32(),
            text
        );
    }
    fn right(&self, text: &str) {
        let _g = self.lock.lock().unwrap();
        println!(
            "{:>6.3}s  {:<WIDTH$} | {text}",
            self.start.elapsed().as_secs_f32(),
            ""
        );
    }
    fn note(&self, text: &str) {
        let _g = self.lock.lock().unwrap();
        println!("        {text}");
    }
}

/// The camera: a plain TCP server streaming text "video frames", one line each.
async fn camera() -> Result<std::net::SocketAddr, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut viewer, _)) = listener.accept().await {
            tokio::spawn(async move {
                for n in 1..=FRAMES {
                    let bar: String = (0..24)
                        .map(|i| if (i + n * 2) % 24 < 8 { '#' } else { '.' })
                        .collect();
                    let line =
                        format!("FRAME {n:02} [{bar}] visitor at the door, {} px\n", 640 + n);
                    if viewer.write_all(line.as_bytes()).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                let _ = viewer.shutdown().await;
            });
        }
    });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Warnings (e.g. the refused frame) go to stderr, so they show up inline.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_ansi(false)
        .with_target(false)
        .without_time()
        .init();
    let table = Table {
        start: Instant::now(),
        lock: Arc::default(),
    };

    // --- the relay -------------------------------------------------------------------------------------
    let relay = Node::new("relay");
    start_relay(&relay, "relay".into(), None)?;
    let doorbell_link: Arc<Mutex<Option<Address>>> = Arc::default();
    let video_frames_to_phone = Arc::new(AtomicUsize::new(0));
    let tampered = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let tap: WireTap = {
        let finished = finished.clone();
        let (table, doorbell_link, count, tampered) = (
            table.clone(),
            doorbell_link.clone(),
            video_frames_to_phone.clone(),
            tampered.clone(),
        );
        Arc::new(move |connection: &Address, message: &mut Message| {
            if finished.load(Ordering::SeqCst) {
                return;
            }
            // The first connection the relay answers is the doorbell's registration.
            let to_doorbell = {
                let mut d = doorbell_link.lock().unwrap();
                d.get_or_insert_with(|| connection.clone()) == connection
            };
            let payload = &mut message.payload;
            let mut marker = "";
            // Video frames are the big ones going to the phone.
            if !to_doorbell && payload.len() > 100 {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                if n == TAMPER_FRAME && !tampered.swap(true, Ordering::SeqCst) {
                    let i = payload.len() - 20;
                    payload[i] ^= 0x10;
                    marker = "  <-- relay FLIPS A BIT";
                }
            }
            let direction = if to_doorbell {
                "-> doorbell"
            } else {
                "-> phone   "
            };
            table.left(&format!(
                "{direction} {:>5} B  {}{marker}",
                payload.len(),
                describe(payload)
            ));
        })
    };
    let relay_tcp = tcp::listen(
        &relay,
        "127.0.0.1:0",
        TcpOptions {
            tap: Some(tap),
            ..TcpOptions::default()
        },
    )
    .await?;
    let relay_addr = relay_tcp.local_addr.to_string();

    // --- the doorbell ----------------------------------------------------------------------------------
    let doorbell = Node::new("doorbell");
    let doorbell_id = LocalIdentity::create()?;
    let phone_id = LocalIdentity::create()?;
    let camera = camera().await?;
    println!("Latchkey doorbell demo — everything below runs on loopback sockets");
    println!("  relay     listening on {relay_addr} (forwards what it cannot read)");
    println!(
        "  doorbell  {}  registers at the relay as \"doorbell\"",
        doorbell_id.identifier()
    );
    println!("  camera    plain TCP server on {camera}, behind the doorbell's portal outlet");
    println!("  phone     {}", phone_id.identifier());
    println!();
    println!(
        "{:>7}  {:<WIDTH$} | PHONE's video player received (plaintext)",
        "time", "RELAY wrote to a socket (ciphertext: size, first bytes)",
    );
    println!("{}", "-".repeat(8 + WIDTH + 3 + 50));

    let link = tcp::connect(&doorbell, &relay_addr, TcpOptions::default()).await?;
    register_at_relay(
        &doorbell,
        Route::from_addresses([link, "relay".into()]),
        "doorbell",
        Duration::from_secs(5),
    )
    .await?;
    create_listener(
        &doorbell,
        &doorbell_id,
        "api".into(),
        ChannelOptions::default(),
    )?;
    create_outlet(
        &doorbell,
        "outlet".into(),
        camera.to_string(),
        Access::identifiers([phone_id.identifier()]),
    )?;

    // --- the phone -------------------------------------------------------------------------------------
    let phone = Node::new("phone");
    let to_relay = tcp::connect(&phone, &relay_addr, TcpOptions::default()).await?;
    let route = Route::from_addresses([to_relay, forwarder_address("doorbell")?, "api".into()]);
    let channel = create_channel(&phone, &phone_id, route, ChannelOptions::default()).await?;
    table.right(&format!(
        "secure channel up, peer {}…",
        &channel.peer().to_string()[..18]
    ));
    if channel.peer() != doorbell_id.identifier() {
        return Err("the phone reached someone other than the doorbell".into());
    }
    let inlet = create_inlet(&phone, "127.0.0.1:0", channel.route_to("outlet")).await?;
    table.right(&format!(
        "portal inlet on {}; player connects",
        inlet.local_addr
    ));

    let player = TcpStream::connect(inlet.local_addr).await?;
    let mut lines = BufReader::new(player).lines();
    let mut received = 0;
    let mut rejected_seen = 0;
    while let Some(line) =
        tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await??
    {
        let rejected = ChannelStats::get(&channel.stats().frames_rejected);
        if rejected > rejected_seen {
            rejected_seen = rejected;
            table.right("!! a frame failed authentication: REFUSED by the phone");
        }
        received += 1;
        table.right(&line);
    }
    let rejected = ChannelStats::get(&channel.stats().frames_rejected);
    if rejected > rejected_seen {
        table.right("!! a frame failed authentication: REFUSED by the phone");
    }
    finished.store(true, Ordering::SeqCst);
    println!("{}", "-".repeat(8 + WIDTH + 3 + 50));
    table.note(&format!(
        "phone received {received}/{FRAMES} video frames, in order and intact; tampered frames refused: {rejected} \
         (the doorbell retransmitted the refused one)"
    ));
    if received != FRAMES || rejected == 0 || !tampered.load(Ordering::SeqCst) {
        return Err(format!("demo failed: received {received} frames, {rejected} refused").into());
    }
    table.note(
        "the relay forwarded every byte and could read none; the one bit it changed was caught",
    );
    Ok(())
}

/// What an observer of the relay can tell about a payload: its kind, the public nonce, ciphertext bytes.
fn describe(payload: &[u8]) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    match payload.first() {
        Some(2) if payload.len() > 9 => {
            let nonce = u64::from_be_bytes(payload[1..9].try_into().expect("8 bytes"));
            format!(
                "nonce {nonce:<3} ct {}…",
                hex(&payload[9..payload.len().min(19)])
            )
        }
        Some(1) => format!("handshake  {}…", hex(&payload[1..payload.len().min(11)])),
        // The relay's own answer to the doorbell's registration: the only plaintext it ever writes.
        _ => format!(
            "relay's registration reply {:?}",
            String::from_utf8_lossy(payload)
        ),
    }
}
