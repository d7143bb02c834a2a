//! The real restic CLI is the oracle: what Custodian writes, restic can list, check and restore
//! byte for byte; what restic writes, Custodian can read.

use crate::common;

use std::fs;

use common::{Workspace, assert_success, restic, sha256_file, stdout};

#[test]
fn restic_lists_checks_dumps_and_restores_what_custodian_wrote() {
    let ws = Workspace::new();
    ws.custodian_json(&["init"], 0);
    let backup = ws.custodian_json(&["backup"], 0);
    let snap = &backup[0]["snapshot"];
    let snapshot_id = snap["id"].as_str().unwrap().to_string();

    // restic check --read-data on both locations.
    for location in ["local", "offsite"] {
        let out = ws.restic(location, &["check", "--read-data"]);
        assert_success(&out, &format!("restic check --read-data ({location})"));
        assert!(
            stdout(&out).contains("no errors were found"),
            "{}",
            stdout(&out)
        );
    }

    // The naming convention is visible to restic users.
    let snaps = ws.restic_snapshots("local");
    assert_eq!(snaps.len(), 1, "{snaps:#?}");
    let s = &snaps[0];
    assert_eq!(s["id"].as_str().unwrap(), snapshot_id);
    assert_eq!(s["hostname"], "test-host");
    assert_eq!(s["paths"], serde_json::json!(["/custodian/crm"]));
    let tags: Vec<&str> = s["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tags, ["custodian", "engine:sqlite", "source:crm"]);

    // The copy in the other location records its original.
    let copies = ws.restic_snapshots("offsite");
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0]["original"].as_str().unwrap(), snapshot_id);

    // restic dump yields exactly the file described by the manifest.
    let manifest = ws.restic("local", &["dump", "latest", "/custodian/crm/manifest.json"]);
    assert_success(&manifest, "restic dump manifest");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    assert_eq!(manifest["engine"], "sqlite");
    assert_eq!(manifest["source"], "crm");
    let file = &manifest["files"][0];
    assert_eq!(file["name"], "crm.sqlite");
    let dumped = ws.restic("offsite", &["dump", "latest", "/custodian/crm/crm.sqlite"]);
    assert_success(&dumped, "restic dump database");
    assert_eq!(dumped.stdout.len() as u64, file["size"].as_u64().unwrap());
    let dumped_path = ws.path("dumped.sqlite");
    fs::write(&dumped_path, &dumped.stdout).unwrap();
    assert_eq!(sha256_file(&dumped_path), file["sha256"].as_str().unwrap());

    // restic restore --verify writes the whole file (trap 6: sizes are in the tree).
    let target = ws.path("restored");
    for location in ["local", "offsite"] {
        let out = ws.restic(
            location,
            &[
                "restore",
                "latest",
                "--target",
                target.to_str().unwrap(),
                "--verify",
            ],
        );
        assert_success(&out, "restic restore --verify");
        let restored = target.join("custodian/crm/crm.sqlite");
        assert_eq!(sha256_file(&restored), file["sha256"].as_str().unwrap());
        // The restored database has the rows the manifest promises.
        let count = common::sqlite(&restored, "SELECT count(*) FROM contacts;");
        let expected = manifest["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "contacts")
            .unwrap()["rows"]
            .as_u64()
            .unwrap();
        assert_eq!(count.trim(), expected.to_string());
        fs::remove_dir_all(&target).unwrap();
    }
}

#[test]
fn custodian_reads_and_writes_repositories_made_by_restic() {
    let ws = Workspace::new();
    // restic creates both repositories and stores an ordinary file backup in one.
    for location in ["local", "offsite"] {
        let out = ws.restic(location, &["init"]);
        assert_success(&out, "restic init");
    }
    let data = ws.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("hello.txt"), "hello from restic").unwrap();
    let out = ws.restic("local", &["backup", data.to_str().unwrap()]);
    assert_success(&out, "restic backup");

    // Custodian opens them (init reports them as existing) and lists restic's snapshot.
    let init = ws.custodian_json(&["init"], 0);
    assert!(
        init.as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "exists"),
        "{init:#?}"
    );
    let listed = ws.custodian_json(&["snapshots", "--location", "local"], 0);
    let snaps = listed[0]["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 1);
    assert!(
        snaps[0]["source"].is_null(),
        "a restic snapshot is not a Custodian backup"
    );

    // Custodian backs up into restic's repository; restic's own snapshot is never copied.
    let backup = ws.custodian_json(&["backup"], 0);
    assert_eq!(
        backup[0]["copies"][0]["copied"].as_array().unwrap().len(),
        1
    );
    assert_eq!(ws.restic_snapshots("offsite").len(), 1);
    assert_eq!(ws.restic_snapshots("local").len(), 2);
    for location in ["local", "offsite"] {
        assert_success(
            &ws.restic(location, &["check", "--read-data"]),
            "restic check",
        );
    }
    // And restic can still restore its own file after Custodian wrote to the repository.
    let own = ws
        .restic_snapshots("local")
        .into_iter()
        .find(|s| s["tags"].is_null())
        .expect("restic's own snapshot");
    let id = own["short_id"].as_str().unwrap().to_string();
    let file = format!("{}/hello.txt", data.display());
    let out = restic(&ws.repo("local"), &ws.key("local"), &["dump", &id, &file]);
    assert_success(&out, "restic dump of restic's own snapshot");
    assert_eq!(stdout(&out), "hello from restic");
}

/// The README's plain-restic commands, in a repository holding two sources: `latest` alone is
/// the newest snapshot of any source; `--path /custodian/<source>` (or `--tag source:<source>`)
/// picks the right one.
#[test]
fn the_readme_restic_commands_pick_the_right_source() {
    let ws = Workspace::new();
    common::make_crm(&ws.path("billing.sqlite"), 40);
    ws.write_config(&format!(
        "{}\n[source.billing]\nkind = \"sqlite\"\npath = \"billing.sqlite\"\nlocations = [\"local\"]\n",
        common::default_config()
    ));
    ws.custodian_json(&["init"], 0);
    ws.custodian_json(&["backup", "--source", "crm"], 0);
    // The other source's backup is the newest snapshot of the repository.
    ws.custodian_json(&["backup", "--source", "billing"], 0);

    let listed = ws.restic("local", &["snapshots", "--tag", "source:crm", "--json"]);
    assert_success(&listed, "restic snapshots --tag");
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["paths"], serde_json::json!(["/custodian/crm"]));

    let wrong = ws.restic("local", &["dump", "latest", "/custodian/crm/crm.sqlite"]);
    assert!(
        !wrong.status.success(),
        "without --path, latest is billing's snapshot, which has no crm.sqlite"
    );
    let dumped = ws.restic(
        "local",
        &[
            "dump",
            "--path",
            "/custodian/crm",
            "latest",
            "/custodian/crm/crm.sqlite",
        ],
    );
    assert_success(&dumped, "restic dump --path");
    let path = ws.path("dumped.sqlite");
    fs::write(&path, &dumped.stdout).unwrap();
    assert_eq!(
        common::sqlite(&path, "SELECT count(*) FROM contacts;").trim(),
        "300"
    );
    let target = ws.path("restored");
    let out = ws.restic(
        "local",
        &[
            "restore",
            "latest",
            "--path",
            "/custodian/crm",
            "--target",
            target.to_str().unwrap(),
            "--verify",
        ],
    );
    assert_success(&out, "restic restore --path --verify");
    assert!(target.join("custodian/crm/crm.sqlite").exists());
    assert!(!target.join("custodian/billing").exists());
}
