//! `[source.*]`: SQLite files and database servers (PostgreSQL, MariaDB/MySQL).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::diagnostic::{Diagnostics, Severity};
use super::document::Document;
use super::fields::{entries, resolve_path, secret_ref, suggestion};
use super::raw::{RawServerSource, RawSqliteSource};
use super::{
    ArchiveConfig, ArchiveMethod, ScratchServerConfig, ServerSource, SourceConfig, SourceKind,
};
use crate::model::ChecksumMode;

const SOURCE_KINDS: &[&str] = &["sqlite", "postgres", "mysql"];

/// Tables up to this size (on disk) get a full content checksum by default; larger ones a
/// sampled one. Full checksums cost the server about what the dump's own row output costs (on
/// the benchmark machine, forcing them on a 1 GiB database made the backup ~1.6× slower), so the
/// default keeps them for the many small and medium tables of a CRM and samples the few huge
/// ones (activity logs, notes).
pub const DEFAULT_CHECKSUM_LIMIT: u64 = 256 << 20;

pub(super) fn sources(
    doc: &Document<'_>,
    diags: &mut Diagnostics,
    base: &Path,
    locations: &[String],
) -> Vec<SourceConfig> {
    let mut out = Vec::new();
    for (name, kind, entry) in entries(doc, diags, "source", SOURCE_KINDS) {
        let prefix = format!("source.{name}");
        let parsed = match kind.as_str() {
            "sqlite" => doc
                .deserialize::<RawSqliteSource>(entry, &prefix, diags)
                .map(|raw| (sqlite(doc, diags, base, &prefix, &raw), raw.locations)),
            _ => doc
                .deserialize::<RawServerSource>(entry, &prefix, diags)
                .map(|raw| {
                    let locations = raw.locations.clone();
                    (server(doc, diags, base, &prefix, &kind, raw), locations)
                }),
        };
        let Some((Some(kind), chosen)) = parsed else {
            continue;
        };
        let chosen = source_locations(doc, diags, &prefix, chosen, locations);
        out.push(SourceConfig {
            name,
            kind,
            locations: chosen,
        });
    }
    out
}

fn sqlite(
    doc: &Document<'_>,
    diags: &mut Diagnostics,
    base: &Path,
    prefix: &str,
    raw: &RawSqliteSource,
) -> Option<SourceKind> {
    let path = resolve_path(base, &raw.path);
    if !path.is_file() {
        let key = format!("{prefix}.path");
        let line = doc.line(diags, &key);
        let what = if path.exists() {
            "is not a regular file"
        } else {
            "does not exist"
        };
        diags.push(
            Severity::Error,
            line,
            key,
            format!(
                "{} {what}; point it at the CRM's SQLite database file",
                path.display()
            ),
        );
    }
    Some(SourceKind::Sqlite { path })
}

