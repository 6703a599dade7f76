//! The member side: enroll with a token, refresh a credential, and follow an authority's revocations, all
//! through a secure channel to the authority (whose identifier the caller trusts, e.g. from the token).

use super::enforce::Membership;
use super::service::{accepted, credential_answer, decode_revocations, EnrollmentToken};
use crate::channel::ChannelHandle;
use crate::error::{Result, RuntimeError};
use crate::flow::Accepts;
use crate::message::{Address, Message, Route};
use crate::node::Node;
use latchkey_core::credential::Credential;
use latchkey_core::identity::ChangeHistory;
use latchkey_core::wire::authority::{
    AuthorityAnswer, AuthorityRequest, EnrollServiceRequest, EnrollmentEnvelope,
};
use latchkey_core::wire::{Decode, Encode};
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
    let mut secret = zeroize::Zeroizing::new([0u8; latchkey_core::enroll::TOKEN_SECRET_LEN]);
    secret.copy_from_slice(token.secret());
    let request = AuthorityRequest::Enroll {
        token_id: token.id,
        secret,
        history: history.clone(),
    };
    // The payload holds the token secret: wiped once sent.
    let payload = zeroize::Zeroizing::new(request.to_bytes());
    credential_answer(&call(node, channel, service, payload.to_vec()).await?)
}

/// A fresh credential for this member (before the current one expires, or after a key rotation).
pub async fn refresh(
    node: &Node,
    channel: &ChannelHandle,
    service: &Address,
    history: &ChangeHistory,
) -> Result<Credential> {
    let request = AuthorityRequest::Refresh {
        history: history.clone(),
    };
    credential_answer(&call(node, channel, service, request.to_bytes()).await?)
}

/// Subscribes `membership` to the authority's revocations through `channel`: installs the list in force,
/// then every pushed one (closing revoked live channels), and fetches it again every `refetch` (in case a
/// push was lost), until the channel closes. Lists are verified against the membership's trusted
/// authorities; an older one is refused. Returns after the first list is installed.
pub async fn follow_revocations(
    node: &Node,
    channel: &ChannelHandle,
    service: &Address,
    membership: Arc<Membership>,
    refetch: Duration,
) -> Result<()> {
    let accepts = Accepts::flow(channel.flow()).from_peers([channel.peer()]);
    let mut inbox = node.register_with(node.unique_address("revocations"), 16, accepts)?;
    let me = inbox.address().clone();
    let subscribe = Message::new(
        channel.route_to(service.clone()),
        Route::from_addresses([me.clone()]),
        AuthorityRequest::Subscribe.to_bytes(),
    );
    node.send_as(&me, subscribe.clone()).await?;
    let first = match tokio::time::timeout(ANSWER_TIMEOUT, inbox.recv()).await {
        Ok(Some(m)) => m,
        Ok(None) => return Err(RuntimeError::ChannelClosed),
        Err(_) => return Err(RuntimeError::Timeout("the authority's revocations")),
    };
    membership
        .apply_revocations(decode_revocations(&first.payload)?)
        .await?;
    let channel = channel.clone();
    let node = node.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(refetch);
        tick.tick().await;
        loop {
            tokio::select! {
                m = inbox.recv() => match m {
                    Some(m) => {
                        let applied = match decode_revocations(&m.payload) {
                            Ok(list) => membership.apply_revocations(list).await.map_err(RuntimeError::from),
                            Err(e) => Err(e),
                        };
                        if let Err(e) = applied {
                            tracing::warn!("revocations from {}: {e}", channel.peer());
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    if node.send_as(&me, subscribe.clone()).await.is_err() {
                        break;
                    }
                }
                _ = channel.closed() => break,
            }
        }
        node.unregister(&me);
    });
    Ok(())
}

