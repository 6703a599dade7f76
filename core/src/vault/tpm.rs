//! [`TpmVault`]: identity signing keys (ECDSA P-256) inside a TPM 2.0, through `tss-esapi`.
//!
//! Each key is created by the TPM under the owner (storage) hierarchy, below a primary storage key the TPM
//! re-derives from its owner seed whenever the vault connects; the private half leaves the TPM only as a
//! *key blob* encrypted (and integrity-protected) under that primary key, so it is usable in this TPM only.
//! The `KeyId` is that blob: `tpm:` + hex(private blob) + `.` + hex(x ‖ y). A store keeps it as the key
//! reference; it is not a secret in the sense of a seed (it cannot be used without this TPM), and this
//! module's error messages never quote it. Signing loads the blob, signs a host-computed SHA-256 digest inside the
//! TPM, and flushes it; the signature is normalised to low-s.
//!
//! A TPM has no X25519: an identity in a TPM keeps its Noise static key in software, attested by the TPM key
//! with a short expiry (see `docs/VAULTS.md`). The TCTI comes from configuration: `device:/dev/tpmrm0`,
//! `swtpm:host=127.0.0.1,port=2321`, `mssim:…`, `tabrmd:…`.

use super::{KeyId, PublicKey, Signature, SigningAlgorithm, SigningVault};
use crate::error::{Error, Result};
use std::format;
use std::str::FromStr;
use std::string::{String, ToString};
use std::sync::Mutex;
use std::vec::Vec;
use tss_esapi::abstraction::transient::{KeyMaterial, KeyParams, TransientKeyContextBuilder};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::structures::{Digest, EccScheme, HashScheme};
use tss_esapi::{TctiNameConf, TransientKeyContext};

/// An identity vault in a TPM 2.0. Thread-safe: one TPM context behind a lock (a TPM runs one command at a
/// time anyway), re-connected after a failure.
pub struct TpmVault {
    tcti: String,
    ctx: Mutex<Option<TransientKeyContext>>,
}

impl core::fmt::Debug for TpmVault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TpmVault")
            .field("tcti", &self.tcti)
            .finish_non_exhaustive()
    }
}

fn params() -> KeyParams {
    KeyParams::Ecc {
        curve: EccCurve::NistP256,
        scheme: EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)),
    }
}

impl TpmVault {
    /// Connects to the TPM named by `tcti` (e.g. `swtpm:host=127.0.0.1,port=2321`, `device:/dev/tpmrm0`)
    /// and derives the primary storage key.
    pub fn open(tcti: &str) -> Result<Self> {
        TctiNameConf::from_str(tcti).map_err(|e| {
            Error::Vault(format!(
                "bad TPM TCTI {tcti:?}: {e} (examples: device:/dev/tpmrm0, swtpm:host=127.0.0.1,port=2321)"
            ))
        })?;
        let vault = TpmVault {
            tcti: tcti.to_string(),
            ctx: Mutex::new(None),
        };
        let mut guard = vault.ctx.lock().unwrap_or_else(|e| e.into_inner());
        *guard = Some(vault.connect()?);
        drop(guard);
        Ok(vault)
    }

    /// The TCTI this vault talks to.
    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    fn connect(&self) -> Result<TransientKeyContext> {
        let conf = TctiNameConf::from_str(&self.tcti)
            .map_err(|e| Error::Vault(format!("bad TPM TCTI {:?}: {e}", self.tcti)))?;
        TransientKeyContextBuilder::new()
            .with_tcti(conf)
            .build()
            .map_err(|e| self.unavailable(&e.to_string()))
    }

    fn unavailable(&self, detail: &str) -> Error {
        Error::DeviceUnavailable(format!(
            "the TPM at {} is not answering ({detail}); check that it (or swtpm / the resource manager) is \
             running and reachable, then retry",
            self.tcti
        ))
    }

