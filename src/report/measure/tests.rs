//! Every metric, on evidence built by hand: empty periods, a single snapshot, values exactly at
//! their thresholds, days on which DST changes, and clocks that disagree.

use std::path::Path;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::{Inputs, METRICS, Measure, measure};
use crate::audit::{BadEntry, Entry, Verification};
use crate::catalog::{
    DamageRecord, DrillRecord, DrillVerdict, HeldSnapshot, Outcome, ReplayRecord, ReportRecord,
    RunKind, RunRecord, ScratchRecord, StoredAlert, StoredCheck, Trigger,
};
use crate::config::Config;
use crate::model::time::format;
use crate::report::evidence::{Evidence, LocationFacts, SecretFileFacts};
use crate::report::period::Period;
use crate::report::rules::{Better, Verdict, judge};

const BASE: &str = r#"
[custodian]
state-dir = "state"
check-window = "30d"

[source.crm]
kind = "sqlite"
path = "crm.sqlite"
locations = ["local", "offsite"]

[location.local]
kind = "local"
path = "repos/local"
password-file = "keys/local.key"

[location.offsite]
kind = "local"
path = "repos/offsite"
password-file = "keys/offsite.key"

[retention]
keep-daily = 7
max-age = "90d"

[drills]
interval = "30d"
scratch-lifetime = "60m"
"#;

/// A directory with the files the configuration names (validation checks they exist).
fn home() -> &'static Path {
    static HOME: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    HOME.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir_all(dir.path().join("repos")).unwrap();
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("crm.sqlite"), b"").unwrap();
        for key in [
            "local.key",
            "offsite.key",
            "vault.key",
            "s3.id",
            "s3.secret",
        ] {
            let path = dir.path().join("keys").join(key);
            std::fs::write(&path, b"not a real secret\n").unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        }
        dir
    })
    .path()
}

