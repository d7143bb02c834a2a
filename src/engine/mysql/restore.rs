//! MariaDB/MySQL restores that are never seen half-done.
//!
//! A restore is built in a temporary database on the target server (`<target>__cst_<id>`),
//! created with the backup's default character set and collation, loaded with the `mariadb`
//! client from the dump streamed out of the repository, verified against the manifest and
//! handed to the erasure replay. Only then is it moved into place: MySQL cannot rename a
//! database, so its tables move in one atomic `RENAME TABLE` and its views, routines,
//! triggers and events — which cannot move between databases — are recreated in the target
//! from the definitions the server prints. With `--force` an existing target's contents are
//! moved aside the same way first, and dropped once the new ones are in place; if anything
//! fails, whatever moved is moved back and the target is as it was.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use sqlx::mysql::MySqlConnection;
use sqlx::{Connection, Executor};

use std::collections::{BTreeMap, BTreeSet};

use super::dump::triggers_name;
use super::objects::{Definition, Kind, charset_clause, definitions};
use super::{Connect, dump_name, quote_ident, streams, tool};
use crate::engine::common::{
    join_read_backs, load_jobs, run_at_most, short_id, stream_into, tool_warnings,
};
use crate::engine::{
    Database, EngineError, LoadOptions, Loaded, Released, Session, SnapshotFiles, Staging,
    Verification, private_workdir,
};
use crate::model::{ChecksumMode, CompareScope, Manifest, Phases, TableStream, TableSummary};

/// The temporary database a restore of `target` is built in (at most 64 characters).
#[must_use]
pub fn staging_name(target: &str, id: &str) -> String {
    let suffix = format!("__cst_{}", short_id(id));
    let keep = 64usize.saturating_sub(suffix.chars().count());
    let head: String = target.chars().take(keep).collect();
    format!("{head}{suffix}")
}

async fn admin(connect: &Connect) -> Result<MySqlConnection, sqlx::Error> {
    connect.with_database("information_schema").connect().await
}

/// Tables and views in a database; `None` when it does not exist.
async fn contents(admin: &mut MySqlConnection, database: &str) -> Result<Option<u64>, sqlx::Error> {
    let exists: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(database)
    .fetch_one(&mut *admin)
    .await?;
    if exists == 0 {
        return Ok(None);
    }
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?")
            .bind(database)
            .fetch_one(&mut *admin)
            .await?;
    let routines: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?)
              + (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?)",
    )
    .bind(database)
    .bind(database)
    .fetch_one(&mut *admin)
    .await?;
    Ok(Some(u64::try_from(n + routines).unwrap_or(0)))
}

/// `CREATE DATABASE name` with the backup's default character set and collation.
pub(super) async fn create_database(
    admin: &mut MySqlConnection,
    name: &str,
    manifest: &Manifest,
) -> Result<(), sqlx::Error> {
    let props = manifest
        .objects
        .as_ref()
        .map(|o| o.database.clone())
        .unwrap_or_default();
    let clause = if props.contains_key("character set") {
        charset_clause(&props)
    } else {
        " CHARACTER SET utf8mb4".to_string()
    };
    sqlx::query(&format!("CREATE DATABASE {}{clause}", quote_ident(name)))
        .execute(&mut *admin)
        .await?;
    if let Some(comment) = props.get("comment") {
        // MariaDB 10.5+ only; elsewhere the comment is not part of the description either.
        let _ = sqlx::query(&format!(
            "ALTER DATABASE {} COMMENT = '{}'",
            quote_ident(name),
            comment.replace('\\', "\\\\").replace('\'', "''")
        ))
        .execute(&mut *admin)
        .await;
    }
    Ok(())
}

/// A restore into a MariaDB/MySQL database nothing else uses yet.
pub(super) struct MyStaging {
    /// The staging database (temporary, or a scratch instance's).
    pub connect: Connect,
    /// The database it becomes on release (`None`: a drill's, released in place).
    pub target: Option<String>,
    pub create_on_load: bool,
    pub scratch_dir: PathBuf,
    pub label: String,
    /// Tables already read back and digested, right after their load.
    pub checked: BTreeMap<String, TableSummary>,
}

