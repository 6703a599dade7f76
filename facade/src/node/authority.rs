//! Enrollment authorities, tokens, enrollment, credentials and revocation: the operations every binding and
//! the CLI use (`latchkey authority|token|enroll|credential|revoke`).
//!
//! Files under the Latchkey home (`$LATCHKEY_HOME`, else `~/.latchkey`), all 0600 in the 0700 home:
//! - `authority-NAME.sqlite3`: the store of the authority acting as identity `NAME` (tokens by hash only,
//!   members, issued credentials, revocations, policies);
//! - `credentials/NAME.cred`: the membership credential of identity `NAME`, which nodes acting as `NAME`
//!   present in their handshakes.

use super::runtime;
use crate::error::{Error, ErrorCode, Result};
use latchkey_core::credential::delegation::{Caveats, Delegation};
use latchkey_core::credential::{Attributes, Credential, TrustedAuthorities};
use latchkey_core::identity::{ChangeHistory, Identifier};
use latchkey_core::policy::{Environment, Policy, Scope};
use latchkey_core::wire::{Decode, Encode};
use latchkey_core::Timestamp;
use latchkey_runtime::authority::store::{AuthorityStore, Revoked};
use latchkey_runtime::authority::{client, Authority, AuthorityOptions};
use latchkey_runtime::storage::{default_home, Store};
use latchkey_runtime::transport::tcp::{self, TcpOptions};
use latchkey_runtime::{create_channel, create_listener, Accepts, ChannelOptions, Route};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The address of the authority service on an authority node (its channel listener is `api`).
pub const AUTHORITY_SERVICE: &str = "authority";
/// The address of the channel-less X3DH enrollment service on an authority node.
pub const ENROLL_SERVICE: &str = "enroll";

fn home_dir(home: Option<String>) -> PathBuf {
    home.map(PathBuf::from).unwrap_or_else(default_home)
}

fn store_path(home: &Path, name: &str) -> PathBuf {
    home.join(format!("authority-{name}.sqlite3"))
}

pub(crate) fn credential_path(home: &Path, name: &str) -> PathBuf {
    home.join("credentials").join(format!("{name}.cred"))
}

/// A member as the authority's store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub identifier: String,
    pub attributes: Vec<(String, String)>,
    /// Hex of the latest credential's id.
    pub credential_id: String,
    pub enrolled_at: i64,
}

/// What a credential says (after decoding; see [`verify_credential`] for the checks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialInfo {
    pub id: String,
    pub subject: String,
    pub issuer: String,
    pub attributes: Vec<(String, String)>,
    pub not_before: u64,
    pub not_after: u64,
    pub size: usize,
}

/// An enrollment authority acting as a stored identity.
pub struct AuthorityService {
    inner: Arc<Authority>,
    serving: Mutex<Option<latchkey_runtime::Node>>,
}

impl std::fmt::Debug for AuthorityService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorityService")
            .field("identifier", &self.inner.identifier())
            .finish_non_exhaustive()
    }
}

fn attributes(pairs: &[(String, String)]) -> Result<Attributes> {
    Ok(Attributes::from_pairs(pairs.iter().cloned())?)
}

fn pairs(a: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    a.into_iter().collect()
}

impl AuthorityService {
    /// Opens the authority acting as the stored identity `name` (created first when `create` is true and it
    /// does not exist), with its store `authority-NAME.sqlite3` in `home`.
    pub fn open(name: &str, home: Option<String>, create: bool) -> Result<Arc<Self>> {
        Self::open_with(name, home, create, AuthorityOptions::default())
    }

    /// Like [`AuthorityService::open`], with the credentials it issues valid for `credential_validity_secs`.
    pub fn open_with_validity(
        name: &str,
        home: Option<String>,
        create: bool,
        credential_validity_secs: u64,
    ) -> Result<Arc<Self>> {
        if credential_validity_secs == 0 {
            return Err(Error::invalid_argument(
                "a credential validity must be at least 1 s",
            ));
        }
        Self::open_with(
            name,
            home,
            create,
            AuthorityOptions {
                credential_validity_secs,
                ..Default::default()
            },
        )
    }

