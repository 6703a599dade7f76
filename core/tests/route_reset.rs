//! Stateless reset of the routed channel session (`latchkey_core::route::reset`): each end learns its
//! peer's token from authenticated ACKs; a reset carrying it closes the session with `Reset`, a reset with
//! any other token (or before a token was learnt) is ignored, and a "restarted" node that holds the same
//! reset key answers a frame for a decryptor it does not know with exactly that token.

mod common;

use common::Party;
use latchkey_core::channel::Handshake;
use latchkey_core::crypto::default_provider;
use latchkey_core::route::reset::{parse_reset, reset_payload};
use latchkey_core::route::{
    Arrival, ChannelSession, Delivery, Event, Instant, ResetKey, Route, RoutedMessage,
    SessionConfig, SessionError,
};

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// A channel between `i-dec` (over connection `conn`) and a responder `r-dec` on the far node (whose
/// connection from the initiator is `r-in`), with reset tokens from the two nodes' keys when given.
struct Pair {
    i: ChannelSession,
    r: ChannelSession,
}

/// Carries every pending message between the two ends until both are quiet; returns the frames the
/// initiator sent towards the responder (as they arrive there).
fn settle(p: &mut Pair, now: u64) -> Vec<RoutedMessage> {
    let mut to_r = vec![];
    loop {
        let mut moved = false;
        p.i.deliver(t(now), |_| Delivery::Delivered);
        p.r.deliver(t(now), |_| Delivery::Delivered);
        while let Some(mut m) = p.i.poll_transmit() {
            moved = true;
            assert_eq!(m.onward.pop_front().unwrap().as_str(), "conn");
            m.ret = m.ret.prepend("r-in");
            to_r.push(m.clone());
            p.r.handle_input(t(now), m, &Arrival::via("r-in".into()));
        }
        while let Some(mut m) = p.r.poll_transmit() {
            moved = true;
            assert_eq!(m.onward.pop_front().unwrap().as_str(), "r-in");
            m.ret = m.ret.prepend("conn");
            p.i.handle_input(t(now), m, &Arrival::via("conn".into()));
        }
        if !moved {
            return to_r;
        }
    }
}

fn pair(i_key: Option<&ResetKey>, r_key: Option<&ResetKey>) -> Pair {
    let p = default_provider();
    let (a, b) = (Party::new(), Party::new());
    let config = SessionConfig::default();
    let mut i = ChannelSession::initiator(
        config.clone(),
        Handshake::initiator(a.config_any()).unwrap(),
        "i-dec".into(),
        Route::from(["conn", "api"]),
        t(0),
    )
    .unwrap();
    if let Some(k) = i_key {
        i.set_reset_token(k.token(p, &"i-dec".into()));
    }
    let mut m1 = i.poll_transmit().unwrap();
    m1.onward.pop_front();
    m1.ret = m1.ret.prepend("r-in");
    let mut r = ChannelSession::responder(
        config,
        Handshake::responder(b.config_any()).unwrap(),
        "r-dec".into(),
        &m1,
        Arrival::via("r-in".into()),
        t(0),
    )
    .unwrap();
    if let Some(k) = r_key {
        r.set_reset_token(k.token(p, &"r-dec".into()));
    }
    let mut pair = Pair { i, r };
    settle(&mut pair, 1);
    assert!(pair.i.is_established() && pair.r.is_established());
    pair
}

fn reset_to_initiator(token: &[u8; 16]) -> RoutedMessage {
    RoutedMessage::new(Route::from(["i-dec"]), Route::new(), reset_payload(token))
}

fn closed_with(s: &mut ChannelSession) -> Option<SessionError> {
    let mut reason = None;
    while let Some(e) = s.poll_event() {
        if let Event::Closed(why) = e {
            reason = Some(why);
        }
    }
    reason
}

