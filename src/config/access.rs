//! `[access]`: who may do what (roles for the control socket and for dangerous operations from
//! the CLI), the second factor, four-eyes enforcement and approvals.

use std::path::Path;
use std::time::Duration;

use super::diagnostic::{Diagnostics, Severity};
use super::document::Document;
use super::fields::secret_ref;
use super::policy::duration;
use super::raw::RawAccess;
use crate::secret::SecretRef;

/// When a second factor (TOTP) is asked for a dangerous operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TwoFactor {
    /// Everyone doing a dangerous operation must be enrolled and give a current code.
    Required,
    /// Whoever is enrolled must give a code; who is not acts without one (and the report's
    /// ACCESS rule says so).
    #[default]
    Optional,
    /// Never asked (the report's ACCESS rule still says which operations went without).
    Off,
}

impl TwoFactor {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Required => "required",
            Self::Optional => "optional",
            Self::Off => "off",
        }
    }
}

/// Roles, entries being user names or `@group`, and how dangerous operations are guarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub administrators: Vec<String>,
    pub operators: Vec<String>,
    pub viewers: Vec<String>,
    /// How long a four-eyes approval request stays valid.
    pub approval_expiry: Duration,
    /// Group owning the control socket.
    pub socket_group: Option<String>,
    pub two_factor: TwoFactor,
    /// Dangerous operations from the CLI need an approved request (or `--break-glass`), for
    /// root too.
    pub enforce: bool,
    /// The key that encrypts enrolled TOTP secrets; default `STATE/keys/totp.key`, created on
    /// first enrolment.
    pub totp_key: Option<SecretRef>,
}

pub(super) fn access(
    doc: &Document<'_>,
    diags: &mut Diagnostics,
    base: &Path,
    raw: RawAccess,
) -> Access {
    let roles = [
        ("access.administrators", &raw.administrators),
        ("access.operators", &raw.operators),
        ("access.viewers", &raw.viewers),
    ];
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for (key, list) in roles {
        for (i, entry) in list.iter().enumerate() {
            let name = entry.strip_prefix('@').unwrap_or(entry);
            if name.is_empty() || name.contains(char::is_whitespace) {
                let k = format!("{key}.{i}");
                let line = doc.line(diags, &k);
                diags.push(
                    Severity::Error,
                    line,
                    k,
                    format!("`{entry}` is not a user name or `@group`"),
                );
            }
            if let Some((other, _)) = seen.iter().find(|(_, e)| *e == entry.as_str()) {
                let k = format!("{key}.{i}");
                let line = doc.line(diags, &k);
                diags.push(
                    Severity::Warning,
                    line,
                    k,
                    format!("`{entry}` is also listed in {other}; the highest role applies"),
                );
            }
            seen.push((key, entry));
        }
    }
    let two_factor = match raw.two_factor.as_deref() {
        None | Some("optional") => TwoFactor::Optional,
        Some("required") => TwoFactor::Required,
        Some("off") => TwoFactor::Off,
        Some(other) => {
            let line = doc.line(diags, "access.two-factor");
            diags.push(
                Severity::Error,
                line,
                "access.two-factor".to_string(),
                format!("`{other}` is not a two-factor policy; write \"required\", \"optional\" or \"off\""),
            );
            TwoFactor::Optional
        }
    };
    let totp_key = secret_ref(doc, diags, "access.totp-key", raw.totp_key(), base, false);
    Access {
        approval_expiry: duration(
            doc,
            diags,
            "access.approval-expiry",
            raw.approval_expiry.as_deref(),
        )
        .unwrap_or(Duration::from_secs(3600)),
        administrators: raw.administrators,
        operators: raw.operators,
        viewers: raw.viewers,
        socket_group: raw.socket_group,
        two_factor,
        enforce: raw.enforce.unwrap_or(false),
        totp_key,
    }
}
