//! Metrics: what each rule's check reads, computed from the evidence. A metric gives a value
//! (or none: "not evaluated", with the reason), the per-subject findings behind it, hard
//! failures and warnings that no threshold can excuse, and the ids of the evidence it used.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::Serialize;

use super::evidence::Evidence;
use crate::catalog::{DrillRecord, DrillVerdict, HeldSnapshot, Outcome, RunKind, Trigger};
use crate::config::Config;

/// Every metric rules may name.
pub const METRICS: &[&str] = &[
    "schedule.success_percent",
    "rpo.worst_gap_hours",
    "integrity.coverage_percent",
    "drill.age_days",
    "drill.worst_rto_hours",
    "copies.worst_lag_hours",
    "copies.min_locations",
    "copies.min_immutable_locations",
    "immutability.lock_days",
    "crypto.key_age_days",
    "access.unapproved",
    "audit.broken_entries",
    "monitoring.silent_failures",
    "retention.days_beyond_max",
    "scratch.overdue",
    "records.problems",
    "erasure.unreplayed_restores",
    "residency.outside",
    "privacy.findings",
];

/// What a metric measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Measure {
    /// `None`: not evaluated (see `not_evaluated`).
    pub value: Option<f64>,
    pub not_evaluated: Option<String>,
    /// One line per subject (source × location, location, run…).
    pub findings: Vec<String>,
    /// Conditions that fail the check whatever the value.
    pub fail: Vec<String>,
    /// Conditions that make the check at best a warning.
    pub warn: Vec<String>,
    /// Ids of the rows in evidence.json this used.
    pub evidence: Vec<String>,
}

impl Measure {
    fn none(reason: impl Into<String>) -> Self {
        Self {
            not_evaluated: Some(reason.into()),
            ..Self::default()
        }
    }
}

/// Extra inputs some metrics need beyond the evidence.
pub struct Inputs<'a> {
    pub config: &'a Config,
    /// Problems found re-verifying earlier reports (signatures, chain, gaps).
    pub records_problems: Option<Vec<String>>,
}

