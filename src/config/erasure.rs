//! `[erasure]`: the GDPR erasure ledger's settings and the per-source replay rules.

use std::collections::BTreeMap;
use std::path::Path;

use super::SourceConfig;
use super::diagnostic::{Diagnostics, Severity};
use super::document::Document;
use super::fields::secret_ref;
use super::raw::RawErasure;
use crate::secret::SecretRef;

/// How to erase one subject in a restored database. `:subject` in a statement is the subject's
/// key, bound as a parameter (never spliced into the SQL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErasureRules {
    /// Lists the subject keys a restored database holds (needed to match hashed ledger keys).
    pub subject_query: Option<String>,
    pub erase: Vec<String>,
    /// Must return 0 for an erased subject.
    pub proof: String,
}

/// The erasure ledger's settings.
#[derive(Clone, Debug, Default)]
pub struct Erasure {
    /// Subject keys are stored as HMAC-SHA256 under `key` (default: on).
    pub hash_subjects: bool,
    /// The HMAC key; default `STATE/keys/erasure.key`, created on first use.
    pub key: Option<SecretRef>,
    /// Replay rules by source name.
    pub rules: BTreeMap<String, ErasureRules>,
}

pub(super) fn erasure(
    doc: &Document<'_>,
    diags: &mut Diagnostics,
    base: &Path,
    raw: RawErasure,
    sources: &[SourceConfig],
) -> Erasure {
    let hash_subjects = raw.hash_subjects.unwrap_or(true);
    let key = secret_ref(doc, diags, "erasure.key", raw.key(), base, false);
    let mut rules = BTreeMap::new();
    for (source, r) in raw.rules {
        let prefix = format!("erasure.rules.{source}");
        let error = |diags: &mut Diagnostics, key: String, message: String| {
            let line = doc.line(diags, &key);
            diags.push(Severity::Error, line, key, message);
        };
        if !sources.iter().any(|s| s.name == source) {
            error(
                diags,
                prefix.clone(),
                format!(
                    "source `{source}` is not defined; rules are written per source as [erasure.rules.NAME]"
                ),
            );
        }
        if r.erase.is_empty() {
            error(
                diags,
                format!("{prefix}.erase"),
                "list at least one statement that erases a subject (`:subject` is its key)".into(),
            );
        }
        for (i, statement) in r.erase.iter().enumerate() {
            if !statement.contains(":subject") {
                error(
                    diags,
                    format!("{prefix}.erase.{i}"),
                    "this statement does not use `:subject`, so it would not erase one subject; write e.g. `DELETE FROM contacts WHERE email = :subject`".into(),
                );
            }
        }
        if !r.proof.contains(":subject") {
            error(
                diags,
                format!("{prefix}.proof"),
                "the proof query must use `:subject` and return 0 for an erased subject, e.g. `SELECT count(*) FROM contacts WHERE email = :subject`".into(),
            );
        }
        if hash_subjects && r.subject_query.is_none() {
            error(
                diags,
                format!("{prefix}.subject-query"),
                "with hashed subject keys (erasure.hash-subjects, the default) a `subject-query` listing the keys a restored database holds is required, e.g. `SELECT email FROM contacts`".into(),
            );
        }
        rules.insert(
            source,
            ErasureRules {
                subject_query: r.subject_query,
                erase: r.erase,
                proof: r.proof,
            },
        );
    }
    Erasure {
        hash_subjects,
        key,
        rules,
    }
}
