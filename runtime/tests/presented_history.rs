//! A peer's history is checked as presented in a handshake (docs/PROTOCOL.md 3.4): its first self-signature is
//! not verified, because the attestation (or the second change's previous-signature) is another signature by
//! the same key over the same change hash. Over real TCP (the direct channel) with a real SQLite pin store:
//! - the attacks that the skipped check might seem to stop still fail, in both roles: a victim's real history
//!   with the attacker's own static key and attestation, and a history built around the victim's public key
//!   (whose self-signature the attacker cannot make). The attackers speak plain Noise through `snow`, since
//!   our own `Handshake` refuses to send an attestation that does not verify;
//! - a peer whose first self-signature is bad (its attestation honest) is accepted and pinned, and after the
//!   node restarts from its database file the pin reloads and the peer is accepted again.

use latchkey_core::channel::{
    CipherSuite, Handshake, HandshakePayload, TrustAnyIdentity, PROLOGUE,
};
use latchkey_core::identity::{
    Attestation, AttestationData, Change, ChangeData, ChangeHistory, PurposeKey,
};
use latchkey_core::vault::Signature;
use latchkey_core::wire::Encode;
use latchkey_core::{Error, Timestamp};
use latchkey_runtime::direct::{connect_direct, listen_direct, DirectListener, MAX_DIRECT_MESSAGE};
use latchkey_runtime::framing::{read_frame, write_frame};
use latchkey_runtime::pins::PinningTrust;
use latchkey_runtime::storage::{PinNew, SharedStore, Store};
use latchkey_runtime::{LocalIdentity, RuntimeError};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};

const DAY: u64 = 86_400;

fn noise(secret: &[u8]) -> snow::Builder<'_> {
    snow::Builder::new(CipherSuite::ChaChaPoly.protocol_name().parse().unwrap())
        .prologue(PROLOGUE)
        .unwrap()
        .local_private_key(secret)
        .unwrap()
}

/// An attacker: a signing identity of its own and a Noise static key it holds as raw bytes.
struct Attacker {
    identity: LocalIdentity,
    static_key: snow::Keypair,
}

impl Attacker {
    fn new() -> Self {
        let static_key =
            snow::Builder::new(CipherSuite::ChaChaPoly.protocol_name().parse().unwrap())
                .generate_keypair()
                .unwrap();
        Attacker {
            identity: LocalIdentity::create().unwrap(),
            static_key,
        }
    }

    /// An attestation of its own static key, naming `subject`, signed with its own identity key.
    fn attestation_for(&self, subject: &ChangeHistory) -> Attestation {
        let now = Timestamp::now();
        let data = AttestationData {
            subject: subject.identifier(),
            key: PurposeKey::SecureChannel(self.static_key.public.clone().try_into().unwrap()),
            created_at: now,
            expires_at: now.plus_secs(DAY),
        };
        let signature = self
            .identity
            .vaults()
            .signing()
            .sign(self.identity.primary_key(), &data.signing_message())
            .unwrap();
        Attestation { data, signature }
    }

    fn payload(&self, history: ChangeHistory) -> Vec<u8> {
        HandshakePayload {
            attestation: self.attestation_for(&history),
            history,
            credentials: vec![],
        }
        .to_bytes()
    }

