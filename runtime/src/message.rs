//! Routed messages: an onward route (where the message goes, first hop first), a return route (how to answer)
//! and an opaque payload. Encoding is documented byte by byte in docs/RUNTIME.md; this is the only place
//! that reads or writes it.

use crate::error::{Result, RuntimeError};
use crate::origin::Origin;
use latchkey_core::identity::Identifier;
use std::fmt;

/// Wire-format version of an encoded [`Message`].
pub const MESSAGE_VERSION: u8 = 1;
/// Most addresses a route may hold.
pub const MAX_ROUTE_LEN: usize = 32;
/// Longest address, in bytes.
pub const MAX_ADDRESS_LEN: usize = 255;

/// The name of a worker on a node (e.g. `"echo"`, `"tcp-in#3"`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(String);

impl Address {
    /// An address; fails if it is empty or longer than [`MAX_ADDRESS_LEN`].
    pub fn new(s: impl Into<String>) -> Result<Self> {
        let s = s.into();
        if s.is_empty() || s.len() > MAX_ADDRESS_LEN {
            return Err(RuntimeError::Malformed("address must be 1..=255 bytes"));
        }
        Ok(Address(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<&str> for Address {
    /// For literals in code; panics on an invalid address, which is a programming error there.
    fn from(s: &str) -> Self {
        Address::new(s).expect("valid address literal")
    }
}

/// A sequence of addresses, first hop first.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Route(Vec<Address>);

impl Route {
    pub fn new() -> Self {
        Route(Vec::new())
    }

    pub fn from_addresses(addresses: impl IntoIterator<Item = Address>) -> Self {
        Route(addresses.into_iter().collect())
    }

    pub fn append(mut self, address: impl Into<Address>) -> Self {
        self.0.push(address.into());
        self
    }

    pub fn prepend(mut self, address: impl Into<Address>) -> Self {
        self.0.insert(0, address.into());
        self
    }

    /// This route followed by `other`.
    pub fn concat(mut self, other: &Route) -> Self {
        self.0.extend(other.0.iter().cloned());
        self
    }

    pub fn first(&self) -> Option<&Address> {
        self.0.first()
    }

    pub fn last(&self) -> Option<&Address> {
        self.0.last()
    }

    /// Removes and returns the first hop.
    pub fn pop_front(&mut self) -> Option<Address> {
        if self.0.is_empty() {
            None
        } else {
            Some(self.0.remove(0))
        }
    }

    /// Everything but the last hop.
    pub fn without_last(&self) -> Route {
        let mut v = self.0.clone();
        v.pop();
        Route(v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Address> {
        self.0.iter()
    }
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, " => ")?;
            }
            write!(f, "{}", a.0)?;
        }
        write!(f, "]")
    }
}

impl<A: Into<Address>, const N: usize> From<[A; N]> for Route {
    fn from(addresses: [A; N]) -> Self {
        Route(addresses.into_iter().map(Into::into).collect())
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
        let mut out = Vec::with_capacity(self.payload.len() + 64);
        out.push(MESSAGE_VERSION);
        encode_route(&self.onward, &mut out)?;
        encode_route(&self.ret, &mut out)?;
        out.extend_from_slice(&self.payload);
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Message> {
        let (&version, mut rest) = bytes
            .split_first()
            .ok_or(RuntimeError::Malformed("empty message"))?;
        if version != MESSAGE_VERSION {
            return Err(RuntimeError::Malformed("unknown message version"));
        }
        let onward = decode_route(&mut rest)?;
        let ret = decode_route(&mut rest)?;
        Ok(Message::new(onward, ret, rest.to_vec()))
    }
}

fn encode_route(route: &Route, out: &mut Vec<u8>) -> Result<()> {
    if route.len() > MAX_ROUTE_LEN {
        return Err(RuntimeError::Malformed("route too long"));
    }
    out.push(route.len() as u8);
    for a in route.iter() {
        out.push(a.0.len() as u8);
        out.extend_from_slice(a.0.as_bytes());
    }
    Ok(())
}

fn decode_route(rest: &mut &[u8]) -> Result<Route> {
    let count = take(rest, 1)?[0] as usize;
    if count > MAX_ROUTE_LEN {
        return Err(RuntimeError::Malformed("route too long"));
    }
    let mut route = Vec::with_capacity(count);
    for _ in 0..count {
        let len = take(rest, 1)?[0] as usize;
        let bytes = take(rest, len)?;
        let s =
            std::str::from_utf8(bytes).map_err(|_| RuntimeError::Malformed("address not utf-8"))?;
        route.push(Address::new(s)?);
    }
    Ok(Route(route))
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if rest.len() < n {
        return Err(RuntimeError::Malformed("truncated message"));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
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
