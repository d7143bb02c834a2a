//! The catalog: a SQLite database (through sqlx) recording every run, every backup, where
//! each backup exists, and every check. Drills, reports and the audit log read from it.
//!
//! Migrations are embedded in the binary and applied on open. The database uses WAL, so the
//! daemon and a CLI invocation can use it at the same time.

mod records;
mod runs;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::ConnectOptions;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

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
            Ok(vec![Migration::new(
                1,
                Cow::Borrowed("initial"),
                MigrationType::Simple,
                Cow::Borrowed(include_str!("migrations/0001_initial.sql")),
                false,
            )])
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
