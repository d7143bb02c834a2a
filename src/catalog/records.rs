//! Backups, where they exist (snapshots per location, copies), and checks.

use serde::Serialize;
use sqlx::Row;

use super::{Catalog, CatalogError, query_err};
use crate::model::time;

/// A backup as it is recorded when first committed.
#[derive(Clone, Debug)]
pub struct BackupRecord {
    pub id: String,
    pub source: String,
    pub engine: String,
    pub taken_at: String,
    pub run_id: String,
    pub size: u64,
    pub manifest_json: String,
    pub manifest_sha256: String,
    /// The location it was written to, and its snapshot id there (equal to `id`).
    pub location: String,
}

/// One location holding one backup.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotRecord {
    pub location: String,
    pub snapshot_id: String,
    pub backup_id: String,
    pub source: String,
    pub via: String,
    pub copied_from: Option<String>,
    pub taken_at: String,
    pub arrived_at: String,
}

/// The result of one repository check.
#[derive(Clone, Debug)]
pub struct CheckRecord {
    pub run_id: String,
    pub location: String,
    pub read_data_subset: Option<String>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

fn size_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Catalog {
    /// Records a newly committed backup and its first location.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn record_backup(&self, b: &BackupRecord) -> Result<(), CatalogError> {
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(query_err("recording a backup"))?;
        sqlx::query(
            "INSERT INTO backups (id, source, engine, taken_at, run_id, size, manifest, manifest_sha256)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&b.id)
        .bind(&b.source)
        .bind(&b.engine)
        .bind(&b.taken_at)
        .bind(&b.run_id)
        .bind(size_i64(b.size))
        .bind(&b.manifest_json)
        .bind(&b.manifest_sha256)
        .execute(&mut *tx)
        .await
        .map_err(query_err("recording a backup"))?;
        sqlx::query(
            "INSERT INTO snapshots (location, snapshot_id, backup_id, via, run_id, arrived_at)
             VALUES (?, ?, ?, 'backup', ?, ?)",
        )
        .bind(&b.location)
        .bind(&b.id)
        .bind(&b.id)
        .bind(&b.run_id)
        .bind(time::format(time::now()))
        .execute(&mut *tx)
        .await
        .map_err(query_err("recording a backup's location"))?;
        tx.commit().await.map_err(query_err("recording a backup"))
    }

    /// Records that a backup arrived in another location by copy. Idempotent.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn record_copy(
        &self,
        backup_id: &str,
        location: &str,
        snapshot_id: &str,
        from: &str,
        run_id: &str,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO snapshots (location, snapshot_id, backup_id, via, copied_from, run_id, arrived_at)
             SELECT ?, ?, ?, 'copy', ?, ?, ? WHERE EXISTS (SELECT 1 FROM backups WHERE id = ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(location)
        .bind(snapshot_id)
        .bind(backup_id)
        .bind(from)
        .bind(run_id)
        .bind(time::format(time::now()))
        .bind(backup_id)
        .execute(self.pool())
        .await
        .map_err(query_err("recording a copy"))?;
        Ok(())
    }

    /// The stored manifest of a backup, if the catalog knows it.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    /// The size of the newest backup of `source`: what the next one is expected to read (its
    /// progress bar's total).
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn last_backup_size(&self, source: &str) -> Result<Option<u64>, CatalogError> {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT size FROM backups WHERE source = ? ORDER BY taken_at DESC LIMIT 1",
        )
        .bind(source)
        .fetch_optional(self.pool())
        .await
        .map_err(query_err("reading the last backup's size"))?;
        Ok(size.and_then(|s| u64::try_from(s).ok()).filter(|s| *s > 0))
    }

    pub async fn manifest(&self, backup_id: &str) -> Result<Option<String>, CatalogError> {
        sqlx::query_scalar("SELECT manifest FROM backups WHERE id = ?")
            .bind(backup_id)
            .fetch_optional(self.pool())
            .await
            .map_err(query_err("reading a manifest"))
    }

