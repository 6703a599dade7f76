//! Transports are workers that carry routed messages between nodes.
//!
//! Sending side: a message whose onward route starts with a transport's address is written to the network
//! with that hop removed. Receiving side: the transport puts its own address (and for UDP the sender's
//! socket address) at the front of the return route, so a reply retraces the path.

pub mod memory;
pub mod tcp;
pub mod udp;
