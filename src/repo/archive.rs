//! Writing a backup: files (or streams) → one snapshot, committed only when it is exactly what
//! was read.
//!
//! rustic_core's `archive()` logs reader errors as "ignoring error", leaves the file out and
//! still saves the snapshot (trap 1). So every entry is read through a counting, hashing reader
//! that records errors, and the snapshot is written with the `custodian-pending` tag. Only when
//! every entry was read to its end, with the expected size (and hash, when known), is it
//! committed: re-saved without the tag, and the pending one deleted. A pending snapshot left by
//! a crash is removed by [`Repo::discard_pending`] before the next backup of that source.
//!
//! Sizes go into the tree (trap 6: restic restores a file with no size as an empty file), so
//! `restic restore --verify` yields the whole file: known sizes are given up front, and streams
//! (whose length is known only at their end) get the bytes actually read, recorded by the
//! patched rustic_core in `vendor/` — and checked here against what the probe counted.
//!
//! Writing and committing are separate steps ([`Repo::write_pending`], [`Repo::commit`]) so that
//! the caller can check what the repository cannot see — a dump tool's exit status (trap 2) —
//! before a backup becomes real.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use rustic_core::repofile::{Metadata, Node, NodeType, SnapshotFile, SnapshotId};
use rustic_core::{
    BackupOptions, CutPoints, ErrorKind, ParentOptions, ReadSource, ReadSourceEntry,
    ReadSourceOpen, RusticError, RusticResult, SnapshotOptions, StringList,
};
use sha2::{Digest, Sha256};

use super::{Repo, RepoError, SnapshotInfo};
use crate::model::naming;

/// Go's `os.ModeDir`: restic stores modes the Go way.
const GO_MODE_DIR: u32 = 1 << 31;

/// The chunk size of archived logs (WAL segments, binary logs). A log still being written is
/// stored again at every flush as it grows; with restic's content-defined chunks (1 MiB on
/// average) the chunk around the end of the written data is new at each flush and the completed
/// file never reuses it (on the PITR benchmark the archive took 11 % more than the same segments
/// compressed whole). With fixed chunks every whole chunk of an earlier flush is a chunk of the
/// later file: only the last, partly filled one (64 KiB on average) is stored twice, and the
/// zeros a `.partial` segment is padded with are one blob. Any restic reads files of any
/// chunking.
const LOG_CHUNK_SIZE: usize = 128 * 1024;

/// The zstd level of archived logs. WAL is small once compressed and stored a little at a
/// time, so a higher level than the repository's costs little CPU: on the PITR benchmark's
/// segments (128 KiB chunks) level 3 stored 13.6 MB, level 6 12.2 MB, level 9 12.2 MB.
const LOG_COMPRESSION_LEVEL: i32 = 6;

/// Opens the bytes of one entry when the archiver gets to it.
pub type Opener = Box<dyn FnOnce() -> io::Result<Box<dyn Read + Send>> + Send>;

/// One file of a backup.
pub struct ArchiveEntry {
    /// File name under `/custodian/<source>/`.
    pub name: String,
    /// Exact size in bytes, when known before reading (files); `None` for streams.
    pub size: Option<u64>,
    /// Expected `sha256:<hex>`, checked while reading when given.
    pub sha256: Option<String>,
    pub mtime: Timestamp,
    pub open: Opener,
    /// Where its chunks must end besides where their content says (a tar's member
    /// boundaries), filled in by its reader as it reads.
    pub cuts: Option<Arc<Cuts>>,
}

/// The offsets in one entry's stream where a chunk must end and the next begin, pushed in
/// increasing order by whatever reads the stream (before it hands over the byte at each).
/// A base backup's tar is cut at every member, so that an unchanged file is stored as the
/// same chunks whatever changed beside it: in one content-defined stream, a few changed KiB
/// of a small file (a visibility map, `pg_xact`) made the whole ~1 MiB chunk around them new.
#[derive(Default)]
pub struct Cuts(Mutex<std::collections::VecDeque<u64>>);

