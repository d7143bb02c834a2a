//! Helpers every section's validation uses: paths relative to the file, the named entries of
//! `[source.*]` and `[location.*]`, secret references, and "did you mean" suggestions. (The
//! sections import these; `validate` imports the sections.)

use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::DeValue;

use super::diagnostic::{Diagnostics, Severity};
use super::document::{Document, join};
use super::raw::RawPassword;
use crate::model::naming::is_valid_name;
use crate::secret::{SecretRef, loose_permissions};

/// Relative paths in the file are relative to the file's directory.
pub(super) fn resolve_path(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// The named entries of `[source.*]` or `[location.*]`, in file order, each with its `kind`.
pub(super) fn entries<'d, 'a>(
    doc: &'d Document<'a>,
    diags: &mut Diagnostics,
    section: &str,
    kinds: &[&str],
) -> Vec<(String, String, &'d Spanned<DeValue<'a>>)> {
    let Some(value) = doc.root().get(section) else {
        let example = if section == "source" {
            "[source.crm]\nkind = \"sqlite\"\npath = \"/var/lib/crm/crm.sqlite\""
        } else {
            "[location.local]\nkind = \"local\"\npath = \"/srv/custodian/local\"\npassword-file = \"/etc/custodian/local.key\""
        };
        diags.push(
            Severity::Error,
            None,
            section,
            format!("no [{section}.NAME] table is defined; add at least one, e.g.\n{example}"),
        );
        return Vec::new();
    };
    let DeValue::Table(table) = value.get_ref() else {
        let line = doc.line(diags, section);
        diags.push(
            Severity::Error,
            line,
            section,
            format!("must be a table of named {section}s, e.g. [{section}.NAME]"),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, entry) in table {
        let name = key.get_ref().to_string();
        let prefix = format!("{section}.{name}");
        let line = Some(diags.line_of(key.span().start));
        if !is_valid_name(&name) {
            diags.push(
                Severity::Error,
                line,
                prefix.clone(),
                format!(
                    "`{name}` is not a valid name; use lowercase letters, digits, `-` and `_` \
                     (it becomes part of snapshot tags and paths)"
                ),
            );
        }
        let DeValue::Table(fields) = entry.get_ref() else {
            diags.push(Severity::Error, line, prefix, "must be a table");
            continue;
        };
        let kind = match fields.get("kind").map(|v| v.get_ref()) {
            Some(DeValue::String(kind)) => kind.to_string(),
            Some(_) => {
                let line = doc.line(diags, &format!("{prefix}.kind"));
                diags.push(
                    Severity::Error,
                    line,
                    format!("{prefix}.kind"),
                    format!("must be a string, one of: {}", kinds.join(", ")),
                );
                continue;
            }
            None => {
                diags.push(
                    Severity::Error,
                    line,
                    format!("{prefix}.kind"),
                    format!(
                        "required key `kind` is missing; set it to one of: {}",
                        kinds.join(", ")
                    ),
                );
                continue;
            }
        };
        if !kinds.contains(&kind.as_str()) {
            let line = doc.line(diags, &format!("{prefix}.kind"));
            let later = match (section, kind.as_str()) {
                ("location", "s3") => " (not supported by this version of Custodian yet)",
                _ => "",
            };
            diags.push(
                Severity::Error,
                line,
                format!("{prefix}.kind"),
                format!(
                    "`{kind}` is not a {section} kind{later}{}; use one of: {}",
                    suggestion(&kind, kinds),
                    kinds.join(", ")
                ),
            );
            continue;
        }
        out.push((name, kind, entry));
    }
    out
}

/// The names under `[<section>.*]`, whatever their contents.
pub(super) fn declared_names(doc: &Document<'_>, section: &str) -> Vec<String> {
    match doc.root().get(section).map(|v| v.get_ref()) {
        Some(DeValue::Table(t)) => t.keys().map(|k| k.get_ref().to_string()).collect(),
        _ => Vec::new(),
    }
}

/// Exactly one of `<prefix>-file`, `<prefix>-env`, `<prefix>-credential`. With `required`, none
/// is an error too. File references are checked now (exists, readable, not empty, private).
pub(super) fn secret_ref(
    doc: &Document<'_>,
    diags: &mut Diagnostics,
    prefix: &str,
    raw: RawPassword,
    base: &Path,
    required: bool,
) -> Option<SecretRef> {
    let mut refs = Vec::new();
    if let Some(file) = raw.file {
        refs.push((
            format!("{prefix}-file"),
            SecretRef::File(resolve_path(base, &file)),
        ));
    }
    if let Some(env) = raw.env {
        refs.push((format!("{prefix}-env"), SecretRef::Env(env)));
    }
    if let Some(cred) = raw.credential {
        refs.push((format!("{prefix}-credential"), SecretRef::Credential(cred)));
    }
    let table = prefix.rsplit_once('.').map_or("", |(t, _)| t);
    let last = prefix.rsplit('.').next().unwrap_or(prefix);
    match refs.len() {
        0 if required => {
            let line = doc.line(diags, table);
            diags.push(
                Severity::Error,
                line,
                join(table, &format!("{last}-file")),
                format!(
                    "no {last} is configured; set one of {last}-file, {last}-env or {last}-credential \
                     (secrets are never written in the configuration itself)"
                ),
            );
            None
        }
        0 => None,
        1 => {
            let (key, secret) = refs.pop()?;
            let line = doc.line(diags, &key);
            if let Err(err) = secret.resolve() {
                diags.push(Severity::Error, line, key.clone(), err.to_string());
            } else if let Some(path) = secret.file_path()
                && let Some(warning) = loose_permissions(&path)
            {
                diags.push(Severity::Warning, line, key, warning);
            }
            Some(secret)
        }
        _ => {
            let (key, _) = &refs[1];
            let line = doc.line(diags, key);
            let keys: Vec<&str> = refs.iter().map(|(k, _)| k.as_str()).collect();
            diags.push(
                Severity::Error,
                line,
                key.clone(),
                format!(
                    "only one of {} may be set; keep exactly one",
                    keys.join(" and ")
                ),
            );
            None
        }
    }
}

pub(super) use super::diagnostic::suggestion;
