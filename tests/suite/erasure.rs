//! The GDPR erasure ledger with a real PostgreSQL: erased customers stay erased after a restore
//! of an older snapshot and after a drill; a broken replay rule withholds the data; the ledger
//! holds no raw subject keys; horizons follow retention and Object Lock.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::servers::{PgServer, password_file};
use common::{Workspace, assert_success, sqlite, stderr};

const RULES: &str = r#"
[erasure.rules.crm]
subject-query = "SELECT email FROM contacts"
erase = [
  "DELETE FROM activities WHERE contact_id IN (SELECT id FROM contacts WHERE email = :subject)",
  "DELETE FROM notes WHERE contact_id IN (SELECT id FROM contacts WHERE email = :subject)",
  "UPDATE deals SET contact_id = NULL WHERE contact_id IN (SELECT id FROM contacts WHERE email = :subject)",
  "DELETE FROM contacts WHERE email = :subject",
]
proof = "SELECT count(*) FROM contacts WHERE email = :subject"
"#;

/// A proof that cannot succeed: the "erase" only blanks the phone number.
const BROKEN_RULES: &str = r#"
[erasure.rules.crm]
subject-query = "SELECT email FROM contacts"
erase = ["UPDATE contacts SET phone = NULL WHERE email = :subject"]
proof = "SELECT count(*) FROM contacts WHERE email = :subject"
"#;

fn config(url: &str, scratch: &Path, rules: &str) -> String {
    format!(
        r#"[custodian]
state-dir = "state"
hostname = "test-host"

[source.crm]
kind = "postgres"
url = "{url}"
password-file = "keys/db.pass"
locations = ["local"]

[location.local]
kind = "local"
path = "repos/local"
password-file = "keys/local.key"

[retention]
keep-daily = 7
max-age = "30d"

[drills]
scratch-dir = "{}"
{rules}"#,
        scratch.display()
    )
}

