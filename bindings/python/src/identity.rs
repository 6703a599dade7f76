//! `Vault`, `Identity` and the history helpers: thin wrappers over the facade.

use crate::convert::{secret32, Bytes, PySigningAlgorithm};
use crate::errors::{error, IntoPyResult};
use latchkey_facade::{
    ErrorCode, Identity, IdentityOptions, IdentityStore, StoredIdentity, StoredPeer, Vault,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::PathBuf;

/// A fresh identity in a vault of its own (a `Node` without an identity).
pub(crate) fn fresh() -> latchkey_facade::Result<Identity> {
    Identity::create(&Vault::new(), IdentityOptions::default(), None)
}

/// Holds secret keys; identities created in it keep their keys there. Secrets never leave it.
#[pyclass(name = "Vault", module = "latchkey", frozen)]
pub(crate) struct PyVault {
    pub(crate) inner: Vault,
}

#[pymethods]
impl PyVault {
    #[new]
    fn new() -> Self {
        PyVault {
            inner: Vault::new(),
        }
    }

    /// Number of keys held.
    #[getter]
    fn key_count(&self) -> usize {
        self.inner.key_count()
    }

    fn __repr__(&self) -> String {
        format!("<latchkey.Vault with {} keys>", self.inner.key_count())
    }
}

/// An identity we control, ready for secure-channel handshakes. Safe to share between threads.
#[pyclass(name = "Identity", module = "latchkey", frozen)]
pub(crate) struct PyIdentity {
    pub(crate) inner: Identity,
}

fn options(
    algorithm: PySigningAlgorithm,
    key_validity_secs: Option<u64>,
    attestation_validity_secs: Option<u64>,
) -> IdentityOptions {
    let defaults = IdentityOptions::default();
    IdentityOptions {
        algorithm: algorithm.into(),
        key_validity_secs: key_validity_secs.unwrap_or(defaults.key_validity_secs),
        attestation_validity_secs: attestation_validity_secs
            .unwrap_or(defaults.attestation_validity_secs),
    }
}

#[pymethods]
impl PyIdentity {
    /// Creates an identity with fresh keys in `vault`.
    #[staticmethod]
    #[pyo3(signature = (vault, *, algorithm = PySigningAlgorithm::Ed25519, key_validity_secs = None,
                        attestation_validity_secs = None, now = None))]
    fn create(
        py: Python<'_>,
        vault: &PyVault,
        algorithm: PySigningAlgorithm,
        key_validity_secs: Option<u64>,
        attestation_validity_secs: Option<u64>,
        now: Option<u64>,
    ) -> PyResult<Self> {
        let options = options(algorithm, key_validity_secs, attestation_validity_secs);
        let vault = &vault.inner;
        let inner = py
            .detach(|| Identity::create(vault, options, now))
            .into_py_result()?;
        Ok(PyIdentity { inner })
    }

    /// Creates an Ed25519 identity from given secrets (test vectors, keys generated elsewhere).
    #[staticmethod]
    #[pyo3(signature = (vault, signing_seed, static_secret, *, key_validity_secs = None,
                        attestation_validity_secs = None, now = None))]
    fn from_secrets(
        py: Python<'_>,
        vault: &PyVault,
        signing_seed: Bytes,
        static_secret: Bytes,
        key_validity_secs: Option<u64>,
        attestation_validity_secs: Option<u64>,
        now: Option<u64>,
    ) -> PyResult<Self> {
        let signing_seed = secret32("signing_seed", &signing_seed)?;
        let static_secret = secret32("static_secret", &static_secret)?;
        let options = options(
            PySigningAlgorithm::Ed25519,
            key_validity_secs,
            attestation_validity_secs,
        );
        let vault = &vault.inner;
        let inner = py
            .detach(|| Identity::from_secrets(vault, &signing_seed, &static_secret, options, now))
            .into_py_result()?;
        Ok(PyIdentity { inner })
    }

    /// The identifier, `lk` followed by 64 hex digits.
    #[getter]
    fn identifier(&self) -> String {
        self.inner.identifier()
    }

    /// Number of changes in the history: 1 + the number of rotations.
    #[getter]
    fn change_count(&self) -> PyResult<usize> {
        self.inner.change_count().into_py_result()
    }

    /// The change history as bytes: public, what peers verify.
    fn export_history<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let history = self.inner.export_history().into_py_result()?;
        Ok(PyBytes::new(py, &history))
    }

    /// Rotates the primary key. On failure nothing changes.
    #[pyo3(signature = (signing_seed = None, *, now = None))]
    fn rotate(
        &self,
        py: Python<'_>,
        signing_seed: Option<Bytes>,
        now: Option<u64>,
    ) -> PyResult<()> {
        let seed = signing_seed
            .as_ref()
            .map(|s| secret32("signing_seed", s))
            .transpose()?;
        let inner = &self.inner;
        py.detach(|| inner.rotate(seed.as_deref(), now))
            .into_py_result()
    }

    /// Sets the opaque credentials presented in future handshakes.
    fn set_credentials(&self, credentials: Vec<Bytes>) -> PyResult<()> {
        let credentials = credentials.iter().map(|c| c.to_vec()).collect();
        self.inner.set_credentials(credentials).into_py_result()
    }

    fn __repr__(&self) -> String {
        format!("<latchkey.Identity {}>", self.inner.identifier())
    }
}

