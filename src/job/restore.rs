//! `custodian restore`: disaster recovery, verified.
//!
//! * SQLite (`--to PATH`): the database is streamed into a private temporary file next to the
//!   target, verified against the snapshot's manifest (file hash, then row counts and content
//!   checksums of every table), and only then moved into place.
//! * PostgreSQL and MariaDB/MySQL (`--target URL`): the dump is streamed from the repository
//!   straight into `pg_restore` or the `mariadb` client; for PostgreSQL the schema's pre-data
//!   section goes first, the data streams in one transaction, and indexes and constraints are
//!   built by parallel workers (see [`restore_postgres`]). A target that already holds tables is
//!   refused unless `--force`. The restored database is then summarized and compared with the
//!   manifest.
//!
//! Every restore is a run in the catalog, whatever its outcome.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Context, JobError, Phases, blocking};
use crate::catalog::{RunEnd, RunKind};
use crate::model::{Manifest, TableSummary, human_bytes, naming};
use crate::repo::{Repo, RepoError, SnapshotInfo};
use crate::secret::SecretRef;
use crate::source::process::DumpProcess;
use crate::source::{SourceError, file_digest, mysql, postgres, private_workdir, sqlite};

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
    /// PostgreSQL: parallel workers for indexes and constraints (0: one per CPU, at least 2).
    pub jobs: u32,
    /// PostgreSQL: also apply the cluster globals (roles, tablespaces) first.
    pub with_globals: bool,
    /// Print progress on stderr.
    pub progress: bool,
}

/// How the restored data compares with the manifest.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    /// `verified` or `failed`.
    pub status: &'static str,
    /// SHA-256 of the restored file (SQLite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_sha256: Option<String>,
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
    pub engine: String,
    /// The file written, or the database URL restored into.
    pub target: String,
    pub bytes: u64,
    pub duration_seconds: f64,
    pub verification: Verification,
    /// The erasure ledger replayed (and proven) before the data was released.
    pub erasure: Option<super::erasure::ReplayReport>,
    /// Messages of tools that did not fail the restore (e.g. roles that already existed).
    pub warnings: Vec<String>,
}

