//! Authorities and policies on running nodes, across real processes over loopback TCP: `latchkey node run
//! --authority … --policy …` guards its services and its portal outlet on every message; `latchkey revoke`
//! run in a separate process closes a live channel at the node (the serving authority notices the store
//! change and pushes).

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{identifier_of, latchkey, ok, Killed, BIN};

/// `latchkey --json ARGS` in the background (stderr to `log`, if given); returns it and its first JSON line.
fn start(home: &Path, args: &[&str], log: Option<&Path>) -> (Killed, Value) {
    let stderr = match log {
        Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
        None => Stdio::inherit(),
    };
    let mut child = Command::new(BIN)
        .env("LATCHKEY_HOME", home)
        .arg("--json")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn latchkey");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready = serde_json::from_str(&line).unwrap_or_else(|e| panic!("ready line {line:?}: {e}"));
    (Killed(child), ready)
}

/// An authority `auth` serving on a free port, its exported history in `auth.history`, and `members`
/// enrolled with the given attributes. Returns the server and its address.
fn authority_with_members(home: &Path, members: &[(&str, &[&str])]) -> (Killed, String) {
    ok(home, &["authority", "create", "auth"]);
    let (server, ready) = start(
        home,
        &["authority", "serve", "auth", "--listen", "127.0.0.1:0"],
        None,
    );
    let addr = ready["tcp"].as_str().unwrap().to_string();
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
    for (name, attrs) in members {
        ok(home, &["identity", "create", name]);
        let mut args = vec!["token", "create", "--authority", "auth"];
        for a in *attrs {
            args.extend(["--attr", a]);
        }
        let token = ok(home, &args);
        ok(
            home,
            &[
                "enroll",
                "--identity",
                name,
                "--to",
                &addr,
                "--token",
                &token,
            ],
        );
    }
    (server, addr)
}

/// A TCP service that answers every connection with "hello" and then echoes.
fn hello_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let _ = s.write_all(b"hello");
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Connects to a portal inlet and reads what the far service says first (`None`: reset or closed first).
fn greeting(inlet: &str) -> Option<(TcpStream, Vec<u8>)> {
    let mut s = TcpStream::connect(inlet).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = [0u8; 5];
    match s.read_exact(&mut buf) {
        Ok(()) => Some((s, buf.to_vec())),
        Err(_) => None,
    }
}

fn write_policy(home: &Path, name: &str, text: &str) -> String {
    let p = home.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn the_maintenance_engineer_opens_telemetry_not_control_and_the_outlet_refuses_a_credential_without_the_attribute(
) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let (_auth, auth_addr) = authority_with_members(
        home,
        &[
            ("engineer", &["role=engineer"]),
            ("fitter", &["role=engineer", "portal=yes"]),
        ],
    );
    ok(home, &["identity", "create", "machine"]);
    ok(home, &["identity", "create", "visitor"]);
    let telemetry = write_policy(
        home,
        "telemetry.policy",
        r#"subject.role = "engineer" and resource.name = "telemetry" and action.name = "send""#,
    );
    let control = write_policy(home, "control.policy", r#"subject.role = "operator""#);
    let outlet = write_policy(home, "outlet.policy", r#"subject.portal = "yes""#);
    let target = hello_server();
    let hist = home.join("auth.history");
    let (_machine, ready) = start(
        home,
        &[
            "node",
            "run",
            "--identity",
            "machine",
            "--tcp",
            "127.0.0.1:0",
            "--authority",
            hist.to_str().unwrap(),
            "--authority-at",
            &auth_addr,
            "--echo",
            "telemetry",
            "--echo",
            "control",
            "--policy",
            &format!("telemetry={telemetry}"),
            "--policy",
            &format!("control={control}"),
            "--outlet",
            &target,
            "--policy",
            &format!("outlet={outlet}"),
        ],
        None,
    );
    assert_eq!(ready["trust"]["authorities"], 1, "{ready}");
    assert_eq!(ready["trust"]["authority_reachable"], true, "{ready}");
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
                "5",
                "ping",
            ],
        )
    };
    let t = send("engineer", "telemetry");
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    assert!(String::from_utf8_lossy(&t.stdout).contains("reply: ping"));
    // Control's policy wants an operator: the message is refused and the engineer hears only that the
    // service does not admit its channel (no policy text).
    let c = send("engineer", "control");
    let why = String::from_utf8_lossy(&c.stderr).into_owned();
    assert_eq!(c.status.code(), Some(4), "{why}");
    assert!(why.contains("does not admit"), "{why}");
    assert!(!why.contains("operator"), "the policy leaked: {why}");
    // Without a credential there is no channel at all.
    let v = send("visitor", "telemetry");
    assert_eq!(
        v.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );

    // The portal outlet: the fitter's credential has portal=yes and gets through; the engineer's lacks it
    // and its connection is refused (the client sees a reset, never the service's greeting).
    let inlet = |who: &str| {
        start(
            home,
            &[
                "portal",
                "inlet",
                "--identity",
                who,
                "--to",
                &machine_addr,
                "--trust",
                &machine_id,
                "--listen",
                "127.0.0.1:0",
            ],
            None,
        )
    };
    let (_fitter_inlet, r) = inlet("fitter");
    let (_, hello) = greeting(r["listen"].as_str().unwrap()).expect("the fitter's portal works");
    assert_eq!(hello, b"hello");
    let (_engineer_inlet, r) = inlet("engineer");
    assert!(
        greeting(r["listen"].as_str().unwrap()).is_none(),
        "the outlet let a credential without portal=yes through"
    );
}

