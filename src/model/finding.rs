//! What `custodian doctor` found: one check about one thing, how it stands, and what to do.

use serde::Serialize;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    /// Works, but is a risk or will break later.
    Warn,
    /// Broken now.
    Fail,
    /// Could not be checked here (and why is in the message).
    Skipped,
}

impl Verdict {
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
            Self::Skipped => "skipped",
        }
    }
}

/// One finding.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// The family of check: `config`, `sandbox`, `socket`, `credentials`, `tools`, `tls`,
    /// `clock`, `space` (doctor); `archive` (archive check).
    pub check: &'static str,
    /// What it is about (a source, a location, a path).
    pub subject: String,
    pub verdict: Verdict,
    pub message: String,
    /// What to do, when it is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    #[must_use]
    pub fn ok(check: &'static str, subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            check,
            subject: subject.into(),
            verdict: Verdict::Ok,
            message: message.into(),
            fix: None,
        }
    }

    #[must_use]
    pub fn problem(
        check: &'static str,
        verdict: Verdict,
        subject: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            check,
            subject: subject.into(),
            verdict,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
}
