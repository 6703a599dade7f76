//! `latchkey authority|token|enroll|credential|revoke`: enrollment authorities and membership credentials,
//! on top of the facade (`latchkey_facade::AuthorityService`, `enroll`, `credential_info`, …).

use crate::errors::CliError;
use crate::output::{rfc3339_utc, Output};
use clap::{Args, Subcommand};
use latchkey_facade::{
    credential_info, stored_credential, verify_credential, AuthorityService, ErrorCode,
    IdentityStore,
};
use serde_json::json;

type CliResult<T = ()> = Result<T, CliError>;

#[derive(Subcommand, Debug)]
pub enum AuthorityCommand {
    /// Make a stored identity (created if missing) an enrollment authority: its store is
    /// authority-NAME.sqlite3 in the home.
    Create { name: String },
    /// Serve enrollments, credential refreshes and revocations on TCP until interrupted.
    Serve {
        name: String,
        /// Address to listen on, HOST:PORT.
        #[arg(long, default_value = "127.0.0.1:4100")]
        listen: String,
        /// Seconds the credentials it issues are valid (members refresh before that).
        #[arg(long, default_value_t = 86_400)]
        credential_validity: u64,
        /// Also serve enrollments deposited at this relay's mailbox (HOST:PORT of `relay run --mailbox`),
        /// including those that arrived while the authority was down.
        #[arg(long)]
        relay: Option<String>,
    },
    /// List the members, and check the store's integrity.
    Members { name: String },
    /// Write the authority's exported history (what nodes that trust it need) to a file.
    ExportHistory {
        name: String,
        #[arg(long)]
        output: std::path::PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a one-time enrollment token and print it (a secret: give it to one device).
    Create(TokenCreateArgs),
}

#[derive(Args, Debug)]
pub struct TokenCreateArgs {
    /// The authority (a stored identity made an authority with `authority create`).
    #[arg(long)]
    pub authority: String,
    /// An attribute given to the member, NAME=VALUE (repeatable).
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    pub attributes: Vec<String>,
    /// Seconds until the token expires.
    #[arg(long, default_value_t = 600)]
    pub ttl: u64,
    /// How many enrollments it allows.
    #[arg(long, default_value_t = 1)]
    pub uses: u32,
}

#[derive(Args, Debug)]
pub struct EnrollArgs {
    /// The stored identity that enrolls (its credential is saved as credentials/NAME.cred).
    #[arg(long)]
    pub identity: String,
    /// The authority's address, HOST:PORT (online enrollment through a secure channel).
    #[arg(long, required_unless_present = "relay", conflicts_with = "relay")]
    pub to: Option<String>,
    /// Enroll through this relay's mailbox instead (X3DH; the authority may be offline), HOST:PORT.
    #[arg(long)]
    pub relay: Option<String>,
    /// With --relay: seconds to wait for the authority's answer.
    #[arg(long, default_value_t = 60)]
    pub wait: u64,
    /// The enrollment token (lkt…).
    #[arg(long)]
    pub token: String,
}

#[derive(Subcommand, Debug)]
pub enum CredentialCommand {
    /// Show the stored credential of an identity.
    Show {
        #[arg(long)]
        identity: String,
    },
    /// Verify the stored credential of an identity against an authority's exported history.
    Verify {
        #[arg(long)]
        identity: String,
        /// The authority's exported history (`authority export-history`).
        #[arg(long)]
        authority_history: std::path::PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// The authority.
    #[arg(long)]
    pub authority: String,
    /// Revoke this identifier (lk…): its live channels close on subscribed nodes.
    #[arg(long, required_unless_present = "credential")]
    pub identifier: Option<String>,
    /// Revoke this credential id (32 hex digits).
    #[arg(long)]
    pub credential: Option<String>,
}

fn parse_attributes(list: &[String]) -> CliResult<Vec<(String, String)>> {
    list.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CliError::usage(format!("--attr {a:?}: write NAME=VALUE"))),
        })
        .collect()
}

