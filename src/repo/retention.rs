//! Retention: which snapshots a policy keeps (restic's keep rules, applied per source) plus a
//! hard maximum age, and pruning the data nothing references any more.
//!
//! Only committed Custodian backups are ever forgotten; snapshots written by someone else (a
//! restic user's own backups) are left alone.

use std::collections::BTreeMap;

use jiff::{Span, Timestamp, tz::TimeZone};
use rustic_core::{KeepOptions, PruneOptions};
use serde::Serialize;

use super::{Repo, RepoError, SnapshotInfo};
use crate::config::Retention;
use crate::model::naming::SnapshotKind;

/// A snapshot the policy removes, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Removal {
    pub snapshot: SnapshotInfo,
    pub reason: String,
}

/// What a retention policy decides for one repository.
#[derive(Clone, Debug, Serialize)]
pub struct ForgetPlan {
    pub keep: Vec<SnapshotInfo>,
    pub remove: Vec<Removal>,
    /// Each archived source's recoverable window opens at its oldest base backup: where it
    /// opens now, and after the plan.
    pub windows: Vec<WindowChange>,
}

impl ForgetPlan {
    /// Keeps a snapshot, or removes it for `reason`.
    pub(super) fn decide(&mut self, snapshot: SnapshotInfo, reason: Option<String>) {
        match reason {
            Some(reason) => self.remove.push(Removal { snapshot, reason }),
            None => self.keep.push(snapshot),
        }
    }

    /// Records where a source's recoverable window opens before and after the plan.
    pub(super) fn window(
        &mut self,
        source: String,
        before: Option<Timestamp>,
        after: Option<Timestamp>,
    ) {
        self.windows.push(WindowChange {
            source,
            opens_before: before.map(crate::model::time::format),
            opens_after: after.map(crate::model::time::format),
        });
    }
}

/// Where a source's recoverable window opens before and after a retention plan (the end of
/// each base backup; `None`: no base backup).
#[derive(Clone, Debug, Serialize)]
pub struct WindowChange {
    pub source: String,
    pub opens_before: Option<String>,
    pub opens_after: Option<String>,
}

/// What a prune removes (or would remove).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    pub packs_to_delete: u64,
    pub bytes_to_delete: u64,
    pub packs_to_repack: u64,
    pub bytes_unreferenced: u64,
    /// Blobs in packs that no snapshot uses any more (what a merged WAL snapshot's trees
    /// leave), before the prune.
    pub bytes_unused: u64,
    pub applied: bool,
}