    fn open_with(
        name: &str,
        home: Option<String>,
        create: bool,
        options: AuthorityOptions,
    ) -> Result<Arc<Self>> {
        super::store::check_name(name)?;
        let home = home_dir(home);
        let mut store = Store::open(&home)?;
        let identity = match store.load_identity(name) {
            Err(latchkey_runtime::RuntimeError::UnknownIdentity(_)) if create => {
                store.create_identity(name)?.0
            }
            other => other?,
        };
        let path = store_path(&home, name);
        if !create && !path.exists() {
            return Err(Error::new(
                ErrorCode::UnknownIdentity,
                format!(
                    "{name:?} is not an authority here (run `latchkey authority create {name}`)"
                ),
            ));
        }
        Ok(Arc::new(AuthorityService {
            inner: Authority::open(identity, &path, options)?,
            serving: Mutex::default(),
        }))
    }

    pub fn identifier(&self) -> String {
        self.inner.identifier().to_string()
    }

    /// The authority's exported history: what nodes that trust it are given.
    pub fn export_history(&self) -> Vec<u8> {
        self.inner.history().export()
    }

    /// A new enrollment token (its text form: a secret, hand it to one device): `uses` enrollments within
    /// `ttl_secs`, giving members `attributes`.
    pub fn create_token(
        &self,
        attributes: Vec<(String, String)>,
        ttl_secs: u64,
        uses: u32,
    ) -> Result<String> {
        if uses == 0 || ttl_secs == 0 {
            return Err(Error::invalid_argument(
                "a token needs at least one use and 1 s",
            ));
        }
        let attrs = self::attributes(&attributes)?;
        Ok(latchkey_runtime::authority::service::token_to_text(
            &self.inner.create_token(&attrs, ttl_secs, uses)?,
        ))
    }

    /// Revokes an identifier (its channels close on subscribed nodes; it can no longer refresh); returns
    /// the revocation sequence.
    pub fn revoke_identifier(&self, identifier: &str) -> Result<u64> {
        let id: Identifier = identifier
            .parse()
            .map_err(|e| Error::invalid_argument(format!("{identifier:?}: {e}")))?;
        Ok(self.inner.revoke(&[Revoked::Identifier(id.to_string())])?)
    }

    /// Revokes one credential by its id (32 hex digits).
    pub fn revoke_credential(&self, credential_id: &str) -> Result<u64> {
        let mut id = [0u8; 16];
        hex::decode_to_slice(credential_id, &mut id)
            .map_err(|_| Error::invalid_argument("a credential id is 32 hex digits"))?;
        Ok(self.inner.revoke(&[Revoked::Credential(id)])?)
    }

    pub fn members(&self) -> Result<Vec<MemberInfo>> {
        let members = self.inner.with_store(|s| s.members())?;
        Ok(members
            .into_iter()
            .map(|m| MemberInfo {
                identifier: m.identifier,
                attributes: pairs(m.attributes),
                credential_id: m.credential_id.map(hex::encode).unwrap_or_default(),
                enrolled_at: m.enrolled_at,
            })
            .collect())
    }

    /// SQLite's integrity check of the store.
    pub fn integrity_check(&self) -> Result<()> {
        Ok(self.inner.with_store(|s| s.integrity_check())?)
    }

