//! The catalog: a SQLite database (through sqlx) recording every run, every backup, where
//! each backup exists, and every check. Drills, reports and the audit log read from it.
//!
//! Migrations are embedded in the binary and applied on open. The database uses WAL, so the
//! daemon and a CLI invocation can use it at the same time.

mod approvals;
mod damage;
mod drills;
mod erasures;
mod evidence;
mod factors;
mod metrics;
mod records;
mod runs;
mod schedule;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::ConnectOptions;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

pub use approvals::{Approval, NewApproval, Origin, Refusal, UseRefusal};
pub use damage::DamageRecord;
pub use drills::{DrillEnd, DrillRecord, DrillStart, DrillVerdict, ScratchRecord};
pub use erasures::{ErasureRecord, ReplayRecord};
pub use evidence::{
    AlertRecord, DeliveryRecord, HeldSnapshot, ReportRecord, StoredAlert, StoredApproval,
    StoredCheck, StoredDelivery,
};
pub use factors::Factor;
pub use metrics::Sample;
pub use records::{BackupRecord, CheckRecord, CountedTable, SnapshotRecord};
pub use runs::{Outcome, RunEnd, RunKind, RunRecord, RunStart, Trigger};

/// Catalog errors.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(
        "cannot open the catalog at {path}: {message}; check that the state directory exists and is writable"
    )]
    Open { path: PathBuf, message: String },
    #[error("cannot upgrade the catalog at {path}: {message}")]
    Migrate { path: PathBuf, message: String },
    #[error("catalog query failed ({what}): {source}")]
    Query {
        what: &'static str,
        source: sqlx::Error,
    },
}

impl CatalogError {
    /// Stable error code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Open { .. } => "catalog.open",
            Self::Migrate { .. } => "catalog.migrate",
            Self::Query { .. } => "catalog.query",
        }
    }
}

pub(crate) fn query_err(what: &'static str) -> impl FnOnce(sqlx::Error) -> CatalogError {
    move |source| CatalogError::Query { what, source }
}

/// An open catalog. Cheap to clone (a connection pool).
#[derive(Clone, Debug)]
pub struct Catalog {
    pool: SqlitePool,
    path: PathBuf,
}

#[derive(Debug)]
struct Embedded;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async {
            Ok(vec![
                Migration::new(
                    1,
                    Cow::Borrowed("initial"),
                    MigrationType::Simple,
                    Cow::Borrowed(include_str!("migrations/0001_initial.sql")),
                    false,
                ),
                Migration::new(
                    2,
                    Cow::Borrowed("drills"),
                    MigrationType::Simple,
                    Cow::Borrowed(include_str!("migrations/0002_drills.sql")),
                    false,
                ),
                Migration::new(
                    3,
                    Cow::Borrowed("schedules"),
                    MigrationType::Simple,
                    Cow::Borrowed(include_str!("migrations/0003_schedules.sql")),
                    false,
                ),
                Migration::new(
                    4,
                    Cow::Borrowed("approvals"),
                    MigrationType::Simple,
                    Cow::Borrowed(include_str!("migrations/0004_approvals.sql")),
                    false,
                ),
                Migration::new(
                    5,
                    Cow::Borrowed("reports"),
                    MigrationType::Simple,
                    Cow::Borrowed(include_str!("migrations/0005_reports.sql")),
                    false,
                ),
                Migration::new(
                    6,
                    Cow::Borrowed("erasures"),
                    MigrationType::Simple,
                    Cow::Borrowed(include_str!("migrations/0006_erasures.sql")),
                    false,
                ),
                Migration::new(
                    7,
                    Cow::Borrowed("damage"),
                    MigrationType::Simple,
                    Cow::Borrowed(include_str!("migrations/0007_damage.sql")),
                    false,
                ),
                Migration::new(
                    8,
                    Cow::Borrowed("report metrics"),
                    MigrationType::Simple,
                    Cow::Borrowed(include_str!("migrations/0008_report_metrics.sql")),
                    false,
                ),
                Migration::new(
                    9,
                    Cow::Borrowed("access"),
                    MigrationType::Simple,
                    Cow::Borrowed(include_str!("migrations/0009_access.sql")),
                    false,
                ),
                Migration::new(
                    10,
                    Cow::Borrowed("run job"),
                    MigrationType::Simple,
                    Cow::Borrowed(include_str!("migrations/0010_run_job.sql")),
                    false,
                ),
            ])
        })
    }
}

