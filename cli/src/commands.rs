//! What each command does, on top of latchkey-runtime. Nothing protocol-related lives here.

use crate::errors::CliError;
use crate::output::Output;
use crate::{
    ChannelCommand, Cli, Command, IdentityArgs, IdentityCommand, MessageCommand, NodeCommand,
    NodeRunArgs, PeerArgs, PortalCommand, RelayCommand,
};
use latchkey_core::channel::{TrustAnyIdentity, TrustIdentifiers, TrustPolicy};
use latchkey_core::identity::Identifier;
use latchkey_runtime::channel::ChannelOptions;
use latchkey_runtime::relay::{forwarder_address, register_at_relay, start_relay};
use latchkey_runtime::services::start_echo;
use latchkey_runtime::storage::{default_home, IdentitySummary, Store};
use latchkey_runtime::transport::{tcp, udp};
use latchkey_runtime::{
    create_channel, create_listener, direct, portal, Access, Address, ChannelHandle, LocalIdentity,
    Message, Node, Route,
};
use serde_json::json;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

type CliResult<T = ()> = Result<T, CliError>;

pub async fn run(cli: Cli, out: Output) -> CliResult {
    let home = cli.home.clone().unwrap_or_else(default_home);
    match cli.command {
        Command::Identity(c) => identity(c, &home, out),
        Command::Node(NodeCommand::Run(args)) => node_run(args, None, &home, out).await,
        Command::Message(MessageCommand::Receive(args)) => node_run(args, None, &home, out).await,
        Command::Portal(PortalCommand::Outlet { node, target }) => {
            node_run(node, Some(target), &home, out).await
        }
        Command::Relay(RelayCommand::Run { tcp, id }) => relay_run(&tcp, id, &home, out).await,
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
        None => Ok(LocalIdentity::create()?),
    }
}

fn trust_policy(args: &IdentityArgs) -> CliResult<Arc<dyn TrustPolicy>> {
    if args.trust.is_empty() {
        return Ok(Arc::new(TrustAnyIdentity));
    }
    Ok(Arc::new(TrustIdentifiers::new(trusted(args)?)))
}

fn trusted(args: &IdentityArgs) -> CliResult<Vec<Identifier>> {
    args.trust
        .iter()
        .map(|t| {
            Identifier::from_str(t).map_err(|e| {
                CliError::new(
                    2,
                    "usage",
                    format!("--trust {t:?} is not an identifier: {e}"),
                )
            })
        })
        .collect()
}

fn service_access(args: &IdentityArgs) -> CliResult<Access> {
    if args.trust.is_empty() {
        Ok(Access::Any)
    } else {
        Ok(Access::identifiers(trusted(args)?))
    }
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
            Address::new(remote.to_string()).map_err(err)?,
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
    peer: &PeerArgs,
    home: &Path,
) -> CliResult<ChannelHandle> {
    let identity = load_identity(id, home)?;
    let route = route_to_listener(node, peer).await?;
    let options = ChannelOptions {
        handshake_timeout: Duration::from_secs(peer.timeout),
        ..ChannelOptions::default()
    }
    .with_trust(trust_policy(id)?);
    let what = match &peer.relay_name {
        Some(name) => format!("{name:?} via relay {}", peer.to),
        None => peer.to.clone(),
    };
    create_channel(node, &identity, route, options)
        .await
        .map_err(|e| CliError::from_runtime(e, &what))
}

