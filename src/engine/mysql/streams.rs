//! MariaDB/MySQL table streams: each table's rows as a file of its own in the snapshot, in the
//! format `LOAD DATA` reads by default (tab between fields, newline after each row, `\` escapes,
//! `\N` for NULL), so that a backup chunks, hashes, compresses and encrypts several tables at
//! once and a restore loads them in parallel.
//!
//! A stream is `SELECT <stored columns> FROM <table> ORDER BY <primary key>`, read by Custodian
//! itself on one of the dump's snapshot connections: each of them started its `START
//! TRANSACTION WITH CONSISTENT SNAPSHOT` while `FLUSH TABLES WITH READ LOCK` held every commit
//! back, so all of them, the schema dump and the manifest see one state (exact for
//! transactional tables, like `mariadb-dump --single-transaction`). Key order keeps an updated
//! row where it was, so an incremental backup stores little more than the changed rows (and
//! costs nothing: InnoDB stores rows in key order); a table without a primary key keeps the
//! order the server reads it in, which the manifest records.
//!
//! Values are the server's text protocol with `character_set_results = binary`: every string
//! is the stored bytes, in its column's own character set, and loads back with `CHARACTER SET
//! binary` into the same column unchanged. `time_zone = '+00:00'` on both sides keeps
//! `TIMESTAMP` values where they were (as mariadb-dump does). Generated columns are left out
//! and recomputed on load.

use std::sync::Arc;

use futures_util::TryStreamExt;
use sqlx::mysql::{MySql, MySqlConnection};
use sqlx::{Decode, Executor, Row, ValueRef};
use tokio::sync::{Mutex, mpsc};

use super::quote_ident;
use crate::engine::lazy::{LazyStream, Piece, Start};
use crate::engine::process::ProcessGroups;
use crate::engine::rows::{Finished, RowDigest};

/// Session settings of every stream and read-back: the bytes of a row must not depend on the
/// server's or the user's defaults.
pub const SETTINGS: &str = "SET SESSION time_zone = '+00:00', character_set_results = binary, \
     net_write_timeout = 3600";

/// Lifts the server's statement time limit for a stream's session, which would otherwise cut a
/// large table's stream short (mariadb-dump does the same). MariaDB and MySQL name it apart.
#[must_use]
pub fn unlimited_statements(version: &str) -> &'static str {
    if version.contains("MariaDB") {
        "SET SESSION max_statement_time = 0"
    } else {
        "SET SESSION max_execution_time = 0"
    }
}

/// Session settings of every load, as mariadb-dump writes them: keys and constraints were
/// checked when the rows were first written, and an explicit 0 stays 0 in an AUTO_INCREMENT
/// column.
pub const LOAD_SETTINGS: &str = "SET SESSION time_zone = '+00:00', foreign_key_checks = 0, \
     unique_checks = 0, sql_mode = 'NO_AUTO_VALUE_ON_ZERO'";

/// Bytes a stream hands to the archiver at a time.
const PIECE: usize = 256 * 1024;

/// The file of a table's stream: its rank (largest first) and its name, with anything but
/// letters, digits, `_` and `-` percent-encoded.
#[must_use]
pub fn file_name(rank: usize, table: &str) -> String {
    format!(
        "data.{rank:04}.{}.tsv",
        crate::engine::rows::encode_file_part(table)
    )
}

fn column_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `SELECT <columns> FROM <table> [ORDER BY <key>]`.
#[must_use]
pub fn select(table: &str, columns: &[String], order: &[String]) -> String {
    let mut sql = format!(
        "SELECT {} FROM {}",
        column_list(columns),
        quote_ident(table)
    );
    if !order.is_empty() {
        sql.push_str(" ORDER BY ");
        sql.push_str(&column_list(order));
    }
    sql
}

