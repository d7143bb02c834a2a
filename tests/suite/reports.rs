//! Compliance reports: rules evaluated on seeded catalogs (a real catalog file, seeded with the
//! sqlite3 CLI), the signed bundle checked with the real `minisign` CLI and `sha256sum`,
//! tampering and a missing predecessor detected, and the report e-mailed through a real SMTP
//! server (STARTTLS + AUTH) — including a relay outage retried by the daemon.

use crate::common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::smtp::{SmtpServer, envelope};
use common::{Workspace, assert_success, sqlite, stderr};
use serde_json::Value;

/// A workspace with initialised repositories and a report signing key.
fn setup(extra: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write_config(&format!("{}{extra}", common::default_config()));
    assert_success(&ws.custodian(&["init"]), "init");
    assert_success(&ws.custodian(&["keys", "generate"]), "keys generate");
    ws
}

fn catalog(ws: &Workspace) -> PathBuf {
    ws.path("state/catalog.db")
}

/// SQL for one backup of `crm` taken at `taken`, in `local` at once and in `offsite` 10 minutes
/// later (a copy).
fn backup_sql(id: &str, taken: &str) -> String {
    format!(
        "INSERT INTO runs (id, kind, trigger, actor, pid, started_at, finished_at, outcome, source, location)
           VALUES ('run-{id}', 'backup', 'schedule', 'custodian', 1, '{taken}', '{taken}', 'succeeded', 'crm', 'local');
         INSERT INTO backups (id, source, engine, taken_at, run_id, size, manifest, manifest_sha256)
           VALUES ('{id}', 'crm', 'sqlite', '{taken}', 'run-{id}', 1000, '{{}}', 'x');
         INSERT INTO snapshots (location, snapshot_id, backup_id, via, run_id, arrived_at)
           VALUES ('local', '{id}', '{id}', 'backup', 'run-{id}', '{taken}'),
                  ('offsite', '{id}o', '{id}', 'copy', 'run-{id}', strftime('%Y-%m-%dT%H:%M:%fZ', '{taken}', '+10 minutes'));\n"
    )
}

fn drill_sql(id: &str, location: &str, at: &str, verdict: &str, rto: f64) -> String {
    format!(
        "INSERT INTO runs (id, kind, trigger, actor, pid, started_at, finished_at, outcome, source, location)
           VALUES ('{id}', 'drill', 'schedule', 'custodian', 1, '{at}', '{at}', 'succeeded', 'crm', '{location}');
         INSERT INTO drills (run_id, source, location, selection, started_at, finished_at, verdict, rto_seconds)
           VALUES ('{id}', 'crm', '{location}', 'latest', '{at}', '{at}', '{verdict}', {rto});\n"
    )
}

fn day(month: u32, d: u32) -> String {
    format!("2026-{month:02}-{d:02}T02:00:00.000Z")
}

/// Daily backups on the given days of a month.
fn daily(month: u32, days: impl IntoIterator<Item = u32>) -> String {
    days.into_iter()
        .map(|d| backup_sql(&format!("b{month:02}{d:02}"), &day(month, d)))
        .collect()
}

/// `custodian report --period P --no-mail`: the bundle directory and its evidence.json.
fn report(ws: &Workspace, period: &str) -> (PathBuf, Value) {
    let out = ws.custodian_json(&["report", "--period", period, "--no-mail"], 0);
    let dir = PathBuf::from(out["report"]["dir"].as_str().unwrap());
    assert_eq!(out["verification"]["ok"], true, "{out:#}");
    let evidence =
        serde_json::from_slice(&std::fs::read(dir.join("evidence.json")).unwrap()).unwrap();
    (dir, evidence)
}

fn rule<'a>(e: &'a Value, id: &str) -> &'a Value {
    e["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no rule {id}"))
}

fn verdict(e: &Value, id: &str) -> String {
    rule(e, id)["verdict"].as_str().unwrap().to_string()
}

fn check<'a>(e: &'a Value, metric: &str) -> &'a Value {
    e["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["checks"].as_array().unwrap().iter())
        .find(|c| c["metric"] == metric)
        .unwrap_or_else(|| panic!("no metric {metric}"))
}

