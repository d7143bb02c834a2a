//! `custodian drill --pitr random|latest|backup|TIME` for a PostgreSQL source: a restore
//! drill of its continuous archive. It recovers a scratch data directory to a point inside the
//! recoverable window (a random second of it, its end, a backup's restore point, or the time
//! given) the way a restore to a point in time does, and proves:
//!
//! * the chain from the base backup to the target is complete and replays, and the server
//!   stopped at the target (its own account is checked against it);
//! * the recovered cluster is consistent: `pg_amcheck --all` checks every table's heap and
//!   every B-tree index of every database;
//! * at a backup's restore point (`backup`), the recovered database matches that backup's
//!   manifest — rows, checksums and objects — when the point is exact (see
//!   `engine::postgres::restore_point`);
//! * the configured assertions hold on the recovered database.
//!
//! It is recorded as a drill (selection `pitr-random`, `pitr-latest`, `pitr-backup` or
//! `pitr-time`) with its RTO per phase, so reports and `custodian drills` show it beside the
//! logical drills, and the rotation of scheduled drills includes it for sources with an
//! archive. MariaDB/MySQL PITR drills run inside the logical drill (`job::drill`), which
//! replays binary logs onto the backup it loaded.

use std::time::Instant;

use rand::RngExt;

use super::blocking;
use super::drill::{AssertionResult, DrillFailure, DrillReport};
use super::pitr::{Destination, PitrRequest};
use super::{Context, JobError};
use crate::catalog::{DrillStart, RunKind};
use crate::config::SourceKind;
use crate::engine::pitr::RecoveryTarget;
use crate::engine::scratch::{RunAs, make_private_dir};
use crate::model::manifest::RestorePoint;
use crate::model::{CompareScope, Manifest, Phases, time};
use crate::repo::SnapshotInfo;

fn fail(code: &str, reason: impl Into<String>) -> DrillFailure {
    DrillFailure {
        code: code.to_string(),
        reason: reason.into(),
        pack: None,
    }
}

