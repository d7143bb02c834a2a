//! PostgreSQL's side of the continuous archive: the physical replication slot the archiver
//! owns, the `pg_receivewal` process that streams WAL from it into the spool, and the
//! `pg_basebackup` that streams a physical base backup (tar to stdout, nothing on disk).
//! Both tools get their connection settings from the environment and the password from a
//! private `PGPASSFILE` (see `connect.rs`); neither ever sees a password on its command line.

use std::path::Path;
use std::process::Command;

use sqlx::{Connection, Row};

use super::Connect;
use crate::engine::EngineError;
use crate::engine::pitr::{BaseInfo, SlotState};

/// The slot a source's archiver owns.
#[must_use]
pub fn slot_name(source: &str) -> String {
    format!("custodian_{}", source.replace('-', "_"))
}

fn query_err(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Query {
        what: what.to_string(),
        message: e.to_string(),
    }
}

/// Reads the archiver's slot, creating it (reserving WAL at once) when it does not exist.
///
/// # Errors
/// When the server cannot be reached or the slot cannot be created.
pub async fn ensure_slot(connect: &Connect, slot: &str) -> Result<SlotState, EngineError> {
    let what = format!("the replication slot {slot} on {}", connect.server());
    let mut conn = connect.connect().await.map_err(|e| query_err(&what, e))?;
    let read = "SELECT restart_lsn::text, wal_status FROM pg_replication_slots \
                WHERE slot_name = $1 AND slot_type = 'physical'";
    let mut row = sqlx::query(read)
        .bind(slot)
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| query_err(&what, e))?;
    let mut created = false;
    if row.is_none() {
        sqlx::query("SELECT pg_create_physical_replication_slot($1, true)")
            .bind(slot)
            .execute(&mut conn)
            .await
            .map_err(|e| query_err(&what, e))?;
        created = true;
        row = sqlx::query(read)
            .bind(slot)
            .fetch_optional(&mut conn)
            .await
            .map_err(|e| query_err(&what, e))?;
    }
    let _ = conn.close().await;
    let row = row.ok_or_else(|| query_err(&what, "it vanished right after it was created"))?;
    Ok(SlotState {
        name: slot.to_string(),
        restart_lsn: row.get(0),
        wal_status: row.get(1),
        created,
    })
}

/// `pg_receivewal` streaming from `slot` into `spool`. `--synchronous` flushes every write
/// before telling the server, so the slot never moves past what is safe on disk; `--no-loop`
/// leaves retrying to the archiver's supervision (with backoff, and a record of every exit).
///
/// # Errors
/// When the private password file cannot be written.
pub fn receivewal(
    connect: &Connect,
    spool: &Path,
    slot: &str,
    private_dir: &Path,
) -> std::io::Result<Command> {
    let mut cmd = connect.command("pg_receivewal", private_dir)?;
    cmd.arg("--directory").arg(spool).args([
        "--slot",
        slot,
        "--synchronous",
        "--no-loop",
        "--no-password",
        "--status-interval",
        "1",
        "--verbose",
    ]);
    Ok(cmd)
}

/// `pg_basebackup` writing one tar with its `backup_manifest` to stdout; `--verbose` makes it
/// report the WAL range on stderr. With `wal_in_tar` (`-X fetch`) the tar also holds the WAL
/// that makes it consistent — whole segment files as `pg_wal` has them, recycled tails
/// included; without it (`-X none`) that WAL is taken from the archive, which already stores
/// it once (as pgBackRest does).
///
/// # Errors
/// When the private password file cannot be written.
pub fn basebackup(
    connect: &Connect,
    private_dir: &Path,
    wal_in_tar: bool,
) -> std::io::Result<Command> {
    let mut cmd = connect.command("pg_basebackup", private_dir)?;
    cmd.args([
        "--pgdata=-",
        "--format=tar",
        if wal_in_tar {
            "--wal-method=fetch"
        } else {
            "--wal-method=none"
        },
        "--checkpoint=fast",
        "--no-password",
        "--verbose",
        "--label=custodian base backup",
    ]);
    Ok(cmd)
}

/// The WAL range `pg_basebackup --verbose` reports:
/// `write-ahead log start point: 0/2000028 on timeline 1` and
/// `write-ahead log end point: 0/2000100`.
#[must_use]
pub fn parse_basebackup_log(stderr: &str) -> Option<(String, u32, String)> {
    let mut start = None;
    let mut end = None;
    for line in stderr.lines() {
        if let Some(rest) = line.split("write-ahead log start point: ").nth(1) {
            let mut parts = rest.split(" on timeline ");
            let lsn = parts.next()?.trim().to_string();
            let timeline = parts.next()?.trim().parse().ok()?;
            start = Some((lsn, timeline));
        } else if let Some(rest) = line.split("write-ahead log end point: ").nth(1) {
            end = Some(rest.trim().to_string());
        }
    }
    let (lsn, timeline) = start?;
    Some((lsn, timeline, end?))
}

