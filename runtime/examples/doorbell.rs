//! The doorbell story, on loopback with real sockets (run with `make demo`):
//!
//! * a **relay** (a relay node) that anyone can reach, forwarding bytes it cannot read. Only the doorbell may
//!   register a name there, and only through a secure channel to the relay, so the name is bound to the
//!   doorbell's identity;
//! * a **doorbell** behind it: it registers the name "doorbell" through that channel and runs a camera (a
//!   plain TCP server that knows nothing about Latchkey) behind a portal outlet that only the phone may use;
//! * a **phone** that opens a secure channel to "doorbell" *through the relay*, opens a portal inlet bound to
//!   that channel, and watches the camera's video stream through it (after sending a play request with a
//!   secret token).
//!
//! Left column: every frame the relay wrote to a socket (size and first bytes: ciphertext). Right column:
//! what the phone's video player received. Midway the relay flips one bit of a video frame; the phone's
//! channel refuses that frame and the retransmitted copy arrives instead, so the video stays intact. At the
//! end the demo checks every payload the relay handled — what it wrote to sockets, and what its forwarder
//! passed on after unwrapping the doorbell's channel to it — for the portal's plaintext (the token going
//! up, the video text coming down) and finds none.

use latchkey_core::channel::TrustIdentifiers;
use latchkey_runtime::channel::ChannelStats;
use latchkey_runtime::portal::{create_inlet, create_outlet};
use latchkey_runtime::relay::{forwarder_address, register_at_relay, start_relay, RelayOptions};
use latchkey_runtime::transport::tcp::{self, TcpOptions, WireTap};
use latchkey_runtime::{
    create_channel, create_listener, Accepts, Address, ChannelOptions, LocalIdentity, Message,
    Node, Route,
};
use std::collections::HashMap;
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

/// The player's request: the camera streams only to a viewer that presents this token. It travels up the
/// portal, so the relay must never see it.
const PLAY_TOKEN: &str = "token=OPEN-SESAME-4711";
/// Text of every video frame: travels down the portal, so the relay must never see it either.
const FRAME_TEXT: &str = "visitor at the door";