pub(crate) fn ts(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

fn hours(a: Timestamp, b: Timestamp) -> f64 {
    (b.as_millisecond() - a.as_millisecond()) as f64 / 3_600_000.0
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Computes one metric.
#[must_use]
pub fn measure(metric: &str, ev: &Evidence, inputs: &Inputs<'_>) -> Measure {
    let cfg = inputs.config;
    match metric {
        "schedule.success_percent" => schedule(ev, cfg),
        "rpo.worst_gap_hours" => rpo(ev, cfg),
        "integrity.coverage_percent" => integrity(ev, cfg),
        "drill.age_days" => drill_age(ev, cfg),
        "drill.worst_rto_hours" => drill_rto(ev, cfg),
        "copies.worst_lag_hours" => copy_lag(ev, cfg),
        "copies.min_locations" => copy_locations(cfg, false),
        "copies.min_immutable_locations" => copy_locations(cfg, true),
        "immutability.lock_days" => immutability(ev),
        "crypto.key_age_days" => crypto(ev),
        "access.unapproved" => access(ev),
        "audit.broken_entries" => audit(ev),
        "monitoring.silent_failures" => monitoring(ev, cfg),
        "retention.days_beyond_max" => retention(ev),
        "scratch.overdue" => scratch(ev, cfg),
        "records.problems" => records(ev, inputs),
        "erasure.unreplayed_restores" => erasure(ev, cfg),
        "residency.outside" => residency(ev, cfg),
        // Filled in after rendering, by scanning the rendered report.
        "privacy.findings" => Measure::none("the report has not been scanned yet"),
        other => Measure::none(format!("unknown metric {other}")),
    }
}

fn schedule(ev: &Evidence, cfg: &Config) -> Measure {
    let mut m = Measure::default();
    let scheduled: Vec<_> = ev
        .runs
        .iter()
        .filter(|r| r.kind == RunKind::Backup && r.trigger == Trigger::Schedule)
        .collect();
    let mut ok = 0usize;
    for run in &scheduled {
        let good = match run.outcome {
            Outcome::Succeeded => true,
            Outcome::Failed => {
                // A retry within 60 minutes that produced a snapshot of the same source.
                let started = ts(&run.started_at);
                ev.runs.iter().any(|r| {
                    r.kind == RunKind::Backup
                        && r.outcome == Outcome::Succeeded
                        && r.source == run.source
                        && r.source.is_some()
                        && match (started, ts(&r.started_at)) {
                            (Some(a), Some(b)) => b > a && hours(a, b) <= 1.0,
                            _ => false,
                        }
                })
            }
            _ => false,
        };
        if good {
            ok += 1;
        } else {
            m.findings.push(format!(
                "{} {} at {}: {}",
                run.kind,
                run.source.as_deref().unwrap_or("(job)"),
                run.started_at,
                run.error_code.as_deref().unwrap_or(run.outcome.as_str())
            ));
            m.evidence.push(run.id.clone());
        }
    }
    // Silent misses: fires the schedules expected that left no trace at all.
    let mut silent = 0usize;
    if let Some(first) = ev.first_scheduled_backup.as_deref().and_then(ts) {
        let begin = first.max(ev.period.from);
        // Runs get an hour to start (jitter, queueing) before a fire counts as silent.
        let until = ev.end - jiff::SignedDuration::from_hours(1);
        for job in cfg
            .daemon
            .schedules
            .iter()
            .filter(|j| j.kind.as_str() == "backup")
        {
            let mut at = begin - jiff::SignedDuration::from_secs(1);
            for _ in 0..10_000 {
                let Some(fire) = job.next_after(at) else {
                    break;
                };
                if fire >= until {
                    break;
                }
                at = fire;
                let seen = scheduled.iter().any(|r| {
                    ts(&r.started_at).is_some_and(|s| {
                        let d = hours(fire, s);
                        (-2.0 / 60.0..=1.0 + job.jitter.as_secs_f64() / 3600.0).contains(&d)
                    })
                });
                if !seen {
                    silent += 1;
                    if silent <= 20 {
                        m.fail.push(format!(
                            "job {} was due at {} and left no trace (silent miss)",
                            job.name,
                            crate::model::time::format(fire)
                        ));
                    }
                }
            }
        }
    }
    let total = scheduled.len() + silent;
    if total == 0 {
        return Measure::none("no scheduled backups in the period");
    }
    m.value = Some(round1(100.0 * ok as f64 / total as f64));
    m.findings.insert(
        0,
        format!(
            "{ok} of {total} scheduled backup runs produced a snapshot ({silent} silent misses)"
        ),
    );
    m
}

/// Arrival times of a source's snapshots in a location, sorted.
pub(crate) fn arrivals(ev: &Evidence, source: &str, location: &str) -> Vec<(Timestamp, String)> {
    let mut out: Vec<(Timestamp, String)> = ev
        .snapshots
        .iter()
        .filter(|s| s.source == source && s.location == location)
        .filter_map(|s| ts(&s.arrived_at).map(|t| (t, s.snapshot_id.clone())))
        .collect();
    out.sort();
    out
}

/// When the evidence starts for gap purposes: the period's start, or Custodian's first
/// activity if later.
pub(crate) fn evidence_begin(ev: &Evidence) -> Option<Timestamp> {
    let first = ev.first_activity.as_deref().and_then(ts)?;
    let begin = first.max(ev.period.from);
    (begin < ev.end).then_some(begin)
}

fn rpo(ev: &Evidence, cfg: &Config) -> Measure {
    let Some(begin) = evidence_begin(ev) else {
        return Measure::none("Custodian recorded nothing before the period's end");
    };
    let mut m = Measure::default();
    let mut worst: Option<f64> = None;
    for source in &cfg.sources {
        for location in &source.locations {
            let arr = arrivals(ev, &source.name, location);
            let mut prev: Option<Timestamp> = arr.iter().map(|a| a.0).rfind(|t| *t <= begin);
            let mut gap: f64 = 0.0;
            let mut gap_end_id = None;
            for (t, id) in arr.iter().filter(|a| a.0 > begin) {
                let g = hours(prev.unwrap_or(begin), *t);
                if g > gap {
                    gap = g;
                    gap_end_id = Some(id.clone());
                }
                prev = Some(*t);
            }
            let age = hours(prev.unwrap_or(begin), ev.end);
            let pair_worst = gap.max(age);
            if let Some(id) = gap_end_id {
                m.evidence.push(id);
            }
            m.findings.push(match prev {
                Some(_) => format!(
                    "{}/{location}: largest gap {:.1} h, newest snapshot {:.1} h old at period end",
                    source.name, gap, age
                ),
                None => format!(
                    "{}/{location}: no snapshot at all ({:.1} h without one)",
                    source.name, age
                ),
            });
            worst = Some(worst.map_or(pair_worst, |w: f64| w.max(pair_worst)));
        }
    }
    m.value = worst.map(round1);
    if m.value.is_none() {
        return Measure::none("no sources are configured");
    }
    m
}

/// The fraction a check subset covers: `(part, parts)`, or `None` for a full read.
fn subset_part(subset: &str) -> Option<Option<(u32, u32)>> {
    let s = subset.trim();
    if s == "all" || s == "100%" || s == "1/1" {
        return Some(None);
    }
    let (k, n) = s.split_once('/')?;
    Some(Some((k.parse().ok()?, n.parse().ok()?)))
}

fn integrity(ev: &Evidence, cfg: &Config) -> Measure {
    if ev.checks.is_empty() && ev.damage.is_empty() {
        return Measure::none("no repository check has ever run");
    }
    let mut m = Measure::default();
    let window_start = ev.end
        - jiff::SignedDuration::from_secs(
            i64::try_from(cfg.check_window.as_secs()).unwrap_or(i64::MAX / 2),
        );
    let parts = u32::try_from((cfg.check_window.as_secs() / 86_400).max(1)).unwrap_or(30);
    let mut worst: f64 = 100.0;
    for loc in &cfg.locations {
        let mine: Vec<_> = ev
            .checks
            .iter()
            .filter(|c| c.location == loc.name)
            .collect();
        let mut read: BTreeSet<u32> = BTreeSet::new();
        let mut full = false;
        for c in mine.iter().filter(|c| c.ok) {
            if ts(&c.checked_at).is_none_or(|t| t < window_start) {
                continue;
            }
            match c.read_data_subset.as_deref().and_then(subset_part) {
                Some(None) => full = true,
                Some(Some((k, n))) if n == parts => {
                    read.insert(k);
                }
                _ => {}
            }
        }
        let coverage = if full {
            100.0
        } else {
            100.0 * read.len() as f64 / f64::from(parts)
        };
        worst = worst.min(coverage);
        // Damage stays open until a check that read the damaged pack again passed: a location
        // is damaged from the first sign of it; damage cleared within 24 hours is a finding.
        for d in ev.damage.iter().filter(|d| d.location == loc.name) {
            let Some(found) = ts(&d.found_at) else {
                continue;
            };
            let cleared = d
                .cleared_at
                .as_deref()
                .and_then(ts)
                .filter(|t| *t <= ev.end);
            let what = d
                .pack
                .as_ref()
                .map_or_else(|| "damage".to_string(), |p| format!("pack {p}"));
            match cleared {
                None => {
                    m.fail.push(format!(
                        "{}: {what} found damaged by {} {} at {} and not cleared by a check that read it again",
                        loc.name, d.found_by, d.run_id, d.found_at
                    ));
                    m.evidence.push(d.run_id.clone());
                }
                Some(t) if hours(found, t) > 24.0 => {
                    m.fail.push(format!(
                        "{}: {what} found damaged at {} stayed damaged {:.0} h (cleared by check {})",
                        loc.name,
                        d.found_at,
                        hours(found, t),
                        d.cleared_by.as_deref().unwrap_or("?")
                    ));
                    m.evidence.push(d.run_id.clone());
                }
                Some(t) => m.findings.push(format!(
                    "{}: {what} found damaged at {} was cleared within {:.0} h by check {}",
                    loc.name,
                    d.found_at,
                    hours(found, t),
                    d.cleared_by.as_deref().unwrap_or("?")
                )),
            }
        }
        let last = mine.last();
        m.findings.push(format!(
            "{}: {} checks, last {}; {:.0}% of pack data read within the {}-day window",
            loc.name,
            mine.len(),
            last.map_or("never", |c| c.checked_at.as_str()),
            coverage,
            parts
        ));
        if let Some(c) = last {
            m.evidence.push(c.run_id.clone());
        }
    }
    m.value = Some(round1(worst));
    m
}

fn has_backups(ev: &Evidence) -> bool {
    !ev.snapshots.is_empty()
}

fn last_passed<'a>(ev: &'a Evidence, source: &str, location: &str) -> Option<&'a DrillRecord> {
    ev.drills
        .iter()
        .filter(|d| {
            d.source == source && d.location == location && d.verdict == DrillVerdict::Passed
        })
        .rfind(|d| {
            d.finished_at
                .as_deref()
                .and_then(ts)
                .is_some_and(|t| t <= ev.end)
        })
}