/// Restores a backup, verified.
///
/// # Errors
/// [`JobError::Usage`] for a bad request (unknown names, existing target without `force`),
/// [`JobError::Verification`] when the restored data does not match its manifest, or the
/// underlying repository, source, catalog or I/O error.
pub async fn restore(ctx: &Context, req: &RestoreRequest) -> Result<RestoreReport, JobError> {
    let location = match (&req.location, &req.source) {
        (Some(l), _) => ctx.select_locations(Some(l))?.remove(0).name,
        (None, Some(s)) => ctx.select_sources(Some(s))?.remove(0).primary().to_string(),
        (None, None) => ctx.config.locations[0].name.clone(),
    };
    let target = match (&req.to, &req.target) {
        (Some(path), None) => {
            check_file_target(path, req.force)?;
            path.display().to_string()
        }
        (None, Some(url)) => url.clone(),
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
    let started = Instant::now();
    let result = async {
        let repo = ctx.repo(&location).await?;
        let snap = {
            let (repo, wanted, source) = (repo.clone(), req.snapshot.clone(), req.source.clone());
            blocking(move || repo.find_snapshot(&wanted, source.as_deref())).await?
        };
        let manifest = read_manifest(&repo, &snap).await?;
        let restored = match (snap.engine.as_deref(), &req.to, &req.target) {
            (Some("sqlite"), Some(path), None) => {
                restore_file(ctx, &run_id, &repo, &snap, &manifest, path).await?
            }
            (Some("postgres" | "mysql"), None, Some(url)) => {
                restore_server(ctx, &run_id, req, &repo, &snap, &manifest, url).await?
            }
            (engine, _, _) => {
                let engine = engine.unwrap_or("unknown");
                let how = if engine == "sqlite" {
                    "--to PATH"
                } else {
                    "--target URL"
                };
                return Err(JobError::Usage(format!(
                    "snapshot {} holds a {engine} backup; restore it with {how}",
                    snap.short_id()
                )));
            }
        };
        if restored.verification.status != "verified" {
            return Err(JobError::Verification(
                restored.verification.mismatches.join("; "),
            ));
        }
        Ok(RestoreReport {
            run_id: run_id.clone(),
            location: location.clone(),
            snapshot_id: snap.id.clone(),
            backup_id: snap.backup_id.clone(),
            source: snap.source.clone().unwrap_or_default(),
            engine: manifest.engine.to_string(),
            target: target.clone(),
            bytes: restored.bytes,
            duration_seconds: started.elapsed().as_secs_f64(),
            verification: restored.verification,
            erasure: restored.erasure,
            warnings: restored.warnings,
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
                "engine": r.engine,
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

struct Restored {
    bytes: u64,
    verification: Verification,
    erasure: Option<super::erasure::ReplayReport>,
    warnings: Vec<String>,
}

fn check_file_target(path: &Path, force: bool) -> Result<(), JobError> {
    if path.exists() && !force {
        return Err(JobError::Usage(format!(
            "{} already exists; choose another path or pass --force to replace it",
            path.display()
        )));
    }
    let dir = parent_dir(path);
    if !dir.is_dir() {
        return Err(JobError::Usage(format!(
            "directory {} does not exist; create it first",
            dir.display()
        )));
    }
    Ok(())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

async fn read_manifest(repo: &Repo, snap: &SnapshotInfo) -> Result<Manifest, JobError> {
    let source = snap.source.clone().unwrap_or_default();
    let (repo, id) = (repo.clone(), snap.id.clone());
    let path = naming::file_path(&source, naming::MANIFEST_FILE);
    let bytes = blocking(move || repo.read_file(&id, &path)).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| JobError::Verification(format!("the snapshot's manifest cannot be read: {e}")))
}

/// The database file (or dump) of a manifest: its first file.
fn main_file(manifest: &Manifest) -> Result<crate::model::ManifestFile, JobError> {
    manifest
        .files
        .first()
        .cloned()
        .ok_or_else(|| JobError::Verification("the snapshot's manifest lists no dump file".into()))
}

async fn restore_file(
    ctx: &Context,
    run_id: &str,
    repo: &Repo,
    snap: &SnapshotInfo,
    manifest: &Manifest,
    to: &Path,
) -> Result<Restored, JobError> {
    let file = main_file(manifest)?;
    let (tmp, bytes) = load_file(repo, snap, manifest, &parent_dir(to)).await?;
    let verification = verify_file(tmp.path(), manifest, file.sha256.as_deref()).await?;
    let mut erasure = None;
    if verification.status == "verified" {
        // The ledger is replayed into the private file; only a proven file takes its place
        // (a failed replay drops the temporary file: nothing is released).
        let replayed = super::erasure::replay(
            ctx,
            run_id,
            "restore",
            &manifest.source,
            Some(&snap.id),
            super::restored_db::Db::Sqlite(tmp.path()),
        )
        .await
        .map_err(|f| JobError::Erasure {
            code: f.code,
            reason: f.reason,
        })?;
        erasure = Some(replayed);
        tmp.persist(to).map_err(|e| {
            JobError::io(
                format!("moving the restored file to {}", to.display()),
                &e.error,
            )
        })?;
    }
    Ok(Restored {
        bytes,
        verification,
        erasure,
        warnings: Vec::new(),
    })
}

/// Streams the database file of a SQLite snapshot into a new private temporary file in `dir`.
pub(crate) async fn load_file(
    repo: &Repo,
    snap: &SnapshotInfo,
    manifest: &Manifest,
    dir: &Path,
) -> Result<(tempfile::NamedTempFile, u64), JobError> {
    let file = main_file(manifest)?;
    let tmp = tempfile::Builder::new()
        .prefix(".custodian-restore-")
        .tempfile_in(dir)
        .map_err(|e| {
            JobError::io(
                format!("creating a temporary file in {}", dir.display()),
                &e,
            )
        })?;
    let (repo, id) = (repo.clone(), snap.id.clone());
    let path = naming::file_path(&manifest.source, &file.name);
    blocking(move || {
        let location = repo.location().to_string();
        let mut writer = BufWriter::new(tmp.as_file());
        let bytes = repo.dump_file(&id, &path, &mut writer)?;
        writer
            .flush()
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| RepoError::Storage {
                location,
                operation: "writing the restored file",
                message: e.to_string(),
            })?;
        drop(writer);
        Ok((tmp, bytes))
    })
    .await
}

/// Compares a restored SQLite file with its manifest.
///
/// # Errors
/// When the file cannot be read.
pub async fn verify_file(
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
    Ok(verification(Some(sha256), tables, mismatches))
}

fn verification(
    file_sha256: Option<String>,
    tables: Vec<TableSummary>,
    mismatches: Vec<String>,
) -> Verification {
    Verification {
        status: if mismatches.is_empty() {
            "verified"
        } else {
            "failed"
        },
        file_sha256,
        tables,
        mismatches,
    }
}

/// Connection settings for a server target of the snapshot's engine.
pub(crate) enum Target {
    Postgres(postgres::Connect),
    Mysql(mysql::Connect),
}

impl Target {
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Postgres(c) => c.describe(),
            Self::Mysql(c) => c.describe(),
        }
    }
}

async fn restore_server(
    ctx: &Context,
    run_id: &str,
    req: &RestoreRequest,
    repo: &Repo,
    snap: &SnapshotInfo,
    manifest: &Manifest,
    url: &str,
) -> Result<Restored, JobError> {
    let source = manifest.source.clone();
    let password = match &req.target_password {
        Some(reference) => Some(reference.clone()),
        None => ctx.config.source(&source).and_then(|s| match &s.kind {
            crate::config::SourceKind::Postgres(c) | crate::config::SourceKind::Mysql(c) => {
                c.password.clone()
            }
            crate::config::SourceKind::Sqlite { .. } => None,
        }),
    };
    let password = password
        .map(|r| r.resolve())
        .transpose()
        .map_err(|e| JobError::io("reading the target's password", &e))?;
    let bad_url = |message: String| JobError::Usage(format!("--target {url}: {message}"));
    if url::Url::parse(url).is_ok_and(|u| u.password().is_some()) {
        return Err(JobError::Usage(
            "--target must not contain a password; use --target-password-file or --target-password-env".into(),
        ));
    }
    let target = match manifest.engine {
        crate::model::Engine::Postgres => {
            Target::Postgres(postgres::Connect::new(url, password).map_err(bad_url)?)
        }
        _ => Target::Mysql(mysql::Connect::new(url, password).map_err(bad_url)?),
    };
    let unreachable = |e: sqlx::Error| {
        JobError::Source(SourceError::Unavailable {
            source_name: source.clone(),
            path: PathBuf::from(target.describe()),
            message: format!("preparing the restore target: {e}"),
        })
    };
    let existing = match &target {
        Target::Postgres(c) => postgres::prepare_target(c).await,
        Target::Mysql(c) => mysql::prepare_target(c).await,
    }
    .map_err(unreachable)?;
    if existing > 0 && !req.force {
        return Err(JobError::Usage(format!(
            "target {} is not empty ({existing} tables or other relations); restore into an empty \
             database, or pass --force to replace its contents",
            target.describe()
        )));
    }

    let opts = ServerLoad {
        force: req.force,
        skip_ownership: false,
        fresh_cluster: false,
        jobs: req.jobs,
        with_globals: req.with_globals,
        progress: req.progress,
    };
    let mut phases = Phases::default();
    let (bytes, warnings) = load_server(
        repo,
        snap,
        manifest,
        &target,
        &opts,
        &ctx.config.scratch_dir(),
        &mut phases,
    )
    .await?;
    tracing::info!("restore: verifying against the manifest");
    let verification = verify_server(&target, manifest, bytes).await;
    let mut erasure = None;
    if verification.status == "verified" {
        tracing::info!("restore: replaying the erasure ledger");
        match super::erasure::replay(
            ctx,
            run_id,
            "restore",
            &manifest.source,
            Some(&snap.id),
            super::restored_db::Db::Server(&target),
        )
        .await
        {
            Ok(r) => erasure = Some(r),
            Err(f) => {
                // Not released: the restored tables are removed again.
                let withheld = super::erasure::withhold(&target, manifest).await;
                let tail = match withheld {
                    Ok(()) => " The restored tables were dropped from the target.".to_string(),
                    Err(e) => format!(
                        " Dropping the restored tables failed ({e}): do not use {}.",
                        target.describe()
                    ),
                };
                return Err(JobError::Erasure {
                    code: f.code,
                    reason: format!("{}{tail}", f.reason),
                });
            }
        }
    }
    Ok(Restored {
        bytes,
        verification,
        erasure,
        warnings,
    })
}

/// How a server restore is done.
pub(crate) struct ServerLoad {
    pub force: bool,
    /// PostgreSQL: leave ownership and grants out (`--no-owner --no-privileges`), for targets
    /// without the source's roles.
    pub skip_ownership: bool,
    /// PostgreSQL: the target is a fresh scratch cluster (`wal_level=minimal`): schema and
    /// data load in one transaction, which skips the WAL for the new tables.
    pub fresh_cluster: bool,
    pub jobs: u32,
    pub with_globals: bool,
    pub progress: bool,
}

/// Loads a snapshot's dump into a prepared server target; returns the bytes streamed and the
/// warnings of tools that did not fail. Each step is timed into `phases`.
pub(crate) async fn load_server(
    repo: &Repo,
    snap: &SnapshotInfo,
    manifest: &Manifest,
    target: &Target,
    opts: &ServerLoad,
    scratch_dir: &Path,
    phases: &mut Phases,
) -> Result<(u64, Vec<String>), JobError> {
    let source = manifest.source.clone();
    let workdir = private_workdir(scratch_dir, "restore-")?;
    let mut warnings = Vec::new();
    if opts.with_globals
        && let Target::Postgres(c) = target
    {
        let started = Instant::now();
        let command = postgres::globals_command(c, workdir.path())
            .map_err(|e| JobError::io("preparing psql", &e))?;
        let outcome = stream_into(
            repo,
            snap,
            &source,
            postgres::GLOBALS_NAME,
            "psql",
            command,
            c.secret_list(),
            false,
        )
        .await?;
        if !outcome.stderr.trim().is_empty() {
            warnings.push(format!("globals: {}", outcome.stderr.trim()));
        }
        phases.push("restore.globals", started);
    }
    let file = main_file(manifest)?;
    let bytes = match target {
        Target::Postgres(c) => {
            restore_postgres(repo, snap, manifest, c, workdir.path(), opts, phases).await?
        }
        Target::Mysql(c) => {
            let started = Instant::now();
            let command = mysql::restore_command(c, workdir.path())
                .map_err(|e| JobError::io("preparing the mariadb client", &e))?;
            let bytes = stream_into(
                repo,
                snap,
                &source,
                &file.name,
                "mariadb",
                command,
                c.secret_list(),
                opts.progress,
            )
            .await?
            .bytes;
            phases.push("restore.data", started);
            bytes
        }
    };
    drop(workdir);
    Ok((bytes, warnings))
}

/// Summarizes a restored server database and compares it with the manifest.
pub(crate) async fn verify_server(
    target: &Target,
    manifest: &Manifest,
    bytes: u64,
) -> Verification {
    let tables = match target {
        Target::Postgres(c) => postgres::summarize_target(c, manifest).await,
        Target::Mysql(c) => mysql::summarize_target(c, manifest).await,
    };
    let (tables, mut mismatches) = match tables {
        Ok(tables) => {
            let m = manifest
                .compare_tables(&tables)
                .iter()
                .map(ToString::to_string)
                .collect();
            (tables, m)
        }
        Err(e) => (
            Vec::new(),
            vec![format!("the restored database cannot be read: {e}")],
        ),
    };
    if bytes == 0 {
        mismatches.push("the dump in the snapshot is empty".into());
    }
    verification(None, tables, mismatches)
}

struct Streamed {
    bytes: u64,
    stderr: String,
}

/// Streams one file of a snapshot into a tool's stdin and judges the tool.
#[allow(clippy::too_many_arguments)]
async fn stream_into(
    repo: &Repo,
    snap: &SnapshotInfo,
    source: &str,
    name: &str,
    tool: &str,
    command: std::process::Command,
    secrets: Vec<crate::secret::Secret>,
    progress: bool,
) -> Result<Streamed, JobError> {
    let refs: Vec<&crate::secret::Secret> = secrets.iter().collect();
    let mut process = DumpProcess::spawn_consumer(tool, command, &refs).map_err(|e| {
        JobError::Source(SourceError::DumpFailed {
            source_name: source.to_string(),
            message: e.to_string(),
        })
    })?;
    let stdin = process
        .take_stdin()
        .ok_or_else(|| JobError::Internal(format!("{tool} has no stdin")))?;
    let (repo, id) = (repo.clone(), snap.id.clone());
    let path = naming::file_path(source, name);
    let label = name.to_string();
    let (written, write_failed, process) = tokio::task::spawn_blocking(move || {
        let meter = Meter::start(&label, progress);
        let write_failed = AtomicBool::new(false);
        let mut writer = BufWriter::with_capacity(
            1 << 20,
            Metered {
                inner: stdin,
                meter: &meter,
                failed: &write_failed,
            },
        );
        let result = repo.dump_file(&id, &path, &mut writer).and_then(|n| {
            writer.flush().map(|()| n).map_err(|e| RepoError::Storage {
                location: repo.location().to_string(),
                operation: "streaming into the restore tool",
                message: e.to_string(),
            })
        });
        drop(writer);
        meter.stop();
        (result, write_failed.into_inner(), process)
    })
    .await
    .map_err(|e| JobError::Internal(format!("the restore stream failed: {e}")))?;
    let finished = tokio::task::spawn_blocking(move || process.finish())
        .await
        .map_err(|e| JobError::Internal(format!("waiting for {tool}: {e}")))?;
    match (written, finished) {
        // The repository could not be read: that is the cause, whatever the tool made of the
        // truncated input.
        (Err(e), _) if !write_failed => Err(e.into()),
        (_, Err(failure)) => Err(JobError::Source(SourceError::ToolFailed {
            source_name: source.to_string(),
            failure,
        })),
        (Err(e), Ok(_)) => Err(e.into()),
        (Ok(bytes), Ok(stderr)) => Ok(Streamed { bytes, stderr }),
    }
}

/// A PostgreSQL restore. With the schema-only dump a backup carries, the work is split the way
/// `pg_restore --jobs` splits it: the schema's pre-data section first, then the data streamed
/// straight from the repository, then the post-data section — indexes and
/// constraints, most of a restore's time — with `jobs` parallel workers from a small private
/// copy of the schema (which holds no table data). Older backups are streamed whole.
async fn restore_postgres(
    repo: &Repo,
    snap: &SnapshotInfo,
    manifest: &Manifest,
    connect: &postgres::Connect,
    private_dir: &Path,
    req: &ServerLoad,
    phases: &mut Phases,
) -> Result<u64, JobError> {
    let source = &manifest.source;
    let dump = main_file(manifest)?.name;
    let schema = postgres::schema_name(&manifest.database);
    let step = |step: postgres::RestoreStep<'_>| {
        postgres::restore_command(connect, private_dir, req.force, req.skip_ownership, step)
            .map_err(|e| JobError::io("preparing pg_restore", &e))
    };
    // Replacing existing objects needs pg_restore's own ordering of DROPs (constraints before the
    // tables they reference), which only a whole-archive `--clean` has.
    if req.force || !manifest.files.iter().any(|f| f.name == schema) {
        let started = Instant::now();
        let command = step(postgres::RestoreStep::Whole)?;
        let bytes = stream_into(
            repo,
            snap,
            source,
            &dump,
            "pg_restore",
            command,
            connect.secret_list(),
            req.progress,
        )
        .await?
        .bytes;
        phases.push("restore.data", started);
        return Ok(bytes);
    }
    let started = Instant::now();
    let schema_file = private_dir.join("schema.dump");
    {
        let (repo, id) = (repo.clone(), snap.id.clone());
        let path = naming::file_path(source, &schema);
        let target = schema_file.clone();
        blocking(move || {
            use std::os::unix::fs::OpenOptionsExt;
            let location = repo.location().to_string();
            let io = |e: std::io::Error| RepoError::Storage {
                location: location.clone(),
                operation: "writing the schema for the restore",
                message: e.to_string(),
            };
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&target)
                .map_err(io)?;
            let mut writer = BufWriter::new(file);
            repo.dump_file(&id, &path, &mut writer)?;
            writer.flush().map_err(io)?;
            Ok(())
        })
        .await?;
    }
    let jobs = if req.jobs > 0 {
        req.jobs
    } else {
        std::thread::available_parallelism()
            .map_or(2, |n| u32::try_from(n.get()).unwrap_or(2).max(2))
    };
    let bytes = if req.fresh_cluster {
        let started = Instant::now();
        let both = step(postgres::RestoreStep::SchemaAndData)?;
        let bytes = stream_into(
            repo,
            snap,
            source,
            &dump,
            "pg_restore --section=pre-data --section=data",
            both,
            connect.secret_list(),
            req.progress,
        )
        .await?
        .bytes;
        tracing::info!(bytes, "restore: schema and data loaded");
        phases.push("restore.data", started);
        bytes
    } else {
        let pre = step(postgres::RestoreStep::Section {
            section: "pre-data",
            file: Some((&schema_file, 1)),
        })?;
        run_tool(
            source,
            "pg_restore --section=pre-data",
            pre,
            connect.secret_list(),
        )
        .await?;
        tracing::info!("restore: schema (pre-data) applied");
        phases.push("restore.pre-data", started);
        let started = Instant::now();
        let data = step(postgres::RestoreStep::Section {
            section: "data",
            file: None,
        })?;
        let bytes = stream_into(
            repo,
            snap,
            source,
            &dump,
            "pg_restore --section=data",
            data,
            connect.secret_list(),
            req.progress,
        )
        .await?
        .bytes;
        tracing::info!(bytes, "restore: data loaded");
        phases.push("restore.data", started);
        bytes
    };
    let started = Instant::now();
    let post = step(postgres::RestoreStep::Section {
        section: "post-data",
        file: Some((&schema_file, jobs)),
    })?;
    run_tool(
        source,
        "pg_restore --section=post-data",
        post,
        connect.secret_list(),
    )
    .await?;
    tracing::info!(jobs, "restore: indexes and constraints (post-data) built");
    phases.push("restore.post-data", started);
    Ok(bytes)
}