    /// Serves enrollment, refresh and revocations on TCP `listen` (channel listener `api`, service
    /// `authority`); returns the bound address. Serves until the process exits: there is no stop, and
    /// dropping every handle to this `AuthorityService` does not stop it (the serving node, its channel
    /// listener and its TCP listener live on). To take an authority down (e.g. to test members riding out
    /// its absence), run it in a process of its own (`latchkey authority serve`) and end that process.
    pub async fn serve(self: &Arc<Self>, listen: String) -> Result<String> {
        let this = self.clone();
        runtime::run(async move {
            let node = latchkey_runtime::Node::new("authority");
            let identity = this.inner_identity()?;
            // Devices are unknown until they enroll: any authenticated identity may open a channel; the
            // service answers only channels of this listener.
            let listener = create_listener(
                &node,
                &identity,
                "api".into(),
                ChannelOptions::default().trust_any(),
            )?;
            this.inner.serve(
                &node,
                AUTHORITY_SERVICE.into(),
                Accepts::flow(listener.flow),
            )?;
            // X3DH enrollment for devices without a channel (its own worker, `enroll`).
            if let Err(e) = this.inner.serve_x3dh(&node, ENROLL_SERVICE.into()) {
                let _ = e; // an identity without a software vault: online enrollment only
            }
            let tcp = tcp::listen(&node, &listen, TcpOptions::default()).await?;
            let bound = tcp.local_addr.to_string();
            // The listener and the TCP listener live as long as the node serves.
            std::mem::forget(listener);
            std::mem::forget(tcp);
            *this.serving.lock().unwrap_or_else(|e| e.into_inner()) = Some(node);
            Ok(bound)
        })
        .await
    }

    /// Serves X3DH enrollment through the mailbox of the relay at TCP `relay_address` (a relay running
    /// `relay run --mailbox`): opens its mailbox there, publishes its bundle, and handles what devices
    /// deposited, also what arrived while it was down. Reconnects every 2 s after a failure, for as long as
    /// the process runs.
    pub async fn serve_via_relay(self: &Arc<Self>, relay_address: String) -> Result<()> {
        let this = self.clone();
        runtime::run(async move {
            let first = this.relay_session(&relay_address).await?;
            tokio::spawn(async move {
                let mut session = Some(first);
                loop {
                    if let Some((node, client)) = session.take() {
                        let r = this
                            .inner
                            .serve_mailbox(
                                &node,
                                client,
                                "mailbox".into(),
                                std::time::Duration::from_millis(200),
                            )
                            .await;
                        eprintln!("authority: relay mailbox session ended: {r:?}; reconnecting");
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    session = this.relay_session(&relay_address).await.ok();
                }
            });
            Ok(())
        })
        .await
    }

    async fn relay_session(
        &self,
        relay_address: &str,
    ) -> Result<(
        latchkey_runtime::Node,
        latchkey_runtime::relay::mailbox::MailboxClient,
    )> {
        let node = latchkey_runtime::Node::new("authority-relay");
        let link = tcp::connect(&node, relay_address, TcpOptions::default()).await?;
        // The relay is trusted with nothing: it carries ciphertext and can only drop it.
        let channel = create_channel(
            &node,
            self.inner.identity(),
            Route::from_addresses([link, "api".into()]),
            ChannelOptions::default().trust_any(),
        )
        .await?;
        let client = latchkey_runtime::relay::mailbox::MailboxClient::new(
            &node,
            &channel,
            "mailbox-owner".into(),
        );
        Ok((node, client))
    }

    fn inner_identity(&self) -> Result<latchkey_runtime::LocalIdentity> {
        Ok(self.inner.identity().clone())
    }
}

/// Enrolls the stored identity `name` with the authority at TCP `authority_address`, using `token` (its
/// text form, which names the authority: the channel is refused if another identity answers). Saves the
/// credential as `credentials/NAME.cred` in `home` and returns its bytes.
pub async fn enroll(
    name: String,
    home: Option<String>,
    authority_address: String,
    token: String,
) -> Result<Vec<u8>> {
    runtime::run(async move {
        super::store::check_name(&name)?;
        let home = home_dir(home);
        let identity = Store::open(&home)?.load_identity(&name)?;
        let token = latchkey_runtime::authority::service::token_from_text(&token)
            .map_err(|e| Error::invalid_argument(e.to_string()))?;
        let node = latchkey_runtime::Node::new("enroll");
        let link = tcp::connect(&node, &authority_address, TcpOptions::default()).await?;
        let trust = Arc::new(latchkey_core::channel::TrustIdentifiers::new([
            token.authority
        ]));
        let channel = create_channel(
            &node,
            &identity,
            Route::from_addresses([link, "api".into()]),
            ChannelOptions::default().with_trust(trust),
        )
        .await?;
        let credential = client::enroll(
            &node,
            &channel,
            &AUTHORITY_SERVICE.into(),
            &token,
            identity.history(),
        )
        .await;
        channel.close().await;
        let bytes = credential?.to_bytes();
        save_credential(&home, &name, &bytes)?;
        Ok(bytes)
    })
    .await
}

/// Enrolls the stored identity `name` through the mailbox of the relay at TCP `relay_address` (X3DH: one
/// request, readable only by the authority the token names, which may be offline), waiting up to
/// `wait_secs` for the answer. Saves and returns the credential like [`enroll`].
pub async fn enroll_via_relay(
    name: String,
    home: Option<String>,
    relay_address: String,
    token: String,
    wait_secs: u64,
) -> Result<Vec<u8>> {
    runtime::run(async move {
        super::store::check_name(&name)?;
        let home = home_dir(home);
        let identity = Store::open(&home)?.load_identity(&name)?;
        let token = latchkey_runtime::authority::service::token_from_text(&token)
            .map_err(|e| Error::invalid_argument(e.to_string()))?;
        let node = latchkey_runtime::Node::new("enroll");
        let link = tcp::connect(&node, &relay_address, TcpOptions::default()).await?;
        let channel = create_channel(
            &node,
            &identity,
            Route::from_addresses([link, "api".into()]),
            ChannelOptions::default().trust_any(),
        )
        .await?;
        let credential = client::enroll_via_mailbox(
            &node,
            &channel,
            &client::MailboxServices::default(),
            &token,
            &identity,
            std::time::Duration::from_secs(wait_secs),
        )
        .await;
        channel.close().await;
        let bytes = credential?.to_bytes();
        save_credential(&home, &name, &bytes)?;
        Ok(bytes)
    })
    .await
}

/// Writes `credentials/NAME.cred` (0600) atomically: a temporary file, then a rename.
pub(crate) fn save_credential(home: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = credential_path(home, name);
    let dir = path.parent().expect("credentials directory");
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(".{name}.cred.tmp"));
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(())
}

