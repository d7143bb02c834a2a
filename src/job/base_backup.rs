//! `custodian base-backup`: a physical base backup of a PostgreSQL source for point-in-time
//! recovery. `pg_basebackup` streams one tar to stdout (with its `backup_manifest`), which goes
//! straight into the source's primary repository as a `custodian-base` snapshot — nothing of it
//! is written to disk — with `info.json` beside it (the WAL range `pg_basebackup` reported, and
//! when it ran). Its chunks end at every tar member (vendor patch 3), so the next base backup
//! stores again only the files that changed, as an incremental one would.
//!
//! The WAL that makes the backup consistent is the archive's (`-X none`, as pgBackRest does):
//! it is stored once, in the archive's fixed chunks, rather than a second time inside the tar
//! as the whole, recycled segment files `pg_wal` holds. So the snapshot is committed only when
//! `pg_basebackup` succeeded, every byte it wrote was stored, *and* the archive holds every
//! segment from the backup's start to its end. A standby switches no segment when a backup
//! ends (its last one may stay open for long), and without a running archiver nothing would
//! store the WAL: then it goes into the tar (`-X fetch`). Then the snapshot is copied to the
//! source's other locations.

use std::io::{Cursor, Read};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Context, JobError, blocking, lock};
use crate::catalog::{RunEnd, RunKind};
use crate::config::{SourceConfig, SourceKind};
use crate::engine::EngineError;
use crate::engine::pitr::BaseInfo;
use crate::engine::postgres::{self, wal};
use crate::engine::process::DumpProcess;
use crate::model::naming::SnapshotKind;
use crate::model::wal::{Segment, parse_lsn};
use crate::repo::{ArchiveEntry, ArchiveRequest, Cuts, Opener, Repo, SnapshotInfo};

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

/// Whether the source's archive is being fed: the server's `archive_command` always is (and
/// `pg_basebackup` waits for it at the end); a receiver is while its archiver (the daemon's,
/// or `archive run`) holds the archive's lock. A base backup taken while no archiver runs
/// carries its own WAL instead (`-X fetch`): it is consistent on its own, and never waits for
/// an archive that does not come.
fn archive_running(
    ctx: &Context,
    source: &SourceConfig,
    cfg: &crate::config::ServerSource,
) -> bool {
    let Some(archive) = &cfg.archive else {
        return false;
    };
    if archive.method == crate::config::ArchiveMethod::ArchiveCommand {
        return true;
    }
    let running = matches!(
        lock::try_lock(
            &ctx.config.state_dir,
            &super::wal::archiver_lock(&source.name),
            "a base backup's look at the archiver",
        ),
        Err(JobError::Busy(_))
    );
    if !running {
        tracing::info!(source = %source.name, "no archiver runs: this base backup carries its own WAL");
    }
    running
}

/// Waits until the archive holds every segment from the base backup's start to its end, each
/// complete (the server switched segments when the backup ended): what makes the backup
/// consistent. Fails, and so the backup is not kept, when the archive does not get them in
/// time.
fn wait_archived(
    repo: &Repo,
    source: &str,
    info: &BaseInfo,
    wait: Duration,
    state_dir: &std::path::Path,
) -> std::io::Result<()> {
    super::wal::request_flush(state_dir, source);
    let (first, _) = info.segments();
    // The end is where the backup's last record ends: on a segment boundary it is the
    // segment before that holds it.
    let end = parse_lsn(&info.end_lsn).unwrap_or(0).saturating_sub(1);
    let last = Segment::holding(info.timeline, end);
    let deadline = Instant::now() + wait;
    loop {
        let files = repo
            .log_files(source, SnapshotKind::Wal)
            .map_err(std::io::Error::other)?;
        let archived: std::collections::HashSet<&str> =
            files.iter().map(|f| f.name.as_str()).collect();
        let missing = (first.number..=last.number)
            .map(|number| {
                Segment {
                    timeline: info.timeline,
                    number,
                }
                .name()
            })
            .find(|name| !archived.contains(name.as_str()));
        let Some(missing) = missing else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(std::io::Error::other(format!(
                "the archive of source {source} did not store WAL segment {missing} within {} s, and the base backup is consistent only with the WAL from {} to {}: is its archiver running (the daemon, or `custodian archive run --source {source}`)? The base backup was not kept",
                wait.as_secs(),
                info.start_lsn,
                info.end_lsn
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
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
    let wal_in_tar = identity.in_recovery || !archive_running(ctx, source, cfg);
    // The archiver stores what it received within its flush interval; a minute more covers
    // a slow location.
    let archive_wait =
        cfg.archive.as_ref().map_or(Duration::ZERO, |a| a.flush) + Duration::from_secs(60);
    let work = crate::engine::private_workdir(&ctx.config.scratch_dir(), "base-backup-")?;
    let cmd = wal::basebackup(&connect, work.path(), wal_in_tar)
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
    let seen = Arc::new(wal::TarSeen::default());
    // Chunks end at every tar member: an unchanged file is stored as the same chunks whatever
    // changed beside it, so the next base backup adds about what changed, file by file.
    let cuts = Arc::new(Cuts::default());
    let tar_open: Opener = {
        let (seen, cuts) = (seen.clone(), cuts.clone());
        Box::new(move || {
            let tap = wal::ManifestTap::new(stdout, seen).on_member(move |at| cuts.push(at));
            Ok(Box::new(tap) as Box<dyn Read + Send>)
        })
    };
    let info_open: Opener = {
        let (process, info) = (process.clone(), info.clone());
        let (repo, name, seen) = (repo.clone(), source.name.clone(), seen.clone());
        let state_dir = ctx.config.state_dir.clone();
        Box::new(move || {
            let finished = process
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
                .ok_or_else(|| std::io::Error::other("pg_basebackup was already reaped"))?
                .finish()
                .map_err(|f| std::io::Error::other(f.to_string()))?;
            // rustic may read the tar's last bytes from the pipe after pg_basebackup exited;
            // they hold the manifest.
            let manifest = seen.manifest(Duration::from_secs(60)).ok_or_else(|| {
                std::io::Error::other("the base backup's tar was not read to its end")
            })?;
            let described = wal::base_info(
                &manifest,
                &finished,
                began,
                crate::model::time::now(),
                identity,
                wal_in_tar,
            )
            .ok_or_else(|| {
                std::io::Error::other(
                    "pg_basebackup reported no WAL range, in its manifest or its log",
                )
            })?;
            if !described.wal_in_tar {
                wait_archived(&repo, &name, &described, archive_wait, &state_dir)?;
            }
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
                cuts: Some(cuts),
                open: tar_open,
            },
            ArchiveEntry {
                name: BASE_INFO.into(),
                size: None,
                sha256: None,
                mtime: began,
                cuts: None,
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
