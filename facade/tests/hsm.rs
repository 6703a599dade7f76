//! Hardware vaults end to end (`make test-hsm`): identities whose keys live in a SoftHSM2 token (PKCS#11) or
//! in swtpm (TPM 2.0) complete channels with software identities in both roles over real TCP, rotate to new
//! hardware keys that a pinning peer accepts, never let a private key out, and fail with typed errors a user
//! can act on while the process keeps serving its other identities.

mod hsm_support;

use hsm_support::{softhsm, Swtpm, MODULE};
use latchkey_core::vault::{
    verify_signature, PinSource, Pkcs11Config, Pkcs11Vault, SecureChannelVault, SigningAlgorithm,
    SigningVault, SoftwareVault, TpmVault,
};
use latchkey_facade::*;
use std::sync::Arc;
use std::time::Duration;

fn pkcs11_vault(label: &str) -> Pkcs11Vault {
    let hsm = softhsm();
    Pkcs11Vault::open(Pkcs11Config::new(
        MODULE,
        label,
        PinSource::File(hsm.pin_file.clone()),
    ))
    .unwrap()
}

#[test]
fn pkcs11_keys_sign_and_derive_inside_the_token_and_never_leave_it() {
    let hsm = softhsm();
    let label = hsm.token("vault-ops");
    let vault = pkcs11_vault(&label);
    assert_eq!(vault.preferred_algorithm(), SigningAlgorithm::Ed25519);
    assert!(
        vault.has_x25519(),
        "SoftHSM2 derives X25519 through its Edwards-key route"
    );
    for algorithm in [SigningAlgorithm::Ed25519, SigningAlgorithm::EcdsaP256] {
        let key = vault.generate_signing_key(algorithm).unwrap();
        let public = vault.signing_public_key(&key).unwrap();
        assert_eq!(public.algorithm(), algorithm);
        let sig = vault.sign(&key, b"a change").unwrap();
        verify_signature(&public, b"a change", &sig).unwrap();
        assert!(verify_signature(&public, b"another change", &sig).is_err());
        let protection = vault.key_protection(&key).unwrap();
        assert!(protection.sensitive && !protection.extractable && protection.never_extractable);
        let err = vault.export_secret(&key).unwrap_err();
        assert_eq!(err.name(), "KeyNotExtractable", "{err}");
        vault.delete_signing_key(&key).unwrap();
        assert_eq!(vault.sign(&key, b"x").unwrap_err().name(), "KeyNotFound");
    }
    // X25519 in the token agrees with X25519 in software, both ways.
    let static_key = vault.generate_x25519_key().unwrap();
    let software = SoftwareVault::new();
    let peer = software.generate_x25519_key().unwrap();
    let peer_public = software.x25519_public_key(&peer).unwrap();
    let ours = vault.x25519(&static_key, &peer_public).unwrap();
    let theirs = software
        .x25519(&peer, &vault.x25519_public_key(&static_key).unwrap())
        .unwrap();
    assert_eq!(ours.expose(), theirs.expose());
    assert_eq!(
        vault.x25519(&static_key, &[0u8; 32]).unwrap_err().name(),
        "InvalidPublicKey",
        "a low-order peer key is refused"
    );
    // Each key does its one job only.
    let signing = vault
        .generate_signing_key(SigningAlgorithm::Ed25519)
        .unwrap();
    assert_eq!(
        vault.sign(&static_key, b"x").unwrap_err().name(),
        "WrongKeyType"
    );
    assert_eq!(
        vault.x25519(&signing, &peer_public).unwrap_err().name(),
        "WrongKeyType"
    );
    assert_eq!(
        vault.x25519_public_key(&signing).unwrap_err().name(),
        "WrongKeyType"
    );
    assert_eq!(
        vault.export_secret(&static_key).unwrap_err().name(),
        "KeyNotExtractable"
    );
}