impl Cuts {
    /// A chunk ends before `offset`. Offsets not above the last one pushed are ignored.
    pub fn push(&self, offset: u64) {
        let mut cuts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cuts.back().is_none_or(|last| offset > *last) {
            cuts.push_back(offset);
        }
    }
}

impl CutPoints for Cuts {
    /// The chunker asks for ever later offsets: cuts before it are forgotten.
    fn next_cut(&self, offset: u64) -> Option<u64> {
        let mut cuts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while cuts.front().is_some_and(|cut| *cut < offset) {
            cuts.pop_front();
        }
        cuts.front().copied()
    }
}

/// A backup to write.
pub struct ArchiveRequest {
    pub source: String,
    pub engine: String,
    pub hostname: String,
    pub time: Timestamp,
    pub entries: Vec<ArchiveEntry>,
    /// Where rustic_core reports its progress.
    pub bars: Option<super::Bars>,
    /// Called with the bytes of every read from an entry, as they pass (rustic_core itself
    /// reports a file's bytes only once it is stored whole).
    pub on_read: Option<ReadCounter>,
}

/// Counts bytes as they are read.
pub type ReadCounter = Arc<dyn Fn(u64) + Send + Sync>;

/// A committed backup.
#[derive(Clone, Debug)]
pub struct ArchiveOutcome {
    pub snapshot: SnapshotInfo,
    /// What was read from each entry.
    pub entries: Vec<ReadEntry>,
}

/// What was read from one entry: its size and `sha256:<hex>`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReadEntry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// A backup written to the repository but not committed: it carries the `custodian-pending`
/// tag until [`Repo::commit`]; [`Repo::discard`] deletes it. Either must be called: a pending
/// snapshot left behind is removed by the next backup of its source.
pub struct Pending {
    snapshot: SnapshotFile,
    /// What was read, entry by entry.
    pub entries: Vec<ReadEntry>,
}

impl Pending {
    /// Bytes read over all entries.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.bytes).sum()
    }
}

/// What happened while one entry was read.
#[derive(Default)]
struct Probe {
    opened: AtomicBool,
    finished: AtomicBool,
    bytes: AtomicU64,
    sha256: Mutex<Option<String>>,
    error: Mutex<Option<String>>,
}

impl Probe {
    fn fail(&self, message: String) {
        let mut error = self
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        error.get_or_insert(message);
    }
}

struct CountingReader {
    inner: Box<dyn Read + Send>,
    hasher: Sha256,
    probe: Arc<Probe>,
    counter: Option<ReadCounter>,
}

impl Read for CountingReader {
    /// Fills `buf` completely unless the stream ends: rustic_core's chunker shrinks its read
    /// buffer to the size of each short read, so a pipe that hands out a few bytes at a time
    /// would otherwise degrade it to one system call per byte.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    self.probe.fail(err.to_string());
                    if filled == 0 {
                        return Err(err);
                    }
                    // Hand over what was read; the failure is recorded and fails the backup.
                    break;
                }
            }
        }
        if filled == 0 && !buf.is_empty() {
            let digest = std::mem::take(&mut self.hasher).finalize();
            *self
                .probe
                .sha256
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(format!("sha256:{}", hex::encode(digest)));
            self.probe.finished.store(true, Ordering::SeqCst);
            return Ok(0);
        }
        self.hasher.update(&buf[..filled]);
        self.probe.bytes.fetch_add(filled as u64, Ordering::SeqCst);
        if let Some(count) = &self.counter {
            count(filled as u64);
        }
        Ok(filled)
    }
}

struct EntryOpener {
    open: Opener,
    probe: Arc<Probe>,
    counter: Option<ReadCounter>,
    cuts: Option<Arc<Cuts>>,
}

impl ReadSourceOpen for EntryOpener {
    type Reader = CountingReader;

    fn cut_points(&self) -> Option<Arc<dyn CutPoints>> {
        self.cuts.clone().map(|c| c as Arc<dyn CutPoints>)
    }

