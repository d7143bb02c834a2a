//! The repository layer's guards against rustic_core's traps, driven through the library with
//! readers that fail in the ways real dumps fail. restic is the judge of what is left behind.

use crate::common;

use std::io::{self, Read};
use std::sync::Arc;

use custodian::location::LocalStorage;
use custodian::repo::{ArchiveEntry, ArchiveRequest, Backend, Repo};
use custodian::secret::Secret;
use rustic_core::WriteBackend;

const PASSWORD: &str = "guard-test-password";

fn new_repo(dir: &std::path::Path) -> Repo {
    let backend: Arc<dyn WriteBackend> = Arc::new(LocalStorage::new(dir).unwrap());
    Repo::init(
        "test",
        &dir.display().to_string(),
        Backend::uncached(backend),
        &Secret::new(PASSWORD.into()),
        None,
    )
    .unwrap()
}

/// Deterministic, poorly compressible bytes.
fn content(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Yields `data`, then fails with an I/O error instead of reaching the end.
struct FailsAfter {
    data: io::Cursor<Vec<u8>>,
}

impl Read for FailsAfter {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.data.read(buf)? {
            0 => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "dump process died",
            )),
            n => Ok(n),
        }
    }
}

fn request(
    size: Option<u64>,
    sha256: Option<String>,
    reader: Box<dyn Read + Send>,
) -> ArchiveRequest {
    let mut reader = Some(reader);
    ArchiveRequest {
        source: "crm".into(),
        engine: "sqlite".into(),
        hostname: "guard-host".into(),
        time: jiff::Timestamp::now(),
        entries: vec![ArchiveEntry {
            name: "crm.sqlite".into(),
            size,
            sha256,
            // Fixed, so that only forcing (not differing metadata) keeps a parent from
            // standing in for the data.
            mtime: "2026-01-01T00:00:00Z".parse().unwrap(),
            cuts: None,
            open: Box::new(move || Ok(reader.take().unwrap())),
        }],
        bars: None,
        on_read: None,
    }
}

/// A backup of one PostgreSQL file (a WAL segment, a base backup's tar) at `time`.
fn postgres_request(time: jiff::Timestamp, entry: ArchiveEntry) -> ArchiveRequest {
    ArchiveRequest {
        source: "crm".into(),
        engine: "postgres".into(),
        hostname: "guard-host".into(),
        time,
        entries: vec![entry],
        bars: None,
        on_read: None,
    }
}

fn restic_sees_no_snapshot_and_a_sound_repository(dir: &std::path::Path) {
    let key = dir.with_extension("key");
    std::fs::write(&key, PASSWORD).unwrap();
    let out = common::restic(dir, &key, &["snapshots", "--json"]);
    common::assert_success(&out, "restic snapshots");
    let snaps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        snaps,
        serde_json::json!([]),
        "no snapshot may survive a broken stream"
    );
    common::assert_success(
        &common::restic(dir, &key, &["check", "--read-data"]),
        "restic check",
    );
}

#[test]
fn a_reader_error_mid_stream_discards_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let repo = new_repo(&path);
    let data = content(6 << 20);
    let reader = Box::new(FailsAfter {
        data: io::Cursor::new(data[..3 << 20].to_vec()),
    });
    let err = repo
        .archive(request(Some(data.len() as u64), None, reader))
        .unwrap_err();
    assert_eq!(err.code(), "repo.incomplete_backup");
    assert!(err.to_string().contains("dump process died"), "{err}");
    assert!(repo.snapshots().unwrap().is_empty());
    restic_sees_no_snapshot_and_a_sound_repository(&path);
}

#[test]
fn a_stream_shorter_than_announced_is_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let repo = new_repo(&path);
    let data = content(2 << 20);
    let err = repo
        .archive(request(
            Some(4 << 20),
            None,
            Box::new(io::Cursor::new(data)),
        ))
        .unwrap_err();
    assert_eq!(err.code(), "repo.incomplete_backup");
    assert!(
        err.to_string()
            .contains("2097152 bytes read, 4194304 expected"),
        "{err}"
    );
    restic_sees_no_snapshot_and_a_sound_repository(&path);
}

