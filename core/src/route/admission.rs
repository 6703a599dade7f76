//! Admission of first messages at a listener (docs/RUNTIME.md, "Floods: admission of first messages"),
//! after WireGuard's cookie reply under load and QUIC's address validation (RFC 9000 §8.1).
//!
//! A responder spends two X25519 operations and keeps state for up to `handshake_timeout` for every message
//! 1 it answers, and message 1 is unauthenticated by design. [`Admission`] decides, before any of that, what
//! a listener does with a message 1:
//!
//! * **Caps.** At most [`AdmissionConfig::max_pending`] handshakes in progress, and at most
//!   [`AdmissionConfig::per_source_pending`] from one source (a TCP connection, a UDP sender's IP address).
//! * **Per-source rate limit.** A token bucket per source: [`AdmissionConfig::per_source_rate`] first
//!   messages a second, bursts of [`AdmissionConfig::per_source_burst`]. Over the limit: dropped unanswered.
//! * **Stateless address validation.** Over a datagram transport always (the sender's address is
//!   unproven), and on any path once [`AdmissionConfig::cookie_threshold`] handshakes are in progress (under
//!   load), a message 1 without a valid cookie is answered with a **cookie reply** (`0x05 ‖ cookie`), which
//!   is smaller than the message it answers and costs one HMAC, and nothing is kept. The initiator sends
//!   message 1 again as `0x06 ‖ cookie ‖ Noise message 1`. The cookie is a MAC, under a key only this
//!   listener holds and of the current two-minute period, of the path the message came on and the
//!   initiator's decryptor, so only a sender that receives at that path can present it.
//!
//! Over UDP a sender whose address is not validated therefore draws at most a reply smaller than what it
//! sent (QUIC allows 3×), and a flood of junk first messages that do not answer cookies holds no handshake
//! state beyond `cookie_threshold`.

use super::{millis, Arrival, Instant, KIND_HANDSHAKE};
use crate::crypto::{CryptoProvider, Secret32};
use crate::wire::{Address, Route, RoutedMessage};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::time::Duration;

/// First byte of a channel payload on the route: a cookie reply to message 1 (the 16-byte cookie follows).
pub const KIND_COOKIE: u8 = 5;
/// First byte of a channel payload on the route: message 1 with a cookie (`0x06 ‖ cookie ‖ Noise message 1`).
pub const KIND_HANDSHAKE_WITH_COOKIE: u8 = 6;
/// Bytes in a cookie.
pub const COOKIE_LEN: usize = 16;
/// A cookie.
pub type Cookie = [u8; COOKIE_LEN];
/// HMAC label of a cookie (keyed with the listener's cookie key).
pub const COOKIE_LABEL: &[u8] = b"latchkey cookie v1";
/// A cookie is valid in the period it was made and the next one.
pub const COOKIE_PERIOD: Duration = Duration::from_secs(120);

/// The listener's limits (defaults in [`AdmissionConfig::default`]; docs/SECURITY.md lists them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Handshakes in progress at once.
    pub max_pending: usize,
    /// From this many handshakes in progress on, every message 1 needs a cookie.
    pub cookie_threshold: usize,
    /// Handshakes in progress from one source.
    pub per_source_pending: usize,
    /// First messages a second from one source (sustained), and the burst allowed.
    pub per_source_rate: u32,
    pub per_source_burst: u32,
    /// Sources remembered for rate limiting; beyond, every message 1 needs a cookie until some are forgotten.
    pub max_sources: usize,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            max_pending: 256,
            cookie_threshold: 64,
            per_source_pending: 4,
            per_source_rate: 20,
            per_source_burst: 20,
            max_sources: 4096,
        }
    }
}

/// What to do with a message 1 (see [`Admission::admit`]).
#[derive(Debug)]
pub enum Admit {
    /// Start a responder for `message` (its payload is `0x01 ‖ Noise message 1`, any cookie removed), and
    /// call [`Admission::finished`] with `ticket` when that handshake ends, whatever the outcome.
    Start {
        message: RoutedMessage,
        ticket: Ticket,
    },
    /// Send this cookie reply (onward = message 1's return route, return route empty) and keep nothing.
    Answer(RoutedMessage),
    /// Drop the message unanswered.
    Drop(&'static str),
}

/// A handshake slot held by one source; give it back with [`Admission::finished`].
#[derive(Debug, PartialEq, Eq)]
pub struct Ticket(Option<Vec<u8>>);

#[derive(Debug)]
struct Source {
    pending: usize,
    /// Thousandths of a first message.
    tokens: u64,
    last: Instant,
}

/// A listener's admission state: counts, per-source buckets and the cookie key.
pub struct Admission {
    config: AdmissionConfig,
    key: Secret32,
    pending: usize,
    sources: BTreeMap<Vec<u8>, Source>,
    cookies_sent: u64,
}

impl core::fmt::Debug for Admission {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Admission")
            .field("pending", &self.pending)
            .field("sources", &self.sources.len())
            .field("cookies_sent", &self.cookies_sent)
            .finish_non_exhaustive()
    }
}

