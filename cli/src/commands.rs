//! What each command does, on top of latchkey-facade (the one surface every binding uses too). Nothing
//! protocol-related lives here: trust, request/reply, relays and portals are the facade's.

use crate::errors::CliError;
use crate::output::{escape_controls, remote_text, rfc3339_utc, Output};
use crate::{
    ChannelCommand, Cli, Command, IdentityArgs, IdentityCommand, MemberArgs, MessageCommand,
    NodeCommand, NodeRunArgs, PeerArgs, PeerCommand, PortalCommand, RelayCommand, RelayRunArgs,
};
use latchkey_facade::{
    check_identifier, default_store_home, ConnectOptions, DirectChannel, DirectListener, Error,
    ErrorCode, Identity, IdentityOptions, IdentityStore, MessageOrigin, Node, NodeChannel,
    NodeOptions, Peer, ReceivedMessage, RelayServiceOptions, StoredIdentity, StoredPeer, Trust,
    Vault,
};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

type CliResult<T = ()> = Result<T, CliError>;

/// Where the identity store is: `--home`, else the facade's default (`$LATCHKEY_HOME`, else `~/.latchkey`).
struct Home(Option<String>);

impl Home {
    fn new(home: Option<PathBuf>) -> CliResult<Home> {
        home.map(|h| {
            h.into_os_string()
                .into_string()
                .map_err(|h| CliError::usage(format!("--home {h:?}: the path must be valid UTF-8")))
        })
        .transpose()
        .map(Home)
    }

    fn display(&self) -> String {
        self.0.clone().unwrap_or_else(default_store_home)
    }
}

pub async fn run(cli: Cli, out: Output) -> CliResult {
    let home = Home::new(cli.home.clone())?;
    match cli.command {
        Command::Identity(c) => identity(c, &home, out),
        Command::Peer(c) => peer(c, &home, out),
        Command::Node(NodeCommand::Run(args)) => node_run(args, None, "node run", &home, out).await,
        Command::Message(MessageCommand::Receive(args)) => {
            node_run(args, None, "message receive", &home, out).await
        }
        Command::Portal(PortalCommand::Outlet { node, target }) => {
            node_run(node, Some(target), "portal outlet", &home, out).await
        }
        Command::Relay(RelayCommand::Run(args)) => relay_run(args, &home, out).await,
        Command::Channel(ChannelCommand::Open { id, peer }) => {
            channel_open(id, peer, &home, out).await
        }
        Command::Channel(ChannelCommand::ListenDirect { addr, id }) => {
            listen_direct(&addr, id, &home, out).await
        }
        Command::Channel(ChannelCommand::ConnectDirect { addr, id, messages }) => {
            connect_direct(&addr, id, messages, &home, out).await
        }
        Command::Message(MessageCommand::Send {
            id,
            peer,
            service,
            expect_reply,
            messages,
        }) => message_send(id, peer, &service, expect_reply, messages, &home, out).await,
        Command::Portal(PortalCommand::Inlet {
            id,
            peer,
            listen,
            member,
        }) => portal_inlet(id, peer, &listen, &member, &home, out).await,
        Command::Authority(c) => crate::trust::authority(c, home.0.clone(), out).await,
        Command::Token(c) => crate::trust::token(c, home.0.clone(), out),
        Command::Enroll(args) => crate::trust::enroll(args, home.0.clone(), out).await,
        Command::Credential(c) => crate::trust::credential(c, home.0.clone(), out),
        Command::Revoke(args) => crate::trust::revoke(args, home.0.clone(), out),
        Command::Policy(c) => crate::trust::policy(c, home.0.clone(), out).await,
        Command::Delegate(c) => crate::trust::delegate(c, home.0.clone(), out),
    }
}

/// An identity as a `--json` record: Unix seconds and, for people and tools alike, RFC 3339 UTC.
fn summary_json(s: &StoredIdentity) -> serde_json::Value {
    json!({
        "name": s.name,
        "identifier": s.identifier,
        "changes": s.changes,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "created_utc": rfc3339_utc(s.created_at),
        "updated_utc": rfc3339_utc(s.updated_at),
    })
}

