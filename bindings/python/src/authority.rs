//! Trust operations: `Authority` (an enrollment authority acting as a stored identity: tokens, members,
//! policies, revocation, serving over TCP or through a relay mailbox), enrollment, credentials, policies and
//! delegation. Every operation is the facade's (`latchkey_facade::{AuthorityService, enroll, …}`); this
//! module converts values and errors only. Errors are the table's: `EnrollmentRefused`, `InvalidCredential`,
//! `Revoked`, `InvalidDelegation`, `CaveatWidened`, `PolicyDenied`, `PolicySyntax`, `MailboxRefused`,
//! `NotAMember`, …

use crate::aio::{self, PyCoroutine};
use crate::convert::Bytes;
use crate::errors::{error, IntoPyResult};
use latchkey_facade::{AuthorityService, CredentialInfo, ErrorCode, MemberInfo};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::IntoPyObjectExt;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// A home directory as the facade takes it (UTF-8).
fn home_of(home: Option<PathBuf>) -> PyResult<Option<String>> {
    home.map(|h| {
        h.into_os_string().into_string().map_err(|p| {
            error(
                ErrorCode::InvalidArgument,
                format!("{p:?} is not a UTF-8 path"),
            )
        })
    })
    .transpose()
}

fn pairs(map: Option<BTreeMap<String, String>>) -> Vec<(String, String)> {
    map.unwrap_or_default().into_iter().collect()
}

