//! Hardware vaults end to end (`make test-hsm`): identities whose keys live in a SoftHSM2 token (PKCS#11) or
//! in swtpm (TPM 2.0) complete channels with software identities in both roles over real TCP, rotate to new
//! hardware keys that a pinning peer accepts, never let a private key out, and fail with typed errors a user
//! can act on while the process keeps serving its other identities.

mod hsm_support;

use hsm_support::{softhsm, Swtpm, MODULE};
use latchkey_core::vault::{
    verify_signature, Pkcs11Config, Pkcs11Vault, PinSource, SecureChannelVault, SigningAlgorithm,
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
    assert!(vault.has_x25519(), "SoftHSM2 derives X25519 through its Edwards-key route");
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
    assert_eq!(vault.export_secret(&static_key).unwrap_err().name(), "KeyNotExtractable");
}

#[test]
fn tpm_keys_sign_inside_the_tpm() {
    let tpm = Swtpm::start();
    let vault = TpmVault::open(&tpm.tcti()).unwrap();
    assert_eq!(
        vault.generate_signing_key(SigningAlgorithm::Ed25519).unwrap_err().name(),
        "HardwareUnsupported"
    );
    let key = vault.generate_signing_key(SigningAlgorithm::EcdsaP256).unwrap();
    let public = vault.signing_public_key(&key).unwrap();
    for i in 0..4u8 {
        let message = [i; 40];
        let sig = vault.sign(&key, &message).unwrap();
        verify_signature(&public, &message, &sig).unwrap();
    }
    assert_eq!(vault.export_secret(&key).unwrap_err().name(), "KeyNotExtractable");
    // A second connection to the same TPM (a restarted process) signs with the same blob.
    let again = TpmVault::open(&tpm.tcti()).unwrap();
    let sig = again.sign(&key, b"later").unwrap();
    verify_signature(&public, b"later", &sig).unwrap();
}
