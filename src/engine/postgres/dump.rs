//! PostgreSQL dumps, streamed straight into the repository: each table's rows as a stream of
//! its own (`streams`: `COPY` in primary-key order, several at a time), `pg_dump` (custom
//! format, uncompressed) for everything else — sequences' positions, large objects, and the
//! data of any table without a stream — a schema-only dump of the same snapshot (a restore
//! creates the schema from it and builds indexes and constraints with parallel workers), the
//! cluster's globals (`pg_dumpall --globals-only --no-role-passwords`), and a manifest of
//! exactly the dumped state.
//!
//! Consistency: Custodian opens a `REPEATABLE READ, READ ONLY` transaction, exports its
//! snapshot (`pg_export_snapshot()`), locks the streamed tables against `DROP` and `ALTER` (as
//! pg_dump does), and every tool imports that snapshot. Each table's row count and checksum
//! come from its stream as it passes (no second scan); the description of every other object
//! is computed in the exporting transaction, which stays open until the last stream has ended.
//! Sequences are
//! the exception PostgreSQL itself makes (they are not transactional): their positions are
//! read before pg_dump starts and again once it has written its table of contents (which holds
//! the values it saved), and the manifest records that range.

use std::collections::BTreeMap;
use std::path::Path;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use std::sync::Arc;

use super::objects;
use super::streams;
use super::tables::{TablePlan, plan_tables};
use super::{connect_settings, quote_ident, unavailable};
use crate::config::ServerSource;
use crate::engine::common::{manifest_unless_stopped, stream_digest};
use crate::engine::process::{DumpProcess, ProcessGroups};
use crate::engine::rows::{DigestReader, Finished};
use crate::engine::{DumpStream, EngineError, FirstBytes, StreamDump, private_workdir};
use crate::model::objects::SequenceState;
use crate::model::{
    ChecksumMode, Engine, Manifest, ManifestFile, StreamPart, TableStream, TableSummary, manifest,
    time,
};
use crate::secret::Secret;

/// A table (or one key range of it) whose rows are being streamed, and where its digest will
/// arrive.
struct Streamed {
    plan: TablePlan,
    file: String,
    part: Option<StreamPart>,
    digest: tokio::sync::oneshot::Receiver<Finished>,
}

/// Tables smaller than this are never split into key ranges.
const SPLIT_MIN_BYTES: u64 = 16 << 20;

/// Key ranges of `plan`'s integer primary key, `parts` of them, equally wide between the
/// smallest and largest key of the snapshot (the outer ones open); `None` when the table is too
/// small to split or the keys too few.
async fn key_ranges(
    conn: &mut PgConnection,
    plan: &TablePlan,
    parts: u32,
) -> Result<Option<Vec<StreamPart>>, sqlx::Error> {
    let Some(key) = plan.pk.first() else {
        return Ok(None);
    };
    let (lo, hi): (Option<i64>, Option<i64>) = sqlx::query_as(&format!(
        "SELECT min({k})::bigint, max({k})::bigint FROM ONLY {t}",
        k = quote_ident(key),
        t = plan.ident
    ))
    .fetch_one(&mut *conn)
    .await?;
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(None);
    };
    let width = (i128::from(hi) - i128::from(lo) + 1) / i128::from(parts);
    if width < 1 {
        return Ok(None);
    }
    let bound = |i: u32| i64::try_from(i128::from(lo) + width * i128::from(i)).ok();
    Ok(Some(
        (1..=parts)
            .map(|number| StreamPart {
                number,
                of: parts,
                from: (number > 1).then(|| bound(number - 1)).flatten(),
                to: (number < parts).then(|| bound(number)).flatten(),
            })
            .collect(),
    ))
}

/// The transaction whose snapshot the dump reads; summarizing it produces the manifest.
struct SnapshotSession {
    source: String,
    conn: PgConnection,
    /// Fire when each pg_dump has produced output, i.e. has imported the snapshot: only then
    /// may the exporting transaction end.
    imported: Vec<tokio::sync::oneshot::Receiver<()>>,
    streamed: Vec<Streamed>,
    database: String,
    version: String,
    taken_at: jiff::Timestamp,
    restore_point: Option<crate::model::manifest::RestorePoint>,
    files: Vec<String>,
    /// Sequence positions read before pg_dump started.
    sequences_before: Vec<SequenceState>,
    /// The dump's tools: when one fails, the manifest is abandoned (it may be waiting for a
    /// lock or a stream that will never end).
    groups: ProcessGroups,
}

