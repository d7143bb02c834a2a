//! `custodian drill --pitr random|latest|TIME`: a restore drill of a PostgreSQL source's
//! continuous archive. It recovers a scratch data directory to a point inside the recoverable
//! window (a random second of it, its end, or the time given) the way a restore to a point in
//! time does, and proves:
//!
//! * the chain from the base backup to the target is complete and replays, and the server
//!   stopped at the target (its own account is checked against it);
//! * the recovered cluster is consistent: `pg_amcheck --all` checks every table's heap and
//!   every B-tree index of every database;
//! * the configured assertions hold on the recovered database.
//!
//! It is recorded as a drill (selection `pitr-random`, `pitr-latest` or `pitr-time`) with its
//! RTO per phase, so reports and `custodian drills` show it beside the logical drills, and the
//! rotation of scheduled drills includes it for sources with an archive.

use std::time::Instant;

use rand::RngExt;

use super::drill::{AssertionResult, DrillFailure, DrillReport};
use super::pitr::{Destination, PitrRequest};
use super::{Context, JobError};
use crate::catalog::{DrillStart, RunKind};
use crate::config::SourceKind;
use crate::engine::pitr::RecoveryTarget;
use crate::engine::scratch::{RunAs, make_private_dir};
use crate::model::{Phases, time};

fn fail(code: &str, reason: impl Into<String>) -> DrillFailure {
    DrillFailure {
        code: code.to_string(),
        reason: reason.into(),
        pack: None,
    }
}

/// The point a drill recovers to, and how it was chosen.
async fn choose_target(
    ctx: &Context,
    source: &str,
    point: &str,
) -> Result<(RecoveryTarget, &'static str), JobError> {
    Ok(match point {
        "latest" => (RecoveryTarget::Latest, "pitr-latest"),
        "random" => {
            let status = super::archive::status(ctx, Some(source)).await?;
            let window = status
                .first()
                .and_then(|s| s.window.clone())
                .ok_or_else(|| JobError::Refused {
                    code: "pitr.not_recoverable",
                    message: format!(
                        "the archive of source {source} has no recoverable window yet (a base backup followed by an unbroken archive); see `custodian archive status`"
                    ),
                })?;
            let span = (window.to - window.from)
                .total(jiff::Unit::Millisecond)
                .unwrap_or(0.0)
                .max(0.0) as i64;
            let offset = if span > 0 {
                rand::rng().random_range(0..span)
            } else {
                0
            };
            let at = window.from + jiff::SignedDuration::from_millis(offset);
            (RecoveryTarget::Time(at), "pitr-random")
        }
        other => (
            RecoveryTarget::Time(time::parse_instant(other).map_err(JobError::Usage)?),
            "pitr-time",
        ),
    })
}

/// Runs a PITR drill of `source` from `location`.
///
/// # Errors
/// When the catalog cannot be written or the point cannot be chosen; a failed drill is a
/// report with its failure, not an error.
pub async fn drill(
    ctx: &Context,
    source: &str,
    location: &str,
    point: &str,
) -> Result<DrillReport, JobError> {
    let source_cfg = ctx.select_sources(Some(source))?.remove(0);
    let SourceKind::Postgres(cfg) = &source_cfg.kind else {
        return Err(JobError::Usage(format!(
            "source {source} is not a PostgreSQL source: PITR drills are PostgreSQL's"
        )));
    };
    super::wal::archive_settings(&source_cfg)?;
    let (target, selection) = choose_target(ctx, source, point).await?;
    let run_id = ctx
        .start(RunKind::Drill, Some(source), Some(location), None)
        .await?;
    ctx.catalog
        .start_drill(&DrillStart {
            run_id: run_id.clone(),
            source: source.to_string(),
            location: location.to_string(),
            selection: selection.to_string(),
        })
        .await?;
    tracing::info!(run_id, source, location, %target, "PITR drill started");
    let started = Instant::now();
    let mut phases = Phases::default();
    let mut report = DrillReport {
        run_id: run_id.clone(),
        source: source.to_string(),
        location: location.to_string(),
        selection: selection.to_string(),
        status: crate::model::status::DrillStatus::Failed,
        snapshot_id: None,
        backup_id: None,
        snapshot_time: None,
        snapshot_age_seconds: None,
        engine: Some("postgres".into()),
        scratch: None,
        rto_seconds: None,
        phases: Phases::default(),
        tables: None,
        rows: None,
        bytes: None,
        assertions: Vec::new(),
        erasure: None,
        failure: None,
        mismatches: Vec::new(),
        not_verified: vec![
            "a PITR drill proves the archive replays to its target and the cluster is consistent; it does not compare tables with a logical backup's manifest".into(),
        ],
        warnings: Vec::new(),
    };
    let url = url::Url::parse(&cfg.url).ok();
    let role = url
        .as_ref()
        .map(|u| u.username().to_string())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres".into());
    let database = url
        .as_ref()
        .map(|u| u.path().trim_start_matches('/').to_string())
        .unwrap_or_default();
    let result = run(ctx, &mut report, &mut phases, &target, &role, &database).await;
    report.phases = phases;
    match result {
        Ok(()) => {
            report.status = crate::model::status::DrillStatus::Passed;
            report.rto_seconds = Some(started.elapsed().as_secs_f64());
            tracing::info!(
                run_id,
                rto_seconds = report.rto_seconds.unwrap_or_default(),
                "PITR drill passed"
            );
        }
        Err(f) => {
            tracing::error!(run_id, code = %f.code, "PITR drill failed: {}", f.reason);
            report.failure = Some(f);
        }
    }
    super::drill::record(ctx, &report).await;
    Ok(report)
}

