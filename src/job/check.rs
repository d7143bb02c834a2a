//! `custodian check`: structural check of each location, optionally reading pack data.

use serde::Serialize;

use super::{Context, JobError, blocking};
use crate::catalog::{CheckRecord, RunEnd, RunKind};
use crate::repo::{CheckReport, ReadSubset};

/// The outcome of checking one location.
#[derive(Clone, Debug, Serialize)]
pub struct CheckOutcome {
    pub location: String,
    pub run_id: String,
    /// `ok`, `damaged` (the check found errors) or `failed` (the check could not run).
    pub status: &'static str,
    pub read_data_subset: Option<String>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
}

/// Checks one location (or all).
///
/// # Errors
/// For an unknown location or a catalog failure; per-location outcomes are in the results.
pub async fn check(
    ctx: &Context,
    location: Option<&str>,
    subset: Option<ReadSubset>,
) -> Result<Vec<CheckOutcome>, JobError> {
    let mut outcomes = Vec::new();
    for location in ctx.select_locations(location)? {
        let name = location.name.clone();
        let run_id = ctx.start(RunKind::Check, None, Some(&name), None).await?;
        let result = check_one(ctx, &name, &run_id, subset.clone()).await;
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
                    status: "ok",
                    read_data_subset: report.read_data_subset,
                    errors: Vec::new(),
                    warnings: report.warnings,
                    error_code: None,
                }
            }
            Err(err) => {
                tracing::error!(location = %name, error = %err, "check did not pass");
                let (status, errors) = match &err {
                    JobError::Damaged { errors, .. } => ("damaged", errors.clone()),
                    other => ("failed", vec![other.to_string()]),
                };
                CheckOutcome {
                    location: name,
                    run_id,
                    status,
                    read_data_subset: subset.as_ref().map(|s| s.as_str().to_string()),
                    errors,
                    warnings: Vec::new(),
                    error_code: Some(err.code()),
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
    let report = blocking(move || repo.check(subset.as_ref())).await?;
    ctx.catalog
        .record_check(&CheckRecord {
            run_id: run_id.to_string(),
            location: name.to_string(),
            read_data_subset: report.read_data_subset.clone(),
            errors: report.errors.clone(),
            warnings: report.warnings.clone(),
        })
        .await?;
    Ok(report)
}