fn emails(server: &PgServer, db: &str, n: usize) -> Vec<String> {
    server
        .psql(
            db,
            &format!("SELECT email FROM contacts ORDER BY id LIMIT {n}"),
        )
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn erased_customers_stay_erased_after_restoring_an_older_snapshot_and_in_drills() {
    let server = PgServer::start();
    let ws = Workspace::new();
    password_file(&ws.path("keys"));
    let scratch = tempfile::Builder::new()
        .prefix("custodian-erasure-test-")
        .permissions(fs::Permissions::from_mode(0o755))
        .tempdir_in("/tmp")
        .unwrap();
    server.create_db("crm");
    assert_success(
        &ws.custodian(&[
            "generate-crm",
            "--url",
            &server.url("crm"),
            "--password-file",
            ws.path("keys/db.pass").to_str().unwrap(),
            "--scale",
            "0.002",
        ]),
        "generate-crm",
    );
    ws.write_config(&config(&server.url("crm"), scratch.path(), RULES));
    ws.custodian_json(&["init"], 0);
    // The old snapshot still holds the customers.
    ws.custodian_json(&["backup"], 0);
    let total: usize = server
        .psql("crm", "SELECT count(*) FROM contacts")
        .parse()
        .unwrap();
    let erased = emails(&server, "crm", 3);
    assert_eq!(erased.len(), 3);

    // The CRM erases them, and the requests go into the ledger (one by hand, two by import).
    for e in &erased {
        server.psql(
            "crm",
            &format!(
                "DELETE FROM activities WHERE contact_id IN (SELECT id FROM contacts WHERE email = '{e}');
                 DELETE FROM notes WHERE contact_id IN (SELECT id FROM contacts WHERE email = '{e}');
                 UPDATE deals SET contact_id = NULL WHERE contact_id IN (SELECT id FROM contacts WHERE email = '{e}');
                 DELETE FROM contacts WHERE email = '{e}';"
            ),
        );
    }
    let one = ws.custodian_json(
        &[
            "erasure",
            "record",
            "--source",
            "crm",
            "--subject",
            &erased[0],
            "--request",
            "DSAR-101",
        ],
        0,
    );
    assert_eq!(one["recorded"], 1);
    assert_eq!(one["hashed"], true);
    fs::write(
        ws.path("erasures.csv"),
        format!(
            "subject,request\n{},DSAR-102\n{},DSAR-103\n{},DSAR-101\n",
            erased[1], erased[2], erased[0]
        ),
    )
    .unwrap();
    let bulk = ws.custodian_json(
        &[
            "erasure",
            "import",
            "--source",
            "crm",
            ws.path("erasures.csv").to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(bulk["recorded"], 2);
    assert_eq!(bulk["already_recorded"], 1);

    // The ledger holds keyed hashes only: no raw subject key in the catalog or the audit log.
    let ledger = sqlite(
        &ws.path("state/catalog.db"),
        "SELECT subject FROM erasures;",
    );
    assert_eq!(ledger.lines().count(), 3);
    assert!(
        ledger.lines().all(|l| l.starts_with("hmac-sha256:")),
        "{ledger}"
    );
    let catalog_bytes = fs::read(ws.path("state/catalog.db")).unwrap();
    let audit = fs::read_to_string(ws.path("state/audit.log")).unwrap();
    for e in &erased {
        assert!(!ledger.contains(e.as_str()) && !audit.contains(e.as_str()));
        assert!(
            !String::from_utf8_lossy(&catalog_bytes).contains(e.as_str()),
            "{e} in the catalog"
        );
    }
    let key_mode = fs::metadata(ws.path("state/keys/erasure.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(key_mode, 0o600);

    // Restore the OLD snapshot (taken before the erasures) into a new database.
    server.create_db("restored");
    let restored = ws.custodian_json(
        &[
            "restore",
            "--snapshot",
            "latest",
            "--target",
            &server.url("restored"),
        ],
        0,
    );
    assert_eq!(restored["verification"]["status"], "verified");
    assert_eq!(restored["erasure"]["ledger_size"], 3, "{restored:#}");
    assert_eq!(restored["erasure"]["found"], 3, "{restored:#}");
    assert_eq!(restored["erasure"]["remaining"], 0);
    for e in &erased {
        let n = server.psql(
            "restored",
            &format!("SELECT count(*) FROM contacts WHERE email = '{e}'"),
        );
        assert_eq!(n, "0", "{e} came back with the restore");
    }
    let left: usize = server
        .psql("restored", "SELECT count(*) FROM contacts")
        .parse()
        .unwrap();
    assert_eq!(left, total - 3, "only the erased subjects are removed");

    // A drill replays the ledger as its own phase and proves it.
    let drill = ws.custodian_json(&["drill", "--snapshot", "latest"], 0);
    assert_eq!(drill["status"], "passed", "{drill:#}");
    assert_eq!(drill["erasure"]["found"], 3, "{drill:#}");
    let phases: Vec<&str> = drill["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    let (verify, erasure) = (
        phases.iter().position(|p| *p == "verify").unwrap(),
        phases.iter().position(|p| *p == "erasure").unwrap(),
    );
    assert!(verify < erasure, "{phases:?}");

    // Every restore and drill left a proven replay in the catalog.
    let replays = sqlite(
        &ws.path("state/catalog.db"),
        "SELECT kind || ':' || found || ':' || remaining || ':' || ok FROM erasure_replays ORDER BY replayed_at;",
    );
    assert_eq!(replays.trim(), "restore:3:0:1\ndrill:3:0:1");

    // The horizon: the old snapshot is the newest taken before the erasures; max-age 30 d.
    let status = ws.custodian_json(&["erasure", "status", "--subject", &erased[1]], 0);
    let s = &status[0];
    assert_eq!(s["request"], "DSAR-102");
    assert_eq!(s["horizon"]["copies"], 1);
    let taken = restored["snapshot_id"].as_str().unwrap();
    let snaps = ws.custodian_json(&["snapshots"], 0).to_string();
    assert!(snaps.contains(taken));
    let gone_by = s["horizon"]["gone_by"].as_str().unwrap();
    assert!(gone_by > "2026-11-01" && s["gone"] == false, "{s:#}");
    assert!(
        !status.to_string().contains(erased[1].as_str()),
        "status repeats the raw key"
    );

    // A broken replay rule: the proof still finds the subjects, so nothing is released.
    ws.write_config(&config(&server.url("crm"), scratch.path(), BROKEN_RULES));
    server.create_db("withheld");
    let out = ws.custodian(&[
        "--json",
        "restore",
        "--snapshot",
        "latest",
        "--target",
        &server.url("withheld"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = String::from_utf8_lossy(&out.stdout);
    assert!(
        err.contains("erasure.proof_failed") && err.contains("withheld"),
        "{err}"
    );
    let tables = server.psql(
        "withheld",
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
    );
    assert_eq!(tables, "0", "the withheld restore left tables behind");
    let drill = ws.custodian_json(&["drill", "--snapshot", "latest"], 1);
    assert_eq!(
        drill["failure"]["code"], "erasure.proof_failed",
        "{drill:#}"
    );

    // No rules at all while erasures are recorded: withheld too, with the reason.
    ws.write_config(&config(&server.url("crm"), scratch.path(), ""));
    let out = ws.custodian(&[
        "--json",
        "restore",
        "--snapshot",
        "latest",
        "--target",
        &server.url("withheld"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("erasure.no_rules"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );

    // The report's ERASURE rule counts the restores and drills that replayed the ledger.
    ws.write_config(&config(&server.url("crm"), scratch.path(), RULES));
    assert_success(&ws.custodian(&["keys", "generate"]), "keys generate");
    let out = ws.custodian_json(&["report", "--current", "--no-mail"], 0);
    let evidence: serde_json::Value = serde_json::from_slice(
        &fs::read(Path::new(out["report"]["evidence"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let rule = evidence["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "ERASURE")
        .unwrap();
    assert_eq!(rule["verdict"], "pass", "{rule:#}");
    let text = rule.to_string();
    assert!(
        text.contains("3 erasures recorded in the period")
            && text.contains("2 of 2 restores and drills"),
        "{rule:#}"
    );
    for e in &erased {
        assert!(
            !fs::read_to_string(Path::new(out["report"]["evidence"].as_str().unwrap()))
                .unwrap()
                .contains(e.as_str())
        );
    }

    // The ledger is backed up with the data (and copied, retained, restorable with restic).
    ws.custodian_json(&["backup"], 0);
    let dumped = ws.restic(
        "local",
        &["dump", "latest", "/custodian/crm/erasure-ledger.json"],
    );
    assert_success(&dumped, "restic dump erasure-ledger.json");
    let ledger: serde_json::Value = serde_json::from_slice(&dumped.stdout).unwrap();
    assert_eq!(ledger["format"], "custodian-erasure-ledger/1");
    assert_eq!(ledger["entries"].as_array().unwrap().len(), 3);
    for e in &erased {
        assert!(!String::from_utf8_lossy(&dumped.stdout).contains(e.as_str()));
    }
    // Lost catalog: the ledger comes back from the backup.
    fs::write(ws.path("ledger.json"), &dumped.stdout).unwrap();
    sqlite(&ws.path("state/catalog.db"), "DELETE FROM erasures;");
    let back = ws.custodian_json(
        &[
            "erasure",
            "import",
            "--source",
            "crm",
            ws.path("ledger.json").to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(back["recorded"], 3, "{back:#}");
    let status = ws.custodian_json(&["erasure", "status", "--subject", &erased[2]], 0);
    assert_eq!(status[0]["request"], "DSAR-103");
}

#[test]
fn bad_erasure_rules_and_imports_are_named() {
    let ws = Workspace::new();
    let text = format!(
        "{}\n[erasure.rules.crm]\nerase = [\"DELETE FROM contacts\"]\nproof = \"SELECT 0\"\n\n[erasure.rules.nope]\nsubject-query = \"SELECT 1\"\nerase = [\"DELETE FROM x WHERE k = :subject\"]\nproof = \"SELECT count(*) FROM x WHERE k = :subject\"\n",
        common::default_config()
    );
    ws.write_config(&text);
    let out = ws.custodian(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for want in [
        "erasure.rules.crm.erase.0",
        "erasure.rules.crm.proof",
        "erasure.rules.crm.subject-query",
        "erasure.rules.nope",
    ] {
        assert!(err.contains(want), "{want} not named in:\n{err}");
    }
    assert!(err.contains("custodian.toml:"), "{err}");

    ws.write_config(&common::default_config());
    fs::write(ws.path("bad.csv"), "email;ticket\nx@example.org;1\n").unwrap();
    let out = ws.custodian(&[
        "erasure",
        "import",
        "--source",
        "crm",
        ws.path("bad.csv").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bad.csv:1"), "{}", stderr(&out));
    let out = ws.custodian(&[
        "erasure",
        "record",
        "--source",
        "nope",
        "--subject",
        "a",
        "--request",
        "r",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("source `nope` is not defined"),
        "{}",
        stderr(&out)
    );
}
