//! Restic repositories through rustic_core — the only module that touches rustic_core's
//! repository API, and the place where its traps (../shared/RUSTIC_NOTES.md) are handled:
//!
//! 1. reader errors are swallowed by `archive()` → every stream is counted and hashed here, and
//!    a snapshot that is not exactly what was streamed is deleted (see `archive.rs`);
//! 2. a failed stdin command still leaves a snapshot → Custodian owns its child processes and
//!    never uses `stdin_command`;
//! 3. `archive()` may reuse a parent's data → every backup is forced (no parent);
//! 4. `check()` returns `Ok` on corruption → results are inspected (see `check.rs`);
//! 5. copy candidates match by time only → copies are matched by the snapshot's `original` id;
//! 6. streamed files get no size → sizes are set in the tree (see `archive.rs`);
//! 7. the default rabin chunker is kept, so restic and Custodian deduplicate alike.
//!
//! Everything here is blocking (rustic_core uses rayon and std threads): async callers go
//! through `tokio::task::spawn_blocking`. [`Repo`] is cheap to clone and `Send + Sync`.

mod archive;
mod check;
mod copy;
mod keys;
mod pitr;
mod read;
mod retention;
mod snapshot;

use std::sync::Arc;

use rustic_core::{
    ConfigOptions, Credentials, KeyOptions, OpenStatus, Repository, RepositoryBackends,
    RepositoryOptions, RusticError, WriteBackend,
};

pub use archive::{
    ArchiveEntry, ArchiveOutcome, ArchiveRequest, Cuts, Opener, Pending, ReadCounter, ReadEntry,
};
pub use check::CheckReport;

pub use copy::Copied;
pub use keys::KeyInfo;
pub use pitr::WalFile;
pub use retention::{ForgetPlan, PruneReport, Removal, WindowChange};
pub use snapshot::SnapshotInfo;

use crate::secret::Secret;

/// Repository errors. Messages name the location and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(
        "location {location}: the password does not open the repository at {repository}; \
         check the location's password reference (a wrong file, or a repository initialized \
         with another password)"
    )]
    WrongPassword {
        location: String,
        repository: String,
    },
    #[error(
        "location {location}: there is no restic repository at {repository}; run `custodian init`"
    )]
    NotInitialized {
        location: String,
        repository: String,
    },
    #[error(
        "location {location}: no snapshot matches `{id}`; list them with `custodian snapshots --location {location}`"
    )]
    SnapshotNotFound { location: String, id: String },
    #[error(
        "location {location}: `{id}` matches several snapshots; give more characters of the id"
    )]
    AmbiguousSnapshot { location: String, id: String },
    #[error(
        "location {location}: snapshot {snapshot} has no file {path}; is it a Custodian snapshot?"
    )]
    FileNotInSnapshot {
        location: String,
        snapshot: String,
        path: String,
    },
    #[error(
        "location {location}: backup of {path} is incomplete ({detail}); the snapshot was discarded"
    )]
    Incomplete {
        location: String,
        path: String,
        detail: String,
    },
    #[error(
        "location {location}: snapshot data in pack {pack} is unreadable ({detail}); restore from \
         another location, and run `custodian check --location {location} --read-data-subset 100%` \
         to find all damage"
    )]
    Unreadable {
        location: String,
        pack: String,
        detail: String,
    },
    #[error("location {location}: {operation} failed: {message}")]
    Storage {
        location: String,
        operation: &'static str,
        message: String,
    },
}

impl RepoError {
    /// Stable error code for the catalog and `--json` output.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::WrongPassword { .. } => "repo.wrong_password",
            Self::NotInitialized { .. } => "repo.not_initialized",
            Self::SnapshotNotFound { .. } => "repo.snapshot_not_found",
            Self::AmbiguousSnapshot { .. } => "repo.snapshot_ambiguous",
            Self::FileNotInSnapshot { .. } => "repo.file_not_in_snapshot",
            Self::Incomplete { .. } => "repo.incomplete_backup",
            Self::Unreadable { .. } => "repo.unreadable_pack",
            Self::Storage { .. } => "repo.storage",
        }
    }

    /// Whether trying again later may succeed (storage hiccups), as opposed to needing a fix.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Storage { .. } | Self::Incomplete { .. })
    }
}