/// What a base backup records of its server, and whether it is a standby.
#[derive(Clone, Debug)]
pub struct ServerIdentity {
    pub version: String,
    pub system_identifier: String,
    /// A standby switches no segment at the end of a base backup: the archive may not get
    /// the backup's last segment for a long time, so its WAL goes into the tar.
    pub in_recovery: bool,
}

/// The tar `pg_basebackup` writes, read as it streams past, keeping its `backup_manifest`
/// member: with `-X none` `pg_basebackup` reports no WAL range, and the manifest's
/// `WAL-Ranges` are where it is. Every byte is passed on unchanged. It also tells where each
/// member begins (see [`ManifestTap::on_member`]).
pub struct ManifestTap<R> {
    inner: R,
    seen: std::sync::Arc<TarSeen>,
    /// Called with the offset of each member's header before its first byte is passed on.
    on_member: Option<Box<dyn Fn(u64) + Send>>,
    /// Bytes passed on so far.
    offset: u64,
    header: Vec<u8>,
    /// Bytes of the current member still to pass (its data and padding to 512).
    left: u64,
    /// Of those, the manifest's own bytes still to keep.
    keep: u64,
    ended: bool,
}

/// What a [`ManifestTap`] saw: the manifest, and whether the tar was read to its end.
#[derive(Default)]
pub struct TarSeen {
    state: std::sync::Mutex<(Vec<u8>, bool)>,
    read_to_end: std::sync::Condvar,
}

impl TarSeen {
    /// The manifest, once the tar was read to its end (the reader may still be reading what
    /// `pg_basebackup` left in the pipe when it exited); `None` when that takes longer than
    /// `wait`.
    pub fn manifest(&self, wait: std::time::Duration) -> Option<Vec<u8>> {
        let state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (state, _) = self
            .read_to_end
            .wait_timeout_while(state, wait, |(_, done)| !*done)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.1.then(|| state.0.clone())
    }

    fn keep(&self, bytes: &[u8]) {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .extend_from_slice(bytes);
    }

    fn end(&self) {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .1 = true;
        self.read_to_end.notify_all();
    }
}

const BLOCK: u64 = 512;

impl<R> ManifestTap<R> {
    /// Taps `inner`; `seen` has the manifest once the tar was read to its end.
    pub fn new(inner: R, seen: std::sync::Arc<TarSeen>) -> Self {
        Self {
            inner,
            seen,
            on_member: None,
            offset: 0,
            header: Vec::with_capacity(512),
            left: 0,
            keep: 0,
            ended: false,
        }
    }

    /// Calls `f` with the offset of every member's header (and of the tar's end), before the
    /// reader hands over its first byte: where the repository ends a chunk.
    #[must_use]
    pub fn on_member(mut self, f: impl Fn(u64) + Send + 'static) -> Self {
        self.on_member = Some(Box::new(f));
        self
    }

    fn see(&mut self, bytes: &[u8]) {
        let end = self.offset + bytes.len() as u64;
        self.parse(bytes);
        self.offset = end;
    }

    fn parse(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.ended {
            if self.left > 0 {
                let n = usize::try_from(self.left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                let kept = usize::try_from(self.keep).unwrap_or(usize::MAX).min(n);
                if kept > 0 {
                    self.seen.keep(&bytes[..kept]);
                    self.keep -= kept as u64;
                }
                self.left -= n as u64;
                self.offset += n as u64;
                bytes = &bytes[n..];
                continue;
            }
            if self.header.is_empty()
                && let Some(f) = &self.on_member
            {
                f(self.offset);
            }
            let n = (512 - self.header.len()).min(bytes.len());
            self.offset += n as u64;
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() < 512 {
                continue;
            }
            if self.header.iter().all(|b| *b == 0) {
                self.ended = true;
                continue;
            }
            let size = tar_size(&self.header[124..136]);
            let name_end = self.header[..100]
                .iter()
                .position(|b| *b == 0)
                .unwrap_or(100);
            let regular = matches!(self.header[156], b'0' | 0);
            if regular && &self.header[..name_end] == b"backup_manifest" {
                self.keep = size;
            }
            self.left = size.div_ceil(BLOCK) * BLOCK;
            self.header.clear();
        }
    }
}

/// A tar header's size field: octal digits, or base-256 (high bit set) for large members.
fn tar_size(field: &[u8]) -> u64 {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        return field[1..]
            .iter()
            .fold(u64::from(field[0] & 0x7f), |n, b| (n << 8) | u64::from(*b));
    }
    field
        .iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(*b))
        .fold(0, |n, b| n * 8 + u64::from(b - b'0'))
}