/// Read-backs of loaded tables, still running.
type ReadBacks = tokio::task::JoinSet<Result<TableSummary, sqlx::Error>>;

impl MyStaging {
    fn failed(&self, message: impl std::fmt::Display) -> EngineError {
        EngineError::RestoreFailed {
            target: self.label.clone(),
            message: message.to_string(),
        }
    }

    /// The `mariadb` client, on the staging database.
    fn client(&self, dir: &Path) -> Result<std::process::Command, EngineError> {
        let mut cmd = self
            .connect
            .command(tool(&["mariadb", "mysql"]), dir)
            .map_err(|e| self.failed(format!("preparing the mariadb client: {e}")))?;
        cmd.args([
            "--binary-mode",
            "--default-character-set=utf8mb4",
            &format!("--database={}", self.connect.database()),
        ]);
        Ok(cmd)
    }

    /// Streams one file of the snapshot (SQL) into the `mariadb` client.
    async fn run_sql(
        &self,
        files: &Arc<dyn SnapshotFiles>,
        name: &str,
        dir: &Path,
    ) -> Result<Loaded, EngineError> {
        let cmd = self.client(dir)?;
        let streamed = stream_into(
            files.clone(),
            name,
            "mariadb",
            &self.label,
            cmd,
            &self.connect.secret_list(),
        )
        .await?;
        Ok(Loaded {
            bytes: streamed.bytes,
            warnings: tool_warnings("mariadb", &streamed.stderr),
        })
    }

    /// Table streams load with `LOAD DATA LOCAL INFILE`, which the server must allow.
    async fn check_local_infile(&self) -> Result<(), EngineError> {
        let mut conn = self.connect.connect().await.map_err(|e| self.failed(e))?;
        let allowed: i64 = sqlx::query_scalar("SELECT CAST(@@GLOBAL.local_infile AS SIGNED)")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| self.failed(e))?;
        let _ = conn.close().await;
        if allowed == 0 {
            return Err(EngineError::TargetRefused {
                target: self.label.clone(),
                message: "this backup's tables load with LOAD DATA LOCAL INFILE, which the server refuses (local_infile = OFF); run SET GLOBAL local_infile = ON for the restore (or restore into another server), then try again"
                    .into(),
            });
        }
        Ok(())
    }

    /// Loads the table streams, `jobs` at a time and largest first; each table, once loaded,
    /// is read back and digested on a connection of its own while the next ones load. Returns
    /// the bytes streamed and the read-backs, still running.
    async fn load_streams<'m>(
        &'m self,
        files: &'m Arc<dyn SnapshotFiles>,
        manifest: &'m Manifest,
        jobs: u32,
        dir: &'m Path,
    ) -> Result<(u64, ReadBacks), EngineError> {
        let mut order: Vec<&TableStream> = manifest.streams.iter().collect();
        order.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.table.cmp(&b.table)));
        let digested: BTreeSet<&str> = manifest
            .tables
            .iter()
            .filter(|t| t.mode == ChecksumMode::Rows)
            .map(|t| t.name.as_str())
            .collect();
        let secrets = self.connect.secret_list();
        let mut checks = ReadBacks::new();
        let mut bytes = 0;
        let load = |stream: &'m TableStream| {
            let secrets = &secrets;
            async move {
                let mut cmd = self.client(dir)?;
                cmd.arg("--local-infile=1").arg("-e").arg(format!(
                    "{}; {}",
                    streams::LOAD_SETTINGS,
                    streams::load_data(&stream.name, &stream.columns)
                ));
                let tool = format!("mariadb (LOAD DATA into table {})", stream.table);
                let streamed = stream_into(
                    files.clone(),
                    &stream.file,
                    &tool,
                    &self.label,
                    cmd,
                    secrets,
                )
                .await?;
                Ok((streamed.bytes, stream))
            }
        };
        run_at_most(order, jobs, load, |(streamed, stream)| {
            bytes += streamed;
            if digested.contains(stream.table.as_str()) {
                let connect = self.connect.clone();
                let (table, columns) = (stream.name.clone(), stream.columns.clone());
                checks.spawn(async move {
                    let mut conn = connect.connect().await?;
                    let done = streams::digest_table(&mut conn, &table, &columns).await;
                    let _ = conn.close().await;
                    let done = done?;
                    Ok(TableSummary {
                        name: table,
                        rows: done.rows,
                        mode: ChecksumMode::Rows,
                        checksum: Some(done.checksum),
                    })
                });
            }
        })
        .await?;
        tracing::info!(
            tables = manifest.streams.len(),
            jobs,
            "restore: table streams loaded"
        );
        Ok((bytes, checks))
    }

    /// A backup with table streams: the definitions (and sequences), the tables' rows in
    /// parallel, then the triggers, so that loading fires none of them.
    async fn load_with_streams(
        &mut self,
        files: Arc<dyn SnapshotFiles>,
        manifest: &Manifest,
        opts: &LoadOptions,
        phases: &mut Phases,
        dir: &Path,
    ) -> Result<Loaded, EngineError> {
        self.check_local_infile().await?;
        let started = Instant::now();
        let dump = dump_name(&manifest.database);
        let mut loaded = self.run_sql(&files, &dump, dir).await?;
        phases.push("restore.schema", started);
        let started = Instant::now();
        let jobs = load_jobs(opts.jobs);
        let (bytes, checks) = self.load_streams(&files, manifest, jobs, dir).await?;
        loaded.bytes += bytes;
        phases.push("restore.data", started);
        let started = Instant::now();
        let triggers = self
            .run_sql(&files, &triggers_name(&manifest.database), dir)
            .await?;
        loaded.bytes += triggers.bytes;
        loaded.warnings.extend(triggers.warnings);
        phases.push("restore.triggers", started);
        self.checked = join_read_backs(checks, &self.label, phases).await?;
        Ok(loaded)
    }
}

