//! Routed messages (docs/RUNTIME.md, "Routed-message wire format"): an onward route (where the message goes,
//! first hop first), a return route (how to answer) and an opaque payload.
//!
//! ```text
//! version (0x01) ‖ onward count ‖ (len ‖ address)* ‖ return count ‖ (len ‖ address)* ‖ payload (rest)
//! ```
//!
//! Counts are at most [`MAX_ROUTE_LEN`]; an address is 1..=[`MAX_ADDRESS_LEN`] bytes of UTF-8. Every transport
//! carries exactly this encoding, and so does the inside of a channel's DATA frame. Where a message came from
//! (its origin) is a local fact of whoever received it and is never encoded.

use crate::error::{Error, Result};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Wire-format version of an encoded [`RoutedMessage`].
pub const MESSAGE_VERSION: u8 = 1;
/// Most addresses a route may hold.
pub const MAX_ROUTE_LEN: usize = 32;
/// Longest address, in bytes.
pub const MAX_ADDRESS_LEN: usize = 255;

/// The name of a worker on a node (e.g. `"echo"`, `"tcp-in#3f09…"`): 1..=255 bytes of UTF-8.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(String);

impl Address {
    /// An address; fails (`DecodeError`) if it is empty or longer than [`MAX_ADDRESS_LEN`] bytes.
    pub fn new(s: impl Into<String>) -> Result<Self> {
        let s = s.into();
        if s.is_empty() || s.len() > MAX_ADDRESS_LEN {
            return Err(Error::Decode("address must be 1..=255 bytes"));
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

impl From<&Address> for Address {
    fn from(a: &Address) -> Self {
        a.clone()
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

    /// The `n`-th hop, first hop = 0.
    pub fn get(&self, n: usize) -> Option<&Address> {
        self.0.get(n)
    }

    /// Bytes this route takes on the wire.
    pub fn encoded_len(&self) -> usize {
        1 + self.0.iter().map(|a| 1 + a.0.len()).sum::<usize>()
    }

    /// Appends `count ‖ (len ‖ address)*`; fails if the route holds more than [`MAX_ROUTE_LEN`] hops.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        if self.0.len() > MAX_ROUTE_LEN {
            return Err(Error::Decode("route too long"));
        }
        out.push(self.0.len() as u8);
        for a in &self.0 {
            out.push(a.0.len() as u8);
            out.extend_from_slice(a.0.as_bytes());
        }
        Ok(())
    }

    /// Reads one route from the front of `rest`, leaving what follows it.
    pub fn decode_from(rest: &mut &[u8]) -> Result<Route> {
        let count = take(rest, 1)?[0] as usize;
        if count > MAX_ROUTE_LEN {
            return Err(Error::Decode("route too long"));
        }
        let mut route = Vec::with_capacity(count);
        for _ in 0..count {
            let len = take(rest, 1)?[0] as usize;
            let bytes = take(rest, len)?;
            let s = core::str::from_utf8(bytes).map_err(|_| Error::Decode("address not utf-8"))?;
            route.push(Address::new(s)?);
        }
        Ok(Route(route))
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

impl FromIterator<Address> for Route {
    fn from_iter<T: IntoIterator<Item = Address>>(iter: T) -> Self {
        Route(iter.into_iter().collect())
    }
}

/// A routed message as it travels: onward route, return route, payload.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RoutedMessage {
    pub onward: Route,
    pub ret: Route,
    pub payload: Vec<u8>,
}

impl fmt::Debug for RoutedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Payloads are not printed: they may be plaintext the user considers secret.
        f.debug_struct("RoutedMessage")
            .field("onward", &self.onward)
            .field("ret", &self.ret)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl RoutedMessage {
    pub fn new(onward: Route, ret: Route, payload: Vec<u8>) -> Self {
        RoutedMessage {
            onward,
            ret,
            payload,
        }
    }

    /// Bytes the encoding takes.
    pub fn encoded_len(&self) -> usize {
        1 + self.onward.encoded_len() + self.ret.encoded_len() + self.payload.len()
    }

    /// Appends `version ‖ onward ‖ return ‖ payload` to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        out.reserve(self.encoded_len());
        out.push(MESSAGE_VERSION);
        self.onward.encode_into(out)?;
        self.ret.encode_into(out)?;
        out.extend_from_slice(&self.payload);
        Ok(())
    }

    /// The encoding as a fresh vector.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Decodes a whole message; refuses an unknown version, a count above 32, an empty or non-UTF-8 address
    /// and a message that ends inside a route.
    pub fn decode(bytes: &[u8]) -> Result<RoutedMessage> {
        let (onward, ret, payload) = Self::decode_header(bytes)?;
        Ok(RoutedMessage::new(onward, ret, payload.to_vec()))
    }

    /// Decodes the routes and returns the payload as a slice of `bytes` (no copy).
    pub fn decode_header(bytes: &[u8]) -> Result<(Route, Route, &[u8])> {
        let (&version, mut rest) = bytes.split_first().ok_or(Error::Decode("empty message"))?;
        if version != MESSAGE_VERSION {
            return Err(Error::Decode("unknown message version"));
        }
        let onward = Route::decode_from(&mut rest)?;
        let ret = Route::decode_from(&mut rest)?;
        Ok((onward, ret, rest))
    }

    /// Decodes a message that owns its buffer, reusing the buffer for the payload (one move of the
    /// payload bytes, no new allocation).
    pub fn decode_vec(mut bytes: Vec<u8>) -> Result<RoutedMessage> {
        let (onward, ret, payload) = Self::decode_header(&bytes)?;
        let header = bytes.len() - payload.len();
        bytes.drain(..header);
        Ok(RoutedMessage::new(onward, ret, bytes))
    }
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if rest.len() < n {
        return Err(Error::Decode("truncated message"));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn round_trip_and_layout() {
        let m = RoutedMessage::new(
            Route::from(["tcp-out#1", "fwd:doorbell", "api"]),
            Route::from(["sc#4"]),
            b"hello".to_vec(),
        );
        let bytes = m.encode().unwrap();
        assert_eq!(bytes.len(), m.encoded_len());
        assert_eq!(&bytes[..3], &[1, 3, 9]);
        assert_eq!(RoutedMessage::decode(&bytes).unwrap(), m);
        assert_eq!(RoutedMessage::decode_vec(bytes).unwrap(), m);
    }

    #[test]
    fn rejects_garbage() {
        assert!(RoutedMessage::decode(&[]).is_err());
        assert!(RoutedMessage::decode(&[2, 0, 0]).is_err());
        assert!(RoutedMessage::decode(&[1, 1, 5, b'a']).is_err());
        assert!(RoutedMessage::decode(&[1, 200]).is_err());
        assert!(RoutedMessage::decode(&[1, 1, 2, 0xff, 0xfe, 0]).is_err());
        assert!(
            RoutedMessage::decode(&[1, 1, 0, 0]).is_err(),
            "empty address"
        );
        assert!(Address::new("").is_err());
        assert!(Address::new("x".repeat(256)).is_err());
        let long = Route::from_addresses((0..33).map(|_| Address::from("a")));
        assert!(RoutedMessage::new(long, Route::new(), vec![])
            .encode()
            .is_err());
    }
}