#[test]
fn tpm_keys_sign_inside_the_tpm() {
    let tpm = Swtpm::start();
    let vault = TpmVault::open(&tpm.tcti()).unwrap();
    assert_eq!(
        vault
            .generate_signing_key(SigningAlgorithm::Ed25519)
            .unwrap_err()
            .name(),
        "HardwareUnsupported"
    );
    let key = vault
        .generate_signing_key(SigningAlgorithm::EcdsaP256)
        .unwrap();
    let public = vault.signing_public_key(&key).unwrap();
    for i in 0..4u8 {
        let message = [i; 40];
        let sig = vault.sign(&key, &message).unwrap();
        verify_signature(&public, &message, &sig).unwrap();
    }
    assert_eq!(
        vault.export_secret(&key).unwrap_err().name(),
        "KeyNotExtractable"
    );
    // A second connection to the same TPM (a restarted process) signs with the same blob.
    let again = TpmVault::open(&tpm.tcti()).unwrap();
    let sig = again.sign(&key, b"later").unwrap();
    verify_signature(&public, b"later", &sig).unwrap();
}

fn ids(list: &[&Identity]) -> Trust {
    Trust::Identifiers(list.iter().map(|i| i.identifier()).collect())
}

async fn echo(channel: &NodeChannel) {
    let reply = channel
        .request("echo".into(), b"ding".to_vec(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(reply, b"ding");
}

/// A node for `identity` listening on loopback with an echo service open to `peers`, pinning their histories
/// in `pins` if given.
async fn serving(
    identity: &Identity,
    peers: Trust,
    pins: Option<&IdentityStore>,
) -> (Arc<Node>, String) {
    let node = Node::new(identity, NodeOptions::default()).unwrap();
    if let Some(store) = pins {
        node.pin_peers(store, false).unwrap();
    }
    let address = node.listen_tcp("127.0.0.1:0".into()).await.unwrap();
    node.start_echo("echo".into(), peers.clone()).unwrap();
    // Accepts secure channels from `peers` (the listener lives as long as the node).
    node.listen("api".into(), peers).unwrap();
    (node, address)
}

/// The "Must show" of issue 14 for one hardware vault: channels with a software identity in both roles, a
/// rotation to a new hardware key that the pinning peer accepts, and the pre-rotation state refused.
async fn hardware_identity_channels_rotates_and_is_pinned(spec: &str) {
    let dir = tempfile::tempdir().unwrap();
    let hw_store = IdentityStore::open(hsm_support::home(dir.path(), "hw")).unwrap();
    let created = hw_store.create_in_vault("hw", spec, None).unwrap();
    assert_eq!(created.changes, 1);
    assert!(hw_store.vault_of("hw").unwrap().starts_with(&spec[..6]));
    let sw_store = IdentityStore::open(hsm_support::home(dir.path(), "sw")).unwrap();
    sw_store.create("sw").unwrap();
    let sw = sw_store.load("sw").unwrap();
    let hw = hw_store.load("hw").unwrap();
    assert_eq!(hw.identifier(), created.identifier);

    let (sw_node, sw_address) = serving(&sw, ids(&[&hw]), Some(&sw_store)).await;
    let (hw_node, hw_address) = serving(&hw, ids(&[&sw]), None).await;

    // The hardware identity as initiator, then as responder.
    let out = hw_node
        .connect(
            Peer::tcp(sw_address.clone()),
            ids(&[&sw]),
            ConnectOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.peer_identifier(), sw.identifier());
    echo(&out).await;
    let inbound = sw_node
        .connect(
            Peer::tcp(hw_address),
            ids(&[&hw]),
            ConnectOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(inbound.peer_identifier(), hw.identifier());
    echo(&inbound).await;
    assert_eq!(
        sw_store.peer(&hw.identifier()).unwrap().changes,
        1,
        "pinned at first contact"
    );

    // Rotate to a new hardware key; the stored identity keeps its identifier.
    let rotated = hw_store.rotate("hw").unwrap();
    assert_eq!(
        (rotated.identifier.as_str(), rotated.changes),
        (hw.identifier().as_str(), 2)
    );
    let hw2 = hw_store.load("hw").unwrap();
    let (hw2_node, hw2_address) = serving(&hw2, ids(&[&sw]), None).await;
    let after = hw2_node
        .connect(
            Peer::tcp(sw_address.clone()),
            ids(&[&sw]),
            ConnectOptions::default(),
        )
        .await
        .unwrap();
    echo(&after).await;
    assert_eq!(
        sw_store.peer(&hw.identifier()).unwrap().changes,
        2,
        "the pinning peer accepted the rotation and moved its pin"
    );
    let inbound = sw_node
        .connect(
            Peer::tcp(hw2_address),
            ids(&[&hw]),
            ConnectOptions::default(),
        )
        .await
        .unwrap();
    echo(&inbound).await;

    // The node still running the pre-rotation state presents an older history: the pinning responder
    // refuses it as a rollback (and says so to the initiator).
    let err = hw_node
        .connect(
            Peer::tcp(sw_address),
            ids(&[&sw]),
            ConnectOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        err.code() == ErrorCode::Refused && err.message().contains("HistoryRollback"),
        "{err:?}"
    );
    assert_eq!(sw_store.peer(&hw.identifier()).unwrap().changes, 2);
    for node in [hw_node, hw2_node, sw_node] {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_softhsm_identity_completes_channels_rotates_and_its_keys_never_leave_the_token() {
    let hsm = softhsm();
    let label = hsm.token("channels");
    hardware_identity_channels_rotates_and_is_pinned(&hsm.spec(&label)).await;
    // OpenSC's view of the token: every private key sensitive and never extractable; after the rotation the
    // old identity key is gone (one identity key + one static key remain).
    let listing = hsm.tool(&label, &["--list-objects", "--type", "privkey"]);
    let blocks: Vec<&str> = listing.split("Private Key Object").skip(1).collect();
    assert_eq!(blocks.len(), 2, "{listing}");
    for block in blocks {
        let access = block
            .lines()
            .find(|l| l.trim_start().starts_with("Access:"))
            .unwrap_or_else(|| panic!("no Access line in {block}"));
        assert!(access.contains("sensitive"), "{access}");
        assert!(access.contains("never extractable"), "{access}");
        assert!(
            !access
                .replace("never extractable", "")
                .contains("extractable"),
            "{access}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tpm_identity_completes_channels_rotates_and_is_pinned() {
    let tpm = Swtpm::start();
    hardware_identity_channels_rotates_and_is_pinned(&tpm.spec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_flow_with_software_keys() {
    hardware_identity_channels_rotates_and_is_pinned("software").await;
}

/// A channel between two fresh software identities in this process: the process still serves.
async fn software_still_serves() {
    let (a, b) = (
        Identity::create(&Vault::new(), IdentityOptions::default(), None).unwrap(),
        Identity::create(&Vault::new(), IdentityOptions::default(), None).unwrap(),
    );
    let (node, address) = serving(&a, ids(&[&b]), None).await;
    let other = Node::new(&b, NodeOptions::default()).unwrap();
    let ch = other
        .connect(Peer::tcp(address), ids(&[&a]), ConnectOptions::default())
        .await
        .unwrap();
    echo(&ch).await;
    node.shutdown().await.unwrap();
    other.shutdown().await.unwrap();
}

fn code_and_message(result: Result<StoredIdentity>) -> (ErrorCode, String) {
    let err = result.unwrap_err();
    (err.code(), err.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkcs11_failures_are_typed_actionable_and_leave_the_process_serving() {
    let hsm = softhsm();
    let label = hsm.token("errors");
    let dir = tempfile::tempdir().unwrap();
    let store = IdentityStore::open(hsm_support::home(dir.path(), "home")).unwrap();

    // Wrong PIN.
    let wrong = format!(
        "pkcs11:module={MODULE},token={label},pin-file={}",
        hsm.wrong_pin_file.display()
    );
    let (code, message) = code_and_message(store.create_in_vault("a", &wrong, None));
    assert_eq!(code, ErrorCode::PinIncorrect, "{message}");
    assert!(
        message.contains(&label) && message.contains("PIN"),
        "{message}"
    );
    // No PIN at all (an unset variable), and a PIN on the command line, which is never accepted.
    let unset = format!("pkcs11:module={MODULE},token={label},pin-env=LATCHKEY_TEST_PIN_NOT_SET");
    let (code, message) = code_and_message(store.create_in_vault("a", &unset, None));
    assert_eq!(code, ErrorCode::PinLocked, "{message}");
    assert!(message.contains("LATCHKEY_TEST_PIN_NOT_SET"), "{message}");
    let argv_pin = format!("pkcs11:module={MODULE},token={label},pin=123456");
    let (code, message) = code_and_message(store.create_in_vault("a", &argv_pin, None));
    assert_eq!(code, ErrorCode::VaultError, "{message}");
    assert!(message.contains("never accepted"), "{message}");
    // Missing module.
    let missing = format!(
        "pkcs11:module=/nonexistent/libnothing.so,token={label},pin-file={}",
        hsm.pin_file.display()
    );
    let (code, message) = code_and_message(store.create_in_vault("a", &missing, None));
    assert_eq!(code, ErrorCode::ModuleNotFound, "{message}");
    assert!(message.contains("/nonexistent/libnothing.so"), "{message}");
    // Missing token: the message lists the tokens that are there.
    let (code, message) =
        code_and_message(store.create_in_vault("a", &hsm.spec("no-such-token"), None));
    assert_eq!(code, ErrorCode::TokenNotFound, "{message}");
    assert!(
        message.contains("no-such-token") && message.contains("errors"),
        "{message}"
    );
    // Nothing was stored by any of these.
    assert!(store.list().unwrap().is_empty());

    // Removed key: an identity whose private keys were deleted from the token behind our back.
    store
        .create_in_vault("doomed", &hsm.spec(&label), None)
        .unwrap();
    assert!(store.load("doomed").is_ok());
    let listing = hsm.tool(&label, &["--list-objects", "--type", "privkey"]);
    let key_ids: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("ID:"))
        .map(str::trim)
        .collect();
    assert_eq!(key_ids.len(), 2, "{listing}");
    for id in key_ids {
        hsm.tool(
            &label,
            &["--delete-object", "--type", "privkey", "--id", id],
        );
    }
    let err = store.load("doomed").unwrap_err();
    assert_eq!(err.code(), ErrorCode::KeyNotFound, "{err:?}");
    assert!(err.message().contains("no longer in token"), "{err:?}");
    let err = store.rotate("doomed").unwrap_err();
    assert_eq!(err.code(), ErrorCode::KeyNotFound, "{err:?}");
    assert_eq!(
        store.show("doomed").unwrap().changes,
        1,
        "a failed rotation changes nothing"
    );

    // The process keeps serving: another hardware identity and software identities still make channels.
    let healthy_label = hsm.token("healthy");
    store
        .create_in_vault("fine", &hsm.spec(&healthy_label), None)
        .unwrap();
    let fine = store.load("fine").unwrap();
    let peer = Identity::create(&Vault::new(), IdentityOptions::default(), None).unwrap();
    let (node, address) = serving(&fine, ids(&[&peer]), None).await;
    let other = Node::new(&peer, NodeOptions::default()).unwrap();
    let ch = other
        .connect(Peer::tcp(address), ids(&[&fine]), ConnectOptions::default())
        .await
        .unwrap();
    echo(&ch).await;
    software_still_serves().await;
    node.shutdown().await.unwrap();
    other.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tpm_that_goes_away_is_a_typed_error_and_the_process_keeps_serving() {
    let hsm = softhsm();
    let mut tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let store = IdentityStore::open(hsm_support::home(dir.path(), "home")).unwrap();
    store.create_in_vault("tpm", &tpm.spec(), None).unwrap();
    store
        .create_in_vault("token", &hsm.spec(&hsm.token("tpm-gone")), None)
        .unwrap();
    let loaded_before = store.load("tpm").unwrap();
    let token_identity = store.load("token").unwrap();

    tpm.kill();
    let err = store.load("tpm").unwrap_err();
    assert_eq!(err.code(), ErrorCode::DeviceUnavailable, "{err:?}");
    assert!(err.message().contains("swtpm:host=127.0.0.1"), "{err:?}");
    let err = store.rotate("tpm").unwrap_err();
    assert_eq!(err.code(), ErrorCode::DeviceUnavailable, "{err:?}");
    assert_eq!(store.show("tpm").unwrap().changes, 1);
    // An identity that holds a loaded vault: its TPM context is gone too, and signing says so.
    let err = loaded_before.rotate(None, None).unwrap_err();
    assert_eq!(err.code(), ErrorCode::DeviceUnavailable, "{err:?}");

    // The rest of the process is unaffected: the token identity and the TPM identity loaded before (its
    // static key is in memory, attested at load) still complete channels.
    let (node, address) = serving(&token_identity, ids(&[&loaded_before]), None).await;
    let tpm_node = Node::new(&loaded_before, NodeOptions::default()).unwrap();
    let ch = tpm_node
        .connect(
            Peer::tcp(address),
            ids(&[&token_identity]),
            ConnectOptions::default(),
        )
        .await
        .unwrap();
    echo(&ch).await;
    software_still_serves().await;
    node.shutdown().await.unwrap();
    tpm_node.shutdown().await.unwrap();
}

#[test]
fn one_token_vault_serves_many_threads_and_logs_in_again_after_losing_its_login() {
    let hsm = softhsm();
    let label = hsm.token("threads");
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let pin_file = hsm.pin_file.clone();
    // The PIN from a callback (the Rust API's third source), counting how often the vault asks.
    let callback: latchkey_core::vault::pkcs11::PinCallback = Arc::new(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let pin = std::fs::read_to_string(&pin_file).unwrap();
        Ok(zeroize::Zeroizing::new(pin.trim().to_string()))
    });
    let vault = Arc::new(
        Pkcs11Vault::open(Pkcs11Config::new(
            MODULE,
            label,
            PinSource::Callback(callback),
        ))
        .unwrap(),
    );
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "logged in at open"
    );
    let signing = vault
        .generate_signing_key(SigningAlgorithm::Ed25519)
        .unwrap();
    let static_key = vault.generate_x25519_key().unwrap();
    let public = vault.signing_public_key(&signing).unwrap();
    let software = SoftwareVault::new();
    let peer = software.generate_x25519_key().unwrap();
    let peer_public = software.x25519_public_key(&peer).unwrap();
    let expected = software
        .x25519(&peer, &vault.x25519_public_key(&static_key).unwrap())
        .unwrap();
    std::thread::scope(|scope| {
        for t in 0..4u8 {
            let (vault, signing, static_key, public) = (&vault, &signing, &static_key, &public);
            let (expected, peer_public) = (&expected, &peer_public);
            scope.spawn(move || {
                for i in 0..25u8 {
                    let message = [t, i];
                    let sig = vault.sign(signing, &message).unwrap();
                    verify_signature(public, &message, &sig).unwrap();
                    let dh = vault.x25519(static_key, peer_public).unwrap();
                    assert_eq!(dh.expose(), expected.expose());
                }
            });
        }
    });
    // Losing the login (a token error) does not lose the vault: the next call logs in again.
    vault.log_out().unwrap();
    let sig = vault.sign(&signing, b"after").unwrap();
    verify_signature(&public, b"after", &sig).unwrap();
    assert!(
        calls.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "asked for the PIN again"
    );
}
