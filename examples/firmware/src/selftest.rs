//! What the device does with the vectors: it plays one side with the core on the RustCrypto provider, and the
//! other side is the vector's recorded bytes — what the host implementation sent. Every message and frame the
//! device produces must equal the recorded one byte for byte, and everything it receives must be accepted.

use crate::vectors::{HandshakeVector, IdentityVector, Side};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use latchkey_core::channel::{
    ChannelIdentity, Handshake, HandshakeConfig, Role, TrustIdentifiers, FRAME_OVERHEAD,
};
use latchkey_core::crypto::CryptoProvider;
use latchkey_core::identity::{Identifier, Identity};
use latchkey_core::vault::{SigningVault, SoftwareVault};
use latchkey_core::Timestamp;

pub type Outcome = Result<(), String>;

fn core_err(step: &str) -> impl Fn(latchkey_core::Error) -> String + '_ {
    move |e| format!("{step}: {e}")
}

fn expect_eq(what: &str, got: &[u8], want: &[u8]) -> Outcome {
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{what} differs from the vector ({} vs {} bytes)",
            got.len(),
            want.len()
        ))
    }
}

/// The facade's `Identity::from_secrets`, in core calls: identity from its seed, static key attested at the
/// same time.
fn load_identity(
    vault: &SoftwareVault,
    signing_seed: &[u8; 32],
    static_secret: &[u8; 32],
    created_at: u64,
    key_validity_secs: u64,
    attestation_validity_secs: u64,
) -> Result<(Identity, ChannelIdentity), String> {
    let key = vault
        .import_ed25519_seed(signing_seed)
        .map_err(core_err("import signing seed"))?;
    let identity = Identity::create_with_key(vault, key, Timestamp(created_at), key_validity_secs)
        .map_err(core_err("create identity"))?;
    let static_key = vault
        .import_x25519_secret(static_secret)
        .map_err(core_err("import static key"))?;
    let channel = ChannelIdentity::attested(
        &identity,
        vault,
        vault,
        static_key,
        Timestamp(created_at),
        attestation_validity_secs,
    )
    .map_err(core_err("attest static key"))?;
    Ok((identity, channel))
}

/// An identity vector: identifier, history, and each rotation's history.
pub fn identity(provider: &'static dyn CryptoProvider, v: &IdentityVector) -> Outcome {
    let vault = SoftwareVault::with_provider(provider);
    let (mut identity, _) = load_identity(
        &vault,
        &v.signing_seed,
        &v.static_secret,
        v.created_at,
        v.key_validity_secs,
        v.attestation_validity_secs,
    )?;
    if identity.identifier().to_string() != v.identifier {
        return Err("identifier differs from the vector".into());
    }
    expect_eq("history", &identity.history().export(), v.history)?;
    for (k, rotation) in v.rotations.iter().enumerate() {
        let key = vault
            .import_ed25519_seed(&rotation.signing_seed)
            .map_err(core_err("import rotation seed"))?;
        identity
            .rotate_to_key(
                &vault as &dyn SigningVault,
                key,
                Timestamp(rotation.at),
                v.key_validity_secs,
            )
            .map_err(core_err("rotate"))?;
        expect_eq(
            &format!("history after rotation {k}"),
            &identity.history().export(),
            rotation.history,
        )?;
    }
    Ok(())
}

/// A handshake vector with the device in `role`: the three messages, the handshake hash, the peer's identity,
/// then every transport frame (the device's own encrypted into a caller buffer, the peer's decrypted).
pub fn handshake(
    provider: &'static dyn CryptoProvider,
    v: &HandshakeVector,
    role: Role,
) -> Outcome {
    let (me, peer): (&Side, &Side) = match role {
        Role::Initiator => (&v.initiator, &v.responder),
        Role::Responder => (&v.responder, &v.initiator),
    };
    let vault = Arc::new(SoftwareVault::with_provider(provider));
    let (_identity, channel_identity) = load_identity(
        &vault,
        &me.signing_seed,
        &me.static_secret,
        me.created_at,
        me.key_validity_secs,
        me.attestation_validity_secs,
    )?;
    // The device trusts exactly its peer.
    let peer_id: Identifier = peer
        .identifier
        .parse()
        .map_err(core_err("peer identifier"))?;
    let mut config = HandshakeConfig::with_provider(
        provider,
        vault,
        channel_identity,
        Arc::new(TrustIdentifiers::new([peer_id])),
        Timestamp(v.now),
    );
    config.suite = v.suite;
    let mut hs = Handshake::new(config, role).map_err(core_err("start"))?;
    // TEST ONLY: the vector's fixed ephemeral key, so the bytes can be compared. Never on a real device.
    hs.set_ephemeral_for_test_vectors(me.ephemeral_secret)
        .map_err(core_err("fixed ephemeral"))?;

    let [m1, m2, m3] = v.messages;
    match role {
        Role::Initiator => {
            expect_eq(
                "message 1",
                &hs.write_message().map_err(core_err("write 1"))?,
                m1,
            )?;
            hs.read_message(m2).map_err(core_err("read 2"))?;
            expect_eq(
                "message 3",
                &hs.write_message().map_err(core_err("write 3"))?,
                m3,
            )?;
        }
        Role::Responder => {
            hs.read_message(m1).map_err(core_err("read 1"))?;
            expect_eq(
                "message 2",
                &hs.write_message().map_err(core_err("write 2"))?,
                m2,
            )?;
            hs.read_message(m3).map_err(core_err("read 3"))?;
        }
    }
    expect_eq("handshake hash", &hs.handshake_hash(), &v.handshake_hash)?;
    let mut channel = hs.finish().map_err(core_err("finish"))?;
    if channel.peer_identifier() != peer_id {
        return Err("the authenticated peer is not the vector's".into());
    }

    let mine = role == Role::Initiator;
    let mut buf = [0u8; 256];
    for (k, f) in v.transport.iter().enumerate() {
        if f.from_initiator == mine {
            let n = channel
                .encrypt(f.plaintext, &mut buf)
                .map_err(|e| format!("encrypt frame {k}: {e}"))?;
            expect_eq(
                &format!("frame {k} (nonce {})", f.nonce),
                &buf[..n],
                f.frame,
            )?;
        } else {
            let n = channel
                .decrypt(f.frame, &mut buf)
                .map_err(|e| format!("decrypt frame {k}: {e}"))?;
            expect_eq(&format!("plaintext of frame {k}"), &buf[..n], f.plaintext)?;
        }
    }
    debug_assert!(buf.len() >= 129 + FRAME_OVERHEAD);
    // A frame with one bit flipped must be refused (and leave the channel working).
    if let Some(f) = v.transport.iter().find(|f| f.from_initiator != mine) {
        let mut bad = [0u8; 256];
        bad[..f.frame.len()].copy_from_slice(f.frame);
        bad[f.frame.len() - 1] ^= 1;
        if channel.decrypt(&bad[..f.frame.len()], &mut buf).is_ok() {
            return Err("a tampered frame was accepted".into());
        }
    }
    Ok(())
}
