//! SQLite: online consistent copies with `VACUUM INTO` (`dump`), the description of every
//! schema entry and header value (`objects`), and restores of the database file that are
//! written to a private temporary file beside the target, verified (file hash, every table's
//! rows and checksum, every schema entry), and only then renamed over the target.

mod dump;
pub mod objects;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};

pub use dump::{stored_name, summarize};

use super::scratch::{make_private_dir, remove_dir};
use super::{
    Database, DatabaseEngine, Destination, DumpOutput, EngineError, LoadOptions, Loaded,
    QueryError, Released, ScratchInstance, ScratchPlan, ScratchServer, Session, SnapshotFiles,
    Staging, StagingPlan, Verification, file_digest,
};
use crate::config::SourceKind;
use crate::model::{CompareScope, Engine, Manifest, Phases};

/// The SQLite engine.
pub struct Sqlite;

/// Compares a SQLite file with a manifest: its hash (when the manifest has one), then every
/// table and schema entry.
pub async fn verify_file(path: &Path, manifest: &Manifest, scope: CompareScope) -> Verification {
    let sha256 = match file_digest(path) {
        Ok((_, sha)) => sha,
        Err(e) => return Verification::unreadable(format!("cannot read {}: {e}", path.display())),
    };
    let described = async {
        let mut conn = dump::open(path, true).await?;
        let tables = dump::summarize_connection(&mut conn).await?;
        let objects = match manifest.objects {
            Some(_) => Some(objects::describe(&mut conn).await?),
            None => None,
        };
        conn.close().await.ok();
        Ok::<_, sqlx::Error>((tables, objects))
    }
    .await;
    let (tables, objects) = match described {
        Ok(d) => d,
        Err(e) => {
            return Verification::unreadable(format!(
                "the restored file is not a readable SQLite database: {e}"
            ));
        }
    };
    let mut comparison = manifest.compare(&tables, objects.as_ref(), scope);
    if let Some(expected) = manifest.files.first().and_then(|f| f.sha256.as_deref())
        && expected != sha256
    {
        comparison.mismatches.insert(
            0,
            format!("database file: content hash {sha256} differs from the manifest's {expected}"),
        );
    }
    let counts = objects
        .as_ref()
        .map(crate::model::Objects::counts)
        .unwrap_or_default();
    Verification::from_comparison(comparison, tables, counts, Some(sha256))
}

fn file_destination(destination: &Destination) -> Result<PathBuf, EngineError> {
    match destination {
        Destination::File(path) => Ok(path.clone()),
        Destination::Server { url, .. } => Err(EngineError::TargetRefused {
            target: url.clone(),
            message: "this is a SQLite backup; restore it with --to PATH".into(),
        }),
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A restore into a private file: a temporary file beside the target, or a scratch file.
struct FileStaging {
    /// Where the data is loaded and checked.
    file: PathBuf,
    /// The temporary file (removed when dropped unless persisted); `None` for a scratch file.
    temp: Option<tempfile::TempPath>,
    /// The file it becomes on release (`None`: a drill's).
    target: Option<PathBuf>,
}

impl Database for FileStaging {
    fn describe(&self) -> String {
        self.target.as_ref().map_or_else(
            || "private SQLite file".to_string(),
            |t| t.display().to_string(),
        )
    }

    fn verify<'a>(
        &'a self,
        manifest: &'a Manifest,
        scope: CompareScope,
    ) -> BoxFuture<'a, Verification> {
        Box::pin(verify_file(&self.file, manifest, scope))
    }

    fn session(&self, read_only: bool) -> BoxFuture<'_, Result<Box<dyn Session>, EngineError>> {
        Box::pin(open_session(&self.file, read_only))
    }
}

