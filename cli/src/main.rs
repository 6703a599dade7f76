//! `latchkey`: identities, nodes, relays, secure channels, messages and portals from the command line.

mod commands;
mod errors;
mod output;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const EXIT_CODES: &str =
    "Exit codes: 0 success, 1 other failure, 2 usage error, 3 unknown identity, \
4 peer unreachable or not answering, 5 authentication or access refused, 6 bad address.";

/// Latchkey: mutually authenticated, end-to-end encrypted channels across any route.
#[derive(Parser, Debug)]
#[command(name = "latchkey", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// State directory (identities). Defaults to $LATCHKEY_HOME, else ~/.latchkey.
    #[arg(long, global = true)]
    pub home: Option<PathBuf>,
    /// Machine-readable output: one JSON object per line.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create, list, show and rotate identities.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Run a node.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Run a relay.
    #[command(subcommand)]
    Relay(RelayCommand),
    /// Open secure channels (routed, or direct over one TCP connection).
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Send and receive messages over secure channels.
    #[command(subcommand)]
    Message(MessageCommand),
    /// TCP portals: an inlet here, an outlet on another node.
    #[command(subcommand)]
    Portal(PortalCommand),
}

#[derive(Subcommand, Debug)]
pub enum IdentityCommand {
    /// Create a new identity and store it.
    Create { name: String },
    /// List stored identities.
    List,
    /// Show one identity.
    Show { name: String },
    /// Rotate an identity's primary key (its identifier stays the same).
    Rotate { name: String },
}

/// Who we are and whom we trust.
#[derive(Args, Debug, Clone)]
pub struct IdentityArgs {
    /// Stored identity to use; without it a fresh in-memory identity is used for this run.
    #[arg(long)]
    pub identity: Option<String>,
    /// Accept only peers with this identifier (repeatable). Without it any authenticated peer is accepted.
    #[arg(long = "trust")]
    pub trust: Vec<String>,
}

/// Where the peer node is.
#[derive(Args, Debug, Clone)]
pub struct PeerArgs {
    /// The peer node's (or relay's) address, HOST:PORT.
    #[arg(long)]
    pub to: String,
    /// Reach the node registered at the relay `--to` under this name.
    #[arg(long)]
    pub relay_name: Option<String>,
    /// Use UDP instead of TCP.
    #[arg(long)]
    pub udp: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Run a node until interrupted: secure-channel listener "api", services "echo" and "inbox".
    Run(NodeRunArgs),
}

#[derive(Args, Debug, Clone)]
pub struct NodeRunArgs {
    #[command(flatten)]
    pub id: IdentityArgs,
    /// Listen for TCP on HOST:PORT.
    #[arg(long)]
    pub tcp: Option<String>,
    /// Listen for UDP on HOST:PORT.
    #[arg(long)]
    pub udp: Option<String>,
    /// Register at the relay at HOST:PORT…
    #[arg(long, requires = "relay_name")]
    pub relay: Option<String>,
    /// …under this name.
    #[arg(long)]
    pub relay_name: Option<String>,
    /// Serve a portal outlet ("outlet") that connects to this HOST:PORT.
    #[arg(long)]
    pub outlet: Option<String>,
    /// Exit after the inbox has received this many messages.
    #[arg(long)]
    pub count: Option<usize>,
}

#[derive(Subcommand, Debug)]
pub enum RelayCommand {
    /// Run a relay until interrupted. Nodes register names through a secure channel to it, so a name
    /// belongs to the identity that registered it first.
    Run {
        /// Listen for TCP on HOST:PORT.
        #[arg(long)]
        tcp: String,
        #[command(flatten)]
        id: IdentityArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ChannelCommand {
    /// Open a secure channel to a node's listener, print the authenticated peer, and close it.
    Open {
        #[command(flatten)]
        id: IdentityArgs,
        #[command(flatten)]
        peer: PeerArgs,
    },
    /// Direct TCP (compatible with facade/examples/direct_peer.rs): listen and echo every message.
    ListenDirect {
        /// HOST:PORT to listen on.
        addr: String,
        #[command(flatten)]
        id: IdentityArgs,
    },
    /// Direct TCP: connect, send each message, print each echo.
    ConnectDirect {
        /// HOST:PORT to connect to.
        addr: String,
        #[command(flatten)]
        id: IdentityArgs,
        /// Messages to send.
        messages: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum MessageCommand {
    /// Send messages through a secure channel to a service on a node ("echo" replies; "inbox" prints).
    Send {
        #[command(flatten)]
        id: IdentityArgs,
        #[command(flatten)]
        peer: PeerArgs,
        /// Service on the far node.
        #[arg(long, default_value = "echo")]
        service: String,
        /// Messages to send.
        #[arg(required = true)]
        messages: Vec<String>,
    },
    /// Run a node and print messages arriving at its inbox (same as `node run`, with --count).
    Receive(NodeRunArgs),
}

#[derive(Subcommand, Debug)]
pub enum PortalCommand {
    /// Listen on a local TCP address; carry each connection to the outlet of the node at --to.
    Inlet {
        #[command(flatten)]
        id: IdentityArgs,
        #[command(flatten)]
        peer: PeerArgs,
        /// Local HOST:PORT to listen on.
        #[arg(long)]
        listen: String,
    },
    /// Run a node whose outlet connects to --target (same as `node run --outlet`).
    Outlet {
        #[command(flatten)]
        node: NodeRunArgs,
        /// The TCP service to expose, HOST:PORT.
        #[arg(long)]
        target: String,
    },
}

fn main() {
    let cli = Cli::parse();
    let filter = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let out = output::Output { json: cli.json };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(errors::EXIT_FAILURE);
        }
    };
    if let Err(e) = runtime.block_on(commands::run(cli, out)) {
        if out.json {
            eprintln!(
                "{}",
                serde_json::json!({"error": e.message, "kind": e.kind, "code": e.code})
            );
        } else {
            eprintln!("error: {}", e.message);
        }
        std::process::exit(e.code);
    }
}