fn drill_age(ev: &Evidence, cfg: &Config) -> Measure {
    if !has_backups(ev) {
        return Measure::none("there are no backups to drill yet");
    }
    let mut m = Measure::default();
    let mut worst: f64 = 0.0;
    for source in &cfg.sources {
        for location in &source.locations {
            match last_passed(ev, &source.name, location) {
                Some(d) => {
                    let age = d
                        .finished_at
                        .as_deref()
                        .and_then(ts)
                        .map_or(f64::INFINITY, |t| hours(t, ev.end) / 24.0);
                    worst = worst.max(age);
                    m.evidence.push(d.run_id.clone());
                    m.findings.push(format!(
                        "{}/{location}: last passed drill {} ({:.1} days before the period's end), snapshot {} ({})",
                        source.name,
                        d.finished_at.as_deref().unwrap_or("?"),
                        age,
                        d.snapshot_id.as_deref().map_or("?", |s| &s[..s.len().min(8)]),
                        d.selection
                    ));
                }
                None => {
                    worst = f64::INFINITY;
                    m.fail.push(format!(
                        "{}/{location}: no drill has ever passed",
                        source.name
                    ));
                }
            }
        }
    }
    for d in ev.drills.iter().filter(|d| {
        d.verdict == DrillVerdict::Failed && ts(&d.started_at).is_some_and(|t| t >= ev.period.from)
    }) {
        m.findings.push(format!(
            "{}/{}: drill {} failed: {}",
            d.source,
            d.location,
            d.run_id,
            d.failure_code.as_deref().unwrap_or("?")
        ));
        m.evidence.push(d.run_id.clone());
    }
    m.value = Some(if worst.is_finite() {
        round1(worst)
    } else {
        worst
    });
    m
}