impl Database for MyStaging {
    fn describe(&self) -> String {
        self.label.clone()
    }

    fn verify<'a>(
        &'a self,
        manifest: &'a Manifest,
        scope: CompareScope,
    ) -> BoxFuture<'a, Verification> {
        Box::pin(super::verify(&self.connect, manifest, scope, &self.checked))
    }

    fn session(&self, read_only: bool) -> BoxFuture<'_, Result<Box<dyn Session>, EngineError>> {
        Box::pin(super::session::open(&self.connect, read_only))
    }
}

impl Staging for MyStaging {
    fn load<'a>(
        &'a mut self,
        files: Arc<dyn SnapshotFiles>,
        manifest: &'a Manifest,
        opts: &'a LoadOptions,
        phases: &'a mut Phases,
    ) -> BoxFuture<'a, Result<Loaded, EngineError>> {
        Box::pin(async move {
            let database = self.connect.database();
            if self.create_on_load {
                let mut admin = admin(&self.connect).await.map_err(|e| self.failed(e))?;
                create_database(&mut admin, &database, manifest)
                    .await
                    .map_err(|e| self.failed(format!("creating database {database}: {e}")))?;
                let _ = admin.close().await;
                self.create_on_load = false;
            }
            let workdir = private_workdir(&self.scratch_dir, "restore-")?;
            if !manifest.streams.is_empty() {
                return self
                    .load_with_streams(files, manifest, opts, phases, workdir.path())
                    .await;
            }
            let dump = manifest
                .files
                .first()
                .map(|f| f.name.clone())
                .ok_or_else(|| self.failed("the snapshot's manifest lists no dump file"))?;
            let started = Instant::now();
            let loaded = self.run_sql(&files, &dump, workdir.path()).await?;
            phases.push("restore.data", started);
            Ok(loaded)
        })
    }

    fn release(self: Box<Self>, force: bool) -> BoxFuture<'static, Result<Released, EngineError>> {
        Box::pin(async move {
            let Some(target) = self.target.clone() else {
                return Ok(Released::default());
            };
            let staging = self.connect.database();
            let result = promote(&self.connect, &staging, &target, force).await;
            let _ = drop_database(&self.connect, &staging).await;
            result.map_err(|message| EngineError::Promote {
                target: self.label.clone(),
                message,
            })
        })
    }

    fn discard(self: Box<Self>) -> BoxFuture<'static, Result<(), EngineError>> {
        Box::pin(async move {
            if self.target.is_none() || self.create_on_load {
                return Ok(());
            }
            let staging = self.connect.database();
            drop_database(&self.connect, &staging)
                .await
                .map_err(|message| EngineError::RestoreFailed {
                    target: self.label.clone(),
                    message: format!(
                        "dropping the temporary database {staging} failed ({message}); drop it by hand"
                    ),
                })
        })
    }

    fn replay_logs<'a>(
        &'a mut self,
        replay: &'a crate::engine::pitr::LogReplay,
    ) -> BoxFuture<'a, Result<u64, EngineError>> {
        Box::pin(async move {
            // The tables read back after the load change now.
            self.checked.clear();
            let work = private_workdir(&self.scratch_dir, "binlog-replay-")?;
            super::binlog::replay(&self.connect, work.path(), replay)
                .await
                .map_err(|m| self.failed(format!("replaying the binary logs failed: {m}")))
        })
    }

    fn check_consistency(
        &self,
    ) -> BoxFuture<'_, Result<Option<crate::engine::pitr::Consistency>, EngineError>> {
        Box::pin(async move {
            super::binlog::check_tables(&self.connect)
                .await
                .map(Some)
                .map_err(|e| self.failed(format!("CHECK TABLE could not run: {e}")))
        })
    }
}

