//! MariaDB/MySQL sources: `mariadb-dump --single-transaction` (or `mysqldump`) streamed
//! straight into the repository, with a manifest consistent with the dump.
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
//! database user needs `RELOAD` (for the lock) besides what the dump needs.
//!
//! Checksum of a table: the count of its rows and two sums of the halves of
//! `MD5(CONCAT_WS(CHAR(31), QUOTE(col)…))` — order-independent, like the PostgreSQL one.
//! Credentials reach the tools through a `--defaults-extra-file` in a private 0700 directory.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use sqlx::{ConnectOptions, Connection, Row};
use tokio::sync::oneshot;

use super::process::DumpProcess;
use super::{DumpStream, FirstBytes, ManifestJob, SourceError, StreamDump, private_workdir};
use crate::config::ServerSource;
use crate::model::{ChecksumMode, Engine, Manifest, ManifestFile, TableSummary, manifest, time};
use crate::secret::Secret;

/// Rows whose primary key hashes into 1 of this many buckets are hashed in `sampled` mode.
const SAMPLE_BUCKETS: u32 = 128;
/// How long the global read lock may wait for the dump to start.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// Connection settings resolved from the configuration.
#[derive(Clone)]
pub struct Connect {
    options: MySqlConnectOptions,
    password: Option<Secret>,
    ssl_ca: Option<String>,
}

