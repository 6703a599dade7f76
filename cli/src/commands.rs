//! What each command does, on top of latchkey-runtime. Nothing protocol-related lives here.

use crate::errors::{CliError, EXIT_REFUSED, EXIT_USAGE};
use crate::output::{escape_controls, remote_text, Output};
use crate::{
    ChannelCommand, Cli, Command, IdentityArgs, IdentityCommand, MessageCommand, NodeCommand,
    NodeRunArgs, PeerArgs, PortalCommand, RelayCommand, RelayRunArgs,
};
use latchkey_core::channel::{TrustAnyIdentity, TrustIdentifiers, TrustPolicy};
use latchkey_core::identity::Identifier;
use latchkey_runtime::channel::ChannelOptions;
use latchkey_runtime::channel::ResilientChannel;
use latchkey_runtime::relay::{
    forwarder_address, register_at_relay_resilient, start_relay, RelayOptions, RelayRegistration,
};
use latchkey_runtime::services::start_echo;
use latchkey_runtime::storage::{default_home, IdentitySummary, Store};
use latchkey_runtime::transport::{tcp, udp};
use latchkey_runtime::{
    create_channel, create_listener, direct, portal, Accepts, Address, ChannelHandle, FlowId,
    LocalIdentity, Message, Node, Route, RuntimeError,
};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

type CliResult<T = ()> = Result<T, CliError>;

pub async fn run(cli: Cli, out: Output) -> CliResult {
    let home = cli.home.clone().unwrap_or_else(default_home);
    match cli.command {
        Command::Identity(c) => identity(c, &home, out),
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
            messages,
        }) => message_send(id, peer, &service, messages, &home, out).await,
        Command::Portal(PortalCommand::Inlet { id, peer, listen }) => {
            portal_inlet(id, peer, &listen, &home, out).await
        }
    }
}

fn summary_json(s: &IdentitySummary) -> serde_json::Value {
    json!({"name": s.name, "identifier": s.identifier, "changes": s.changes, "created_at": s.created_at, "updated_at": s.updated_at})
}

fn open_store(home: &Path) -> CliResult<Store> {
    Store::open(home).map_err(|e| {
        CliError::new(
            crate::errors::EXIT_FAILURE,
            "storage",
            format!("{}: {e}", home.display()),
        )
    })
}

