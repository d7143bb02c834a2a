//! PostgreSQL dumps: `pg_dump` (custom format, uncompressed) streamed straight into the
//! repository, a schema-only dump of the same snapshot beside it (a restore builds indexes and
//! constraints from it with parallel workers), the cluster's globals (`pg_dumpall
//! --globals-only --no-role-passwords`), and a manifest computed in the very snapshot the dump
//! reads.
//!
//! Consistency: Custodian opens a `REPEATABLE READ, READ ONLY` transaction, exports its
//! snapshot (`pg_export_snapshot()`), and runs `pg_dump --snapshot=<id>`; row counts,
//! checksums and the description of every other object are computed in that same transaction
//! while `pg_dump` streams, so the manifest describes exactly the dumped state. Sequences are
//! the exception PostgreSQL itself makes (they are not transactional): their positions are
//! read before pg_dump starts and again once it has written its table of contents (which holds
//! the values it saved), and the manifest records that range.

use std::path::Path;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::objects;
use super::tables::{TablePlan, plan_tables, summarize_tables};
use super::{connect_settings, unavailable};
use crate::config::ServerSource;
use crate::engine::process::DumpProcess;
use crate::engine::{DumpStream, EngineError, FirstBytes, StreamDump, private_workdir};
use crate::model::objects::SequenceState;
use crate::model::{ChecksumMode, Engine, Manifest, ManifestFile, manifest, time};
use crate::secret::Secret;

/// The transaction whose snapshot the dump reads; summarizing it produces the manifest.
struct SnapshotSession {
    source: String,
    conn: PgConnection,
    /// Fire when each pg_dump has produced output, i.e. has imported the snapshot: only then
    /// may the exporting transaction end.
    imported: Vec<tokio::sync::oneshot::Receiver<()>>,
    plans: Vec<TablePlan>,
    database: String,
    version: String,
    taken_at: jiff::Timestamp,
    files: Vec<String>,
    /// Sequence positions read before pg_dump started.
    sequences_before: Vec<SequenceState>,
}

