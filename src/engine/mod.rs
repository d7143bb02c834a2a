//! Database engines: everything that depends on which database a source runs on lives here,
//! one folder per engine (`postgres/`, `mysql/`, `sqlite/`), behind one seam.
//!
//! An engine makes consistent dumps and the manifest that describes exactly what was dumped
//! ([`DatabaseEngine::dump`]); builds restores where nothing can see them half-done — a
//! temporary database, schema or file that is verified and only then moved into place
//! ([`DatabaseEngine::stage`], [`Staging::release`]); provides scratch instances for drills
//! ([`DatabaseEngine::scratch`]); describes a restored database the way its manifest was made
//! and compares the two ([`Database::verify`]); and runs SQL on restored data for the erasure
//! replay and the drill assertions ([`Session`]). Jobs orchestrate these steps and never match
//! on the engine; a new engine is one new folder plus one arm in [`of`].
//!
//! Engines know nothing about repositories: a restore reads the snapshot's files through
//! [`SnapshotFiles`], which the job layer implements on the repository.

pub mod lazy;
pub mod mysql;
pub mod pitr;
pub mod postgres;
pub mod process;
pub mod rows;
pub mod scratch;
pub mod sqlite;

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::config::SourceKind;
use crate::model::{CompareScope, Engine, Manifest, Phases, TableSummary};
use crate::secret::Secret;

pub use common::{FirstBytes, file_digest, private_workdir};
pub use scratch::{RunAs, ScratchPlan, ScratchServer, ScratchSetting, Swept};

/// Why an engine could not dump, restore, verify or provide a scratch instance. Each variant
/// knows its stable code; messages are sentences that name what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
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
    /// The restore target cannot be reached or logged into.
    #[error("restore target {target}: cannot connect: {message}")]
    TargetUnavailable { target: String, message: String },
    /// The request cannot be honoured as given (not empty without `--force`, a missing
    /// privilege, a wrong kind of target).
    #[error("restore target {target}: {message}")]
    TargetRefused { target: String, message: String },
    /// A restore tool failed.
    #[error("restore into {target} failed: {failure}")]
    RestoreToolFailed {
        target: String,
        failure: process::ToolFailure,
    },
    #[error("restore into {target} failed: {message}")]
    RestoreFailed { target: String, message: String },
    /// The snapshot's file could not be read; the implementation of [`SnapshotFiles`] holds
    /// the repository's own error.
    #[error("the snapshot could not be read: {message}")]
    SnapshotRead { message: String },
    /// The verified restore could not be moved into place; the target is as it was.
    #[error("restore into {target}: moving the verified restore into place failed: {message}")]
    Promote { target: String, message: String },
    #[error(
        "{what} is not installed; install it (Debian: {package}) or configure a scratch server for the source (scratch-url)"
    )]
    ScratchMissing {
        what: &'static str,
        package: &'static str,
    },
    #[error("cannot create the scratch {engine} instance: {message}")]
    ScratchCreate {
        engine: &'static str,
        message: String,
    },
    #[error("cannot remove scratch {what}: {message}")]
    ScratchRemove { what: String, message: String },
    #[error("the configured scratch server {server} failed: {message}")]
    ScratchServer { server: String, message: String },
    #[error("{what}: {message}")]
    Query { what: String, message: String },
}