fn open_store(home: &Home) -> CliResult<IdentityStore> {
    IdentityStore::open(home.0.clone())
        .map_err(|e| CliError::new(e.code(), format!("{}: {e}", home.display())))
}

fn identity(command: IdentityCommand, home: &Home, out: Output) -> CliResult {
    let store = open_store(home)?;
    match command {
        IdentityCommand::Create {
            name,
            key_lifetime,
            vault,
        } => {
            let s = store.create_in_vault(&name, &vault, key_lifetime)?;
            let mut json = summary_json(&s);
            json["vault"] = serde_json::Value::String(vault.split(':').next().unwrap_or("").into());
            let human = if vault == "software" {
                format!("created identity {} {}", s.name, s.identifier)
            } else {
                format!(
                    "created identity {} {} (keys in {vault})",
                    s.name, s.identifier
                )
            };
            out.emit(human, json);
        }
        IdentityCommand::List => {
            let all = store.list()?;
            if out.json {
                // One object per line, like every other --json output (none for an empty store).
                for s in &all {
                    out.emit("", summary_json(s));
                }
            } else if all.is_empty() {
                println!("no identities (create one with `latchkey identity create NAME`)");
            } else {
                for s in &all {
                    println!("{:<20} {}  changes={}", s.name, s.identifier, s.changes);
                }
            }
        }
        IdentityCommand::Show { name } => {
            let s = store.show(&name)?;
            out.emit(
                format!(
                    "name:       {}\nidentifier: {}\nchanges:    {}\ncreated:    {}\nupdated:    {}",
                    s.name,
                    s.identifier,
                    s.changes,
                    rfc3339_utc(s.created_at),
                    rfc3339_utc(s.updated_at)
                ),
                summary_json(&s),
            );
        }
        IdentityCommand::Rotate { name } => {
            let s = store.rotate(&name)?;
            out.emit(
                format!(
                    "rotated identity {} {} (now {} changes)",
                    s.name, s.identifier, s.changes
                ),
                summary_json(&s),
            );
        }
    }
    Ok(())
}

/// A pinned peer as a `--json` record.
fn peer_json(p: &StoredPeer) -> serde_json::Value {
    json!({
        "name": p.name,
        "identifier": p.identifier,
        "changes": p.changes,
        "pinned": p.changes > 0,
        "pinned_at": p.pinned_at,
        "updated_at": p.updated_at,
        "pinned_utc": (p.pinned_at > 0).then(|| rfc3339_utc(p.pinned_at)),
        "updated_utc": rfc3339_utc(p.updated_at),
    })
}

fn peer_line(p: &StoredPeer) -> String {
    let state = if p.changes == 0 {
        "not met yet".to_string()
    } else {
        format!("changes={}", p.changes)
    };
    format!(
        "{:<20} {}  {state}",
        p.name.as_deref().unwrap_or("-"),
        p.identifier
    )
}

fn peer(command: PeerCommand, home: &Home, out: Output) -> CliResult {
    let store = open_store(home)?;
    match command {
        PeerCommand::List => {
            let all = store.peers()?;
            if out.json {
                for p in &all {
                    out.emit("", peer_json(p));
                }
            } else if all.is_empty() {
                println!("no pinned peers (a peer is pinned at first contact; name one with --trust NAME=ID)");
            } else {
                for p in &all {
                    println!("{}", peer_line(p));
                }
            }
        }
        PeerCommand::Show { name } => {
            let p = store.peer(&name)?;
            out.emit(
                format!(
                    "name:       {}\nidentifier: {}\nchanges:    {}\npinned:     {}\nupdated:    {}",
                    p.name.as_deref().unwrap_or("-"),
                    p.identifier,
                    p.changes,
                    if p.pinned_at > 0 {
                        rfc3339_utc(p.pinned_at)
                    } else {
                        "not yet (not met)".into()
                    },
                    rfc3339_utc(p.updated_at)
                ),
                peer_json(&p),
            );
        }
        PeerCommand::Forget { name } => {
            let p = store.forget_peer(&name)?;
            out.emit(
                format!(
                    "forgot peer {} {}",
                    p.name.as_deref().unwrap_or("-"),
                    p.identifier
                ),
                json!({"event": "forgotten", "name": p.name, "identifier": p.identifier}),
            );
        }
    }
    Ok(())
}

