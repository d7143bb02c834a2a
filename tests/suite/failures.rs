//! Bad input and failures: a failed dump never becomes a snapshot and is recorded; a wrong
//! password is a clear error that changes nothing; a killed backup is recorded as interrupted
//! and leaves the repository consistent; leftovers of an interrupted backup are discarded.

use crate::common;

use std::fs;
use std::process::Stdio;
use std::time::Duration;

use common::{Workspace, assert_success, stderr};

fn last_run(ws: &Workspace, kind: &str) -> serde_json::Value {
    let runs = ws.custodian_json(&["runs", "--limit", "50"], 0);
    runs.as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == kind)
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} run in {runs:#?}"))
}

#[test]
fn a_failed_dump_commits_no_snapshot_and_is_recorded() {
    let ws = Workspace::new();
    ws.custodian_json(&["init"], 0);
    fs::write(
        ws.path("crm.sqlite"),
        b"this is not a SQLite database, just bytes",
    )
    .unwrap();
    let report = ws.custodian_json(&["backup"], 1);
    assert_eq!(report[0]["status"], "failed");
    assert!(report[0]["snapshot"].is_null());
    let code = report[0]["error_code"].as_str().unwrap();
    assert!(code.starts_with("source."), "{code}");
    assert!(
        report[0]["error"].as_str().unwrap().contains("source crm"),
        "{report:#?}"
    );

    for location in ["local", "offsite"] {
        assert!(
            ws.restic_snapshots(location).is_empty(),
            "no snapshot may exist in {location}"
        );
        assert_success(&ws.restic(location, &["check"]), "restic check");
    }
    let run = last_run(&ws, "backup");
    assert_eq!(run["outcome"], "failed");
    assert_eq!(run["error_code"].as_str().unwrap(), code);
}