impl EngineError {
    /// Stable error code for the catalog.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } => "source.unavailable",
            Self::DumpFailed { .. } | Self::ToolFailed { .. } => "source.dump_failed",
            Self::Corrupt { .. } => "source.corrupt",
            Self::Scratch { .. } => "source.scratch",
            Self::Summary { .. } => "source.summary",
            Self::TargetUnavailable { .. } => "restore.target_unavailable",
            Self::TargetRefused { .. } => "restore.target_refused",
            Self::RestoreToolFailed { .. } | Self::RestoreFailed { .. } => "restore.failed",
            Self::SnapshotRead { .. } => "restore.snapshot_unreadable",
            Self::Promote { .. } => "restore.promote_failed",
            Self::ScratchMissing { .. }
            | Self::ScratchCreate { .. }
            | Self::ScratchRemove { .. }
            | Self::ScratchServer { .. } => "scratch.failed",
            Self::Query { .. } => "engine.query_failed",
        }
    }

    /// Whether a later retry may succeed without anyone fixing anything.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. }
                | Self::DumpFailed { .. }
                | Self::ToolFailed { .. }
                | Self::TargetUnavailable { .. }
        )
    }

    /// Whether the request itself must change (exit code 2).
    #[must_use]
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::TargetRefused { .. })
    }

    pub(crate) fn query(what: impl Into<String>, e: &dyn std::fmt::Display) -> Self {
        Self::Query {
            what: what.into(),
            message: e.to_string(),
        }
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

/// A finished file dump (SQLite). Dropping it removes its scratch directory.
#[derive(Debug)]
pub struct Dump {
    pub files: Vec<DumpFile>,
    pub manifest: Manifest,
    pub(crate) workdir: tempfile::TempDir,
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
    /// Every tool of the dump, including those started later for table streams: a failure
    /// anywhere kills them all.
    pub groups: process::ProcessGroups,
    /// Computes the manifest in the dump's snapshot, while the streams flow.
    pub manifest: BoxFuture<'static, Result<Manifest, EngineError>>,
    /// Private directory for the tools' credential files; removed when dropped.
    pub workdir: tempfile::TempDir,
    /// The moment the dumped state was frozen (snapshot export, or read lock).
    pub taken_at: jiff::Timestamp,
}

/// What a dump produces: finished files (SQLite) or streams (servers).
pub enum DumpOutput {
    Files(Box<Dump>),
    Streams(StreamDump),
}

/// Where a restore goes, as the user gave it.
#[derive(Clone, Debug)]
pub enum Destination {
    /// A database file (SQLite).
    File(PathBuf),
    /// A database server URL (no password in it) and the password.
    Server {
        url: String,
        password: Option<Secret>,
    },
}

impl Destination {
    /// For messages and records (never a password).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Server { url, .. } => url.clone(),
        }
    }
}

/// How a restore is loaded.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Parallel workers for index and constraint builds (0: one per CPU, at least 2).
    pub jobs: u32,
    /// Apply the cluster's roles and tablespaces (PostgreSQL `globals.sql`) first.
    pub with_globals: bool,
    /// Leave ownership and privileges out (a target without the backup's roles).
    pub skip_ownership: bool,
}

/// What loading did.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// Bytes streamed from the snapshot.
    pub bytes: u64,
    /// Messages of tools that did not fail the restore (never silently dropped).
    pub warnings: Vec<String>,
}

/// The outcome of comparing a database with a manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerificationStatus {
    Verified,
    Failed,
}

impl VerificationStatus {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for VerificationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a database compares with a manifest.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    pub status: VerificationStatus,
    /// SHA-256 of the restored file (SQLite).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_sha256: Option<String>,
    pub tables: Vec<TableSummary>,
    /// How many objects of each class were compared besides tables.
    pub objects: std::collections::BTreeMap<String, usize>,
    pub mismatches: Vec<String>,
    /// What this verification could not see (say so, never pass it silently).
    pub not_verified: Vec<String>,
}

impl Verification {
    /// A verification built from a comparison.
    #[must_use]
    pub fn from_comparison(
        comparison: crate::model::Comparison,
        tables: Vec<TableSummary>,
        objects: std::collections::BTreeMap<String, usize>,
        file_sha256: Option<String>,
    ) -> Self {
        Self {
            status: if comparison.mismatches.is_empty() {
                VerificationStatus::Verified
            } else {
                VerificationStatus::Failed
            },
            file_sha256,
            tables,
            objects,
            mismatches: comparison.mismatches,
            not_verified: comparison.not_verified,
        }
    }

    /// A verification that could not even read the database.
    #[must_use]
    pub fn unreadable(message: String) -> Self {
        Self {
            status: VerificationStatus::Failed,
            file_sha256: None,
            tables: Vec::new(),
            objects: std::collections::BTreeMap::new(),
            mismatches: vec![message],
            not_verified: Vec::new(),
        }
    }

    #[must_use]
    pub fn is_verified(&self) -> bool {
        self.status == VerificationStatus::Verified
    }

    /// The first difference and how many more, in one sentence.
    #[must_use]
    pub fn summary(&self) -> String {
        match self.mismatches.as_slice() {
            [] => "verified".into(),
            [one] => one.clone(),
            [first, rest @ ..] => format!(
                "{first} (and {} more difference{})",
                rest.len(),
                if rest.len() == 1 { "" } else { "s" }
            ),
        }
    }
}

/// What releasing a verified restore did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Released {
    /// The target's previous contents were replaced (`--force`).
    pub replaced: bool,
    /// Problems after the swap that did not undo it (an old copy left to drop by hand).
    pub warnings: Vec<String>,
}

