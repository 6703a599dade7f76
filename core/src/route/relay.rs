//! Relay registration (docs/RUNTIME.md, "Relays"): the messages a registrant and a relay exchange through a
//! secure channel, and the relay's checks, without I/O.
//!
//! The request travels through the registrant's channel to the relay's registration service: onward
//! `[service]`, return route `[reply mailbox]` (a single hop), payload = the name (1..=200 bytes of UTF-8).
//! The relay answers along the request's return route with one of the ASCII replies of [`Reply`].

use crate::wire::{Address, Route, RoutedMessage};
use alloc::format;
use alloc::string::String;

/// Longest relay name, in bytes.
pub const MAX_NAME_LEN: usize = 200;
/// Most names one relay serves by default.
pub const MAX_RELAY_NAMES: usize = 10_000;
/// Most names one identity may hold at a relay by default.
pub const MAX_NAMES_PER_IDENTITY: usize = 8;
/// The prefix of a forwarder's address: `fwd:<name>`.
pub const FORWARDER_PREFIX: &str = "fwd:";

/// The registration service's answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reply {
    /// Registered, or refreshed.
    Ok,
    /// The payload is not UTF-8 or not 1..=200 bytes.
    BadName,
    /// Not out of a secure channel, or the allow list does not give this identity this name.
    Denied,
    /// The return route has fewer than two hops at the relay, or does not start at the channel it came out of.
    BadRoute,
    /// The name is live and belongs to another identity.
    Taken,
    /// A new name, and this identity already holds its quota.
    Quota,
    /// A new name, and the relay is full.
    Full,
}

impl Reply {
    /// The bytes on the wire.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Reply::Ok => b"ok",
            Reply::BadName => b"bad-name",
            Reply::Denied => b"denied",
            Reply::BadRoute => b"bad-route",
            Reply::Taken => b"taken",
            Reply::Quota => b"quota",
            Reply::Full => b"full",
        }
    }

    /// Every reply, in the order the relay checks for them.
    pub const ALL: [Reply; 7] = [
        Reply::Denied,
        Reply::BadName,
        Reply::BadRoute,
        Reply::Taken,
        Reply::Quota,
        Reply::Full,
        Reply::Ok,
    ];

    pub fn parse(bytes: &[u8]) -> Option<Reply> {
        Reply::ALL.into_iter().find(|r| r.as_bytes() == bytes)
    }

    /// What a registrant tells its user for anything but `ok` (`None` for `ok`).
    pub fn explain(bytes: &[u8], name: &str) -> Option<String> {
        Some(match Reply::parse(bytes) {
            Some(Reply::Ok) => return None,
            Some(Reply::Taken) => format!("the relay name {name:?} belongs to another identity"),
            Some(Reply::Quota) => {
                "this identity already holds as many relay names as the relay allows".into()
            }
            Some(Reply::Full) => "the relay serves as many names as it can".into(),
            Some(Reply::Denied) => format!("this identity may not register {name:?} at the relay"),
            Some(Reply::BadName) => {
                format!("{name:?} is not a valid relay name (1..=200 bytes of UTF-8)")
            }
            Some(Reply::BadRoute) => {
                "the registration's return route does not lead back into its channel".into()
            }
            None => format!(
                "relay did not accept the registration ({:?})",
                String::from_utf8_lossy(bytes)
            ),
        })
    }
}

/// The reason in the refusal a relay sends for a handshake to a name it does not serve.
pub const NO_SUCH_NAME: &str = "no such relay name";

