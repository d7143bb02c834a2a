//! What the daemon runs, and what it knows about it: every job it runs — a scheduled one, one
//! started with `ctl run`, or a `ctl backup`/`drill`/`restore`/`report` — is an *invocation*
//! with an id, its progress and, once done, its outcome and the reason it failed. A scheduled
//! job becomes typed `job::Request`s (one per source or location) run by `job::run`, like
//! everything else Custodian runs; the scheduler, the control socket and `ctl status` all read
//! the same registry.
//!
//! Shutdown: `shutdown` is cancelled on SIGTERM (no new work; a drill tears its scratch
//! instance down at once), `hard_stop` after the grace period (every other job is dropped: its
//! tools are killed, its runs recorded as interrupted).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::schedules::{JobKind, ScheduledJob};
use crate::job::progress::{Progress, Snapshot};
use crate::job::{self, Context, Failure};

/// How an invocation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Running,
    Succeeded,
    Failed,
}

/// One job the daemon runs or ran.
#[derive(Clone, Debug, Serialize)]
pub struct Invocation {
    pub id: String,
    /// The scheduled job's name, or the request (`backup`, `drill`, …).
    pub job: String,
    pub kind: String,
    /// `schedule` or `socket`.
    pub trigger: &'static str,
    pub started_at: String,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Snapshot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    #[serde(skip)]
    live: Option<Arc<Progress>>,
}

/// A scheduled job's plan and its last outcome, for `ctl status`.
#[derive(Clone, Debug, Serialize)]
pub struct Scheduled {
    pub job: String,
    pub kind: &'static str,
    pub cron: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_fire: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<Invocation>,
}

/// What every part of the daemon shares.
pub struct Shared {
    pub(super) running: std::sync::Mutex<std::collections::HashSet<String>>,
    source_queues: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    pub(super) slots: Arc<Semaphore>,
    pub(super) shutdown: CancellationToken,
    pub(super) hard_stop: CancellationToken,
    pub(super) tracker: TaskTracker,
    invocations: std::sync::Mutex<BTreeMap<String, Invocation>>,
    /// Next fire per scheduled job (the scheduler's plan).
    pub(super) plan: std::sync::Mutex<BTreeMap<String, (String, jiff::Timestamp)>>,
    /// Whether the last load of the configuration was accepted, and when one last was.
    pub(super) reload: std::sync::Mutex<(bool, jiff::Timestamp)>,
}

/// How many finished invocations `ctl status` remembers.
const KEEP: usize = 200;

impl Shared {
    pub(super) fn new(max_concurrent: usize) -> Self {
        Self {
            running: std::sync::Mutex::new(std::collections::HashSet::new()),
            source_queues: std::sync::Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(max_concurrent)),
            shutdown: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            invocations: std::sync::Mutex::new(BTreeMap::new()),
            plan: std::sync::Mutex::new(BTreeMap::new()),
            reload: std::sync::Mutex::new((true, jiff::Timestamp::now())),
        }
    }

    pub(super) fn queue(&self, source: &str) -> Arc<Mutex<()>> {
        self.source_queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(source.to_string())
            .or_default()
            .clone()
    }

    pub(super) fn running(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Registers a new invocation with its progress; returns its id.
    pub(super) fn begin(
        &self,
        job: &str,
        kind: &str,
        trigger: &'static str,
        progress: Arc<Progress>,
    ) -> String {
        use rand::RngExt;
        let id = format!(
            "{}-{:06x}",
            jiff::Timestamp::now().strftime("%Y%m%dT%H%M%S"),
            rand::rng().random::<u32>() & 0x00ff_ffff
        );
        let mut all = self
            .invocations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.insert(
            id.clone(),
            Invocation {
                id: id.clone(),
                job: job.to_string(),
                kind: kind.to_string(),
                trigger,
                started_at: crate::model::time::format(crate::model::time::now()),
                state: State::Running,
                finished_at: None,
                progress: None,
                failure: None,
                live: Some(progress),
            },
        );
        // Forget the oldest finished ones.
        while all.len() > KEEP {
            let Some(old) = all
                .values()
                .find(|i| i.state != State::Running)
                .map(|i| i.id.clone())
            else {
                break;
            };
            all.remove(&old);
        }
        id
    }

    /// Records how an invocation ended.
    pub(super) fn end(&self, id: &str, failure: Option<Failure>) {
        if let Some(i) = self
            .invocations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(id)
        {
            i.state = if failure.is_none() {
                State::Succeeded
            } else {
                State::Failed
            };
            i.finished_at = Some(crate::model::time::format(crate::model::time::now()));
            i.failure = failure;
            i.live = None;
        }
    }

    /// One invocation as it stands (with its progress now).
    pub(super) fn invocation(&self, id: &str) -> Option<Invocation> {
        self.invocations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .map(snapshot)
    }

    /// Every invocation still running.
    pub(super) fn active(&self) -> Vec<Invocation> {
        self.invocations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|i| i.state == State::Running)
            .map(snapshot)
            .collect()
    }

    /// Every scheduled job with its next fire and last outcome.
    pub(super) fn schedules(&self, jobs: &[ScheduledJob]) -> Vec<Scheduled> {
        let plan = self
            .plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let all = self
            .invocations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        jobs.iter()
            .map(|j| Scheduled {
                job: j.name.clone(),
                kind: j.kind.as_str(),
                cron: j.cron.clone(),
                next_fire: plan
                    .get(&j.name)
                    .map(|(_, at)| crate::model::time::format(*at)),
                last: all
                    .values()
                    .rev()
                    .find(|i| i.job == j.name && i.state != State::Running)
                    .map(snapshot),
            })
            .collect()
    }
}