impl SnapshotSession {
    /// Computes the manifest in the exported snapshot, then ends the transaction.
    ///
    /// # Errors
    /// When a query fails (the server went away, say).
    async fn run(self) -> Result<Manifest, EngineError> {
        let groups = self.groups.clone();
        let source = self.source.clone();
        manifest_unless_stopped(&source, &groups, self.summarize()).await
    }

    async fn summarize(mut self) -> Result<Manifest, EngineError> {
        let failed = |e: sqlx::Error| EngineError::DumpFailed {
            source_name: self.source.clone(),
            message: format!("computing the manifest: {e}"),
        };
        // The streamed tables stay as they are until the last stream has ended (pg_dump's own
        // locks last only as long as it runs). Taken here, beside the running tools, so that
        // waiting behind someone's exclusive lock never hides a tool that failed meanwhile.
        if !self.streamed.is_empty() {
            let list: Vec<String> = self
                .streamed
                .iter()
                .map(|s| format!("ONLY {}", s.plan.ident))
                .collect();
            sqlx::query(&format!(
                "LOCK TABLE {} IN ACCESS SHARE MODE",
                list.join(", ")
            ))
            .execute(&mut self.conn)
            .await
            .map_err(failed)?;
        }
        let mut objects = objects::describe(&mut self.conn, None)
            .await
            .map_err(failed)?;
        // The snapshot must outlive its import by pg_dump (a small database is summarized
        // before pg_dump has even connected). Once pg_dump has written anything it has read
        // the sequences it saves: reading them again now bounds the values it saved.
        for imported in self.imported.drain(..) {
            let _ = imported.await;
        }
        // The exporting transaction must outlive every stream's import of its snapshot; a
        // stream's digest arrives when its last row has passed.
        let mut whole: BTreeMap<String, (TablePlan, Vec<Finished>)> = BTreeMap::new();
        let mut table_streams = Vec::with_capacity(self.streamed.len());
        for streamed in std::mem::take(&mut self.streamed) {
            let done = stream_digest(&self.source, &streamed.plan.name, streamed.digest).await?;
            table_streams.push(TableStream {
                table: streamed.plan.name.clone(),
                schema: streamed.plan.schema.clone(),
                name: streamed.plan.table.clone(),
                file: streamed.file,
                columns: streamed.plan.columns.clone(),
                order: streamed.plan.pk.clone(),
                bytes: done.bytes,
                part: streamed.part,
            });
            whole
                .entry(streamed.plan.name.clone())
                .or_insert_with(|| (streamed.plan, Vec::new()))
                .1
                .push(done);
        }
        // A table split into key ranges has one digest: its parts added up.
        let mut tables: Vec<TableSummary> = whole
            .into_values()
            .map(|(plan, parts)| {
                let done = Finished::combine(parts);
                let counted = plan.mode == ChecksumMode::Count;
                TableSummary {
                    name: plan.name,
                    rows: done.rows,
                    mode: plan.mode,
                    checksum: (!counted).then_some(done.checksum),
                }
            })
            .collect();
        table_streams.sort_by(|a, b| {
            a.table.cmp(&b.table).then_with(|| {
                a.part
                    .as_ref()
                    .map(|p| p.number)
                    .cmp(&b.part.as_ref().map(|p| p.number))
            })
        });
        tables.sort_by(|a, b| a.name.cmp(&b.name));
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
                "COPY per table in key order + pg_dump --format=custom --compress=0 --snapshot (server {})",
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
            streams: table_streams,
            binlog: None,
            restore_point: self.restore_point,
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
    let restore_point = match cfg.archive {
        Some(_) => super::restore_point::mark(source, &connect, &mut conn, taken_at).await,
        None => None,
    };
    let limit = cfg.checksum_limit;
    let overrides = cfg.checksum.clone();
    let mode_of = move |name: &str, size: u64| {
        overrides.get(name).copied().unwrap_or(if size > limit {
            ChecksumMode::Sampled
        } else {
            ChecksumMode::Full
        })
    };
    let mut plans = plan_tables(&mut conn, &mode_of).await.map_err(fail)?;
    // Every table gets a stream; its digest covers every row at no extra cost, so only an
    // explicit `count` keeps a table to its row count.
    for plan in &mut plans {
        if plan.mode != ChecksumMode::Count {
            plan.mode = ChecksumMode::Rows;
        }
    }
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
    // The streamed tables' rows are not dumped twice.
    for plan in &plans {
        dump_cmd.arg(format!(
            "--exclude-table-data={}.{}",
            quote_ident(&plan.schema),
            quote_ident(&plan.table)
        ));
    }
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
    let mut streams = streams;
    let groups = ProcessGroups::default();
    for process in [&mut pg_dump, &mut schema, &mut globals] {
        process.join(&groups).map_err(spawn_err)?;
    }
    let permits = Arc::new(tokio::sync::Semaphore::new(cfg.streams().max(1)));
    let runtime = tokio::runtime::Handle::current();
    // A table larger than its fair share of the streams (and than SPLIT_MIN_BYTES) is split
    // into key ranges, one per stream, so that one dominant table still uses every core.
    let parallel = u32::try_from(cfg.streams()).unwrap_or(1).min(8);
    let total: u64 = plans.iter().map(|p| p.size).sum();
    let mut items: Vec<(TablePlan, Option<StreamPart>, u64)> = Vec::with_capacity(plans.len());
    for plan in plans {
        let split = parallel > 1
            && plan.int_key
            && plan.size >= SPLIT_MIN_BYTES
            && plan.size >= total / u64::from(parallel);
        let ranges = if split {
            key_ranges(&mut conn, &plan, parallel).await.map_err(fail)?
        } else {
            None
        };
        match ranges {
            Some(ranges) => {
                let share = plan.size / u64::from(parallel);
                for part in ranges {
                    items.push((plan.clone(), Some(part), share));
                }
            }
            None => {
                let size = plan.size;
                items.push((plan, None, size));
            }
        }
    }
    // Largest first: the archiver starts the longest streams first.
    items.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.name.cmp(&b.0.name)));
    let mut streamed = Vec::with_capacity(items.len());
    for (rank, (plan, part, _)) in items.into_iter().enumerate() {
        let (file, filter) = match &part {
            Some(p) => (
                streams::part_file_name(rank + 1, &plan.schema, &plan.table, p.number),
                plan.pk
                    .first()
                    .and_then(|key| streams::range_filter(key, p.from, p.to)),
            ),
            None => (
                streams::file_name(rank + 1, &plan.schema, &plan.table),
                None,
            ),
        };
        let (tx, digest) = tokio::sync::oneshot::channel();
        let what = match &part {
            Some(p) => format!("table {} (key range {} of {})", plan.name, p.number, p.of),
            None => format!("table {}", plan.name),
        };
        let copy = streams::lazy_copy(
            what,
            connect.clone(),
            snapshot.clone(),
            streams::copy_out(&plan.ident, &plan.columns, filter.as_deref(), &plan.pk),
            permits.clone(),
            groups.clone(),
            runtime.clone(),
        );
        streams.push(DumpStream {
            name: file.clone(),
            reader: Box::new(DigestReader::new(
                copy,
                Box::new(move |done| {
                    let _ = tx.send(done);
                }),
            )),
        });
        streamed.push(Streamed {
            plan,
            file,
            part,
            digest,
        });
    }
    let files = streams.iter().map(|s| s.name.clone()).collect();
    let session_groups = groups.clone();
    Ok(StreamDump {
        streams,
        processes: vec![pg_dump, schema, globals],
        groups,
        manifest: Box::pin(
            SnapshotSession {
                source: source.to_string(),
                conn,
                imported: vec![imported_data, imported_schema],
                streamed,
                database,
                version,
                taken_at,
                restore_point,
                files,
                sequences_before,
                groups: session_groups,
            }
            .run(),
        ),
        workdir,
        taken_at,
    })
}