/// What a relay answers when message 1 of a handshake (`message`, as it arrived, from a transport or out
/// of a channel) is addressed to a forwarder `fwd:NAME` that does not exist: a `0x03` refusal with reason
/// [`NO_SUCH_NAME`] back along the message's return route (onward = that route, return route empty), so
/// the initiator fails at once instead of at its handshake deadline. Only for handshake messages (kind
/// `0x01`) with a return route, and never longer than the message that caused it. The initiator takes it
/// only back along its first hop, i.e. from the relay on its own connection.
pub fn unknown_name_refusal(message: &RoutedMessage) -> Option<RoutedMessage> {
    let first = message.onward.first()?;
    let refusal = [&[super::KIND_REFUSED][..], NO_SUCH_NAME.as_bytes()].concat();
    if !first.as_str().starts_with(FORWARDER_PREFIX)
        || message.payload.first() != Some(&super::KIND_HANDSHAKE)
        || message.payload.len() <= refusal.len()
        || message.ret.is_empty()
    {
        return None;
    }
    Some(RoutedMessage::new(
        message.ret.clone(),
        Route::new(),
        refusal,
    ))
}

/// The forwarder address for a registered name.
pub fn forwarder_address(name: &str) -> crate::Result<Address> {
    Address::new(format!("{FORWARDER_PREFIX}{name}"))
}

/// Checks a name: 1..=200 bytes of UTF-8.
pub fn parse_name(payload: &[u8]) -> Result<&str, Reply> {
    match core::str::from_utf8(payload) {
        Ok(n) if !n.is_empty() && n.len() <= MAX_NAME_LEN => Ok(n),
        _ => Err(Reply::BadName),
    }
}

/// The request a registrant sends into its channel to the relay: onward `[service]`, return route
/// `[reply_to]` (one hop), payload = the name.
pub fn request(service: Address, reply_to: Address, name: &str) -> Result<RoutedMessage, Reply> {
    parse_name(name.as_bytes())?;
    Ok(RoutedMessage::new(
        Route::from_addresses([service]),
        Route::from_addresses([reply_to]),
        name.as_bytes().to_vec(),
    ))
}

/// The relay's route check: the request's return route, as it arrived out of the registrant's channel (whose
/// encryptor at the relay is `channel`), must start at that channel and hold the registrant's address after
/// it. Returns the forwarder's route: the return route minus its last hop.
pub fn forwarder_route(ret: &Route, channel: Option<&Address>) -> Result<Route, Reply> {
    if ret.len() < 2 || channel.is_none() || ret.first() != channel {
        return Err(Reply::BadRoute);
    }
    Ok(ret.without_last())
}

/// The relay's answer to a request, as a message along the request's return route (onward = that route,
/// return route empty).
pub fn answer(request_ret: &Route, reply: Reply) -> RoutedMessage {
    RoutedMessage::new(request_ret.clone(), Route::new(), reply.as_bytes().to_vec())
}

/// The onward route of a message that arrives at a forwarder `[fwd:NAME, rest…]`: the forwarder's route
/// followed by `rest…`.
pub fn forward(onward: &Route, forwarder_route: &Route) -> Route {
    let mut rest = onward.clone();
    rest.pop_front();
    forwarder_route.clone().concat(&rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_round_trip_and_routes_are_checked() {
        for r in Reply::ALL {
            assert_eq!(Reply::parse(r.as_bytes()), Some(r));
        }
        assert_eq!(Reply::parse(b"nope"), None);
        assert_eq!(parse_name(b""), Err(Reply::BadName));
        assert_eq!(parse_name(&[b'a'; 201]), Err(Reply::BadName));
        assert_eq!(parse_name(&[0xff]), Err(Reply::BadName));
        let enc: Address = "sc-enc#c".into();
        let ok = Route::from(["sc-enc#c", "relay-client#1"]);
        assert_eq!(
            forwarder_route(&ok, Some(&enc)),
            Ok(Route::from(["sc-enc#c"]))
        );
        assert_eq!(
            forwarder_route(&Route::from(["sc-enc#c"]), Some(&enc)),
            Err(Reply::BadRoute)
        );
        assert_eq!(
            forwarder_route(&Route::from(["tcp-in#x", "a"]), Some(&enc)),
            Err(Reply::BadRoute)
        );
        assert_eq!(forwarder_route(&ok, None), Err(Reply::BadRoute));
        assert_eq!(
            forward(
                &Route::from(["fwd:doorbell", "api"]),
                &Route::from(["sc-enc#c"])
            ),
            Route::from(["sc-enc#c", "api"])
        );
    }
}
