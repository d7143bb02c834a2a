//! Copies between locations (independent repositories, idempotent, catching up after an
//! outage) and verified restores (from any location, never over an existing file by accident,
//! never from damaged data).

use crate::common;

use std::fs;

use common::{Workspace, assert_success, sha256_file, stderr, stdout};

#[test]
fn copies_are_idempotent_and_recorded() {
    let ws = Workspace::new();
    ws.custodian_json(&["init"], 0);
    let backup = ws.custodian_json(&["backup"], 0);
    let copied = &backup[0]["copies"][0];
    assert_eq!(copied["to"], "offsite");
    assert_eq!(copied["copied"].as_array().unwrap().len(), 1);

    let again = ws.custodian_json(&["copy"], 0);
    assert_eq!(again[0]["copied"].as_array().unwrap().len(), 0);
    assert_eq!(again[0]["already_present"], 1);
    assert_eq!(ws.restic_snapshots("offsite").len(), 1);

    // Independent repositories: different ids and keys, same chunker (copies deduplicate).
    let init = ws.custodian_json(&["init"], 0);
    assert_ne!(init[0]["repository_id"], init[1]["repository_id"]);
    let cfg = |loc: &str| {
        let out = ws.restic(loc, &["cat", "config"]);
        assert_success(&out, "restic cat config");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(
        cfg("local")["chunker_polynomial"],
        cfg("offsite")["chunker_polynomial"]
    );

    let runs = ws.custodian_json(&["runs"], 0);
    let copies: Vec<_> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "copy")
        .collect();
    assert_eq!(copies.len(), 2);
    assert!(
        copies
            .iter()
            .all(|r| r["outcome"] == "succeeded" && r["target"] == "offsite")
    );
}

#[test]
fn a_location_that_was_down_catches_up() {
    let ws = Workspace::new();
    ws.custodian_json(&["init"], 0);
    ws.custodian_json(&["backup"], 0);
    fs::rename(ws.repo("offsite"), ws.path("repos/offsite.away")).unwrap();
    common::sqlite(
        &ws.path("crm.sqlite"),
        "UPDATE deals SET amount = amount + 1 WHERE id = 1;",
    );

    // The backup itself succeeds; the copy fails, is recorded, and the command says so.
    let report = ws.custodian_json(&["backup"], 1);
    assert_eq!(report[0]["status"], "succeeded");
    assert_eq!(report[0]["copies"][0]["status"], "failed");
    assert_eq!(report[0]["copies"][0]["error_code"], "repo.not_initialized");

    fs::rename(ws.path("repos/offsite.away"), ws.repo("offsite")).unwrap();
    let copy = ws.custodian_json(&["copy"], 0);
    assert_eq!(copy[0]["copied"].as_array().unwrap().len(), 1);
    assert_eq!(copy[0]["already_present"], 1);
    let local: Vec<_> = ws
        .restic_snapshots("local")
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    let mut originals: Vec<_> = ws
        .restic_snapshots("offsite")
        .iter()
        .map(|s| s["original"].clone())
        .collect();
    originals.sort_by_key(ToString::to_string);
    let mut local = local;
    local.sort_by_key(ToString::to_string);
    assert_eq!(
        local, originals,
        "every backup exists once in each location"
    );
}

#[test]
fn restores_are_verified_and_never_overwrite_by_accident() {
    let ws = Workspace::new();
    ws.custodian_json(&["init"], 0);
    let backup = ws.custodian_json(&["backup"], 0);
    let backup_id = backup[0]["snapshot"]["backup_id"]
        .as_str()
        .unwrap()
        .to_string();
    let target = ws.path("restored.sqlite");
    let target_str = target.to_str().unwrap();

    let report = ws.custodian_json(&["restore", "--snapshot", "latest", "--to", target_str], 0);
    assert_eq!(report["verification"]["status"], "verified");
    assert_eq!(report["location"], "local");
    let rows = common::sqlite(&target, "SELECT count(*) FROM contacts;");
    let expected = report["verification"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "contacts")
        .unwrap()["rows"]
        .as_u64()
        .unwrap();
    assert_eq!(rows.trim(), expected.to_string());
    assert_eq!(
        sha256_file(&target),
        report["verification"]["file_sha256"].as_str().unwrap()
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&target).unwrap().permissions());
    assert_eq!(
        mode & 0o077,
        0,
        "a restored database is private to its owner"
    );

    let out = ws.custodian(&["restore", "--snapshot", "latest", "--to", target_str]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));

    // From the copy, addressed by the backup id (a prefix is enough), replacing the file.
    let report = ws.custodian_json(
        &[
            "restore",
            "--location",
            "offsite",
            "--snapshot",
            &backup_id[..10],
            "--to",
            target_str,
            "--force",
        ],
        0,
    );
    assert_eq!(report["verification"]["status"], "verified");
    assert_eq!(report["backup_id"], backup_id.as_str());
    assert_ne!(report["snapshot_id"], backup_id.as_str());
}