#[test]
fn a_gap_longer_than_the_rpo_fails_rpo_and_daily_backups_pass() {
    let gap = setup("");
    // 1, 2, then nothing until the 5th: a 72 h gap against the default 24 h RPO (warn ≤ 36 h).
    sqlite(&catalog(&gap), &daily(10, [1, 2].into_iter().chain(5..=31)));
    let (_, e) = report(&gap, "2026-10");
    assert_eq!(verdict(&e, "RPO"), "fail", "{:#}", rule(&e, "RPO"));
    let rpo = check(&e, "rpo.worst_gap_hours");
    assert_eq!(rpo["measure"]["value"].as_f64().unwrap(), 72.0);
    assert!(
        rpo["measure"]["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|id| id == "b1005")
    );

    let ok = setup("");
    sqlite(&catalog(&ok), &daily(10, 1..=31));
    let (_, e) = report(&ok, "2026-10");
    assert_eq!(verdict(&e, "RPO"), "pass", "{:#}", rule(&e, "RPO"));
    // The offsite copies arrive 10 minutes after each backup: within the 6 h copy SLA.
    assert_eq!(check(&e, "copies.worst_lag_hours")["verdict"], "pass");
    assert_eq!(
        check(&e, "copies.min_immutable_locations")["verdict"],
        "fail"
    );
}

#[test]
fn a_month_without_a_drill_fails_drill_and_recent_drills_pass() {
    let none = setup("");
    sqlite(&catalog(&none), &daily(10, 1..=31));
    let (_, e) = report(&none, "2026-10");
    assert_eq!(verdict(&e, "DRILL"), "fail", "{:#}", rule(&e, "DRILL"));
    let fails = check(&e, "drill.age_days")["measure"]["fail"].to_string();
    assert!(
        fails.contains("crm/local: no drill has ever passed"),
        "{fails}"
    );

    let drilled = setup("");
    let mut sql = daily(10, 1..=31);
    sql += &drill_sql("d-local", "local", &day(10, 20), "passed", 620.0);
    sql += &drill_sql("d-offsite", "offsite", &day(10, 21), "passed", 1500.0);
    // A later failed drill does not hide the passed one, but is listed.
    sql += &drill_sql("d-bad", "offsite", &day(10, 25), "failed", 0.0);
    sqlite(&catalog(&drilled), &sql);
    let (_, e) = report(&drilled, "2026-10");
    assert_eq!(verdict(&e, "DRILL"), "pass", "{:#}", rule(&e, "DRILL"));
    let rto = check(&e, "drill.worst_rto_hours");
    assert!((rto["measure"]["value"].as_f64().unwrap() - 1500.0 / 3600.0).abs() < 0.001);
    assert!(
        check(&e, "drill.age_days")["measure"]["findings"]
            .to_string()
            .contains("d-bad")
    );

    // A drill 45 days before the period's end is older than the 30-day interval: a warning.
    let old = setup("");
    let mut sql = daily(9, 1..=30) + &daily(10, 1..=31);
    sql += &drill_sql("d1", "local", &day(9, 16), "passed", 60.0);
    sql += &drill_sql("d2", "offsite", &day(9, 16), "passed", 60.0);
    sqlite(&catalog(&old), &sql);
    let (_, e) = report(&old, "2026-10");
    assert_eq!(verdict(&e, "DRILL"), "warn", "{:#}", rule(&e, "DRILL"));
}

#[test]
fn a_snapshot_older_than_the_retention_maximum_fails_retention() {
    let policy = "\n[retention]\nkeep-daily = 7\nmax-age = \"30d\"\n";
    let ws = setup(policy);
    // Still held on 31 October: taken on 1 September, 60 days old against a 30-day maximum.
    sqlite(
        &catalog(&ws),
        &(backup_sql("old", &day(9, 1)) + &daily(10, 20..=31)),
    );
    let (_, e) = report(&ws, "2026-10");
    assert_eq!(
        verdict(&e, "RETENTION"),
        "fail",
        "{:#}",
        rule(&e, "RETENTION")
    );
    let beyond = check(&e, "retention.days_beyond_max")["measure"]["value"]
        .as_f64()
        .unwrap();
    assert!((29.0..31.0).contains(&beyond), "{beyond}");

    // Once retention removed it, the oldest held snapshot is within the maximum.
    sqlite(
        &catalog(&ws),
        "UPDATE snapshots SET removed_at = '2026-10-02T00:00:00.000Z' WHERE backup_id = 'old';",
    );
    let (_, e) = report(&ws, "2026-10");
    assert_eq!(
        verdict(&e, "RETENTION"),
        "pass",
        "{:#}",
        rule(&e, "RETENTION")
    );
}

#[test]
fn missing_evidence_reads_not_evaluated_never_pass() {
    let ws = setup("");
    // Nothing but today's `init`: no evidence at all for October.
    let (_, e) = report(&ws, "2026-10");
    for id in [
        "SCHEDULE",
        "RPO",
        "INTEGRITY",
        "DRILL",
        "MONITORING",
        "SCRATCH-DATA",
        "ERASURE",
        "RESIDENCY",
    ] {
        assert_eq!(verdict(&e, id), "not-evaluated", "{id}: {:#}", rule(&e, id));
        for c in rule(&e, id)["checks"].as_array().unwrap() {
            assert!(
                c["measure"]["not_evaluated"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{c:#}"
            );
        }
    }
    assert_ne!(e["overall"], "pass");
    // Evidence that does exist is evaluated: the repositories were opened and their keys read.
    // (CRYPTO warns only because this workspace's signing key is not encrypted.)
    assert_eq!(verdict(&e, "CRYPTO"), "warn", "{:#}", rule(&e, "CRYPTO"));
    assert!(
        rule(&e, "CRYPTO")["reason"]
            .as_str()
            .unwrap()
            .contains("stored unencrypted"),
        "{:#}",
        rule(&e, "CRYPTO")
    );
    assert_eq!(verdict(&e, "AUDIT-LOG"), "pass");
    assert_eq!(verdict(&e, "PRIVACY-OF-REPORT"), "pass");
}

#[test]
fn a_scheduled_run_that_never_happened_is_a_silent_miss() {
    let ws = setup("");
    let text = std::fs::read_to_string(ws.config_path()).unwrap().replacen(
        "hostname = \"test-host\"\n",
        "hostname = \"test-host\"\nschedules = \"schedules\"\n",
        1,
    );
    ws.write_config(&text);
    std::fs::create_dir_all(ws.path("schedules")).unwrap();
    std::fs::write(
        ws.path("schedules/backup.toml"),
        "[[job]]\nname = \"nightly\"\nkind = \"backup\"\ncron = \"0 2 * * *\"\ntime-zone = \"UTC\"\n",
    )
    .unwrap();
    // Every night except the 10th and 11th left a run.
    sqlite(
        &catalog(&ws),
        &daily(10, (1..=31).filter(|d| *d != 10 && *d != 11)),
    );
    let (_, e) = report(&ws, "2026-10");
    let c = check(&e, "schedule.success_percent");
    assert_eq!(c["verdict"], "fail", "{c:#}");
    let fails = c["measure"]["fail"].to_string();
    assert!(
        fails.contains("2026-10-10T02:00:00.000Z") && fails.contains("silent miss"),
        "{fails}"
    );
    assert!((c["measure"]["value"].as_f64().unwrap() - 100.0 * 29.0 / 31.0).abs() < 0.1);
}

fn minisign_verify(dir: &Path, public_key: &Path) -> std::process::Output {
    Command::new("minisign")
        .current_dir(dir)
        .args(["-V", "-m", "SHA256SUMS", "-p"])
        .arg(public_key)
        .output()
        .expect("the minisign CLI is required (scripts/test-all installs it)")
}

fn sha256sum_check(dir: &Path) -> std::process::Output {
    Command::new("sha256sum")
        .current_dir(dir)
        .args(["-c", "SHA256SUMS"])
        .output()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn bundles_verify_with_minisign_chain_and_detect_tampering_and_missing_predecessors() {
    let ws = setup("");
    sqlite(&catalog(&ws), &(daily(9, 1..=30) + &daily(10, 1..=31)));
    let public = ws.path("state/keys/report.pub");

    // October first: September has evidence but no report, which RECORDS flags.
    let (_, e) = report(&ws, "2026-10");
    assert_eq!(verdict(&e, "RECORDS"), "fail", "{:#}", rule(&e, "RECORDS"));
    assert!(
        rule(&e, "RECORDS")
            .to_string()
            .contains("no report covers 2026-09")
    );
    assert!(e["previous"].is_null());

    let (sep, e) = report(&ws, "2026-09");
    assert_eq!(verdict(&e, "RECORDS"), "pass", "{:#}", rule(&e, "RECORDS"));
    let (oct, e) = report(&ws, "2026-10");
    assert_eq!(verdict(&e, "RECORDS"), "pass", "{:#}", rule(&e, "RECORDS"));
    assert_eq!(e["previous"]["period"], "2026-09");
    let sep_manifest = common::sha256_file(&sep.join("SHA256SUMS"));
    assert_eq!(
        format!(
            "sha256:{}",
            e["previous"]["manifest_sha256"].as_str().unwrap()
        ),
        sep_manifest
    );

    // Files 0640, directory 0750: readable by the service's group at most.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&oct), 0o750);
    for f in [
        "report.html",
        "evidence.json",
        "SHA256SUMS",
        "SHA256SUMS.minisig",
        "rpo.svg",
    ] {
        assert_eq!(mode(&oct.join(f)), 0o640, "{f}");
    }

    // The real minisign CLI and sha256sum accept the bundle; so does `report verify`.
    let out = minisign_verify(&oct, &public);
    assert_success(&out, "minisign -V");
    assert!(
        common::stdout(&out).contains("custodian report"),
        "{}",
        common::stdout(&out)
    );
    assert_success(&sha256sum_check(&oct), "sha256sum -c");
    let v = ws.custodian_json(&["report", "verify", oct.to_str().unwrap()], 0);
    assert_eq!(v["ok"], true);
    // One chain in generation order: this October, September, the first October.
    assert_eq!(v["chain"]["ok"], true, "{v:#}");
    let walked: Vec<&str> = v["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["period"].as_str().unwrap())
        .collect();
    assert_eq!(walked, ["2026-09", "2026-10"], "{v:#}");

    // Tampering with evidence.json or the HTML breaks verification (the signature still
    // covers the manifest, so minisign alone passes: the manifest check catches the edit).
    for (file, from, to) in [
        (
            "evidence.json",
            "\"overall\": \"fail\"",
            "\"overall\": \"pass\"",
        ),
        ("report.html", "FAIL", "PASS"),
    ] {
        let copy = ws.path(&format!("tampered-{file}"));
        copy_dir(&oct, &copy);
        let text = std::fs::read_to_string(copy.join(file)).unwrap();
        assert!(text.contains(from), "{file} has no {from}");
        std::fs::write(copy.join(file), text.replacen(from, to, 1)).unwrap();
        let v = ws.custodian_json(&["report", "verify", copy.to_str().unwrap()], 1);
        let bad: Vec<&Value> = v["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["ok"] == false)
            .collect();
        assert_eq!(bad.len(), 1, "{v:#}");
        assert_eq!(bad[0]["name"], file);
        assert!(!sha256sum_check(&copy).status.success());
    }
    // Editing the manifest itself breaks the signature, for minisign too.
    let copy = ws.path("tampered-manifest");
    copy_dir(&oct, &copy);
    let text = std::fs::read_to_string(copy.join("SHA256SUMS")).unwrap();
    std::fs::write(copy.join("SHA256SUMS"), text.replacen('a', "b", 1)).unwrap();
    assert!(!minisign_verify(&copy, &public).status.success());
    let v = ws.custodian_json(&["report", "verify", copy.to_str().unwrap()], 1);
    assert_eq!(v["signature"]["ok"], false, "{v:#}");
    // A key that did not sign the report does not verify it.
    let other = setup("");
    let v = ws.custodian_json(
        &[
            "report",
            "verify",
            oct.to_str().unwrap(),
            "--public-key",
            other.path("state/keys/report.pub").to_str().unwrap(),
        ],
        1,
    );
    assert!(
        v["signature"]["ok"] == false && v["signature"]["detail"].as_str().unwrap().contains("key"),
        "{v:#}"
    );

    // November chains to the regenerated October; the superseded first October report (made
    // before September's existed) is not a break in the chain.
    let (_, e) = report(&ws, "2026-11");
    assert_eq!(verdict(&e, "RECORDS"), "pass", "{:#}", rule(&e, "RECORDS"));
    assert_eq!(e["previous"]["period"], "2026-10");

    // The predecessor disappears: `verify` flags the chain, and the next report's RECORDS fails.
    std::fs::rename(&sep, ws.path("moved-away")).unwrap();
    let v = ws.custodian_json(&["report", "verify", oct.to_str().unwrap()], 1);
    assert!(
        v["chain"]["ok"] == false
            && v["chain"]["detail"]
                .as_str()
                .unwrap()
                .contains("is missing"),
        "{v:#}"
    );
    let out = ws.custodian(&["report", "verify", oct.to_str().unwrap()]);
    assert!(
        common::stdout(&out).contains("chain: BROKEN"),
        "{}",
        common::stdout(&out)
    );
    // The next report is still written and signed, and says so: its RECORDS fails, and its
    // own chain check names the break.
    let out = ws.custodian_json(&["report", "--period", "2026-11", "--no-mail"], 0);
    assert_eq!(out["verification"]["signature"]["ok"], true, "{out:#}");
    assert_eq!(out["verification"]["chain"]["ok"], false, "{out:#}");
    let e: Value = serde_json::from_slice(
        &std::fs::read(Path::new(out["report"]["dir"].as_str().unwrap()).join("evidence.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(verdict(&e, "RECORDS"), "fail");
    assert!(
        rule(&e, "RECORDS").to_string().contains("2026-09"),
        "{:#}",
        rule(&e, "RECORDS")
    );
}

/// The one-line base64 key of a minisign `.pub` file (its second line), as an auditor would
/// receive it by another channel.
fn base64_key(public: &Path) -> String {
    std::fs::read_to_string(public)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .to_string()
}

/// `custodian --json report verify --public-key KEY DIR` on a machine without Custodian: no
/// configuration, no state directory, an empty working directory and home.
fn verify_elsewhere(key: &str, dir: &Path, expected_code: i32) -> Value {
    let nowhere = tempfile::tempdir().unwrap();
    let out = common::custodian_cmd()
        .current_dir(nowhere.path())
        .env("HOME", nowhere.path())
        .args(["--json", "report", "verify", "--public-key", key])
        .arg(dir)
        .output()
        .unwrap();
    assert!(!Path::new("/etc/custodian/custodian.toml").exists());
    assert_eq!(
        out.status.code(),
        Some(expected_code),
        "stdout: {}\nstderr: {}",
        common::stdout(&out),
        stderr(&out)
    );
    common::reply(&out)["data"].clone()
}

#[test]
fn a_regenerated_period_is_chained_and_verifies_with_nothing_but_the_key() {
    let ws = setup("");
    sqlite(&catalog(&ws), &daily(10, 1..=31));
    let key = base64_key(&ws.path("state/keys/report.pub"));

    let (first, e1) = report(&ws, "2026-10");
    assert!(e1["supersedes"].as_array().unwrap().is_empty());
    // The regeneration names the report it supersedes (id, manifest hash, verdict) and chains
    // to it: nothing can be regenerated without trace.
    let out = ws.custodian(&["report", "--period", "2026-10", "--no-mail"]);
    assert_success(&out, "report (regenerated)");
    let printed = common::stdout(&out);
    // The printed hint verifies with the signer's key spelled out, never the bundle's own copy.
    assert!(!printed.contains("custodian-report.pub"), "{printed}");
    assert!(printed.contains(&format!("-P {key}")), "{printed}");
    let second = ws.path("state/reports").join(
        std::fs::read_dir(ws.path("state/reports"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("2026-10") && ws.path("state/reports").join(n) != first)
            .max()
            .expect("the regenerated report's directory"),
    );
    let e2: Value =
        serde_json::from_slice(&std::fs::read(second.join("evidence.json")).unwrap()).unwrap();
    assert_eq!(e2["previous"]["id"], e1["id"]);
    let superseded = &e2["supersedes"][0];
    assert_eq!(superseded["id"], e1["id"], "{:#}", e2["supersedes"]);
    assert_eq!(superseded["overall"], e1["overall"]);
    assert_eq!(
        format!("sha256:{}", superseded["manifest_sha256"].as_str().unwrap()),
        common::sha256_file(&first.join("SHA256SUMS"))
    );
    assert!(
        rule(&e2, "RECORDS").to_string().contains(&format!(
            "this report supersedes {}",
            e1["id"].as_str().unwrap()
        )),
        "{:#}",
        rule(&e2, "RECORDS")
    );
    // As a browser shows it (minijinja escapes `/` in keys as `&#x2f;`).
    let html = std::fs::read_to_string(second.join("report.html"))
        .unwrap()
        .replace("&#x2f;", "/");
    assert!(
        html.contains(e1["id"].as_str().unwrap()),
        "the cover lists the superseded report"
    );
    assert!(html.contains(&format!("minisign -Vm SHA256SUMS -P {key}")));
    assert!(html.contains("1–31 October 2026"));

    // The auditor copies the reports elsewhere; the originals are gone from where they were.
    let archive = ws.path("auditor/reports");
    for dir in [&first, &second] {
        copy_dir(dir, &archive.join(dir.file_name().unwrap()));
    }
    std::fs::rename(ws.path("state/reports"), ws.path("state/reports-moved")).unwrap();
    let copied = archive.join(second.file_name().unwrap());
    let v = verify_elsewhere(&key, &copied, 0);
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(v["signature"]["ok"], true);
    assert_eq!(v["chain"]["ok"], true);
    assert_eq!(v["period"], "2026-10");
    assert_eq!(v["links"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(v["links"][0]["signature_ok"], true);
    // The key as a file works the same.
    let key_file = ws.path("auditor/custodian.pub");
    std::fs::copy(ws.path("state/keys/report.pub"), &key_file).unwrap();
    assert_eq!(
        verify_elsewhere(key_file.to_str().unwrap(), &copied, 0)["ok"],
        true
    );
    // A missing link is a break, named.
    std::fs::remove_dir_all(archive.join(first.file_name().unwrap())).unwrap();
    let v = verify_elsewhere(&key, &copied, 1);
    assert_eq!(v["signature"]["ok"], true);
    assert_eq!(v["chain"]["ok"], false);
    assert!(
        v["chain"]["detail"]
            .as_str()
            .unwrap()
            .contains("is missing"),
        "{v:#}"
    );
    // A key that is not the signer's is refused.
    let other = setup("");
    let v = verify_elsewhere(
        &base64_key(&other.path("state/keys/report.pub")),
        &copied,
        1,
    );
    assert_eq!(v["signature"]["ok"], false, "{v:#}");
}

#[test]
fn a_password_protected_signing_key_needs_its_password() {
    let ws = Workspace::new();
    std::fs::write(ws.path("keys/report-pw"), "sign-me-please\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        ws.path("keys/report-pw"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let config = format!(
        "{}\n[reports]\nsecret-key-password-file = \"keys/report-pw\"\n",
        common::default_config()
    );
    ws.write_config(&config);
    assert_success(&ws.custodian(&["init"]), "init");
    let key = ws.custodian_json(&["keys", "generate"], 0);
    assert_eq!(key["password_protected"], true);
    // A second generate is refused; --force replaces the key and is audited as keys.replace.
    let out = ws.custodian(&["keys", "generate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    let (dir, _) = report(&ws, "2026-10");
    assert_success(
        &minisign_verify(&dir, &ws.path("state/keys/report.pub")),
        "minisign",
    );
    // Without the password the key does not open, and the error says what to configure.
    ws.write_config(&common::default_config());
    let out = ws.custodian(&["report", "--period", "2026-10", "--no-mail"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("secret-key-password"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("sign-me-please"));
}

#[test]
fn the_report_is_mailed_over_starttls_with_auth_and_the_attached_bundle_verifies() {
    let mut smtp = SmtpServer::prepare();
    smtp.start();
    let ws = setup(&smtp.config(
        &["cfo@example.org", "dpo@example.org"],
        &["ops@example.org"],
    ));
    sqlite(&catalog(&ws), &daily(10, 1..=31));
    let out = ws.custodian_json(&["report", "--period", "2026-10"], 0);
    let delivery = &out["delivery"];
    assert_eq!(delivery["delivered"], true, "{out:#}");

    let msg = smtp.wait_for("Compliance report 2026-10", Duration::from_secs(10));
    let env = envelope(&msg);
    assert_eq!(
        env["rcpt_tos"],
        serde_json::json!(["cfo@example.org", "dpo@example.org"])
    );
    assert_eq!(env["mail_from"], "custodian@example.org");
    assert_eq!(env["tls"], true, "STARTTLS was not used");
    assert_eq!(env["auth_user"], smtp.user);
    assert_eq!(env["message_id"], delivery["message_id"]);
    let overall = out["report"]["overall"]
        .as_str()
        .unwrap()
        .to_uppercase()
        .replace('-', " ");
    assert!(
        env["subject"].as_str().unwrap().contains(&overall),
        "{env:#}"
    );
    let parts = env["parts"].as_array().unwrap();
    let attached: Vec<&str> = parts
        .iter()
        .filter(|p| p["disposition"] == "attachment")
        .filter_map(|p| p["filename"].as_str())
        .collect();
    for f in [
        "report.html",
        "evidence.json",
        "SHA256SUMS",
        "SHA256SUMS.minisig",
        "custodian-report.pub",
    ] {
        assert!(attached.contains(&f), "{f} not attached: {attached:?}");
    }
    // Charts inline as PNG (common mail clients show no SVG); the SVGs stay in the bundle.
    let chart = parts
        .iter()
        .find(|p| p["content_id"] == "rpo-chart")
        .unwrap_or_else(|| panic!("no inline RPO chart: {parts:#?}"));
    assert_eq!(chart["disposition"], "inline");
    assert_eq!(chart["content_type"], "image/png");
    let png = std::fs::read(msg.join("parts").join(chart["saved_as"].as_str().unwrap())).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5000,
        "{}",
        png.len()
    );
    assert!(attached.contains(&"rpo.svg"), "{attached:?}");
    assert!(!attached.contains(&"rpo.png"), "{attached:?}");
    let body = parts
        .iter()
        .find(|p| p["content_type"] == "text/html" && p["filename"].is_null())
        .unwrap();
    assert!(body["size"].as_u64().unwrap() > 1000);
    let html = std::fs::read_to_string(msg.join("parts/body.html")).unwrap();
    assert!(
        html.contains("cid:rpo-chart") && html.contains("RPO"),
        "{html}"
    );
    // The summary in plain words, and every rule that did not pass with its reason, action
    // and owner — in the HTML and the plain-text part alike.
    let e: Value = serde_json::from_slice(
        &std::fs::read(PathBuf::from(out["report"]["dir"].as_str().unwrap()).join("evidence.json"))
            .unwrap(),
    )
    .unwrap();
    let text = std::fs::read_to_string(msg.join("parts/body.txt")).unwrap();
    let headline = e["executive"]["headline"].as_str().unwrap();
    assert!(headline.starts_with("Not compliant") || headline.starts_with("Compliant"));
    let items = e["executive"]["items"].as_array().unwrap();
    assert!(!items.is_empty());
    for body in [&html, &text] {
        assert!(body.contains(headline), "{body}");
        for item in items {
            let owner = item["owner"].as_str().unwrap();
            assert!(body.contains(owner), "{body}");
            // Quotes and markup are escaped in the HTML; a stretch of plain words is not.
            let reason = item["reason"].as_str().unwrap();
            let words: String = reason
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == ' ')
                .collect();
            assert!(
                body.contains(words.trim()),
                "{} not in {body}",
                words.trim()
            );
        }
    }

    // What the manager received verifies with the minisign CLI and sha256sum.
    let received = msg.join("parts");
    assert_success(
        &minisign_verify(&received, &ws.path("state/keys/report.pub")),
        "minisign on the mail",
    );
    assert_success(&sha256sum_check(&received), "sha256sum on the mail");

    // The delivery is evidence: recorded with its Message-ID and recipients.
    let row = sqlite(
        &catalog(&ws),
        "SELECT delivered || '|' || message_id || '|' || recipients FROM report_deliveries;",
    );
    assert!(row.starts_with("1|"), "{row}");
    assert!(
        row.contains(delivery["message_id"].as_str().unwrap()) && row.contains("dpo@example.org")
    );
    // The SMTP password is nowhere in the report, the catalog or the output.
    let secret = "mail-relay-secret-8c1f";
    for f in ["report.html", "evidence.json"] {
        let dir = PathBuf::from(out["report"]["dir"].as_str().unwrap());
        assert!(
            !std::fs::read_to_string(dir.join(f))
                .unwrap()
                .contains(secret)
        );
    }
    assert!(
        !std::fs::read_to_string(msg.join("raw.eml"))
            .unwrap()
            .contains(secret)
    );
    assert!(!out.to_string().contains(secret));
}

#[test]
fn an_undelivered_report_is_recorded_and_the_daemon_delivers_it_and_alerts_by_mail() {
    let mut smtp = SmtpServer::prepare();
    // A source that cannot be backed up: its scheduled failures must be alerted by e-mail.
    let broken =
        "\n[source.broken]\nkind = \"sqlite\"\npath = \"broken.sqlite\"\nlocations = [\"local\"]\n";
    let ws = Workspace::new();
    std::fs::write(ws.path("broken.sqlite"), "this is not a SQLite database").unwrap();
    ws.write_config(&format!(
        "{}{broken}{}",
        common::default_config(),
        smtp.config(&["cfo@example.org"], &["ops@example.org"])
    ));
    assert_success(&ws.custodian(&["init"]), "init");
    assert_success(&ws.custodian(&["keys", "generate"]), "keys generate");
    let text = std::fs::read_to_string(ws.config_path()).unwrap().replacen(
        "hostname = \"test-host\"\n",
        "hostname = \"test-host\"\nschedules = \"schedules\"\ncontrol-socket = \"control.sock\"\n",
        1,
    );
    ws.write_config(&text);
    std::fs::create_dir_all(ws.path("schedules")).unwrap();
    sqlite(&catalog(&ws), &daily(10, 1..=31));

    // The relay is down: the report is kept, the failure is clear, every attempt is recorded.
    let out = ws.custodian(&["report", "--period", "2026-10"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("not e-mailed after 2 attempts") && err.contains("127.0.0.1"),
        "{err}"
    );
    assert!(ws.path("state/reports/2026-10/report.html").exists());
    let rows = sqlite(
        &catalog(&ws),
        "SELECT count(*), sum(delivered) FROM report_deliveries;",
    );
    assert_eq!(rows.trim(), "2|0");
    assert_eq!(
        sqlite(
            &catalog(&ws),
            "SELECT outcome FROM runs WHERE kind = 'report';"
        )
        .trim(),
        "failed"
    );

    // The relay is back; the daemon's report job (re)delivers the last complete period's
    // report, and the failing backup job is alerted by mail.
    smtp.start();
    std::fs::write(
        ws.path("schedules/jobs.toml"),
        "[[job]]\nname = \"monthly-report\"\nkind = \"report\"\ncron = \"*/2 * * * * *\"\n\n\
         [[job]]\nname = \"broken-backup\"\nkind = \"backup\"\ncron = \"*/2 * * * * *\"\nsources = [\"broken\"]\n",
    )
    .unwrap();
    let mut daemon = common::custodian_cmd()
        .arg("--config")
        .arg(ws.config_path())
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log_pipe = daemon.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = log_pipe.read_to_string(&mut s);
        s
    });
    let report_mail = smtp.wait_for("Compliance report", Duration::from_secs(60));
    let alert_mail = smtp.wait_for("broken-backup: FAILED", Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(20);
    while sqlite(
        &catalog(&ws),
        "SELECT count(*) FROM alerts WHERE channel = 'email' AND delivered = 1;",
    )
    .trim()
        == "0"
    {
        assert!(Instant::now() < deadline, "the alert was not recorded");
        std::thread::sleep(Duration::from_millis(100));
    }
    Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    let status = daemon.wait().unwrap();
    let log = log.join().unwrap();
    assert!(status.success(), "daemon: {log}");
    assert_eq!(
        envelope(&report_mail)["rcpt_tos"],
        serde_json::json!(["cfo@example.org"])
    );
    assert_eq!(
        envelope(&alert_mail)["rcpt_tos"],
        serde_json::json!(["ops@example.org"])
    );
    assert!(
        sqlite(
            &catalog(&ws),
            "SELECT count(*) FROM report_deliveries WHERE delivered = 1;"
        )
        .trim()
            != "0"
    );
    // MONITORING now sees failed scheduled runs, each alerted by a delivered e-mail.
    let (_, e) = report(&ws, &jiff_month());
    let m = check(&e, "monitoring.silent_failures");
    assert!(
        m["measure"]["findings"].to_string().contains("e-mail"),
        "{m:#}"
    );
}

/// The current month (`2026-11`), as the report's --period takes it.
fn jiff_month() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m"])
        .output()
        .unwrap();
    common::stdout(&out).trim().to_string()
}
