//! Crash consistency: Custodian killed with SIGKILL at seeded random moments during backup, copy
//! and prune (`CUSTODIAN_CRASH_TRIALS`, default 20). After every kill the next run must succeed;
//! at the end every repository passes `restic check --read-data`, no snapshot committed before
//! a kill is lost, no run is left `running`, and the audit chain verifies.

use crate::common;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Workspace, assert_success, sqlite};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn backup_ids(ws: &Workspace, location: &str) -> BTreeSet<String> {
    ws.restic_snapshots(location)
        .iter()
        .filter(|s| {
            s["tags"]
                .as_array()
                .is_some_and(|t| !t.iter().any(|t| t == "custodian-pending"))
        })
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn sigkill_at_random_points_loses_and_corrupts_nothing() {
    let trials: u32 = std::env::var("CUSTODIAN_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let ws = Workspace::new();
    // A CRM big enough that a backup takes a noticeable moment.
    std::fs::remove_file(ws.path("crm.sqlite")).unwrap();
    common::make_crm(&ws.path("crm.sqlite"), 40_000);
    ws.custodian_json(&["init"], 0);
    ws.custodian_json(&["backup"], 0);
    let mut rng = StdRng::seed_from_u64(0x5eed_c0de);
    let mut outcomes = std::collections::BTreeMap::<String, u32>::new();
    for trial in 0..trials {
        let committed_before = backup_ids(&ws, "local");
        sqlite(
            &ws.path("crm.sqlite"),
            &format!(
                "UPDATE deals SET amount = amount + {trial} WHERE id % 97 = {};",
                trial % 97
            ),
        );
        let command = ["backup", "copy", "prune"][rng.random_range(0..3usize)];
        let args: Vec<&str> = match command {
            "prune" => vec!["prune", "--apply"],
            other => vec![other],
        };
        let delay = Duration::from_millis(rng.random_range(0..1500));
        let mut child = common::custodian_cmd()
            .arg("--config")
            .arg(ws.config_path())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let finished_first = loop {
            if child.try_wait().unwrap().is_some() {
                break true;
            }
            if started.elapsed() >= delay {
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        *outcomes
            .entry(format!(
                "{command} {}",
                if finished_first { "finished" } else { "killed" }
            ))
            .or_default() += 1;

        // The next run succeeds (stale locks are no obstacle) and nothing committed is lost.
        let next = ws.custodian_json(&["backup"], 0);
        assert_eq!(
            next[0]["status"], "succeeded",
            "trial {trial} ({command}): {next:#}"
        );
        let committed_after = backup_ids(&ws, "local");
        assert!(
            committed_before.is_subset(&committed_after),
            "trial {trial} ({command} killed after {delay:?}) lost snapshots: {:?}",
            committed_before
                .difference(&committed_after)
                .collect::<Vec<_>>()
        );
    }
    eprintln!("crash trials: {trials}; {outcomes:?}");
    assert!(
        outcomes.keys().any(|k| k.ends_with("killed")),
        "some trials must actually kill: {outcomes:?}"
    );
    for location in ["local", "offsite"] {
        assert_success(
            &ws.restic(location, &["check", "--read-data"]),
            &format!("restic check --read-data {location}"),
        );
    }
    let running = sqlite(
        &ws.path("state/catalog.db"),
        "SELECT count(*) FROM runs WHERE outcome = 'running';",
    );
    assert_eq!(running.trim(), "0");
    let interrupted: u32 = sqlite(
        &ws.path("state/catalog.db"),
        "SELECT count(*) FROM runs WHERE outcome = 'interrupted';",
    )
    .trim()
    .parse()
    .unwrap();
    let killed: u32 = outcomes
        .iter()
        .filter(|(k, _)| k.ends_with("killed"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        interrupted <= killed && (killed == 0 || interrupted > 0),
        "{interrupted} interrupted, {killed} killed"
    );
    let audit = ws.custodian_json(&["audit", "verify"], 0);
    assert_eq!(audit["ok"], true, "{audit:#}");
}
