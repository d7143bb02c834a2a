//! Point-in-time recovery of a MariaDB source against a real server with its binary log on: a
//! steady writer, a logical backup (which records its binary log position), the archiver
//! (`mariadb-binlog --read-from-remote-server --raw --stop-never`) in the foreground, a
//! rotation of the binary log, a second backup, and a table dropped by mistake — then restores
//! to two chosen seconds into new databases, each checked by the writer's own row count, the
//! dropped table back as it was; PITR drills (to the second backup's position, compared with
//! its manifest, and to a random second); and retention that follows the backups.

use std::time::Duration;

use crate::common;

use common::Workspace;
use common::servers::{MariaServer, password_file};
use common::writer::Writer;

fn config(maria: &str) -> String {
    format!(
        r#"[custodian]
state-dir = "state"
hostname = "test-host"

[source.shop]
kind = "mysql"
url = "{maria}"
password-file = "keys/db.pass"
parallel = 2

[source.shop.archive]
enabled = true
flush = "2s"

[location.local]
kind = "local"
path = "repos/local"
password-file = "keys/local.key"
"#
    )
}

/// The binary log keeps whole seconds: a second that rows were written in, as a time, and how
/// many rows came before it.
fn a_second(maria: &MariaServer) -> (String, u64) {
    let second: i64 = maria
        .sql("SELECT MAX(FLOOR(UNIX_TIMESTAMP(at))) FROM shop.ticks")
        .parse()
        .unwrap();
    let before: u64 = maria
        .sql(&format!(
            "SELECT COUNT(*) FROM shop.ticks WHERE UNIX_TIMESTAMP(at) < {second}"
        ))
        .parse()
        .unwrap();
    let at = jiff::Timestamp::from_second(second).unwrap();
    (at.to_string(), before)
}

