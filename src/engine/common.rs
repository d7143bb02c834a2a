//! Helpers every engine uses: private scratch directories, file digests, the first-bytes
//! signal of a dump tool, and streaming a snapshot's file into a restore tool.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::process::DumpProcess;
use super::{EngineError, SnapshotFiles};
use crate::secret::Secret;

/// Wraps a dump tool's stdout and reports when its first bytes (or its end) arrive. Dump tools
/// write nothing before their own transaction has started, so this is the moment a
/// snapshot-exporting transaction may end (PostgreSQL) or a global read lock may go (MySQL).
pub struct FirstBytes<R> {
    inner: R,
    started: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl<R> FirstBytes<R> {
    pub fn new(inner: R, started: tokio::sync::oneshot::Sender<()>) -> Self {
        Self {
            inner,
            started: std::sync::Mutex::new(Some(started)),
        }
    }
}

impl<R: std::io::Read> std::io::Read for FirstBytes<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let result = self.inner.read(buf);
        if let Some(tx) = self
            .started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            let _ = tx.send(());
        }
        result
    }
}

/// A private (0700) directory under `scratch`, removed when dropped. `scratch` itself is
/// created 0700 if missing.
///
/// # Errors
/// When the directory cannot be created.
pub fn private_workdir(scratch: &Path, prefix: &str) -> Result<tempfile::TempDir, EngineError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |e: std::io::Error| EngineError::Scratch {
        path: scratch.to_path_buf(),
        message: e.to_string(),
    };
    if !scratch.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(scratch)
            .map_err(err)?;
    }
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(scratch)
        .map_err(err)
}

/// `sha256:<hex>` and size of a file, read once.
///
/// # Errors
/// When the file cannot be read.
pub fn file_digest(path: &Path) -> std::io::Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, format!("sha256:{}", hex::encode(hasher.finalize()))))
}

/// What a restore tool printed when it did not fail.
pub(crate) struct Streamed {
    pub bytes: u64,
    pub stderr: String,
}

/// Streams one file of a snapshot into a restore tool's stdin and judges the tool. When the
/// snapshot cannot be read, that is the cause, whatever the tool made of its truncated input;
/// when the tool stopped reading first, its failure is.
pub(crate) async fn stream_into(
    files: Arc<dyn SnapshotFiles>,
    name: &str,
    tool: &str,
    target: &str,
    command: std::process::Command,
    secrets: &[Secret],
) -> Result<Streamed, EngineError> {
    let refs: Vec<&Secret> = secrets.iter().collect();
    let mut process = DumpProcess::spawn_consumer(tool, command, &refs).map_err(|e| {
        EngineError::RestoreFailed {
            target: target.to_string(),
            message: e.to_string(),
        }
    })?;
    let stdin = process
        .take_stdin()
        .ok_or_else(|| EngineError::RestoreFailed {
            target: target.to_string(),
            message: format!("{tool} has no stdin"),
        })?;
    let name = name.to_string();
    let (written, consumer_stopped, process) = tokio::task::spawn_blocking(move || {
        let stopped = AtomicBool::new(false);
        let mut writer = BufWriter::with_capacity(
            1 << 20,
            Watched {
                inner: stdin,
                stopped: &stopped,
            },
        );
        let result = files.copy_to(&name, &mut writer).and_then(|n| {
            writer
                .flush()
                .map(|()| n)
                .map_err(|e| format!("writing into the restore tool: {e}"))
        });
        drop(writer);
        (result, stopped.into_inner(), process)
    })
    .await
    .map_err(|e| EngineError::RestoreFailed {
        target: target.to_string(),
        message: format!("the restore stream failed: {e}"),
    })?;
    let finished = tokio::task::spawn_blocking(move || process.finish())
        .await
        .map_err(|e| EngineError::RestoreFailed {
            target: target.to_string(),
            message: format!("waiting for {tool}: {e}"),
        })?;
    match (written, finished) {
        (Err(message), _) if !consumer_stopped => Err(EngineError::SnapshotRead { message }),
        (_, Err(failure)) => Err(EngineError::RestoreToolFailed {
            target: target.to_string(),
            failure,
        }),
        (Err(message), Ok(_)) => Err(EngineError::SnapshotRead { message }),
        (Ok(bytes), Ok(stderr)) => Ok(Streamed { bytes, stderr }),
    }
}

/// Runs a restore tool that reads its own input and judges its exit status; returns its
/// stderr.
pub(crate) async fn run_tool(
    tool: &str,
    target: &str,
    command: std::process::Command,
    secrets: &[Secret],
) -> Result<String, EngineError> {
    let refs: Vec<&Secret> = secrets.iter().collect();
    let mut process = DumpProcess::spawn_consumer(tool, command, &refs).map_err(|e| {
        EngineError::RestoreFailed {
            target: target.to_string(),
            message: e.to_string(),
        }
    })?;
    drop(process.take_stdin());
    tokio::task::spawn_blocking(move || process.finish())
        .await
        .map_err(|e| EngineError::RestoreFailed {
            target: target.to_string(),
            message: format!("waiting for {tool}: {e}"),
        })?
        .map_err(|failure| EngineError::RestoreToolFailed {
            target: target.to_string(),
            failure,
        })
}