fn bytes_coroutine<F>(name: &'static str, future: F) -> PyCoroutine
where
    F: std::future::Future<Output = latchkey_facade::Result<Vec<u8>>> + Send + 'static,
{
    aio::coroutine_with(name, future, |py, result| {
        PyBytes::new(py, &result.into_py_result()?).into_py_any(py)
    })
}

/// A member of an authority, as its store keeps it.
#[pyclass(name = "Member", module = "latchkey", frozen, get_all)]
pub(crate) struct PyMember {
    identifier: String,
    attributes: BTreeMap<String, String>,
    /// Hex of the latest credential's id ("" if none was recorded).
    credential_id: String,
    /// Unix seconds.
    enrolled_at: i64,
}

impl From<MemberInfo> for PyMember {
    fn from(m: MemberInfo) -> Self {
        PyMember {
            identifier: m.identifier,
            attributes: m.attributes.into_iter().collect(),
            credential_id: m.credential_id,
            enrolled_at: m.enrolled_at,
        }
    }
}

#[pymethods]
impl PyMember {
    fn __repr__(&self) -> String {
        format!(
            "<latchkey.Member {} {:?}>",
            self.identifier, self.attributes
        )
    }
}

/// What a credential says (decoded, not verified: see `verify_credential`).
#[pyclass(name = "CredentialInfo", module = "latchkey", frozen, get_all)]
pub(crate) struct PyCredentialInfo {
    /// Hex of the credential's id (what `Authority.revoke_credential` takes).
    id: String,
    subject: String,
    issuer: String,
    attributes: BTreeMap<String, String>,
    /// Unix seconds: valid from `not_before` (inclusive) to `not_after` (exclusive).
    not_before: u64,
    not_after: u64,
    /// Its size in bytes.
    size: usize,
}

impl From<CredentialInfo> for PyCredentialInfo {
    fn from(c: CredentialInfo) -> Self {
        PyCredentialInfo {
            id: c.id,
            subject: c.subject,
            issuer: c.issuer,
            attributes: c.attributes.into_iter().collect(),
            not_before: c.not_before,
            not_after: c.not_after,
            size: c.size,
        }
    }
}

#[pymethods]
impl PyCredentialInfo {
    fn __repr__(&self) -> String {
        format!(
            "<latchkey.CredentialInfo {} for {} by {} {:?}>",
            self.id, self.subject, self.issuer, self.attributes
        )
    }
}

/// An enrollment authority acting as a stored identity, with its store `authority-NAME.sqlite3` in the
/// Latchkey home (the same files as `latchkey authority …`).
#[pyclass(name = "Authority", module = "latchkey", frozen)]
pub(crate) struct PyAuthority {
    inner: Arc<AuthorityService>,
}

#[pymethods]
impl PyAuthority {
    /// Opens the authority acting as identity `name` in `home` (default `$LATCHKEY_HOME`, else
    /// `~/.latchkey`). With `create=True` the identity and the store are made if missing; otherwise a name
    /// that is not an authority is `UnknownIdentity`. Credentials it issues are valid for
    /// `credential_validity_secs` (default one day).
    #[staticmethod]
    #[pyo3(signature = (name, *, home = None, create = false, credential_validity_secs = None))]
    fn open(
        py: Python<'_>,
        name: &str,
        home: Option<PathBuf>,
        create: bool,
        credential_validity_secs: Option<u64>,
    ) -> PyResult<Self> {
        let home = home_of(home)?;
        let inner = py
            .detach(|| match credential_validity_secs {
                Some(secs) => AuthorityService::open_with_validity(name, home, create, secs),
                None => AuthorityService::open(name, home, create),
            })
            .into_py_result()?;
        Ok(PyAuthority { inner })
    }

    #[getter]
    fn identifier(&self) -> String {
        self.inner.identifier()
    }

    /// The authority's exported history: what nodes (and `verify_credential`) trust it by.
    fn export_history<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.export_history())
    }

    /// A new one-time enrollment token (`lkt…`; a secret: whoever holds it may enroll) good for `uses`
    /// enrollments within `ttl_secs`, giving members `attributes`.
    #[pyo3(signature = (attributes = None, *, ttl_secs = 3600, uses = 1))]
    fn create_token(
        &self,
        py: Python<'_>,
        attributes: Option<BTreeMap<String, String>>,
        ttl_secs: u64,
        uses: u32,
    ) -> PyResult<String> {
        let attributes = pairs(attributes);
        py.detach(|| self.inner.create_token(attributes, ttl_secs, uses))
            .into_py_result()
    }

    /// Revokes an identifier: it can no longer refresh, and nodes following the authority close its
    /// channels. Returns the new revocation sequence number.
    fn revoke_identifier(&self, py: Python<'_>, identifier: &str) -> PyResult<u64> {
        py.detach(|| self.inner.revoke_identifier(identifier))
            .into_py_result()
    }

    /// Revokes one credential by its id (32 hex digits). Returns the new revocation sequence number.
    fn revoke_credential(&self, py: Python<'_>, credential_id: &str) -> PyResult<u64> {
        py.detach(|| self.inner.revoke_credential(credential_id))
            .into_py_result()
    }

    /// The members, in enrollment order.
    fn members(&self, py: Python<'_>) -> PyResult<Vec<PyMember>> {
        let members = py.detach(|| self.inner.members()).into_py_result()?;
        Ok(members.into_iter().map(Into::into).collect())
    }

    /// SQLite's integrity check of the store (`StorageError` if it fails).
    fn integrity_check(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.integrity_check()).into_py_result()
    }

    /// Stores policy `name` (parsed first: a syntax error is `PolicySyntax` naming line and column).
    fn set_policy(&self, py: Python<'_>, name: &str, text: &str) -> PyResult<()> {
        py.detach(|| self.inner.set_policy(name, text))
            .into_py_result()
    }

    /// The text of policy `name` (`InvalidArgument` if there is none).
    fn policy(&self, py: Python<'_>, name: &str) -> PyResult<String> {
        py.detach(|| self.inner.policy(name)).into_py_result()
    }

    /// Serves online enrollment, refresh and revocations (and X3DH enrollment) on TCP `listen`
    /// (`HOST:PORT`; port 0 picks one); returns the bound address. Serves until the process exits.
    fn serve(&self, listen: String) -> PyCoroutine {
        let inner = self.inner.clone();
        aio::coroutine("Authority.serve", async move { inner.serve(listen).await })
    }

    /// Serves X3DH enrollment through the mailbox of the relay at TCP `relay_address` (a relay with a
    /// mailbox, e.g. `latchkey relay run --mailbox FILE`), also what devices deposited while it was down;
    /// reconnects after failures until the process exits.
    fn serve_via_relay(&self, relay_address: String) -> PyCoroutine {
        let inner = self.inner.clone();
        aio::coroutine_none("Authority.serve_via_relay", async move {
            inner.serve_via_relay(relay_address).await
        })
    }

    fn __repr__(&self) -> String {
        format!("<latchkey.Authority {}>", self.inner.identifier())
    }
}