fn snapshot(i: &Invocation) -> Invocation {
    let mut out = i.clone();
    out.progress = i.live.as_ref().and_then(|p| p.snapshot());
    out
}

/// The requests a scheduled job makes.
pub(super) fn requests(ctx: &Context, job: &ScheduledJob) -> Vec<job::Request> {
    let sources: Vec<Option<String>> = if job.sources.is_empty() {
        ctx.config
            .sources
            .iter()
            .map(|s| Some(s.name.clone()))
            .collect()
    } else {
        job.sources.iter().cloned().map(Some).collect()
    };
    let locations: Vec<Option<String>> = if job.locations.is_empty() {
        vec![None]
    } else {
        job.locations.iter().cloned().map(Some).collect()
    };
    match job.kind {
        JobKind::Backup => sources
            .into_iter()
            .map(|source| job::Request::Backup { source })
            .collect(),
        JobKind::BaseBackup => {
            let with_archive = |name: &Option<String>| {
                !job.sources.is_empty()
                    || name
                        .as_deref()
                        .and_then(|n| ctx.config.source(n))
                        .is_some_and(|s| crate::job::wal::archive_settings(s).is_ok())
            };
            sources
                .into_iter()
                .filter(with_archive)
                .map(|source| job::Request::BaseBackup { source })
                .collect()
        }
        JobKind::Copy => sources
            .into_iter()
            .map(|source| job::Request::Copy { source })
            .collect(),
        JobKind::Check => {
            let (read_data, rotate) = match job.read_data.as_str() {
                "rotate" => (None, true),
                "none" => (None, false),
                other => (other.parse().ok(), false),
            };
            locations
                .into_iter()
                .map(|location| job::Request::Check {
                    location,
                    read_data: read_data.clone(),
                    rotate,
                })
                .collect()
        }
        JobKind::Prune => locations
            .into_iter()
            .map(|location| job::Request::Prune {
                location,
                apply: true,
            })
            .collect(),
        JobKind::Drill => vec![job::Request::Drill(job::DrillRequest {
            source: job.sources.first().cloned(),
            location: job.locations.first().cloned(),
            snapshot: None,
            pitr: job.pitr.clone(),
        })],
        JobKind::Report => vec![job::Request::ScheduledReport],
    }
}

/// Runs requests in order as one invocation: backups and drills queue behind other work on
/// the same source. The first failure is the invocation's (the rest still run).
pub(super) async fn execute(
    ctx: &Context,
    shared: &Shared,
    requests: &[job::Request],
) -> Option<Failure> {
    let mut failure = None;
    for request in requests {
        let queue_key = match request {
            job::Request::Backup { source } | job::Request::BaseBackup { source } => source.clone(),
            job::Request::Drill(d) => Some(d.source.clone().unwrap_or_else(|| "*drill*".into())),
            _ => None,
        };
        let queue = queue_key.map(|k| shared.queue(&k));
        let _turn = match &queue {
            Some(q) => Some(q.lock().await),
            None => None,
        };
        // A drill stops at once on SIGTERM (its scratch instance is torn down); the rest get
        // the grace period.
        let token = if matches!(request, job::Request::Drill(_)) {
            &shared.shutdown
        } else {
            &shared.hard_stop
        };
        let this = match job::run(ctx, request, token).await {
            Ok(outcome) => outcome.failure(),
            Err(e) => Some(e.failure()),
        };
        if let Some(f) = &this {
            tracing::error!(kind = request.kind(), code = f.code, "{}", f.message);
        }
        failure = failure.or(this);
    }
    failure
}
