//! `custodian archive check` for a MariaDB/MySQL source: is the server ready to stream its
//! binary log to an archiver (`mariadb-binlog --read-from-remote-server --raw`)? `log_bin`,
//! `binlog_format = ROW` (replaying statements is not deterministic), `binlog_row_image`,
//! `server_id`, the privileges to read the log, and the tool.

use sqlx::{Connection, Row};

use crate::config::ServerSource;
use crate::model::{Finding, Verdict};

const CHECK: &str = "archive";

fn fail(source: &str, message: String, fix: impl Into<String>) -> Finding {
    Finding::problem(CHECK, Verdict::Fail, source, message, fix)
}

/// The server's settings that archiving needs.
struct Settings {
    log_bin: bool,
    format: String,
    row_image: String,
    server_id: u64,
    /// `SHOW GRANTS` of the current user, upper-cased.
    grants: Vec<String>,
    user: String,
}

async fn settings(conn: &mut sqlx::mysql::MySqlConnection) -> Result<Settings, sqlx::Error> {
    let row = sqlx::query(
        "SELECT CAST(@@GLOBAL.log_bin AS SIGNED), CAST(@@GLOBAL.binlog_format AS CHAR),
                CAST(@@GLOBAL.binlog_row_image AS CHAR), CAST(@@GLOBAL.server_id AS UNSIGNED),
                CAST(CURRENT_USER() AS CHAR)",
    )
    .fetch_one(&mut *conn)
    .await?;
    let grants: Vec<String> = sqlx::query_scalar("SHOW GRANTS")
        .fetch_all(&mut *conn)
        .await?;
    Ok(Settings {
        log_bin: row.get::<i64, _>(0) != 0,
        format: row.get(1),
        row_image: row.get(2),
        server_id: row.get(3),
        grants: grants.into_iter().map(|g| g.to_uppercase()).collect(),
        user: row.get(4),
    })
}

/// Whether the grants let the user read the binary log remotely.
fn may_read_binlog(grants: &[String]) -> bool {
    grants.iter().any(|g| {
        g.contains(" ON *.*")
            && (g.contains("ALL PRIVILEGES")
                || g.contains("REPLICATION SLAVE")
                || g.contains("REPLICATION REPLICA"))
    })
}

fn judge(source: &str, s: &Settings) -> Vec<Finding> {
    let mut out = Vec::new();
    out.push(if s.log_bin {
        Finding::ok(CHECK, source, "the binary log is on (log_bin)")
    } else {
        fail(
            source,
            "the binary log is off (log_bin): there is nothing to archive".into(),
            "add log_bin = mysql-bin and server_id = 1 (any number unique among your servers) under [mysqld] in the server's configuration, then restart it",
        )
    });
    out.push(if s.format.eq_ignore_ascii_case("ROW") {
        Finding::ok(CHECK, source, "binlog_format = ROW")
    } else {
        fail(
            source,
            format!("binlog_format = {}: replaying statements can give other rows than they first did", s.format),
            "run SET GLOBAL binlog_format = 'ROW'; and put binlog_format = ROW under [mysqld] in the server's configuration",
        )
    });
    out.push(if s.row_image.eq_ignore_ascii_case("FULL") {
        Finding::ok(CHECK, source, "binlog_row_image = FULL")
    } else {
        Finding::problem(
            CHECK,
            Verdict::Warn,
            source,
            format!(
                "binlog_row_image = {}: the log lacks the columns an update did not change",
                s.row_image
            ),
            "run SET GLOBAL binlog_row_image = 'FULL'; and put it in the server's configuration",
        )
    });
    out.push(if s.server_id == 0 {
        fail(
            source,
            "server_id = 0: the server cannot serve its binary log".into(),
            "put server_id = 1 (any number unique among your servers) under [mysqld] and restart the server",
        )
    } else {
        Finding::ok(CHECK, source, format!("server_id = {}", s.server_id))
    });
    out.push(if may_read_binlog(&s.grants) {
        Finding::ok(
            CHECK,
            source,
            format!("{} may read the binary log (REPLICATION SLAVE)", s.user),
        )
    } else {
        fail(
            source,
            format!("{} may not read the binary log", s.user),
            format!(
                "run GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO {};",
                s.user
            ),
        )
    });
    out
}

fn binlog_tool(source: &str) -> Finding {
    let tool = super::tool(&["mariadb-binlog", "mysqlbinlog"]);
    match std::process::Command::new(tool).arg("--version").output() {
        Ok(out) if out.status.success() => Finding::ok(
            CHECK,
            source,
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ),
        _ => fail(
            source,
            format!("{tool} cannot be run"),
            "install the MariaDB client tools (Debian: mariadb-client) so that mariadb-binlog is on the PATH",
        ),
    }
}

/// Every check, for one source.
pub async fn preflight(source: &str, cfg: &ServerSource) -> Vec<Finding> {
    let connect = match super::connect_settings(source, cfg) {
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
                "check the URL and the password reference",
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
            "check that the user may run SHOW GRANTS",
        )],
    };
    out.push(binlog_tool(source));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_that_read_the_binary_log() {
        let g = |s: &str| vec![s.to_uppercase()];
        assert!(may_read_binlog(&g(
            "GRANT ALL PRIVILEGES ON *.* TO `c`@`%`"
        )));
        assert!(may_read_binlog(&g(
            "GRANT SELECT, REPLICATION SLAVE ON *.* TO `c`@`%`"
        )));
        assert!(!may_read_binlog(&g(
            "GRANT ALL PRIVILEGES ON `crm`.* TO `c`@`%`"
        )));
        assert!(!may_read_binlog(&g("GRANT USAGE ON *.* TO `c`@`%`")));
    }
}