/// Enrolls the stored identity `name` with the authority at TCP `authority_address` using `token` (which
/// names the authority: another identity answering is refused). Saves the credential as
/// `credentials/NAME.cred` in `home` (presented by nodes acting as `name`) and returns its bytes. A used-up,
/// expired or unknown token is `EnrollmentRefused`.
#[pyfunction]
#[pyo3(signature = (name, authority_address, token, *, home = None))]
pub(crate) fn enroll(
    name: String,
    authority_address: String,
    token: String,
    home: Option<PathBuf>,
) -> PyResult<PyCoroutine> {
    let home = home_of(home)?;
    Ok(bytes_coroutine(
        "enroll",
        latchkey_facade::enroll(name, home, authority_address, token),
    ))
}

/// Enrolls the stored identity `name` through the mailbox of the relay at TCP `relay_address` (X3DH: one
/// request only the authority can read; the authority may be offline), waiting up to `wait_secs` for the
/// answer (`Timeout` after). Saves and returns the credential like `enroll`.
#[pyfunction]
#[pyo3(signature = (name, relay_address, token, *, home = None, wait_secs = 30))]
pub(crate) fn enroll_via_relay(
    name: String,
    relay_address: String,
    token: String,
    home: Option<PathBuf>,
    wait_secs: u64,
) -> PyResult<PyCoroutine> {
    let home = home_of(home)?;
    Ok(bytes_coroutine(
        "enroll_via_relay",
        latchkey_facade::enroll_via_relay(name, home, relay_address, token, wait_secs),
    ))
}

/// The credential saved for identity `name` (`UnknownIdentity` if it has none).
#[pyfunction]
#[pyo3(signature = (name, *, home = None))]
pub(crate) fn stored_credential<'py>(
    py: Python<'py>,
    name: &str,
    home: Option<PathBuf>,
) -> PyResult<Bound<'py, PyBytes>> {
    let home = home_of(home)?;
    let bytes = py
        .detach(|| latchkey_facade::stored_credential(name, home))
        .into_py_result()?;
    Ok(PyBytes::new(py, &bytes))
}

/// Decodes a credential (`DecodeError` if it does not parse); checks nothing else.
#[pyfunction]
pub(crate) fn credential_info(credential: Bytes) -> PyResult<PyCredentialInfo> {
    Ok(latchkey_facade::credential_info(&credential)
        .into_py_result()?
        .into())
}

/// Verifies a credential as a node would when the identity whose exported history is `subject_history`
/// presents it: issued by the authority whose exported history is `authority_history`, valid at `now`
/// (Unix seconds; default the clock), about that subject and history. Returns the attributes it vouches
/// for; raises `InvalidCredential` otherwise.
#[pyfunction]
#[pyo3(signature = (credential, authority_history, subject_history, *, now = None))]
pub(crate) fn verify_credential(
    py: Python<'_>,
    credential: Bytes,
    authority_history: Bytes,
    subject_history: Bytes,
    now: Option<u64>,
) -> PyResult<BTreeMap<String, String>> {
    let attributes = py
        .detach(|| {
            latchkey_facade::verify_credential(
                &credential,
                &authority_history,
                &subject_history,
                now,
            )
        })
        .into_py_result()?;
    Ok(attributes.into_iter().collect())
}

/// Parses a policy (docs/POLICY.md). A syntax error is `PolicySyntax`, whose message starts `line L,
/// column C:` and shows the line with a caret under the column.
#[pyfunction]
pub(crate) fn parse_policy(policy: &str) -> PyResult<()> {
    latchkey_facade::parse_policy(policy).into_py_result()
}

