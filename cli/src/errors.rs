//! The CLI's failures: each has a message for people and an exit code for scripts.

use latchkey_runtime::RuntimeError;

/// Exit codes (documented in `latchkey --help`).
pub const EXIT_FAILURE: i32 = 1;
/// Also what clap exits with on a malformed command line.
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_UNKNOWN_IDENTITY: i32 = 3;
pub const EXIT_UNREACHABLE: i32 = 4;
pub const EXIT_REFUSED: i32 = 5;
pub const EXIT_BAD_ADDRESS: i32 = 6;

#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub kind: &'static str,
    pub message: String,
}

impl CliError {
    pub fn new(code: i32, kind: &'static str, message: impl Into<String>) -> Self {
        CliError {
            code,
            kind,
            message: message.into(),
        }
    }

    /// Classifies a runtime error; `target` names the peer or address involved, for the message.
    pub fn from_runtime(e: RuntimeError, target: &str) -> Self {
        use RuntimeError as E;
        match &e {
            E::UnknownIdentity(_) => {
                CliError::new(EXIT_UNKNOWN_IDENTITY, "unknown_identity", e.to_string())
            }
            E::BadAddress(_) => CliError::new(EXIT_BAD_ADDRESS, "bad_address", e.to_string()),
            E::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::HostUnreachable
                        | std::io::ErrorKind::NetworkUnreachable
                ) =>
            {
                CliError::new(
                    EXIT_UNREACHABLE,
                    "unreachable",
                    format!("cannot reach {target}: {io}"),
                )
            }
            E::Io(io) if io.kind() == std::io::ErrorKind::AddrInUse => CliError::new(
                EXIT_BAD_ADDRESS,
                "bad_address",
                format!("cannot listen on {target}: {io}"),
            ),
            E::Io(io) if io.kind() == std::io::ErrorKind::AddrNotAvailable => {
                CliError::new(EXIT_BAD_ADDRESS, "bad_address", format!("{target}: {io}"))
            }
            E::Timeout(_) | E::DeliveryFailed(_) | E::UnknownAddress(_) => CliError::new(
                EXIT_UNREACHABLE,
                "unreachable",
                format!("{target} did not answer: {e}"),
            ),
            // The relay said at once that nobody is registered under that name: unreachable, fast.
            E::Refused(why) if why == latchkey_core::route::relay::NO_SUCH_NAME => CliError::new(
                EXIT_UNREACHABLE,
                "unreachable",
                format!("cannot reach {target}: the relay has no such name"),
            ),
            E::Untrusted(_) | E::Refused(_) | E::AccessDenied { .. } => CliError::new(
                EXIT_REFUSED,
                "refused",
                format!("authentication refused with {target}: {e}"),
            ),
            E::Core(c) if c.name() == "UntrustedPeer" => CliError::new(
                EXIT_REFUSED,
                "refused",
                format!("authentication refused with {target}: {e}"),
            ),
            // The runtime refuses configurations that would leave a door open; the command line asked for one.
            E::Insecure(_) => CliError::new(EXIT_USAGE, "usage", e.to_string()),
            _ => CliError::new(EXIT_FAILURE, "error", e.to_string()),
        }
    }
}

impl From<RuntimeError> for CliError {
    fn from(e: RuntimeError) -> Self {
        CliError::from_runtime(e, "peer")
    }
}
