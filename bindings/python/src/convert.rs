//! Value conversions shared by the wrappers: fixed-size secrets and the cipher-suite / algorithm enums.

use crate::errors::error;
use latchkey_facade::CipherSuite as CoreSuite;
use latchkey_facade::ErrorCode;
use latchkey_facade::SigningAlgorithm as CoreAlgorithm;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};
use std::ops::Deref;
use zeroize::Zeroizing;

/// Inputs at or above this size are processed with the GIL released, so other Python threads keep running;
/// below it, releasing and re-taking the GIL would cost more than the work.
pub(crate) const DETACH_THRESHOLD: usize = 4096;

/// Bytes as Python code holds them: `bytes` (borrowed, no copy), or a copy of a `bytearray` or of the bytes
/// a `memoryview` shows. Anything else (e.g. `str`, a list of ints) is a `TypeError`. (The buffer protocol
/// is not in the limited API of Python 3.9, which the abi3 wheel targets, hence the explicit types.)
pub(crate) enum Bytes {
    Backed(PyBackedBytes),
    Copied(Box<[u8]>),
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Backed(b) => b,
            Bytes::Copied(b) => b,
        }
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for Bytes {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if obj.is_instance_of::<PyBytes>() || obj.is_instance_of::<PyByteArray>() {
            return Ok(Bytes::Backed(obj.extract::<PyBackedBytes>()?));
        }
        if obj.is_instance_of::<PyMemoryView>() {
            // A copy: the buffer's owner may change it while the GIL is released.
            let copied = obj.call_method0("tobytes")?.cast_into::<PyBytes>()?;
            return Ok(Bytes::Copied(copied.as_bytes().into()));
        }
        let type_name = obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        Err(PyTypeError::new_err(format!(
            "expected bytes, bytearray or memoryview, not {type_name}"
        )))
    }
}

/// A 32-byte secret; a wrong length is `InvalidArgument` (a `ValueError`: the type was right, the value
/// not). Our copy is wiped when dropped (the caller's Python object is out of our reach).
pub(crate) fn secret32(what: &str, bytes: &[u8]) -> PyResult<Zeroizing<[u8; 32]>> {
    <[u8; 32]>::try_from(bytes)
        .map(Zeroizing::new)
        .map_err(|_| {
            error(
                ErrorCode::InvalidArgument,
                format!("{what} must be exactly 32 bytes, got {}", bytes.len()),
            )
        })
}

/// Seconds as a duration; negative, NaN or infinite is `InvalidArgument` (a `ValueError`).
pub(crate) fn seconds(what: &str, value: f64) -> PyResult<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(value).map_err(|_| {
        error(
            ErrorCode::InvalidArgument,
            format!("{what} must be a non-negative number of seconds, got {value}"),
        )
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
