//! The secret scan (issue 10 item 4): create identities, channels and keys through the public API — sans-IO
//! handshakes, direct TCP channels, nodes over loopback TCP, the identity store — with every `tracing` event
//! of every crate captured at TRACE, then scan all the text that came out (logs, `Debug` strings, error
//! messages) for every secret that was made: each secret key (exported from the vaults), each seed given, and
//! the application's plaintexts, as hex (either case), base64 (standard and URL-safe) and raw bytes.
//!
//! The scanner is checked first on text that does hold a secret, so that a broken scanner cannot pass.

use latchkey_facade::*;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8], url: bool) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| n << 8 | b as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            let c = B64[(n >> (18 - 6 * i) & 63) as usize] as char;
            out.push(match (url, c) {
                (true, '+') => '-',
                (true, '/') => '_',
                _ => c,
            });
        }
    }
    out
}

/// Every way a secret (at least 16 bytes) could show up in text: 12-byte windows as hex (lower and upper
/// case) and raw, and base64 of every 3-byte-aligned 12-byte window from each of the three alignments.
fn needles(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for window in secret.windows(12) {
        let hex = hex::encode(window);
        out.push(hex.clone().into_bytes());
        out.push(hex.to_uppercase().into_bytes());
        out.push(window.to_vec());
    }
    for shift in 0..3 {
        for window in secret[shift..].chunks_exact(12) {
            out.push(base64(window, false).into_bytes());
            out.push(base64(window, true).into_bytes());
        }
    }
    out
}

