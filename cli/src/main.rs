//! `latchkey`: identities, nodes, relays, secure channels, messages and portals from the command line.

#![forbid(unsafe_code)]

mod commands;
mod errors;
mod output;
mod trust;

use clap::{Args, Parser, Subcommand};
use latchkey_facade::RelayServiceOptions;
use std::path::PathBuf;

fn after_help() -> String {
    format!(
        "Trust is never implied: commands that authenticate a peer need --trust ID or an explicit --trust-any. \
Text from peers is printed with control characters escaped (\\n, \\u{{1b}}, …).\n\n{}",
        errors::EXIT_CODES_HELP
    )
}

/// Latchkey: mutually authenticated, end-to-end encrypted channels across any route.
#[derive(Parser, Debug)]
#[command(name = "latchkey", version, after_help = after_help())]
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
    /// Pinned peers: the histories this home remembers for the peers it met, and their names.
    #[command(subcommand)]
    Peer(PeerCommand),
    /// Enrollment authorities: create, serve, list members, export the history nodes trust.
    #[command(subcommand)]
    Authority(trust::AuthorityCommand),
    /// One-time enrollment tokens.
    #[command(subcommand)]
    Token(trust::TokenCommand),
    /// Enroll a stored identity with an authority, using a token; saves its membership credential.
    Enroll(trust::EnrollArgs),
    /// Membership credentials: show, verify.
    #[command(subcommand)]
    Credential(trust::CredentialCommand),
    /// Revoke an identifier or a credential at an authority (pushed to subscribed nodes).
    Revoke(trust::RevokeArgs),
    /// Attribute policies: store at an authority, evaluate.
    #[command(subcommand)]
    Policy(trust::PolicyCommand),
    /// Delegation chains: issue, attenuate (narrow only), verify offline.
    #[command(subcommand)]
    Delegate(trust::DelegateCommand),
}

#[derive(Subcommand, Debug)]
pub enum PeerCommand {
    /// List pinned and named peers.
    List,
    /// Show one peer (by name or identifier).
    Show { name: String },
    /// Forget a peer's pinned history and name: its next contact is a first contact again.
    Forget { name: String },
}

#[derive(Subcommand, Debug)]
pub enum IdentityCommand {
    /// Create a new identity and store it.
    Create {
        name: String,
        /// Seconds the first primary key is valid (default and maximum: five years). Rotate before it ends:
        /// pinning peers refuse a rotation made after the key expired.
        #[arg(long, value_name = "SECS")]
        key_lifetime: Option<u64>,
        /// Where the keys live: software (default), pkcs11:module=PATH,token=LABEL[,pin-file=PATH] (PIN from
        /// $LATCHKEY_PKCS11_PIN or the file, never from the command line) or tpm:TCTI (e.g.
        /// tpm:swtpm:host=127.0.0.1,port=2321, tpm:device:/dev/tpmrm0). See docs/VAULTS.md.
        #[arg(long, value_name = "SPEC", default_value = "software")]
        vault: String,
    },
    /// List stored identities.
    List,
    /// Show one identity.
    Show { name: String },
    /// Rotate an identity's primary key (its identifier stays the same).
    Rotate { name: String },
}

/// Who we are and whom we trust. Trust is never implied: every command that authenticates a peer needs
/// `--trust ID` or an explicit `--trust-any`.
#[derive(Args, Debug, Clone)]
pub struct IdentityArgs {
    /// Stored identity to use; without it a fresh in-memory identity is used for this run.
    #[arg(long)]
    pub identity: Option<String>,
    /// Accept only this peer (repeatable): an identifier (lk…), NAME=lk… (and name it NAME in this home), or
    /// NAME (a pinned peer, else a stored identity). Its history is pinned at first contact; later it must
    /// present that history or an extension of it. This, --trust-any or --trust-on-first-use is required.
    #[arg(long = "trust", value_name = "ID|NAME=ID|NAME")]
    pub trust: Vec<String>,
    /// Accept any peer that proves an identity (prints a warning); peers already pinned are still held to
    /// their pins. Prefer naming peers with --trust.
    #[arg(long, conflicts_with_all = ["trust", "trust_on_first_use"])]
    pub trust_any: bool,
    /// Accept any peer that proves an identity and pin its history at first contact (prints a warning):
    /// from then on it must present that history or an extension of it.
    #[arg(long, conflicts_with = "trust")]
    pub trust_on_first_use: bool,
    /// The cipher suite of the routed channels this command opens and accepts: auto (AES-256-GCM where
    /// the CPU has AES instructions, else ChaCha20-Poly1305; accepts both), chachapoly or aesgcm (offers
    /// and accepts only that one; a peer offering the other is refused with UnsupportedSuite).
    #[arg(long, value_name = "SUITE", default_value = "auto", value_parser = ["auto", "chachapoly", "aesgcm"])]
    pub suite: String,
}

