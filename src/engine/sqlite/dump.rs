//! SQLite dumps: an online, consistent copy with `VACUUM INTO`, and table summaries.
//!
//! `VACUUM INTO` reads the live database inside one read transaction, so the copy is a
//! consistent snapshot even while the CRM keeps writing (WAL or rollback journal). The copy is
//! written into a private 0700 scratch directory, checked with `PRAGMA quick_check`, summarized
//! (row counts and content checksums from exactly that copy), and removed once stored.
//!
//! Content checksum of a table: SHA-256 over its rows in primary-key order (all columns when
//! there is no primary key), each row encoded as SQLite's `quote()` of every column joined by
//! U+001F and ended by a newline. `quote()` distinguishes NULL, integers, reals, text and blobs,
//! so the checksum changes when any value or type changes, and it is independent of page
//! layout, so a restored file, or the same data loaded elsewhere, gives the same checksum.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};

use crate::engine::{Dump, DumpFile, EngineError, file_digest, private_workdir};
use crate::model::{ChecksumMode, Engine, Manifest, ManifestFile, TableSummary, manifest};

/// The file name a SQLite source is stored under: `<stem>.sqlite`.
#[must_use]
pub fn stored_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map_or_else(|| "database".into(), |s| s.to_string_lossy().into_owned());
    format!("{stem}.sqlite")
}

pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(super) async fn open(path: &Path, read_only: bool) -> Result<SqliteConnection, sqlx::Error> {
    SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .read_only(read_only)
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(30))
        .disable_statement_logging()
        .connect()
        .await
}

/// Makes a consistent copy of the live database at `path` and describes it.
///
/// # Errors
/// When the database cannot be opened or copied, or the copy is not sound.
pub(super) async fn dump(source: &str, path: &Path, scratch: &Path) -> Result<Dump, EngineError> {
    let unavailable = |e: &dyn std::fmt::Display| EngineError::Unavailable {
        source_name: source.to_string(),
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    if !path.is_file() {
        return Err(unavailable(&"the file does not exist"));
    }
    let workdir = private_workdir(scratch, "dump-")?;
    let name = stored_name(path);
    let copy = workdir.path().join(&name);
    let copy_text = copy.to_str().ok_or_else(|| EngineError::Scratch {
        path: scratch.to_path_buf(),
        message: "scratch path is not UTF-8".into(),
    })?;

    let mut conn = open(path, true).await.map_err(|e| unavailable(&e))?;
    let version: String = sqlx::query_scalar("SELECT sqlite_version()")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| unavailable(&e))?;
    let taken_at = crate::model::time::now();
    sqlx::query("VACUUM INTO ?")
        .bind(copy_text)
        .execute(&mut conn)
        .await
        .map_err(|e| EngineError::DumpFailed {
            source_name: source.to_string(),
            message: e.to_string(),
        })?;
    conn.close().await.ok();

    let mut copy_conn = open(&copy, true).await.map_err(|e| EngineError::Corrupt {
        source_name: source.to_string(),
        message: e.to_string(),
    })?;
    let check: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(&mut copy_conn)
        .await
        .map_err(|e| EngineError::Corrupt {
            source_name: source.to_string(),
            message: e.to_string(),
        })?;
    if check != "ok" {
        return Err(EngineError::Corrupt {
            source_name: source.to_string(),
            message: check,
        });
    }
    let summary_err = |e: sqlx::Error| EngineError::Summary {
        path: copy.clone(),
        message: e.to_string(),
    };
    let tables = summarize_connection(&mut copy_conn)
        .await
        .map_err(summary_err)?;
    let objects = super::objects::describe(&mut copy_conn)
        .await
        .map_err(summary_err)?;
    copy_conn.close().await.ok();

    let (size, sha256) = file_digest(&copy).map_err(|e| EngineError::Scratch {
        path: copy.clone(),
        message: e.to_string(),
    })?;
    let manifest = Manifest {
        format: manifest::MANIFEST_FORMAT,
        engine: Engine::Sqlite,
        source: source.to_string(),
        database: name.trim_end_matches(".sqlite").to_string(),
        taken_at,
        method: format!("SQLite {version} VACUUM INTO"),
        files: vec![ManifestFile {
            name: name.clone(),
            size: Some(size),
            sha256: Some(sha256.clone()),
        }],
        tables,
        objects: Some(objects),
        streams: Vec::new(),
        binlog: None,
        restore_point: None,
        custodian_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    Ok(Dump {
        files: vec![DumpFile {
            name,
            path: copy,
            size,
            sha256,
        }],
        manifest,
        workdir,
    })
}

/// Row counts and content checksums of every table of a SQLite database file.
///
/// # Errors
/// When the file cannot be opened or read as a SQLite database.
pub async fn summarize(path: &Path) -> Result<Vec<TableSummary>, EngineError> {
    let err = |e: sqlx::Error| EngineError::Summary {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut conn = open(path, true).await.map_err(err)?;
    let tables = summarize_connection(&mut conn).await.map_err(err)?;
    conn.close().await.ok();
    Ok(tables)
}

pub(super) async fn summarize_connection(
    conn: &mut SqliteConnection,
) -> Result<Vec<TableSummary>, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema \
         WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
           AND sql NOT LIKE 'CREATE VIRTUAL%' \
         ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        out.push(summarize_table(conn, &name).await?);
    }
    Ok(out)
}

