//! Human renderings of job reports. JSON output serializes the same reports.

use std::fmt::Write;

use crate::catalog::{DrillRecord, RunRecord};
use crate::job::{
    BackupReport, CheckOutcome, CopyReport, DrillReport, ForgetOutcome, InitReport,
    LocationSnapshots, PruneOutcome, RestoreReport, Status,
};
use crate::model::{group_digits, human_bytes};
use crate::repo::ForgetPlan;

/// A table with a header row: columns as wide as their widest cell, the last one unpadded,
/// every line starting with `indent`.
pub fn table<const N: usize>(headers: &[&str; N], rows: &[[String; N]], indent: &str) -> String {
    let mut widths: [usize; N] = headers.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::from(indent);
        for (i, cell) in cells.enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

pub use crate::model::count;

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
                    "{} → {}: snapshot {}, {}, {} rows, {} read, {} stored new ({} before compression), {:.1} s",
                    r.source,
                    r.location,
                    s.short_id(),
                    count(r.tables, "table"),
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
        let rows: Vec<[String; 5]> = l
            .snapshots
            .iter()
            .map(|s| {
                let mut note = Vec::new();
                if s.backup_id != s.id {
                    note.push(format!("copy of {}", &s.backup_id[..8]));
                }
                if s.pending {
                    note.push("PENDING".to_string());
                }
                [
                    s.short_id().to_string(),
                    crate::model::time::format(s.time),
                    s.source.as_deref().unwrap_or("-").to_string(),
                    human_bytes(s.bytes),
                    note.join(", "),
                ]
            })
            .collect();
        if !rows.is_empty() {
            out.push_str(&table(
                &["ID", "TIME", "SOURCE", "SIZE", "NOTE"],
                &rows,
                "  ",
            ));
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
            o.status.as_str().to_uppercase()
        );
        if let Some(c) = &o.coverage {
            let _ = writeln!(
                out,
                "  coverage: {}/{} parts read in the last {} days ({:.0}% of the data)",
                c.parts_read, c.parts, c.window_days, c.percent
            );
        }
        if let Some(l) = &o.locks_extended
            && l.extended > 0
        {
            let _ = writeln!(
                out,
                "  object lock: retention extended on {}",
                count(l.extended, "object")
            );
        }
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
        "restored snapshot {} of {} ({}) from {} to {} ({}), {:.1} s\nverified against the manifest: {}, {} rows",
        &r.snapshot_id[..8],
        r.source,
        r.engine,
        r.location,
        r.target,
        human_bytes(r.bytes),
        r.duration_seconds,
        count(r.verification.tables.len(), "table"),
        group_digits(rows),
    );
    if let Some(sha) = &r.verification.file_sha256 {
        let _ = write!(out, ", file {sha}");
    }
    out.push_str(&verification_details(&r.verification));
    if r.replaced {
        out.push_str("\nthe target's previous contents were replaced (--force)");
    }
    for w in &r.warnings {
        let _ = write!(out, "\nwarning: {w}");
    }
    out
}

/// The objects a verification compared besides tables, and what it could not see.
fn verification_details(v: &crate::engine::Verification) -> String {
    let mut out = String::new();
    if !v.objects.is_empty() {
        let counts: Vec<String> = v
            .objects
            .iter()
            .map(|(class, n)| format!("{n} {class}"))
            .collect();
        let _ = write!(out, "\n  and: {}", counts.join(", "));
    }
    for m in &v.mismatches {
        let _ = write!(out, "\n  DIFFERS: {m}");
    }
    for n in &v.not_verified {
        let _ = write!(out, "\n  not verified: {n}");
    }
    out
}

pub fn verify(r: &crate::job::VerifyReport) -> String {
    let rows: u64 = r.verification.tables.iter().map(|t| t.rows).sum();
    format!(
        "{} {} against snapshot {} of {} ({}) from {}: {}, {} rows{}",
        if r.verification.is_verified() {
            "VERIFIED"
        } else {
            "DIFFERENT"
        },
        r.target,
        &r.snapshot_id[..8],
        r.source,
        r.engine,
        r.location,
        count(r.verification.tables.len(), "table"),
        group_digits(rows),
        verification_details(&r.verification)
    )
}

