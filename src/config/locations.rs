//! `[location.*]`: local directories and S3 buckets holding restic repositories.

use std::path::Path;

use super::diagnostic::{Diagnostics, Severity};
use super::document::Document;
use super::fields::{declared_names, entries, resolve_path, secret_ref};
use super::raw::{RawLocalLocation, RawS3Location};
use super::{LocationConfig, LocationKind, LockMode, ObjectLock, Retention, S3Location, policy};

const LOCATION_KINDS: &[&str] = &["local", "s3"];

/// The valid locations, and the names of all declared ones (so that references to a location
/// with its own problems are not reported as undefined too).
pub(super) fn locations(
    doc: &Document<'_>,
    diags: &mut Diagnostics,
    base: &Path,
    default_retention: &Retention,
) -> (Vec<LocationConfig>, Vec<String>) {
    let mut out: Vec<LocationConfig> = Vec::new();
    let declared = declared_names(doc, "location");
    for (name, kind, entry) in entries(doc, diags, "location", LOCATION_KINDS) {
        let prefix = format!("location.{name}");
        let parsed = if kind == "local" {
            doc.deserialize::<RawLocalLocation>(entry, &prefix, diags)
                .and_then(|raw| local(doc, diags, base, &prefix, &out, raw))
        } else {
            doc.deserialize::<RawS3Location>(entry, &prefix, diags)
                .and_then(|raw| s3(doc, diags, base, &prefix, &out, raw))
        };
        let Some((kind, password, retention)) = parsed else {
            continue;
        };
        let retention = match retention {
            Some(raw) => policy::retention(doc, diags, &format!("{prefix}.retention"), raw),
            None => default_retention.clone(),
        };
        if let LocationKind::S3(S3Location {
            object_lock: Some(lock),
            ..
        }) = &kind
            && let Some(max) = retention.max_age
            && u64::from(lock.days) * 86_400 > max.as_secs()
        {
            let key = format!("{prefix}.object-lock.days");
            let line = doc.line(diags, &key);
            diags.push(
                Severity::Warning,
                line,
                key,
                format!(
                    "locks objects for {} days, longer than the retention maximum ({}); snapshots \
                     past the maximum stay in the bucket until their lock expires",
                    lock.days,
                    humantime::format_duration(max)
                ),
            );
        }
        out.push(LocationConfig {
            name,
            kind,
            password,
            retention,
        });
    }
    (out, declared)
}

type Parsed = (
    LocationKind,
    crate::secret::SecretRef,
    Option<super::raw::RawRetention>,
);

fn local(
    doc: &Document<'_>,
    diags: &mut Diagnostics,
    base: &Path,
    prefix: &str,
    others: &[LocationConfig],
    raw: RawLocalLocation,
) -> Option<Parsed> {
    let path = resolve_path(base, &raw.path);
    let path_key = format!("{prefix}.path");
    let error = |diags: &mut Diagnostics, message: String| {
        let line = doc.line(diags, &path_key);
        diags.push(Severity::Error, line, path_key.clone(), message);
    };
    if path.exists() && !path.is_dir() {
        error(
            diags,
            format!(
                "{} exists but is not a directory; point it at a directory for the repository",
                path.display()
            ),
        );
    } else if !path.exists()
        && let Some(parent) = path.parent()
        && !parent.exists()
    {
        error(
            diags,
            format!(
                "parent directory {} does not exist; create it (custodian init creates only the last level)",
                parent.display()
            ),
        );
    }
    if let Some(other) = others
        .iter()
        .find(|l| matches!(&l.kind, LocationKind::Local { path: p } if *p == path))
    {
        error(
            diags,
            format!(
                "location `{}` already uses {}; each location needs its own repository",
                other.name,
                path.display()
            ),
        );
    }
    let password = secret_ref(
        doc,
        diags,
        &format!("{prefix}.password"),
        raw.password(),
        base,
        true,
    )?;
    Some((LocationKind::Local { path }, password, raw.retention))
}