impl Staging for FileStaging {
    fn load<'a>(
        &'a mut self,
        files: Arc<dyn SnapshotFiles>,
        manifest: &'a Manifest,
        _opts: &'a LoadOptions,
        phases: &'a mut Phases,
    ) -> BoxFuture<'a, Result<Loaded, EngineError>> {
        Box::pin(async move {
            let started = Instant::now();
            let name = manifest
                .files
                .first()
                .map(|f| f.name.clone())
                .ok_or_else(|| EngineError::RestoreFailed {
                    target: self.describe(),
                    message: "the snapshot's manifest lists no database file".into(),
                })?;
            let file = self.file.clone();
            let bytes = tokio::task::spawn_blocking(move || {
                use std::io::Write;
                let out = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&file)
                    .map_err(|e| format!("opening {}: {e}", file.display()))?;
                let mut writer = std::io::BufWriter::new(&out);
                let n = files.copy_to(&name, &mut writer)?;
                writer
                    .flush()
                    .and_then(|()| out.sync_all())
                    .map_err(|e| format!("writing {}: {e}", file.display()))?;
                Ok::<_, String>(n)
            })
            .await
            .map_err(|e| EngineError::RestoreFailed {
                target: self.describe(),
                message: e.to_string(),
            })?
            .map_err(|message| EngineError::SnapshotRead { message })?;
            phases.push("restore.data", started);
            Ok(Loaded {
                bytes,
                warnings: Vec::new(),
            })
        })
    }

    fn release(self: Box<Self>, force: bool) -> BoxFuture<'static, Result<Released, EngineError>> {
        Box::pin(async move {
            let (Some(target), Some(temp)) = (self.target.clone(), self.temp) else {
                return Ok(Released::default());
            };
            let existed = target.exists();
            if existed && !force {
                return Err(EngineError::Promote {
                    target: target.display().to_string(),
                    message: "the file appeared while the restore ran; nothing was replaced (pass --force to replace it)".into(),
                });
            }
            temp.persist(&target).map_err(|e| EngineError::Promote {
                target: target.display().to_string(),
                message: e.error.to_string(),
            })?;
            if let Ok(dir) = std::fs::File::open(parent_dir(&target)) {
                let _ = dir.sync_all();
            }
            Ok(Released {
                replaced: existed,
                warnings: Vec::new(),
            })
        })
    }

    fn discard(self: Box<Self>) -> BoxFuture<'static, Result<(), EngineError>> {
        // Dropping the temporary path removes the file.
        Box::pin(async move {
            drop(self);
            Ok(())
        })
    }
}

/// A drill's private SQLite file.
struct ScratchFile {
    dir: PathBuf,
    file: PathBuf,
    torn_down: bool,
}

impl ScratchInstance for ScratchFile {
    fn staging(&self) -> Box<dyn Staging> {
        Box::new(FileStaging {
            file: self.file.clone(),
            temp: None,
            target: None,
        })
    }

    fn pid(&self) -> Option<u32> {
        None
    }

    fn describe(&self) -> String {
        "private SQLite file".into()
    }

    fn fresh_cluster(&self) -> bool {
        false
    }

    fn teardown(mut self: Box<Self>) -> BoxFuture<'static, Result<(), EngineError>> {
        self.torn_down = true;
        let dir = self.dir.clone();
        Box::pin(async move { remove_dir(&dir) })
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        if !self.torn_down {
            let _ = remove_dir(&self.dir);
        }
    }
}

struct SqliteSession(SqliteConnection);

async fn open_session(path: &Path, read_only: bool) -> Result<Box<dyn Session>, EngineError> {
    let options = SqliteConnectOptions::from_str("sqlite://")
        .map_err(|e| EngineError::query("opening the restored file", &e))?
        .filename(path)
        .read_only(read_only)
        .busy_timeout(Duration::from_secs(30))
        .disable_statement_logging();
    let conn = options
        .connect()
        .await
        .map_err(|e| EngineError::query(format!("opening {}", path.display()), &e))?;
    Ok(Box::new(SqliteSession(conn)))
}

fn failed(e: sqlx::Error) -> QueryError {
    QueryError::Failed(e.to_string())
}

/// `:subject` as a numbered parameter (bound once, however often it appears).
fn bind(sql: &str) -> (String, usize) {
    if sql.contains(":subject") {
        (sql.replace(":subject", "?1"), 1)
    } else {
        (sql.to_string(), 0)
    }
}

