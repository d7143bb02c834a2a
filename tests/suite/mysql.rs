//! MariaDB/MySQL sources against a real MariaDB server started by the test: round-trip
//! fidelity, restic as the oracle, consistency of the manifest with the dump under concurrent
//! writes, failure semantics (killed dump tool, wrong password) and restores.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::servers::{MariaServer, PASSWORD, assert_same_dump, cmdline, password_file, pids_with};
use common::{Workspace, assert_success, stderr};

fn my_config(server: &MariaServer, db: &str) -> String {
    format!(
        r#"[custodian]
state-dir = "state"
hostname = "test-host"

[source.shop]
kind = "mysql"
url = "{}"
password-file = "keys/db.pass"

[location.local]
kind = "local"
path = "repos/local"
password-file = "keys/local.key"

[location.offsite]
kind = "local"
path = "repos/offsite"
password-file = "keys/offsite.key"
"#,
        server.url(db)
    )
}

fn setup(server: &MariaServer, db: &str, scale: &str) -> Workspace {
    let ws = Workspace::new();
    password_file(&ws.path("keys"));
    server.create_db(db);
    let out = ws.custodian(&[
        "generate-crm",
        "--url",
        &server.url(db),
        "--password-file",
        ws.path("keys/db.pass").to_str().unwrap(),
        "--scale",
        scale,
    ]);
    assert_success(&out, "custodian generate-crm");
    ws.write_config(&my_config(server, db));
    ws.custodian_json(&["init"], 0);
    ws
}

