//! `custodian backup`: dump each source, store the dump and its manifest as one snapshot in the
//! source's primary location, record it, then copy whatever the other locations lack.

use std::io::{Cursor, Read};
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::copy::{CopyReport, copy_source};
use super::{Context, JobError, blocking, lock};
use crate::catalog::{BackupRecord, RunEnd, RunKind};
use crate::config::SourceConfig;
use crate::engine::process::{DumpProcess, ProcessGroups};
use crate::engine::{self, Dump, DumpOutput, EngineError, StreamDump};
use crate::model::{Manifest, naming, time};
use crate::repo::{ArchiveEntry, ArchiveOutcome, ArchiveRequest, ReadEntry, Repo, SnapshotInfo};

/// What a backup of one source did.
#[derive(Clone, Debug, Serialize)]
pub struct BackupReport {
    pub source: String,
    pub engine: String,
    pub run_id: String,
    pub status: crate::model::status::RunStatus,
    pub location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotInfo>,
    pub tables: usize,
    pub rows: u64,
    /// Each file or stream stored, with its size and SHA-256.
    pub files: Vec<ReadEntry>,
    pub duration_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
    /// Pending snapshots of an earlier, interrupted backup that were removed first.
    pub discarded_pending: Vec<String>,
    pub copies: Vec<CopyReport>,
}

impl BackupReport {
    /// Whether the backup and all its copies succeeded.
    #[must_use]
    pub fn all_ok(&self) -> bool {
        self.status.is_success() && self.copies.iter().all(|c| c.status.is_success())
    }
}

struct Stored {
    snapshot: SnapshotInfo,
    /// What was read from each file or stream.
    files: Vec<ReadEntry>,
    manifest: Manifest,
    discarded: Vec<String>,
}

/// Backs up one source (or all), then copies to the other locations.
///
/// # Errors
/// For an unknown source name or a catalog failure; per-source failures are in the reports.
pub async fn backup(ctx: &Context, source: Option<&str>) -> Result<Vec<BackupReport>, JobError> {
    let mut reports = Vec::new();
    for source in ctx.select_sources(source)? {
        reports.push(backup_source(ctx, &source).await?);
    }
    Ok(reports)
}

async fn backup_source(ctx: &Context, source: &SourceConfig) -> Result<BackupReport, JobError> {
    let primary = source.primary().to_string();
    let run_id = ctx
        .start(RunKind::Backup, Some(&source.name), Some(&primary), None)
        .await?;
    let started = Instant::now();
    let span =
        tracing::info_span!("backup", run_id = %run_id, source = %source.name, location = %primary);
    // The last backup's size is the best guess of this one's (a dump's size is known only at
    // its end); the bar corrects itself when the sources say more.
    let estimate = match &source.kind {
        // A SQLite dump is a copy of the file: its size is the total.
        crate::config::SourceKind::Sqlite { path } => std::fs::metadata(path).ok().map(|m| m.len()),
        _ => None,
    };
    let estimate = match estimate {
        Some(size) => Some(size),
        None => ctx
            .catalog
            .last_backup_size(&source.name)
            .await
            .ok()
            .flatten(),
    };
    ctx.progress
        .phase(format!("backing up {}", source.name), estimate);
    let result = async {
        tracing::info!("backup started");
        let result = store(ctx, source, &run_id).await;
        ctx.progress.finish();
        match &result {
            Ok(stored) => tracing::info!(
                snapshot = %stored.snapshot.short_id(),
                bytes = stored.snapshot.bytes,
                added = stored.snapshot.added_stored,
                "backup committed"
            ),
            Err(err) => tracing::error!(
                error = %err,
                code = err.code(),
                "backup failed; no snapshot was committed"
            ),
        }
        result
    }
    .instrument(span)
    .await;
    let end = match &result {
        Ok(stored) => RunEnd {
            bytes_read: Some(stored.snapshot.bytes),
            bytes_added: Some(stored.snapshot.added_stored),
            snapshot_id: Some(stored.snapshot.id.clone()),
            details: Some(serde_json::json!({
                "tables": stored.manifest.tables.len(),
                "rows": stored.manifest.total_rows(),
                "added_raw": stored.snapshot.added_raw,
                "files": stored.files,
                "discarded_pending": stored.discarded,
            })),
            ..RunEnd::default()
        },
        Err(_) => RunEnd::default(),
    };
    ctx.finish(&run_id, &result, end).await;

    let mut report = BackupReport {
        source: source.name.clone(),
        engine: source.engine().to_string(),
        run_id,
        status: crate::model::status::RunStatus::Failed,
        location: primary,
        snapshot: None,
        tables: 0,
        rows: 0,
        files: Vec::new(),
        duration_seconds: started.elapsed().as_secs_f64(),
        error: None,
        error_code: None,
        discarded_pending: Vec::new(),
        copies: Vec::new(),
    };
    match result {
        Ok(stored) => {
            report.status = crate::model::status::RunStatus::Succeeded;
            report.tables = stored.manifest.tables.len();
            report.rows = stored.manifest.total_rows();
            report.files = stored.files;
            report.snapshot = Some(stored.snapshot);
            report.discarded_pending = stored.discarded;
            report.copies = copy_source(ctx, source).await?;
        }
        Err(err) => {
            report.error = Some(err.to_string());
            report.error_code = Some(err.code());
        }
    }
    Ok(report)
}