/// A node acting as `identity` whose every trust decision also checks (and keeps) the peer histories pinned
/// in the home's store.
fn pinning_node(
    identity: &Identity,
    options: NodeOptions,
    args: &IdentityArgs,
    home: &Home,
) -> CliResult<Arc<Node>> {
    let node = Node::new(identity, options)?;
    node.pin_peers(&open_store(home)?, args.trust_on_first_use)?;
    let suite: latchkey_facade::SuiteChoice = args
        .suite
        .parse()
        .map_err(|_| CliError::usage("--suite is auto, chachapoly or aesgcm"))?;
    node.set_suite(suite)?;
    Ok(node)
}

/// The stored identity `--identity` names, or a fresh in-memory one for this run.
fn load_identity(args: &IdentityArgs, home: &Home) -> CliResult<Identity> {
    match &args.identity {
        Some(name) => Ok(open_store(home)?.load(name)?),
        None => Ok(Identity::create(
            &Vault::new(),
            IdentityOptions::default(),
            None,
        )?),
    }
}

/// Reads `--trust` / `--trust-any` / `--trust-on-first-use`. None of them is a usage error that says what to
/// add: trust is never implied by an omitted flag. `--trust-any` and `--trust-on-first-use` print a warning.
fn trust_from_args(
    args: &IdentityArgs,
    command: &str,
    home: &Home,
    out: Output,
) -> CliResult<Trust> {
    if args.trust_on_first_use {
        out.warn(
            "trust_on_first_use",
            &format!(
                "--trust-on-first-use: `{command}` accepts any authenticated identity it has not pinned \
                 yet, and pins it; name the peers with --trust instead"
            ),
        );
        return Ok(Trust::AnyIdentity);
    }
    parse_trust(
        &args.trust,
        args.trust_any,
        "--trust",
        "--trust-any",
        &format!("`{command}` accepts any authenticated identity as its peer"),
        &format!(
            "`{command}` needs to know which peers to trust: add --trust ID (repeatable; a peer's \
             identifier, as `latchkey identity show NAME` prints it, NAME=ID to name it, or the NAME of a \
             pinned peer), --trust-on-first-use to pin whoever comes first, or, to accept any \
             authenticated identity, --trust-any"
        ),
        home,
        out,
    )
}

/// Like [`trust_from_args`]; with `--authority` and none of the trust flags, any identity that presents a
/// credential of those authorities (the authorities decide, so no warning).
fn member_trust(
    args: &IdentityArgs,
    member: &MemberArgs,
    command: &str,
    home: &Home,
    out: Output,
) -> CliResult<Trust> {
    if !member.authorities.is_empty()
        && args.trust.is_empty()
        && !args.trust_any
        && !args.trust_on_first_use
    {
        return Ok(Trust::AnyIdentity);
    }
    trust_from_args(args, command, home, out)
}

#[allow(clippy::too_many_arguments)]
fn parse_trust(
    ids: &[String],
    any: bool,
    flag: &str,
    any_flag: &str,
    any_warning: &str,
    missing: &str,
    home: &Home,
    out: Output,
) -> CliResult<Trust> {
    if any {
        out.warn(
            "trust_any",
            &format!("{any_flag}: {any_warning}; name the peers with {flag} ID instead"),
        );
        return Ok(Trust::AnyIdentity);
    }
    if ids.is_empty() {
        return Err(CliError::usage(missing));
    }
    // Identifiers need no store; names (and NAME=ID) are looked up in, or written to, the home's.
    if ids.iter().all(|id| check_identifier(id).is_ok()) {
        return Ok(Trust::Identifiers(ids.to_vec()));
    }
    let resolved = open_store(home)?
        .resolve_trust(ids)
        .map_err(|e| match e.code() {
            ErrorCode::UnknownPeer => CliError::new(e.code(), format!("{flag}: {e}")),
            _ => CliError::usage(format!("{flag}: {e}")),
        })?;
    Ok(Trust::Identifiers(resolved))
}

fn parse_identifier(text: &str, flag: &str) -> CliResult<()> {
    check_identifier(text)
        .map_err(|e| CliError::usage(format!("{flag} {text:?} is not an identifier: {e}")))
}

