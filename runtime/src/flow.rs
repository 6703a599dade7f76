//! Flow control: which origins may reach which worker. This module is the whole rule; `Node` consults
//! [`Accepts::admits`] for every delivery and nothing else decides.
//!
//! Deny by default: a worker accepts messages from local senders only, unless it declares more. The few
//! legitimate remote flows are declared where the worker is created:
//!
//! | worker | local | from a transport | out of a secure channel |
//! |---|---|---|---|
//! | application worker (`Node::register`) | yes | no | no |
//! | service (echo, inbox, outlet, mailbox) | yes | no | only the flows it names (a listener's, a channel's), optionally only given peers |
//! | channel listener (`create_listener`) | yes | any transport (handshakes) | only the flows it names (nesting, relay channels) |
//! | channel decryptor `sc-dec` | yes | only the flow its handshake came on | only the flow its handshake came on |
//! | channel encryptor `sc-enc` | yes | no | no (relay nodes: any channel, so replies go back into a channel a peer reached a name through) |
//! | portal inlet connection | yes | no | only the one channel the portal was opened through |
//! | portal outlet connection | yes | no | only the channel its `CONNECT` came out of |
//! | transport connection (`tcp-in`, `tcp-out`, `udp`, `mem`) | yes | relay nodes only | relay nodes only |
//! | relay registration service | yes | no | only the relay listener's channels |
//! | relay forwarder `fwd:NAME` | yes | any transport (guarded relay: no) | any channel (guarded relay: the relay listener's channels, each message's origin checked against the `forward` policy) |
//! | relay mailbox deposits `mailbox` | yes | any transport | any channel |
//! | relay mailbox owners `mailbox-owner` | yes | no | only the relay listener's channels (and only the mailbox's own identity, checked by the service) |
//! | authority service `authority` | yes | no | only the authority listener's channels |
//! | X3DH enrollment `enroll` | yes | any transport | any channel |
//!
//! Any of these may also carry a guard ([`Accepts::with_guard`], [`OriginGuard`]): after the flow rule admits
//! a remote message, the guard checks its authenticated origin (credential, policy, revocation: see
//! `crate::authority::enforce`).
//!
//! So a remote party reaches only listeners, the decryptors of its own channels, relay forwarders, and the
//! services a channel's listener or creator opened to that channel; a node that is not a relay never
//! forwards a remote message into another transport or channel.

use crate::origin::{FlowId, Origin};
use latchkey_core::identity::Identifier;
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;

/// Which remote origins a worker accepts, besides local senders (always accepted).
#[derive(Clone, Default)]
pub struct Accepts {
    any_transport: bool,
    any_channel: bool,
    flows: BTreeSet<FlowId>,
    /// When set, a message out of a channel must also come from one of these peers.
    peers: Option<Arc<HashSet<Identifier>>>,
    /// When set, every remote message that passed the rules above must also pass this check of its
    /// authenticated origin (credentials, attribute policies, revocation: `crate::authority::enforce`).
    guard: Option<Arc<dyn OriginGuard>>,
}

/// A check of each remote message's authenticated origin, after the flow rule admitted it: a membership
/// credential from a trusted authority, an attribute policy for this worker (its resource and action), not
/// revoked. Local senders are never asked. A guard must be cheap: it runs for every message.
pub trait OriginGuard: Send + Sync {
    /// `Err(why)` refuses the message.
    fn check(&self, origin: &Origin) -> Result<(), String>;
}

impl PartialEq for Accepts {
    fn eq(&self, other: &Self) -> bool {
        self.any_transport == other.any_transport
            && self.any_channel == other.any_channel
            && self.flows == other.flows
            && self.peers == other.peers
            && match (&self.guard, &other.guard) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Eq for Accepts {}

/// Why a delivery was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// The origin's flow is not one the worker accepts.
    Flow,
    /// The channel's peer is not in the worker's peer list.
    Peer(Identifier),
    /// The worker's guard refused the origin (no valid credential, policy, revocation).
    Guard(String),
}

impl Accepts {
    /// Local senders only: the default for every worker.
    pub fn local_only() -> Self {
        Accepts::default()
    }