impl SnapshotSession {
    /// Computes the manifest in the exported snapshot, then ends the transaction.
    ///
    /// # Errors
    /// When a query fails (the server went away, say).
    async fn run(mut self) -> Result<Manifest, EngineError> {
        let failed = |e: sqlx::Error| EngineError::DumpFailed {
            source_name: self.source.clone(),
            message: format!("computing the manifest: {e}"),
        };
        let tables = summarize_tables(&mut self.conn, &self.plans)
            .await
            .map_err(failed)?;
        let mut objects = objects::describe(&mut self.conn, None)
            .await
            .map_err(failed)?;
        // The snapshot must outlive its import by pg_dump (a small database is summarized
        // before pg_dump has even connected). Once pg_dump has written anything it has read
        // the sequences it saves: reading them again now bounds the values it saved.
        for imported in self.imported.drain(..) {
            let _ = imported.await;
        }
        objects.sequences = std::mem::take(&mut self.sequences_before);
        objects::widen_sequences(&mut self.conn, &mut objects.sequences)
            .await
            .map_err(failed)?;
        let _ = sqlx::query("COMMIT").execute(&mut self.conn).await;
        let _ = self.conn.close().await;
        Ok(Manifest {
            format: manifest::MANIFEST_FORMAT,
            engine: Engine::Postgres,
            source: self.source,
            database: self.database,
            taken_at: self.taken_at,
            method: format!(
                "pg_dump --format=custom --compress=0 --snapshot (server {})",
                self.version
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
            custodian_version: env!("CARGO_PKG_VERSION").to_string(),
        })
    }
}

/// Name of the database dump inside the snapshot.
#[must_use]
pub fn dump_name(database: &str) -> String {
    format!("{database}.dump")
}

/// Name of the schema-only dump inside the snapshot.
#[must_use]
pub fn schema_name(database: &str) -> String {
    format!("{database}.schema.dump")
}

/// Name of the globals (roles, tablespaces) inside the snapshot.
pub const GLOBALS_NAME: &str = "globals.sql";

/// Starts a consistent dump: the snapshot transaction, `pg_dump` and `pg_dumpall --globals-only`.
///
/// # Errors
/// When the server cannot be reached or the tools cannot be started.
pub(super) async fn start(
    source: &str,
    cfg: &ServerSource,
    scratch: &Path,
) -> Result<StreamDump, EngineError> {
    let connect = connect_settings(source, cfg)?;
    let mut conn = connect
        .connect()
        .await
        .map_err(|e| unavailable(source, &connect, &e))?;
    let fail = |e: sqlx::Error| unavailable(source, &connect, &e);
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await
        .map_err(fail)?;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await
        .map_err(fail)?;
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut conn)
        .await
        .map_err(fail)?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut conn)
        .await
        .map_err(fail)?;
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
    let plans = plan_tables(&mut conn, &mode_of).await.map_err(fail)?;
    let sequences_before = objects::sequences(&mut conn).await.map_err(fail)?;

    let workdir = private_workdir(scratch, "pg-")?;
    let spawn_err = |e: std::io::Error| EngineError::DumpFailed {
        source_name: source.to_string(),
        message: e.to_string(),
    };
    let secrets: Vec<&Secret> = connect.secret().into_iter().collect();
    let mut dump_cmd = connect
        .command("pg_dump", workdir.path())
        .map_err(spawn_err)?;
    dump_cmd.args([
        "--format=custom",
        "--compress=0",
        "--no-password",
        &format!("--snapshot={snapshot}"),
    ]);
    let mut pg_dump = DumpProcess::spawn("pg_dump", dump_cmd, &secrets).map_err(spawn_err)?;
    // The schema alone, from the same snapshot: a restore applies its post-data section (indexes,
    // constraints) with parallel workers from a small private file, while the data streams.
    let mut schema_cmd = connect
        .command("pg_dump", workdir.path())
        .map_err(spawn_err)?;
    schema_cmd.args([
        "--format=custom",
        "--schema-only",
        "--no-password",
        &format!("--snapshot={snapshot}"),
    ]);
    let mut schema =
        DumpProcess::spawn("pg_dump --schema-only", schema_cmd, &secrets).map_err(spawn_err)?;
    let mut globals_cmd = connect
        .command("pg_dumpall", workdir.path())
        .map_err(spawn_err)?;
    globals_cmd.args([
        "--globals-only",
        "--no-role-passwords",
        "--no-password",
        "-l",
        &database,
    ]);
    let mut globals = DumpProcess::spawn("pg_dumpall", globals_cmd, &secrets).map_err(spawn_err)?;

    let (imported_tx, imported_data) = tokio::sync::oneshot::channel();
    let (schema_tx, imported_schema) = tokio::sync::oneshot::channel();
    let streams = vec![
        DumpStream {
            name: dump_name(&database),
            reader: Box::new(FirstBytes::new(
                pg_dump
                    .take_stdout()
                    .ok_or_else(|| spawn_err(std::io::Error::other("no stdout")))?,
                imported_tx,
            )),
        },
        DumpStream {
            name: schema_name(&database),
            reader: Box::new(FirstBytes::new(
                schema
                    .take_stdout()
                    .ok_or_else(|| spawn_err(std::io::Error::other("no stdout")))?,
                schema_tx,
            )),
        },
        DumpStream {
            name: GLOBALS_NAME.to_string(),
            reader: Box::new(
                globals
                    .take_stdout()
                    .ok_or_else(|| spawn_err(std::io::Error::other("no stdout")))?,
            ),
        },
    ];
    let files = streams.iter().map(|s| s.name.clone()).collect();
    Ok(StreamDump {
        streams,
        processes: vec![pg_dump, schema, globals],
        manifest: Box::pin(
            SnapshotSession {
                source: source.to_string(),
                conn,
                imported: vec![imported_data, imported_schema],
                plans,
                database,
                version,
                taken_at,
                files,
                sequences_before,
            }
            .run(),
        ),
        workdir,
        taken_at,
    })
}
