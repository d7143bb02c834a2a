//! Point-in-time recovery as jobs see it, whatever the engine: the archiver's slot, what a base
//! backup covers, where a recovery should stop and what it reached, and the WAL file names
//! that tie them together.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The archiver's replication slot on the server.
#[derive(Clone, Debug, Serialize)]
pub struct SlotState {
    pub name: String,
    /// Where the server keeps WAL from for the archiver (`None` before the first use).
    pub restart_lsn: Option<String>,
    /// `reserved`, `extended`, `unreserved` or `lost` (a lost slot is a gap in the archive).
    pub wal_status: Option<String>,
    /// Created now (the archive starts here).
    pub created: bool,
}

/// What a physical base backup covers (its `info.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BaseInfo {
    pub engine: String,
    pub start_lsn: String,
    pub end_lsn: String,
    pub timeline: u32,
    #[serde(with = "crate::model::time::serde_utc")]
    pub started: Timestamp,
    /// When the backup ended; recovery to any later time can start from it.
    #[serde(with = "crate::model::time::serde_utc")]
    pub finished: Timestamp,
    pub server_version: String,
    pub system_identifier: String,
    /// Whether the tar holds the WAL from start to end (`--wal-method=fetch`, for a base
    /// backup taken on a standby, and every base backup written before this field). Without
    /// it that WAL is the archive's, which held it before the backup was kept.
    #[serde(default = "wal_in_tar_before")]
    pub wal_in_tar: bool,
}

impl BaseInfo {
    /// The segment its WAL starts in, and the one its end is in.
    #[must_use]
    pub fn segments(&self) -> (Segment, Segment) {
        let at = |lsn: &str| Segment::holding(self.timeline, parse_lsn(lsn).unwrap_or(0));
        (at(&self.start_lsn), at(&self.end_lsn))
    }

    /// The first segment a recovery from it needs from the archive: its start, or (its WAL in
    /// the tar) its end.
    #[must_use]
    pub fn first_from_archive(&self) -> Segment {
        let (start, end) = self.segments();
        if self.wal_in_tar { end } else { start }
    }

    /// Where the archive (the WAL file `names`) is broken for a recovery from this base
    /// backup, in order: its first segment from the archive when that is missing and the tar
    /// does not carry it, then every gap from there on. Empty when the archive follows on
    /// unbroken (up to its newest segment). The one answer recovery plans, `archive status`
    /// and the report's window use.
    #[must_use]
    pub fn archive_holes(&self, names: &[String]) -> Vec<(String, String)> {
        let from = self.first_from_archive();
        let mut after: Vec<String> = names
            .iter()
            .filter(|n| Segment::parse(n).is_some_and(|seg| seg.number > from.number))
            .cloned()
            .collect();
        after.push(from.name());
        let mut holes = gaps(&after);
        let first_archived = names
            .iter()
            .any(|n| Segment::parse(n).is_some_and(|seg| seg.number == from.number));
        if !self.wal_in_tar && !first_archived {
            holes.insert(0, (from.name(), from.name()));
        }
        holes
    }
}

/// Base backups written before `wal_in_tar` was recorded all carried their WAL.
fn wal_in_tar_before() -> bool {
    true
}

/// Where a recovery stops.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "kebab-case")]
pub enum RecoveryTarget {
    /// The last transaction committed at or before this time.
    Time(#[serde(with = "crate::model::time::serde_utc")] Timestamp),
    /// A WAL position (`0/3000060`).
    Lsn(String),
    /// A restore point made with `pg_create_restore_point`.
    RestorePoint(String),
    /// Everything archived.
    Latest,
}

impl std::fmt::Display for RecoveryTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Time(t) => write!(f, "time {t}"),
            Self::Lsn(l) => write!(f, "WAL position {l}"),
            Self::RestorePoint(n) => write!(f, "restore point {n}"),
            Self::Latest => f.write_str("the end of the archive"),
        }
    }
}

/// What a recovery reached.
#[derive(Clone, Debug, Serialize)]
pub struct Recovered {
    /// The server's own account of where it stopped (`recovery stopping before commit of
    /// transaction 745, time …`), or of reaching the end of the archive.
    pub stop: String,
    /// The commit time of the last transaction replayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transaction: Option<String>,
    /// Where WAL replay ended, and the new timeline the recovered cluster runs on.
    pub end_lsn: String,
    pub timeline: u32,
    /// Seconds spent replaying (server start to promotion).
    pub replay_seconds: f64,
}

/// Where a replay of archived logs onto a restored database stops (MariaDB/MySQL binary logs).
#[derive(Clone, Debug)]
pub enum ReplayStop {
    /// Before the first event at or after this time.
    Time(Timestamp),
    /// At this position of the last file.
    Position(u64),
    /// At the end of the archive.
    End,
}

/// Archived logs, fetched into a private directory, to replay onto a restored database: the
/// logs of a logical engine (MariaDB/MySQL binary logs) carry statements and row events that
/// apply to a database loaded from a logical backup.
#[derive(Clone, Debug)]
pub struct LogReplay {
    /// The log files, oldest first.
    pub files: Vec<std::path::PathBuf>,
    /// Where the backup stood in the first file (recorded under its read lock).
    pub start_position: u64,
    pub stop: ReplayStop,
    /// The source database's name in the logs (events of other databases are skipped; the
    /// events replayed are rewritten to the restored database's name).
    pub from_database: String,
}

/// What a server's own consistency check found (`CHECK TABLE` on MariaDB/MySQL).
#[derive(Clone, Debug, Default)]
pub struct Consistency {
    /// Tables checked.
    pub checked: usize,
    /// One sentence per problem found; empty: consistent.
    pub problems: Vec<String>,
}

pub use crate::model::wal::{SEGMENT_SIZE, Segment, gaps, is_history, parse_lsn};

#[cfg(test)]
mod tests {
    use super::*;

    fn base(start: &str, end: &str, wal_in_tar: bool) -> BaseInfo {
        let at: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        BaseInfo {
            engine: "postgres".into(),
            start_lsn: start.into(),
            end_lsn: end.into(),
            timeline: 1,
            started: at,
            finished: at,
            server_version: "15".into(),
            system_identifier: "1".into(),
            wal_in_tar,
        }
    }

    fn names(numbers: &[u64]) -> Vec<String> {
        numbers
            .iter()
            .map(|&number| {
                Segment {
                    timeline: 1,
                    number,
                }
                .name()
            })
            .collect()
    }

    #[test]
    fn the_archive_is_broken_where_a_base_backup_needs_what_it_misses() {
        // Starts in segment 3, ends in 5.
        let without = base("0/3000028", "0/5000100", false);
        let with = base("0/3000028", "0/5000100", true);
        assert!(without.archive_holes(&names(&[3, 4, 5, 6])).is_empty());
        // Its first segment is not archived: only a tar with its WAL does without it.
        let first = names(&[3])[0].clone();
        assert_eq!(
            without.archive_holes(&names(&[4, 5, 6])),
            vec![(first.clone(), first)]
        );
        assert!(with.archive_holes(&names(&[5, 6])).is_empty());
        // A gap after the base backup breaks either; one before it breaks neither.
        let (seven, eight) = (names(&[7])[0].clone(), names(&[8])[0].clone());
        assert_eq!(
            without.archive_holes(&names(&[1, 3, 4, 5, 6, 9])),
            vec![(seven.clone(), eight.clone())]
        );
        assert_eq!(
            with.archive_holes(&names(&[1, 5, 6, 9])),
            vec![(seven, eight)]
        );
    }
}