/// Dump → archive → catalog. Nothing is committed unless every step succeeds.
async fn store(ctx: &Context, source: &SourceConfig, run_id: &str) -> Result<Stored, JobError> {
    let _lock = lock::try_lock(
        &ctx.config.state_dir,
        &format!("source-{}", source.name),
        &format!("a backup of source {}", source.name),
    )?;
    let repo = ctx.repo(source.primary()).await?;
    let discarded = {
        let (repo, name) = (repo.clone(), source.name.clone());
        blocking(move || repo.discard_pending(&name)).await?
    };
    if !discarded.is_empty() {
        tracing::warn!(
            ?discarded,
            "removed pending snapshots left by an interrupted backup"
        );
    }

    let scratch = ctx.config.scratch_dir();
    let dumped = engine::of(source.engine())
        .dump(&source.name, &source.kind, &scratch)
        .await?;
    let (stored, manifest, manifest_json) = match dumped {
        DumpOutput::Files(dump) => store_files(ctx, source, &repo, *dump).await?,
        DumpOutput::Streams(dump) => store_streams(ctx, source, &repo, dump).await?,
    };
    let manifest_sha256 = format!("sha256:{}", hex::encode(Sha256::digest(&manifest_json)));
    ctx.catalog
        .record_backup(&BackupRecord {
            id: stored.snapshot.backup_id.clone(),
            source: source.name.clone(),
            engine: source.engine().to_string(),
            taken_at: time::format(manifest.taken_at),
            run_id: run_id.to_string(),
            size: stored.snapshot.bytes,
            manifest_json: String::from_utf8_lossy(&manifest_json).into_owned(),
            manifest_sha256,
            location: source.primary().to_string(),
        })
        .await?;
    Ok(Stored {
        snapshot: stored.snapshot,
        files: stored.entries,
        manifest,
        discarded,
    })
}

/// A file dump (SQLite): the manifest is ready before anything is stored.
async fn store_files(
    ctx: &Context,
    source: &SourceConfig,
    repo: &Repo,
    dump: Dump,
) -> Result<(ArchiveOutcome, Manifest, Vec<u8>), JobError> {
    let manifest = dump.manifest.clone();
    let manifest_json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| JobError::Internal(format!("serializing the manifest: {e}")))?;
    let manifest_sha256 = format!("sha256:{}", hex::encode(Sha256::digest(&manifest_json)));
    let request = ArchiveRequest {
        source: source.name.clone(),
        engine: source.engine().to_string(),
        hostname: ctx.config.hostname.clone(),
        time: manifest.taken_at,
        entries: {
            let mut e = entries(&dump, &manifest_json, &manifest_sha256);
            e.extend(ledger_entry(ctx, &source.name, manifest.taken_at).await?);
            e
        },
        // The bytes as they are read; rustic_core's own count arrives only per whole file.
        bars: None,
        on_read: Some(ctx.read_counter()),
    };
    let stored = {
        let repo = repo.clone();
        blocking(move || repo.archive(request)).await?
    };
    // The dump's private copy is removed here, once the repository holds it.
    drop(dump);
    Ok((stored, manifest, manifest_json))
}

