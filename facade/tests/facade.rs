use latchkey_facade::*;

const NOW: u64 = 1_800_000_000;

fn pair(trusted_by_a: &Trust) -> Result<(Channel, Channel, Identity, Identity)> {
    let vault = Vault::new();
    let a = Identity::create(&vault, IdentityOptions::default(), Some(NOW))?;
    let b = Identity::create(&vault, IdentityOptions::default(), Some(NOW))?;
    let mut i = HandshakeSession::new(
        &a,
        Role::Initiator,
        CipherSuite::AesGcm,
        trusted_by_a,
        Some(NOW),
    )?;
    let mut r = HandshakeSession::new(
        &b,
        Role::Responder,
        CipherSuite::AesGcm,
        &Trust::AnyIdentity,
        Some(NOW),
    )?;
    let m1 = i.step(None)?.expect("m1");
    let m2 = r.step(Some(&m1))?.expect("m2");
    let m3 = i.step(Some(&m2))?.expect("m3");
    assert!(i.is_finished());
    assert_eq!(r.step(Some(&m3))?, None);
    assert!(r.is_finished());
    Ok((i.into_channel()?, r.into_channel()?, a, b))
}

#[test]
fn step_drives_a_full_handshake_and_channel() {
    let (mut ca, mut cb, a, b) = pair(&Trust::AnyIdentity).unwrap();
    assert_eq!(ca.peer_identifier(), b.identifier());
    assert_eq!(cb.peer_identifier(), a.identifier());
    assert_eq!(ca.handshake_hash(), cb.handshake_hash());
    let frame = ca.encrypt(b"hello").unwrap();
    assert_eq!(frame.len(), 5 + FRAME_OVERHEAD);
    assert_eq!(cb.decrypt(&frame).unwrap(), b"hello");
    assert_eq!(cb.decrypt(&frame).unwrap_err().code(), ErrorCode::Replay);
    let mut small = [0u8; 4];
    let too_small = ca.encrypt_into(b"hello", &mut small).unwrap_err();
    assert_eq!(too_small.code(), ErrorCode::BufferTooSmall);
    assert_eq!(too_small.needed(), Some(5 + FRAME_OVERHEAD));
}

#[test]
fn untrusted_responder_is_refused() {
    let stranger = "lk".to_string() + &"ab".repeat(32);
    let err = pair(&Trust::Identifiers(vec![stranger])).unwrap_err();
    assert_eq!(err.name(), "UntrustedPeer");
}

#[test]
fn an_empty_identifier_list_refuses_every_peer() {
    let err = pair(&Trust::Identifiers(vec![])).unwrap_err();
    assert_eq!(err.name(), "UntrustedPeer");
}

#[test]
fn a_listed_responder_is_accepted() {
    let vault = Vault::new();
    let b = Identity::create(&vault, IdentityOptions::default(), Some(NOW)).unwrap();
    let a = Identity::create(&vault, IdentityOptions::default(), Some(NOW)).unwrap();
    let trust = Trust::Identifiers(vec![b.identifier()]);
    let mut i = HandshakeSession::new(
        &a,
        Role::Initiator,
        CipherSuite::ChaChaPoly,
        &trust,
        Some(NOW),
    )
    .unwrap();
    let mut r = HandshakeSession::new(
        &b,
        Role::Responder,
        CipherSuite::ChaChaPoly,
        &Trust::Identifiers(vec![a.identifier()]),
        Some(NOW),
    )
    .unwrap();
    let m2 = r.step(i.step(None).unwrap().as_deref()).unwrap();
    let m3 = i.step(m2.as_deref()).unwrap();
    r.step(m3.as_deref()).unwrap();
    assert_eq!(i.into_channel().unwrap().peer_identifier(), b.identifier());
    assert_eq!(r.into_channel().unwrap().peer_identifier(), a.identifier());
}

#[test]
fn trust_from_list_needs_exactly_the_any_marker_for_any_identity() {
    let id = "lk".to_string() + &"ab".repeat(32);
    let any = Trust::ANY_MARKER.to_string();
    assert_eq!(Trust::ANY_MARKER, "*");
    assert_eq!(
        Trust::from_list(std::slice::from_ref(&any)),
        Trust::AnyIdentity
    );
    assert_eq!(Trust::from_list(&[]), Trust::Identifiers(vec![]));
    assert_eq!(
        Trust::from_list(std::slice::from_ref(&id)),
        Trust::Identifiers(vec![id.clone()])
    );
    // "*" beside other entries is not a wildcard: it is an (invalid) identifier.
    assert_eq!(
        Trust::from_list(&[any.clone(), id.clone()]),
        Trust::Identifiers(vec![any.clone(), id])
    );
    let vault = Vault::new();
    let a = Identity::create(&vault, IdentityOptions::default(), Some(NOW)).unwrap();
    let err = HandshakeSession::new(
        &a,
        Role::Initiator,
        CipherSuite::ChaChaPoly,
        &Trust::from_list(&[any.clone(), any]),
        Some(NOW),
    )
    .unwrap_err();
    assert_eq!(err.name(), "DecodeError");
}

#[test]
fn rotation_is_accepted_as_an_extension_only() {
    let vault = Vault::new();
    let a = Identity::create(&vault, IdentityOptions::default(), Some(NOW)).unwrap();
    let before = a.export_history().unwrap();
    a.rotate(None, Some(NOW + 10)).unwrap();
    let after = a.export_history().unwrap();
    assert_eq!(a.change_count().unwrap(), 2);
    assert_eq!(
        verify_history_update(&before, &after).unwrap(),
        a.identifier()
    );
    assert_eq!(
        verify_history_update(&after, &before).unwrap_err().code(),
        ErrorCode::HistoryMismatch
    );
    assert_eq!(history_identifier(&after).unwrap(), a.identifier());
    // The rotated identity still completes handshakes: its static key is re-attested by the new key.
    let b = Identity::create(&vault, IdentityOptions::default(), Some(NOW)).unwrap();
    let mut i = HandshakeSession::new(
        &a,
        Role::Initiator,
        CipherSuite::ChaChaPoly,
        &Trust::AnyIdentity,
        Some(NOW + 20),
    )
    .unwrap();
    let mut r = HandshakeSession::new(
        &b,
        Role::Responder,
        CipherSuite::ChaChaPoly,
        &Trust::AnyIdentity,
        Some(NOW + 20),
    )
    .unwrap();
    let m2 = r.step(i.step(None).unwrap().as_deref()).unwrap();
    let m3 = i.step(m2.as_deref()).unwrap();
    r.step(m3.as_deref()).unwrap();
    assert_eq!(r.into_channel().unwrap().peer_history(), after);
}

#[test]
fn out_of_turn_calls_are_invalid_state() {
    let vault = Vault::new();
    let a = Identity::create(&vault, IdentityOptions::default(), Some(NOW)).unwrap();
    let mut r = HandshakeSession::new(
        &a,
        Role::Responder,
        CipherSuite::ChaChaPoly,
        &Trust::AnyIdentity,
        Some(NOW),
    )
    .unwrap();
    assert_eq!(r.step(None).unwrap_err().name(), "InvalidState");
    assert_eq!(r.into_channel().unwrap_err().name(), "InvalidState");
}
