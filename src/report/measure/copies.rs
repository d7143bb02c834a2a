//! Where the copies are: copy lag, copies per source, Object Lock, retention and residency.

use super::*;
use crate::model::count;

pub(super) fn copy_lag(ev: &Evidence, cfg: &Config) -> Measure {
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
                Some(r) => {
                    let lag = ts(&r.arrived_at).map_or(0.0, |a| hours(taken, a));
                    // The snapshot's time is the writing host's clock, the arrival the
                    // catalog's: a copy cannot arrive before it was taken, so a negative lag
                    // is clock skew, shown and counted as no lag.
                    if lag < 0.0 {
                        m.findings.push(format!(
                            "backup {} of {} arrived in {location} {:.1} h before it was taken: the clocks disagree",
                            &backup[..backup.len().min(8)],
                            first.source,
                            -lag
                        ));
                    }
                    lag.max(0.0)
                }
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

pub(super) fn copy_locations(cfg: &Config, immutable: bool) -> Measure {
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
            "{}: {}",
            source.name,
            count(
                n,
                if immutable {
                    "immutable location"
                } else {
                    "location"
                }
            )
        ));
    }
    m.value = Some(worst as f64);
    m
}

pub(super) fn immutability(ev: &Evidence) -> Measure {
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

pub(super) fn retention(ev: &Evidence) -> Measure {
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

pub(super) fn residency(ev: &Evidence, cfg: &Config) -> Measure {
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
