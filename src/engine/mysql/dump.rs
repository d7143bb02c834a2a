//! MariaDB/MySQL dumps: `mariadb-dump --single-transaction` (or `mysqldump`) streamed straight
//! into the repository, with a manifest consistent with the dump.
//!
//! How the manifest is made consistent with the dump (MySQL cannot export a snapshot the way
//! PostgreSQL does): Custodian takes `FLUSH TABLES WITH READ LOCK` on one connection, so no
//! transaction can commit; opens its own `START TRANSACTION WITH CONSISTENT SNAPSHOT` on a
//! second connection; starts `mariadb-dump --single-transaction`, whose own consistent
//! snapshot is therefore taken on the same, frozen state; and releases the lock as soon as the
//! dump has produced its first bytes (it writes nothing before its transaction has started) —
//! typically well under a second of blocked writes, as with `mysqldump --master-data`. The
//! row counts and checksums are then computed in Custodian's transaction while the dump streams.
//! Like `--single-transaction` itself, this is exact for transactional (InnoDB) tables. The
//! database user needs `RELOAD` (for the lock) besides what the dump needs. Definitions (`SHOW
//! CREATE …`) come from the data dictionary, which is not versioned: like the dump's own, they
//! describe the schema as it is while the dump runs (DDL is blocked only while the lock is held).

use std::path::Path;
use std::time::Duration;

use sqlx::Connection;
use sqlx::mysql::MySqlConnection;
use tokio::sync::oneshot;

use super::objects;
use super::tables::{TablePlan, plan_tables, summarize_tables};
use super::{connect_settings, dump_name, tool, unavailable};
use crate::config::ServerSource;
use crate::engine::process::DumpProcess;
use crate::engine::{DumpStream, EngineError, FirstBytes, StreamDump, private_workdir};
use crate::model::{ChecksumMode, Engine, Manifest, ManifestFile, manifest, time};
use crate::secret::Secret;

/// How long the global read lock may wait for the dump to start.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// The locked moment: the lock connection, the snapshot transaction, and the signal that the
/// dump has started. Running it releases the lock and computes the manifest.
struct SnapshotSession {
    source: String,
    lock: MySqlConnection,
    conn: MySqlConnection,
    plans: Vec<TablePlan>,
    started: oneshot::Receiver<()>,
    database: String,
    version: String,
    tool: String,
    taken_at: jiff::Timestamp,
    files: Vec<String>,
}

impl SnapshotSession {
    /// Waits for the dump to start, releases the lock, then computes the manifest.
    ///
    /// # Errors
    /// When the dump does not start in time, or a query fails.
    async fn run(mut self) -> Result<Manifest, EngineError> {
        let waited = tokio::time::timeout(LOCK_WAIT, &mut self.started).await;
        let _ = sqlx::query("UNLOCK TABLES").execute(&mut self.lock).await;
        let _ = self.lock.close().await;
        if waited.is_err() {
            return Err(EngineError::DumpFailed {
                source_name: self.source,
                message: format!(
                    "{} produced nothing within {} s while writes were held; the manifest could not be tied to the dump",
                    self.tool,
                    LOCK_WAIT.as_secs()
                ),
            });
        }
        let failed = |e: sqlx::Error| EngineError::DumpFailed {
            source_name: self.source.clone(),
            message: format!("computing the manifest: {e}"),
        };
        let tables = summarize_tables(&mut self.conn, &self.plans)
            .await
            .map_err(failed)?;
        let objects = objects::describe(&mut self.conn).await.map_err(failed)?;
        let _ = sqlx::query("COMMIT").execute(&mut self.conn).await;
        let _ = self.conn.close().await;
        Ok(Manifest {
            format: manifest::MANIFEST_FORMAT,
            engine: Engine::Mysql,
            source: self.source,
            database: self.database,
            taken_at: self.taken_at,
            method: format!(
                "{} --single-transaction, read lock held until it started (server {})",
                self.tool, self.version
            ),
            files: self
                .files
                .into_iter()
                .map(|name| ManifestFile {
                    name,
                    size: None,
                    sha256: None,
                })
                .collect(),
            tables,
            objects: Some(objects),
            streams: Vec::new(),
            custodian_version: env!("CARGO_PKG_VERSION").to_string(),
        })
    }
}