/// One request to a channel-less service and its answer (`reply_flow`: the connection's flow).
async fn call_route(
    node: &Node,
    route: Route,
    reply_flow: crate::origin::FlowId,
    payload: Vec<u8>,
) -> Result<Vec<u8>> {
    let mut inbox = node.register_with(
        node.unique_address("enroll-client"),
        4,
        Accepts::flow(reply_flow),
    )?;
    let me = inbox.address().clone();
    let result = async {
        node.send_as(
            &me,
            Message::new(route, Route::from_addresses([me.clone()]), payload),
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

/// An answer `0x00 ‖ T` (decoded) or a refusal as an error.
fn answer_of<T: Decode>(answer: &[u8]) -> Result<T> {
    accepted(AuthorityAnswer::<T>::from_bytes(answer)?)
}

/// X3DH enrollment over a channel-less route to the authority's enrollment service (`[tcp-out#…,
/// "enroll"]`): fetch the bundle, send one request, read the credential. A request that lost the race for
/// its one-time prekey is retried with a fresh bundle; the fourth attempt uses the signed prekey only.
pub async fn enroll_x3dh(
    node: &Node,
    route: Route,
    reply_flow: crate::origin::FlowId,
    token: &latchkey_core::enroll::EnrollmentToken,
    device: &latchkey_core::identity::LocalIdentity,
) -> Result<Credential> {
    use latchkey_core::enroll::{
        DeviceEnrollment, EnrollmentRequest, EnrollmentResponse, PrekeyBundle,
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let bundle: PrekeyBundle = answer_of(
            &call_route(
                node,
                route.clone(),
                reply_flow,
                EnrollServiceRequest::GetBundle.to_bytes(),
            )
            .await?,
        )?;
        let now = latchkey_core::Timestamp::now();
        let provider = latchkey_core::crypto::default_provider();
        let (state, request) = if attempts < 4 {
            DeviceEnrollment::start(token, &bundle, device, provider, now)?
        } else {
            // Three races for a one-time prekey lost: use the signed prekey only (the authority then
            // refuses a replay by the request's hash).
            DeviceEnrollment::start_with_prekey(token, &bundle, device, provider, now, None)?
        };
        let answer = call_route(
            node,
            route.clone(),
            reply_flow,
            EnrollServiceRequest::Request(EnrollmentRequest::from_bytes(&request)?).to_bytes(),
        )
        .await?;
        match answer_of::<EnrollmentResponse>(&answer) {
            Ok(response) => {
                return Ok(state.finish(&response.to_bytes(), latchkey_core::Timestamp::now())?)
            }
            Err(RuntimeError::EnrollmentRefused(
                super::store::EnrollRefusal::PrekeyUnavailable,
            )) if attempts < 3 => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Where a relay's mailbox service is, and how often to poll it.
#[derive(Clone, Debug)]
pub struct MailboxServices {
    /// The deposit address (`mailbox`).
    pub deposit: Address,
    /// The owner address (`mailbox-owner`).
    pub owner: Address,
    /// How often to look for the answer.
    pub poll: Duration,
}

impl Default for MailboxServices {
    fn default() -> Self {
        MailboxServices {
            deposit: "mailbox".into(),
            owner: "mailbox-owner".into(),
            poll: Duration::from_millis(250),
        }
    }
}

/// X3DH enrollment through a relay mailbox, for an authority that may be offline: through `relay` (a
/// channel to the relay, as the device) it opens the device's own mailbox, fetches the authority's
/// published bundle, deposits one request in the authority's mailbox, then waits up to `wait` for the
/// answer in its own mailbox (polling every `poll`).
pub async fn enroll_via_mailbox(
    node: &Node,
    relay: &ChannelHandle,
    services: &MailboxServices,
    token: &latchkey_core::enroll::EnrollmentToken,
    device: &latchkey_core::identity::LocalIdentity,
    wait: Duration,
) -> Result<Credential> {
    let (deposit_service, owner_service, poll) =
        (&services.deposit, &services.owner, services.poll);
    use crate::relay::mailbox::{deposit, fetch, MailboxClient};
    use latchkey_core::enroll::{
        DeviceEnrollment, EnrollmentRequest, EnrollmentResponse, PrekeyBundle,
    };
    let own = MailboxClient::new(node, relay, owner_service.clone());
    own.open().await?;
    let to_relay = || relay.route_to(deposit_service.clone());
    let bundle = fetch(node, to_relay(), relay.flow(), &token.authority).await?;
    let bundle = PrekeyBundle::from_bytes(&bundle)?;
    let (state, request) = DeviceEnrollment::start(
        token,
        &bundle,
        device,
        latchkey_core::crypto::default_provider(),
        latchkey_core::Timestamp::now(),
    )?;
    deposit(
        node,
        to_relay(),
        relay.flow(),
        &token.authority,
        &EnrollmentEnvelope {
            device: device.identifier(),
            request: EnrollmentRequest::from_bytes(&request)?,
        }
        .to_bytes(),
    )
    .await?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let batch = own.collect(16).await?;
        if let Some((last, _)) = batch.last() {
            let last = *last;
            // Anyone may deposit in a mailbox: a forged answer fails to decrypt below (the device then
            // fails rather than accept it); a real answer wins over a refusal.
            let mut result: Option<Result<EnrollmentResponse>> = None;
            for (_, body) in batch {
                match (answer_of::<EnrollmentResponse>(&body), &result) {
                    (Ok(response), _) => result = Some(Ok(response)),
                    (Err(e), None) => result = Some(Err(e)),
                    (Err(_), Some(_)) => {}
                }
            }
            own.ack(last).await?;
            if let Some(r) = result {
                return match r {
                    Ok(response) => {
                        Ok(state.finish(&response.to_bytes(), latchkey_core::Timestamp::now())?)
                    }
                    Err(e) => Err(e),
                };
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(RuntimeError::Timeout(
                "no answer from the authority in the mailbox",
            ));
        }
        tokio::time::sleep(poll).await;
    }
}