    /// Also messages from any transport connection (channel listeners: handshakes; relay forwarders).
    pub fn any_transport() -> Self {
        Accepts {
            any_transport: true,
            ..Accepts::default()
        }
    }

    /// Also messages of this flow (a transport's, a channel's, or a channel listener's).
    pub fn flow(flow: FlowId) -> Self {
        Accepts::default().and_flow(flow)
    }

    /// Every remote origin: what a relay's forwarding workers take.
    pub fn relay() -> Self {
        Accepts {
            any_transport: true,
            any_channel: true,
            ..Accepts::default()
        }
    }

    /// Adds a flow.
    pub fn and_flow(mut self, flow: FlowId) -> Self {
        self.flows.insert(flow);
        self
    }

    /// Adds messages out of any secure channel (relay forwarders; nothing else should need it).
    pub fn and_any_channel(mut self) -> Self {
        self.any_channel = true;
        self
    }

    /// Restricts channel messages to these authenticated peers (and refuses unauthenticated transports).
    pub fn from_peers(mut self, peers: impl IntoIterator<Item = Identifier>) -> Self {
        self.peers = Some(Arc::new(peers.into_iter().collect()));
        self
    }

    /// Also checks every remote message with `guard` (see [`OriginGuard`]).
    pub fn with_guard(mut self, guard: Arc<dyn OriginGuard>) -> Self {
        self.guard = Some(guard);
        self
    }

    /// The guard every remote message must also pass, if any.
    pub fn guard(&self) -> Option<&Arc<dyn OriginGuard>> {
        self.guard.as_ref()
    }

    pub(crate) fn add_flow(&mut self, flow: FlowId) {
        self.flows.insert(flow);
    }

    /// Whether it declares every transport (outlets refuse to start so configured).
    pub fn takes_any_transport(&self) -> bool {
        self.any_transport
    }

    /// The rule. Local senders always pass; a remote message passes when its flow is accepted and, for a
    /// worker with a peer list, when it came out of a channel with one of those peers.
    /// With a guard, a remote message that passes must also pass the guard.
    pub fn admits(&self, origin: &Origin) -> Result<(), Denied> {
        self.admits_flow(origin)?;
        match &self.guard {
            Some(guard) if !origin.is_local() => guard.check(origin).map_err(Denied::Guard),
            _ => Ok(()),
        }
    }

