//! Jobs: the pipelines that join sources, repositories and the catalog — init, backup (dump →
//! archive → record → copy), copy, check, restore. Every job records a run in the catalog
//! before it starts and its outcome when it ends, whatever happens in between.
//!
//! Repository work is blocking (rustic_core) and runs on `spawn_blocking`; opened repositories
//! are kept for the life of the [`Context`], because opening one with a password costs ~0.3 s
//! and ~128 MiB of scrypt.

pub mod alert;
pub mod archive;
mod backup;
pub mod base_backup;
mod check;
mod copy;
pub mod doctor;
mod drill;
pub mod erasure;
mod evidence;
mod init;
mod lock;
mod meter;
pub mod pitr;
mod pitr_drill;
mod pitr_mysql;
pub mod pitr_target;
pub mod progress;
pub mod report;
mod request;
mod restore;
mod retention;
mod snapshots;
mod status;
mod verify;
pub mod wal;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;

pub use crate::model::{Phase, Phases};
pub use backup::{BackupReport, backup};
pub use check::{CheckOutcome, Coverage, check};
pub use copy::{CopyReport, copy};
pub use drill::{AssertionResult, DrillFailure, DrillReport, DrillRequest, drill, sweep_scratch};
pub use init::{InitReport, init};
pub use report::{Delivery, Generated, ReportOutcome, ReportRequest, report};
pub use request::{Outcome, Request, run};
pub use restore::{RestoreReport, RestoreRequest, restore};
pub use retention::{ForgetOutcome, PruneOutcome, forget, prune};
pub use snapshots::{LocationSnapshots, snapshots};
pub use status::{LocationStatus, Status, status};
pub use verify::{VerifyReport, VerifyRequest, verify};

use crate::audit::{AuditLog, NewEntry};
use crate::catalog::{Catalog, CatalogError, Outcome as RunOutcome, RunEnd, RunStart, Trigger};
use crate::config::Config;
use crate::engine::EngineError;
use crate::location::{self, LocationError};
use crate::repo::{Backend, Repo, RepoError};

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The request names something the configuration does not have (exit code 2).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Location(#[from] LocationError),
    #[error("{what}: {message}")]
    Io { what: String, message: String },
    #[error("{0}")]
    Busy(String),
    #[error("{}", damaged_summary(location, errors))]
    Damaged {
        location: String,
        errors: Vec<String>,
    },
    #[error("restored data does not match the manifest: {0}")]
    Verification(String),
    /// The erasure ledger could not be replayed and proven: the restored data is withheld.
    #[error("{reason}")]
    Erasure { code: &'static str, reason: String },
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// Access control refused the operation (a role, a second factor, an approval).
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// Stopped by SIGTERM or Ctrl-C before it finished (its runs are recorded as interrupted).
    #[error(
        "stopped before it finished; nothing half-done was kept, and the run is recorded as interrupted"
    )]
    Cancelled,
    #[error("internal error: {0}; please report it")]
    Internal(String),
}

impl JobError {
    /// Stable error code for the catalog and `--json` output.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Usage(_) => "usage",
            Self::Catalog(e) => e.code(),
            Self::Engine(e) => e.code(),
            Self::Repo(e) => e.code(),
            Self::Location(e) => e.code(),
            Self::Io { .. } => "io",
            Self::Busy(_) => "job.busy",
            Self::Damaged { .. } => "check.found_errors",
            Self::Verification(_) => "verify.mismatch",
            Self::Erasure { code, .. } => code,
            Self::Report(e) => e.code(),
            Self::Refused { code, .. } => code,
            Self::Cancelled => "run.cancelled",
            Self::Internal(_) => "internal",
        }
    }

    /// Whether the user asked for something that does not exist (exit code 2, not 1).
    #[must_use]
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::Usage(_))
    }

    pub(crate) fn io(what: impl Into<String>, err: &dyn std::fmt::Display) -> Self {
        Self::Io {
            what: what.into(),
            message: err.to_string(),
        }
    }
}

/// Why a job failed, for alerts, `ctl` and `--json`: the stable code, the sentence, and what
/// to do.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Failure {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Failure {
    /// A failure from a stable code and its sentence, with the code's hint.
    #[must_use]
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
            hint: hint(code).map(str::to_string),
        }
    }
}