/// The `LOAD DATA` statement that reads a stream from the client's standard input into
/// `table` (of the current database).
#[must_use]
pub fn load_data(table: &str, columns: &[String]) -> String {
    format!(
        "LOAD DATA LOCAL INFILE '/dev/stdin' INTO TABLE {} CHARACTER SET binary \
         FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({})",
        quote_ident(table),
        column_list(columns)
    )
}

/// Appends one field in `LOAD DATA`'s escaped form.
fn push_field(out: &mut Vec<u8>, value: Option<&[u8]>) {
    let Some(bytes) = value else {
        out.extend_from_slice(b"\\N");
        return;
    };
    let special = |b: u8| matches!(b, b'\\' | b'\t' | b'\n' | b'\r' | 0 | 0x1a);
    if !bytes.iter().copied().any(special) {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0 => out.extend_from_slice(b"\\0"),
            0x1a => out.extend_from_slice(b"\\Z"),
            _ => out.push(b),
        }
    }
}

/// Appends one row as a line.
fn push_row(out: &mut Vec<u8>, row: &sqlx::mysql::MySqlRow) -> Result<(), sqlx::Error> {
    for i in 0..row.len() {
        if i > 0 {
            out.push(b'\t');
        }
        let value = row.try_get_raw(i)?;
        if value.is_null() {
            push_field(out, None);
        } else {
            let bytes =
                <&[u8] as Decode<MySql>>::decode(value).map_err(|e| sqlx::Error::ColumnDecode {
                    index: i.to_string(),
                    source: e,
                })?;
            push_field(out, Some(bytes));
        }
    }
    out.push(b'\n');
    Ok(())
}

/// Where a read's rows go.
enum Rows<'a> {
    /// Digested here (a read-back).
    Digest(&'a mut RowDigest),
    /// To the archiver, through a [`LazyStream`].
    Archiver(&'a mpsc::Sender<Piece>),
}

impl Rows<'_> {
    /// `false` when nobody reads any more.
    async fn take(&mut self, piece: Vec<u8>) -> bool {
        match self {
            Rows::Digest(digest) => {
                digest.update(&piece);
                true
            }
            Rows::Archiver(tx) => tx.send(Piece::Data(piece.into())).await.is_ok(),
        }
    }
}

/// Runs `select` on `conn` (whose session has [`SETTINGS`]) and hands the rows, in pieces of
/// about [`PIECE`] bytes, to `out`.
///
/// Boxed with one lifetime for everything it borrows: the compiler cannot otherwise prove
/// the future `Send` across sqlx's row stream.
fn read_rows<'a>(
    conn: &'a mut MySqlConnection,
    select: &'a str,
    mut out: Rows<'a>,
) -> futures_util::future::BoxFuture<'a, Result<(), String>> {
    Box::pin(async move {
        let mut rows = (&mut *conn).fetch(select);
        let mut piece = Vec::with_capacity(PIECE + 4096);
        let broke = |e: sqlx::Error| format!("the query failed or its connection broke ({e})");
        while let Some(row) = rows.try_next().await.map_err(broke)? {
            push_row(&mut piece, &row).map_err(|e| e.to_string())?;
            if piece.len() >= PIECE {
                let full = std::mem::replace(&mut piece, Vec::with_capacity(PIECE + 4096));
                if !out.take(full).await {
                    return Err("the archiver stopped reading".into());
                }
            }
        }
        if !piece.is_empty() && !out.take(piece).await {
            return Err("the archiver stopped reading".into());
        }
        Ok(())
    })
}