#[test]
fn content_that_changed_while_read_is_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let repo = new_repo(&path);
    let data = content(1 << 20);
    let wrong = Some(format!("sha256:{}", "0".repeat(64)));
    let err = repo
        .archive(request(
            Some(data.len() as u64),
            wrong,
            Box::new(io::Cursor::new(data)),
        ))
        .unwrap_err();
    assert!(
        err.to_string().contains("changed while it was read"),
        "{err}"
    );
    restic_sees_no_snapshot_and_a_sound_repository(&path);
}

#[test]
fn a_complete_stream_is_committed_byte_for_byte_and_forced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let repo = new_repo(&path);
    let data = content(3 << 20);
    let first = repo
        .archive(request(
            Some(data.len() as u64),
            None,
            Box::new(io::Cursor::new(data.clone())),
        ))
        .unwrap();
    assert!(!first.snapshot.pending);
    assert_eq!(first.snapshot.bytes, data.len() as u64);
    // Same metadata, different bytes: a parent must never stand in for unread data (trap 3).
    let mut other = data.clone();
    other[100] ^= 0xff;
    let second = repo
        .archive(request(
            Some(other.len() as u64),
            None,
            Box::new(io::Cursor::new(other.clone())),
        ))
        .unwrap();
    let mut out = Vec::new();
    repo.dump_file(
        &second.snapshot.id,
        std::path::Path::new("/custodian/crm/crm.sqlite"),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, other);
    let snaps = repo.snapshots().unwrap();
    assert_eq!(snaps.len(), 2);
    assert!(snaps.iter().all(|s| !s.pending && s.is_committed_backup()));
}

#[test]
fn a_stream_of_unknown_size_is_stored_whole_for_restic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let repo = new_repo(&path);
    let data = content(5 << 20);
    let outcome = repo
        .archive(request(None, None, Box::new(io::Cursor::new(data.clone()))))
        .unwrap();
    assert_eq!(outcome.entries[0].bytes, data.len() as u64);
    // restic restores the whole stream (rustic_core alone would record size 0: trap 6).
    let key = path.with_extension("key");
    std::fs::write(&key, PASSWORD).unwrap();
    let target = dir.path().join("restored");
    let out = common::restic(
        &path,
        &key,
        &[
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
            "--verify",
        ],
    );
    common::assert_success(&out, "restic restore --verify");
    assert_eq!(
        std::fs::read(target.join("custodian/crm/crm.sqlite")).unwrap(),
        data
    );

    // A failing stream of unknown size is discarded like any other.
    let reader = Box::new(FailsAfter {
        data: io::Cursor::new(data[..1 << 20].to_vec()),
    });
    let err = repo.archive(request(None, None, reader)).unwrap_err();
    assert_eq!(err.code(), "repo.incomplete_backup");
    assert_eq!(repo.snapshots().unwrap().len(), 1);
}

/// The bytes of the repository's packs.
fn data_bytes(repo: &std::path::Path) -> u64 {
    fn walk(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path())
                } else {
                    e.metadata().unwrap().len()
                }
            })
            .sum()
    }
    walk(&repo.join("data"))
}