fn drill_rto(ev: &Evidence, cfg: &Config) -> Measure {
    let mut m = Measure::default();
    let mut worst: Option<f64> = None;
    for source in &cfg.sources {
        for location in &source.locations {
            if let Some(d) = last_passed(ev, &source.name, location)
                && let Some(rto) = d.rto_seconds
            {
                worst = Some(worst.map_or(rto, |w: f64| w.max(rto)));
                m.evidence.push(d.run_id.clone());
                m.findings.push(format!(
                    "{}/{location}: RTO {rto:.1} s in drill {}",
                    source.name, d.run_id
                ));
            }
        }
    }
    match worst {
        Some(w) => {
            m.value = Some((w / 3600.0 * 1000.0).round() / 1000.0);
            m
        }
        None => Measure::none("no drill has passed yet, so no RTO was measured"),
    }
}

fn copy_lag(ev: &Evidence, cfg: &Config) -> Measure {
    let mut m = Measure::default();
    let mut by_backup: BTreeMap<&str, Vec<&HeldSnapshot>> = BTreeMap::new();
    for s in &ev.snapshots {
        by_backup.entry(s.backup_id.as_str()).or_default().push(s);
    }
    let mut worst: Option<f64> = None;
    let mut examined = 0usize;
    for (backup, rows) in &by_backup {
        let first = rows[0];
        let Some(taken) = ts(&first.taken_at) else {
            continue;
        };
        if taken < ev.period.from {
            continue;
        }
        let Some(source) = cfg.source(&first.source) else {
            continue;
        };
        if source.locations.len() < 2 {
            continue;
        }
        // A backup that retention removed everywhere before it was copied is not a copy miss.
        if rows.iter().all(|r| r.removed_at.is_some()) {
            continue;
        }
        examined += 1;
        for location in &source.locations {
            let lag = match rows.iter().find(|r| &r.location == location) {
                Some(r) => ts(&r.arrived_at).map_or(0.0, |a| hours(taken, a)),
                None => {
                    let lag = hours(taken, ev.end);
                    if lag > 24.0 {
                        m.fail.push(format!(
                            "backup {} of {} is not in {location} {lag:.1} h after it was taken",
                            &backup[..backup.len().min(8)],
                            first.source
                        ));
                        m.evidence.push((*backup).to_string());
                    }
                    lag
                }
            };
            worst = Some(worst.map_or(lag, |w: f64| w.max(lag)));
        }
    }
    match worst {
        Some(w) => {
            m.findings.insert(
                0,
                format!(
                    "{examined} backups of the period examined in every location of their source"
                ),
            );
            m.value = Some(round1(w));
            m
        }
        None => {
            Measure::none("no backup of a source with several locations was taken in the period")
        }
    }
}

