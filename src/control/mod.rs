//! The control socket's protocol, shared by its two ends: `custodian ctl` (the client, here)
//! and the daemon (which serves it, in `daemon::socket`). One JSON request line, one JSON
//! response line; the caller's identity is never part of a request — the daemon takes it from
//! the socket's peer credentials.

pub mod protocol;

use std::path::{Path, PathBuf};

pub use protocol::{MAX_REQUEST, Request, Response, call};

/// Where the CLI finds the daemon: `--socket`, `$CUSTODIAN_SOCKET`, the configuration's
/// `control-socket` (read alone: a `ctl` user need not be able to read the secrets the rest of
/// the configuration names), or the default.
///
/// # Errors
/// When the configuration exists but cannot be read or parsed, a sentence saying so and what
/// to do.
pub fn socket_path(explicit: Option<PathBuf>, config: &Path) -> Result<PathBuf, String> {
    if let Some(p) = explicit.or_else(|| std::env::var_os("CUSTODIAN_SOCKET").map(PathBuf::from)) {
        return Ok(p);
    }
    Ok(crate::config::control_socket(config)?
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONTROL_SOCKET)))
}
