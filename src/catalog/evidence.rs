//! What reports read — whole populations of records, as stored (the evidence ships them raw) —
//! and the records reports themselves leave (the report chain, deliveries, alerts).

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Catalog, CatalogError, query_err};
use crate::model::time;

/// A signed report, as recorded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReportRecord {
    pub id: String,
    pub run_id: Option<String>,
    pub period: String,
    pub period_from: String,
    pub period_to: String,
    pub generated_at: String,
    pub dir: String,
    pub manifest_sha256: String,
    pub key_id: String,
    pub previous_id: Option<String>,
    pub overall: String,
    /// JSON object: rule id → verdict.
    pub verdicts: String,
    /// JSON object: rule id → `{"value": …, "display": …}` of its first check.
    #[serde(default)]
    pub metrics: String,
}

/// One attempt to deliver a report by e-mail.
#[derive(Clone, Debug, Serialize)]
pub struct DeliveryRecord {
    pub report_id: String,
    pub attempt: u32,
    pub delivered: bool,
    pub message_id: Option<String>,
    pub recipients: Vec<String>,
    pub error: Option<String>,
}

/// One alert sent (or attempted) about a scheduled job.
#[derive(Clone, Debug, Serialize)]
pub struct AlertRecord {
    pub job: String,
    pub status: String,
    pub channel: &'static str,
    pub delivered: bool,
    pub error: Option<String>,
}

/// A snapshot in a location, with the backup it holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeldSnapshot {
    pub location: String,
    pub snapshot_id: String,
    pub backup_id: String,
    /// `backup` or `copy`.
    pub via: String,
    pub copied_from: Option<String>,
    pub run_id: String,
    pub arrived_at: String,
    pub removed_at: Option<String>,
    pub source: String,
    pub taken_at: String,
    pub size: i64,
    pub manifest_sha256: String,
}

/// A repository check, as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredCheck {
    pub run_id: String,
    pub location: String,
    pub checked_at: String,
    pub read_data_subset: Option<String>,
    pub ok: bool,
    pub errors: i64,
    pub warnings: i64,
    pub findings: Vec<String>,
}

/// A four-eyes approval request, as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredApproval {
    pub id: String,
    /// The request, as JSON.
    pub request: serde_json::Value,
    pub requested_by: String,
    pub created_at: String,
    pub expires_at: String,
    pub approved_by: Option<String>,
    pub approved_at: Option<String>,
}

/// An alert the daemon sent, as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredAlert {
    pub job: String,
    pub status: String,
    pub channel: String,
    pub sent_at: String,
    pub delivered: bool,
    pub error: Option<String>,
}

/// A report delivery attempt, as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredDelivery {
    pub report_id: String,
    pub attempted_at: String,
    pub attempt: i64,
    pub delivered: bool,
    pub message_id: Option<String>,
    pub recipients: Vec<String>,
    pub error: Option<String>,
}

