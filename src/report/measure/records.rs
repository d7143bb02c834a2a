//! What Custodian leaves behind: scratch databases, earlier reports, the erasure ledger.

use super::*;
use crate::model::count;

pub(super) fn scratch(ev: &Evidence, cfg: &Config) -> Measure {
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
        "{} created; {} removed by their drill, {swept} by the start-up sweep; {overdue} outlived the {:.0}-minute lifetime",
        count(ev.scratch_instances.len(), "scratch database"),
        ev.scratch_instances
            .iter()
            .filter(|s| s.removed_by.as_deref() == Some("teardown"))
            .count(),
        lifetime * 60.0
    ));
    m.value = Some(overdue as f64);
    m
}

pub(super) fn records(ev: &Evidence, inputs: &Inputs<'_>) -> Measure {
    if ev.first_activity.is_none() {
        return Measure::none("Custodian recorded nothing yet");
    }
    let Some(problems) = &inputs.records_problems else {
        return Measure::none("earlier reports were not re-verified");
    };
    let mut m = Measure::default();
    m.findings.push(format!(
        "{} re-verified; {}",
        count(ev.reports.len(), "earlier report"),
        count(problems.len(), "problem")
    ));
    m.fail.extend(problems.iter().cloned());
    // Every regeneration, with its verdict change; a FAIL that a later report of the same
    // period turned into a PASS is for the auditor to ask about.
    for (i, newer) in ev.reports.iter().enumerate() {
        if let Some(older) = ev.reports[..i]
            .iter()
            .rev()
            .find(|r| r.period == newer.period)
        {
            m.findings.push(format!(
                "{}: report {} ({}) superseded by {} ({}) on {}",
                newer.period, older.id, older.overall, newer.id, newer.overall, newer.generated_at
            ));
            if older.overall == "fail" && newer.overall == "pass" {
                m.warn.push(format!(
                    "{}: a FAIL ({}) was superseded by a PASS ({}) within the same period; ask why it was regenerated",
                    newer.period, older.id, newer.id
                ));
            }
        }
    }
    for older in ev.reports.iter().filter(|r| r.period == ev.period.label) {
        m.findings.push(format!(
            "this report supersedes {} ({}) of {}, generated {}",
            older.id, older.overall, older.period, older.generated_at
        ));
    }
    m.evidence.extend(ev.reports.iter().map(|r| r.id.clone()));
    m.value = Some(problems.len() as f64);
    m
}

pub(super) fn erasure(ev: &Evidence, cfg: &Config) -> Measure {
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
            "{} recorded in the period, {} in the ledger; {} of {} restores and drills replayed it before release",
            count(recorded, "erasure"),
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
            "{} never gone from the backups as configured (a location keeps copies without an age bound)",
            count(never, "erased subject")
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