/// Evaluates `policy` against `subject.*`, `resource.*` and `action.*` attributes: returns if it allows,
/// raises `PolicyDenied` if not and `PolicySyntax` if it does not parse.
#[pyfunction]
#[pyo3(signature = (policy, *, subject = None, resource = None, action = None))]
pub(crate) fn check_policy(
    policy: &str,
    subject: Option<BTreeMap<String, String>>,
    resource: Option<BTreeMap<String, String>>,
    action: Option<BTreeMap<String, String>>,
) -> PyResult<()> {
    latchkey_facade::check_policy(policy, pairs(subject), pairs(resource), pairs(action))
        .into_py_result()
}

/// The stored identity `owner` grants `resources` × `actions` until `not_after` (Unix seconds, exclusive)
/// to the identity whose exported history is `delegate_history`. Returns the one-link chain.
#[pyfunction]
#[pyo3(signature = (owner, delegate_history, resources, actions, not_after, *, home = None))]
pub(crate) fn delegate_issue<'py>(
    py: Python<'py>,
    owner: &str,
    delegate_history: Bytes,
    resources: Vec<String>,
    actions: Vec<String>,
    not_after: u64,
    home: Option<PathBuf>,
) -> PyResult<Bound<'py, PyBytes>> {
    let home = home_of(home)?;
    let chain = py
        .detach(|| {
            latchkey_facade::delegate_issue(
                owner,
                home,
                &delegate_history,
                resources,
                actions,
                not_after,
            )
        })
        .into_py_result()?;
    Ok(PyBytes::new(py, &chain))
}

/// The stored identity `holder` (the chain's last delegate) passes a narrower grant on to the identity
/// whose exported history is `delegate_history`. A wider resource, action or time is `CaveatWidened`.
#[pyfunction]
#[pyo3(signature = (holder, chain, delegate_history, resources, actions, not_after, *, home = None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn delegate_attenuate<'py>(
    py: Python<'py>,
    holder: &str,
    chain: Bytes,
    delegate_history: Bytes,
    resources: Vec<String>,
    actions: Vec<String>,
    not_after: u64,
    home: Option<PathBuf>,
) -> PyResult<Bound<'py, PyBytes>> {
    let home = home_of(home)?;
    let chain = py
        .detach(|| {
            latchkey_facade::delegate_attenuate(
                holder,
                home,
                &chain,
                &delegate_history,
                resources,
                actions,
                not_after,
            )
        })
        .into_py_result()?;
    Ok(PyBytes::new(py, &chain))
}

/// Verifies a chain offline: `presenter` (an identifier) may do `action` on `resource` at `now` (Unix
/// seconds; default the clock), trusting the owner whose exported history is `owner_history`. Raises
/// `InvalidDelegation` (forged or broken chain, wrong presenter, expired, not granted) or `CaveatWidened`.
#[pyfunction]
#[pyo3(signature = (chain, owner_history, presenter, resource, action, *, now = None))]
pub(crate) fn delegate_verify(
    py: Python<'_>,
    chain: Bytes,
    owner_history: Bytes,
    presenter: &str,
    resource: &str,
    action: &str,
    now: Option<u64>,
) -> PyResult<()> {
    py.detach(|| {
        latchkey_facade::delegate_verify(&chain, &owner_history, presenter, resource, action, now)
    })
    .into_py_result()
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyAuthority>()?;
    m.add_class::<PyMember>()?;
    m.add_class::<PyCredentialInfo>()?;
    m.add_function(wrap_pyfunction!(enroll, m)?)?;
    m.add_function(wrap_pyfunction!(enroll_via_relay, m)?)?;
    m.add_function(wrap_pyfunction!(stored_credential, m)?)?;
    m.add_function(wrap_pyfunction!(credential_info, m)?)?;
    m.add_function(wrap_pyfunction!(verify_credential, m)?)?;
    m.add_function(wrap_pyfunction!(parse_policy, m)?)?;
    m.add_function(wrap_pyfunction!(check_policy, m)?)?;
    m.add_function(wrap_pyfunction!(delegate_issue, m)?)?;
    m.add_function(wrap_pyfunction!(delegate_attenuate, m)?)?;
    m.add_function(wrap_pyfunction!(delegate_verify, m)?)?;
    Ok(())
}