fn attrs_json(a: &[(String, String)]) -> serde_json::Value {
    serde_json::Value::Object(
        a.iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
}

fn attrs_text(a: &[(String, String)]) -> String {
    a.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn authority(command: AuthorityCommand, home: Option<String>, out: Output) -> CliResult {
    match command {
        AuthorityCommand::Create { name } => {
            let a = AuthorityService::open(&name, home, true)?;
            out.emit(
                format!("authority {name} {}", a.identifier()),
                json!({"event": "created", "name": name, "identifier": a.identifier()}),
            );
        }
        AuthorityCommand::Serve {
            name,
            listen,
            credential_validity,
            relay,
        } => {
            let a = AuthorityService::open_with_validity(&name, home, false, credential_validity)?;
            let bound = a
                .serve(listen.clone())
                .await
                .map_err(|e| CliError::involving(e, &listen))?;
            if let Some(relay) = &relay {
                a.serve_via_relay(relay.clone())
                    .await
                    .map_err(|e| CliError::involving(e, relay))?;
            }
            out.emit(
                format!("authority {} serving on tcp {bound}", a.identifier()),
                json!({"event": "ready", "tcp": bound, "identifier": a.identifier(), "relay": relay}),
            );
            let _ = tokio::signal::ctrl_c().await;
        }
        AuthorityCommand::Members { name } => {
            let a = AuthorityService::open(&name, home, false)?;
            a.integrity_check()?;
            let members = a.members()?;
            if out.json {
                for m in &members {
                    out.emit(
                        "",
                        json!({
                            "identifier": m.identifier,
                            "attributes": attrs_json(&m.attributes),
                            "credential_id": m.credential_id,
                            "enrolled_at": m.enrolled_at,
                        }),
                    );
                }
            } else {
                for m in &members {
                    println!("{} {}", m.identifier, attrs_text(&m.attributes));
                }
                println!("{} members; integrity ok", members.len());
            }
        }
        AuthorityCommand::ExportHistory { name, output } => {
            let a = AuthorityService::open(&name, home, false)?;
            std::fs::write(&output, a.export_history()).map_err(|e| {
                CliError::new(
                    ErrorCode::StorageError,
                    format!("{}: {e}", output.display()),
                )
            })?;
            out.emit(
                format!("wrote {}", output.display()),
                json!({"event": "exported", "file": output.display().to_string()}),
            );
        }
    }
    Ok(())
}

pub fn token(command: TokenCommand, home: Option<String>, out: Output) -> CliResult {
    let TokenCommand::Create(args) = command;
    let attributes = parse_attributes(&args.attributes)?;
    let a = AuthorityService::open(&args.authority, home, false)?;
    let token = a.create_token(attributes, args.ttl, args.uses)?;
    out.emit(
        token.clone(),
        json!({"token": token, "uses": args.uses, "ttl_secs": args.ttl}),
    );
    Ok(())
}

pub async fn enroll(args: EnrollArgs, home: Option<String>, out: Output) -> CliResult {
    let bytes = match (&args.to, &args.relay) {
        (Some(to), None) => {
            latchkey_facade::enroll(args.identity.clone(), home, to.clone(), args.token)
                .await
                .map_err(|e| CliError::involving(e, to))?
        }
        (None, Some(relay)) => latchkey_facade::enroll_via_relay(
            args.identity.clone(),
            home,
            relay.clone(),
            args.token,
            args.wait,
        )
        .await
        .map_err(|e| CliError::involving(e, relay))?,
        _ => return Err(CliError::usage("give one of --to and --relay")),
    };
    let info = credential_info(&bytes)?;
    out.emit(
        format!(
            "enrolled {} ({}); credential {} valid until {}",
            args.identity,
            attrs_text(&info.attributes),
            info.id,
            rfc3339_utc(info.not_after as i64)
        ),
        json!({
            "event": "enrolled",
            "identity": args.identity,
            "subject": info.subject,
            "credential_id": info.id,
            "attributes": attrs_json(&info.attributes),
            "not_after": info.not_after,
        }),
    );
    Ok(())
}

pub fn credential(command: CredentialCommand, home: Option<String>, out: Output) -> CliResult {
    match command {
        CredentialCommand::Show { identity } => {
            let bytes = stored_credential(&identity, home)?;
            let i = credential_info(&bytes)?;
            out.emit(
                format!(
                    "id:         {}\nsubject:    {}\nissuer:     {}\nattributes: {}\nvalid:      {} .. {}\nsize:       {} bytes",
                    i.id,
                    i.subject,
                    i.issuer,
                    attrs_text(&i.attributes),
                    rfc3339_utc(i.not_before as i64),
                    rfc3339_utc(i.not_after as i64),
                    i.size
                ),
                json!({
                    "id": i.id, "subject": i.subject, "issuer": i.issuer,
                    "attributes": attrs_json(&i.attributes),
                    "not_before": i.not_before, "not_after": i.not_after, "size": i.size,
                }),
            );
        }
        CredentialCommand::Verify {
            identity,
            authority_history,
        } => {
            let bytes = stored_credential(&identity, home.clone())?;
            let authority = std::fs::read(&authority_history)
                .map_err(|e| CliError::usage(format!("{}: {e}", authority_history.display())))?;
            let store = IdentityStore::open(home)?;
            let subject = store.load(&identity)?.export_history()?;
            let attributes = verify_credential(&bytes, &authority, &subject, None)?;
            out.emit(
                format!("valid: {}", attrs_text(&attributes)),
                json!({"valid": true, "attributes": attrs_json(&attributes)}),
            );
        }
    }
    Ok(())
}

pub fn revoke(args: RevokeArgs, home: Option<String>, out: Output) -> CliResult {
    let a = AuthorityService::open(&args.authority, home, false)?;
    let sequence = match (&args.identifier, &args.credential) {
        (Some(id), None) => a.revoke_identifier(id)?,
        (None, Some(c)) => a.revoke_credential(c)?,
        _ => {
            return Err(CliError::usage(
                "give exactly one of --identifier and --credential",
            ))
        }
    };
    out.emit(
        format!("revoked (sequence {sequence})"),
        json!({"event": "revoked", "sequence": sequence}),
    );
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Store a policy at an authority (checked for syntax first).
    Set {
        #[arg(long)]
        authority: String,
        name: String,
        text: String,
    },
    /// Evaluate a policy (text, or --authority A --name N) against attributes: exit 0 allowed, 5 denied.
    Check {
        /// The policy text (or use --authority and --name).
        #[arg(required_unless_present = "name")]
        text: Option<String>,
        #[arg(long, requires = "name")]
        authority: Option<String>,
        #[arg(long, requires = "authority")]
        name: Option<String>,
        /// subject.NAME=VALUE (repeatable).
        #[arg(long = "subject", value_name = "NAME=VALUE")]
        subject: Vec<String>,
        #[arg(long = "resource", value_name = "NAME=VALUE")]
        resource: Vec<String>,
        #[arg(long = "action", value_name = "NAME=VALUE")]
        action: Vec<String>,
    },
    /// Run a node whose echo services admit only members of an authority, per a policy (each message is
    /// checked with resource.name = the service and action.name = "read"), until interrupted.
    Enforce {
        /// The stored identity the node acts as.
        #[arg(long)]
        identity: String,
        /// Listen for TCP on HOST:PORT.
        #[arg(long)]
        tcp: String,
        /// The trusted authority's exported history (`authority export-history`).
        #[arg(long)]
        authority_history: std::path::PathBuf,
        /// Follow the authority's revocations from its address (HOST:PORT of `authority serve`).
        #[arg(long)]
        authority_at: Option<String>,
        /// Fetch the revocation list again every this many seconds (besides the pushes).
        #[arg(long, default_value_t = 5)]
        refetch: u64,
        /// An echo service to guard (repeatable).
        #[arg(long = "service", required = true)]
        services: Vec<String>,
        /// The policy.
        #[arg(long)]
        policy: String,
    },
}

#[derive(Args, Debug)]
pub struct Grant {
    /// A resource granted (repeatable).
    #[arg(long = "resource", required = true)]
    pub resources: Vec<String>,
    /// An action granted (repeatable).
    #[arg(long = "action", required = true)]
    pub actions: Vec<String>,
    /// Unix seconds at which the grant ends (exclusive).
    #[arg(long)]
    pub not_after: u64,
    /// Who receives it: a stored identity's name, or a file with an exported history.
    #[arg(long)]
    pub to: String,
    /// Where to write the chain.
    #[arg(long)]
    pub output: std::path::PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum DelegateCommand {
    /// The owner (a stored identity) grants resources and actions until a time to another identity.
    Issue {
        #[arg(long)]
        identity: String,
        #[command(flatten)]
        grant: Grant,
    },
    /// The holder (the chain's last delegate) passes a narrower grant on; a wider one is refused.
    Attenuate {
        #[arg(long)]
        identity: String,
        /// The chain received.
        #[arg(long)]
        chain: std::path::PathBuf,
        #[command(flatten)]
        grant: Grant,
    },
    /// Verify a chain offline: exit 0 if `presenter` may do `action` on `resource` now.
    Verify {
        #[arg(long)]
        chain: std::path::PathBuf,
        /// The owner: a stored identity's name, or a file with its exported history.
        #[arg(long)]
        owner: String,
        /// The presenting identity: a stored identity's name or an identifier.
        #[arg(long)]
        presenter: String,
        #[arg(long)]
        resource: String,
        #[arg(long)]
        action: String,
        /// Unix seconds to verify at (default: now).
        #[arg(long)]
        now: Option<u64>,
    },
}

fn read_file(path: &std::path::Path) -> CliResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))
}

