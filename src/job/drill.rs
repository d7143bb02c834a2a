//! `custodian drill`: restore a snapshot into a scratch database, prove it complete and correct,
//! measure how long it took, and always clean up.
//!
//! Phases, each timed: `fetch` (open the location, choose the snapshot, read its manifest) →
//! `provision` (create the scratch instance) → `restore.*` (the dump streams from the location,
//! decrypted on the way, into pg_restore / the mariadb client / a file) → `verify` (every table's
//! row count and content checksum against the manifest) → `assertions` (the configured
//! application checks) → `teardown`. The RTO is the wall time from the drill's start to a
//! verified database: everything but the teardown.
//!
//! A drill is recorded in the catalog before anything is created, and so is every scratch
//! instance; whatever kills the drill, [`sweep_scratch`] removes what it left at the next start.

use std::future::Future;
use std::path::PathBuf;
use std::time::Instant;

use rand::RngExt;
use serde::Serialize;

use super::restore::{RepoFiles, read_manifest};
use super::{Context, JobError, Phases, blocking};
use crate::catalog::{DrillEnd, DrillStart, RunEnd, RunKind, ScratchRecord};
use crate::config::Assertion;
use crate::engine::{
    self, Database, EngineError, LoadOptions, QueryError, RunAs, ScratchInstance, ScratchPlan,
    ScratchServer, ScratchSetting, Swept,
};
use crate::model::{CompareScope, Engine, time};
use crate::repo::{Repo, SnapshotInfo};

/// What to drill.
#[derive(Clone, Debug, Default)]
pub struct DrillRequest {
    pub source: Option<String>,
    pub location: Option<String>,
    /// `latest`, `random`, or a snapshot id; `None`: alternate between the latest snapshot and
    /// a random older one (and, for a source with a continuous archive, a PITR drill to a
    /// random point of its window).
    pub snapshot: Option<String>,
    /// A PITR drill: `random` (a point in the recoverable window), `latest`, or a time.
    pub pitr: Option<String>,
}

