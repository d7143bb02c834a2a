//! `custodian base-backup`: a physical base backup of a PostgreSQL source for point-in-time
//! recovery. `pg_basebackup` streams one tar to stdout (its `backup_manifest` and the WAL that
//! makes it consistent inside), which goes straight into the source's primary repository as a
//! `custodian-base` snapshot — nothing of it is written to disk — with `info.json` beside it
//! (the WAL range `pg_basebackup` reported, and when it ran). The snapshot is committed only
//! when `pg_basebackup` succeeded and every byte it wrote was stored; then it is copied to the
//! source's other locations.

use std::io::{Cursor, Read};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use super::{Context, JobError, blocking, lock};
use crate::catalog::{RunEnd, RunKind};
use crate::config::{SourceConfig, SourceKind};
use crate::engine::EngineError;
use crate::engine::pitr::BaseInfo;
use crate::engine::postgres::{self, wal};
use crate::engine::process::DumpProcess;
use crate::model::naming::SnapshotKind;
use crate::repo::{ArchiveEntry, ArchiveRequest, Opener, SnapshotInfo};

/// The tar `pg_basebackup` wrote, and its description, inside a base snapshot.
pub const BASE_TAR: &str = "base.tar";
pub const BASE_INFO: &str = "info.json";

/// What a base backup of one source did.
#[derive(Clone, Debug, Serialize)]
pub struct BaseBackupReport {
    pub source: String,
    pub run_id: String,
    pub location: String,
    pub snapshot: SnapshotInfo,
    pub info: BaseInfo,
    pub bytes: u64,
    pub duration_seconds: f64,
    /// The other locations it was copied to.
    pub copied_to: Vec<String>,
}

/// Base-backs-up the selected PostgreSQL sources (all of them that have an archive, or the
/// one named).
///
/// # Errors
/// When a source is not PostgreSQL, or its base backup fails (nothing is kept then).
pub async fn base_backup(
    ctx: &Context,
    source: Option<&str>,
) -> Result<Vec<BaseBackupReport>, JobError> {
    let sources = match source {
        Some(_) => ctx.select_sources(source)?,
        None => super::wal::archived_sources(ctx, None)?,
    };
    let mut out = Vec::new();
    for s in sources {
        out.push(one(ctx, &s).await?);
    }
    Ok(out)
}

async fn one(ctx: &Context, source: &SourceConfig) -> Result<BaseBackupReport, JobError> {
    let SourceKind::Postgres(cfg) = &source.kind else {
        return Err(JobError::Usage(format!(
            "source {} is not a PostgreSQL source: base backups are PostgreSQL's",
            source.name
        )));
    };
    let primary = source.primary().to_string();
    let run_id = ctx
        .start(
            RunKind::BaseBackup,
            Some(&source.name),
            Some(&primary),
            None,
        )
        .await?;
    let started = Instant::now();
    let result = store(ctx, source, cfg, &primary).await;
    let end = match &result {
        Ok((snapshot, info, _)) => RunEnd {
            bytes_read: Some(snapshot.bytes),
            bytes_added: Some(snapshot.added_stored),
            snapshot_id: Some(snapshot.id.clone()),
            details: Some(serde_json::json!({ "base": info })),
            ..RunEnd::default()
        },
        Err(_) => RunEnd::default(),
    };
    ctx.finish(&run_id, &result, end).await;
    let (snapshot, info, copied_to) = result?;
    Ok(BaseBackupReport {
        source: source.name.clone(),
        run_id,
        location: primary,
        bytes: snapshot.bytes,
        snapshot,
        info,
        duration_seconds: started.elapsed().as_secs_f64(),
        copied_to,
    })
}

fn dump_failed(source: &str, message: impl std::fmt::Display) -> JobError {
    JobError::Engine(EngineError::DumpFailed {
        source_name: source.to_string(),
        message: message.to_string(),
    })
}

