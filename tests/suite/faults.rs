//! Faults around Custodian: a full local disk fails the backup with a clear error and leaves
//! the repository usable (the next backup succeeds once there is room); a table dropped between
//! two backups is simply absent from the next manifest and the restore matches it.

use crate::common;

use std::process::Command;

use common::{Workspace, assert_success, sqlite};

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &std::path::Path, size: &str) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the full-disk test mounts a tmpfs and needs root (scripts/test-all runs as root or through sudo)"
        );
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .unwrap();
        assert_success(&out, "mount tmpfs");
        Self(path.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert_success(&out, "remount tmpfs");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_clearly_and_the_repository_stays_usable() {
    let ws = Workspace::new();
    std::fs::remove_file(ws.path("crm.sqlite")).unwrap();
    common::make_crm(&ws.path("crm.sqlite"), 40_000);
    // The local location lives on a disk with room for the repository, not for the backup.
    let disk = Tmpfs::mount(&ws.path("repos"), "700k");
    ws.custodian_json(&["init"], 0);
    let before = ws.restic_snapshots("local").len();

    let report = ws.custodian_json(&["backup"], 1);
    assert_eq!(report[0]["status"], "failed", "{report:#}");
    let error = report[0]["error"].as_str().unwrap();
    assert!(error.contains("location local"), "{error}");
    assert!(error.to_lowercase().contains("no space left"), "{error}");
    let runs = ws.custodian_json(&["runs"], 0);
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "backup" && r["outcome"] == "failed"),
        "{runs:#}"
    );
    // Nothing half-written is referenced: restic finds the repository sound and unchanged.
    assert_success(
        &ws.restic("local", &["check"]),
        "restic check on a full disk",
    );
    assert_eq!(ws.restic_snapshots("local").len(), before);

    // Room again: the next backup succeeds and every byte reads back.
    disk.resize("64m");
    let report = ws.custodian_json(&["backup"], 0);
    assert_eq!(report[0]["status"], "succeeded", "{report:#}");
    assert_success(
        &ws.restic("local", &["check", "--read-data"]),
        "restic check --read-data after the disk grew",
    );
    drop(disk);
}

#[test]
fn a_table_dropped_between_backups_is_absent_from_the_next_one() {
    let ws = Workspace::new();
    ws.custodian_json(&["init"], 0);
    let first = ws.custodian_json(&["backup"], 0);
    assert_eq!(first[0]["tables"], 3, "{first:#}");
    sqlite(&ws.path("crm.sqlite"), "DROP TABLE deals;");
    let second = ws.custodian_json(&["backup"], 0);
    assert_eq!(second[0]["status"], "succeeded", "{second:#}");
    assert_eq!(second[0]["tables"], 2, "{second:#}");
    // Each restore matches its own manifest: the old one still has the table.
    let old = ws.path("old.sqlite");
    let new = ws.path("new.sqlite");
    let first_id = first[0]["snapshot"]["backup_id"].as_str().unwrap();
    let r = ws.custodian_json(
        &[
            "restore",
            "--snapshot",
            first_id,
            "--to",
            old.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(r["verification"]["status"], "verified");
    let r = ws.custodian_json(
        &[
            "restore",
            "--snapshot",
            "latest",
            "--to",
            new.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(r["verification"]["status"], "verified");
    assert_eq!(sqlite(&old, "SELECT count(*) FROM deals;").trim(), "150");
    assert!(
        !sqlite(&new, "SELECT name FROM sqlite_master WHERE type = 'table';").contains("deals")
    );
}
