//! Two in-process identities run a full Latchkey handshake and exchange a message, printing who
//! authenticated whom. Run with `cargo run -p latchkey-core --example handshake_demo`.

use latchkey_core::channel::{
    ChannelIdentity, Handshake, HandshakeConfig, TrustIdentifiers, TrustPolicy,
};
use latchkey_core::identity::Identity;
use latchkey_core::vault::{SecureChannelVault, SigningAlgorithm, SoftwareVault};
use latchkey_core::{Result, Timestamp};
use std::sync::Arc;

fn party(now: Timestamp) -> Result<(Arc<SoftwareVault>, Identity, ChannelIdentity)> {
    let vault = Arc::new(SoftwareVault::new());
    let identity = Identity::create(vault.as_ref(), SigningAlgorithm::Ed25519, now, 365 * 86_400)?;
    let static_key = vault.generate_x25519_key()?;
    let channel = ChannelIdentity::attested(
        &identity,
        vault.as_ref(),
        vault.as_ref(),
        static_key,
        now,
        86_400,
    )?;
    Ok((vault, identity, channel))
}

fn main() -> Result<()> {
    let now = Timestamp::now();
    let (phone_vault, phone, phone_channel) = party(now)?;
    let (door_vault, doorbell, door_channel) = party(now)?;
    println!("phone    {}", phone.identifier());
    println!("doorbell {}", doorbell.identifier());

    // Each side trusts exactly the other.
    let phone_trust: Arc<dyn TrustPolicy> =
        Arc::new(TrustIdentifiers::new([doorbell.identifier()]));
    let door_trust: Arc<dyn TrustPolicy> = Arc::new(TrustIdentifiers::new([phone.identifier()]));
    let mut initiator = Handshake::initiator(HandshakeConfig::new(
        phone_vault,
        phone_channel,
        phone_trust,
        now,
    ))?;
    let mut responder = Handshake::responder(HandshakeConfig::new(
        door_vault,
        door_channel,
        door_trust,
        now,
    ))?;

    let m1 = initiator.write_message()?;
    responder.read_message(&m1)?;
    let m2 = responder.write_message()?;
    initiator.read_message(&m2)?;
    let m3 = initiator.write_message()?;
    responder.read_message(&m3)?;
    println!(
        "handshake: -> {} B, <- {} B, -> {} B",
        m1.len(),
        m2.len(),
        m3.len()
    );

    let mut phone_side = initiator.finish()?;
    let mut door_side = responder.finish()?;
    println!("phone authenticated    {}", phone_side.peer_identifier());
    println!("doorbell authenticated {}", door_side.peer_identifier());
    println!(
        "channel binding        {}",
        hex_prefix(phone_side.handshake_hash())
    );

    let frame = door_side.encrypt_to_vec(b"someone is at the door")?;
    println!(
        "doorbell sends {} B of ciphertext: {}…",
        frame.len(),
        hex_prefix(&frame)
    );
    let plain = phone_side.decrypt_to_vec(&frame)?;
    println!("phone reads: {}", String::from_utf8_lossy(&plain));
    Ok(())
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(16).map(|b| format!("{b:02x}")).collect()
}
