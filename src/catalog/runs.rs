//! Runs: one row per job execution, inserted before the work starts and finished after it.

use std::fmt;

use rand::RngExt;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Catalog, CatalogError, query_err};
use crate::model::{process_start, time};

/// What a run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Init,
    Backup,
    Copy,
    Check,
    Restore,
    Drill,
    Forget,
    Prune,
    Report,
    Verify,
    /// A physical base backup (point-in-time recovery).
    BaseBackup,
    /// A restore to a point in time.
    PitrRestore,
}

impl RunKind {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Init => "init",
            Self::Backup => "backup",
            Self::Copy => "copy",
            Self::Check => "check",
            Self::Restore => "restore",
            Self::Drill => "drill",
            Self::Forget => "forget",
            Self::Prune => "prune",
            Self::Report => "report",
            Self::Verify => "verify",
            Self::BaseBackup => "base-backup",
            Self::PitrRestore => "pitr-restore",
        }
    }

    /// The kind stored as `text`.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Init,
            Self::Backup,
            Self::Copy,
            Self::Check,
            Self::Restore,
            Self::Drill,
            Self::Forget,
            Self::Prune,
            Self::Report,
            Self::Verify,
            Self::BaseBackup,
            Self::PitrRestore,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// Who or what started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Cli,
    Demo,
    Schedule,
    /// A request through the daemon's control socket.
    Socket,
}

impl Trigger {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Cli => "cli",
            Self::Demo => "demo",
            Self::Schedule => "schedule",
            Self::Socket => "socket",
        }
    }

    /// The trigger stored as `text` (unknown ones read as the command line).
    #[must_use]
    pub fn parse(text: &str) -> Self {
        match text {
            "demo" => Self::Demo,
            "schedule" => Self::Schedule,
            "socket" => Self::Socket,
            _ => Self::Cli,
        }
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Running,
    Succeeded,
    Failed,
    /// The process ended (killed, crashed) while the run was going on.
    Interrupted,
    /// A scheduled run that did not happen because the daemon was down.
    Missed,
    /// A scheduled run that did not start because the job's previous run was still going.
    Skipped,
}

impl Outcome {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::Missed => "missed",
            Self::Skipped => "skipped",
        }
    }

    pub(crate) fn parse(text: &str) -> Self {
        match text {
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "interrupted" => Self::Interrupted,
            "missed" => Self::Missed,
            "skipped" => Self::Skipped,
            _ => Self::Failed,
        }
    }
}

impl fmt::Display for RunKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known when a run starts.
#[derive(Clone, Debug)]
pub struct RunStart {
    pub kind: RunKind,
    pub trigger: Trigger,
    pub actor: String,
    pub source: Option<String>,
    pub location: Option<String>,
    pub target: Option<String>,
    /// The scheduled job it runs for, if any.
    pub job: Option<String>,
}

/// What is known when a run ends.
#[derive(Clone, Debug, Default)]
pub struct RunEnd {
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub bytes_read: Option<u64>,
    pub bytes_added: Option<u64>,
    pub snapshot_id: Option<String>,
    pub details: Option<serde_json::Value>,
}

/// A run as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub kind: RunKind,
    pub trigger: Trigger,
    pub actor: String,
    pub source: Option<String>,
    pub location: Option<String>,
    pub target: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: Outcome,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub bytes_read: Option<i64>,
    pub bytes_added: Option<i64>,
    pub snapshot_id: Option<String>,
    /// What the run reported beyond the columns (JSON), as stored.
    #[serde(default)]
    pub details: Option<serde_json::Value>,
    /// The scheduled job it ran for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

const RUN_COLUMNS: &str =
    "id, kind, trigger, actor, source, location, target, started_at, finished_at,
     outcome, error_code, error_message, bytes_read, bytes_added, snapshot_id, details, job";

