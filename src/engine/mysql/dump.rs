//! MariaDB/MySQL dumps streamed straight into the repository, with a manifest consistent with
//! the dump: each table's rows as a stream of its own (`streams`: `SELECT` in primary-key
//! order, several at a time, on connections that share the dump's snapshot), `mariadb-dump`
//! for everything else (tables' definitions, views, routines, events, sequences) and, apart,
//! for the triggers (a restore creates them after the rows are in, so that loading fires none).
//! With `mysqldump`, which cannot leave some tables' rows out, everything is in the one dump.
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
use std::sync::Arc;
use std::time::Duration;

use sqlx::mysql::MySqlConnection;
use sqlx::{Connection, Executor};
use tokio::sync::oneshot;

use super::objects;
use super::streams::{self, SnapshotPool};
use super::tables::{TablePlan, plan_tables, summarize_tables};
use super::{Connect, connect_settings, dump_name, tool, unavailable};
use crate::config::ServerSource;
use crate::engine::common::{manifest_unless_stopped, stream_digest};
use crate::engine::process::{DumpProcess, ProcessGroups};
use crate::engine::rows::{DigestReader, Finished};
use crate::engine::{DumpStream, EngineError, FirstBytes, StreamDump, private_workdir};
use crate::model::{
    ChecksumMode, Engine, Manifest, ManifestFile, TableStream, TableSummary, manifest, time,
};
use crate::secret::Secret;

/// How long the global read lock may wait for the dump to start.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// A table whose rows are being streamed, and where its digest will arrive.
struct Streamed {
    plan: TablePlan,
    file: String,
    digest: oneshot::Receiver<Finished>,
}

/// The locked moment: the lock connection, the snapshot transaction, and the signals that the
/// dumps have started. Running it releases the lock and computes the manifest.
struct SnapshotSession {
    source: String,
    lock: MySqlConnection,
    conn: MySqlConnection,
    /// Tables summarized here (a `mysqldump` dump); streamed tables are digested as they pass.
    plans: Vec<TablePlan>,
    streamed: Vec<Streamed>,
    pool: Option<(Arc<SnapshotPool>, usize)>,
    started: Vec<oneshot::Receiver<()>>,
    database: String,
    version: String,
    tool: String,
    taken_at: jiff::Timestamp,
    binlog: Option<crate::model::manifest::BinlogPosition>,
    files: Vec<String>,
    groups: ProcessGroups,
}

impl SnapshotSession {
    /// Computes the manifest, unless a tool or stream of the dump fails first.
    async fn run(self) -> Result<Manifest, EngineError> {
        let groups = self.groups.clone();
        let source = self.source.clone();
        manifest_unless_stopped(&source, &groups, self.summarize()).await
    }

    /// Waits for the dumps to start, releases the lock, then computes the manifest.
    ///
    /// # Errors
    /// When the dump does not start in time, or a query fails.
    async fn summarize(mut self) -> Result<Manifest, EngineError> {
        let started = std::mem::take(&mut self.started);
        let waited = tokio::time::timeout(LOCK_WAIT, futures_util::future::join_all(started)).await;
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
        let mut tables = summarize_tables(&mut self.conn, &self.plans)
            .await
            .map_err(failed)?;
        let objects = objects::describe(&mut self.conn).await.map_err(failed)?;
        let mut table_streams = Vec::with_capacity(self.streamed.len());
        for streamed in std::mem::take(&mut self.streamed) {
            let done = stream_digest(&self.source, &streamed.plan.name, streamed.digest).await?;
            let counted = streamed.plan.mode == ChecksumMode::Count;
            tables.push(TableSummary {
                name: streamed.plan.name.clone(),
                rows: done.rows,
                mode: streamed.plan.mode,
                checksum: (!counted).then_some(done.checksum),
            });
            table_streams.push(TableStream {
                table: streamed.plan.name.clone(),
                schema: self.database.clone(),
                name: streamed.plan.name,
                file: streamed.file,
                columns: streamed.plan.stored,
                order: streamed.plan.pk,
                bytes: done.bytes,
                part: None,
            });
        }
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        table_streams.sort_by(|a, b| a.table.cmp(&b.table));
        if let Some((pool, n)) = self.pool.take() {
            pool.close(n).await;
        }
        let _ = sqlx::query("COMMIT").execute(&mut self.conn).await;
        let _ = self.conn.close().await;
        let method = if table_streams.is_empty() {
            format!(
                "{} --single-transaction, read lock held until it started (server {})",
                self.tool, self.version
            )
        } else {
            format!(
                "SELECT per table in key order + {} --single-transaction, snapshots taken under a read lock (server {})",
                self.tool, self.version
            )
        };
        Ok(Manifest {
            format: manifest::MANIFEST_FORMAT,
            engine: Engine::Mysql,
            source: self.source,
            database: self.database,
            taken_at: self.taken_at,
            method,
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
            streams: table_streams,
            binlog: self.binlog,
            restore_point: None,
            custodian_version: env!("CARGO_PKG_VERSION").to_string(),
        })
    }
}

