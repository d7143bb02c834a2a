//! Database sources: consistent dumps, and the manifest that describes exactly what was dumped.
//!
//! A source produces a [`Dump`]: the files to store (read when the repository asks for them)
//! and a [`Manifest`]. It knows nothing about repositories; the backup job joins the two.

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
        }
    }

    /// Whether a later retry may succeed without anyone fixing anything.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::DumpFailed { .. })
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
