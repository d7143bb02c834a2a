//! Everything a SQLite database holds besides table rows: every `sqlite_schema` entry (tables,
//! `WITHOUT ROWID` tables, indexes, views, triggers, virtual tables such as FTS5) with a hash of
//! its SQL, and the header values an application may rely on (`user_version`,
//! `application_id`, encoding, page size, auto-vacuum).

use sqlx::Row;
use sqlx::sqlite::SqliteConnection;

use crate::model::objects::{ObjectState, Objects};

/// Describes the database `conn` is open on.
///
/// # Errors
/// When a query fails.
pub async fn describe(conn: &mut SqliteConnection) -> Result<Objects, sqlx::Error> {
    let version: String = sqlx::query_scalar("SELECT sqlite_version()")
        .fetch_one(&mut *conn)
        .await?;
    let mut objects = Objects {
        server: format!("SQLite {version}"),
        ..Objects::default()
    };
    for pragma in [
        "user_version",
        "application_id",
        "encoding",
        "page_size",
        "auto_vacuum",
    ] {
        let row = sqlx::query(&format!("PRAGMA {pragma}"))
            .fetch_one(&mut *conn)
            .await?;
        let value = row
            .try_get::<i64, _>(0)
            .map(|v| v.to_string())
            .or_else(|_| row.try_get::<String, _>(0))?;
        objects.database.insert(pragma.replace('_', " "), value);
    }
    let rows = sqlx::query(
        "SELECT type, name, coalesce(sql, '') FROM sqlite_schema
         WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY type, name",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let kind: String = row.try_get(0)?;
        let name: String = row.try_get(1)?;
        let sql: String = row.try_get(2)?;
        let class =
            if kind == "table" && sql.to_ascii_uppercase().starts_with("CREATE VIRTUAL TABLE") {
                "virtual table".to_string()
            } else {
                kind
            };
        objects
            .classes
            .entry(class)
            .or_default()
            .insert(name, ObjectState::new(&sql, ""));
    }
    Ok(objects)
}
