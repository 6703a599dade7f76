//! Enrollment across processes over loopback TCP: `latchkey authority serve` in one process, `latchkey
//! enroll` in others. A token enrolls once; 100 processes racing for one single-use token make one member;
//! an expired token fails; `kill -9` of the authority during a burst loses no acknowledged member and
//! consumes no token without its member.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;
use common::{identifier_of, latchkey, ok, Killed, BIN};

/// `latchkey authority serve` on a free port; returns the process and its address.
fn serve(home: &Path, name: &str, port: Option<u16>) -> (Child, String) {
    let listen = format!("127.0.0.1:{}", port.unwrap_or(0));
    let mut child = Command::new(BIN)
        .env("LATCHKEY_HOME", home)
        .args(["--json", "authority", "serve", name, "--listen", &listen])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn latchkey");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value = serde_json::from_str(&line).expect("ready line");
    (child, ready["tcp"].as_str().unwrap().to_string())
}

fn token(home: &Path, authority: &str, extra: &[&str]) -> String {
    let mut args = vec!["token", "create", "--authority", authority];
    args.extend_from_slice(extra);
    ok(home, &args)
}

fn spawn_enroll(home: &Path, identity: &str, to: &str, token: &str) -> Child {
    Command::new(BIN)
        .env("LATCHKEY_HOME", home)
        .args([
            "--json",
            "enroll",
            "--identity",
            identity,
            "--to",
            to,
            "--token",
            token,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn enroll")
}

fn members(home: &Path, authority: &str) -> Vec<String> {
    let out = ok(home, &["--json", "authority", "members", authority]);
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["identifier"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn a_token_enrolls_once_the_second_use_and_an_expired_token_fail() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    ok(home, &["authority", "create", "auth"]);
    let (server, addr) = serve(home, "auth", None);
    let _server = Killed(server);
    let t = token(home, "auth", &["--attr", "role=engineer"]);
    // `lkt` + hex of at most 96 bytes (a QR code carries the bytes).
    assert!(
        (t.len() - 3) / 2 <= 96,
        "token of {} bytes",
        (t.len() - 3) / 2
    );
    eprintln!("enrollment token: {} bytes", (t.len() - 3) / 2);

    ok(home, &["identity", "create", "dev1"]);
    ok(home, &["identity", "create", "dev2"]);
    let first = ok(
        home,
        &["enroll", "--identity", "dev1", "--to", &addr, "--token", &t],
    );
    assert!(first.contains("role=engineer"), "{first}");
    // The credential is saved, shows the attributes, and verifies against the authority's history.
    let shown = ok(home, &["credential", "show", "--identity", "dev1"]);
    assert!(shown.contains("role=engineer"), "{shown}");
    let hist = home.join("auth.history");
    ok(
        home,
        &[
            "authority",
            "export-history",
            "auth",
            "--output",
            hist.to_str().unwrap(),
        ],
    );
    ok(
        home,
        &[
            "credential",
            "verify",
            "--identity",
            "dev1",
            "--authority-history",
            hist.to_str().unwrap(),
        ],
    );

    // The same token again, for another device: refused (exit 5).
    let second = latchkey(
        home,
        &["enroll", "--identity", "dev2", "--to", &addr, "--token", &t],
    );
    assert_eq!(second.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&second.stderr).contains("used up"));

    // An expired token.
    let short = token(home, "auth", &["--ttl", "1"]);
    std::thread::sleep(Duration::from_millis(2100));
    let expired = latchkey(
        home,
        &[
            "enroll",
            "--identity",
            "dev2",
            "--to",
            &addr,
            "--token",
            &short,
        ],
    );
    assert_eq!(expired.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&expired.stderr).contains("expired"));

    assert_eq!(members(home, "auth"), vec![identifier_of(home, "dev1")]);
}

#[test]
fn a_hundred_enroll_processes_racing_for_one_single_use_token_make_one_member() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    ok(home, &["authority", "create", "auth"]);
    let (server, addr) = serve(home, "auth", None);
    let _server = Killed(server);
    let t = token(home, "auth", &[]);
    for i in 0..100 {
        ok(home, &["identity", "create", &format!("d{i}")]);
    }
    let children: Vec<Child> = (0..100)
        .map(|i| spawn_enroll(home, &format!("d{i}"), &addr, &t))
        .collect();
    let mut codes = Vec::new();
    for c in children {
        codes.push(c.wait_with_output().unwrap().status.code());
    }
    let wins = codes.iter().filter(|c| **c == Some(0)).count();
    let refused = codes.iter().filter(|c| **c == Some(5)).count();
    assert_eq!((wins, refused), (1, 99), "{codes:?}");
    assert_eq!(members(home, "auth").len(), 1);
}