/// A server dump: the tools' streams go straight into a pending snapshot while the manifest is
/// computed in the dump's snapshot; the backup is committed only if every tool exited with
/// status 0, every stream was read to its end and the manifest is complete.
async fn store_streams(
    ctx: &Context,
    source: &SourceConfig,
    repo: &Repo,
    dump: StreamDump,
) -> Result<(ArchiveOutcome, Manifest, Vec<u8>), JobError> {
    let StreamDump {
        streams,
        processes,
        groups,
        manifest: job,
        workdir,
        taken_at,
    } = dump;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<u8>, String>>(1);
    let manifest_task = tokio::spawn(async move {
        let result = job.await.and_then(|manifest| {
            serde_json::to_vec_pretty(&manifest)
                .map(|json| (manifest, json))
                .map_err(|e| EngineError::DumpFailed {
                    source_name: String::new(),
                    message: format!("serializing the manifest: {e}"),
                })
        });
        let _ = tx.send(match &result {
            Ok((_, json)) => Ok(json.clone()),
            Err(e) => Err(e.to_string()),
        });
        result
    });
    let mut entries: Vec<ArchiveEntry> = streams
        .into_iter()
        .map(|stream| {
            let reader = stream.reader;
            ArchiveEntry {
                name: stream.name,
                size: None,
                sha256: None,
                mtime: taken_at,
                cuts: None,
                open: Box::new(move || Ok(reader)),
            }
        })
        .collect();
    entries.push(ArchiveEntry {
        name: naming::MANIFEST_FILE.to_string(),
        size: None,
        sha256: None,
        mtime: taken_at,
        // Blocks one archiver thread until the manifest is computed; the streams keep flowing
        // on the others.
        cuts: None,
        open: Box::new(move || match rx.recv() {
            Ok(Ok(json)) => Ok(Box::new(Cursor::new(json)) as Box<dyn Read + Send>),
            Ok(Err(message)) => Err(std::io::Error::other(message)),
            Err(_) => Err(std::io::Error::other(
                "the manifest computation ended without a result",
            )),
        }),
    });
    entries.extend(ledger_entry(ctx, &source.name, taken_at).await?);
    let request = ArchiveRequest {
        source: source.name.clone(),
        engine: source.engine().to_string(),
        hostname: ctx.config.hostname.clone(),
        time: taken_at,
        entries,
        // The bytes as they are read; rustic_core's own count arrives only per whole file.
        bars: None,
        on_read: Some(ctx.read_counter()),
    };
    // The tools and the archiver run side by side; whichever ends first decides what happens to
    // the other: a failed tool abandons the manifest (so the archiver, waiting for it, stops), a
    // failed archive kills the tools (nobody reads their output any more).
    // Dropped unfinished (the job was cancelled), the guard kills every tool of the dump.
    let guard = KillGuard(Some(groups.clone()));
    let tools = tokio::spawn(judge_tools(processes, groups.clone()));
    let write = {
        let repo = repo.clone();
        tokio::task::spawn_blocking(move || repo.write_pending(request))
    };
    tokio::pin!(tools, write);
    let joined =
        |e: tokio::task::JoinError| JobError::Internal(format!("a backup task failed: {e}"));
    let (failures, written, write_failed_first) = tokio::select! {
        failures = &mut tools => {
            let failures = failures.map_err(joined)?;
            if !failures.is_empty() {
                manifest_task.abort();
            }
            (failures, write.await.map_err(joined)?, false)
        }
        written = &mut write => {
            let written = written.map_err(joined)?;
            let failed = written.is_err();
            if failed {
                groups.kill_all();
            }
            (tools.await.map_err(joined)?, written, failed)
        }
    };
    if written.is_err() || !failures.is_empty() {
        manifest_task.abort();
    }
    let manifest = match manifest_task.await {
        Ok(result) => result,
        Err(e) if e.is_cancelled() => Err(EngineError::DumpFailed {
            source_name: source.name.clone(),
            message: "the manifest was abandoned because the dump failed".into(),
        }),
        Err(e) => return Err(JobError::Internal(format!("the manifest task failed: {e}"))),
    };
    drop(workdir);
    guard.disarm();

    let pending = match (written, failures.into_iter().next(), manifest) {
        (Ok(pending), None, Ok(manifest)) => (pending, manifest),
        // A table stream failed first: the tools killed because of it are not the cause.
        (written, _, _) if groups.cause().is_some() => {
            if let Ok(pending) = written {
                let repo = repo.clone();
                blocking(move || repo.discard(pending)).await?;
            }
            return Err(JobError::Engine(EngineError::DumpFailed {
                source_name: source.name.clone(),
                message: groups.cause().unwrap_or_default(),
            }));
        }
        (written, failure, manifest) => {
            let tool_error = failure.map(|failure| {
                JobError::Engine(EngineError::ToolFailed {
                    source_name: source.name.clone(),
                    failure,
                })
            });
            return Err(match written {
                Err(e) if write_failed_first || tool_error.is_none() => e.into(),
                Err(_) => tool_error.unwrap_or_else(|| JobError::Internal("unreachable".into())),
                Ok(pending) => {
                    let repo = repo.clone();
                    blocking(move || repo.discard(pending)).await?;
                    match (tool_error, manifest) {
                        (Some(e), _) => e,
                        (None, Err(e)) => JobError::Engine(with_source(e, &source.name)),
                        (None, Ok(_)) => {
                            JobError::Internal("backup failed without a reason".into())
                        }
                    }
                }
            });
        }
    };
    let (pending, (manifest, json)) = pending;
    let repo = repo.clone();
    let entries = pending.entries.clone();
    let snapshot = blocking(move || repo.commit(pending)).await?;
    Ok((ArchiveOutcome { snapshot, entries }, manifest, json))
}

