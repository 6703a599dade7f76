//! # latchkey-runtime
//!
//! The tokio runtime around the sans-IO core: a [`Node`] hosts workers at [`Address`]es; [`Message`]s carry
//! an onward and a return [`Route`]; transports (TCP, UDP, in-memory) are workers; secure channels are
//! encryptor/decryptor workers, so a channel runs over any route and channels nest; relays make a node
//! reachable by name; portals carry TCP connections through channels; identities live in SQLite.
//! See docs/RUNTIME.md for the wire formats and the delivery guarantees.
//!
//! ```
//! use latchkey_core::channel::TrustIdentifiers;
//! use latchkey_runtime::services::start_echo;
//! use latchkey_runtime::transport::tcp;
//! use latchkey_runtime::*;
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<()> {
//! let doorbell_id = LocalIdentity::create()?;
//! let phone_id = LocalIdentity::create()?;
//! let trust = |id: &LocalIdentity| {
//!     ChannelOptions::default().with_trust(Arc::new(TrustIdentifiers::new([id.identifier()])))
//! };
//! // A doorbell node: a secure-channel listener that trusts only the phone, and an echo service open to
//! // the channels that listener accepts (everything else is refused by the flow rules).
//! let doorbell = Node::new("doorbell");
//! let listening = tcp::listen(&doorbell, "127.0.0.1:0", Default::default()).await?;
//! let listener = create_listener(&doorbell, &doorbell_id, "api".into(), trust(&phone_id))?;
//! start_echo(&doorbell, "echo".into(), Accepts::flow(listener.flow))?;
//!
//! // The phone connects, opens a channel to the doorbell, and sends through it; its inbox takes replies
//! // out of that channel only.
//! let phone = Node::new("phone");
//! let link = tcp::connect(&phone, &listening.local_addr.to_string(), Default::default()).await?;
//! let channel = create_channel(&phone, &phone_id, Route::from_addresses([link, "api".into()]),
//!     trust(&doorbell_id)).await?;
//! assert_eq!(channel.peer(), doorbell_id.identifier());
//! let mut inbox = phone.register_with("inbox".into(), 16, Accepts::flow(channel.flow()))?;
//! phone.send(Message::new(channel.route_to("echo"), Route::from(["inbox"]), b"ding".to_vec())).await?;
//! let reply = inbox.recv().await.unwrap();
//! assert_eq!((reply.payload.as_slice(), reply.peer()), (&b"ding"[..], Some(doorbell_id.identifier())));
//! # Ok(())
//! # }
//! ```

// One `unsafe` call (geteuid, in storage.rs), allowed where it is; nothing else.
#![deny(unsafe_code)]

pub mod authority;
pub mod channel;
pub mod direct;
mod error;
pub mod flow;
pub mod framing;
pub mod identity;
pub mod message;
pub mod node;
pub mod origin;
pub mod pins;
pub mod portal;
mod queue;
pub mod relay;
pub mod services;
pub mod storage;
pub mod timer;
pub mod transport;

pub use channel::{
    create_channel, create_listener, ChannelHandle, ChannelOptions, DriverStats, ListenerHandle,
    ResilientChannel, SuiteChoice,
};
pub use error::{Result, RuntimeError};
pub use flow::Accepts;
pub use identity::LocalIdentity;
pub use message::{Address, Message, Route};
pub use node::{Mailbox, Node};
pub use origin::{ChannelOrigin, FlowId, Origin};
pub use timer::TimerStats;