/// Authorities and policies (docs/RUNTIME.md, "Authorities on a node"; docs/POLICY.md).
#[derive(Args, Debug, Clone, Default)]
pub struct MemberArgs {
    /// Trust credentials issued by this authority (repeatable): a file with its exported history (`latchkey
    /// authority export-history`) or the NAME of a stored identity. Every peer must then present a valid,
    /// unrevoked credential of one of them when its channel opens and on every message to this node's
    /// services, portal inlet/outlet and relay service (on top of --trust; without --trust, any identity
    /// with such a credential).
    #[arg(long = "authority", value_name = "FILE|NAME")]
    pub authorities: Vec<String>,
    /// Present this identity's stored credential (saved by `latchkey enroll`) in every handshake, and with
    /// --authority-at refresh it at half its validity (retrying with backoff while the authority is down;
    /// the old one is kept until it expires). Needs --identity.
    #[arg(long)]
    pub credential: bool,
    /// The authority's address (HOST:PORT of `latchkey authority serve`): follow its revocation lists
    /// (pushed at once; fetched again every --revocation-refetch seconds) and close the channels of revoked
    /// peers; refresh our --credential there.
    #[arg(long, value_name = "HOST:PORT")]
    pub authority_at: Option<String>,
    /// The attribute policy of TARGET (repeatable), checked on every message to it: TARGET is a service
    /// (echo, inbox, an --echo NAME; action.name = "send"), outlet or inlet (a portal; "connect"), relay (the
    /// relay's registrations; "register"), forward (a relay's forwarders: only through channels to the relay,
    /// every message checked; "forward", resource.name = the registered name) or channel (at each handshake;
    /// "open"); otherwise resource.name = TARGET.
    /// POLICY is a file with the policy's text or the NAME of a policy stored (`latchkey policy set`) at an
    /// --authority NAME of this home. Needs --authority. The peer learns only "refused".
    #[arg(long = "policy", value_name = "TARGET=FILE|NAME")]
    pub policies: Vec<String>,
    /// Fetch the revocation list again this often, besides the pushes.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub revocation_refetch: u64,
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
    /// Reach --relay-name through a secure channel to the relay (nested: the end-to-end channel travels
    /// inside it), which must prove it is RELAY_ID. Needed for a relay with a `forward` policy, which drops
    /// bare TCP traffic to its names (the relay is shown the credential this identity carries).
    #[arg(
        long,
        value_name = "RELAY_ID",
        requires = "relay_name",
        conflicts_with = "udp"
    )]
    pub via_relay_channel: Option<String>,
    /// Use UDP instead of TCP.
    #[arg(long)]
    pub udp: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Run a node until interrupted: secure-channel listener "api", services "echo" and "inbox" (and
    /// "outlet"). The services take messages only out of channels that "api" accepted, so only from the
    /// --trust peers when they are named.
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
    /// Register at the relay at HOST:PORT (through a secure channel to it)…
    #[arg(long, requires = "relay_name")]
    pub relay: Option<String>,
    /// …under this name.
    #[arg(long, requires = "relay")]
    pub relay_name: Option<String>,
    /// The relay: its identifier (printed by `latchkey relay run`), NAME=ID or the NAME of a pinned peer
    /// (repeatable); its history is pinned like a --trust peer's. With --relay, this or --relay-trust-any is
    /// required.
    #[arg(long, value_name = "ID|NAME=ID|NAME", requires = "relay")]
    pub relay_trust: Vec<String>,
    /// Accept any identity as the relay (prints a warning).
    #[arg(long, requires = "relay", conflicts_with = "relay_trust")]
    pub relay_trust_any: bool,
    /// Serve a portal outlet ("outlet") that connects to this HOST:PORT.
    #[arg(long)]
    pub outlet: Option<String>,
    /// Also serve an echo service at NAME (repeatable), for the same peers as "echo".
    #[arg(long = "echo", value_name = "NAME")]
    pub echo: Vec<String>,
    #[command(flatten)]
    pub member: MemberArgs,
    /// Exit after the inbox has received this many messages.
    #[arg(long)]
    pub count: Option<usize>,
}

