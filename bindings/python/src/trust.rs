//! The one reading of the `trusted=[...]` / `trust_any=True` keyword pair that every Python entry point
//! (`SecureChannel.initiator/responder` and the `Node` methods) shares. There is no default: the caller names
//! the identifiers or says `trust_any=True`, so trust is never implied by an omitted argument. What a trust
//! decision means (handshake policy, flow rules) is the facade's business.

use crate::errors::error;
use latchkey_facade::{ErrorCode, Trust};
use pyo3::prelude::*;

/// `trusted` and `trust_any` as the caller gave them: exactly one is required. Neither raises
/// `latchkey.Insecure`, both raise `InvalidArgument` (a `ValueError`); a malformed identifier raises
/// `DecodeError` where the facade reads it.
pub(crate) fn from_args(trusted: Option<Vec<String>>, trust_any: bool) -> PyResult<Trust> {
    from_named_args(trusted, trust_any, "trusted", "trust_any")
}

/// The same pair under other keyword names (e.g. `relay_trusted=` / `relay_trust_any=`).
pub(crate) fn from_named_args(
    trusted: Option<Vec<String>>,
    trust_any: bool,
    list_name: &str,
    any_name: &str,
) -> PyResult<Trust> {
    match (trusted, trust_any) {
        (Some(_), true) => Err(error(
            ErrorCode::InvalidArgument,
            format!("give either {list_name}=[identifiers] or {any_name}=True, not both"),
        )),
        (Some(list), false) => Ok(Trust::Identifiers(list)),
        (None, true) => Ok(Trust::AnyIdentity),
        (None, false) => Err(error(
            ErrorCode::Insecure,
            format!(
                "no trust given: pass {list_name}=[identifiers] or, explicitly, {any_name}=True"
            ),
        )),
    }
}
