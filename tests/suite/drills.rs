//! Restore drills against real servers: PostgreSQL and MariaDB drills from local and S3
//! locations pass and report RTO per phase; a corrupted pack and a failing application assertion
//! fail with precise reasons; a killed drill leaves nothing after the next start; a cancelled
//! drill tears down at once; the scratch instance listens on no TCP port.

use crate::common;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::s3::{S3Server, credential_files};
use common::servers::{MariaServer, PgServer, cmdline, password_file, pids_with};
use common::{Workspace, assert_success, sqlite};
use serde_json::Value;

/// A directory for scratch instances that their unprivileged user can traverse (when the
/// tests run as root the instances run as `custodian` or `nobody`).
fn scratch_base() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("custodian-drill-test-")
        .permissions(fs::Permissions::from_mode(0o755))
        .tempdir_in("/tmp")
        .unwrap()
}

const ASSERTIONS: &str = r#"
[[drills.assertion]]
source = "crm"
name = "has-companies"
sql = "SELECT count(*) FROM companies"
expect = ">= 1"

[[drills.assertion]]
source = "crm"
name = "no-orphan-deals"
sql = "SELECT count(*) FROM deals WHERE company_id NOT IN (SELECT id FROM companies)"
expect = "= 0"
"#;

fn server_config(kind: &str, url: &str, scratch: &Path, extra_locations: &str) -> String {
    let locations = if extra_locations.is_empty() {
        r#"["local"]"#.to_string()
    } else {
        r#"["local", "s3"]"#.to_string()
    };
    format!(
        r#"[custodian]
state-dir = "state"
hostname = "test-host"

[source.crm]
kind = "{kind}"
url = "{url}"
password-file = "keys/db.pass"
locations = {locations}

[location.local]
kind = "local"
path = "repos/local"
password-file = "keys/local.key"
{extra_locations}
[drills]
scratch-dir = "{}"
scratch-lifetime = "10m"
{ASSERTIONS}"#,
        scratch.display()
    )
}

/// An S3 location on a test server (bucket `drills`).
fn s3_location(s3: &S3Server) -> String {
    common::s3::location_config("s3", &s3.endpoint(), "drills", "crm", None)
}

fn generate(ws: &Workspace, url: &str, scale: &str) {
    let out = ws.custodian(&[
        "generate-crm",
        "--url",
        url,
        "--password-file",
        ws.path("keys/db.pass").to_str().unwrap(),
        "--scale",
        scale,
    ]);
    assert_success(&out, "custodian generate-crm");
    // No warning spam (a plain ANALYZE as a non-superuser warns for every system catalog).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("superuser"), "{stderr}");
}

/// A PostgreSQL demo CRM of `scale`, backed up once into a local location; drills restore
/// into ephemeral instances under the returned scratch base.
fn backed_up_postgres(scale: &str) -> (PgServer, Workspace, tempfile::TempDir) {
    let server = PgServer::start();
    let ws = Workspace::new();
    password_file(&ws.path("keys"));
    let scratch = scratch_base();
    server.create_db("crm");
    generate(&ws, &server.url("crm"), scale);
    ws.write_config(&server_config(
        "postgres",
        &server.url("crm"),
        scratch.path(),
        "",
    ));
    ws.custodian_json(&["init"], 0);
    ws.custodian_json(&["backup"], 0);
    (server, ws, scratch)
}

