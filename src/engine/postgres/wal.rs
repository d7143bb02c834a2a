//! PostgreSQL's side of the continuous archive: the physical replication slot the archiver
//! owns, the `pg_receivewal` process that streams WAL from it into the spool, and the
//! `pg_basebackup` that streams a physical base backup (tar to stdout, nothing on disk).
//! Both tools get their connection settings from the environment and the password from a
//! private `PGPASSFILE` (see `connect.rs`); neither ever sees a password on its command line.

use std::path::Path;
use std::process::Command;

use sqlx::{Connection, Row};

use super::Connect;
use crate::engine::EngineError;
use crate::engine::pitr::{BaseInfo, SlotState};

/// The slot a source's archiver owns.
#[must_use]
pub fn slot_name(source: &str) -> String {
    format!("custodian_{}", source.replace('-', "_"))
}

fn query_err(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Query {
        what: what.to_string(),
        message: e.to_string(),
    }
}

/// Reads the archiver's slot, creating it (reserving WAL at once) when it does not exist.
///
/// # Errors
/// When the server cannot be reached or the slot cannot be created.
pub async fn ensure_slot(connect: &Connect, slot: &str) -> Result<SlotState, EngineError> {
    let what = format!("the replication slot {slot} on {}", connect.server());
    let mut conn = connect.connect().await.map_err(|e| query_err(&what, e))?;
    let read = "SELECT restart_lsn::text, wal_status FROM pg_replication_slots \
                WHERE slot_name = $1 AND slot_type = 'physical'";
    let mut row = sqlx::query(read)
        .bind(slot)
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| query_err(&what, e))?;
    let mut created = false;
    if row.is_none() {
        sqlx::query("SELECT pg_create_physical_replication_slot($1, true)")
            .bind(slot)
            .execute(&mut conn)
            .await
            .map_err(|e| query_err(&what, e))?;
        created = true;
        row = sqlx::query(read)
            .bind(slot)
            .fetch_optional(&mut conn)
            .await
            .map_err(|e| query_err(&what, e))?;
    }
    let _ = conn.close().await;
    let row = row.ok_or_else(|| query_err(&what, "it vanished right after it was created"))?;
    Ok(SlotState {
        name: slot.to_string(),
        restart_lsn: row.get(0),
        wal_status: row.get(1),
        created,
    })
}

/// `pg_receivewal` streaming from `slot` into `spool`. `--synchronous` flushes every write
/// before telling the server, so the slot never moves past what is safe on disk; `--no-loop`
/// leaves retrying to the archiver's supervision (with backoff, and a record of every exit).
///
/// # Errors
/// When the private password file cannot be written.
pub fn receivewal(
    connect: &Connect,
    spool: &Path,
    slot: &str,
    private_dir: &Path,
) -> std::io::Result<Command> {
    let mut cmd = connect.command("pg_receivewal", private_dir)?;
    cmd.arg("--directory").arg(spool).args([
        "--slot",
        slot,
        "--synchronous",
        "--no-loop",
        "--no-password",
        "--status-interval",
        "1",
        "--verbose",
    ]);
    Ok(cmd)
}

/// `pg_basebackup` writing one tar (with its `backup_manifest` and, `-X fetch`, the WAL that
/// makes it consistent) to stdout; `--verbose` makes it report the WAL range on stderr.
///
/// # Errors
/// When the private password file cannot be written.
pub fn basebackup(connect: &Connect, private_dir: &Path) -> std::io::Result<Command> {
    let mut cmd = connect.command("pg_basebackup", private_dir)?;
    cmd.args([
        "--pgdata=-",
        "--format=tar",
        "--wal-method=fetch",
        "--checkpoint=fast",
        "--no-password",
        "--verbose",
        "--label=custodian base backup",
    ]);
    Ok(cmd)
}

/// The WAL range `pg_basebackup --verbose` reports:
/// `write-ahead log start point: 0/2000028 on timeline 1` and
/// `write-ahead log end point: 0/2000100`.
#[must_use]
pub fn parse_basebackup_log(stderr: &str) -> Option<(String, u32, String)> {
    let mut start = None;
    let mut end = None;
    for line in stderr.lines() {
        if let Some(rest) = line.split("write-ahead log start point: ").nth(1) {
            let mut parts = rest.split(" on timeline ");
            let lsn = parts.next()?.trim().to_string();
            let timeline = parts.next()?.trim().parse().ok()?;
            start = Some((lsn, timeline));
        } else if let Some(rest) = line.split("write-ahead log end point: ").nth(1) {
            end = Some(rest.trim().to_string());
        }
    }
    let (lsn, timeline) = start?;
    Some((lsn, timeline, end?))
}

/// The server's version and system identifier, recorded with a base backup.
///
/// # Errors
/// When the server cannot be reached.
pub async fn server_identity(connect: &Connect) -> Result<(String, String), EngineError> {
    let what = format!("the server {}", connect.server());
    let mut conn = connect.connect().await.map_err(|e| query_err(&what, e))?;
    let row = sqlx::query(
        "SELECT current_setting('server_version'), system_identifier::text FROM pg_control_system()",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|e| query_err(&what, e))?;
    let _ = conn.close().await;
    Ok((row.get(0), row.get(1)))
}

/// Completes a base backup's description from what `pg_basebackup` said.
#[must_use]
pub fn base_info(
    stderr: &str,
    started: jiff::Timestamp,
    finished: jiff::Timestamp,
    identity: (String, String),
) -> Option<BaseInfo> {
    let (start_lsn, timeline, end_lsn) = parse_basebackup_log(stderr)?;
    Some(BaseInfo {
        engine: "postgres".into(),
        start_lsn,
        end_lsn,
        timeline,
        started,
        finished,
        server_version: identity.0,
        system_identifier: identity.1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wal_range_is_read_from_pg_basebackups_report() {
        let log = "pg_basebackup: initiating base backup, waiting for checkpoint to complete\n\
                   pg_basebackup: checkpoint completed\n\
                   pg_basebackup: write-ahead log start point: 0/2000028 on timeline 1\n\
                   pg_basebackup: write-ahead log end point: 0/2000100\n\
                   pg_basebackup: base backup completed\n";
        assert_eq!(
            parse_basebackup_log(log),
            Some(("0/2000028".into(), 1, "0/2000100".into()))
        );
        assert_eq!(parse_basebackup_log("pg_basebackup: error"), None);
        assert_eq!(slot_name("crm-eu"), "custodian_crm_eu");
    }
}
