//! Routed messages: an onward route (where the message goes, first hop first), a return route (how to answer)
//! and an opaque payload, plus the origin the node stamps on it. The encoding is documented byte by byte in
//! docs/RUNTIME.md and implemented once, in the core (`latchkey_core::wire::RoutedMessage`).

use crate::error::{Result, RuntimeError};
use crate::origin::Origin;
use latchkey_core::identity::Identifier;
use latchkey_core::wire::RoutedMessage;
use std::fmt;

/// The routed-message codec and its types live in the core (`latchkey_core::wire`), so a device without
/// this runtime speaks the same bytes; they are re-exported here unchanged.
pub use latchkey_core::wire::{Address, Route, MAX_ADDRESS_LEN, MAX_ROUTE_LEN, MESSAGE_VERSION};

/// An address, with the runtime's error: `Malformed` if it is empty or longer than [`MAX_ADDRESS_LEN`].
/// (`Address::new` itself returns the core's `DecodeError`, which `?` also turns into a `RuntimeError`.)
pub fn address(s: impl Into<String>) -> Result<Address> {
    Address::new(s).map_err(malformed)
}

/// A core decoding error as the runtime reports malformed messages.
pub(crate) fn malformed(e: latchkey_core::Error) -> RuntimeError {
    match e {
        latchkey_core::Error::Decode(why) => RuntimeError::Malformed(why),
        other => RuntimeError::Core(other),
    }
}

/// A routed message.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub onward: Route,
    pub ret: Route,
    pub payload: Vec<u8>,
    /// Where it came from: stamped by the node, never encoded, not settable by application code.
    origin: Origin,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Payloads are not printed: they may be plaintext the user considers secret.
        f.debug_struct("Message")
            .field("onward", &self.onward)
            .field("ret", &self.ret)
            .field("payload_len", &self.payload.len())
            .field("origin", &self.origin)
            .finish()
    }
}

impl Message {
    pub fn new(onward: Route, ret: Route, payload: Vec<u8>) -> Self {
        Message {
            onward,
            ret,
            payload,
            origin: Origin::local(),
        }
    }

    /// Where this message came from (see [`Origin`]).
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The authenticated peer, if it came out of a secure channel.
    pub fn peer(&self) -> Option<Identifier> {
        self.origin.peer()
    }

    pub(crate) fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    /// A reply to this message: onward = its return route.
    pub fn reply(&self, from: Route, payload: Vec<u8>) -> Message {
        Message::new(self.ret.clone(), from, payload)
    }

    /// A reply that goes back the way this message came: its return route must start at the connection or
    /// channel the message arrived on (always true for routes that transports and channels built). Services
    /// answer through this, so nobody can use them to reflect messages towards other workers.
    pub fn reply_to_origin(&self, from: Route, payload: Vec<u8>) -> Result<Message> {
        match self.origin.return_hop() {
            Some(hop) if self.ret.first() != Some(hop) => Err(RuntimeError::Malformed(
                "return route does not lead back the way the message came",
            )),
            _ => Ok(self.reply(from, payload)),
        }
    }

    /// Encodes `version ‖ onward ‖ return ‖ payload` (see docs/RUNTIME.md). Local info is not encoded.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(
            1 + self.onward.encoded_len() + self.ret.encoded_len() + self.payload.len(),
        );
        out.push(MESSAGE_VERSION);
        self.onward.encode_into(&mut out).map_err(malformed)?;
        self.ret.encode_into(&mut out).map_err(malformed)?;
        out.extend_from_slice(&self.payload);
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Message> {
        let (onward, ret, payload) = RoutedMessage::decode_header(bytes).map_err(malformed)?;
        Ok(Message::new(onward, ret, payload.to_vec()))
    }

    /// The message as the core's routed message (its origin stays behind).
    pub fn into_routed(self) -> RoutedMessage {
        RoutedMessage::new(self.onward, self.ret, self.payload)
    }

    /// A routed message from the core, with the origin it enters the node with.
    pub(crate) fn from_routed(message: RoutedMessage, origin: Origin) -> Self {
        Message::new(message.onward, message.ret, message.payload).with_origin(origin)
    }
}

impl From<RoutedMessage> for Message {
    /// A local message (origin: local) with the routed message's routes and payload.
    fn from(message: RoutedMessage) -> Self {
        Message::new(message.onward, message.ret, message.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = Message::new(
            Route::from(["tcp-out#1", "fwd:doorbell", "api"]),
            Route::from(["sc#4"]),
            b"hello".to_vec(),
        );
        let bytes = m.encode().unwrap();
        assert_eq!(Message::decode(&bytes).unwrap(), m);
    }

    #[test]
    fn replies_go_back_only_the_way_a_message_came() {
        use crate::origin::FlowId;
        let arrived = |ret: Route| {
            Message::new(Route::from(["echo"]), ret, b"x".to_vec()).with_origin(Origin::Transport {
                connection: "tcp-in#a".into(),
                remote: None,
                flow: FlowId::random(),
            })
        };
        let honest = arrived(Route::from(["tcp-in#a", "inbox"]));
        assert_eq!(
            honest.reply_to_origin(Route::new(), vec![]).unwrap().onward,
            Route::from(["tcp-in#a", "inbox"])
        );
        // A return route that starts elsewhere (e.g. at another connection or a channel encryptor) would
        // make the service a reflector.
        let reflected = arrived(Route::from(["sc-enc#b", "inbox"]));
        assert!(reflected.reply_to_origin(Route::new(), vec![]).is_err());
        // Local senders' return routes are theirs to choose.
        let local = Message::new(Route::from(["echo"]), Route::from(["sc-enc#b"]), vec![]);
        assert!(local.reply_to_origin(Route::new(), vec![]).is_ok());
    }

    #[test]
    fn rejects_garbage() {
        assert!(Message::decode(&[]).is_err());
        assert!(Message::decode(&[2, 0, 0]).is_err());
        assert!(Message::decode(&[1, 1, 5, b'a']).is_err());
        assert!(Message::decode(&[1, 200]).is_err());
        assert!(Message::decode(&[1, 1, 2, 0xff, 0xfe, 0]).is_err());
    }
}
