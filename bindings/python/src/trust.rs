//! The one reading of the `trusted=[...]` / `trust_any=True` keyword pair that every Python entry point
//! (`SecureChannel.initiator/responder` and the `Node` methods) shares. There is no default: the caller names
//! the identifiers or says `trust_any=True`, so trust is never implied by an omitted argument.

use crate::errors::IntoPyResult;
use latchkey_core::identity::Identifier;
use latchkey_runtime::RuntimeError;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use std::str::FromStr;

/// Whom a secure channel, listener, service or mailbox trusts.
pub(crate) enum Trust {
    /// Only these identifiers (an empty list: nobody).
    Peers(Vec<Identifier>),
    /// Any peer that proves an identity, said explicitly with `trust_any=True`.
    Any,
}

impl Trust {
    /// `trusted` and `trust_any` as the caller gave them: exactly one is required. Neither raises
    /// `latchkey.Insecure`, both raise `ValueError`, a malformed identifier raises `DecodeError`.
    pub(crate) fn from_args(trusted: Option<Vec<String>>, trust_any: bool) -> PyResult<Trust> {
        match (trusted, trust_any) {
            (Some(_), true) => Err(PyValueError::new_err(
                "give either trusted=[identifiers] or trust_any=True, not both",
            )),
            (Some(list), false) => list
                .iter()
                .map(|s| Identifier::from_str(s))
                .collect::<Result<Vec<_>, _>>()
                .map(Trust::Peers)
                .into_py_result(),
            (None, true) => Ok(Trust::Any),
            (None, false) => Err(RuntimeError::Insecure(
                "no trust given: pass trusted=[identifiers] or, explicitly, trust_any=True",
            ))
            .into_py_result(),
        }
    }

    /// The same decision for the facade's sans-IO handshake.
    pub(crate) fn to_facade(&self) -> latchkey_facade::Trust {
        match self {
            Trust::Peers(ids) => {
                latchkey_facade::Trust::Identifiers(ids.iter().map(ToString::to_string).collect())
            }
            Trust::Any => latchkey_facade::Trust::AnyIdentity,
        }
    }
}
