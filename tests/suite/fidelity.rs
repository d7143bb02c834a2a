//! Fidelity: a kitchen-sink database per engine — every object class Custodian's manifest
//! describes, with data — goes through every way back: `custodian restore` into a new database
//! and with `--force` over an existing one, a drill, and plain restic. Each restored database
//! must dump identically to the source (pg_dump / mariadb-dump / sqlite3 `.dump`, owners and
//! privileges included), and the manifest comparison must catch a deliberately damaged restore
//! of each object class.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::servers::{MariaServer, PgServer, assert_same_dump, password_file};
use common::{Workspace, assert_success, sqlite, stderr, stdout};
use serde_json::Value;

fn support(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/fidelity")
        .join(name)
}

/// A directory for scratch instances their unprivileged user can traverse.
fn scratch_base() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("custodian-fidelity-")
        .permissions(fs::Permissions::from_mode(0o755))
        .tempdir_in("/tmp")
        .unwrap()
}

fn server_config(kind: &str, url: &str, scratch: &Path) -> String {
    format!(
        r#"[custodian]
state-dir = "state"
hostname = "test-host"

[source.crm]
kind = "{kind}"
url = "{url}"
password-file = "keys/db.pass"
locations = ["local"]

[location.local]
kind = "local"
path = "repos/local"
password-file = "keys/local.key"

[drills]
scratch-dir = "{}"
scratch-lifetime = "10m"
"#,
        scratch.display()
    )
}

/// Runs a restore: its result, or (when it fails) its error.
fn restore(ws: &Workspace, target: &[&str], force: bool, code: i32) -> Value {
    let mut args = vec!["restore", "--snapshot", "latest"];
    args.extend_from_slice(target);
    if force {
        args.push("--force");
    }
    if code == 0 {
        ws.custodian_json(&args, code)
    } else {
        ws.custodian_error(&args, code)
    }
}

fn verified(out: &Value) -> &Value {
    assert_eq!(out["verification"]["status"], "verified", "{out:#}");
    &out["verification"]
}

/// Runs `custodian verify` against a database and returns its report (exit 1: differs).
fn verify(ws: &Workspace, target: &[&str], code: i32) -> Value {
    let mut args = vec!["verify"];
    args.extend_from_slice(target);
    ws.custodian_json(&args, code)
}

/// Plain restic, the way a restic-only user gets the dump out: `restic dump` of the source's
/// newest snapshot (narrowed with `--path`, as the README says for repositories holding several
/// sources).
fn restic_dump(ws: &Workspace, file: &str) -> PathBuf {
    let out = ws.restic(
        "local",
        &[
            "dump",
            "--path",
            "/custodian/crm",
            "latest",
            &format!("/custodian/crm/{file}"),
        ],
    );
    assert_success(&out, "restic dump");
    let path = ws.path(&format!("plain-{file}"));
    fs::write(&path, &out.stdout).unwrap();
    path
}

