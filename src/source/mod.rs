//! Database sources: consistent dumps, and the manifest that describes exactly what was dumped.
//!
//! A file source (SQLite) produces a [`Dump`]: files in private scratch space and a finished
//! [`Manifest`]. A server source (PostgreSQL, MariaDB/MySQL) produces a [`StreamDump`]: the
//! dump tools' output streams, the tools themselves (whose exit status decides whether the
//! backup may be committed), and a [`ManifestJob`] that computes the manifest in the dump's own
//! snapshot while the streams flow. Sources know nothing about repositories; the backup job
//! joins the two.

pub mod mysql;
pub mod postgres;
pub mod process;
pub mod scratch;
pub mod sqlite;

use std::path::{Path, PathBuf};

use crate::model::Manifest;

/// Why a source could not be dumped or verified.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {source_name}: cannot open the database at {path}: {message}")]
    Unavailable {
        source_name: String,
        path: PathBuf,
        message: String,
    },
    #[error("source {source_name}: the dump failed: {message}")]
    DumpFailed {
        source_name: String,
        message: String,
    },
    #[error("source {source_name}: the dumped copy failed its integrity check: {message}")]
    Corrupt {
        source_name: String,
        message: String,
    },
    #[error("cannot prepare private scratch space in {path}: {message}")]
    Scratch { path: PathBuf, message: String },
    #[error("cannot summarize the database at {path}: {message}")]
    Summary { path: PathBuf, message: String },
    #[error("source {source_name}: {failure}")]
    ToolFailed {
        source_name: String,
        failure: process::ToolFailure,
    },
}

impl SourceError {
    /// Stable error code for the catalog.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } => "source.unavailable",
            Self::DumpFailed { .. } => "source.dump_failed",
            Self::Corrupt { .. } => "source.corrupt",
            Self::Scratch { .. } => "source.scratch",
            Self::Summary { .. } => "source.summary",
            Self::ToolFailed { .. } => "source.dump_failed",
        }
    }

    /// Whether a later retry may succeed without anyone fixing anything.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::DumpFailed { .. } | Self::ToolFailed { .. }
        )
    }
}

/// A file produced by a dump, waiting in private scratch space to be stored.
#[derive(Clone, Debug)]
pub struct DumpFile {
    /// Name inside `/custodian/<source>/`.
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// A finished dump. Dropping it removes its scratch directory.
#[derive(Debug)]
pub struct Dump {
    pub files: Vec<DumpFile>,
    pub manifest: Manifest,
    workdir: tempfile::TempDir,
}

impl Dump {
    /// The private directory holding the dump's files.
    #[must_use]
    pub fn workdir(&self) -> &Path {
        self.workdir.path()
    }
}

/// One output stream of a dump tool, to be stored as a file of the snapshot.
pub struct DumpStream {
    /// Name inside `/custodian/<source>/`.
    pub name: String,
    pub reader: Box<dyn std::io::Read + Send>,
}

/// A server dump in progress.
pub struct StreamDump {
    pub streams: Vec<DumpStream>,
    /// The tools producing the streams; each must exit with status 0 for the backup to count.
    pub processes: Vec<process::DumpProcess>,
    /// Computes the manifest in the dump's snapshot.
    pub manifest: ManifestJob,
    /// Private directory for the tools' credential files; removed when dropped.
    pub workdir: tempfile::TempDir,
    /// The moment the dumped state was frozen (snapshot export, or read lock).
    pub taken_at: jiff::Timestamp,
}

/// The manifest of a server dump, computed concurrently with the dump.
pub enum ManifestJob {
    Postgres(postgres::SnapshotSession),
    Mysql(mysql::SnapshotSession),
}

impl ManifestJob {
    /// Computes the manifest.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn run(self) -> Result<Manifest, SourceError> {
        match self {
            Self::Postgres(session) => session.run().await,
            Self::Mysql(session) => session.run().await,
        }
    }
}

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
pub fn private_workdir(scratch: &Path, prefix: &str) -> Result<tempfile::TempDir, SourceError> {
    use std::os::unix::fs::DirBuilderExt;
    let err = |e: std::io::Error| SourceError::Scratch {
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
    use std::os::unix::fs::PermissionsExt;
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
