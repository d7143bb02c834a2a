//! Snapshots as the rest of Custodian sees them: plain data, no rustic_core types.

use jiff::Timestamp;
use rustic_core::repofile::SnapshotFile;
use serde::Serialize;

use super::{Repo, RepoError};
use crate::model::naming;

/// One snapshot in one repository.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotInfo {
    /// Full snapshot id (64 hex digits).
    pub id: String,
    /// The backup this snapshot holds: its id in the location it was first written to (a copy
    /// carries it as restic's `original`).
    pub backup_id: String,
    #[serde(with = "crate::model::time::serde_utc")]
    pub time: Timestamp,
    pub hostname: String,
    pub tags: Vec<String>,
    pub paths: Vec<String>,
    pub source: Option<String>,
    pub engine: Option<String>,
    /// What it holds, when Custodian wrote it: a logical backup, archived WAL, a base backup.
    pub kind: Option<naming::SnapshotKind>,
    /// Written but not yet verified; never copied or restored.
    pub pending: bool,
    /// Bytes read from the source.
    pub bytes: u64,
    /// Bytes this snapshot added to the repository (compressed, encrypted).
    pub added_stored: u64,
    /// Bytes this snapshot added before compression.
    pub added_raw: u64,
}

impl SnapshotInfo {
    pub(super) fn from_file(sn: &SnapshotFile) -> Self {
        let tags: Vec<String> = sn.tags.iter().cloned().collect();
        let summary = sn.summary.as_ref();
        let id = sn.id.to_hex().to_string();
        Self {
            backup_id: sn
                .original
                .map_or_else(|| id.clone(), |o| o.to_hex().to_string()),
            id,
            time: sn.time.timestamp(),
            hostname: sn.hostname.clone(),
            source: naming::source_from_tags(tags.iter().map(String::as_str)).map(str::to_string),
            engine: naming::engine_from_tags(tags.iter().map(String::as_str)).map(str::to_string),
            kind: naming::SnapshotKind::from_tags(tags.iter().map(String::as_str)),
            pending: tags.iter().any(|t| t == naming::TAG_PENDING),
            paths: sn.paths.iter().cloned().collect(),
            tags,
            bytes: summary.map_or(0, |s| s.total_bytes_processed),
            added_stored: summary.map_or(0, |s| s.data_added_packed),
            added_raw: summary.map_or(0, |s| s.data_added),
        }
    }

    /// The first 8 hex digits, as restic prints them.
    #[must_use]
    pub fn short_id(&self) -> &str {
        &self.id[..8]
    }

    /// Whether Custodian wrote it and it is complete.
    #[must_use]
    pub fn is_committed_backup(&self) -> bool {
        self.tags.iter().any(|t| t == naming::TAG) && !self.pending && self.source.is_some()
    }

    /// Whether it is a complete snapshot of this kind of this source.
    #[must_use]
    pub fn is_committed(&self, kind: naming::SnapshotKind, source: &str) -> bool {
        self.kind == Some(kind) && !self.pending && self.source.as_deref() == Some(source)
    }
}

impl Repo {
    /// Every snapshot file. Another process may remove a snapshot between the listing and the
    /// reading of its file (the archiver's roll-ups, a commit replacing its pending snapshot),
    /// which fails the whole listing: it is tried again, and only a failure that persists is
    /// an error.
    pub(super) fn all_snapshots(&self) -> Result<Vec<SnapshotFile>, RepoError> {
        let mut attempt = 0;
        loop {
            match self.rustic().get_all_snapshots() {
                Ok(all) => return Ok(all),
                Err(e) if attempt >= 3 => return Err(self.err("listing snapshots", &e)),
                Err(e) => {
                    tracing::debug!(error = %e, "listing snapshots failed; trying again");
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(200 * attempt));
                }
            }
        }
    }

    /// All snapshots, oldest first.
    ///
    /// # Errors
    /// When the repository cannot be read.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>, RepoError> {
        let mut snaps = self.all_snapshots()?;
        snaps.sort_unstable_by(|a, b| a.time.cmp(&b.time));
        Ok(snaps.iter().map(SnapshotInfo::from_file).collect())
    }

    /// Finds a committed Custodian snapshot by id prefix or `latest` (optionally of one source).
    ///
    /// # Errors
    /// When none or several match, or the repository cannot be read.
    pub fn find_snapshot(
        &self,
        wanted: &str,
        source: Option<&str>,
    ) -> Result<SnapshotInfo, RepoError> {
        let candidates: Vec<SnapshotInfo> = self
            .snapshots()?
            .into_iter()
            .filter(|s| s.is_committed_backup())
            .filter(|s| source.is_none_or(|name| s.source.as_deref() == Some(name)))
            .collect();
        let not_found = || RepoError::SnapshotNotFound {
            location: self.location().to_string(),
            id: wanted.to_string(),
        };
        if wanted == "latest" {
            return candidates.into_iter().last().ok_or_else(not_found);
        }
        let wanted_lower = wanted.to_ascii_lowercase();
        let mut matches = candidates
            .into_iter()
            .filter(|s| s.id.starts_with(&wanted_lower) || s.backup_id.starts_with(&wanted_lower));
        let first = matches.next().ok_or_else(not_found)?;
        if matches.next().is_some() {
            return Err(RepoError::AmbiguousSnapshot {
                location: self.location().to_string(),
                id: wanted.to_string(),
            });
        }
        Ok(first)
    }

    pub(super) fn snapshot_file(&self, id: &str) -> Result<SnapshotFile, RepoError> {
        self.rustic()
            .get_snapshot_from_str(id, |_| true)
            .map_err(|_| RepoError::SnapshotNotFound {
                location: self.location().to_string(),
                id: id.to_string(),
            })
    }
}