    /// Runs `f` on the TPM context; after a failure the context is dropped and rebuilt once (a TPM that was
    /// restarted), and a TPM that cannot be reached is `DeviceUnavailable`.
    fn with_ctx<T>(
        &self,
        what: &str,
        f: impl Fn(&mut TransientKeyContext) -> tss_esapi::Result<T>,
    ) -> Result<T> {
        let mut guard = self.ctx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ctx) = guard.as_mut() {
            match f(ctx) {
                Ok(v) => return Ok(v),
                Err(first) => {
                    // Drop the context (its sessions and primary key may be gone with the TPM) and try
                    // once more on a fresh one.
                    *guard = None;
                    let mut fresh = self
                        .connect()
                        .map_err(|_| self.unavailable(&format!("{what}: {first}")))?;
                    let out = f(&mut fresh)
                        .map_err(|e| Error::Vault(format!("the TPM failed while {what}: {e}")));
                    *guard = Some(fresh);
                    return out;
                }
            }
        }
        let mut fresh = self.connect()?;
        let out =
            f(&mut fresh).map_err(|e| Error::Vault(format!("the TPM failed while {what}: {e}")));
        *guard = Some(fresh);
        out
    }

    fn material(key: &KeyId) -> Result<(KeyMaterial, [u8; 65])> {
        let bad = || Error::KeyNotFound("the key reference is not a TPM key blob".into());
        let body = key.as_str().strip_prefix("tpm:").ok_or_else(bad)?;
        let (private, point) = body.split_once('.').ok_or_else(bad)?;
        let private = hex::decode(private).map_err(|_| bad())?;
        let point = hex::decode(point).map_err(|_| bad())?;
        if point.len() != 64 || private.is_empty() {
            return Err(bad());
        }
        let mut sec1 = [0u8; 65];
        sec1[0] = 0x04;
        sec1[1..].copy_from_slice(&point);
        let material: KeyMaterial = serde_json::from_value(serde_json::json!({
            "public": { "Ecc": { "x": &point[..32], "y": &point[32..] } },
            "private": private,
        }))
        .map_err(|_| bad())?;
        Ok((material, sec1))
    }

    /// Hardware keys never leave the TPM: always `KeyNotExtractable` (the blob a store keeps is usable only
    /// inside this TPM).
    pub fn export_secret(&self, key: &KeyId) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        Self::material(key)?;
        Err(Error::KeyNotExtractable(format!(
            "a TPM key is created with fixedTPM and fixedParent; it can only be used inside the TPM at {}",
            self.tcti
        )))
    }
}

/// A P-256 coordinate or scalar as exactly 32 big-endian bytes.
fn fixed32(bytes: &[u8]) -> Result<[u8; 32]> {
    if bytes.len() > 32 {
        return Err(Error::Vault("TPM returned an oversized P-256 value".into()));
    }
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(bytes);
    Ok(out)
}

impl SigningVault for TpmVault {
    fn generate_signing_key(&self, algorithm: SigningAlgorithm) -> Result<KeyId> {
        if algorithm != SigningAlgorithm::EcdsaP256 {
            return Err(Error::HardwareUnsupported(
                "a TPM 2.0 has no Ed25519; TPM identities use ECDSA P-256".into(),
            ));
        }
        let (material, _) = self.with_ctx("creating a key", |ctx| ctx.create_key(params(), 0))?;
        let tss_esapi::utils::PublicKey::Ecc { x, y } = material.public() else {
            return Err(Error::Vault("TPM returned a non-ECC public key".into()));
        };
        let mut point = Vec::with_capacity(64);
        point.extend_from_slice(&fixed32(x)?);
        point.extend_from_slice(&fixed32(y)?);
        Ok(KeyId::new(format!(
            "tpm:{}.{}",
            hex::encode(material.private()),
            hex::encode(point)
        )))
    }

    fn signing_public_key(&self, key: &KeyId) -> Result<PublicKey> {
        let (_, sec1) = Self::material(key)?;
        PublicKey::from_raw(SigningAlgorithm::EcdsaP256, &sec1)
    }

    fn sign(&self, key: &KeyId, message: &[u8]) -> Result<Signature> {
        let (material, _) = Self::material(key)?;
        let digest = crate::crypto::sig::sha256(&[message]);
        let digest =
            Digest::try_from(digest.to_vec()).map_err(|e| Error::Vault(format!("digest: {e}")))?;
        let signature = self.with_ctx("signing", |ctx| {
            ctx.sign(material.clone(), params(), None, digest.clone())
        })?;
        let tss_esapi::structures::Signature::EcDsa(ecc) = signature else {
            return Err(Error::Vault("TPM returned a non-ECDSA signature".into()));
        };
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&fixed32(ecc.signature_r().value())?);
        bytes[32..].copy_from_slice(&fixed32(ecc.signature_s().value())?);
        super::keys::p256_low_s(&mut bytes);
        Ok(Signature::new(SigningAlgorithm::EcdsaP256, bytes))
    }

    /// A blob key has nothing to erase inside the TPM: forgetting its blob (which the caller does) removes
    /// it. Only the reference is checked.
    fn delete_signing_key(&self, key: &KeyId) -> Result<()> {
        Self::material(key).map(|_| ())
    }
}