fn node_options(name: &str) -> NodeOptions {
    NodeOptions {
        name: name.into(),
        relay: false,
    }
}

/// Ends a node, giving its channels a moment to close cleanly.
async fn shut_down(node: &Node) {
    let _ = tokio::time::timeout(Duration::from_secs(5), node.shutdown()).await;
}

/// Waits for Ctrl-C.
async fn interrupted() {
    let _ = tokio::signal::ctrl_c().await;
}

/// A node acting as `--identity` with a secure channel to the listener of the peer `peer` describes.
/// The facade's view of `--to`/`--relay-name`/`--udp`/`--timeout`, and how errors name the peer.
fn target(peer: &PeerArgs) -> (Peer, ConnectOptions, String) {
    let what = match &peer.relay_name {
        Some(name) => format!("{name:?} via relay {}", peer.to),
        None => peer.to.clone(),
    };
    let target = Peer {
        relay_name: peer.relay_name.clone(),
        udp: peer.udp,
        ..Peer::tcp(peer.to.clone())
    };
    let options = ConnectOptions {
        timeout: Duration::from_secs(peer.timeout),
    };
    (target, options, what)
}

async fn open(
    id: &IdentityArgs,
    trust: Trust,
    peer: &PeerArgs,
    home: &Home,
) -> CliResult<(Arc<Node>, Arc<NodeChannel>)> {
    let identity = load_identity(id, home)?;
    let node = pinning_node(&identity, node_options("cli"), id, home)?;
    let (target, options, what) = target(peer);
    let channel = match (&peer.via_relay_channel, &peer.relay_name) {
        (Some(relay_id), Some(name)) => {
            parse_identifier(relay_id, "--via-relay-channel")?;
            node.connect_via_relay_channel(
                peer.to.clone(),
                Trust::Identifiers(vec![relay_id.clone()]),
                name.clone(),
                trust,
                options,
            )
            .await
        }
        _ => node.connect(target, trust, options).await,
    }
    .map_err(|e| CliError::involving(e, &what))?;
    Ok((node, channel))
}

async fn channel_open(id: IdentityArgs, peer: PeerArgs, home: &Home, out: Output) -> CliResult {
    let trust = trust_from_args(&id, "channel open", home, out)?;
    let (node, channel) = open(&id, trust, &peer, home).await?;
    out.emit(
        format!(
            "secure channel established with {}",
            channel.peer_identifier()
        ),
        json!({"event": "channel", "peer": channel.peer_identifier()}),
    );
    let _ = channel.close().await;
    shut_down(&node).await;
    Ok(())
}

async fn message_send(
    id: IdentityArgs,
    peer: PeerArgs,
    service: &str,
    expect_reply: bool,
    messages: Vec<String>,
    home: &Home,
    out: Output,
) -> CliResult {
    let trust = trust_from_args(&id, "message send", home, out)?;
    let (node, channel) = open(&id, trust, &peer, home).await?;
    let expects_reply = service == "echo" || expect_reply;
    let timeout = Duration::from_secs(peer.timeout);
    for text in messages {
        let payload = text.clone().into_bytes();
        let text = escape_controls(&text);
        if expects_reply {
            // The reply is taken only out of this channel, from the peer it authenticated.
            let reply = channel
                .request(service.to_string(), payload, timeout)
                .await
                .map_err(|e| match e.code() {
                    // Delivered, but no answer: a service that is not open to us drops what we send.
                    ErrorCode::Timeout => CliError::new(
                        ErrorCode::AccessDenied,
                        format!(
                            "no reply from {service:?} within {}s (access refused, or the service is \
                             missing)",
                            peer.timeout
                        ),
                    ),
                    ErrorCode::UnknownAddress => CliError::from(e),
                    _ => CliError::involving(e, &peer.to),
                })?;
            let reply = remote_text(&reply);
            out.emit(
                format!("reply: {reply}"),
                json!({"event": "reply", "message": text, "reply": reply}),
            );
        } else {
            channel
                .send(service.to_string(), payload, None)
                .await
                .map_err(|e| match e.code() {
                    // The far end said so at once: no such service (or not one for us).
                    ErrorCode::UnknownAddress => CliError::from(e),
                    _ => CliError::involving(e, &peer.to),
                })?;
            out.emit(
                format!("delivered: {text}"),
                json!({"event": "delivered", "message": text}),
            );
        }
    }
    let _ = channel.close().await;
    shut_down(&node).await;
    Ok(())
}

