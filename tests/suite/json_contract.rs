//! The JSON contract beyond what the other tests see: `--version --json`, usage errors and
//! `--json --progress` events, each checked against docs/schema/ (every other command's
//! envelope is checked by `common::reply` wherever a test runs it).

use crate::common;

use common::{Workspace, custodian_cmd, schema};

#[test]
fn version_usage_errors_and_progress_events_follow_the_contract() {
    let out = custodian_cmd()
        .args(["--version", "--json"])
        .output()
        .unwrap();
    let v = common::reply(&out);
    assert_eq!(v["command"], "version");
    assert_eq!(v["data"]["restic_repository_format"], 2);
    assert!(v["data"]["commit"].as_str().is_some_and(|c| !c.is_empty()));

    // A usage error is an envelope too, naming the command it was meant for.
    let out = custodian_cmd()
        .args(["--json", "restore", "--snapshot", "latest"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v = common::reply(&out);
    assert_eq!(v["command"], "restore");
    assert_eq!(v["error"]["code"], "usage");
    assert!(
        v["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("custodian restore --help"),
        "{v:#}"
    );

    // Progress: NDJSON events first, then the envelope as the last line.
    let ws = Workspace::new();
    std::fs::remove_file(ws.path("crm.sqlite")).unwrap();
    common::make_crm(&ws.path("crm.sqlite"), 30_000);
    ws.custodian_json(&["init"], 0);
    let out = ws.custodian(&["--json", "--progress", "backup"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2, "events and an envelope: {text}");
    for line in &lines[..lines.len() - 1] {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        schema::check("progress-event", &event);
    }
    let last: serde_json::Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
    assert_eq!(last["ok"], true);
    schema::check_envelope(&last);
    let phases: Vec<String> = lines[..lines.len() - 1]
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| e["progress"]["phase"].as_str().map(str::to_string))
        .collect();
    assert!(
        phases.iter().any(|p| p.contains("crm")),
        "a phase names the source: {phases:?}"
    );
}

/// On a terminal a backup draws its progress (phase, bytes of the total, rate, ETA); without
/// one nothing is drawn.
#[test]
fn a_terminal_shows_progress_and_a_pipe_does_not() {
    let ws = Workspace::new();
    std::fs::remove_file(ws.path("crm.sqlite")).unwrap();
    common::make_crm(&ws.path("crm.sqlite"), 60_000);
    ws.custodian_json(&["init"], 0);
    let log = ws.path("pty.log");
    // util-linux's script(1) gives the command a pseudo-terminal and records what it drew.
    let command = format!(
        "{} --config {} backup",
        env!("CARGO_BIN_EXE_custodian"),
        ws.config_path().display()
    );
    let out = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &command])
        .arg(&log)
        .output()
        .expect("script (util-linux)");
    assert!(out.status.success(), "{}", common::stderr(&out));
    let drawn = std::fs::read_to_string(&log).unwrap();
    assert!(drawn.contains("backing up crm"), "{drawn}");
    assert!(drawn.contains("ETA"), "{drawn}");
    assert!(drawn.contains(" MiB/"), "bytes of a known total: {drawn}");
    let plain = ws.custodian(&["backup"]);
    assert!(plain.status.success());
    let stderr = common::stderr(&plain);
    assert!(!stderr.contains("ETA"), "{stderr}");
}