/// A stored identity's exported history, or the bytes of a history file.
fn history(spec: &str, home: &Option<String>) -> CliResult<Vec<u8>> {
    let path = std::path::Path::new(spec);
    if path.is_file() {
        return read_file(path);
    }
    Ok(IdentityStore::open(home.clone())?
        .load(spec)?
        .export_history()?)
}

pub async fn policy(command: PolicyCommand, home: Option<String>, out: Output) -> CliResult {
    match command {
        PolicyCommand::Set {
            authority,
            name,
            text,
        } => {
            AuthorityService::open(&authority, home, false)?.set_policy(&name, &text)?;
            out.emit(
                format!("policy {name} set"),
                json!({"event": "policy_set", "name": name}),
            );
        }
        PolicyCommand::Check {
            text,
            authority,
            name,
            subject,
            resource,
            action,
        } => {
            let text = match (text, authority, name) {
                (Some(t), None, None) => t,
                (None, Some(a), Some(n)) => AuthorityService::open(&a, home, false)?.policy(&n)?,
                _ => {
                    return Err(CliError::usage(
                        "give the policy text, or --authority and --name",
                    ))
                }
            };
            latchkey_facade::check_policy(
                &text,
                parse_attributes(&subject)?,
                parse_attributes(&resource)?,
                parse_attributes(&action)?,
            )?;
            out.emit("allowed", json!({"allowed": true}));
        }
        PolicyCommand::Enforce {
            identity,
            tcp,
            authority_history,
            authority_at,
            refetch,
            services,
            policy,
        } => {
            let history = read_file(&authority_history)?;
            let (node, bound) = latchkey_facade::serve_guarded(
                identity,
                home,
                latchkey_facade::GuardOptions {
                    listen: tcp.clone(),
                    authority_history: history,
                    authority_address: authority_at.clone(),
                    services: services.clone(),
                    policy,
                    refetch_secs: refetch,
                },
            )
            .await
            .map_err(|e| CliError::involving(e, &tcp))?;
            out.emit(
                format!("enforcing on tcp {bound}: {}", services.join(", ")),
                json!({"event": "ready", "tcp": bound, "services": services}),
            );
            let _ = tokio::signal::ctrl_c().await;
            drop(node);
        }
    }
    Ok(())
}

