//! `custodian archive check` for a PostgreSQL source: is the server ready to stream its
//! write-ahead log to an archiver (`pg_receivewal` on a physical replication slot)? Each
//! setting is checked with what to change: `wal_level`, `max_wal_senders` and
//! `max_replication_slots` (with what is already in use), the role's `REPLICATION` attribute,
//! `max_slot_wal_keep_size` (how much WAL a stopped archiver may make the server keep), that
//! `pg_hba.conf` lets the role open a replication connection, and the `pg_receivewal` tool.

use sqlx::{Connection, Row};

use crate::config::ServerSource;
use crate::engine::private_workdir;
use crate::model::{Finding, Verdict};

const CHECK: &str = "archive";

fn fail(source: &str, message: String, fix: impl Into<String>) -> Finding {
    Finding::problem(CHECK, Verdict::Fail, source, message, fix)
}

/// The server's settings that archiving needs.
struct Settings {
    wal_level: String,
    max_wal_senders: i64,
    senders_in_use: i64,
    max_slots: i64,
    slots_in_use: i64,
    replication_role: bool,
    user: String,
    /// `max_slot_wal_keep_size` in MB (PostgreSQL 13+; -1: unbounded).
    keep_size_mb: Option<i64>,
}

async fn settings(conn: &mut sqlx::PgConnection) -> Result<Settings, sqlx::Error> {
    let row = sqlx::query(
        "SELECT current_setting('wal_level'),
                current_setting('max_wal_senders')::bigint,
                (SELECT count(*) FROM pg_stat_replication),
                current_setting('max_replication_slots')::bigint,
                (SELECT count(*) FROM pg_replication_slots),
                (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user),
                current_user::text,
                (SELECT setting::bigint FROM pg_settings WHERE name = 'max_slot_wal_keep_size')",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Settings {
        wal_level: row.get(0),
        max_wal_senders: row.get(1),
        senders_in_use: row.get(2),
        max_slots: row.get(3),
        slots_in_use: row.get(4),
        replication_role: row.get::<Option<bool>, _>(5).unwrap_or(false),
        user: row.get(6),
        keep_size_mb: row.get(7),
    })
}

/// What each setting means for archiving.
fn judge(source: &str, s: &Settings) -> Vec<Finding> {
    let mut out = Vec::new();
    out.push(if s.wal_level == "minimal" {
        fail(
            source,
            "wal_level is minimal: the server writes too little WAL to replay it elsewhere".into(),
            "run ALTER SYSTEM SET wal_level = replica; as a superuser, then restart the server",
        )
    } else {
        Finding::ok(CHECK, source, format!("wal_level = {}", s.wal_level))
    });
    out.push(
        if s.max_wal_senders < 1 || s.senders_in_use >= s.max_wal_senders {
            fail(
                source,
                format!(
                    "max_wal_senders = {} with {} in use: no WAL sender is free for the archiver",
                    s.max_wal_senders, s.senders_in_use
                ),
                format!(
                    "run ALTER SYSTEM SET max_wal_senders = {}; then restart the server",
                    (s.senders_in_use + 2).max(10)
                ),
            )
        } else {
            Finding::ok(
                CHECK,
                source,
                format!(
                    "max_wal_senders = {} ({} in use)",
                    s.max_wal_senders, s.senders_in_use
                ),
            )
        },
    );
    out.push(if s.max_slots < 1 || s.slots_in_use >= s.max_slots {
        fail(
            source,
            format!(
                "max_replication_slots = {} with {} in use: the archiver's slot cannot be created",
                s.max_slots, s.slots_in_use
            ),
            format!(
                "run ALTER SYSTEM SET max_replication_slots = {}; then restart the server",
                (s.slots_in_use + 2).max(10)
            ),
        )
    } else {
        Finding::ok(
            CHECK,
            source,
            format!(
                "max_replication_slots = {} ({} in use)",
                s.max_slots, s.slots_in_use
            ),
        )
    });
    out.push(if s.replication_role {
        Finding::ok(
            CHECK,
            source,
            format!("role {} may stream WAL (REPLICATION)", s.user),
        )
    } else {
        fail(
            source,
            format!("role {} lacks the REPLICATION attribute", s.user),
            format!(
                "run ALTER ROLE {} REPLICATION; as a superuser",
                super::quote_ident(&s.user)
            ),
        )
    });
    out.push(match s.keep_size_mb {
        Some(-1) | None => Finding::problem(
            CHECK,
            Verdict::Warn,
            source,
            "max_slot_wal_keep_size is unbounded: while the archiver is stopped, the server keeps every WAL segment for its slot until its disk is full",
            "run ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; (what the WAL disk can spare) and SELECT pg_reload_conf(); — a slot that outgrows it is invalidated, which Custodian reports as a gap",
        ),
        Some(mb) => Finding::ok(
            CHECK,
            source,
            format!("max_slot_wal_keep_size = {mb} MB: a stopped archiver cannot fill the server's disk"),
        ),
    });
    out
}