async fn node_run(
    args: NodeRunArgs,
    outlet_target: Option<String>,
    command: &str,
    home: &Home,
    out: Output,
) -> CliResult {
    let trust = member_trust(&args.id, &args.member, command, home, out)?;
    let relay = match (&args.relay, &args.relay_name) {
        (Some(relay), Some(name)) => {
            let relay_trust = parse_trust(
                &args.relay_trust,
                args.relay_trust_any,
                "--relay-trust",
                "--relay-trust-any",
                "any authenticated identity is accepted as the relay",
                "--relay needs to know which relay to trust: add --relay-trust ID (the identifier \
                 `latchkey relay run` prints) or, to accept any identity as the relay, --relay-trust-any",
                home,
                out,
            )?;
            Some((relay.clone(), name.clone(), relay_trust))
        }
        _ => None,
    };
    let identity = load_identity(&args.id, home)?;
    let node = pinning_node(&identity, node_options("node"), &args.id, home)?;
    let mut targets: Vec<String> = ["channel", "echo", "inbox"].map(String::from).to_vec();
    targets.extend(args.echo.iter().cloned());
    if outlet_target.is_some() || args.outlet.is_some() {
        targets.push("outlet".into());
    }
    let member = crate::trust::join_authorities(
        &node,
        &args.member,
        &args.id,
        home.0.clone(),
        out,
        &targets,
    )
    .await?;
    // Services take only messages out of the channels that "api" accepted (from the --trust peers).
    let _listener = node.listen("api".into(), trust.clone())?;
    node.start_echo("echo".into(), trust.clone())?;
    for name in &args.echo {
        node.start_echo(name.clone(), trust.clone())?;
    }
    let inbox = node.mailbox("inbox".into(), trust.clone())?;
    let outlet = outlet_target.or(args.outlet.clone());
    if let Some(target) = &outlet {
        node.create_outlet("outlet".into(), target.clone(), trust.clone())?;
    }
    let mut ready = json!({"event": "ready", "identifier": node.identifier()});
    let mut human = vec![format!("node identity {}", node.identifier())];
    if let Some((line, value)) = member {
        human.push(line);
        ready["trust"] = value;
    }
    if !args.echo.is_empty() {
        ready["echo"] = json!(args.echo);
    }
    if let Some(addr) = &args.tcp {
        let bound = node
            .listen_tcp(addr.clone())
            .await
            .map_err(|e| CliError::involving(e, addr))?;
        human.push(format!("listening on tcp {bound}"));
        ready["tcp"] = json!(bound);
    }
    if let Some(addr) = &args.udp {
        let bound = node
            .bind_udp(addr.clone())
            .await
            .map_err(|e| CliError::involving(e, addr))?;
        human.push(format!("listening on udp {bound}"));
        ready["udp"] = json!(bound);
    }
    if let Some((relay, name, relay_trust)) = relay {
        // The node keeps the channel to the relay: it carries our registration and our traffic.
        let relay_peer = node
            .register_at_relay(relay.clone(), relay_trust, name.clone())
            .await
            .map_err(|e| relay_error(e, &relay, &name))?;
        human.push(format!(
            "registered at relay {relay} ({relay_peer}) as {name:?}"
        ));
        ready["relay"] = json!({"address": relay, "name": name, "peer": relay_peer});
    }
    if let Some(target) = &outlet {
        ready["outlet"] = json!(target);
        human.push(format!("portal outlet to {target}"));
    }
    out.emit(human.join("\n"), ready);
    let mut received = 0usize;
    loop {
        if args.count.is_some_and(|n| received >= n) {
            // The last message's acknowledgement is queued, not yet written: give it time to leave, or the
            // sender would see its message as undelivered.
            tokio::time::sleep(Duration::from_millis(500)).await;
            break;
        }
        tokio::select! {
            () = interrupted() => break,
            message = inbox.clone().recv() => {
                let Some(message) = message? else { break };
                received += 1;
                print_inbox(&message, out);
            }
        }
    }
    shut_down(&node).await;
    Ok(())
}