/// A WAL segment is stored at every flush while it is written (as `<segment>.partial`, padded
/// with zeros to its full size the way `pg_receivewal` writes it), then once more complete.
/// Every whole chunk of an earlier flush is reused by the later ones, so the segment is stored
/// about once: at most one partly filled chunk per flush more. (With content-defined chunks
/// each flush added about a chunk, 1 MiB on average: 1.25 MB more here.) restic dumps every
/// version byte for byte.
#[test]
fn a_growing_wal_segment_is_stored_about_once() {
    use custodian::model::naming::SnapshotKind;
    const SEGMENT: usize = 16 << 20;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let repo = new_repo(&path);
    let written = content(SEGMENT);
    let name = "000000010000000000000007";
    let flush = |file: String, data: Vec<u8>, minute: u32| {
        let mut data = Some(data);
        let request = postgres_request(
            format!("2026-01-01T00:{minute:02}:00Z").parse().unwrap(),
            ArchiveEntry {
                name: file,
                size: Some(SEGMENT as u64),
                sha256: None,
                mtime: format!("2026-01-01T00:{minute:02}:00Z").parse().unwrap(),
                cuts: None,
                open: Box::new(move || Ok(Box::new(io::Cursor::new(data.take().unwrap())))),
            },
        );
        repo.archive_kind(request, SnapshotKind::Wal).unwrap();
    };
    let padded = |len: usize| {
        let mut v = written[..len].to_vec();
        v.resize(SEGMENT, 0);
        v
    };
    let fills = [1_300_000, 4_700_000, 9_100_123];
    for (i, len) in fills.iter().enumerate() {
        flush(format!("{name}.partial"), padded(*len), i as u32);
    }
    flush(name.to_string(), written.clone(), 9);

    // The data is incompressible and the zeros are one small blob: what the packs hold beyond
    // one segment is what the flushes stored twice.
    let stored = data_bytes(&path);
    let extra = stored.saturating_sub(SEGMENT as u64);
    let allowed = fills.len() as u64 * (128 << 10) + (64 << 10);
    assert!(
        extra <= allowed,
        "{stored} bytes stored for one {SEGMENT}-byte segment flushed {} times: {extra} more \
         (allowed {allowed})",
        fills.len() + 1
    );

    // restic reads the fixed-size chunks like any others.
    let key = path.with_extension("key");
    std::fs::write(&key, PASSWORD).unwrap();
    let out = common::restic(
        &path,
        &key,
        &["dump", "latest", &format!("/custodian/crm/wal/{name}")],
    );
    common::assert_success(&out, "restic dump of the segment");
    assert!(out.stdout == written, "the complete segment, byte for byte");
    // Each flush is a snapshot of its own: the third holds the last partial version.
    let snaps = common::restic(&path, &key, &["snapshots", "--json"]);
    let snaps: Vec<serde_json::Value> = serde_json::from_slice(&snaps.stdout).unwrap();
    let mut ids: Vec<(&str, &str)> = snaps
        .iter()
        .map(|s| (s["time"].as_str().unwrap(), s["id"].as_str().unwrap()))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids.len(), fills.len() + 1);
    let out = common::restic(
        &path,
        &key,
        &[
            "dump",
            ids[fills.len() - 1].1,
            &format!("/custodian/crm/wal/{name}.partial"),
        ],
    );
    common::assert_success(&out, "restic dump of the partial segment");
    assert!(
        out.stdout == padded(fills[2]),
        "the last partial, byte for byte"
    );
    let out = common::restic(&path, &key, &["check", "--read-data"]);
    common::assert_success(&out, "restic check --read-data");
}

fn tar_member(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 512];
    out[..name.len()].copy_from_slice(name.as_bytes());
    out[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    out[156] = b'0';
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// A base backup's tar is chunked at its members: when one small file changed between two
/// backups (a visibility map, `pg_xact`), the second stores that file again and nothing of
/// the large unchanged files beside it — without the cuts, the content-defined chunk around
/// the change (512 KiB at least) is new. restic dumps the tar byte for byte.
#[test]
fn a_base_backup_cut_at_its_members_stores_only_the_changed_file() {
    use custodian::engine::postgres::wal::{ManifestTap, TarSeen};
    use custodian::model::naming::SnapshotKind;
    use custodian::repo::Cuts;
    let big = content(6 << 20);
    let tar = |small: &[u8]| {
        let mut t = tar_member("base/5/16384", &big[..3 << 20]);
        t.extend(tar_member("base/5/16384_vm", small));
        t.extend(tar_member("base/5/16390", &big[3 << 20..]));
        t.extend(vec![0u8; 1024]);
        t
    };
    let first = tar(&content(8192));
    let second = tar(&content(8192 + 777)[777..]);
    let store = |repo: &Repo, bytes: Vec<u8>, minute: u32, cut: bool| {
        let cuts = cut.then(|| Arc::new(Cuts::default()));
        let told = cuts.clone();
        let mut bytes = Some(bytes);
        let time: jiff::Timestamp = format!("2026-01-01T00:{minute:02}:00Z").parse().unwrap();
        let request = postgres_request(
            time,
            ArchiveEntry {
                name: "base.tar".into(),
                size: None,
                sha256: None,
                mtime: time,
                cuts,
                open: Box::new(move || {
                    let tap = ManifestTap::new(
                        io::Cursor::new(bytes.take().unwrap()),
                        Arc::new(TarSeen::default()),
                    );
                    Ok(match told {
                        Some(cuts) => Box::new(tap.on_member(move |at| cuts.push(at))),
                        None => Box::new(tap),
                    })
                }),
            },
        );
        repo.archive_kind(request, SnapshotKind::Base).unwrap();
    };
    let added = |cut: bool| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repo");
        let repo = new_repo(&path);
        store(&repo, first.clone(), 0, cut);
        let before = data_bytes(&path);
        store(&repo, second.clone(), 1, cut);
        (data_bytes(&path) - before, dir)
    };
    let (uncut, _) = added(false);
    let (cut, dir) = added(true);
    assert!(
        uncut >= 512 << 10,
        "one stream: the chunk around the changed file is new ({uncut} bytes added)"
    );
    assert!(
        cut <= 48 << 10,
        "cut at members: about the changed 8 KiB file and the snapshot's tree ({cut} bytes added)"
    );
    let path = dir.path().join("repo");
    let key = path.with_extension("key");
    std::fs::write(&key, PASSWORD).unwrap();
    let out = common::restic(
        &path,
        &key,
        &["dump", "latest", "/custodian/crm/base/base.tar"],
    );
    common::assert_success(&out, "restic dump of the base backup");
    assert!(out.stdout == second, "the second tar, byte for byte");
    let out = common::restic(&path, &key, &["check", "--read-data"]);
    common::assert_success(&out, "restic check --read-data");
}