pub fn drill(r: &DrillReport) -> String {
    let snapshot = r.snapshot_id.as_deref().map_or("-", |id| &id[..8]);
    let mut out = match &r.failure {
        None => format!(
            "drill PASSED: {} from {} (snapshot {snapshot}, {} old), RTO {:.1} s\n",
            r.source,
            r.location,
            r.snapshot_age_seconds.map_or_else(|| "?".into(), age),
            r.rto_seconds.unwrap_or_default(),
        ),
        Some(f) => format!(
            "drill FAILED: {} from {} (snapshot {snapshot}): {} [{}]\n",
            r.source, r.location, f.reason, f.code
        ),
    };
    if let Some(scratch) = &r.scratch {
        let _ = writeln!(out, "  restored into: {scratch}");
    }
    if let (Some(t), Some(rows)) = (r.tables, r.rows) {
        let _ = writeln!(
            out,
            "  verified: {t} tables, {} rows, {}",
            group_digits(rows),
            human_bytes(r.bytes.unwrap_or_default())
        );
    }
    for p in &r.phases.0 {
        let _ = writeln!(out, "  {:<20} {:>8.2} s", p.name, p.seconds);
    }
    for a in &r.assertions {
        let _ = writeln!(
            out,
            "  assertion {:<18} {} (got {}, expected {})",
            a.name,
            if a.held { "held" } else { "FAILED" },
            a.actual.map_or_else(|| "nothing".into(), |v| v.to_string()),
            a.expected
        );
    }
    for m in r.mismatches.iter().skip(1) {
        let _ = writeln!(out, "  also differs: {m}");
    }
    for n in &r.not_verified {
        let _ = writeln!(out, "  not verified: {n}");
    }
    for w in &r.warnings {
        let _ = writeln!(out, "  warning: {w}");
    }
    out
}