/// A failure to register at a relay: a refusal says which name the relay refused and why.
fn relay_error(e: Error, relay: &str, name: &str) -> CliError {
    match e.code() {
        ErrorCode::Refused => CliError::new(
            e.code(),
            format!("relay {relay} refused to register {name:?}: {e}"),
        ),
        _ => CliError::involving(e, &format!("relay {relay}")),
    }
}

/// Prints a message that arrived at the inbox. Its text comes from a remote peer: control characters are
/// escaped, so it cannot start a line of its own or reach the terminal as escape codes.
fn print_inbox(message: &ReceivedMessage, out: Output) {
    let from = match message.origin() {
        MessageOrigin::Channel { peer_identifier } => peer_identifier,
        MessageOrigin::Local => "local".into(),
        MessageOrigin::Transport => "transport".into(),
    };
    let text = remote_text(&message.payload());
    out.emit(
        format!("message from {from}: {text}"),
        json!({"event": "message", "from": from, "message": text}),
    );
}

/// `--allow ID=NAME` entries as the relay's list of who may register which names.
fn allowed_names(entries: &[String]) -> CliResult<Vec<(String, String)>> {
    entries
        .iter()
        .map(|entry| {
            let (id, name) = entry
                .split_once('=')
                .filter(|(_, name)| !name.is_empty())
                .ok_or_else(|| {
                    CliError::usage(format!(
                        "--allow {entry:?}: expected ID=NAME (NAME may be *)"
                    ))
                })?;
            parse_identifier(id, "--allow")?;
            Ok((id.to_string(), name.to_string()))
        })
        .collect()
}

async fn relay_run(args: RelayRunArgs, home: &Home, out: Output) -> CliResult {
    let trust = member_trust(&args.id, &args.member, "relay run", home, out)?;
    if args.lease < 5 {
        return Err(CliError::usage(format!(
            "--lease {}: a lease must be at least 5 seconds (nodes refresh every 2 s)",
            args.lease
        )));
    }
    let allowed = allowed_names(&args.allow)?;
    let identity = load_identity(&args.id, home)?;
    let node = pinning_node(
        &identity,
        NodeOptions {
            name: "relay".into(),
            relay: true,
        },
        &args.id,
        home,
    )?;
    let member = crate::trust::join_authorities(
        &node,
        &args.member,
        &args.id,
        home.0.clone(),
        out,
        &["channel".into(), "relay".into(), "forward".into()],
    )
    .await?;
    // Registrations come only through secure channels accepted by this listener.
    let _listener = node.listen("api".into(), trust)?;
    node.start_relay(RelayServiceOptions {
        lease: Duration::from_secs(args.lease),
        max_names: args.max_names,
        max_names_per_identity: args.max_names_per_identity,
        allowed,
    })?;
    if let Some(path) = &args.mailbox {
        let path = path
            .to_str()
            .ok_or_else(|| CliError::usage("--mailbox: the path must be valid UTF-8"))?;
        node.start_relay_mailbox(path.to_string())?;
    }
    let bound = node
        .listen_tcp(args.tcp.clone())
        .await
        .map_err(|e| CliError::involving(e, &args.tcp))?;
    let mut ready = json!({
        "event": "ready",
        "tcp": bound,
        "identifier": node.identifier(),
        "lease_secs": args.lease,
        "max_names": args.max_names,
        "max_names_per_identity": args.max_names_per_identity,
    });
    let mut human = format!("relay {} listening on tcp {bound}", node.identifier());
    if let Some((line, value)) = member {
        human = format!("{human}\n{line}");
        ready["trust"] = value;
    }
    out.emit(human, ready);
    interrupted().await;
    shut_down(&node).await;
    Ok(())
}

