//! One way in, one way out: the typed request for every job — built by the CLI, the control
//! socket and the scheduler alike — and the typed outcome `run` returns, whose `is_success` is
//! the one judgement all three share. A cancellation token stops a job: drills tear their
//! scratch instance down themselves; every other job is dropped, which kills its dump and
//! restore tools (and their process groups), and its runs are recorded as interrupted at once.

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{
    BackupReport, CheckOutcome, Context, CopyReport, DrillReport, DrillRequest, ForgetOutcome,
    InitReport, JobError, PruneOutcome, ReportOutcome, ReportRequest, RestoreReport,
    RestoreRequest, VerifyReport, VerifyRequest,
};
use crate::model::ReadSubset;

/// What a job is asked to do.
#[derive(Clone, Debug)]
pub enum Request {
    Init,
    Backup {
        source: Option<String>,
    },
    /// A physical base backup of a PostgreSQL source (all with an archive when `None`).
    BaseBackup {
        source: Option<String>,
    },
    Copy {
        source: Option<String>,
    },
    Check {
        location: Option<String>,
        read_data: Option<ReadSubset>,
        rotate: bool,
    },
    Forget {
        location: Option<String>,
        apply: bool,
    },
    Prune {
        location: Option<String>,
        apply: bool,
    },
    Restore(RestoreRequest),
    Verify(VerifyRequest),
    Drill(DrillRequest),
    Report(ReportRequest),
    /// The scheduled report: the last complete period's, once, delivered until it is.
    ScheduledReport,
}

impl Request {
    /// The job's kind, as in the catalog and the audit log.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Init => "init",
            Self::Backup { .. } => "backup",
            Self::BaseBackup { .. } => "base-backup",
            Self::Copy { .. } => "copy",
            Self::Check { .. } => "check",
            Self::Forget { .. } => "forget",
            Self::Prune { .. } => "prune",
            Self::Restore(_) => "restore",
            Self::Verify(_) => "verify",
            Self::Drill(_) => "drill",
            Self::Report(_) | Self::ScheduledReport => "report",
        }
    }
}

/// What a job did.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Init(Vec<InitReport>),
    Backup(Vec<BackupReport>),
    BaseBackup(Vec<super::base_backup::BaseBackupReport>),
    Copy(Vec<CopyReport>),
    Check(Vec<CheckOutcome>),
    Forget(Vec<ForgetOutcome>),
    Prune(Vec<PruneOutcome>),
    Restore(Box<RestoreReport>),
    Verify(Box<VerifyReport>),
    Drill(Box<DrillReport>),
    Report(Box<ReportOutcome>),
    ScheduledReport,
}

impl Outcome {
    /// Whether everything asked for succeeded (a copy or check that failed makes the whole
    /// job unsuccessful, though its report says which).
    #[must_use]
    pub fn is_success(&self) -> bool {
        match self {
            Self::Init(r) => r.iter().all(|r| r.status.is_success()),
            Self::Backup(r) => r.iter().all(BackupReport::all_ok),
            Self::Copy(r) => r.iter().all(|r| r.status.is_success()),
            Self::Check(r) => r.iter().all(|r| r.status.is_success()),
            Self::Forget(r) => r.iter().all(|r| r.error.is_none()),
            Self::Prune(r) => r.iter().all(|r| r.error.is_none()),
            Self::Restore(_) | Self::Report(_) | Self::ScheduledReport | Self::BaseBackup(_) => {
                true
            }
            Self::Verify(r) => r.verification.is_verified(),
            Self::Drill(r) => r.passed(),
        }
    }
}

