//! The doorbell: the core's device behind a relay (`latchkey_core::route::device::Device`: the relay
//! channel, the registration and its refresh, the phones' channels and their re-handshakes, all sans-IO)
//! driven over the framed UART, with the echo service on top.
//!
//! Addresses on the device (docs/RUNTIME.md's vocabulary; the core's device owns them):
//! * the UART link, the first hop of everything the device sends to the host;
//! * the relay channel: an initiator session to the relay's listener `api` over the link;
//! * `relay-client#…`: the mailbox of the relay registration exchange, which takes only messages out of the
//!   relay channel;
//! * `api`: the device's channel listener. It takes handshakes only out of the relay channel (what the
//!   relay's forwarder `fwd:NAME` sends down it), never from the UART directly; each one starts a responder
//!   session trusting only the configured phones;
//! * `echo`: the service, open only to messages out of a phone channel; it answers through the channel the
//!   request came out of with `doorbell: ` + the message.

use crate::uart;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use cortex_m_semihosting::hprintln;
use latchkey_core::channel::TrustIdentifiers;
use latchkey_core::crypto::{CryptoProvider, RandomSource};
use latchkey_core::identity::{Identifier, IdentityOptions, LocalIdentity, Vaults};
use latchkey_core::route::device::{
    self as core_device, DeviceConfig, DeviceError, DeviceEvent, DeviceMessage,
};
use latchkey_core::route::Instant;
use latchkey_core::vault::SoftwareVault;
use latchkey_core::Timestamp;

const ECHO: &str = "echo";
/// The prefix of every echo reply.
pub const REPLY_PREFIX: &[u8] = b"doorbell: ";

/// Phone channels at once (handshakes in progress included).
const MAX_PHONES: usize = 4;
/// How often the registration is refreshed (the CLI relay's lease is 30 s by default).
const REFRESH_MS: u64 = 5_000;
/// Received messages waiting for the echo service at most.
const MAX_MESSAGES: usize = 8;
/// Bytes waiting for the UART at most.
const MAX_OUTPUT: usize = 64 * 1024;

/// What the device was told at boot.
pub struct Config {
    pub relay: Identifier,
    pub phones: Vec<Identifier>,
    pub name: String,
}

/// Counters the device reports (beside the core device's own).
#[derive(Default, Clone, Copy)]
pub struct Counters {
    /// Frames refused: failed authentication in a channel (a flipped bit), or did not decode.
    pub refused: u64,
    pub undecodable: u64,
    /// Echo replies sent.
    pub served: u64,
}

pub struct Device {
    inner: core_device::Device,
    deframer: uart::Deframer,
    /// The core device's count of frames that failed authentication, as last reported.
    rejected: u64,
    counters: Counters,
}

impl Device {
    /// A new identity in a software vault (its keys come from the provider's randomness), valid from
    /// `boot_unix`, and the device at time 0 of the millisecond clock.
    pub fn new(
        provider: &'static dyn CryptoProvider,
        _random: &'static dyn RandomSource,
        boot_unix: u64,
        config: Config,
    ) -> Result<Self, DeviceError> {
        let vault = Arc::new(SoftwareVault::with_provider(provider));
        let identity = LocalIdentity::create_in(
            Vaults::software(vault),
            IdentityOptions::default(),
            Timestamp(boot_unix),
        )?;
        let mut device_config = DeviceConfig::new(config.name);
        device_config.services = [ECHO.to_string()].into();
        device_config.max_phones = MAX_PHONES;
        device_config.refresh = core::time::Duration::from_millis(REFRESH_MS);
        device_config.max_messages = MAX_MESSAGES;
        device_config.max_frame = uart::MAX_FRAME;
        device_config.max_output = MAX_OUTPUT;
        let inner = core_device::Device::new(
            identity,
            provider,
            Arc::new(TrustIdentifiers::new([config.relay])),
            Arc::new(TrustIdentifiers::new(config.phones)),
            device_config,
            Instant::from_millis(0),
            Timestamp(boot_unix),
        )?;
        Ok(Device {
            inner,
            deframer: uart::Deframer::default(),
            rejected: 0,
            counters: Counters::default(),
        })
    }

    /// The UART is up: opens the channel to the relay (its first handshake message goes out on the next
    /// [`poll`](Self::poll)). Called once, from its own stack frame rather than from inside the setup's: the
    /// handshake's deepest call (signing, X25519) then does not stack on top of the identity's creation.
    #[inline(never)]
    pub fn connect(&mut self, now: Instant) -> Result<(), DeviceError> {
        self.inner.connected(now)
    }

