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
            // Views are described with the other definitions below.
            "VIEW" => continue,
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
        objects
            .classes
            .entry(class.into())
            .or_default()
            .insert(name, ObjectState::new(&ddl, ""));
    }

    for d in definitions(conn, &database).await? {
        let settings = format!(
            " sql_mode={} client={} connection={} time_zone={} collation={}",
            d.sql_mode.as_deref().unwrap_or_default(),
            d.client.as_deref().unwrap_or_default(),
            d.connection.as_deref().unwrap_or_default(),
            d.time_zone.as_deref().unwrap_or_default(),
            d.database_collation.as_deref().unwrap_or_default()
        );
        objects
            .classes
            .entry(d.kind.keyword().to_ascii_lowercase())
            .or_default()
            .insert(
                d.name,
                ObjectState::new(&format!("{}{settings}", d.ddl), ""),
            );
    }
    objects.classes.retain(|_, o| !o.is_empty());
    Ok(objects)
}

/// The kinds of object that cannot move between databases, in the order they are recreated:
/// routines first (views and triggers may call them), then views (in rounds, as they may read
/// each other), triggers (in firing order), events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Procedure,
    Function,
    View,
    Trigger,
    Event,
}

impl Kind {
    pub(super) fn keyword(self) -> &'static str {
        match self {
            Self::Procedure => "PROCEDURE",
            Self::Function => "FUNCTION",
            Self::View => "VIEW",
            Self::Trigger => "TRIGGER",
            Self::Event => "EVENT",
        }
    }

    /// The column of `SHOW CREATE …` holding the definition.
    fn column(self) -> &'static str {
        match self {
            Self::Procedure => "Create Procedure",
            Self::Function => "Create Function",
            Self::View => "Create View",
            Self::Trigger => "SQL Original Statement",
            Self::Event => "Create Event",
        }
    }
}

/// One object's definition and the session settings it was created under (which the server
/// keeps with it: recreating it under others would change it).
#[derive(Clone, Debug)]
pub(super) struct Definition {
    pub kind: Kind,
    pub name: String,
    pub ddl: String,
    pub sql_mode: Option<String>,
    pub client: Option<String>,
    pub connection: Option<String>,
    pub time_zone: Option<String>,
    pub database_collation: Option<String>,
}

/// Reads the definitions of a database's views, routines, triggers and events, in the order
/// they can be recreated (see [`Kind`]).
pub(super) async fn definitions(
    conn: &mut MySqlConnection,
    database: &str,
) -> Result<Vec<Definition>, sqlx::Error> {
    let mut names: Vec<(Kind, String)> = Vec::new();
    let routines: Vec<(String, String)> = sqlx::query_as(
        "SELECT CAST(ROUTINE_NAME AS CHAR), CAST(ROUTINE_TYPE AS CHAR) FROM information_schema.ROUTINES
         WHERE ROUTINE_SCHEMA = ? ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
    )
    .bind(database)
    .fetch_all(&mut *conn)
    .await?;
    for (name, kind) in routines {
        let kind = if kind == "FUNCTION" {
            Kind::Function
        } else {
            Kind::Procedure
        };
        names.push((kind, name));
    }
    let views: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.VIEWS
         WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
    )
    .bind(database)
    .fetch_all(&mut *conn)
    .await?;
    names.extend(views.into_iter().map(|n| (Kind::View, n)));
    let triggers: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(TRIGGER_NAME AS CHAR) FROM information_schema.TRIGGERS
         WHERE TRIGGER_SCHEMA = ?
         ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
    )
    .bind(database)
    .fetch_all(&mut *conn)
    .await?;
    names.extend(triggers.into_iter().map(|n| (Kind::Trigger, n)));
    let events: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(EVENT_NAME AS CHAR) FROM information_schema.EVENTS
         WHERE EVENT_SCHEMA = ? ORDER BY EVENT_NAME",
    )
    .bind(database)
    .fetch_all(&mut *conn)
    .await?;
    names.extend(events.into_iter().map(|n| (Kind::Event, n)));
    let mut out = Vec::with_capacity(names.len());
    for (kind, name) in names {
        let row = sqlx::query(&format!(
            "SHOW CREATE {} {}.{}",
            kind.keyword(),
            quote_ident(database),
            quote_ident(&name)
        ))
        .fetch_one(&mut *conn)
        .await?;
        out.push(Definition {
            kind,
            ddl: relative(&text(&row, kind.column()).unwrap_or_default(), database),
            sql_mode: text(&row, "sql_mode"),
            client: text(&row, "character_set_client"),
            connection: text(&row, "collation_connection"),
            time_zone: text(&row, "time_zone"),
            database_collation: text(&row, "Database Collation"),
            name,
        });
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