impl Catalog {
    /// Snapshots that arrived in `[from, to)` or were still held at `from`.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn snapshots_held(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<HeldSnapshot>, CatalogError> {
        let rows = sqlx::query(
            "SELECT s.location, s.snapshot_id, s.backup_id, s.via, s.copied_from, s.run_id,
                    s.arrived_at, s.removed_at, b.source, b.taken_at, b.size, b.manifest_sha256
             FROM snapshots s JOIN backups b ON b.id = s.backup_id
             WHERE s.arrived_at < ?1 AND (s.arrived_at >= ?2 OR s.removed_at IS NULL OR s.removed_at >= ?2)
             ORDER BY s.arrived_at",
        )
        .bind(to)
        .bind(from)
        .fetch_all(self.pool())
        .await
        .map_err(query_err("reading snapshots"))?;
        Ok(rows
            .iter()
            .map(|r| HeldSnapshot {
                location: r.get("location"),
                snapshot_id: r.get("snapshot_id"),
                backup_id: r.get("backup_id"),
                via: r.get("via"),
                copied_from: r.get("copied_from"),
                run_id: r.get("run_id"),
                arrived_at: r.get("arrived_at"),
                removed_at: r.get("removed_at"),
                source: r.get("source"),
                taken_at: r.get("taken_at"),
                size: r.get("size"),
                manifest_sha256: r.get("manifest_sha256"),
            })
            .collect())
    }

    /// Every snapshot of a source (removed ones included), for erasure horizons.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn snapshots_of_source(
        &self,
        source: &str,
    ) -> Result<Vec<(String, String, Option<String>)>, CatalogError> {
        sqlx::query_as(
            "SELECT s.location, b.taken_at, s.removed_at FROM snapshots s
             JOIN backups b ON b.id = s.backup_id WHERE b.source = ?",
        )
        .bind(source)
        .fetch_all(self.pool())
        .await
        .map_err(query_err("reading the copies of a source"))
    }

    /// Checks in `[from, to)`, oldest first.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn checks_between(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<StoredCheck>, CatalogError> {
        let rows = sqlx::query(
            "SELECT * FROM checks WHERE checked_at >= ? AND checked_at < ? ORDER BY checked_at",
        )
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await
        .map_err(query_err("reading checks"))?;
        Ok(rows
            .iter()
            .map(|r| StoredCheck {
                run_id: r.get("run_id"),
                location: r.get("location"),
                checked_at: r.get("checked_at"),
                read_data_subset: r.get("read_data_subset"),
                ok: r.get::<i64, _>("ok") != 0,
                errors: r.get("errors"),
                warnings: r.get("warnings"),
                findings: serde_json::from_str(r.get::<&str, _>("findings")).unwrap_or_default(),
            })
            .collect())
    }

    /// Approval requests made in `[from, to)`.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn approvals_between(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<StoredApproval>, CatalogError> {
        let rows = sqlx::query(
            "SELECT id, request, requested_by, created_at, expires_at, approved_by, approved_at
             FROM approvals WHERE created_at >= ? AND created_at < ? ORDER BY created_at",
        )
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await
        .map_err(query_err("reading approvals"))?;
        Ok(rows
            .iter()
            .map(|r| StoredApproval {
                id: r.get("id"),
                request: serde_json::from_str(r.get::<&str, _>("request"))
                    .unwrap_or(serde_json::Value::Null),
                requested_by: r.get("requested_by"),
                created_at: r.get("created_at"),
                expires_at: r.get("expires_at"),
                approved_by: r.get("approved_by"),
                approved_at: r.get("approved_at"),
            })
            .collect())
    }

    /// Alerts sent from `from` on.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn alerts_since(&self, from: &str) -> Result<Vec<StoredAlert>, CatalogError> {
        let rows = sqlx::query(
            "SELECT job, status, channel, sent_at, delivered, error FROM alerts
             WHERE sent_at >= ? ORDER BY sent_at",
        )
        .bind(from)
        .fetch_all(self.pool())
        .await
        .map_err(query_err("reading alerts"))?;
        Ok(rows
            .iter()
            .map(|r| StoredAlert {
                job: r.get("job"),
                status: r.get("status"),
                channel: r.get("channel"),
                sent_at: r.get("sent_at"),
                delivered: r.get::<i64, _>("delivered") != 0,
                error: r.get("error"),
            })
            .collect())
    }

    /// Report deliveries attempted in `[from, to)`, or of one report.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn deliveries(
        &self,
        from: &str,
        to: &str,
        report: Option<&str>,
    ) -> Result<Vec<StoredDelivery>, CatalogError> {
        let rows = sqlx::query(
            "SELECT report_id, attempted_at, attempt, delivered, message_id, recipients, error
             FROM report_deliveries
             WHERE (?3 IS NULL AND attempted_at >= ?1 AND attempted_at < ?2) OR report_id = ?3
             ORDER BY attempted_at",
        )
        .bind(from)
        .bind(to)
        .bind(report)
        .fetch_all(self.pool())
        .await
        .map_err(query_err("reading report deliveries"))?;
        Ok(rows
            .iter()
            .map(|r| StoredDelivery {
                report_id: r.get("report_id"),
                attempted_at: r.get("attempted_at"),
                attempt: r.get("attempt"),
                delivered: r.get::<i64, _>("delivered") != 0,
                message_id: r.get("message_id"),
                recipients: serde_json::from_str(r.get::<&str, _>("recipients"))
                    .unwrap_or_default(),
                error: r.get("error"),
            })
            .collect())
    }

    /// Records a signed report.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn record_report(&self, r: &ReportRecord) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO reports (id, run_id, period, period_from, period_to, generated_at, dir,
                 manifest_sha256, key_id, previous_id, overall, verdicts, metrics)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.id)
        .bind(&r.run_id)
        .bind(&r.period)
        .bind(&r.period_from)
        .bind(&r.period_to)
        .bind(&r.generated_at)
        .bind(&r.dir)
        .bind(&r.manifest_sha256)
        .bind(&r.key_id)
        .bind(&r.previous_id)
        .bind(&r.overall)
        .bind(&r.verdicts)
        .bind(&r.metrics)
        .execute(self.pool())
        .await
        .map_err(query_err("recording a report"))?;
        Ok(())
    }

    /// Every recorded report, in the order they were generated (the chain's order).
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn reports(&self) -> Result<Vec<ReportRecord>, CatalogError> {
        let rows = sqlx::query("SELECT * FROM reports ORDER BY generated_at, id")
            .fetch_all(self.pool())
            .await
            .map_err(query_err("listing reports"))?;
        Ok(rows
            .iter()
            .map(|r| ReportRecord {
                id: r.get("id"),
                run_id: r.get("run_id"),
                period: r.get("period"),
                period_from: r.get("period_from"),
                period_to: r.get("period_to"),
                generated_at: r.get("generated_at"),
                dir: r.get("dir"),
                manifest_sha256: r.get("manifest_sha256"),
                key_id: r.get("key_id"),
                previous_id: r.get("previous_id"),
                overall: r.get("overall"),
                verdicts: r.get("verdicts"),
                metrics: r.get("metrics"),
            })
            .collect())
    }

    /// Records one delivery attempt.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn record_delivery(&self, d: &DeliveryRecord) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO report_deliveries (report_id, attempted_at, attempt, delivered,
                 message_id, recipients, error)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&d.report_id)
        .bind(time::format(time::now()))
        .bind(i64::from(d.attempt))
        .bind(d.delivered)
        .bind(&d.message_id)
        .bind(serde_json::to_string(&d.recipients).unwrap_or_default())
        .bind(&d.error)
        .execute(self.pool())
        .await
        .map_err(query_err("recording a report delivery"))?;
        Ok(())
    }

    /// Records an alert.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn record_alert(&self, a: &AlertRecord) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO alerts (job, status, channel, sent_at, delivered, error)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&a.job)
        .bind(&a.status)
        .bind(a.channel)
        .bind(time::format(time::now()))
        .bind(a.delivered)
        .bind(&a.error)
        .execute(self.pool())
        .await
        .map_err(query_err("recording an alert"))?;
        Ok(())
    }
}