fn valid_bucket(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn s3(
    doc: &Document<'_>,
    diags: &mut Diagnostics,
    base: &Path,
    prefix: &str,
    others: &[LocationConfig],
    raw: RawS3Location,
) -> Option<Parsed> {
    let error = |diags: &mut Diagnostics, key: String, message: String| {
        let line = doc.line(diags, &key);
        diags.push(Severity::Error, line, key, message);
    };
    if !valid_bucket(&raw.bucket) {
        error(
            diags,
            format!("{prefix}.bucket"),
            format!(
                "`{}` is not a valid bucket name; use 3 to 63 lowercase letters, digits, dots and dashes",
                raw.bucket
            ),
        );
    }
    let key_prefix = raw
        .prefix
        .as_deref()
        .unwrap_or_default()
        .trim_matches('/')
        .to_string();
    if let Some(endpoint) = &raw.endpoint {
        match url::Url::parse(endpoint) {
            Ok(url) if url.scheme() == "https" => {}
            Ok(url) if url.scheme() == "http" => {
                let loopback = url.host_str().is_some_and(|h| {
                    h == "localhost"
                        || h.parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback())
                });
                if !loopback {
                    let key = format!("{prefix}.endpoint");
                    let line = doc.line(diags, &key);
                    diags.push(
                        Severity::Warning,
                        line,
                        key,
                        "uses plain http: credentials are signed but the data travels unencrypted \
                         in transit (it is encrypted at rest by restic); prefer https",
                    );
                }
            }
            _ => error(
                diags,
                format!("{prefix}.endpoint"),
                format!("`{endpoint}` is not an http(s) URL; write it like https://s3.example.org"),
            ),
        }
    }
    let region = raw
        .region
        .clone()
        .unwrap_or_else(|| "us-east-1".to_string());
    let same = others.iter().find(|l| {
        matches!(&l.kind, LocationKind::S3(o)
            if o.bucket == raw.bucket && o.prefix == key_prefix && o.endpoint == raw.endpoint)
    });
    if let Some(other) = same {
        error(
            diags,
            format!("{prefix}.prefix"),
            format!(
                "location `{}` already uses this bucket and prefix; each location needs its own repository",
                other.name
            ),
        );
    }
    let akid = secret_ref(
        doc,
        diags,
        &format!("{prefix}.access-key-id"),
        raw.access_key_id(),
        base,
        false,
    );
    let secret = secret_ref(
        doc,
        diags,
        &format!("{prefix}.secret-access-key"),
        raw.secret_access_key(),
        base,
        false,
    );
    let credentials = match (akid, secret) {
        (Some(a), Some(s)) => Some((a, s)),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            error(
                diags,
                format!("{prefix}.secret-access-key-file"),
                "give both the access key id and the secret access key, or neither (to use the \
                 standard AWS credential chain)"
                    .to_string(),
            );
            None
        }
    };
    let object_lock = raw.object_lock.as_ref().and_then(|lock| {
        let mode = match lock.mode.as_str() {
            "compliance" => Some(LockMode::Compliance),
            "governance" => Some(LockMode::Governance),
            other => {
                error(
                    diags,
                    format!("{prefix}.object-lock.mode"),
                    format!("`{other}` is not a lock mode; use `compliance` or `governance`"),
                );
                None
            }
        };
        if lock.days == 0 {
            error(
                diags,
                format!("{prefix}.object-lock.days"),
                "must be at least 1".to_string(),
            );
        }
        mode.map(|mode| ObjectLock {
            mode,
            days: lock.days,
        })
    });
    let password = secret_ref(
        doc,
        diags,
        &format!("{prefix}.password"),
        raw.password(),
        base,
        true,
    )?;
    Some((
        LocationKind::S3(S3Location {
            bucket: raw.bucket,
            prefix: key_prefix,
            region,
            endpoint: raw.endpoint,
            path_style: raw.path_style.unwrap_or(false),
            credentials,
            object_lock,
        }),
        password,
        raw.retention,
    ))
}
