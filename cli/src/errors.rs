//! The CLI's failures: each is a [`latchkey_facade::ErrorCode`] (the one error table every Latchkey surface
//! shares) with a message for people. The exit code and the `kind` a script sees come from the code, here and
//! nowhere else: commands never pick an exit code themselves.

use latchkey_facade::{Error, ErrorCode};

/// Exit codes (documented in `latchkey --help` and docs/RUNTIME.md "CLI").
pub const EXIT_FAILURE: i32 = 1;
/// Also what clap exits with on a malformed command line.
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_UNKNOWN_IDENTITY: i32 = 3;
pub const EXIT_UNREACHABLE: i32 = 4;
pub const EXIT_REFUSED: i32 = 5;
pub const EXIT_BAD_ADDRESS: i32 = 6;
pub const EXIT_ADDRESS_IN_USE: i32 = 7;

/// The one mapping from the error table to what a script sees: the exit code and the `kind` of `--json`
/// error records.
pub fn exit_for(code: ErrorCode) -> (i32, &'static str) {
    use ErrorCode as C;
    match code {
        // The command line asked for something invalid (or for a configuration that leaves a door open).
        C::InvalidArgument | C::Insecure | C::NullArgument | C::InvalidUtf8 => {
            (EXIT_USAGE, "usage")
        }
        C::UnknownIdentity => (EXIT_UNKNOWN_IDENTITY, "unknown_identity"),
        C::UnknownPeer => (EXIT_UNKNOWN_IDENTITY, "unknown_peer"),
        // A pinned peer's history went back, forked, or was rotated by an expired key.
        C::HistoryRollback | C::HistoryFork | C::KeyLifetimeExceeded => (EXIT_REFUSED, "refused"),
        C::TransportError | C::Timeout | C::DeliveryFailed | C::UnknownAddress => {
            (EXIT_UNREACHABLE, "unreachable")
        }
        C::UntrustedPeer | C::Refused | C::AccessDenied => (EXIT_REFUSED, "refused"),
        // Trust: an enrollment, a credential, a policy or a mailbox said no.
        C::EnrollmentRefused
        | C::NotAMember
        | C::UnsupportedSuite
        | C::MailboxRefused
        | C::InvalidCredential
        | C::UntrustedIssuer
        | C::SubjectMismatch
        | C::Revoked
        | C::PolicyDenied
        | C::InvalidDelegation
        | C::CaveatWidened
        | C::StaleRevocationList
        | C::Expired => (EXIT_REFUSED, "refused"),
        C::PolicySyntax => (EXIT_USAGE, "usage"),
        C::BadAddress => (EXIT_BAD_ADDRESS, "bad_address"),
        C::AddressInUse => (EXIT_ADDRESS_IN_USE, "address_in_use"),
        C::StorageError => (EXIT_FAILURE, "storage"),
        C::IdentityExists => (EXIT_FAILURE, "identity_exists"),
        // A hardware vault (PKCS#11 token, TPM) failed: the name says which way (PinIncorrect, ...).
        C::PinIncorrect
        | C::PinLocked
        | C::ModuleNotFound
        | C::TokenNotFound
        | C::KeyNotExtractable
        | C::DeviceUnavailable
        | C::HardwareUnsupported => (EXIT_FAILURE, "hardware"),
        _ => (EXIT_FAILURE, "error"),
    }
}

/// The exit-code table as `latchkey --help` prints it.
pub const EXIT_CODES_HELP: &str = "Exit codes: 0 success, 1 other failure, 2 usage error (e.g. neither \
--trust nor --trust-any, an invalid identity name), 3 unknown identity or peer name, 4 peer unreachable or not answering, \
5 authentication or access refused (including a relay refusing a name, and a pinned peer presenting a \
rolled-back, forked or expired-key history: name HistoryRollback, HistoryFork, KeyLifetimeExceeded), 6 bad address, 7 address already in \
use. With --json, an error is one JSON object on stderr: {\"error\", \"kind\", \"name\", \"code\"} (code: the \
exit code; name: the error's stable name).";

#[derive(Debug)]
pub struct CliError {
    /// Its entry in the one error table.
    pub code: ErrorCode,
    pub message: String,
}

impl CliError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
        }
    }

    /// A usage error: the command line is wrong, and the message says how to fix it.
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::new(ErrorCode::InvalidArgument, message)
    }

    pub fn exit_code(&self) -> i32 {
        exit_for(self.code).0
    }

    pub fn kind(&self) -> &'static str {
        exit_for(self.code).1
    }

    /// A facade error from work involving `target` (a peer, a relay, an address), phrased for people by what
    /// kind of failure it is.
    pub fn involving(e: Error, target: &str) -> Self {
        let message = match exit_for(e.code()).0 {
            EXIT_UNREACHABLE if e.code() == ErrorCode::TransportError => {
                format!("cannot reach {target}: {e}")
            }
            EXIT_UNREACHABLE => format!("{target} did not answer: {e}"),
            EXIT_REFUSED => format!("authentication refused with {target}: {e}"),
            EXIT_ADDRESS_IN_USE => format!("cannot listen on {target}: {e}"),
            EXIT_BAD_ADDRESS if !e.message().contains(target) => format!("{target}: {e}"),
            _ => e.to_string(),
        };
        CliError::new(e.code(), message)
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::new(e.code(), e.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_has_an_exit_code_and_the_classes_are_distinct() {
        for code in ErrorCode::ALL {
            let (exit, kind) = exit_for(*code);
            assert!((1..=7).contains(&exit), "{code:?}");
            assert!(!kind.is_empty());
        }
        assert_eq!(exit_for(ErrorCode::AddressInUse).0, EXIT_ADDRESS_IN_USE);
        assert_ne!(
            exit_for(ErrorCode::AddressInUse),
            exit_for(ErrorCode::BadAddress)
        );
        assert_eq!(exit_for(ErrorCode::InvalidArgument).0, EXIT_USAGE);
    }
}