fn io(e: std::io::Error) -> Error {
    Error::new(ErrorCode::StorageError, e.to_string())
}

/// The stored credential of identity `name` (`UnknownIdentity` if it has none).
pub fn stored_credential(name: &str, home: Option<String>) -> Result<Vec<u8>> {
    super::store::check_name(name)?;
    let path = credential_path(&home_dir(home), name);
    std::fs::read(&path).map_err(|e| {
        Error::new(
            ErrorCode::UnknownIdentity,
            format!("no credential for {name:?} ({}: {e})", path.display()),
        )
    })
}

/// Decodes a credential (no checks beyond syntax: see [`verify_credential`]).
pub fn credential_info(bytes: &[u8]) -> Result<CredentialInfo> {
    let c = Credential::from_bytes(bytes)?;
    Ok(CredentialInfo {
        id: hex::encode(c.id()),
        subject: c.body.subject.to_string(),
        issuer: c.body.issuer.to_string(),
        attributes: c
            .body
            .attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        not_before: c.body.not_before.0,
        not_after: c.body.not_after.0,
        size: bytes.len(),
    })
}

/// Verifies a credential as a node would when `subject_history`'s identity presents it: issued by the
/// authority whose exported history is `authority_history`, valid at `now` (default: the clock), about that
/// subject and its history. Returns the attributes it vouches for.
pub fn verify_credential(
    bytes: &[u8],
    authority_history: &[u8],
    subject_history: &[u8],
    now: Option<u64>,
) -> Result<Vec<(String, String)>> {
    let c = Credential::from_bytes(bytes)?;
    let authorities = TrustedAuthorities::new().with(ChangeHistory::import(authority_history)?);
    let subject = ChangeHistory::import(subject_history)?;
    let attrs = c.verify(
        &authorities,
        &subject.identifier(),
        &subject,
        crate::now_or_clock(now),
    )?;
    Ok(attrs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

impl AuthorityService {
    /// Stores policy `name` (parsed first: a syntax error is `PolicySyntax` with line, column and caret).
    pub fn set_policy(&self, name: &str, text: &str) -> Result<()> {
        latchkey_core::credential::check_attribute_name(name)?;
        Policy::parse(text)?;
        let now = Timestamp::now().0 as i64;
        Ok(self.inner.with_store(|s| s.set_policy(name, text, now))?)
    }

    /// The text of policy `name` (`InvalidArgument` if there is none).
    pub fn policy(&self, name: &str) -> Result<String> {
        self.inner
            .with_store(|s| s.policy(name))?
            .ok_or_else(|| Error::invalid_argument(format!("no policy {name:?}")))
    }
}

fn environment(
    subject: &[(String, String)],
    resource: &[(String, String)],
    action: &[(String, String)],
) -> Environment {
    let mut env = Environment::new();
    for (scope, pairs) in [
        (Scope::Subject, subject),
        (Scope::Resource, resource),
        (Scope::Action, action),
    ] {
        for (k, v) in pairs {
            env.set(scope, k.clone(), v.clone());
        }
    }
    env
}

/// Parses `policy` (text): `Ok(())`, or `PolicySyntax` whose message starts `line L, column C:` and shows the
/// line with a caret under the column.
pub fn parse_policy(policy: &str) -> Result<()> {
    Policy::parse(policy)?;
    Ok(())
}

/// Evaluates `policy` (text) against the given attributes: `Ok(())` if it allows, `PolicyDenied` if not,
/// `PolicySyntax` if it does not parse.
pub fn check_policy(
    policy: &str,
    subject: Vec<(String, String)>,
    resource: Vec<(String, String)>,
    action: Vec<(String, String)>,
) -> Result<()> {
    Ok(Policy::parse(policy)?.check(&environment(&subject, &resource, &action))?)
}

fn caveats(resources: Vec<String>, actions: Vec<String>, not_after: u64) -> Result<Caveats> {
    Ok(Caveats::new(resources, actions, Timestamp(not_after))?)
}

/// The stored identity `owner` grants `resources` × `actions` until `not_after` (Unix seconds, exclusive)
/// to the identity whose exported history is `delegate_history`. Returns the chain's bytes.
pub fn delegate_issue(
    owner: &str,
    home: Option<String>,
    delegate_history: &[u8],
    resources: Vec<String>,
    actions: Vec<String>,
    not_after: u64,
) -> Result<Vec<u8>> {
    let owner = Store::open(&home_dir(home))?.load_identity(owner)?;
    let delegate = ChangeHistory::import(delegate_history)?;
    Ok(Delegation::issue(&owner, &delegate, caveats(resources, actions, not_after)?)?.to_bytes())
}

/// The stored identity `holder` (the chain's last delegate) passes a narrower grant on. Wider caveats are
/// refused (`CaveatWidened`).
pub fn delegate_attenuate(
    holder: &str,
    home: Option<String>,
    chain: &[u8],
    delegate_history: &[u8],
    resources: Vec<String>,
    actions: Vec<String>,
    not_after: u64,
) -> Result<Vec<u8>> {
    let holder = Store::open(&home_dir(home))?.load_identity(holder)?;
    let chain = Delegation::from_bytes(chain)?;
    let delegate = ChangeHistory::import(delegate_history)?;
    Ok(chain
        .attenuate(&holder, &delegate, caveats(resources, actions, not_after)?)?
        .to_bytes())
}

/// Verifies a chain offline for `presenter` (identifier) asking `action` on `resource` at `now` (default
/// the clock), trusting the owner whose exported history is `owner_history`.
pub fn delegate_verify(
    chain: &[u8],
    owner_history: &[u8],
    presenter: &str,
    resource: &str,
    action: &str,
    now: Option<u64>,
) -> Result<()> {
    let chain = Delegation::from_bytes(chain)?;
    let owners = TrustedAuthorities::new().with(ChangeHistory::import(owner_history)?);
    let presenter: Identifier = presenter
        .parse()
        .map_err(|e| Error::invalid_argument(format!("{presenter:?}: {e}")))?;
    Ok(chain.authorize(
        &owners,
        &presenter,
        resource,
        action,
        crate::now_or_clock(now),
    )?)
}

/// What [`serve_guarded`] runs.
#[derive(Clone, Debug, Default)]
pub struct GuardOptions {
    /// TCP HOST:PORT to listen on.
    pub listen: String,
    /// The trusted authority's exported history.
    pub authority_history: Vec<u8>,
    /// Where to follow its revocations from (its `authority serve` address), if anywhere.
    pub authority_address: Option<String>,
    /// The echo services to guard.
    pub services: Vec<String>,
    /// The policy text.
    pub policy: String,
    /// Fetch the revocation list again every this many seconds (besides pushes).
    pub refetch_secs: u64,
}

/// A node whose echo services admit only members of one authority, per a policy (see
/// [`serve_guarded`]). Dropping it stops nothing: it runs until the process ends.
pub struct GuardedNode {
    _node: latchkey_runtime::Node,
    membership: Arc<latchkey_runtime::authority::Membership>,
}

impl std::fmt::Debug for GuardedNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedNode").finish_non_exhaustive()
    }
}