/// The point a drill recovers to, and how it was chosen.
pub(super) async fn choose_target(
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

/// The newest backup of `source` whose restore point is exact and inside the recoverable
/// window: a drill to it can compare the recovered database with the backup's manifest.
async fn backup_point(
    ctx: &Context,
    source: &str,
    location: &str,
) -> Result<(SnapshotInfo, Manifest, RestorePoint), JobError> {
    let status = super::archive::status(ctx, Some(source)).await?;
    let window = status.first().and_then(|s| s.window.clone());
    let repo = ctx.repo(location).await?;
    let s = source.to_string();
    let found = blocking(move || {
        let mut backups: Vec<SnapshotInfo> = repo
            .snapshots()?
            .into_iter()
            .filter(|b| b.is_committed_backup() && b.source.as_deref() == Some(s.as_str()))
            .collect();
        backups.reverse();
        // Why the newest backup cannot serve, for the message when none can.
        let mut newest: Option<String> = None;
        for snap in backups {
            let why = |text: &str| format!("the newest backup, {}, {text}", snap.short_id());
            if window
                .as_ref()
                .is_none_or(|w| snap.time < w.from || snap.time > w.to)
            {
                newest.get_or_insert_with(|| why("is outside the recoverable window"));
                continue;
            }
            let bytes = repo.read_file(
                &snap.id,
                &crate::model::naming::file_path(&s, crate::model::naming::MANIFEST_FILE),
            )?;
            let manifest = serde_json::from_slice::<Manifest>(&bytes).ok();
            match manifest.as_ref().and_then(|m| m.restore_point.clone()) {
                Some(point) if point.exact => {
                    let manifest = manifest.expect("read");
                    return Ok(Ok((snap, manifest, point)));
                }
                Some(_) => {
                    newest.get_or_insert_with(|| why("was taken while transactions were committing: its restore point is not exact"));
                }
                None => {
                    newest.get_or_insert_with(|| why("wrote no restore point (grant the role EXECUTE on pg_create_restore_point in the postgres database)"));
                }
            }
        }
        Ok(Err(newest))
    })
    .await?;
    found.map_err(|newest| JobError::Refused {
        code: "pitr.not_recoverable",
        message: format!(
            "no backup of source {source} inside its recoverable window has an exact restore point ({}); take a backup at a quiet moment, or drill another point (--pitr random)",
            newest.unwrap_or_else(|| "it has no logical backup".into())
        ),
    })
}

/// Runs a PITR drill of `source` from `location`. `rotated`: chosen by the rotation, which
/// drills a random point instead of a backup's when no backup has an exact restore point.
///
/// # Errors
/// When the catalog cannot be written or the point cannot be chosen; a failed drill is a
/// report with its failure, not an error.
pub async fn drill(
    ctx: &Context,
    source: &str,
    location: &str,
    point: &str,
    rotated: bool,
) -> Result<DrillReport, JobError> {
    let source_cfg = ctx.select_sources(Some(source))?.remove(0);
    let SourceKind::Postgres(cfg) = &source_cfg.kind else {
        return Err(JobError::Usage(format!(
            "source {source} is not a PostgreSQL source: PITR drills are PostgreSQL's"
        )));
    };
    super::wal::archive_settings(&source_cfg)?;
    let mut compare = None;
    let (target, selection) = if point == "backup" {
        match backup_point(ctx, source, location).await {
            Ok((snap, manifest, at)) => {
                compare = Some((snap, manifest, at.lsn));
                (RecoveryTarget::RestorePoint(at.name), "pitr-backup")
            }
            Err(e) if rotated => {
                tracing::info!(source, "{e}; drilling a random point instead");
                choose_target(ctx, source, "random").await?
            }
            Err(e) => return Err(e),
        }
    } else {
        choose_target(ctx, source, point).await?
    };
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
    if compare.is_some() {
        report.not_verified.clear();
    }
    let result = run(
        ctx,
        &mut report,
        &mut phases,
        &target,
        compare.as_ref(),
        &role,
        &database,
    )
    .await;
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
    compare: Option<&(SnapshotInfo, Manifest, String)>,
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
        point_lsn: compare.map(|(_, _, lsn)| lsn.clone()),
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
        name: "fetch base".into(),
        seconds: recovery.fetch_base_seconds,
    });
    // Fetched while the server replays: it overlaps the replay's seconds.
    phases.0.push(crate::model::Phase {
        name: "fetch WAL".into(),
        seconds: recovery.fetch_wal_seconds,
    });
    phases.0.push(crate::model::Phase {
        name: "replay".into(),
        seconds: recovery.recovered.replay_seconds,
    });
    report
        .warnings
        .push(format!("recovered: {}", recovery.recovered.stop));

    // Compared first: pg_amcheck installs its extension where it is missing.
    if let Some((snap, manifest, _)) = compare {
        let t = Instant::now();
        let scope = CompareScope {
            sequences_logged_ahead: true,
            ..CompareScope::default()
        };
        let v = crate::engine::postgres::existing(recovery.server.connect.clone())
            .verify(manifest, scope)
            .await;
        phases.push("verify at the backup's restore point", t);
        report.mismatches.clone_from(&v.mismatches);
        report.not_verified.clone_from(&v.not_verified);
        if !v.is_verified() {
            return Err(fail(
                "drill.verification_failed",
                format!(
                    "recovered to backup {}'s restore point, the database differs from its manifest: {}",
                    snap.short_id(),
                    v.summary()
                ),
            ));
        }
        report.tables = Some(manifest.tables.len() as u64);
        report.rows = Some(manifest.total_rows());
    }

    let t = Instant::now();
    let checked = recovery.server.amcheck(&recovery.work).await;
    phases.push("verify (pg_amcheck)", t);
    checked.map_err(|e| fail("drill.verification_failed", e.to_string()))?;

    let t = Instant::now();
    report.assertions = assertions(ctx, &report.source, &recovery.server.connect).await;
    phases.push("assertions", t);
    if let Some(failed) = super::drill::failed_assertions(&report.assertions) {
        return Err(fail("drill.assertion_failed", failed));
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