/// What to do about a failure with this code, when the message itself does not say.
#[must_use]
pub fn hint(code: &str) -> Option<&'static str> {
    let family = code.split('.').next().unwrap_or(code);
    Some(match (family, code) {
        (_, "repo.unreadable_pack" | "check.found_errors") => {
            "run `custodian check --location LOCATION --read-data-subset all`; restore from another location until a copy is intact again"
        }
        (_, "repo.wrong_password") => {
            "the location's password reference does not open the repository: check password-file/-env/-credential"
        }
        (_, "repo.not_initialized") => "run `custodian init`",
        (_, "job.busy") => "another run holds the lock; it is retried at the job's next fire",
        (_, "run.cancelled") => "the daemon was stopped; the job runs again at its next fire",
        ("source" | "engine", _) => {
            "check that the database is reachable with the configured URL and credentials (`custodian config check`, `custodian doctor`)"
        }
        ("repo" | "location", _) => {
            "check that the location is reachable with its credentials (`custodian status`, `custodian doctor`)"
        }
        ("io", _) => "check free space and permissions where the message says (`custodian doctor`)",
        ("catalog", _) => {
            "check the state directory's free space and permissions (`custodian doctor`)"
        }
        ("restore", _) => "the target is as it was; fix what the message names and restore again",
        ("second_factor" | "access" | "approval", _) => "see README, \"Access control\"",
        // The message (and each diagnostic) already names what to fix.
        (_, "config.invalid" | "doctor.found_problems" | "archive.not_ready") => return None,
        ("usage" | "config", _) => "fix the command line or configuration the message names",
        _ => "see `custodian runs` and the journal (`journalctl -u custodian`)",
    })
}

impl JobError {
    /// The failure as alerts and `--json` carry it.
    #[must_use]
    pub fn failure(&self) -> Failure {
        Failure::new(self.code(), self.to_string())
    }
}

/// The first error a check found (each names its location), and how many more.
fn damaged_summary(location: &str, errors: &[String]) -> String {
    match errors {
        [] => format!("location {location}: the check failed"),
        [one] => one.clone(),
        [first, rest @ ..] => format!(
            "{first} (and {} more error{}; `custodian check --location {location} --json` lists them)",
            rest.len(),
            if rest.len() == 1 { "" } else { "s" }
        ),
    }
}

/// Runs blocking repository work off the async runtime.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, JobError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, RepoError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| JobError::Internal(format!("a repository task panicked: {e}")))?
        .map_err(JobError::from)
}

/// What every job needs: configuration, catalog, audit log, who is acting, and open
/// repositories.
pub struct Context {
    pub config: Arc<Config>,
    pub catalog: Catalog,
    pub audit: AuditLog,
    pub actor: String,
    pub uid: u32,
    /// The actor's role: `local` for the CLI acting on its own, `system` for the scheduler,
    /// the mapped role for requests through the control socket.
    pub role: String,
    pub trigger: Trigger,
    /// What let this context's dangerous operation through (access control's grant), recorded
    /// with every audit entry it writes.
    grant: std::sync::Mutex<Option<serde_json::Value>>,
    /// Where its job's progress goes (a terminal bar, NDJSON, or `ctl status`).
    pub progress: Arc<progress::Progress>,
    /// The scheduled job this context runs, when it runs one (recorded with its runs).
    pub job: Option<String>,
    /// Opened repositories, shared by every context derived from this one (opening derives
    /// the key with scrypt: ~128 MiB and most of a second, once per location, not per job).
    repos: Arc<Mutex<HashMap<String, Repo>>>,
    started: std::sync::Mutex<HashMap<String, RunStart>>,
}