    /// Answers one connection as a Noise responder sending `payload` in message 2.
    async fn serve_once(&self, payload: Vec<u8>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut noise = noise(&self.static_key.private).build_responder().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 65535];
            let m1 = read_frame(&mut stream, MAX_DIRECT_MESSAGE)
                .await
                .unwrap()
                .unwrap();
            noise.read_message(&m1, &mut buf).unwrap();
            let n = noise.write_message(&payload, &mut buf).unwrap();
            write_frame(&mut stream, &buf[..n], MAX_DIRECT_MESSAGE)
                .await
                .unwrap();
            // Our initiator refuses message 2: it sends no message 3.
            let _ = read_frame(&mut stream, MAX_DIRECT_MESSAGE).await;
        });
        addr
    }

    /// Connects to `addr` as a Noise initiator sending `payload` in message 3. Returns whether the listener
    /// answered a first transport message (it echoes to peers it accepted) rather than closing.
    async fn connect_once(&self, addr: SocketAddr, payload: &[u8]) -> bool {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut noise = noise(&self.static_key.private).build_initiator().unwrap();
        let mut buf = vec![0u8; 65535];
        let n = noise.write_message(&[], &mut buf).unwrap();
        write_frame(&mut stream, &buf[..n], MAX_DIRECT_MESSAGE)
            .await
            .unwrap();
        let m2 = read_frame(&mut stream, MAX_DIRECT_MESSAGE)
            .await
            .unwrap()
            .unwrap();
        noise.read_message(&m2, &mut buf).unwrap();
        let n = noise.write_message(payload, &mut buf).unwrap();
        write_frame(&mut stream, &buf[..n], MAX_DIRECT_MESSAGE)
            .await
            .unwrap();
        matches!(
            read_frame(&mut stream, MAX_DIRECT_MESSAGE).await,
            Ok(Some(_))
        )
    }
}

/// A direct listener whose trust policy pins every peer into the store at `home` (as a node's does), serving
/// as the identity `door` of that store (created on first use).
async fn pinning_listener(home: &Path) -> (DirectListener, SharedStore, LocalIdentity) {
    let mut store = Store::open(home).unwrap();
    let identity = match store.load_identity("door") {
        Ok(identity) => identity,
        Err(_) => store.create_identity("door").unwrap().0,
    };
    let store: SharedStore = Arc::new(Mutex::new(store));
    let trust = Arc::new(PinningTrust::new(
        Arc::new(TrustAnyIdentity),
        store.clone(),
        PinNew::Pin,
    ));
    let listener = listen_direct(identity.clone(), "127.0.0.1:0", trust)
        .await
        .unwrap();
    (listener, store, identity)
}

/// The history around someone else's public key: the attacker signs the change with its own key, the only
/// "self-signature" it can make.
fn history_around(victim: &LocalIdentity, attacker: &Attacker) -> ChangeHistory {
    let now = Timestamp::now();
    let data = ChangeData {
        previous: [0; 32],
        public_key: victim.history().primary_public_key().clone(),
        created_at: now,
        expires_at: now.plus_secs(365 * DAY),
    };
    let self_signature = attacker
        .identity
        .vaults()
        .signing()
        .sign(attacker.identity.primary_key(), &data.hash())
        .unwrap();
    let mut bytes = vec![1u8];
    Change {
        data,
        self_signature,
        previous_signature: None,
    }
    .encode_into(&mut bytes);
    assert_eq!(
        ChangeHistory::import(&bytes),
        Err(Error::InvalidHistory("bad signature by the new key"))
    );
    ChangeHistory::import_presented(&bytes).unwrap()
}