/// Why SQL on a restored database failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query returned no row at all.
    #[error("the query returned no row")]
    NoRow,
    #[error("{0}")]
    Failed(String),
}

/// A connection to a restored database for the SQL the configuration gives: the erasure
/// replay's statements and the drill assertions. `:subject` in a statement is bound as a
/// parameter.
pub trait Session: Send {
    /// Runs a statement; returns the rows it changed.
    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
        subject: Option<&'a str>,
    ) -> BoxFuture<'a, Result<u64, QueryError>>;
    /// The first column of every row, as text (NULLs skipped).
    fn strings<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<Vec<String>, QueryError>>;
    /// The first column of the first row as a whole number (`None`: not a number).
    fn int<'a>(
        &'a mut self,
        sql: &'a str,
        subject: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<i64>, QueryError>>;
    fn begin(&mut self) -> BoxFuture<'_, Result<(), QueryError>>;
    fn commit(&mut self) -> BoxFuture<'_, Result<(), QueryError>>;
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// The files of one snapshot, as the repository gives them.
pub trait SnapshotFiles: Send + Sync {
    /// Streams the file `name` (inside `/custodian/<source>/`) into `out`; returns its size.
    ///
    /// # Errors
    /// A sentence when the snapshot cannot be read (the implementation keeps its own error for
    /// its caller) or `out` refuses the data (the consumer stopped reading).
    fn copy_to(&self, name: &str, out: &mut dyn Write) -> Result<u64, String>;
}

/// A database that exists and can be compared with a manifest and queried.
pub trait Database: Send + Sync {
    /// What it is, for messages and records (no secrets).
    fn describe(&self) -> String;
    /// Describes it the way `manifest` was made and compares the two.
    fn verify<'a>(
        &'a self,
        manifest: &'a Manifest,
        scope: CompareScope,
    ) -> BoxFuture<'a, Verification>;
    /// A connection for the configured SQL (read-only where the engine can enforce it).
    fn session(&self, read_only: bool) -> BoxFuture<'_, Result<Box<dyn Session>, EngineError>>;
}

/// A restore being built where nothing else sees it: a temporary database, schema or file,
/// or a drill's scratch instance.
pub trait Staging: Database {
    /// Loads a snapshot's files; each step is timed into `phases`.
    fn load<'a>(
        &'a mut self,
        files: Arc<dyn SnapshotFiles>,
        manifest: &'a Manifest,
        opts: &'a LoadOptions,
        phases: &'a mut Phases,
    ) -> BoxFuture<'a, Result<Loaded, EngineError>>;
    /// Moves the verified restore into place, replacing what is there only when `force`.
    /// On failure the target is as it was and the staging is discarded.
    fn release(self: Box<Self>, force: bool) -> BoxFuture<'static, Result<Released, EngineError>>;
    /// Removes the staging and everything in it; the target is untouched.
    fn discard(self: Box<Self>) -> BoxFuture<'static, Result<(), EngineError>>;
    /// Replays archived logs onto the loaded database (point-in-time recovery of an engine
    /// whose archive is logical: MariaDB/MySQL binary logs); returns the bytes applied.
    /// What was read back right after the load no longer stands: `verify` reads it all again.
    fn replay_logs<'a>(
        &'a mut self,
        replay: &'a pitr::LogReplay,
    ) -> BoxFuture<'a, Result<u64, EngineError>> {
        let _ = replay;
        Box::pin(async move {
            Err(EngineError::RestoreFailed {
                target: self.describe(),
                message: "this engine keeps no logical log to replay onto a restored database"
                    .into(),
            })
        })
    }
    /// The server's own consistency check of every table (`None`: the engine has none beyond
    /// what `verify` compares).
    fn check_consistency(&self) -> BoxFuture<'_, Result<Option<pitr::Consistency>, EngineError>> {
        Box::pin(async { Ok(None) })
    }
}

/// A scratch instance for a drill.
pub trait ScratchInstance: Send + Sync {
    /// The restore target inside it (release and discard do nothing; teardown removes it).
    fn staging(&self) -> Box<dyn Staging>;
    /// The server process of an ephemeral instance.
    fn pid(&self) -> Option<u32>;
    /// What it is, for records and messages (no secrets).
    fn describe(&self) -> String;
    /// Whether the restore runs in a fresh cluster of its own.
    fn fresh_cluster(&self) -> bool;
    /// Stops the instance and removes everything it wrote.
    fn teardown(self: Box<Self>) -> BoxFuture<'static, Result<(), EngineError>>;
}