/// The source's `parallel` setting (table streams at a time), which restores and drills of its
/// backups load with too; 0 when it is not set (one per CPU).
pub(crate) fn configured_streams(ctx: &Context, source: &str) -> u32 {
    ctx.config
        .source(source)
        .and_then(crate::config::SourceConfig::server)
        .and_then(|cfg| cfg.parallel)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

impl Context {
    /// Opens the catalog and records runs that a previous process left unfinished.
    ///
    /// # Errors
    /// When the catalog cannot be opened.
    pub async fn new(config: Arc<Config>, trigger: Trigger) -> Result<Self, JobError> {
        let catalog = Catalog::open(&config.catalog_path()).await?;
        let interrupted = catalog.mark_interrupted().await?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "{} interrupted by the end of their process, recorded as interrupted",
                crate::model::count(interrupted as usize, "run")
            );
        }
        let audit = AuditLog::new(&config.state_dir);
        let ctx = Self {
            config,
            catalog,
            audit,
            actor: crate::model::current_user(),
            uid: nix::unistd::getuid().as_raw(),
            role: if trigger == Trigger::Schedule {
                "system".to_string()
            } else {
                "local".to_string()
            },
            trigger,
            grant: std::sync::Mutex::new(None),
            progress: Arc::new(progress::Progress::hidden()),
            job: None,
            repos: Arc::default(),
            started: std::sync::Mutex::new(HashMap::new()),
        };
        if let Err(e) = drill::sweep_scratch(&ctx).await {
            tracing::error!(error = %e, "could not sweep scratch instances left by earlier drills");
        }
        Ok(ctx)
    }

    /// The open repository of a location (opened once per context).
    ///
    /// # Errors
    /// When the location is unknown, its password cannot be read, or the repository does not
    /// open.
    pub async fn repo(&self, name: &str) -> Result<Repo, JobError> {
        let mut repos = self.repos.lock().await;
        if let Some(repo) = repos.get(name) {
            return Ok(repo.clone());
        }
        let location = self
            .config
            .location(name)
            .ok_or_else(|| {
                JobError::Usage(format!(
                    "location `{name}` is not defined in {}",
                    self.config.file.display()
                ))
            })?
            .clone();
        let password = location
            .password
            .resolve()
            .map_err(|e| JobError::io(format!("location {name}: reading the password"), &e))?;
        let backend = self.backend(&location)?.1;
        let label = location.repository();
        let repo = blocking(move || Repo::open(&location.name, &label, backend, &password)).await?;
        repos.insert(name.to_string(), repo.clone());
        Ok(repo)
    }

    /// The storage of a location and the repository backend on it (remote storage gets a cache
    /// under the state directory).
    pub(crate) fn backend(
        &self,
        location: &crate::config::LocationConfig,
    ) -> Result<(location::Storage, Backend), JobError> {
        let storage = location::open(location)?;
        let cache_dir = storage
            .is_remote()
            .then(|| self.config.cache_dir().join(&location.name));
        let backend = Backend {
            storage: storage.backend(),
            cache_dir,
        };
        Ok((storage, backend))
    }

    pub(crate) async fn remember(&self, repo: Repo) {
        self.repos
            .lock()
            .await
            .insert(repo.location().to_string(), repo);
    }

    /// Starts a run with this context's actor and trigger.
    pub(crate) async fn start(
        &self,
        kind: crate::catalog::RunKind,
        source: Option<&str>,
        location: Option<&str>,
        target: Option<&str>,
    ) -> Result<String, JobError> {
        let start = RunStart {
            kind,
            trigger: self.trigger,
            actor: self.actor.clone(),
            source: source.map(str::to_string),
            location: location.map(str::to_string),
            target: target.map(str::to_string),
            job: self.job.clone(),
        };
        let id = self.catalog.start_run(&start).await?;
        self.started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone(), start);
        Ok(id)
    }

    /// The same configuration, catalog and audit log, acting for a control-socket caller.
    #[must_use]
    pub fn for_caller(&self, actor: &str, uid: u32, role: &str) -> Self {
        Self {
            config: self.config.clone(),
            catalog: self.catalog.clone(),
            audit: self.audit.clone(),
            actor: actor.to_string(),
            uid,
            role: role.to_string(),
            trigger: Trigger::Socket,
            grant: std::sync::Mutex::new(None),
            progress: Arc::new(progress::Progress::hidden()),
            job: None,
            repos: self.repos.clone(),
            started: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The same configuration, catalog, audit log and actor, running the scheduled `job`
    /// (or a request) with its own progress.
    #[must_use]
    pub fn for_job(&self, job: Option<&str>, progress: Arc<progress::Progress>) -> Self {
        Self {
            config: self.config.clone(),
            catalog: self.catalog.clone(),
            audit: self.audit.clone(),
            actor: self.actor.clone(),
            uid: self.uid,
            role: self.role.clone(),
            trigger: self.trigger,
            grant: std::sync::Mutex::new(
                self.grant
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone(),
            ),
            progress,
            job: job.map(str::to_string),
            repos: self.repos.clone(),
            started: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// rustic_core's progress reports into this context's progress.
    #[must_use]
    pub fn bars(&self) -> crate::repo::Bars {
        Arc::new(progress::Bars(self.progress.clone()))
    }

    /// Counts bytes read for a backup into this job's progress.
    #[must_use]
    pub fn read_counter(&self) -> crate::repo::ReadCounter {
        let progress = self.progress.clone();
        Arc::new(move |n| progress.add(n))
    }

    /// Records what let this context's dangerous operation through; every audit entry it
    /// writes from now on carries it (as `params.access`).
    pub fn set_grant(&self, grant: serde_json::Value) {
        *self
            .grant
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(grant);
    }

    /// The grant recorded with this context, if any.
    #[must_use]
    pub fn grant_value(&self) -> Option<serde_json::Value> {
        self.grant
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn with_grant(&self, mut params: serde_json::Value) -> serde_json::Value {
        let grant = self
            .grant
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let (Some(grant), Some(map)) = (grant, params.as_object_mut()) {
            map.insert("access".into(), grant);
        }
        params
    }

    /// Records every run this context started and has not finished as interrupted (a job
    /// stopped by cancellation).
    pub(crate) async fn interrupt_started(&self) {
        let ids: Vec<String> = self
            .started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        for id in ids {
            let end = RunEnd {
                error_code: Some("run.cancelled".into()),
                error_message: Some(
                    "stopped (SIGTERM or Ctrl-C) before it finished; nothing half-done was kept"
                        .into(),
                ),
                ..RunEnd::default()
            };
            if let Err(e) = self
                .catalog
                .finish_run(&id, RunOutcome::Interrupted, &end)
                .await
            {
                tracing::error!(run_id = id, "could not record an interrupted run: {e}");
            }
            self.audit_run(&id, "interrupted", Some("run.cancelled"));
        }
    }

    /// Appends the end of a run to the audit log (and the journal). A failure to audit is
    /// logged loudly; it does not undo the job.
    pub(crate) fn audit_run(&self, run_id: &str, outcome: &str, error_code: Option<&str>) {
        let Some(start) = self
            .started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(run_id)
        else {
            return;
        };
        let target = start.source.clone().or_else(|| start.location.clone());
        // Recorded with the action, so that the report's ACCESS rule need not re-derive from
        // today's configuration whether a past restore went into scratch.
        let scratch = start.kind == crate::catalog::RunKind::Restore
            && start
                .target
                .as_deref()
                .is_some_and(|t| self.config.is_scratch_target(start.source.as_deref(), t));
        let entry = NewEntry {
            actor: self.actor.clone(),
            uid: self.uid,
            role: self.role.clone(),
            trigger: self.trigger.as_str().to_string(),
            action: start.kind.as_str().to_string(),
            target,
            params: self.with_grant(serde_json::json!({
                "run_id": run_id,
                "source": start.source,
                "location": start.location,
                "target": start.target,
                "scratch": scratch,
            })),
            outcome: outcome.to_string(),
            detail: error_code.map(str::to_string),
        };
        if let Err(e) = self.audit.append(entry) {
            tracing::error!(run_id, error = %e, "could not write the audit log");
        }
    }

    /// Appends an action that is not a run (a refusal, an approval, an erasure).
    pub fn audit_action(&self, mut entry: NewEntry) {
        entry.params = self.with_grant(entry.params);
        if let Err(e) = self.audit.append(entry) {
            tracing::error!(error = %e, "could not write the audit log");
        }
    }

    /// Records the end of a run from a job result. A failure to record is logged, never
    /// allowed to hide the job's own error.
    pub(crate) async fn finish<T>(&self, run_id: &str, result: &Result<T, JobError>, end: RunEnd) {
        let (outcome, end) = match result {
            Ok(_) => (RunOutcome::Succeeded, end),
            Err(err) => (
                RunOutcome::Failed,
                RunEnd {
                    error_code: Some(err.code().to_string()),
                    error_message: Some(err.to_string()),
                    ..end
                },
            ),
        };
        if let Err(err) = self.catalog.finish_run(run_id, outcome, &end).await {
            tracing::error!(run_id, error = %err, "could not record the end of a run in the catalog");
        }
        if let Err(JobError::Repo(RepoError::Unreadable { location, pack, .. })) = result {
            let kind = self
                .started
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(run_id)
                .map_or("restore", |s| s.kind.as_str());
            let detail = end.error_message.clone().unwrap_or_default();
            if let Err(e) = self
                .catalog
                .record_damage(location, run_id, kind, Some(pack), &detail)
                .await
            {
                tracing::error!(run_id, error = %e, "could not record the damage found");
            }
        }
        self.audit_run(run_id, outcome.as_str(), end.error_code.as_deref());
    }

    /// Sources selected by an optional name.
    pub(crate) fn select_sources(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<crate::config::SourceConfig>, JobError> {
        match name {
            None => Ok(self.config.sources.clone()),
            Some(n) => self
                .config
                .source(n)
                .cloned()
                .map(|s| vec![s])
                .ok_or_else(|| {
                    JobError::Usage(format!(
                        "source `{n}` is not defined in {}; defined: {}",
                        self.config.file.display(),
                        self.config
                            .sources
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }),
        }
    }

    /// Locations selected by an optional name.
    pub(crate) fn select_locations(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<crate::config::LocationConfig>, JobError> {
        match name {
            None => Ok(self.config.locations.clone()),
            Some(n) => self
                .config
                .location(n)
                .cloned()
                .map(|l| vec![l])
                .ok_or_else(|| {
                    JobError::Usage(format!(
                        "location `{n}` is not defined in {}; defined: {}",
                        self.config.file.display(),
                        self.config
                            .locations
                            .iter()
                            .map(|l| l.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }),
        }
    }
}
