//! PostgreSQL sources: `pg_dump` (custom format, uncompressed) streamed straight into the
//! repository, the cluster's globals (`pg_dumpall --globals-only --no-role-passwords`) beside
//! it, and a manifest computed in the very snapshot the dump reads.
//!
//! Consistency: Custodian opens a `REPEATABLE READ, READ ONLY` transaction, exports its
//! snapshot (`pg_export_snapshot()`), and runs `pg_dump --snapshot=<id>`; the row counts and
//! checksums are computed in that same transaction while `pg_dump` streams, so the manifest
//! describes exactly the dumped state.
//!
//! Checksum of a table (see [`table_query`]): the count of its rows and the exact (numeric) sum
//! of the 64-bit `hashtextextended(row::text, 0)` of every row — an order-independent digest,
//! so no sort is needed and a restored table (whatever its physical order) gives the same
//! value. `hashtextextended` is the hash PostgreSQL's hash partitioning relies on, so it is
//! stable across versions, and it costs little more than producing the row's text (measured
//! here: 4× cheaper than `md5`). `sampled` hashes only
//! the rows whose primary key hashes into 1/128 (still counting every row); `count` only counts.
//!
//! Credentials: the password is given to the tools through a `PGPASSFILE` in a private 0700
//! directory (never on a command line, never in the environment); every other connection
//! parameter travels in `PG*` variables of a cleared environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::{ConnectOptions, Connection, Row};

use super::process::DumpProcess;
use super::{DumpStream, FirstBytes, ManifestJob, SourceError, StreamDump, private_workdir};
use crate::config::ServerSource;
use crate::model::{ChecksumMode, Engine, Manifest, ManifestFile, TableSummary, manifest, time};
use crate::secret::Secret;

/// Rows whose primary key hashes into 1 of this many buckets are hashed in `sampled` mode.
const SAMPLE_BUCKETS: i32 = 128;

/// Connection settings resolved from the configuration (URL + password reference).
#[derive(Clone)]
pub struct Connect {
    options: PgConnectOptions,
    password: Option<Secret>,
    /// `sslrootcert`, `sslcert`, `sslkey` from the URL, for the command-line tools.
    tls_files: Vec<(&'static str, String)>,
}

impl Connect {
    /// Parses a URL (which never holds a password) and adds the password, if any.
    ///
    /// # Errors
    /// When the URL cannot be parsed.
    pub fn new(url: &str, password: Option<Secret>) -> Result<Self, String> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| format!("invalid PostgreSQL URL: {e}"))?
            .application_name("custodian")
            .disable_statement_logging();
        if let Some(password) = &password {
            options = options.password(password.expose());
        }
        let mut tls_files = Vec::new();
        if let Ok(parsed) = url::Url::parse(url) {
            for (key, value) in parsed.query_pairs() {
                let var = match &*key {
                    "sslrootcert" | "ssl-root-cert" | "ssl-ca" => "PGSSLROOTCERT",
                    "sslcert" | "ssl-cert" => "PGSSLCERT",
                    "sslkey" | "ssl-key" => "PGSSLKEY",
                    _ => continue,
                };
                tls_files.push((var, value.into_owned()));
            }
        }
        Ok(Self {
            options,
            password,
            tls_files,
        })
    }

    /// The same server, another database.
    #[must_use]
    pub fn with_database(&self, database: &str) -> Self {
        let mut other = self.clone();
        other.options = other.options.database(database);
        other
    }

    #[must_use]
    pub fn database(&self) -> String {
        self.options
            .get_database()
            .unwrap_or(self.options.get_username())
            .to_string()
    }

    /// `user@host:port/db` — for messages; never a password.
    #[must_use]
    pub fn describe(&self) -> String {
        let host = self.options.get_socket().map_or_else(
            || self.options.get_host().to_string(),
            |s| s.display().to_string(),
        );
        format!(
            "{}@{}:{}/{}",
            self.options.get_username(),
            host,
            self.options.get_port(),
            self.database()
        )
    }

    /// Opens a connection (with a connect timeout).
    ///
    /// # Errors
    /// When the server cannot be reached or refuses the login.
    pub async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        tokio::time::timeout(Duration::from_secs(30), self.options.connect())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    /// A command for a PostgreSQL client tool with a clean environment carrying the
    /// connection settings, and the password in a `PGPASSFILE` under `private_dir`.
    ///
    /// # Errors
    /// When the password file cannot be written.
    pub fn command(&self, program: &str, private_dir: &Path) -> std::io::Result<Command> {
        let mut cmd = super::process::clean_command(program);
        let host = self.options.get_socket().map_or_else(
            || self.options.get_host().to_string(),
            |s| s.display().to_string(),
        );
        cmd.env("PGHOST", host)
            .env("PGPORT", self.options.get_port().to_string())
            .env("PGUSER", self.options.get_username())
            .env("PGDATABASE", self.database())
            .env("PGAPPNAME", "custodian")
            .env("PGCONNECT_TIMEOUT", "30")
            .env("PGSSLMODE", ssl_mode(self.options.get_ssl_mode()));
        for (var, value) in &self.tls_files {
            cmd.env(var, value);
        }
        match &self.password {
            Some(password) => {
                let path = private_dir.join("pgpass");
                if !path.exists() {
                    write_pgpass(&path, password)?;
                }
                cmd.env("PGPASSFILE", path);
            }
            None => {
                cmd.env("PGPASSFILE", "/dev/null");
            }
        }
        Ok(cmd)
    }

    pub(crate) fn secret(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// The secrets to redact from the tools' output.
    #[must_use]
    pub fn secret_list(&self) -> Vec<Secret> {
        self.password.iter().cloned().collect()
    }
}

