//! A connection to a restored database — a SQLite file or a PostgreSQL/MariaDB target —
//! for what runs on restored data before it is released: the erasure replay and the drill
//! assertions.

use std::path::Path;

use sqlx::{Connection, Row};

use super::restore::Target;
use crate::erasure;
use crate::model::Engine;

/// A restored database: a SQLite file or a server target.
pub(crate) enum Db<'a> {
    Sqlite(&'a Path),
    Server(&'a Target),
}

/// A connection to a restored database, whatever its engine.
pub(crate) enum Conn {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
    Mysql(sqlx::MySqlConnection),
}

impl Conn {
    /// Opens a connection (SQLite read-only when `read_only`; servers as their URL says).
    pub(crate) async fn open(db: &Db<'_>, read_only: bool) -> Result<Self, String> {
        Ok(match db {
            Db::Sqlite(path) => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(read_only);
                Self::Sqlite(
                    sqlx::ConnectOptions::connect(&options)
                        .await
                        .map_err(|e| e.to_string())?,
                )
            }
            Db::Server(Target::Postgres(c)) => {
                Self::Postgres(c.connect().await.map_err(|e| e.to_string())?)
            }
            Db::Server(Target::Mysql(c)) => {
                Self::Mysql(c.connect().await.map_err(|e| e.to_string())?)
            }
        })
    }

    fn engine(&self) -> Engine {
        match self {
            Self::Sqlite(_) => Engine::Sqlite,
            Self::Postgres(_) => Engine::Postgres,
            Self::Mysql(_) => Engine::Mysql,
        }
    }

    pub(crate) async fn execute(
        &mut self,
        sql: &str,
        subject: Option<&str>,
    ) -> Result<u64, sqlx::Error> {
        let (sql, binds) = erasure::bind_subject(sql, self.engine());
        macro_rules! run {
            ($conn:expr) => {{
                let mut q = sqlx::query(&sql);
                for _ in 0..binds {
                    q = q.bind(subject.unwrap_or_default());
                }
                q.execute($conn).await.map(|r| r.rows_affected())
            }};
        }
        match self {
            Self::Sqlite(c) => run!(c),
            Self::Postgres(c) => run!(c),
            Self::Mysql(c) => run!(c),
        }
    }

    pub(crate) async fn strings(&mut self, sql: &str) -> Result<Vec<String>, sqlx::Error> {
        macro_rules! run {
            ($conn:expr) => {{
                let rows = sqlx::query(sql).fetch_all($conn).await?;
                Ok(rows
                    .iter()
                    .filter_map(|r| r.try_get::<Option<String>, _>(0).ok().flatten())
                    .collect())
            }};
        }
        match self {
            Self::Sqlite(c) => run!(c),
            Self::Postgres(c) => run!(c),
            Self::Mysql(c) => run!(c),
        }
    }

    /// The first column of the first row as a whole number (`None`: not a number). `subject`
    /// is bound for `:subject`; without one the SQL runs as written. No row at all is
    /// [`sqlx::Error::RowNotFound`].
    pub(crate) async fn int(
        &mut self,
        sql: &str,
        subject: Option<&str>,
    ) -> Result<Option<i64>, sqlx::Error> {
        let (sql, binds) = match subject {
            Some(_) => erasure::bind_subject(sql, self.engine()),
            None => (sql.to_string(), 0),
        };
        macro_rules! run {
            ($conn:expr, $int:path) => {{
                let mut q = sqlx::query(&sql);
                for _ in 0..binds {
                    q = q.bind(subject.unwrap_or_default());
                }
                let row = q.fetch_optional($conn).await?;
                row.map(|r| $int(&r)).ok_or(sqlx::Error::RowNotFound)
            }};
        }
        match self {
            Self::Sqlite(c) => run!(c, int_of_sqlite),
            Self::Postgres(c) => run!(c, int_of_pg),
            Self::Mysql(c) => run!(c, int_of_mysql),
        }
    }

    pub(crate) async fn begin(&mut self) -> Result<(), sqlx::Error> {
        self.execute(
            if matches!(self, Self::Mysql(_)) {
                "START TRANSACTION"
            } else {
                "BEGIN"
            },
            None,
        )
        .await
        .map(|_| ())
    }

    pub(crate) async fn close(self) {
        let _ = match self {
            Self::Sqlite(c) => c.close().await,
            Self::Postgres(c) => c.close().await,
            Self::Mysql(c) => c.close().await,
        };
    }
}

fn int_of_sqlite(row: &sqlx::sqlite::SqliteRow) -> Option<i64> {
    use sqlx::Row;
    row.try_get::<i64, _>(0).ok()
}

fn int_of_pg(row: &sqlx::postgres::PgRow) -> Option<i64> {
    use sqlx::Row;
    row.try_get::<i64, _>(0)
        .ok()
        .or_else(|| row.try_get::<i32, _>(0).ok().map(i64::from))
        .or_else(|| row.try_get::<i16, _>(0).ok().map(i64::from))
        .or_else(|| row.try_get::<bool, _>(0).ok().map(i64::from))
}

fn int_of_mysql(row: &sqlx::mysql::MySqlRow) -> Option<i64> {
    use sqlx::Row;
    row.try_get::<i64, _>(0)
        .ok()
        .or_else(|| {
            row.try_get::<u64, _>(0)
                .ok()
                .and_then(|v| i64::try_from(v).ok())
        })
        .or_else(|| row.try_get::<i32, _>(0).ok().map(i64::from))
        .or_else(|| {
            row.try_get::<String, _>(0)
                .ok()
                .and_then(|v| v.parse().ok())
        })
}
