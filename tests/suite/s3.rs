//! S3 locations against real S3-compatible servers started by the tests: backups straight to
//! S3, copies both ways, restic reading the bucket, Object Lock (retention on every object,
//! locked versions that cannot be deleted, prune that never fails on them, retention extended),
//! a store that fails or goes away (retries, a recorded failure, catch-up), and clear errors.

use crate::common;

use common::s3::{ACCESS_KEY, Fault, FaultProxy, S3Server, SECRET_KEY, credential_files};
use common::{Workspace, assert_success, stderr};

fn s3_location(name: &str, endpoint: &str, bucket: &str, lock: Option<&str>) -> String {
    common::s3::location_config(name, endpoint, bucket, "custodian/crm", lock)
}

fn config(locations: &[&str], s3: &str, extra: &str) -> String {
    format!(
        r#"[custodian]
state-dir = "state"
hostname = "test-host"
{extra}
[source.crm]
kind = "sqlite"
path = "crm.sqlite"
locations = [{}]

[location.local]
kind = "local"
path = "repos/local"
password-file = "keys/local.key"
{s3}"#,
        locations
            .iter()
            .map(|l| format!("\"{l}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn workspace() -> Workspace {
    let ws = Workspace::new();
    credential_files(&ws.path("keys"));
    ws
}

/// restic pointed at the S3 repository.
fn restic_s3(ws: &Workspace, endpoint: &str, bucket: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(common::restic_bin())
        .arg("-r")
        .arg(format!("s3:{endpoint}/{bucket}/custodian/crm"))
        .arg("--password-file")
        .arg(ws.key("offsite"))
        .arg("--no-cache")
        .args(args)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env_remove("RESTIC_PASSWORD")
        .output()
        .unwrap()
}

#[test]
fn backups_go_straight_to_s3_and_copies_go_both_ways() {
    // moto: restic lists packs with an empty `delimiter=` parameter that s3s-fs mishandles.
    let server = S3Server::moto();
    server.create_bucket("crm-backups", false);
    let ws = workspace();
    let s3 = s3_location("offsite", &server.endpoint(), "crm-backups", None);
    // S3 as the primary: the backup streams straight into the bucket, the copy comes home.
    ws.write_config(&config(&["offsite", "local"], &s3, ""));
    let init = ws.custodian_json(&["init"], 0);
    assert!(
        init.as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "created"),
        "{init:#}"
    );
    let backup = ws.custodian_json(&["backup"], 0);
    assert_eq!(backup[0]["location"], "offsite");
    assert_eq!(backup[0]["copies"][0]["to"], "local");
    assert_eq!(
        backup[0]["copies"][0]["copied"].as_array().unwrap().len(),
        1
    );

    // restic reads the bucket: list, check every byte, restore the file whole.
    let out = restic_s3(
        &ws,
        &server.endpoint(),
        "crm-backups",
        &["snapshots", "--json"],
    );
    assert_success(&out, "restic snapshots on S3");
    let snaps: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert_success(
        &restic_s3(
            &ws,
            &server.endpoint(),
            "crm-backups",
            &["check", "--read-data"],
        ),
        "restic check on S3",
    );
    let target = ws.path("restored");
    let out = restic_s3(
        &ws,
        &server.endpoint(),
        "crm-backups",
        &[
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
            "--verify",
        ],
    );
    assert_success(&out, "restic restore from S3");
    assert_success(
        &ws.restic("local", &["check", "--read-data"]),
        "restic check local",
    );

    // Local as the primary: the next backup is copied to S3; copying again copies nothing.
    ws.write_config(&config(&["local", "offsite"], &s3, ""));
    common::sqlite(
        &ws.path("crm.sqlite"),
        "UPDATE deals SET amount = amount + 1;",
    );
    let backup = ws.custodian_json(&["backup"], 0);
    assert_eq!(backup[0]["copies"][0]["to"], "offsite");
    // The first backup came from S3: it is recognised there (as the original), not copied back.
    assert_eq!(
        backup[0]["copies"][0]["copied"].as_array().unwrap().len(),
        1
    );
    assert_eq!(backup[0]["copies"][0]["already_present"], 1);
    let again = ws.custodian_json(&["copy"], 0);
    assert_eq!(again[0]["copied"].as_array().unwrap().len(), 0);

    // A verified restore straight from S3.
    let out = ws.custodian_json(
        &[
            "restore",
            "--location",
            "offsite",
            "--snapshot",
            "latest",
            "--to",
            ws.path("r.sqlite").to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(out["verification"]["status"], "verified");
    let status = ws.custodian_json(&["status"], 0);
    assert!(
        status["locations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["healthy"] == true)
    );
}

#[test]
fn object_lock_protects_every_object_and_prune_never_fails_on_it() {
    let server = S3Server::moto();
    server.create_bucket("vault", true);
    let ws = workspace();
    let s3 = s3_location(
        "offsite",
        &server.endpoint(),
        "vault",
        Some(r#"{ mode = "compliance", days = 2 }"#),
    );
    ws.write_config(&config(&["local", "offsite"], &s3, ""));
    let out = ws.custodian(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    ws.custodian_json(&["init"], 0);
    ws.custodian_json(&["backup"], 0);
    common::sqlite(
        &ws.path("crm.sqlite"),
        "UPDATE deals SET amount = amount + 1;",
    );
    ws.custodian_json(&["backup"], 0);

    let status = ws.custodian_json(&["status"], 0);
    let vault = &status["locations"][1];
    assert_eq!(vault["object_lock"]["immutable"], true, "{status:#}");
    assert_eq!(vault["object_lock"]["bucket"]["lock_verified"], true);

    // Every object carries compliance retention; a locked version cannot be deleted.
    let modes = server.boto(
        "out = set()\n\
         for o in s3.list_objects_v2(Bucket='vault', Prefix='custodian/crm/').get('Contents', []):\n\
         \x20   out.add(s3.head_object(Bucket='vault', Key=o['Key']).get('ObjectLockMode', 'NONE'))\n\
         print(','.join(sorted(out)))",
    );
    assert_eq!(modes, "COMPLIANCE");
    let refused = server.boto(
        "import botocore\n\
         key = s3.list_objects_v2(Bucket='vault', Prefix='custodian/crm/snapshots/')['Contents'][0]['Key']\n\
         vid = s3.head_object(Bucket='vault', Key=key)['VersionId']\n\
         try:\n\
         \x20   s3.delete_object(Bucket='vault', Key=key, VersionId=vid)\n\
         \x20   print('deleted')\n\
         except botocore.exceptions.ClientError as e:\n\
         \x20   print(e.response['Error']['Code'])",
    );
    assert_eq!(refused, "AccessDenied");

    // Keep only the last backup: forget and prune succeed, the locked versions are reported.
    ws.write_config(&config(
        &["local", "offsite"],
        &s3.replace("object-lock", "retention = { keep-last = 1 }\nobject-lock"),
        "",
    ));
    let dry = ws.custodian_json(&["prune", "--location", "offsite"], 0);
    assert_eq!(dry[0]["forget"]["remove"].as_array().unwrap().len(), 1);
    assert_eq!(
        ws.custodian_json(&["snapshots", "--location", "offsite"], 0)[0]["snapshots"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "a dry run deletes nothing"
    );
    let pruned = ws.custodian_json(&["prune", "--location", "offsite", "--apply"], 0);
    assert!(pruned[0]["error"].is_null(), "{pruned:#}");
    assert!(
        pruned[0]["locked_versions"]["still_locked"]
            .as_u64()
            .unwrap()
            >= 1,
        "{pruned:#}"
    );
    assert!(pruned[0]["locked_versions"]["locked_until"].is_string());
    let listed = ws.custodian_json(&["snapshots", "--location", "offsite"], 0);
    assert_eq!(listed[0]["snapshots"].as_array().unwrap().len(), 1);
    assert_success(
        &restic_s3(&ws, &server.endpoint(), "vault", &["check"]),
        "restic check after prune",
    );
}

#[test]
fn retention_is_extended_before_it_lapses() {
    let server = S3Server::moto();
    server.create_bucket("vault", true);
    let ws = workspace();
    let s3 = s3_location(
        "offsite",
        &server.endpoint(),
        "vault",
        Some(r#"{ mode = "governance", days = 2 }"#),
    );
    ws.write_config(&config(&["local", "offsite"], &s3, ""));
    ws.custodian_json(&["init"], 0);
    ws.custodian_json(&["backup"], 0);
    // Make one object's retention end in an hour (moto, unlike S3, accepts the shortening).
    let key = server.boto(
        "key = s3.list_objects_v2(Bucket='vault', Prefix='custodian/crm/snapshots/')['Contents'][0]['Key']\n\
         soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)\n\
         s3.put_object_retention(Bucket='vault', Key=key, Retention={'Mode': 'GOVERNANCE', 'RetainUntilDate': soon}, BypassGovernanceRetention=True)\n\
         print(key)",
    );
    let check = ws.custodian_json(&["check", "--location", "offsite"], 0);
    assert!(
        check[0]["locks_extended"]["extended"].as_u64().unwrap() >= 1,
        "{check:#}"
    );
    let hours = server.boto(&format!(
        "until = s3.head_object(Bucket='vault', Key='{key}')['ObjectLockRetainUntilDate']\n\
         print(int((until - datetime.datetime.now(datetime.timezone.utc)).total_seconds() // 3600))"
    ));
    assert!(
        hours.parse::<i64>().unwrap() >= 40,
        "retention extended to ~2 days, got {hours} h"
    );
}

#[test]
fn a_bucket_without_object_lock_is_not_called_immutable() {
    let server = S3Server::moto();
    server.create_bucket("plain", false);
    let ws = workspace();
    let s3 = s3_location(
        "offsite",
        &server.endpoint(),
        "plain",
        Some(r#"{ mode = "compliance", days = 30 }"#),
    );
    ws.write_config(&config(&["local", "offsite"], &s3, ""));
    let out = ws.custodian(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("location.offsite.object-lock"), "{err}");
    assert!(err.contains("does not have Object Lock enabled"), "{err}");
    // Nothing can be written there with retention: init fails and says why.
    let init = ws.custodian_json(&["init"], 1);
    let error = init[1]["error"].as_str().unwrap();
    assert!(
        error.contains("location offsite") && error.contains("ObjectLockConfiguration"),
        "{error}"
    );
    let status = ws.custodian_json(&["status"], 1);
    assert_eq!(status["locations"][1]["object_lock"]["immutable"], false);
}

#[test]
fn a_failing_store_is_retried_then_recorded_then_caught_up() {
    let server = S3Server::moto();
    server.create_bucket("flaky", false);
    let proxy = FaultProxy::start(server.port);
    let ws = workspace();
    let s3 = s3_location("offsite", &proxy.endpoint(), "flaky", None);
    ws.write_config(&config(&["local", "offsite"], &s3, ""));
    ws.custodian_json(&["init"], 0);

    // Transient 503s on many requests: retried, and the copy succeeds.
    proxy.flaky(4);
    let backup = ws.custodian_json(&["backup"], 0);
    assert_eq!(backup[0]["copies"][0]["status"], "succeeded", "{backup:#}");
    assert!(
        proxy
            .faults_served
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );

    // The store goes away: the backup (local) succeeds, the copy fails and is recorded.
    proxy.set(Fault::Reset);
    common::sqlite(
        &ws.path("crm.sqlite"),
        "UPDATE deals SET amount = amount + 1;",
    );
    let started = std::time::Instant::now();
    let backup = ws.custodian_json(&["backup"], 1);
    assert_eq!(backup[0]["status"], "succeeded");
    assert_eq!(backup[0]["copies"][0]["status"], "failed");
    assert!(
        backup[0]["copies"][0]["error"]
            .as_str()
            .unwrap()
            .contains("location offsite"),
        "{backup:#}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(120));
    let runs = ws.custodian_json(&["runs"], 0);
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "copy" && r["outcome"] == "failed")
    );

    // It comes back: the next copy catches up; the repository is sound for restic.
    proxy.set(Fault::Pass);
    let copy = ws.custodian_json(&["copy"], 0);
    assert_eq!(copy[0]["copied"].as_array().unwrap().len(), 1);
    assert_eq!(copy[0]["already_present"], 1);
    assert_success(
        &restic_s3(&ws, &server.endpoint(), "flaky", &["check", "--read-data"]),
        "restic check after faults",
    );
}

#[test]
fn server_errors_slow_and_truncated_responses_are_survived() {
    let server = S3Server::moto();
    server.create_bucket("shaky", false);
    let proxy = FaultProxy::start(server.port);
    let ws = workspace();
    let s3 = s3_location("offsite", &proxy.endpoint(), "shaky", None);
    ws.write_config(&config(&["local", "offsite"], &s3, ""));
    ws.custodian_json(&["init"], 0);

    // The store answers 500 for a while: the copy fails and is recorded, then catches up.
    proxy.set(Fault::ServerError);
    let failed = ws.custodian_json(&["backup"], 1);
    assert_eq!(failed[0]["status"], "succeeded", "{failed:#}");
    assert_eq!(failed[0]["copies"][0]["status"], "failed", "{failed:#}");
    proxy.set(Fault::Pass);
    let caught_up = ws.custodian_json(&["copy"], 0);
    assert_eq!(
        caught_up[0]["copied"].as_array().unwrap().len(),
        1,
        "{caught_up:#}"
    );
    let before_slow = proxy
        .faults_served
        .load(std::sync::atomic::Ordering::SeqCst);

    // Slow answers: the copy just takes longer.
    common::sqlite(
        &ws.path("crm.sqlite"),
        "UPDATE deals SET amount = amount + 7;",
    );
    proxy.slow(40);
    let backup = ws.custodian_json(&["backup"], 0);
    assert_eq!(backup[0]["copies"][0]["status"], "succeeded", "{backup:#}");
    let slowed = proxy
        .faults_served
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(slowed > before_slow, "the proxy slowed some responses");

    // Bodies cut short while reading every pack back: retried, the check passes.
    proxy.truncate(6);
    let check = ws.custodian_json(
        &[
            "check",
            "--location",
            "offsite",
            "--read-data-subset",
            "100%",
        ],
        0,
    );
    assert_eq!(check[0]["status"], "ok", "{check:#}");
    let truncated = proxy
        .faults_served
        .load(std::sync::atomic::Ordering::SeqCst)
        - slowed;
    assert!(truncated >= 1, "the proxy cut {truncated} bodies");

    // And a restore through cut bodies is still verified.
    proxy.truncate(3);
    let target = ws.path("restored.sqlite");
    let restore = ws.custodian_json(
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
    assert_eq!(restore["verification"]["status"], "verified", "{restore:#}");
    assert_success(
        &restic_s3(&ws, &server.endpoint(), "shaky", &["check", "--read-data"]),
        "restic check after slow and truncated responses",
    );
}

#[test]
fn rotating_checks_cover_all_data_within_the_window() {
    let ws = Workspace::new();
    ws.write_config(&common::default_config().replace(
        "hostname = \"test-host\"",
        "hostname = \"test-host\"\ncheck-window = \"3d\"",
    ));
    ws.custodian_json(&["init"], 0);
    ws.custodian_json(&["backup"], 0);
    let mut parts = Vec::new();
    for _ in 0..3 {
        let out = ws.custodian_json(&["check", "--location", "local", "--rotate"], 0);
        parts.push(out[0]["read_data_subset"].as_str().unwrap().to_string());
    }
    parts.sort();
    assert_eq!(parts, ["1/3", "2/3", "3/3"]);
    let status = ws.custodian_json(&["status"], 0);
    assert_eq!(status["locations"][0]["coverage"]["percent"], 100.0);
    assert_eq!(status["locations"][1]["coverage"]["percent"], 0.0);
}
