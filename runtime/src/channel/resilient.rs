//! A channel that reopens itself: [`ResilientChannel`] keeps the route, identity and options of a channel
//! it initiated and re-handshakes when the current channel has closed (reset by the peer's node after a
//! restart, failed by its delivery deadline, closed by the peer), with a backoff between failed attempts.
//! Portal inlets and relay registrations use it to recover without anyone restarting anything.

use super::{create_channel, ChannelHandle, ChannelOptions};
use crate::error::{Result, RuntimeError};
use crate::identity::LocalIdentity;
use crate::message::Route;
use crate::node::Node;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// First delay after a failed re-handshake; it doubles up to [`MAX_REOPEN_DELAY`].
pub const REOPEN_DELAY: Duration = Duration::from_millis(100);
/// Longest delay between re-handshakes.
pub const MAX_REOPEN_DELAY: Duration = Duration::from_secs(5);

struct State {
    current: Option<ChannelHandle>,
    /// Bumped for every channel opened, so users can tell a new channel from the one they set up.
    generation: u64,
    /// No new attempt before this time (after a failed one).
    not_before: Option<Instant>,
    delay: Duration,
    last_error: Option<String>,
}

struct Inner {
    node: Node,
    identity: LocalIdentity,
    route: Route,
    options: ChannelOptions,
    state: tokio::sync::Mutex<State>,
}

/// An initiator's channel that re-handshakes on its own when it closes. Cheap to clone.
#[derive(Clone)]
pub struct ResilientChannel {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ResilientChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResilientChannel")
            .field("route", &self.inner.route)
            .finish_non_exhaustive()
    }
}

impl ResilientChannel {
    /// Opens the first channel to the listener at the end of `route` (it must succeed: a wrong address or
    /// an untrusted peer is an error here, not a retry loop).
    pub async fn open(
        node: &Node,
        identity: &LocalIdentity,
        route: Route,
        options: ChannelOptions,
    ) -> Result<Self> {
        let first = create_channel(node, identity, route.clone(), options.clone()).await?;
        Ok(ResilientChannel {
            inner: Arc::new(Inner {
                node: node.clone(),
                identity: identity.clone(),
                route,
                options,
                state: tokio::sync::Mutex::new(State {
                    current: Some(first),
                    generation: 1,
                    not_before: None,
                    delay: REOPEN_DELAY,
                    last_error: None,
                }),
            }),
        })
    }

    /// The route the channel is opened over.
    pub fn route(&self) -> &Route {
        &self.inner.route
    }

    /// The current channel if it is open (it may still turn out to be stale: a channel learns that its
    /// peer's node restarted only when it next sends).
    pub async fn current(&self) -> Option<ChannelHandle> {
        let state = self.inner.state.lock().await;
        state.current.clone().filter(|c| !c.is_closed())
    }

    /// The current channel and its generation (1 for the first channel, +1 per re-handshake). If it has
    /// closed, re-handshakes first — at once after a working channel closed, else not before the backoff
    /// (100 ms doubling to 5 s) since the last failed attempt, failing fast with the last error meanwhile.
    pub async fn channel_with_generation(&self) -> Result<(ChannelHandle, u64)> {
        let mut state = self.inner.state.lock().await;
        if let Some(c) = state.current.as_ref().filter(|c| !c.is_closed()) {
            return Ok((c.clone(), state.generation));
        }
        if let Some(closed) = state.current.take() {
            tracing::info!(
                "secure channel to {}: {}; opening a new one",
                closed.peer(),
                closed
                    .close_reason()
                    .unwrap_or_else(|| "closed".to_string())
            );
        }
        if let Some(at) = state.not_before {
            if Instant::now() < at {
                return Err(RuntimeError::Refused(format!(
                    "secure channel unavailable (last attempt: {})",
                    state.last_error.as_deref().unwrap_or("failed")
                )));
            }
        }
        let i = &self.inner;
        match create_channel(&i.node, &i.identity, i.route.clone(), i.options.clone()).await {
            Ok(c) => {
                tracing::info!("secure channel to {} reopened", c.peer());
                state.current = Some(c.clone());
                state.generation += 1;
                state.not_before = None;
                state.delay = REOPEN_DELAY;
                state.last_error = None;
                Ok((c, state.generation))
            }
            Err(e) => {
                tracing::warn!(
                    "secure channel over {:?}: reopening failed ({e}); next attempt in {:?}",
                    i.route,
                    state.delay
                );
                state.not_before = Some(Instant::now() + state.delay);
                state.delay = (state.delay * 2).min(MAX_REOPEN_DELAY);
                state.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// The current channel, reopened first if it has closed (see
    /// [`ResilientChannel::channel_with_generation`]).
    pub async fn channel(&self) -> Result<ChannelHandle> {
        self.channel_with_generation().await.map(|(c, _)| c)
    }

    /// Waits until the backoff after a failed attempt has passed (returns at once otherwise).
    pub async fn backoff(&self) {
        let at = self.inner.state.lock().await.not_before;
        if let Some(at) = at {
            tokio::time::sleep_until(at).await;
        }
    }

    /// Closes the current channel (a later [`ResilientChannel::channel`] opens a new one).
    pub async fn close(&self) {
        let current = self.inner.state.lock().await.current.clone();
        if let Some(c) = current {
            c.close().await;
        }
    }
}