/// An open repository in one location.
#[derive(Clone)]
pub struct Repo {
    inner: Arc<Inner>,
}

struct Inner {
    location: String,
    repository: String,
    backend: Backend,
    /// The master key, kept so that indexing (which consumes an open repository) can reopen
    /// without paying scrypt again. Never printed: `Inner` has no `Debug`.
    key: Credentials,
    repo: Repository<OpenStatus>,
}

/// Where a repository's backend is, and whether to cache its index and snapshot files locally
/// (worth it for remote storage; rustic_core verifies cached files before use).
#[derive(Clone)]
pub struct Backend {
    pub storage: Arc<dyn WriteBackend>,
    pub cache_dir: Option<std::path::PathBuf>,
}

impl Backend {
    /// A backend without a cache (local storage).
    #[must_use]
    pub fn uncached(storage: Arc<dyn WriteBackend>) -> Self {
        Self {
            storage,
            cache_dir: None,
        }
    }
}

/// Where rustic_core reports an operation's progress (bytes copied, pack data read).
pub type Bars = Arc<dyn rustic_core::ProgressBars>;

#[derive(Debug)]
struct Forward(Bars);

impl rustic_core::ProgressBars for Forward {
    fn progress(&self, kind: rustic_core::ProgressType, prefix: &str) -> rustic_core::Progress {
        self.0.progress(kind, prefix)
    }
}

fn repository(location: &str, backend: &Backend) -> Result<Repository<()>, RepoError> {
    repository_with(location, backend, None)
}

fn repository_with(
    location: &str,
    backend: &Backend,
    bars: Option<Bars>,
) -> Result<Repository<()>, RepoError> {
    let opts = match &backend.cache_dir {
        Some(dir) => RepositoryOptions::default().cache_dir(dir.clone()),
        None => RepositoryOptions::default().no_cache(true),
    };
    let backends = RepositoryBackends::new(backend.storage.clone(), None);
    match bars {
        Some(bars) => Repository::new_with_progress(&opts, &backends, Forward(bars)),
        None => Repository::new(&opts, &backends),
    }
    .map_err(|e| storage_error(location, "setting up the repository", &e))
}

pub(crate) fn storage_error(
    location: &str,
    operation: &'static str,
    err: &RusticError,
) -> RepoError {
    if let Some(unreadable) = unreadable_pack(location, err) {
        return unreadable;
    }
    RepoError::Storage {
        location: location.to_string(),
        operation,
        message: err.display_log().trim_start_matches("Error: ").to_string(),
    }
}

