//! `custodian status`: the health of every location — reachable with its credentials, the
//! repository opens, what it holds and how fresh it is, how much of it recent checks read, and
//! for an immutable location whether the bucket really enforces Object Lock.

use serde::Serialize;

use super::check::Coverage;
use super::{Context, JobError, blocking};
use crate::location::s3::BucketState;
use crate::model::time;

/// The newest backup of one source in one location.
#[derive(Clone, Debug, Serialize)]
pub struct Freshness {
    pub source: String,
    pub latest: String,
    pub age_seconds: i64,
}

/// Object Lock as declared and as found.
#[derive(Clone, Debug, Serialize)]
pub struct LockStatus {
    pub mode: &'static str,
    pub days: u32,
    /// Declared, and the bucket has versioning and Object Lock and honours a test lock.
    pub immutable: bool,
    pub bucket: BucketState,
}

/// One location's health.
#[derive(Clone, Debug, Serialize)]
pub struct LocationStatus {
    pub name: String,
    pub kind: &'static str,
    pub repository: String,
    /// Reachable, credentials valid, the repository opens with its password.
    pub healthy: bool,
    pub snapshots: usize,
    pub sources: Vec<Freshness>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<LockStatus>,
    pub coverage: Coverage,
    /// Damage found by a check, drill or restore and not cleared by a later check that read it
    /// again: the location is damaged until then.
    pub damage: Vec<crate::catalog::DamageRecord>,
    pub problems: Vec<String>,
}

/// Everything `status` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub config: String,
    pub config_sha256: String,
    pub locations: Vec<LocationStatus>,
    /// Runs that failed or were interrupted among the 50 most recent.
    pub recent_failures: Vec<crate::catalog::RunRecord>,
    /// Each continuous archive: its lag (the RPO now) and what went wrong last.
    pub archives: Vec<ArchiveLine>,
}

/// A continuous archive, as `status` shows it (`archive status` says more).
#[derive(Clone, Debug, Serialize)]
pub struct ArchiveLine {
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    pub lag_alert_seconds: u64,
    pub gaps: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl ArchiveLine {
    /// Within its lag alert, without gaps or a failed flush.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.lag_seconds
            .is_some_and(|l| l <= self.lag_alert_seconds as f64)
            && self.gaps == 0
            && self.last_error.is_none()
    }
}

impl Status {
    /// Whether every location is healthy (reachable, opens, no open damage) and every
    /// declared lock holds.
    #[must_use]
    pub fn all_ok(&self) -> bool {
        self.locations.iter().all(|l| {
            l.healthy && l.damage.is_empty() && l.object_lock.as_ref().is_none_or(|o| o.immutable)
        }) && self.archives.iter().all(ArchiveLine::ok)
    }
}

/// Checks every location.
///
/// # Errors
/// When the catalog cannot be read.
pub async fn status(ctx: &Context) -> Result<Status, JobError> {
    let now = time::now();
    let window = ctx.config.check_window;
    let parts = u32::try_from((window.as_secs() / 86_400).max(1)).unwrap_or(30);
    let mut locations = Vec::new();
    for loc in &ctx.config.locations {
        let mut status = LocationStatus {
            name: loc.name.clone(),
            kind: loc.kind_name(),
            repository: loc.repository(),
            healthy: false,
            snapshots: 0,
            sources: Vec::new(),
            object_lock: None,
            coverage: Coverage {
                parts_read: 0,
                parts,
                window_days: window.as_secs() / 86_400,
                percent: 0.0,
            },
            damage: ctx.catalog.open_damage(Some(&loc.name)).await?,
            problems: Vec::new(),
        };
        for d in &status.damage {
            status.problems.push(format!(
                "DAMAGED since {} (found by {} {}): {}",
                d.found_at, d.found_by, d.run_id, d.detail
            ));
        }
        if let Some(lock) = loc.object_lock() {
            match ctx.backend(loc) {
                Ok((storage, _)) => {
                    if let Some(s3) = storage.s3().cloned() {
                        let bucket = tokio::task::spawn_blocking(move || s3.bucket_state())
                            .await
                            .map_err(|e| JobError::Internal(format!("bucket check failed: {e}")))?;
                        status.problems.extend(bucket.problems.iter().cloned());
                        status.object_lock = Some(LockStatus {
                            mode: lock.mode.as_str(),
                            days: lock.days,
                            immutable: bucket.problems.is_empty() && bucket.lock_verified,
                            bucket,
                        });
                    }
                }
                Err(e) => status.problems.push(e.to_string()),
            }
        }
        match ctx.repo(&loc.name).await {
            Ok(repo) => match blocking(move || repo.snapshots()).await {
                Ok(snaps) => {
                    status.healthy = true;
                    let committed: Vec<_> = snaps
                        .into_iter()
                        .filter(|s| s.is_committed_backup())
                        .collect();
                    status.snapshots = committed.len();
                    for source in &ctx.config.sources {
                        if let Some(latest) = committed
                            .iter()
                            .filter(|s| s.source.as_deref() == Some(source.name.as_str()))
                            .max_by_key(|s| s.time)
                        {
                            status.sources.push(Freshness {
                                source: source.name.clone(),
                                latest: time::format(latest.time),
                                age_seconds: now.duration_since(latest.time).as_secs(),
                            });
                        }
                    }
                }
                Err(e) => status.problems.push(e.to_string()),
            },
            Err(e) => status.problems.push(e.to_string()),
        }
        let read = ctx.catalog.parts_read(&loc.name, parts, window).await?;
        status.coverage.parts_read = u32::try_from(read.len()).unwrap_or(0);
        status.coverage.percent = 100.0 * f64::from(status.coverage.parts_read) / f64::from(parts);
        locations.push(status);
    }
    let recent_failures = ctx
        .catalog
        .recent_runs(50)
        .await?
        .into_iter()
        .filter(|r| {
            matches!(
                r.outcome,
                crate::catalog::Outcome::Failed | crate::catalog::Outcome::Interrupted
            )
        })
        .collect();
    let archives = ctx
        .config
        .sources
        .iter()
        .filter_map(|s| {
            let settings = super::wal::archive_settings(s).ok()?;
            let state = super::wal::ArchiveState::load(&ctx.config.state_dir, &s.name);
            Some(ArchiveLine {
                source: s.name.clone(),
                lag_seconds: state.lag_seconds(now),
                lag_alert_seconds: settings.lag_alert.as_secs(),
                gaps: state.gaps.len(),
                last_error: state.last_error,
            })
        })
        .collect();
    Ok(Status {
        config: ctx.config.file.display().to_string(),
        config_sha256: ctx.config.sha256.clone(),
        locations,
        recent_failures,
        archives,
    })
}