async fn channel_open(id: IdentityArgs, peer: PeerArgs, home: &Path, out: Output) -> CliResult {
    let node = Node::new("cli");
    let channel = open(&node, &id, &peer, home).await?;
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
    let node = Node::new("cli");
    let channel = open(&node, &id, &peer, home).await?;
    let mut replies = node.register(Address::from("replies"))?;
    let service = Address::new(service)?;
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
            let reply = String::from_utf8_lossy(&reply.payload).into_owned();
            out.emit(
                format!("reply: {reply}"),
                json!({"event": "reply", "message": text, "reply": reply}),
            );
        } else {
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
    home: &Path,
    out: Output,
) -> CliResult {
    let identity = load_identity(&args.id, home)?;
    let node = Node::new("node");
    let options = ChannelOptions::default().with_trust(trust_policy(&args.id)?);
    let access = service_access(&args.id)?;
    create_listener(&node, &identity, "api".into(), options)?;
    start_echo(&node, "echo".into(), access.clone())?;
    let mut inbox = node.register_with("inbox".into(), 256, access.clone())?;
    let outlet = outlet_target.or(args.outlet.clone());
    if let Some(target) = &outlet {
        portal::create_outlet(&node, "outlet".into(), target.clone(), access.clone())?;
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
    if let (Some(relay), Some(name)) = (&args.relay, &args.relay_name) {
        let link = tcp::connect(&node, relay, Default::default())
            .await
            .map_err(|e| CliError::from_runtime(e, relay))?;
        // Registering through a secure channel makes the name ours: no other identity can take it over.
        let to_relay = create_channel(
            &node,
            &identity,
            Route::from_addresses([link, "api".into()]),
            ChannelOptions::default(),
        )
        .await
        .map_err(|e| CliError::from_runtime(e, relay))?;
        register_at_relay(
            &node,
            to_relay.route_to("relay"),
            name,
            Duration::from_secs(2),
        )
        .await
        .map_err(|e| CliError::from_runtime(e, relay))?;
        ready["relay"] = json!({"address": relay, "name": name});
        human.push(format!("registered at relay {relay} as {name:?}"));
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

fn print_inbox(message: &Message, out: Output) {
    let from = message
        .local
        .peer
        .map(|p| p.to_string())
        .unwrap_or_else(|| "unauthenticated".into());
    let text = String::from_utf8_lossy(&message.payload);
    out.emit(
        format!("message from {from}: {text}"),
        json!({"event": "message", "from": from, "message": text}),
    );
}

async fn relay_run(addr: &str, id: IdentityArgs, home: &Path, out: Output) -> CliResult {
    let identity = load_identity(&id, home)?;
    let node = Node::new("relay");
    start_relay(&node, "relay".into(), None)?;
    let options = ChannelOptions::default().with_trust(trust_policy(&id)?);
    create_listener(&node, &identity, "api".into(), options)?;
    let l = tcp::listen(&node, addr, Default::default())
        .await
        .map_err(|e| CliError::from_runtime(e, addr))?;
    out.emit(
        format!("relay {} listening on tcp {}", identity.identifier(), l.local_addr),
        json!({"event": "ready", "tcp": l.local_addr.to_string(), "identifier": identity.identifier().to_string()}),
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
    let node = Node::new("inlet");
    let channel = open(&node, &id, &peer, home).await?;
    let inlet = portal::create_inlet(&node, listen, channel.route_to("outlet"))
        .await
        .map_err(|e| CliError::from_runtime(e, listen))?;
    out.emit(
        format!("portal inlet listening on {} (peer {})", inlet.local_addr, channel.peer()),
        json!({"event": "ready", "listen": inlet.local_addr.to_string(), "peer": channel.peer().to_string()}),
    );
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}

async fn listen_direct(addr: &str, id: IdentityArgs, home: &Path, out: Output) -> CliResult {
    let identity = load_identity(&id, home)?;
    let identifier = identity.identifier();
    let listener = direct::listen_direct(identity, addr, trust_policy(&id)?)
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
    let identity = load_identity(&id, home)?;
    let mut channel = direct::connect_direct(&identity, addr, trust_policy(&id)?)
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
        let reply = String::from_utf8_lossy(&reply).into_owned();
        out.emit(
            format!("REPLY {reply}"),
            json!({"event": "reply", "reply": reply}),
        );
    }
    Ok(())
}