    fn open(self) -> RusticResult<Self::Reader> {
        self.probe.opened.store(true, Ordering::SeqCst);
        match (self.open)() {
            Ok(inner) => Ok(CountingReader {
                inner,
                hasher: Sha256::new(),
                probe: self.probe,
                counter: self.counter,
            }),
            Err(err) => {
                self.probe.fail(format!("cannot open: {err}"));
                Err(RusticError::with_source(
                    ErrorKind::InputOutput,
                    "Opening a backup stream failed.",
                    err,
                ))
            }
        }
    }
}

/// The entries of one backup as a rustic_core source. `entries()` hands them out once.
struct Entries {
    items: Mutex<Vec<ReadSourceEntry<EntryOpener>>>,
    /// Total size, when every entry's size is known.
    total: Option<u64>,
}

impl ReadSource for Entries {
    type Open = EntryOpener;
    type Iter = std::vec::IntoIter<RusticResult<ReadSourceEntry<EntryOpener>>>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(self.total)
    }

    fn entries(&self) -> Self::Iter {
        let items = std::mem::take(
            &mut *self
                .items
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        items.into_iter().map(Ok).collect::<Vec<_>>().into_iter()
    }
}

struct Expected {
    name: String,
    size: Option<u64>,
    sha256: Option<String>,
    probe: Arc<Probe>,
}

impl Expected {
    fn read(&self) -> ReadEntry {
        ReadEntry {
            name: self.name.clone(),
            bytes: self.probe.bytes.load(Ordering::SeqCst),
            sha256: self
                .probe
                .sha256
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .unwrap_or_default(),
        }
    }

    /// Why the entry is not what was meant to be stored, if it is not.
    fn problem(&self) -> Option<String> {
        let p = &self.probe;
        let error = p
            .error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(error) = error {
            return Some(format!("reading failed: {error}"));
        }
        if !p.opened.load(Ordering::SeqCst) {
            return Some("it was never read".into());
        }
        let bytes = p.bytes.load(Ordering::SeqCst);
        if !p.finished.load(Ordering::SeqCst) {
            return Some(format!("reading stopped after {bytes} bytes"));
        }
        if let Some(size) = self.size
            && bytes != size
        {
            return Some(format!("{bytes} bytes read, {size} expected"));
        }
        let actual = p
            .sha256
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match (&self.sha256, actual) {
            (Some(expected), Some(actual)) if *expected != actual => Some(format!(
                "content hash {actual} differs from {expected}: the file changed while it was read"
            )),
            _ => None,
        }
    }
}

fn tags(list: &[&str]) -> Result<StringList, String> {
    list.join(",").parse().map_err(|e| format!("{e}"))
}

impl Repo {
    /// Writes one backup and commits it only if it is complete (see the module docs).
    ///
    /// # Errors
    /// As [`Repo::write_pending`] and [`Repo::commit`].
    pub fn archive(&self, request: ArchiveRequest) -> Result<ArchiveOutcome, RepoError> {
        self.archive_kind(request, naming::SnapshotKind::Backup)
    }

    /// As [`Repo::archive`], for a snapshot of the given kind (WAL, base backup).
    ///
    /// # Errors
    /// As [`Repo::write_pending`] and [`Repo::commit`].
    pub fn archive_kind(
        &self,
        request: ArchiveRequest,
        kind: naming::SnapshotKind,
    ) -> Result<ArchiveOutcome, RepoError> {
        let pending = self.write_pending_kind(request, kind)?;
        let entries = pending.entries.clone();
        let snapshot = self.commit(pending)?;
        Ok(ArchiveOutcome { snapshot, entries })
    }

    /// Writes a backup as a pending snapshot, reading every entry through a counting, hashing
    /// reader. An entry that failed, stopped early, or differs from its announced size or hash
    /// makes the snapshot be deleted at once.
    ///
    /// # Errors
    /// [`RepoError::Incomplete`] when an entry was not read completely (nothing is left
    /// behind), or a storage error.
    pub fn write_pending(&self, request: ArchiveRequest) -> Result<Pending, RepoError> {
        self.write_pending_kind(request, naming::SnapshotKind::Backup)
    }