#[test]
fn postgres_kitchen_sink_comes_back_whole_from_every_restore_path() {
    let server = PgServer::start();
    // The README's backup role is named custodian; here it is a superuser, as backup roles
    // often are, so the cluster's globals demote nothing but must not collide with the
    // scratch cluster's own superuser.
    server.psql(
        "postgres",
        "CREATE ROLE app; CREATE ROLE reporting LOGIN; ALTER ROLE custodian SUPERUSER;",
    );
    server.psql(
        "postgres",
        "CREATE DATABASE fidelity OWNER app TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';",
    );
    server.psql_file("fidelity", &support("postgres.sql"));
    let source = server.dump_everything("fidelity");

    let ws = Workspace::new();
    password_file(&ws.path("keys"));
    let scratch = scratch_base();
    ws.write_config(&server_config(
        "postgres",
        &server.url("fidelity"),
        scratch.path(),
    ));
    ws.custodian_json(&["init"], 0);
    let backup = ws.custodian_json(&["backup"], 0);
    assert_eq!(backup[0]["status"], "succeeded", "{backup:#}");

    // Into a new database.
    let out = restore(&ws, &["--target", &server.url("restored")], false, 0);
    let v = verified(&out);
    for class in [
        "materialized view",
        "materialized view content",
        "sequence value",
        "large object",
        "policy",
        "trigger",
        "index",
        "constraint",
        "type",
        "function",
        "extension",
        "collation",
        "default privileges",
        "rule",
    ] {
        assert!(
            v["objects"][class].as_u64().unwrap_or(0) > 0,
            "{class} not compared: {v:#}"
        );
    }
    assert_same_dump(&source, &server.dump_everything("restored"), "new database");
    let populated = server.psql(
        "restored",
        "SELECT string_agg(relname || '=' || relispopulated, ',' ORDER BY relname) FROM pg_class WHERE relkind = 'm'",
    );
    assert_eq!(
        populated,
        "deals_by_stage=true,recent_contacts=true,stage_share=true,stale_report=false,top_companies=true"
    );
    assert_eq!(
        server.psql("restored", "SELECT count(*) FROM pg_largeobject_metadata"),
        "2"
    );

    // Over an existing database: without --force it is refused and left alone; with it the
    // restore replaces it (partitioned tables, large objects and all).
    server.psql("restored", "CREATE TABLE crm.extra (x int)");
    let refused = restore(&ws, &["--target", &server.url("restored")], false, 2);
    assert!(
        refused["message"].as_str().unwrap().contains("not empty"),
        "{refused:#}"
    );
    assert_eq!(
        server.psql("restored", "SELECT count(*) FROM crm.extra"),
        "0"
    );
    let out = restore(&ws, &["--target", &server.url("restored")], true, 0);
    verified(&out);
    assert_eq!(out["replaced"], true);
    assert_same_dump(&source, &server.dump_everything("restored"), "--force");
    assert_eq!(
        server.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE '%custodian_%'"
        ),
        "0",
        "no temporary database is left"
    );

    // A drill: the ephemeral cluster applies the globals (roles custodian, postgres, app…)
    // without an error and restores ownership, so owners and privileges are compared too.
    let drill = ws.custodian_json(&["drill", "--snapshot", "latest"], 0);
    assert_eq!(drill["status"], "passed", "{drill:#}");
    let not_verified = drill["not_verified"].to_string();
    assert!(!not_verified.contains("owners and privileges"), "{drill:#}");
    assert!(
        not_verified.contains("time or volatile") || not_verified.contains("operators"),
        "what is not compared is said: {drill:#}"
    );

    // Plain restic: the README's restic-only restore (contrib/restic-restore-postgres) into
    // a database made alike.
    server.psql(
        "postgres",
        "CREATE DATABASE plain OWNER app TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';",
    );
    server.restore_with_restic_only(&ws.repo("local"), &ws.key("local"), "crm", "plain");
    let plain = server.dump_everything("plain");
    let body = |d: &str| {
        d.lines()
            .filter(|l| !l.contains("DATABASE"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_same_dump(&body(&source), &body(&plain), "plain restic");

    // Damage one object class at a time in a verified restore; the comparison names it.
    let damaged = server.url("damaged");
    for (damage, expected) in [
        (
            "DROP VIEW crm.open_deals",
            "view crm.open_deals: in the backup but missing",
        ),
        (
            "REFRESH MATERIALIZED VIEW crm.deals_by_stage WITH NO DATA",
            "materialized view crm.deals_by_stage is not populated after the restore (it was in the backup)",
        ),
        (
            "SELECT setval('crm.invoice_no', 2000)",
            "sequence crm.invoice_no: last value 2000 restored, 1030 in the backup",
        ),
        (
            "ALTER TABLE crm.audit ALTER COLUMN what TYPE text COLLATE \"POSIX\"",
            "table crm.audit: its definition differs",
        ),
        (
            "ALTER TABLE crm.companies ENABLE TRIGGER companies_audit",
            "trigger crm.companies companies_audit: its definition differs",
        ),
        (
            "DROP POLICY contacts_reporting ON crm.contacts",
            "policy crm.contacts contacts_reporting: in the backup but missing",
        ),
        (
            "REVOKE SELECT ON crm.deals FROM postgres",
            "table crm.deals: its owner or privileges differ",
        ),
        (
            "SELECT lo_unlink(424243)",
            "large objects: 1 restored, 2 in the backup",
        ),
        (
            "ALTER DATABASE damaged RESET work_mem",
            "database setting work_mem: nothing restored, `8MB` in the backup",
        ),
        (
            "UPDATE crm.contacts SET name = name || '!' WHERE id = 7",
            "table crm.contacts: content checksum",
        ),
    ] {
        restore(&ws, &["--target", &damaged], true, 0);
        server.psql("damaged", damage);
        let report = verify(&ws, &["--target", &damaged], 1);
        let found = report["verification"]["mismatches"].to_string();
        assert!(found.contains(expected), "{damage}: {report:#}");
    }
}

#[test]
fn mariadb_kitchen_sink_comes_back_whole_from_every_restore_path() {
    let server = MariaServer::start();
    server.sql("CREATE DATABASE fidelity CHARACTER SET latin1 COLLATE latin1_swedish_ci;");
    server.sql_file("fidelity", &support("mariadb.sql"));
    let source = server.dump_everything("fidelity");
    assert!(
        source.starts_with("latin1\tlatin1_swedish_ci"),
        "{source:.80}"
    );

    let ws = Workspace::new();
    password_file(&ws.path("keys"));
    let scratch = scratch_base();
    ws.write_config(&server_config(
        "mysql",
        &server.url("fidelity"),
        scratch.path(),
    ));
    ws.custodian_json(&["init"], 0);
    let backup = ws.custodian_json(&["backup"], 0);
    assert_eq!(backup[0]["status"], "succeeded", "{backup:#}");

    let out = restore(&ws, &["--target", &server.url("restored")], false, 0);
    let v = verified(&out);
    for class in [
        "table",
        "view",
        "procedure",
        "function",
        "trigger",
        "event",
        "sequence",
    ] {
        assert!(
            v["objects"][class].as_u64().unwrap_or(0) > 0,
            "{class} not compared: {v:#}"
        );
    }
    assert_same_dump(&source, &server.dump_everything("restored"), "new database");

    server.sql("CREATE TABLE restored.extra (x int)");
    let refused = restore(&ws, &["--target", &server.url("restored")], false, 2);
    assert!(
        refused["message"].as_str().unwrap().contains("not empty"),
        "{refused:#}"
    );
    let out = restore(&ws, &["--target", &server.url("restored")], true, 0);
    verified(&out);
    assert_eq!(out["replaced"], true);
    assert_same_dump(&source, &server.dump_everything("restored"), "--force");
    assert_eq!(
        server.sql("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '%\\_\\_cst\\_%'"),
        "0",
        "no temporary database is left"
    );

    let drill = ws.custodian_json(&["drill", "--snapshot", "latest"], 0);
    assert_eq!(drill["status"], "passed", "{drill:#}");
    assert!(
        drill["not_verified"].to_string().contains("grants"),
        "what is not compared is said: {drill:#}"
    );

    // Plain restic, by the README's commands.
    server.restore_with_restic_only(
        (&ws.repo("local"), &ws.key("local")),
        "crm",
        "fidelity",
        "plain",
    );
    assert_same_dump(&source, &server.dump_everything("plain"), "plain restic");

    let damaged = server.url("damaged");
    for (damage, expected) in [
        (
            "DROP VIEW damaged.vip_contacts",
            "view vip_contacts: in the backup but missing",
        ),
        (
            "DROP TRIGGER damaged.contacts_log",
            "trigger contacts_log: in the backup but missing",
        ),
        (
            "ALTER TABLE damaged.notes ENGINE=InnoDB",
            "table notes: its definition differs",
        ),
        (
            "ALTER DATABASE damaged CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci",
            "database character set: `utf8mb4` restored, `latin1` in the backup",
        ),
        (
            "ALTER EVENT damaged.nightly_cleanup ENABLE",
            "event nightly_cleanup: its definition differs",
        ),
        (
            "DROP PROCEDURE damaged.close_deal",
            "procedure close_deal: in the backup but missing",
        ),
        (
            "DELETE FROM damaged.deals WHERE id = 3",
            "table deals: 299 rows restored, manifest says 300",
        ),
    ] {
        restore(&ws, &["--target", &damaged], true, 0);
        server.sql(damage);
        let report = verify(&ws, &["--target", &damaged], 1);
        let found = report["verification"]["mismatches"].to_string();
        assert!(found.contains(expected), "{damage}: {report:#}");
    }
}

fn sqlite_dump(path: &Path) -> String {
    let header = sqlite(path, "PRAGMA user_version; PRAGMA application_id;");
    format!("{header}{}", sqlite(path, ".dump"))
}

#[test]
fn sqlite_kitchen_sink_comes_back_whole_from_every_restore_path() {
    let ws = Workspace::new();
    let db = ws.path("kitchen.sqlite");
    let out = Command::new("sqlite3")
        .arg(&db)
        .stdin(Stdio::from(fs::File::open(support("sqlite.sql")).unwrap()))
        .output()
        .unwrap();
    assert_success(&out, "sqlite3 < sqlite.sql");
    // Custodian copies with VACUUM INTO, which writes the schema in its own order; a vacuumed
    // source has that order already, so `.dump` of source and restore compare line by line.
    sqlite(&db, "VACUUM;");
    let source = sqlite_dump(&db);
    assert!(source.starts_with("42\n1129469517\n"), "{source:.40}");
    let scratch = scratch_base();
    ws.write_config(&format!(
        r#"[custodian]
state-dir = "state"
hostname = "test-host"

[source.crm]
kind = "sqlite"
path = "kitchen.sqlite"
locations = ["local"]

[location.local]
kind = "local"
path = "repos/local"
password-file = "keys/local.key"

[drills]
scratch-dir = "{}"
"#,
        scratch.path().display()
    ));
    ws.custodian_json(&["init"], 0);
    ws.custodian_json(&["backup"], 0);

    let restored = ws.path("restored.sqlite");
    let target = restored.to_str().unwrap();
    let out = restore(&ws, &["--to", target], false, 0);
    let v = verified(&out);
    for class in ["table", "index", "view", "trigger", "virtual table"] {
        assert!(
            v["objects"][class].as_u64().unwrap_or(0) > 0,
            "{class} not compared: {v:#}"
        );
    }
    assert_same_dump(&source, &sqlite_dump(&restored), "new file");
    let refused = restore(&ws, &["--to", target], false, 2);
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{refused:#}"
    );
    let out = restore(&ws, &["--to", target], true, 0);
    verified(&out);
    assert_eq!(out["replaced"], true);
    let leftovers: Vec<_> = fs::read_dir(ws.root())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".custodian-restore")
        })
        .collect();
    assert!(leftovers.is_empty(), "no temporary file is left");

    let drill = ws.custodian_json(&["drill", "--snapshot", "latest"], 0);
    assert_eq!(drill["status"], "passed", "{drill:#}");

    let plain = restic_dump(&ws, "kitchen.sqlite");
    assert_same_dump(&source, &sqlite_dump(&plain), "plain restic");

    for (damage, expected) in [
        (
            "DROP VIEW company_contacts;",
            "view company_contacts: in the backup but missing",
        ),
        (
            "DROP TRIGGER contacts_audit;",
            "trigger contacts_audit: in the backup but missing",
        ),
        (
            "PRAGMA user_version = 41;",
            "database user version: `41` restored, `42` in the backup",
        ),
        (
            "DELETE FROM tags WHERE contact_id = 3;",
            "table tags: 199 rows restored, manifest says 200",
        ),
        (
            "DROP INDEX contacts_lower_email;",
            "index contacts_lower_email: in the backup but missing",
        ),
    ] {
        restore(&ws, &["--to", target], true, 0);
        sqlite(&restored, damage);
        let report = verify(&ws, &["--to", target], 1);
        let found = report["verification"]["mismatches"].to_string();
        assert!(found.contains(expected), "{damage}: {report:#}");
    }
    let _ = (stderr, stdout);
}
