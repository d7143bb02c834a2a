//! Copying backups between repositories. rustic_core decrypts and re-encrypts, so each
//! location keeps its own keys. Copies are matched by restic's `original` field (the backup
//! id), never by time (trap 5), so copying twice copies nothing the second time.

use std::collections::HashSet;

use rustic_core::repofile::SnapshotFile;
use serde::Serialize;

use super::{Repo, RepoError, SnapshotInfo};

/// One backup copied into the destination.
#[derive(Clone, Debug, Serialize)]
pub struct Copied {
    pub backup_id: String,
    /// The copy's snapshot id in the destination.
    pub snapshot_id: String,
    pub source: Option<String>,
}

impl Repo {
    /// Backup ids already present in this repository (as snapshots or as copies).
    ///
    /// # Errors
    /// When the repository cannot be read.
    pub fn backup_ids(&self) -> Result<HashSet<String>, RepoError> {
        Ok(self
            .snapshots()?
            .into_iter()
            .filter(|s| !s.pending)
            .flat_map(|s| [s.backup_id, s.id])
            .collect())
    }

    /// Copies the given committed snapshots (backups and base backups) of this repository into
    /// `dst`, skipping those `dst` already holds. Returns what was copied.
    ///
    /// # Errors
    /// When either repository cannot be read or `dst` cannot be written.
    pub fn copy_to(
        &self,
        dst: &Self,
        wanted: &[SnapshotInfo],
        bars: Option<super::Bars>,
    ) -> Result<Vec<Copied>, RepoError> {
        let present = dst.backup_ids()?;
        let todo: Vec<&SnapshotInfo> = wanted
            .iter()
            .filter(|s| {
                s.is_committed_backup()
                    || (s.kind == Some(crate::model::naming::SnapshotKind::Base) && !s.pending)
            })
            .filter(|s| !present.contains(&s.backup_id))
            .collect();
        if todo.is_empty() {
            return Ok(Vec::new());
        }
        let files: Vec<SnapshotFile> = todo
            .iter()
            .map(|s| {
                let mut sn = self.snapshot_file(&s.id)?;
                // restic's convention: a copy records the snapshot it came from.
                sn.original = Some(sn.original.unwrap_or(sn.id));
                Ok(sn)
            })
            .collect::<Result<_, RepoError>>()?;
        let src = self
            .reopen()?
            .to_indexed()
            .map_err(|e| self.err("reading the index", &e))?;
        let dst_indexed = dst
            .reopen_with(bars)?
            .to_indexed_ids()
            .map_err(|e| dst.err("reading the index", &e))?;
        src.copy(&dst_indexed, files.iter())
            .map_err(|e| dst.err("copying snapshots", &e))?;

        let wanted_ids: HashSet<&str> = todo.iter().map(|s| s.backup_id.as_str()).collect();
        Ok(dst
            .snapshots()?
            .into_iter()
            .filter(|s| wanted_ids.contains(s.backup_id.as_str()) && s.id != s.backup_id)
            .map(|s| Copied {
                backup_id: s.backup_id,
                snapshot_id: s.id,
                source: s.source,
            })
            .collect())
    }
}