    fn write_pending_kind(
        &self,
        request: ArchiveRequest,
        kind: naming::SnapshotKind,
    ) -> Result<Pending, RepoError> {
        let root = kind.root(&request.source);
        let mut requested = request.entries;
        requested.sort_by(|a, b| a.name.cmp(&b.name));
        let mut expected = Vec::with_capacity(requested.len());
        let mut items = Vec::with_capacity(requested.len() + 2);
        // Explicit directory nodes, so that restic restores `/custodian/<source>` with sane
        // permissions and the backup's time instead of the zero time.
        let dirs: Vec<&std::path::Path> =
            root.ancestors().filter(|d| d.parent().is_some()).collect();
        for dir in dirs.into_iter().rev() {
            let meta = Metadata {
                mode: Some(GO_MODE_DIR | 0o755),
                mtime: Some(request.time),
                ..Metadata::default()
            };
            let name = dir.file_name().unwrap_or_default();
            items.push(ReadSourceEntry {
                path: dir.to_path_buf(),
                node: Node::new_node(name, NodeType::Dir, meta),
                open: None,
            });
        }
        for entry in requested {
            let probe = Arc::new(Probe::default());
            let meta = Metadata {
                mode: Some(0o600),
                mtime: Some(entry.mtime),
                size: entry.size.unwrap_or(0),
                ..Metadata::default()
            };
            items.push(ReadSourceEntry {
                path: root.join(&entry.name),
                node: Node::new_node(OsStr::new(&entry.name), NodeType::File, meta),
                open: Some(EntryOpener {
                    open: entry.open,
                    probe: probe.clone(),
                    counter: request.on_read.clone(),
                    cuts: entry.cuts,
                }),
            });
            expected.push(Expected {
                name: entry.name,
                size: entry.size,
                sha256: entry.sha256,
                probe,
            });
        }
        let known: Option<u64> = expected.iter().map(|e| e.size).sum();
        let source = Entries {
            items: Mutex::new(items),
            total: known,
        };

        let source_tag = naming::source_tag(&request.source);
        let engine_tag = naming::engine_tag(&request.engine);
        let mut snap_opts = SnapshotOptions::default();
        snap_opts.host = Some(request.hostname.clone());
        snap_opts.time = Some(request.time.to_zoned(jiff::tz::TimeZone::UTC));
        snap_opts.tags =
            vec![self.tags(&[kind.tag(), &source_tag, &engine_tag, naming::TAG_PENDING])?];
        let snap = snap_opts
            .to_snapshot()
            .map_err(|e| self.err("preparing the snapshot", &e))?;
        // Trap 3: never let a parent snapshot stand in for data that was not read.
        let logs = matches!(
            kind,
            naming::SnapshotKind::Wal | naming::SnapshotKind::Binlog
        );
        let opts = BackupOptions::default()
            .parent_opts(ParentOptions::default().force(true))
            .no_scan(true)
            .fixed_chunk_size(logs.then_some(LOG_CHUNK_SIZE))
            .compression_level(logs.then_some(LOG_COMPRESSION_LEVEL));

        let indexed = self
            .reopen_with(request.bars.clone())?
            .to_indexed_ids()
            .map_err(|e| self.err("reading the index", &e))?;
        let pending = indexed
            .archive(&opts, &source, snap, std::slice::from_ref(&root))
            .map_err(|e| self.err("writing the backup", &e))?;

        let mut problems: Vec<String> = expected
            .iter()
            .filter_map(|e| e.problem().map(|p| format!("{}: {p}", e.name)))
            .collect();
        let read: Vec<ReadEntry> = expected.iter().map(Expected::read).collect();
        let total: u64 = read.iter().map(|r| r.bytes).sum();
        if let Some(summary) = &pending.summary
            && problems.is_empty()
            && (summary.total_files_processed != expected.len() as u64
                || summary.total_bytes_processed != total)
        {
            problems.push(format!(
                "the snapshot holds {} files / {} bytes, {} / {} were streamed",
                summary.total_files_processed,
                summary.total_bytes_processed,
                expected.len(),
                total
            ));
        }
        let pending = Pending {
            snapshot: pending,
            entries: read,
        };
        if !problems.is_empty() {
            self.discard(pending)?;
            return Err(RepoError::Incomplete {
                location: self.location().to_string(),
                path: root.display().to_string(),
                detail: problems.join("; "),
            });
        }
        Ok(pending)
    }

