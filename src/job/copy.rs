//! `custodian copy`: every committed backup of a source, present in its primary location, is
//! copied into each of the source's other locations that lacks it. A location that was
//! unreachable simply catches up on the next run. Each destination is its own run.

use serde::Serialize;

use super::{Context, JobError, blocking, lock};
use crate::catalog::{RunEnd, RunKind};
use crate::config::SourceConfig;
use crate::repo::Copied;

/// What copying one source into one destination did.
#[derive(Clone, Debug, Serialize)]
pub struct CopyReport {
    pub source: String,
    pub from: String,
    pub to: String,
    pub run_id: String,
    pub status: crate::model::status::RunStatus,
    pub copied: Vec<Copied>,
    /// Backups the destination already held.
    pub already_present: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
}

/// Copies one source (or all) to their secondary locations.
///
/// # Errors
/// For an unknown source or a catalog failure; per-destination failures are in the reports.
pub async fn copy(ctx: &Context, source: Option<&str>) -> Result<Vec<CopyReport>, JobError> {
    let mut reports = Vec::new();
    for source in ctx.select_sources(source)? {
        reports.extend(copy_source(ctx, &source).await?);
    }
    Ok(reports)
}

pub(super) async fn copy_source(
    ctx: &Context,
    source: &SourceConfig,
) -> Result<Vec<CopyReport>, JobError> {
    let from = source.primary().to_string();
    let mut reports = Vec::new();
    for to in source.locations.iter().skip(1) {
        let run_id = ctx
            .start(RunKind::Copy, Some(&source.name), Some(&from), Some(to))
            .await?;
        let result = copy_one(ctx, source, &from, to, &run_id).await;
        let end = match &result {
            Ok((copied, _)) => RunEnd {
                details: Some(serde_json::json!({ "copied": copied.len() })),
                ..RunEnd::default()
            },
            Err(_) => RunEnd::default(),
        };
        ctx.finish(&run_id, &result, end).await;
        let mut report = CopyReport {
            source: source.name.clone(),
            from: from.clone(),
            to: to.clone(),
            run_id,
            status: crate::model::status::RunStatus::Succeeded,
            copied: Vec::new(),
            already_present: 0,
            error: None,
            error_code: None,
        };
        match result {
            Ok((copied, already_present)) => {
                tracing::info!(source = %source.name, from = %from, to = %to, copied = copied.len(), "copy finished");
                report.copied = copied;
                report.already_present = already_present;
            }
            Err(err) => {
                tracing::error!(source = %source.name, from = %from, to = %to, error = %err, "copy failed; it will be retried on the next run");
                report.status = crate::model::status::RunStatus::Failed;
                report.error = Some(err.to_string());
                report.error_code = Some(err.code());
            }
        }
        reports.push(report);
    }
    Ok(reports)
}

async fn copy_one(
    ctx: &Context,
    source: &SourceConfig,
    from: &str,
    to: &str,
    run_id: &str,
) -> Result<(Vec<Copied>, usize), JobError> {
    let _lock = lock::try_lock(
        &ctx.config.state_dir,
        &format!("copy-to-{to}"),
        &format!("a copy into location {to}"),
    )?;
    let src = ctx.repo(from).await?;
    let dst = ctx.repo(to).await?;
    let name = source.name.clone();
    ctx.progress.phase(format!("copying {name} to {to}"), None);
    let bars = ctx.bars();
    let result = blocking(move || {
        let wanted: Vec<_> = src
            .snapshots()?
            .into_iter()
            .filter(|s| s.is_committed_backup() && s.source.as_deref() == Some(name.as_str()))
            .collect();
        let copied = src.copy_to(&dst, &wanted, Some(bars))?;
        Ok((copied, wanted.len()))
    })
    .await;
    ctx.progress.finish();
    let (copied, wanted) = result?;
    for c in &copied {
        ctx.catalog
            .record_copy(&c.backup_id, to, &c.snapshot_id, from, run_id)
            .await?;
    }
    Ok((copied.clone(), wanted - copied.len()))
}