/// Where a restore will be staged, decided before anything is created so that the catalog can
/// record it first (a killed restore leaves it for the next one to remove).
#[derive(Clone, Debug)]
pub struct StagingPlan {
    pub destination: Destination,
    /// Unique among concurrent restores (from the run id).
    pub id: String,
    /// The temporary database or schema (servers), or file (SQLite).
    pub name: String,
    /// `user@host:port` of a server destination.
    pub server: Option<String>,
}

/// What a database engine provides.
pub trait DatabaseEngine: Send + Sync {
    fn engine(&self) -> Engine;

    /// Starts a consistent dump of a configured source.
    fn dump<'a>(
        &'a self,
        source: &'a str,
        kind: &'a SourceKind,
        scratch: &'a Path,
    ) -> BoxFuture<'a, Result<DumpOutput, EngineError>>;

    /// Where a restore to `destination` will be staged.
    ///
    /// # Errors
    /// When the destination is of the wrong kind or cannot be parsed.
    fn staging_plan(&self, destination: &Destination, id: &str)
    -> Result<StagingPlan, EngineError>;

    /// Creates the staging; refuses (before any data moves) a non-empty target without
    /// `force`, and a target the credentials could not replace.
    fn stage<'a>(
        &'a self,
        plan: &'a StagingPlan,
        manifest: &'a Manifest,
        force: bool,
        scratch: &'a Path,
    ) -> BoxFuture<'a, Result<Box<dyn Staging>, EngineError>>;

    /// Refuses, before any other work, what [`DatabaseEngine::stage`] would refuse for this
    /// target (a non-empty target without `force`, credentials that could not build or replace
    /// it) — for restores that do much work before they stage (a point-in-time recovery moved
    /// into a server). Engines without such a check accept here and refuse at `stage`.
    fn check_target<'a>(
        &'a self,
        plan: &'a StagingPlan,
        force: bool,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        let _ = (plan, force);
        Box::pin(async { Ok(()) })
    }

    /// Removes stagings that killed restores left on the same server (or directory).
    fn remove_leftover<'a>(
        &'a self,
        destination: &'a Destination,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<(), EngineError>>;

    /// An existing database, to compare with a backup (`custodian verify`).
    ///
    /// # Errors
    /// When the destination is of the wrong kind or cannot be parsed.
    fn open(&self, destination: &Destination) -> Result<Box<dyn Database>, EngineError>;

    /// Creates a scratch instance for a drill and waits until it accepts connections.
    fn scratch<'a>(
        &'a self,
        plan: &'a ScratchPlan,
        run_as: Option<RunAs>,
    ) -> BoxFuture<'a, Result<Box<dyn ScratchInstance>, EngineError>>;

    /// Drops a drill database that a killed drill left on a configured scratch server.
    fn drop_scratch_database<'a>(
        &'a self,
        server: &'a ScratchServer,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), EngineError>>;

    /// What `custodian doctor` checks for a source of this engine: its tools (against the
    /// server's version), that it answers, and the connection's security.
    fn doctor<'a>(
        &'a self,
        source: &'a str,
        kind: &'a SourceKind,
    ) -> BoxFuture<'a, Vec<crate::model::Finding>>;

    /// What `custodian archive check` checks for a source of this engine: whether its server
    /// can stream its log (WAL, binary log) to a point-in-time recovery archive. `scratch` is
    /// where private files for the tools go.
    fn archive_preflight<'a>(
        &'a self,
        source: &'a str,
        kind: &'a SourceKind,
        scratch: &'a Path,
    ) -> BoxFuture<'a, Vec<crate::model::Finding>> {
        let _ = (kind, scratch);
        Box::pin(async move {
            vec![crate::model::Finding {
                check: "archive",
                subject: source.to_string(),
                verdict: crate::model::Verdict::Skipped,
                message: "an SQLite source has no log to archive: its recovery point is its last scheduled copy".into(),
                fix: None,
            }]
        })
    }
}

/// The engine of a source or a backup.
#[must_use]
pub fn of(engine: Engine) -> &'static dyn DatabaseEngine {
    match engine {
        Engine::Sqlite => &sqlite::Sqlite,
        Engine::Postgres => &postgres::Postgres,
        Engine::Mysql => &mysql::Mysql,
    }
}