/// Opens a replication connection the way `pg_receivewal` will (`IDENTIFY_SYSTEM`).
async fn replication_connection(
    source: &str,
    connect: &super::Connect,
    scratch: &std::path::Path,
) -> Finding {
    let tried = async {
        let dir = private_workdir(scratch, "archive-check-").map_err(|e| e.to_string())?;
        let mut cmd = connect
            .command("psql", dir.path())
            .map_err(|e| e.to_string())?;
        cmd.args([
            "--no-password",
            "--no-psqlrc",
            "-At",
            // The database and the rest come from the environment the command carries.
            "-d",
            "replication=database",
            "-c",
            "IDENTIFY_SYSTEM",
        ]);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("psql cannot be run ({e})"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
    .await;
    match tried {
        Ok(()) => Finding::ok(
            CHECK,
            source,
            format!("{} may open a replication connection", connect.describe()),
        ),
        Err(e) => fail(
            source,
            format!("a replication connection is refused: {e}"),
            "the role needs REPLICATION (see its finding); if that is given, add a line `host replication <role> <Custodian's address>/32 scram-sha-256` to pg_hba.conf and run SELECT pg_reload_conf();",
        ),
    }
}

fn receivewal_tool(source: &str) -> Finding {
    match std::process::Command::new("pg_receivewal")
        .arg("--version")
        .output()
    {
        Ok(out) if out.status.success() => Finding::ok(
            CHECK,
            source,
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ),
        _ => fail(
            source,
            "pg_receivewal cannot be run".into(),
            "install the PostgreSQL client tools (Debian: postgresql-client) so that pg_receivewal is on the PATH",
        ),
    }
}

/// Every check, for one source.
pub async fn preflight(
    source: &str,
    cfg: &ServerSource,
    scratch: &std::path::Path,
) -> Vec<Finding> {
    let connect = match super::connect::connect_settings(source, cfg) {
        Ok(c) => c,
        Err(e) => {
            return vec![fail(
                source,
                e.to_string(),
                "fix the source's url and password reference (`custodian config check`)",
            )];
        }
    };
    let mut conn = match connect.connect().await {
        Ok(c) => c,
        Err(e) => {
            return vec![fail(
                source,
                format!("{} does not answer: {e}", connect.describe()),
                "check the URL, the password reference and pg_hba.conf",
            )];
        }
    };
    let read = settings(&mut conn).await;
    let _ = conn.close().await;
    let mut out = match read {
        Ok(s) => judge(source, &s),
        Err(e) => vec![fail(
            source,
            format!("the server's settings cannot be read: {e}"),
            "check that the role may read pg_settings and pg_stat_replication",
        )],
    };
    out.push(replication_connection(source, &connect, scratch).await);
    out.push(receivewal_tool(source));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> Settings {
        Settings {
            wal_level: "replica".into(),
            max_wal_senders: 10,
            senders_in_use: 0,
            max_slots: 10,
            slots_in_use: 0,
            replication_role: true,
            user: "custodian".into(),
            keep_size_mb: Some(51_200),
        }
    }

    #[test]
    fn a_ready_server_passes_and_each_missing_setting_says_what_to_change() {
        assert!(
            judge("crm", &ready())
                .iter()
                .all(|f| f.verdict == Verdict::Ok)
        );
        let broken = Settings {
            wal_level: "minimal".into(),
            max_wal_senders: 2,
            senders_in_use: 2,
            max_slots: 0,
            replication_role: false,
            keep_size_mb: Some(-1),
            ..ready()
        };
        let found = judge("crm", &broken);
        let fixes: Vec<&str> = found.iter().filter_map(|f| f.fix.as_deref()).collect();
        assert_eq!(fixes.len(), 5, "{found:#?}");
        assert!(fixes[0].contains("wal_level = replica"));
        assert!(fixes[1].contains("max_wal_senders = 10"));
        assert!(fixes[2].contains("max_replication_slots = 10"));
        assert!(fixes[3].contains("ALTER ROLE \"custodian\" REPLICATION"));
        assert!(fixes[4].contains("max_slot_wal_keep_size"));
        assert_eq!(found[4].verdict, Verdict::Warn);
    }
}
