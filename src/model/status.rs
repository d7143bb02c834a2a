//! Typed outcomes of jobs: each report says what happened with one of these, never a string to
//! compare; `is_success` is the one judgement the CLI, the daemon and the scheduler share.

use serde::Serialize;

/// A run that either did what it was asked or did not (backups, copies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Succeeded,
    Failed,
}

/// What `init` found or did for a location.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitStatus {
    Created,
    Exists,
    Failed,
}

/// What a repository check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Everything read is intact.
    Ok,
    /// The check ran and found damage.
    Damaged,
    /// The check could not run.
    Failed,
}

/// How a restore drill ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DrillStatus {
    Passed,
    Failed,
}

macro_rules! status {
    ($t:ty, ok: [$($ok:ident),+], names: [$($v:ident => $name:literal),+]) => {
        impl $t {
            /// Whether this is what was asked for.
            #[must_use]
            pub const fn is_success(self) -> bool {
                matches!(self, $(Self::$ok)|+)
            }

            /// As in `--json` output and the catalog.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$v => $name),+
                }
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

status!(RunStatus, ok: [Succeeded], names: [Succeeded => "succeeded", Failed => "failed"]);
status!(InitStatus, ok: [Created, Exists], names: [Created => "created", Exists => "exists", Failed => "failed"]);
status!(CheckStatus, ok: [Ok], names: [Ok => "ok", Damaged => "damaged", Failed => "failed"]);
status!(DrillStatus, ok: [Passed], names: [Passed => "passed", Failed => "failed"]);