async fn run(
    ctx: &Context,
    report: &mut DrillReport,
    phases: &mut Phases,
    target: &RecoveryTarget,
    role: &str,
    database: &str,
) -> Result<(), DrillFailure> {
    let run_as = RunAs::resolve(ctx.config.drills.scratch_user.as_deref())
        .map_err(|e| fail("drill.scratch_failed", e))?;
    let dir = ctx.config.drill_dir("custodian-drill-", &report.run_id);
    make_private_dir(&dir, run_as).map_err(|e| {
        fail(
            "drill.scratch_failed",
            format!("creating {}: {e}", dir.display()),
        )
    })?;
    let _remove = crate::engine::scratch::RemoveOnDrop(Some(dir.clone()));
    report.scratch = Some(format!(
        "recovered PostgreSQL data directory {}",
        dir.display()
    ));

    let t = Instant::now();
    let repo = ctx
        .repo(&report.location)
        .await
        .map_err(|e| fail(e.code(), e.to_string()))?;
    let request = PitrRequest {
        source: report.source.clone(),
        target: target.clone(),
        target_dir: dir.clone(),
        location: Some(report.location.clone()),
        preview: true,
        start_port: None,
        target_url: None,
        target_password: None,
    };
    let (plan, wal) = super::pitr::plan(&repo, &request, &report.location)
        .await
        .map_err(|e| fail(e.code(), e.to_string()))?;
    phases.push("plan", t);
    report.snapshot_id = Some(plan.base_snapshot.clone());
    report.backup_id = Some(plan.base_snapshot.clone());
    report.snapshot_time = Some(time::format(plan.base.finished));
    report.snapshot_age_seconds = Some((time::now() - plan.base.finished).get_seconds() as f64);
    report.bytes = Some(plan.base_bytes + plan.wal_bytes);

    let dest = Destination {
        dir: &dir,
        role,
        database,
        run_id: &report.run_id,
        run_as,
    };
    let t = Instant::now();
    let recovery = super::pitr::recover_into(ctx, &repo, &plan, &wal, &dest)
        .await
        .map_err(|e| fail("drill.restore_failed", e.to_string()))?;
    let _ = t;
    phases.0.push(crate::model::Phase {
        name: "fetch WAL".into(),
        seconds: recovery.fetch_wal_seconds,
    });
    phases.0.push(crate::model::Phase {
        name: "fetch base".into(),
        seconds: recovery.fetch_base_seconds,
    });
    phases.0.push(crate::model::Phase {
        name: "replay".into(),
        seconds: recovery.recovered.replay_seconds,
    });
    report
        .warnings
        .push(format!("recovered: {}", recovery.recovered.stop));

    let t = Instant::now();
    let checked = recovery.server.amcheck(&recovery.work).await;
    phases.push("verify (pg_amcheck)", t);
    checked.map_err(|e| fail("drill.verification_failed", e.to_string()))?;

    let t = Instant::now();
    report.assertions = assertions(ctx, &report.source, &recovery.server.connect).await;
    phases.push("assertions", t);
    if let Some(a) = report.assertions.iter().find(|a| !a.held) {
        return Err(fail(
            "drill.assertion_failed",
            match (&a.error, a.actual) {
                (Some(e), _) => format!("assertion {} could not run: {e}", a.name),
                (None, Some(v)) => {
                    format!("assertion {} returned {v}, expected {}", a.name, a.expected)
                }
                (None, None) => format!("assertion {} returned no value", a.name),
            },
        ));
    }
    let t = Instant::now();
    recovery
        .server
        .stop()
        .await
        .map_err(|e| fail("drill.teardown_failed", e.to_string()))?;
    phases.push("teardown", t);
    Ok(())
}

/// The source's configured assertions, run on the recovered database.
async fn assertions(
    ctx: &Context,
    source: &str,
    connect: &crate::engine::postgres::Connect,
) -> Vec<AssertionResult> {
    let database = crate::engine::postgres::existing(connect.clone());
    let mut out = Vec::new();
    for a in ctx
        .config
        .drills
        .assertions
        .iter()
        .filter(|a| a.source == source)
    {
        out.push(super::drill::evaluate(&*database, a).await);
    }
    out
}
