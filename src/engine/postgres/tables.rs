//! Table rows: which tables the dump carries data for, and the row count and content checksum
//! of each, computed in the dump's snapshot (backup) or on the restored database.
//!
//! Checksum of a table (see [`table_query`]): the count of its rows and the exact (numeric) sum
//! of the 64-bit `hashtextextended(row::text, 0)` of every row — an order-independent digest,
//! so no sort is needed and a restored table (whatever its physical order) gives the same
//! value. `hashtextextended` is the hash PostgreSQL's hash partitioning relies on, so it is
//! stable across versions, and it costs little more than producing the row's text (measured
//! here: 4× cheaper than `md5`). `sampled` hashes only the rows whose primary key hashes into
//! 1/128 (still counting every row); `count` only counts.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};

use futures_util::StreamExt;

use super::{Connect, quote_ident, streams};
use crate::engine::rows::RowDigest;
use crate::model::{ChecksumMode, Manifest, TableSummary};

/// Rows whose primary key hashes into 1 of this many buckets are hashed in `sampled` mode.
const SAMPLE_BUCKETS: i32 = 128;

/// One table to summarize.
#[derive(Clone, Debug)]
pub struct TablePlan {
    /// `schema.table`, unquoted.
    pub name: String,
    pub schema: String,
    pub table: String,
    /// Estimated size on disk (planner statistics).
    pub size: u64,
    /// Quoted identifier for SQL.
    pub ident: String,
    pub pk: Vec<String>,
    /// The columns a `COPY` carries, in order: all but dropped and generated ones.
    pub columns: Vec<String>,
    pub mode: ChecksumMode,
    /// The primary key is one integer column (`smallint`, `integer`, `bigint`): the table can
    /// be streamed in key ranges.
    pub int_key: bool,
}

/// The tables pg_dump dumps data for: ordinary tables and partitions outside the system
/// schemas and not owned by extensions, with their primary keys and sizes. Sizes come from the
/// planner's statistics (`relpages`), which need no lock: `pg_relation_size()` would wait
/// behind any exclusive lock before pg_dump even starts.
pub(super) async fn plan_tables(
    conn: &mut PgConnection,
    mode_of: &(dyn Fn(&str, u64) -> ChecksumMode + Sync),
) -> Result<Vec<TablePlan>, sqlx::Error> {
    let version: String = sqlx::query_scalar("SHOW server_version_num")
        .fetch_one(&mut *conn)
        .await?;
    // Generated columns (PostgreSQL 12 and later) are recomputed on load, never copied.
    let generated = if version.parse::<u32>().unwrap_or(0) >= 120_000 {
        "AND a.attgenerated = ''"
    } else {
        ""
    };
    let rows = sqlx::query(&format!(
        "SELECT n.nspname, c.relname,
                c.relpages::bigint * current_setting('block_size')::bigint AS size,
                coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                          FROM pg_index i
                          CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                          WHERE i.indrelid = c.oid AND i.indisprimary), '{{}}') AS pk,
                coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum)
                          FROM pg_attribute a
                          WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                            {generated}), '{{}}') AS columns,
                coalesce((SELECT i.indnatts = 1 AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
                          FROM pg_index i
                          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
                          WHERE i.indrelid = c.oid AND i.indisprimary), false) AS int_key
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r'
           AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                           WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
         ORDER BY 1, 2"
    ))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let schema: String = r.get(0);
            let table: String = r.get(1);
            let size: i64 = r.get(2);
            let pk: Vec<String> = r.get(3);
            let columns: Vec<String> = r.get(4);
            let int_key: bool = r.get(5);
            let name = format!("{schema}.{table}");
            let size = u64::try_from(size).unwrap_or(0);
            TablePlan {
                mode: mode_of(&name, size),
                size,
                ident: format!("{}.{}", quote_ident(&schema), quote_ident(&table)),
                name,
                schema,
                table,
                pk,
                columns,
                int_key,
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
        // A `rows` digest comes from a COPY ([`digest_table`]); its row count is this query's.
        ChecksumMode::Full | ChecksumMode::Rows => format!(
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
        if plan.mode == ChecksumMode::Rows {
            out.push(digest_table(conn, plan).await?);
            continue;
        }
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

/// The `rows` digest of a table (see `engine::rows`), from a `COPY` of its columns in
/// whatever order its heap holds them: no sort, no index needed, so a restore can check a
/// table as soon as its load ends.
///
/// # Errors
/// When the table cannot be read.
pub async fn digest_table(
    conn: &mut PgConnection,
    plan: &TablePlan,
) -> Result<TableSummary, sqlx::Error> {
    // Row-level security must not hide rows from the check: reading a table it would filter
    // is an error, never a smaller table.
    for setting in streams::SETTINGS.iter().chain(&["SET row_security = off"]) {
        sqlx::query(setting).execute(&mut *conn).await?;
    }
    let mut digest = RowDigest::default();
    {
        let mut copy = conn
            .copy_out_raw(&streams::copy_out(&plan.ident, &plan.columns, None, &[]))
            .await?;
        while let Some(chunk) = copy.next().await {
            digest.update(&chunk?);
        }
    }
    let done = digest.finish();
    Ok(TableSummary {
        name: plan.name.clone(),
        rows: done.rows,
        mode: ChecksumMode::Rows,
        checksum: Some(done.checksum),
    })
}

/// The tables of a (restored) database, each planned in the mode its manifest used and, for
/// a table that had a stream, with the stream's columns (so the read-back copies exactly what
/// the stream carried).
async fn plans_like(
    conn: &mut PgConnection,
    manifest: &Manifest,
) -> Result<Vec<TablePlan>, sqlx::Error> {
    let modes: BTreeMap<String, ChecksumMode> = manifest
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.mode))
        .collect();
    let mode_of = move |name: &str, _size: u64| modes.get(name).copied().unwrap_or_default();
    let mut plans = plan_tables(conn, &mode_of).await?;
    let columns = manifest.stream_columns();
    for plan in &mut plans {
        if let Some(stream_columns) = columns.get(plan.name.as_str()) {
            plan.columns.clone_from(stream_columns);
        }
    }
    Ok(plans)
}

/// Summarizes a (restored) database, using for each table the mode the manifest used.
///
/// # Errors
/// When the database cannot be read.
pub async fn summarize_like(
    conn: &mut PgConnection,
    manifest: &Manifest,
) -> Result<Vec<TableSummary>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let plans = plans_like(&mut tx, manifest).await?;
    let out = summarize_tables(&mut tx, &plans).await?;
    tx.rollback().await?;
    Ok(out)
}

/// Summarizes a restored database the way its manifest was made, on two connections in
/// parallel (a restored database does not change while it is verified). Tables in `checked`
/// were read back right after their load and are taken as they are.
///
/// # Errors
/// When the database cannot be read.
pub async fn summarize_target(
    connect: &Connect,
    manifest: &Manifest,
    checked: &BTreeMap<String, TableSummary>,
) -> Result<Vec<TableSummary>, sqlx::Error> {
    let mut first = connect.connect().await?;
    let mut second = connect.connect().await?;
    let mut plans = plans_like(&mut first, manifest).await?;
    let mut out: Vec<TableSummary> = Vec::new();
    plans.retain(|p| match checked.get(&p.name) {
        Some(summary) if summary.mode == p.mode => {
            out.push(summary.clone());
            false
        }
        _ => true,
    });
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
    out.extend(ra?);
    out.extend(rb?);
    out.sort_by(|x, y| x.name.cmp(&y.name));
    Ok(out)
}
