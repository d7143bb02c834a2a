//! Point-in-time recovery's files in a repository: a source's archived write-ahead log, spread
//! over its `custodian-wal` snapshots (see `model::naming`), and the roll-up that merges those
//! snapshots into one so that `restic snapshots` stays short. Merging only writes new trees:
//! rustic_core's `merge_snapshots` reuses every file's data blobs, nothing is read or stored
//! again.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use jiff::Timestamp;
use rustic_core::repofile::{Node, SnapshotFile};
use rustic_core::{SnapshotOptions, StringList};
use serde::Serialize;

use super::{Repo, RepoError, SnapshotInfo};
use crate::model::naming::SnapshotKind;
use crate::model::wal::{SEGMENT_SIZE, Segment, parse_lsn};

/// One archived WAL file (a segment, a `.partial` segment or a timeline `.history` file).
#[derive(Clone, Debug, Serialize)]
pub struct WalFile {
    pub name: String,
    pub size: u64,
    /// When the archiver last saw it written (its modification time in the spool).
    #[serde(with = "crate::model::time::serde_utc")]
    pub mtime: Timestamp,
}

/// A WAL snapshot and the segment numbers it holds (`None`: only timeline history files).
type WalRange = (SnapshotFile, Option<(u64, u64)>);

fn mtime(node: &Node) -> Timestamp {
    node.meta.mtime.unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Of two versions of a file, the later one (a `.partial` segment grows between flushes).
fn later(a: &Node, b: &Node) -> std::cmp::Ordering {
    mtime(a).cmp(&mtime(b)).then(a.meta.size.cmp(&b.meta.size))
}

/// A fetched file with its whole size reserved up front and only its non-zero blocks written.
/// A segment the server switched early (`archive_timeout`) is mostly zeros: they cost no write
/// at all here, yet the file is allocated, so a server that later recycles it for new WAL
/// never finds the disk full halfway through a segment.
struct Reserved {
    file: std::fs::File,
    offset: u64,
}

impl Reserved {
    fn create(path: &Path, size: u64) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        // Without fallocate (or glibc's emulation of it) the file is sparse instead: it still
        // reads as zeros where nothing is written.
        let reserved = i64::try_from(size)
            .ok()
            .filter(|n| *n > 0)
            .is_some_and(|n| nix::fcntl::posix_fallocate(&file, 0, n).is_ok());
        if !reserved {
            file.set_len(size)?;
        }
        Ok(Self { file, offset: 0 })
    }

    /// Cuts the file to what was written (the archived size). Nothing is synced: the copy
    /// lives only as long as the recovery that reads it.
    fn finish(self) -> std::io::Result<()> {
        self.file.set_len(self.offset)
    }
}