/// The cookie of `(path, initiator)` in `period`: `HMAC-SHA256(key, COOKIE_LABEL ‖ period (u64 BE) ‖
/// len(hop) ‖ hop ‖ len(remote) ‖ remote ‖ len(initiator) ‖ initiator)[..16]`, where `hop` and `remote` are
/// the arrival's (empty when absent) and `initiator` is the last hop of message 1's return route.
pub fn cookie(
    provider: &dyn CryptoProvider,
    key: &[u8; 32],
    period: u64,
    arrival: &Arrival,
    initiator: &Address,
) -> Cookie {
    let hop = arrival
        .hop
        .as_ref()
        .map_or(&b""[..], |a| a.as_str().as_bytes());
    let remote = arrival
        .remote
        .as_ref()
        .map_or(&b""[..], |a| a.as_str().as_bytes());
    let initiator = initiator.as_str().as_bytes();
    let len = |b: &[u8]| [u8::try_from(b.len()).unwrap_or(u8::MAX)];
    let mac = provider.hmac_sha256(
        key,
        &[
            COOKIE_LABEL,
            &period.to_be_bytes(),
            &len(hop),
            hop,
            &len(remote),
            remote,
            &len(initiator),
            initiator,
        ],
    );
    let mut c = [0u8; COOKIE_LEN];
    c.copy_from_slice(&mac[..COOKIE_LEN]);
    c
}

/// The cookie period of `now`.
pub fn period(now: Instant) -> u64 {
    now.as_millis() / millis(COOKIE_PERIOD)
}

/// The cookie reply to `m1`: onward = its return route, return route empty, payload `0x05 ‖ cookie`.
pub fn cookie_reply(m1: &RoutedMessage, cookie: &Cookie) -> RoutedMessage {
    let mut payload = Vec::with_capacity(1 + COOKIE_LEN);
    payload.push(KIND_COOKIE);
    payload.extend_from_slice(cookie);
    RoutedMessage::new(m1.ret.clone(), Route::default(), payload)
}

/// The cookie of a cookie reply payload (exactly 17 bytes, kind `0x05`).
pub fn parse_cookie_reply(payload: &[u8]) -> Option<Cookie> {
    if payload.len() != 1 + COOKIE_LEN || payload[0] != KIND_COOKIE {
        return None;
    }
    payload[1..].try_into().ok()
}