fn ssl_mode(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

/// A `.pgpass` line matching any server: `*:*:*:*:password`, with `:` and `\` escaped.
fn write_pgpass(path: &Path, password: &Secret) -> std::io::Result<()> {
    let escaped = password.expose().replace('\\', "\\\\").replace(':', "\\:");
    crate::secret::write_new_secret_file(path, &Secret::new(format!("*:*:*:*:{escaped}")))
}

/// Resolves a configured source into connection settings.
///
/// # Errors
/// When the password cannot be read or the URL is invalid.
pub fn connect_settings(source: &str, cfg: &ServerSource) -> Result<Connect, SourceError> {
    let password = cfg
        .password
        .as_ref()
        .map(crate::secret::SecretRef::resolve)
        .transpose()
        .map_err(|e| SourceError::Unavailable {
            source_name: source.to_string(),
            path: PathBuf::from(&cfg.url),
            message: format!("reading the password: {e}"),
        })?;
    Connect::new(&cfg.url, password).map_err(|message| SourceError::Unavailable {
        source_name: source.to_string(),
        path: PathBuf::from(&cfg.url),
        message,
    })
}

fn unavailable(source: &str, connect: &Connect, e: &dyn std::fmt::Display) -> SourceError {
    SourceError::Unavailable {
        source_name: source.to_string(),
        path: PathBuf::from(connect.describe()),
        message: e.to_string(),
    }
}

/// One table to summarize.
#[derive(Clone, Debug)]
pub struct TablePlan {
    /// `schema.table`, unquoted.
    pub name: String,
    /// Estimated size on disk (planner statistics).
    pub size: u64,
    /// Quoted identifier for SQL.
    pub ident: String,
    pub pk: Vec<String>,
    pub mode: ChecksumMode,
}

pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The tables pg_dump dumps data for: ordinary tables and partitions outside the system
/// schemas and not owned by extensions, with their primary keys and sizes. Sizes come from the
/// planner's statistics (`relpages`), which need no lock: `pg_relation_size()` would wait
/// behind any exclusive lock before pg_dump even starts.
async fn plan_tables(
    conn: &mut PgConnection,
    mode_of: &(dyn Fn(&str, u64) -> ChecksumMode + Sync),
) -> Result<Vec<TablePlan>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT n.nspname, c.relname,
                c.relpages::bigint * current_setting('block_size')::bigint AS size,
                coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                          FROM pg_index i
                          CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                          WHERE i.indrelid = c.oid AND i.indisprimary), '{}') AS pk
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r'
           AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                           WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
         ORDER BY 1, 2",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let schema: String = r.get(0);
            let table: String = r.get(1);
            let size: i64 = r.get(2);
            let pk: Vec<String> = r.get(3);
            let name = format!("{schema}.{table}");
            let size = u64::try_from(size).unwrap_or(0);
            TablePlan {
                mode: mode_of(&name, size),
                size,
                ident: format!("{}.{}", quote_ident(&schema), quote_ident(&table)),
                name,
                pk,
            }
        })
        .collect())
}