/// The names of the secrets found in `haystack`.
fn leaks(haystack: &[u8], secrets: &[(String, Vec<u8>)]) -> Vec<String> {
    secrets
        .iter()
        .filter(|(_, secret)| {
            needles(secret)
                .iter()
                .any(|needle| haystack.windows(needle.len()).any(|w| w == &needle[..]))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// An identity's current secret keys, exported from its vault.
fn secrets_of(name: &str, identity: &Identity) -> Vec<(String, Vec<u8>)> {
    let local = identity.local_identity().unwrap();
    let vault = identity.vault().software_vault();
    vec![
        (
            format!("{name} primary key"),
            vault.export_secret(local.primary_key()).unwrap().to_vec(),
        ),
        (
            format!("{name} static key"),
            vault.export_secret(local.static_key()).unwrap().to_vec(),
        ),
    ]
}

fn handshake(a: &Identity, b: &Identity, text: &mut String) -> Result<(Channel, Channel)> {
    let mut i = HandshakeSession::new(
        a,
        Role::Initiator,
        CipherSuite::AesGcm,
        &Trust::AnyIdentity,
        None,
    )?;
    let mut r = HandshakeSession::new(
        b,
        Role::Responder,
        CipherSuite::AesGcm,
        &Trust::Identifiers(vec![a.identifier()]),
        None,
    )?;
    text.push_str(&format!("{i:?} {r:?}\n"));
    let m1 = i.step(None)?.unwrap();
    let m2 = r.step(Some(&m1))?.unwrap();
    text.push_str(&format!("{i:?} {r:?}\n"));
    let m3 = i.step(Some(&m2))?.unwrap();
    r.step(Some(&m3))?;
    text.push_str(&format!("{i:?} {r:?}\n"));
    Ok((i.into_channel()?, r.into_channel()?))
}

#[test]
fn the_scanner_finds_a_secret_in_every_encoding() {
    let secret: Vec<u8> = (1..=32).collect();
    let secrets = vec![("s".to_string(), secret.clone())];
    assert!(leaks(b"nothing here", &secrets).is_empty());
    for text in [
        format!("key={}", hex::encode(&secret[3..20])),
        format!("KEY={}", hex::encode_upper(&secret[10..30])),
        format!("k: {}", base64(&secret, false)),
        format!("k: {}", base64(&secret[1..], true)),
        format!("k: {}", base64(&secret[2..], false)),
    ] {
        assert_eq!(leaks(text.as_bytes(), &secrets), ["s"], "{text}");
    }
    let mut raw = b"raw: ".to_vec();
    raw.extend_from_slice(&secret[5..25]);
    assert_eq!(leaks(&raw, &secrets), ["s"]);
}

#[tokio::test(flavor = "current_thread")]
async fn no_secret_appears_in_logs_debug_strings_or_errors() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let mut text = String::new();
    let mut secrets: Vec<(String, Vec<u8>)> = Vec::new();

    // Identities: generated (Ed25519, P-256), from given secrets, rotated (the rotated-away key included).
    let vault = Vault::new();
    let a = Identity::create(&vault, IdentityOptions::default(), None).unwrap();
    let p256 = Identity::create(
        &vault,
        IdentityOptions {
            algorithm: SigningAlgorithm::EcdsaP256,
            ..IdentityOptions::default()
        },
        None,
    )
    .unwrap();
    let (seed, static_secret, rotation_seed) = ([0x3c; 32], [0x4d; 32], [0x5e; 32]);
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    let b = Identity::from_secrets(
        &vault,
        &seed,
        &static_secret,
        IdentityOptions::default(),
        Some(created),
    )
    .unwrap();
    for (name, bytes) in [
        ("given seed", seed),
        ("given static secret", static_secret),
        ("given rotation seed", rotation_seed),
    ] {
        secrets.push((name.into(), bytes.to_vec()));
    }
    secrets.extend(secrets_of("a before rotation", &a));
    secrets.extend(secrets_of("p256", &p256));
    a.rotate(None, None).unwrap();
    b.rotate(Some(&rotation_seed), None).unwrap();
    secrets.extend(secrets_of("a", &a));
    secrets.extend(secrets_of("b", &b));
    text.push_str(&format!("{vault:?} {a:?} {b:?} {p256:?}\n"));

    // Sans-IO channels, both suites' worth of frames, and failures.
    let (mut ca, mut cb) = handshake(&a, &b, &mut text).unwrap();
    let (mut cp, mut cb2) = handshake(&p256, &b, &mut text).unwrap();
    let plaintexts: Vec<Vec<u8>> = (0..4)
        .map(|i| format!("confidential payload number {i} 8f3a9c2e71d4b605").into_bytes())
        .collect();
    for (i, plaintext) in plaintexts.iter().enumerate() {
        secrets.push((format!("plaintext {i}"), plaintext.clone()));
        let frame = ca.encrypt(plaintext).unwrap();
        assert_eq!(&cb.decrypt(&frame).unwrap(), plaintext);
        let frame = cp.encrypt(plaintext).unwrap();
        assert_eq!(&cb2.decrypt(&frame).unwrap(), plaintext);
        let mut tampered = frame.clone();
        tampered[10] ^= 1;
        text.push_str(&format!("{:?}\n", cb2.decrypt(&tampered).unwrap_err()));
        text.push_str(&format!("{:?}\n", cb2.decrypt(&frame).unwrap_err()));
    }
    text.push_str(&format!("{ca:?} {cb:?}\n"));
    // A refused peer: the initiator trusts only a stranger.
    let stranger = Trust::Identifiers(vec![format!("lk{}", "ab".repeat(32))]);
    let mut i =
        HandshakeSession::new(&a, Role::Initiator, CipherSuite::AesGcm, &stranger, None).unwrap();
    let mut r = HandshakeSession::new(
        &b,
        Role::Responder,
        CipherSuite::AesGcm,
        &Trust::AnyIdentity,
        None,
    )
    .unwrap();
    let m1 = i.step(None).unwrap().unwrap();
    let m2 = r.step(Some(&m1)).unwrap().unwrap();
    let untrusted = i.step(Some(&m2)).unwrap_err();
    assert_eq!(untrusted.code(), ErrorCode::UntrustedPeer);
    text.push_str(&format!("{untrusted:?} {untrusted} {i:?} {r:?}\n"));

    // Direct TCP: an exchange, then a refused rollback.
    let listener = DirectListener::start(&a, "127.0.0.1:0".into(), Trust::AnyIdentity)
        .await
        .unwrap();
    let direct = DirectChannel::connect(&b, listener.address(), Trust::AnyIdentity)
        .await
        .unwrap();
    let reply = direct
        .clone()
        .exchange(plaintexts[0].clone())
        .await
        .unwrap();
    assert!(reply.ends_with(&plaintexts[0]));
    text.push_str(&format!("{listener:?} {direct:?}\n"));
    // b as it was before its rotation: the listener, which pinned b's rotated history, refuses it.
    let older = Identity::from_secrets(
        &Vault::new(),
        &seed,
        &static_secret,
        IdentityOptions::default(),
        Some(created),
    )
    .unwrap();
    assert_eq!(older.identifier(), b.identifier());
    let refused = match DirectChannel::connect(&older, listener.address(), Trust::AnyIdentity).await
    {
        Ok(channel) => channel.exchange(b"x".to_vec()).await.unwrap_err(),
        Err(e) => e,
    };
    text.push_str(&format!("{refused:?} {refused}\n"));
    listener.stop();

    // Nodes over loopback TCP: a request and a mailbox message.
    let doorbell = Node::new(&a, NodeOptions::default()).unwrap();
    let address = doorbell.listen_tcp("127.0.0.1:0".into()).await.unwrap();
    let _api = doorbell
        .listen("api".into(), Trust::Identifiers(vec![b.identifier()]))
        .unwrap();
    doorbell
        .start_echo("echo".into(), Trust::Identifiers(vec![b.identifier()]))
        .unwrap();
    let inbox = doorbell
        .mailbox("inbox".into(), Trust::Identifiers(vec![b.identifier()]))
        .unwrap();
    let phone = Node::new(&b, NodeOptions::default()).unwrap();
    let channel = phone
        .connect(
            Peer::tcp(address),
            Trust::Identifiers(vec![a.identifier()]),
            ConnectOptions::default(),
        )
        .await
        .unwrap();
    let reply = channel
        .request(
            "echo".into(),
            plaintexts[1].clone(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(reply, plaintexts[1]);
    channel
        .send("inbox".into(), plaintexts[2].clone(), None)
        .await
        .unwrap();
    let message = inbox.clone().recv().await.unwrap().unwrap();
    assert_eq!(message.payload(), plaintexts[2]);
    text.push_str(&format!("{doorbell:?} {phone:?} {channel:?} {message:?}\n"));
    let missing = channel
        .request(
            "nobody".into(),
            plaintexts[3].clone(),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    text.push_str(&format!("{missing:?} {missing}\n"));
    phone.shutdown().await.unwrap();
    doorbell.shutdown().await.unwrap();

    // The identity store: create, load, list.
    let home = tempfile::tempdir().unwrap();
    let store =
        IdentityStore::open(Some(home.path().join("home").to_string_lossy().into())).unwrap();
    let stored = store.create("scan").unwrap();
    let loaded = store.load("scan").unwrap();
    secrets.extend(secrets_of("stored", &loaded));
    text.push_str(&format!("{stored:?} {loaded:?}\n"));
    let err = store.create("scan").unwrap_err();
    text.push_str(&format!("{err:?} {err}\n"));

    let mut all = captured.0.lock().unwrap().clone();
    let log_len = all.len();
    all.extend_from_slice(text.as_bytes());
    // The capture worked: TRACE/DEBUG lines from the runtime are there, naming the peers.
    let logs = String::from_utf8_lossy(&all[..log_len]).into_owned();
    assert!(
        logs.contains("history rollback"),
        "the refusal was not logged: {logs}"
    );
    assert!(logs.contains("DEBUG") || logs.contains("TRACE"), "{logs}");
    assert!(secrets.len() >= 17);
    let found = leaks(&all, &secrets);
    assert!(
        found.is_empty(),
        "secrets in the captured text: {found:?}\n{}",
        String::from_utf8_lossy(&all)
    );
    eprintln!(
        "secret scan: {} secrets, {} bytes of logs and {} bytes of Debug/error text scanned",
        secrets.len(),
        log_len,
        text.len()
    );
}