impl Write for Reserved {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        if buf.iter().any(|b| *b != 0) {
            self.file.write_all_at(buf, self.offset)?;
        }
        self.offset += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The tag of a merged log snapshot: `custodian-rollup:N`, its tier (a flush's own snapshot is
/// tier 0).
const ROLLUP_TAG: &str = "custodian-rollup:";

fn rollup_tier(sn: &SnapshotFile) -> u32 {
    sn.tags
        .iter()
        .find_map(|t| t.strip_prefix(ROLLUP_TAG).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// Of the snapshots of the era still being written, the lowest tier that has `fanout` of them
/// (with the tiers above that it then fills, merged at once: a tier-`N` snapshot from `fanout`
/// of tier `N-1` joins the others of tier `N`).
fn tier_to_merge(snaps: Vec<SnapshotFile>, fanout: usize) -> Option<Vec<SnapshotFile>> {
    let mut tiers: BTreeMap<u32, Vec<SnapshotFile>> = BTreeMap::new();
    for sn in snaps {
        tiers.entry(rollup_tier(&sn)).or_default().push(sn);
    }
    let mut take: Vec<SnapshotFile> = Vec::new();
    for (_, group) in tiers {
        // What is taken so far becomes one snapshot of the tier above: it counts as one.
        let count = group.len() + usize::from(!take.is_empty());
        if count >= fanout {
            take.extend(group);
        } else if take.is_empty() {
            continue;
        } else {
            break;
        }
    }
    (!take.is_empty()).then_some(take)
}

impl Repo {
    /// The committed snapshots of one kind of one source, oldest first.
    fn committed_of(
        &self,
        kind: SnapshotKind,
        source: &str,
    ) -> Result<Vec<SnapshotFile>, RepoError> {
        let mut all: Vec<SnapshotFile> = self
            .all_snapshots()?
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
    fn log_nodes(
        &self,
        source: &str,
        kind: SnapshotKind,
    ) -> Result<BTreeMap<String, Node>, RepoError> {
        let snaps = self.committed_of(kind, source)?;
        let mut files: BTreeMap<String, Node> = BTreeMap::new();
        if snaps.is_empty() {
            return Ok(files);
        }
        let indexed = self
            .reopen()?
            .to_indexed_ids()
            .map_err(|e| self.err("reading the index", &e))?;
        let root = kind.root(source);
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
    pub fn log_files(&self, source: &str, kind: SnapshotKind) -> Result<Vec<WalFile>, RepoError> {
        Ok(self
            .log_nodes(source, kind)?
            .into_iter()
            .map(|(name, node)| WalFile {
                name,
                size: node.meta.size,
                mtime: mtime(&node),
            })
            .collect())
    }

    /// Writes the named archived WAL files into `dir` (each under the name given with it), in
    /// the order given; returns the bytes written. Each file is written under a temporary name
    /// and renamed when whole (after `ready` saw it, e.g. to give it to the server's user), so
    /// a reader that waits for a name never sees half a file.
    ///
    /// # Errors
    /// When a file is not archived, cannot be read, or cannot be written.
    pub fn fetch_log(
        &self,
        source: &str,
        kind: SnapshotKind,
        wanted: &[(String, String)],
        dir: &Path,
        ready: &mut dyn FnMut(&Path) -> std::io::Result<()>,
    ) -> Result<u64, RepoError> {
        let nodes = self.log_nodes(source, kind)?;
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
                    snapshot: format!("{} of source {source}", kind.tag()),
                    path: name.clone(),
                })?;
            let path = dir.join(as_name);
            let part = dir.join(format!(".{as_name}.part"));
            let io = |e: std::io::Error| RepoError::Storage {
                location: self.location().to_string(),
                operation: "writing fetched WAL",
                message: format!("{}: {e}", path.display()),
            };
            let mut file = Reserved::create(&part, node.meta.size).map_err(io)?;
            indexed
                .dump(node, &mut file)
                .map_err(|e| self.err("reading the archived WAL", &e))?;
            file.finish().map_err(io)?;
            ready(&part).map_err(io)?;
            std::fs::rename(&part, &path).map_err(io)?;
            total += node.meta.size;
        }
        Ok(total)
    }

    /// The log snapshots of one kind of a source, each with the names of the files it holds.
    fn log_contents(
        &self,
        source: &str,
        kind: SnapshotKind,
    ) -> Result<Vec<(SnapshotFile, Vec<String>)>, RepoError> {
        let snaps = self.committed_of(kind, source)?;
        if snaps.is_empty() {
            return Ok(Vec::new());
        }
        let indexed = self
            .reopen()?
            .to_indexed_ids()
            .map_err(|e| self.err("reading the index", &e))?;
        let root = kind.root(source);
        let mut out = Vec::new();
        for sn in snaps {
            let dir = indexed
                .node_from_path(sn.tree, &root)
                .map_err(|e| self.err("reading the archived log", &e))?;
            let mut names = Vec::new();
            if let Some(subtree) = dir.subtree {
                let tree = indexed
                    .get_tree(&subtree)
                    .map_err(|e| self.err("reading the archived log", &e))?;
                names.extend(
                    tree.nodes
                        .iter()
                        .filter(|n| n.is_file())
                        .map(|n| n.name().to_string_lossy().into_owned()),
                );
            }
            out.push((sn, names));
        }
        Ok(out)
    }

    /// The WAL snapshots of a source, each with the range of segment numbers it holds (`None`:
    /// only timeline history files).
    fn log_ranges(&self, source: &str, kind: SnapshotKind) -> Result<Vec<WalRange>, RepoError> {
        Ok(self
            .log_contents(source, kind)?
            .into_iter()
            .map(|(sn, names)| {
                let numbers = names
                    .iter()
                    .filter_map(|n| Segment::parse(n))
                    .map(|s| s.number);
                let range = numbers.fold(None, |r: Option<(u64, u64)>, n| {
                    Some(r.map_or((n, n), |(lo, hi)| (lo.min(n), hi.max(n))))
                });
                (sn, range)
            })
            .collect())
    }

    /// Each base backup of a source: its snapshot, the segment its WAL starts in, and when it
    /// finished (from its `info.json`).
    pub(super) fn base_points(
        &self,
        source: &str,
    ) -> Result<Vec<(SnapshotInfo, u64, Option<Timestamp>)>, RepoError> {
        let mut out = Vec::new();
        for snap in self.snapshots_of(SnapshotKind::Base, source)? {
            let mut json = Vec::new();
            self.dump_base_file(&snap.id, source, "info.json", &mut json)?;
            let info: serde_json::Value = serde_json::from_slice(&json).unwrap_or_default();
            let Some(start) = info["start_lsn"].as_str().and_then(parse_lsn) else {
                continue;
            };
            let finished = info["finished"].as_str().and_then(|t| t.parse().ok());
            out.push((snap, start / SEGMENT_SIZE, finished));
        }
        Ok(out)
    }

    /// Merges a source's log snapshots so that their number stays bounded, writing each
    /// file's tree entry a bounded number of times. WAL is merged in tiers (an LSM tree's
    /// size-tiered compaction): once `fanout` snapshots of one tier accumulate, they become one
    /// of the next tier (a `custodian-rollup:N` tag), so a merge rewrites only the trees of what
    /// it merges — merging everything each time rewrote the whole era's tree, which grows all
    /// day, every few minutes. An era that a newer base backup closed is merged into one.
    /// Merges never cross the start of a base backup, so that retention can later forget whole
    /// snapshots of WAL no kept base backup needs. Binary logs: one snapshot per log file,
    /// merged once there are more than `fanout`. A crash in between leaves both the merged
    /// snapshots and the merge, which the next roll-up merges again: nothing is ever lost.
    /// Returns the merged snapshots.
    ///
    /// # Errors
    /// When the repository cannot be read or written.
    pub fn roll_up_log(
        &self,
        source: &str,
        kind: SnapshotKind,
        fanout: usize,
    ) -> Result<Vec<SnapshotInfo>, RepoError> {
        let fanout = fanout.max(2);
        let contents = self.log_contents(source, kind)?;
        let mut groups: Vec<Vec<SnapshotFile>> = Vec::new();
        if kind == SnapshotKind::Binlog {
            if contents.len() <= fanout {
                return Ok(Vec::new());
            }
            // Binary logs: one snapshot per log file, the one it was written up to (retention
            // drops the snapshots of logs older than the oldest kept backup's).
            let mut eras: BTreeMap<String, Vec<SnapshotFile>> = BTreeMap::new();
            for (sn, names) in contents {
                let newest = names.into_iter().max().unwrap_or_default();
                eras.entry(newest).or_default().push(sn);
            }
            groups.extend(eras.into_values());
        } else {
            let mut starts: Vec<u64> = self
                .base_points(source)?
                .into_iter()
                .map(|(_, start, _)| start)
                .collect();
            starts.sort_unstable();
            // Era n: WAL from the n-th base backup's start on (history files go with the
            // newest).
            let mut eras: BTreeMap<usize, Vec<SnapshotFile>> = BTreeMap::new();
            for (sn, names) in contents {
                let lo = names
                    .iter()
                    .filter_map(|n| Segment::parse(n))
                    .map(|s| s.number)
                    .min();
                let era = lo.map_or(starts.len(), |lo| starts.partition_point(|s| *s <= lo));
                eras.entry(era).or_default().push(sn);
            }
            let open = eras.keys().next_back().copied().unwrap_or_default();
            for (era, snaps) in eras {
                if era == open {
                    groups.extend(tier_to_merge(snaps, fanout));
                } else {
                    groups.push(snaps);
                }
            }
        }
        let mut merged = Vec::new();
        let mut indexed = None;
        for snaps in groups.into_iter().filter(|s| s.len() > 1) {
            if indexed.is_none() {
                indexed = Some(
                    self.reopen()?
                        .to_indexed_ids()
                        .map_err(|e| self.err("reading the index", &e))?,
                );
            }
            let indexed = indexed.as_ref().expect("just opened");
            let newest = snaps
                .iter()
                .max_by_key(|s| s.time.clone())
                .expect("two or more");
            let mut opts = SnapshotOptions::default();
            opts.host = Some(newest.hostname.clone());
            let mut template = opts
                .to_snapshot()
                .map_err(|e| self.err("preparing the merged snapshot", &e))?;
            let tier = snaps.iter().map(rollup_tier).max().unwrap_or_default() + 1;
            template.tags = StringList::default();
            for tag in newest.tags.iter().filter(|t| !t.starts_with(ROLLUP_TAG)) {
                template.tags.add(tag.clone());
            }
            template.tags.add(format!("{ROLLUP_TAG}{tier}"));
            let one = indexed
                .merge_snapshots(&snaps, &later, template)
                .map_err(|e| self.err("merging log snapshots", &e))?;
            let old: Vec<_> = snaps.iter().map(|s| s.id).collect();
            self.rustic()
                .delete_snapshots(&old)
                .map_err(|e| self.err("removing merged log snapshots", &e))?;
            merged.push(SnapshotInfo::from_file(&one));
        }
        Ok(merged)
    }

    /// Adds to `plan` the base backups' effect on the archive: WAL snapshots that hold only WAL
    /// from before the oldest kept base backup's start (no recovery can use it), and those older
    /// than `oldest_allowed` (max-age bounds everything). Without a kept base backup no WAL is
    /// removed: a base backup being taken may need it.
    pub(super) fn plan_wal(
        &self,
        plan: &mut super::ForgetPlan,
        oldest_allowed: Option<Timestamp>,
    ) -> Result<(), RepoError> {
        let sources = self.sources_with(&[SnapshotKind::Wal, SnapshotKind::Base])?;
        let kept: std::collections::HashSet<String> =
            plan.keep.iter().map(|s| s.id.clone()).collect();
        for source in sources {
            let bases = self.base_points(&source)?;
            let opens = |only_kept: bool| {
                bases
                    .iter()
                    .filter(|(s, ..)| !only_kept || kept.contains(&s.id))
                    .filter_map(|(_, _, finished)| *finished)
                    .min()
            };
            let cutoff = bases
                .iter()
                .filter(|(s, ..)| kept.contains(&s.id))
                .map(|(_, start, _)| *start)
                .min();
            for (sn, range) in self.log_ranges(&source, SnapshotKind::Wal)? {
                let info = SnapshotInfo::from_file(&sn);
                let reason = if oldest_allowed.is_some_and(|limit| info.time < limit) {
                    Some("archived WAL older than the retention maximum (max-age)".to_string())
                } else {
                    match (cutoff, range) {
                        (Some(c), Some((_, hi))) if hi < c => Some(format!(
                            "archived WAL from before the oldest kept base backup (segment {}): no recovery can use it",
                            &Segment {
                                timeline: 0,
                                number: c
                            }
                            .name()[8..]
                        )),
                        _ => None,
                    }
                };
                plan.decide(info, reason);
            }
            plan.window(source, opens(false), opens(true));
        }
        self.plan_binlogs(plan, oldest_allowed)
    }

    /// The oldest of `backups` (oldest first) that recorded a binary log position: the file,
    /// and when the backup was taken.
    fn oldest_position(
        &self,
        source: &str,
        backups: &[SnapshotInfo],
    ) -> Result<Option<(String, Timestamp)>, RepoError> {
        for snap in backups {
            let bytes = self.read_file(
                &snap.id,
                &crate::model::naming::file_path(source, crate::model::naming::MANIFEST_FILE),
            )?;
            let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            if let Some(file) = manifest["binlog"]["file"].as_str() {
                return Ok(Some((file.to_string(), snap.time)));
            }
        }
        Ok(None)
    }

    /// Archived binary logs follow the logical backups: a snapshot of logs older than the
    /// oldest kept backup's binary log position goes (and max-age bounds them); while no kept
    /// backup has a position, none goes.
    fn plan_binlogs(
        &self,
        plan: &mut super::ForgetPlan,
        oldest_allowed: Option<Timestamp>,
    ) -> Result<(), RepoError> {
        for source in self.sources_with(&[SnapshotKind::Binlog])? {
            // Oldest first, as `keep` is sorted below only after this: sort a copy.
            let mut kept: Vec<SnapshotInfo> = plan
                .keep
                .iter()
                .filter(|s| s.is_committed_backup() && s.source.as_deref() == Some(source.as_str()))
                .cloned()
                .collect();
            kept.sort_by_key(|s| s.time);
            let cutoff = self.oldest_position(&source, &kept)?;
            let all: Vec<SnapshotInfo> = self
                .snapshots()?
                .into_iter()
                .filter(|s| s.is_committed_backup() && s.source.as_deref() == Some(source.as_str()))
                .collect();
            let before = self.oldest_position(&source, &all)?;
            for (sn, names) in self.log_contents(&source, SnapshotKind::Binlog)? {
                let info = SnapshotInfo::from_file(&sn);
                let newest = names.iter().max().cloned().unwrap_or_default();
                let reason = if oldest_allowed.is_some_and(|limit| info.time < limit) {
                    Some(
                        "archived binary logs older than the retention maximum (max-age)"
                            .to_string(),
                    )
                } else {
                    cutoff.as_ref().filter(|(file, _)| newest < *file).map(|(file, _)| {
                        format!("archived binary logs from before the oldest kept backup's position ({file}): no replay can use them")
                    })
                };
                plan.decide(info, reason);
            }
            plan.window(source, before.map(|(_, at)| at), cutoff.map(|(_, at)| at));
        }
        Ok(())
    }

    /// The sources that have snapshots of any of `kinds`.
    fn sources_with(
        &self,
        kinds: &[SnapshotKind],
    ) -> Result<std::collections::BTreeSet<String>, RepoError> {
        Ok(self
            .snapshots()?
            .into_iter()
            .filter(|s| s.kind.is_some_and(|k| kinds.contains(&k)))
            .filter_map(|s| s.source)
            .collect())
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