impl GuardedNode {
    /// Channels closed because of revocation, and because their credential expired.
    pub fn closed_counts(&self) -> (u64, u64) {
        self.membership.closed_counts()
    }
}

/// Runs the stored identity `name` as a node on TCP `listen` whose channel listener `api` admits only peers
/// presenting a valid, unrevoked credential of the authority whose exported history is `authority_history`,
/// and whose echo services `services` each admit a message only if `policy` allows it (`subject.*` = the
/// credential's attributes and `subject.identifier`, `resource.name` = the service, `action.name` =
/// "read"). With `authority_address`, it follows the authority's signed revocation lists (pushed, and
/// fetched every `refetch_secs`) and closes the channels of revoked peers; channels whose credential expires
/// are closed within a second. Returns the node and the bound address.
pub async fn serve_guarded(
    name: String,
    home: Option<String>,
    options: GuardOptions,
) -> Result<(Arc<GuardedNode>, String)> {
    let GuardOptions {
        listen,
        authority_history,
        authority_address,
        services,
        policy,
        refetch_secs,
    } = options;
    use latchkey_runtime::authority::enforce::Requirement;
    use latchkey_runtime::authority::Membership;
    let policy = Policy::parse(&policy)?;
    runtime::run(async move {
        super::store::check_name(&name)?;
        let identity = Store::open(&home_dir(home))?.load_identity(&name)?;
        let authority = ChangeHistory::import(&authority_history)?;
        let authority_id = authority.identifier();
        let membership = Membership::new(TrustedAuthorities::new().with(authority));
        let node = latchkey_runtime::Node::new("guarded");
        let mut listener = create_listener(
            &node,
            &identity,
            "api".into(),
            ChannelOptions::default().with_trust(membership.trust(None)),
        )?;
        for service in &services {
            let requirement = Requirement::new(policy.clone(), service.clone(), "read");
            latchkey_runtime::services::start_echo(
                &node,
                super::address(service)?,
                Accepts::flow(listener.flow).with_guard(membership.guard(Some(requirement))),
            )?;
        }
        let m = membership.clone();
        tokio::spawn(async move {
            while let Some(channel) = listener.accepted().await {
                m.watch(channel);
            }
        });
        let tcp = tcp::listen(&node, &listen, TcpOptions::default()).await?;
        let bound = tcp.local_addr.to_string();
        std::mem::forget(tcp);
        if let Some(address) = authority_address {
            let link = tcp::connect(&node, &address, TcpOptions::default()).await?;
            let trust = Arc::new(latchkey_core::channel::TrustIdentifiers::new([
                authority_id,
            ]));
            let channel = create_channel(
                &node,
                &identity,
                Route::from_addresses([link, "api".into()]),
                ChannelOptions::default().with_trust(trust),
            )
            .await?;
            client::follow_revocations(
                &node,
                &channel,
                &AUTHORITY_SERVICE.into(),
                membership.clone(),
                std::time::Duration::from_secs(refetch_secs.max(1)),
            )
            .await?;
        }
        Ok((
            Arc::new(GuardedNode {
                _node: node,
                membership,
            }),
            bound,
        ))
    })
    .await
}