/// A stored run; `None` for a kind this version does not know.
fn run_record(r: &sqlx::sqlite::SqliteRow) -> Option<RunRecord> {
    Some(RunRecord {
        id: r.get("id"),
        kind: RunKind::parse(r.get::<&str, _>("kind"))?,
        trigger: Trigger::parse(r.get::<&str, _>("trigger")),
        actor: r.get("actor"),
        source: r.get("source"),
        location: r.get("location"),
        target: r.get("target"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
        outcome: Outcome::parse(r.get::<&str, _>("outcome")),
        error_code: r.get("error_code"),
        error_message: r.get("error_message"),
        bytes_read: r.get("bytes_read"),
        bytes_added: r.get("bytes_added"),
        snapshot_id: r.get("snapshot_id"),
        details: r
            .get::<Option<String>, _>("details")
            .and_then(|d| serde_json::from_str(&d).ok()),
        job: r.get("job"),
    })
}

/// A new run id: start time plus randomness, so ids sort by time.
fn new_run_id() -> String {
    let stamp = time::now().strftime("%Y%m%dT%H%M%S%.3fZ").to_string();
    let suffix: u32 = rand::rng().random();
    format!("{stamp}-{suffix:08x}")
}

fn to_i64(n: Option<u64>) -> Option<i64> {
    n.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

impl Catalog {
    /// Records that a run has started; returns its id.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn start_run(&self, start: &RunStart) -> Result<String, CatalogError> {
        let id = new_run_id();
        sqlx::query(
            "INSERT INTO runs (id, kind, trigger, actor, pid, pid_start, source, location, target,
                               started_at, outcome, job)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?)",
        )
        .bind(&id)
        .bind(start.kind.as_str())
        .bind(start.trigger.as_str())
        .bind(&start.actor)
        .bind(i64::from(std::process::id()))
        .bind(process_start(i64::from(std::process::id())))
        .bind(&start.source)
        .bind(&start.location)
        .bind(&start.target)
        .bind(time::format(time::now()))
        .bind(&start.job)
        .execute(self.pool())
        .await
        .map_err(query_err("starting a run"))?;
        Ok(id)
    }

    /// Records how a run ended.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn finish_run(
        &self,
        id: &str,
        outcome: Outcome,
        end: &RunEnd,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE runs SET finished_at = ?, outcome = ?, error_code = ?, error_message = ?,
                 bytes_read = ?, bytes_added = ?, snapshot_id = ?, details = ?
             WHERE id = ?",
        )
        .bind(time::format(time::now()))
        .bind(outcome.as_str())
        .bind(&end.error_code)
        .bind(&end.error_message)
        .bind(to_i64(end.bytes_read))
        .bind(to_i64(end.bytes_added))
        .bind(&end.snapshot_id)
        .bind(end.details.as_ref().map(ToString::to_string))
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(query_err("finishing a run"))?;
        Ok(())
    }

    /// Marks runs left `running` by a process that no longer exists as `interrupted`, so a
    /// killed job is never silently lost. Returns how many were marked.
    ///
    /// # Errors
    /// When the catalog cannot be read or written.
    pub async fn mark_interrupted(&self) -> Result<u64, CatalogError> {
        let rows = sqlx::query("SELECT id, pid, pid_start FROM runs WHERE outcome = 'running'")
            .fetch_all(self.pool())
            .await
            .map_err(query_err("listing running runs"))?;
        let mut marked = 0;
        for row in rows {
            let id: String = row.get("id");
            let pid: i64 = row.get("pid");
            let started: Option<i64> = row.get("pid_start");
            if started.is_some() && process_start(pid) == started {
                continue;
            }
            sqlx::query(
                "UPDATE runs SET outcome = 'interrupted', finished_at = ?, error_code = 'run.interrupted',
                     error_message = 'the process running this job ended before it finished'
                 WHERE id = ? AND outcome = 'running'",
            )
            .bind(time::format(time::now()))
            .bind(&id)
            .execute(self.pool())
            .await
            .map_err(query_err("marking an interrupted run"))?;
            marked += 1;
        }
        Ok(marked)
    }

    /// The most recent runs, newest first.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn recent_runs(&self, limit: u32) -> Result<Vec<RunRecord>, CatalogError> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC, id DESC LIMIT ?"
        ))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(query_err("listing runs"))?;
        Ok(rows.iter().filter_map(run_record).collect())
    }

    /// Runs started in `[from, to)`, oldest first.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn runs_between(&self, from: &str, to: &str) -> Result<Vec<RunRecord>, CatalogError> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE started_at >= ? AND started_at < ?
             ORDER BY started_at, id"
        ))
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await
        .map_err(query_err("reading runs"))?;
        Ok(rows.iter().filter_map(run_record).collect())
    }

    /// When the catalog first recorded anything, and the first scheduled backup.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn first_activity(&self) -> Result<(Option<String>, Option<String>), CatalogError> {
        sqlx::query_as(
            "SELECT min(started_at),
                    (SELECT min(started_at) FROM runs WHERE kind = 'backup' AND trigger = 'schedule')
             FROM runs",
        )
        .fetch_one(self.pool())
        .await
        .map_err(query_err("reading the first activity"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_start_time_is_readable_and_dead_pids_have_none() {
        let me = i64::from(std::process::id());
        assert!(crate::model::process_start(me).is_some());
        assert_eq!(
            crate::model::process_start(me),
            crate::model::process_start(me)
        );
        assert_eq!(crate::model::process_start(i64::from(i32::MAX)), None);
    }
}
