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
use crate::config::{SourceConfig, SourceKind};
use crate::model::{Manifest, naming, time};
use crate::repo::{ArchiveEntry, ArchiveRequest, SnapshotInfo};
use crate::source::{Dump, sqlite};

/// What a backup of one source did.
#[derive(Clone, Debug, Serialize)]
pub struct BackupReport {
    pub source: String,
    pub engine: String,
    pub run_id: String,
    /// `succeeded` or `failed`.
    pub status: &'static str,
    pub location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotInfo>,
    pub tables: usize,
    pub rows: u64,
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
        self.status == "succeeded" && self.copies.iter().all(|c| c.status == "succeeded")
    }
}

struct Stored {
    snapshot: SnapshotInfo,
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
    let result = async {
        tracing::info!("backup started");
        let result = store(ctx, source, &run_id).await;
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
        status: "failed",
        location: primary,
        snapshot: None,
        tables: 0,
        rows: 0,
        duration_seconds: started.elapsed().as_secs_f64(),
        error: None,
        error_code: None,
        discarded_pending: Vec::new(),
        copies: Vec::new(),
    };
    match result {
        Ok(stored) => {
            report.status = "succeeded";
            report.tables = stored.manifest.tables.len();
            report.rows = stored.manifest.total_rows();
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

    let dump = match &source.kind {
        SourceKind::Sqlite { path } => {
            sqlite::dump(&source.name, path, &ctx.config.scratch_dir()).await?
        }
    };
    let manifest = dump.manifest.clone();
    let manifest_json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| JobError::Internal(format!("serializing the manifest: {e}")))?;
    let manifest_sha256 = format!("sha256:{}", hex::encode(Sha256::digest(&manifest_json)));
    let request = ArchiveRequest {
        source: source.name.clone(),
        engine: source.engine().to_string(),
        hostname: ctx.config.hostname.clone(),
        time: manifest.taken_at,
        entries: entries(&dump, &manifest_json, &manifest_sha256),
    };
    let stored = {
        let repo = repo.clone();
        blocking(move || repo.archive(request)).await?
    };
    // The dump's private copy is removed here, once the repository holds it.
    drop(dump);

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
        manifest,
        discarded,
    })
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
                size: file.size,
                sha256: Some(file.sha256.clone()),
                mtime,
                open: Box::new(move || {
                    std::fs::File::open(&path).map(|f| Box::new(f) as Box<dyn Read + Send>)
                }),
            }
        })
        .collect();
    let json = manifest_json.to_vec();
    entries.push(ArchiveEntry {
        name: naming::MANIFEST_FILE.to_string(),
        size: json.len() as u64,
        sha256: Some(manifest_sha256.to_string()),
        mtime,
        open: Box::new(move || Ok(Box::new(Cursor::new(json)) as Box<dyn Read + Send>)),
    });
    entries
}
