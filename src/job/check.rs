//! `custodian check`: structural check of each location, optionally reading pack data. With
//! `--rotate`, each run reads the next of `window` parts (one per day of the check window), so
//! every pack is read at least once per window; the catalog tracks which parts were read, and the
//! outcome states the coverage. On an Object Lock location the check also extends the retention
//! of current objects whose lock would lapse within half the lock period.

use serde::Serialize;

use super::{Context, JobError, blocking};
use crate::catalog::{CheckRecord, RunEnd, RunKind};
use crate::model::ReadSubset;
use crate::repo::CheckReport;

/// The outcome of checking one location.
#[derive(Clone, Debug, Serialize)]
pub struct CheckOutcome {
    pub location: String,
    pub run_id: String,
    pub status: crate::model::status::CheckStatus,
    pub read_data_subset: Option<String>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
    /// Share of the repository's data read within the check window (rotating checks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Coverage>,
    /// Object Lock retention extended during the check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locks_extended: Option<crate::location::s3::ExtendReport>,
}

/// How much of a location's data rotating checks read within the window.
#[derive(Clone, Debug, Serialize)]
pub struct Coverage {
    pub parts_read: u32,
    pub parts: u32,
    pub window_days: u64,
    pub percent: f64,
}

/// Checks one location (or all).
///
/// # Errors
/// For an unknown location or a catalog failure; per-location outcomes are in the results.
pub async fn check(
    ctx: &Context,
    location: Option<&str>,
    subset: Option<ReadSubset>,
    rotate: bool,
) -> Result<Vec<CheckOutcome>, JobError> {
    let mut outcomes = Vec::new();
    let window = ctx.config.check_window;
    let parts = u32::try_from((window.as_secs() / 86_400).max(1)).unwrap_or(30);
    for location in ctx.select_locations(location)? {
        let name = location.name.clone();
        let subset = if rotate {
            let k = ctx.catalog.next_check_part(&name, parts, window).await?;
            Some(format!("{k}/{parts}").parse().map_err(JobError::Usage)?)
        } else {
            subset.clone()
        };
        let run_id = ctx.start(RunKind::Check, None, Some(&name), None).await?;
        let result = check_one(ctx, &name, &run_id, subset.clone()).await;
        let locks_extended = match location.object_lock() {
            Some(lock) if result.is_ok() => {
                let (storage, _) = ctx.backend(&location)?;
                match storage.s3().cloned() {
                    Some(s3) => {
                        let horizon =
                            std::time::Duration::from_secs(u64::from(lock.days) * 86_400 / 2);
                        tokio::task::spawn_blocking(move || s3.extend_retention(horizon))
                            .await
                            .ok()
                    }
                    None => None,
                }
            }
            _ => None,
        };
        let coverage = if rotate {
            let read = ctx.catalog.parts_read(&name, parts, window).await?;
            let parts_read = u32::try_from(read.len()).unwrap_or(0);
            Some(Coverage {
                parts_read,
                parts,
                window_days: window.as_secs() / 86_400,
                percent: 100.0 * f64::from(parts_read) / f64::from(parts),
            })
        } else {
            None
        };
        let judged = match result {
            Ok(report) if report.ok() => Ok(report),
            Ok(report) => Err(JobError::Damaged {
                location: name.clone(),
                errors: report.errors,
            }),
            Err(err) => Err(err),
        };
        ctx.finish(&run_id, &judged, RunEnd::default()).await;
        let outcome = match judged {
            Ok(report) => {
                tracing::info!(location = %name, "check passed");
                CheckOutcome {
                    location: name,
                    run_id,
                    status: crate::model::status::CheckStatus::Ok,
                    read_data_subset: report.read_data_subset,
                    errors: Vec::new(),
                    warnings: report.warnings,
                    error_code: None,
                    coverage,
                    locks_extended,
                }
            }
            Err(err) => {
                tracing::error!(location = %name, error = %err, "check did not pass");
                let (status, errors) = match &err {
                    JobError::Damaged { errors, .. } => {
                        (crate::model::status::CheckStatus::Damaged, errors.clone())
                    }
                    other => (
                        crate::model::status::CheckStatus::Failed,
                        vec![other.to_string()],
                    ),
                };
                CheckOutcome {
                    location: name,
                    run_id,
                    status,
                    read_data_subset: subset.as_ref().map(|s| s.as_str().to_string()),
                    errors,
                    warnings: Vec::new(),
                    error_code: Some(err.code()),
                    coverage,
                    locks_extended,
                }
            }
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

async fn check_one(
    ctx: &Context,
    name: &str,
    run_id: &str,
    subset: Option<ReadSubset>,
) -> Result<CheckReport, JobError> {
    let repo = ctx.repo(name).await?;
    ctx.progress.phase(
        if subset.is_some() {
            format!("checking {name} (reading data)")
        } else {
            format!("checking {name}")
        },
        None,
    );
    let report = {
        let subset = subset.clone();
        let bars = ctx.bars();
        blocking(move || repo.check(subset.as_ref(), Some(bars))).await
    };
    ctx.progress.finish();
    let report = report?;
    ctx.catalog
        .record_check(&CheckRecord {
            run_id: run_id.to_string(),
            location: name.to_string(),
            read_data_subset: report.read_data_subset.clone(),
            errors: report.errors.clone(),
            warnings: report.warnings.clone(),
        })
        .await?;
    if report.ok() {
        // Damage found earlier is cleared only by a check that read the damaged pack again.
        if let Some(subset) = &subset {
            for open in ctx.catalog.open_damage(Some(name)).await? {
                if subset.reads(open.pack.as_deref()) {
                    ctx.catalog.clear_damage(open.id, run_id).await?;
                    tracing::info!(location = name, pack = ?open.pack, "damage cleared: the pack was read again and is sound");
                }
            }
        }
    } else {
        for (error, pack) in report.errors.iter().zip(&report.packs) {
            ctx.catalog
                .record_damage(name, run_id, "check", pack.as_deref(), error)
                .await?;
        }
    }
    Ok(report)
}
