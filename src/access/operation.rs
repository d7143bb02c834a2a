//! Dangerous operations: what needs a second factor and, under `[access] enforce`, a second
//! administrator. Each says in words what will run (for the approver), and has a fingerprint
//! (the sha256 of its canonical form) that an approval is bound to: `--approval ID` works only
//! for exactly the operation that was approved.

use serde::Serialize;

/// An operation that can destroy, overwrite or expose data, or weaken the controls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Operation {
    /// A restore anywhere but scratch.
    Restore {
        snapshot: String,
        source: Option<String>,
        location: Option<String>,
        /// The file or database URL (never with a password).
        target: String,
        force: bool,
    },
    /// `forget --apply`: snapshots the policy no longer keeps are deleted.
    Forget { location: Option<String> },
    /// `prune --apply`: data nothing references is deleted.
    Prune { location: Option<String> },
    /// A new report signing key replaces the one managers verify with.
    #[serde(rename = "keys.replace")]
    KeysReplace,
    /// The erasure ledger is extended or replaced from a file.
    #[serde(rename = "erasure.import")]
    ErasureImport { source: String, file: String },
    /// Someone's second factor is replaced or removed.
    #[serde(rename = "totp.change")]
    TotpChange { user: String, remove: bool },
    /// Approving another administrator's request.
    Approve { request: String },
}

impl Operation {
    /// The action's name in the audit log and in approvals.
    #[must_use]
    pub const fn action(&self) -> &'static str {
        match self {
            Self::Restore { .. } => "restore",
            Self::Forget { .. } => "forget",
            Self::Prune { .. } => "prune",
            Self::KeysReplace => "keys.replace",
            Self::ErasureImport { .. } => "erasure.import",
            Self::TotpChange { .. } => "totp.change",
            Self::Approve { .. } => "approve",
        }
    }

    /// What will run, in one sentence an approver can check.
    #[must_use]
    pub fn summary(&self) -> String {
        let all = |l: &Option<String>| {
            l.as_deref()
                .map_or_else(|| "every location".to_string(), |l| format!("location {l}"))
        };
        match self {
            Self::Restore {
                snapshot,
                source,
                location,
                target,
                force,
            } => format!(
                "restore snapshot {snapshot}{}{} into {target}{}",
                source
                    .as_deref()
                    .map(|s| format!(" of source {s}"))
                    .unwrap_or_default(),
                location
                    .as_deref()
                    .map(|l| format!(" from location {l}"))
                    .unwrap_or_default(),
                if *force {
                    ", REPLACING what is there (--force)"
                } else {
                    " (only if it is empty or absent)"
                }
            ),
            Self::Forget { location } => format!(
                "delete the snapshots the retention policy no longer keeps in {}",
                all(location)
            ),
            Self::Prune { location } => format!(
                "delete the snapshots the retention policy no longer keeps and the data nothing references in {}",
                all(location)
            ),
            Self::KeysReplace => {
                "replace the key that signs compliance reports (managers must be given the new public key)".into()
            }
            Self::ErasureImport { source, file } => {
                format!("import erasure requests or a whole ledger for source {source} from {file}")
            }
            Self::TotpChange { user, remove } => format!(
                "{} the second factor of {user}",
                if *remove { "remove" } else { "replace" }
            ),
            Self::Approve { request } => format!("approve request {request}"),
        }
    }

    /// The sha256 of the operation's canonical JSON: what an approval is bound to.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        crate::model::sha256_hex(serde_json::to_string(self).unwrap_or_default().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::Operation;

    #[test]
    fn an_approval_is_bound_to_exactly_one_operation() {
        let restore = |target: &str, force: bool| Operation::Restore {
            snapshot: "latest".into(),
            source: Some("crm".into()),
            location: None,
            target: target.into(),
            force,
        };
        let a = restore("postgres://db2/crm", false);
        assert_eq!(
            a.fingerprint(),
            restore("postgres://db2/crm", false).fingerprint()
        );
        assert_ne!(
            a.fingerprint(),
            restore("postgres://db2/crm", true).fingerprint()
        );
        assert_ne!(
            a.fingerprint(),
            restore("postgres://db3/crm", false).fingerprint()
        );
        assert!(restore("x", true).summary().contains("REPLACING"));
        assert_eq!(Operation::KeysReplace.action(), "keys.replace");
    }
}