fn age(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

pub fn drills(drills: &[DrillRecord]) -> String {
    if drills.is_empty() {
        return "no drills recorded yet: `custodian drill`".into();
    }
    let rows: Vec<[String; 7]> = drills
        .iter()
        .map(|d| {
            [
                d.started_at.clone(),
                d.source.clone(),
                d.location.clone(),
                d.verdict.to_string(),
                d.snapshot_id
                    .as_deref()
                    .map_or("-", |s| &s[..8.min(s.len())])
                    .to_string(),
                d.rto_seconds
                    .map_or_else(|| "-".into(), |r| format!("{r:.1} s")),
                format!(
                    "{}{}",
                    d.selection,
                    d.failure_reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
            ]
        })
        .collect();
    table(
        &[
            "STARTED",
            "SOURCE",
            "LOCATION",
            "VERDICT",
            "SNAPSHOT",
            "RTO",
            "SELECTION",
        ],
        &rows,
        "",
    )
}

pub fn audit_verification(v: &crate::audit::Verification, path: &std::path::Path) -> String {
    match &v.first_bad {
        None => format!(
            "audit log {} intact: {} entries, head {}\n",
            path.display(),
            v.entries,
            v.head_hash.as_deref().map_or("-", |h| &h[..16])
        ),
        Some(bad) => format!(
            "audit log {} BROKEN at line {}{}: {}\n({} entries verified before it)\n",
            path.display(),
            bad.line,
            bad.seq.map(|s| format!(" (entry {s})")).unwrap_or_default(),
            bad.reason,
            v.entries
        ),
    }
}

pub fn audit_entries(entries: &[crate::audit::Entry]) -> String {
    if entries.is_empty() {
        return "no audit entries match".into();
    }
    let rows: Vec<[String; 8]> = entries
        .iter()
        .map(|e| {
            [
                e.seq.to_string(),
                e.time.clone(),
                e.actor.clone(),
                e.role.to_string(),
                e.trigger.to_string(),
                e.action.to_string(),
                e.target.as_deref().unwrap_or("-").to_string(),
                format!(
                    "{}{}",
                    e.outcome,
                    e.detail
                        .as_deref()
                        .map(|d| format!(" [{d}]"))
                        .unwrap_or_default()
                ),
            ]
        })
        .collect();
    table(
        &[
            "SEQ", "TIME", "ACTOR", "ROLE", "TRIGGER", "ACTION", "TARGET", "OUTCOME",
        ],
        &rows,
        "",
    )
}

pub fn runs(runs: &[RunRecord]) -> String {
    if runs.is_empty() {
        return "no runs recorded yet".into();
    }
    let rows: Vec<[String; 6]> = runs
        .iter()
        .map(|r| {
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
            [
                r.started_at.clone(),
                r.kind.to_string(),
                r.outcome.as_str().to_string(),
                r.trigger.to_string(),
                what,
                r.error_code.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &["STARTED", "KIND", "OUTCOME", "TRIGGER", "ON", "ERROR"],
        &rows,
        "",
    )
}

fn plan(out: &mut String, plan: &ForgetPlan, applied: bool) {
    let verb = if applied { "removed" } else { "would remove" };
    let _ = writeln!(
        out,
        "  keeps {}, {verb} {}",
        count(plan.keep.len(), "snapshot"),
        plan.remove.len()
    );
    for r in &plan.remove {
        let _ = writeln!(
            out,
            "    {}  {}  {:<12} {}",
            r.snapshot.short_id(),
            crate::model::time::format(r.snapshot.time),
            r.snapshot.source.as_deref().unwrap_or("-"),
            r.reason
        );
    }
    for w in &plan.windows {
        let at = |t: &Option<String>| t.clone().unwrap_or_else(|| "never (no base backup)".into());
        let _ = writeln!(
            out,
            "  {}: recoverable from {} before, from {} after",
            w.source,
            at(&w.opens_before),
            at(&w.opens_after)
        );
    }
}

pub fn forgets(outcomes: &[ForgetOutcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        let _ = writeln!(out, "location {}:", o.location);
        match (&o.plan, &o.error) {
            (Some(p), _) => plan(&mut out, p, o.applied),
            (None, Some(e)) => {
                let _ = writeln!(out, "  FAILED: {e}");
            }
            _ => {}
        }
    }
    if outcomes.iter().any(|o| !o.applied && o.error.is_none()) {
        out.push_str("(dry run: pass --apply to delete)\n");
    }
    out
}

pub fn prunes(outcomes: &[PruneOutcome]) -> String {
    let mut out = String::new();
    let mut dry = false;
    for o in outcomes {
        let _ = writeln!(out, "location {}:", o.location);
        let applied = o.prune.as_ref().is_some_and(|p| p.applied);
        dry |= !applied && o.error.is_none();
        if let Some(p) = &o.forget {
            plan(&mut out, p, applied);
        }
        if let Some(p) = &o.prune {
            let verb = if p.applied { "deleted" } else { "would delete" };
            let _ = writeln!(
                out,
                "  data: {verb} {}, {} (repacking {})",
                count(p.packs_to_delete as usize, "pack"),
                human_bytes(p.bytes_to_delete),
                count(p.packs_to_repack as usize, "pack")
            );
        }
        if let Some(l) = &o.locks_extended {
            let _ = writeln!(
                out,
                "  object lock: retention extended on {} of {}",
                l.extended,
                count(l.objects, "object")
            );
        }
        if let Some(v) = &o.locked_versions {
            let _ = writeln!(
                out,
                "  object lock: {} swept; {} ({}) still held{}",
                count(v.swept, "deleted version"),
                v.still_locked,
                human_bytes(v.still_locked_bytes),
                v.locked_until
                    .as_deref()
                    .map(|d| format!(" until {d}"))
                    .unwrap_or_default()
            );
        }
        if let Some(e) = &o.error {
            let _ = writeln!(out, "  FAILED: {e}");
        }
    }
    if dry {
        out.push_str("(dry run: pass --apply to delete)\n");
    }
    out
}

/// A location's health in one word, for `status` and `ctl status` alike.
pub fn health(damaged: bool, healthy: bool) -> &'static str {
    if damaged {
        "DAMAGED"
    } else if healthy {
        "ok"
    } else {
        "PROBLEM"
    }
}

pub fn status(s: &Status) -> String {
    let mut out = format!(
        "configuration {} ({})\n",
        s.config,
        &s.config_sha256[..15.min(s.config_sha256.len())]
    );
    for l in &s.locations {
        let health = health(!l.damage.is_empty(), l.healthy);
        let _ = writeln!(
            out,
            "location {} [{}] {}: {health}",
            l.name, l.kind, l.repository
        );
        let _ = writeln!(out, "  {}", count(l.snapshots, "backup snapshot"));
        for f in &l.sources {
            let _ = writeln!(
                out,
                "  {}: newest backup {} ({} ago)",
                f.source,
                f.latest,
                humanize_age(f.age_seconds)
            );
        }
        let _ = writeln!(
            out,
            "  checks: {}/{} parts read in the last {} days ({:.0}%)",
            l.coverage.parts_read, l.coverage.parts, l.coverage.window_days, l.coverage.percent
        );
        if let Some(lock) = &l.object_lock {
            let verdict = if lock.immutable {
                "immutable"
            } else {
                "NOT immutable"
            };
            let _ = writeln!(
                out,
                "  object lock: {} {} days declared; versioning {}, bucket lock {}, test lock {} -> {verdict}",
                lock.mode,
                lock.days,
                lock.bucket.versioning.as_deref().unwrap_or("off"),
                if lock.bucket.object_lock_enabled {
                    "enabled"
                } else {
                    "off"
                },
                if lock.bucket.lock_verified {
                    "honoured"
                } else {
                    "not honoured"
                },
            );
        }
        for p in &l.problems {
            let _ = writeln!(out, "  problem: {p}");
        }
    }
    for a in &s.archives {
        let lag = a.lag_seconds.map_or_else(
            || "never stored".to_string(),
            |l| format!("{l:.0} s behind"),
        );
        let _ = writeln!(
            out,
            "archive {}: {} ({}){}{}",
            a.source,
            lag,
            if a.ok() { "ok" } else { "NOT OK" },
            if a.gaps > 0 {
                format!(", {} recorded", crate::model::count(a.gaps, "gap"))
            } else {
                String::new()
            },
            a.last_error
                .as_deref()
                .map_or_else(String::new, |e| format!("; last flush failed: {e}"))
        );
    }
    if !s.recent_failures.is_empty() {
        let _ = writeln!(out, "recent failures:");
        out.push_str(&runs(&s.recent_failures));
    }
    out
}

fn humanize_age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

pub fn report(o: &crate::job::ReportOutcome) -> String {
    let r = &o.report;
    let mut out = format!(
        "report {} for {}: overall {}\n  written to {}\n",
        r.id,
        r.period,
        r.overall.label(),
        r.dir.display()
    );
    for (rule, verdict) in &r.verdicts {
        let _ = writeln!(out, "  {rule:<18} {}", verdict.label());
    }
    let _ = writeln!(
        out,
        "  signed by key {} · verify with the key you hold (not the .pub shipped in the bundle):\n    cd {} && minisign -Vm SHA256SUMS -P {} && sha256sum -c SHA256SUMS\n    or: custodian report verify --public-key {} {}",
        r.key_id,
        r.dir.display(),
        r.report.signer.public_key,
        r.report.signer.public_key,
        r.dir.display()
    );
    if !r.report.evidence.signing_key_encrypted {
        let _ = writeln!(
            out,
            "  WARNING: signed with an unencrypted key: set [reports] secret-key-password-file and run `custodian keys generate --force`"
        );
    }
    let _ = writeln!(
        out,
        "  verification: {}",
        if o.verification.ok {
            "signature, files and chain OK".to_string()
        } else {
            format!(
                "signature and files OK; chain BROKEN: {}",
                o.verification.chain.detail
            )
        }
    );
    if let Some(d) = &o.delivery {
        let _ = writeln!(
            out,
            "  e-mail to {}: {} after {}, Message-ID {}",
            d.recipients.join(", "),
            if d.delivered {
                "delivered"
            } else {
                "NOT delivered"
            },
            count(d.attempts as usize, "attempt"),
            d.message_id
        );
    }
    out
}

pub fn report_verification(v: &crate::report::Verification) -> String {
    let mut out = format!(
        "report {} ({}): {}\n",
        v.period.as_deref().unwrap_or("?"),
        v.dir,
        if v.ok { "VERIFIED" } else { "NOT VERIFIED" }
    );
    let _ = writeln!(
        out,
        "  signature (key {}): {}",
        v.key_id.as_deref().unwrap_or("?"),
        if v.signature.ok {
            format!("good — {}", v.signature.detail)
        } else {
            format!("BAD — {}", v.signature.detail)
        }
    );
    for f in &v.files {
        let _ = writeln!(
            out,
            "  {:<24} {}",
            f.name,
            if f.ok {
                "ok".to_string()
            } else {
                format!("BAD — {}", f.problem.as_deref().unwrap_or(""))
            }
        );
    }
    let _ = writeln!(
        out,
        "  chain: {}",
        if v.chain.ok {
            v.chain.detail.clone()
        } else {
            format!("BROKEN — {}", v.chain.detail)
        }
    );
    for l in &v.links {
        let _ = writeln!(
            out,
            "    {} {} (manifest sha256 {}){}",
            l.period,
            l.dir,
            &l.manifest_sha256[..16.min(l.manifest_sha256.len())],
            if l.signature_ok {
                ""
            } else {
                " NOT SIGNED BY THIS KEY"
            }
        );
    }
    out
}

pub fn key(k: &crate::job::report::KeyOutcome) -> String {
    format!(
        "report signing key {} {}\n  secret key: {}{}\n  public key: {}\n  give managers this line to verify reports: minisign -Vm SHA256SUMS -P {}\n",
        k.key_id,
        if k.replaced {
            "replaced (audited as keys.replace)"
        } else {
            "created"
        },
        k.secret_key.display(),
        if k.password_protected {
            " (password-protected)"
        } else {
            "\n  WARNING: the secret key is NOT encrypted: anyone who can read it can sign reports. Set [reports] secret-key-password-file (or -env, -credential) and run `custodian keys generate --force`; until then every report's CRYPTO rule warns."
        },
        k.public_key.display(),
        k.public_key_base64
    )
}

pub fn erasure_recorded(r: &crate::job::erasure::Recorded) -> String {
    format!(
        "erasure ledger of {}: {} recorded, {} already recorded{}\n  every restore and drill of {} now erases {} before releasing the data\n",
        r.source,
        r.recorded,
        r.already_recorded,
        if r.hashed {
            " (subjects stored as keyed hashes)"
        } else {
            " (subjects stored in plain text: erasure.hash-subjects = false)"
        },
        r.source,
        if r.recorded + r.already_recorded == 1 {
            "it"
        } else {
            "them"
        }
    )
}

pub fn erasure_status(list: &[crate::erasure::SubjectStatus]) -> String {
    if list.is_empty() {
        return "the erasure ledger is empty\n".into();
    }
    let mut out = String::new();
    for s in list {
        let _ = writeln!(
            out,
            "{} {} ({}; request {}, recorded {} by {}): {}",
            s.id,
            s.subject,
            s.source,
            s.request,
            s.recorded_at,
            s.recorded_by,
            match (&s.horizon.gone_by, s.gone) {
                (Some(_), true) => "gone from every backup".to_string(),
                (Some(t), false) => format!(
                    "in {} taken before the erasure; gone from every backup by {t}",
                    count(s.horizon.copies, "snapshot")
                ),
                (None, _) =>
                    "NEVER gone as configured (a location keeps copies without an age bound)"
                        .to_string(),
            }
        );
        for l in &s.horizon.per_location {
            let _ = writeln!(
                out,
                "    {:<10} {} — {}",
                l.location,
                l.gone_by.as_deref().unwrap_or("never"),
                l.because
            );
        }
    }
    out
}

pub fn approvals(v: &serde_json::Value) -> String {
    let mut out = String::new();
    let line = |r: &serde_json::Value| {
        format!(
            "  {} {:<9} {} by {} ({}), {}\n      {}\n",
            r["id"].as_str().unwrap_or("?"),
            r["state"].as_str().unwrap_or("?"),
            r["action"].as_str().unwrap_or("?"),
            r["requested_by"].as_str().unwrap_or("?"),
            r["origin"].as_str().unwrap_or("?"),
            match r["approved_by"].as_str() {
                Some(by) => format!("approved by {by}"),
                None => format!("expires {}", r["expires_at"].as_str().unwrap_or("?")),
            },
            r["summary"].as_str().unwrap_or("")
        )
    };
    let pending = v["pending"].as_array().map_or(&[][..], Vec::as_slice);
    if pending.is_empty() {
        out.push_str("no request is waiting for approval\n");
    } else {
        let _ = writeln!(out, "waiting for a second administrator:");
        for r in pending {
            out.push_str(&line(r));
        }
    }
    let recent: Vec<_> = v["recent"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter(|r| r["state"] != "pending")
        .collect();
    if !recent.is_empty() {
        let _ = writeln!(out, "recent:");
        for r in recent {
            out.push_str(&line(r));
        }
    }
    out
}

pub fn enrolment(e: &crate::access::totp::Enrolment) -> String {
    format!(
        "second factor {} for {} (by {}). Scan this with the authenticator app, or enter the URI; it is shown only now:\n\n{}\n{}\n\nThe code it shows is asked for before dangerous operations (restores outside scratch, approvals, prune/forget --apply, key replacement, erasure imports).",
        if e.replaced { "replaced" } else { "enrolled" },
        e.user,
        e.enrolled_by,
        e.qr,
        e.uri
    )
}

pub fn factors(list: &[crate::catalog::Factor]) -> String {
    if list.is_empty() {
        return "nobody is enrolled: `custodian access totp enroll USER`".into();
    }
    let mut out = String::new();
    for f in list {
        let _ = writeln!(
            out,
            "{:<16} enrolled {} by {}{}{}",
            f.user,
            f.enrolled_at,
            f.enrolled_by,
            if f.failures > 0 {
                format!(" · {}", count(f.failures as usize, "failed attempt"))
            } else {
                String::new()
            },
            f.locked_until
                .as_deref()
                .map(|u| format!(" · locked until {u}"))
                .unwrap_or_default()
        );
    }
    out
}

/// A job's outcome, as its command renders it.
pub fn outcome(o: &crate::job::Outcome) -> String {
    use crate::job::Outcome;
    match o {
        Outcome::Init(r) => init(r),
        Outcome::Backup(r) => backups(r),
        Outcome::BaseBackup(r) => base_backups(r),
        Outcome::Copy(r) => copies(r),
        Outcome::Check(r) => checks(r),
        Outcome::Forget(r) => forgets(r),
        Outcome::Prune(r) => prunes(r),
        Outcome::Restore(r) => restore(r),
        Outcome::Verify(r) => verify(r),
        Outcome::Drill(r) => drill(r),
        Outcome::Report(r) => report(r),
        Outcome::ScheduledReport => "the period's report is made and delivered".into(),
    }
}

pub fn doctor(r: &crate::job::doctor::Report) -> String {
    let mut out = String::new();
    if let Some(unit) = &r.unit {
        let _ = writeln!(out, "unit: {}", unit.display());
    }
    for f in &r.findings {
        let _ = writeln!(
            out,
            "{:<7} {:<11} {}: {}",
            f.verdict.label(),
            f.check,
            f.subject,
            f.message
        );
        if let Some(fix) = &f.fix {
            let _ = writeln!(out, "{:<20}what to do: {fix}", "");
        }
    }
    out
}

/// `custodian base-backup`.
pub fn base_backups(reports: &[crate::job::base_backup::BaseBackupReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let _ = writeln!(
            out,
            "{}: base backup {} in {} ({}, WAL {} to {} on timeline {}, {:.1} s)",
            r.source,
            &r.snapshot.id[..8],
            r.location,
            bytesize::ByteSize::b(r.bytes),
            r.info.start_lsn,
            r.info.end_lsn,
            r.info.timeline,
            r.duration_seconds
        );
        if !r.copied_to.is_empty() {
            let _ = writeln!(out, "  copied to {}", r.copied_to.join(", "));
        }
    }
    out
}

/// `custodian archive run`, once stopped.
pub fn archive_runs(runs: &[crate::job::wal::ArchiveRun]) -> String {
    let mut out = String::new();
    for r in runs {
        let _ = writeln!(
            out,
            "{}: archiver stopped after {} flushes ({} files, {}) on slot {}; pg_receivewal restarted {} times",
            r.source,
            r.flushes,
            r.files_stored,
            bytesize::ByteSize::b(r.bytes_stored),
            r.slot.name,
            r.receiver_restarts
        );
    }
    out
}

/// `custodian archive status`.
pub fn archive_status(list: &[crate::job::archive::ArchiveStatus]) -> String {
    let mut out = String::new();
    for s in list {
        let lag = s
            .lag_seconds
            .map_or_else(|| "never flushed".to_string(), |l| format!("{l:.0} s"));
        let _ = writeln!(
            out,
            "{} (location {}): lag {lag}, {} WAL files ({}), newest {}",
            s.source,
            s.location,
            s.wal_files,
            bytesize::ByteSize::b(s.wal_bytes),
            s.state.newest.as_deref().unwrap_or("none")
        );
        match &s.window {
            Some(w) => {
                let _ = writeln!(
                    out,
                    "  recoverable to any second from {} to {}",
                    w.from, w.to
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  not recoverable yet: {}",
                    if s.base_backups.is_empty() {
                        "no base backup (run `custodian base-backup`)"
                    } else {
                        "no base backup is followed by an unbroken archive"
                    }
                );
            }
        }
        for (first, last) in &s.gaps {
            let _ = writeln!(out, "  gap: WAL {first} to {last} is missing");
        }
        for g in &s.state.gaps {
            let _ = writeln!(out, "  gap recorded {}: {}", g.at, g.what);
        }
        if let Some(e) = &s.state.last_error {
            let _ = writeln!(out, "  last flush failed: {e}");
        }
        for b in &s.base_backups {
            let _ = writeln!(
                out,
                "  base backup {} finished {} (WAL {} to {})",
                &b.snapshot[..8],
                b.info.finished,
                b.info.start_lsn,
                b.info.end_lsn
            );
        }
    }
    out
}

/// `custodian restore --to-…`.
pub fn pitr(o: &crate::job::pitr::PitrOutcome) -> String {
    use crate::job::pitr::PitrOutcome;
    let mut out = String::new();
    let plan = match o {
        PitrOutcome::Preview(p) => p,
        PitrOutcome::Recovered(r) => &r.plan,
    };
    let _ = writeln!(
        out,
        "{}: recover to {} into {}\n  base backup {} (finished {}, {})\n  WAL {} to {}: {} files, {}{}",
        plan.source,
        plan.target,
        plan.target_dir.display(),
        &plan.base_snapshot[..8],
        plan.base.finished,
        bytesize::ByteSize::b(plan.base_bytes),
        plan.wal_first.as_deref().unwrap_or("-"),
        plan.wal_last.as_deref().unwrap_or("-"),
        plan.wal_files,
        bytesize::ByteSize::b(plan.wal_bytes),
        if plan.ends_in_partial {
            " (the last one still partial)"
        } else {
            ""
        }
    );
    if let PitrOutcome::Recovered(r) = o {
        let _ = writeln!(
            out,
            "recovered: {}\n  last transaction replayed: {}\n  now on timeline {} at {}\n  fetch base {:.1} s, fetch WAL {:.1} s, replay {:.1} s",
            r.recovered.stop,
            r.recovered.last_transaction.as_deref().unwrap_or("none"),
            r.recovered.timeline,
            r.recovered.end_lsn,
            r.fetch_base_seconds,
            r.fetch_wal_seconds,
            r.replay_seconds
        );
        match r.started_on_port {
            Some(port) => {
                let _ = writeln!(
                    out,
                    "  running on port {port}; stop it with pg_ctl -D {} stop",
                    plan.target_dir.display()
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  shut down cleanly; start it with pg_ctl -D {} start",
                    plan.target_dir.display()
                );
            }
        }
    }
    out
}