pub fn delegate(command: DelegateCommand, home: Option<String>, out: Output) -> CliResult {
    let write = |path: &std::path::Path, bytes: &[u8]| -> CliResult {
        std::fs::write(path, bytes).map_err(|e| {
            CliError::new(ErrorCode::StorageError, format!("{}: {e}", path.display()))
        })?;
        out.emit(
            format!("wrote {} ({} bytes)", path.display(), bytes.len()),
            json!({"event": "delegation", "file": path.display().to_string(), "size": bytes.len()}),
        );
        Ok(())
    };
    match command {
        DelegateCommand::Issue { identity, grant } => {
            let to = history(&grant.to, &home)?;
            let chain = latchkey_facade::delegate_issue(
                &identity,
                home,
                &to,
                grant.resources,
                grant.actions,
                grant.not_after,
            )?;
            write(&grant.output, &chain)?;
        }
        DelegateCommand::Attenuate {
            identity,
            chain,
            grant,
        } => {
            let to = history(&grant.to, &home)?;
            let chain = read_file(&chain)?;
            let narrower = latchkey_facade::delegate_attenuate(
                &identity,
                home,
                &chain,
                &to,
                grant.resources,
                grant.actions,
                grant.not_after,
            )?;
            write(&grant.output, &narrower)?;
        }
        DelegateCommand::Verify {
            chain,
            owner,
            presenter,
            resource,
            action,
            now,
        } => {
            let chain = read_file(&chain)?;
            let owner = history(&owner, &home)?;
            let presenter = if presenter.starts_with("lk") && presenter.len() == 66 {
                presenter
            } else {
                IdentityStore::open(home.clone())?
                    .load(&presenter)?
                    .identifier()
            };
            latchkey_facade::delegate_verify(&chain, &owner, &presenter, &resource, &action, now)?;
            out.emit("allowed", json!({"allowed": true}));
        }
    }
    Ok(())
}