/// Starts a consistent dump (see the module docs).
///
/// # Errors
/// When the server cannot be reached, the lock cannot be taken, or the tool cannot start.
pub(super) async fn start(
    source: &str,
    cfg: &ServerSource,
    scratch: &Path,
) -> Result<StreamDump, EngineError> {
    let connect = connect_settings(source, cfg)?;
    let fail = |e: sqlx::Error| unavailable(source, &connect, &e);
    let mut lock = connect.connect().await.map_err(fail)?;
    let mut conn = connect.connect().await.map_err(fail)?;
    let version: String = sqlx::query_scalar("SELECT CAST(VERSION() AS CHAR)")
        .fetch_one(&mut conn)
        .await
        .map_err(fail)?;
    let database = connect.database();
    sqlx::query("FLUSH TABLES WITH READ LOCK")
        .execute(&mut lock)
        .await
        .map_err(|e| EngineError::DumpFailed {
            source_name: source.to_string(),
            message: format!(
                "taking the global read lock that ties the manifest to the dump failed ({e}); \
                 grant the backup user RELOAD"
            ),
        })?;
    let snapshot = async {
        sqlx::query("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut conn)
            .await?;
        sqlx::query("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .execute(&mut conn)
            .await?;
        Ok::<_, sqlx::Error>(())
    }
    .await;
    if let Err(e) = snapshot {
        let _ = sqlx::query("UNLOCK TABLES").execute(&mut lock).await;
        return Err(fail(e));
    }
    let taken_at = time::now();
    let limit = cfg.checksum_limit;
    let overrides = cfg.checksum.clone();
    let mode_of = move |name: &str, size: u64| {
        overrides.get(name).copied().unwrap_or(if size > limit {
            ChecksumMode::Sampled
        } else {
            ChecksumMode::Full
        })
    };
    let plans = match plan_tables(&mut conn, &mode_of).await {
        Ok(plans) => plans,
        Err(e) => {
            let _ = sqlx::query("UNLOCK TABLES").execute(&mut lock).await;
            return Err(fail(e));
        }
    };

    let workdir = private_workdir(scratch, "mysql-")?;
    let tool = tool(&["mariadb-dump", "mysqldump"]);
    let spawned = (|| {
        let mut cmd = connect.command(tool, workdir.path())?;
        cmd.args([
            "--single-transaction",
            "--quick",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--no-tablespaces",
            "--default-character-set=utf8mb4",
            &database,
        ]);
        let secrets: Vec<&Secret> = connect.secret().into_iter().collect();
        DumpProcess::spawn(tool, cmd, &secrets)
    })();
    let mut process = match spawned {
        Ok(p) => p,
        Err(e) => {
            let _ = sqlx::query("UNLOCK TABLES").execute(&mut lock).await;
            return Err(EngineError::DumpFailed {
                source_name: source.to_string(),
                message: e.to_string(),
            });
        }
    };
    let (tx, started) = oneshot::channel();
    let stdout = process
        .take_stdout()
        .ok_or_else(|| EngineError::DumpFailed {
            source_name: source.to_string(),
            message: "the dump tool has no output".into(),
        })?;
    let name = dump_name(&database);
    let groups = crate::engine::process::ProcessGroups::default();
    let mut process = process;
    process.join(&groups).map_err(|e| EngineError::DumpFailed {
        source_name: source.to_string(),
        message: e.to_string(),
    })?;
    Ok(StreamDump {
        streams: vec![DumpStream {
            name: name.clone(),
            reader: Box::new(FirstBytes::new(stdout, tx)),
        }],
        processes: vec![process],
        groups,
        manifest: Box::pin(
            SnapshotSession {
                source: source.to_string(),
                lock,
                conn,
                plans,
                started,
                database,
                version,
                tool: tool.to_string(),
                taken_at,
                files: vec![name],
            }
            .run(),
        ),
        workdir,
        taken_at,
    })
}