fn span(d: std::time::Duration) -> Span {
    Span::new().seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn keep_options(r: &Retention) -> KeepOptions {
    let count = |n: Option<u32>| n.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
    let mut keep = KeepOptions::default();
    keep.keep_last = count(r.keep_last);
    keep.keep_hourly = count(r.keep_hourly);
    keep.keep_daily = count(r.keep_daily);
    keep.keep_weekly = count(r.keep_weekly);
    keep.keep_monthly = count(r.keep_monthly);
    keep.keep_yearly = count(r.keep_yearly);
    keep.keep_within = r.keep_within.map(span);
    keep
}

impl Repo {
    /// Applies a retention policy to the committed Custodian backups, source by source.
    ///
    /// # Errors
    /// When the repository cannot be read.
    pub fn forget_plan(
        &self,
        retention: &Retention,
        now: Timestamp,
    ) -> Result<ForgetPlan, RepoError> {
        let all = self.all_snapshots()?;
        // Logical backups and base backups each keep by the rules, source by source; archived
        // WAL follows the base backups kept (below).
        let mut by_source: BTreeMap<(String, bool), Vec<rustic_core::repofile::SnapshotFile>> =
            BTreeMap::new();
        for sn in all {
            let info = SnapshotInfo::from_file(&sn);
            let base = info.kind == Some(SnapshotKind::Base) && !info.pending;
            if (info.is_committed_backup() || base)
                && let Some(source) = info.source.clone()
            {
                by_source.entry((source, base)).or_default().push(sn);
            }
        }
        let keep = keep_options(retention);
        let has_rules = retention.keep_last.is_some()
            || retention.keep_hourly.is_some()
            || retention.keep_daily.is_some()
            || retention.keep_weekly.is_some()
            || retention.keep_monthly.is_some()
            || retention.keep_yearly.is_some()
            || retention.keep_within.is_some();
        let zoned = now.to_zoned(TimeZone::UTC);
        let oldest_allowed = retention.max_age.map(|max| {
            now - jiff::SignedDuration::from_secs(i64::try_from(max.as_secs()).unwrap_or(i64::MAX))
        });
        let mut plan = ForgetPlan {
            keep: Vec::new(),
            remove: Vec::new(),
            windows: Vec::new(),
        };
        for (_, snapshots) in by_source {
            let decisions: Vec<(rustic_core::repofile::SnapshotFile, bool, String)> = if has_rules {
                keep.apply(snapshots, &zoned)
                    .map_err(|e| self.err("applying the retention policy", &e))?
                    .into_iter()
                    .map(|f| {
                        let reason = if f.keep {
                            f.reasons.join(", ")
                        } else {
                            "not kept by any keep rule".to_string()
                        };
                        (f.snapshot, f.keep, reason)
                    })
                    .collect()
            } else {
                snapshots
                    .into_iter()
                    .map(|s| (s, true, String::new()))
                    .collect()
            };
            for (sn, keep, reason) in decisions {
                let info = SnapshotInfo::from_file(&sn);
                let too_old = oldest_allowed.is_some_and(|limit| info.time < limit);
                if too_old {
                    plan.remove.push(Removal {
                        snapshot: info,
                        reason: "older than the retention maximum (max-age)".into(),
                    });
                } else if keep {
                    plan.keep.push(info);
                } else {
                    plan.remove.push(Removal {
                        snapshot: info,
                        reason,
                    });
                }
            }
        }
        self.plan_wal(&mut plan, oldest_allowed)?;
        plan.keep.sort_by_key(|s| s.time);
        plan.remove.sort_by_key(|r| r.snapshot.time);
        Ok(plan)
    }

    /// Deletes snapshots (their data stays until a prune).
    ///
    /// # Errors
    /// When the repository cannot be written.
    pub fn forget(&self, ids: &[String]) -> Result<(), RepoError> {
        let files = self
            .rustic()
            .get_snapshots(ids)
            .map_err(|e| self.err("reading snapshots", &e))?;
        let ids: Vec<_> = files.iter().map(|s| s.id).collect();
        self.rustic()
            .delete_snapshots(&ids)
            .map_err(|e| self.err("deleting snapshots", &e))
    }

    /// Removes data no snapshot references any more (restic's prune), or with `apply == false`
    /// only says what it would remove. Deletion is two-phase, as in rustic: packs are marked
    /// first and deleted by a later prune, so a backup running at the same time stays safe.
    ///
    /// # Errors
    /// When the repository cannot be read or written.
    pub fn prune(&self, apply: bool) -> Result<PruneReport, RepoError> {
        let indexed = self.reopen()?;
        let opts = PruneOptions::default();
        let plan = indexed
            .prune_plan(&opts)
            .map_err(|e| self.err("planning the prune", &e))?;
        let stats = &plan.stats;
        let mut report = PruneReport {
            packs_to_delete: stats.packs_to_delete.remove,
            bytes_to_delete: stats.size_to_delete.remove,
            packs_to_repack: stats.packs.repack,
            bytes_unreferenced: stats.size_unref,
            bytes_unused: stats.size_sum().unused,
            applied: false,
        };
        if apply {
            indexed
                .prune(&opts, plan)
                .map_err(|e| self.err("pruning", &e))?;
            report.applied = true;
        }
        Ok(report)
    }
}
