//! The manifest: what a dump contains, computed from exactly the dumped state.
//!
//! It travels inside the snapshot (`manifest.json`) and is also kept in the catalog. A restore
//! or a drill recomputes the same summary from the restored database and compares the two with
//! [`Manifest::compare`]; every difference becomes a sentence an operator can act on, and what
//! the comparison could not see is listed beside it.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::group_digits;
use super::objects::{CompareScope, Objects};

/// Current manifest format version: 2 adds [`Objects`] (schema objects, sequences,
/// materialized views, large objects, database properties) to format 1's table rows; 3 adds
/// [`TableStream`]s (each table's rows as a file of its own, loaded in parallel on restore).
pub const MANIFEST_FORMAT: u32 = 3;

/// The database engine a source runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Sqlite,
    Postgres,
    Mysql,
}

impl Engine {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
        }
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" => Ok(Self::Postgres),
            "mysql" => Ok(Self::Mysql),
            other => Err(format!(
                "`{other}` is not an engine (sqlite, postgres, mysql)"
            )),
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much of a table's content the checksum covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumMode {
    /// Every row, in primary-key order.
    #[default]
    Full,
    /// A deterministic sample of rows (large tables).
    Sampled,
    /// Row count only.
    Count,
    /// Every row, as the text line its table stream carries: the digest is order-independent
    /// (see `engine::rows`), computed from the stream as it is stored and from the restored
    /// table as soon as it is loaded.
    Rows,
}

/// Row count and content checksum of one table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSummary {
    pub name: String,
    pub rows: u64,
    pub mode: ChecksumMode,
    /// `sha256:<hex>` over the canonical row encoding; absent in [`ChecksumMode::Count`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// One file stored in the snapshot beside the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// File name inside `/custodian/<source>/`.
    pub name: String,
    /// Size in bytes, when known before it is stored (streams are measured as they are stored,
    /// and their size is in the snapshot's tree and the catalog).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `sha256:<hex>` of the file's bytes, when known before it is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// One table whose rows travel as a file of their own (PostgreSQL `COPY` text).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStream {
    /// `schema.table`, unquoted, as in [`TableSummary::name`].
    pub table: String,
    /// The schema and the table's own name (either may hold a dot).
    pub schema: String,
    pub name: String,
    /// File name inside `/custodian/<source>/`.
    pub file: String,
    /// The columns the stream carries, in order (generated columns are recomputed on load).
    pub columns: Vec<String>,
    /// The columns the rows are ordered by (the primary key); empty: physical order, for a
    /// table without a primary key.
    pub order: Vec<String>,
    /// Bytes of the stream.
    pub bytes: u64,
    /// When a large table travels as several streams (ranges of its integer primary key),
    /// which one this is; absent for a whole table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<StreamPart>,
}

/// One key range of a table split into several streams: rows whose key is in `[from, to)`,
/// an open end where absent (the first and last ranges are open, so no row can fall outside).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPart {
    /// 1-based.
    pub number: u32,
    pub of: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<i64>,
}

/// What a backup contains.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub engine: Engine,
    pub source: String,
    /// The database's own name (file stem for SQLite, database name for servers).
    pub database: String,
    #[serde(with = "super::time::serde_utc")]
    pub taken_at: Timestamp,
    /// How the dump was made, e.g. `SQLite 3.46.0 VACUUM INTO`.
    pub method: String,
    pub files: Vec<ManifestFile>,
    pub tables: Vec<TableSummary>,
    /// Everything besides table rows (absent in format 1 manifests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<Objects>,
    /// Tables whose rows are files of their own (format 3; empty: the rows are in the dump).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<TableStream>,
    /// MariaDB/MySQL: where the binary log stood when the dump's snapshot was taken (under
    /// its read lock) — where a replay of the archived binary logs starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog: Option<BinlogPosition>,
    /// PostgreSQL with a continuous archive: the restore point the backup wrote right after
    /// taking its snapshot (see `engine::postgres::restore_point`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_point: Option<RestorePoint>,
    pub custodian_version: String,
}

/// A named point in a PostgreSQL source's WAL, written by a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePoint {
    pub name: String,
    pub lsn: String,
    /// Whether recovery to it gives exactly what the backup's snapshot saw (no transaction
    /// was committing in between; the server proved it).
    pub exact: bool,
}

/// Where a binary log stood: the next event's file and position (and the GTID state, on
/// servers that keep one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinlogPosition {
    pub file: String,
    pub position: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
}

/// How a restored database compares with its manifest: every difference, and what the
/// comparison did not cover.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Comparison {
    pub mismatches: Vec<String>,
    pub not_verified: Vec<String>,
}

impl Comparison {
    /// The first difference, and how many more there are — one sentence for an error.
    #[must_use]
    pub fn summary(&self) -> Option<String> {
        let first = self.mismatches.first()?;
        Some(match self.mismatches.len() {
            1 => first.clone(),
            n => format!(
                "{first} (and {} more difference{})",
                n - 1,
                if n == 2 { "" } else { "s" }
            ),
        })
    }
}

/// One way a restored database differs from its manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mismatch {
    MissingTable {
        table: String,
    },
    ExtraTable {
        table: String,
    },
    RowCount {
        table: String,
        restored: u64,
        manifest: u64,
    },
    Checksum {
        table: String,
        restored: String,
        manifest: String,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingTable { table } => {
                write!(
                    f,
                    "table {table}: in the manifest but missing from the restored database"
                )
            }
            Self::ExtraTable { table } => {
                write!(
                    f,
                    "table {table}: in the restored database but not in the manifest"
                )
            }
            Self::RowCount {
                table,
                restored,
                manifest,
            } => write!(
                f,
                "table {table}: {} rows restored, manifest says {}",
                group_digits(*restored),
                group_digits(*manifest)
            ),
            Self::Checksum {
                table,
                restored,
                manifest,
            } => write!(
                f,
                "table {table}: content checksum {restored} differs from the manifest's {manifest}"
            ),
        }
    }
}