/// Kills a dump's tools when dropped armed: a cancelled backup leaves no tool running.
struct KillGuard(Option<ProcessGroups>);

impl KillGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        if let Some(groups) = self.0.take() {
            groups.kill_all();
        }
    }
}

/// Waits for every dump tool; as soon as one fails, the others are killed (they dump the same
/// snapshot, and one of them may be stuck behind a lock), and so is anything the failed one
/// started. Returns the failures, first one first.
pub(super) async fn judge_tools(
    processes: Vec<DumpProcess>,
    groups: ProcessGroups,
) -> Vec<crate::engine::process::ToolFailure> {
    let mut waiting = tokio::task::JoinSet::new();
    for process in processes {
        waiting.spawn_blocking(move || process.finish());
    }
    let mut failures = Vec::new();
    while let Some(done) = waiting.join_next().await {
        if let Ok(Err(failure)) = done {
            if failures.is_empty() {
                groups.kill_all();
            }
            failures.push(failure);
        }
    }
    failures
}

/// Fills in the source name of an error raised where it was not known.
fn with_source(e: EngineError, name: &str) -> EngineError {
    match e {
        EngineError::DumpFailed {
            source_name,
            message,
        } if source_name.is_empty() => EngineError::DumpFailed {
            source_name: name.to_string(),
            message,
        },
        other => other,
    }
}

/// The dump's files plus `manifest.json`, as archive entries.
fn entries(dump: &Dump, manifest_json: &[u8], manifest_sha256: &str) -> Vec<ArchiveEntry> {
    let mtime = dump.manifest.taken_at;
    let mut entries: Vec<ArchiveEntry> = dump
        .files
        .iter()
        .map(|file| {
            let path = file.path.clone();
            ArchiveEntry {
                name: file.name.clone(),
                size: Some(file.size),
                sha256: Some(file.sha256.clone()),
                mtime,
                cuts: None,
                open: Box::new(move || {
                    std::fs::File::open(&path).map(|f| Box::new(f) as Box<dyn Read + Send>)
                }),
            }
        })
        .collect();
    let json = manifest_json.to_vec();
    entries.push(ArchiveEntry {
        name: naming::MANIFEST_FILE.to_string(),
        size: Some(json.len() as u64),
        sha256: Some(manifest_sha256.to_string()),
        mtime,
        cuts: None,
        open: Box::new(move || Ok(Box::new(Cursor::new(json)) as Box<dyn Read + Send>)),
    });
    entries
}

/// The source's erasure ledger as a file of the snapshot (`erasure-ledger.json`), so the
/// ledger is backed up, copied and retained with the data it concerns. Only for sources with
/// erasure rules or recorded erasures.
async fn ledger_entry(
    ctx: &Context,
    source: &str,
    mtime: jiff::Timestamp,
) -> Result<Option<ArchiveEntry>, JobError> {
    let Some(json) = super::erasure::ledger_export(ctx, source).await? else {
        return Ok(None);
    };
    let sha256 = format!("sha256:{}", hex::encode(Sha256::digest(&json)));
    Ok(Some(ArchiveEntry {
        name: naming::ERASURE_LEDGER_FILE.to_string(),
        size: Some(json.len() as u64),
        sha256: Some(sha256),
        mtime,
        cuts: None,
        open: Box::new(move || Ok(Box::new(Cursor::new(json)) as Box<dyn Read + Send>)),
    }))
}