fn identity(command: IdentityCommand, home: &Path, out: Output) -> CliResult {
    let mut store = open_store(home)?;
    match command {
        IdentityCommand::Create { name } => {
            let (_, s) = store.create_identity(&name)?;
            out.emit(
                format!("created identity {} {}", s.name, s.identifier),
                summary_json(&s),
            );
        }
        IdentityCommand::List => {
            let all = store.list()?;
            if out.json {
                out.emit("", json!(all.iter().map(summary_json).collect::<Vec<_>>()));
            } else if all.is_empty() {
                println!("no identities (create one with `latchkey identity create NAME`)");
            } else {
                for s in &all {
                    println!("{:<20} {}  changes={}", s.name, s.identifier, s.changes);
                }
            }
        }
        IdentityCommand::Show { name } => {
            let s = store.summary(&name)?;
            out.emit(
                format!(
                    "name:       {}\nidentifier: {}\nchanges:    {}\ncreated:    {}\nupdated:    {}",
                    s.name, s.identifier, s.changes, s.created_at, s.updated_at
                ),
                summary_json(&s),
            );
        }
        IdentityCommand::Rotate { name } => {
            let s = store.rotate_identity(&name)?;
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

fn load_identity(args: &IdentityArgs, home: &Path) -> CliResult<LocalIdentity> {
    match &args.identity {
        Some(name) => Ok(open_store(home)?.load_identity(name)?),
        None => Ok(LocalIdentity::create().map_err(latchkey_runtime::RuntimeError::from)?),
    }
}

/// Whom a command accepts as its peer: the identifiers given with `--trust`, or (explicitly) anyone.
#[derive(Clone, Debug)]
enum Trust {
    Any,
    Only(Vec<Identifier>),
}

impl Trust {
    /// Reads `--trust` / `--trust-any`. Neither is a usage error that says what to add: trust is never
    /// implied by an omitted flag. `--trust-any` prints a warning.
    fn from_args(args: &IdentityArgs, command: &str, out: Output) -> CliResult<Trust> {
        Trust::parse(
            &args.trust,
            args.trust_any,
            "--trust",
            "--trust-any",
            &format!("`{command}` accepts any authenticated identity as its peer"),
            &format!(
                "`{command}` needs to know which peers to trust: add --trust ID (repeatable; a peer's \
                 identifier, as `latchkey identity show NAME` prints it) or, to accept any authenticated \
                 identity, --trust-any"
            ),
            out,
        )
    }

    fn parse(
        ids: &[String],
        any: bool,
        flag: &str,
        any_flag: &str,
        any_warning: &str,
        missing: &str,
        out: Output,
    ) -> CliResult<Trust> {
        if any {
            out.warn(
                "trust_any",
                &format!("{any_flag}: {any_warning}; name the peers with {flag} ID instead"),
            );
            return Ok(Trust::Any);
        }
        if ids.is_empty() {
            return Err(CliError::new(EXIT_USAGE, "usage", missing));
        }
        let ids = ids
            .iter()
            .map(|t| parse_identifier(t, flag))
            .collect::<CliResult<Vec<_>>>()?;
        Ok(Trust::Only(ids))
    }

    fn policy(&self) -> Arc<dyn TrustPolicy> {
        match self {
            Trust::Any => Arc::new(TrustAnyIdentity),
            Trust::Only(ids) => Arc::new(TrustIdentifiers::new(ids.iter().copied())),
        }
    }

    fn channel_options(&self) -> ChannelOptions {
        match self {
            Trust::Any => ChannelOptions::default().trust_any(),
            Trust::Only(_) => ChannelOptions::default().with_trust(self.policy()),
        }
    }

    /// What a service on a node accepts: messages out of the channels of the listener with `flow`, from
    /// the trusted peers only when they are named.
    fn service_accepts(&self, flow: FlowId) -> Accepts {
        match self {
            Trust::Any => Accepts::flow(flow),
            Trust::Only(ids) => Accepts::flow(flow).from_peers(ids.iter().copied()),
        }
    }
}

fn parse_identifier(text: &str, flag: &str) -> CliResult<Identifier> {
    Identifier::from_str(text).map_err(|e| {
        CliError::new(
            EXIT_USAGE,
            "usage",
            format!("{flag} {text:?} is not an identifier: {e}"),
        )
    })
}

/// Connects to the peer described by `peer` and returns the route to its channel listener.
async fn route_to_listener(node: &Node, peer: &PeerArgs) -> CliResult<Route> {
    let target = &peer.to;
    let err = |e| CliError::from_runtime(e, target);
    let mut route = if peer.udp {
        let handle = udp::bind(node, "0.0.0.0:0").await.map_err(err)?;
        let remote = tcp::resolve(target).await.map_err(err)?;
        Route::from_addresses([
            handle.address,
            latchkey_runtime::message::address(remote.to_string()).map_err(err)?,
        ])
    } else {
        let link = tokio::time::timeout(
            Duration::from_secs(peer.timeout),
            tcp::connect(node, target, Default::default()),
        )
        .await
        .map_err(|_| {
            CliError::new(
                crate::errors::EXIT_UNREACHABLE,
                "unreachable",
                format!("cannot reach {target}: timed out"),
            )
        })?
        .map_err(err)?;
        Route::from_addresses([link])
    };
    if let Some(name) = &peer.relay_name {
        route = route.append(forwarder_address(name).map_err(err)?);
    }
    Ok(route.append(Address::from("api")))
}

async fn open(
    node: &Node,
    id: &IdentityArgs,
    trust: &Trust,
    peer: &PeerArgs,
    home: &Path,
) -> CliResult<ChannelHandle> {
    let identity = load_identity(id, home)?;
    let route = route_to_listener(node, peer).await?;
    let options = ChannelOptions {
        handshake_timeout: Duration::from_secs(peer.timeout),
        ..trust.channel_options()
    };
    let what = match &peer.relay_name {
        Some(name) => format!("{name:?} via relay {}", peer.to),
        None => peer.to.clone(),
    };
    create_channel(node, &identity, route, options)
        .await
        .map_err(|e| CliError::from_runtime(e, &what))
}

async fn channel_open(id: IdentityArgs, peer: PeerArgs, home: &Path, out: Output) -> CliResult {
    let trust = Trust::from_args(&id, "channel open", out)?;
    let node = Node::new("cli");
    let channel = open(&node, &id, &trust, &peer, home).await?;
    out.emit(
        format!("secure channel established with {}", channel.peer()),
        json!({"event": "channel", "peer": channel.peer().to_string()}),
    );
    channel.close().await;
    Ok(())
}

async fn message_send(
    id: IdentityArgs,
    peer: PeerArgs,
    service: &str,
    messages: Vec<String>,
    home: &Path,
    out: Output,
) -> CliResult {
    let trust = Trust::from_args(&id, "message send", out)?;
    let service = latchkey_runtime::message::address(service)?;
    let node = Node::new("cli");
    let channel = open(&node, &id, &trust, &peer, home).await?;
    // Replies are taken only out of this channel, from the peer it authenticated.
    let mut replies = node.register_with(
        Address::from("replies"),
        256,
        Accepts::flow(channel.flow()).from_peers([channel.peer()]),
    )?;
    let expects_reply = service.as_str() == "echo";
    for text in messages {
        channel
            .send_confirmed(
                Route::from_addresses([service.clone()]),
                Route::from(["replies"]),
                text.clone().into_bytes(),
            )
            .await
            .map_err(|e| CliError::from_runtime(e, &peer.to))?;
        if expects_reply {
            let reply = tokio::time::timeout(Duration::from_secs(peer.timeout), replies.recv())
                .await
                .ok()
                .flatten()
                .ok_or_else(|| {
                    CliError::new(
                        crate::errors::EXIT_REFUSED,
                        "refused",
                        format!(
                            "no reply from {service} (access refused, or the service is missing)"
                        ),
                    )
                })?;
            let reply = remote_text(&reply.payload);
            let text = escape_controls(&text);
            out.emit(
                format!("reply: {reply}"),
                json!({"event": "reply", "message": text, "reply": reply}),
            );
        } else {
            let text = escape_controls(&text);
            out.emit(
                format!("delivered: {text}"),
                json!({"event": "delivered", "message": text}),
            );
        }
    }
    channel.close().await;
    Ok(())
}

async fn node_run(
    args: NodeRunArgs,
    outlet_target: Option<String>,
    command: &str,
    home: &Path,
    out: Output,
) -> CliResult {
    let trust = Trust::from_args(&args.id, command, out)?;
    let relay = match (&args.relay, &args.relay_name) {
        (Some(relay), Some(name)) => {
            let relay_trust = Trust::parse(
                &args.relay_trust,
                args.relay_trust_any,
                "--relay-trust",
                "--relay-trust-any",
                "any authenticated identity is accepted as the relay",
                "--relay needs to know which relay to trust: add --relay-trust ID (the identifier \
                 `latchkey relay run` prints) or, to accept any identity as the relay, --relay-trust-any",
                out,
            )?;
            Some((relay.clone(), name.clone(), relay_trust))
        }
        _ => None,
    };
    let identity = load_identity(&args.id, home)?;
    let node = Node::new("node");
    let listener = create_listener(&node, &identity, "api".into(), trust.channel_options())?;
    // Services take only messages out of the channels that "api" accepted (from the --trust peers).
    let accepts = trust.service_accepts(listener.flow);
    start_echo(&node, "echo".into(), accepts.clone())?;
    let mut inbox = node.register_with("inbox".into(), 256, accepts.clone())?;
    let outlet = outlet_target.or(args.outlet.clone());
    if let Some(target) = &outlet {
        portal::create_outlet(&node, "outlet".into(), target.clone(), accepts.clone())?;
    }
    let mut ready = json!({"event": "ready", "identifier": identity.identifier().to_string()});
    let mut human = vec![format!("node identity {}", identity.identifier())];
    if let Some(addr) = &args.tcp {
        let l = tcp::listen(&node, addr, Default::default())
            .await
            .map_err(|e| CliError::from_runtime(e, addr))?;
        ready["tcp"] = json!(l.local_addr.to_string());
        human.push(format!("listening on tcp {}", l.local_addr));
    }
    if let Some(addr) = &args.udp {
        let h = udp::bind(&node, addr)
            .await
            .map_err(|e| CliError::from_runtime(e, addr))?;
        ready["udp"] = json!(h.local_addr.to_string());
        human.push(format!("listening on udp {}", h.local_addr));
    }
    // Kept for the node's lifetime: the channel to the relay carries our registration and our traffic.
    let mut _to_relay = None;
    if let Some((relay, name, relay_trust)) = &relay {
        let (to_relay, registration) =
            join_relay(&node, &identity, relay, name, relay_trust).await?;
        let peer = to_relay.channel().await.map(|c| c.peer().to_string());
        let peer = peer.unwrap_or_default();
        ready["relay"] = json!({"address": relay, "name": name, "peer": peer});
        human.push(format!("registered at relay {relay} ({peer}) as {name:?}"));
        _to_relay = Some((to_relay, registration));
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
            return Ok(());
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            message = inbox.recv() => {
                let Some(message) = message else { return Ok(()) };
                received += 1;
                print_inbox(&message, out);
            }
        }
    }
}

/// Opens a secure channel to the relay's listener, registers `name` through it (so the name is bound to
/// our identity), and lets handshakes that the relay forwards down that channel reach our listener "api".
/// The channel reopens itself and the name is registered again when the relay restarts.
async fn join_relay(
    node: &Node,
    identity: &LocalIdentity,
    relay: &str,
    name: &str,
    relay_trust: &Trust,
) -> CliResult<(ResilientChannel, RelayRegistration)> {
    let link = tcp::connect(node, relay, Default::default())
        .await
        .map_err(|e| CliError::from_runtime(e, relay))?;
    let to_relay = ResilientChannel::open(
        node,
        identity,
        Route::from_addresses([link, "api".into()]),
        relay_trust.channel_options(),
    )
    .await
    .map_err(|e| CliError::from_runtime(e, &format!("relay {relay}")))?;
    let registration = register_at_relay_resilient(
        node,
        &to_relay,
        "relay".into(),
        name,
        Duration::from_secs(2),
        vec!["api".into()],
    )
    .await
    .map_err(|e| match e {
        RuntimeError::Refused(why) => CliError::new(
            EXIT_REFUSED,
            "refused",
            format!("relay {relay} refused to register {name:?}: {why}"),
        ),
        e => CliError::from_runtime(e, &format!("relay {relay}")),
    })?;
    Ok((to_relay, registration))
}

/// Prints a message that arrived at the inbox. Its text comes from a remote peer: control characters are
/// escaped, so it cannot start a line of its own or reach the terminal as escape codes.
fn print_inbox(message: &Message, out: Output) {
    let from = message
        .peer()
        .map(|p| p.to_string())
        .unwrap_or_else(|| message.origin().to_string());
    let text = remote_text(&message.payload);
    out.emit(
        format!("message from {from}: {text}"),
        json!({"event": "message", "from": from, "message": text}),
    );
}

type AllowedNames = HashMap<Identifier, Vec<String>>;

/// `--allow ID=NAME` entries as the relay's list of who may register which names.
fn allowed_names(entries: &[String]) -> CliResult<Option<Arc<AllowedNames>>> {
    if entries.is_empty() {
        return Ok(None);
    }
    let mut allowed = AllowedNames::new();
    for entry in entries {
        let (id, name) = entry
            .split_once('=')
            .filter(|(_, name)| !name.is_empty())
            .ok_or_else(|| {
                CliError::new(
                    EXIT_USAGE,
                    "usage",
                    format!("--allow {entry:?}: expected ID=NAME (NAME may be *)"),
                )
            })?;
        let id = parse_identifier(id, "--allow")?;
        allowed.entry(id).or_default().push(name.to_string());
    }
    Ok(Some(Arc::new(allowed)))
}

async fn relay_run(args: RelayRunArgs, home: &Path, out: Output) -> CliResult {
    let trust = Trust::from_args(&args.id, "relay run", out)?;
    if args.lease < 5 {
        return Err(CliError::new(
            EXIT_USAGE,
            "usage",
            format!(
                "--lease {}: a lease must be at least 5 seconds (nodes refresh every 2 s)",
                args.lease
            ),
        ));
    }
    let allowed = allowed_names(&args.allow)?;
    let identity = load_identity(&args.id, home)?;
    let node = Node::relay("relay");
    // Registrations come only through secure channels accepted by this listener.
    let listener = create_listener(&node, &identity, "api".into(), trust.channel_options())?;
    let mut options = RelayOptions::new(listener.flow);
    options.lease = Duration::from_secs(args.lease);
    options.max_names = args.max_names;
    options.max_names_per_identity = args.max_names_per_identity;
    options.allowed = allowed;
    start_relay(&node, "relay".into(), options)?;
    let l = tcp::listen(&node, &args.tcp, Default::default())
        .await
        .map_err(|e| CliError::from_runtime(e, &args.tcp))?;
    out.emit(
        format!(
            "relay {} listening on tcp {}",
            identity.identifier(),
            l.local_addr
        ),
        json!({
            "event": "ready",
            "tcp": l.local_addr.to_string(),
            "identifier": identity.identifier().to_string(),
            "lease_secs": args.lease,
            "max_names": args.max_names,
            "max_names_per_identity": args.max_names_per_identity,
        }),
    );
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}

async fn portal_inlet(
    id: IdentityArgs,
    peer: PeerArgs,
    listen: &str,
    home: &Path,
    out: Output,
) -> CliResult {
    let trust = Trust::from_args(&id, "portal inlet", out)?;
    let node = Node::new("inlet");
    let identity = load_identity(&id, home)?;
    let route = route_to_listener(&node, &peer).await?;
    let options = ChannelOptions {
        handshake_timeout: Duration::from_secs(peer.timeout),
        ..trust.channel_options()
    };
    // The portal is bound to its channel (only its peer can answer or send data); the channel reopens
    // itself when the outlet's node restarts.
    let channel = ResilientChannel::open(&node, &identity, route, options)
        .await
        .map_err(|e| CliError::from_runtime(e, &peer.to))?;
    let channel_now = channel
        .channel()
        .await
        .map_err(|e| CliError::from_runtime(e, &peer.to))?;
    let inlet = portal::create_inlet_resilient(&node, listen, &channel, "outlet".into())
        .await
        .map_err(|e| CliError::from_runtime(e, listen))?;
    out.emit(
        format!("portal inlet listening on {} (peer {})", inlet.local_addr, channel_now.peer()),
        json!({"event": "ready", "listen": inlet.local_addr.to_string(), "peer": channel_now.peer().to_string()}),
    );
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}

async fn listen_direct(addr: &str, id: IdentityArgs, home: &Path, out: Output) -> CliResult {
    let trust = Trust::from_args(&id, "channel listen-direct", out)?;
    let identity = load_identity(&id, home)?;
    let identifier = identity.identifier();
    let listener = direct::listen_direct(identity, addr, trust.policy())
        .await
        .map_err(|e| CliError::from_runtime(e, addr))?;
    // Same first line as facade/examples/direct_peer.rs, so cross-language clients can parse either.
    out.emit(
        format!("LISTENING {} {}", listener.local_addr, identifier),
        json!({"event": "ready", "addr": listener.local_addr.to_string(), "identifier": identifier.to_string()}),
    );
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}

async fn connect_direct(
    addr: &str,
    id: IdentityArgs,
    messages: Vec<String>,
    home: &Path,
    out: Output,
) -> CliResult {
    let trust = Trust::from_args(&id, "channel connect-direct", out)?;
    let identity = load_identity(&id, home)?;
    let mut channel = direct::connect_direct(&identity, addr, trust.policy())
        .await
        .map_err(|e| CliError::from_runtime(e, addr))?;
    out.emit(
        format!("PEER {}", channel.peer()),
        json!({"event": "peer", "peer": channel.peer().to_string()}),
    );
    for m in messages {
        channel
            .send(m.as_bytes())
            .await
            .map_err(|e| CliError::from_runtime(e, addr))?;
        let reply = channel
            .recv()
            .await
            .map_err(|e| CliError::from_runtime(e, addr))?;
        let reply = remote_text(&reply);
        out.emit(
            format!("REPLY {reply}"),
            json!({"event": "reply", "reply": reply}),
        );
    }
    Ok(())
}