fn phase_names(d: &Value) -> Vec<String> {
    d["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

fn assert_passed(d: &Value, location: &str) {
    assert_eq!(d["status"], "passed", "{d:#}");
    assert_eq!(d["location"], location);
    assert!(d["failure"].is_null(), "{d:#}");
    let rto = d["rto_seconds"].as_f64().unwrap();
    let phases: f64 = d["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] != "teardown")
        .map(|p| p["seconds"].as_f64().unwrap())
        .sum();
    assert!(
        rto > 0.0 && phases <= rto + 0.05,
        "RTO {rto} covers the phases ({phases})"
    );
    assert_eq!(d["tables"], 5, "{d:#}");
    assert!(d["rows"].as_u64().unwrap() > 100, "{d:#}");
    let assertions = d["assertions"].as_array().unwrap();
    assert_eq!(assertions.len(), 2, "{d:#}");
    assert!(assertions.iter().all(|a| a["held"] == true), "{d:#}");
    let names = phase_names(d);
    for wanted in ["fetch", "provision", "verify", "assertions", "teardown"] {
        assert!(
            names.iter().any(|n| n == wanted),
            "phase {wanted} in {names:?}"
        );
    }
    assert!(names.iter().any(|n| n.starts_with("restore.")), "{names:?}");
}

/// Nothing of any drill remains: no directory under the scratch base, no server process.
fn assert_no_scratch_left(scratch: &Path) {
    let left: Vec<_> = fs::read_dir(scratch)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "scratch instances left behind: {left:?}");
    let procs = pids_with(&[scratch.to_str().unwrap()]);
    assert!(procs.is_empty(), "scratch server processes left: {procs:?}");
}

#[test]
fn postgres_drills_from_local_and_s3_pass_and_clean_up() {
    let server = PgServer::start();
    let s3 = S3Server::s3s_fs();
    s3.create_bucket("drills", false);
    let ws = Workspace::new();
    password_file(&ws.path("keys"));
    credential_files(&ws.path("keys"));
    let scratch = scratch_base();
    server.create_db("crm");
    generate(&ws, &server.url("crm"), "0.002");
    let s3_location = s3_location(&s3);
    ws.write_config(&server_config(
        "postgres",
        &server.url("crm"),
        scratch.path(),
        &s3_location,
    ));
    ws.custodian_json(&["init"], 0);
    let backup = ws.custodian_json(&["backup"], 0);
    assert_eq!(backup[0]["status"], "succeeded", "{backup:#}");

    let local = ws.custodian_json(&["drill", "--location", "local", "--snapshot", "latest"], 0);
    assert_passed(&local, "local");
    assert_eq!(local["engine"], "postgres");
    assert!(
        local["scratch"]
            .as_str()
            .unwrap()
            .contains("ephemeral PostgreSQL"),
        "{local:#}"
    );
    let names = phase_names(&local);
    // Into its own ephemeral cluster, schema and data load in one transaction.
    for wanted in ["restore.globals", "restore.data", "restore.post-data"] {
        assert!(
            names.iter().any(|n| n == wanted),
            "phase {wanted} in {names:?}"
        );
    }
    assert_no_scratch_left(scratch.path());

    let remote = ws.custodian_json(&["drill", "--location", "s3"], 0);
    assert_passed(&remote, "s3");
    assert_eq!(remote["backup_id"], local["backup_id"]);
    assert_no_scratch_left(scratch.path());

    // The history lists both, newest first; the runs are recorded as drills.
    let drills = ws.custodian_json(&["drills"], 0);
    let drills = drills.as_array().unwrap();
    assert_eq!(drills.len(), 2, "{drills:#?}");
    assert_eq!(drills[0]["location"], "s3");
    assert_eq!(drills[1]["location"], "local");
    assert!(
        drills
            .iter()
            .all(|d| d["verdict"] == "passed" && d["rto_seconds"].as_f64().unwrap() > 0.0)
    );
    let runs = ws.custodian_json(&["runs"], 0);
    let drill_runs = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "drill" && r["outcome"] == "succeeded")
        .count();
    assert_eq!(drill_runs, 2);
    let removed = sqlite(
        &ws.path("state/catalog.db"),
        "SELECT count(*) FROM scratch_instances WHERE removed_by = 'teardown';",
    );
    assert_eq!(removed.trim(), "2");

    // A configured scratch server instead of an ephemeral cluster: a uniquely named database
    // is created for the drill and dropped after it.
    let config = server_config("postgres", &server.url("crm"), scratch.path(), &s3_location)
        .replacen(
            "password-file = \"keys/db.pass\"\n",
            &format!(
                "password-file = \"keys/db.pass\"\nscratch-url = \"{}\"\n",
                server.url("postgres")
            ),
            1,
        );
    ws.write_config(&config);
    let d = ws.custodian_json(&["drill", "--location", "local"], 0);
    assert_passed(&d, "local");
    let scratch_desc = d["scratch"].as_str().unwrap();
    assert!(
        scratch_desc.starts_with("database custodian_drill_")
            && scratch_desc.contains("scratch server"),
        "{scratch_desc}"
    );
    let left = server.psql(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'custodian_drill_%'",
    );
    assert_eq!(left, "0", "the scratch database is dropped");
    assert_no_scratch_left(scratch.path());
}

#[test]
fn mariadb_drill_passes_and_a_failing_assertion_fails_it() {
    let server = MariaServer::start();
    let s3 = S3Server::s3s_fs();
    s3.create_bucket("drills", false);
    let ws = Workspace::new();
    password_file(&ws.path("keys"));
    credential_files(&ws.path("keys"));
    let scratch = scratch_base();
    server.create_db("crm");
    generate(&ws, &server.url("crm"), "0.002");
    let config = server_config(
        "mysql",
        &server.url("crm"),
        scratch.path(),
        &s3_location(&s3),
    );
    ws.write_config(&config);
    ws.custodian_json(&["init"], 0);
    let backup = ws.custodian_json(&["backup"], 0);
    assert_eq!(backup[0]["status"], "succeeded", "{backup:#}");

    let d = ws.custodian_json(&["drill", "--location", "s3"], 0);
    assert_passed(&d, "s3");
    assert_eq!(d["engine"], "mysql");
    assert!(d["scratch"].as_str().unwrap().contains("MariaDB"), "{d:#}");
    assert_no_scratch_left(scratch.path());

    let companies = server.sql("SELECT count(*) FROM crm.companies");
    ws.write_config(&format!(
        "{config}\n[[drills.assertion]]\nsource = \"crm\"\nname = \"no-companies\"\n\
         sql = \"SELECT count(*) FROM companies\"\nexpect = \"= 0\"\n"
    ));
    let d = ws.custodian_json(&["drill", "--location", "local", "--snapshot", "latest"], 1);
    assert_eq!(d["status"], "failed", "{d:#}");
    assert_eq!(d["failure"]["code"], "drill.assertion_failed");
    assert_eq!(
        d["failure"]["reason"],
        format!("assertion no-companies returned {companies}, expected = 0")
    );
    assert!(d["rto_seconds"].is_null());
    assert_no_scratch_left(scratch.path());
    let drills = ws.custodian_json(&["drills"], 0);
    assert_eq!(drills[0]["verdict"], "failed");
    assert_eq!(drills[0]["failure_code"], "drill.assertion_failed");
}

#[test]
fn sqlite_drills_pick_random_older_snapshots_and_name_an_unreadable_pack() {
    let ws = Workspace::new();
    let scratch = scratch_base();
    let config = format!(
        "{}\n[drills]\nscratch-dir = \"{}\"\n",
        common::default_config(),
        scratch.path().display()
    );
    ws.write_config(&config);
    ws.custodian_json(&["init"], 0);
    let first = ws.custodian_json(&["backup"], 0);
    sqlite(
        &ws.path("crm.sqlite"),
        "UPDATE deals SET amount = amount + 1 WHERE id < 20;",
    );
    let second = ws.custodian_json(&["backup"], 0);
    let (first_id, second_id) = (
        first[0]["snapshot"]["backup_id"].as_str().unwrap(),
        second[0]["snapshot"]["backup_id"].as_str().unwrap(),
    );
    assert_ne!(first_id, second_id);

    // Rotation: never-drilled pairs first, then alternating latest / a random older snapshot.
    let a = ws.custodian_json(&["drill", "--source", "crm", "--location", "local"], 0);
    assert_eq!(a["selection"], "latest");
    assert_eq!(a["backup_id"], second_id);
    let b = ws.custodian_json(&["drill", "--source", "crm", "--location", "local"], 0);
    assert_eq!(b["selection"], "random");
    assert_eq!(b["backup_id"], first_id, "the only older snapshot");
    assert!(
        b["snapshot_age_seconds"].as_f64().unwrap() >= a["snapshot_age_seconds"].as_f64().unwrap()
    );
    let c = ws.custodian_json(&["drill"], 0);
    assert_eq!(
        c["location"], "offsite",
        "the pair never drilled comes next"
    );
    for d in [&a, &b, &c] {
        assert_eq!(d["status"], "passed", "{d:#}");
        assert_eq!(d["scratch"], "private SQLite file");
    }

    // Damage every data pack of the offsite copy: the drill fails and says where.
    for entry in walk(&ws.repo("offsite").join("data")) {
        let mut bytes = fs::read(&entry).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[mid..mid + 64] {
            *b ^= 0x5a;
        }
        fs::write(&entry, bytes).unwrap();
    }
    let d = ws.custodian_json(
        &["drill", "--location", "offsite", "--snapshot", "latest"],
        1,
    );
    assert_eq!(d["status"], "failed", "{d:#}");
    assert_eq!(d["failure"]["code"], "drill.snapshot_unreadable", "{d:#}");
    let reason = d["failure"]["reason"].as_str().unwrap();
    assert!(reason.contains("location offsite"), "{reason}");
    assert!(
        reason.contains("pack"),
        "the reason names the pack: {reason}"
    );
    assert_no_scratch_left(scratch.path());
    // The intact location still passes.
    let ok = ws.custodian_json(&["drill", "--location", "local", "--snapshot", "latest"], 0);
    assert_eq!(ok["status"], "passed");
    // Every drill is in the audit log, the failed one as failed with its code.
    let audit = ws.custodian_json(&["audit", "list", "--action", "drill"], 0);
    let audit = audit.as_array().unwrap();
    assert_eq!(audit.len(), 5, "{audit:#?}");
    assert_eq!(audit[3]["outcome"], "failed");
    assert_eq!(audit[3]["detail"], "drill.snapshot_unreadable");
    assert_eq!(audit[4]["outcome"], "succeeded");
}

#[test]
fn sqlite_drill_from_s3_passes() {
    let s3 = S3Server::s3s_fs();
    s3.create_bucket("drills", false);
    let ws = Workspace::new();
    credential_files(&ws.path("keys"));
    let scratch = scratch_base();
    let config = common::default_config().replace(
        "locations = [\"local\", \"offsite\"]",
        "locations = [\"local\", \"s3\"]",
    ) + &s3_location(&s3)
        + &format!(
            "\n[drills]\nscratch-dir = \"{}\"\n",
            scratch.path().display()
        );
    ws.write_config(&config);
    ws.custodian_json(&["init"], 0);
    let backup = ws.custodian_json(&["backup"], 0);
    assert_eq!(backup[0]["status"], "succeeded", "{backup:#}");
    let d = ws.custodian_json(&["drill", "--location", "s3", "--snapshot", "latest"], 0);
    assert_eq!(d["status"], "passed", "{d:#}");
    assert_eq!(d["location"], "s3");
    assert_eq!(d["engine"], "sqlite");
    assert_eq!(d["tables"], 3);
    assert!(d["rows"].as_u64().unwrap() >= 300, "{d:#}");
    assert_no_scratch_left(scratch.path());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Inodes of listening TCP sockets (IPv4 and IPv6).
fn listening_inodes() -> HashSet<String> {
    let mut out = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" {
                out.insert(f[9].to_string());
            }
        }
    }
    out
}