/// Verifies exported history bytes and returns the identity's identifier.
#[pyfunction]
pub(crate) fn history_identifier(history: Bytes) -> PyResult<String> {
    latchkey_facade::history_identifier(&history).into_py_result()
}

/// Accepts `new` as the next state of the identity known as `known`; returns its identifier.
#[pyfunction]
pub(crate) fn verify_history_update(known: Bytes, new: Bytes) -> PyResult<String> {
    latchkey_facade::verify_history_update(&known, &new).into_py_result()
}

/// What the store knows about an identity, without secrets.
#[pyclass(name = "StoredIdentity", module = "latchkey", frozen, get_all)]
pub(crate) struct PyStoredIdentity {
    name: String,
    identifier: String,
    /// 1 + the number of rotations.
    changes: u32,
    /// Unix seconds.
    created_at: i64,
    updated_at: i64,
}

impl From<StoredIdentity> for PyStoredIdentity {
    fn from(s: StoredIdentity) -> Self {
        PyStoredIdentity {
            name: s.name,
            identifier: s.identifier,
            changes: s.changes,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[pymethods]
impl PyStoredIdentity {
    fn __repr__(&self) -> String {
        format!(
            "<latchkey.StoredIdentity {:?} {} ({} changes)>",
            self.name, self.identifier, self.changes
        )
    }
}

/// A pinned (or named, not yet met) peer.
#[pyclass(name = "StoredPeer", module = "latchkey", frozen)]
pub(crate) struct PyStoredPeer {
    #[pyo3(get)]
    name: Option<String>,
    #[pyo3(get)]
    identifier: String,
    /// Changes in the pinned history; 0 when named but not met yet.
    #[pyo3(get)]
    changes: u32,
    history: Vec<u8>,
    /// Unix seconds (0: not pinned yet).
    #[pyo3(get)]
    pinned_at: i64,
    #[pyo3(get)]
    updated_at: i64,
}

impl From<StoredPeer> for PyStoredPeer {
    fn from(p: StoredPeer) -> Self {
        PyStoredPeer {
            name: p.name,
            identifier: p.identifier,
            changes: p.changes,
            history: p.history,
            pinned_at: p.pinned_at,
            updated_at: p.updated_at,
        }
    }
}

#[pymethods]
impl PyStoredPeer {
    /// The pinned history's export bytes (empty when nothing is pinned yet).
    #[getter]
    fn history<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.history)
    }

    fn __repr__(&self) -> String {
        format!(
            "<latchkey.StoredPeer {:?} {} ({} changes)>",
            self.name, self.identifier, self.changes
        )
    }
}

/// The identity store the `latchkey` CLI uses (SQLite under `home`, default `$LATCHKEY_HOME`, else
/// `~/.latchkey`), created if missing.
#[pyclass(name = "IdentityStore", module = "latchkey", frozen)]
pub(crate) struct PyIdentityStore {
    pub(crate) inner: IdentityStore,
}

#[pymethods]
impl PyIdentityStore {
    #[new]
    #[pyo3(signature = (home = None))]
    fn new(py: Python<'_>, home: Option<PathBuf>) -> PyResult<Self> {
        let home = home
            .map(|h| {
                h.into_os_string().into_string().map_err(|p| {
                    error(
                        ErrorCode::InvalidArgument,
                        format!("{p:?} is not a UTF-8 path"),
                    )
                })
            })
            .transpose()?;
        let inner = py.detach(|| IdentityStore::open(home)).into_py_result()?;
        Ok(PyIdentityStore { inner })
    }

