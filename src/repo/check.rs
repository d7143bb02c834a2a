//! Repository checks. rustic_core's `check()` returns `Ok` even when it found corruption
//! (trap 4): the findings are collected and judged here.

use std::str::FromStr;

use rustic_core::{CheckOptions, ReadSubsetOption};

use crate::model::ReadSubset;
use serde::Serialize;

use super::{Repo, RepoError};

/// The outcome of a check.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub location: String,
    /// `None`: structure only; otherwise how much pack data was read.
    pub read_data_subset: Option<String>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl CheckReport {
    #[must_use]
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

impl Repo {
    /// Checks the repository's structure and, with `subset`, reads and verifies pack data.
    ///
    /// # Errors
    /// Only when the check could not run at all; corruption is reported in the [`CheckReport`].
    pub fn check(&self, subset: Option<&ReadSubset>) -> Result<CheckReport, RepoError> {
        let mut opts = CheckOptions::default();
        if let Some(subset) = subset {
            let option =
                ReadSubsetOption::from_str(subset.as_str()).map_err(|e| RepoError::Storage {
                    location: self.location().to_string(),
                    operation: "reading the check's data subset",
                    message: e.to_string(),
                })?;
            opts = opts.read_data(true).read_data_subset(option);
        }
        let results = self
            .rustic()
            .check(opts)
            .map_err(|e| self.err("checking the repository", &e))?;
        let mut report = CheckReport {
            location: self.location().to_string(),
            read_data_subset: subset.map(|s| s.as_str().to_string()),
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        for (level, finding) in &results.0 {
            let text = finding.to_string();
            // `CheckErrorLevel` is not exported by rustic_core; its Debug name is stable.
            if format!("{level:?}") == "Error" {
                report.errors.push(text);
            } else {
                report.warnings.push(text);
            }
        }
        // Belt and braces: if rustic_core itself judges the results bad, never report OK.
        if results.is_ok().is_err() && report.errors.is_empty() {
            report
                .errors
                .push("rustic_core reported errors without details".into());
        }
        Ok(report)
    }
}
