//! The stable exit codes of every command (documented in the README).

use std::process::ExitCode;

/// Stable exit codes (documented in the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Everything asked for succeeded.
    Ok = 0,
    /// A job ran and failed (or part of it did); details are in the output and the catalog.
    JobFailed = 1,
    /// The configuration or the command line is wrong; nothing was done.
    Usage = 2,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        Self::from(e as u8)
    }
}