    fn tags(&self, list: &[&str]) -> Result<StringList, RepoError> {
        tags(list).map_err(|message| RepoError::Storage {
            location: self.location().to_string(),
            operation: "tagging the snapshot",
            message,
        })
    }

    /// Deletes a pending snapshot (the backup is abandoned).
    ///
    /// # Errors
    /// When the repository cannot be written.
    pub fn discard(&self, pending: Pending) -> Result<(), RepoError> {
        if pending.snapshot.id != SnapshotId::default() {
            self.rustic()
                .delete_snapshots(&[pending.snapshot.id])
                .map_err(|e| self.err("discarding the incomplete snapshot", &e))?;
        }
        Ok(())
    }

    /// Commits a pending snapshot: re-saves it without the pending tag, then deletes the pending
    /// one. A crash in between leaves a pending snapshot behind, never two committed copies of
    /// a backup.
    ///
    /// # Errors
    /// When the repository cannot be written, or the sizes in the tree do not match what was
    /// read.
    pub fn commit(&self, pending: Pending) -> Result<SnapshotInfo, RepoError> {
        let mut snap = pending.snapshot.clone();
        let pending_id = snap.id;
        snap.tags.remove_all(&[self.tags(&[naming::TAG_PENDING])?]);
        // The committed snapshot is the backup's identity: it is nobody's copy.
        snap.original = None;
        self.rustic()
            .save_snapshots(vec![snap.clone()])
            .map_err(|e| self.err("committing the snapshot", &e))?;
        self.rustic()
            .delete_snapshots(&[pending_id])
            .map_err(|e| self.err("removing the pending snapshot", &e))?;
        let committed = self
            .all_snapshots()?
            .into_iter()
            .find(|sn| {
                sn.tree == snap.tree
                    && sn.time == snap.time
                    && !sn.tags.contains(naming::TAG_PENDING)
            })
            .ok_or_else(|| RepoError::Storage {
                location: self.location().to_string(),
                operation: "committing the snapshot",
                message: "the committed snapshot cannot be found after saving it".into(),
            })?;
        Ok(SnapshotInfo::from_file(&committed))
    }

    /// Deletes pending snapshots of a source: leftovers of a backup that was killed between
    /// writing and committing. Returns their ids.
    ///
    /// # Errors
    /// When the repository cannot be read or written.
    pub fn discard_pending(&self, source: &str) -> Result<Vec<String>, RepoError> {
        self.discard_pending_kind(source, naming::SnapshotKind::Backup)
    }

    /// As [`Repo::discard_pending`], for snapshots of one kind only: a backup never removes
    /// the archiver's pending WAL snapshot, nor the other way round.
    ///
    /// # Errors
    /// When the repository cannot be read or written.
    pub fn discard_pending_kind(
        &self,
        source: &str,
        kind: naming::SnapshotKind,
    ) -> Result<Vec<String>, RepoError> {
        let all = self.all_snapshots()?;
        let stale: Vec<_> = all
            .iter()
            .filter(|sn| {
                sn.tags.contains(naming::TAG_PENDING)
                    && sn.tags.contains(kind.tag())
                    && sn.tags.contains(&naming::source_tag(source))
            })
            .map(|sn| sn.id)
            .collect();
        if !stale.is_empty() {
            self.rustic()
                .delete_snapshots(&stale)
                .map_err(|e| self.err("removing pending snapshots", &e))?;
        }
        Ok(stale.iter().map(|id| id.to_hex().to_string()).collect())
    }
}
