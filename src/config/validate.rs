//! The validation pass: raw tables → [`Config`], with a diagnostic for every problem.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use toml::Spanned;
use toml::de::DeValue;

use super::diagnostic::{Diagnostics, Severity};
use super::document::{Document, join};
use super::raw::{
    RawAccess, RawDrills, RawGeneral, RawNotifications, RawPassword, RawReports, RawRetention,
};
use super::{Config, DEFAULT_STATE_DIR, policy};
use crate::model::naming::is_valid_name;
use crate::secret::{SecretRef, loose_permissions};

const SECTIONS: &[&str] = &[
    "custodian",
    "source",
    "location",
    "retention",
    "drills",
    "reports",
    "notifications",
    "erasure",
    "access",
];

/// Relative paths in the file are relative to the file's directory.
pub(super) fn resolve_path(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

pub(super) fn validate(file: &Path, text: &str, diags: &mut Diagnostics) -> Option<Config> {
    let doc = Document::parse(text, diags)?;
    let base = file
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    // Absolute, so that paths in output and in the catalog do not depend on the working directory.
    let base = std::path::absolute(&base).unwrap_or(base);

    for (key, _) in doc.root() {
        let name = key.get_ref().as_ref();
        if !SECTIONS.contains(&name) {
            let line = Some(diags.line_of(key.span().start));
            diags.push(
                Severity::Error,
                line,
                name,
                format!(
                    "unknown section `{name}`{}; the sections are {}",
                    suggestion(name, SECTIONS),
                    SECTIONS.join(", ")
                ),
            );
        }
    }

    let general: RawGeneral = section(&doc, diags, "custodian").unwrap_or_default();
    let state_dir = general.state_dir.map_or_else(
        || PathBuf::from(DEFAULT_STATE_DIR),
        |p| resolve_path(&base, &p),
    );
    let hostname = general
        .hostname
        .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
    if hostname.is_empty() || hostname.contains([',', ' ']) {
        let line = doc.line(diags, "custodian.hostname");
        diags.push(
            Severity::Error,
            line,
            "custodian.hostname",
            format!("`{hostname}` cannot be used as a snapshot hostname; use letters, digits, dots and dashes"),
        );
    }

    let check_window = policy::duration(
        &doc,
        diags,
        "custodian.check-window",
        general.check_window.as_deref(),
    )
    .unwrap_or(std::time::Duration::from_secs(30 * 86_400));
    let raw_retention: RawRetention = section(&doc, diags, "retention").unwrap_or_default();
    let retention = policy::retention(&doc, diags, "retention", raw_retention);
    let (locations, location_names) = super::locations::locations(&doc, diags, &base, &retention);
    let sources = super::sources::sources(&doc, diags, &base, &location_names);
    let source_names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
    let raw_drills: RawDrills = section(&doc, diags, "drills").unwrap_or_default();
    let drills = policy::drills(&doc, diags, raw_drills, &source_names, &base);
    let raw_reports: RawReports = section(&doc, diags, "reports").unwrap_or_default();
    let reports = policy::reports(&doc, diags, &base, raw_reports);
    let raw_notifications: RawNotifications =
        section(&doc, diags, "notifications").unwrap_or_default();
    let notifications = policy::notifications(&doc, diags, &base, raw_notifications);
    let raw_access: RawAccess = section(&doc, diags, "access").unwrap_or_default();
    let access = super::access::access(&doc, diags, &base, raw_access);
    let raw_erasure: super::raw::RawErasure = section(&doc, diags, "erasure").unwrap_or_default();
    let erasure = super::erasure::erasure(&doc, diags, &base, raw_erasure, &sources);

    let location_names: Vec<String> = locations.iter().map(|l| l.name.clone()).collect();
    let schedules = match &general.schedules {
        None => Vec::new(),
        Some(dir) => {
            let dir = resolve_path(&base, dir);
            let mut found = Vec::new();
            let jobs = super::schedules::load(&dir, &source_names, &location_names, &mut found);
            diags.absorb(found);
            jobs
        }
    };
    let metrics_listen = general.metrics_listen.as_deref().and_then(|text| {
        let key = "custodian.metrics-listen";
        match text.parse::<std::net::SocketAddr>() {
            Ok(addr) if addr.ip().is_loopback() => Some(addr),
            Ok(_) => {
                let line = doc.line(diags, key);
                diags.push(Severity::Error, line, key, format!("`{text}` is not a loopback address; metrics are served on 127.0.0.1 or ::1 only (put a proxy in front to expose them)"));
                None
            }
            Err(_) => {
                let line = doc.line(diags, key);
                diags.push(Severity::Error, line, key, format!("`{text}` is not an address; write it like `127.0.0.1:9477`"));
                None
            }
        }
    });
    let daemon = super::Daemon {
        schedules,
        control_socket: general.control_socket.map_or_else(
            || PathBuf::from(super::DEFAULT_CONTROL_SOCKET),
            |p| resolve_path(&base, &p),
        ),
        metrics_listen,
        max_concurrent_jobs: general.max_concurrent_jobs.unwrap_or(2).max(1),
    };

    Some(Config {
        file: file.to_path_buf(),
        sha256: format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes()))),
        state_dir,
        hostname,
        check_window,
        sources,
        locations,
        retention,
        drills,
        reports,
        notifications,
        access,
        erasure,
        daemon,
        warnings: Vec::new(),
    })
}

/// Deserializes a whole top-level section, if present.
fn section<T: serde::de::DeserializeOwned>(
    doc: &Document<'_>,
    diags: &mut Diagnostics,
    name: &str,
) -> Option<T> {
    let value = doc.root().get(name)?;
    doc.deserialize(value, name, diags)
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
