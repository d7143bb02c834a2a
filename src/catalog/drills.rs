//! Restore drills and the scratch databases they create.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Catalog, CatalogError, query_err};
use crate::model::time;

/// A drill as it starts.
#[derive(Clone, Debug)]
pub struct DrillStart {
    pub run_id: String,
    pub source: String,
    pub location: String,
    /// `latest`, `random` or `id`.
    pub selection: String,
}

/// Everything a finished drill measured.
#[derive(Clone, Debug, Default)]
pub struct DrillEnd {
    pub snapshot_id: Option<String>,
    pub backup_id: Option<String>,
    pub snapshot_taken_at: Option<String>,
    pub snapshot_age_seconds: Option<f64>,
    pub engine: Option<String>,
    pub scratch: Option<String>,
    /// `passed`, `failed` or `interrupted`.
    pub verdict: String,
    pub failure_code: Option<String>,
    pub failure_reason: Option<String>,
    pub rto_seconds: Option<f64>,
    pub phases: serde_json::Value,
    pub tables: Option<u64>,
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
    pub assertions: serde_json::Value,
}

/// How a drill ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DrillVerdict {
    Running,
    Passed,
    Failed,
    Interrupted,
}

impl DrillVerdict {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "running" => Self::Running,
            "passed" => Self::Passed,
            "interrupted" => Self::Interrupted,
            _ => Self::Failed,
        }
    }
}

impl std::fmt::Display for DrillVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A drill as listed by `custodian drills` and read by reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DrillRecord {
    pub run_id: String,
    pub source: String,
    pub location: String,
    pub selection: String,
    pub snapshot_id: Option<String>,
    pub backup_id: Option<String>,
    pub snapshot_taken_at: Option<String>,
    pub snapshot_age_seconds: Option<f64>,
    pub engine: Option<String>,
    pub scratch: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub verdict: DrillVerdict,
    pub failure_code: Option<String>,
    pub failure_reason: Option<String>,
    pub rto_seconds: Option<f64>,
    pub phases: serde_json::Value,
    pub tables: Option<i64>,
    pub rows: Option<i64>,
    pub bytes: Option<i64>,
    pub assertions: serde_json::Value,
}

/// A scratch database, recorded before it exists so that nothing can be left unaccounted for.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScratchRecord {
    pub id: String,
    pub run_id: String,
    pub kind: String,
    pub path: Option<String>,
    pub pid: Option<i64>,
    pub pid_start: Option<i64>,
    pub database: Option<String>,
    pub server: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    #[serde(default)]
    pub removed_at: Option<String>,
    #[serde(default)]
    pub removed_by: Option<String>,
}