    /// Every location of every backup (optionally of one source), oldest backup first.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn snapshot_locations(
        &self,
        source: Option<&str>,
    ) -> Result<Vec<SnapshotRecord>, CatalogError> {
        let rows = sqlx::query(
            "SELECT s.location, s.snapshot_id, s.backup_id, b.source, s.via, s.copied_from,
                    b.taken_at, s.arrived_at
             FROM snapshots s JOIN backups b ON b.id = s.backup_id
             WHERE s.removed_at IS NULL AND (?1 IS NULL OR b.source = ?1)
             ORDER BY b.taken_at, s.arrived_at",
        )
        .bind(source)
        .fetch_all(self.pool())
        .await
        .map_err(query_err("listing snapshot locations"))?;
        Ok(rows
            .iter()
            .map(|r| SnapshotRecord {
                location: r.get("location"),
                snapshot_id: r.get("snapshot_id"),
                backup_id: r.get("backup_id"),
                source: r.get("source"),
                via: r.get("via"),
                copied_from: r.get("copied_from"),
                taken_at: r.get("taken_at"),
                arrived_at: r.get("arrived_at"),
            })
            .collect())
    }

    /// Records the outcome of a check.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn record_check(&self, c: &CheckRecord) -> Result<(), CatalogError> {
        let findings: Vec<&String> = c.errors.iter().chain(&c.warnings).collect();
        sqlx::query(
            "INSERT INTO checks (run_id, location, checked_at, read_data_subset, ok, errors, warnings, findings)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.run_id)
        .bind(&c.location)
        .bind(time::format(time::now()))
        .bind(&c.read_data_subset)
        .bind(c.errors.is_empty())
        .bind(size_i64(c.errors.len() as u64))
        .bind(size_i64(c.warnings.len() as u64))
        .bind(serde_json::to_string(&findings).unwrap_or_else(|_| "[]".into()))
        .execute(self.pool())
        .await
        .map_err(query_err("recording a check"))?;
        Ok(())
    }

    /// Number of rows in a table; for tests and `status`.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn count(&self, table: CountedTable) -> Result<u64, CatalogError> {
        let sql = match table {
            CountedTable::Runs => "SELECT count(*) FROM runs",
            CountedTable::Backups => "SELECT count(*) FROM backups",
            CountedTable::Copies => "SELECT count(*) FROM copies",
            CountedTable::Checks => "SELECT count(*) FROM checks",
        };
        let n: i64 = sqlx::query_scalar(sql)
            .fetch_one(self.pool())
            .await
            .map_err(query_err("counting rows"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Reads one column of one row of `runs` (tests, diagnostics).
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn run_outcome(&self, run_id: &str) -> Result<Option<String>, CatalogError> {
        let row = sqlx::query("SELECT outcome FROM runs WHERE id = ?")
            .bind(run_id)
            .fetch_optional(self.pool())
            .await
            .map_err(query_err("reading a run"))?;
        Ok(row.map(|r| r.get("outcome")))
    }
}

impl Catalog {
    /// Records that retention removed snapshots from a location.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn mark_removed(
        &self,
        location: &str,
        snapshot_ids: &[String],
    ) -> Result<(), CatalogError> {
        let now = time::format(time::now());
        for id in snapshot_ids {
            sqlx::query(
                "UPDATE snapshots SET removed_at = ? WHERE location = ? AND snapshot_id = ?",
            )
            .bind(&now)
            .bind(location)
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(query_err("recording removed snapshots"))?;
        }
        Ok(())
    }

    /// For a rotating read-data check of `parts` parts: the part to read next — one never read
    /// successfully within `window`, else the one read longest ago.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn next_check_part(
        &self,
        location: &str,
        parts: u32,
        window: std::time::Duration,
    ) -> Result<u32, CatalogError> {
        let read = self.parts_read(location, parts, window).await?;
        if let Some(missing) = (1..=parts).find(|k| !read.iter().any(|(p, _)| p == k)) {
            return Ok(missing);
        }
        Ok(read
            .iter()
            .min_by(|a, b| a.1.cmp(&b.1))
            .map_or(1, |(k, _)| *k))
    }

    /// Parts of a rotating check read successfully within `window`, with when each was last read.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn parts_read(
        &self,
        location: &str,
        parts: u32,
        window: std::time::Duration,
    ) -> Result<Vec<(u32, String)>, CatalogError> {
        let since = time::format(
            time::now()
                - jiff::SignedDuration::from_secs(
                    i64::try_from(window.as_secs()).unwrap_or(i64::MAX),
                ),
        );
        let rows = sqlx::query(
            "SELECT read_data_subset, max(checked_at) AS last FROM checks
             WHERE location = ? AND ok = 1 AND checked_at >= ? AND read_data_subset LIKE ?
             GROUP BY read_data_subset",
        )
        .bind(location)
        .bind(&since)
        .bind(format!("%/{parts}"))
        .fetch_all(self.pool())
        .await
        .map_err(query_err("reading check coverage"))?;
        let mut out: Vec<(u32, String)> = rows
            .iter()
            .filter_map(|r| {
                let subset: String = r.get("read_data_subset");
                let k = subset.split_once('/')?.0.parse().ok()?;
                Some((k, r.get::<String, _>("last")))
            })
            .collect();
        // A full read covers every part.
        let full: Option<String> = sqlx::query_scalar(
            "SELECT max(checked_at) FROM checks
             WHERE location = ? AND ok = 1 AND checked_at >= ? AND read_data_subset = 'all'",
        )
        .bind(location)
        .bind(&since)
        .fetch_one(self.pool())
        .await
        .map_err(query_err("reading check coverage"))?;
        if let Some(at) = full {
            for k in 1..=parts {
                match out.iter_mut().find(|(p, _)| *p == k) {
                    Some(entry) if entry.1 < at => entry.1 = at.clone(),
                    Some(_) => {}
                    None => out.push((k, at.clone())),
                }
            }
        }
        Ok(out)
    }
}

/// Tables [`Catalog::count`] can count.
#[derive(Clone, Copy, Debug)]
pub enum CountedTable {
    Runs,
    Backups,
    Copies,
    Checks,
}