async fn store(
    ctx: &Context,
    source: &SourceConfig,
    cfg: &crate::config::ServerSource,
    primary: &str,
) -> Result<(SnapshotInfo, BaseInfo, Vec<String>), JobError> {
    let _lock = lock::try_lock(
        &ctx.config.state_dir,
        &format!("base-backup-{}", source.name),
        &format!("a base backup of source {}", source.name),
    )?;
    let repo = ctx.repo(primary).await?;
    let connect = postgres::connect_settings(&source.name, cfg)?;
    let identity = wal::server_identity(&connect).await?;
    let work = crate::engine::private_workdir(&ctx.config.scratch_dir(), "base-backup-")?;
    let cmd = wal::basebackup(&connect, work.path())
        .map_err(|e| dump_failed(&source.name, format!("preparing pg_basebackup: {e}")))?;
    let secrets = connect.secret_list();
    let mut process = DumpProcess::spawn("pg_basebackup", cmd, &secrets.iter().collect::<Vec<_>>())
        .map_err(|e| dump_failed(&source.name, e))?;
    let stdout = process
        .take_stdout()
        .ok_or_else(|| JobError::Internal("pg_basebackup has no stdout".into()))?;
    let began = crate::model::time::now();
    // `info.json` sorts after `base.tar`: it is opened once the tar was read to its end, and
    // opening it waits for pg_basebackup's exit and reads the WAL range it reported.
    let process = Arc::new(Mutex::new(Some(process)));
    let info: Arc<Mutex<Option<BaseInfo>>> = Arc::default();
    let tar_open: Opener = Box::new(move || Ok(Box::new(stdout) as Box<dyn Read + Send>));
    let info_open: Opener = {
        let (process, info) = (process.clone(), info.clone());
        Box::new(move || {
            let finished = process
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
                .ok_or_else(|| std::io::Error::other("pg_basebackup was already reaped"))?
                .finish()
                .map_err(|f| std::io::Error::other(f.to_string()))?;
            let described = wal::base_info(&finished, began, crate::model::time::now(), identity)
                .ok_or_else(|| {
                std::io::Error::other("pg_basebackup did not report its WAL range")
            })?;
            let json = serde_json::to_vec_pretty(&described).map_err(std::io::Error::other)?;
            *info
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(described);
            Ok(Box::new(Cursor::new(json)) as Box<dyn Read + Send>)
        })
    };
    let request = ArchiveRequest {
        source: source.name.clone(),
        engine: source.engine().to_string(),
        hostname: ctx.config.hostname.clone(),
        time: began,
        entries: vec![
            ArchiveEntry {
                name: BASE_TAR.into(),
                size: None,
                sha256: None,
                mtime: began,
                open: tar_open,
            },
            ArchiveEntry {
                name: BASE_INFO.into(),
                size: None,
                sha256: None,
                mtime: began,
                open: info_open,
            },
        ],
        bars: Some(ctx.bars()),
        on_read: Some(ctx.read_counter()),
    };
    ctx.progress
        .phase(format!("base backup of {}", source.name), None);
    let name = source.name.clone();
    let stored = {
        let repo = repo.clone();
        blocking(move || {
            repo.discard_pending_kind(&name, SnapshotKind::Base)?;
            repo.archive_kind(request, SnapshotKind::Base)
        })
        .await
    };
    ctx.progress.finish();
    // A failed archive leaves pg_basebackup to be killed here, never running on.
    if let Some(mut p) = process
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        p.kill();
    }
    let stored = stored?;
    let info = info
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
        .ok_or_else(|| dump_failed(&source.name, "pg_basebackup's WAL range is missing"))?;
    tracing::info!(source = %source.name, snapshot = %stored.snapshot.short_id(), start = %info.start_lsn, end = %info.end_lsn, "base backup committed");
    let mut copied_to = Vec::new();
    for other in source.locations.iter().skip(1) {
        let dst = ctx.repo(other).await?;
        let (src, wanted) = (repo.clone(), vec![stored.snapshot.clone()]);
        blocking(move || src.copy_to(&dst, &wanted, None)).await?;
        copied_to.push(other.clone());
    }
    Ok((stored.snapshot, info, copied_to))
}
