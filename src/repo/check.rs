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
    /// One sentence per error, naming the pack where there is one.
    pub errors: Vec<String>,
    /// The damaged pack named by each error (same order), when it names one.
    #[serde(skip)]
    pub packs: Vec<Option<String>>,
    pub warnings: Vec<String>,
}

/// One sentence for a check finding. rustic_core prints a finding with its whole error chain
/// (context, causes, and a backtrace when `RUST_BACKTRACE` is set); the operator gets what
/// failed, why, and what to do — the rest goes to the debug log. Returns the sentence and the
/// damaged pack it names, if any.
pub(crate) fn finding_sentence(location: &str, finding: &str) -> (String, Option<String>) {
    tracing::debug!(location, finding, "check finding (rustic_core)");
    let first = finding.lines().next().unwrap_or_default();
    let head = first
        .split(" : `rustic_core` experienced")
        .next()
        .unwrap_or(first)
        .trim()
        .trim_end_matches(':')
        .trim();
    let message = finding
        .lines()
        .skip_while(|l| l.trim() != "Message:")
        .nth(1)
        .map(|l| l.trim().trim_end_matches('.').to_string());
    let pack = head.find("pack ").and_then(|i| {
        let id: String = head[i + 5..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        (id.len() >= 8).then_some(id)
    });
    let why = message
        .map(|m| {
            let mut m = m.to_lowercase();
            if m.contains("mac check failed") {
                m.push_str(": its content fails authentication, damaged or tampered with");
            }
            m
        })
        .unwrap_or_default();
    let sentence = match &pack {
        Some(pack) => format!(
            "location {location}: pack {pack} is damaged{}; restore from another location, repair this one (`restic repair packs {pack}`, then `restic repair snapshots --forget`, or re-initialize it and `custodian copy` from a healthy location), then run `custodian check --location {location} --read-data-subset all`",
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({why})")
            }
        ),
        None => format!(
            "location {location}: {head}{}; run `custodian check --location {location} --read-data-subset all` after repairing the repository",
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({why})")
            }
        ),
    };
    (sentence, pack)
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
    pub fn check(
        &self,
        subset: Option<&ReadSubset>,
        bars: Option<super::Bars>,
    ) -> Result<CheckReport, RepoError> {
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
        let results = match bars {
            Some(bars) => self.reopen_with(Some(bars))?.check(opts),
            None => self.rustic().check(opts),
        }
        .map_err(|e| self.err("checking the repository", &e))?;
        let mut report = CheckReport {
            location: self.location().to_string(),
            read_data_subset: subset.map(|s| s.as_str().to_string()),
            errors: Vec::new(),
            packs: Vec::new(),
            warnings: Vec::new(),
        };
        for (level, finding) in &results.0 {
            let (sentence, pack) = finding_sentence(self.location(), &finding.to_string());
            // `CheckErrorLevel` is not exported by rustic_core; its Debug name is stable.
            if format!("{level:?}") == "Error" {
                report.errors.push(sentence);
                report.packs.push(pack);
            } else {
                report.warnings.push(sentence);
            }
        }
        // Belt and braces: if rustic_core itself judges the results bad, never report OK.
        if results.is_ok().is_err() && report.errors.is_empty() {
            report.errors.push(format!(
                "location {}: the check reported errors without details; run it again with -vv to see them",
                self.location()
            ));
            report.packs.push(None);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::finding_sentence;

    #[test]
    fn a_finding_becomes_one_sentence_naming_the_pack() {
        let raw = "error checking pack 9ade5a10 : `rustic_core` experienced an error related to `cryptographic operations`.\n\nMessage:\nData decryption failed, MAC check failed.\n\nFor more information, see: https://rustic.cli.rs/docs/errors/C001\n\nContext:\n- nonce: [36, 155]\n\nCaused by:\naead::Error\n\nBacktrace:\n   0: rustic_core::error::RusticError::new\n";
        let (sentence, pack) = finding_sentence("offsite", raw);
        assert_eq!(pack.as_deref(), Some("9ade5a10"));
        assert!(
            sentence.starts_with("location offsite: pack 9ade5a10 is damaged (data decryption failed, mac check failed: its content fails authentication, damaged or tampered with); restore from another location"),
            "{sentence}"
        );
        for noise in [
            "nonce",
            "Caused by",
            "aead",
            "Backtrace",
            "rustic_core::",
            "\n",
        ] {
            assert!(!sentence.contains(noise), "{noise} in {sentence}");
        }
    }
}