/// The configuration with one schedule file holding `jobs`.
fn scheduled(name: &str, jobs: &str) -> Config {
    let dir = home().join(format!("schedules-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("jobs.toml"), jobs).unwrap();
    let base = BASE.replacen(
        "[custodian]\n",
        &format!("[custodian]\nschedules = \"schedules-{name}\"\n"),
        1,
    );
    Config::from_text(&home().join("custodian.toml"), &base)
        .unwrap_or_else(|e| panic!("the test configuration is valid: {e}"))
}

fn config(extra: &str) -> Config {
    Config::from_text(&home().join("custodian.toml"), &format!("{BASE}{extra}"))
        .unwrap_or_else(|e| panic!("the test configuration is valid: {e}"))
}

fn t(text: &str) -> Timestamp {
    text.parse().expect("a test timestamp")
}

fn at(base: Timestamp, hours: f64) -> String {
    format(base + SignedDuration::from_secs_f64(hours * 3600.0))
}

/// Nothing recorded: a closed ISO week (23–29 November 2026, UTC), reported on the next day.
fn empty() -> Evidence {
    evidence(
        Period::parse("2026-W48", &TimeZone::UTC).unwrap(),
        t("2026-11-30T08:00:00Z"),
    )
}

fn evidence(period: Period, now: Timestamp) -> Evidence {
    Evidence {
        end: period.end(now),
        period,
        now,
        first_activity: None,
        runs: Vec::new(),
        first_scheduled_backup: None,
        snapshots: Vec::new(),
        checks: Vec::new(),
        drills: Vec::new(),
        scratch_instances: Vec::new(),
        approvals: Vec::new(),
        alerts: Vec::new(),
        deliveries: Vec::new(),
        audit: Vec::new(),
        audit_verification: Ok(Verification {
            ok: true,
            entries: 0,
            first_bad: None,
            head_hash: None,
            torn_tail: false,
        }),
        reports: Vec::new(),
        locations: vec![facts("local"), facts("offsite")],
        secret_files: Vec::new(),
        erasures: Vec::new(),
        erasure_replays: Vec::new(),
        damage: Vec::new(),
        signing_key_encrypted: true,
        archives: Vec::new(),
    }
}

/// Evidence with Custodian active since well before the period.
fn active() -> Evidence {
    let mut ev = empty();
    ev.first_activity = Some("2026-10-01T00:00:00.000Z".into());
    ev
}

fn facts(name: &str) -> LocationFacts {
    LocationFacts {
        name: name.into(),
        kind: "local",
        repository: format!("/backup/{name}"),
        region: "local".into(),
        tls: true,
        opened: Ok(()),
        keys: Ok(Vec::new()),
        object_lock: None,
        object_lock_days: None,
        bucket: None,
        retention_max_days: Some(90.0),
        retention_max_from: "max-age".into(),
    }
}

fn run(kind: RunKind, trigger: Trigger, outcome: Outcome, started: &str) -> RunRecord {
    RunRecord {
        id: format!("run-{kind}-{started}"),
        kind,
        trigger,
        actor: "custodian".into(),
        source: Some("crm".into()),
        location: None,
        target: None,
        started_at: started.into(),
        finished_at: Some(started.into()),
        outcome,
        error_code: (outcome == Outcome::Failed).then(|| "engine.dump".into()),
        error_message: None,
        bytes_read: None,
        bytes_added: None,
        snapshot_id: None,
        details: None,
        job: None,
    }
}

fn snapshot(location: &str, backup: &str, taken: &str, arrived: &str) -> HeldSnapshot {
    HeldSnapshot {
        location: location.into(),
        snapshot_id: format!("{backup}-{location}"),
        backup_id: backup.into(),
        via: "backup".into(),
        copied_from: None,
        run_id: format!("run-{backup}"),
        arrived_at: arrived.into(),
        removed_at: None,
        source: "crm".into(),
        taken_at: taken.into(),
        size: 1,
        manifest_sha256: String::new(),
    }
}

/// A backup taken `hours` after the period's start that reached both locations then.
fn both(ev: &mut Evidence, backup: &str, hours: f64) {
    let taken = at(ev.period.from, hours);
    for location in ["local", "offsite"] {
        ev.snapshots
            .push(snapshot(location, backup, &taken, &taken));
    }
}

fn check(location: &str, at: &str, subset: &str, ok: bool) -> StoredCheck {
    StoredCheck {
        run_id: format!("check-{location}-{at}-{subset}"),
        location: location.into(),
        checked_at: at.into(),
        read_data_subset: Some(subset.into()),
        ok,
        errors: i64::from(!ok),
        warnings: 0,
        findings: Vec::new(),
    }
}

fn drill(location: &str, verdict: DrillVerdict, finished: &str, rto: f64) -> DrillRecord {
    DrillRecord {
        run_id: format!("drill-{location}-{finished}"),
        source: "crm".into(),
        location: location.into(),
        selection: "latest".into(),
        snapshot_id: Some("0123456789abcdef".into()),
        backup_id: None,
        snapshot_taken_at: None,
        snapshot_age_seconds: None,
        engine: Some("sqlite".into()),
        scratch: None,
        started_at: finished.into(),
        finished_at: Some(finished.into()),
        verdict,
        failure_code: (verdict == DrillVerdict::Failed).then(|| "drill.assertion".into()),
        failure_reason: None,
        rto_seconds: Some(rto),
        phases: serde_json::Value::Null,
        tables: None,
        rows: None,
        bytes: None,
        assertions: serde_json::Value::Null,
    }
}

fn entry(seq: u64, action: &str, trigger: &str, outcome: &str, scratch: bool) -> Entry {
    Entry {
        seq,
        time: "2026-11-25T10:00:00.000Z".into(),
        actor: "alice".into(),
        uid: 1000,
        role: "administrator".into(),
        trigger: trigger.into(),
        action: action.into(),
        target: Some("crm".into()),
        params: serde_json::json!({ "scratch": scratch }),
        outcome: outcome.into(),
        detail: None,
        prev: String::new(),
        hash: String::new(),
    }
}

fn with_audit(ev: &mut Evidence, entries: Vec<Entry>) {
    if let Ok(v) = &mut ev.audit_verification {
        v.entries = entries.len() as u64;
    }
    ev.audit = entries;
}

fn get(metric: &str, ev: &Evidence, cfg: &Config) -> Measure {
    measure(
        metric,
        ev,
        &Inputs {
            config: cfg,
            records_problems: Some(Vec::new()),
        },
    )
}

#[track_caller]
fn value(m: &Measure) -> f64 {
    m.value
        .unwrap_or_else(|| panic!("expected a value, got not evaluated: {m:?}"))
}

#[track_caller]
fn not_evaluated(m: &Measure) -> &str {
    assert!(m.value.is_none(), "expected not evaluated, got {m:?}");
    m.not_evaluated.as_deref().expect("a reason")
}

#[test]
fn every_metric_on_an_empty_period_is_a_value_or_says_why_not() {
    let cfg = config("");
    for metric in METRICS {
        let m = get(metric, &empty(), &cfg);
        if m.value.is_none() {
            let why = m.not_evaluated.as_deref().unwrap_or_default();
            assert!(
                !why.is_empty() && !why.starts_with("unknown metric"),
                "{metric}: {m:?}"
            );
        }
    }
    // What can be judged from the configuration alone is judged, never passed by default.
    assert_eq!(value(&get("copies.min_locations", &empty(), &cfg)), 2.0);
    assert_eq!(
        value(&get("copies.min_immutable_locations", &empty(), &cfg)),
        0.0
    );
    let m = get("immutability.lock_days", &empty(), &cfg);
    assert_eq!(value(&m), 0.0);
    assert!(!m.fail.is_empty());
}

// --- schedule.success_percent -------------------------------------------------------------

#[test]
fn schedule_counts_retries_within_an_hour_and_silent_misses() {
    let cfg = scheduled(
        "utc",
        "[[job]]\nname = \"nightly\"\nkind = \"backup\"\ncron = \"0 0 2 * * *\"\ntime-zone = \"UTC\"\n",
    );
    let mut ev = active();
    assert_eq!(
        not_evaluated(&get("schedule.success_percent", &ev, &cfg)),
        "no scheduled backups in the period"
    );
    ev.first_scheduled_backup = Some("2026-10-01T02:00:00.000Z".into());
    // 23–29 November: seven fires at 02:00. Monday to Friday succeed; Saturday fails and is
    // retried successfully exactly 60 minutes later; Sunday leaves no trace.
    for day in 23..=27 {
        ev.runs.push(run(
            RunKind::Backup,
            Trigger::Schedule,
            Outcome::Succeeded,
            &format!("2026-11-{day}T02:00:05.000Z"),
        ));
    }
    ev.runs.push(run(
        RunKind::Backup,
        Trigger::Schedule,
        Outcome::Failed,
        "2026-11-28T02:00:00.000Z",
    ));
    ev.runs.push(run(
        RunKind::Backup,
        Trigger::Cli,
        Outcome::Succeeded,
        "2026-11-28T03:00:00.000Z",
    ));
    let m = get("schedule.success_percent", &ev, &cfg);
    // 6 of 5 + 1 + 1 silent: the retry counts, the silence does not.
    assert_eq!(value(&m), 85.7, "{m:?}");
    assert_eq!(m.fail.len(), 1, "{m:?}");
    assert!(m.fail[0].contains("nightly") && m.fail[0].contains("silent miss"));
    // A retry one second later than the hour does not rescue the failure.
    ev.runs.last_mut().unwrap().started_at = "2026-11-28T03:00:01.000Z".into();
    assert_eq!(value(&get("schedule.success_percent", &ev, &cfg)), 71.4);
}

#[test]
fn schedule_follows_its_time_zone_across_the_end_of_dst() {
    let berlin = TimeZone::get("Europe/Berlin").unwrap();
    let cfg = scheduled(
        "berlin",
        "[[job]]\nname = \"nightly\"\nkind = \"backup\"\ncron = \"0 30 1 * * *\"\ntime-zone = \"Europe/Berlin\"\n",
    );
    // 19–25 October 2026 in Berlin; DST ends on Sunday the 25th (03:00 CEST → 02:00 CET).
    let period = Period::parse("2026-W43", &berlin).unwrap();
    let mut ev = evidence(period, t("2026-10-27T12:00:00Z"));
    ev.first_activity = Some("2026-10-01T00:00:00.000Z".into());
    ev.first_scheduled_backup = Some("2026-10-01T00:00:00.000Z".into());
    for day in 19..=25 {
        // 01:30 local: 23:30 UTC the day before under CEST, and so on the 25th too (01:30 is
        // before the change at 03:00).
        let local = jiff::civil::date(2026, 10, day)
            .at(1, 30, 0, 0)
            .to_zoned(berlin.clone())
            .unwrap();
        ev.runs.push(run(
            RunKind::Backup,
            Trigger::Schedule,
            Outcome::Succeeded,
            &format(local.timestamp()),
        ));
    }
    let m = get("schedule.success_percent", &ev, &cfg);
    assert_eq!(value(&m), 100.0, "{m:?}");
    assert!(m.findings[0].starts_with("7 of 7"), "{m:?}");
}

// --- rpo.worst_gap_hours ------------------------------------------------------------------

#[test]
fn rpo_of_an_empty_period_and_of_a_single_snapshot() {
    let cfg = config("");
    assert!(
        not_evaluated(&get("rpo.worst_gap_hours", &empty(), &cfg)).contains("recorded nothing")
    );
    let mut ev = active();
    // No snapshot at all: the whole week (168 h) without one.
    assert_eq!(value(&get("rpo.worst_gap_hours", &ev, &cfg)), 168.0);
    // One snapshot in the middle of the week: 84 h before it, 84 h after it.
    both(&mut ev, "b1", 84.0);
    let m = get("rpo.worst_gap_hours", &ev, &cfg);
    assert_eq!(value(&m), 84.0, "{m:?}");
    assert_eq!(m.evidence, ["b1-local", "b1-offsite"]);
}

#[test]
fn rpo_exactly_at_its_target_passes_and_a_second_more_does_not() {
    let cfg = config("");
    let mut ev = active();
    // The newest snapshot before the period bounds the first gap.
    for day in 0..=7 {
        both(&mut ev, &format!("b{day}"), f64::from(day) * 24.0);
    }
    let gap = value(&get("rpo.worst_gap_hours", &ev, &cfg));
    assert_eq!(gap, 24.0);
    assert_eq!(judge(gap, Better::Lower, 24.0, 36.0), Verdict::Pass);
    ev.snapshots.retain(|s| s.backup_id != "b4");
    let gap = value(&get("rpo.worst_gap_hours", &ev, &cfg));
    assert_eq!(gap, 48.0);
    assert_eq!(judge(gap, Better::Lower, 24.0, 36.0), Verdict::Fail);
}

#[test]
fn rpo_starts_counting_at_custodians_first_activity() {
    let cfg = config("");
    let mut ev = empty();
    // Installed on Thursday noon, first backup at once: the days before are not a gap.
    ev.first_activity = Some(at(ev.period.from, 84.0));
    both(&mut ev, "b1", 84.0);
    both(&mut ev, "b2", 144.0);
    assert_eq!(value(&get("rpo.worst_gap_hours", &ev, &cfg)), 60.0);
}

#[test]
fn a_continuous_archive_covering_the_period_makes_its_lag_the_rpo_and_a_gap_does_not() {
    let cfg = config("");
    let mut ev = active();
    both(&mut ev, "b1", 84.0);
    let covering = crate::report::evidence::ArchiveFacts {
        source: "crm".into(),
        window_from: Some(at(ev.period.from, -24.0)),
        window_to: Some(format(ev.end)),
        lag_seconds: Some(36.0),
        gaps: Vec::new(),
        error: None,
    };
    ev.archives = vec![covering.clone()];
    let m = get("rpo.worst_gap_hours", &ev, &cfg);
    // The primary location is recoverable to the second; the copy's gaps still count.
    assert_eq!(value(&m), 84.0, "{m:?}");
    assert!(
        m.findings
            .iter()
            .any(|f| f.contains("recoverable to any second")),
        "{m:?}"
    );
    assert!(
        m.findings
            .iter()
            .any(|f| f.starts_with("crm/local: continuous archive") && f.contains("lag 36 s")),
        "{m:?}"
    );
    // A gap: the backups' RPO again, and the gap named.
    ev.archives = vec![crate::report::evidence::ArchiveFacts {
        gaps: vec!["000000010000000000000004 to 000000010000000000000005 missing".into()],
        ..covering
    }];
    let m = get("rpo.worst_gap_hours", &ev, &cfg);
    assert_eq!(value(&m), 84.0, "{m:?}");
    assert!(m.findings.iter().any(|f| f.contains("missing")), "{m:?}");
}

// --- integrity.coverage_percent -----------------------------------------------------------

#[test]
fn integrity_coverage_counts_distinct_subsets_within_the_window() {
    let cfg = config("");
    let mut ev = active();
    assert!(
        not_evaluated(&get("integrity.coverage_percent", &ev, &cfg))
            .contains("no repository check")
    );
    let window_start = ev.end - SignedDuration::from_hours(30 * 24);
    // local: a full read exactly at the window's start still counts.
    ev.checks
        .push(check("local", &format(window_start), "all", true));
    // offsite: 15 of 30 parts, one of them twice, one failed, one just outside the window.
    for k in 1..=15 {
        ev.checks.push(check(
            "offsite",
            &at(ev.end, -f64::from(k)),
            &format!("{k}/30"),
            true,
        ));
    }
    ev.checks
        .push(check("offsite", &at(ev.end, -20.0), "3/30", true));
    ev.checks
        .push(check("offsite", &at(ev.end, -21.0), "16/30", false));
    ev.checks.push(check(
        "offsite",
        &format(window_start - SignedDuration::from_secs(1)),
        "17/30",
        true,
    ));
    let m = get("integrity.coverage_percent", &ev, &cfg);
    assert_eq!(value(&m), 50.0, "{m:?}");
    ev.checks[0].checked_at = format(window_start - SignedDuration::from_secs(1));
    assert_eq!(value(&get("integrity.coverage_percent", &ev, &cfg)), 0.0);
}

#[test]
fn damage_fails_integrity_until_cleared_and_a_slow_clearance_too() {
    let cfg = config("");
    let mut ev = active();
    ev.checks
        .push(check("local", &at(ev.end, -1.0), "all", true));
    ev.checks
        .push(check("offsite", &at(ev.end, -1.0), "all", true));
    let found = ev.period.from + SignedDuration::from_hours(10);
    let damage = |cleared: Option<Timestamp>| DamageRecord {
        id: 1,
        location: "offsite".into(),
        run_id: "check-1".into(),
        found_at: format(found),
        found_by: "check".into(),
        pack: Some("9f2c1a7e".into()),
        detail: "pack 9f2c1a7e is unreadable".into(),
        cleared_at: cleared.map(format),
        cleared_by: cleared.map(|_| "check-2".into()),
    };
    ev.damage = vec![damage(None)];
    let m = get("integrity.coverage_percent", &ev, &cfg);
    assert_eq!(value(&m), 100.0);
    assert!(m.fail[0].contains("pack 9f2c1a7e") && m.fail[0].contains("not cleared"));
    // Cleared exactly 24 h later: a finding, not a failure; a second later: a failure.
    ev.damage = vec![damage(Some(found + SignedDuration::from_hours(24)))];
    let m = get("integrity.coverage_percent", &ev, &cfg);
    assert!(m.fail.is_empty() && m.findings.iter().any(|f| f.contains("cleared within 24 h")));
    ev.damage = vec![damage(Some(
        found + SignedDuration::from_secs(24 * 3600 + 1),
    ))];
    assert_eq!(get("integrity.coverage_percent", &ev, &cfg).fail.len(), 1);
    // Cleared after the period's end: still open within it.
    ev.damage = vec![damage(Some(ev.end + SignedDuration::from_hours(1)))];
    assert!(get("integrity.coverage_percent", &ev, &cfg).fail[0].contains("not cleared"));
}

// --- drill.age_days and drill.worst_rto_hours ---------------------------------------------

#[test]
fn drill_age_at_the_interval_and_an_undrilled_location() {
    let cfg = config("");
    let mut ev = active();
    assert!(not_evaluated(&get("drill.age_days", &ev, &cfg)).contains("no backups"));
    both(&mut ev, "b1", 1.0);
    ev.drills.push(drill(
        "local",
        DrillVerdict::Passed,
        &at(ev.end, -30.0 * 24.0),
        90.0,
    ));
    let m = get("drill.age_days", &ev, &cfg);
    assert_eq!(value(&m), f64::INFINITY);
    assert_eq!(m.fail, ["crm/offsite: no drill has ever passed"]);
    ev.drills.push(drill(
        "offsite",
        DrillVerdict::Passed,
        &at(ev.end, -2.0),
        60.0,
    ));
    let age = value(&get("drill.age_days", &ev, &cfg));
    assert_eq!(age, 30.0);
    assert_eq!(judge(age, Better::Lower, 30.0, 90.0), Verdict::Pass);
    // A failed drill later does not undo the passed one, but is listed.
    ev.drills.push(drill(
        "local",
        DrillVerdict::Failed,
        &at(ev.end, -1.0),
        10.0,
    ));
    let m = get("drill.age_days", &ev, &cfg);
    assert_eq!(value(&m), 30.0);
    assert!(
        m.findings
            .iter()
            .any(|f| f.contains("failed: drill.assertion"))
    );
}

#[test]
fn a_drill_recorded_after_the_periods_end_does_not_count_for_it() {
    // A catalog clock ahead of the reporting one, or a report regenerated later: either way a
    // drill that finished after the period cannot prove it.
    let cfg = config("");
    let mut ev = active();
    both(&mut ev, "b1", 1.0);
    ev.drills
        .push(drill("local", DrillVerdict::Passed, &at(ev.end, 0.5), 90.0));
    ev.drills.push(drill(
        "offsite",
        DrillVerdict::Passed,
        &at(ev.end, -0.5),
        90.0,
    ));
    let m = get("drill.age_days", &ev, &cfg);
    assert_eq!(m.fail, ["crm/local: no drill has ever passed"]);
    let m = get("drill.worst_rto_hours", &ev, &cfg);
    assert_eq!(
        m.warn,
        ["crm/local: not drilled, so its RTO was never measured"]
    );
}

#[test]
fn rto_is_the_slowest_latest_drill_and_never_made_up() {
    let cfg = config("");
    let mut ev = active();
    assert!(not_evaluated(&get("drill.worst_rto_hours", &ev, &cfg)).contains("no drill"));
    ev.drills.push(drill(
        "local",
        DrillVerdict::Passed,
        &at(ev.end, -48.0),
        4.0 * 3600.0,
    ));
    ev.drills.push(drill(
        "local",
        DrillVerdict::Passed,
        &at(ev.end, -24.0),
        1800.0,
    ));
    ev.drills.push(drill(
        "offsite",
        DrillVerdict::Passed,
        &at(ev.end, -24.0),
        3600.0,
    ));
    ev.drills.push(drill(
        "offsite",
        DrillVerdict::Failed,
        &at(ev.end, -1.0),
        9.0 * 3600.0,
    ));
    let m = get("drill.worst_rto_hours", &ev, &cfg);
    // The latest passed drill of each location counts: 0.5 h and 1 h.
    assert_eq!(value(&m), 1.0);
    assert!(m.warn.is_empty());
    ev.drills[2].rto_seconds = Some(4.0 * 3600.0);
    let rto = value(&get("drill.worst_rto_hours", &ev, &cfg));
    assert_eq!(judge(rto, Better::Lower, 4.0, 5.0), Verdict::Pass);
}

// --- copies -------------------------------------------------------------------------------

#[test]
fn copy_lag_of_late_missing_and_skewed_copies() {
    let cfg = config("");
    let mut ev = active();
    assert!(not_evaluated(&get("copies.worst_lag_hours", &ev, &cfg)).contains("no backup"));
    let taken = ev.period.from + SignedDuration::from_hours(24);
    ev.snapshots
        .push(snapshot("local", "b1", &format(taken), &format(taken)));
    ev.snapshots
        .push(snapshot("offsite", "b1", &format(taken), &at(taken, 6.0)));
    let lag = value(&get("copies.worst_lag_hours", &ev, &cfg));
    assert_eq!(lag, 6.0);
    assert_eq!(judge(lag, Better::Lower, 6.0, 24.0), Verdict::Pass);
    // Not copied, 24 h before the period's end: late, not yet a failure; a second more is.
    let taken = ev.end - SignedDuration::from_hours(24);
    ev.snapshots
        .push(snapshot("local", "b2", &format(taken), &format(taken)));
    let m = get("copies.worst_lag_hours", &ev, &cfg);
    assert_eq!(value(&m), 24.0);
    assert!(m.fail.is_empty());
    ev.snapshots.last_mut().unwrap().taken_at = format(taken - SignedDuration::from_secs(1));
    let m = get("copies.worst_lag_hours", &ev, &cfg);
    assert_eq!(m.fail.len(), 1);
    assert!(m.fail[0].contains("is not in offsite"));
    // Removed everywhere by retention before it was copied: not a copy miss.
    ev.snapshots.last_mut().unwrap().removed_at = Some(format(ev.end));
    assert!(get("copies.worst_lag_hours", &ev, &cfg).fail.is_empty());
    // The writing host's clock 2 h ahead of the catalog's: an arrival "before" it was taken
    // is no lag, and is said.
    ev.snapshots.push(snapshot(
        "local",
        "b3",
        &at(ev.period.from, 50.0),
        &at(ev.period.from, 48.0),
    ));
    ev.snapshots.push(snapshot(
        "offsite",
        "b3",
        &at(ev.period.from, 50.0),
        &at(ev.period.from, 48.5),
    ));
    let m = get("copies.worst_lag_hours", &ev, &cfg);
    assert_eq!(value(&m), 6.0);
    assert!(
        m.findings.iter().any(|f| f.contains("the clocks disagree")),
        "{m:?}"
    );
}

#[test]
fn copies_per_source_count_locations_and_immutable_ones() {
    let cfg = config(
        r#"
[location.vault]
kind = "s3"
bucket = "crm-vault"
region = "eu-central-1"
access-key-id-file = "keys/s3.id"
secret-access-key-file = "keys/s3.secret"
password-file = "keys/vault.key"
object-lock = { mode = "compliance", days = 30 }

[source.billing]
kind = "sqlite"
path = "crm.sqlite"
locations = ["local", "vault"]
"#,
    );
    let m = get("copies.min_locations", &empty(), &cfg);
    assert_eq!(value(&m), 2.0);
    let m = get("copies.min_immutable_locations", &empty(), &cfg);
    // crm has none, billing has the vault: the fewest counts.
    assert_eq!(value(&m), 0.0);
    assert_eq!(
        m.findings,
        [
            "crm: 0 immutable locations",
            "billing: 1 immutable location"
        ]
    );
}

#[test]
fn object_lock_must_be_proven_on_the_bucket_and_in_compliance_mode() {
    let cfg = config("");
    let mut ev = empty();
    let mut vault = facts("vault");
    vault.kind = "s3";
    vault.object_lock = Some("compliance".into());
    vault.object_lock_days = Some(30);
    vault.bucket = Some(crate::location::s3::BucketState {
        reachable: true,
        versioning: Some("Enabled".into()),
        object_lock_enabled: true,
        default_retention: Some("compliance 30d".into()),
        lock_verified: true,
        problems: Vec::new(),
    });
    ev.locations.push(vault);
    let m = get("immutability.lock_days", &ev, &cfg);
    assert_eq!(value(&m), 30.0);
    assert!(m.fail.is_empty() && m.warn.is_empty());
    assert_eq!(judge(30.0, Better::Higher, 30.0, 7.0), Verdict::Pass);
    let vault = ev.locations.last_mut().unwrap();
    vault.object_lock = Some("governance".into());
    vault.bucket.as_mut().unwrap().lock_verified = false;
    let m = get("immutability.lock_days", &ev, &cfg);
    assert!(m.warn[0].contains("governance"));
    assert!(m.fail[0].contains("probe object"));
    ev.locations
        .last_mut()
        .unwrap()
        .bucket
        .as_mut()
        .unwrap()
        .reachable = false;
    assert!(not_evaluated(&get("immutability.lock_days", &ev, &cfg)).contains("unproven"));
}

#[test]
fn retention_beyond_the_maximum_at_and_past_it() {
    let cfg = config("");
    let mut ev = active();
    let oldest = ev.end - SignedDuration::from_hours(90 * 24);
    ev.snapshots
        .push(snapshot("local", "old", &format(oldest), &format(oldest)));
    ev.snapshots
        .push(snapshot("offsite", "old", &format(oldest), &format(oldest)));
    let m = get("retention.days_beyond_max", &ev, &cfg);
    assert_eq!(value(&m), 0.0, "{m:?}");
    ev.snapshots[0].taken_at = format(oldest - SignedDuration::from_hours(24));
    assert_eq!(value(&get("retention.days_beyond_max", &ev, &cfg)), 1.0);
    // Removed before the period's end: no longer held.
    ev.snapshots[0].removed_at = Some(at(ev.end, -1.0));
    let m = get("retention.days_beyond_max", &ev, &cfg);
    assert_eq!(value(&m), 0.0);
    assert!(m.findings.iter().any(|f| f == "local: holds no snapshot"));
    // A lock longer than the maximum keeps data the policy says to remove.
    ev.locations[1].object_lock_days = Some(120);
    assert!(get("retention.days_beyond_max", &ev, &cfg).fail[0].contains("longer than"));
    for l in &mut ev.locations {
        l.retention_max_days = None;
    }
    assert!(
        not_evaluated(&get("retention.days_beyond_max", &ev, &cfg)).contains("retention maximum")
    );
}

#[test]
fn residency_needs_an_allow_list_and_names_what_is_outside() {
    assert!(not_evaluated(&get("residency.outside", &empty(), &config(""))).contains("allow-list"));
    let cfg = config("\n[reports]\nallowed-regions = [\"eu-central-1\"]\n");
    let mut ev = empty();
    ev.locations[0].region = "eu-central-1".into();
    let m = get("residency.outside", &ev, &cfg);
    assert_eq!(value(&m), 1.0);
    assert_eq!(m.fail, ["offsite: region local is not on the allow-list"]);
}

// --- access, keys, audit, monitoring ------------------------------------------------------

#[test]
fn keys_age_unknown_keys_and_clock_skew() {
    let cfg = config("");
    let mut ev = empty();
    assert!(not_evaluated(&get("crypto.key_age_days", &ev, &cfg)).contains("no repository key"));
    let key = |id: &str, created: Timestamp, ours: bool| crate::repo::KeyInfo {
        id: id.into(),
        created: Some(format(created)),
        hostname: Some("backup-1".into()),
        username: Some("custodian".into()),
        used_by_custodian: ours,
    };
    ev.locations[0].keys = Ok(vec![key(
        "aaaaaaaa11",
        ev.now - SignedDuration::from_hours(365 * 24),
        true,
    )]);
    // A key written by a host whose clock runs a day ahead is new, not -1 days old.
    ev.locations[1].keys = Ok(vec![key(
        "bbbbbbbb22",
        ev.now + SignedDuration::from_hours(24),
        true,
    )]);
    let m = get("crypto.key_age_days", &ev, &cfg);
    assert_eq!(value(&m), 365.0);
    assert_eq!(judge(365.0, Better::Lower, 365.0, 365.0), Verdict::Pass);
    assert!(
        m.findings
            .iter()
            .any(|f| f.contains("key bbbbbbbb is 0 days old")),
        "{m:?}"
    );
    assert!(m.fail.is_empty());
    ev.locations[1].keys = Ok(vec![key("cccccccc33", ev.now, false)]);
    ev.secret_files.push(SecretFileFacts {
        setting: "location.local.password".into(),
        path: "/etc/custodian/local.key".into(),
        mode: Ok("0644".into()),
        readable_by_others: true,
    });
    let m = get("crypto.key_age_days", &ev, &cfg);
    assert!(
        m.fail
            .iter()
            .any(|f| f.contains("unknown key file cccccccc"))
    );
    assert!(
        m.fail
            .iter()
            .any(|f| f.contains("readable by group or others (mode 0644)"))
    );
}

fn granted(seq: u64, action: &str, trigger: &str, grant: serde_json::Value) -> Entry {
    let mut e = entry(seq, action, trigger, "succeeded", false);
    e.params["access"] = grant;
    e
}

#[test]
fn every_dangerous_operation_needs_four_eyes_and_second_factors() {
    let mut ev = empty();
    assert!(not_evaluated(&get("access.unapproved", &ev, &config(""))).contains("empty"));
    let full = serde_json::json!({
        "id": "g1", "action": "restore", "second_factor": true,
        "approval": "3f2a91c0", "approved_by": "bob", "approver_second_factor": true,
    });
    with_audit(
        &mut ev,
        vec![
            entry(1, "backup", "schedule", "succeeded", false),
            // Approved, both second factors: fine — and its second audit entry counts once.
            granted(2, "restore", "socket", full.clone()),
            granted(3, "restore", "socket", full),
            // Into scratch: not dangerous.
            entry(4, "restore", "cli", "succeeded", true),
            // Refused: nothing ran.
            entry(5, "restore", "socket", "refused", false),
            // No approval, no second factor.
            granted(
                6,
                "prune",
                "cli",
                serde_json::json!({ "id": "g2", "action": "prune", "second_factor": false }),
            ),
            // Approved by someone without a second factor.
            granted(
                7,
                "keys.replace",
                "cli",
                serde_json::json!({
                    "id": "g3", "action": "keys.replace", "second_factor": true,
                    "approval": "77aa", "approved_by": "carol", "approver_second_factor": false,
                }),
            ),
            // Recorded without any grant (before access control, or around it).
            entry(8, "restore", "cli", "succeeded", false),
        ],
    );
    let m = get("access.unapproved", &ev, &config(""));
    assert_eq!(value(&m), 3.0, "{m:?}");
    assert_eq!(m.evidence, ["audit#6", "audit#7", "audit#8"]);
    assert!(
        m.fail[0].contains("without a second factor and without a second administrator's approval"),
        "{m:?}"
    );
    assert!(m.fail[1].contains("approved (77aa) by carol without a second factor"));
    assert!(
        m.findings[0].starts_with("4 dangerous operations; 1 with a second factor"),
        "{m:?}"
    );
    assert!(m.findings[0].contains("1 restore into scratch"));
}

#[test]
fn break_glass_is_listed_loudly() {
    let mut ev = empty();
    let mut glass = entry(1, "break-glass", "cli", "used", false);
    glass.params =
        serde_json::json!({ "reason": "primary DB lost, CTO on the phone", "second_factor": true });
    glass.detail = Some("restore snapshot latest into postgres://db2/crm".into());
    with_audit(
        &mut ev,
        vec![
            glass.clone(),
            granted(
                2,
                "restore",
                "cli",
                serde_json::json!({
                    "id": "g1", "action": "restore", "second_factor": true,
                    "break_glass": "primary DB lost, CTO on the phone",
                }),
            ),
        ],
    );
    let m = get("access.unapproved", &ev, &config(""));
    assert_eq!(value(&m), 0.0, "{m:?}");
    assert!(m.warn[0].starts_with("BREAK-GLASS by alice"), "{m:?}");
    assert!(m.warn[0].contains("reason given: primary DB lost"));
    glass.params["second_factor"] = false.into();
    with_audit(&mut ev, vec![glass]);
    assert!(get("access.unapproved", &ev, &config("")).fail[0].contains("without a second factor"));
}

#[test]
fn the_audit_chain_breaks_on_gaps_missing_fields_and_bad_hashes() {
    let cfg = config("");
    let mut ev = empty();
    assert!(not_evaluated(&get("audit.broken_entries", &ev, &cfg)).contains("empty"));
    let mut entries = vec![
        entry(1, "backup", "schedule", "succeeded", false),
        entry(2, "check", "schedule", "succeeded", false),
    ];
    with_audit(&mut ev, entries.clone());
    assert_eq!(value(&get("audit.broken_entries", &ev, &cfg)), 0.0);
    entries.push(entry(4, "drill", "schedule", "succeeded", false));
    entries.push(entry(5, "", "schedule", "succeeded", false));
    with_audit(&mut ev, entries);
    let m = get("audit.broken_entries", &ev, &cfg);
    assert_eq!(value(&m), 2.0);
    assert_eq!(
        m.fail,
        ["sequence gap: 2 is followed by 4", "entry 5 lacks action"]
    );
    if let Ok(v) = &mut ev.audit_verification {
        v.ok = false;
        v.first_bad = Some(BadEntry {
            line: 3,
            seq: Some(4),
            reason: "its hash does not match its content".into(),
        });
    }
    assert_eq!(value(&get("audit.broken_entries", &ev, &cfg)), 3.0);
}

#[test]
fn a_failure_must_be_alerted_within_the_latency() {
    let cfg = config("\n[reports.targets]\nalert-latency = \"15m\"\n");
    let mut ev = active();
    assert!(not_evaluated(&get("monitoring.silent_failures", &ev, &cfg)).contains("no scheduled"));
    let mut failed = run(
        RunKind::Backup,
        Trigger::Schedule,
        Outcome::Failed,
        "2026-11-25T02:00:00.000Z",
    );
    failed.finished_at = Some("2026-11-25T02:10:00.000Z".into());
    failed.details = Some(serde_json::json!({ "job": "nightly" }));
    ev.runs.push(failed);
    let alert = |sent: &str, delivered: bool| StoredAlert {
        job: "nightly".into(),
        status: "failed".into(),
        channel: "email".into(),
        sent_at: sent.into(),
        delivered,
        error: None,
    };
    let m = get("monitoring.silent_failures", &ev, &cfg);
    assert_eq!(value(&m), 1.0);
    assert!(m.fail[0].contains("no delivered alert within 15 min"));
    ev.alerts = vec![alert("2026-11-25T02:25:00.000Z", true)];
    assert_eq!(value(&get("monitoring.silent_failures", &ev, &cfg)), 0.0);
    ev.alerts = vec![alert("2026-11-25T02:25:01.000Z", true)];
    assert_eq!(value(&get("monitoring.silent_failures", &ev, &cfg)), 1.0);
    ev.alerts = vec![alert("2026-11-25T02:11:00.000Z", false)];
    assert_eq!(value(&get("monitoring.silent_failures", &ev, &cfg)), 1.0);
    // A missed run is alerted when the daemon is back, however late that is.
    ev.runs[0].outcome = Outcome::Missed;
    ev.alerts = vec![alert("2026-11-26T09:00:00.000Z", true)];
    assert_eq!(value(&get("monitoring.silent_failures", &ev, &cfg)), 0.0);
}

// --- scratch, records, erasure, privacy ---------------------------------------------------

#[test]
fn scratch_databases_must_go_within_their_lifetime() {
    let cfg = config("");
    let mut ev = empty();
    assert!(not_evaluated(&get("scratch.overdue", &ev, &cfg)).contains("no drill"));
    let created = ev.period.from + SignedDuration::from_hours(30);
    let scratch = |lived: Option<i64>| ScratchRecord {
        id: "s1".into(),
        run_id: "drill-1".into(),
        kind: "postgres".into(),
        created_at: format(created),
        expires_at: format(created + SignedDuration::from_hours(1)),
        removed_at: lived.map(|s| format(created + SignedDuration::from_secs(s))),
        removed_by: lived.map(|_| "teardown".into()),
        ..ScratchRecord::default()
    };
    ev.scratch_instances = vec![scratch(Some(3600))];
    assert_eq!(value(&get("scratch.overdue", &ev, &cfg)), 0.0);
    ev.scratch_instances = vec![scratch(Some(3601))];
    assert_eq!(value(&get("scratch.overdue", &ev, &cfg)), 1.0);
    ev.scratch_instances = vec![scratch(None)];
    let m = get("scratch.overdue", &ev, &cfg);
    assert!(m.fail[0].contains("still exists (orphan)"));
}

fn report_record(id: &str, period: &str, generated: &str, overall: &str) -> ReportRecord {
    ReportRecord {
        id: id.into(),
        run_id: None,
        period: period.into(),
        period_from: String::new(),
        period_to: String::new(),
        generated_at: generated.into(),
        dir: String::new(),
        manifest_sha256: String::new(),
        key_id: String::new(),
        previous_id: None,
        overall: overall.into(),
        verdicts: "{}".into(),
        metrics: "{}".into(),
    }
}

#[test]
fn records_list_supersessions_and_flag_a_fail_turned_pass() {
    let cfg = config("");
    assert!(not_evaluated(&get("records.problems", &empty(), &cfg)).contains("nothing"));
    let mut ev = active();
    ev.reports = vec![
        report_record("2026-10-a", "2026-10", "2026-11-01T06:00:00.000Z", "fail"),
        report_record("2026-10-b", "2026-10", "2026-11-02T06:00:00.000Z", "pass"),
        report_record("2026-W48-a", "2026-W48", "2026-11-30T06:00:00.000Z", "warn"),
    ];
    let m = measure(
        "records.problems",
        &ev,
        &Inputs {
            config: &cfg,
            records_problems: Some(vec!["report 2026-10-a: signature invalid".into()]),
        },
    );
    assert_eq!(value(&m), 1.0);
    assert_eq!(m.fail, ["report 2026-10-a: signature invalid"]);
    assert_eq!(m.warn.len(), 1);
    assert!(m.warn[0].contains("a FAIL (2026-10-a) was superseded by a PASS (2026-10-b)"));
    assert!(
        m.findings
            .iter()
            .any(|f| f.contains("this report supersedes 2026-W48-a"))
    );
    let m = measure(
        "records.problems",
        &ev,
        &Inputs {
            config: &cfg,
            records_problems: None,
        },
    );
    assert!(not_evaluated(&m).contains("not re-verified"));
}

#[test]
fn every_released_restore_must_have_replayed_the_erasure_ledger() {
    let plain = config("");
    assert!(
        not_evaluated(&get("erasure.unreplayed_restores", &empty(), &plain)).contains("ledger")
    );
    let cfg = config(
        "\n[erasure.rules.crm]\nsubject-query = \"SELECT email FROM contacts\"\nerase = [\"DELETE FROM contacts WHERE email = :subject\"]\nproof = \"SELECT count(*) FROM contacts WHERE email = :subject\"\n",
    );
    let mut ev = active();
    assert_eq!(value(&get("erasure.unreplayed_restores", &ev, &cfg)), 0.0);
    ev.runs.push(run(
        RunKind::Restore,
        Trigger::Cli,
        Outcome::Succeeded,
        "2026-11-24T10:00:00.000Z",
    ));
    ev.runs.push(run(
        RunKind::Drill,
        Trigger::Schedule,
        Outcome::Succeeded,
        "2026-11-25T10:00:00.000Z",
    ));
    ev.runs.push(run(
        RunKind::Restore,
        Trigger::Cli,
        Outcome::Failed,
        "2026-11-26T10:00:00.000Z",
    ));
    let replay = |run_id: &str, ok: i64| ReplayRecord {
        run_id: run_id.into(),
        kind: "drill".into(),
        source: "crm".into(),
        snapshot_id: None,
        replayed_at: "2026-11-25T10:01:00.000Z".into(),
        ledger_size: 1,
        found: 0,
        remaining: 0,
        ok,
        seconds: 0.1,
        error: None,
    };
    ev.erasure_replays = vec![
        replay(&ev.runs[1].id.clone(), 1),
        replay(&ev.runs[0].id.clone(), 0),
    ];
    let m = get("erasure.unreplayed_restores", &ev, &cfg);
    assert_eq!(value(&m), 1.0, "{m:?}");
    assert!(m.fail[0].starts_with("restore run-restore-2026-11-24"));
    assert!(m.findings[0].contains("1 of 2 restores and drills replayed it"));
}

#[test]
fn privacy_is_not_judged_before_the_report_is_scanned() {
    assert!(
        not_evaluated(&get("privacy.findings", &active(), &config("")))
            .contains("not been scanned")
    );
}