/// One application assertion's result.
#[derive(Clone, Debug, Serialize)]
pub struct AssertionResult {
    pub name: String,
    pub expected: String,
    pub actual: Option<i64>,
    pub held: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the assertions that did not hold say, in one sentence (`None`: all held).
pub(super) fn failed_assertions(results: &[AssertionResult]) -> Option<String> {
    let failed: Vec<String> = results
        .iter()
        .filter(|a| !a.held)
        .map(|a| match (&a.error, a.actual) {
            (Some(e), _) => format!("assertion {} could not run: {e}", a.name),
            (None, Some(actual)) => format!(
                "assertion {} returned {actual}, expected {}",
                a.name, a.expected
            ),
            (None, None) => format!("assertion {} returned no value", a.name),
        })
        .collect();
    (!failed.is_empty()).then(|| failed.join("; "))
}

/// Why a drill failed: a stable code and a precise sentence.
#[derive(Clone, Debug, Serialize)]
pub struct DrillFailure {
    pub code: String,
    pub reason: String,
    /// The damaged pack, when the snapshot could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack: Option<String>,
}

/// A finished drill (passed or failed).
#[derive(Clone, Debug, Serialize)]
pub struct DrillReport {
    pub run_id: String,
    pub source: String,
    pub location: String,
    /// `latest`, `random` or `id`.
    pub selection: String,
    pub status: crate::model::status::DrillStatus,
    pub snapshot_id: Option<String>,
    pub backup_id: Option<String>,
    pub snapshot_time: Option<String>,
    pub snapshot_age_seconds: Option<f64>,
    pub engine: Option<String>,
    pub scratch: Option<String>,
    /// Wall time from the drill's start to a verified database (passed drills only).
    pub rto_seconds: Option<f64>,
    pub phases: Phases,
    pub tables: Option<u64>,
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
    pub assertions: Vec<AssertionResult>,
    /// The erasure ledger replayed into the restored database (and proven) before release.
    pub erasure: Option<super::erasure::ReplayReport>,
    pub failure: Option<DrillFailure>,
    /// Every difference the verification found (the failure names the first).
    pub mismatches: Vec<String>,
    /// What the verification could not see (listed, never passed silently).
    pub not_verified: Vec<String>,
    /// Problems that did not fail the drill (e.g. a teardown left for the next sweep).
    pub warnings: Vec<String>,
}

impl DrillReport {
    #[must_use]
    pub fn passed(&self) -> bool {
        self.status.is_success()
    }
}

/// What the drill learnt so far; it outlives the drill's future so that a timeout or a cancel
/// still leaves the scratch instance to tear down and the facts to record.
#[derive(Default)]
struct State {
    phases: Phases,
    snapshot: Option<SnapshotInfo>,
    engine: Option<Engine>,
    scratch: Option<Box<dyn ScratchInstance>>,
    scratch_desc: Option<String>,
    scratch_id: Option<String>,
    tables: Option<u64>,
    rows: Option<u64>,
    bytes: Option<u64>,
    assertions: Vec<AssertionResult>,
    erasure: Option<super::erasure::ReplayReport>,
    /// Messages of tools that did not fail the restore.
    warnings: Vec<String>,
    /// What the verification could not see.
    not_verified: Vec<String>,
    mismatches: Vec<String>,
}

fn fail(code: &str, reason: impl Into<String>) -> DrillFailure {
    DrillFailure {
        code: code.to_string(),
        reason: reason.into(),
        pack: None,
    }
}

/// Failure code and sentence for an error met while reading or restoring.
fn failure_of(err: &JobError) -> DrillFailure {
    match err {
        JobError::Repo(e) => DrillFailure {
            pack: match e {
                crate::repo::RepoError::Unreadable { pack, .. } => Some(pack.clone()),
                _ => None,
            },
            ..fail("drill.snapshot_unreadable", e.to_string())
        },
        JobError::Engine(EngineError::RestoreToolFailed { failure, .. }) => {
            fail("drill.restore_failed", format!("{failure}"))
        }
        JobError::Engine(e) => fail("drill.restore_failed", e.to_string()),
        JobError::Verification(m) => fail("drill.verification_failed", m.clone()),
        other => fail(&format!("drill.{}", other.code()), other.to_string()),
    }
}

/// Runs one drill. `cancel` resolving (SIGTERM, Ctrl-C) stops it; the scratch instance is torn
/// down in every case.
///
/// # Errors
/// Only when the drill cannot start (unknown names, catalog); a drill that ran and failed is an
/// `Ok` report with `status = "failed"`.
pub async fn drill(
    ctx: &Context,
    req: &DrillRequest,
    cancel: impl Future<Output = ()>,
) -> Result<DrillReport, JobError> {
    let (source, location) = choose_pair(ctx, req).await?;
    // A PITR drill: PostgreSQL recovers a data directory from its physical archive; a
    // MariaDB/MySQL source loads a logical backup into the scratch instance like any drill and
    // replays its binary logs onto it.
    let mut replay = None;
    if let Some(point) = pitr_point(ctx, req, &source, &location).await? {
        let physical = ctx
            .config
            .source(&source)
            .is_some_and(|s| matches!(s.kind, crate::config::SourceKind::Postgres(_)));
        if physical {
            let rotated = req.pitr.is_none();
            let work = super::pitr_drill::drill(ctx, &source, &location, &point, rotated);
            return tokio::select! {
                r = work => r,
                () = cancel => Err(JobError::Cancelled),
            };
        }
        let planned = match super::pitr_mysql::drill_plan(ctx, &source, &location, &point).await {
            // The rotation drills a random point when no two backups frame a replay yet.
            Err(JobError::Refused { .. }) if req.pitr.is_none() && point == "backup" => {
                super::pitr_mysql::drill_plan(ctx, &source, &location, "random").await?
            }
            other => other?,
        };
        replay = Some(planned);
    }
    let selection = match &replay {
        Some(r) => r.snapshot.id.clone(),
        None => choose_selection(ctx, req, &source, &location).await?,
    };
    let selection_kind = match (&replay, selection.as_str()) {
        (Some(r), _) => r.selection.to_string(),
        (None, "latest" | "random") => selection.clone(),
        _ => "id".to_string(),
    };
    let run_id = ctx
        .start(RunKind::Drill, Some(&source), Some(&location), None)
        .await?;
    ctx.catalog
        .start_drill(&DrillStart {
            run_id: run_id.clone(),
            source: source.clone(),
            location: location.clone(),
            selection: selection_kind.clone(),
        })
        .await?;
    tracing::info!(run_id, source, location, snapshot = %selection, "drill started");

    let started = Instant::now();
    let lifetime = ctx.config.drills.scratch_lifetime;
    let mut state = State::default();
    let result = {
        let work = run(
            ctx,
            &run_id,
            &source,
            &location,
            &selection,
            replay.as_ref(),
            &mut state,
        );
        tokio::select! {
            r = tokio::time::timeout(lifetime, work) => match r {
                Ok(r) => r,
                Err(_) => Err(fail(
                    "drill.timeout",
                    format!(
                        "the drill did not finish within drills.scratch-lifetime ({}); it was stopped",
                        humantime::format_duration(lifetime)
                    ),
                )),
            },
            () = cancel => Err(fail("drill.cancelled", "the drill was cancelled (signal); it was stopped")),
        }
    };
    let rto = result.is_ok().then(|| started.elapsed().as_secs_f64());

    let mut warnings = std::mem::take(&mut state.warnings);
    if let Some(scratch) = state.scratch.take() {
        let t = Instant::now();
        let id = state.scratch_id.clone().unwrap_or_default();
        match scratch.teardown().await {
            Ok(()) => {
                if let Err(e) = ctx.catalog.scratch_removed(&id, "teardown").await {
                    warnings.push(format!("recording the teardown: {e}"));
                }
            }
            Err(e) => warnings.push(format!(
                "teardown incomplete, the next start removes the rest: {e}"
            )),
        }
        state.phases.push("teardown", t);
    }

    let snap = state.snapshot.as_ref();
    let report = DrillReport {
        run_id: run_id.clone(),
        source,
        location,
        selection: selection_kind,
        status: if result.is_ok() {
            crate::model::status::DrillStatus::Passed
        } else {
            crate::model::status::DrillStatus::Failed
        },
        snapshot_id: snap.map(|s| s.id.clone()),
        backup_id: snap.map(|s| s.backup_id.clone()),
        snapshot_time: snap.map(|s| time::format(s.time)),
        snapshot_age_seconds: snap.map(|s| (time::now() - s.time).get_seconds() as f64),
        engine: state.engine.map(|e| e.as_str().to_string()),
        scratch: state.scratch_desc.clone(),
        rto_seconds: rto,
        phases: state.phases.clone(),
        tables: state.tables,
        rows: state.rows,
        bytes: state.bytes,
        assertions: state.assertions.clone(),
        erasure: state.erasure.clone(),
        failure: result.err(),
        mismatches: std::mem::take(&mut state.mismatches),
        not_verified: std::mem::take(&mut state.not_verified),
        warnings,
    };
    record(ctx, &report).await;
    match &report.failure {
        None => tracing::info!(
            run_id,
            rto_seconds = report.rto_seconds.unwrap_or_default(),
            "drill passed"
        ),
        Some(f) => tracing::error!(run_id, code = %f.code, "drill failed: {}", f.reason),
    }
    Ok(report)
}

pub(super) async fn record(ctx: &Context, report: &DrillReport) {
    let end = DrillEnd {
        snapshot_id: report.snapshot_id.clone(),
        backup_id: report.backup_id.clone(),
        snapshot_taken_at: report.snapshot_time.clone(),
        snapshot_age_seconds: report.snapshot_age_seconds,
        engine: report.engine.clone(),
        scratch: report.scratch.clone(),
        verdict: report.status.to_string(),
        failure_code: report.failure.as_ref().map(|f| f.code.clone()),
        failure_reason: report.failure.as_ref().map(|f| f.reason.clone()),
        rto_seconds: report.rto_seconds,
        phases: report.phases.to_json(),
        tables: report.tables,
        rows: report.rows,
        bytes: report.bytes,
        assertions: serde_json::to_value(&report.assertions).unwrap_or_default(),
    };
    if let Err(e) = ctx.catalog.finish_drill(&report.run_id, &end).await {
        tracing::error!(run_id = report.run_id, error = %e, "could not record the drill");
    }
    if let Some(f) = &report.failure
        && let Some(pack) = &f.pack
        && let Err(e) = ctx
            .catalog
            .record_damage(
                &report.location,
                &report.run_id,
                "drill",
                Some(pack),
                &f.reason,
            )
            .await
    {
        tracing::error!(run_id = report.run_id, error = %e, "could not record the damage found");
    }
    let (outcome, error) = match &report.failure {
        None => (crate::catalog::Outcome::Succeeded, None),
        Some(f) => (crate::catalog::Outcome::Failed, Some(f)),
    };
    let run_end = RunEnd {
        bytes_read: report.bytes,
        snapshot_id: report.snapshot_id.clone(),
        error_code: error.map(|f| f.code.clone()),
        error_message: error.map(|f| f.reason.clone()),
        details: Some(serde_json::json!({
            "rto_seconds": report.rto_seconds,
            "phases": report.phases,
        })),
        ..RunEnd::default()
    };
    if let Err(e) = ctx
        .catalog
        .finish_run(&report.run_id, outcome, &run_end)
        .await
    {
        tracing::error!(run_id = report.run_id, error = %e, "could not record the end of the drill");
    }
    ctx.audit_run(
        &report.run_id,
        outcome.as_str(),
        run_end.error_code.as_deref(),
    );
}

/// The drill itself; every fact it learns goes into `state` as soon as it is known.
async fn run(
    ctx: &Context,
    run_id: &str,
    source: &str,
    location: &str,
    selection: &str,
    replay: Option<&super::pitr_mysql::DrillReplay>,
    state: &mut State,
) -> Result<(), DrillFailure> {
    // fetch
    let t = Instant::now();
    let repo = ctx.repo(location).await.map_err(|e| failure_of(&e))?;
    let snap = pick_snapshot(&repo, source, selection)
        .await
        .map_err(|e| failure_of(&e))?;
    state.snapshot = Some(snap.clone());
    let manifest = read_manifest(&repo, &snap).await.map_err(|e| match e {
        JobError::Verification(m) => fail("drill.verification_failed", m),
        other => failure_of(&other),
    })?;
    state.engine = Some(manifest.engine);
    state.phases.push("fetch", t);

    // provision
    let t = Instant::now();
    let setting = scratch_setting(ctx, source).map_err(|e| fail("drill.scratch_failed", e))?;
    let base_dir = ctx
        .config
        .drills
        .scratch_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let scratch_id = run_id
        .replace(|c: char| !c.is_ascii_alphanumeric(), "")
        .to_lowercase();
    let plan = ScratchPlan::new(
        manifest.engine,
        &setting,
        &base_dir,
        &scratch_id,
        &manifest.database,
    );
    let run_as = RunAs::resolve(ctx.config.drills.scratch_user.as_deref())
        .map_err(|e| fail("drill.scratch_failed", e))?;
    let now = time::now();
    let expires = now
        .checked_add(
            jiff::SignedDuration::try_from(ctx.config.drills.scratch_lifetime).unwrap_or_default(),
        )
        .unwrap_or(now);
    ctx.catalog
        .record_scratch(&ScratchRecord {
            id: plan.id.clone(),
            run_id: run_id.to_string(),
            kind: plan.kind().to_string(),
            path: plan.dir.as_ref().map(|d| d.display().to_string()),
            database: matches!(setting, ScratchSetting::Server(_)).then(|| plan.database.clone()),
            server: plan.server(),
            created_at: time::format(now),
            expires_at: time::format(expires),
            ..ScratchRecord::default()
        })
        .await
        .map_err(|e| fail("drill.catalog", e.to_string()))?;
    let engine = engine::of(manifest.engine);
    let scratch = engine
        .scratch(&plan, run_as)
        .await
        .map_err(|e| fail("drill.scratch_failed", e.to_string()))?;
    if let Some(pid) = scratch.pid() {
        let pid = i64::from(pid);
        ctx.catalog
            .scratch_started(&plan.id, pid, crate::model::process_start(pid))
            .await
            .map_err(|e| fail("drill.catalog", e.to_string()))?;
    }
    state.scratch_desc = Some(scratch.describe());
    state.scratch_id = Some(plan.id.clone());
    let scratch = state.scratch.insert(scratch);
    state.phases.push("provision", t);

    // restore + verify, in the scratch instance itself
    let (tables, rows) = (manifest.tables.len() as u64, manifest.total_rows());
    let mut staging = scratch.staging();
    let files = RepoFiles::new(&repo, &snap, &manifest.source, ctx.progress.clone());
    // Roles come from the snapshot's globals where it has them; without them ownership is
    // left to the scratch superuser (and not compared).
    let opts = LoadOptions {
        jobs: super::configured_streams(ctx, &manifest.source),
        with_globals: true,
        skip_ownership: false,
    };
    let loaded = staging
        .load(files.clone(), &manifest, &opts, &mut state.phases)
        .await
        .map_err(|e| failure_of(&files.error(e)))?;
    state.bytes = Some(loaded.bytes);
    state.warnings.extend(loaded.warnings);
    let t = Instant::now();
    let v = staging.verify(&manifest, CompareScope::default()).await;
    state.phases.push("verify", t);
    state.not_verified = v.not_verified.clone();
    state.mismatches = v.mismatches.clone();
    if !v.is_verified() {
        return Err(fail("drill.verification_failed", v.summary()));
    }
    state.tables = Some(tables);
    state.rows = Some(rows);
    if let Some(replay) = replay {
        replay_logs(ctx, &repo, &mut *staging, replay, state).await?;
    }

    // erasure: the whole ledger replayed and proven before anything else sees the data
    let t = Instant::now();
    let replayed =
        super::erasure::replay(ctx, run_id, "drill", source, Some(&snap.id), &*staging).await;
    state.phases.push("erasure", t);
    match replayed {
        Ok(r) => state.erasure = Some(r),
        Err(f) => return Err(fail(f.code, f.reason)),
    }

    // assertions
    let t = Instant::now();
    let assertions: Vec<&Assertion> = ctx
        .config
        .drills
        .assertions
        .iter()
        .filter(|a| a.source == source)
        .collect();
    for a in assertions {
        let result = evaluate(&*staging, a).await;
        state.assertions.push(result);
    }
    state.phases.push("assertions", t);
    if let Some(failed) = failed_assertions(&state.assertions) {
        return Err(fail("drill.assertion_failed", failed));
    }
    Ok(())
}

/// A PITR drill's replay of archived logs onto the verified backup, the server's own
/// consistency check, and — when the target was a later backup's own position — the
/// comparison with that backup's manifest.
async fn replay_logs(
    ctx: &Context,
    repo: &Repo,
    staging: &mut dyn engine::Staging,
    replay: &super::pitr_mysql::DrillReplay,
    state: &mut State,
) -> Result<(), DrillFailure> {
    let t = Instant::now();
    let work = engine::private_workdir(&ctx.config.scratch_dir(), "binlog-fetch-")
        .map_err(|e| fail("drill.scratch_failed", e.to_string()))?;
    let logs = replay
        .fetch(repo, work.path())
        .await
        .map_err(|e| failure_of(&e))?;
    state.phases.push("fetch binlogs", t);
    let t = Instant::now();
    let applied = staging
        .replay_logs(&logs)
        .await
        .map_err(|e| fail("drill.restore_failed", e.to_string()))?;
    state.phases.push("replay", t);
    state.warnings.push(format!(
        "replayed {} ({applied} bytes of SQL applied)",
        replay.describe()
    ));
    let t = Instant::now();
    let consistency = staging
        .check_consistency()
        .await
        .map_err(|e| fail("drill.verification_failed", e.to_string()))?;
    state.phases.push("verify (CHECK TABLE)", t);
    if let Some(c) = consistency
        && !c.problems.is_empty()
    {
        return Err(fail(
            "drill.verification_failed",
            format!(
                "the server's check found problems: {}",
                c.problems.join("; ")
            ),
        ));
    }
    match &replay.compare {
        Some((snap, manifest)) => {
            let t = Instant::now();
            let v = staging.verify(manifest, CompareScope::default()).await;
            state.phases.push("verify at the backup's position", t);
            state.mismatches.clone_from(&v.mismatches);
            state.not_verified.clone_from(&v.not_verified);
            if !v.is_verified() {
                return Err(fail(
                    "drill.verification_failed",
                    format!(
                        "replayed to backup {}'s position, the database differs from its manifest: {}",
                        snap.short_id(),
                        v.summary()
                    ),
                ));
            }
            state.tables = Some(manifest.tables.len() as u64);
            state.rows = Some(manifest.total_rows());
        }
        None => state.not_verified.push(format!(
            "the database at {} was compared with no manifest (no logical backup was taken there; `drill --pitr backup` replays to a backup's own position and compares it); the backup it started from was",
            replay.target
        )),
    }
    Ok(())
}

/// Runs one assertion: its SQL must return one whole number.
pub(super) async fn evaluate(target: &dyn Database, a: &Assertion) -> AssertionResult {
    let value: Result<Option<i64>, String> = async {
        let mut conn = target.session(true).await.map_err(|e| e.to_string())?;
        let value = match conn.int(&a.sql, None).await {
            Err(QueryError::NoRow) => Ok(None),
            other => other.map_err(|e| e.to_string()),
        };
        conn.close().await;
        value
    }
    .await;
    let expected = format!("{} {}", a.comparison, a.expected);
    match value {
        Ok(actual) => AssertionResult {
            name: a.name.clone(),
            expected,
            actual,
            held: actual.is_some_and(|v| a.comparison.holds(v, a.expected)),
            error: None,
        },
        Err(e) => AssertionResult {
            name: a.name.clone(),
            expected,
            actual: None,
            held: false,
            error: Some(e),
        },
    }
}

/// The snapshot a drill restores: the latest, a random older one, or the one named.
async fn pick_snapshot(
    repo: &Repo,
    source: &str,
    selection: &str,
) -> Result<SnapshotInfo, JobError> {
    let (r, source, selection) = (repo.clone(), source.to_string(), selection.to_string());
    blocking(move || {
        if selection != "random" {
            return r.find_snapshot(&selection, Some(&source));
        }
        let mut all: Vec<SnapshotInfo> = r
            .snapshots()?
            .into_iter()
            .filter(|s| s.is_committed_backup() && s.source.as_deref() == Some(&source))
            .collect();
        // "Older" when there is more than one: the newest is what `latest` drills cover.
        if all.len() > 1 {
            all.pop();
        }
        if all.is_empty() {
            return r.find_snapshot("latest", Some(&source));
        }
        let i = rand::rng().random_range(0..all.len());
        Ok(all.swap_remove(i))
    })
    .await
}

/// How a source's drills get a scratch database.
fn scratch_setting(ctx: &Context, source: &str) -> Result<ScratchSetting, String> {
    let cfg = ctx
        .config
        .source(source)
        .ok_or_else(|| format!("source `{source}` is no longer configured"))?;
    match cfg.server() {
        Some(s) => match &s.scratch {
            None => Ok(ScratchSetting::Ephemeral),
            Some(server) => {
                let password = server
                    .password
                    .as_ref()
                    .map(crate::secret::SecretRef::resolve)
                    .transpose()
                    .map_err(|e| format!("reading the scratch server's password: {e}"))?;
                Ok(ScratchSetting::Server(ScratchServer {
                    url: server.url.clone(),
                    password,
                }))
            }
        },
        None => Ok(ScratchSetting::Ephemeral),
    }
}

/// The (source, location) to drill: as requested, or — for scheduled rotation — the pair whose
/// last drill is oldest (never drilled first), so every location of every source is covered.
async fn choose_pair(ctx: &Context, req: &DrillRequest) -> Result<(String, String), JobError> {
    let sources = ctx.select_sources(req.source.as_deref())?;
    if let Some(l) = &req.location {
        ctx.select_locations(Some(l))?;
    }
    let mut pairs = Vec::new();
    for s in &sources {
        for l in &s.locations {
            if req.location.as_ref().is_none_or(|want| want == l) {
                pairs.push((s.name.clone(), l.clone()));
            }
        }
    }
    if pairs.is_empty() {
        return Err(JobError::Usage(format!(
            "no source is kept in location `{}`",
            req.location.as_deref().unwrap_or_default()
        )));
    }
    let mut best: Option<(String, (String, String))> = None;
    for (s, l) in pairs {
        let last = ctx
            .catalog
            .drills(Some(&s), Some(&l), 1)
            .await?
            .first()
            .map(|d| d.started_at.clone())
            .unwrap_or_default();
        if best.as_ref().is_none_or(|(t, _)| last < *t) {
            best = Some((last, (s, l)));
        }
    }
    Ok(best.map(|(_, p)| p).unwrap_or_default())
}

/// The point a PITR drill recovers to: the one asked for, or — in the rotation of a source with
/// a continuous archive — a random one after a drill of a random older snapshot.
async fn pitr_point(
    ctx: &Context,
    req: &DrillRequest,
    source: &str,
    location: &str,
) -> Result<Option<String>, JobError> {
    if req.pitr.is_some() || req.snapshot.is_some() {
        return Ok(req.pitr.clone());
    }
    let archived = ctx
        .config
        .source(source)
        .is_some_and(|s| super::wal::archive_settings(s).is_ok());
    if !archived {
        return Ok(None);
    }
    // latest → random → pitr-random → pitr-backup → latest …
    let last = ctx.catalog.drills(Some(source), Some(location), 1).await?;
    Ok(match last.first().map(|d| d.selection.as_str()) {
        Some("random") => Some("random".to_string()),
        Some("pitr-random") => Some("backup".to_string()),
        _ => None,
    })
}

/// `latest`, `random` or an id. Without a request, drills of a pair alternate: after a drill of
/// the latest snapshot comes one of a random older snapshot.
async fn choose_selection(
    ctx: &Context,
    req: &DrillRequest,
    source: &str,
    location: &str,
) -> Result<String, JobError> {
    if let Some(s) = &req.snapshot {
        return Ok(s.clone());
    }
    let last = ctx.catalog.drills(Some(source), Some(location), 1).await?;
    Ok(match last.first() {
        Some(d) if d.selection == "latest" => "random".to_string(),
        _ => "latest".to_string(),
    })
}

/// Removes scratch instances that a previous process left behind (killed drills) or that
/// outlived their lifetime, and records it. Returns how many were removed.
///
/// # Errors
/// When the catalog cannot be read.
pub async fn sweep_scratch(ctx: &Context) -> Result<u64, JobError> {
    ctx.catalog.mark_interrupted_drills().await?;
    let now = time::format(time::now());
    let mut removed = 0;
    for (record, outcome) in ctx.catalog.live_scratch().await? {
        let expired = record.expires_at < now;
        if outcome == "running" && !expired {
            continue;
        }
        let result = match (&record.database, record.kind.starts_with("server-")) {
            (Some(db), true) => sweep_server_database(ctx, &record, db).await,
            // A restore's staging on a server needs the target's credentials, which only
            // the next restore there has: it removes it (and it stays visible until then).
            (Some(_), false) if record.kind.starts_with("restore-") => continue,
            _ => {
                let (dir, pid, started) = (
                    record.path.as_ref().map(PathBuf::from),
                    record.pid,
                    record.pid_start,
                );
                tokio::task::spawn_blocking(move || {
                    engine::scratch::sweep_instance(dir.as_deref(), pid, started)
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            }
        };
        match result {
            Ok(swept) => {
                ctx.catalog.scratch_removed(&record.id, "sweep").await?;
                if swept == Swept::Removed {
                    removed += 1;
                    tracing::warn!(
                        scratch = record.id,
                        run_id = record.run_id,
                        kind = record.kind,
                        "removed a scratch instance left by an interrupted or overdue drill"
                    );
                }
            }
            Err(e) => tracing::error!(
                scratch = record.id,
                "cannot remove a scratch instance left by a drill: {e}; it is retried at the next start"
            ),
        }
    }
    Ok(removed)
}

async fn sweep_server_database(
    ctx: &Context,
    record: &ScratchRecord,
    database: &str,
) -> Result<Swept, String> {
    let source = ctx
        .catalog
        .drills(None, None, u32::MAX)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|d| d.run_id == record.run_id)
        .map(|d| d.source)
        .ok_or("its drill is not in the catalog")?;
    let ScratchSetting::Server(server) = scratch_setting(ctx, &source)? else {
        return Err(format!(
            "source {source} no longer has a scratch server; drop database {database} on {} by hand",
            record.server.as_deref().unwrap_or("?")
        ));
    };
    let engine: Engine = record
        .kind
        .strip_prefix("server-")
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| format!("unknown scratch kind `{}`", record.kind))?;
    engine::of(engine)
        .drop_scratch_database(&server, database)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Swept::Removed)
}