#[derive(Subcommand, Debug)]
pub enum RelayCommand {
    /// Run a relay until interrupted. Nodes register names through a secure channel to its listener
    /// "api" (--trust / --trust-any say who may open one), so a name belongs to the identity that
    /// registered it, until its lease lapses.
    Run(RelayRunArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RelayRunArgs {
    /// Listen for TCP on HOST:PORT.
    #[arg(long)]
    pub tcp: String,
    #[command(flatten)]
    pub id: IdentityArgs,
    /// A name lapses when its owner has not refreshed it for this many seconds (`latchkey node run`
    /// refreshes every 2 s). At least 5.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub lease: u64,
    /// Most names one identity may hold.
    #[arg(long, value_name = "N", default_value_t = RelayServiceOptions::default().max_names_per_identity)]
    pub max_names_per_identity: u32,
    /// Most names the relay serves.
    #[arg(long, value_name = "N", default_value_t = RelayServiceOptions::default().max_names)]
    pub max_names: u32,
    /// Let identity ID register NAME (`*`: any name); repeatable. With any --allow, only the listed
    /// identities and names may register.
    #[arg(long, value_name = "ID=NAME")]
    pub allow: Vec<String>,
    /// Also keep store-and-forward mailboxes (for offline recipients such as an enrollment authority) in
    /// this SQLite file: deposits at `mailbox`, owner operations at `mailbox-owner`.
    #[arg(long, value_name = "FILE")]
    pub mailbox: Option<PathBuf>,
    #[command(flatten)]
    pub member: MemberArgs,
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
        /// Wait for each message's reply, as from an echo service (implied for --service echo).
        #[arg(long)]
        expect_reply: bool,
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
        #[command(flatten)]
        member: MemberArgs,
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage_error(e),
    };
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
    // Only waits on the facade's futures (the nodes run on the facade's own runtime), timers and Ctrl-C.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let e = errors::CliError::new(
                latchkey_facade::ErrorCode::InvalidState,
                format!("cannot start the async runtime: {e}"),
            );
            fail(&e, out)
        }
    };
    if let Err(e) = runtime.block_on(commands::run(cli, out)) {
        fail(&e, out)
    }
}

/// Prints `e` (one line; one JSON object with `--json`) on stderr and exits with its code.
fn fail(e: &errors::CliError, out: output::Output) -> ! {
    // Error messages may quote what a peer said (a refusal's reason): keep them on one line.
    let message = output::escape_controls(&e.message);
    if out.json {
        eprintln!(
            "{}",
            serde_json::json!({
                "error": message,
                "kind": e.kind(),
                "name": e.code.name(),
                "code": e.exit_code(),
            })
        );
    } else {
        eprintln!("error: {message}");
    }
    std::process::exit(e.exit_code());
}

/// A command line clap could not parse: its usual report, or with `--json` one JSON object like every other
/// error. `--help` and `--version` print as usual.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    let json = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    if !json || matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        e.exit()
    }
    // clap's first line says what is wrong ("error: unexpected argument …"); the rest is usage and tips.
    let rendered = e.render().to_string();
    let message = match e.kind() {
        // A command without its subcommand: clap would print the command's help.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            "a subcommand is required (see --help)".to_string()
        }
        _ => rendered
            .lines()
            .next()
            .unwrap_or("invalid command line")
            .trim_start_matches("error: ")
            .to_string(),
    };
    fail(&errors::CliError::usage(message), output::Output { json })
}