/// Reads a table the way its stream was written and digests it (a restore's read-back).
///
/// # Errors
/// When a query fails.
pub fn digest_table<'a>(
    conn: &'a mut MySqlConnection,
    table: &'a str,
    columns: &'a [String],
) -> futures_util::future::BoxFuture<'a, Result<Finished, sqlx::Error>> {
    Box::pin(async move {
        (&mut *conn)
            .execute("SET @cst_tz = @@SESSION.time_zone, @cst_cs = @@SESSION.character_set_results")
            .await?;
        (&mut *conn).execute(SETTINGS).await?;
        let mut digest = RowDigest::default();
        let sql = select(table, columns, &[]);
        let read = read_rows(conn, &sql, Rows::Digest(&mut digest)).await;
        (&mut *conn)
            .execute("SET SESSION time_zone = @cst_tz, character_set_results = @cst_cs")
            .await?;
        read.map_err(sqlx::Error::Protocol)?;
        Ok(digest.finish())
    })
}

/// The dump's snapshot connections, shared by its streams: a stream borrows one for as long
/// as it runs.
pub struct SnapshotPool {
    give: mpsc::UnboundedSender<MySqlConnection>,
    take: Mutex<mpsc::UnboundedReceiver<MySqlConnection>>,
}

impl SnapshotPool {
    #[must_use]
    pub fn new(connections: Vec<MySqlConnection>) -> Arc<Self> {
        let (give, take) = mpsc::unbounded_channel();
        for conn in connections {
            let _ = give.send(conn);
        }
        Arc::new(Self {
            give,
            take: Mutex::new(take),
        })
    }

    async fn borrow(&self) -> Option<MySqlConnection> {
        self.take.lock().await.recv().await
    }

    fn give_back(&self, conn: MySqlConnection) {
        let _ = self.give.send(conn);
    }

    /// Takes back `n` connections (once every stream has ended) and ends their transactions.
    pub async fn close(&self, n: usize) {
        for _ in 0..n {
            let Some(mut conn) = self.borrow().await else {
                return;
            };
            let _ = (&mut conn).execute("COMMIT").await;
            let _ = sqlx::Connection::close(conn).await;
        }
    }
}

/// A table's stream, read when the archiver first reads it on one of the dump's snapshot
/// connections (see `engine::lazy`).
#[must_use]
pub fn lazy_rows(
    table: &str,
    select: String,
    pool: Arc<SnapshotPool>,
    groups: ProcessGroups,
    runtime: tokio::runtime::Handle,
) -> LazyStream {
    let start: Start = Box::new(move |tx: mpsc::Sender<Piece>| {
        Box::pin(async move {
            let outcome = async {
                let Some(mut conn) = pool.borrow().await else {
                    return Err("the dump's snapshot connections are gone".to_string());
                };
                let read = read_rows(&mut conn, &select, Rows::Archiver(&tx)).await;
                // A connection whose query failed half-way is not given back: its result
                // would still be arriving.
                if read.is_ok() {
                    pool.give_back(conn);
                }
                read
            }
            .await;
            let _ = match outcome {
                Ok(()) => tx.send(Piece::End).await,
                Err(message) => tx.send(Piece::Failed(message)).await,
            };
        })
    });
    LazyStream::new(format!("table {table}"), start, groups, runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_escaped_the_way_load_data_reads_them() {
        let mut out = Vec::new();
        push_field(&mut out, Some(b"a\tb\nc\\d\r\0\x1aN"));
        out.push(b'\t');
        push_field(&mut out, None);
        out.push(b'\t');
        push_field(&mut out, Some(b"\\N"));
        out.push(b'\t');
        push_field(&mut out, Some(b""));
        assert_eq!(out, b"a\\tb\\nc\\\\d\\r\\0\\ZN\t\\N\t\\\\N\t".to_vec());
    }

    #[test]
    fn statements_quote_every_name() {
        let cols = vec!["id".to_string(), "we`ird".to_string()];
        assert_eq!(
            select("t`1", &cols, &["id".to_string()]),
            "SELECT `id`, `we``ird` FROM `t``1` ORDER BY `id`"
        );
        assert!(load_data("t", &cols).ends_with("INTO TABLE `t` CHARACTER SET binary FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' (`id`, `we``ird`)"));
        assert_eq!(file_name(3, "my table"), "data.0003.my%20table.tsv");
    }
}