/// Whether a process holds a listening TCP socket.
fn listens_on_tcp(pid: u32) -> bool {
    let listening = listening_inodes();
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten().any(|fd| {
                fs::read_link(fd.path())
                    .ok()
                    .and_then(|l| {
                        let l = l.to_string_lossy().to_string();
                        l.strip_prefix("socket:[")
                            .and_then(|r| r.strip_suffix(']'))
                            .map(str::to_string)
                    })
                    .is_some_and(|inode| listening.contains(&inode))
            })
        })
        .unwrap_or(false)
}

fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `custodian drill` and waits until its scratch PostgreSQL runs and the restore has
/// started (pg_restore is running); returns the child and the scratch server's pid.
fn start_drill(ws: &Workspace, scratch: &Path) -> (std::process::Child, u32) {
    let child = common::custodian_cmd()
        .arg("--config")
        .arg(ws.config_path())
        .args(["--json", "drill"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let postmaster = wait_for("the scratch postgres", Duration::from_secs(60), || {
        pids_with(&["postgres", "-D", scratch.to_str().unwrap()])
            .into_iter()
            .find(|pid| cmdline(*pid).contains("listen_addresses="))
    });
    // The data loads: the dump's own data section, then the table streams.
    wait_for("the data load", Duration::from_secs(60), || {
        (!pids_with(&["pg_restore", "--section=data"]).is_empty()
            || !pids_with(&["psql", "FROM STDIN"]).is_empty())
        .then_some(())
    });
    (child, postmaster)
}

#[test]
fn killed_and_cancelled_drills_leave_no_scratch_instance() {
    // Large enough that the restore takes a few seconds.
    let (_server, ws, scratch) = backed_up_postgres("0.05");

    // While it runs, the scratch instance is private: no TCP listener, a 0700 socket directory.
    let (mut child, postmaster) = start_drill(&ws, scratch.path());
    assert!(
        !listens_on_tcp(postmaster),
        "the scratch postgres must not listen on TCP"
    );
    let server_pid = pids_with(&["postgres", "listen_addresses=127.0.0.1"])
        .into_iter()
        .next()
        .expect("the test server");
    assert!(
        listens_on_tcp(server_pid),
        "control: the test server does listen on TCP"
    );
    let instance = fs::read_dir(scratch.path())
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let mode = fs::metadata(&instance).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", instance.display());

    // SIGKILL: nothing can clean up now; the next start must.
    let _ = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let drills = ws.custodian_json(&["drills"], 0);
    assert_eq!(drills[0]["verdict"], "interrupted", "{drills:#}");
    assert_eq!(drills[0]["failure_code"], "drill.interrupted");
    wait_for(
        "the orphaned scratch server to be gone",
        Duration::from_secs(15),
        || {
            pids_with(&[scratch.path().to_str().unwrap()])
                .is_empty()
                .then_some(())
        },
    );
    assert_no_scratch_left(scratch.path());
    let swept = sqlite(
        &ws.path("state/catalog.db"),
        "SELECT removed_by FROM scratch_instances;",
    );
    assert_eq!(swept.trim(), "sweep");

    // SIGTERM: the drill stops, tears down at once, and records the cancel.
    let (child, _) = start_drill(&ws, scratch.path());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: Value = common::reply(&out)["data"].clone();
    assert_eq!(d["status"], "failed", "{d:#}");
    assert_eq!(d["failure"]["code"], "drill.cancelled");
    assert_no_scratch_left(scratch.path());
    let removed = sqlite(
        &ws.path("state/catalog.db"),
        "SELECT removed_by FROM scratch_instances ORDER BY created_at;",
    );
    assert_eq!(removed.trim(), "sweep\nteardown");
}

#[test]
fn a_drill_cancelled_while_its_scratch_server_starts_leaves_nothing() {
    let (_server, ws, scratch) = backed_up_postgres("0.002");
    let child = common::custodian_cmd()
        .arg("--config")
        .arg(ws.config_path())
        .args(["--json", "drill"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The moment the instance's directory exists, initdb is running or about to: cancel then.
    wait_for("the scratch directory", Duration::from_secs(60), || {
        fs::read_dir(scratch.path())
            .unwrap()
            .flatten()
            .next()
            .map(|_| ())
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: Value = common::reply(&out)["data"].clone();
    assert_eq!(d["failure"]["code"], "drill.cancelled", "{d:#}");
    // Neither the directory nor a server outlives the cancelled start.
    wait_for("no scratch server process", Duration::from_secs(15), || {
        pids_with(&[scratch.path().to_str().unwrap()])
            .is_empty()
            .then_some(())
    });
    assert_no_scratch_left(scratch.path());
}
