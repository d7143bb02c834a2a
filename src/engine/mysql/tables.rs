//! Table rows of a MariaDB/MySQL database: row counts and content checksums.
//!
//! Checksum of a table with a stream (mode `rows`): the digest of its rows as the stream
//! carries them (`streams::digest_table`, `engine::rows`). Otherwise (older backups, dumps by
//! `mysqldump`): the count of its rows and two sums of the halves of
//! `MD5(CONCAT_WS(CHAR(31), QUOTE(col)…))` — order-independent, like the PostgreSQL one.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use sqlx::mysql::MySqlConnection;
use sqlx::{Connection, Row};

use super::{Connect, quote_ident};
use crate::model::{ChecksumMode, Manifest, TableSummary};

/// Rows whose primary key hashes into 1 of this many buckets are hashed in `sampled` mode.
const SAMPLE_BUCKETS: u32 = 128;

/// One table to summarize.
#[derive(Clone, Debug)]
pub struct TablePlan {
    pub name: String,
    /// Every column, in order (what the `MD5` checksum reads).
    pub columns: Vec<String>,
    /// The columns a stream carries: all but the generated ones.
    pub stored: Vec<String>,
    pub pk: Vec<String>,
    pub mode: ChecksumMode,
    /// Bytes of data, as the server estimates them.
    pub size: u64,
}

pub(super) async fn plan_tables(
    conn: &mut MySqlConnection,
    mode_of: &(dyn Fn(&str, u64) -> ChecksumMode + Sync),
) -> Result<Vec<TablePlan>, sqlx::Error> {
    let database = super::objects::current_database(conn).await?;
    let tables = sqlx::query(
        "SELECT CAST(TABLE_NAME AS CHAR), CAST(COALESCE(DATA_LENGTH, 0) AS UNSIGNED)
         FROM information_schema.TABLES
         WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE'
         ORDER BY TABLE_NAME",
    )
    .bind(&database)
    .fetch_all(&mut *conn)
    .await?;
    let mut plans = Vec::with_capacity(tables.len());
    for row in tables {
        let name: String = row.get(0);
        let size: u64 = row.get(1);
        let described: Vec<(String, bool)> = sqlx::query_as(
            "SELECT CAST(COLUMN_NAME AS CHAR),
                    EXTRA LIKE '%VIRTUAL GENERATED%' OR EXTRA LIKE '%STORED GENERATED%'
                    OR EXTRA LIKE '%PERSISTENT GENERATED%'
             FROM information_schema.COLUMNS
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
        )
        .bind(&database)
        .bind(&name)
        .fetch_all(&mut *conn)
        .await?;
        let columns = described.iter().map(|(c, _)| c.clone()).collect();
        let stored = described
            .into_iter()
            .filter(|(_, generated)| !generated)
            .map(|(c, _)| c)
            .collect();
        let pk: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(COLUMN_NAME AS CHAR) FROM information_schema.STATISTICS
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY'
             ORDER BY SEQ_IN_INDEX",
        )
        .bind(&database)
        .bind(&name)
        .fetch_all(&mut *conn)
        .await?;
        plans.push(TablePlan {
            mode: mode_of(&name, size),
            name,
            columns,
            stored,
            pk,
            size,
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
        // `rows` tables are digested from their rows (`summarize_tables`); this query would
        // hash every row too.
        ChecksumMode::Full | ChecksumMode::Rows => {
            format!("SELECT {sums} FROM (SELECT MD5({row}) AS h FROM {table}) s")
        }
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
        if plan.mode == ChecksumMode::Rows {
            let done = super::streams::digest_table(conn, &plan.name, &plan.stored).await?;
            out.push(TableSummary {
                name: plan.name.clone(),
                rows: done.rows,
                mode: ChecksumMode::Rows,
                checksum: Some(done.checksum),
            });
            continue;
        }
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

/// Summarizes a (restored) database, using for each table the mode the manifest used and,
/// for a table that had a stream, the stream's columns; tables in `checked` (read back right
/// after their load) are taken from there.
///
/// # Errors
/// When the database cannot be read.
pub async fn summarize_like(
    conn: &mut MySqlConnection,
    manifest: &Manifest,
    checked: &BTreeMap<String, TableSummary>,
) -> Result<Vec<TableSummary>, sqlx::Error> {
    let modes: BTreeMap<String, ChecksumMode> = manifest
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.mode))
        .collect();
    let mode_of = move |name: &str, _size: u64| modes.get(name).copied().unwrap_or_default();
    sqlx::query("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .execute(&mut *conn)
        .await?;
    let mut plans = plan_tables(conn, &mode_of).await?;
    let columns = manifest.stream_columns();
    for plan in &mut plans {
        if let Some(stream_columns) = columns.get(plan.name.as_str()) {
            plan.stored.clone_from(stream_columns);
        }
    }
    let (done, todo): (Vec<TablePlan>, Vec<TablePlan>) = plans
        .into_iter()
        .partition(|p| checked.contains_key(&p.name));
    let out = summarize_tables(conn, &todo).await;
    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    let mut out = out?;
    out.extend(done.iter().filter_map(|p| checked.get(&p.name).cloned()));
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Summarizes a restored database the way its manifest was made.
///
/// # Errors
/// When the database cannot be read.
pub async fn summarize_target(
    connect: &Connect,
    manifest: &Manifest,
    checked: &BTreeMap<String, TableSummary>,
) -> Result<Vec<TableSummary>, sqlx::Error> {
    let mut conn = connect.connect().await?;
    let out = summarize_like(&mut conn, manifest, checked).await;
    let _ = conn.close().await;
    out
}