/// The camera: a plain TCP server that reads one play request and streams text "video frames", one line
/// each, to a viewer that presented the token.
async fn camera() -> Result<std::net::SocketAddr, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((viewer, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut viewer = BufReader::new(viewer);
                let mut request = String::new();
                if viewer.read_line(&mut request).await.is_err() || !request.contains(PLAY_TOKEN) {
                    return;
                }
                let mut viewer = viewer.into_inner();
                for n in 1..=FRAMES {
                    let bar: String = (0..24)
                        .map(|i| if (i + n * 2) % 24 < 8 { '#' } else { '.' })
                        .collect();
                    let line = format!("FRAME {n:02} [{bar}] {FRAME_TEXT}, {} px\n", 640 + n);
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

/// Every payload the relay handled, checked for the portal's plaintext.
#[derive(Default)]
struct Observed {
    payloads: usize,
    bytes: usize,
    /// Payloads that contained a plaintext marker (the demo fails if any does).
    leaks: usize,
}

impl Observed {
    fn check(&mut self, payload: &[u8]) {
        self.payloads += 1;
        self.bytes += payload.len();
        let contains = |needle: &[u8]| payload.windows(needle.len()).any(|w| w == needle);
        if [PLAY_TOKEN.as_bytes(), FRAME_TEXT.as_bytes(), b"FRAME "]
            .iter()
            .any(|m| contains(m))
        {
            self.leaks += 1;
        }
    }
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
    let relay_id = LocalIdentity::create()?;
    let doorbell_id = LocalIdentity::create()?;
    let phone_id = LocalIdentity::create()?;
    let trust = |id: &LocalIdentity| {
        ChannelOptions::default().with_trust(Arc::new(TrustIdentifiers::new([id.identifier()])))
    };

    // --- the relay -------------------------------------------------------------------------------------
    // A relay node: the only kind of node that forwards what arrives on one connection down another.
    let relay = Node::relay("relay");
    // Registrations come only through secure channels to the relay's listener, here only the doorbell's.
    let relay_listener = create_listener(&relay, &relay_id, "api".into(), trust(&doorbell_id))?;
    let observed: Arc<Mutex<Observed>> = Arc::default();
    let mut relay_options = RelayOptions::new(relay_listener.flow);
    relay_options.allowed = Some(Arc::new(HashMap::from([(
        doorbell_id.identifier(),
        vec!["doorbell".to_string()],
    )])));
    // What the relay's forwarder passes on from the phone, after the relay unwrapped the doorbell's channel
    // to it: still the phone's end-to-end ciphertext.
    relay_options.inspector = Some({
        let observed = observed.clone();
        Arc::new(move |_name: &str, payload: &mut Vec<u8>| {
            observed.lock().unwrap().check(payload);
        })
    });
    start_relay(&relay, "relay".into(), relay_options)?;
    let doorbell_link: Arc<Mutex<Option<Address>>> = Arc::default();
    let video_frames_to_phone = Arc::new(AtomicUsize::new(0));
    let tampered = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let tap: WireTap = {
        let finished = finished.clone();
        let (table, doorbell_link, count, tampered, observed) = (
            table.clone(),
            doorbell_link.clone(),
            video_frames_to_phone.clone(),
            tampered.clone(),
            observed.clone(),
        );
        Arc::new(move |connection: &Address, message: &mut Message| {
            observed.lock().unwrap().check(&message.payload);
            if finished.load(Ordering::SeqCst) {
                return;
            }
            // The first connection the relay answers is the doorbell's (its channel to the relay).
            let to_doorbell = {
                let mut d = doorbell_link.lock().unwrap();
                d.get_or_insert_with(|| connection.clone()) == connection
            };
            let payload = &mut message.payload;
            let mut marker = "";
            // Video frames are the big channel frames going to the phone.
            if !to_doorbell && payload.first() == Some(&2) && payload.len() > 100 {
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
    let camera = camera().await?;
    println!("Latchkey doorbell demo — everything below runs on loopback sockets");
    println!(
        "  relay     {}  on {relay_addr} (forwards what it cannot read)",
        relay_id.identifier()
    );
    println!(
        "  doorbell  {}  registers \"doorbell\" through a secure channel to the relay",
        doorbell_id.identifier()
    );
    println!("  camera    plain TCP server on {camera}, behind the doorbell's portal outlet");
    println!("  phone     {}", phone_id.identifier());
    println!(
        "  (frames to the doorbell travel in its channel to the relay, the phone's channel inside that)"
    );
    println!();
    println!(
        "{:>7}  {:<WIDTH$} | PHONE's video player received (plaintext)",
        "time", "RELAY wrote to a socket (ciphertext: size, first bytes)",
    );
    println!("{}", "-".repeat(8 + WIDTH + 3 + 50));

    // The doorbell's listener accepts only the phone; its outlet only the phone's channels through it.
    let listener = create_listener(&doorbell, &doorbell_id, "api".into(), trust(&phone_id))?;
    create_outlet(
        &doorbell,
        "outlet".into(),
        camera.to_string(),
        Accepts::flow(listener.flow).from_peers([phone_id.identifier()]),
    )?;
    let link = tcp::connect(&doorbell, &relay_addr, TcpOptions::default()).await?;
    let to_relay = create_channel(
        &doorbell,
        &doorbell_id,
        Route::from_addresses([link, "api".into()]),
        trust(&relay_id),
    )
    .await?;
    register_at_relay(
        &doorbell,
        &to_relay,
        "relay".into(),
        "doorbell",
        Duration::from_secs(5),
    )
    .await?;
    // Phones' handshakes arrive down the channel to the relay: let them reach the listener.
    doorbell.allow(&"api".into(), to_relay.flow())?;

    // --- the phone -------------------------------------------------------------------------------------
    let phone = Node::new("phone");
    let phone_to_relay = tcp::connect(&phone, &relay_addr, TcpOptions::default()).await?;
    let route =
        Route::from_addresses([phone_to_relay, forwarder_address("doorbell")?, "api".into()]);
    let channel = create_channel(&phone, &phone_id, route, trust(&doorbell_id)).await?;
    table.right(&format!(
        "secure channel up, peer {}…",
        &channel.peer().to_string()[..18]
    ));
    if channel.peer() != doorbell_id.identifier() {
        return Err("the phone reached someone other than the doorbell".into());
    }
    let inlet = create_inlet(&phone, "127.0.0.1:0", &channel, "outlet".into()).await?;
    table.right(&format!(
        "portal inlet on {}; player connects",
        inlet.local_addr
    ));

    let mut player = TcpStream::connect(inlet.local_addr).await?;
    player
        .write_all(format!("PLAY camera-1 {PLAY_TOKEN}\n").as_bytes())
        .await?;
    table.right("player sent its play request (with the secret token)");
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
    let seen = std::mem::take(&mut *observed.lock().unwrap());
    if seen.leaks != 0 || seen.payloads == 0 {
        return Err(format!(
            "demo failed: {} of the {} payloads the relay handled held portal plaintext",
            seen.leaks, seen.payloads
        )
        .into());
    }
    table.note(&format!(
        "the relay handled {} payloads ({} bytes) of the portal and the channels: neither the play token \
         {PLAY_TOKEN:?} (phone -> camera) nor the video text {FRAME_TEXT:?} (camera -> phone) appears in \
         any of them",
        seen.payloads, seen.bytes
    ));
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
        _ => format!("other      {}…", hex(&payload[..payload.len().min(10)])),
    }
}
