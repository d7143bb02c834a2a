//! `custodian restore` of a SQLite backup into a file: stream the database out of the
//! repository into a private temporary file next to the target, verify it against the
//! snapshot's manifest (file hash, then row counts and content checksums of every table), and
//! only then move it into place. A restore that does not verify never replaces anything.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::{Context, JobError, blocking};
use crate::catalog::{RunEnd, RunKind};
use crate::model::{Manifest, TableSummary, naming};
use crate::source::{file_digest, sqlite};

/// What to restore, and where.
#[derive(Clone, Debug)]
pub struct RestoreRequest {
    /// Snapshot id (or prefix, or backup id), or `latest`.
    pub snapshot: String,
    pub to: PathBuf,
    pub location: Option<String>,
    pub source: Option<String>,
    /// Replace an existing target file.
    pub force: bool,
}

/// How the restored data compares with the manifest.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    /// `verified` or `failed`.
    pub status: &'static str,
    pub file_sha256: String,
    pub tables: Vec<TableSummary>,
    pub mismatches: Vec<String>,
}

/// A finished restore.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    pub run_id: String,
    pub location: String,
    pub snapshot_id: String,
    pub backup_id: String,
    pub source: String,
    pub target: PathBuf,
    pub bytes: u64,
    pub duration_seconds: f64,
    pub verification: Verification,
}

/// Restores a SQLite snapshot into a file, verified.
///
/// # Errors
/// [`JobError::Usage`] for a bad request (unknown names, existing target without `force`),
/// [`JobError::Verification`] when the restored data does not match its manifest, or the
/// underlying repository, catalog or I/O error.
pub async fn restore(ctx: &Context, req: &RestoreRequest) -> Result<RestoreReport, JobError> {
    let location = match (&req.location, &req.source) {
        (Some(l), _) => ctx.select_locations(Some(l))?.remove(0).name,
        (None, Some(s)) => ctx.select_sources(Some(s))?.remove(0).primary().to_string(),
        (None, None) => ctx.config.locations[0].name.clone(),
    };
    if req.to.exists() && !req.force {
        return Err(JobError::Usage(format!(
            "{} already exists; choose another path or pass --force to replace it",
            req.to.display()
        )));
    }
    let dir = match req.to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(JobError::Usage(format!(
            "directory {} does not exist; create it first",
            dir.display()
        )));
    }
    let target = req.to.display().to_string();
    let run_id = ctx
        .start(
            RunKind::Restore,
            req.source.as_deref(),
            Some(&location),
            Some(&target),
        )
        .await?;
    let started = Instant::now();
    let result = restore_verified(ctx, req, &location, &dir, &run_id, started).await;
    let end = match &result {
        Ok(r) => RunEnd {
            bytes_read: Some(r.bytes),
            snapshot_id: Some(r.snapshot_id.clone()),
            details: Some(serde_json::json!({
                "verification": r.verification.status,
                "tables": r.verification.tables.len(),
            })),
            ..RunEnd::default()
        },
        Err(_) => RunEnd::default(),
    };
    ctx.finish(&run_id, &result, end).await;
    result
}

async fn restore_verified(
    ctx: &Context,
    req: &RestoreRequest,
    location: &str,
    dir: &Path,
    run_id: &str,
    started: Instant,
) -> Result<RestoreReport, JobError> {
    let repo = ctx.repo(location).await?;
    let snap = {
        let (repo, wanted, source) = (repo.clone(), req.snapshot.clone(), req.source.clone());
        blocking(move || repo.find_snapshot(&wanted, source.as_deref())).await?
    };
    let source = snap.source.clone().unwrap_or_default();
    if snap.engine.as_deref() != Some("sqlite") {
        return Err(JobError::Usage(format!(
            "snapshot {} holds a {} backup; `restore --to PATH` restores SQLite sources into a file",
            snap.short_id(),
            snap.engine.as_deref().unwrap_or("non-Custodian")
        )));
    }
    let manifest: Manifest = {
        let (repo, id) = (repo.clone(), snap.id.clone());
        let path = naming::file_path(&source, naming::MANIFEST_FILE);
        let bytes = blocking(move || repo.read_file(&id, &path)).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            JobError::Verification(format!("the snapshot's manifest cannot be read: {e}"))
        })?
    };
    let file = manifest.files.first().cloned().ok_or_else(|| {
        JobError::Verification("the snapshot's manifest lists no database file".into())
    })?;

    let tmp = tempfile::Builder::new()
        .prefix(".custodian-restore-")
        .tempfile_in(dir)
        .map_err(|e| {
            JobError::io(
                format!("creating a temporary file in {}", dir.display()),
                &e,
            )
        })?;
    let (tmp, bytes) = {
        let (repo, id) = (repo.clone(), snap.id.clone());
        let path = naming::file_path(&source, &file.name);
        let location = location.to_string();
        blocking(move || {
            let mut writer = BufWriter::new(tmp.as_file());
            let bytes = repo.dump_file(&id, &path, &mut writer)?;
            writer
                .flush()
                .and_then(|()| tmp.as_file().sync_all())
                .map_err(|e| crate::repo::RepoError::Storage {
                    location,
                    operation: "writing the restored file",
                    message: e.to_string(),
                })?;
            drop(writer);
            Ok((tmp, bytes))
        })
        .await?
    };

    let verification = verify(tmp.path(), &manifest, file.sha256.as_deref()).await?;
    if verification.status != "verified" {
        return Err(JobError::Verification(verification.mismatches.join("; ")));
    }
    tmp.persist(&req.to).map_err(|e| {
        JobError::io(
            format!("moving the restored file to {}", req.to.display()),
            &e.error,
        )
    })?;
    tracing::info!(run_id, snapshot = %snap.short_id(), target = %req.to.display(), "restore verified and in place");
    Ok(RestoreReport {
        run_id: run_id.to_string(),
        location: location.to_string(),
        snapshot_id: snap.id.clone(),
        backup_id: snap.backup_id.clone(),
        source,
        target: req.to.clone(),
        bytes,
        duration_seconds: started.elapsed().as_secs_f64(),
        verification,
    })
}

/// Compares a restored SQLite file with its manifest.
///
/// # Errors
/// When the file cannot be read.
pub async fn verify(
    path: &Path,
    manifest: &Manifest,
    expected_sha256: Option<&str>,
) -> Result<Verification, JobError> {
    let (_, sha256) =
        file_digest(path).map_err(|e| JobError::io(format!("reading {}", path.display()), &e))?;
    let mut mismatches = Vec::new();
    if let Some(expected) = expected_sha256
        && expected != sha256
    {
        mismatches.push(format!(
            "database file: content hash {sha256} differs from the manifest's {expected}"
        ));
    }
    let tables = match sqlite::summarize(path).await {
        Ok(tables) => {
            mismatches.extend(
                manifest
                    .compare_tables(&tables)
                    .iter()
                    .map(ToString::to_string),
            );
            tables
        }
        Err(e) => {
            mismatches.push(format!(
                "the restored file is not a readable SQLite database: {e}"
            ));
            Vec::new()
        }
    };
    Ok(Verification {
        status: if mismatches.is_empty() {
            "verified"
        } else {
            "failed"
        },
        file_sha256: sha256,
        tables,
        mismatches,
    })
}