fn copy_locations(cfg: &Config, immutable: bool) -> Measure {
    if cfg.sources.is_empty() {
        return Measure::none("no sources are configured");
    }
    let mut m = Measure::default();
    let mut worst = usize::MAX;
    for source in &cfg.sources {
        let n = source
            .locations
            .iter()
            .filter(|l| {
                !immutable
                    || cfg
                        .location(l)
                        .is_some_and(|loc| loc.object_lock().is_some())
            })
            .count();
        worst = worst.min(n);
        m.findings.push(format!(
            "{}: {n} {}location(s)",
            source.name,
            if immutable { "immutable " } else { "" }
        ));
    }
    m.value = Some(worst as f64);
    m
}

fn immutability(ev: &Evidence) -> Measure {
    let locked: Vec<_> = ev
        .locations
        .iter()
        .filter(|l| l.object_lock.is_some())
        .collect();
    let mut m = Measure::default();
    if locked.is_empty() {
        m.value = Some(0.0);
        m.fail
            .push("no location has Object Lock: there is no immutable copy".into());
        return m;
    }
    let mut worst = f64::INFINITY;
    for l in locked {
        let days = f64::from(l.object_lock_days.unwrap_or(0));
        let mode = l.object_lock.as_deref().unwrap_or("?");
        match &l.bucket {
            Some(b) if b.reachable => {
                if !b.object_lock_enabled {
                    m.fail.push(format!(
                        "{}: Object Lock is not enabled on the bucket",
                        l.name
                    ));
                }
                if b.versioning.as_deref() != Some("Enabled") && !b.lock_verified {
                    m.fail.push(format!(
                        "{}: versioning is {} and a probe object was not locked",
                        l.name,
                        b.versioning.as_deref().unwrap_or("unknown")
                    ));
                } else if !b.lock_verified {
                    m.fail.push(format!(
                        "{}: a probe object written with retention was not locked",
                        l.name
                    ));
                }
                for p in &b.problems {
                    m.findings.push(format!("{}: {p}", l.name));
                }
            }
            _ => {
                return Measure::none(format!(
                    "the bucket of {} could not be read at report time, so its lock is unproven",
                    l.name
                ));
            }
        }
        if mode == "governance" {
            m.warn.push(format!(
                "{}: governance mode (a privileged user can bypass it); compliance mode is required for a pass",
                l.name
            ));
        }
        m.findings.push(format!(
            "{}: {mode} mode, {days} days, bucket default {}",
            l.name,
            l.bucket
                .as_ref()
                .and_then(|b| b.default_retention.clone())
                .unwrap_or_else(|| "none".into())
        ));
        worst = worst.min(days);
    }
    m.value = Some(worst);
    m
}

fn crypto(ev: &Evidence) -> Measure {
    let mut m = Measure::default();
    let mut worst: Option<f64> = None;
    for l in &ev.locations {
        if let Err(e) = &l.opened {
            m.findings.push(format!(
                "{}: could not be opened at report time: {e}",
                l.name
            ));
            continue;
        }
        if !l.tls {
            m.fail.push(format!(
                "{}: the S3 endpoint is not TLS ({})",
                l.name, l.repository
            ));
        }
        match &l.keys {
            Ok(keys) => {
                for k in keys {
                    if !k.used_by_custodian {
                        m.fail.push(format!(
                            "{}: unknown key file {} (created {} by {}@{})",
                            l.name,
                            &k.id[..k.id.len().min(8)],
                            k.created.as_deref().unwrap_or("?"),
                            k.username.as_deref().unwrap_or("?"),
                            k.hostname.as_deref().unwrap_or("?"),
                        ));
                    } else if let Some(created) = k.created.as_deref().and_then(|c| {
                        c.parse::<jiff::Zoned>()
                            .ok()
                            .map(|z| z.timestamp())
                            .or_else(|| ts(c))
                    }) {
                        let age = hours(created, ev.now) / 24.0;
                        worst = Some(worst.map_or(age, |w: f64| w.max(age)));
                        m.findings.push(format!(
                            "{}: encrypted (AES-256 + Poly1305), key {} is {age:.0} days old",
                            l.name,
                            &k.id[..k.id.len().min(8)]
                        ));
                    }
                }
            }
            Err(e) => m
                .findings
                .push(format!("{}: key files unreadable: {e}", l.name)),
        }
    }
    for f in &ev.secret_files {
        if f.readable_by_others {
            m.fail.push(format!(
                "{} ({}) is readable by group or others (mode {})",
                f.setting,
                f.path,
                f.mode.as_deref().unwrap_or("?")
            ));
        }
    }
    match worst {
        Some(w) => {
            m.value = Some(round1(w));
            m
        }
        None => Measure {
            not_evaluated: Some("no repository key could be read at report time".into()),
            ..m
        },
    }
}

