//! `custodian restore`: disaster recovery, verified, never half-done.
//!
//! The backup's engine builds the restore where nothing else sees it — a private temporary
//! file beside the target (SQLite), a temporary database on the target server (PostgreSQL,
//! MariaDB/MySQL) — streaming the snapshot's files straight from the repository. The result is
//! compared with the snapshot's manifest (every table's rows and checksum, and every schema
//! object, sequence, materialized view, large object and database property the manifest
//! records), the erasure ledger is replayed and proven, and only then is the restore moved into
//! place, replacing an existing target only under `--force`. On any failure the staging is
//! removed and the target is exactly as it was.
//!
//! Every restore is a run in the catalog, whatever its outcome, and so is its staging (a
//! killed restore's leftovers are removed by the next restore to the same place).

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::{Context, JobError, blocking};
use crate::catalog::{RunEnd, RunKind, ScratchRecord};
use crate::engine::{
    self, Destination, EngineError, LoadOptions, Released, SnapshotFiles, Staging, StagingPlan,
    Verification,
};
use crate::model::{CompareScope, Manifest, Phases, naming, time};
use crate::repo::{Repo, RepoError, SnapshotInfo};
use crate::secret::SecretRef;

/// What to restore, and where.
#[derive(Clone, Debug, Default)]
pub struct RestoreRequest {
    /// Snapshot id (or prefix, or backup id), or `latest`.
    pub snapshot: String,
    /// SQLite: the file to write.
    pub to: Option<PathBuf>,
    /// Servers: the database URL to restore into (no password in it).
    pub target: Option<String>,
    /// Password of the target server (default: the source's configured password).
    pub target_password: Option<SecretRef>,
    pub location: Option<String>,
    pub source: Option<String>,
    /// Replace an existing target file, or the contents of a non-empty target database.
    pub force: bool,
    /// PostgreSQL: tables loaded and indexes built at a time (0: the source's `parallel`, else
    /// one per CPU, at least 2).
    pub jobs: u32,
    /// PostgreSQL: also apply the cluster globals (roles, tablespaces) first.
    pub with_globals: bool,
}

/// A finished restore.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    pub run_id: String,
    pub location: String,
    pub snapshot_id: String,
    pub backup_id: String,
    pub source: String,
    pub engine: String,
    /// The file written, or the database URL restored into.
    pub target: String,
    pub bytes: u64,
    pub duration_seconds: f64,
    pub phases: Phases,
    pub verification: Verification,
    /// The erasure ledger replayed (and proven) before the data was released.
    pub erasure: Option<super::erasure::ReplayReport>,
    /// The target's previous contents were replaced (`--force`).
    pub replaced: bool,
    /// Messages of tools that did not fail the restore (e.g. roles that already existed).
    pub warnings: Vec<String>,
}

/// The files of one snapshot, read from its repository; keeps the repository's own error when
/// a read fails, so that the restore reports it rather than the restore tool's complaint.
pub(crate) struct RepoFiles {
    repo: Repo,
    snapshot: String,
    source: String,
    progress: Arc<super::progress::Progress>,
    error: Mutex<Option<RepoError>>,
}

impl RepoFiles {
    pub(crate) fn new(
        repo: &Repo,
        snap: &SnapshotInfo,
        source: &str,
        progress: Arc<super::progress::Progress>,
    ) -> Arc<Self> {
        Arc::new(Self {
            repo: repo.clone(),
            snapshot: snap.id.clone(),
            source: source.to_string(),
            progress,
            error: Mutex::new(None),
        })
    }

    /// The job error for an engine error: the repository's own, when reading failed.
    pub(crate) fn error(&self, e: EngineError) -> JobError {
        if matches!(e, EngineError::SnapshotRead { .. })
            && let Some(repo) = self
                .error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
        {
            return JobError::Repo(repo);
        }
        JobError::Engine(e)
    }
}

/// Where a verified restore reads a dump's files from, and how a failed read is reported.
pub(crate) trait DumpFiles: SnapshotFiles + 'static {
    /// The job error for an engine error met while loading these files.
    fn error(&self, e: EngineError) -> JobError;
}

