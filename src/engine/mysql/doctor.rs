//! `custodian doctor` for a MariaDB/MySQL source: the dump and client tools are there, and the
//! server answers.

use sqlx::Connection;

use crate::config::ServerSource;
use crate::model::{Finding, Verdict};

pub async fn doctor(source: &str, cfg: &ServerSource) -> Vec<Finding> {
    let mut out = Vec::new();
    for names in [
        &["mariadb-dump", "mysqldump"][..],
        &["mariadb", "mysql"][..],
    ] {
        let tool = super::connect::tool(names);
        match std::process::Command::new(tool).arg("--version").output() {
            Ok(o) if o.status.success() => out.push(Finding::ok(
                "tools",
                source,
                String::from_utf8_lossy(&o.stdout).trim().to_string(),
            )),
            _ => out.push(Finding::problem(
                "tools",
                Verdict::Fail,
                source,
                format!("{} is not on the PATH", names.join(" or ")),
                "install the MariaDB client (Debian: mariadb-client)",
            )),
        }
    }
    match super::connect::connect_settings(source, cfg) {
        Err(e) => out.push(Finding::problem(
            "tools",
            Verdict::Fail,
            source,
            e.to_string(),
            "check the URL and the password reference",
        )),
        Ok(connect) => match connect.connect().await {
            Ok(mut conn) => {
                let version: Result<String, _> = sqlx::query_scalar("SELECT VERSION()")
                    .fetch_one(&mut conn)
                    .await;
                let _ = conn.close().await;
                out.push(Finding::ok(
                    "tools",
                    source,
                    format!("the server answers ({})", version.unwrap_or_default()),
                ));
            }
            Err(e) => out.push(Finding::problem(
                "tools",
                Verdict::Fail,
                source,
                format!("the server does not answer: {e}"),
                "check the URL, the password reference and the server's grants for the backup user",
            )),
        },
    }
    out
}