fn opt_i64(n: Option<u64>) -> Option<i64> {
    n.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

fn json_column(text: Option<String>) -> serde_json::Value {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn scratch_record(r: &sqlx::sqlite::SqliteRow) -> ScratchRecord {
    ScratchRecord {
        id: r.get("id"),
        run_id: r.get("run_id"),
        kind: r.get("kind"),
        path: r.get("path"),
        pid: r.get("pid"),
        pid_start: r.get("pid_start"),
        database: r.get("database"),
        server: r.get("server"),
        created_at: r.get("created_at"),
        expires_at: r.get("expires_at"),
        removed_at: r.get("removed_at"),
        removed_by: r.get("removed_by"),
    }
}

fn drill_record(r: &sqlx::sqlite::SqliteRow) -> DrillRecord {
    DrillRecord {
        run_id: r.get("run_id"),
        source: r.get("source"),
        location: r.get("location"),
        selection: r.get("selection"),
        snapshot_id: r.get("snapshot_id"),
        backup_id: r.get("backup_id"),
        snapshot_taken_at: r.get("snapshot_taken_at"),
        snapshot_age_seconds: r.get("snapshot_age_seconds"),
        engine: r.get("engine"),
        scratch: r.get("scratch"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
        verdict: DrillVerdict::parse(r.get::<&str, _>("verdict")),
        failure_code: r.get("failure_code"),
        failure_reason: r.get("failure_reason"),
        rto_seconds: r.get("rto_seconds"),
        phases: json_column(r.get("phases")),
        tables: r.get("tables"),
        rows: r.get("rows"),
        bytes: r.get("bytes"),
        assertions: json_column(r.get("assertions")),
    }
}

impl Catalog {
    /// Records that a drill has started.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn start_drill(&self, d: &DrillStart) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO drills (run_id, source, location, selection, started_at, verdict)
             VALUES (?, ?, ?, ?, ?, 'running')",
        )
        .bind(&d.run_id)
        .bind(&d.source)
        .bind(&d.location)
        .bind(&d.selection)
        .bind(time::format(time::now()))
        .execute(self.pool())
        .await
        .map_err(query_err("starting a drill"))?;
        Ok(())
    }

    /// Records what a drill measured and how it ended.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn finish_drill(&self, run_id: &str, e: &DrillEnd) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE drills SET snapshot_id = ?, backup_id = ?, snapshot_taken_at = ?,
                 snapshot_age_seconds = ?, engine = ?, scratch = ?, finished_at = ?, verdict = ?,
                 failure_code = ?, failure_reason = ?, rto_seconds = ?, phases = ?, tables = ?,
                 rows = ?, bytes = ?, assertions = ?
             WHERE run_id = ?",
        )
        .bind(&e.snapshot_id)
        .bind(&e.backup_id)
        .bind(&e.snapshot_taken_at)
        .bind(e.snapshot_age_seconds)
        .bind(&e.engine)
        .bind(&e.scratch)
        .bind(time::format(time::now()))
        .bind(&e.verdict)
        .bind(&e.failure_code)
        .bind(&e.failure_reason)
        .bind(e.rto_seconds)
        .bind(e.phases.to_string())
        .bind(opt_i64(e.tables))
        .bind(opt_i64(e.rows))
        .bind(opt_i64(e.bytes))
        .bind(e.assertions.to_string())
        .bind(run_id)
        .execute(self.pool())
        .await
        .map_err(query_err("finishing a drill"))?;
        Ok(())
    }

    /// Drills still `running` whose run was found interrupted become `interrupted`.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn mark_interrupted_drills(&self) -> Result<u64, CatalogError> {
        let done = sqlx::query(
            "UPDATE drills SET verdict = 'interrupted', finished_at = r.finished_at,
                 failure_code = 'drill.interrupted',
                 failure_reason = 'the process running the drill ended before it finished'
             FROM runs r
             WHERE r.id = drills.run_id AND drills.verdict = 'running' AND r.outcome <> 'running'",
        )
        .execute(self.pool())
        .await
        .map_err(query_err("marking interrupted drills"))?;
        Ok(done.rows_affected())
    }

    /// Drills, newest first, optionally of one source and/or location.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn drills(
        &self,
        source: Option<&str>,
        location: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DrillRecord>, CatalogError> {
        let rows = sqlx::query(
            "SELECT * FROM drills
             WHERE (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR location = ?2)
             ORDER BY started_at DESC, run_id DESC LIMIT ?3",
        )
        .bind(source)
        .bind(location)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(query_err("listing drills"))?;
        Ok(rows.iter().map(drill_record).collect())
    }

    /// Every drill started before `until`, oldest first (reports judge drill age from them).
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn drills_until(&self, until: &str) -> Result<Vec<DrillRecord>, CatalogError> {
        let rows = sqlx::query("SELECT * FROM drills WHERE started_at < ? ORDER BY started_at")
            .bind(until)
            .fetch_all(self.pool())
            .await
            .map_err(query_err("reading drills"))?;
        Ok(rows.iter().map(drill_record).collect())
    }

    /// Scratch instances created in `[from, to)`, oldest first.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn scratch_between(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<ScratchRecord>, CatalogError> {
        let rows = sqlx::query(
            "SELECT * FROM scratch_instances WHERE created_at >= ? AND created_at < ?
             ORDER BY created_at",
        )
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await
        .map_err(query_err("reading scratch instances"))?;
        Ok(rows.iter().map(scratch_record).collect())
    }

    /// Records a scratch database about to be created.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn record_scratch(&self, s: &ScratchRecord) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO scratch_instances (id, run_id, kind, path, pid, pid_start, database,
                 server, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.id)
        .bind(&s.run_id)
        .bind(&s.kind)
        .bind(&s.path)
        .bind(s.pid)
        .bind(s.pid_start)
        .bind(&s.database)
        .bind(&s.server)
        .bind(&s.created_at)
        .bind(&s.expires_at)
        .execute(self.pool())
        .await
        .map_err(query_err("recording a scratch database"))?;
        Ok(())
    }

    /// Records the server process of a scratch instance once it runs.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn scratch_started(
        &self,
        id: &str,
        pid: i64,
        pid_start: Option<i64>,
    ) -> Result<(), CatalogError> {
        sqlx::query("UPDATE scratch_instances SET pid = ?, pid_start = ? WHERE id = ?")
            .bind(pid)
            .bind(pid_start)
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(query_err("recording a scratch server process"))?;
        Ok(())
    }

    /// Records that a scratch database is gone, and who removed it.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn scratch_removed(&self, id: &str, by: &str) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE scratch_instances SET removed_at = ?, removed_by = ?
             WHERE id = ? AND removed_at IS NULL",
        )
        .bind(time::format(time::now()))
        .bind(by)
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(query_err("recording a removed scratch database"))?;
        Ok(())
    }

    /// Scratch databases not yet removed, with the outcome of the run that created them.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn live_scratch(&self) -> Result<Vec<(ScratchRecord, String)>, CatalogError> {
        let rows = sqlx::query(
            "SELECT s.*, r.outcome FROM scratch_instances s JOIN runs r ON r.id = s.run_id
             WHERE s.removed_at IS NULL ORDER BY s.created_at",
        )
        .fetch_all(self.pool())
        .await
        .map_err(query_err("listing scratch databases"))?;
        Ok(rows
            .iter()
            .map(|r| (scratch_record(r), r.get("outcome")))
            .collect())
    }
}
