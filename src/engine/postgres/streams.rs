//! Table streams: each table's rows as a file of its own in the snapshot, in `COPY` text
//! format, so that a backup chunks, hashes, compresses and encrypts several tables at once and
//! a restore loads them in parallel.
//!
//! A stream is `COPY (SELECT <columns> FROM ONLY <table> ORDER BY <primary key>) TO STDOUT`,
//! run by Custodian itself on a connection of its own, in a `REPEATABLE READ` transaction that
//! imports the dump's exported snapshot, so every stream, the schema dump and the manifest see
//! one state. Key order keeps an updated row where it was (physical order moves it to the end
//! of the table, dirtying two chunks), so an incremental backup stores little more than the
//! changed rows; a table without a primary key keeps physical order, which the manifest
//! records. A table larger than its share of the streams is split into key ranges. Text, not binary, `COPY`: it loads
//! into any later server version and a restic-only user can load it with `psql \copy`
//! (contrib/restic-restore-postgres).
//!
//! Settings that shape a row's text are fixed on both sides ([`SETTINGS`]), so the digest of a
//! stream and the digest of the restored table (`tables::digest_table`) read the same bytes.

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::quote_ident;
use crate::engine::lazy::{LazyStream, Piece, Start};
use crate::engine::process::ProcessGroups;

/// Session settings for every stream, load and read-back: a row's text must not depend on
/// the server's or the role's defaults. UTF8 converts losslessly to and from every server
/// encoding (SQL_ASCII passes bytes through).
pub const SETTINGS: &[&str] = &[
    "SET client_encoding = 'UTF8'",
    "SET datestyle = 'ISO, MDY'",
    "SET intervalstyle = 'postgres'",
    "SET extra_float_digits = 3",
    "SET bytea_output = 'hex'",
    "SET timezone = 'UTC'",
    "SET statement_timeout = 0",
];

/// Settings for the dumping sessions only: fail rather than dump a table that row-level
/// security would filter (what pg_dump does), and never time out a long stream.
const DUMP_SETTINGS: &[&str] = &[
    "SET row_security = off",
    "SET lock_timeout = 0",
    "SET idle_in_transaction_session_timeout = 0",
];

/// The file of a table's stream: its rank (largest table first, so the archiver starts the
/// longest streams first) and its names, with anything but letters, digits, `_` and `-`
/// percent-encoded. Streams sort before `manifest.json`, whose entry waits for their digests.
#[must_use]
pub fn file_name(rank: usize, schema: &str, table: &str) -> String {
    use crate::engine::rows::encode_file_part as encode;
    format!("data.{rank:04}.{}.{}.copy", encode(schema), encode(table))
}

fn column_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The file of one key range of a table split into several streams.
#[must_use]
pub fn part_file_name(rank: usize, schema: &str, table: &str, part: u32) -> String {
    use crate::engine::rows::encode_file_part as encode;
    format!(
        "data.{rank:04}.{}.{}.part{part}.copy",
        encode(schema),
        encode(table)
    )
}

/// The `WHERE` condition of a key range (`[from, to)`, open where absent).
#[must_use]
pub fn range_filter(key: &str, from: Option<i64>, to: Option<i64>) -> Option<String> {
    let key = quote_ident(key);
    match (from, to) {
        (None, None) => None,
        (Some(from), None) => Some(format!("{key} >= {from}")),
        (None, Some(to)) => Some(format!("{key} < {to}")),
        (Some(from), Some(to)) => Some(format!("{key} >= {from} AND {key} < {to}")),
    }
}

/// `COPY (SELECT … FROM ONLY … [WHERE …] [ORDER BY …]) TO STDOUT`: `ONLY`, since inheritance
/// children and partitions are tables with streams of their own.
#[must_use]
pub fn copy_out(ident: &str, columns: &[String], filter: Option<&str>, order: &[String]) -> String {
    let mut sql = format!("COPY (SELECT {} FROM ONLY {ident}", column_list(columns));
    if let Some(filter) = filter {
        sql.push_str(" WHERE ");
        sql.push_str(filter);
    }
    if !order.is_empty() {
        sql.push_str(" ORDER BY ");
        sql.push_str(&column_list(order));
    }
    sql.push_str(") TO STDOUT");
    sql
}

/// `COPY … (columns) FROM STDIN` (a table without columns takes no list).
#[must_use]
pub fn copy_in(ident: &str, columns: &[String]) -> String {
    if columns.is_empty() {
        format!("COPY {ident} FROM STDIN")
    } else {
        format!("COPY {ident} ({}) FROM STDIN", column_list(columns))
    }
}

/// `psql` arguments that run `statements` in order, quietly, stopping at the first error.
fn psql_args(statements: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--no-password",
        "--no-psqlrc",
        "--quiet",
        "-v",
        "ON_ERROR_STOP=1",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for statement in statements {
        args.push("-c".into());
        args.push(statement);
    }
    args
}

/// The statements a stream's session runs before its `COPY`: a `REPEATABLE READ` transaction
/// that imports the exported snapshot, and the settings a row's text depends on.
#[must_use]
pub fn dump_session(snapshot: &str) -> Vec<String> {
    let mut statements = vec![
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY".to_string(),
        format!(
            "SET TRANSACTION SNAPSHOT {}",
            super::quote_literal(snapshot)
        ),
    ];
    statements.extend(
        SETTINGS
            .iter()
            .chain(DUMP_SETTINGS)
            .map(ToString::to_string),
    );
    statements
}