/// `--policy TARGET=POLICY`: POLICY is a file, or the name of a policy stored at one of the `--authority`
/// names that is an authority of this home.
fn policy_text(spec: &str, authorities: &[String], home: &Option<String>) -> CliResult<String> {
    let path = std::path::Path::new(spec);
    if path.is_file() {
        return String::from_utf8(read_file(path)?)
            .map_err(|_| CliError::usage(format!("--policy {spec}: the file is not UTF-8 text")));
    }
    for authority in authorities {
        if std::path::Path::new(authority).is_file() {
            continue;
        }
        if let Ok(a) = AuthorityService::open(authority, home.clone(), false) {
            if let Ok(text) = a.policy(spec) {
                return Ok(text);
            }
        }
    }
    Err(CliError::usage(format!(
        "--policy …={spec}: no such file, and no --authority of this home stores a policy named {spec:?}"
    )))
}

/// Applies `--authority`, `--credential`, `--authority-at` and `--policy` to `node` (before its listeners
/// and services start); `targets` are what this command runs that a policy may guard (a `--policy` for
/// anything else is a usage error, not a policy that silently guards nothing). Returns what to print in the
/// ready line, if any of them was given.
pub async fn join_authorities(
    node: &latchkey_facade::Node,
    args: &crate::MemberArgs,
    id: &crate::IdentityArgs,
    home: Option<String>,
    out: Output,
    targets: &[String],
) -> CliResult<Option<(String, serde_json::Value)>> {
    if args.authorities.is_empty() && !args.credential {
        if !args.policies.is_empty() {
            return Err(CliError::usage(
                "--policy needs --authority: a policy reads the attributes of credentials it issued",
            ));
        }
        if args.authority_at.is_some() {
            return Err(CliError::usage(
                "--authority-at needs --authority (to follow its revocations) or --credential (to refresh it)",
            ));
        }
        return Ok(None);
    }
    let mut authorities = Vec::new();
    for spec in &args.authorities {
        authorities.push(history(spec, &home)?);
    }
    let credential = if args.credential {
        let Some(name) = &id.identity else {
            return Err(CliError::usage(
                "--credential presents a stored identity's credential: add --identity NAME",
            ));
        };
        Some(stored_credential(name, home.clone())?)
    } else {
        None
    };
    let mut policies = Vec::new();
    for entry in &args.policies {
        let (target, spec) = entry
            .split_once('=')
            .filter(|(t, s)| !t.is_empty() && !s.is_empty())
            .ok_or_else(|| {
                CliError::usage(format!("--policy {entry:?}: expected TARGET=FILE|NAME"))
            })?;
        if !targets.iter().any(|t| t == target) {
            return Err(CliError::usage(format!(
                "--policy {target}=…: this command runs no {target:?}; policies apply to {}",
                targets.join(", ")
            )));
        }
        policies.push((
            target.to_string(),
            policy_text(spec, &args.authorities, &home)?,
        ));
    }
    if !policies.is_empty() && authorities.is_empty() {
        return Err(CliError::usage(
            "--policy needs --authority: a policy reads the attributes of credentials it issued",
        ));
    }
    let reached = node
        .use_authorities(latchkey_facade::NodeTrustOptions {
            authorities,
            credential,
            authority_address: args.authority_at.clone(),
            refetch_secs: args.revocation_refetch.max(1),
            save_as: if args.credential {
                id.identity.clone().map(|n| (n, home.clone()))
            } else {
                None
            },
        })
        .await?;
    if args.authority_at.is_some() && !reached {
        out.warn(
            "authority_unreachable",
            "the authority did not answer: revocations and credential refresh start when it does",
        );
    }
    let targets: Vec<&str> = policies.iter().map(|(t, _)| t.as_str()).collect();
    for (target, text) in &policies {
        node.set_policy(target.clone(), text.clone())?;
    }
    let line = format!(
        "trusting {} authorit{}{}{}",
        args.authorities.len(),
        if args.authorities.len() == 1 {
            "y"
        } else {
            "ies"
        },
        if args.credential {
            ", presenting our credential"
        } else {
            ""
        },
        if targets.is_empty() {
            String::new()
        } else {
            format!(", policies on {}", targets.join(", "))
        }
    );
    Ok(Some((
        line,
        json!({
            "authorities": args.authorities.len(),
            "credential": args.credential,
            "authority_reachable": reached,
            "policies": targets,
        }),
    )))
}
