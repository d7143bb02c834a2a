//! Damage found in a location: recorded by the check, drill or restore that found it, open
//! until a later check reads the damaged pack again and passes. `status`, the metrics and the
//! report's INTEGRITY rule read it, so a location is "damaged" from the first sign of it.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Catalog, CatalogError, query_err};
use crate::model::time;

/// One finding of damage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamageRecord {
    pub id: i64,
    pub location: String,
    pub run_id: String,
    pub found_at: String,
    /// `check`, `drill` or `restore`.
    pub found_by: String,
    /// The damaged pack's id (or its first 8 hex digits), when the finding named one.
    pub pack: Option<String>,
    pub detail: String,
    pub cleared_at: Option<String>,
    pub cleared_by: Option<String>,
}

fn record(r: &sqlx::sqlite::SqliteRow) -> DamageRecord {
    DamageRecord {
        id: r.get("id"),
        location: r.get("location"),
        run_id: r.get("run_id"),
        found_at: r.get("found_at"),
        found_by: r.get("found_by"),
        pack: r.get("pack"),
        detail: r.get("detail"),
        cleared_at: r.get("cleared_at"),
        cleared_by: r.get("cleared_by"),
    }
}

impl Catalog {
    /// Records damage found by a run (the same pack found again while open is not repeated).
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn record_damage(
        &self,
        location: &str,
        run_id: &str,
        found_by: &str,
        pack: Option<&str>,
        detail: &str,
    ) -> Result<(), CatalogError> {
        let open = self.open_damage(Some(location)).await?;
        if pack.is_some() && open.iter().any(|d| d.pack.as_deref() == pack) {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO damage (location, run_id, found_at, found_by, pack, detail)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(location)
        .bind(run_id)
        .bind(time::format(time::now()))
        .bind(found_by)
        .bind(pack)
        .bind(detail)
        .execute(self.pool())
        .await
        .map_err(query_err("recording damage"))?;
        Ok(())
    }

    /// Damage not cleared yet (of one location, or all), oldest first.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn open_damage(
        &self,
        location: Option<&str>,
    ) -> Result<Vec<DamageRecord>, CatalogError> {
        let rows = sqlx::query(
            "SELECT * FROM damage WHERE cleared_at IS NULL AND (?1 IS NULL OR location = ?1)
             ORDER BY found_at, id",
        )
        .bind(location)
        .fetch_all(self.pool())
        .await
        .map_err(query_err("reading open damage"))?;
        Ok(rows.iter().map(record).collect())
    }

    /// Every finding of damage that was open at some time between `from` and `to`.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn damage_between(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<DamageRecord>, CatalogError> {
        let rows = sqlx::query(
            "SELECT * FROM damage WHERE found_at < ? AND (cleared_at IS NULL OR cleared_at >= ?)
             ORDER BY found_at, id",
        )
        .bind(to)
        .bind(from)
        .fetch_all(self.pool())
        .await
        .map_err(query_err("reading damage"))?;
        Ok(rows.iter().map(record).collect())
    }

    /// Marks damage cleared by a passing check.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn clear_damage(&self, id: i64, run_id: &str) -> Result<(), CatalogError> {
        sqlx::query("UPDATE damage SET cleared_at = ?, cleared_by = ? WHERE id = ?")
            .bind(time::format(time::now()))
            .bind(run_id)
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(query_err("clearing damage"))?;
        Ok(())
    }
}
