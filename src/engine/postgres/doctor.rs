//! `custodian doctor` for a PostgreSQL source: pg_dump and pg_restore are there and not older
//! than the server (an older pg_dump refuses a newer server), the server answers, and a
//! connection to another machine verifies its certificate.

use sqlx::Connection;

use crate::config::ServerSource;
use crate::model::{Finding, Verdict};

/// The major version a `--version` line names ("pg_dump (PostgreSQL) 15.18" → 15).
fn major(line: &str) -> Option<u32> {
    line.split_whitespace()
        .find_map(|w| w.split('.').next()?.parse().ok())
}

fn client_major(tool: &str) -> Result<u32, String> {
    let out = std::process::Command::new(tool)
        .arg("--version")
        .output()
        .map_err(|e| format!("{tool} cannot be run ({e})"))?;
    major(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| format!("{tool} did not say its version"))
}

pub async fn doctor(source: &str, cfg: &ServerSource) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut clients = Vec::new();
    for tool in ["pg_dump", "pg_restore", "psql"] {
        match client_major(tool) {
            Ok(m) => clients.push((tool, m)),
            Err(e) => out.push(Finding::problem(
                "tools",
                Verdict::Fail,
                source,
                e,
                format!("install the PostgreSQL client tools (Debian: postgresql-client) so that {tool} is on the PATH"),
            )),
        }
    }
    let server = match super::connect::connect_settings(source, cfg) {
        Err(e) => Err(e.to_string()),
        Ok(connect) => match connect.connect().await {
            Err(e) => Err(format!("{} does not answer: {e}", connect.describe())),
            Ok(mut conn) => {
                let version: Result<String, _> = sqlx::query_scalar("SHOW server_version_num")
                    .fetch_one(&mut conn)
                    .await;
                let _ = conn.close().await;
                version
                    .map_err(|e| e.to_string())
                    .and_then(|v| v.parse::<u32>().map_err(|e| e.to_string()))
                    .map(|n| n / 10_000)
            }
        },
    };
    match server {
        Err(e) => out.push(Finding::problem(
            "tools",
            Verdict::Fail,
            source,
            e,
            "check the URL, the password reference and pg_hba.conf; `custodian backup --source NAME -v` shows the attempt",
        )),
        Ok(server) => {
            for (tool, client) in &clients {
                if *client < server {
                    out.push(Finding::problem(
                        "tools",
                        Verdict::Fail,
                        source,
                        format!("{tool} {client} is older than the PostgreSQL {server} server; it refuses to dump (or restores incompletely)"),
                        format!("install postgresql-client-{server} and put its bin directory first on the PATH"),
                    ));
                } else {
                    out.push(Finding::ok(
                        "tools",
                        source,
                        format!("{tool} {client} for a PostgreSQL {server} server"),
                    ));
                }
            }
        }
    }
    out.push(tls(source, &cfg.url));
    out
}

/// A server on another machine: is its certificate verified?
fn tls(source: &str, url: &str) -> Finding {
    let Ok(parsed) = url::Url::parse(url) else {
        return Finding::ok("tls", source, "the URL is checked by `config check`");
    };
    let host = super::connect::server_host(&parsed);
    let local = super::connect::reaches_this_machine(&parsed);
    let mode = super::connect::ssl_mode_of(&parsed);
    match (local, mode.as_deref()) {
        (true, _) => Finding::ok(
            "tls",
            source,
            format!("{host} is this machine: no TLS needed"),
        ),
        (false, None | Some("verify-full")) => Finding::ok(
            "tls",
            source,
            format!(
                "the connection to {host} verifies the server's certificate and name (sslmode=verify-full)"
            ),
        ),
        (false, Some(weak)) => Finding::problem(
            "tls",
            Verdict::Warn,
            source,
            format!(
                "sslmode={weak} to {host}: the CRM's data could be read or altered by whoever sits between"
            ),
            "drop sslmode from the URL (Custodian then uses verify-full) and give the server a certificate its clients can verify",
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_and_tls() {
        assert_eq!(super::major("pg_dump (PostgreSQL) 15.18"), Some(15));
        assert_eq!(
            super::major("pg_restore (PostgreSQL) 17.2 (Debian 17.2-1)"),
            Some(17)
        );
        assert_eq!(
            super::tls("crm", "postgres://u@db.example.org/crm?sslmode=require").verdict,
            crate::model::Verdict::Warn
        );
        assert_eq!(
            super::tls("crm", "postgres://u@db.example.org/crm").verdict,
            crate::model::Verdict::Ok
        );
    }
}