impl DumpFiles for RepoFiles {
    fn error(&self, e: EngineError) -> JobError {
        Self::error(self, e)
    }
}

impl SnapshotFiles for RepoFiles {
    fn copy_to(&self, name: &str, out: &mut dyn Write) -> Result<u64, String> {
        let path = naming::file_path(&self.source, name);
        self.progress.phase(format!("restoring {name}"), None);
        let mut metered = super::meter::Metered::new(out, &self.progress);
        let result = self
            .repo
            .dump_file_sized(&self.snapshot, &path, &mut metered, &mut |size| {
                self.progress.set_total(size);
            });
        self.progress.finish();
        result.map_err(|e| {
            let message = e.to_string();
            // A write error is the consumer's (it stopped reading); anything else the
            // repository's.
            if !metered.failed() {
                *self
                    .error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
            }
            message
        })
    }
}

/// Restores a backup, verified.
///
/// # Errors
/// [`JobError::Usage`] for a bad request (unknown names, existing target without `force`),
/// [`JobError::Verification`] when the restored data does not match its manifest, or the
/// underlying repository, engine, catalog or I/O error.
pub async fn restore(ctx: &Context, req: &RestoreRequest) -> Result<RestoreReport, JobError> {
    let location = match (&req.location, &req.source) {
        (Some(l), _) => ctx.select_locations(Some(l))?.remove(0).name,
        (None, Some(s)) => ctx.select_sources(Some(s))?.remove(0).primary().to_string(),
        (None, None) => ctx.config.locations[0].name.clone(),
    };
    let target = match (&req.to, &req.target) {
        (Some(path), None) => path.display().to_string(),
        (None, Some(url)) => {
            if url::Url::parse(url).is_ok_and(|u| u.password().is_some()) {
                return Err(JobError::Usage(
                    "--target must not contain a password; use --target-password-file or --target-password-env".into(),
                ));
            }
            url.clone()
        }
        _ => {
            return Err(JobError::Usage(
                "give exactly one of --to PATH (SQLite) or --target URL (PostgreSQL, MariaDB/MySQL)".into(),
            ));
        }
    };
    let run_id = ctx
        .start(
            RunKind::Restore,
            req.source.as_deref(),
            Some(&location),
            Some(&target),
        )
        .await?;
    let started = std::time::Instant::now();
    let result = async {
        let repo = ctx.repo(&location).await?;
        let snap = {
            let (repo, wanted, source) = (repo.clone(), req.snapshot.clone(), req.source.clone());
            blocking(move || repo.find_snapshot(&wanted, source.as_deref())).await?
        };
        let manifest = read_manifest(&repo, &snap).await?;
        let destination = destination(ctx, req, &manifest.source)?;
        let files = RepoFiles::new(&repo, &snap, &manifest.source, ctx.progress.clone());
        let mut phases = Phases::default();
        let done = build_and_release(
            ctx,
            &run_id,
            req,
            Some(&snap.id),
            &manifest,
            destination,
            &files,
            &mut phases,
        )
        .await?;
        Ok(RestoreReport {
            run_id: run_id.clone(),
            location: location.clone(),
            snapshot_id: snap.id.clone(),
            backup_id: snap.backup_id.clone(),
            source: snap.source.clone().unwrap_or_default(),
            engine: manifest.engine.to_string(),
            target: target.clone(),
            bytes: done.bytes,
            duration_seconds: started.elapsed().as_secs_f64(),
            phases,
            verification: done.verification,
            erasure: done.erasure,
            replaced: done.released.replaced,
            warnings: done.warnings,
        })
    }
    .await;
    let end = match &result {
        Ok(r) => RunEnd {
            bytes_read: Some(r.bytes),
            snapshot_id: Some(r.snapshot_id.clone()),
            details: Some(serde_json::json!({
                "verification": r.verification.status,
                "tables": r.verification.tables.len(),
                "objects": r.verification.objects,
                "not_verified": r.verification.not_verified,
                "engine": r.engine,
                "replaced": r.replaced,
            })),
            ..RunEnd::default()
        },
        Err(_) => RunEnd::default(),
    };
    ctx.finish(&run_id, &result, end).await;
    if let Ok(r) = &result {
        tracing::info!(run_id, snapshot = %&r.snapshot_id[..8], target = %r.target, "restore verified");
    }
    result
}