#[test]
fn damaged_data_is_found_by_check_and_never_restored() {
    let ws = Workspace::new();
    ws.custodian_json(&["init"], 0);
    ws.custodian_json(&["backup"], 0);
    // Flip bytes in the middle of the largest pack of the primary location.
    let mut packs: Vec<_> = walk(&ws.repo("local").join("data"));
    packs.sort_by_key(|p| fs::metadata(p).unwrap().len());
    let pack = packs.last().unwrap();
    let original = fs::read(pack).unwrap();
    let mut bytes = original.clone();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0x5a;
    }
    let mut perms = fs::metadata(pack).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(pack, perms).unwrap();
    fs::write(pack, bytes).unwrap();

    let check = ws.custodian_json(
        &["check", "--location", "local", "--read-data-subset", "all"],
        1,
    );
    assert_eq!(check[0]["status"], "damaged");
    assert_eq!(check[0]["error_code"], "check.found_errors");
    assert!(!check[0]["errors"].as_array().unwrap().is_empty());
    // One sentence naming the location and the pack, with what to do; never the library's
    // chain or a backtrace, whatever RUST_BACKTRACE says.
    let name = pack.file_name().unwrap().to_string_lossy().to_string();
    let sentence = check[0]["errors"][0].as_str().unwrap();
    assert!(
        sentence.starts_with(&format!("location local: pack {} is damaged", &name[..8]))
            && sentence.contains("restore from another location"),
        "{sentence}"
    );
    let mut cmd = common::custodian_cmd();
    cmd.arg("--config")
        .arg(ws.config_path())
        .args(["check", "--location", "local", "--read-data-subset", "all"])
        .env("RUST_BACKTRACE", "1");
    for out in [cmd.output().unwrap(), {
        let mut json = common::custodian_cmd();
        json.arg("--config")
            .arg(ws.config_path())
            .args([
                "--json",
                "check",
                "--location",
                "local",
                "--read-data-subset",
                "all",
            ])
            .env("RUST_BACKTRACE", "1");
        json.output().unwrap()
    }] {
        assert_eq!(out.status.code(), Some(1));
        let text = format!("{}{}", stdout(&out), stderr(&out));
        for noise in [
            "Caused by",
            "Backtrace",
            "nonce",
            "aead::Error",
            "rustic_core::",
        ] {
            assert!(!text.contains(noise), "{noise} in:\n{text}");
        }
    }

    // From now on the location is damaged: status says so and exits 1, until a check that
    // reads the damaged pack again passes. A structural check does not clear it.
    let status = ws.custodian_json(&["status"], 1);
    let local = &status["locations"][0];
    assert_eq!(local["name"], "local");
    assert_eq!(local["damage"][0]["pack"].as_str().unwrap(), &name[..8]);
    ws.custodian_json(&["check", "--location", "local"], 0);
    ws.custodian_json(&["status"], 1);
    let structural = ws.custodian_json(
        &[
            "check",
            "--location",
            "offsite",
            "--read-data-subset",
            "all",
        ],
        0,
    );
    assert_eq!(
        structural[0]["status"], "ok",
        "the copy is an independent repository"
    );

    let target = ws.path("restored.sqlite");
    let out = ws.custodian(&[
        "restore",
        "--location",
        "local",
        "--snapshot",
        "latest",
        "--to",
        target.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!target.exists(), "damaged data must never reach the target");
    let leftovers: Vec<_> = fs::read_dir(ws.root())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".custodian-restore-")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files are removed");

    let report = ws.custodian_json(
        &[
            "restore",
            "--location",
            "offsite",
            "--snapshot",
            "latest",
            "--to",
            target.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(report["verification"]["status"], "verified");

    // Repaired (the pack's bytes are back): a check that reads it passes and clears the damage.
    fs::write(pack, &original).unwrap();
    ws.custodian_json(
        &["check", "--location", "local", "--read-data-subset", "all"],
        0,
    );
    let status = ws.custodian_json(&["status"], 0);
    assert!(
        status["locations"][0]["damage"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
