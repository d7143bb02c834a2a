//! Sessions on a restored MariaDB/MySQL database for the configured SQL (erasure replay, drill
//! assertions): every `:subject` becomes a `?` bound to the subject.

use futures_util::future::BoxFuture;
use sqlx::{Connection, Row};

use super::Connect;
use crate::engine::{EngineError, QueryError, Session};

struct MySession(sqlx::MySqlConnection);

fn failed(e: sqlx::Error) -> QueryError {
    QueryError::Failed(e.to_string())
}

/// `:subject` as a positional parameter; how many times it is bound.
fn bind(sql: &str) -> (String, usize) {
    (
        sql.replace(":subject", "?"),
        sql.matches(":subject").count(),
    )
}

pub(super) async fn open(
    connect: &Connect,
    read_only: bool,
) -> Result<Box<dyn Session>, EngineError> {
    let mut conn = connect
        .connect()
        .await
        .map_err(|e| EngineError::query(format!("connecting to {}", connect.describe()), &e))?;
    if read_only {
        sqlx::query("SET SESSION TRANSACTION READ ONLY")
            .execute(&mut conn)
            .await
            .map_err(|e| EngineError::query("opening a read-only session", &e))?;
    }
    Ok(Box::new(MySession(conn)))
}

fn int_of(row: &sqlx::mysql::MySqlRow) -> Option<i64> {
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
                .and_then(|v| v.trim().parse().ok())
        })
}

impl Session for MySession {
    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
        subject: Option<&'a str>,
    ) -> BoxFuture<'a, Result<u64, QueryError>> {
        Box::pin(async move {
            let (sql, binds) = bind(sql);
            let mut q = sqlx::query(&sql);
            for _ in 0..binds {
                q = q.bind(subject.unwrap_or_default());
            }
            q.execute(&mut self.0)
                .await
                .map(|r| r.rows_affected())
                .map_err(failed)
        })
    }

    fn strings<'a>(&'a mut self, sql: &'a str) -> BoxFuture<'a, Result<Vec<String>, QueryError>> {
        Box::pin(async move {
            let rows = sqlx::query(sql)
                .fetch_all(&mut self.0)
                .await
                .map_err(failed)?;
            Ok(rows
                .iter()
                .filter_map(|r| r.try_get::<Option<String>, _>(0).ok().flatten())
                .collect())
        })
    }

    fn int<'a>(
        &'a mut self,
        sql: &'a str,
        subject: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<i64>, QueryError>> {
        Box::pin(async move {
            let (sql, binds) = match subject {
                Some(_) => bind(sql),
                None => (sql.to_string(), 0),
            };
            let mut q = sqlx::query(&sql);
            for _ in 0..binds {
                q = q.bind(subject.unwrap_or_default());
            }
            let row = q.fetch_optional(&mut self.0).await.map_err(failed)?;
            row.map(|r| int_of(&r)).ok_or(QueryError::NoRow)
        })
    }

    fn begin(&mut self) -> BoxFuture<'_, Result<(), QueryError>> {
        Box::pin(async move {
            sqlx::query("START TRANSACTION")
                .execute(&mut self.0)
                .await
                .map(|_| ())
                .map_err(failed)
        })
    }

    fn commit(&mut self) -> BoxFuture<'_, Result<(), QueryError>> {
        Box::pin(async move {
            sqlx::query("COMMIT")
                .execute(&mut self.0)
                .await
                .map(|_| ())
                .map_err(failed)
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = self.0.close().await;
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_subject_placeholder_is_bound() {
        assert_eq!(
            super::bind("DELETE FROM c WHERE email = :subject OR alt = :subject"),
            ("DELETE FROM c WHERE email = ? OR alt = ?".into(), 2)
        );
    }
}