#[test]
fn each_end_learns_the_peers_token_from_its_authenticated_acks() {
    let p = default_provider();
    let (ki, kr) = (ResetKey::new([1; 32]), ResetKey::new([2; 32]));
    let pair = pair(Some(&ki), Some(&kr));
    assert_eq!(
        pair.i.peer_reset_token(),
        Some(&kr.token(p, &"r-dec".into())),
        "from the confirmation"
    );
    assert_eq!(
        pair.r.peer_reset_token(),
        Some(&ki.token(p, &"i-dec".into())),
        "from the initiator's first ACK, sent at once"
    );
}

#[test]
fn a_reset_from_the_restarted_node_closes_the_channel_and_forged_ones_are_ignored() {
    let p = default_provider();
    let kr = ResetKey::new([2; 32]);
    let mut pair = pair(None, Some(&kr));
    closed_with(&mut pair.i);
    // Something in flight, so the failure is reported too.
    let seq = pair
        .i
        .send(
            t(2),
            &RoutedMessage::new(Route::from(["echo"]), Route::new(), b"x".to_vec()),
        )
        .unwrap();
    let frame = pair.i.poll_transmit().unwrap();

    // Forged resets: a wrong token, a truncated one, one with a trailing byte: all ignored.
    let mut wrong = kr.token(p, &"r-dec".into());
    wrong[0] ^= 0x80;
    pair.i.handle_input(
        t(3),
        reset_to_initiator(&wrong),
        &Arrival::via("conn".into()),
    );
    let mut short = reset_to_initiator(&wrong);
    short.payload.truncate(16);
    pair.i
        .handle_input(t(3), short, &Arrival::via("conn".into()));
    let other_key = ResetKey::new([3; 32]).token(p, &"r-dec".into());
    pair.i.handle_input(
        t(3),
        reset_to_initiator(&other_key),
        &Arrival::via("conn".into()),
    );
    assert!(pair.i.is_established(), "forged resets are ignored");
    assert_eq!(closed_with(&mut pair.i), None);

    // The responder's node restarts: it holds the same key but no longer knows r-dec. It answers the
    // frame (as it arrived there) with a reset along the frame's return route.
    let mut arrived = frame.clone();
    arrived.onward.pop_front();
    arrived.ret = arrived.ret.prepend("r-in#new");
    let reset = ResetKey::new([2; 32])
        .answer_unknown(p, &arrived)
        .expect("a frame for an unknown decryptor gets a reset");
    assert_eq!(reset.onward, Route::from(["r-in#new", "i-dec"]));
    assert_eq!(
        parse_reset(&reset.payload),
        Some(kr.token(p, &"r-dec".into()))
    );
    let mut back = reset;
    back.onward.pop_front();
    // It needs no path check: the token is the proof (here it comes in on another connection).
    pair.i
        .handle_input(t(4), back, &Arrival::via("conn#2".into()));
    assert!(pair.i.is_closed());
    let mut events = vec![];
    while let Some(e) = pair.i.poll_event() {
        events.push(e);
    }
    assert_eq!(
        events,
        vec![Event::Failed(seq), Event::Closed(SessionError::Reset)]
    );
    assert_eq!(pair.i.poll_timeout(), None, "no timers after a reset");
}

#[test]
fn without_a_token_a_reset_closes_nothing_and_the_responder_can_be_reset_too() {
    let p = default_provider();
    let ki = ResetKey::new([1; 32]);
    let mut pair = pair(Some(&ki), None);
    // The initiator set no token on the responder's side... the responder's did not: the initiator
    // cannot be told anything by a reset.
    let forged = ResetKey::new([2; 32]).token(p, &"r-dec".into());
    pair.i.handle_input(
        t(3),
        reset_to_initiator(&forged),
        &Arrival::via("conn".into()),
    );
    assert!(pair.i.is_established());
    // The initiator's node "restarts": the responder is reset with the initiator's token.
    let token = ki.token(p, &"i-dec".into());
    let reset = RoutedMessage::new(Route::from(["r-dec"]), Route::new(), reset_payload(&token));
    pair.r
        .handle_input(t(4), reset, &Arrival::via("r-in".into()));
    assert_eq!(closed_with(&mut pair.r), Some(SessionError::Reset));
}
