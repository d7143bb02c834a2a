//! The validation pass: raw tables → [`Config`], with a diagnostic for every problem.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::diagnostic::{Diagnostics, Severity};
use super::document::Document;
use super::fields::{resolve_path, suggestion};
use super::raw::{RawAccess, RawDrills, RawGeneral, RawNotifications, RawReports, RawRetention};
use super::{Config, DEFAULT_STATE_DIR, policy};

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