#[test]
fn a_wrong_password_is_a_clear_error_and_changes_nothing() {
    let ws = Workspace::new();
    ws.custodian_json(&["init"], 0);
    ws.custodian_json(&["backup"], 0);
    let good = fs::read_to_string(ws.key("local")).unwrap();
    ws.write_key("local", "not the password");

    let out = ws.custodian(&["backup"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("location local: the password does not open the repository"),
        "{err}"
    );
    assert!(
        !err.contains("not the password"),
        "the password must never be printed: {err}"
    );
    let run = last_run(&ws, "backup");
    assert_eq!(run["outcome"], "failed");
    assert_eq!(run["error_code"], "repo.wrong_password");

    // Nothing changed: the right password still sees exactly the first backup.
    ws.write_key("local", good.trim());
    assert_eq!(ws.restic_snapshots("local").len(), 1);
    assert_success(
        &ws.restic("local", &["check", "--read-data"]),
        "restic check",
    );
}

#[test]
fn a_missing_repository_says_to_run_init() {
    let ws = Workspace::new();
    let out = ws.custodian(&["backup"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("there is no restic repository at"), "{err}");
    assert!(err.contains("run `custodian init`"), "{err}");
}

#[test]
fn unknown_names_on_the_command_line_are_usage_errors() {
    let ws = Workspace::new();
    ws.custodian_json(&["init"], 0);
    let out = ws.custodian(&["backup", "--source", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("source `nope` is not defined"),
        "{}",
        stderr(&out)
    );
    let out = ws.custodian(&["check", "--read-data-subset", "lots"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn pending_leftovers_are_never_copied_and_are_discarded_by_the_next_backup() {
    let ws = Workspace::new();
    ws.custodian_json(&["init"], 0);
    // What a backup killed between writing and committing leaves behind.
    let junk = ws.path("partial.sqlite");
    fs::write(&junk, b"half a dump").unwrap();
    let out = ws.restic(
        "local",
        &[
            "backup",
            "--host",
            "test-host",
            "--tag",
            "custodian,source:crm,engine:sqlite,custodian-pending",
            junk.to_str().unwrap(),
        ],
    );
    assert_success(&out, "restic backup");

    let copy = ws.custodian_json(&["copy"], 0);
    assert_eq!(copy[0]["copied"].as_array().unwrap().len(), 0);
    assert!(ws.restic_snapshots("offsite").is_empty());
    let restore = ws.custodian(&[
        "restore",
        "--snapshot",
        "latest",
        "--to",
        ws.path("x.sqlite").to_str().unwrap(),
    ]);
    assert_eq!(
        restore.status.code(),
        Some(1),
        "a pending snapshot is never restored"
    );

    let backup = ws.custodian_json(&["backup"], 0);
    assert_eq!(backup[0]["discarded_pending"].as_array().unwrap().len(), 1);
    let snaps = ws.restic_snapshots("local");
    assert_eq!(snaps.len(), 1);
    assert!(!snaps[0]["tags"].to_string().contains("pending"));
}

#[test]
fn a_killed_backup_is_recorded_and_the_next_one_succeeds() {
    let ws = Workspace::new();
    // Big enough (~60 MiB) that the kill lands while the backup is working.
    common::sqlite(
        &ws.path("crm.sqlite"),
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 200000)
         INSERT INTO contacts (id, company_id, name, email, notes, photo)
         SELECT 1000 + x, 1, 'contact ' || x, 'c' || x || '@example.org', hex(randomblob(100)), NULL FROM n;",
    );
    ws.custodian_json(&["init"], 0);
    let mut child = common::custodian_cmd()
        .args(["--config", ws.config_path().to_str().unwrap(), "backup"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    child.kill().unwrap();
    child.wait().unwrap();

    // The next invocation records the killed run and succeeds.
    let report = ws.custodian_json(&["backup"], 0);
    assert_eq!(report[0]["status"], "succeeded");
    let runs = ws.custodian_json(&["runs", "--limit", "50"], 0);
    let runs = runs.as_array().unwrap();
    assert!(runs.iter().all(|r| r["outcome"] != "running"), "{runs:#?}");
    for location in ["local", "offsite"] {
        assert_success(
            &ws.restic(location, &["check", "--read-data"]),
            "restic check",
        );
        let snaps = ws.restic_snapshots(location);
        assert!(
            snaps
                .iter()
                .all(|s| !s["tags"].to_string().contains("pending")),
            "{snaps:#?}"
        );
    }
    // Whatever the kill interrupted shows as interrupted (never silently lost), unless the
    // first backup finished before the kill.
    let first = runs.iter().rfind(|r| r["kind"] == "backup").unwrap();
    assert!(
        first["outcome"] == "interrupted" || first["outcome"] == "succeeded",
        "{first:#?}"
    );
}

/// Under systemd (stderr is the journal stream `JOURNAL_STREAM` names), every log line starts
/// with its syslog priority, so `journalctl -p err` finds the errors; elsewhere it does not.
#[test]
fn under_the_journal_log_lines_carry_their_priority() {
    let ws = Workspace::new();
    ws.custodian_json(&["init"], 0);
    fs::write(ws.path("crm.sqlite"), b"not a database").unwrap();
    let log = ws.path("journal.log");
    let run = |journal: bool| {
        let script = format!(
            "{} exec \"$0\" -v --config \"$1\" backup 2>\"$2\"",
            if journal {
                // What systemd does: the device and inode of the stream it gave as stderr.
                "exec 2>\"$2\"; export JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2);"
            } else {
                ""
            }
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .arg(env!("CARGO_BIN_EXE_custodian"))
            .arg(ws.config_path())
            .arg(&log)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        fs::read_to_string(&log).unwrap()
    };
    let text = run(true);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("custodian:"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<3>") && l.contains("backup failed")),
        "{text}"
    );
    assert!(lines.iter().any(|l| l.starts_with("<6>")), "{text}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with('<') || l.starts_with(' ')),
        "every log line has a priority: {text}"
    );
    // No timestamp of its own: the journal adds one.
    assert!(!text.contains("Z ERROR"), "{text}");
    let plain = run(false);
    assert!(!plain.contains("<3>"), "{plain}");
    assert!(plain.contains("ERROR"), "{plain}");
}
