//! The daemon's schedule state and the runs it missed or skipped.

use sqlx::Row;

use super::{Catalog, CatalogError, query_err};
use crate::model::time;

impl Catalog {
    /// The last time each scheduled job fired (by job name).
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn last_fire(&self, job: &str) -> Result<Option<jiff::Timestamp>, CatalogError> {
        let row = sqlx::query("SELECT last_fire FROM schedule_state WHERE job = ?")
            .bind(job)
            .fetch_optional(self.pool())
            .await
            .map_err(query_err("reading the schedule state"))?;
        Ok(row.and_then(|r| r.get::<String, _>("last_fire").parse().ok()))
    }

    /// Records that a scheduled job fired (or was accounted for) at `at`.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn set_last_fire(&self, job: &str, at: jiff::Timestamp) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO schedule_state (job, last_fire) VALUES (?, ?)
             ON CONFLICT (job) DO UPDATE SET last_fire = excluded.last_fire",
        )
        .bind(job)
        .bind(time::format(at))
        .execute(self.pool())
        .await
        .map_err(query_err("writing the schedule state"))?;
        Ok(())
    }

    /// Records a scheduled run that did not happen: `missed` (the daemon was down) or
    /// `skipped` (the previous run of the job was still going), so reports can count them.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn record_not_run(
        &self,
        kind: &str,
        job: &str,
        scheduled_for: jiff::Timestamp,
        outcome: &str,
        message: &str,
    ) -> Result<(), CatalogError> {
        let at = time::format(scheduled_for);
        let id = format!(
            "{}-{outcome}-{job}",
            scheduled_for.strftime("%Y%m%dT%H%M%S%.3fZ")
        );
        sqlx::query(
            "INSERT OR IGNORE INTO runs (id, kind, trigger, actor, pid, started_at, finished_at,
                 outcome, error_code, error_message, details, job)
             VALUES (?, ?, 'schedule', 'custodian', ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(kind)
        .bind(i64::from(std::process::id()))
        .bind(&at)
        .bind(&at)
        .bind(outcome)
        .bind(format!("schedule.{outcome}"))
        .bind(message)
        .bind(serde_json::json!({ "job": job, "scheduled_for": at }).to_string())
        .bind(job)
        .execute(self.pool())
        .await
        .map_err(query_err("recording a run that did not happen"))?;
        Ok(())
    }
}
