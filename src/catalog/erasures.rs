//! The erasure ledger and its replays.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Catalog, CatalogError, query_err};
use crate::model::time;

/// One erased subject of one source.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErasureRecord {
    pub id: String,
    pub source: String,
    /// `hmac-sha256:<hex>` or `plain:<key>`.
    pub subject: String,
    pub request: String,
    pub recorded_at: String,
    pub recorded_by: String,
}

/// One replay of the ledger into a restored database.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplayRecord {
    pub run_id: String,
    pub kind: String,
    pub source: String,
    pub snapshot_id: Option<String>,
    pub replayed_at: String,
    pub ledger_size: i64,
    pub found: i64,
    pub remaining: i64,
    pub ok: i64,
    pub seconds: f64,
    pub error: Option<String>,
}

impl Catalog {
    /// Records an erasure; returns `false` when the subject was already recorded for the
    /// source (the first record stands).
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn record_erasure(&self, e: &ErasureRecord) -> Result<bool, CatalogError> {
        let done = sqlx::query(
            "INSERT OR IGNORE INTO erasures (id, source, subject, request, recorded_at, recorded_by)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.id)
        .bind(&e.source)
        .bind(&e.subject)
        .bind(&e.request)
        .bind(&e.recorded_at)
        .bind(&e.recorded_by)
        .execute(self.pool())
        .await
        .map_err(query_err("recording an erasure"))?;
        Ok(done.rows_affected() == 1)
    }

    /// The ledger, oldest first (one source, or all).
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn erasures(&self, source: Option<&str>) -> Result<Vec<ErasureRecord>, CatalogError> {
        let rows = sqlx::query(
            "SELECT * FROM erasures WHERE (?1 IS NULL OR source = ?1) ORDER BY recorded_at, id",
        )
        .bind(source)
        .fetch_all(self.pool())
        .await
        .map_err(query_err("reading the erasure ledger"))?;
        Ok(rows
            .iter()
            .map(|r| ErasureRecord {
                id: r.get("id"),
                source: r.get("source"),
                subject: r.get("subject"),
                request: r.get("request"),
                recorded_at: r.get("recorded_at"),
                recorded_by: r.get("recorded_by"),
            })
            .collect())
    }

    /// Records a replay.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn record_replay(&self, r: &ReplayRecord) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO erasure_replays (run_id, kind, source, snapshot_id, replayed_at,
                 ledger_size, found, remaining, ok, seconds, error)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.run_id)
        .bind(&r.kind)
        .bind(&r.source)
        .bind(&r.snapshot_id)
        .bind(if r.replayed_at.is_empty() {
            time::format(time::now())
        } else {
            r.replayed_at.clone()
        })
        .bind(r.ledger_size)
        .bind(r.found)
        .bind(r.remaining)
        .bind(r.ok)
        .bind(r.seconds)
        .bind(&r.error)
        .execute(self.pool())
        .await
        .map_err(query_err("recording an erasure replay"))?;
        Ok(())
    }

    /// Every replay of the ledger before `until`, oldest first.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn replays_until(&self, until: &str) -> Result<Vec<ReplayRecord>, CatalogError> {
        let rows =
            sqlx::query("SELECT * FROM erasure_replays WHERE replayed_at < ? ORDER BY replayed_at")
                .bind(until)
                .fetch_all(self.pool())
                .await
                .map_err(query_err("reading erasure replays"))?;
        Ok(rows
            .iter()
            .map(|r| ReplayRecord {
                run_id: r.get("run_id"),
                kind: r.get("kind"),
                source: r.get("source"),
                snapshot_id: r.get("snapshot_id"),
                replayed_at: r.get("replayed_at"),
                ledger_size: r.get("ledger_size"),
                found: r.get("found"),
                remaining: r.get("remaining"),
                ok: r.get("ok"),
                seconds: r.get("seconds"),
                error: r.get("error"),
            })
            .collect())
    }
}
