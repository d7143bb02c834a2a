//! Table streams: each table's rows as a file of its own in the snapshot, in `COPY` text
//! format, so that a backup chunks, hashes, compresses and encrypts several tables at once and
//! a restore loads them in parallel.
//!
//! A stream is `COPY (SELECT <columns> FROM ONLY <table> ORDER BY <primary key>) TO STDOUT`,
//! run by `psql` in a `REPEATABLE READ` transaction that imports the dump's exported snapshot,
//! so every stream, the schema dump and the manifest see one state. Key order keeps an updated
//! row where it was (physical order moves it to the end of the table, dirtying two chunks), so
//! an incremental backup stores little more than the changed rows; a table without a primary
//! key keeps physical order, which the manifest records. Text, not binary, `COPY`: it loads
//! into any later server version and a restic-only user can load it with `psql \copy`
//! (contrib/restic-restore-postgres).
//!
//! Settings that shape a row's text are fixed on both sides ([`SETTINGS`]), so the digest of a
//! stream and the digest of the restored table (`tables::digest_table`) read the same bytes.

use std::io::{self, Read};
use std::process::{ChildStdout, Command};
use std::sync::Arc;

use super::quote_ident;
use crate::engine::common::Slots;
use crate::engine::process::{DumpProcess, ProcessGroups};
use crate::secret::Secret;

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

/// `psql` arguments that stream one table in the exported snapshot to stdout.
#[must_use]
pub fn dump_args(
    snapshot: &str,
    ident: &str,
    columns: &[String],
    filter: Option<&str>,
    order: &[String],
) -> Vec<String> {
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
    statements.push(copy_out(ident, columns, filter, order));
    statements.push("COMMIT".into());
    psql_args(statements)
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

/// A table stream that starts its `psql` when first read, once one of the dump's slots is
/// free, and judges it at the end: a failed `psql` is a read error, which fails the backup.
/// Dropping it early kills the tool.
pub struct LazyCopy {
    tool: String,
    command: Option<Command>,
    secrets: Vec<Secret>,
    slots: Arc<Slots>,
    groups: ProcessGroups,
    holds_slot: bool,
    running: Option<(DumpProcess, ChildStdout)>,
    /// Why the stream failed: every later read fails the same way, never a clean end.
    failed: Option<String>,
}

impl LazyCopy {
    #[must_use]
    pub fn new(
        tool: String,
        command: Command,
        secrets: Vec<Secret>,
        slots: Arc<Slots>,
        groups: ProcessGroups,
    ) -> Self {
        Self {
            tool,
            command: Some(command),
            secrets,
            slots,
            groups,
            holds_slot: false,
            running: None,
            failed: None,
        }
    }

    fn failure(&mut self, message: String) -> io::Error {
        self.groups.fail(message.clone());
        self.failed = Some(message.clone());
        io::Error::other(message)
    }

    fn start(&mut self) -> io::Result<()> {
        let Some(command) = self.command.take() else {
            return Ok(());
        };
        self.slots.acquire();
        self.holds_slot = true;
        let refs: Vec<&Secret> = self.secrets.iter().collect();
        let mut process = match DumpProcess::spawn(&self.tool, command, &refs) {
            Ok(process) => process,
            Err(e) => return Err(self.failure(format!("starting {}: {e}", self.tool))),
        };
        if let Err(e) = process.join(&self.groups) {
            return Err(self.failure(e.to_string()));
        }
        let Some(stdout) = process.take_stdout() else {
            return Err(self.failure(format!("{} has no stdout", self.tool)));
        };
        self.running = Some((process, stdout));
        Ok(())
    }

    fn release(&mut self) {
        if std::mem::take(&mut self.holds_slot) {
            self.slots.release();
        }
    }
}

impl Read for LazyCopy {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(message) = &self.failed {
            return Err(io::Error::other(message.clone()));
        }
        self.start()?;
        let Some((_, stdout)) = &mut self.running else {
            return Ok(0);
        };
        // A failure fails the backup; the other tools and the manifest stop with it.
        let n = match stdout.read(buf) {
            Ok(n) => n,
            Err(e) => {
                let message = format!("reading the output of {}: {e}", self.tool);
                return Err(self.failure(message));
            }
        };
        if n == 0 && !buf.is_empty() {
            let Some((process, _)) = self.running.take() else {
                return Ok(0);
            };
            let finished = process.finish();
            self.release();
            if let Err(failure) = finished {
                return Err(self.failure(failure.to_string()));
            }
        }
        Ok(n)
    }
}

impl Drop for LazyCopy {
    fn drop(&mut self) {
        // The process (if any) is killed by its own Drop.
        self.running = None;
        self.release();
    }
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