impl<R: std::io::Read> std::io::Read for ManifestTap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf);
        match &read {
            Ok(0) if !buf.is_empty() => self.seen.end(),
            Ok(n) => self.see(&buf[..*n]),
            Err(e) if e.kind() != std::io::ErrorKind::Interrupted => self.seen.end(),
            Err(_) => {}
        }
        read
    }
}

/// The WAL range of a `backup_manifest`: the first range's start and timeline, the last
/// range's end.
#[must_use]
pub fn manifest_wal_range(manifest: &[u8]) -> Option<(String, u32, String)> {
    let json: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    let ranges = json.get("WAL-Ranges")?.as_array()?;
    let (first, last) = (ranges.first()?, ranges.last()?);
    Some((
        first.get("Start-LSN")?.as_str()?.to_string(),
        u32::try_from(first.get("Timeline")?.as_u64()?).ok()?,
        last.get("End-LSN")?.as_str()?.to_string(),
    ))
}

/// The server's version and system identifier, recorded with a base backup.
///
/// # Errors
/// When the server cannot be reached.
pub async fn server_identity(connect: &Connect) -> Result<ServerIdentity, EngineError> {
    let what = format!("the server {}", connect.server());
    let mut conn = connect.connect().await.map_err(|e| query_err(&what, e))?;
    let row = sqlx::query(
        "SELECT current_setting('server_version'), system_identifier::text, pg_is_in_recovery() \
         FROM pg_control_system()",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| query_err(&what, e))?;
    let _ = conn.close().await;
    Ok(ServerIdentity {
        version: row.get(0),
        system_identifier: row.get(1),
        in_recovery: row.get(2),
    })
}

/// Completes a base backup's description from its manifest (or, without one, what
/// `pg_basebackup` said); `wal_in_tar`: it was taken with `-X fetch`.
#[must_use]
pub fn base_info(
    manifest: &[u8],
    stderr: &str,
    started: jiff::Timestamp,
    finished: jiff::Timestamp,
    identity: ServerIdentity,
    wal_in_tar: bool,
) -> Option<BaseInfo> {
    let (start_lsn, timeline, end_lsn) =
        manifest_wal_range(manifest).or_else(|| parse_basebackup_log(stderr))?;
    Some(BaseInfo {
        engine: "postgres".into(),
        start_lsn,
        end_lsn,
        timeline,
        started,
        finished,
        server_version: identity.version,
        system_identifier: identity.system_identifier,
        wal_in_tar,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wal_range_is_read_from_pg_basebackups_report() {
        let log = "pg_basebackup: initiating base backup, waiting for checkpoint to complete\n\
                   pg_basebackup: checkpoint completed\n\
                   pg_basebackup: write-ahead log start point: 0/2000028 on timeline 1\n\
                   pg_basebackup: write-ahead log end point: 0/2000100\n\
                   pg_basebackup: base backup completed\n";
        assert_eq!(
            parse_basebackup_log(log),
            Some(("0/2000028".into(), 1, "0/2000100".into()))
        );
        assert_eq!(parse_basebackup_log("pg_basebackup: error"), None);
        assert_eq!(slot_name("crm-eu"), "custodian_crm_eu");
    }

    fn member(name: &str, data: &[u8]) -> Vec<u8> {
        let mut header = vec![0u8; 512];
        header[..name.len()].copy_from_slice(name.as_bytes());
        header[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
        header[156] = b'0';
        let mut out = header;
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    #[test]
    fn the_manifest_is_kept_as_the_tar_streams_past() {
        use std::io::Read;
        let manifest = br#"{"WAL-Ranges": [{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }]}"#;
        let mut tar = member("base/1/1259", &vec![7u8; 9000]);
        tar.extend(member("backup_manifest", manifest));
        tar.extend(vec![0u8; 1024]);
        let seen = std::sync::Arc::new(TarSeen::default());
        let members = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let told = members.clone();
        let mut tap = ManifestTap::new(std::io::Cursor::new(tar.clone()), seen.clone())
            .on_member(move |at| told.lock().unwrap().push(at));
        assert_eq!(
            seen.manifest(std::time::Duration::ZERO),
            None,
            "not read yet"
        );
        // Small reads: headers and members split across them.
        let mut passed = Vec::new();
        let mut buf = [0u8; 333];
        loop {
            let n = tap.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            passed.extend_from_slice(&buf[..n]);
        }
        assert_eq!(passed, tar, "every byte passed on unchanged");
        // Each member's header (9000 bytes are 18 blocks), and the end of the archive.
        let second = 512 + 18 * 512;
        assert_eq!(*members.lock().unwrap(), vec![0, second, second + 1024]);
        let kept = seen.manifest(std::time::Duration::ZERO).unwrap();
        assert_eq!(kept, manifest.to_vec());
        assert_eq!(
            manifest_wal_range(&kept),
            Some(("0/2000028".into(), 1, "0/2000100".into()))
        );
        assert_eq!(tar_size(b"00000010000\0"), 4096);
    }
}
