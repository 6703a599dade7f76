//! The facade's `Node` for asyncio: each method converts its arguments, calls the facade, and (for network
//! work) returns a coroutine over the facade's future (see `aio`). What trust means for flows, lifetimes,
//! closing, relays and portals is the facade's; nothing of it is repeated here.

mod channel;
mod mailbox;

pub(crate) use channel::{PyChannelListener, PyNodeChannel};
pub(crate) use mailbox::{PyMailbox, PyNodeMessage};

use crate::aio::{self, PyCoroutine};
use crate::convert::{seconds, Bytes, PyCipherSuite};
use crate::errors::{error, IntoPyResult};
use crate::identity::PyIdentity;
use crate::trust;
use latchkey_facade::{
    ConnectOptions, ErrorCode, Node, NodeOptions, NodeTrustOptions, Peer, RelayServiceOptions,
    SuiteChoice, Trust,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::path::PathBuf;
use std::sync::Arc;

/// A runtime node with its own identity: hosts services, mailboxes and portal outlets, listens on TCP and
/// UDP, connects directly or through a relay, and carries messages through secure channels. Use it as
/// `async with latchkey.Node() as node:`.
#[pyclass(name = "Node", module = "latchkey", frozen)]
pub(crate) struct PyNode {
    inner: Arc<Node>,
}

/// A path as the facade takes it (UTF-8).
fn path_text(path: PathBuf) -> PyResult<String> {
    path.into_os_string().into_string().map_err(|p| {
        error(
            ErrorCode::InvalidArgument,
            format!("{p:?} is not a UTF-8 path"),
        )
    })
}

#[pymethods]
impl PyNode {
    /// A node named `name` (for logs). Its identity: a fresh one for this run (no `identity`), a
    /// `latchkey.Identity` made in Python, or the name of a stored identity, loaded from the store in `home`
    /// (default `$LATCHKEY_HOME`, else `~/.latchkey`: the CLI's store) and created there first when `create`
    /// is true; a stored identity presents the credential stored for it (`enroll`) while it is valid. `relay=True`
    /// makes a node that forwards between its connections (see `start_relay`).
    #[new]
    #[pyo3(signature = (name = "python", *, identity = None, home = None, create = false, relay = false))]
    fn new(
        py: Python<'_>,
        name: &str,
        identity: Option<Bound<'_, PyAny>>,
        home: Option<PathBuf>,
        create: bool,
        relay: bool,
    ) -> PyResult<Self> {
        let options = NodeOptions {
            name: name.to_owned(),
            relay,
        };
        let stored = match &identity {
            Some(given) if given.is_instance_of::<PyIdentity>() => None,
            Some(given) => Some(given.extract::<String>().map_err(|_| {
                PyTypeError::new_err(
                    "identity must be a latchkey.Identity or the name of a stored identity (str)",
                )
            })?),
            None => None,
        };
        let inner = match (identity, stored) {
            (_, Some(stored)) => {
                let home = home.map(path_text).transpose()?;
                py.detach(|| Node::with_stored_identity(&stored, home, create, options))
                    .into_py_result()?
            }
            (given, None) => {
                if home.is_some() || create {
                    return Err(error(
                        ErrorCode::InvalidArgument,
                        "home= and create= are for stored identities (identity=\"name\")",
                    ));
                }
                let identity = match given {
                    Some(given) => given.cast_into::<PyIdentity>()?.get().inner.clone(),
                    None => py.detach(crate::identity::fresh).into_py_result()?,
                };
                Node::new(&identity, options).into_py_result()?
            }
        };
        Ok(PyNode { inner })
    }

    #[getter]
    fn name(&self) -> String {
        self.inner.name()
    }

    /// Checks (and keeps) peer histories pinned in `store` in every later trust decision of this node.
    #[pyo3(signature = (store, *, trust_on_first_use = false))]
    fn pin_peers(
        &self,
        store: &crate::identity::PyIdentityStore,
        trust_on_first_use: bool,
    ) -> PyResult<()> {
        self.inner
            .pin_peers(&store.inner, trust_on_first_use)
            .into_py_result()
    }

    /// This node's identifier (`lk…`), what peers see and trust.
    #[getter]
    fn identifier(&self) -> String {
        self.inner.identifier()
    }

    #[getter]
    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// How many messages the flow rules have refused on this node (e.g. raw transport messages addressed to
    /// a service, or channel messages from a peer a service does not trust).
    #[getter]
    fn denied_count(&self) -> u64 {
        self.inner.denied_count()
    }

    /// Makes this node a member (the facade's `Node::use_authorities`): its peers must present a valid,
    /// unrevoked credential of one of `authorities` (exported histories) at every handshake and on every
    /// message to its services, mailboxes, portals and relay service; it presents `credential`; with
    /// `authority_address` it follows that authority's revocations and refreshes its credential (saved as
    /// `save_as` in `home` when given). Call it once, before starting listeners and services. Returns
    /// whether the authority was reached.
    #[pyo3(signature = (authorities, *, credential = None, authority_address = None, refetch_secs = 0,
                        save_as = None, home = None))]
    fn use_authorities(
        &self,
        authorities: Vec<Bytes>,
        credential: Option<Bytes>,
        authority_address: Option<String>,
        refetch_secs: u64,
        save_as: Option<String>,
        home: Option<PathBuf>,
    ) -> PyResult<PyCoroutine> {
        let home = home.map(path_text).transpose()?;
        if home.is_some() && save_as.is_none() {
            return Err(error(
                ErrorCode::InvalidArgument,
                "home= is where save_as= saves the refreshed credential: give save_as too",
            ));
        }
        let options = NodeTrustOptions {
            authorities: authorities.iter().map(|a| a.to_vec()).collect(),
            credential: credential.map(|c| c.to_vec()),
            authority_address,
            refetch_secs,
            save_as: save_as.map(|name| (name, home)),
        };
        let node = self.inner.clone();
        Ok(aio::coroutine("Node.use_authorities", async move {
            node.use_authorities(options).await
        }))
    }

    /// The cipher suite of the routed channels this node opens and accepts (docs/PROTOCOL.md 5.1): a
    /// listener takes the suite chosen when it is started (`listen`), a connection the one chosen when it
    /// is opened (those already there keep theirs: choose before starting them). `None` or `"auto"` (the
    /// default): offer AES-256-GCM where the CPU has AES instructions, ChaCha20-Poly1305 otherwise, and
    /// accept both. A `CipherSuite` (or `"chachapoly"`, `"aesgcm"`, as the CLI's `--suite`): offer and
    /// accept that suite only; a peer offering the other is refused with `UnsupportedSuite`. Another
    /// string raises `InvalidArgument` (and changes nothing).
    #[pyo3(signature = (suite))]
    fn set_suite(&self, suite: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let choice = match suite {
            None => SuiteChoice::Auto,
            Some(value) => {
                if let Ok(suite) = value.extract::<PyCipherSuite>() {
                    SuiteChoice::Only(suite.into())
                } else if let Ok(name) = value.extract::<String>() {
                    name.parse().map_err(|_| {
                        error(
                            ErrorCode::InvalidArgument,
                            format!("unknown cipher suite {name:?}: auto, chachapoly or aesgcm"),
                        )
                    })?
                } else {
                    return Err(PyTypeError::new_err(
                        "suite is a latchkey.CipherSuite, \"auto\", \"chachapoly\", \"aesgcm\" or None",
                    ));
                }
            }
        };
        self.inner.set_suite(choice).into_py_result()
    }

    /// The attribute policy (docs/POLICY.md) of the worker at `address` (or `"channel"` for handshakes,
    /// `"inlet"`, `"relay"`): set after `use_authorities` and before starting what it guards.
    fn set_policy(&self, address: String, policy: String) -> PyResult<()> {
        self.inner.set_policy(address, policy).into_py_result()
    }

    /// Whether a policy is set for `address`.
    fn has_policy(&self, address: String) -> bool {
        self.inner.has_policy(address)
    }

    /// `(revoked, expired, refreshed)`: channels closed because their peer was revoked, because their
    /// peer's credential expired, and how many times this node's own credential was refreshed.
    fn trust_counts(&self) -> (u64, u64, u64) {
        self.inner.trust_counts()
    }

    /// Accepts TCP connections on `address`; returns the bound `host:port`.
    #[pyo3(signature = (address = "127.0.0.1:0"))]
    fn listen_tcp(&self, address: &str) -> PyCoroutine {
        let (node, address) = (self.inner.clone(), address.to_owned());
        aio::coroutine(
            "Node.listen_tcp",
            async move { node.listen_tcp(address).await },
        )
    }

    /// Receives datagrams on `address`; returns the bound `host:port`.
    #[pyo3(signature = (address = "127.0.0.1:0"))]
    fn bind_udp(&self, address: &str) -> PyCoroutine {
        let (node, address) = (self.inner.clone(), address.to_owned());
        aio::coroutine("Node.bind_udp", async move { node.bind_udp(address).await })
    }

    /// Accepts secure channels at `address` (e.g. `"api"`) from the peers in `trusted`, or from any
    /// authenticated identity with `trust_any=True`. One of the two is required.
    #[pyo3(signature = (address = "api", *, trusted = None, trust_any = false))]
    fn listen(
        &self,
        address: &str,
        trusted: Option<Vec<String>>,
        trust_any: bool,
    ) -> PyResult<PyChannelListener> {
        let trust = trust::from_args(trusted, trust_any)?;
        let listener = self
            .inner
            .listen(address.to_owned(), trust)
            .into_py_result()?;
        Ok(PyChannelListener::new(listener))
    }

    /// Hosts an echo service at `address` for the channels of this node's listeners (now and later): only
    /// from the peers in `trusted`, or from any of them with `trust_any=True`. One of the two is required.
    #[pyo3(signature = (address = "echo", *, trusted = None, trust_any = false))]
    fn start_echo(
        &self,
        address: &str,
        trusted: Option<Vec<String>>,
        trust_any: bool,
    ) -> PyResult<()> {
        let trust = trust::from_args(trusted, trust_any)?;
        self.inner
            .start_echo(address.to_owned(), trust)
            .into_py_result()
    }

    /// A mailbox at `address` on this node (see the stubs).
    #[pyo3(signature = (address, *, trusted = None, trust_any = false))]
    fn mailbox(
        &self,
        address: String,
        trusted: Option<Vec<String>>,
        trust_any: bool,
    ) -> PyResult<PyMailbox> {
        let trust = trust::from_args(trusted, trust_any)?;
        let mailbox = self.inner.mailbox(address, trust).into_py_result()?;
        Ok(PyMailbox::new(mailbox))
    }

    /// Opens a secure channel to the listener `service` of the node at `address` (`host:port`), or of the
    /// node registered as `relay_name` at the relay `address`; over UDP with `udp=True`. The peer must be
    /// one of `trusted` (`UntrustedPeer` otherwise), or any authenticated identity with `trust_any=True`.
    /// With `via_relay_channel` (the relay's identifier), the channel to `relay_name` travels inside a secure
    /// channel to the relay (for relays with a `forward` policy; the facade's `connect_via_relay_channel`).
    #[pyo3(signature = (address, *, service = "api", relay_name = None, udp = false,
                        timeout = None, trusted = None, trust_any = false, via_relay_channel = None))]
    #[allow(clippy::too_many_arguments)]
    fn connect(
        &self,
        address: String,
        service: &str,
        relay_name: Option<String>,
        udp: bool,
        timeout: Option<f64>,
        trusted: Option<Vec<String>>,
        trust_any: bool,
        via_relay_channel: Option<String>,
    ) -> PyResult<PyCoroutine> {
        let trust = trust::from_args(trusted, trust_any)?;
        let mut options = ConnectOptions::default();
        if let Some(timeout) = timeout {
            options.timeout = seconds("timeout", timeout)?;
        }
        if let Some(relay_id) = via_relay_channel {
            let Some(name) = relay_name else {
                return Err(error(
                    ErrorCode::InvalidArgument,
                    "via_relay_channel= reaches a relay_name= through a channel to the relay: give relay_name",
                ));
            };
            if udp || service != "api" {
                return Err(error(
                    ErrorCode::InvalidArgument,
                    "via_relay_channel= goes over TCP to the named node's listener \"api\" (no udp=, no service=)",
                ));
            }
            latchkey_facade::check_identifier(&relay_id).into_py_result()?;
            let node = self.inner.clone();
            return Ok(aio::coroutine("Node.connect", async move {
                let channel = node
                    .connect_via_relay_channel(
                        address,
                        Trust::Identifiers(vec![relay_id]),
                        name,
                        trust,
                        options,
                    )
                    .await?;
                Ok(PyNodeChannel::new(channel))
            }));
        }
        let peer = Peer {
            address,
            relay_name,
            listener: service.to_owned(),
            udp,
        };
        let node = self.inner.clone();
        Ok(aio::coroutine("Node.connect", async move {
            let channel = node.connect(peer, trust, options).await?;
            Ok(PyNodeChannel::new(channel))
        }))
    }

    /// Makes this relay node (`Node(relay=True)`) a relay: a registration service for the channels of its
    /// listeners (start one first). Without arguments, the facade's defaults.
    #[pyo3(signature = (*, lease = None, max_names = None, max_names_per_identity = None, allowed = None))]
    fn start_relay(
        &self,
        lease: Option<f64>,
        max_names: Option<u32>,
        max_names_per_identity: Option<u32>,
        allowed: Option<Vec<(String, String)>>,
    ) -> PyResult<()> {
        let mut options = RelayServiceOptions::default();
        if let Some(lease) = lease {
            options.lease = seconds("lease", lease)?;
        }
        if let Some(max) = max_names {
            options.max_names = max;
        }
        if let Some(max) = max_names_per_identity {
            options.max_names_per_identity = max;
        }
        if let Some(allowed) = allowed {
            options.allowed = allowed;
        }
        self.inner.start_relay(options).into_py_result()
    }

    /// Registers this node as `name` at the relay at `relay_address` (`host:port`), through a secure channel
    /// to the relay, which must be one of `relay_trusted` (or anyone with `relay_trust_any=True`), and keeps
    /// the registration fresh. Peers then reach this node's listeners with `connect(relay_address,
    /// relay_name=name, ...)`. Returns the identifier the relay proved.
    #[pyo3(signature = (relay_address, name, *, relay_trusted = None, relay_trust_any = false))]
    fn register_at_relay(
        &self,
        relay_address: String,
        name: String,
        relay_trusted: Option<Vec<String>>,
        relay_trust_any: bool,
    ) -> PyResult<PyCoroutine> {
        let trust = trust::from_named_args(
            relay_trusted,
            relay_trust_any,
            "relay_trusted",
            "relay_trust_any",
        )?;
        let node = self.inner.clone();
        Ok(aio::coroutine("Node.register_at_relay", async move {
            node.register_at_relay(relay_address, trust, name).await
        }))
    }

    /// A TCP portal outlet at `address`: each connection that comes through a channel of this node's
    /// listeners, from the peers in `trusted` (or any with `trust_any=True`), is connected to `target`
    /// (`host:port`).
    #[pyo3(signature = (target, *, address = "outlet", trusted = None, trust_any = false))]
    fn create_outlet(
        &self,
        target: String,
        address: &str,
        trusted: Option<Vec<String>>,
        trust_any: bool,
    ) -> PyResult<()> {
        let trust = trust::from_args(trusted, trust_any)?;
        self.inner
            .create_outlet(address.to_owned(), target, trust)
            .into_py_result()
    }

    /// A TCP portal inlet on `listen`: each connection to it is carried through `channel` to the outlet
    /// `outlet` on the far side. Returns the bound `host:port`.
    #[pyo3(signature = (channel, *, outlet = "outlet", listen = "127.0.0.1:0"))]
    fn create_inlet(
        &self,
        channel: PyRef<'_, PyNodeChannel>,
        outlet: &str,
        listen: &str,
    ) -> PyCoroutine {
        let node = self.inner.clone();
        let (outlet, listen) = (outlet.to_owned(), listen.to_owned());
        let channel = channel.inner.clone();
        aio::coroutine("Node.create_inlet", async move {
            node.create_inlet(listen, channel, outlet).await
        })
    }

    /// Stops accepting, closes every channel of this node (waiting until each has stopped), ends its
    /// services, mailboxes and listeners. Idempotent; later calls raise `ChannelClosed`.
    fn shutdown(&self) -> PyCoroutine {
        let node = self.inner.clone();
        aio::coroutine_none("Node.shutdown", async move { node.shutdown().await })
    }

    /// The same as `shutdown()`.
    fn close(&self) -> PyCoroutine {
        let node = self.inner.clone();
        aio::coroutine_none("Node.close", async move { node.shutdown().await })
    }

    fn __aenter__(slf: Bound<'_, Self>) -> PyCoroutine {
        aio::ready("Node.__aenter__", slf.into_any().unbind())
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__(&self, _exc: &Bound<'_, PyTuple>) -> PyCoroutine {
        self.shutdown()
    }

    fn __repr__(&self) -> String {
        format!(
            "<latchkey.Node {:?} {}>",
            self.inner.name(),
            self.inner.identifier()
        )
    }
}