    pub fn identifier(&self) -> Identifier {
        self.inner.identity().identifier()
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn stats(&self) -> core_device::DeviceStats {
        self.inner.stats()
    }

    /// Whether every channel has nothing unacknowledged in flight (all replies delivered).
    pub fn idle(&self) -> bool {
        self.inner.idle()
    }

    /// The earliest timer of the device.
    pub fn next_timer(&self) -> Instant {
        self.inner
            .poll_timeout()
            .unwrap_or(Instant::from_millis(u64::MAX))
    }

    /// Takes the UART's bytes, runs the timers that are due, serves the echo service, and sends what that
    /// produced.
    pub fn poll(&mut self, now: Instant) {
        let mut frames = Vec::new();
        let deframer = &mut self.deframer;
        uart::receive(|b| {
            if let Some(frame) = deframer.push(b) {
                frames.push(frame);
            }
        });
        for frame in frames {
            if let Err(e) = self.inner.handle_frame(now, &frame) {
                self.counters.undecodable += 1;
                self.counters.refused += 1;
                hprintln!(
                    "refused: a frame from the UART that does not decode ({}); refused so far: {}",
                    e,
                    self.counters.refused
                );
            }
        }
        if self.inner.poll_timeout().is_some_and(|t| t <= now) {
            self.inner.handle_timeout(now);
        }
        while let Some(request) = self.inner.poll_message() {
            self.echo(now, request);
        }
        let rejected = self.inner.stats().frames_rejected;
        if rejected > self.rejected {
            self.counters.refused += rejected - self.rejected;
            self.rejected = rejected;
            hprintln!(
                "refused: a frame on a channel failed authentication (tampered on the way); refused so far: {}",
                self.counters.refused
            );
        }
        while let Some(event) = self.inner.poll_event() {
            self.report(event);
        }
        while let Some(frame) = self.inner.poll_frame() {
            uart::send_frame(&frame);
        }
    }

    fn report(&self, event: DeviceEvent) {
        match event {
            DeviceEvent::RelayConnected { relay } => {
                hprintln!("relay: secure channel established with {}", relay)
            }
            DeviceEvent::Registered { name } => hprintln!(
                "relay: registered as \"{}\" (forwarder fwd:{} leads into this channel)",
                Printable(name.as_bytes()),
                Printable(name.as_bytes())
            ),
            DeviceEvent::RegistrationRefused { reason } => {
                hprintln!("relay: registration refused: {}", reason)
            }
            DeviceEvent::RelayLost { reason } => {
                hprintln!("relay: channel closed ({}); opening a new one", reason)
            }
            DeviceEvent::RelayRekeyed => hprintln!("relay: channel re-handshook (new keys)"),
            DeviceEvent::PhoneConnected { channel, peer } => {
                hprintln!(
                    "phone {}: secure channel established with {}",
                    channel,
                    peer
                )
            }
            DeviceEvent::PhoneRekeyed { channel } => {
                hprintln!("phone {}: channel re-handshook (new keys)", channel)
            }
            DeviceEvent::PhoneClosed { channel, reason } => {
                hprintln!("phone {}: channel closed: {}", channel, reason)
            }
            _ => {}
        }
    }

    /// The echo service: answers through the channel the request came out of, along its return route.
    fn echo(&mut self, now: Instant, request: DeviceMessage) {
        let mut reply = Vec::with_capacity(REPLY_PREFIX.len() + request.payload().len());
        reply.extend_from_slice(REPLY_PREFIX);
        reply.extend_from_slice(request.payload());
        hprintln!(
            "echo: {} B from {}: \"{}\"",
            request.payload().len(),
            request.peer_identifier(),
            Printable(request.payload())
        );
        match self.inner.reply(now, &request, &reply) {
            Ok(()) => self.counters.served += 1,
            Err(e) => hprintln!("echo: reply not sent: {}", e),
        }
    }
}

/// Bytes from a peer, for the log: printable ASCII as is, anything else (and `"`, `\\`) as `\xNN`, so that
/// a peer cannot write lines of its own into the device's report. (Cheaper in flash than `{:?}` of a
/// string, which brings in Unicode's escaping tables.)
pub struct Printable<'a>(pub &'a [u8]);

impl core::fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use core::fmt::Write as _;
        for &b in self.0 {
            if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
                f.write_char(char::from(b))?;
            } else {
                write!(f, "\\x{:02x}", b)?;
            }
        }
        Ok(())
    }
}

/// Hex of an identifier-sized seed (`seed=` on the command line).
pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
