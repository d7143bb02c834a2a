//! `custodian archive check` against real servers: what a PostgreSQL and a MariaDB server
//! need before their logs can be archived for point-in-time recovery, each missing setting
//! named with what to change.

use crate::common;

use common::servers::{MariaServer, PgServer, password_file};
use common::{Workspace, reply};

fn config(pg: &str, maria: &str) -> String {
    format!(
        r#"[custodian]
state-dir = "state"
hostname = "test-host"

[source.crm]
kind = "postgres"
url = "{pg}"
password-file = "keys/db.pass"

[source.shop]
kind = "mysql"
url = "{maria}"
password-file = "keys/db.pass"

[source.demo]
kind = "sqlite"
path = "crm.sqlite"

[location.local]
kind = "local"
path = "repos/local"
password-file = "keys/local.key"
"#
    )
}

fn findings(out: &std::process::Output) -> Vec<serde_json::Value> {
    reply(out)["data"]["findings"].as_array().unwrap().clone()
}

fn about<'a>(findings: &'a [serde_json::Value], source: &str, text: &str) -> &'a serde_json::Value {
    findings
        .iter()
        .find(|f| f["subject"] == source && f["message"].as_str().unwrap().contains(text))
        .unwrap_or_else(|| panic!("no finding on {source} about {text}: {findings:#?}"))
}

#[test]
fn archive_check_names_what_each_server_needs() {
    let pg = PgServer::start();
    let maria = MariaServer::start();
    pg.create_db("crm");
    maria.create_db("shop");
    let ws = Workspace::new();
    password_file(&ws.path("keys"));
    ws.write_config(&config(&pg.url("crm"), &maria.url("shop")));

    // PostgreSQL 15's defaults are ready (wal_level = replica, senders and slots free, pg_hba
    // allows replication from 127.0.0.1) but for the role, which may not replicate, and the
    // bound on what a stopped archiver makes the server keep. MariaDB's binary log is off.
    let out = ws.custodian(&["--json", "archive", "check"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    assert_eq!(reply(&out)["error"]["code"], "archive.not_ready");
    let all = findings(&out);
    for text in [
        "wal_level = replica",
        "max_wal_senders = 10",
        "max_replication_slots = 10",
        "pg_receivewal (PostgreSQL)",
    ] {
        assert_eq!(about(&all, "crm", text)["verdict"], "ok", "{text}");
    }
    let role = about(&all, "crm", "lacks the REPLICATION attribute");
    assert_eq!(role["verdict"], "fail");
    assert_eq!(
        role["fix"],
        "run ALTER ROLE \"custodian\" REPLICATION; as a superuser"
    );
    let refused = about(&all, "crm", "a replication connection is refused");
    assert!(
        refused["fix"].as_str().unwrap().contains("pg_hba.conf"),
        "{refused:#}"
    );
    let keep = about(&all, "crm", "max_slot_wal_keep_size is unbounded");
    assert_eq!(keep["verdict"], "warn");
    assert!(
        keep["fix"]
            .as_str()
            .unwrap()
            .contains("ALTER SYSTEM SET max_slot_wal_keep_size")
    );
    let log_bin = about(&all, "shop", "the binary log is off");
    assert_eq!(log_bin["verdict"], "fail");
    assert!(log_bin["fix"].as_str().unwrap().contains("log_bin"));
    assert_eq!(
        about(&all, "shop", "may read the binary log")["verdict"],
        "ok"
    );
    assert_eq!(
        about(&all, "demo", "no log to archive")["verdict"],
        "skipped"
    );

    // Done as the findings say, the PostgreSQL source is ready.
    pg.psql("postgres", "ALTER ROLE custodian REPLICATION;");
    pg.psql(
        "postgres",
        "ALTER SYSTEM SET max_slot_wal_keep_size = '1GB';",
    );
    pg.psql("postgres", "SELECT pg_reload_conf();");
    let out = ws.custodian(&["--json", "archive", "check", "--source", "crm"]);
    let crm = findings(&out);
    assert_eq!(out.status.code(), Some(0), "{crm:#?}");
    assert!(
        crm.iter()
            .all(|f| f["subject"] == "crm" && f["verdict"] == "ok"),
        "{crm:#?}"
    );
    about(&crm, "crm", "may open a replication connection");
    about(&crm, "crm", "max_slot_wal_keep_size = 1024 MB");

    let out = ws.custodian(&["--json", "archive", "check", "--source", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        reply(&out)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("source `nope` is not defined"),
    );
}
