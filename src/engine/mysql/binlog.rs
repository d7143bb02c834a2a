//! MariaDB/MySQL's side of the continuous archive: where the binary log stands (recorded with
//! every logical backup, under its read lock), the binary logs the server still has, the
//! `mariadb-binlog --read-from-remote-server --raw --stop-never` process that copies them into
//! the spool as they are written, and the replay of archived binary logs onto a restored
//! database (`mariadb-binlog … | mariadb`). Credentials travel in the private option file of
//! `connect.rs`, never on a command line.

use std::path::Path;
use std::process::Command;

use sqlx::Row;
use sqlx::mysql::MySqlConnection;

use super::Connect;
use super::connect::tool;

pub use crate::engine::pitr::ReplayStop;
pub use crate::model::manifest::BinlogPosition;

/// The binary log's position now (`None` when the server keeps no binary log).
///
/// # Errors
/// When the server cannot be asked.
pub async fn position(conn: &mut MySqlConnection) -> Result<Option<BinlogPosition>, sqlx::Error> {
    let row = sqlx::query("SHOW MASTER STATUS")
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let file: String = row.try_get::<String, _>(0).or_else(|_| {
        row.try_get::<Vec<u8>, _>(0)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    })?;
    let position: u64 = row.try_get(1)?;
    // MariaDB keeps its GTID state here; MySQL in gtid_executed.
    let gtid: Option<String> = sqlx::query_scalar("SELECT CAST(@@GLOBAL.gtid_binlog_pos AS CHAR)")
        .fetch_one(&mut *conn)
        .await
        .ok()
        .filter(|g: &String| !g.is_empty());
    Ok(Some(BinlogPosition {
        file,
        position,
        gtid,
    }))
}

/// The binary logs the server still has, oldest first.
///
/// # Errors
/// When the server cannot be asked (or keeps no binary log).
pub async fn binary_logs(conn: &mut MySqlConnection) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query("SHOW BINARY LOGS")
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            r.try_get::<String, _>(0).ok().or_else(|| {
                r.try_get::<Vec<u8>, _>(0)
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            })
        })
        .collect())
}

/// Whether a file name is a binary log (`mysql-bin.000042`).
#[must_use]
pub fn is_binlog(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(base, n)| {
        !base.is_empty() && n.len() >= 6 && n.chars().all(|c| c.is_ascii_digit())
    })
}

/// The tool that reads binary logs (MariaDB's name first).
#[must_use]
pub fn reader_tool() -> &'static str {
    tool(&["mariadb-binlog", "mysqlbinlog"])
}

/// `mariadb-binlog` copying the server's binary logs from `start` on into `spool` as they are
/// written, as a replica would (with its own server id, so it never takes a real replica's).
///
/// # Errors
/// When the private option file cannot be written.
pub fn reader(
    connect: &Connect,
    spool: &Path,
    start: &str,
    server_id: u32,
    private_dir: &Path,
) -> std::io::Result<Command> {
    let mut cmd = connect.command(reader_tool(), private_dir)?;
    cmd.args([
        "--read-from-remote-server",
        "--raw",
        "--stop-never",
        &format!("--stop-never-slave-server-id={server_id}"),
    ])
    .arg(format!("--result-file={}/", spool.display()))
    .arg(start);
    Ok(cmd)
}

/// `mariadb-binlog` turning archived binary logs (in order) into SQL for one database: from
/// `start`'s position in the first file, up to `stop` (`--stop-datetime`, read in UTC, or
/// `--stop-position` in the last file), events of `database` only, rewritten to `into`.
#[must_use]
pub fn replay_command(
    files: &[std::path::PathBuf],
    start: u64,
    stop: &ReplayStop,
    database: &str,
    into: &str,
) -> Command {
    let mut cmd = crate::engine::process::clean_command(reader_tool());
    // --stop-datetime is read in the client's time zone.
    cmd.env("TZ", "UTC");
    cmd.arg(format!("--start-position={start}"));
    match stop {
        ReplayStop::Time(t) => {
            cmd.arg(format!(
                "--stop-datetime={}",
                t.strftime("%Y-%m-%d %H:%M:%S")
            ));
        }
        ReplayStop::Position(p) => {
            cmd.arg(format!("--stop-position={p}"));
        }
        ReplayStop::End => {}
    }
    // MariaDB's tool filters on the name in the log, MySQL's on the rewritten one.
    let filter = if is_mariadb_tool() { database } else { into };
    cmd.arg(format!("--database={filter}"));
    if database != into {
        cmd.arg(format!("--rewrite-db={database}->{into}"));
    }
    cmd.args(files);
    cmd
}

