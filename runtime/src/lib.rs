//! # latchkey-runtime
//!
//! The tokio runtime around the sans-IO core: a [`Node`] hosts workers at [`Address`]es; [`Message`]s carry
//! an onward and a return [`Route`]; transports (TCP, UDP, in-memory) are workers; secure channels are
//! encryptor/decryptor workers, so a channel runs over any route and channels nest; relays make a node
//! reachable by name; portals carry TCP connections through channels; identities live in SQLite.
//! See docs/RUNTIME.md for the wire formats and the delivery guarantees.

pub mod channel;
pub mod direct;
mod error;
pub mod framing;
pub mod identity;
pub mod message;
pub mod node;
pub mod portal;
pub mod relay;
pub mod services;
pub mod storage;
pub mod transport;

pub use channel::{create_channel, create_listener, ChannelHandle, ChannelOptions, ListenerHandle};
pub use error::{Result, RuntimeError};
pub use identity::LocalIdentity;
pub use message::{Address, Message, Route};
pub use node::{Access, Mailbox, Node};