    fn admits_flow(&self, origin: &Origin) -> Result<(), Denied> {
        let flow_ok = |any: bool| any || origin.flows().any(|f| self.flows.contains(&f));
        match origin {
            Origin::Local { .. } => Ok(()),
            Origin::Transport { .. } if self.peers.is_some() => Err(Denied::Flow),
            Origin::Transport { .. } if flow_ok(self.any_transport) => Ok(()),
            Origin::Channel(c) if flow_ok(self.any_channel) => match &self.peers {
                Some(peers) if !peers.contains(&c.peer) => Err(Denied::Peer(c.peer)),
                _ => Ok(()),
            },
            _ => Err(Denied::Flow),
        }
    }
}

impl fmt::Debug for Accepts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Accepts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = vec!["local".to_string()];
        if self.any_transport {
            parts.push("any transport".into());
        }
        if self.any_channel {
            parts.push("any channel".into());
        }
        parts.extend(self.flows.iter().map(|f| f.to_string()));
        write!(f, "{}", parts.join(", "))?;
        if let Some(peers) = &self.peers {
            write!(f, " (channel peers: {} listed)", peers.len())?;
        }
        if self.guard.is_some() {
            write!(f, " (guarded)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The table in the module documentation, row by row: for each kind of worker, which origins it takes.
    use super::*;
    use crate::message::Address;
    use crate::origin::ChannelOrigin;

    fn transport(flow: FlowId) -> Origin {
        Origin::Transport {
            connection: Address::from("tcp-in#1"),
            remote: None,
            flow,
        }
    }

    fn channel(flow: FlowId, listener: Option<FlowId>, peer: u8) -> Origin {
        Origin::Channel(Arc::new(ChannelOrigin {
            encryptor: Address::from("sc-enc#1"),
            peer: Identifier::from_bytes([peer; 32]),
            flow,
            listener,
            credentials: Arc::from(Vec::new()),
        }))
    }

    #[test]
    fn flow_table_by_worker_kind() {
        let tcp_listener = FlowId::random();
        let other_transport = FlowId::random();
        let api = FlowId::random(); // a channel listener's flow
        let accepted = FlowId::random(); // one channel that `api` accepted
        let initiated = FlowId::random(); // a channel this node initiated
        let relay_channel = FlowId::random();
        let phone = Identifier::from_bytes([7; 32]);
        let local = Origin::local();
        let from_tcp = transport(tcp_listener);
        let from_elsewhere = transport(other_transport);
        let phone_via_api = channel(accepted, Some(api), 7);
        let stranger_via_api = channel(FlowId::random(), Some(api), 9);
        let phone_via_initiated = channel(initiated, None, 7);
        let relay_via_channel = channel(relay_channel, None, 3);

        // (worker kind, what it declares, [(origin, admitted?)])
        type Row<'a> = (&'a str, Accepts, Vec<(&'a Origin, bool)>);
        let rows: Vec<Row> = vec![
            (
                "application worker",
                Accepts::local_only(),
                vec![(&local, true), (&from_tcp, false), (&phone_via_api, false)],
            ),
            (
                "service open to a listener's channels, one peer",
                Accepts::flow(api).from_peers([phone]),
                vec![
                    (&local, true),
                    (&from_tcp, false),
                    (&phone_via_api, true),
                    (&stranger_via_api, false),
                    (&phone_via_initiated, false),
                    (&relay_via_channel, false),
                ],
            ),
            (
                "reply mailbox of an initiated channel",
                Accepts::flow(initiated).from_peers([phone]),
                vec![
                    (&phone_via_initiated, true),
                    (&phone_via_api, false),
                    (&from_tcp, false),
                ],
            ),
            (
                "channel listener (+ the relay channel it is reached through)",
                Accepts::any_transport().and_flow(relay_channel),
                vec![
                    (&local, true),
                    (&from_tcp, true),
                    (&from_elsewhere, true),
                    (&relay_via_channel, true),
                    (&phone_via_api, false),
                ],
            ),
            (
                "decryptor whose handshake came over the TCP listener",
                Accepts::flow(tcp_listener),
                vec![
                    (&from_tcp, true),
                    (&from_elsewhere, false),
                    (&phone_via_api, false),
                ],
            ),
            (
                "encryptor",
                Accepts::local_only(),
                vec![
                    (&local, true),
                    (&from_tcp, false),
                    (&relay_via_channel, false),
                ],
            ),
            (
                "portal inlet connection (one channel)",
                Accepts::flow(initiated).from_peers([phone]),
                vec![(&phone_via_initiated, true), (&from_tcp, false)],
            ),
            (
                "transport connection on an ordinary node",
                Accepts::local_only(),
                vec![(&local, true), (&from_tcp, false), (&phone_via_api, false)],
            ),
            (
                "transport connection or forwarder on a relay node",
                Accepts::relay(),
                vec![(&from_tcp, true), (&phone_via_api, true), (&local, true)],
            ),
        ];
        for (kind, accepts, cases) in rows {
            for (origin, expected) in cases {
                assert_eq!(
                    accepts.admits(origin).is_ok(),
                    expected,
                    "{kind} ({accepts}) admitting {origin}"
                );
            }
        }
        assert_eq!(
            Accepts::flow(api)
                .from_peers([phone])
                .admits(&stranger_via_api),
            Err(Denied::Peer(Identifier::from_bytes([9; 32])))
        );
    }
}
