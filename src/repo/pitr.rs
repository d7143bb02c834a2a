//! Point-in-time recovery's files in a repository: a source's archived write-ahead log, spread
//! over its `custodian-wal` snapshots (see `model::naming`), and the roll-up that merges those
//! snapshots into one so that `restic snapshots` stays short. Merging only writes new trees:
//! rustic_core's `merge_snapshots` reuses every file's data blobs, nothing is read or stored
//! again.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use jiff::Timestamp;
use rustic_core::SnapshotOptions;
use rustic_core::repofile::{Node, SnapshotFile};
use serde::Serialize;

use super::{Repo, RepoError, SnapshotInfo};
use crate::model::naming::{self, SnapshotKind};

/// One archived WAL file (a segment, a `.partial` segment or a timeline `.history` file).
#[derive(Clone, Debug, Serialize)]
pub struct WalFile {
    pub name: String,
    pub size: u64,
    /// When the archiver last saw it written (its modification time in the spool).
    #[serde(with = "crate::model::time::serde_utc")]
    pub mtime: Timestamp,
}

fn mtime(node: &Node) -> Timestamp {
    node.meta.mtime.unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Of two versions of a file, the later one (a `.partial` segment grows between flushes).
fn later(a: &Node, b: &Node) -> std::cmp::Ordering {
    mtime(a).cmp(&mtime(b)).then(a.meta.size.cmp(&b.meta.size))
}

impl Repo {
    /// The committed snapshots of one kind of one source, oldest first.
    fn committed_of(
        &self,
        kind: SnapshotKind,
        source: &str,
    ) -> Result<Vec<SnapshotFile>, RepoError> {
        let mut all: Vec<SnapshotFile> = self
            .rustic()
            .get_all_snapshots()
            .map_err(|e| self.err("listing snapshots", &e))?
            .into_iter()
            .filter(|sn| SnapshotInfo::from_file(sn).is_committed(kind, source))
            .collect();
        all.sort_unstable_by(|a, b| a.time.cmp(&b.time));
        Ok(all)
    }

    /// The committed snapshots of one kind of one source (base backups, WAL), oldest first.
    ///
    /// # Errors
    /// When the repository cannot be read.
    pub fn snapshots_of(
        &self,
        kind: SnapshotKind,
        source: &str,
    ) -> Result<Vec<SnapshotInfo>, RepoError> {
        Ok(self
            .committed_of(kind, source)?
            .iter()
            .map(SnapshotInfo::from_file)
            .collect())
    }

    /// Every archived WAL file of a source with the node that holds its latest version.
    fn wal_nodes(&self, source: &str) -> Result<BTreeMap<String, Node>, RepoError> {
        let snaps = self.committed_of(SnapshotKind::Wal, source)?;
        let mut files: BTreeMap<String, Node> = BTreeMap::new();
        if snaps.is_empty() {
            return Ok(files);
        }
        let indexed = self
            .reopen()?
            .to_indexed_ids()
            .map_err(|e| self.err("reading the index", &e))?;
        let root = SnapshotKind::Wal.root(source);
        for sn in snaps {
            let dir = indexed
                .node_from_path(sn.tree, &root)
                .map_err(|e| self.err("reading the archived WAL", &e))?;
            let Some(subtree) = dir.subtree else { continue };
            let tree = indexed
                .get_tree(&subtree)
                .map_err(|e| self.err("reading the archived WAL", &e))?;
            for node in tree.nodes {
                if !node.is_file() {
                    continue;
                }
                let name = node.name().to_string_lossy().into_owned();
                match files.get(&name) {
                    Some(known) if later(known, &node).is_ge() => {}
                    _ => {
                        files.insert(name, node);
                    }
                }
            }
        }
        Ok(files)
    }

    /// Every archived WAL file of a source, by name.
    ///
    /// # Errors
    /// When the repository cannot be read.
    pub fn wal_files(&self, source: &str) -> Result<Vec<WalFile>, RepoError> {
        Ok(self
            .wal_nodes(source)?
            .into_iter()
            .map(|(name, node)| WalFile {
                name,
                size: node.meta.size,
                mtime: mtime(&node),
            })
            .collect())
    }

    /// Writes the named archived WAL files into `dir` (each under the name given with it);
    /// returns the bytes written.
    ///
    /// # Errors
    /// When a file is not archived, cannot be read, or cannot be written.
    pub fn fetch_wal(
        &self,
        source: &str,
        wanted: &[(String, String)],
        dir: &Path,
    ) -> Result<u64, RepoError> {
        let nodes = self.wal_nodes(source)?;
        let indexed = self
            .reopen()?
            .to_indexed()
            .map_err(|e| self.err("reading the index", &e))?;
        let mut total = 0;
        for (name, as_name) in wanted {
            let node = nodes
                .get(name)
                .ok_or_else(|| RepoError::FileNotInSnapshot {
                    location: self.location().to_string(),
                    snapshot: format!("{} of source {source}", naming::TAG_WAL),
                    path: name.clone(),
                })?;
            let path = dir.join(as_name);
            let io = |e: std::io::Error| RepoError::Storage {
                location: self.location().to_string(),
                operation: "writing fetched WAL",
                message: format!("{}: {e}", path.display()),
            };
            let mut file = std::fs::File::create(&path).map_err(io)?;
            indexed
                .dump(node, &mut file)
                .map_err(|e| self.err("reading the archived WAL", &e))?;
            file.flush().map_err(io)?;
            total += node.meta.size;
        }
        Ok(total)
    }

    /// When a source has more than `at_most` WAL snapshots, merges them all into one (then
    /// deletes the merged ones). A crash in between leaves both, which the next roll-up merges
    /// again: nothing is ever lost. Returns the merged snapshot, if one was written.
    ///
    /// # Errors
    /// When the repository cannot be read or written.
    pub fn roll_up_wal(
        &self,
        source: &str,
        at_most: usize,
    ) -> Result<Option<SnapshotInfo>, RepoError> {
        let snaps = self.committed_of(SnapshotKind::Wal, source)?;
        if snaps.len() <= at_most.max(1) {
            return Ok(None);
        }
        let newest = snaps.last().expect("more than one snapshot");
        let mut opts = SnapshotOptions::default();
        opts.host = Some(newest.hostname.clone());
        let mut template = opts
            .to_snapshot()
            .map_err(|e| self.err("preparing the merged snapshot", &e))?;
        template.tags = newest.tags.clone();
        let indexed = self
            .reopen()?
            .to_indexed_ids()
            .map_err(|e| self.err("reading the index", &e))?;
        let merged = indexed
            .merge_snapshots(&snaps, &later, template)
            .map_err(|e| self.err("merging WAL snapshots", &e))?;
        let old: Vec<_> = snaps.iter().map(|s| s.id).collect();
        self.rustic()
            .delete_snapshots(&old)
            .map_err(|e| self.err("removing merged WAL snapshots", &e))?;
        Ok(Some(SnapshotInfo::from_file(&merged)))
    }

    /// Streams one file of a base backup snapshot (`base.tar`, `info.json`) into `writer`.
    ///
    /// # Errors
    /// As [`Repo::dump_file`].
    pub fn dump_base_file(
        &self,
        snapshot_id: &str,
        source: &str,
        name: &str,
        writer: &mut impl Write,
    ) -> Result<u64, RepoError> {
        self.dump_file(
            snapshot_id,
            &SnapshotKind::Base.root(source).join(name),
            writer,
        )
    }
}