impl Manifest {
    /// The columns each streamed table's stream carries (so that a read-back copies exactly
    /// what the stream did), by table name.
    #[must_use]
    pub fn stream_columns(&self) -> std::collections::BTreeMap<&str, &Vec<String>> {
        self.streams
            .iter()
            .map(|s| (s.table.as_str(), &s.columns))
            .collect()
    }

    /// Compares a restored database, described the way this manifest was made, with it.
    #[must_use]
    pub fn compare(
        &self,
        tables: &[TableSummary],
        objects: Option<&Objects>,
        scope: CompareScope,
    ) -> Comparison {
        let mut out = Comparison {
            mismatches: self
                .compare_tables(tables)
                .iter()
                .map(ToString::to_string)
                .collect(),
            not_verified: Vec::new(),
        };
        match (&self.objects, objects) {
            (Some(backup), Some(restored)) => {
                out.mismatches.extend(
                    backup
                        .compare(restored, scope)
                        .iter()
                        .map(ToString::to_string),
                );
                out.not_verified.extend(backup.not_covered.iter().cloned());
                if scope.skip_access {
                    out.not_verified.push(
                        "owners and privileges: the restore left them out (the target lacks the backup's roles)"
                            .into(),
                    );
                }
            }
            (Some(_), None) => out
                .mismatches
                .push("the restored database's schema objects could not be described".into()),
            (None, _) => out.not_verified.push(format!(
                "this backup's manifest (format {}) records table rows only: schema objects, sequences, materialized views, large objects and database properties were not compared",
                self.format
            )),
        }
        let sampled: Vec<&str> = self
            .tables
            .iter()
            .filter(|t| t.mode == ChecksumMode::Sampled)
            .map(|t| t.name.as_str())
            .collect();
        if !sampled.is_empty() {
            out.not_verified.push(format!(
                "content of {}: checksummed over a 1/128 sample of rows (every row counted); list them as \"full\" under [source.{}.checksum] to cover every row",
                sampled.join(", "),
                self.source
            ));
        }
        let counted: Vec<&str> = self
            .tables
            .iter()
            .filter(|t| t.mode == ChecksumMode::Count)
            .map(|t| t.name.as_str())
            .collect();
        if !counted.is_empty() {
            out.not_verified.push(format!(
                "content of {}: rows counted only (checksum = \"count\")",
                counted.join(", ")
            ));
        }
        out
    }

    /// Total rows over all tables.
    #[must_use]
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    /// Compares the manifest's tables with a summary computed from a restored database.
    /// Checksums are compared only where both sides computed one in the same mode.
    #[must_use]
    pub fn compare_tables(&self, restored: &[TableSummary]) -> Vec<Mismatch> {
        let mut out = Vec::new();
        for expected in &self.tables {
            let Some(actual) = restored.iter().find(|t| t.name == expected.name) else {
                out.push(Mismatch::MissingTable {
                    table: expected.name.clone(),
                });
                continue;
            };
            if actual.rows != expected.rows {
                out.push(Mismatch::RowCount {
                    table: expected.name.clone(),
                    restored: actual.rows,
                    manifest: expected.rows,
                });
            } else if actual.mode == expected.mode
                && let (Some(a), Some(e)) = (&actual.checksum, &expected.checksum)
                && a != e
            {
                out.push(Mismatch::Checksum {
                    table: expected.name.clone(),
                    restored: a.clone(),
                    manifest: e.clone(),
                });
            }
        }
        for actual in restored {
            if !self.tables.iter().any(|t| t.name == actual.name) {
                out.push(Mismatch::ExtraTable {
                    table: actual.name.clone(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, rows: u64, sum: &str) -> TableSummary {
        TableSummary {
            name: name.into(),
            rows,
            mode: ChecksumMode::Full,
            checksum: Some(sum.into()),
        }
    }

    fn manifest(tables: Vec<TableSummary>) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            engine: Engine::Sqlite,
            source: "crm".into(),
            database: "crm".into(),
            taken_at: "2026-11-29T00:00:00Z".parse().unwrap(),
            method: "test".into(),
            files: vec![],
            tables,
            objects: None,
            streams: vec![],
            binlog: None,
            restore_point: None,
            custodian_version: "0".into(),
        }
    }

    #[test]
    fn identical_summaries_match() {
        let m = manifest(vec![table("deals", 3, "sha256:aa")]);
        assert!(
            m.compare_tables(&[table("deals", 3, "sha256:aa")])
                .is_empty()
        );
    }

    #[test]
    fn every_difference_is_reported_precisely() {
        let m = manifest(vec![
            table("deals", 120_332, "sha256:aa"),
            table("notes", 5, "sha256:bb"),
            table("gone", 1, "sha256:cc"),
        ]);
        let restored = [
            table("deals", 120_331, "sha256:aa"),
            table("notes", 5, "sha256:zz"),
            table("extra", 1, "sha256:dd"),
        ];
        let text: Vec<String> = m
            .compare_tables(&restored)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            text,
            [
                "table deals: 120,331 rows restored, manifest says 120,332",
                "table notes: content checksum sha256:zz differs from the manifest's sha256:bb",
                "table gone: in the manifest but missing from the restored database",
                "table extra: in the restored database but not in the manifest",
            ]
        );
    }

    #[test]
    fn json_round_trips() {
        let m = manifest(vec![table("deals", 3, "sha256:aa")]);
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"taken_at\":\"2026-11-29T00:00:00.000Z\""));
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }
}