/// The destination of a restore, with the target server's password.
pub(super) fn destination(
    ctx: &Context,
    req: &RestoreRequest,
    source: &str,
) -> Result<Destination, JobError> {
    if let Some(path) = &req.to {
        return Ok(Destination::File(path.clone()));
    }
    let url = req.target.clone().unwrap_or_default();
    let reference = req.target_password.clone().or_else(|| {
        ctx.config
            .source(source)
            .and_then(|s| s.server().and_then(|c| c.password.clone()))
    });
    let password = reference
        .map(|r| r.resolve())
        .transpose()
        .map_err(|e| JobError::io("reading the restore target's password", &e))?;
    Ok(Destination::Server { url, password })
}

pub(super) struct Built {
    pub bytes: u64,
    pub verification: Verification,
    pub erasure: Option<super::erasure::ReplayReport>,
    pub released: Released,
    pub warnings: Vec<String>,
}

/// Stages, loads, verifies, replays the erasure ledger and releases — or removes the staging.
/// `snapshot_id`: the backup the files come from, for the erasure ledger's record.
#[allow(clippy::too_many_arguments)]
pub(super) async fn build_and_release<F: DumpFiles>(
    ctx: &Context,
    run_id: &str,
    req: &RestoreRequest,
    snapshot_id: Option<&str>,
    manifest: &Manifest,
    destination: Destination,
    files: &Arc<F>,
    phases: &mut Phases,
) -> Result<Built, JobError> {
    let engine = engine::of(manifest.engine);
    let plan = engine
        .staging_plan(&destination, run_id)
        .map_err(usage_or_engine)?;
    remove_leftovers(ctx, engine, &plan).await;
    let record_id = record_staging(ctx, run_id, manifest, &plan).await?;
    let staged = engine
        .stage(&plan, manifest, req.force, &ctx.config.scratch_dir())
        .await;
    let mut staging = match staged {
        Ok(s) => s,
        Err(e) => {
            let _ = ctx.catalog.scratch_removed(&record_id, "restore").await;
            return Err(usage_or_engine(e));
        }
    };
    let built = load_and_prove(
        ctx,
        run_id,
        req,
        snapshot_id,
        manifest,
        &mut staging,
        files,
        phases,
    )
    .await;
    let (loaded, verification, erasure) = match built {
        Ok(b) => b,
        Err(e) => {
            if let Err(d) = staging.discard().await {
                tracing::error!(error = %d, "could not remove the restore's staging");
            } else {
                let _ = ctx.catalog.scratch_removed(&record_id, "restore").await;
            }
            return Err(e);
        }
    };
    let t = std::time::Instant::now();
    let released = staging.release(req.force).await;
    phases.push("release", t);
    let _ = ctx.catalog.scratch_removed(&record_id, "restore").await;
    let released = released.map_err(JobError::Engine)?;
    let mut warnings = loaded.warnings;
    warnings.extend(released.warnings.iter().cloned());
    Ok(Built {
        bytes: loaded.bytes,
        verification,
        erasure,
        released,
        warnings,
    })
}

#[allow(clippy::too_many_arguments)]
async fn load_and_prove<F: DumpFiles>(
    ctx: &Context,
    run_id: &str,
    req: &RestoreRequest,
    snapshot_id: Option<&str>,
    manifest: &Manifest,
    staging: &mut Box<dyn Staging>,
    files: &Arc<F>,
    phases: &mut Phases,
) -> Result<
    (
        engine::Loaded,
        Verification,
        Option<super::erasure::ReplayReport>,
    ),
    JobError,