fn access(ev: &Evidence) -> Measure {
    let Ok(v) = &ev.audit_verification else {
        return Measure::none("the audit log could not be read");
    };
    if v.entries == 0 {
        return Measure::none("the audit log is empty");
    }
    let mut m = Measure::default();
    let mut privileged = 0usize;
    let mut unapproved = 0usize;
    for e in &ev.audit {
        let is_restore =
            e.action == "restore" && e.outcome != "refused" && e.outcome != "requested";
        let is_key_change = e.action == "keys.replace";
        if !(is_restore || is_key_change) {
            continue;
        }
        privileged += 1;
        // Through the control socket, the daemon refuses any restore outside the source's
        // scratch server until a second administrator approves it; the CLI has no such gate.
        let approved = e.trigger == "socket";
        if !approved {
            unapproved += 1;
            m.fail.push(format!(
                "{} by {} at {} ({}) without a second administrator's approval",
                e.action, e.actor, e.time, e.trigger
            ));
            m.evidence.push(format!("audit#{}", e.seq));
        }
    }
    let approvals = ev
        .approvals
        .iter()
        .filter(|a| a.approved_by.is_some())
        .count();
    m.findings.push(format!(
        "{privileged} privileged operation(s); {} under four eyes; {approvals} approval(s) granted",
        privileged - unapproved
    ));
    m.value = Some(unapproved as f64);
    m
}

fn audit(ev: &Evidence) -> Measure {
    let v = match &ev.audit_verification {
        Ok(v) => v,
        Err(e) => return Measure::none(format!("the audit log could not be read: {e}")),
    };
    if v.entries == 0 {
        return Measure::none("the audit log is empty");
    }
    let mut m = Measure::default();
    let mut broken = 0usize;
    if let Some(bad) = &v.first_bad {
        broken += 1;
        m.fail
            .push(format!("chain broken at line {}: {}", bad.line, bad.reason));
    }
    let mut prev: Option<u64> = None;
    for e in &ev.audit {
        if let Some(p) = prev
            && e.seq != p + 1
        {
            broken += 1;
            m.fail
                .push(format!("sequence gap: {p} is followed by {}", e.seq));
        }
        prev = Some(e.seq);
        let missing: Vec<&str> = [
            ("actor", e.actor.is_empty()),
            ("trigger", e.trigger.is_empty()),
            ("action", e.action.is_empty()),
            ("outcome", e.outcome.is_empty()),
            ("time", ts(&e.time).is_none()),
        ]
        .into_iter()
        .filter_map(|(k, bad)| bad.then_some(k))
        .collect();
        if !missing.is_empty() {
            broken += 1;
            m.fail
                .push(format!("entry {} lacks {}", e.seq, missing.join(", ")));
        }
    }
    m.findings.push(format!(
        "{} entries in the log, {} in the period; chain {}; head {}",
        v.entries,
        ev.audit.len(),
        if v.ok { "intact" } else { "BROKEN" },
        v.head_hash
            .as_deref()
            .map_or("-", |h| &h[..h.len().min(16)])
    ));
    m.value = Some(broken as f64);
    m
}

