//! The secret scan, CLI part (issue 10 item 4): real `latchkey` processes run with every log event enabled
//! (`RUST_LOG=trace`, plus `-vv`) create, show and rotate identities and talk over a direct TCP channel, and
//! fail in a few ways; everything they print (stdout and stderr) is scanned for the secret keys in their
//! store (read back through the facade after each step, the rotated-away key included) and for the message
//! sent, as hex (either case), base64 and raw bytes.

use latchkey_facade::IdentityStore;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");

fn run(home: &Path, args: &[&str]) -> (bool, Vec<u8>) {
    let o = Command::new(BIN)
        .env("LATCHKEY_HOME", home)
        .env("RUST_LOG", "trace")
        .arg("-vv")
        .args(args)
        .output()
        .expect("run latchkey");
    let mut text = o.stdout;
    text.extend_from_slice(&o.stderr);
    (o.status.success(), text)
}

/// 12-byte windows of `secret` as lower/upper hex and raw bytes, and base64 (standard and URL-safe) of
/// 12-byte windows at every alignment.
fn needles(secret: &[u8]) -> Vec<Vec<u8>> {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let base64 = |bytes: &[u8], url: bool| -> String {
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
    };
    let mut out = Vec::new();
    for window in secret.windows(12) {
        let hex: String = window.iter().map(|b| format!("{b:02x}")).collect();
        out.push(hex.to_uppercase().into_bytes());
        out.push(hex.into_bytes());
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

fn secrets_of(home: &Path, name: &str, into: &mut Vec<(String, Vec<u8>)>) {
    let store = IdentityStore::open(Some(home.to_string_lossy().into_owned())).unwrap();
    let identity = store.load(name).unwrap();
    let local = identity.local_identity().unwrap();
    let vault = identity.vault().software_vault();
    let changes = identity.change_count().unwrap();
    for (what, key) in [
        ("primary", local.primary_key()),
        ("static", local.static_key()),
    ] {
        into.push((
            format!("{name} {what} key (change {changes})"),
            vault.export_secret(key).unwrap().to_vec(),
        ));
    }
}

#[test]
fn no_secret_appears_in_cli_output_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let mut out: Vec<u8> = Vec::new();
    let mut secrets: Vec<(String, Vec<u8>)> = Vec::new();
    let step = |out: &mut Vec<u8>, args: &[&str], expect_success: bool| {
        let (ok, text) = run(&home, args);
        assert_eq!(
            ok,
            expect_success,
            "{args:?}: {}",
            String::from_utf8_lossy(&text)
        );
        out.extend_from_slice(&text);
    };

    step(&mut out, &["identity", "create", "alice"], true);
    step(&mut out, &["identity", "create", "bob"], true);
    step(&mut out, &["identity", "create", "carol"], true);
    secrets_of(&home, "alice", &mut secrets);
    secrets_of(&home, "bob", &mut secrets);
    secrets_of(&home, "carol", &mut secrets);
    let alice_id = IdentityStore::open(Some(home.to_string_lossy().into_owned()))
        .unwrap()
        .show("alice")
        .unwrap()
        .identifier;
    step(&mut out, &["identity", "show", "alice"], true);
    step(&mut out, &["--json", "identity", "show", "bob"], true);
    step(&mut out, &["identity", "rotate", "alice"], true);
    secrets_of(&home, "alice", &mut secrets);
    step(&mut out, &["identity", "list"], true);
    step(&mut out, &["identity", "create", "alice"], false);
    step(&mut out, &["identity", "show", "nobody"], false);

    // A direct TCP channel between two processes: the listener as bob, the client as alice.
    let mut listener = Command::new(BIN)
        .env("LATCHKEY_HOME", &home)
        .env("RUST_LOG", "trace")
        .args([
            "-vv",
            "channel",
            "listen-direct",
            "127.0.0.1:0",
            "--trust",
            &alice_id,
        ])
        .args(["--identity", "bob"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(listener.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    out.extend_from_slice(first.as_bytes());
    let parts: Vec<String> = first.split_whitespace().map(str::to_owned).collect();
    assert_eq!(parts[0], "LISTENING", "{first}");
    // (The CLI prints the reply, so the message itself is not one of the secrets here.)
    let message = "the-door-code-is-7F3A9C2E71D4B605";
    step(
        &mut out,
        &[
            "channel",
            "connect-direct",
            &parts[1],
            "--identity",
            "alice",
            "--trust",
            &parts[2],
            message,
        ],
        true,
    );
    // Trusting someone else: refused.
    let stranger = format!("lk{}", "ab".repeat(32));
    step(
        &mut out,
        &[
            "channel",
            "connect-direct",
            &parts[1],
            "--identity",
            "alice",
            "--trust",
            &stranger,
            "x",
        ],
        false,
    );
    // Carol is not on the listener's list: the listener refuses her and logs it.
    step(
        &mut out,
        &[
            "channel",
            "connect-direct",
            &parts[1],
            "--identity",
            "carol",
            "--trust",
            &parts[2],
            "x",
        ],
        false,
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = listener.kill();
    let _ = listener.wait();
    stdout.read_to_end(&mut out).unwrap();
    listener
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();

    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(
        text.contains("WARN"),
        "the listener's refusal was not logged: {text}"
    );
    assert!(text.contains(&parts[2]), "{text}");
    assert_eq!(secrets.len(), 8);
    let found: Vec<&str> = secrets
        .iter()
        .filter(|(_, secret)| {
            needles(secret)
                .iter()
                .any(|needle| out.windows(needle.len()).any(|w| w == &needle[..]))
        })
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(found.is_empty(), "secrets in CLI output: {found:?}\n{text}");
    eprintln!(
        "CLI secret scan: {} secrets, {} bytes of output scanned",
        secrets.len(),
        out.len()
    );
}