> {
    let opts = LoadOptions {
        jobs: if req.jobs > 0 {
            req.jobs
        } else {
            super::configured_streams(ctx, &manifest.source)
        },
        with_globals: req.with_globals,
        skip_ownership: false,
    };
    let loaded = staging
        .load(
            files.clone() as Arc<dyn SnapshotFiles>,
            manifest,
            &opts,
            phases,
        )
        .await
        .map_err(|e| files.error(e))?;
    if loaded.bytes == 0 {
        return Err(JobError::Verification(
            "the dump in the snapshot is empty".into(),
        ));
    }
    tracing::info!("restore: verifying against the manifest");
    let t = std::time::Instant::now();
    let verification = staging.verify(manifest, CompareScope::default()).await;
    phases.push("verify", t);
    if !verification.is_verified() {
        return Err(JobError::Verification(verification.summary()));
    }
    tracing::info!("restore: replaying the erasure ledger");
    let t = std::time::Instant::now();
    let erasure = super::erasure::replay(
        ctx,
        run_id,
        "restore",
        &manifest.source,
        snapshot_id,
        &**staging,
    )
    .await
    .map_err(|f| JobError::Erasure {
        code: f.code,
        reason: format!(
            "{} Nothing was released: the target is as it was.",
            f.reason
        ),
    })?;
    phases.push("erasure", t);
    Ok((loaded, verification, Some(erasure)))
}

pub(super) fn usage_or_engine(e: EngineError) -> JobError {
    if e.is_usage() {
        JobError::Usage(e.to_string())
    } else {
        JobError::Engine(e)
    }
}

/// Records the staging before it exists, so that a killed restore's leftover is known.
async fn record_staging(
    ctx: &Context,
    run_id: &str,
    manifest: &Manifest,
    plan: &StagingPlan,
) -> Result<String, JobError> {
    let now = time::now();
    let id = format!(
        "restore-{}",
        plan.id.replace(|c: char| !c.is_ascii_alphanumeric(), "")
    );
    let file = matches!(plan.destination, Destination::File(_));
    ctx.catalog
        .record_scratch(&ScratchRecord {
            id: id.clone(),
            run_id: run_id.to_string(),
            kind: format!("restore-{}", manifest.engine),
            path: file.then(|| plan.name.clone()),
            database: (!file).then(|| plan.name.clone()),
            server: plan.server.clone(),
            created_at: time::format(now),
            // A restore is not bounded by the drills' scratch lifetime; a day is generous.
            expires_at: time::format(
                now.checked_add(jiff::SignedDuration::from_hours(24))
                    .unwrap_or(now),
            ),
            ..ScratchRecord::default()
        })
        .await?;
    Ok(id)
}

/// Removes what killed restores left where this one goes (same server, or same directory).
async fn remove_leftovers(ctx: &Context, engine: &dyn engine::DatabaseEngine, plan: &StagingPlan) {
    let kind = format!("restore-{}", engine.engine());
    let Ok(live) = ctx.catalog.live_scratch().await else {
        return;
    };
    let (ids, names): (Vec<String>, Vec<String>) = live
        .into_iter()
        .filter(|(r, outcome)| {
            r.kind == kind
                && outcome != "running"
                && match &plan.destination {
                    Destination::File(_) => r.path.as_deref().is_some_and(|p| {
                        std::path::Path::new(p).parent()
                            == std::path::Path::new(&plan.name).parent()
                    }),
                    Destination::Server { .. } => r.server == plan.server,
                }
        })
        .filter_map(|(r, _)| Some((r.id, r.database.or(r.path)?)))
        .unzip();
    if names.is_empty() {
        return;
    }
    match engine.remove_leftover(&plan.destination, &names).await {
        Ok(()) => {
            for id in ids {
                let _ = ctx.catalog.scratch_removed(&id, "restore").await;
            }
            tracing::warn!(?names, "removed what interrupted restores left behind");
        }
        Err(e) => tracing::error!(error = %e, "could not remove what interrupted restores left"),
    }
}

pub(crate) async fn read_manifest(repo: &Repo, snap: &SnapshotInfo) -> Result<Manifest, JobError> {
    let source = snap.source.clone().unwrap_or_default();
    let (repo, id) = (repo.clone(), snap.id.clone());
    let path = naming::file_path(&source, naming::MANIFEST_FILE);
    let bytes = blocking(move || repo.read_file(&id, &path)).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        JobError::Verification(format!(
            "the manifest of snapshot {} cannot be read: {e}",
            snap.short_id()
        ))
    })
}