pub(super) async fn drop_database(connect: &Connect, name: &str) -> Result<(), String> {
    let mut admin = admin(connect).await.map_err(|e| e.to_string())?;
    let result = sqlx::query(&format!("DROP DATABASE IF EXISTS {}", quote_ident(name)))
        .execute(&mut admin)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    let _ = admin.close().await;
    result
}

/// Moves everything in database `from` into `to` (which holds nothing): tables in one atomic
/// `RENAME TABLE`, everything else recreated from its definition. On failure what moved is
/// moved back.
async fn move_contents(conn: &mut MySqlConnection, from: &str, to: &str) -> Result<(), String> {
    fn err(what: &str, e: sqlx::Error) -> String {
        format!("{what}: {e}")
    }
    // `USE` only works as a plain statement, not a prepared one.
    conn.execute(format!("USE {}", quote_ident(from)).as_str())
        .await
        .map_err(|e| err("opening the database to move", e))?;
    let defs = definitions(conn, from)
        .await
        .map_err(|e| err("reading definitions", e))?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES
         WHERE TABLE_SCHEMA = ? AND TABLE_TYPE <> 'VIEW' ORDER BY TABLE_NAME",
    )
    .bind(from)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| err("listing tables", e))?;
    drop_definitions(conn, from, &defs)
        .await
        .map_err(|e| err("setting views, routines, triggers and events aside", e))?;
    if !tables.is_empty() {
        let pairs: Vec<String> = tables
            .iter()
            .map(|t| {
                format!(
                    "{}.{} TO {}.{}",
                    quote_ident(from),
                    quote_ident(t),
                    quote_ident(to),
                    quote_ident(t)
                )
            })
            .collect();
        if let Err(e) = sqlx::query(&format!("RENAME TABLE {}", pairs.join(", ")))
            .execute(&mut *conn)
            .await
        {
            let _ = recreate(conn, from, &defs).await;
            return Err(err("moving the tables", e));
        }
    }
    if let Err(e) = recreate(conn, to, &defs).await {
        // Put everything back where it was.
        let _ = drop_definitions(conn, to, &defs).await;
        if !tables.is_empty() {
            let back: Vec<String> = tables
                .iter()
                .map(|t| {
                    format!(
                        "{}.{} TO {}.{}",
                        quote_ident(to),
                        quote_ident(t),
                        quote_ident(from),
                        quote_ident(t)
                    )
                })
                .collect();
            let _ = sqlx::query(&format!("RENAME TABLE {}", back.join(", ")))
                .execute(&mut *conn)
                .await;
        }
        let _ = recreate(conn, from, &defs).await;
        return Err(e);
    }
    Ok(())
}

