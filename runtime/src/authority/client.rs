//! The member side: enroll with a token, refresh a credential, and follow an authority's revocations, all
//! through a secure channel to the authority (whose identifier the caller trusts, e.g. from the token).

use super::enforce::Membership;
use super::service::{
    credential_answer, decode_revocations, EnrollmentToken, ENROLL, REFRESH, SUBSCRIBE,
};
use crate::channel::ChannelHandle;
use crate::error::{Result, RuntimeError};
use crate::flow::Accepts;
use crate::message::{Address, Message, Route};
use crate::node::Node;
use latchkey_core::credential::Credential;
use latchkey_core::identity::ChangeHistory;
use std::sync::Arc;
use std::time::Duration;

/// How long a client waits for the authority's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

async fn call(
    node: &Node,
    channel: &ChannelHandle,
    service: &Address,
    payload: Vec<u8>,
) -> Result<Vec<u8>> {
    let accepts = Accepts::flow(channel.flow()).from_peers([channel.peer()]);
    let mut inbox = node.register_with(node.unique_address("authority-client"), 4, accepts)?;
    let me = inbox.address().clone();
    let result = async {
        node.send_as(
            &me,
            Message::new(
                channel.route_to(service.clone()),
                Route::from_addresses([me.clone()]),
                payload,
            ),
        )
        .await?;
        match tokio::time::timeout(ANSWER_TIMEOUT, inbox.recv()).await {
            Ok(Some(reply)) => Ok(reply.payload),
            Ok(None) => Err(RuntimeError::ChannelClosed),
            Err(_) => Err(RuntimeError::Timeout("the authority's answer")),
        }
    }
    .await;
    node.unregister(&me);
    result
}

/// Enrolls through `channel` (to the authority named by `token`) with `history` (the caller's own): returns
/// the membership credential.
pub async fn enroll(
    node: &Node,
    channel: &ChannelHandle,
    service: &Address,
    token: &EnrollmentToken,
    history: &ChangeHistory,
) -> Result<Credential> {
    if channel.peer() != token.authority {
        return Err(RuntimeError::Untrusted(channel.peer()));
    }
    let mut p = zeroize::Zeroizing::new(vec![ENROLL]);
    p.extend_from_slice(&token.secret[..]);
    p.extend_from_slice(&history.export());
    credential_answer(&call(node, channel, service, p.to_vec()).await?)
}

/// A fresh credential for this member (before the current one expires, or after a key rotation).
pub async fn refresh(
    node: &Node,
    channel: &ChannelHandle,
    service: &Address,
    history: &ChangeHistory,
) -> Result<Credential> {
    let mut p = vec![REFRESH];
    p.extend_from_slice(&history.export());
    credential_answer(&call(node, channel, service, p).await?)
}

/// Subscribes `membership` to the authority's revocations through `channel`: installs the current state,
/// then every pushed one (closing revoked live channels), until the channel closes. Returns after the first
/// state is installed.
pub async fn follow_revocations(
    node: &Node,
    channel: &ChannelHandle,
    service: &Address,
    membership: Arc<Membership>,
) -> Result<()> {
    let accepts = Accepts::flow(channel.flow()).from_peers([channel.peer()]);
    let mut inbox = node.register_with(node.unique_address("revocations"), 16, accepts)?;
    let me = inbox.address().clone();
    node.send_as(
        &me,
        Message::new(
            channel.route_to(service.clone()),
            Route::from_addresses([me.clone()]),
            vec![SUBSCRIBE],
        ),
    )
    .await?;
    let first = match tokio::time::timeout(ANSWER_TIMEOUT, inbox.recv()).await {
        Ok(Some(m)) => m,
        Ok(None) => return Err(RuntimeError::ChannelClosed),
        Err(_) => return Err(RuntimeError::Timeout("the authority's revocations")),
    };
    membership
        .apply_revocations(&decode_revocations(&first.payload)?)
        .await;
    let channel = channel.clone();
    let node = node.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                m = inbox.recv() => match m {
                    Some(m) => match decode_revocations(&m.payload) {
                        Ok(state) => { membership.apply_revocations(&state).await; }
                        Err(e) => tracing::warn!("revocations from {}: {e}", channel.peer()),
                    },
                    None => break,
                },
                _ = channel.closed() => break,
            }
        }
        node.unregister(&me);
    });
    Ok(())
}