/// The summary query for one table (see the module docs).
#[must_use]
pub fn table_query(plan: &TablePlan) -> String {
    let table = &plan.ident;
    match plan.mode {
        ChecksumMode::Count => format!("SELECT count(*)::bigint, NULL::text FROM ONLY {table}"),
        ChecksumMode::Full => format!(
            "SELECT count(*)::bigint, coalesce(sum(hashtextextended(t::text, 0)), 0)::text
             FROM ONLY {table} t"
        ),
        ChecksumMode::Sampled => {
            // The sampling key is the primary key's text (a row-constructor cast would cost as
            // much as hashing the whole row); without a primary key, the row itself.
            let key = match plan.pk.as_slice() {
                [] => "t::text".to_string(),
                [one] => format!("t.{}::text", quote_ident(one)),
                many => {
                    let cols: Vec<String> = many
                        .iter()
                        .map(|c| format!("t.{}::text", quote_ident(c)))
                        .collect();
                    format!("concat_ws(chr(31), {})", cols.join(", "))
                }
            };
            format!(
                "SELECT count(*)::bigint,
                        coalesce(sum(hashtextextended(t::text, 0))
                                 FILTER (WHERE (hashtext({key}) & {}) = 0), 0)::text
                 FROM ONLY {table} t",
                SAMPLE_BUCKETS - 1
            )
        }
    }
}

/// Summarizes the given tables on `conn` (inside whatever transaction it is in).
///
/// # Errors
/// When a query fails.
pub async fn summarize_tables(
    conn: &mut PgConnection,
    plans: &[TablePlan],
) -> Result<Vec<TableSummary>, sqlx::Error> {
    let mut out = Vec::with_capacity(plans.len());
    for plan in plans {
        let row = sqlx::query(&table_query(plan))
            .fetch_one(&mut *conn)
            .await?;
        let rows: i64 = row.get(0);
        let sum: Option<String> = row.get(1);
        let rows = u64::try_from(rows).unwrap_or(0);
        let checksum = match (plan.mode, sum) {
            (ChecksumMode::Count, _) | (_, None) => None,
            (_, Some(sum)) => Some(format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{rows}:{sum}").as_bytes()))
            )),
        };
        out.push(TableSummary {
            name: plan.name.clone(),
            rows,
            mode: plan.mode,
            checksum,
        });
    }
    Ok(out)
}

/// Summarizes a (restored) database, using for each table the mode the manifest used.
///
/// # Errors
/// When the database cannot be read.
pub async fn summarize_like(
    conn: &mut PgConnection,
    manifest: &Manifest,
) -> Result<Vec<TableSummary>, sqlx::Error> {
    let modes: BTreeMap<String, ChecksumMode> = manifest
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.mode))
        .collect();
    let mode_of = move |name: &str, _size: u64| modes.get(name).copied().unwrap_or_default();
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let plans = plan_tables(&mut tx, &mode_of).await?;
    let out = summarize_tables(&mut tx, &plans).await?;
    tx.rollback().await?;
    Ok(out)
}

/// The transaction whose snapshot the dump reads; summarizing it produces the manifest.
pub struct SnapshotSession {
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
}

impl SnapshotSession {
    /// Computes the manifest in the exported snapshot, then ends the transaction.
    ///
    /// # Errors
    /// When a query fails (the server went away, say).
    pub async fn run(mut self) -> Result<Manifest, SourceError> {
        let tables = summarize_tables(&mut self.conn, &self.plans)
            .await
            .map_err(|e| SourceError::DumpFailed {
                source_name: self.source.clone(),
                message: format!("computing the manifest: {e}"),
            })?;
        // The snapshot must outlive its import by pg_dump (a small database is summarized
        // before pg_dump has even connected).
        for imported in self.imported.drain(..) {
            let _ = imported.await;
        }
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
pub async fn start(
    source: &str,
    cfg: &ServerSource,
    scratch: &Path,
) -> Result<StreamDump, SourceError> {
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

    let workdir = private_workdir(scratch, "pg-")?;
    let spawn_err = |e: std::io::Error| SourceError::DumpFailed {
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
        manifest: ManifestJob::Postgres(SnapshotSession {
            source: source.to_string(),
            conn,
            imported: vec![imported_data, imported_schema],
            plans,
            database,
            version,
            taken_at,
            files,
        }),
        workdir,
        taken_at,
    })
}

/// Makes sure a restore target database exists (creating it through the `postgres`
/// maintenance database when it does not) and counts the relations it already holds.
///
/// # Errors
/// When the server cannot be reached or the database cannot be created.
pub async fn prepare_target(connect: &Connect) -> Result<u64, sqlx::Error> {
    let mut conn = match connect.connect().await {
        Ok(conn) => conn,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
            let mut admin = connect.with_database("postgres").connect().await?;
            sqlx::query(&format!(
                "CREATE DATABASE {}",
                quote_ident(&connect.database())
            ))
            .execute(&mut admin)
            .await?;
            let _ = admin.close().await;
            connect.connect().await?
        }
        Err(e) => return Err(e),
    };
    let relations: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
           AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')",
    )
    .fetch_one(&mut conn)
    .await?;
    let _ = conn.close().await;
    Ok(u64::try_from(relations).unwrap_or(0))
}

