//! `custodian restore --to-time … --target postgres://USER@HOST/NEWDB` for a PostgreSQL source.
//! A physical recovery cannot go into a running server, so the cluster is recovered to the
//! point in a private scratch data directory (as a PITR drill does), its database is dumped
//! there the way a backup dumps it (one snapshot, table streams, the manifest computed in that
//! snapshot) into a private directory, and that dump is restored into the target server by the
//! verified restore of any backup: staged where nothing sees it, compared with the manifest,
//! the erasure ledger replayed, released under its name. Nothing is released unless all of it
//! holds; the scratch cluster and the dump are removed in every case.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::pitr::{Destination, PitrPlan, PitrReport, PitrRequest};
use super::{Context, JobError};
use crate::config::{ServerSource, SourceKind};
use crate::engine::scratch::{RemoveOnDrop, RunAs, make_private_dir};
use crate::engine::{self, DumpOutput, EngineError, SnapshotFiles, StreamDump};
use crate::model::{Engine, Manifest, Phases};
use crate::repo::Repo;

/// What moving the recovered database into the target server did.
#[derive(Clone, Debug, Serialize)]
pub struct MovedInto {
    pub target: String,
    pub tables: usize,
    pub rows: u64,
    pub verification: crate::engine::Verification,
    pub erasure: Option<super::erasure::ReplayReport>,
    pub phases: Phases,
    pub warnings: Vec<String>,
}

/// A dump written into a private directory, read back by the verified restore.
struct DirFiles(PathBuf);

impl SnapshotFiles for DirFiles {
    fn copy_to(&self, name: &str, out: &mut dyn Write) -> Result<u64, String> {
        let path = self.0.join(name);
        let mut file =
            std::fs::File::open(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        std::io::copy(&mut file, out).map_err(|e| e.to_string())
    }
}

impl super::restore::DumpFiles for DirFiles {
    fn error(&self, e: EngineError) -> JobError {
        JobError::Engine(e)
    }
}

/// Reads every stream of a dump into `dir` (in order: the tools and the manifest keep
/// running meanwhile), then waits for the tools and the manifest.
async fn materialize(source: &str, dump: StreamDump, dir: &Path) -> Result<Manifest, JobError> {
    let StreamDump {
        streams,
        processes,
        groups,
        manifest,
        workdir,
        ..
    } = dump;
    let into = dir.to_path_buf();
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
        let mut total = 0;
        for stream in streams {
            let mut file = std::fs::File::create(into.join(&stream.name))?;
            let mut reader = stream.reader;
            total += std::io::copy(&mut reader, &mut file)?;
        }
        Ok(total)
    });
    let tools = tokio::spawn(super::backup::judge_tools(processes, groups.clone()));
    let manifest = manifest.await;
    let joined = |e: tokio::task::JoinError| JobError::Internal(format!("a dump task failed: {e}"));
    let written = written.await.map_err(joined)?;
    let failures = tools.await.map_err(joined)?;
    drop(workdir);
    if let Some(cause) = groups.cause() {
        return Err(JobError::Engine(EngineError::DumpFailed {
            source_name: source.to_string(),
            message: format!("dumping the recovered database: {cause}"),
        }));
    }
    if let Some(failure) = failures.into_iter().next() {
        return Err(JobError::Engine(EngineError::ToolFailed {
            source_name: source.to_string(),
            failure,
        }));
    }
    written.map_err(|e| JobError::io("writing the recovered database's dump", &e))?;
    manifest.map_err(JobError::Engine)
}

/// Recovers into a scratch data directory, dumps the recovered database and restores it,
/// verified, into `target_url`.
///
/// # Errors
/// When recovery, the dump or the verified restore fails; the target is then as it was.
#[allow(clippy::too_many_arguments)]
pub(super) async fn recover_into_server(
    ctx: &Context,
    req: &PitrRequest,
    repo: &Repo,
    plan: PitrPlan,
    wal: &[(String, String)],
    cfg: &ServerSource,
    role: &str,
    database: &str,
    run_id: &str,
) -> Result<PitrReport, JobError> {
    let target_url = req.target_url.clone().unwrap_or_default();
    if url::Url::parse(&target_url).is_ok_and(|u| u.password().is_some()) {
        return Err(JobError::Usage(
            "--target must not contain a password; use --target-password-file or --target-password-env".into(),
        ));
    }
    let restore = req.verified_restore(String::new(), target_url.clone());
    let destination = super::restore::destination(ctx, &restore, &req.source)?;
    // What the verified restore would refuse (a non-empty target, a role that cannot build
    // it) is refused now, not after the whole recovery.
    let postgres = engine::of(Engine::Postgres);
    let check = postgres
        .staging_plan(&destination, run_id)
        .map_err(super::restore::usage_or_engine)?;
    postgres
        .check_target(&check, false)
        .await
        .map_err(super::restore::usage_or_engine)?;
    let run_as =
        RunAs::resolve(ctx.config.drills.scratch_user.as_deref()).map_err(JobError::Usage)?;
    let dir = ctx.config.drill_dir("custodian-recovered-", run_id);
    make_private_dir(&dir, run_as)
        .map_err(|e| JobError::io(format!("creating {}", dir.display()), &e))?;
    let _remove = RemoveOnDrop(Some(dir.clone()));
    let dest = Destination {
        dir: &dir,
        role,
        database,
        run_id,
        run_as,
    };
    let recovery = super::pitr::recover_into(ctx, repo, &plan, wal, &dest).await?;

    // The recovered database, dumped as a backup dumps it (no restore point: nothing archives
    // this cluster).
    let mut phases = Phases::default();
    let t = Instant::now();
    let dump_dir = engine::private_workdir(&ctx.config.scratch_dir(), "pitr-dump-")?;
    let recovered = SourceKind::Postgres(ServerSource {
        url: recovery.server.url.clone(),
        password: None,
        archive: None,
        scratch: None,
        ..cfg.clone()
    });
    let dumped = postgres
        .dump(&req.source, &recovered, &ctx.config.scratch_dir())
        .await?;
    let DumpOutput::Streams(dump) = dumped else {
        return Err(JobError::Internal("a PostgreSQL dump is streamed".into()));
    };
    let manifest = materialize(&req.source, dump, dump_dir.path()).await?;
    phases.push("dump the recovered database", t);
    let stopped = recovery.stop().await?;

    let files = Arc::new(DirFiles(dump_dir.path().to_path_buf()));
    let built = super::restore::build_and_release(
        ctx,
        run_id,
        &restore,
        None,
        &manifest,
        destination,
        &files,
        &mut phases,
    )
    .await?;
    Ok(PitrReport {
        moved_into: Some(MovedInto {
            target: target_url,
            tables: manifest.tables.len(),
            rows: manifest.total_rows(),
            verification: built.verification,
            erasure: built.erasure,
            phases,
            warnings: built.warnings,
        }),
        ..PitrReport::recovered(run_id, plan, stopped)
    })
}