/// Streams a snapshot's file into a new private file (0600) at `path`.
pub(crate) async fn fetch_file(
    files: Arc<dyn SnapshotFiles>,
    name: &str,
    path: &Path,
) -> Result<u64, EngineError> {
    let (name, path) = (name.to_string(), path.to_path_buf());
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| EngineError::Scratch {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let mut writer = BufWriter::new(&file);
        let n = files
            .copy_to(&name, &mut writer)
            .map_err(|message| EngineError::SnapshotRead { message })?;
        writer
            .flush()
            .and_then(|()| file.sync_all())
            .map_err(|e| EngineError::Scratch {
                path: path.clone(),
                message: e.to_string(),
            })?;
        Ok(n)
    })
    .await
    .map_err(|e| EngineError::RestoreFailed {
        target: "a private file".into(),
        message: e.to_string(),
    })?
}

/// A writer that notes when its consumer stopped reading (it failed, or was killed).
struct Watched<'a, W: Write> {
    inner: W,
    stopped: &'a AtomicBool,
}

impl<W: Write> Write for Watched<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner
            .write(buf)
            .inspect_err(|_| self.stopped.store(true, Ordering::Relaxed))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner
            .flush()
            .inspect_err(|_| self.stopped.store(true, Ordering::Relaxed))
    }
}

/// What a tool that succeeded printed on stderr, one warning per line (never dropped).
pub(crate) fn tool_warnings(tool: &str, stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| format!("{tool}: {l}"))
        .collect()
}

/// The unique tail of a run id, for temporary database and schema names.
pub(crate) fn short_id(id: &str) -> String {
    let clean: String = id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_lowercase();
    clean
        .chars()
        .rev()
        .take(12)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

/// How many loads a restore runs at a time: `--jobs`, or one per core (at least two).
#[must_use]
pub fn load_jobs(jobs: u32) -> u32 {
    if jobs > 0 {
        jobs
    } else {
        std::thread::available_parallelism()
            .map_or(2, |n| u32::try_from(n.get()).unwrap_or(2).max(2))
    }
}

/// Runs `run` on each item, at most `limit` at a time, starting them in the order given (a
/// restore gives its tables largest first, so the longest load never starts last), and hands
/// each result to `done` as soon as it arrives. The first error stops it (the loads still
/// running are dropped).
///
/// # Errors
/// The first error of `run`.
pub(crate) async fn run_at_most<T, R, F, Fut>(
    items: Vec<T>,
    limit: u32,
    run: F,
    mut done: impl FnMut(R),
) -> Result<(), EngineError>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<R, EngineError>>,
{
    use futures_util::StreamExt;
    let limit = usize::try_from(limit.max(1)).unwrap_or(2);
    let mut waiting = items.into_iter();
    let mut running = futures_util::stream::FuturesUnordered::new();
    loop {
        while running.len() < limit {
            let Some(item) = waiting.next() else { break };
            running.push(run(item));
        }
        let Some(result) = running.next().await else {
            return Ok(());
        };
        done(result?);
    }
}

/// Waits for the read-backs a restore started as its tables were loaded, and records the
/// phase (`restore.read-back`: whatever was still running once everything else was done).
///
/// # Errors
/// The first read-back that failed, for `target`.
pub(crate) async fn join_read_backs<E: std::fmt::Display + Send + 'static>(
    mut checks: tokio::task::JoinSet<Result<crate::model::TableSummary, E>>,
    target: &str,
    phases: &mut crate::model::Phases,
) -> Result<std::collections::BTreeMap<String, crate::model::TableSummary>, EngineError> {
    let started = std::time::Instant::now();
    let failed = |message: String| EngineError::RestoreFailed {
        target: target.to_string(),
        message: format!("reading a restored table back: {message}"),
    };
    let mut checked = std::collections::BTreeMap::new();
    while let Some(done) = checks.join_next().await {
        let summary = done
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(e.to_string()))?;
        checked.insert(summary.name.clone(), summary);
    }
    if !checked.is_empty() {
        phases.push("restore.read-back", started);
    }
    Ok(checked)
}

/// Runs the computation of a dump's manifest unless a tool or stream of the dump fails first
/// (the manifest may be waiting for a lock, or for a stream that will never end).
///
/// # Errors
/// The manifest's own error, or that it was abandoned.
pub(crate) async fn manifest_unless_stopped(
    source: &str,
    groups: &super::process::ProcessGroups,
    manifest: impl std::future::Future<Output = Result<crate::model::Manifest, EngineError>>,
) -> Result<crate::model::Manifest, EngineError> {
    tokio::select! {
        manifest = manifest => manifest,
        () = groups.stopped() => Err(EngineError::DumpFailed {
            source_name: source.to_string(),
            message: "the manifest was abandoned because a dump tool or table stream failed".into(),
        }),
    }
}

/// The digest of a table's stream, once its last row has passed.
///
/// # Errors
/// When the stream ended without one (it was dropped before its end).
pub(crate) async fn stream_digest(
    source: &str,
    table: &str,
    digest: tokio::sync::oneshot::Receiver<super::rows::Finished>,
) -> Result<super::rows::Finished, EngineError> {
    digest.await.map_err(|_| EngineError::DumpFailed {
        source_name: source.to_string(),
        message: format!("the stream of table {table} ended before its last row"),
    })
}