async fn summarize_table(
    conn: &mut SqliteConnection,
    table: &str,
) -> Result<TableSummary, sqlx::Error> {
    let columns = sqlx::query(&format!("PRAGMA table_info({})", quote_ident(table)))
        .fetch_all(&mut *conn)
        .await?;
    let cols: Vec<(String, i64)> = columns
        .iter()
        .map(|r| Ok((r.try_get::<String, _>("name")?, r.try_get::<i64, _>("pk")?)))
        .collect::<Result<_, sqlx::Error>>()?;
    let row_expr = cols
        .iter()
        .map(|(c, _)| format!("quote({})", quote_ident(c)))
        .collect::<Vec<_>>()
        .join(" || char(31) || ");
    let mut key: Vec<&(String, i64)> = cols.iter().filter(|(_, pk)| *pk > 0).collect();
    key.sort_by_key(|(_, pk)| *pk);
    // Without a primary key, every column in binary order: a total order on distinct rows
    // (and identical rows are indistinguishable), whatever the columns' collations.
    let order = if key.is_empty() {
        cols.iter()
            .map(|(c, _)| format!("{} COLLATE BINARY", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        key.iter()
            .map(|(c, _)| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sql = format!(
        "SELECT {row_expr} FROM {} ORDER BY {order}",
        quote_ident(table)
    );
    let mut rows = sqlx::query_scalar::<_, String>(&sql).fetch(&mut *conn);
    let mut hasher = Sha256::new();
    let mut count = 0u64;
    while let Some(row) = rows.try_next().await? {
        hasher.update(row.as_bytes());
        hasher.update(b"\n");
        count += 1;
    }
    Ok(TableSummary {
        name: table.to_string(),
        rows: count,
        mode: ChecksumMode::Full,
        checksum: Some(format!("sha256:{}", hex::encode(hasher.finalize()))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn make_db(path: &Path, sql: &str) {
        let mut conn = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }

    #[tokio::test]
    async fn dump_is_consistent_private_and_described() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("crm.db");
        make_db(
            &db,
            "CREATE TABLE c(id INTEGER PRIMARY KEY, name TEXT, data BLOB);
             INSERT INTO c VALUES (1, '张伟', x'00ff'), (2, NULL, NULL);
             CREATE TABLE log(msg TEXT);
             INSERT INTO log VALUES ('b'), ('a');",
        )
        .await;
        let scratch = dir.path().join("scratch");
        let dump = dump("crm", &db, &scratch).await.unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dump.workdir())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(dump.files[0].name, "crm.sqlite");
        let names: Vec<_> = dump
            .manifest
            .tables
            .iter()
            .map(|t| (t.name.as_str(), t.rows))
            .collect();
        assert_eq!(names, [("c", 2), ("log", 2)]);
        // The copy summarizes exactly like the original.
        assert_eq!(summarize(&db).await.unwrap(), dump.manifest.tables);
        let workdir = dump.workdir().to_path_buf();
        drop(dump);
        assert!(!workdir.exists(), "scratch directory must be removed");
    }

    #[tokio::test]
    async fn checksums_see_value_and_type_changes() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.db");
        let b = dir.path().join("b.db");
        make_db(
            &a,
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v); INSERT INTO t VALUES (1, 1);",
        )
        .await;
        make_db(
            &b,
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v); INSERT INTO t VALUES (1, '1');",
        )
        .await;
        let sa = summarize(&a).await.unwrap();
        let sb = summarize(&b).await.unwrap();
        assert_eq!(sa[0].rows, sb[0].rows);
        assert_ne!(sa[0].checksum, sb[0].checksum);
    }

    #[tokio::test]
    async fn missing_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = dump("crm", &dir.path().join("nope.db"), dir.path())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "source.unavailable");
        assert!(err.to_string().contains("source crm"), "{err}");
    }
}