impl Outcome {
    /// Why it did not succeed, from the first report that says so.
    #[must_use]
    pub fn failure(&self) -> Option<super::Failure> {
        use super::Failure;
        let from = |code: Option<&str>, error: Option<&String>, what: &str| {
            Some(Failure::new(
                code.unwrap_or("job.failed"),
                error.cloned().unwrap_or_else(|| what.to_string()),
            ))
        };
        if self.is_success() {
            return None;
        }
        match self {
            Self::Init(r) => r
                .iter()
                .find(|r| !r.status.is_success())
                .and_then(|r| from(r.error_code, r.error.as_ref(), "init failed")),
            Self::Backup(r) => r.iter().find(|r| !r.all_ok()).and_then(|r| {
                if r.status.is_success() {
                    r.copies
                        .iter()
                        .find(|c| !c.status.is_success())
                        .and_then(|c| from(c.error_code, c.error.as_ref(), "a copy failed"))
                } else {
                    from(r.error_code, r.error.as_ref(), "the backup failed")
                }
            }),
            Self::Copy(r) => r
                .iter()
                .find(|r| !r.status.is_success())
                .and_then(|r| from(r.error_code, r.error.as_ref(), "a copy failed")),
            Self::Check(r) => r.iter().find(|r| !r.status.is_success()).and_then(|r| {
                from(
                    r.error_code.or(Some("check.found_errors")),
                    r.errors.first(),
                    "the check found damage",
                )
            }),
            Self::Forget(r) => r
                .iter()
                .find(|r| r.error.is_some())
                .and_then(|r| from(r.error_code, r.error.as_ref(), "forget failed")),
            Self::Prune(r) => r
                .iter()
                .find(|r| r.error.is_some())
                .and_then(|r| from(r.error_code, r.error.as_ref(), "prune failed")),
            Self::Verify(_) => Some(Failure::new(
                "verify.mismatch",
                "the database differs from the backup's manifest",
            )),
            Self::Drill(r) => Some(r.failure.as_ref().map_or_else(
                || Failure::new("drill.failed", "the drill failed"),
                |f| Failure::new(&f.code, f.reason.clone()),
            )),
            Self::Restore(_) | Self::Report(_) | Self::ScheduledReport | Self::BaseBackup(_) => {
                None
            }
        }
    }
}

/// Runs a job until it ends or `cancel` fires.
///
/// # Errors
/// The job's error; [`JobError::Cancelled`] when it was stopped (its runs are recorded as
/// interrupted).
pub async fn run(
    ctx: &Context,
    request: &Request,
    cancel: &CancellationToken,
) -> Result<Outcome, JobError> {
    if let Request::Drill(req) = request {
        // A drill stops itself: its scratch instance must be torn down, not abandoned.
        return super::drill(ctx, req, cancel.clone().cancelled_owned())
            .await
            .map(|r| Outcome::Drill(Box::new(r)));
    }
    let job = async {
        Ok(match request {
            Request::Init => Outcome::Init(super::init(ctx).await?),
            Request::Backup { source } => {
                Outcome::Backup(super::backup(ctx, source.as_deref()).await?)
            }
            Request::BaseBackup { source } => {
                Outcome::BaseBackup(super::base_backup::base_backup(ctx, source.as_deref()).await?)
            }
            Request::Copy { source } => Outcome::Copy(super::copy(ctx, source.as_deref()).await?),
            Request::Check {
                location,
                read_data,
                rotate,
            } => Outcome::Check(
                super::check(ctx, location.as_deref(), read_data.clone(), *rotate).await?,
            ),
            Request::Forget { location, apply } => {
                Outcome::Forget(super::forget(ctx, location.as_deref(), *apply).await?)
            }
            Request::Prune { location, apply } => {
                Outcome::Prune(super::prune(ctx, location.as_deref(), *apply).await?)
            }
            Request::Restore(req) => Outcome::Restore(Box::new(super::restore(ctx, req).await?)),
            Request::Verify(req) => Outcome::Verify(Box::new(super::verify(ctx, req).await?)),
            Request::Report(req) => Outcome::Report(Box::new(super::report(ctx, req).await?)),
            Request::ScheduledReport => {
                super::report::scheduled(ctx).await?;
                Outcome::ScheduledReport
            }
            Request::Drill(_) => unreachable!("handled above"),
        })
    };
    tokio::select! {
        biased;
        result = job => result,
        () = cancel.cancelled() => {
            ctx.interrupt_started().await;
            Err(JobError::Cancelled)
        }
    }
}
