//! Configuration problems, each tied to a file, a line and a key path, with a sentence saying
//! what to do. `custodian config check` prints all of them at once.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// How bad a problem is: errors stop Custodian from starting, warnings do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    /// 1-based line, when the problem can be placed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Dotted key path, e.g. `location.offsite.password-file`; empty for the whole file.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.file.display();
        match self.line {
            Some(line) => write!(f, "{name}:{line}: ")?,
            None => write!(f, "{name}: ")?,
        }
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// The list of problems found while loading one file.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics {
    file: PathBuf,
    text: String,
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    #[must_use]
    pub fn new(file: &Path, text: &str) -> Self {
        Self {
            file: file.to_path_buf(),
            text: text.to_string(),
            items: Vec::new(),
        }
    }

    /// The line of a byte offset in the file.
    #[must_use]
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    pub fn push(
        &mut self,
        severity: Severity,
        line: Option<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.items.push(Diagnostic {
            severity,
            file: self.file.clone(),
            line,
            key: key.into(),
            message: message.into(),
        });
    }

    /// Adds problems found in other files (schedule files).
    pub fn absorb(&mut self, items: Vec<Diagnostic>) {
        self.items.extend(items);
    }

    #[must_use]
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    #[must_use]
    pub fn items(&self) -> &[Diagnostic] {
        &self.items
    }

    /// All problems, errors first, each group in file order.
    #[must_use]
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items
            .sort_by_key(|d| (d.severity, d.line.unwrap_or(usize::MAX)));
        self.items
    }
}

/// ` (did you mean `x`?)` when a known word is close.
pub(super) fn suggestion(word: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (strsim::levenshtein(word, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_line_and_key() {
        let mut d = Diagnostics::new(Path::new("custodian.toml"), "a\nb\nc");
        let line = d.line_of(2);
        d.push(
            Severity::Error,
            Some(line),
            "location.offsite.password-file",
            "/etc/custodian/offsite.key does not exist",
        );
        assert_eq!(
            d.items()[0].to_string(),
            "custodian.toml:2: location.offsite.password-file: /etc/custodian/offsite.key does not exist"
        );
    }
}
