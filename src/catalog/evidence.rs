//! What reports read: whole populations of rows as JSON (the evidence ships raw, as stored), and
//! the records reports themselves leave (the report chain, deliveries, alerts).

use serde::{Deserialize, Serialize};
use sqlx::{Column, Row, TypeInfo, ValueRef};

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

impl Catalog {
    /// Rows of a read-only query as JSON objects, column by column as stored. `binds` are text
    /// parameters.
    ///
    /// # Errors
    /// When the query fails.
    pub async fn rows_json(
        &self,
        what: &'static str,
        sql: &str,
        binds: &[&str],
    ) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, CatalogError> {
        let mut query = sqlx::query(sql);
        for b in binds {
            query = query.bind(*b);
        }
        let rows = query
            .fetch_all(self.pool())
            .await
            .map_err(query_err(what))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut object = serde_json::Map::new();
            for (i, column) in row.columns().iter().enumerate() {
                let raw = row.try_get_raw(i).map_err(query_err(what))?;
                let value = if raw.is_null() {
                    serde_json::Value::Null
                } else {
                    match raw.type_info().name() {
                        "INTEGER" | "BOOLEAN" => {
                            row.try_get::<i64, _>(i).map_err(query_err(what))?.into()
                        }
                        "REAL" => row.try_get::<f64, _>(i).map_err(query_err(what))?.into(),
                        _ => row.try_get::<String, _>(i).map_err(query_err(what))?.into(),
                    }
                };
                object.insert(column.name().to_string(), value);
            }
            out.push(object);
        }
        Ok(out)
    }

    /// Records a signed report.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn record_report(&self, r: &ReportRecord) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO reports (id, run_id, period, period_from, period_to, generated_at, dir,
                 manifest_sha256, key_id, previous_id, overall, verdicts)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .execute(self.pool())
        .await
        .map_err(query_err("recording a report"))?;
        Ok(())
    }

    /// Every recorded report, oldest period first.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn reports(&self) -> Result<Vec<ReportRecord>, CatalogError> {
        let rows = self
            .rows_json(
                "listing reports",
                "SELECT * FROM reports ORDER BY period_to, generated_at",
                &[],
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| serde_json::from_value(serde_json::Value::Object(r)).ok())
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