#[test]
fn kill_9_of_the_authority_during_a_burst_loses_no_acknowledged_member_and_no_token() {
    const N: usize = 60;
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    ok(home, &["authority", "create", "auth"]);
    let tokens: Vec<String> = (0..N).map(|_| token(home, "auth", &[])).collect();
    for i in 0..N {
        ok(home, &["identity", "create", &format!("d{i}")]);
    }
    let (server, addr) = serve(home, "auth", None);
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let mut server = Some(server);

    // Device i enrolls with token i, ten at a time; the authority is killed with SIGKILL once ten have been
    // acknowledged, while the rest are in flight.
    let mut acknowledged = Vec::new();
    let mut children: Vec<(usize, Child)> = Vec::new();
    let mut next = 0;
    while next < N || !children.is_empty() {
        while children.len() < 10 && next < N {
            children.push((
                next,
                spawn_enroll(home, &format!("d{next}"), &addr, &tokens[next]),
            ));
            next += 1;
        }
        let (i, c) = children.remove(0);
        if c.wait_with_output().unwrap().status.success() {
            acknowledged.push(i);
        }
        if acknowledged.len() >= 10 {
            if let Some(mut s) = server.take() {
                s.kill().unwrap(); // SIGKILL
                s.wait().unwrap();
            }
        }
    }
    assert!(acknowledged.len() >= 10);
    assert!(acknowledged.len() < N, "the kill came too late to matter");

    // Restart on the same port: integrity holds (checked by `members`), every acknowledged device is a member.
    let (server, addr) = serve(home, "auth", Some(port));
    let _server = Killed(server);
    let present = members(home, "auth");
    for i in &acknowledged {
        assert!(
            present.contains(&identifier_of(home, &format!("d{i}"))),
            "acknowledged device d{i} was lost"
        );
    }
    // No token was consumed without its member, and none is used twice: a new device with token i succeeds
    // exactly when device i is not a member.
    let mut reused = 0;
    for (i, token) in tokens.iter().enumerate() {
        let name = format!("late{i}");
        ok(home, &["identity", "create", &name]);
        let member = present.contains(&identifier_of(home, &format!("d{i}")));
        let o = latchkey(
            home,
            &[
                "enroll",
                "--identity",
                &name,
                "--to",
                &addr,
                "--token",
                token,
            ],
        );
        assert_eq!(
            o.status.success(),
            !member,
            "token {i}: member={member}, late enrollment: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        reused += usize::from(o.status.success());
    }
    assert_eq!(members(home, "auth").len(), present.len() + reused);
    assert_eq!(present.len() + reused, N);
    eprintln!(
        "{} acknowledged before the kill, {} members after restart, {} tokens still unused",
        acknowledged.len(),
        present.len(),
        reused
    );
}

#[test]
fn policies_and_the_car_for_a_day_delegation_from_the_command_line() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    // Policy: stored at an authority, checked; a syntax error points at the column.
    ok(home, &["authority", "create", "auth"]);
    let p = r#"subject.role = "engineer" and resource.name = "telemetry""#;
    ok(
        home,
        &["policy", "set", "--authority", "auth", "telemetry", p],
    );
    ok(
        home,
        &[
            "policy",
            "check",
            "--authority",
            "auth",
            "--name",
            "telemetry",
            "--subject",
            "role=engineer",
            "--resource",
            "name=telemetry",
        ],
    );
    let denied = latchkey(
        home,
        &[
            "policy",
            "check",
            "--authority",
            "auth",
            "--name",
            "telemetry",
            "--subject",
            "role=engineer",
            "--resource",
            "name=control",
        ],
    );
    assert_eq!(denied.status.code(), Some(5));
    let bad = latchkey(home, &["policy", "check", "subject.role = = 1"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("column"));

    // The car-for-a-day story: the owner lends the car to a friend for day 1; the friend lends "open" only
    // to a neighbour; widening is refused; day 2 is refused.
    for name in ["owner", "friend", "neighbour"] {
        ok(home, &["identity", "create", name]);
    }
    let day1_end = "1900000000";
    let chain = home.join("friend.chain");
    let c = chain.to_str().unwrap();
    ok(
        home,
        &[
            "delegate",
            "issue",
            "--identity",
            "owner",
            "--to",
            "friend",
            "--resource",
            "car",
            "--action",
            "open",
            "--action",
            "start",
            "--not-after",
            day1_end,
            "--output",
            c,
        ],
    );
    let verify = |chain: &str, presenter: &str, action: &str, now: &str| {
        latchkey(
            home,
            &[
                "delegate",
                "verify",
                "--chain",
                chain,
                "--owner",
                "owner",
                "--presenter",
                presenter,
                "--resource",
                "car",
                "--action",
                action,
                "--now",
                now,
            ],
        )
        .status
        .code()
    };
    assert_eq!(verify(c, "friend", "start", "1899990000"), Some(0));
    assert_eq!(
        verify(c, "friend", "start", day1_end),
        Some(5),
        "day 2 must be refused"
    );
    assert_eq!(
        verify(c, "neighbour", "start", "1899990000"),
        Some(5),
        "not the holder"
    );

    let narrower = home.join("neighbour.chain");
    let n = narrower.to_str().unwrap();
    ok(
        home,
        &[
            "delegate",
            "attenuate",
            "--identity",
            "friend",
            "--chain",
            c,
            "--to",
            "neighbour",
            "--resource",
            "car",
            "--action",
            "open",
            "--not-after",
            "1899995000",
            "--output",
            n,
        ],
    );
    assert_eq!(verify(n, "neighbour", "open", "1899990000"), Some(0));
    assert_eq!(verify(n, "neighbour", "start", "1899990000"), Some(5));
    let wider = latchkey(
        home,
        &[
            "delegate",
            "attenuate",
            "--identity",
            "friend",
            "--chain",
            c,
            "--to",
            "neighbour",
            "--resource",
            "car",
            "--action",
            "open",
            "--action",
            "drive",
            "--not-after",
            "1899995000",
            "--output",
            n,
        ],
    );
    assert_eq!(
        wider.status.code(),
        Some(5),
        "a widened caveat must be refused"
    );
    // A chain with a flipped byte (a forged link) is refused.
    let mut forged = std::fs::read(&chain).unwrap();
    let last = forged.len() - 10;
    forged[last] ^= 1;
    let f = home.join("forged.chain");
    std::fs::write(&f, forged).unwrap();
    assert_ne!(
        verify(f.to_str().unwrap(), "friend", "open", "1899990000"),
        Some(0)
    );
}

/// `latchkey --json ARGS` running in the background; returns it and its first JSON line.
fn start(home: &Path, args: &[&str]) -> (Child, Value) {
    let mut child = Command::new(BIN)
        .env("LATCHKEY_HOME", home)
        .arg("--json")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn latchkey");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, serde_json::from_str(&line).expect("ready line"))
}

#[test]
fn enrollment_through_the_relay_mailbox_while_the_authority_is_down_succeeds_after_it_returns() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let mail = home.join("mail.sqlite3");
    let (relay, ready) = start(
        home,
        &[
            "relay",
            "run",
            "--tcp",
            "127.0.0.1:0",
            "--trust-any",
            "--mailbox",
            mail.to_str().unwrap(),
        ],
    );
    let _relay = Killed(relay);
    let relay_addr = ready["tcp"].as_str().unwrap().to_string();

    ok(home, &["authority", "create", "auth"]);
    let t = token(home, "auth", &["--attr", "role=meter"]);
    // The authority comes up once (opens its mailbox, publishes its bundle), then goes down.
    let (authority, _) = start(
        home,
        &[
            "authority",
            "serve",
            "auth",
            "--listen",
            "127.0.0.1:0",
            "--relay",
            &relay_addr,
        ],
    );
    std::thread::sleep(Duration::from_millis(1000));
    drop(Killed(authority));

    // The device enrolls through the relay while the authority is down: it waits.
    ok(home, &["identity", "create", "meter"]);
    let device = Command::new(BIN)
        .env("LATCHKEY_HOME", home)
        .args([
            "--json",
            "enroll",
            "--identity",
            "meter",
            "--relay",
            &relay_addr,
            "--token",
            &t,
            "--wait",
            "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut device = Killed(device);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        device.0.try_wait().unwrap().is_none(),
        "enrolled while the authority was down"
    );
    assert!(members(home, "auth").is_empty());

    // The authority returns: it collects the request and answers through the relay.
    let (authority, _) = start(
        home,
        &[
            "authority",
            "serve",
            "auth",
            "--listen",
            "127.0.0.1:0",
            "--relay",
            &relay_addr,
        ],
    );
    let _authority = Killed(authority);
    let mut status = None;
    for _ in 0..300 {
        if let Some(s) = device.0.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = status.expect("the device got no answer after the authority returned");
    let mut err = String::new();
    std::io::Read::read_to_string(device.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "enroll failed: {err}");
    assert_eq!(members(home, "auth"), vec![identifier_of(home, "meter")]);
    let shown = ok(home, &["credential", "show", "--identity", "meter"]);
    assert!(shown.contains("role=meter"), "{shown}");
}

#[test]
fn the_engineers_credential_opens_the_machines_telemetry_and_nothing_else_across_processes() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    ok(home, &["authority", "create", "auth"]);
    let (server, auth_addr) = serve(home, "auth", None);
    let _server = Killed(server);
    let hist = home.join("auth.history");
    ok(
        home,
        &[
            "authority",
            "export-history",
            "auth",
            "--output",
            hist.to_str().unwrap(),
        ],
    );
    for name in ["machine", "engineer", "visitor"] {
        ok(home, &["identity", "create", name]);
    }
    let t = token(home, "auth", &["--attr", "role=engineer"]);
    ok(
        home,
        &[
            "enroll",
            "--identity",
            "engineer",
            "--to",
            &auth_addr,
            "--token",
            &t,
        ],
    );
    let policy =
        r#"subject.role = "engineer" and resource.name = "telemetry" and action.name = "read""#;
    let (machine, ready) = start(
        home,
        &[
            "policy",
            "enforce",
            "--identity",
            "machine",
            "--tcp",
            "127.0.0.1:0",
            "--authority-history",
            hist.to_str().unwrap(),
            "--authority-at",
            &auth_addr,
            "--refetch",
            "1",
            "--service",
            "telemetry",
            "--service",
            "control",
            "--policy",
            policy,
        ],
    );
    let _machine = Killed(machine);
    let machine_addr = ready["tcp"].as_str().unwrap().to_string();
    let machine_id = identifier_of(home, "machine");
    let send = |who: &str, service: &str| {
        latchkey(
            home,
            &[
                "message",
                "send",
                "--identity",
                who,
                "--to",
                &machine_addr,
                "--trust",
                &machine_id,
                "--service",
                service,
                "--expect-reply",
                "--timeout",
                "3",
                "ping",
            ],
        )
    };
    let telemetry = send("engineer", "telemetry");
    assert!(
        telemetry.status.success(),
        "{}",
        String::from_utf8_lossy(&telemetry.stderr)
    );
    assert!(String::from_utf8_lossy(&telemetry.stdout).contains("reply: ping"));
    // The same credential does not open control: the machine's guard refuses the message, and the channel
    // reports it undelivered at once (exit 4, "does not admit this channel").
    let control = send("engineer", "control");
    let why = String::from_utf8_lossy(&control.stderr).into_owned();
    assert_eq!(control.status.code(), Some(4), "{why}");
    assert!(why.contains("does not admit"), "{why}");
    assert!(!String::from_utf8_lossy(&control.stdout).contains("reply"));
    // Without a credential there is no channel at all.
    let visitor = send("visitor", "telemetry");
    assert_eq!(
        visitor.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&visitor.stderr)
    );

    // Revoked (by another process, on the authority's store): the machine learns it at its next fetch
    // (every second here) and refuses the engineer's new channels.
    let engineer_id = identifier_of(home, "engineer");
    ok(
        home,
        &[
            "revoke",
            "--authority",
            "auth",
            "--identifier",
            &engineer_id,
        ],
    );
    let mut refused = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        if send("engineer", "telemetry").status.code() == Some(5) {
            refused = true;
            break;
        }
    }
    assert!(refused, "the revoked engineer still reaches telemetry");
}