#[test]
fn latchkey_revoke_in_another_process_closes_a_live_channel_at_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let (_auth, auth_addr) = authority_with_members(home, &[("fitter", &["portal=yes"])]);
    ok(home, &["identity", "create", "machine"]);
    let target = hello_server();
    let hist = home.join("auth.history");
    let log = home.join("machine.log");
    // Re-fetches only every 5 minutes: a revocation can reach the node within the test only by push.
    let (_machine, ready) = start(
        home,
        &[
            "-v",
            "node",
            "run",
            "--identity",
            "machine",
            "--tcp",
            "127.0.0.1:0",
            "--authority",
            hist.to_str().unwrap(),
            "--authority-at",
            &auth_addr,
            "--revocation-refetch",
            "300",
            "--outlet",
            &target,
        ],
        Some(&log),
    );
    let machine_addr = ready["tcp"].as_str().unwrap().to_string();
    let machine_id = identifier_of(home, "machine");
    let (_inlet, r) = start(
        home,
        &[
            "portal",
            "inlet",
            "--identity",
            "fitter",
            "--to",
            &machine_addr,
            "--trust",
            &machine_id,
            "--listen",
            "127.0.0.1:0",
        ],
        None,
    );
    // A live connection through the portal's channel.
    let (mut stream, hello) = greeting(r["listen"].as_str().unwrap()).expect("portal works");
    assert_eq!(hello, b"hello");
    stream.write_all(b"abc").unwrap();
    let mut echo = [0u8; 3];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"abc");

    let fitter = identifier_of(home, "fitter");
    ok(
        home,
        &["revoke", "--authority", "auth", "--identifier", &fitter],
    );
    let revoked_at = Instant::now();
    // The machine closes the channel; the portal's connection over it ends (reset or EOF).
    let mut buf = [0u8; 16];
    let ended = match stream.read(&mut buf) {
        Ok(0) | Err(_) => true,
        Ok(_) => false,
    };
    let took = revoked_at.elapsed();
    assert!(ended, "the live connection outlived the revocation");
    eprintln!("revocation by another process closed the live channel after {took:?}");
    // It was the revocation that closed it (the node logs why), and a new connection is refused.
    let mut logged = false;
    for _ in 0..50 {
        if std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("revoked")
        {
            logged = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(logged, "the node did not log a revocation");
    assert!(greeting(r["listen"].as_str().unwrap()).is_none());
}

#[test]
fn a_relay_with_an_authority_and_a_policy_registers_only_members_with_the_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let (_auth, _auth_addr) = authority_with_members(
        home,
        &[
            ("gateway", &["role=gateway"]),
            ("engineer", &["role=engineer"]),
        ],
    );
    ok(home, &["identity", "create", "visitor"]);
    ok(home, &["identity", "create", "phone"]);
    let policy = write_policy(home, "relay.policy", r#"subject.role = "gateway""#);
    let hist = home.join("auth.history");
    let (_relay, ready) = start(
        home,
        &[
            "relay",
            "run",
            "--tcp",
            "127.0.0.1:0",
            "--authority",
            hist.to_str().unwrap(),
            "--policy",
            &format!("relay={policy}"),
        ],
        None,
    );
    assert_eq!(ready["trust"]["policies"][0], "relay", "{ready}");
    let relay = ready["tcp"].as_str().unwrap().to_string();
    let relay_id = ready["identifier"].as_str().unwrap().to_string();
    let register = |who: &str, name: &str| {
        let mut child = Command::new(BIN)
            .env("LATCHKEY_HOME", home)
            .args([
                "--json",
                "node",
                "run",
                "--identity",
                who,
                "--trust-any",
                "--relay",
                &relay,
                "--relay-name",
                name,
                "--relay-trust",
                &relay_id,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.is_empty() {
            let out = child.wait_with_output().unwrap();
            return Err((
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        Ok((Killed(child), line))
    };
    // No credential: no channel to the relay, so no registration.
    let (code, why) = register("visitor", "door")
        .err()
        .expect("a visitor registered");
    assert_ne!(code, Some(0), "{why}");
    // A member without role=gateway: the relay's guard refuses the registration message.
    let (code, why) = register("engineer", "door")
        .err()
        .expect("the engineer registered");
    assert_ne!(code, Some(0), "{why}");
    assert!(!why.contains("gateway"), "the policy leaked: {why}");
    // The gateway registers, and is reachable through the relay under its name.
    let (_gateway, line) = register("gateway", "door").expect("the gateway registers");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["relay"]["name"], "door", "{v}");
    let gateway_id = identifier_of(home, "gateway");
    let o = latchkey(
        home,
        &[
            "message",
            "send",
            "--identity",
            "phone",
            "--to",
            &relay,
            "--relay-name",
            "door",
            "--trust",
            &gateway_id,
            "ring",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("reply: ring"));
}

#[test]
fn a_policy_for_nothing_this_node_runs_or_that_does_not_parse_is_refused_before_the_node_starts() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    ok(home, &["identity", "create", "auth"]);
    ok(home, &["identity", "create", "machine"]);
    let good = write_policy(home, "good.policy", r#"subject.role = "engineer""#);
    let bad = write_policy(home, "bad.policy", r#"subject.role = and"#);
    let run = |policy: &str| {
        latchkey(
            home,
            &[
                "node",
                "run",
                "--identity",
                "machine",
                "--authority",
                "auth",
                "--policy",
                policy,
            ],
        )
    };
    // A misspelt target would guard nothing: refused, naming what can be guarded.
    let o = run(&format!("telemetri={good}"));
    let why = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{why}");
    assert!(why.contains("telemetri") && why.contains("echo"), "{why}");
    // A policy that does not parse: the parser's message points at the fault.
    let o = run(&format!("echo={bad}"));
    let why = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{why}");
    assert!(why.contains("line 1, column"), "{why}");
    // A policy without --authority reads nothing: refused.
    let o = latchkey(
        home,
        &[
            "node",
            "run",
            "--identity",
            "machine",
            "--trust-any",
            "--policy",
            &format!("echo={good}"),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `round` through the portal connection and expects it echoed.
fn echoes(stream: &mut TcpStream, round: u32) -> bool {
    let text = format!("{round:08}");
    if stream.write_all(text.as_bytes()).is_err() {
        return false;
    }
    let mut back = [0u8; 8];
    stream.read_exact(&mut back).is_ok() && back == text.as_bytes()
}

#[test]
fn a_portal_channel_outlives_its_credentials_refreshed_across_processes_and_recovers_after_the_authority_was_down(
) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    ok(home, &["authority", "create", "auth"]);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let serve = |home: &Path| {
        start(
            home,
            &[
                "authority",
                "serve",
                "auth",
                "--listen",
                &listen,
                "--credential-validity",
                "8",
            ],
            None,
        )
    };
    let (auth, _) = serve(home);
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
    ok(home, &["identity", "create", "fitter"]);
    ok(home, &["identity", "create", "machine"]);
    let token = ok(
        home,
        &[
            "token",
            "create",
            "--authority",
            "auth",
            "--attr",
            "portal=yes",
        ],
    );
    ok(
        home,
        &[
            "enroll",
            "--identity",
            "fitter",
            "--to",
            &listen,
            "--token",
            &token,
        ],
    );
    let target = hello_server();
    let (_machine, ready) = start(
        home,
        &[
            "node",
            "run",
            "--identity",
            "machine",
            "--tcp",
            "127.0.0.1:0",
            "--authority",
            hist.to_str().unwrap(),
            "--authority-at",
            &listen,
            "--outlet",
            &target,
        ],
        None,
    );
    let machine_addr = ready["tcp"].as_str().unwrap().to_string();
    let machine_id = identifier_of(home, "machine");
    let (_inlet, r) = start(
        home,
        &[
            "portal",
            "inlet",
            "--identity",
            "fitter",
            "--credential",
            "--authority-at",
            &listen,
            "--to",
            &machine_addr,
            "--trust",
            &machine_id,
            "--listen",
            "127.0.0.1:0",
        ],
        None,
    );
    assert_eq!(r["trust"]["credential"], true, "{r}");
    let inlet = r["listen"].as_str().unwrap().to_string();

    // One live connection through the portal for two and a half validities: every round trip answered.
    let (mut stream, hello) = greeting(&inlet).expect("portal works");
    assert_eq!(hello, b"hello");
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(20) {
        assert!(
            echoes(&mut stream, round),
            "round {round} lost after {:?}",
            started.elapsed()
        );
        round += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "{round} round trips over {:?} with 8 s credentials",
        started.elapsed()
    );

    // The authority goes down: the fitter keeps its current credential until it expires, then the machine
    // closes the channel and the connection over it ends.
    drop(auth);
    let down = Instant::now();
    let mut ended = false;
    while down.elapsed() < Duration::from_secs(20) {
        if !echoes(&mut stream, round) {
            ended = true;
            break;
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        ended,
        "the connection outlived the fitter's last credential"
    );
    eprintln!(
        "with the authority down, the channel closed after {:?}",
        down.elapsed()
    );

    // The authority returns: the fitter refreshes (its retries back off to at most 30 s) and new
    // connections go through again.
    let (_auth, _) = serve(home);
    let back = Instant::now();
    let mut works = false;
    while back.elapsed() < Duration::from_secs(60) {
        if let Some((_, hello)) = greeting(&inlet) {
            works = hello == b"hello";
            if works {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        works,
        "the portal did not recover after the authority returned"
    );
    eprintln!(
        "after the authority returned, the portal worked again after {:?}",
        back.elapsed()
    );
}

/// A relay whose `forward` policy admits only members with `role=resident` (an authority with a gateway, a
/// resident and an engineer as members), and the gateway registered there as "door" (`gateway_args` are
/// added to its `node run`). The processes end with this value.
struct GuardedDoor {
    relay_process: Killed,
    _gateway: Killed,
    _authority: Killed,
    relay: String,
    relay_id: String,
    gateway_id: String,
    relay_log: std::path::PathBuf,
}

fn guarded_door(home: &Path, gateway_args: &[&str]) -> GuardedDoor {
    let (authority, _auth_addr) = authority_with_members(
        home,
        &[
            ("gateway", &["role=gateway"]),
            ("resident", &["role=resident"]),
            ("engineer", &["role=engineer"]),
        ],
    );
    let policy = write_policy(home, "forward.policy", r#"subject.role = "resident""#);
    let hist = home.join("auth.history");
    let relay_log = home.join("relay.log");
    let (relay_process, ready) = start(
        home,
        &[
            "-vv",
            "relay",
            "run",
            "--tcp",
            "127.0.0.1:0",
            "--authority",
            hist.to_str().unwrap(),
            "--policy",
            &format!("forward={policy}"),
        ],
        Some(&relay_log),
    );
    assert_eq!(ready["trust"]["policies"][0], "forward", "{ready}");
    let relay = ready["tcp"].as_str().unwrap().to_string();
    let relay_id = ready["identifier"].as_str().unwrap().to_string();
    // The gateway registers "door" as usual (registrations are not under the forward policy).
    let mut args = vec![
        "node",
        "run",
        "--identity",
        "gateway",
        "--trust-any",
        "--relay",
        &relay,
        "--relay-name",
        "door",
        "--relay-trust",
        &relay_id,
    ];
    args.extend_from_slice(gateway_args);
    let (gateway, gateway_ready) = start(home, &args, None);
    assert_eq!(gateway_ready["relay"]["name"], "door", "{gateway_ready}");
    GuardedDoor {
        relay_process,
        _gateway: gateway,
        _authority: authority,
        gateway_id: identifier_of(home, "gateway"),
        relay,
        relay_id,
        relay_log,
    }
}

#[test]
fn a_relay_with_a_forward_policy_forwards_only_members_with_the_attribute_through_channels_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let door = guarded_door(home, &[]);
    let (relay, relay_id, gateway_id, relay_log) = (
        door.relay.clone(),
        door.relay_id.clone(),
        door.gateway_id.clone(),
        door.relay_log.clone(),
    );
    let secret = "open-sesame-SECRET-4711";
    let send = |who: &str, via_channel: bool| {
        let mut args = vec![
            "message",
            "send",
            "--identity",
            who,
            "--to",
            &relay,
            "--relay-name",
            "door",
            "--trust",
            &gateway_id,
            "--timeout",
            "4",
        ];
        if via_channel {
            args.extend(["--via-relay-channel", &relay_id]);
        }
        args.push(secret);
        latchkey(home, &args)
    };
    // A resident reaches the door through a channel to the relay.
    let o = send("resident", true);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("reply: {secret}")));
    // The engineer's channel to the relay opens (a valid member), but the forwarder's guard drops every
    // message of its end-to-end handshake: it times out, learning nothing of the policy.
    let o = send("engineer", true);
    let why = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "the engineer got through: {why}");
    assert!(
        why.contains("timed out") || why.contains("within"),
        "a timeout: {why}"
    );
    eprintln!("exit {:?}: {why}", o.status.code());
    assert!(!why.contains("resident"), "the policy leaked: {why}");
    // The resident over bare TCP to the relay: dropped by the forwarder's flow rule, also a timeout.
    let o = send("resident", false);
    let why = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "bare TCP got through: {why}");
    assert!(
        why.contains("timed out") || why.contains("within"),
        "a timeout: {why}"
    );
    eprintln!("exit {:?}: {why}", o.status.code());
    // And the resident still gets through afterwards.
    let o = send("resident", true);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The relay handled only ciphertext: its debug log (which does record the refusals) never shows the
    // message.
    let log = std::fs::read_to_string(&relay_log).unwrap();
    assert!(log.contains("\"door\" registered"), "{log}");
    // The engineer's messages were refused by the guard, the bare TCP ones by the flow rule.
    assert!(log.contains("may not reach fwd:door (Guard("), "{log}");
    assert!(log.contains("may not reach fwd:door (Flow)"), "{log}");
    assert!(!log.contains("SECRET") && !log.contains("sesame"), "{log}");
}

#[test]
fn a_portal_inlet_reaches_an_outlet_through_a_channel_to_a_relay_with_a_forward_policy() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let target = hello_server();
    let mut door = guarded_door(home, &["--outlet", &target]);
    let (relay, relay_id, gateway_id, relay_log) = (
        door.relay.clone(),
        door.relay_id.clone(),
        door.gateway_id.clone(),
        door.relay_log.clone(),
    );
    let inlet_args = |who: &'static str, via_channel: bool| {
        let mut args = vec![
            "portal".to_string(),
            "inlet".into(),
            "--identity".into(),
            who.into(),
            "--to".into(),
            relay.clone(),
            "--relay-name".into(),
            "door".into(),
            "--trust".into(),
            gateway_id.clone(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--timeout".into(),
            "4".into(),
        ];
        if via_channel {
            args.extend(["--via-relay-channel".into(), relay_id.clone()]);
        }
        args
    };

    // The resident's inlet: its channel to the gateway travels inside a channel to the relay.
    let args = inlet_args("resident", true);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut inlet, r) = start(home, &args, None);
    assert_eq!(r["peer"], gateway_id.as_str(), "{r}");
    let listen = r["listen"].as_str().unwrap().to_string();
    let secret = b"SECRET-portal-bytes-4711";
    for _ in 0..3 {
        let (mut stream, hello) = greeting(&listen).expect("the resident's portal works");
        assert_eq!(hello, b"hello");
        stream.write_all(secret).unwrap();
        let mut echo = vec![0u8; secret.len()];
        stream.read_exact(&mut echo).unwrap();
        assert_eq!(echo, secret);
    }

    // The engineer (a member without the attribute) and the resident over bare TCP get no portal: the
    // forwarder drops their handshakes, so the inlet cannot open its channel and exits with an error.
    for (who, via_channel) in [("engineer", true), ("resident", false)] {
        let args = inlet_args(who, via_channel);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = latchkey(home, &args);
        let why = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            !o.status.success(),
            "{who} (via channel: {via_channel}) got a portal: {why}"
        );
        assert!(why.contains("timed out") || why.contains("within"), "{why}");
    }

    // The relay saw only ciphertext; its log records the refusals.
    let log = std::fs::read_to_string(&relay_log).unwrap();
    assert!(log.contains("may not reach fwd:door (Guard("), "{log}");
    assert!(log.contains("may not reach fwd:door (Flow)"), "{log}");
    assert!(!log.contains("SECRET"), "{log}");

    // When the relay goes, the portal's channel closes and the inlet process ends with an error (its
    // supervisor restarts it), rather than listening on with nowhere to send.
    door.relay_process.0.kill().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = inlet.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the inlet outlived its channel"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    eprintln!(
        "the inlet exited ({status}) {:?} after the relay was killed",
        started.elapsed()
    );
}