/// `psql` arguments that load one table from stdin, in one transaction that empties the table
/// first: in a `wal_level = minimal` cluster (a drill's), rows copied into a table truncated in
/// the same transaction skip the write-ahead log, as they do in `pg_restore`. The key ranges of
/// a split table load side by side, so they do not truncate (it would lock the others out).
#[must_use]
pub fn load_args(ident: &str, columns: &[String], truncate: bool) -> Vec<String> {
    let mut statements = vec!["BEGIN".to_string()];
    statements.extend(SETTINGS.iter().map(ToString::to_string));
    if truncate {
        statements.push(format!("TRUNCATE ONLY {ident}"));
    }
    statements.push(copy_in(ident, columns));
    statements.push("COMMIT".into());
    psql_args(statements)
}

/// Bytes a stream hands to the archiver at a time.
const PIECE: usize = 256 * 1024;

/// A table stream run in-process (see `engine::lazy`): when the archiver first reads it, and
/// once one of the dump's `permits` is free, it opens a connection, imports the snapshot and
/// streams `copy` (a `COPY … TO STDOUT`).
#[must_use]
pub fn lazy_copy(
    what: String,
    connect: super::Connect,
    snapshot: String,
    copy: String,
    permits: Arc<tokio::sync::Semaphore>,
    groups: ProcessGroups,
    runtime: tokio::runtime::Handle,
) -> LazyStream {
    let start: Start = Box::new(move |tx: mpsc::Sender<Piece>| {
        Box::pin(async move {
            let outcome = async {
                let _permit = permits
                    .acquire()
                    .await
                    .map_err(|_| "the dump was stopped".to_string())?;
                let broke =
                    |e: sqlx::Error| format!("the query failed or its connection broke ({e})");
                let mut conn = connect.connect().await.map_err(broke)?;
                for statement in dump_session(&snapshot) {
                    sqlx::query(&statement)
                        .execute(&mut conn)
                        .await
                        .map_err(broke)?;
                }
                {
                    // The server sends a message per row: they are gathered into pieces of
                    // PIECE bytes, or the hand-over would cost more than the rows.
                    let mut rows = conn.copy_out_raw(&copy).await.map_err(broke)?;
                    let mut piece = bytes::BytesMut::with_capacity(PIECE);
                    let stopped = || "the archiver stopped reading".to_string();
                    while let Some(row) = rows.next().await {
                        piece.extend_from_slice(&row.map_err(broke)?);
                        if piece.len() >= PIECE {
                            let full = piece.split().freeze();
                            piece.reserve(PIECE);
                            tx.send(Piece::Data(full)).await.map_err(|_| stopped())?;
                        }
                    }
                    if !piece.is_empty() {
                        tx.send(Piece::Data(piece.freeze()))
                            .await
                            .map_err(|_| stopped())?;
                    }
                }
                let _ = sqlx::query("COMMIT").execute(&mut conn).await;
                let _ = sqlx::Connection::close(conn).await;
                Ok(())
            }
            .await;
            let _ = match outcome {
                Ok(()) => tx.send(Piece::End).await,
                Err(message) => tx.send(Piece::Failed(message)).await,
            };
        })
    });
    LazyStream::new(what, start, groups, runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe_ranked_and_sort_before_the_manifest() {
        assert_eq!(
            file_name(1, "public", "deals"),
            "data.0001.public.deals.copy"
        );
        assert_eq!(
            file_name(12, "my.schema", "Ünïcode/x y"),
            "data.0012.my%2Eschema.%C3%9Cn%C3%AFcode%2Fx%20y.copy"
        );
        assert!(file_name(9999, "zzz", "zzz").as_str() < "manifest.json");
    }

    #[test]
    fn the_restic_only_restore_script_reads_streams_with_the_same_settings() {
        let script = include_str!("../../../contrib/restic-restore-postgres");
        for setting in SETTINGS {
            assert!(
                script.contains(&format!("\"{setting}\"")),
                "contrib/restic-restore-postgres lacks {setting}"
            );
        }
    }

    #[test]
    fn copies_name_their_columns_and_order() {
        let cols = vec!["id".to_string(), "Name".to_string()];
        assert_eq!(
            copy_out("\"public\".\"t\"", &cols, None, &["id".to_string()]),
            "COPY (SELECT \"id\", \"Name\" FROM ONLY \"public\".\"t\" ORDER BY \"id\") TO STDOUT"
        );
        let range = range_filter("id", Some(10), Some(20));
        assert_eq!(range.as_deref(), Some("\"id\" >= 10 AND \"id\" < 20"));
        assert_eq!(
            copy_out("t", &cols, range.as_deref(), &[]),
            "COPY (SELECT \"id\", \"Name\" FROM ONLY t WHERE \"id\" >= 10 AND \"id\" < 20) TO STDOUT"
        );
        assert_eq!(range_filter("id", None, None), None);
        assert_eq!(
            part_file_name(2, "public", "notes", 1),
            "data.0002.public.notes.part1.copy"
        );
        assert_eq!(
            copy_in("\"public\".\"t\"", &cols),
            "COPY \"public\".\"t\" (\"id\", \"Name\") FROM STDIN"
        );
        assert_eq!(copy_in("t", &[]), "COPY t FROM STDIN");
    }
}