/// Rolling up WAL snapshots keeps their number bounded without rewriting the whole era's tree
/// at every roll-up: what the merges leave unreferenced (until a prune) stays proportional to
/// what the flushes themselves leave, where merging everything each time grows with the
/// square of the era.
#[test]
fn wal_roll_ups_keep_few_snapshots_and_rewrite_little() {
    use custodian::model::naming::SnapshotKind;
    const FANOUT: usize = 8;
    const FLUSHES: u32 = 240;
    const CHUNK: usize = 128 << 10;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let repo = new_repo(&path);
    let mut per_round = 0;
    let mut most = 0;
    for i in 0..FLUSHES {
        let time: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let time = time + jiff::SignedDuration::from_secs(i64::from(i) * 10);
        // Eight chunks of their own per file, as WAL has (cheap to compress: the trees, which
        // list every chunk, are what this is about).
        let data: Vec<u8> = (0..8u32)
            .flat_map(|j| {
                [i, j]
                    .repeat(CHUNK / 8)
                    .into_iter()
                    .flat_map(u32::to_le_bytes)
            })
            .collect();
        let size = data.len() as u64;
        let mut data = Some(data);
        let request = postgres_request(
            time,
            ArchiveEntry {
                name: format!("0000000100000000{:08X}", i + 1),
                size: Some(size),
                sha256: None,
                mtime: time,
                cuts: None,
                open: Box::new(move || Ok(Box::new(io::Cursor::new(data.take().unwrap())))),
            },
        );
        repo.archive_kind(request, SnapshotKind::Wal).unwrap();
        repo.roll_up_log("crm", SnapshotKind::Wal, FANOUT).unwrap();
        let count = repo.snapshots_of(SnapshotKind::Wal, "crm").unwrap().len();
        most = most.max(count);
        if i + 1 == FANOUT as u32 {
            // One roll-up: the flushes' own trees are left, and nothing else.
            per_round = repo.prune(false).unwrap().bytes_unused;
        }
    }
    assert!(
        most < 2 * FANOUT + 2,
        "{most} WAL snapshots at once (fan-out {FANOUT})"
    );
    let files = repo.log_files("crm", SnapshotKind::Wal).unwrap();
    assert_eq!(
        files.len(),
        FLUSHES as usize,
        "every file is still archived"
    );
    let left = repo.prune(false).unwrap().bytes_unused;
    let own = u64::from(FLUSHES) / FANOUT as u64 * per_round;
    // The flushes' own trees, plus the merged ones a higher tier merged again: at most as
    // much again. Merging all of the era at every roll-up leaves several times more.
    assert!(
        left <= own * 2,
        "{left} bytes unused after {FLUSHES} flushes; the flushes' own trees: {own}"
    );
    // restic still reads the archive.
    let key = path.with_extension("key");
    std::fs::write(&key, PASSWORD).unwrap();
    let out = common::restic(&path, &key, &["check"]);
    common::assert_success(&out, "restic check");
}
