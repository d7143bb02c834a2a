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
    assert!(
        text.contains("CREATE TABLE `contacts`") && text.contains("deals_touch"),
        "schema, trigger"
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
