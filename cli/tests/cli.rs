//! End-to-end: the built `latchkey` binary, run as separate processes talking over loopback sockets.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");

fn latchkey(home: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .env("LATCHKEY_HOME", home)
        .args(args)
        .output()
        .expect("run latchkey")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A long-running `latchkey` process, killed when dropped.
struct Running {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Running {
    /// Starts `latchkey --json ARGS` and returns it with its first ("ready") JSON line.
    fn start(home: &Path, args: &[&str]) -> (Running, Value) {
        let mut child = Command::new(BIN)
            .env("LATCHKEY_HOME", home)
            .arg("--json")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn latchkey");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut running = Running { child, lines };
        let ready: Value = serde_json::from_str(&running.next_line()).expect("ready line is JSON");
        (running, ready)
    }

    fn next_line(&mut self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .expect("latchkey printed nothing in time")
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("process did not exit");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn create(home: &Path, name: &str) -> String {
    let o = latchkey(home, &["--json", "identity", "create", name]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    v["identifier"].as_str().unwrap().to_string()
}

#[test]
fn every_command_has_help() {
    let commands: &[&[&str]] = &[
        &[],
        &["identity"],
        &["identity", "create"],
        &["identity", "list"],
        &["identity", "show"],
        &["identity", "rotate"],
        &["node", "run"],
        &["relay", "run"],
        &["channel", "open"],
        &["channel", "listen-direct"],
        &["channel", "connect-direct"],
        &["message", "send"],
        &["message", "receive"],
        &["portal", "inlet"],
        &["portal", "outlet"],
        &["peer"],
        &["peer", "list"],
        &["peer", "show"],
        &["peer", "forget"],
    ];
    let home = tempfile::tempdir().unwrap();
    for c in commands {
        let mut args = c.to_vec();
        args.push("--help");
        let o = latchkey(home.path(), &args);
        assert!(o.status.success(), "{c:?} --help failed");
        assert!(stdout(&o).contains("Usage:"), "{c:?}");
    }
    // Every command that authenticates a peer shows both trust flags.
    for c in TRUSTING_COMMANDS {
        let mut args = c.to_vec();
        args.push("--help");
        let help = stdout(&latchkey(home.path(), &args));
        assert!(
            help.contains("--trust <ID|NAME=ID|NAME>")
                && help.contains("--trust-any")
                && help.contains("--trust-on-first-use"),
            "{c:?}: {help}"
        );
    }
    let help = stdout(&latchkey(home.path(), &["node", "run", "--help"]));
    assert!(help.contains("--relay-trust <ID|NAME=ID|NAME>") && help.contains("--relay-trust-any"));
    let help = stdout(&latchkey(home.path(), &["relay", "run", "--help"]));
    for flag in [
        "--lease <SECS>",
        "--max-names-per-identity <N>",
        "--allow <ID=NAME>",
    ] {
        assert!(help.contains(flag), "relay run --help lacks {flag}: {help}");
    }
}

/// The commands that need `--trust ID` or `--trust-any`.
const TRUSTING_COMMANDS: &[&[&str]] = &[
    &["node", "run"],
    &["message", "receive"],
    &["portal", "outlet"],
    &["relay", "run"],
    &["channel", "open"],
    &["message", "send"],
    &["portal", "inlet"],
    &["channel", "listen-direct"],
    &["channel", "connect-direct"],
];

#[test]
fn node_without_trust_refuses_to_start() {
    let home = tempfile::tempdir().unwrap();
    let o = latchkey(home.path(), &["node", "run", "--tcp", "127.0.0.1:0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("needs to know which peers to trust")
            && err.contains("--trust ID")
            && err.contains("--trust-any"),
        "{err}"
    );
    // The same for every other command that authenticates a peer (arguments enough to get that far).
    let cases: &[&[&str]] = &[
        &["message", "receive", "--tcp", "127.0.0.1:0"],
        &["portal", "outlet", "--target", "127.0.0.1:1"],
        &["relay", "run", "--tcp", "127.0.0.1:0"],
        &["channel", "open", "--to", "127.0.0.1:1"],
        &["message", "send", "--to", "127.0.0.1:1", "hi"],
        &[
            "portal",
            "inlet",
            "--to",
            "127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
        ],
        &["channel", "listen-direct", "127.0.0.1:0"],
        &["channel", "connect-direct", "127.0.0.1:1", "hi"],
    ];
    for args in cases {
        let o = latchkey(home.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("--trust-any"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    // --relay needs its own trust, in JSON too.
    let o = latchkey(
        home.path(),
        &[
            "--json",
            "node",
            "run",
            "--trust-any",
            "--relay",
            "127.0.0.1:1",
            "--relay-name",
            "x",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let v: Value = serde_json::from_str(stderr(&o).lines().last().unwrap()).unwrap();
    assert_eq!(v["kind"], "usage");
    assert!(v["error"].as_str().unwrap().contains("--relay-trust-any"));
    // Both at once, or a malformed identifier: usage errors as well.
    let o = latchkey(
        home.path(),
        &["node", "run", "--trust-any", "--trust", "lk00"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = latchkey(home.path(), &["node", "run", "--trust", "lk00"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is not an identifier"),
        "{}",
        stderr(&o)
    );
    // A name is looked up among pinned peers (and stored identities); an unknown one is exit code 3.
    let o = latchkey(home.path(), &["node", "run", "--trust", "nobody"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no peer or identity named \"nobody\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn identity_lifecycle_and_errors() {
    let home = tempfile::tempdir().unwrap();
    let id = create(home.path(), "alice");
    assert!(id.starts_with("lk"));
    let o = latchkey(home.path(), &["identity", "create", "alice"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already exists"));

    let o = latchkey(home.path(), &["--json", "identity", "rotate", "alice"]);
    assert!(o.status.success());
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(
        v["identifier"],
        id.as_str(),
        "rotation keeps the identifier"
    );
    assert_eq!(v["changes"], 2);

    let o = latchkey(home.path(), &["identity", "show", "alice"]);
    assert!(stdout(&o).contains(&id) && stdout(&o).contains("changes:    2"));
    let o = latchkey(home.path(), &["identity", "list"]);
    assert!(stdout(&o).contains("alice"));

    let o = latchkey(home.path(), &["identity", "show", "nobody"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("unknown identity \"nobody\""));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let db = home.path().join("latchkey.sqlite3");
        assert_eq!(
            std::fs::metadata(db).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[test]
fn message_to_a_node_with_trust_and_refusal() {
    let home = tempfile::tempdir().unwrap();
    let alice = create(home.path(), "alice");
    create(home.path(), "bob");
    let server = create(home.path(), "server");
    let (_node, ready) = Running::start(
        home.path(),
        &[
            "node",
            "run",
            "--identity",
            "server",
            "--tcp",
            "127.0.0.1:0",
            "--trust",
            &alice,
        ],
    );
    let addr = ready["tcp"].as_str().unwrap();

    // A rotated identity keeps its identifier, so the server still trusts it.
    assert!(latchkey(home.path(), &["identity", "rotate", "alice"])
        .status
        .success());
    let o = latchkey(
        home.path(),
        &[
            "message",
            "send",
            "--identity",
            "alice",
            "--trust",
            &server,
            "--to",
            addr,
            "hello",
            "world",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "reply: hello\nreply: world\n");

    let o = latchkey(
        home.path(),
        &[
            "message",
            "send",
            "--identity",
            "bob",
            "--trust",
            &server,
            "--to",
            addr,
            "let me in",
        ],
    );
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("refused"), "{}", stderr(&o));

    // The client insists on a peer other than the server.
    let o = latchkey(
        home.path(),
        &[
            "message",
            "send",
            "--identity",
            "alice",
            "--trust",
            &alice,
            "--to",
            addr,
            "x",
        ],
    );
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("not trusted"), "{}", stderr(&o));
}

#[test]
fn unreachable_and_bad_addresses() {
    let home = tempfile::tempdir().unwrap();
    // A port with nothing listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = latchkey(
        home.path(),
        &[
            "message",
            "send",
            "--trust-any",
            "--to",
            &format!("127.0.0.1:{port}"),
            "hi",
        ],
    );
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot reach"));
    let o = latchkey(
        home.path(),
        &[
            "message",
            "send",
            "--trust-any",
            "--to",
            "not an address",
            "hi",
        ],
    );
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    let o = latchkey(
        home.path(),
        &[
            "--json",
            "channel",
            "open",
            "--trust-any",
            "--to",
            "127.0.0.1:notaport",
        ],
    );
    assert_eq!(o.status.code(), Some(6));
    let v: Value = serde_json::from_str(stderr(&o).lines().last().unwrap()).unwrap();
    assert_eq!(v["kind"], "bad_address");
    let o = latchkey(
        home.path(),
        &[
            "message",
            "send",
            "--identity",
            "ghost",
            "--trust-any",
            "--to",
            "127.0.0.1:1",
            "hi",
        ],
    );
    assert_eq!(o.status.code(), Some(3));
}

#[test]
fn through_a_relay_and_into_an_inbox() {
    let home = tempfile::tempdir().unwrap();
    let doorbell_id = create(home.path(), "doorbell");
    let phone_id = create(home.path(), "phone");
    let (_relay, ready) = Running::start(
        home.path(),
        &["relay", "run", "--tcp", "127.0.0.1:0", "--trust-any"],
    );
    let relay = ready["tcp"].as_str().unwrap().to_string();
    let relay_id = ready["identifier"].as_str().unwrap().to_string();
    assert_eq!(ready["lease_secs"], 30);
    let (mut doorbell, ready) = Running::start(
        home.path(),
        &[
            "message",
            "receive",
            "--identity",
            "doorbell",
            "--trust",
            &phone_id,
            "--relay",
            &relay,
            "--relay-name",
            "doorbell",
            "--relay-trust",
            &relay_id,
            "--count",
            "2",
        ],
    );
    assert_eq!(ready["identifier"], doorbell_id.as_str());
    assert_eq!(ready["relay"]["peer"], relay_id.as_str());

    // The name belongs to the doorbell's identity now: an impostor node cannot take it over.
    let o = latchkey(
        home.path(),
        &[
            "node",
            "run",
            "--trust-any",
            "--relay",
            &relay,
            "--relay-name",
            "doorbell",
            "--relay-trust-any",
        ],
    );
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("refused to register \"doorbell\"")
            && stderr(&o).contains("belongs to another identity"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("warning: --relay-trust-any"),
        "{}",
        stderr(&o)
    );

    // A node that insists on another identity as the relay does not register at all.
    let o = latchkey(
        home.path(),
        &[
            "node",
            "run",
            "--trust-any",
            "--relay",
            &relay,
            "--relay-name",
            "garage",
            "--relay-trust",
            &phone_id,
        ],
    );
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("not trusted"), "{}", stderr(&o));

    let o = latchkey(
        home.path(),
        &[
            "--json",
            "channel",
            "open",
            "--identity",
            "phone",
            "--trust",
            &doorbell_id,
            "--to",
            &relay,
            "--relay-name",
            "doorbell",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["peer"], doorbell_id.as_str());

    // The doorbell trusts only the phone: another identity gets no channel through the relay either.
    let o = latchkey(
        home.path(),
        &[
            "message",
            "send",
            "--trust",
            &doorbell_id,
            "--to",
            &relay,
            "--relay-name",
            "doorbell",
            "--timeout",
            "3",
            "--service",
            "inbox",
            "let me in",
        ],
    );
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));

    let o = latchkey(
        home.path(),
        &[
            "message",
            "send",
            "--identity",
            "phone",
            "--trust",
            &doorbell_id,
            "--to",
            &relay,
            "--relay-name",
            "doorbell",
            "--service",
            "inbox",
            "ding",
            "dong",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "delivered: ding\ndelivered: dong\n");
    let first: Value = serde_json::from_str(&doorbell.next_line()).unwrap();
    let second: Value = serde_json::from_str(&doorbell.next_line()).unwrap();
    assert_eq!(
        (first["message"].as_str(), second["message"].as_str()),
        (Some("ding"), Some("dong"))
    );
    assert_eq!(first["from"], phone_id.as_str());
    assert!(doorbell.wait().success());

    let o = latchkey(
        home.path(),
        &[
            "message",
            "send",
            "--trust-any",
            "--to",
            &relay,
            "--relay-name",
            "nobody",
            "--timeout",
            "2",
            "hi",
        ],
    );
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no such name"),
        "a specific error: {}",
        stderr(&o)
    );
}

#[test]
fn relay_allow_list_and_quota() {
    let home = tempfile::tempdir().unwrap();
    let doorbell = create(home.path(), "doorbell");
    create(home.path(), "stranger");
    let (_relay, ready) = Running::start(
        home.path(),
        &[
            "relay",
            "run",
            "--tcp",
            "127.0.0.1:0",
            "--trust-any",
            "--lease",
            "10",
            "--max-names-per-identity",
            "1",
            "--allow",
            &format!("{doorbell}=*"),
        ],
    );
    assert_eq!(ready["lease_secs"], 10);
    assert_eq!(ready["max_names_per_identity"], 1);
    let relay = ready["tcp"].as_str().unwrap().to_string();
    let relay_id = ready["identifier"].as_str().unwrap().to_string();
    let node = |identity: &str, name: &str| {
        vec![
            "node".to_string(),
            "run".into(),
            "--identity".into(),
            identity.into(),
            "--trust-any".into(),
            "--relay".into(),
            relay.clone(),
            "--relay-name".into(),
            name.into(),
            "--relay-trust".into(),
            relay_id.clone(),
        ]
    };
    // Not on the list: denied.
    let args = node("stranger", "stranger");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = latchkey(home.path(), &args);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("may not register"), "{}", stderr(&o));
    // On the list: its first name works, a second is over its quota.
    let args = node("doorbell", "front-door");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_first, ready) = Running::start(home.path(), &args);
    assert_eq!(ready["relay"]["name"], "front-door");
    let args = node("doorbell", "back-door");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = latchkey(home.path(), &args);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("as many relay names"), "{}", stderr(&o));
    // Malformed --allow and too short a lease are usage errors.
    let o = latchkey(
        home.path(),
        &[
            "relay",
            "run",
            "--tcp",
            "127.0.0.1:0",
            "--trust-any",
            "--allow",
            "x",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = latchkey(
        home.path(),
        &[
            "relay",
            "run",
            "--tcp",
            "127.0.0.1:0",
            "--trust-any",
            "--lease",
            "1",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// Starts `latchkey ARGS` (human output) and returns it with its stdout lines.
fn start_human(home: &Path, args: &[&str]) -> (KillOnDrop, std::sync::mpsc::Receiver<Vec<u8>>) {
    let mut child = Command::new(BIN)
        .env("LATCHKEY_HOME", home)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn latchkey");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    (KillOnDrop(child), lines)
}

#[test]
fn node_output_escapes_control_characters_from_peers() {
    let home = tempfile::tempdir().unwrap();
    let forged = "\nmessage from lk0000 forged\x1b[31m";
    let escaped = r"\nmessage from lk0000 forged\u{1b}[31m";
    let (mut node, lines) = start_human(
        home.path(),
        &[
            "node",
            "run",
            "--trust-any",
            "--tcp",
            "127.0.0.1:0",
            "--count",
            "1",
        ],
    );
    let next = || String::from_utf8(lines.recv_timeout(Duration::from_secs(20)).unwrap()).unwrap();
    let first = next();
    let node_id = first
        .trim()
        .strip_prefix("node identity ")
        .unwrap()
        .to_string();
    let second = next();
    let addr = second
        .trim()
        .strip_prefix("listening on tcp ")
        .unwrap()
        .to_string();
    let o = latchkey(
        home.path(),
        &[
            "message",
            "send",
            "--trust",
            &node_id,
            "--to",
            &addr,
            "--service",
            "inbox",
            forged,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The sender's own record stays on one line as well.
    assert_eq!(stdout(&o), format!("delivered: {escaped}\n"));
    assert!(!o.stdout.contains(&0x1b));
    let status = (0..200)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            node.0.try_wait().unwrap()
        })
        .expect("node exits after --count 1");
    assert!(status.success());
    let rest: Vec<Vec<u8>> = lines.try_iter().collect();
    let rest = rest.concat();
    assert!(!rest.contains(&0x1b), "raw ESC in the node's output");
    let rest = String::from_utf8(rest).unwrap();
    let printed: Vec<&str> = rest.lines().collect();
    assert_eq!(printed.len(), 1, "one record, one line: {rest:?}");
    assert!(
        printed[0].starts_with("message from lk") && printed[0].ends_with(&format!(": {escaped}")),
        "{rest:?}"
    );
    assert!(!printed[0].contains("lk0000 forged\x1b"));

    // --json carries the same escaped text as a plain string.
    let (mut node, ready) = Running::start(
        home.path(),
        &["node", "run", "--trust-any", "--tcp", "127.0.0.1:0"],
    );
    let addr = ready["tcp"].as_str().unwrap();
    let o = latchkey(
        home.path(),
        &[
            "message",
            "send",
            "--trust-any",
            "--to",
            addr,
            "--service",
            "inbox",
            forged,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let line = node.next_line();
    assert!(!line.contains('\x1b'));
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["message"], escaped);
}

#[test]
fn portal_between_two_processes() {
    let home = tempfile::tempdir().unwrap();
    let viewer = create(home.path(), "viewer");
    create(home.path(), "camera");
    // An ordinary TCP service: upper-cases what it reads.
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = service.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in service.incoming() {
            let mut s = stream.unwrap();
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).unwrap();
            s.write_all(&buf.to_ascii_uppercase()).unwrap();
        }
    });
    let (_outlet, ready) = Running::start(
        home.path(),
        &[
            "portal",
            "outlet",
            "--identity",
            "camera",
            "--trust",
            &viewer,
            "--tcp",
            "127.0.0.1:0",
            "--target",
            &target,
        ],
    );
    let outlet_addr = ready["tcp"].as_str().unwrap().to_string();
    let camera = ready["identifier"].as_str().unwrap().to_string();
    let (_inlet, ready) = Running::start(
        home.path(),
        &[
            "portal",
            "inlet",
            "--identity",
            "viewer",
            "--trust",
            &camera,
            "--to",
            &outlet_addr,
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let inlet = ready["listen"].as_str().unwrap();
    let mut client = TcpStream::connect(inlet).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    client.write_all(b"through the portal").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "THROUGH THE PORTAL");
}

#[test]
fn direct_tcp_listen_and_connect() {
    let home = tempfile::tempdir().unwrap();
    // Human output: the first line is the direct_peer-compatible "LISTENING <addr> <identifier>".
    let mut child = Command::new(BIN)
        .env("LATCHKEY_HOME", home.path())
        .args(["channel", "listen-direct", "127.0.0.1:0", "--trust-any"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _listener = KillOnDrop(child);
    let parts: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(parts[0], "LISTENING");
    let o = latchkey(
        home.path(),
        &[
            "channel",
            "connect-direct",
            parts[1],
            "--trust",
            parts[2],
            "ping",
            "pong",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("PEER {}\nREPLY echo: ping\nREPLY echo: pong\n", parts[2])
    );
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn message_over_udp() {
    let home = tempfile::tempdir().unwrap();
    let (_node, ready) = Running::start(
        home.path(),
        &["node", "run", "--trust-any", "--udp", "127.0.0.1:0"],
    );
    let addr = ready["udp"].as_str().unwrap();
    let o = latchkey(
        home.path(),
        &[
            "message",
            "send",
            "--trust-any",
            "--udp",
            "--to",
            addr,
            "over",
            "datagrams",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "reply: over\nreply: datagrams\n");
    // --trust-any is explicit, and says so.
    assert!(
        stderr(&o)
            .contains("warning: --trust-any: `message send` accepts any authenticated identity"),
        "{}",
        stderr(&o)
    );
}

/// The last line of stderr as the JSON error record `--json` promises.
fn json_error(o: &Output) -> Value {
    let err = stderr(o);
    let line = err.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {err:?}"))
}

#[test]
fn address_in_use_is_its_own_exit_code_not_bad_address() {
    let home = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let cases: &[&[&str]] = &[
        &["node", "run", "--trust-any", "--tcp", &taken_addr],
        &["relay", "run", "--trust-any", "--tcp", &taken_addr],
        &["channel", "listen-direct", &taken_addr, "--trust-any"],
    ];
    for args in cases {
        let o = latchkey(home.path(), args);
        assert_eq!(o.status.code(), Some(7), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("cannot listen on {taken_addr}")),
            "{args:?}: {}",
            stderr(&o)
        );
        let mut json = vec!["--json"];
        json.extend_from_slice(args);
        let o = latchkey(home.path(), &json);
        assert_eq!(o.status.code(), Some(7), "{args:?}: {}", stderr(&o));
        let v = json_error(&o);
        assert_eq!(v["kind"], "address_in_use", "{v}");
        assert_eq!(v["name"], "AddressInUse", "{v}");
        assert_eq!(v["code"], 7, "{v}");
    }
    // A malformed address is still "bad address" (6).
    let o = latchkey(
        home.path(),
        &[
            "--json",
            "node",
            "run",
            "--trust-any",
            "--tcp",
            "127.0.0.1:x",
        ],
    );
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert_eq!(json_error(&o)["name"], "BadAddress");
}

#[test]
fn an_invalid_identity_name_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    for name in ["has space", "", "../escape", &"x".repeat(65)] {
        let o = latchkey(home.path(), &["identity", "create", name]);
        assert_eq!(o.status.code(), Some(2), "{name:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.starts_with(&format!("error: invalid identity name {name:?}"))
                && err.contains("1-64 letters, digits"),
            "{name:?}: {err}"
        );
        assert!(!err.contains("storage error"), "{err}");
    }
    let o = latchkey(home.path(), &["--json", "identity", "create", "has space"]);
    assert_eq!(o.status.code(), Some(2));
    let v = json_error(&o);
    assert_eq!(
        (v["kind"].as_str(), v["code"].as_i64()),
        (Some("usage"), Some(2))
    );
    assert_eq!(v["name"], "InvalidArgument");
    assert!(stdout(&o).is_empty());
    // Nothing was stored.
    let o = latchkey(home.path(), &["--json", "identity", "list"]);
    assert!(
        o.status.success() && stdout(&o).is_empty(),
        "{}",
        stdout(&o)
    );
}

#[test]
fn usage_errors_honour_json() {
    let home = tempfile::tempdir().unwrap();
    let cases: &[&[&str]] = &[
        &["--json", "identity", "crate", "x"], // unknown subcommand
        &["--json", "node", "run", "--bogus"], // unknown flag
        &["identity", "create", "--json"],     // missing argument, --json after it
        &["--json", "relay", "run", "--trust-any", "--lease", "soon"], // invalid value
        &["--json", "identity"],               // missing subcommand
        &["--json", "node", "run", "--trust-any", "--trust", "lk00"], // conflicting flags
    ];
    for args in cases {
        let o = latchkey(home.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: one JSON object: {err}");
        let v = json_error(&o);
        assert_eq!(v["kind"], "usage", "{args:?}: {v}");
        assert_eq!(v["code"], 2, "{args:?}: {v}");
        assert_eq!(v["name"], "InvalidArgument", "{args:?}: {v}");
        assert!(!v["error"].as_str().unwrap().is_empty(), "{v}");
        assert!(stdout(&o).is_empty(), "{args:?}");
    }
    let v = json_error(&latchkey(
        home.path(),
        &["--json", "node", "run", "--bogus"],
    ));
    assert!(v["error"].as_str().unwrap().contains("'--bogus'"), "{v}");
    // The same errors without --json keep clap's report; --help with --json is still help.
    let o = latchkey(home.path(), &["node", "run", "--bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: unexpected argument '--bogus'")
            && stderr(&o).contains("Usage:")
    );
    let o = latchkey(home.path(), &["--json", "node", "run", "--help"]);
    assert!(o.status.success() && stdout(&o).contains("Usage:"));
    // A message that happens to read "--json" after `--` does not switch the output.
    let o = latchkey(home.path(), &["message", "send", "--bogus", "--", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("error:"), "{}", stderr(&o));
}

#[test]
fn json_identity_list_is_one_object_per_line_and_show_prints_utc_times() {
    let home = tempfile::tempdir().unwrap();
    let alice = create(home.path(), "alice");
    let bob = create(home.path(), "bob");
    let o = latchkey(home.path(), &["--json", "identity", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let records: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(records.len(), 2, "{}", stdout(&o));
    assert!(records.iter().all(Value::is_object));
    assert_eq!(
        (
            records[0]["name"].as_str(),
            records[0]["identifier"].as_str()
        ),
        (Some("alice"), Some(alice.as_str()))
    );
    assert_eq!(records[1]["identifier"], bob.as_str());

    // JSON keeps Unix seconds (and adds the same instant in RFC 3339); people read RFC 3339 UTC.
    let o = latchkey(home.path(), &["--json", "identity", "show", "alice"]);
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let created = v["created_at"]
        .as_i64()
        .expect("created_at stays Unix seconds");
    let utc = v["created_utc"].as_str().unwrap().to_string();
    let o = latchkey(home.path(), &["identity", "show", "alice"]);
    let shown = stdout(&o);
    let line = shown
        .lines()
        .find(|l| l.starts_with("created:"))
        .unwrap_or_else(|| panic!("{shown}"));
    let printed = line.trim_start_matches("created:").trim();
    assert_eq!(printed, utc);
    assert!(
        !shown.contains(&created.to_string()),
        "raw Unix seconds: {shown}"
    );
    // YYYY-MM-DDTHH:MM:SSZ, in the year of `created` (give or take one: the year length is averaged).
    let b = printed.as_bytes();
    assert_eq!(printed.len(), 20, "{printed}");
    assert_eq!(
        (b[4], b[7], b[10], b[13], b[16], b[19]),
        (b'-', b'-', b'T', b':', b':', b'Z')
    );
    let year: i64 = printed[..4].parse().unwrap();
    assert!(
        (year - (1970 + created / 31_556_952)).abs() <= 1,
        "{printed} vs {created}"
    );
}

// Pinned histories (docs/SECURITY.md "Pinned histories"): the doorbell and the phone each have a home of
// their own; an attacker's copy of the doorbell's home stands for a stolen old key (or a restored backup).

/// A copy of `home` as it is now (the database and, if any, its WAL), in a fresh directory.
fn copy_home(home: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(home).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    copy
}

/// Runs the doorbell node from `home` (trusting the phone by name) and returns it with its TCP address.
fn doorbell(home: &Path, phone: &str) -> (Running, String) {
    let (node, ready) = Running::start(
        home,
        &[
            "node",
            "run",
            "--identity",
            "doorbell",
            "--tcp",
            "127.0.0.1:0",
            "--trust",
            &format!("phone={phone}"),
        ],
    );
    let addr = ready["tcp"].as_str().unwrap().to_string();
    (node, addr)
}

/// The phone rings the doorbell at `addr`, trusting it as `trust` (an identifier, NAME=ID or a name).
fn ring(phone_home: &Path, trust: &str, addr: &str) -> Output {
    latchkey(
        phone_home,
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
}

fn error_json(o: &Output) -> Value {
    // The last line: log lines (warnings) may come before it.
    let err = stderr(o);
    serde_json::from_str(err.lines().last().unwrap_or_default())
        .unwrap_or_else(|_| panic!("not JSON: {err}"))
}

fn pinned_changes(home: &Path, peer: &str) -> u64 {
    let o = latchkey(home, &["--json", "peer", "show", peer]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    v["changes"].as_u64().unwrap()
}

#[test]
fn pinned_peer_refuses_a_rolled_back_history_and_accepts_a_rotation() {
    let (door_home, phone_home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let door = create(door_home.path(), "doorbell");
    let phone = create(phone_home.path(), "phone");
    // A backup of the doorbell's home from before the rotation (or a thief's copy of the old key).
    let old_home = copy_home(door_home.path());

    // First contact pins the doorbell's history under the name "doorbell".
    let (node, addr) = doorbell(door_home.path(), &phone);
    let o = ring(phone_home.path(), &format!("doorbell={door}"), &addr);
    assert!(o.status.success(), "{}", stderr(&o));
    drop(node);
    assert_eq!(pinned_changes(phone_home.path(), "doorbell"), 1);
    let o = latchkey(phone_home.path(), &["peer", "list"]);
    assert!(
        stdout(&o).contains("doorbell") && stdout(&o).contains(&door),
        "{}",
        stdout(&o)
    );

    // A legitimate rotation: accepted, and the pin follows it. `--trust doorbell` is the pinned name.
    assert!(
        latchkey(door_home.path(), &["identity", "rotate", "doorbell"])
            .status
            .success()
    );
    let (node, addr) = doorbell(door_home.path(), &phone);
    let o = ring(phone_home.path(), "doorbell", &addr);
    assert!(o.status.success(), "{}", stderr(&o));
    drop(node);
    assert_eq!(pinned_changes(phone_home.path(), "doorbell"), 2);

    // The old copy presents the history from before the rotation: a rollback, refused in the handshake.
    let (_node, addr) = doorbell(old_home.path(), &phone);
    let o = ring(phone_home.path(), "doorbell", &addr);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let e = error_json(&o);
    assert_eq!(e["name"], "HistoryRollback", "{e}");
    assert_eq!(e["kind"], "refused");
    assert!(stdout(&o).is_empty(), "no application data: {}", stdout(&o));
    assert_eq!(
        pinned_changes(phone_home.path(), "doorbell"),
        2,
        "the pin is unchanged"
    );

    // Forgetting the peer makes the next contact a first contact again.
    assert!(latchkey(phone_home.path(), &["peer", "forget", "doorbell"])
        .status
        .success());
    let o = latchkey(phone_home.path(), &["--json", "peer", "show", "doorbell"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(error_json(&o)["name"], "UnknownPeer");
    let o = ring(phone_home.path(), "doorbell", &addr);
    assert_eq!(
        o.status.code(),
        Some(3),
        "an unknown name is not guessed: {}",
        stderr(&o)
    );
}

#[test]
fn pinned_peer_refuses_a_fork_in_either_role() {
    let (door_home, phone_home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let door = create(door_home.path(), "doorbell");
    let phone = create(phone_home.path(), "phone");
    let (node, addr) = doorbell(door_home.path(), &phone);
    let o = ring(phone_home.path(), &format!("doorbell={door}"), &addr);
    assert!(o.status.success(), "{}", stderr(&o));
    drop(node);

    // Two rotations from the same state, in two copies of each home: the owner's and a thief's.
    let door_fork = copy_home(door_home.path());
    let phone_fork = copy_home(phone_home.path());
    for home in [door_home.path(), door_fork.path()] {
        assert!(latchkey(home, &["identity", "rotate", "doorbell"])
            .status
            .success());
    }
    for home in [phone_home.path(), phone_fork.path()] {
        assert!(latchkey(home, &["identity", "rotate", "phone"])
            .status
            .success());
    }
    // The owner's rotations are met first and pinned, on both sides.
    let (node, addr) = doorbell(door_home.path(), &phone);
    let o = ring(phone_home.path(), "doorbell", &addr);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(pinned_changes(phone_home.path(), "doorbell"), 2);
    assert_eq!(pinned_changes(door_home.path(), "phone"), 2);

    // Initiator side: the phone refuses the doorbell's fork.
    let (_fork_node, fork_addr) = doorbell(door_fork.path(), &phone);
    let o = ring(phone_home.path(), "doorbell", &fork_addr);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert_eq!(error_json(&o)["name"], "HistoryFork");
    assert_eq!(pinned_changes(phone_home.path(), "doorbell"), 2);

    // Responder side: the genuine doorbell refuses the phone's fork inside the handshake, and says why.
    let o = ring(phone_fork.path(), &door, &addr);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let e = error_json(&o);
    assert!(e["error"].as_str().unwrap().contains("HistoryFork"), "{e}");
    assert_eq!(pinned_changes(door_home.path(), "phone"), 2);
    drop(node);
}

#[test]
fn pinned_peer_refuses_a_fork_signed_by_an_expired_key_and_accepts_a_timely_rotation() {
    let (door_home, phone_home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A doorbell whose first key lives 5 seconds.
    let o = latchkey(
        door_home.path(),
        &[
            "--json",
            "identity",
            "create",
            "doorbell",
            "--key-lifetime",
            "5",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let created = std::time::Instant::now();
    let door: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let door = door["identifier"].as_str().unwrap().to_string();
    let phone = create(phone_home.path(), "phone");
    let (node, addr) = doorbell(door_home.path(), &phone);
    let o = ring(phone_home.path(), &format!("doorbell={door}"), &addr);
    assert!(o.status.success(), "{}", stderr(&o));
    drop(node);
    // The thief keeps a copy of the first key; the owner rotates in time (the phone does not see it yet).
    let stolen = copy_home(door_home.path());
    assert!(
        latchkey(door_home.path(), &["identity", "rotate", "doorbell"])
            .status
            .success()
    );
    assert!(
        created.elapsed() < Duration::from_secs(5),
        "too slow to rotate in time"
    );
    std::thread::sleep(Duration::from_secs(6).saturating_sub(created.elapsed()));

    // After the first key expired, the thief signs a rotation of its own with it.
    assert!(latchkey(stolen.path(), &["identity", "rotate", "doorbell"])
        .status
        .success());
    let (thief, thief_addr) = doorbell(stolen.path(), &phone);
    let o = ring(phone_home.path(), "doorbell", &thief_addr);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let e = error_json(&o);
    assert_eq!(e["name"], "KeyLifetimeExceeded", "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("rotation created after the previous key expired"),
        "{e}"
    );
    assert_eq!(pinned_changes(phone_home.path(), "doorbell"), 1);
    drop(thief);

    // The owner's rotation, made while the key was valid, is accepted now.
    let (_node, addr) = doorbell(door_home.path(), &phone);
    let o = ring(phone_home.path(), "doorbell", &addr);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(pinned_changes(phone_home.path(), "doorbell"), 2);
}

#[cfg(unix)]
#[test]
fn home_keeps_the_permissions_of_an_existing_directory_and_refuses_an_unsafe_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = Command::new(BIN)
        .args([
            "--home",
            home.to_str().unwrap(),
            "identity",
            "create",
            "alice",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mode = std::fs::metadata(&home).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o755,
        "--home must not change an existing directory's permissions"
    );
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o757)).unwrap();
    let o = Command::new(BIN)
        .args(["--home", home.to_str().unwrap(), "identity", "list"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("refusing to use") && stderr(&o).contains("writable by everyone"),
        "{}",
        stderr(&o)
    );
    let mode = std::fs::metadata(&home).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o757);
}

/// A TCP server that streams bytes to every connection until the client goes away: the "camera" behind a
/// portal outlet, with a download that never ends by itself.
fn endless_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let chunk = [0x5au8; 16 * 1024];
                while stream.write_all(&chunk).is_ok() {}
            });
        }
    });
    addr
}

/// A loopback address nobody listens on yet (so a killed process can be restarted on the same one).
fn free_address() -> String {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().to_string()
}

/// Connects to a portal inlet and reads until `n` bytes arrived; `None` if the portal gave less.
fn portal_download(inlet: &str, n: usize) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(inlet).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = 0;
    while got < n {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(k) => got += k,
        }
    }
    Some(stream)
}

/// Reads a download whose far end was killed until it ends: it must end with an error or EOF, not hang.
/// Returns how it ended.
fn download_ends(mut stream: TcpStream) -> String {
    // Generous: a hang is what this catches, not speed (the portal resets clients when its channel dies).
    stream
        .set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return "end of stream".into(),
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("the download in flight hung after its far end was killed")
            }
            Err(e) => return format!("error: {e}"),
        }
    }
}

/// Retries `attempt` (each try bounded by its own timeouts) until it succeeds; returns the seconds it took.
fn within(what: &str, limit: Duration, mut attempt: impl FnMut() -> bool) -> f64 {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if attempt() {
            return start.elapsed().as_secs_f64();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what}: not within {limit:?}");
}

/// Issue 12's recovery story with real processes and `kill -9`: a relay, a doorbell node registered at it
/// by name with a portal outlet, and a phone's portal inlet reaching the doorbell by name. The relay is
/// killed and restarted, then the doorbell's node: each time a download in flight ends with an error (no
/// hang), the doorbell is reachable by name again and the portal serves new connections, with no other
/// process restarted by hand.
#[test]
fn relay_and_outlet_killed_and_restarted_the_portal_recovers() {
    let homes = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (relay_home, door_home) = (homes.0.path(), homes.1.path());
    let phone_home = tempfile::tempdir().unwrap();
    let relay_id = create(relay_home, "relay");
    let door_id = create(door_home, "door");
    let camera = endless_server();
    let relay_addr = free_address();

    let relay_args = [
        "relay",
        "run",
        "--identity",
        "relay",
        "--tcp",
        &relay_addr,
        "--trust-any",
    ];
    let door_args = [
        "node",
        "run",
        "--identity",
        "door",
        "--trust-any",
        "--relay",
        &relay_addr,
        "--relay-name",
        "door",
        "--relay-trust",
        &relay_id,
        "--outlet",
        &camera,
    ];
    let (mut relay, ready) = Running::start(relay_home, &relay_args);
    assert_eq!(ready["identifier"], relay_id.as_str());
    let (mut door, ready) = Running::start(door_home, &door_args);
    assert_eq!(ready["relay"]["peer"], relay_id.as_str());
    let (_inlet, ready) = Running::start(
        phone_home.path(),
        &[
            "portal",
            "inlet",
            "--to",
            &relay_addr,
            "--relay-name",
            "door",
            "--trust",
            &door_id,
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(ready["peer"], door_id.as_str());
    let inlet = ready["listen"].as_str().unwrap().to_string();
    let reachable = || {
        let o = latchkey(
            phone_home.path(),
            &[
                "message",
                "send",
                "--trust",
                &door_id,
                "--to",
                &relay_addr,
                "--relay-name",
                "door",
                "--timeout",
                "3",
                "--service",
                "echo",
                "ping",
            ],
        );
        o.status.success()
    };
    assert!(
        reachable(),
        "the doorbell is reachable by name before any kill"
    );

    for victim in ["relay", "doorbell"] {
        let download = portal_download(&inlet, 256 * 1024).expect("a download through the portal");
        let (home, args, process): (&Path, &[&str], &mut Running) = match victim {
            "relay" => (relay_home, &relay_args, &mut relay),
            _ => (door_home, &door_args, &mut door),
        };
        // kill -9 (Child::kill sends SIGKILL) and a restart with the same identity and address.
        process.child.kill().unwrap();
        process.child.wait().unwrap();
        let (restarted, _) = Running::start(home, args);
        *process = restarted;
        let ended = download_ends(download);
        let by_name = within(
            &format!("the doorbell reachable by name after the {victim} restart"),
            Duration::from_secs(60),
            reachable,
        );
        let portal = within(
            &format!("the portal serving new connections after the {victim} restart"),
            Duration::from_secs(60),
            || portal_download(&inlet, 64 * 1024).is_some(),
        );
        eprintln!(
            "{victim} killed: download in flight ended ({ended}); reachable by name after {by_name:.1} s, \
             portal serving after {portal:.1} s more"
        );
    }
}

/// `message send` to a service the node does not have fails at once with a specific error (the far end
/// answers UNDELIVERED), instead of printing "delivered" or waiting for a timeout; one the node has still
/// works on the same run.
#[test]
fn a_message_to_no_such_service_fails_fast_and_says_so() {
    let home = tempfile::tempdir().unwrap();
    let (_node, ready) = Running::start(
        home.path(),
        &["node", "run", "--tcp", "127.0.0.1:0", "--trust-any"],
    );
    let addr = ready["tcp"].as_str().unwrap().to_string();
    let send = |service: &str| {
        latchkey(
            home.path(),
            &[
                "message",
                "send",
                "--trust-any",
                "--to",
                &addr,
                "--service",
                service,
                "--timeout",
                "30",
                "x",
            ],
        )
    };
    let o = send("nosuch");
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no such service \"nosuch\""),
        "a specific error: {}",
        stderr(&o)
    );
    assert!(!stdout(&o).contains("delivered"), "{}", stdout(&o));
    let o = send("inbox");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "delivered: x\n");
}

#[test]
fn suite_flag_chooses_the_routed_channel_suite_and_a_refused_offer_is_unsupported_suite() {
    let home = tempfile::tempdir().unwrap();
    // A node that offers and accepts ChaCha20-Poly1305 only.
    let (_node, ready) = Running::start(
        home.path(),
        &[
            "node",
            "run",
            "--trust-any",
            "--suite",
            "chachapoly",
            "--tcp",
            "127.0.0.1:0",
        ],
    );
    let addr = ready["tcp"].as_str().unwrap();
    let send = |suite: &str| {
        latchkey(
            home.path(),
            &[
                "--json",
                "message",
                "send",
                "--trust-any",
                "--suite",
                suite,
                "--to",
                addr,
                "--service",
                "inbox",
                "hi",
            ],
        )
    };
    // An AES-GCM offer is refused at once, by name (exit 5, like every refusal).
    let o = send("aesgcm");
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("UnsupportedSuite"), "{}", stderr(&o));
    // ChaChaPoly, and `auto` (which falls back to ChaChaPoly once when its AES-GCM offer is refused).
    for suite in ["chachapoly", "auto"] {
        let o = send(suite);
        assert!(o.status.success(), "--suite {suite}: {}", stderr(&o));
    }
    // Anything else is a usage error.
    let o = send("rot13");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