impl Session for SqliteSession {
    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
        subject: Option<&'a str>,
    ) -> BoxFuture<'a, Result<u64, QueryError>> {
        Box::pin(async move {
            let (sql, binds) = bind(sql);
            let mut q = sqlx::query(&sql);
            for _ in 0..binds {
                q = q.bind(subject.unwrap_or_default());
            }
            q.execute(&mut self.0)
                .await
                .map(|r| r.rows_affected())
                .map_err(failed)
        })
    }

    fn strings<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<Vec<String>, QueryError>> {
        Box::pin(async move {
            let rows = sqlx::query(sql)
                .fetch_all(&mut self.0)
                .await
                .map_err(failed)?;
            Ok(rows
                .iter()
                .filter_map(|r| r.try_get::<Option<String>, _>(0).ok().flatten())
                .collect())
        })
    }

    fn int<'a>(
        &'a mut self,
        sql: &'a str,
        subject: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<i64>, QueryError>> {
        Box::pin(async move {
            let (sql, binds) = match subject {
                Some(_) => bind(sql),
                None => (sql.to_string(), 0),
            };
            let mut q = sqlx::query(&sql);
            for _ in 0..binds {
                q = q.bind(subject.unwrap_or_default());
            }
            let row = q.fetch_optional(&mut self.0).await.map_err(failed)?;
            row.map(|r| r.try_get::<i64, _>(0).ok())
                .ok_or(QueryError::NoRow)
        })
    }

    fn begin(&mut self) -> BoxFuture<'_, Result<(), QueryError>> {
        Box::pin(async move {
            sqlx::query("BEGIN")
                .execute(&mut self.0)
                .await
                .map(|_| ())
                .map_err(failed)
        })
    }

    fn commit(&mut self) -> BoxFuture<'_, Result<(), QueryError>> {
        Box::pin(async move {
            sqlx::query("COMMIT")
                .execute(&mut self.0)
                .await
                .map(|_| ())
                .map_err(failed)
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = self.0.close().await;
        })
    }
}

/// An existing SQLite file, to compare with a backup.
struct Existing(PathBuf);

impl Database for Existing {
    fn describe(&self) -> String {
        self.0.display().to_string()
    }

    fn verify<'a>(
        &'a self,
        manifest: &'a Manifest,
        scope: CompareScope,
    ) -> BoxFuture<'a, Verification> {
        Box::pin(async move {
            let mut v = verify_file(&self.0, manifest, scope).await;
            // A live database is not the stored copy byte for byte; its content is what counts.
            if let Some(i) = v
                .mismatches
                .iter()
                .position(|m| m.starts_with("database file: content hash"))
            {
                v.mismatches.remove(i);
                v.not_verified.push(
                    "the file's bytes (a live database is not the stored copy byte for byte)"
                        .into(),
                );
                if v.mismatches.is_empty() {
                    v.status = super::VerificationStatus::Verified;
                }
            }
            v
        })
    }

    fn session(&self, read_only: bool) -> BoxFuture<'_, Result<Box<dyn Session>, EngineError>> {
        Box::pin(open_session(&self.0, read_only))
    }
}