    /// The store's database file.
    #[getter]
    fn path(&self) -> String {
        self.inner.path()
    }

    /// Creates and stores a new identity (`IdentityExists` if the name is taken), its keys in `vault`:
    /// `software`, `pkcs11:module=PATH,token=LABEL[,pin-file=PATH]` or `tpm:TCTI` (see docs/VAULTS.md).
    #[pyo3(signature = (name, *, vault = "software"))]
    fn create(&self, py: Python<'_>, name: &str, vault: &str) -> PyResult<PyStoredIdentity> {
        Ok(py
            .detach(|| self.inner.create_in_vault(name, vault, None))
            .into_py_result()?
            .into())
    }

    /// The vault spec an identity's keys live in (`software`, `pkcs11:…`, `tpm:…`; never a secret).
    fn vault_of(&self, py: Python<'_>, name: &str) -> PyResult<String> {
        py.detach(|| self.inner.vault_of(name)).into_py_result()
    }

    /// `UnknownIdentity` if there is none of this name.
    fn show(&self, py: Python<'_>, name: &str) -> PyResult<PyStoredIdentity> {
        Ok(py.detach(|| self.inner.show(name)).into_py_result()?.into())
    }

    fn list(&self, py: Python<'_>) -> PyResult<Vec<PyStoredIdentity>> {
        let all = py.detach(|| self.inner.list()).into_py_result()?;
        Ok(all.into_iter().map(Into::into).collect())
    }

    /// Rotates the identity's primary key (its identifier stays the same).
    fn rotate(&self, py: Python<'_>, name: &str) -> PyResult<PyStoredIdentity> {
        Ok(py
            .detach(|| self.inner.rotate(name))
            .into_py_result()?
            .into())
    }

    /// The stored identity, with its keys in a vault of its own: for `SecureChannel` or `Node(identity=...)`.
    fn load(&self, py: Python<'_>, name: &str) -> PyResult<PyIdentity> {
        let inner = py.detach(|| self.inner.load(name)).into_py_result()?;
        Ok(PyIdentity { inner })
    }

    /// Every pinned or named peer.
    fn peers(&self, py: Python<'_>) -> PyResult<Vec<PyStoredPeer>> {
        let all = py.detach(|| self.inner.peers()).into_py_result()?;
        Ok(all.into_iter().map(Into::into).collect())
    }

    /// The peer with this name or identifier (`UnknownPeer` otherwise).
    fn peer(&self, py: Python<'_>, name: &str) -> PyResult<PyStoredPeer> {
        Ok(py.detach(|| self.inner.peer(name)).into_py_result()?.into())
    }

    /// Forgets a peer's pin and name; returns what was forgotten.
    fn forget_peer(&self, py: Python<'_>, name: &str) -> PyResult<PyStoredPeer> {
        Ok(py
            .detach(|| self.inner.forget_peer(name))
            .into_py_result()?
            .into())
    }

    /// Names the peer `identifier`; its history is pinned at first contact.
    fn name_peer(&self, py: Python<'_>, name: &str, identifier: &str) -> PyResult<()> {
        py.detach(|| self.inner.name_peer(name, identifier))
            .into_py_result()
    }

    /// Pins exported history bytes (first contact, or an update under the pinning rules).
    #[pyo3(signature = (history, name = None))]
    fn pin_history(
        &self,
        py: Python<'_>,
        history: Bytes,
        name: Option<String>,
    ) -> PyResult<PyStoredPeer> {
        Ok(py
            .detach(|| self.inner.pin_history(name, &history))
            .into_py_result()?
            .into())
    }

    fn __repr__(&self) -> String {
        format!("<latchkey.IdentityStore {}>", self.inner.path())
    }
}