impl Connect {
    /// Parses a `mysql://` or `mariadb://` URL and adds the password, if any.
    ///
    /// # Errors
    /// When the URL cannot be parsed.
    pub fn new(url: &str, password: Option<Secret>) -> Result<Self, String> {
        let url = url
            .strip_prefix("mariadb://")
            .map_or_else(|| url.to_string(), |rest| format!("mysql://{rest}"));
        let mut options = MySqlConnectOptions::from_str(&url)
            .map_err(|e| format!("invalid MySQL URL: {e}"))?
            .charset("utf8mb4")
            .disable_statement_logging();
        if let Some(password) = &password {
            options = options.password(password.expose());
        }
        let ssl_ca = url::Url::parse(&url).ok().and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "ssl-ca" || k == "sslca")
                .map(|(_, v)| v.into_owned())
        });
        Ok(Self {
            options,
            password,
            ssl_ca,
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
        self.options.get_database().unwrap_or_default().to_string()
    }

    /// `user@host:port/db` — never a password.
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
    pub async fn connect(&self) -> Result<MySqlConnection, sqlx::Error> {
        tokio::time::timeout(Duration::from_secs(30), self.options.connect())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    /// A client tool command whose first argument is a private `--defaults-extra-file`
    /// holding the connection settings and the password.
    ///
    /// # Errors
    /// When the option file cannot be written.
    pub fn command(&self, tool: &str, private_dir: &Path) -> io::Result<Command> {
        let path = private_dir.join("client.cnf");
        if !path.exists() {
            let mut text = String::from("[client]\n");
            text.push_str(&format!(
                "user={}\n",
                quote_option(self.options.get_username())
            ));
            if let Some(password) = &self.password {
                text.push_str(&format!("password={}\n", quote_option(password.expose())));
            }
            match self.options.get_socket() {
                Some(socket) => {
                    text.push_str(&format!(
                        "socket={}\n",
                        quote_option(&socket.to_string_lossy())
                    ));
                }
                None => {
                    text.push_str(&format!("host={}\n", quote_option(self.options.get_host())));
                    text.push_str(&format!("port={}\n", self.options.get_port()));
                    text.push_str("protocol=TCP\n");
                }
            }
            match self.options.get_ssl_mode() {
                MySqlSslMode::Disabled => text.push_str("skip-ssl\n"),
                MySqlSslMode::Preferred => {}
                MySqlSslMode::Required => text.push_str("ssl\n"),
                MySqlSslMode::VerifyCa | MySqlSslMode::VerifyIdentity => {
                    text.push_str("ssl\nssl-verify-server-cert\n");
                }
            }
            if let Some(ca) = &self.ssl_ca {
                text.push_str(&format!("ssl-ca={}\n", quote_option(ca)));
            }
            crate::secret::write_new_secret_file(&path, &Secret::new(text))?;
        }
        let mut cmd = super::process::clean_command(tool);
        cmd.arg(format!("--defaults-extra-file={}", path.display()));
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

/// A value for a MySQL option file: double-quoted, with `\` and `"` escaped.
fn quote_option(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The first of `names` found in `PATH` (MariaDB installs `mariadb-dump`, MySQL `mysqldump`).
#[must_use]
pub fn tool(names: &[&'static str]) -> &'static str {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    names
        .iter()
        .copied()
        .find(|name| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
        .unwrap_or(names[0])
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

pub(crate) fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// One table to summarize.
#[derive(Clone, Debug)]
pub struct TablePlan {
    pub name: String,
    pub columns: Vec<String>,
    pub pk: Vec<String>,
    pub mode: ChecksumMode,
}

async fn plan_tables(
    conn: &mut MySqlConnection,
    mode_of: &(dyn Fn(&str, u64) -> ChecksumMode + Sync),
) -> Result<Vec<TablePlan>, sqlx::Error> {
    let tables = sqlx::query(
        "SELECT CAST(TABLE_NAME AS CHAR), CAST(COALESCE(DATA_LENGTH, 0) AS UNSIGNED)
         FROM information_schema.TABLES
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'
         ORDER BY TABLE_NAME",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut plans = Vec::with_capacity(tables.len());
    for row in tables {
        let name: String = row.get(0);
        let size: u64 = row.get(1);
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.COLUMNS
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
        )
        .bind(&name)
        .fetch_all(&mut *conn)
        .await?;
        let pk: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.STATISTICS
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY'
             ORDER BY SEQ_IN_INDEX",
        )
        .bind(&name)
        .fetch_all(&mut *conn)
        .await?;
        plans.push(TablePlan {
            mode: mode_of(&name, size),
            name,
            columns,
            pk,
        });
    }
    Ok(plans)
}

fn concat(columns: &[String]) -> String {
    let quoted: Vec<String> = columns
        .iter()
        .map(|c| format!("QUOTE({})", quote_ident(c)))
        .collect();
    format!("CONCAT_WS(CHAR(31), {})", quoted.join(", "))
}

/// The summary query for one table (see the module docs).
#[must_use]
pub fn table_query(plan: &TablePlan) -> String {
    let sums = "COUNT(*),
        CAST(COALESCE(SUM(CAST(CONV(SUBSTRING(h, 1, 16), 16, 10) AS DECIMAL(20, 0))), 0) AS CHAR),
        CAST(COALESCE(SUM(CAST(CONV(SUBSTRING(h, 17, 16), 16, 10) AS DECIMAL(20, 0))), 0) AS CHAR)";
    let table = quote_ident(&plan.name);
    let row = concat(&plan.columns);
    match plan.mode {
        ChecksumMode::Count => {
            format!("SELECT COUNT(*), CAST(NULL AS CHAR), CAST(NULL AS CHAR) FROM {table}")
        }
        ChecksumMode::Full => format!("SELECT {sums} FROM (SELECT MD5({row}) AS h FROM {table}) s"),
        ChecksumMode::Sampled => {
            let key = if plan.pk.is_empty() {
                row.clone()
            } else {
                concat(&plan.pk)
            };
            format!(
                "SELECT {sums} FROM (SELECT CASE WHEN CRC32({key}) % {SAMPLE_BUCKETS} = 0 THEN MD5({row}) END AS h
                                     FROM {table}) s"
            )
        }
    }
}

/// Summarizes the given tables on `conn`.
///
/// # Errors
/// When a query fails.
pub async fn summarize_tables(
    conn: &mut MySqlConnection,
    plans: &[TablePlan],
) -> Result<Vec<TableSummary>, sqlx::Error> {
    let mut out = Vec::with_capacity(plans.len());
    for plan in plans {
        let row = sqlx::query(&table_query(plan))
            .fetch_one(&mut *conn)
            .await?;
        let rows: i64 = row.get(0);
        let a: Option<String> = row.get(1);
        let b: Option<String> = row.get(2);
        let rows = u64::try_from(rows).unwrap_or(0);
        let checksum = match (plan.mode, a, b) {
            (ChecksumMode::Count, _, _) => None,
            (_, Some(a), Some(b)) => Some(format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{rows}:{a}:{b}").as_bytes()))
            )),
            _ => None,
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
    conn: &mut MySqlConnection,
    manifest: &Manifest,
) -> Result<Vec<TableSummary>, sqlx::Error> {
    let modes: std::collections::BTreeMap<String, ChecksumMode> = manifest
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.mode))
        .collect();
    let mode_of = move |name: &str, _size: u64| modes.get(name).copied().unwrap_or_default();
    sqlx::query("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .execute(&mut *conn)
        .await?;
    let plans = plan_tables(conn, &mode_of).await?;
    let out = summarize_tables(conn, &plans).await;
    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    out
}

/// The locked moment: the lock connection, the snapshot transaction, and the signal that the
/// dump has started. Running it releases the lock and computes the manifest.
pub struct SnapshotSession {
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
    pub async fn run(mut self) -> Result<Manifest, SourceError> {
        let waited = tokio::time::timeout(LOCK_WAIT, &mut self.started).await;
        let _ = sqlx::query("UNLOCK TABLES").execute(&mut self.lock).await;
        let _ = self.lock.close().await;
        if waited.is_err() {
            return Err(SourceError::DumpFailed {
                source_name: self.source,
                message: format!(
                    "{} produced nothing within {} s while writes were held; the manifest could not be tied to the dump",
                    self.tool,
                    LOCK_WAIT.as_secs()
                ),
            });
        }
        let tables = summarize_tables(&mut self.conn, &self.plans)
            .await
            .map_err(|e| SourceError::DumpFailed {
                source_name: self.source.clone(),
                message: format!("computing the manifest: {e}"),
            })?;
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
            custodian_version: env!("CARGO_PKG_VERSION").to_string(),
        })
    }
}

/// Name of the dump inside the snapshot.
#[must_use]
pub fn dump_name(database: &str) -> String {
    format!("{database}.sql")
}

/// Starts a consistent dump (see the module docs).
///
/// # Errors
/// When the server cannot be reached, the lock cannot be taken, or the tool cannot start.
pub async fn start(
    source: &str,
    cfg: &ServerSource,
    scratch: &Path,
) -> Result<StreamDump, SourceError> {
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
        .map_err(|e| SourceError::DumpFailed {
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
            return Err(SourceError::DumpFailed {
                source_name: source.to_string(),
                message: e.to_string(),
            });
        }
    };
    let (tx, started) = oneshot::channel();
    let stdout = process
        .take_stdout()
        .ok_or_else(|| SourceError::DumpFailed {
            source_name: source.to_string(),
            message: "the dump tool has no output".into(),
        })?;
    let name = dump_name(&database);
    Ok(StreamDump {
        streams: vec![DumpStream {
            name: name.clone(),
            reader: Box::new(FirstBytes::new(stdout, tx)),
        }],
        processes: vec![process],
        manifest: ManifestJob::Mysql(SnapshotSession {
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
        }),
        workdir,
        taken_at,
    })
}

/// Makes sure a restore target database exists and counts the tables it already holds.
///
/// # Errors
/// When the server cannot be reached or the database cannot be created.
pub async fn prepare_target(connect: &Connect) -> Result<u64, sqlx::Error> {
    let mut admin = connect
        .with_database("information_schema")
        .connect()
        .await?;
    let database = connect.database();
    sqlx::query(&format!(
        "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4",
        quote_ident(&database)
    ))
    .execute(&mut admin)
    .await?;
    let tables: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?")
            .bind(&database)
            .fetch_one(&mut admin)
            .await?;
    let _ = admin.close().await;
    Ok(u64::try_from(tables).unwrap_or(0))
}

/// The `mariadb` (or `mysql`) client loading a dump from stdin into the target database.
///
/// # Errors
/// When the option file cannot be written.
pub fn restore_command(connect: &Connect, private_dir: &Path) -> io::Result<Command> {
    let mut cmd = connect.command(tool(&["mariadb", "mysql"]), private_dir)?;
    cmd.args([
        "--binary-mode",
        "--default-character-set=utf8mb4",
        &format!("--database={}", connect.database()),
    ]);
    Ok(cmd)
}

/// Summarizes a restored database the way its manifest was made.
///
/// # Errors
/// When the database cannot be read.
pub async fn summarize_target(
    connect: &Connect,
    manifest: &Manifest,
) -> Result<Vec<TableSummary>, sqlx::Error> {
    let mut conn = connect.connect().await?;
    let out = summarize_like(&mut conn, manifest).await;
    let _ = conn.close().await;
    out
}
