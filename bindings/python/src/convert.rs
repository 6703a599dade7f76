//! Value conversions shared by the wrappers: fixed-size secrets and the cipher-suite / algorithm enums.

use latchkey_core::vault::SigningAlgorithm as CoreAlgorithm;
use latchkey_facade::CipherSuite as CoreSuite;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use zeroize::Zeroizing;

/// Inputs at or above this size are processed with the GIL released, so other Python threads keep running;
/// below it, releasing and re-taking the GIL would cost more than the work.
pub(crate) const DETACH_THRESHOLD: usize = 4096;

/// A 32-byte secret given as `bytes`; a wrong length is a `ValueError` (the type was right, the value not).
/// Our copy is wiped when dropped (the caller's Python object is out of our reach).
pub(crate) fn secret32(what: &str, bytes: &PyBackedBytes) -> PyResult<Zeroizing<[u8; 32]>> {
    <[u8; 32]>::try_from(&bytes[..])
        .map(Zeroizing::new)
        .map_err(|_| {
            PyValueError::new_err(format!(
                "{what} must be exactly 32 bytes, got {}",
                bytes.len()
            ))
        })
}

/// The Noise cipher suite of a secure channel.
#[pyclass(
    name = "CipherSuite",
    module = "latchkey",
    eq,
    eq_int,
    hash,
    frozen,
    from_py_object
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PyCipherSuite {
    /// `Noise_XX_25519_ChaChaPoly_SHA256` (the default).
    #[pyo3(name = "CHACHA_POLY")]
    ChaChaPoly,
    /// `Noise_XX_25519_AESGCM_SHA256`.
    #[pyo3(name = "AES_GCM")]
    AesGcm,
}

#[pymethods]
impl PyCipherSuite {
    /// The full Noise protocol name.
    #[getter]
    fn protocol_name(&self) -> &'static str {
        CoreSuite::from(*self).protocol_name()
    }
}

impl From<PyCipherSuite> for CoreSuite {
    fn from(suite: PyCipherSuite) -> Self {
        match suite {
            PyCipherSuite::ChaChaPoly => CoreSuite::ChaChaPoly,
            PyCipherSuite::AesGcm => CoreSuite::AesGcm,
        }
    }
}

/// The signature algorithm of an identity's primary key.
#[pyclass(
    name = "SigningAlgorithm",
    module = "latchkey",
    eq,
    eq_int,
    hash,
    frozen,
    from_py_object
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PySigningAlgorithm {
    #[pyo3(name = "ED25519")]
    Ed25519,
    /// For hardware that lacks Ed25519.
    #[pyo3(name = "ECDSA_P256")]
    EcdsaP256,
}

impl From<PySigningAlgorithm> for CoreAlgorithm {
    fn from(algorithm: PySigningAlgorithm) -> Self {
        match algorithm {
            PySigningAlgorithm::Ed25519 => CoreAlgorithm::Ed25519,
            PySigningAlgorithm::EcdsaP256 => CoreAlgorithm::EcdsaP256,
        }
    }
}