fn server(
    doc: &Document<'_>,
    diags: &mut Diagnostics,
    base: &Path,
    prefix: &str,
    kind: &str,
    raw: RawServerSource,
) -> Option<SourceKind> {
    let url_key = format!("{prefix}.url");
    let error = |diags: &mut Diagnostics, key: &str, message: String| {
        let line = doc.line(diags, key);
        diags.push(Severity::Error, line, key, message);
    };
    let (schemes, example) = if kind == "postgres" {
        (
            &["postgres", "postgresql"][..],
            "postgres://custodian@db.example.org:5432/crm",
        )
    } else {
        (
            &["mysql", "mariadb"][..],
            "mysql://custodian@db.example.org:3306/crm",
        )
    };
    let url = match url::Url::parse(&raw.url) {
        Ok(url) => url,
        Err(e) => {
            error(
                diags,
                &url_key,
                format!("is not a URL ({e}); write it like {example}"),
            );
            return None;
        }
    };
    if !schemes.contains(&url.scheme()) {
        error(
            diags,
            &url_key,
            format!(
                "scheme `{}` does not match kind = \"{kind}\"; write it like {example}",
                url.scheme()
            ),
        );
    }
    if url.password().is_some() {
        // The value is never repeated in the message.
        error(
            diags,
            &url_key,
            "contains a password; remove it from the URL and reference it with password-file, \
             password-env or password-credential"
                .to_string(),
        );
    }
    if url.path().trim_start_matches('/').is_empty() {
        error(
            diags,
            &url_key,
            format!("names no database; add it as the path, e.g. {example}"),
        );
    }
    let password = secret_ref(
        doc,
        diags,
        &format!("{prefix}.password"),
        raw.password(),
        base,
        false,
    );
    let checksum_limit = match raw.checksum_limit.as_deref() {
        None => DEFAULT_CHECKSUM_LIMIT,
        Some(text) => match text.parse::<bytesize::ByteSize>() {
            Ok(size) => size.as_u64(),
            Err(_) => {
                error(
                    diags,
                    &format!("{prefix}.checksum-limit"),
                    format!("`{text}` is not a size; write it like `512MiB` or `2GiB`"),
                );
                DEFAULT_CHECKSUM_LIMIT
            }
        },
    };
    let mut checksum = BTreeMap::new();
    for (table, mode) in raw.checksum.clone() {
        let parsed = match mode.as_str() {
            "full" => ChecksumMode::Full,
            "sampled" => ChecksumMode::Sampled,
            "count" => ChecksumMode::Count,
            other => {
                error(
                    diags,
                    &format!("{prefix}.checksum.{table}"),
                    format!("`{other}` is not a checksum mode; use `full`, `sampled` or `count`"),
                );
                continue;
            }
        };
        checksum.insert(table, parsed);
    }
    /// More streams than this only queue on the server and the archiver.
    const MAX_PARALLEL: i64 = 64;
    let parallel = match raw.parallel {
        None => None,
        Some(n) if (1..=MAX_PARALLEL).contains(&n) => usize::try_from(n).ok(),
        Some(n) => {
            error(
                diags,
                &format!("{prefix}.parallel"),
                format!(
                    "must be between 1 and {MAX_PARALLEL} (table streams at a time); found {n}. Leave it out for one per core"
                ),
            );
            None
        }
    };
    let scratch = raw.scratch_url.as_ref().map(|scratch_url| {
        let key = format!("{prefix}.scratch-url");
        match url::Url::parse(scratch_url) {
            Ok(u) if !schemes.contains(&u.scheme()) => error(
                diags,
                &key,
                format!("scheme `{}` does not match kind = \"{kind}\"; write it like {example}", u.scheme()),
            ),
            Ok(u) if u.password().is_some() => error(
                diags,
                &key,
                "contains a password; reference it with scratch-password-file, scratch-password-env \
                 or scratch-password-credential"
                    .to_string(),
            ),
            Ok(_) => {}
            Err(e) => error(diags, &key, format!("is not a URL ({e}); write it like {example}")),
        }
        let password = secret_ref(
            doc,
            diags,
            &format!("{prefix}.scratch-password"),
            raw.scratch_password(),
            base,
            false,
        )
        .or_else(|| password.clone());
        ScratchServerConfig {
            url: scratch_url.clone(),
            password,
        }
    });
    let archive = raw.archive.as_ref().and_then(|a| {
        let mut duration = |key: &str, text: Option<&String>, default| match text {
            None => Some(default),
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) if d >= std::time::Duration::from_secs(1) => Some(d),
                _ => {
                    error(
                        diags,
                        &format!("{prefix}.archive.{key}"),
                        format!("`{text}` is not a duration of at least one second; write it like `60s` or `5m`"),
                    );
                    None
                }
            },
        };
        let flush = duration("flush", a.flush.as_ref(), ArchiveConfig::DEFAULT_FLUSH);
        let lag_alert = duration("lag-alert", a.lag_alert.as_ref(), ArchiveConfig::DEFAULT_LAG_ALERT);
        let method = match a.method.as_deref() {
            None | Some("receivewal") => Some(ArchiveMethod::Receivewal),
            Some("archive-command") => Some(ArchiveMethod::ArchiveCommand),
            Some(other) => {
                error(
                    diags,
                    &format!("{prefix}.archive.method"),
                    format!("`{other}` is not a method; use `receivewal` (the daemon streams the WAL) or `archive-command` (the server runs `custodian wal push`)"),
                );
                None
            }
        };
        if method == Some(ArchiveMethod::ArchiveCommand) && kind != "postgres" {
            error(
                diags,
                &format!("{prefix}.archive.method"),
                "archive-command is PostgreSQL's (archive_command); a MariaDB/MySQL archive is streamed by the daemon: leave method out".to_string(),
            );
            return None;
        }
        match (a.enabled, flush, lag_alert, method) {
            (true, Some(flush), Some(lag_alert), Some(method)) => Some(ArchiveConfig {
                flush,
                lag_alert,
                method,
            }),
            _ => None,
        }
    });
    let server = ServerSource {
        archive,
        url: raw.url,
        password,
        checksum_limit,
        checksum,
        parallel,
        scratch,
    };
    Some(if kind == "postgres" {
        SourceKind::Postgres(server)
    } else {
        SourceKind::Mysql(server)
    })
}

/// The locations a source is kept in; all of them, in file order, when not given.
fn source_locations(
    doc: &Document<'_>,
    diags: &mut Diagnostics,
    prefix: &str,
    chosen: Option<Vec<String>>,
    defined: &[String],
) -> Vec<String> {
    let key = format!("{prefix}.locations");
    let Some(chosen) = chosen else {
        return defined.to_vec();
    };
    if chosen.is_empty() {
        let line = doc.line(diags, &key);
        diags.push(
            Severity::Error,
            line,
            key,
            "is empty; list at least one location (the first receives backups, the others copies)",
        );
        return defined.to_vec();
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (i, name) in chosen.iter().enumerate() {
        *counts.entry(name).or_default() += 1;
        let item_key = format!("{key}.{i}");
        if !defined.contains(name) {
            let line = doc.line(diags, &item_key);
            diags.push(
                Severity::Error,
                line,
                item_key,
                format!(
                    "location `{name}` is not defined{}; define [location.{name}] or use one of: {}",
                    suggestion(name, &defined.iter().map(String::as_str).collect::<Vec<_>>()),
                    defined.join(", ")
                ),
            );
        } else if counts[name.as_str()] == 2 {
            let line = doc.line(diags, &item_key);
            diags.push(
                Severity::Error,
                line,
                item_key,
                format!("location `{name}` is listed twice"),
            );
        }
    }
    chosen
}