/// Name of the triggers-only dump inside the snapshot.
#[must_use]
pub fn triggers_name(database: &str) -> String {
    format!("{database}.triggers.sql")
}

/// Opens `n` connections whose transactions will read the dump's snapshot (started while the
/// read lock is held).
async fn snapshot_connections(
    connect: &Connect,
    n: usize,
) -> Result<Vec<MySqlConnection>, sqlx::Error> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(connect.connect().await?);
    }
    Ok(out)
}

async fn start_snapshot(conn: &mut MySqlConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *conn)
        .await?;
    sqlx::query("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .execute(&mut *conn)
        .await?;
    Ok(())
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
    let tool = tool(&["mariadb-dump", "mysqldump"]);
    // Only mariadb-dump can leave some tables' rows out (`--ignore-table-data`).
    let streaming = tool == "mariadb-dump";
    let mut lock = connect.connect().await.map_err(fail)?;
    let mut conn = connect.connect().await.map_err(fail)?;
    let mut stream_conns = if streaming {
        snapshot_connections(&connect, cfg.streams())
            .await
            .map_err(fail)?
    } else {
        Vec::new()
    };
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
        start_snapshot(&mut conn).await?;
        for stream_conn in &mut stream_conns {
            start_snapshot(stream_conn).await?;
            (&mut *stream_conn).execute(streams::SETTINGS).await?;
            (&mut *stream_conn)
                .execute(streams::unlimited_statements(&version))
                .await?;
        }
        Ok::<_, sqlx::Error>(())
    }
    .await;
    if let Err(e) = snapshot {
        let _ = sqlx::query("UNLOCK TABLES").execute(&mut lock).await;
        return Err(fail(e));
    }
    let taken_at = time::now();
    // Under the read lock nothing commits: this is exactly where the snapshot stands in the
    // binary log (absent when the server keeps none), where a point-in-time replay starts.
    let binlog = super::binlog::position(&mut lock).await.ok().flatten();
    let limit = cfg.checksum_limit;
    let overrides = cfg.checksum.clone();
    let mode_of = move |name: &str, size: u64| {
        overrides.get(name).copied().unwrap_or(if size > limit {
            ChecksumMode::Sampled
        } else {
            ChecksumMode::Full
        })
    };
    let mut plans = match plan_tables(&mut conn, &mode_of).await {
        Ok(plans) => plans,
        Err(e) => {
            let _ = sqlx::query("UNLOCK TABLES").execute(&mut lock).await;
            return Err(fail(e));
        }
    };
    if streaming {
        // Every table gets a stream; its digest covers every row at no extra cost, so only an
        // explicit `count` keeps a table to its row count.
        for plan in &mut plans {
            if plan.mode != ChecksumMode::Count {
                plan.mode = ChecksumMode::Rows;
            }
        }
        // Largest first: the archiver starts the longest streams first.
        plans.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
    }

    let unlock_on_error = async |lock: &mut MySqlConnection, e: std::io::Error| {
        let _ = sqlx::query("UNLOCK TABLES").execute(lock).await;
        EngineError::DumpFailed {
            source_name: source.to_string(),
            message: e.to_string(),
        }
    };
    let workdir = private_workdir(scratch, "mysql-")?;
    let secrets: Vec<&Secret> = connect.secret().into_iter().collect();
    let dump_command = |extra: &[String]| {
        let mut cmd = connect.command(tool, workdir.path())?;
        cmd.args([
            "--single-transaction",
            "--quick",
            "--hex-blob",
            "--no-tablespaces",
            "--default-character-set=utf8mb4",
        ]);
        cmd.args(extra);
        cmd.arg(&database);
        Ok::<_, std::io::Error>(cmd)
    };
    let mut main_args: Vec<String> = ["--routines", "--events"]
        .into_iter()
        .map(String::from)
        .collect();
    if streaming {
        main_args.push("--skip-triggers".into());
        for plan in &plans {
            main_args.push(format!("--ignore-table-data={database}.{}", plan.name));
        }
    } else {
        main_args.push("--triggers".into());
    }
    let mut spawned = Vec::new();
    let main = dump_command(&main_args).and_then(|cmd| DumpProcess::spawn(tool, cmd, &secrets));
    match main {
        Ok(p) => spawned.push((dump_name(&database), p)),
        Err(e) => return Err(unlock_on_error(&mut lock, e).await),
    }
    if streaming {
        let args: Vec<String> = [
            "--no-create-info",
            "--no-data",
            "--triggers",
            "--skip-routines",
            "--skip-events",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let triggers = dump_command(&args)
            .and_then(|cmd| DumpProcess::spawn(&format!("{tool} (triggers)"), cmd, &secrets));
        match triggers {
            Ok(p) => spawned.push((triggers_name(&database), p)),
            Err(e) => return Err(unlock_on_error(&mut lock, e).await),
        }
    }
    let groups = ProcessGroups::default();
    let mut streams = Vec::new();
    let mut processes = Vec::new();
    let mut started = Vec::new();
    for (name, mut process) in spawned {
        let Some(stdout) = process.take_stdout() else {
            let e = std::io::Error::other("the dump tool has no output");
            return Err(unlock_on_error(&mut lock, e).await);
        };
        if let Err(e) = process.join(&groups) {
            return Err(unlock_on_error(&mut lock, e).await);
        }
        let (tx, rx) = oneshot::channel();
        started.push(rx);
        streams.push(DumpStream {
            name,
            reader: Box::new(FirstBytes::new(stdout, tx)),
        });
        processes.push(process);
    }

    let n_conns = stream_conns.len();
    let pool = SnapshotPool::new(stream_conns);
    let runtime = tokio::runtime::Handle::current();
    let mut streamed = Vec::new();
    let mut summarized = Vec::new();
    for (rank, plan) in plans.into_iter().enumerate() {
        if !streaming {
            summarized.push(plan);
            continue;
        }
        let file = streams::file_name(rank + 1, &plan.name);
        let (tx, digest) = oneshot::channel();
        let rows = streams::lazy_rows(
            &plan.name,
            streams::select(&plan.name, &plan.stored, &plan.pk),
            pool.clone(),
            groups.clone(),
            runtime.clone(),
        );
        streams.push(DumpStream {
            name: file.clone(),
            reader: Box::new(DigestReader::new(
                rows,
                Box::new(move |done| {
                    let _ = tx.send(done);
                }),
            )),
        });
        streamed.push(Streamed { plan, file, digest });
    }
    let files = streams.iter().map(|s| s.name.clone()).collect();
    Ok(StreamDump {
        streams,
        processes,
        groups: groups.clone(),
        manifest: Box::pin(
            SnapshotSession {
                source: source.to_string(),
                lock,
                conn,
                plans: summarized,
                streamed,
                pool: streaming.then_some((pool, n_conns)),
                started,
                database,
                version,
                tool: tool.to_string(),
                taken_at,
                binlog,
                files,
                groups,
            }
            .run(),
        ),
        workdir,
        taken_at,
    })
}