impl Catalog {
    /// Opens (creating if needed) the catalog at `path` and applies migrations. The parent
    /// directory is created with mode 0700.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    pub async fn open(path: &Path) -> Result<Self, CatalogError> {
        let open_err = |message: String| CatalogError::Open {
            path: path.to_path_buf(),
            message,
        };
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
            && !parent.exists()
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| open_err(e.to_string()))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| open_err(e.to_string()))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            .disable_statement_logging();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        restrict_permissions(path);
        let migrator = Migrator::new(Embedded)
            .await
            .map_err(|e| CatalogError::Migrate {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        migrator
            .run(&pool)
            .await
            .map_err(|e| CatalogError::Migrate {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        Ok(Self {
            pool,
            path: path.to_path_buf(),
        })
    }

    /// The file behind the catalog.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the pool, flushing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The catalog holds evidence about the organisation's backups: owner-only.
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> RunStart {
        RunStart {
            kind: RunKind::Backup,
            trigger: Trigger::Cli,
            actor: "tester".into(),
            source: Some("crm".into()),
            location: Some("local".into()),
            target: None,
            job: None,
        }
    }

    #[tokio::test]
    async fn runs_left_by_a_dead_process_become_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("state/catalog.db"))
            .await
            .unwrap();
        let id = catalog.start_run(&start()).await.unwrap();
        // Our own process is alive: the run is left alone.
        assert_eq!(catalog.mark_interrupted().await.unwrap(), 0);
        // Same pid, different start time: the pid was reused by another process.
        sqlx::query("UPDATE runs SET pid_start = pid_start + 1 WHERE id = ?")
            .bind(&id)
            .execute(catalog.pool())
            .await
            .unwrap();
        assert_eq!(catalog.mark_interrupted().await.unwrap(), 1);
        let runs = catalog.recent_runs(10).await.unwrap();
        assert_eq!(runs[0].outcome, Outcome::Interrupted);
        assert_eq!(runs[0].error_code.as_deref(), Some("run.interrupted"));
        // The state directory and the catalog are private.
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("state")), 0o700);
        assert_eq!(mode(catalog.path()), 0o600);
    }

    #[tokio::test]
    async fn copies_are_recorded_once_with_their_lag() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("catalog.db")).await.unwrap();
        let run = catalog.start_run(&start()).await.unwrap();
        catalog
            .record_backup(&BackupRecord {
                id: "b1".into(),
                source: "crm".into(),
                engine: "sqlite".into(),
                taken_at: crate::model::time::format(crate::model::time::now()),
                run_id: run.clone(),
                size: 10,
                manifest_json: "{}".into(),
                manifest_sha256: "sha256:x".into(),
                location: "local".into(),
            })
            .await
            .unwrap();
        for _ in 0..2 {
            catalog
                .record_copy("b1", "offsite", "c1", "local", &run)
                .await
                .unwrap();
        }
        // A copy of a backup the catalog never saw (e.g. made by restic) is not invented.
        catalog
            .record_copy("unknown", "offsite", "c2", "local", &run)
            .await
            .unwrap();
        assert_eq!(catalog.count(CountedTable::Copies).await.unwrap(), 1);
        let lag: f64 = sqlx::query_scalar("SELECT lag_seconds FROM copies")
            .fetch_one(catalog.pool())
            .await
            .unwrap();
        assert!((0.0..60.0).contains(&lag), "{lag}");
        let where_ = catalog.snapshot_locations(Some("crm")).await.unwrap();
        assert_eq!(where_.len(), 2);
    }
}