fn monitoring(ev: &Evidence, cfg: &Config) -> Measure {
    let scheduled: Vec<_> = ev
        .runs
        .iter()
        .filter(|r| r.trigger == Trigger::Schedule)
        .collect();
    if scheduled.is_empty() {
        return Measure::none("no scheduled jobs ran in the period");
    }
    let latency = cfg.reports.targets.alert_latency.as_secs_f64() / 3600.0;
    let mut m = Measure::default();
    let failures: Vec<_> = scheduled
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed | Outcome::Missed))
        .collect();
    let mut silent = 0usize;
    for run in &failures {
        let job = run
            .details
            .as_ref()
            .and_then(|d| d.get("job").and_then(|j| j.as_str()).map(str::to_string));
        let Some(end) = run.finished_at.as_deref().and_then(ts) else {
            continue;
        };
        let alerted = ev.alerts.iter().any(|a| {
            a.delivered
                && a.status != "succeeded"
                && job.as_deref().is_none_or(|j| j == a.job)
                && ts(&a.sent_at).is_some_and(|t| {
                    let h = hours(end, t);
                    // A missed run is alerted when the daemon is back; it cannot be earlier.
                    h >= -1.0 / 60.0 && (run.outcome == Outcome::Missed || h <= latency)
                })
        });
        if !alerted {
            silent += 1;
            m.fail.push(format!(
                "{} {} at {} ({}) produced no delivered alert within {:.0} min",
                run.kind,
                run.source.as_deref().or(job.as_deref()).unwrap_or(""),
                run.started_at,
                run.outcome,
                latency * 60.0
            ));
            m.evidence.push(run.id.clone());
        }
    }
    let channels = [
        cfg.notifications.webhook.as_ref().map(|_| "webhook"),
        (cfg.notifications.smtp.is_some() && !cfg.notifications.alert_to.is_empty())
            .then_some("e-mail"),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    m.findings.push(format!(
        "{} failed or missed scheduled run(s), {silent} without an alert; alert channels: {}",
        failures.len(),
        if channels.is_empty() {
            "none configured".to_string()
        } else {
            channels.join(", ")
        }
    ));
    m.value = Some(silent as f64);
    m
}

fn retention(ev: &Evidence) -> Measure {
    let mut m = Measure::default();
    let mut worst: Option<f64> = None;
    for l in &ev.locations {
        let Some(max) = l.retention_max_days else {
            m.findings
                .push(format!("{}: {}", l.name, l.retention_max_from));
            continue;
        };
        if let Some(lock) = l.object_lock_days
            && f64::from(lock) > max
        {
            m.fail.push(format!(
                "{}: Object Lock holds data {lock} days, longer than the retention maximum of {max:.0} days",
                l.name
            ));
        }
        let held = ev.snapshots.iter().filter(|s| {
            s.location == l.name
                && s.removed_at
                    .as_deref()
                    .and_then(ts)
                    .is_none_or(|r| r > ev.end)
        });
        let oldest = held
            .filter_map(|s| ts(&s.taken_at).map(|t| (t, s.snapshot_id.clone())))
            .min();
        let Some((oldest, id)) = oldest else {
            m.findings.push(format!("{}: holds no snapshot", l.name));
            continue;
        };
        let age = hours(oldest, ev.end) / 24.0;
        let beyond = (age - max).max(0.0);
        worst = Some(worst.map_or(beyond, |w: f64| w.max(beyond)));
        m.evidence.push(id.clone());
        m.findings.push(format!(
            "{}: oldest snapshot {} is {age:.1} days old; maximum {max:.0} days ({})",
            l.name,
            &id[..id.len().min(8)],
            l.retention_max_from
        ));
    }
    match worst {
        Some(w) => {
            m.value = Some(round1(w));
            m
        }
        None => Measure {
            not_evaluated: Some("no location has both a retention maximum and snapshots".into()),
            ..m
        },
    }
}

fn scratch(ev: &Evidence, cfg: &Config) -> Measure {
    if ev.scratch_instances.is_empty() {
        return Measure::none("no drill created a scratch database in the period");
    }
    let lifetime = cfg.drills.scratch_lifetime.as_secs_f64() / 3600.0;
    let mut m = Measure::default();
    let mut overdue = 0usize;
    for s in &ev.scratch_instances {
        let Some(created) = ts(&s.created_at) else {
            continue;
        };
        let end = s.removed_at.as_deref().and_then(ts).unwrap_or(ev.now);
        let lived = hours(created, end);
        if lived > lifetime {
            overdue += 1;
            m.fail.push(format!(
                "scratch {} ({}) of drill {} lived {:.1} h{}",
                s.id,
                s.kind,
                s.run_id,
                lived,
                if s.removed_at.is_none() {
                    " and still exists (orphan)"
                } else {
                    ""
                }
            ));
            m.evidence.push(s.run_id.clone());
        }
    }
    let swept = ev
        .scratch_instances
        .iter()
        .filter(|s| s.removed_by.as_deref() == Some("sweep"))
        .count();
    m.findings.push(format!(
        "{} scratch database(s) created; {} removed by their drill, {swept} by the start-up sweep; {overdue} outlived the {:.0}-minute lifetime",
        ev.scratch_instances.len(),
        ev.scratch_instances
            .iter()
            .filter(|s| s.removed_by.as_deref() == Some("teardown"))
            .count(),
        lifetime * 60.0
    ));
    m.value = Some(overdue as f64);
    m
}