#[test]
fn backup_and_restore_round_trip_identically() {
    let server = MariaServer::start();
    let ws = setup(&server, "shop", "0.002");
    let backup = ws.custodian_json(&["backup"], 0);
    let b = &backup[0];
    assert_eq!(b["status"], "succeeded", "{b:#}");
    assert_eq!(b["engine"], "mysql");
    assert_eq!(b["tables"], 5);
    let dump = b["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "shop.sql")
        .unwrap()
        .clone();

    for location in ["local", "offsite"] {
        assert_success(
            &ws.restic(location, &["check", "--read-data"]),
            "restic check",
        );
    }
    let target = ws.path("restic-restore");
    let out = ws.restic(
        "offsite",
        &[
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
            "--verify",
        ],
    );
    assert_success(&out, "restic restore --verify");
    let restored = target.join("custodian/shop/shop.sql");
    assert_eq!(
        std::fs::metadata(&restored).unwrap().len(),
        dump["bytes"].as_u64().unwrap()
    );
    assert_eq!(
        common::sha256_file(&restored),
        dump["sha256"].as_str().unwrap()
    );
    let text = std::fs::read_to_string(&restored).unwrap();
    assert!(text.contains("CREATE TABLE `contacts`"), "schema");
    let triggers =
        std::fs::read_to_string(target.join("custodian/shop/shop.triggers.sql")).unwrap();
    assert!(triggers.contains("deals_touch"), "triggers, apart");
    // Each table's rows are a stream of its own, in key order.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(target.join("custodian/shop/manifest.json")).unwrap(),
    )
    .unwrap();
    let streams = manifest["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 5, "{manifest:#}");
    for stream in streams {
        let file = target
            .join("custodian/shop")
            .join(stream["file"].as_str().unwrap());
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            stream["bytes"].as_u64().unwrap()
        );
        assert!(!stream["order"].as_array().unwrap().is_empty(), "{stream}");
    }
    assert!(
        manifest["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["mode"] == "rows"),
        "{manifest:#}"
    );
    server.restore_with_restic_only(
        (&ws.repo("offsite"), &ws.key("offsite")),
        "shop",
        "shop",
        "shop_plain",
    );
    assert_same_dump(
        &server.dump_sql("shop"),
        &server.dump_sql("shop_plain"),
        "restic only",
    );

    let out = ws.custodian_json(
        &[
            "restore",
            "--snapshot",
            "latest",
            "--target",
            &server.url("shop_restored"),
        ],
        0,
    );
    assert_eq!(out["verification"]["status"], "verified", "{out:#}");
    assert_same_dump(
        &server.dump_sql("shop"),
        &server.dump_sql("shop_restored"),
        "shop_restored",
    );

    let out = ws.custodian(&[
        "restore",
        "--snapshot",
        "latest",
        "--target",
        &server.url("shop_restored"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));
    server.sql("DELETE FROM shop_restored.notes WHERE id % 2 = 0;");
    let out = ws.custodian_json(
        &[
            "restore",
            "--snapshot",
            "latest",
            "--target",
            &server.url("shop_restored"),
            "--force",
        ],
        0,
    );
    assert_eq!(out["verification"]["status"], "verified");
    assert_same_dump(
        &server.dump_sql("shop"),
        &server.dump_sql("shop_restored"),
        "after --force",
    );
}

#[test]
fn the_manifest_matches_the_dump_under_concurrent_writes() {
    let server = MariaServer::start();
    let ws = setup(&server, "busy", "0.01");
    let mut writer = Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &server.port.to_string(),
            "-u",
            "custodian",
        ])
        .arg(format!("-p{PASSWORD}"))
        .args(["busy", "--delimiter=//", "-e"])
        .arg(
            "BEGIN NOT ATOMIC DECLARE i INT DEFAULT 0;
               WHILE i < 200000 DO
                 INSERT INTO activities (contact_id, kind, subject, done, created_at)
                      VALUES (1 + i % 100, 'call', CONCAT('concurrent ', i), 0, NOW(3));
                 UPDATE deals SET amount = amount + 1 WHERE id = 1 + i % 50;
                 SET i = i + 1;
               END WHILE;
             END//",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let backup = ws.custodian_json(&["backup"], 0);
    let manifest_rows = backup[0]["rows"].as_u64().unwrap();
    let _ = writer.kill();
    let _ = writer.wait();
    let now: u64 = server
        .sql("SELECT (SELECT COUNT(*) FROM busy.companies) + (SELECT COUNT(*) FROM busy.contacts) + (SELECT COUNT(*) FROM busy.deals) + (SELECT COUNT(*) FROM busy.activities) + (SELECT COUNT(*) FROM busy.notes);")
        .parse()
        .unwrap();
    assert!(
        now > manifest_rows,
        "the writer must have kept writing during the backup"
    );
    let out = ws.custodian_json(
        &[
            "restore",
            "--snapshot",
            "latest",
            "--target",
            &server.url("busy_restored"),
        ],
        0,
    );
    assert_eq!(out["verification"]["status"], "verified", "{out:#}");
}

#[test]
fn a_killed_dump_tool_commits_nothing_and_passwords_stay_secret() {
    let server = MariaServer::start();
    let ws = setup(&server, "killme", "0.002");
    // A mariadb-dump that stalls after its first bytes, so it can be caught and killed.
    let shims = ws.path("shims");
    std::fs::create_dir_all(&shims).unwrap();
    let shim = shims.join("mariadb-dump");
    std::fs::write(
        &shim,
        "#!/bin/sh\n/usr/bin/mariadb-dump \"$@\" | { head -c 65536; sleep 120; cat; }\n",
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        shims.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let backup = common::custodian_cmd()
        .args([
            "--json",
            "--config",
            ws.config_path().to_str().unwrap(),
            "backup",
        ])
        .env("PATH", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid = loop {
        if let Some(pid) = pids_with(&[shim.to_str().unwrap(), "killme"]).first() {
            break *pid;
        }
        assert!(Instant::now() < deadline, "the dump tool never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    for p in pids_with(&["mariadb-dump", "killme"]) {
        assert!(!cmdline(p).contains(PASSWORD), "{}", cmdline(p));
    }
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let started = Instant::now();
    let out = backup.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "a failed tool must not leave the backup hanging"
    );
    assert_eq!(out.status.code(), Some(1));
    let report = common::reply(&out)["data"].clone();
    assert_eq!(report[0]["status"], "failed");
    assert_eq!(report[0]["error_code"], "source.dump_failed");
    assert!(
        report[0]["error"]
            .as_str()
            .unwrap()
            .contains("killed by signal 9"),
        "{report:#}"
    );
    assert!(ws.restic_snapshots("local").is_empty());
    assert_success(&ws.restic("local", &["check"]), "restic check");
    assert!(
        pids_with(&["mariadb-dump", "killme"]).is_empty(),
        "no dump process may outlive the backup"
    );

    // A wrong password is named as such, without the password.
    std::fs::write(ws.path("keys/db.pass"), "not-the-password\n").unwrap();
    let out = ws.custodian(&["--json", "backup"]);
    assert_eq!(out.status.code(), Some(1));
    let report = common::reply(&out)["data"].clone();
    let error = report[0]["error"].as_str().unwrap();
    assert_eq!(report[0]["error_code"], "source.unavailable");
    assert!(
        error.contains("source shop") && error.contains("Access denied"),
        "{error}"
    );
    assert!(!error.contains("not-the-password"));
}

#[test]
fn a_killed_table_stream_fails_the_backup_and_is_named() {
    let server = MariaServer::start();
    let ws = setup(&server, "streams", "0.05");
    // A watcher on the server kills the stream of `notes` as soon as it starts: the
    // connection dies under the stream, as when a DBA kills it or the server drops it.
    server.sql(
        "CREATE DATABASE watch;
         DELIMITER //
         CREATE PROCEDURE watch.kill_notes_stream()
         BEGIN
           DECLARE victim BIGINT DEFAULT NULL;
           DECLARE deadline DATETIME(6) DEFAULT SYSDATE(6) + INTERVAL 60 SECOND;
           -- A tight loop: a stream of a few tens of milliseconds must not slip between looks.
           WHILE victim IS NULL AND SYSDATE(6) < deadline DO
             SELECT ID INTO victim FROM information_schema.PROCESSLIST
              WHERE INFO LIKE 'SELECT % FROM `notes`%' AND DB = 'streams' LIMIT 1;
           END WHILE;
           IF victim IS NOT NULL THEN KILL CONNECTION victim; END IF;
           SELECT victim IS NOT NULL;
         END//",
    );
    let killer = server.sql_async("CALL watch.kill_notes_stream()");
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let out = ws.custodian(&["--json", "backup"]);
    let killed = killer.wait_with_output().unwrap();
    assert_success(&killed, "the watcher");
    assert_eq!(
        String::from_utf8_lossy(&killed.stdout).trim(),
        "1",
        "the watcher never saw the stream of notes"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = common::reply(&out)["data"].clone();
    assert_eq!(report[0]["status"], "failed");
    assert_eq!(report[0]["error_code"], "source.dump_failed");
    let error = report[0]["error"].as_str().unwrap();
    assert!(
        error.contains("reading table notes"),
        "the stream, not what stopped because of it, is named: {error}"
    );
    assert!(!error.contains(PASSWORD));
    assert!(ws.restic_snapshots("local").is_empty());
    assert_success(&ws.restic("local", &["check"]), "restic check");
    assert!(
        pids_with(&["mariadb-dump", "streams"]).is_empty(),
        "no dump process may outlive the backup"
    );
    // The global read lock went with the failed backup: writes go on.
    server.sql("INSERT INTO streams.notes (contact_id, body, created_at) SELECT contact_id, 'after', NOW() FROM streams.notes LIMIT 1;");

    let backup = ws.custodian_json(&["backup"], 0);
    assert_eq!(backup[0]["status"], "succeeded", "{backup:#}");
}

#[test]
fn a_mysqldump_backup_keeps_one_dump_and_restores_verified() {
    let server = MariaServer::start();
    let ws = setup(&server, "single", "0.002");
    // Where only `mysqldump` and `mysql` exist (MySQL's client tools), which cannot leave some
    // tables' rows out of a dump: everything travels in the one dump, as in backups made
    // before table streams, and the checksums are computed by the server.
    let tools = ws.path("mysql-tools");
    std::fs::create_dir_all(&tools).unwrap();
    for (name, real) in [("mysqldump", "mariadb-dump"), ("mysql", "mariadb")] {
        let real = common::servers::maria_bin(real);
        std::os::unix::fs::symlink(real, tools.join(name)).unwrap();
    }
    let run = |args: &[&str]| {
        let out = common::custodian_cmd()
            .arg("--json")
            .arg("--config")
            .arg(ws.config_path())
            .args(args)
            .env("PATH", &tools)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        common::reply(&out)["data"].clone()
    };
    let backup = run(&["backup"]);
    assert_eq!(backup[0]["status"], "succeeded", "{backup:#}");
    let out = ws.restic(
        "local",
        &["dump", "latest", "/custodian/shop/manifest.json"],
    );
    assert_success(&out, "restic dump");
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        manifest["streams"].as_array().is_none_or(Vec::is_empty),
        "{manifest:#}"
    );
    assert_eq!(
        manifest["files"].as_array().unwrap().len(),
        1,
        "{manifest:#}"
    );
    assert!(
        manifest["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["mode"] == "full" && t["checksum"].is_string()),
        "{manifest:#}"
    );
    // Restored with MySQL's client, and with MariaDB's (as an old backup is, today).
    for (target, with_mysql_tools) in [("single_a", true), ("single_b", false)] {
        let args = [
            "restore",
            "--snapshot",
            "latest",
            "--target",
            &server.url(target),
        ];
        let out = if with_mysql_tools {
            run(&args)
        } else {
            ws.custodian_json(&args, 0)
        };
        assert_eq!(out["verification"]["status"], "verified", "{out:#}");
        assert_same_dump(&server.dump_sql("single"), &server.dump_sql(target), target);
    }
}