async fn portal_inlet(
    id: IdentityArgs,
    peer: PeerArgs,
    listen: &str,
    member: &MemberArgs,
    home: &Home,
    out: Output,
) -> CliResult {
    let trust = member_trust(&id, member, "portal inlet", home, out)?;
    let identity = load_identity(&id, home)?;
    let node = pinning_node(&identity, node_options("cli"), &id, home)?;
    let member = crate::trust::join_authorities(
        &node,
        member,
        &id,
        home.0.clone(),
        out,
        &["channel".into(), "inlet".into()],
    )
    .await?;
    let (target, options, what) = target(&peer);
    // Binding `--listen` fails after the channel opened: name the address that failed.
    let involving = |e: Error| {
        let about = if e.code() == ErrorCode::AddressInUse || e.message().contains(listen) {
            listen
        } else {
            &what
        };
        CliError::involving(e, about)
    };
    // Through a channel to the relay (a relay with a `forward` policy): one channel; when it closes, the
    // inlet is useless, so the process ends with an error for its supervisor to restart it.
    let mut nested = None;
    let (bound, peer_id) = match (&peer.via_relay_channel, &peer.relay_name) {
        (Some(relay_id), Some(name)) => {
            parse_identifier(relay_id, "--via-relay-channel")?;
            let (bound, channel) = node
                .create_inlet_via_relay_channel(
                    listen.to_string(),
                    peer.to.clone(),
                    Trust::Identifiers(vec![relay_id.clone()]),
                    name.clone(),
                    trust,
                    options,
                    "outlet".into(),
                )
                .await
                .map_err(involving)?;
            let peer_id = channel.peer_identifier();
            nested = Some(channel);
            (bound, peer_id)
        }
        // The portal's channel re-handshakes on its own (relay or outlet restarts); only the peer that
        // `trust` accepts can answer or send data through it.
        _ => node
            .create_inlet_to(listen.to_string(), target, trust, options, "outlet".into())
            .await
            .map_err(involving)?,
    };
    let mut ready = json!({"event": "ready", "listen": bound, "peer": peer_id});
    let mut human = format!("portal inlet listening on {bound} (peer {peer_id})");
    if let Some((line, value)) = member {
        human = format!("{human}\n{line}");
        ready["trust"] = value;
    }
    out.emit(human, ready);
    let Some(channel) = nested else {
        interrupted().await;
        shut_down(&node).await;
        return Ok(());
    };
    let closed = async {
        while !channel.is_closed() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        () = interrupted() => {
            shut_down(&node).await;
            Ok(())
        }
        () = closed => {
            shut_down(&node).await;
            Err(CliError::involving(
                Error::new(
                    ErrorCode::ChannelClosed,
                    "the portal's channel through the relay closed",
                ),
                &what,
            ))
        }
    }
}

async fn listen_direct(addr: &str, id: IdentityArgs, home: &Home, out: Output) -> CliResult {
    let trust = trust_from_args(&id, "channel listen-direct", home, out)?;
    let identity = load_identity(&id, home)?;
    let listener = DirectListener::start(&identity, addr.to_string(), trust)
        .await
        .map_err(|e| CliError::involving(e, addr))?;
    let (bound, identifier) = (listener.address(), identity.identifier());
    // Same first line as facade/examples/direct_peer.rs, so cross-language clients can parse either.
    out.emit(
        format!("LISTENING {bound} {identifier}"),
        json!({"event": "ready", "addr": bound, "identifier": identifier}),
    );
    interrupted().await;
    listener.stop();
    Ok(())
}

async fn connect_direct(
    addr: &str,
    id: IdentityArgs,
    messages: Vec<String>,
    home: &Home,
    out: Output,
) -> CliResult {
    let trust = trust_from_args(&id, "channel connect-direct", home, out)?;
    let identity = load_identity(&id, home)?;
    let channel = DirectChannel::connect(&identity, addr.to_string(), trust)
        .await
        .map_err(|e| CliError::involving(e, addr))?;
    out.emit(
        format!("PEER {}", channel.peer_identifier()),
        json!({"event": "peer", "peer": channel.peer_identifier()}),
    );
    for m in messages {
        let reply = channel
            .clone()
            .exchange(m.into_bytes())
            .await
            .map_err(|e| CliError::involving(e, addr))?;
        let reply = remote_text(&reply);
        out.emit(
            format!("REPLY {reply}"),
            json!({"event": "reply", "reply": reply}),
        );
    }
    Ok(())
}