/// Drops a database's views, routines, triggers and events (names qualified, statements
/// plain: a prepared statement would keep the database it was prepared in).
async fn drop_definitions(
    conn: &mut MySqlConnection,
    database: &str,
    defs: &[Definition],
) -> Result<(), sqlx::Error> {
    for d in defs.iter().rev() {
        let statement = format!(
            "DROP {} IF EXISTS {}.{}",
            d.kind.keyword(),
            quote_ident(database),
            quote_ident(&d.name)
        );
        conn.execute(statement.as_str()).await?;
    }
    Ok(())
}

/// Recreates views, routines, triggers and events in `database`, each under the session
/// settings it was made with (`sql_mode`, character sets, time zone), as mariadb-dump does.
/// Views may read other views: they are created in rounds until none is left, or none succeeds.
async fn recreate(
    conn: &mut MySqlConnection,
    database: &str,
    defs: &[Definition],
) -> Result<(), String> {
    conn.execute(format!("USE {}", quote_ident(database)).as_str())
        .await
        .map_err(|e| e.to_string())?;
    let (mode, zone): (String, String) = sqlx::query_as(
        "SELECT CAST(@@SESSION.sql_mode AS CHAR), CAST(@@SESSION.time_zone AS CHAR)",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| e.to_string())?;
    let mut pending: Vec<&Definition> = defs.iter().collect();
    while !pending.is_empty() {
        let mut failed = Vec::new();
        let mut last_error = String::new();
        for d in &pending {
            if let Err(e) = create_one(conn, d).await {
                if d.kind != Kind::View {
                    return Err(e);
                }
                last_error = e;
                failed.push(*d);
            }
        }
        if failed.len() == pending.len() {
            return Err(last_error);
        }
        pending = failed;
    }
    let reset = format!(
        "SET NAMES utf8mb4, SESSION sql_mode = '{}', SESSION time_zone = '{}'",
        mode.replace('\'', "''"),
        zone.replace('\'', "''")
    );
    conn.execute(reset.as_str())
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn create_one(conn: &mut MySqlConnection, d: &Definition) -> Result<(), String> {
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"));
    let mut settings = Vec::new();
    if let Some(mode) = &d.sql_mode {
        settings.push(format!("sql_mode = {}", quote(mode)));
    }
    if let Some(zone) = &d.time_zone {
        settings.push(format!("time_zone = {}", quote(zone)));
    }
    if let Some(client) = &d.client {
        settings.push(format!("character_set_client = {}", quote(client)));
    }
    if let Some(connection) = &d.connection {
        settings.push(format!("collation_connection = {}", quote(connection)));
    }
    if !settings.is_empty() {
        conn.execute(format!("SET SESSION {}", settings.join(", ")).as_str())
            .await
            .map_err(|e| {
                format!(
                    "recreating {} {}: {e}",
                    d.kind.keyword().to_lowercase(),
                    d.name
                )
            })?;
    }
    conn.execute(d.ddl.as_str()).await.map(|_| ()).map_err(|e| {
        format!(
            "recreating {} {}: {e}",
            d.kind.keyword().to_lowercase(),
            d.name
        )
    })
}

/// Moves the verified staging database's contents into `target` (see the module docs).
async fn promote(
    connect: &Connect,
    staging: &str,
    target: &str,
    force: bool,
) -> Result<Released, String> {
    let mut conn = admin(connect).await.map_err(|e| e.to_string())?;
    let e = |e: sqlx::Error| e.to_string();
    sqlx::query("SET FOREIGN_KEY_CHECKS = 0")
        .execute(&mut conn)
        .await
        .map_err(e)?;
    let mut released = Released::default();
    let (charset, collation): (String, String) = sqlx::query_as(
        "SELECT CAST(DEFAULT_CHARACTER_SET_NAME AS CHAR), CAST(DEFAULT_COLLATION_NAME AS CHAR)
         FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(staging)
    .fetch_one(&mut conn)
    .await
    .map_err(e)?;
    let clause = format!(
        " CHARACTER SET {} COLLATE {}",
        quote_ident(&charset),
        quote_ident(&collation)
    );
    let aside = format!("{}_old", staging.chars().take(60).collect::<String>());
    match contents(&mut conn, target).await.map_err(e)? {
        None => {
            sqlx::query(&format!("CREATE DATABASE {}{clause}", quote_ident(target)))
                .execute(&mut conn)
                .await
                .map_err(e)?;
        }
        Some(0) => {}
        Some(n) if !force => {
            return Err(format!(
                "database {target} was filled ({n} tables and other objects) while the restore ran; nothing was replaced (pass --force to replace it)"
            ));
        }
        Some(_) => {
            sqlx::query(&format!("CREATE DATABASE {}{clause}", quote_ident(&aside)))
                .execute(&mut conn)
                .await
                .map_err(e)?;
            move_contents(&mut conn, target, &aside)
                .await
                .map_err(|m| format!("setting the old contents of {target} aside failed ({m}); {target} is unchanged"))?;
            released.replaced = true;
        }
    }
    let (old_charset, old_collation): (String, String) = sqlx::query_as(
        "SELECT CAST(DEFAULT_CHARACTER_SET_NAME AS CHAR), CAST(DEFAULT_COLLATION_NAME AS CHAR)
         FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(target)
    .fetch_one(&mut conn)
    .await
    .map_err(e)?;
    let moved = match sqlx::query(&format!("ALTER DATABASE {}{clause}", quote_ident(target)))
        .execute(&mut conn)
        .await
    {
        Ok(_) => move_contents(&mut conn, staging, target).await,
        Err(e) => Err(e.to_string()),
    };
    if let Err(message) = moved {
        // Put the old contents back.
        let _ = sqlx::query(&format!(
            "ALTER DATABASE {} CHARACTER SET {} COLLATE {}",
            quote_ident(target),
            quote_ident(&old_charset),
            quote_ident(&old_collation)
        ))
        .execute(&mut conn)
        .await;
        if released.replaced {
            let _ = move_contents(&mut conn, &aside, target).await;
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {}", quote_ident(&aside)))
                .execute(&mut conn)
                .await;
        }
        return Err(message);
    }
    if released.replaced
        && let Err(err) = sqlx::query(&format!("DROP DATABASE {}", quote_ident(&aside)))
            .execute(&mut conn)
            .await
    {
        released.warnings.push(format!(
            "the replaced contents were kept in database {aside} because dropping it failed ({err}); drop it when you no longer need it"
        ));
    }
    let _ = conn.close().await;
    Ok(released)
}

/// Prepares a restore into `target`: refuses a non-empty target without `force`, then creates
/// the staging database.
pub(super) async fn stage(
    connect: &Connect,
    staging: &str,
    manifest: &Manifest,
    force: bool,
    scratch_dir: &Path,
) -> Result<MyStaging, EngineError> {
    let target = connect.database();
    let label = connect.describe();
    let unreachable = |e: sqlx::Error| EngineError::TargetUnavailable {
        target: label.clone(),
        message: e.to_string(),
    };
    let mut admin = admin(connect).await.map_err(unreachable)?;
    if let Some(n) = contents(&mut admin, &target).await.map_err(unreachable)?
        && n > 0
        && !force
    {
        return Err(EngineError::TargetRefused {
            target: label,
            message: format!(
                "database {target} is not empty ({n} tables and other objects); restore into an empty or new database, or pass --force to replace its contents once the restore is verified"
            ),
        });
    }
    create_database(&mut admin, staging, manifest)
        .await
        .map_err(|e| EngineError::TargetRefused {
            target: label.clone(),
            message: format!(
                "the restore is built in a temporary database ({staging}) and moved into place only once verified, which needs the CREATE and DROP privileges on the server: {e}"
            ),
        })?;
    let _ = admin.close().await;
    Ok(MyStaging {
        connect: connect.with_database(staging),
        target: Some(target),
        create_on_load: false,
        scratch_dir: scratch_dir.to_path_buf(),
        label,
        checked: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn staging_names_fit() {
        let name = super::staging_name(&"x".repeat(70), "20261201T090834.123Z-1a2b3c4d");
        assert!(name.chars().count() <= 64, "{name}");
        assert!(name.ends_with("__cst_123z1a2b3c4d"), "{name}");
    }
}
