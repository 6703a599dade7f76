//! # latchkey-runtime
//!
//! The tokio runtime around the sans-IO core: a [`Node`] hosts workers at [`Address`]es; [`Message`]s carry
//! an onward and a return [`Route`]; transports (TCP, UDP, in-memory) are workers; secure channels are
//! encryptor/decryptor workers, so a channel runs over any route and channels nest; relays make a node
//! reachable by name; portals carry TCP connections through channels; identities live in SQLite.
//! See docs/RUNTIME.md for the wire formats and the delivery guarantees.
//!
//! ```
//! use latchkey_runtime::services::start_echo;
//! use latchkey_runtime::transport::tcp;
//! use latchkey_runtime::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<()> {
//! // A doorbell node: a secure-channel listener and an echo service only the phone may use.
//! let doorbell = Node::new("doorbell");
//! let doorbell_id = LocalIdentity::create()?;
//! let phone_id = LocalIdentity::create()?;
//! let listening = tcp::listen(&doorbell, "127.0.0.1:0", Default::default()).await?;
//! create_listener(&doorbell, &doorbell_id, "api".into(), ChannelOptions::default())?;
//! start_echo(&doorbell, "echo".into(), Access::identifiers([phone_id.identifier()]))?;
//!
//! // The phone connects, opens a channel, and sends through it.
//! let phone = Node::new("phone");
//! let link = tcp::connect(&phone, &listening.local_addr.to_string(), Default::default()).await?;
//! let channel = create_channel(&phone, &phone_id, Route::from_addresses([link, "api".into()]),
//!     ChannelOptions::default()).await?;
//! assert_eq!(channel.peer(), doorbell_id.identifier());
//! let mut inbox = phone.register("inbox".into())?;
//! phone.send(Message::new(channel.route_to("echo"), Route::from(["inbox"]), b"ding".to_vec())).await?;
//! assert_eq!(inbox.recv().await.unwrap().payload, b"ding");
//! # Ok(())
//! # }
//! ```

pub mod channel;
pub mod direct;
mod error;
pub mod flow;
pub mod framing;
pub mod identity;
pub mod message;
pub mod node;
pub mod origin;
pub mod portal;
pub mod relay;
pub mod services;
pub mod storage;
pub mod transport;

pub use channel::{create_channel, create_listener, ChannelHandle, ChannelOptions, ListenerHandle};
pub use error::{Result, RuntimeError};
pub use flow::Accepts;
pub use identity::LocalIdentity;
pub use message::{Address, Message, Route};
pub use node::{Mailbox, Node};
pub use origin::{ChannelOrigin, FlowId, Origin};
