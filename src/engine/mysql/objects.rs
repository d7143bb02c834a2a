//! Everything a MariaDB/MySQL database holds besides table rows: its default character set,
//! collation and comment; every table as `SHOW CREATE TABLE` prints it (columns, types,
//! character sets and collations, defaults, generated columns, indexes, foreign keys, checks,
//! storage engine, table options, partitions — `AUTO_INCREMENT=` left out, see below); views,
//! procedures, functions, triggers and events as the server prints them, with their definers,
//! `sql_mode` and character sets; and sequences' definitions.
//!
//! Definitions are printed relative to the database they are in (its own name is taken out of
//! qualified names), so a database and its restore under another name compare equal.

use std::collections::BTreeMap;

use sqlx::mysql::MySqlConnection;
use sqlx::{Column, Row};

use super::quote_ident;
use crate::model::objects::{ObjectState, Objects};

const NOT_COVERED: &[&str] = &[
    "users, roles and grants (MariaDB keeps them in the server's mysql schema, outside the database; back them up with the server)",
    "AUTO_INCREMENT counters and sequence positions (not transactional: the dump saves them at another moment than the manifest)",
    "tables of non-transactional engines (MyISAM, Aria…): their checksums are exact only if nothing wrote to them during the dump",
];

/// A row's column by name, as text (`SHOW CREATE …` results).
fn text(row: &sqlx::mysql::MySqlRow, name: &str) -> Option<String> {
    let index = row
        .columns()
        .iter()
        .position(|c| c.name().eq_ignore_ascii_case(name))?;
    row.try_get::<Option<String>, _>(index)
        .ok()
        .flatten()
        .or_else(|| {
            row.try_get::<Option<Vec<u8>>, _>(index)
                .ok()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        })
}

