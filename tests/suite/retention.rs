//! Retention: keep rules per source plus a hard maximum age; dry runs change nothing; only
//! Custodian's own backups are ever removed; prune leaves a sound repository.

use crate::common;

use common::{Workspace, assert_success};

#[test]
fn forget_and_prune_apply_keep_rules_and_the_maximum_age() {
    let ws = Workspace::new();
    ws.write_config(&format!(
        "{}\n[retention]\nkeep-last = 2\nmax-age = \"30d\"\n",
        common::default_config()
    ));
    ws.custodian_json(&["init"], 0);
    for i in 0..3 {
        common::sqlite(
            &ws.path("crm.sqlite"),
            &format!("UPDATE deals SET amount = {i};"),
        );
        ws.custodian_json(&["backup"], 0);
    }
    // A backup older than the maximum age, and a restic user's own snapshot.
    let old = ws.path("old.sqlite");
    std::fs::write(&old, b"an old dump").unwrap();
    let out = ws.restic(
        "local",
        &[
            "backup",
            "--host",
            "test-host",
            "--tag",
            "custodian,source:crm,engine:sqlite",
            "--time",
            "2020-01-01 00:00:00",
            old.to_str().unwrap(),
        ],
    );
    assert_success(&out, "restic backup (old)");
    let out = ws.restic(
        "local",
        &["backup", "--host", "elsewhere", old.to_str().unwrap()],
    );
    assert_success(&out, "restic backup (foreign)");
    assert_eq!(ws.restic_snapshots("local").len(), 5);

    let dry = ws.custodian_json(&["forget", "--location", "local"], 0);
    let plan = &dry[0]["plan"];
    assert_eq!(plan["keep"].as_array().unwrap().len(), 2);
    let reasons: Vec<&str> = plan["remove"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "{plan:#}");
    assert!(
        reasons.contains(&"older than the retention maximum (max-age)"),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"not kept by any keep rule"),
        "{reasons:?}"
    );
    assert_eq!(
        ws.restic_snapshots("local").len(),
        5,
        "a dry run deletes nothing"
    );

    let pruned = ws.custodian_json(&["prune", "--location", "local", "--apply"], 0);
    assert!(pruned[0]["error"].is_null(), "{pruned:#}");
    assert_eq!(pruned[0]["prune"]["applied"], true);
    let left = ws.restic_snapshots("local");
    assert_eq!(
        left.len(),
        3,
        "two backups kept, the foreign snapshot untouched"
    );
    assert!(left.iter().any(|s| s["hostname"] == "elsewhere"));
    assert_success(
        &ws.restic("local", &["check", "--read-data"]),
        "restic check after prune",
    );
    // The kept backups still restore.
    let out = ws.custodian_json(
        &[
            "restore",
            "--location",
            "local",
            "--snapshot",
            "latest",
            "--to",
            ws.path("r.sqlite").to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(out["verification"]["status"], "verified");
    let runs = ws.custodian_json(&["runs"], 0);
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "prune" && r["outcome"] == "succeeded")
    );
}

#[test]
fn without_rules_everything_is_kept() {
    let ws = Workspace::new();
    ws.custodian_json(&["init"], 0);
    ws.custodian_json(&["backup"], 0);
    let dry = ws.custodian_json(&["forget"], 0);
    for location in dry.as_array().unwrap() {
        assert!(location["plan"]["remove"].as_array().unwrap().is_empty());
        assert_eq!(location["plan"]["keep"].as_array().unwrap().len(), 1);
    }
}