fn records(ev: &Evidence, inputs: &Inputs<'_>) -> Measure {
    if ev.first_activity.is_none() {
        return Measure::none("Custodian recorded nothing yet");
    }
    let Some(problems) = &inputs.records_problems else {
        return Measure::none("earlier reports were not re-verified");
    };
    let mut m = Measure::default();
    m.findings.push(format!(
        "{} earlier report(s) re-verified; {} problem(s)",
        ev.reports.len(),
        problems.len()
    ));
    m.fail.extend(problems.iter().cloned());
    m.evidence.extend(ev.reports.iter().map(|r| r.id.clone()));
    m.value = Some(problems.len() as f64);
    m
}

fn residency(ev: &Evidence, cfg: &Config) -> Measure {
    let allowed = &cfg.reports.allowed_regions;
    if allowed.is_empty() {
        return Measure::none("no allow-list: set [reports] allowed-regions");
    }
    let mut m = Measure::default();
    let mut outside = 0usize;
    for l in &ev.locations {
        let ok = allowed.iter().any(|a| a == &l.region);
        if !ok {
            outside += 1;
            m.fail.push(format!(
                "{}: region {} is not on the allow-list",
                l.name, l.region
            ));
        }
        m.findings
            .push(format!("{}: {} ({})", l.name, l.region, l.kind));
    }
    m.value = Some(outside as f64);
    m
}

fn erasure(ev: &Evidence, cfg: &Config) -> Measure {
    if cfg.erasure.rules.is_empty() && ev.erasures.is_empty() {
        return Measure::none(
            "no erasure ledger in use: no [erasure.rules] configured and no erasure recorded",
        );
    }
    let mut m = Measure::default();
    let released: Vec<_> = ev
        .runs
        .iter()
        .filter(|r| {
            matches!(r.kind, RunKind::Restore | RunKind::Drill) && r.outcome == Outcome::Succeeded
        })
        .collect();
    let mut unreplayed = 0usize;
    for run in &released {
        let replayed = ev
            .erasure_replays
            .iter()
            .any(|p| p.run_id == run.id && p.ok == 1);
        if !replayed {
            unreplayed += 1;
            m.fail.push(format!(
                "{} {} at {} released data without a recorded erasure replay",
                run.kind, run.id, run.started_at
            ));
            m.evidence.push(run.id.clone());
        }
    }
    for p in ev.erasure_replays.iter().filter(|p| {
        p.ok == 0 && p.replayed_at.as_str() >= crate::model::time::format(ev.period.from).as_str()
    }) {
        m.findings.push(format!(
            "{} {}: replay failed, data withheld ({})",
            p.kind,
            p.run_id,
            p.error.as_deref().unwrap_or("?")
        ));
    }
    let from = crate::model::time::format(ev.period.from);
    let recorded = ev
        .erasures
        .iter()
        .filter(|e| e.recorded_at.as_str() >= from.as_str())
        .count();
    m.findings.insert(
        0,
        format!(
            "{recorded} erasure(s) recorded in the period, {} in the ledger; {} of {} restores and drills replayed it before release",
            ev.erasures.len(),
            released.len() - unreplayed,
            released.len()
        ),
    );
    let never = ev
        .erasures
        .iter()
        .filter(|e| e.horizon.gone_by.is_none())
        .count();
    if never > 0 {
        m.warn.push(format!(
            "{never} erased subject(s) are never gone from the backups as configured (a location keeps copies without an age bound)"
        ));
    }
    if let Some(latest) = ev
        .erasures
        .iter()
        .filter_map(|e| e.horizon.gone_by.as_deref().map(|g| (g, e)))
        .max_by(|a, b| a.0.cmp(b.0))
    {
        m.findings.push(format!(
            "latest horizon: {} ({} of {}, request {})",
            latest.0, latest.1.subject, latest.1.source, latest.1.request
        ));
    }
    m.value = Some(unreplayed as f64);
    m
}