/// How a `pg_restore` invocation is used.
#[derive(Clone, Copy, Debug)]
pub enum RestoreStep<'a> {
    /// The whole dump from stdin, in one transaction (backups without a schema-only dump).
    Whole,
    /// Schema and data from stdin in one transaction: into a fresh cluster with
    /// `wal_level=minimal`, tables created in the loading transaction are filled without WAL.
    SchemaAndData,
    /// One section (`pre-data`, `data` or `post-data`); from stdin when `file` is `None`; from
    /// a file with `jobs` parallel workers otherwise.
    Section {
        section: &'static str,
        file: Option<(&'a Path, u32)>,
    },
}

/// `pg_restore` into the target for one step of a restore.
///
/// # Errors
/// When the password file cannot be written.
pub fn restore_command(
    connect: &Connect,
    private_dir: &Path,
    clean: bool,
    skip_ownership: bool,
    step: RestoreStep<'_>,
) -> std::io::Result<Command> {
    let mut cmd = connect.command("pg_restore", private_dir)?;
    cmd.args([
        "--no-password",
        "--exit-on-error",
        "--dbname",
        &connect.database(),
    ]);
    if skip_ownership {
        cmd.args(["--no-owner", "--no-privileges"]);
    }
    match step {
        RestoreStep::Whole => {
            if clean {
                cmd.args(["--clean", "--if-exists"]);
            }
            cmd.arg("--single-transaction");
        }
        RestoreStep::SchemaAndData => {
            cmd.args([
                "--section=pre-data",
                "--section=data",
                "--single-transaction",
            ]);
        }
        RestoreStep::Section { section, file } => {
            cmd.arg(format!("--section={section}"));
            if clean && section == "pre-data" {
                cmd.args(["--clean", "--if-exists"]);
            }
            if let Some((path, jobs)) = file {
                cmd.arg(format!("--jobs={jobs}")).arg(path);
            }
        }
    }
    Ok(cmd)
}

/// `psql` applying `globals.sql` (roles without passwords, tablespaces) from stdin. Statements
/// for roles that already exist fail harmlessly, so errors do not stop it.
///
/// # Errors
/// When the password file cannot be written.
pub fn globals_command(connect: &Connect, private_dir: &Path) -> std::io::Result<Command> {
    let mut cmd = connect.command("psql", private_dir)?;
    cmd.args([
        "--no-password",
        "--no-psqlrc",
        "--quiet",
        "-v",
        "ON_ERROR_STOP=0",
        "--dbname",
        &connect.database(),
        "--file",
        "-",
    ]);
    Ok(cmd)
}

/// Summarizes a restored database the way its manifest was made, on two connections in
/// parallel (a restored database does not change while it is verified).
///
/// # Errors
/// When the database cannot be read.
pub async fn summarize_target(
    connect: &Connect,
    manifest: &Manifest,
) -> Result<Vec<TableSummary>, sqlx::Error> {
    let modes: BTreeMap<String, ChecksumMode> = manifest
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.mode))
        .collect();
    let mode_of = move |name: &str, _size: u64| modes.get(name).copied().unwrap_or_default();
    let mut first = connect.connect().await?;
    let mut second = connect.connect().await?;
    let mut plans = plan_tables(&mut first, &mode_of).await?;
    // Largest first, dealt alternately, so both connections get a fair share.
    plans.sort_by_key(|p| std::cmp::Reverse(p.size));
    let (a, b): (Vec<_>, Vec<_>) = plans.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let a: Vec<TablePlan> = a.into_iter().map(|(_, p)| p).collect();
    let b: Vec<TablePlan> = b.into_iter().map(|(_, p)| p).collect();
    let (ra, rb) = tokio::join!(
        summarize_tables(&mut first, &a),
        summarize_tables(&mut second, &b)
    );
    let _ = first.close().await;
    let _ = second.close().await;
    let mut out = ra?;
    out.extend(rb?);
    out.sort_by(|x, y| x.name.cmp(&y.name));
    Ok(out)
}