/// Message 1's payload with a cookie: `0x06 ‖ cookie ‖ noise`.
pub fn with_cookie(cookie: &Cookie, noise: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + COOKIE_LEN + noise.len());
    v.push(KIND_HANDSHAKE_WITH_COOKIE);
    v.extend_from_slice(cookie);
    v.extend_from_slice(noise);
    v
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Admission {
    /// A listener's admission with a fresh 32-byte secret `key` (random; it never leaves the listener).
    pub fn new(config: AdmissionConfig, key: [u8; 32]) -> Self {
        Admission {
            config,
            key: Secret32::new(key),
            pending: 0,
            sources: BTreeMap::new(),
            cookies_sent: 0,
        }
    }

    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    /// Handshakes in progress.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Cookie replies sent so far.
    pub fn cookies_sent(&self) -> u64 {
        self.cookies_sent
    }

    /// The source a message came from, for limits: the datagram sender's IP address, or the connection
    /// (or channel) it arrived on; `None` for the node's own senders, which are not limited.
    fn source(arrival: &Arrival) -> Option<Vec<u8>> {
        let hop = arrival.hop.as_ref()?;
        let mut key = Vec::new();
        match &arrival.remote {
            Some(remote) => {
                key.push(b'd');
                let s = remote.as_str();
                match s.parse::<core::net::SocketAddr>() {
                    Ok(sa) => key.extend_from_slice(alloc::format!("{}", sa.ip()).as_bytes()),
                    Err(_) => key.extend_from_slice(s.as_bytes()),
                }
            }
            None => {
                key.push(b'c');
                key.extend_from_slice(hop.as_str().as_bytes());
            }
        }
        Some(key)
    }

    /// Decides what to do with `m1`, a message whose payload starts with `0x01` or `0x06`, as it arrived.
    /// `limit_source`: apply the per-source limits (false for messages out of an authenticated channel,
    /// e.g. everything a relay forwards, which would otherwise share one source).
    pub fn admit(
        &mut self,
        provider: &dyn CryptoProvider,
        now: Instant,
        m1: &RoutedMessage,
        arrival: &Arrival,
        limit_source: bool,
    ) -> Admit {
        let (cookie_given, noise) = match m1.payload.first() {
            Some(&KIND_HANDSHAKE) => (None, &m1.payload[1..]),
            Some(&KIND_HANDSHAKE_WITH_COOKIE) if m1.payload.len() > COOKIE_LEN => (
                Some(&m1.payload[1..1 + COOKIE_LEN]),
                &m1.payload[1 + COOKIE_LEN..],
            ),
            _ => return Admit::Drop("not a first message"),
        };
        let Some(initiator) = m1.ret.last() else {
            return Admit::Drop("empty return route");
        };
        let source = if limit_source {
            Self::source(arrival)
        } else {
            None
        };
        // The rate limit comes first: it bounds even the cookie replies.
        if let Some(key) = &source {
            if !self.take_token(key, now) {
                return Admit::Drop("source over its rate limit");
            }
        }
        let valid = cookie_given.is_some_and(|given| {
            let p = period(now);
            [p, p.wrapping_sub(1)].iter().any(|&p| {
                let expected = cookie(provider, self.key.expose(), p, arrival, initiator);
                constant_time_eq(given, &expected)
            })
        });
        let must_validate = arrival.remote.is_some()
            || self.pending >= self.config.cookie_threshold
            || self.sources.len() > self.config.max_sources;
        if must_validate && !valid {
            // Never larger than what it answers: a message 1 is at least 1 + 32 bytes of payload plus
            // routes, the reply 17 bytes plus the same return route as onward route.
            let c = cookie(provider, self.key.expose(), period(now), arrival, initiator);
            self.cookies_sent += 1;
            return Admit::Answer(cookie_reply(m1, &c));
        }
        if self.pending >= self.config.max_pending {
            return Admit::Drop("listener at its cap of handshakes in progress");
        }
        if let Some(key) = &source {
            let s = self.sources.get_mut(key).expect("created by take_token");
            if s.pending >= self.config.per_source_pending {
                return Admit::Drop("source at its cap of handshakes in progress");
            }
            s.pending += 1;
        }
        self.pending += 1;
        let mut payload = Vec::with_capacity(1 + noise.len());
        payload.push(KIND_HANDSHAKE);
        payload.extend_from_slice(noise);
        Admit::Start {
            message: RoutedMessage::new(m1.onward.clone(), m1.ret.clone(), payload),
            ticket: Ticket(source),
        }
    }

    /// Gives back the slot of a handshake that ended (completed, failed or timed out).
    pub fn finished(&mut self, ticket: Ticket) {
        self.pending = self.pending.saturating_sub(1);
        if let Some(key) = ticket.0 {
            if let Some(s) = self.sources.get_mut(&key) {
                s.pending = s.pending.saturating_sub(1);
            }
        }
    }

    fn take_token(&mut self, key: &[u8], now: Instant) -> bool {
        let rate = u64::from(self.config.per_source_rate);
        let full = u64::from(self.config.per_source_burst) * 1000;
        if !self.sources.contains_key(key) {
            if self.sources.len() >= self.config.max_sources {
                self.forget_idle(now);
            }
            self.sources.insert(
                key.to_vec(),
                Source {
                    pending: 0,
                    tokens: full,
                    last: now,
                },
            );
        }
        let s = self.sources.get_mut(key).expect("inserted above");
        let elapsed = now.as_millis().saturating_sub(s.last.as_millis());
        s.tokens = (s.tokens + elapsed.saturating_mul(rate)).min(full);
        s.last = s.last.max(now);
        if s.tokens < 1000 {
            return false;
        }
        s.tokens -= 1000;
        true
    }

    /// Forgets sources with nothing in progress whose bucket has refilled.
    fn forget_idle(&mut self, now: Instant) {
        let rate = u64::from(self.config.per_source_rate).max(1);
        let full = u64::from(self.config.per_source_burst) * 1000;
        self.sources.retain(|_, s| {
            let elapsed = now.as_millis().saturating_sub(s.last.as_millis());
            s.pending > 0 || s.tokens + elapsed.saturating_mul(rate) < full
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::default_provider;

    fn m1(payload: Vec<u8>) -> RoutedMessage {
        RoutedMessage::new(
            Route::from_addresses([Address::from("api")]),
            Route::from_addresses([Address::from("tcp-in#1"), Address::from("sc-dec#i")]),
            payload,
        )
    }

    fn handshake() -> Vec<u8> {
        let mut v = alloc::vec![KIND_HANDSHAKE];
        v.extend_from_slice(&[7u8; 32]);
        v
    }

    #[test]
    fn caps_rates_and_cookies() {
        let p = default_provider();
        let config = AdmissionConfig {
            max_pending: 8,
            cookie_threshold: 6,
            per_source_pending: 2,
            per_source_rate: 1,
            per_source_burst: 3,
            max_sources: 16,
        };
        let mut a = Admission::new(config, [1u8; 32]);
        let now = Instant::from_millis(1_000_000);
        let via = |c: &str| Arrival::via(Address::from(c));
        let m = m1(handshake());
        // Two per source, then dropped; the third message of the burst is still counted.
        let t1 = match a.admit(p, now, &m, &via("tcp-in#1"), true) {
            Admit::Start { ticket, message } => {
                assert_eq!(message.payload, handshake());
                ticket
            }
            other => panic!("{other:?}"),
        };
        assert!(matches!(
            a.admit(p, now, &m, &via("tcp-in#1"), true),
            Admit::Start { .. }
        ));
        assert!(matches!(
            a.admit(p, now, &m, &via("tcp-in#1"), true),
            Admit::Drop(_)
        ));
        // Out of tokens until a second has passed.
        a.finished(t1);
        assert!(matches!(
            a.admit(p, now, &m, &via("tcp-in#1"), true),
            Admit::Drop("source over its rate limit")
        ));
        assert!(matches!(
            a.admit(p, now + Duration::from_secs(1), &m, &via("tcp-in#1"), true),
            Admit::Start { .. }
        ));
        // Load: 4 in progress; two more sources take 6, then cookies are required.
        for c in ["tcp-in#2", "tcp-in#3"] {
            assert!(matches!(
                a.admit(p, now, &m, &via(c), true),
                Admit::Start { .. }
            ));
        }
        assert_eq!(a.pending(), 4);
        assert!(matches!(
            a.admit(p, now, &m, &via("tcp-in#2"), true),
            Admit::Start { .. }
        ));
        assert!(matches!(
            a.admit(p, now, &m, &via("tcp-in#3"), true),
            Admit::Start { .. }
        ));
        let reply = match a.admit(p, now, &m, &via("tcp-in#4"), true) {
            Admit::Answer(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(reply.onward, m.ret);
        assert!(reply.ret.is_empty());
        assert!(reply.encode().unwrap().len() < m.encode().unwrap().len());
        let c = parse_cookie_reply(&reply.payload).unwrap();
        // The cookie works on its path only, in this period and the next.
        let with = m1(with_cookie(&c, &handshake()[1..]));
        assert!(matches!(
            a.admit(p, now, &with, &via("tcp-in#5"), true),
            Admit::Answer(_)
        ));
        let later = now + COOKIE_PERIOD;
        match a.admit(p, later, &with, &via("tcp-in#4"), true) {
            Admit::Start { message, .. } => assert_eq!(message.payload, handshake()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            a.admit(p, later + COOKIE_PERIOD, &with, &via("tcp-in#4"), true),
            Admit::Answer(_)
        ));
    }

    #[test]
    fn datagrams_always_need_a_cookie_and_the_reply_is_smaller() {
        let p = default_provider();
        let mut a = Admission::new(AdmissionConfig::default(), [2u8; 32]);
        let now = Instant::from_millis(5);
        let arrival = Arrival::datagram(Address::from("udp#1"), Address::from("192.0.2.1:4000"));
        let m = RoutedMessage::new(
            Route::from_addresses([Address::from("api")]),
            Route::from_addresses([
                Address::from("udp#1"),
                Address::from("192.0.2.1:4000"),
                Address::from("sc-dec#i"),
            ]),
            handshake(),
        );
        let Admit::Answer(reply) = a.admit(p, now, &m, &arrival, true) else {
            panic!("a datagram's first message was answered without validation");
        };
        let c = parse_cookie_reply(&reply.payload).unwrap();
        let with = RoutedMessage::new(
            m.onward.clone(),
            m.ret.clone(),
            with_cookie(&c, &handshake()[1..]),
        );
        assert!(matches!(
            a.admit(p, now, &with, &arrival, true),
            Admit::Start { .. }
        ));
        // Another sender address cannot use it.
        let other = Arrival::datagram(Address::from("udp#1"), Address::from("192.0.2.2:4000"));
        assert!(matches!(
            a.admit(p, now, &with, &other, true),
            Admit::Answer(_)
        ));
    }
}
