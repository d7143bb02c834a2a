//! Recoverability metrics: scheduled backups, RPO gaps, integrity coverage, drills and RTO.

use super::*;

pub(super) fn schedule(ev: &Evidence, cfg: &Config) -> Measure {
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

pub(super) fn rpo(ev: &Evidence, cfg: &Config) -> Measure {
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
            let mut pair_worst = gap.max(age);
            // A continuous archive that covers the whole period, without gaps, makes every
            // second of it recoverable: the RPO is the archive's lag.
            if let Some(a) = ev.archives.iter().find(|a| a.source == source.name)
                && location == source.primary()
            {
                let covers = a
                    .window_from
                    .as_deref()
                    .and_then(ts)
                    .is_some_and(|f| f <= begin)
                    && a.window_to.is_some();
                match (covers, a.gaps.is_empty(), a.lag_seconds) {
                    (true, true, Some(lag)) => {
                        m.findings.push(format!(
                            "{}/{location}: continuous archive — recoverable to any second from {} to {} (lag {lag:.0} s at report time)",
                            source.name,
                            a.window_from.as_deref().unwrap_or_default(),
                            a.window_to.as_deref().unwrap_or_default()
                        ));
                        pair_worst = lag / 3600.0;
                    }
                    _ => m.findings.push(format!(
                        "{}/{location}: the continuous archive does not cover the period without gaps ({}); the RPO is the backups'",
                        source.name,
                        a.error.clone().unwrap_or_else(|| if a.gaps.is_empty() {
                            format!(
                                "recoverable from {}",
                                a.window_from.as_deref().unwrap_or("nowhere yet")
                            )
                        } else {
                            a.gaps.join("; ")
                        })
                    )),
                }
            }
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

pub(super) fn integrity(ev: &Evidence, cfg: &Config) -> Measure {
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

pub(super) fn drill_age(ev: &Evidence, cfg: &Config) -> Measure {
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

pub(super) fn drill_rto(ev: &Evidence, cfg: &Config) -> Measure {
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
            } else {
                m.warn.push(format!(
                    "{}/{location}: not drilled, so its RTO was never measured",
                    source.name
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
