//! Where a delivered message came from. The node stamps every message with an [`Origin`] as it enters a
//! worker's mailbox: a local sender, a transport connection, or a secure channel with its authenticated
//! peer. Origins are local facts: they are never encoded, so no remote party can claim one, and the public
//! API gives application code no way to set one (`Node::send` always stamps "local").

use crate::message::Address;
use latchkey_core::identity::Identifier;
use std::fmt;
use std::sync::Arc;

/// Identifies a *flow*: the messages that one producer brings into a node from outside. Every TCP listener
/// (all its accepted connections), outgoing TCP connection, UDP socket, in-memory link end, channel listener
/// (all the channels it accepts) and initiated channel has one. Workers declare which flows may reach them
/// (see [`crate::flow::Accepts`]). Flow ids are random and never leave the node.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(u64);

impl FlowId {
    /// A fresh, random flow id.
    pub fn random() -> Self {
        FlowId(u64::from_be_bytes(random_bytes()))
    }
}

impl fmt::Debug for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "flow:{:016x}", self.0)
    }
}

impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Eight bytes from the crypto provider's random source (worker addresses and flow ids must not be
/// guessable by a remote party).
pub(crate) fn random_bytes() -> [u8; 8] {
    let mut b = [0u8; 8];
    latchkey_core::crypto::default_provider()
        .fill_random(&mut b)
        .expect("the operating system's random source failed");
    b
}

/// A message that came out of a secure channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelOrigin {
    /// The local encryptor of that channel: the first hop back to the peer.
    pub encryptor: Address,
    /// The identifier the peer proved in the handshake.
    pub peer: Identifier,
    /// This channel's own flow.
    pub flow: FlowId,
    /// The flow of the listener that accepted the channel (responders only), so a service can accept every
    /// channel of one listener.
    pub listener: Option<FlowId>,
    /// Credentials the peer presented in the handshake (verified by the trust policy, if it checks them).
    pub credentials: Arc<[Vec<u8>]>,
}

/// Where a delivered message came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Sent on this node by application code (`worker: None`) or by a runtime worker (its address).
    Local { worker: Option<Address> },
    /// Arrived on a transport connection, unauthenticated.
    Transport {
        /// The connection's worker (`tcp-in#…`, `tcp-out#…`, `udp#…`, `mem#…`): the first hop back.
        connection: Address,
        /// For datagram transports, the sender's socket address (the second hop back).
        remote: Option<Address>,
        /// The flow of the listener, connection or socket.
        flow: FlowId,
    },
    /// Came out of a secure channel: authenticated as sent by `peer`.
    Channel(Arc<ChannelOrigin>),
}

impl Origin {
    /// Application code on this node.
    pub fn local() -> Self {
        Origin::Local { worker: None }
    }

    pub(crate) fn worker(address: &Address) -> Self {
        Origin::Local {
            worker: Some(address.clone()),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Origin::Local { .. })
    }

    /// The authenticated peer, for messages that came out of a secure channel.
    pub fn peer(&self) -> Option<Identifier> {
        match self {
            Origin::Channel(c) => Some(c.peer),
            _ => None,
        }
    }

    pub fn channel(&self) -> Option<&ChannelOrigin> {
        match self {
            Origin::Channel(c) => Some(c),
            _ => None,
        }
    }

    /// The flows this message belongs to (a channel accepted by a listener belongs to both).
    pub(crate) fn flows(&self) -> impl Iterator<Item = FlowId> {
        let (a, b) = match self {
            Origin::Local { .. } => (None, None),
            Origin::Transport { flow, .. } => (Some(*flow), None),
            Origin::Channel(c) => (Some(c.flow), c.listener),
        };
        a.into_iter().chain(b)
    }

    /// The flow of the producer that brought the message in: the transport's, or the channel's own (not
    /// its listener's).
    pub(crate) fn primary_flow(&self) -> Option<FlowId> {
        match self {
            Origin::Local { .. } => None,
            Origin::Transport { flow, .. } => Some(*flow),
            Origin::Channel(c) => Some(c.flow),
        }
    }

    /// The hop a reply must start with: the connection or channel the message arrived on (`None` for local
    /// senders, whose return routes are trusted). A return route that does not start here was not built by
    /// the path the message took.
    pub fn return_hop(&self) -> Option<&Address> {
        match self {
            Origin::Local { .. } => None,
            Origin::Transport { connection, .. } => Some(connection),
            Origin::Channel(c) => Some(&c.encryptor),
        }
    }

    /// Whether two messages came along the same path: the same connection (and datagram sender), or the same
    /// channel. Used to keep a handshake in progress bound to the path it started on.
    pub fn same_path(&self, other: &Origin) -> bool {
        match (self, other) {
            (Origin::Local { .. }, Origin::Local { .. }) => true,
            (
                Origin::Transport {
                    connection: a,
                    remote: ra,
                    ..
                },
                Origin::Transport {
                    connection: b,
                    remote: rb,
                    ..
                },
            ) => a == b && ra == rb,
            (Origin::Channel(a), Origin::Channel(b)) => a.encryptor == b.encryptor,
            _ => false,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Local { worker: None } => write!(f, "local"),
            Origin::Local { worker: Some(w) } => write!(f, "local worker {w}"),
            Origin::Transport {
                connection,
                remote: Some(r),
                ..
            } => write!(f, "transport {connection} from {r}"),
            Origin::Transport { connection, .. } => write!(f, "transport {connection}"),
            Origin::Channel(c) => write!(f, "secure channel {} with {}", c.encryptor, c.peer),
        }
    }
}
