//! Access control: who is acting and with which role ([`roles`]), which operations are
//! dangerous ([`operation`]), second factors ([`totp`]), and the guard that every dangerous
//! operation passes — from the CLI or the control socket — before a job runs ([`guard`]):
//! the person's role, their second factor, four-eyes approval under `[access] enforce`, and the
//! audited, alerted `--break-glass` exception. Results of approved operations are handed to
//! their requester ([`handoff`]).

pub mod guard;
pub mod handoff;
pub mod operation;
pub mod roles;
pub mod totp;

pub use guard::{Grant, Supplied};
pub use operation::Operation;
pub use roles::{Person, Role, identify, local_person};

use crate::catalog::CatalogError;

/// Why an operation was not allowed. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(
        "{who} may not {action}: it needs the {needs} role; ask an administrator to add you to [access] in {config}"
    )]
    Denied {
        who: String,
        action: String,
        needs: &'static str,
        config: String,
    },
    #[error(
        "{action} needs {user}'s second factor: enter the 6-digit code from the authenticator app when asked (or pipe it in with --totp-stdin)"
    )]
    FactorRequired { user: String, action: String },
    #[error(
        "{user} has no second factor and [access] two-factor = \"required\": an administrator enrols them with `custodian access totp enroll {user}`"
    )]
    NotEnrolled { user: String },
    #[error(
        "that code is not valid for {user} now (check the authenticator's clock); {} left before a 15-minute lockout", crate::model::count(*.left as usize, "attempt")
    )]
    FactorRejected { user: String, left: u32 },
    #[error(
        "that code was already used ({user}'s codes are single-use); wait for the next one and try again"
    )]
    FactorReplayed { user: String },
    #[error("too many attempts: wait {seconds} s after a wrong code before trying again")]
    RateLimited { seconds: u64 },
    #[error(
        "{user} is locked out after repeated wrong codes until {until}; wait, or have another administrator re-enrol them"
    )]
    LockedOut { user: String, until: String },
    #[error(
        "this {action} needs a second administrator ([access] enforce): ask one to run `custodian approve {id}` before {expires}, then run the same command again with --approval {id}"
    )]
    ApprovalRequired {
        id: String,
        action: String,
        expires: String,
    },
    #[error("{0}")]
    ApprovalRefused(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Key(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl AccessError {
    /// Stable error code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Denied { .. } => "access.denied",
            Self::FactorRequired { .. } => "second_factor.required",
            Self::NotEnrolled { .. } => "second_factor.not_enrolled",
            Self::FactorRejected { .. } => "second_factor.invalid",
            Self::FactorReplayed { .. } => "second_factor.replayed",
            Self::RateLimited { .. } => "second_factor.rate_limited",
            Self::LockedOut { .. } => "second_factor.locked",
            Self::ApprovalRequired { .. } => "approval.required",
            Self::ApprovalRefused(_) => "approval.refused",
            Self::Usage(_) => "usage",
            Self::Key(_) => "access.key",
            Self::Catalog(e) => e.code(),
        }
    }
}