/// Removes ` AUTO_INCREMENT=<n>` (the counter is not part of the schema and moves on its own).
fn without_auto_increment(ddl: &str) -> String {
    let mut out = String::with_capacity(ddl.len());
    let mut rest = ddl;
    while let Some(i) = rest.find(" AUTO_INCREMENT=") {
        out.push_str(&rest[..i]);
        let after = &rest[i + " AUTO_INCREMENT=".len()..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// Takes the database's own name out of qualified names in a definition.
fn relative(ddl: &str, database: &str) -> String {
    ddl.replace(&format!("{}.", quote_ident(database)), "")
}

/// The database a connection uses. Asked with a plain statement: MariaDB evaluates
/// `DATABASE()` when a statement is prepared, so a cached prepared statement would keep
/// answering with the database it was prepared in (every query below names it instead).
pub(super) async fn current_database(conn: &mut MySqlConnection) -> Result<String, sqlx::Error> {
    use sqlx::Executor;
    let row = conn.fetch_one("SELECT CAST(DATABASE() AS CHAR)").await?;
    row.try_get::<Option<String>, _>(0)
        .map(Option::unwrap_or_default)
}

/// Describes the database `conn` uses, inside whatever transaction it is in.
///
/// # Errors
/// When a query fails.
pub async fn describe(conn: &mut MySqlConnection) -> Result<Objects, sqlx::Error> {
    let database = current_database(conn).await?;
    let version: String = sqlx::query_scalar("SELECT CAST(VERSION() AS CHAR)")
        .fetch_one(&mut *conn)
        .await?;
    let mut objects = Objects {
        server: format!("MariaDB/MySQL {version}"),
        not_covered: NOT_COVERED.iter().map(|s| (*s).to_string()).collect(),
        ..Objects::default()
    };
    let schema = sqlx::query(
        "SELECT CAST(DEFAULT_CHARACTER_SET_NAME AS CHAR), CAST(DEFAULT_COLLATION_NAME AS CHAR)
         FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(&database)
    .fetch_one(&mut *conn)
    .await?;
    objects
        .database
        .insert("character set".into(), schema.try_get(0)?);
    objects
        .database
        .insert("collation".into(), schema.try_get(1)?);
    // MariaDB 10.5+ keeps a database comment; MySQL has none.
    if let Ok(Some(comment)) = sqlx::query_scalar::<_, Option<String>>(
        "SELECT CAST(SCHEMA_COMMENT AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(&database)
    .fetch_one(&mut *conn)
    .await
        && !comment.is_empty()
    {
        objects.database.insert("comment".into(), comment);
    }

    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT CAST(TABLE_NAME AS CHAR), CAST(TABLE_TYPE AS CHAR) FROM information_schema.TABLES
         WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
    )
    .bind(&database)
    .fetch_all(&mut *conn)
    .await?;
    for (name, kind) in tables {
        let (class, statement, column) = match kind.as_str() {
            "VIEW" => ("view", "VIEW", "Create View"),
            "SEQUENCE" => ("sequence", "SEQUENCE", "Create Table"),
            _ => ("table", "TABLE", "Create Table"),
        };
        let row = sqlx::query(&format!(
            "SHOW CREATE {statement} {}.{}",
            quote_ident(&database),
            quote_ident(&name)
        ))
        .fetch_one(&mut *conn)
        .await?;
        let mut ddl = relative(&text(&row, column).unwrap_or_default(), &database);
        if class == "table" {
            ddl = without_auto_increment(&ddl);
        }
        if class == "view" {
            ddl.push_str(&format!(
                " client={} connection={}",
                text(&row, "character_set_client").unwrap_or_default(),
                text(&row, "collation_connection").unwrap_or_default()
            ));
        }
        objects
            .classes
            .entry(class.into())
            .or_default()
            .insert(name, ObjectState::new(&ddl, ""));
    }

    for (class, kind) in [("procedure", "PROCEDURE"), ("function", "FUNCTION")] {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT CAST(ROUTINE_NAME AS CHAR) FROM information_schema.ROUTINES
             WHERE ROUTINE_SCHEMA = ? AND ROUTINE_TYPE = ? ORDER BY ROUTINE_NAME",
        )
        .bind(&database)
        .bind(kind)
        .fetch_all(&mut *conn)
        .await?;
        for name in names {
            let row = sqlx::query(&format!(
                "SHOW CREATE {kind} {}.{}",
                quote_ident(&database),
                quote_ident(&name)
            ))
            .fetch_one(&mut *conn)
            .await?;
            let ddl = format!(
                "{} sql_mode={} collation={}",
                relative(
                    &text(&row, &format!("Create {}", capitalized(kind))).unwrap_or_default(),
                    &database
                ),
                text(&row, "sql_mode").unwrap_or_default(),
                text(&row, "Database Collation").unwrap_or_default()
            );
            objects
                .classes
                .entry(class.into())
                .or_default()
                .insert(name, ObjectState::new(&ddl, ""));
        }
    }

    let triggers: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT CAST(TRIGGER_NAME AS CHAR), CAST(EVENT_OBJECT_TABLE AS CHAR), CAST(ACTION_ORDER AS SIGNED)
         FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? ORDER BY TRIGGER_NAME",
    )
    .bind(&database)
    .fetch_all(&mut *conn)
    .await?;
    for (name, table, order) in triggers {
        let row = sqlx::query(&format!(
            "SHOW CREATE TRIGGER {}.{}",
            quote_ident(&database),
            quote_ident(&name)
        ))
        .fetch_one(&mut *conn)
        .await?;
        let ddl = format!(
            "{} sql_mode={} order={order}",
            relative(
                &text(&row, "SQL Original Statement").unwrap_or_default(),
                &database
            ),
            text(&row, "sql_mode").unwrap_or_default()
        );
        objects
            .classes
            .entry("trigger".into())
            .or_default()
            .insert(format!("{table}.{name}"), ObjectState::new(&ddl, ""));
    }

    let events: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(EVENT_NAME AS CHAR) FROM information_schema.EVENTS
         WHERE EVENT_SCHEMA = ? ORDER BY EVENT_NAME",
    )
    .bind(&database)
    .fetch_all(&mut *conn)
    .await?;
    for name in events {
        let row = sqlx::query(&format!(
            "SHOW CREATE EVENT {}.{}",
            quote_ident(&database),
            quote_ident(&name)
        ))
        .fetch_one(&mut *conn)
        .await?;
        let ddl = format!(
            "{} sql_mode={} time_zone={}",
            relative(&text(&row, "Create Event").unwrap_or_default(), &database),
            text(&row, "sql_mode").unwrap_or_default(),
            text(&row, "time_zone").unwrap_or_default()
        );
        objects
            .classes
            .entry("event".into())
            .or_default()
            .insert(name, ObjectState::new(&ddl, ""));
    }
    objects.classes.retain(|_, o| !o.is_empty());
    Ok(objects)
}

fn capitalized(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// The definitions of a database's views, routines, triggers and events, to recreate them
/// under another database (`RENAME TABLE` moves tables only), in an order that works: routines,
/// then views, then triggers (in their firing order), then events.
pub(super) struct Definitions {
    pub routines: Vec<(String, String, String)>,
    pub views: Vec<(String, String)>,
    pub triggers: Vec<(String, String, String)>,
    pub events: Vec<(String, String, String, String)>,
}

/// Reads what [`Definitions`] holds from the database `conn` uses.
pub(super) async fn definitions(
    conn: &mut MySqlConnection,
    database: &str,
) -> Result<Definitions, sqlx::Error> {
    let mut out = Definitions {
        routines: Vec::new(),
        views: Vec::new(),
        triggers: Vec::new(),
        events: Vec::new(),
    };
    let routines: Vec<(String, String)> = sqlx::query_as(
        "SELECT CAST(ROUTINE_NAME AS CHAR), CAST(ROUTINE_TYPE AS CHAR) FROM information_schema.ROUTINES
         WHERE ROUTINE_SCHEMA = ? ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
    )
    .bind(database)
    .fetch_all(&mut *conn)
    .await?;
    for (name, kind) in routines {
        let row = sqlx::query(&format!(
            "SHOW CREATE {kind} {}.{}",
            quote_ident(database),
            quote_ident(&name)
        ))
        .fetch_one(&mut *conn)
        .await?;
        out.routines.push((
            format!("{kind} {}", quote_ident(&name)),
            text(&row, "sql_mode").unwrap_or_default(),
            relative(
                &text(&row, &format!("Create {}", capitalized(&kind))).unwrap_or_default(),
                database,
            ),
        ));
    }
    let views: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.VIEWS
         WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
    )
    .bind(database)
    .fetch_all(&mut *conn)
    .await?;
    for name in views {
        let row = sqlx::query(&format!(
            "SHOW CREATE VIEW {}.{}",
            quote_ident(database),
            quote_ident(&name)
        ))
        .fetch_one(&mut *conn)
        .await?;
        out.views.push((
            name,
            relative(&text(&row, "Create View").unwrap_or_default(), database),
        ));
    }
    let triggers: Vec<(String, String)> = sqlx::query_as(
        "SELECT CAST(TRIGGER_NAME AS CHAR), CAST(EVENT_OBJECT_TABLE AS CHAR) FROM information_schema.TRIGGERS
         WHERE TRIGGER_SCHEMA = ?
         ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
    )
    .bind(database)
    .fetch_all(&mut *conn)
    .await?;
    for (name, _table) in triggers {
        let row = sqlx::query(&format!(
            "SHOW CREATE TRIGGER {}.{}",
            quote_ident(database),
            quote_ident(&name)
        ))
        .fetch_one(&mut *conn)
        .await?;
        out.triggers.push((
            name,
            text(&row, "sql_mode").unwrap_or_default(),
            relative(
                &text(&row, "SQL Original Statement").unwrap_or_default(),
                database,
            ),
        ));
    }
    let events: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(EVENT_NAME AS CHAR) FROM information_schema.EVENTS
         WHERE EVENT_SCHEMA = ? ORDER BY EVENT_NAME",
    )
    .bind(database)
    .fetch_all(&mut *conn)
    .await?;
    for name in events {
        let row = sqlx::query(&format!(
            "SHOW CREATE EVENT {}.{}",
            quote_ident(database),
            quote_ident(&name)
        ))
        .fetch_one(&mut *conn)
        .await?;
        out.events.push((
            name,
            text(&row, "sql_mode").unwrap_or_default(),
            text(&row, "time_zone").unwrap_or_default(),
            relative(&text(&row, "Create Event").unwrap_or_default(), database),
        ));
    }
    Ok(out)
}

/// The database's default character set and collation as `CREATE DATABASE` options.
pub(super) fn charset_clause(props: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    if let Some(cs) = props.get("character set") {
        out.push_str(&format!(" CHARACTER SET {}", quote_ident(cs)));
    }
    if let Some(co) = props.get("collation") {
        out.push_str(&format!(" COLLATE {}", quote_ident(co)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_increment_counters_are_not_schema() {
        assert_eq!(
            without_auto_increment(
                "CREATE TABLE `t` (\n  `id` int NOT NULL AUTO_INCREMENT\n) ENGINE=InnoDB AUTO_INCREMENT=413 DEFAULT CHARSET=latin1"
            ),
            "CREATE TABLE `t` (\n  `id` int NOT NULL AUTO_INCREMENT\n) ENGINE=InnoDB DEFAULT CHARSET=latin1"
        );
    }

    #[test]
    fn definitions_are_relative_to_their_database() {
        assert_eq!(
            relative("select `crm__x`.`t`.`a` AS `a` from `crm__x`.`t`", "crm__x"),
            "select `t`.`a` AS `a` from `t`"
        );
    }
}
