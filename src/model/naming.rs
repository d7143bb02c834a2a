//! How Custodian's backups look in a restic repository — one documented convention, so that
//! `restic snapshots` is readable and any restic user can find their way:
//!
//! * hostname: the configured `hostname` (default: the machine's name);
//! * paths: `/custodian/<source>`;
//! * files: `/custodian/<source>/<database file or dump>` and `/custodian/<source>/manifest.json`;
//! * tags: `custodian`, `source:<source>`, `engine:<engine>`; while a backup is being verified
//!   it also carries `custodian-pending`, and such a snapshot is never copied or restored.
//!
//! Point-in-time recovery keeps two more kinds beside the logical backups, each under its own
//! tag instead of `custodian` (so `restic snapshots --tag custodian` and every `latest` still
//! mean the logical backups):
//!
//! * `custodian-wal`: archived write-ahead log, files `/custodian/<source>/wal/<segment>` (a
//!   segment still being written is stored as `<segment>.partial`, replaced as it grows);
//!   the archiver writes one snapshot per flush and rolls them up into one, so a source has
//!   a bounded number of them;
//! * `custodian-binlog`: archived MariaDB/MySQL binary logs, files
//!   `/custodian/<source>/binlog/<binlog file>` (the one still being written replaced as it
//!   grows), rolled up like WAL;
//! * `custodian-base`: a physical base backup, `/custodian/<source>/base/base.tar` (the
//!   `pg_basebackup` tar with its `backup_manifest`; the WAL that makes it consistent is the
//!   archive's, inside the tar only for a backup taken on a standby) and
//!   `/custodian/<source>/base/info.json` (its WAL range, times, and `wal_in_tar`).

use std::path::PathBuf;

/// Tag on every snapshot Custodian writes.
pub const TAG: &str = "custodian";
/// Tag on a snapshot that has been written but not yet verified and committed.
pub const TAG_PENDING: &str = "custodian-pending";
/// Tag on archived write-ahead log (instead of [`TAG`]).
pub const TAG_WAL: &str = "custodian-wal";
/// Tag on a physical base backup (instead of [`TAG`]).
pub const TAG_BASE: &str = "custodian-base";
/// Tag on archived MariaDB/MySQL binary logs (instead of [`TAG`]).
pub const TAG_BINLOG: &str = "custodian-binlog";

/// What a snapshot Custodian writes holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotKind {
    /// A logical backup: dump or streams plus the manifest.
    Backup,
    /// Archived write-ahead log.
    Wal,
    /// A physical base backup.
    Base,
    /// Archived MariaDB/MySQL binary logs.
    Binlog,
}

impl SnapshotKind {
    /// The tag that marks this kind.
    #[must_use]
    pub fn tag(self) -> &'static str {
        match self {
            Self::Backup => TAG,
            Self::Wal => TAG_WAL,
            Self::Base => TAG_BASE,
            Self::Binlog => TAG_BINLOG,
        }
    }

    /// Where this kind's files of a source live inside the snapshot.
    #[must_use]
    pub fn root(self, source: &str) -> PathBuf {
        match self {
            Self::Backup => source_root(source),
            Self::Wal => source_root(source).join("wal"),
            Self::Base => source_root(source).join("base"),
            Self::Binlog => source_root(source).join("binlog"),
        }
    }

    /// The kind a snapshot's tags say, if Custodian wrote it.
    #[must_use]
    pub fn from_tags<'a>(tags: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        tags.into_iter().find_map(|t| match t {
            TAG => Some(Self::Backup),
            TAG_WAL => Some(Self::Wal),
            TAG_BASE => Some(Self::Base),
            TAG_BINLOG => Some(Self::Binlog),
            _ => None,
        })
    }
}

/// Name of the manifest file inside every snapshot.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The source's erasure ledger at backup time (pseudonymous ids), beside the manifest.
pub const ERASURE_LEDGER_FILE: &str = "erasure-ledger.json";

/// The snapshot path for a source: `/custodian/<source>`.
#[must_use]
pub fn source_root(source: &str) -> PathBuf {
    PathBuf::from("/custodian").join(source)
}

/// Where a file of a source lives inside its snapshots: `/custodian/<source>/<name>`.
#[must_use]
pub fn file_path(source: &str, name: &str) -> PathBuf {
    source_root(source).join(name)
}

/// Tag naming the source.
#[must_use]
pub fn source_tag(source: &str) -> String {
    format!("source:{source}")
}

/// Tag naming the engine.
#[must_use]
pub fn engine_tag(engine: &str) -> String {
    format!("engine:{engine}")
}

/// Reads the source name back from a snapshot's tags.
#[must_use]
pub fn source_from_tags<'a>(tags: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    tags.into_iter().find_map(|t| t.strip_prefix("source:"))
}

/// Reads the engine back from a snapshot's tags.
#[must_use]
pub fn engine_from_tags<'a>(tags: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    tags.into_iter().find_map(|t| t.strip_prefix("engine:"))
}

/// Whether a name may be used for a source or a location: it becomes part of paths and tags.
#[must_use]
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        let tags = [TAG.to_string(), source_tag("crm"), engine_tag("sqlite")];
        let refs = tags.iter().map(String::as_str);
        assert_eq!(source_from_tags(refs.clone()), Some("crm"));
        assert_eq!(engine_from_tags(refs), Some("sqlite"));
        assert_eq!(source_root("crm"), PathBuf::from("/custodian/crm"));
    }

    #[test]
    fn names_are_path_and_tag_safe() {
        assert!(is_valid_name("crm"));
        assert!(is_valid_name("crm-eu_1"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("CRM"));
        assert!(!is_valid_name("a/b"));
        assert!(!is_valid_name("-x"));
        assert!(!is_valid_name("with,comma"));
    }
}