#[test]
fn a_mariadb_source_comes_back_to_a_chosen_second_from_a_backup_and_its_binary_logs() {
    let maria = MariaServer::start_with(&[
        "--log-bin=mysql-bin",
        "--binlog-format=ROW",
        "--server-id=1",
    ]);
    maria.create_db("shop");
    maria.sql(
        "CREATE TABLE shop.ticks (id BIGINT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), note TEXT);
         CREATE TABLE shop.customers (id INT PRIMARY KEY, name TEXT);
         INSERT INTO shop.customers VALUES (1, 'Ada'), (2, 'Grace');",
    );
    let ws = Workspace::new();
    password_file(&ws.path("keys"));
    ws.write_config(&config(&maria.url("shop")));
    ws.custodian_json(&["init"], 0);
    let check = ws.custodian_json(&["archive", "check", "--source", "shop"], 0);
    assert_eq!(check["ok"], true, "{check:#}");

    let mut client = maria.client();
    client.arg("shop");
    let writer = Writer::start(
        client,
        "INSERT INTO ticks (note) VALUES (REPEAT('x', 200));",
    );
    let archiver = common::start_archiver(&ws, "shop");
    std::thread::sleep(Duration::from_secs(2));
    let backup = ws.custodian_json(&["backup", "--source", "shop"], 0);
    assert_eq!(backup[0]["status"], "succeeded", "{backup:#}");

    std::thread::sleep(Duration::from_millis(2500));
    let (t1, n1) = a_second(&maria);
    maria.sql("FLUSH BINARY LOGS");
    std::thread::sleep(Duration::from_millis(2500));
    let (t2, n2) = a_second(&maria);
    std::thread::sleep(Duration::from_millis(1500));
    // A second backup while the writer runs: a PITR drill replays from the first backup to
    // its position and compares the result with its manifest.
    let second = ws.custodian_json(&["backup", "--source", "shop"], 0);
    assert_eq!(second[0]["status"], "succeeded", "{second:#}");
    std::thread::sleep(Duration::from_millis(1000));
    writer.stop();
    // The mistake: the table is dropped.
    maria.sql("DROP TABLE shop.customers");
    std::thread::sleep(Duration::from_secs(5));
    common::stop_archiver(archiver);
    assert!(n1 > 0 && n1 < n2, "{n1} {n2}");

    let status = ws.custodian_json(&["archive", "status", "--source", "shop"], 0);
    let s = &status[0];
    assert!(s["wal_files"].as_u64().unwrap() >= 2, "{s:#}");
    assert!(s["window"]["from"].is_string(), "{s:#}");
    assert_eq!(s["opens_at_backup"], backup[0]["snapshot"]["id"], "{s:#}");

    let url = |db: &str| maria.url(db);
    let plan = ws.custodian_json(
        &[
            "restore",
            "--source",
            "shop",
            "--to-time",
            &t1,
            "--target",
            &url("shop_t1"),
            "--preview",
        ],
        0,
    );
    assert_eq!(
        plan["base_snapshot"], backup[0]["snapshot"]["id"],
        "{plan:#}"
    );
    for (time, expected, db) in [(&t1, n1, "shop_t1"), (&t2, n2, "shop_t2")] {
        let r = ws.custodian_json(
            &[
                "restore",
                "--source",
                "shop",
                "--to-time",
                time,
                "--target",
                &url(db),
            ],
            0,
        );
        assert!(
            r["recovered"]["stop"]
                .as_str()
                .unwrap()
                .contains("CHECK TABLE passed"),
            "{r:#}"
        );
        let count: u64 = maria
            .sql(&format!("SELECT COUNT(*) FROM {db}.ticks"))
            .parse()
            .unwrap();
        assert_eq!(count, expected, "rows recovered at {time}");
        assert_eq!(
            maria.sql(&format!(
                "SELECT GROUP_CONCAT(name ORDER BY id) FROM {db}.customers"
            )),
            "Ada,Grace",
            "the dropped table is back"
        );
    }
    // A database that exists is never recovered into.
    let err = ws.custodian_error(
        &[
            "restore",
            "--source",
            "shop",
            "--to-latest",
            "--target",
            &url("shop_t1"),
        ],
        1,
    );
    assert!(err["message"].as_str().unwrap().contains("exists"), "{err}");
    // The restic CLI lists the archived binary logs.
    let out = ws.restic(
        "local",
        &["snapshots", "--tag", "custodian-binlog", "--json"],
    );
    let snaps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!snaps.is_empty(), "{}", common::stderr(&out));

    // PITR drills in a scratch instance: the first backup loaded and verified, the binary
    // logs replayed onto it, CHECK TABLE; to the second backup's position, compared with its
    // manifest.
    let d = ws.custodian_json(&["drill", "--source", "shop", "--pitr", "backup"], 0);
    assert_eq!(d["status"], "passed", "{d:#}");
    assert_eq!(d["selection"], "pitr-backup", "{d:#}");
    assert_eq!(d["snapshot_id"], backup[0]["snapshot"]["id"], "{d:#}");
    assert_eq!(d["mismatches"], serde_json::json!([]), "{d:#}");
    let phases: Vec<&str> = d["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for phase in [
        "fetch binlogs",
        "replay",
        "verify (CHECK TABLE)",
        "verify at the backup's position",
    ] {
        assert!(phases.contains(&phase), "{phases:?}");
    }
    let d = ws.custodian_json(&["drill", "--source", "shop", "--pitr", "random"], 0);
    assert_eq!(d["status"], "passed", "{d:#}");
    assert_eq!(d["selection"], "pitr-random", "{d:#}");
    assert!(
        d["not_verified"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("compared with no manifest")),
        "a drill to a point no backup was taken at says what it did not compare: {d:#}"
    );

    // Retention follows the backups: with a newer backup in a newer binary log and only one
    // backup kept, the logs before its position go, and the window opens at it.
    maria.sql("FLUSH BINARY LOGS");
    ws.custodian_json(&["backup", "--source", "shop"], 0);
    let text = std::fs::read_to_string(ws.config_path()).unwrap();
    ws.write_config(&format!("{text}\n[retention]\nkeep-last = 1\n"));
    let plan = ws.custodian_json(&["forget", "--location", "local"], 0);
    let plan = &plan[0]["plan"];
    let reasons: Vec<&str> = plan["remove"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("before the oldest kept backup's position")),
        "{reasons:?}"
    );
    let window = &plan["windows"][0];
    assert!(
        window["opens_after"].as_str().unwrap() > window["opens_before"].as_str().unwrap(),
        "{window:#}"
    );
}
