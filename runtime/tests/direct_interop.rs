//! Direct TCP against an independent peer written with the facade (the same code path as
//! `facade/examples/direct_peer.rs` and the C/Python bindings): both directions of the handshake, and frames.

use latchkey_facade::{CipherSuite, Identity, IdentityOptions, Role, Vault};
use latchkey_runtime::direct::{connect_direct, listen_direct};
use latchkey_runtime::LocalIdentity;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

fn write_message(s: &mut TcpStream, m: &[u8]) {
    s.write_all(&(m.len() as u32).to_be_bytes()).unwrap();
    s.write_all(m).unwrap();
}

fn read_message(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut m = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut m).unwrap();
    m
}

fn facade_handshake(
    s: &mut TcpStream,
    identity: &Identity,
    role: Role,
) -> latchkey_facade::Channel {
    let mut session = latchkey_facade::HandshakeSession::new(
        identity,
        role,
        CipherSuite::ChaChaPoly,
        &latchkey_facade::Trust::AnyIdentity,
        None,
    )
    .unwrap();
    if role == Role::Initiator {
        let m1 = session.step(None).unwrap().unwrap();
        write_message(s, &m1);
    }
    while !session.is_finished() {
        let incoming = read_message(s);
        if let Some(reply) = session.step(Some(&incoming)).unwrap() {
            write_message(s, &reply);
        }
    }
    session.into_channel().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facade_client_talks_to_runtime_listener() {
    let server = LocalIdentity::create().unwrap();
    let server_id = server.identifier().to_string();
    let listener = listen_direct(
        server,
        "127.0.0.1:0",
        Arc::new(latchkey_core::channel::TrustAnyIdentity),
    )
    .await
    .unwrap();
    let addr = listener.local_addr;
    let replies = tokio::task::spawn_blocking(move || {
        let identity = Identity::create(&Vault::new(), IdentityOptions::default(), None).unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        let mut channel = facade_handshake(&mut s, &identity, Role::Initiator);
        assert_eq!(channel.peer_identifier(), server_id);
        let mut out = vec![];
        for m in ["one", "two"] {
            write_message(&mut s, &channel.encrypt(m.as_bytes()).unwrap());
            out.push(String::from_utf8(channel.decrypt(&read_message(&mut s)).unwrap()).unwrap());
        }
        out
    })
    .await
    .unwrap();
    assert_eq!(replies, vec!["echo: one", "echo: two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_client_talks_to_facade_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let identity = Identity::create(&Vault::new(), IdentityOptions::default(), None).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        let mut channel = facade_handshake(&mut s, &identity, Role::Responder);
        let m = channel.decrypt(&read_message(&mut s)).unwrap();
        write_message(
            &mut s,
            &channel.encrypt(&[b"echo: ", &m[..]].concat()).unwrap(),
        );
        identity.identifier()
    });
    let me = LocalIdentity::create().unwrap();
    let mut channel = connect_direct(
        &me,
        &addr.to_string(),
        Arc::new(latchkey_core::channel::TrustAnyIdentity),
    )
    .await
    .unwrap();
    channel.send(b"hello facade").await.unwrap();
    assert_eq!(channel.recv().await.unwrap(), b"echo: hello facade");
    assert_eq!(channel.peer().to_string(), server.join().unwrap());
}
