//! `custodian forget` and `custodian prune`: each location's retention policy, applied. Both
//! are dry runs unless `--apply`: they show what would go.
//!
//! On an Object Lock location a prune also keeps the locks honest: current objects (what the
//! kept snapshots reference) get their retention extended before it lapses, deleted objects
//! whose lock has expired are swept, and those S3 still holds are reported with the date they
//! become deletable.

use serde::Serialize;

use super::{Context, JobError, blocking};
use crate::catalog::{RunEnd, RunKind};
use crate::location::s3::{ExtendReport, LockedVersions};
use crate::repo::{ForgetPlan, PruneReport};

/// What forget did (or would do) in one location.
#[derive(Clone, Debug, Serialize)]
pub struct ForgetOutcome {
    pub location: String,
    pub run_id: Option<String>,
    pub applied: bool,
    pub plan: Option<ForgetPlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
}

/// What prune did (or would do) in one location.
#[derive(Clone, Debug, Serialize)]
pub struct PruneOutcome {
    pub location: String,
    pub run_id: Option<String>,
    pub forget: Option<ForgetPlan>,
    pub prune: Option<PruneReport>,
    /// Object Lock: retention extended on current objects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locks_extended: Option<ExtendReport>,
    /// Object Lock: deleted versions swept or still held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_versions: Option<LockedVersions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
}

async fn plan(
    ctx: &Context,
    location: &crate::config::LocationConfig,
) -> Result<ForgetPlan, JobError> {
    let repo = ctx.repo(&location.name).await?;
    let retention = location.retention.clone();
    let now = crate::model::time::now();
    blocking(move || repo.forget_plan(&retention, now)).await
}

async fn apply_forget(ctx: &Context, location: &str, plan: &ForgetPlan) -> Result<(), JobError> {
    if plan.remove.is_empty() {
        return Ok(());
    }
    let repo = ctx.repo(location).await?;
    let ids: Vec<String> = plan.remove.iter().map(|r| r.snapshot.id.clone()).collect();
    {
        let ids = ids.clone();
        blocking(move || repo.forget(&ids)).await?;
    }
    ctx.catalog.mark_removed(location, &ids).await?;
    Ok(())
}

/// Applies (or previews) the retention policy of one location or all.
///
/// # Errors
/// For an unknown location or a catalog failure; per-location failures are in the outcomes.
pub async fn forget(
    ctx: &Context,
    location: Option<&str>,
    apply: bool,
) -> Result<Vec<ForgetOutcome>, JobError> {
    let mut out = Vec::new();
    for loc in ctx.select_locations(location)? {
        let run_id = if apply {
            Some(
                ctx.start(RunKind::Forget, None, Some(&loc.name), None)
                    .await?,
            )
        } else {
            None
        };
        let result = async {
            let plan = plan(ctx, &loc).await?;
            if apply {
                apply_forget(ctx, &loc.name, &plan).await?;
            }
            Ok(plan)
        }
        .await;
        if let Some(run_id) = &run_id {
            let end = RunEnd {
                details: result.as_ref().ok().map(|p: &ForgetPlan| {
                    serde_json::json!({ "removed": p.remove.len(), "kept": p.keep.len() })
                }),
                ..RunEnd::default()
            };
            ctx.finish(run_id, &result, end).await;
        }
        let (plan, error, error_code) = match result {
            Ok(plan) => (Some(plan), None, None),
            Err(e) => (None, Some(e.to_string()), Some(e.code())),
        };
        out.push(ForgetOutcome {
            location: loc.name.clone(),
            run_id,
            applied: apply && error.is_none(),
            plan,
            error,
            error_code,
        });
    }
    Ok(out)
}

/// Forgets per policy and removes unreferenced data (or previews both).
///
/// # Errors
/// For an unknown location or a catalog failure; per-location failures are in the outcomes.
pub async fn prune(
    ctx: &Context,
    location: Option<&str>,
    apply: bool,
) -> Result<Vec<PruneOutcome>, JobError> {
    let mut out = Vec::new();
    for loc in ctx.select_locations(location)? {
        let run_id = if apply {
            Some(
                ctx.start(RunKind::Prune, None, Some(&loc.name), None)
                    .await?,
            )
        } else {
            None
        };
        let mut outcome = PruneOutcome {
            location: loc.name.clone(),
            run_id: run_id.clone(),
            forget: None,
            prune: None,
            locks_extended: None,
            locked_versions: None,
            error: None,
            error_code: None,
        };
        let result: Result<(), JobError> = async {
            let plan = plan(ctx, &loc).await?;
            if apply {
                apply_forget(ctx, &loc.name, &plan).await?;
            }
            outcome.forget = Some(plan);
            let repo = ctx.repo(&loc.name).await?;
            outcome.prune = Some(blocking(move || repo.prune(apply)).await?);
            if apply && let Some(lock) = loc.object_lock() {
                let (storage, _) = ctx.backend(&loc)?;
                if let Some(s3) = storage.s3().cloned() {
                    let horizon = std::time::Duration::from_secs(u64::from(lock.days) * 86_400 / 2);
                    let (extended, swept) = tokio::task::spawn_blocking(move || {
                        (s3.extend_retention(horizon), s3.sweep())
                    })
                    .await
                    .map_err(|e| JobError::Internal(format!("lock maintenance failed: {e}")))?;
                    outcome.locks_extended = Some(extended);
                    outcome.locked_versions = Some(swept);
                }
            }
            Ok(())
        }
        .await;
        if let Some(run_id) = &run_id {
            let end = RunEnd {
                details: Some(serde_json::json!({
                    "removed_snapshots": outcome.forget.as_ref().map_or(0, |p| p.remove.len()),
                    "packs_deleted": outcome.prune.as_ref().map_or(0, |p| p.packs_to_delete),
                    "bytes_deleted": outcome.prune.as_ref().map_or(0, |p| p.bytes_to_delete),
                    "still_locked": outcome.locked_versions.as_ref().map_or(0, |l| l.still_locked),
                })),
                ..RunEnd::default()
            };
            ctx.finish(run_id, &result, end).await;
        }
        if let Err(e) = result {
            outcome.error = Some(e.to_string());
            outcome.error_code = Some(e.code());
        }
        out.push(outcome);
    }
    Ok(out)
}