impl DatabaseEngine for Sqlite {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    fn dump<'a>(
        &'a self,
        source: &'a str,
        kind: &'a SourceKind,
        scratch: &'a Path,
    ) -> BoxFuture<'a, Result<DumpOutput, EngineError>> {
        Box::pin(async move {
            let SourceKind::Sqlite { path } = kind else {
                return Err(EngineError::DumpFailed {
                    source_name: source.to_string(),
                    message: "not a SQLite source".into(),
                });
            };
            dump::dump(source, path, scratch)
                .await
                .map(|d| DumpOutput::Files(Box::new(d)))
        })
    }

    fn staging_plan(
        &self,
        destination: &Destination,
        id: &str,
    ) -> Result<StagingPlan, EngineError> {
        let path = file_destination(destination)?;
        Ok(StagingPlan {
            destination: destination.clone(),
            id: id.to_string(),
            name: parent_dir(&path)
                .join(format!(
                    ".custodian-restore-{}",
                    super::common::short_id(id)
                ))
                .display()
                .to_string(),
            server: None,
        })
    }

    fn stage<'a>(
        &'a self,
        plan: &'a StagingPlan,
        _manifest: &'a Manifest,
        force: bool,
        _scratch: &'a Path,
    ) -> BoxFuture<'a, Result<Box<dyn Staging>, EngineError>> {
        Box::pin(async move {
            let target = file_destination(&plan.destination)?;
            let refused = |message: String| EngineError::TargetRefused {
                target: target.display().to_string(),
                message,
            };
            if target.exists() && !force {
                return Err(refused(
                    "the file already exists; choose another path or pass --force to replace it once the restore is verified".into(),
                ));
            }
            let dir = parent_dir(&target);
            if !dir.is_dir() {
                return Err(refused(format!(
                    "directory {} does not exist; create it first",
                    dir.display()
                )));
            }
            let file = PathBuf::from(&plan.name);
            // Owner-only from the start: restored data is customer data.
            let created = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&file)
            };
            created.map_err(|e| {
                refused(format!(
                    "cannot create a temporary file in {}: {e}",
                    dir.display()
                ))
            })?;
            Ok(Box::new(FileStaging {
                temp: Some(tempfile::TempPath::try_from_path(&file).map_err(|e| {
                    refused(format!(
                        "cannot use a temporary file in {}: {e}",
                        dir.display()
                    ))
                })?),
                file,
                target: Some(target),
            }) as Box<dyn Staging>)
        })
    }

    fn remove_leftover<'a>(
        &'a self,
        _destination: &'a Destination,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            for name in names {
                match std::fs::remove_file(name) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(EngineError::ScratchRemove {
                            what: name.clone(),
                            message: e.to_string(),
                        });
                    }
                }
            }
            Ok(())
        })
    }

    fn open(&self, destination: &Destination) -> Result<Box<dyn Database>, EngineError> {
        Ok(Box::new(Existing(file_destination(destination)?)))
    }

    fn scratch<'a>(
        &'a self,
        plan: &'a ScratchPlan,
        run_as: Option<super::RunAs>,
    ) -> BoxFuture<'a, Result<Box<dyn ScratchInstance>, EngineError>> {
        Box::pin(async move {
            let dir = plan.dir.clone().unwrap_or_default();
            // A file read and written by Custodian itself: the directory stays ours.
            let _ = run_as;
            make_private_dir(&dir, None).map_err(|e| EngineError::ScratchCreate {
                engine: "SQLite",
                message: format!("creating {}: {e}", dir.display()),
            })?;
            Ok(Box::new(ScratchFile {
                file: dir.join("restored.db"),
                dir,
                torn_down: false,
            }) as Box<dyn ScratchInstance>)
        })
    }

    fn drop_scratch_database<'a>(
        &'a self,
        server: &'a ScratchServer,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move { Err(server.err("SQLite drills use no scratch server")) })
    }

    fn doctor<'a>(
        &'a self,
        source: &'a str,
        kind: &'a SourceKind,
    ) -> BoxFuture<'a, Vec<crate::model::Finding>> {
        use crate::model::{Finding, Verdict};
        Box::pin(async move {
            let SourceKind::Sqlite { path, .. } = kind else {
                return Vec::new();
            };
            match std::fs::File::open(path) {
                Ok(_) if is_wal(path) => vec![Finding::ok(
                    "source",
                    source,
                    format!(
                        "{} is in WAL mode: reading it needs write access to its directory (for its -wal and -shm files)",
                        path.display()
                    ),
                )],
                Ok(_) => vec![Finding::ok(
                    "source",
                    source,
                    format!("{} is readable", path.display()),
                )],
                Err(e) => vec![Finding::problem(
                    "source",
                    Verdict::Fail,
                    source,
                    format!("{} cannot be opened: {e}", path.display()),
                    "give the service's user read access to the file (and, in WAL mode, write access to its directory)",
                )],
            }
        })
    }
}

/// Whether a SQLite database file is in WAL mode (header bytes 18 and 19 are 2): reading it
/// then creates `-wal` and `-shm` files beside it, so its directory must be writable.
#[must_use]
pub fn is_wal(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok()
        && header.starts_with(b"SQLite format 3\0")
        && header[18] == 2
        && header[19] == 2
}
