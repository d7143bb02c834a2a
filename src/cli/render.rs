//! Human renderings of job reports. JSON output serializes the same reports.

use std::fmt::Write;

use crate::catalog::RunRecord;
use crate::job::{
    BackupReport, CheckOutcome, CopyReport, InitReport, LocationSnapshots, RestoreReport,
};
use crate::model::{group_digits, human_bytes};

pub fn init(reports: &[InitReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let _ = match &r.error {
            None => writeln!(
                out,
                "location {:<12} {:<8} {} (repository {})",
                r.location,
                r.status,
                r.repository,
                r.repository_id
                    .as_deref()
                    .map_or("?", |id| &id[..8.min(id.len())])
            ),
            Some(e) => writeln!(out, "location {:<12} FAILED   {e}", r.location),
        };
    }
    out
}

pub fn backups(reports: &[BackupReport]) -> String {
    let mut out = String::new();
    for r in reports {
        match (&r.snapshot, &r.error) {
            (Some(s), _) => {
                let _ = writeln!(
                    out,
                    "{} → {}: snapshot {}, {} tables, {} rows, {} read, {} stored new ({} before compression), {:.1} s",
                    r.source,
                    r.location,
                    s.short_id(),
                    r.tables,
                    group_digits(r.rows),
                    human_bytes(s.bytes),
                    human_bytes(s.added_stored),
                    human_bytes(s.added_raw),
                    r.duration_seconds
                );
            }
            (None, error) => {
                let _ = writeln!(
                    out,
                    "{} → {}: FAILED, no snapshot was committed: {}",
                    r.source,
                    r.location,
                    error.as_deref().unwrap_or("unknown error")
                );
            }
        }
        out.push_str(&copies(&r.copies));
    }
    out
}

pub fn copies(reports: &[CopyReport]) -> String {
    let mut out = String::new();
    for c in reports {
        let _ = match &c.error {
            None => writeln!(
                out,
                "  copy {} → {}: {} new, {} already there",
                c.from,
                c.to,
                c.copied.len(),
                c.already_present
            ),
            Some(e) => writeln!(
                out,
                "  copy {} → {}: FAILED (will be retried): {e}",
                c.from, c.to
            ),
        };
    }
    out
}

pub fn snapshots(lists: &[LocationSnapshots]) -> String {
    let mut out = String::new();
    for l in lists {
        let _ = writeln!(out, "location {} ({})", l.location, l.repository);
        if let Some(e) = &l.error {
            let _ = writeln!(out, "  cannot list: {e}");
            continue;
        }
        if l.snapshots.is_empty() {
            let _ = writeln!(out, "  no snapshots");
        }
        for s in &l.snapshots {
            let copy = if s.backup_id == s.id {
                String::new()
            } else {
                format!("  copy of {}", &s.backup_id[..8])
            };
            let state = if s.pending { "  PENDING" } else { "" };
            let _ = writeln!(
                out,
                "  {}  {}  {:<12} {:>10}{copy}{state}",
                s.short_id(),
                crate::model::time::format(s.time),
                s.source.as_deref().unwrap_or("-"),
                human_bytes(s.bytes)
            );
        }
    }
    out
}

pub fn checks(outcomes: &[CheckOutcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        let scope = o.read_data_subset.as_deref().map_or_else(
            || "structure".to_string(),
            |s| format!("structure + data ({s})"),
        );
        let _ = writeln!(
            out,
            "location {}: {} ({scope})",
            o.location,
            o.status.to_uppercase()
        );
        for e in &o.errors {
            let _ = writeln!(out, "  error: {e}");
        }
        for w in &o.warnings {
            let _ = writeln!(out, "  warning: {w}");
        }
    }
    out
}

pub fn restore(r: &RestoreReport) -> String {
    let rows: u64 = r.verification.tables.iter().map(|t| t.rows).sum();
    let mut out = format!(
        "restored snapshot {} of {} ({}) from {} to {} ({}), {:.1} s\nverified against the manifest: {} tables, {} rows",
        &r.snapshot_id[..8],
        r.source,
        r.engine,
        r.location,
        r.target,
        human_bytes(r.bytes),
        r.duration_seconds,
        r.verification.tables.len(),
        group_digits(rows),
    );
    if let Some(sha) = &r.verification.file_sha256 {
        let _ = write!(out, ", file {sha}");
    }
    for w in &r.warnings {
        let _ = write!(out, "\nwarning: {w}");
    }
    out
}

pub fn runs(runs: &[RunRecord]) -> String {
    let mut out = String::new();
    for r in runs {
        let what = [
            r.source.as_deref(),
            r.location.as_deref(),
            r.target.as_deref(),
        ]
        .iter()
        .flatten()
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
        let _ = writeln!(
            out,
            "{}  {:<8} {:<11} {:<6} {}{}",
            r.started_at,
            r.kind,
            r.outcome.as_str(),
            r.trigger,
            what,
            r.error_code
                .as_deref()
                .map(|c| format!("  [{c}]"))
                .unwrap_or_default()
        );
    }
    out
}