/// Runs one attack payload against our initiator (`connect_direct`, which must refuse it with
/// `InvalidAttestation`) and against a pinning listener (which must close the connection and pin nothing).
async fn refused_both_ways(attacker: &Attacker, claimed: &ChangeHistory, payload: Vec<u8>) {
    let ours = LocalIdentity::create().unwrap();
    let addr = attacker.serve_once(payload.clone()).await;
    let verdict = connect_direct(&ours, &addr.to_string(), Arc::new(TrustAnyIdentity)).await;
    assert!(
        matches!(
            verdict,
            Err(RuntimeError::Core(Error::InvalidAttestation(
                "not signed by the identity's primary key"
            )))
        ),
        "{verdict:?}"
    );
    let home = tempfile::tempdir().unwrap();
    let (listener, store, _) = pinning_listener(home.path()).await;
    assert!(!attacker.connect_once(listener.local_addr, &payload).await);
    let claimed = claimed.identifier().to_string();
    assert!(store.lock().unwrap().peer(&claimed).is_err());
    assert!(store.lock().unwrap().peers().unwrap().is_empty());
    listener.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_victims_history_with_the_attackers_key_and_attestation_is_refused_over_tcp() {
    let victim = LocalIdentity::create().unwrap();
    let attacker = Attacker::new();
    let payload = attacker.payload(victim.history().clone());
    refused_both_ways(&attacker, victim.history(), payload).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_around_a_victims_key_with_the_attackers_attestation_is_refused_over_tcp() {
    let victim = LocalIdentity::create().unwrap();
    let attacker = Attacker::new();
    let forged = history_around(&victim, &attacker);
    let payload = attacker.payload(forged.clone());
    refused_both_ways(&attacker, &forged, payload).await;
}

/// One handshake as `config`'s identity over a direct connection, then one message: `Ok` when the listener
/// accepted the peer (it echoes), `Err` otherwise.
async fn direct_exchange(
    addr: SocketAddr,
    config: latchkey_core::channel::HandshakeConfig,
) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut handshake = Handshake::initiator(config).unwrap();
    while !handshake.is_finished() {
        if handshake.is_my_turn() {
            let m = handshake.write_message().unwrap();
            write_frame(&mut stream, &m, MAX_DIRECT_MESSAGE)
                .await
                .unwrap();
        } else {
            let m = read_frame(&mut stream, MAX_DIRECT_MESSAGE)
                .await
                .unwrap()
                .ok_or("closed during the handshake")?;
            handshake.read_message(&m).map_err(|e| e.to_string())?;
        }
    }
    let mut channel = handshake.finish().unwrap();
    let frame = channel.encrypt_to_vec(b"ring").unwrap();
    write_frame(&mut stream, &frame, MAX_DIRECT_MESSAGE)
        .await
        .unwrap();
    let reply = read_frame(&mut stream, MAX_DIRECT_MESSAGE)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the listener closed the connection: peer refused")?;
    let reply = channel.decrypt_to_vec(&reply).unwrap();
    assert_eq!(reply, b"echo: ring");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_peer_with_a_bad_first_self_signature_is_accepted_again_after_a_restart() {
    // The peer: an honest identity and attestation, but the first self-signature of the history it
    // presents is damaged (a buggy signer, say). Handshakes accept it; `import` of its history refuses it.
    let peer = LocalIdentity::create().unwrap();
    let mut changes = peer.history().changes().to_vec();
    let mut bytes = *changes[0].self_signature.as_bytes();
    bytes[5] ^= 0x20;
    changes[0].self_signature = Signature::new(changes[0].self_signature.algorithm(), bytes);
    let mut presented = vec![1u8];
    changes[0].encode_into(&mut presented);
    assert_eq!(
        ChangeHistory::import(&presented),
        Err(Error::InvalidHistory("bad signature by the new key"))
    );
    let config = || {
        let mut config = peer.handshake_config(Arc::new(TrustAnyIdentity), Timestamp::now());
        config.identity.history = ChangeHistory::import_presented(&presented).unwrap();
        config
    };
    let identifier = peer.identifier().to_string();

    let home = tempfile::tempdir().unwrap();
    let (listener, store, door) = pinning_listener(home.path()).await;
    direct_exchange(listener.local_addr, config())
        .await
        .unwrap();
    let pinned = store.lock().unwrap().peer(&identifier).unwrap();
    assert_eq!(pinned.history, presented);
    assert_eq!(pinned.changes, 1);
    listener.stop();
    drop(store);

    // The node restarts from its database file: same identity, the pin reloaded from SQLite.
    let (listener, store, door_again) = pinning_listener(home.path()).await;
    assert_eq!(door_again.identifier(), door.identifier());
    direct_exchange(listener.local_addr, config())
        .await
        .unwrap();
    let after = store.lock().unwrap().peer(&identifier).unwrap();
    assert_eq!(after.history, presented);
    assert_eq!(after.pinned_at, pinned.pinned_at);
    listener.stop();
}
