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
    ];
    let home = tempfile::tempdir().unwrap();
    for c in commands {
        let mut args = c.to_vec();
        args.push("--help");
        let o = latchkey(home.path(), &args);
        assert!(o.status.success(), "{c:?} --help failed");
        assert!(stdout(&o).contains("Usage:"), "{c:?}");
    }
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
    create(home.path(), "server");
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
            "--to",
            &format!("127.0.0.1:{port}"),
            "hi",
        ],
    );
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot reach"));
    let o = latchkey(
        home.path(),
        &["message", "send", "--to", "not an address", "hi"],
    );
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    let o = latchkey(
        home.path(),
        &["--json", "channel", "open", "--to", "127.0.0.1:notaport"],
    );
    assert_eq!(o.status.code(), Some(6));
    let v: Value = serde_json::from_str(stderr(&o).lines().last().unwrap()).unwrap();
    assert_eq!(v["kind"], "bad_address");
    // Listening on a port that is taken.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let o = latchkey(home.path(), &["node", "run", "--tcp", &taken_addr]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot listen on"), "{}", stderr(&o));
    let o = latchkey(
        home.path(),
        &[
            "message",
            "send",
            "--identity",
            "ghost",
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
    let (_relay, ready) = Running::start(home.path(), &["relay", "run", "--tcp", "127.0.0.1:0"]);
    let relay = ready["tcp"].as_str().unwrap().to_string();
    let (mut doorbell, ready) = Running::start(
        home.path(),
        &[
            "message",
            "receive",
            "--relay",
            &relay,
            "--relay-name",
            "doorbell",
            "--count",
            "2",
        ],
    );
    let doorbell_id = ready["identifier"].as_str().unwrap().to_string();

    // The name belongs to the doorbell's identity now: an impostor node cannot take it over.
    let o = latchkey(
        home.path(),
        &["node", "run", "--relay", &relay, "--relay-name", "doorbell"],
    );
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("belongs to another identity"),
        "{}",
        stderr(&o)
    );

    let o = latchkey(
        home.path(),
        &[
            "--json",
            "channel",
            "open",
            "--to",
            &relay,
            "--relay-name",
            "doorbell",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["peer"], doorbell_id.as_str());

    let o = latchkey(
        home.path(),
        &[
            "message",
            "send",
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
    assert!(doorbell.wait().success());

    let o = latchkey(
        home.path(),
        &[
            "message",
            "send",
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
}

#[test]
fn portal_between_two_processes() {
    let home = tempfile::tempdir().unwrap();
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
            "--tcp",
            "127.0.0.1:0",
            "--target",
            &target,
        ],
    );
    let outlet_addr = ready["tcp"].as_str().unwrap().to_string();
    let (_inlet, ready) = Running::start(
        home.path(),
        &[
            "portal",
            "inlet",
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
        .args(["channel", "listen-direct", "127.0.0.1:0"])
        .stdout(Stdio::piped())
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
    let (_node, ready) = Running::start(home.path(), &["node", "run", "--udp", "127.0.0.1:0"]);
    let addr = ready["udp"].as_str().unwrap();
    let o = latchkey(
        home.path(),
        &[
            "message",
            "send",
            "--udp",
            "--to",
            addr,
            "over",
            "datagrams",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "reply: over\nreply: datagrams\n");
}