/// Runs a restore tool that reads its own input and judges its exit status.
async fn run_tool(
    source: &str,
    tool: &str,
    command: std::process::Command,
    secrets: Vec<crate::secret::Secret>,
) -> Result<String, JobError> {
    let refs: Vec<&crate::secret::Secret> = secrets.iter().collect();
    let mut process = DumpProcess::spawn_consumer(tool, command, &refs).map_err(|e| {
        JobError::Source(SourceError::DumpFailed {
            source_name: source.to_string(),
            message: e.to_string(),
        })
    })?;
    drop(process.take_stdin());
    tokio::task::spawn_blocking(move || process.finish())
        .await
        .map_err(|e| JobError::Internal(format!("waiting for {tool}: {e}")))?
        .map_err(|failure| {
            JobError::Source(SourceError::ToolFailed {
                source_name: source.to_string(),
                failure,
            })
        })
}

/// Counts bytes and, on a terminal, shows them once a second on stderr.
struct Meter {
    bytes: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Meter {
    fn start(label: &str, show: bool) -> Self {
        let bytes = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let thread = show.then(|| {
            let (bytes, done, label) = (bytes.clone(), done.clone(), label.to_string());
            std::thread::spawn(move || {
                let started = Instant::now();
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(500));
                    let n = bytes.load(Ordering::Relaxed);
                    let rate = n as f64 / started.elapsed().as_secs_f64().max(0.001);
                    eprint!(
                        "\r  restoring {label}: {} ({}/s)      ",
                        human_bytes(n),
                        human_bytes(rate as u64)
                    );
                }
                eprintln!();
            })
        });
        Self {
            bytes,
            done,
            thread,
        }
    }

    fn stop(&self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Metered<'a, W: Write> {
    inner: W,
    meter: &'a Meter,
    /// Set when the tool stopped reading (it failed, or was killed).
    failed: &'a AtomicBool,
}

impl<W: Write> Write for Metered<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self
            .inner
            .write(buf)
            .inspect_err(|_| self.failed.store(true, Ordering::Relaxed))?;
        self.meter.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner
            .flush()
            .inspect_err(|_| self.failed.store(true, Ordering::Relaxed))
    }
}
