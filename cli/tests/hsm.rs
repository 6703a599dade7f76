//! The `latchkey` binary (built with `--features hsm`) with identity keys in a throwaway SoftHSM2 token and in
//! swtpm: `identity create --vault …`, a node run from the hardware identity, a peer process that pins it,
//! a rotation the peer follows, and typed errors for a bad vault (`make test-hsm`).

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");
const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "246810";

/// A private SoftHSM2 configuration with one initialised token, `cli`.
struct Token {
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

impl Token {
    fn new() -> Token {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args([
                "--init-token",
                "--free",
                "--label",
                "cli",
                "--so-pin",
                "1357",
                "--pin",
                PIN,
            ])
            .output()
            .expect("softhsm2-util (make deps-hsm)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Token { conf, _dir: dir }
    }

    fn spec(&self) -> String {
        format!("pkcs11:module={MODULE},token=cli")
    }
}

/// `latchkey ARGS` with the token's configuration and the PIN in the environment (never on the command line).
fn command(home: &Path, token: &Token) -> Command {
    let mut c = Command::new(BIN);
    c.env("LATCHKEY_HOME", home)
        .env("SOFTHSM2_CONF", &token.conf)
        .env("LATCHKEY_PKCS11_PIN", PIN);
    c
}

fn run(home: &Path, token: &Token, args: &[&str]) -> Output {
    command(home, token)
        .args(args)
        .output()
        .expect("run latchkey")
}

fn json_out(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap()
}

fn error_json(o: &Output) -> Value {
    let err = String::from_utf8_lossy(&o.stderr);
    serde_json::from_str(err.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| panic!("not JSON: {err}"))
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `latchkey node run` for the stored identity `door`, trusting `phone`; returns it and its TCP address.
fn node(home: &Path, token: &Token, phone: &str) -> (Running, String) {
    let mut child = command(home, token)
        .args([
            "--json",
            "node",
            "run",
            "--identity",
            "door",
            "--tcp",
            "127.0.0.1:0",
        ])
        .args(["--trust", &format!("phone={phone}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let running = Running(child);
    let ready: Value = serde_json::from_str(
        &rx.recv_timeout(Duration::from_secs(30))
            .expect("ready line"),
    )
    .unwrap();
    (running, ready["tcp"].as_str().unwrap().to_string())
}

fn pinned_changes(home: &Path, token: &Token, peer: &str) -> u64 {
    json_out(&run(home, token, &["--json", "peer", "show", peer]))["changes"]
        .as_u64()
        .unwrap()
}

/// A hardware `door` identity serves a software `phone` identity, rotates, and the phone's pin follows.
fn hardware_door(spec: &str, token: &Token) {
    let (door_home, phone_home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let created = json_out(&run(
        door_home.path(),
        token,
        &["--json", "identity", "create", "door", "--vault", spec],
    ));
    let door = created["identifier"].as_str().unwrap().to_string();
    assert_eq!(created["vault"], spec.split(':').next().unwrap());
    let phone = json_out(&run(
        phone_home.path(),
        token,
        &["--json", "identity", "create", "phone"],
    ))["identifier"]
        .as_str()
        .unwrap()
        .to_string();

    let ring = |addr: &str, trust: &str| {
        run(
            phone_home.path(),
            token,
            &[
                "--json",
                "message",
                "send",
                "--identity",
                "phone",
                "--trust",
                trust,
                "--to",
                addr,
                "ding",
            ],
        )
    };
    let (running, addr) = node(door_home.path(), token, &phone);
    let o = ring(&addr, &format!("door={door}"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    drop(running);
    assert_eq!(pinned_changes(phone_home.path(), token, "door"), 1);

    let rotated = json_out(&run(
        door_home.path(),
        token,
        &["--json", "identity", "rotate", "door"],
    ));
    assert_eq!(rotated["changes"], 2);
    let (_running, addr) = node(door_home.path(), token, &phone);
    let o = ring(&addr, "door");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(pinned_changes(phone_home.path(), token, "door"), 2);
}

#[test]
fn a_cli_identity_in_softhsm_serves_rotates_and_is_pinned() {
    let token = Token::new();
    hardware_door(&token.spec(), &token);
    // The token holds the keys; the store only references them.
    let out = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", &token.conf)
        .args([
            "--module",
            MODULE,
            "--token-label",
            "cli",
            "--login",
            "--pin",
            PIN,
        ])
        .args(["--list-objects", "--type", "privkey"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        listing.matches("Private Key Object").count(),
        2,
        "{listing}"
    );
    assert_eq!(listing.matches("never extractable").count(), 2, "{listing}");
}

#[test]
fn a_cli_identity_in_swtpm_serves_rotates_and_is_pinned() {
    let token = Token::new();
    let state = tempfile::tempdir().unwrap();
    let port = loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < 65000 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            break p;
        }
    };
    let swtpm = Command::new("swtpm")
        .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
        .arg("--tpmstate")
        .arg(format!("dir={}", state.path().display()))
        .args([
            "--server",
            &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
        ])
        .args([
            "--ctrl",
            &format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("swtpm (make deps-hsm)");
    let _swtpm = Running(swtpm);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    hardware_door(&format!("tpm:swtpm:host=127.0.0.1,port={port}"), &token);
}

#[test]
fn a_bad_vault_is_a_typed_error_and_a_pin_is_never_taken_from_the_command_line() {
    let token = Token::new();
    let home = tempfile::tempdir().unwrap();
    let cases = [
        (
            "pkcs11:module=/nonexistent/lib.so,token=cli".to_string(),
            "ModuleNotFound",
        ),
        (
            format!("pkcs11:module={MODULE},token=nope"),
            "TokenNotFound",
        ),
        (
            format!("pkcs11:module={MODULE},token=cli,pin=1234"),
            "VaultError",
        ),
    ];
    for (spec, name) in cases {
        let o = run(
            home.path(),
            &token,
            &["--json", "identity", "create", "x", "--vault", &spec],
        );
        assert_eq!(o.status.code(), Some(1), "{spec}");
        assert_eq!(error_json(&o)["name"], name, "{spec}");
    }
    let o = command(home.path(), &token)
        .env("LATCHKEY_PKCS11_PIN", "999999")
        .args([
            "--json",
            "identity",
            "create",
            "x",
            "--vault",
            &token.spec(),
        ])
        .output()
        .unwrap();
    let e = error_json(&o);
    assert_eq!(
        (e["name"].as_str(), e["kind"].as_str()),
        (Some("PinIncorrect"), Some("hardware"))
    );
    let o = run(home.path(), &token, &["--json", "identity", "list"]);
    assert!(
        o.status.success() && o.stdout.is_empty(),
        "nothing was stored"
    );
}