/// Whether the binary log tool is MariaDB's: `mariadb-binlog`, or a `mysqlbinlog` of
/// MariaDB's line (version 3.x; MySQL's follows the server's, 5.7 and 8.x).
fn is_mariadb_tool() -> bool {
    let tool = reader_tool();
    tool == "mariadb-binlog"
        || std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| {
                let v = String::from_utf8_lossy(&o.stdout);
                v.contains("MariaDB") || v.contains(" Ver 3.")
            })
}

/// Replays archived binary logs onto the database of `target`: `mariadb-binlog` (the events
/// of the source database, rewritten to the target's name) piped into the `mariadb` client.
/// `workdir` is private (the client's option file lives there).
///
/// Returns the bytes of SQL applied.
///
/// # Errors
/// A sentence when either tool cannot start or fails (its own message included).
pub async fn replay(
    target: &Connect,
    workdir: &Path,
    replay: &crate::engine::pitr::LogReplay,
) -> Result<u64, String> {
    use crate::engine::process::DumpProcess;
    let database = target.database();
    let reader = replay_command(
        &replay.files,
        replay.start_position,
        &replay.stop,
        &replay.from_database,
        &database,
    );
    let mut reader = DumpProcess::spawn(reader_tool(), reader, &[])
        .map_err(|e| format!("starting mariadb-binlog: {e}"))?;
    let client_tool = tool(&["mariadb", "mysql"]);
    let mut client = target
        .command(client_tool, workdir)
        .map_err(|e| format!("preparing the mariadb client: {e}"))?;
    client.arg("--binary-mode").arg(&database);
    let secrets = target.secret_list();
    let mut client =
        DumpProcess::spawn_consumer(client_tool, client, &secrets.iter().collect::<Vec<_>>())
            .map_err(|e| format!("starting the mariadb client: {e}"))?;
    let mut out = reader
        .take_stdout()
        .ok_or_else(|| "mariadb-binlog has no output".to_string())?;
    let mut input = client
        .take_stdin()
        .ok_or_else(|| "the mariadb client has no input".to_string())?;
    let (n, read, applied) = tokio::task::spawn_blocking(move || {
        let n = std::io::copy(&mut out, &mut input);
        drop(input);
        (n, reader.finish(), client.finish())
    })
    .await
    .map_err(|e| e.to_string())?;
    // The tools' own failures say more than a broken pipe between them.
    read.map_err(|f| f.to_string())?;
    applied.map_err(|f| f.to_string())?;
    n.map_err(|e| e.to_string())
}

/// `CHECK TABLE` on every base table of the database of `target`: the server's own check of
/// each table's data and indexes.
///
/// # Errors
/// When the server cannot be asked.
pub async fn check_tables(
    target: &Connect,
) -> Result<crate::engine::pitr::Consistency, sqlx::Error> {
    let mut conn = target.connect().await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'",
    )
    .fetch_all(&mut conn)
    .await?;
    let mut problems = Vec::new();
    for table in &tables {
        let sql = format!("CHECK TABLE {}", super::quote_ident(table));
        for row in sqlx::query(&sql).fetch_all(&mut conn).await? {
            let kind: String = row.try_get::<String, _>(2).unwrap_or_default();
            let text: String = row.try_get::<String, _>(3).unwrap_or_default();
            if kind.eq_ignore_ascii_case("error")
                || (kind.eq_ignore_ascii_case("status") && !text.eq_ignore_ascii_case("OK"))
            {
                problems.push(format!("table {table}: {text}"));
            }
        }
    }
    let _ = sqlx::Connection::close(conn).await;
    Ok(crate::engine::pitr::Consistency {
        checked: tables.len(),
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binlog_names_are_recognized() {
        assert!(is_binlog("mysql-bin.000042"));
        assert!(is_binlog("mariadb-bin.1000000"));
        assert!(!is_binlog("mysql-bin.index"));
        assert!(!is_binlog("000001"));
    }
}