/// A read that failed on a damaged pack names it: rustic_core reports `Pack:<id>` in the
/// context of such errors.
pub(crate) fn unreadable_pack(location: &str, err: &RusticError) -> Option<RepoError> {
    let log = err.display_log();
    let start = log.find("Pack:")? + "Pack:".len();
    let pack: String = log[start..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    if pack.is_empty() {
        return None;
    }
    let detail = if log.contains("MAC check failed") || log.contains("cryptographic") {
        "its content fails authentication: damaged or tampered with"
    } else if log.contains("not found") || log.contains("No such file") {
        "the pack file is missing"
    } else {
        "it cannot be read or decoded"
    };
    Some(RepoError::Unreadable {
        location: location.to_string(),
        pack,
        detail: detail.to_string(),
    })
}

impl Repo {
    /// Whether a repository exists in this storage (its config file is present).
    ///
    /// # Errors
    /// When the storage cannot be listed.
    pub fn exists(location: &str, backend: &Backend) -> Result<bool, RepoError> {
        let repo = repository(location, backend)?;
        repo.config_id()
            .map(|id| id.is_some())
            .map_err(|e| storage_error(location, "looking for the repository", &e))
    }

    /// Creates a repository (format 2, zstd compression). With `chunker_from`, the new
    /// repository uses the same chunker parameters, so copies deduplicate against each other as
    /// well as backups do (restic's `--copy-chunker-params`).
    ///
    /// # Errors
    /// When the storage cannot be written or a repository already exists.
    pub fn init(
        location: &str,
        repository_label: &str,
        backend: Backend,
        password: &Secret,
        chunker_from: Option<&Self>,
    ) -> Result<Self, RepoError> {
        let repo = self::repository(location, &backend)?;
        let credentials = Credentials::password(password.expose());
        // Restic's key metadata: reports show each key's age and who created it.
        let key_options = KeyOptions::default()
            .hostname(gethostname::gethostname().into_string().ok())
            .username(Some(crate::model::current_user()))
            .with_created(true);
        let opened = match chunker_from {
            None => repo.init(&credentials, &key_options, &ConfigOptions::default()),
            Some(primary) => {
                let mut config = primary.inner.repo.config().clone();
                config.id = rustic_core::Id::random().into();
                repo.init_with_config(&credentials, &key_options, config)
            }
        }
        .map_err(|e| storage_error(location, "initializing the repository", &e))?;
        Ok(Self::wrap(location, repository_label, backend, opened))
    }

    /// Opens an existing repository with its password.
    ///
    /// # Errors
    /// [`RepoError::NotInitialized`], [`RepoError::WrongPassword`], or a storage error.
    pub fn open(
        location: &str,
        repository_label: &str,
        backend: Backend,
        password: &Secret,
    ) -> Result<Self, RepoError> {
        let repo = self::repository(location, &backend)?;
        let exists = repo
            .config_id()
            .map_err(|e| storage_error(location, "opening the repository", &e))?
            .is_some();
        if !exists {
            return Err(RepoError::NotInitialized {
                location: location.to_string(),
                repository: repository_label.to_string(),
            });
        }
        let opened = repo
            .open(&Credentials::password(password.expose()))
            .map_err(|e| {
                if e.is_incorrect_password() {
                    RepoError::WrongPassword {
                        location: location.to_string(),
                        repository: repository_label.to_string(),
                    }
                } else {
                    storage_error(location, "opening the repository", &e)
                }
            })?;
        Ok(Self::wrap(location, repository_label, backend, opened))
    }

    fn wrap(
        location: &str,
        repository: &str,
        backend: Backend,
        repo: Repository<OpenStatus>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                location: location.to_string(),
                repository: repository.to_string(),
                backend,
                key: Credentials::Masterkey(repo.key()),
                repo,
            }),
        }
    }

    /// A second handle on the same repository, opened with the master key. Indexing consumes
    /// an open repository, so every indexed operation starts from one of these.
    fn reopen(&self) -> Result<Repository<OpenStatus>, RepoError> {
        self.reopen_with(None)
    }

    /// As [`Self::reopen`], reporting the operation's progress to `bars`.
    fn reopen_with(&self, bars: Option<Bars>) -> Result<Repository<OpenStatus>, RepoError> {
        repository_with(&self.inner.location, &self.inner.backend, bars)?
            .open(&self.inner.key)
            .map_err(|e| self.err("reopening the repository", &e))
    }

    /// The location's name.
    #[must_use]
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    /// How restic addresses the repository (`-r`).
    #[must_use]
    pub fn repository(&self) -> &str {
        &self.inner.repository
    }

    /// The repository's id (from its config file).
    #[must_use]
    pub fn id(&self) -> String {
        self.inner.repo.config().id.to_hex().to_string()
    }

    fn rustic(&self) -> &Repository<OpenStatus> {
        &self.inner.repo
    }

    fn err(&self, operation: &'static str, e: &RusticError) -> RepoError {
        storage_error(&self.inner.location, operation, e)
    }
}
