//! PostgreSQL sources against a real server started by the test: round-trip fidelity, restic as
//! the oracle for the stored dump, consistency under concurrent writes, failure semantics
//! (killed pg_dump, server gone, wrong password), and restores.

use crate::common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::servers::{
    PASSWORD, PgServer, assert_same_dump, cmdline, environ, password_file, pids_with,
};
use common::{Workspace, assert_success, stderr};

fn pg_config(server: &PgServer, db: &str) -> String {
    format!(
        r#"[custodian]
state-dir = "state"
hostname = "test-host"

[source.crm]
kind = "postgres"
url = "{}"
password-file = "keys/db.pass"
locations = ["local", "offsite"]

[location.local]
kind = "local"
path = "repos/local"
password-file = "keys/local.key"

[location.offsite]
kind = "local"
path = "repos/offsite"
password-file = "keys/offsite.key"
"#,
        server.url(db)
    )
}

fn setup(server: &PgServer, db: &str, scale: &str) -> Workspace {
    let ws = Workspace::new();
    password_file(&ws.path("keys"));
    server.create_db(db);
    let out = ws.custodian(&[
        "generate-crm",
        "--url",
        &server.url(db),
        "--password-file",
        ws.path("keys/db.pass").to_str().unwrap(),
        "--scale",
        scale,
    ]);
    assert_success(&out, "custodian generate-crm");
    ws.write_config(&pg_config(server, db));
    ws.custodian_json(&["init"], 0);
    ws
}

#[test]
fn backup_and_restore_round_trip_identically() {
    let server = PgServer::start();
    let ws = setup(&server, "crm", "0.002");
    server.psql(
        "postgres",
        "CREATE ROLE crm_reader NOLOGIN PASSWORD 'reader-secret';",
    );

    let backup = ws.custodian_json(&["backup"], 0);
    let b = &backup[0];
    assert_eq!(b["status"], "succeeded", "{b:#}");
    assert_eq!(b["engine"], "postgres");
    assert_eq!(b["tables"], 5);
    let files = b["files"].as_array().unwrap();
    let dump = files.iter().find(|f| f["name"] == "crm.dump").unwrap();

    // restic: check every byte, restore the whole stream (its size is in the tree), dump it.
    for location in ["local", "offsite"] {
        assert_success(
            &ws.restic(location, &["check", "--read-data"]),
            "restic check",
        );
    }
    let target = ws.path("restic-restore");
    let out = ws.restic(
        "offsite",
        &[
            "restore",
            "latest",
            "--target",
            target.to_str().unwrap(),
            "--verify",
        ],
    );
    assert_success(&out, "restic restore --verify");
    let restored = target.join("custodian/crm/crm.dump");
    assert_eq!(
        std::fs::metadata(&restored).unwrap().len(),
        dump["bytes"].as_u64().unwrap()
    );
    assert_eq!(
        common::sha256_file(&restored),
        dump["sha256"].as_str().unwrap()
    );

    // Globals: roles without passwords.
    let globals = ws.restic("local", &["dump", "latest", "/custodian/crm/globals.sql"]);
    assert_success(&globals, "restic dump globals");
    let globals = String::from_utf8_lossy(&globals.stdout);
    assert!(globals.contains("CREATE ROLE crm_reader"), "{globals}");
    assert!(!globals.contains("SCRAM-SHA-256") && !globals.contains("reader-secret"));

    // Custodian restores into a fresh database, verified, identical to the source.
    let out = ws.custodian_json(
        &[
            "restore",
            "--snapshot",
            "latest",
            "--target",
            &server.url("crm_restored"),
        ],
        0,
    );
    assert_eq!(out["verification"]["status"], "verified", "{out:#}");
    assert_eq!(out["verification"]["tables"].as_array().unwrap().len(), 5);
    assert_same_dump(
        &server.dump_sql("crm"),
        &server.dump_sql("crm_restored"),
        "crm_restored",
    );

    // Plain restic and the PostgreSQL tools alone give the same database (the README's
    // restic-only restore: contrib/restic-restore-postgres).
    server.create_db("crm_from_restic");
    server.restore_with_restic_only(
        &ws.repo("local"),
        &ws.key("local"),
        "crm",
        "crm_from_restic",
    );
    assert_same_dump(
        &server.dump_sql("crm"),
        &server.dump_sql("crm_from_restic"),
        "crm_from_restic",
    );

    // A non-empty target is refused without --force, replaced with it.
    let out = ws.custodian(&[
        "restore",
        "--snapshot",
        "latest",
        "--target",
        &server.url("crm_restored"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));
    server.psql("crm_restored", "DELETE FROM notes WHERE id % 2 = 0;");
    let out = ws.custodian_json(
        &[
            "restore",
            "--snapshot",
            "latest",
            "--target",
            &server.url("crm_restored"),
            "--force",
        ],
        0,
    );
    assert_eq!(out["verification"]["status"], "verified");
    assert_same_dump(
        &server.dump_sql("crm"),
        &server.dump_sql("crm_restored"),
        "crm_restored",
    );

    // Parallel restore from a spooled file, with the globals applied first.
    let out = ws.custodian_json(
        &[
            "restore",
            "--snapshot",
            "latest",
            "--target",
            &server.url("crm_parallel"),
            "--jobs",
            "2",
            "--with-globals",
        ],
        0,
    );
    assert_eq!(out["verification"]["status"], "verified");
    assert_same_dump(
        &server.dump_sql("crm"),
        &server.dump_sql("crm_parallel"),
        "crm_parallel",
    );
    let leftovers = std::fs::read_dir(ws.path("state/scratch")).unwrap().count();
    assert_eq!(leftovers, 0, "spool files and credentials are removed");
}

#[test]
fn the_manifest_matches_the_dump_under_concurrent_writes() {
    let server = PgServer::start();
    let ws = setup(&server, "busy", "0.01");
    // A writer committing small transactions continuously while the backup runs.
    let mut writer = server
        .client("psql", "busy")
        .args(["-X", "-q", "-c"])
        .arg(
            "DO $$ BEGIN FOR i IN 1..200000 LOOP
                INSERT INTO activities (contact_id, kind, subject, done, created_at)
                     VALUES (1 + i % 100, 'call', 'concurrent ' || i, false, now());
                UPDATE deals SET amount = amount + 1 WHERE id = 1 + i % 50;
                COMMIT;
             END LOOP; END $$",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let backup = ws.custodian_json(&["backup", "--source", "crm"], 0);
    let _ = writer.kill();
    let _ = writer.wait();
    let manifest_rows = backup[0]["rows"].as_u64().unwrap();
    let now: u64 = server
        .psql("busy", "SELECT (SELECT count(*) FROM companies) + (SELECT count(*) FROM contacts) + (SELECT count(*) FROM deals) + (SELECT count(*) FROM activities) + (SELECT count(*) FROM notes);")
        .parse()
        .unwrap();
    assert!(
        now > manifest_rows,
        "the writer must have kept writing during the backup"
    );
    // The restore is verified against the manifest: counts and checksums taken in the dump's
    // own snapshot must match what pg_dump wrote, despite the writes.
    let out = ws.custodian_json(
        &[
            "restore",
            "--snapshot",
            "latest",
            "--target",
            &server.url("busy_restored"),
        ],
        0,
    );
    assert_eq!(out["verification"]["status"], "verified", "{out:#}");
}

/// Holds `ACCESS EXCLUSIVE` on `notes` in `db` for two minutes (until killed), so that a
/// backup's tools wait and can be caught running.
fn lock_notes(server: &PgServer, db: &str) -> std::process::Child {
    let locker = server
        .client("psql", db)
        .args(["-X", "-q", "-c"])
        .arg("BEGIN; LOCK TABLE notes IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120);")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    locker
}

/// `custodian --json backup` in the background.
fn start_backup(ws: &Workspace) -> std::process::Child {
    common::custodian_cmd()
        .args([
            "--json",
            "--config",
            ws.config_path().to_str().unwrap(),
            "backup",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_killed_table_stream_fails_the_backup_and_is_named() {
    let server = PgServer::start();
    let ws = setup(&server, "streams", "0.002");
    // A lock makes the table streams (and pg_dump) wait, so one can be caught running: its
    // backend is terminated under it, as when a DBA kills it or the server drops it.
    let mut locker = lock_notes(&server, "streams");
    let started = Instant::now();
    let backup = start_backup(&ws);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let killed = server.psql(
            "postgres",
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE datname = 'streams' AND query LIKE 'COPY (SELECT%\"notes\"%'",
        );
        if killed != "0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stream of notes never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The streams run in Custodian itself: no process carries the password.
    assert!(pids_with(&["psql", "COPY (SELECT"]).is_empty());
    let out = backup.wait_with_output().unwrap();
    // The failure ends the backup at once: nothing waits for the lock to go.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    let _ = locker.kill();
    let _ = locker.wait();
    // The server side of the killed locker would sleep on, holding its lock.
    server.psql(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid();",
    );
    assert_eq!(out.status.code(), Some(1));
    let report = common::reply(&out)["data"].clone();
    assert_eq!(report[0]["status"], "failed");
    assert_eq!(report[0]["error_code"], "source.dump_failed");
    let error = report[0]["error"].as_str().unwrap();
    assert!(
        error.contains("reading table public.notes") && error.contains("connection"),
        "the stream, not the tools killed because of it, is named: {error}"
    );
    assert!(!error.contains(PASSWORD));
    assert!(ws.restic_snapshots("local").is_empty());
    assert_success(&ws.restic("local", &["check"]), "restic check");
    // No tool of the failed backup is left running.
    assert!(
        pids_with(&["psql", "COPY (SELECT"])
            .iter()
            .all(|p| !environ(*p).contains("PGDATABASE=streams"))
    );
    assert!(
        pids_with(&["pg_dump", "--snapshot="])
            .iter()
            .all(|p| !environ(*p).contains("PGDATABASE=streams"))
    );

    // Without the lock, the next backup is whole.
    let backup = ws.custodian_json(&["backup"], 0);
    assert_eq!(backup[0]["status"], "succeeded", "{backup:#}");
}

#[test]
fn a_killed_pg_dump_or_a_vanished_server_commits_nothing() {
    let server = PgServer::start();
    let ws = setup(&server, "blocked", "0.002");
    // Hold a lock that makes pg_dump wait, so it can be caught running.
    let mut locker = lock_notes(&server, "blocked");
    let backup = start_backup(&ws);
    let deadline = Instant::now() + Duration::from_secs(30);
    let pid = loop {
        // The data dump, not the schema-only one beside it (both wait behind the lock).
        let found: Vec<u32> = pids_with(&["pg_dump", "--snapshot="])
            .into_iter()
            .filter(|pid| {
                environ(*pid).contains("PGDATABASE=blocked")
                    && !cmdline(*pid).contains("--schema-only")
            })
            .collect();
        if let Some(pid) = found.first() {
            break *pid;
        }
        assert!(Instant::now() < deadline, "pg_dump never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    // No secret in its command line or environment: the password is in a private PGPASSFILE.
    assert!(!cmdline(pid).contains(PASSWORD), "{}", cmdline(pid));
    let env = environ(pid);
    assert!(
        !env.contains(PASSWORD) && !env.contains("PGPASSWORD"),
        "{env}"
    );
    assert!(env.contains("PGPASSFILE="), "{env}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = backup.wait_with_output().unwrap();
    let _ = locker.kill();
    let _ = locker.wait();
    assert_eq!(out.status.code(), Some(1));
    let report = common::reply(&out)["data"].clone();
    assert_eq!(report[0]["status"], "failed");
    assert_eq!(report[0]["error_code"], "source.dump_failed");
    let error = report[0]["error"].as_str().unwrap();
    assert!(
        error.contains("pg_dump ended with killed by signal 9"),
        "{error}"
    );
    assert!(
        ws.restic_snapshots("local").is_empty(),
        "a killed dump must not become a snapshot"
    );
    assert_success(&ws.restic("local", &["check"]), "restic check");

    // The server disappears while pg_dump waits: again no snapshot, and a clear error.
    let mut locker = lock_notes(&server, "blocked");
    let backup = start_backup(&ws);
    let deadline = Instant::now() + Duration::from_secs(30);
    while pids_with(&["pg_dump", "--snapshot="])
        .into_iter()
        .all(|pid| !environ(pid).contains("PGDATABASE=blocked"))
    {
        assert!(Instant::now() < deadline, "pg_dump never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop();
    let out = backup.wait_with_output().unwrap();
    let _ = locker.kill();
    let _ = locker.wait();
    assert_eq!(out.status.code(), Some(1));
    let report = common::reply(&out)["data"].clone();
    assert_eq!(report[0]["status"], "failed");
    assert!(
        report[0]["error"].as_str().unwrap().contains("source crm"),
        "{report:#}"
    );
    assert!(ws.restic_snapshots("local").is_empty());
    let runs = ws.custodian_json(&["runs"], 0);
    let failed: Vec<_> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "backup" && r["outcome"] == "failed")
        .collect();
    assert_eq!(failed.len(), 2, "{runs:#}");

    // The server is back (restarted after its crash): the next backup is whole and verified.
    server.start_again();
    let backup = ws.custodian_json(&["backup"], 0);
    assert_eq!(backup[0]["status"], "succeeded", "{backup:#}");
    assert_eq!(ws.restic_snapshots("local").len(), 1);
    assert_success(
        &ws.restic("local", &["check", "--read-data"]),
        "restic check",
    );
}

#[test]
fn wrong_passwords_and_unreachable_servers_are_named() {
    let server = PgServer::start();
    let ws = setup(&server, "auth", "0.001");
    std::fs::write(ws.path("keys/db.pass"), "wrong-password\n").unwrap();
    let out = ws.custodian(&["--json", "backup"]);
    assert_eq!(out.status.code(), Some(1));
    let report = common::reply(&out)["data"].clone();
    let error = report[0]["error"].as_str().unwrap();
    assert_eq!(report[0]["error_code"], "source.unavailable");
    assert!(error.contains("source crm"), "{error}");
    assert!(error.contains("password authentication failed"), "{error}");
    assert!(!error.contains("wrong-password"), "{error}");

    password_file(&ws.path("keys"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    ws.write_config(
        &pg_config(&server, "auth").replace(&format!(":{}/", server.port), &format!(":{closed}/")),
    );
    let out = ws.custodian(&["--json", "backup"]);
    assert_eq!(out.status.code(), Some(1));
    let report = common::reply(&out)["data"].clone();
    let error = report[0]["error"].as_str().unwrap();
    assert!(
        error.contains("source crm") && error.contains(&format!("127.0.0.1:{closed}")),
        "{error}"
    );
    assert!(ws.restic_snapshots("local").is_empty());
}

/// Peak resident memory of a running process, polled until it exits (KiB).
fn peak_rss_while_running(child: &mut std::process::Child) -> u64 {
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        if let Some(kib) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    peak
}

#[test]
fn a_table_larger_than_custodians_memory_streams_through() {
    let server = PgServer::start();
    let ws = setup(&server, "bigtable", "0.001");
    // ~330 MiB in one table: several times what the backup process may hold.
    server.psql(
        "bigtable",
        "CREATE TABLE big (id bigint PRIMARY KEY, payload text NOT NULL);
         INSERT INTO big SELECT g, repeat(md5(g::text), 20) FROM generate_series(1, 500000) g;
         ALTER TABLE big OWNER TO custodian;",
    );
    let table_mib: u64 = server
        .psql("bigtable", "SELECT pg_total_relation_size('big') / 1048576")
        .parse()
        .unwrap();
    let mut backup = common::custodian_cmd()
        .args([
            "--json",
            "--config",
            ws.config_path().to_str().unwrap(),
            "backup",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let peak_kib = peak_rss_while_running(&mut backup);
    let out = backup.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = common::reply(&out)["data"].clone();
    assert_eq!(report[0]["status"], "succeeded", "{report:#}");
    let peak_mib = peak_kib / 1024;
    eprintln!("table big: {table_mib} MiB; custodian backup peak RSS {peak_mib} MiB");
    assert!(table_mib >= 300, "{table_mib}");
    // The dump streams: the process never holds the table. (Its floor is the ~128 MiB scrypt
    // needs to open a repository; 256 MiB is the benchmark's memory budget.)
    assert!(
        peak_mib < table_mib && peak_mib <= 256,
        "peak RSS {peak_mib} MiB for a {table_mib} MiB table"
    );
    assert_success(
        &ws.restic("local", &["check", "--read-data"]),
        "restic check",
    );
}

/// Files under a directory, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_restore_that_fails_leaves_the_target_exactly_as_it_was() {
    let server = PgServer::start();
    let ws = setup(&server, "crm", "0.002");
    ws.custodian_json(&["backup"], 0);
    let target = server.url("target");
    let first = ws.custodian_json(&["restore", "--snapshot", "latest", "--target", &target], 0);
    assert_eq!(first["verification"]["status"], "verified");
    server.psql(
        "target",
        "CREATE TABLE marker (note text); INSERT INTO marker VALUES ('mine')",
    );
    let before = server.dump_sql("target");

    // Damage every data pack of the primary location: the restore from it must fail while it
    // streams, and the target must not change at all (not emptied, not half-loaded).
    for pack in files_under(&ws.repo("local").join("data")) {
        let mut bytes = std::fs::read(&pack).unwrap();
        let (middle, len) = (bytes.len() / 2, bytes.len());
        for b in &mut bytes[middle..(middle + 64).min(len)] {
            *b ^= 0x5a;
        }
        let mut perms = std::fs::metadata(&pack).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&pack, perms).unwrap();
        std::fs::write(&pack, bytes).unwrap();
    }
    let failed = ws.custodian_error(
        &[
            "restore",
            "--location",
            "local",
            "--snapshot",
            "latest",
            "--target",
            &target,
            "--force",
        ],
        1,
    );
    assert_eq!(failed["code"], "repo.unreadable_pack", "{failed:#}");
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.contains("location local") && message.contains("restore from another location"),
        "{message}"
    );
    assert_same_dump(
        &before,
        &server.dump_sql("target"),
        "target after a failed restore",
    );
    assert_eq!(
        server.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE '%\\_\\_custodian\\_%'"
        ),
        "0",
        "the temporary database is gone"
    );
    let runs = ws.custodian_json(&["runs"], 0);
    let restore_run = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "restore" && r["outcome"] == "failed")
        .unwrap();
    assert_eq!(restore_run["error_code"], "repo.unreadable_pack");
    // The damage is the location's from now on.
    ws.custodian_json(&["status"], 1);

    // From the other location, with --force, the target is replaced.
    let out = ws.custodian_json(
        &[
            "restore",
            "--location",
            "offsite",
            "--snapshot",
            "latest",
            "--target",
            &target,
            "--force",
        ],
        0,
    );
    assert_eq!(out["verification"]["status"], "verified");
    assert_eq!(out["replaced"], true);
    assert_eq!(
        server.psql(
            "target",
            "SELECT count(*) FROM pg_class WHERE relname = 'marker'"
        ),
        "0"
    );

    // An unreachable target is named as the restore target, not as the source.
    let out = ws.custodian_error(
        &[
            "restore",
            "--location",
            "offsite",
            "--snapshot",
            "latest",
            "--target",
            "postgres://custodian@127.0.0.1:1/nowhere",
        ],
        1,
    );
    assert_eq!(out["code"], "restore.target_unavailable", "{out:#}");
    let message = out["message"].as_str().unwrap();
    assert!(message.starts_with("restore target "), "{message}");
    assert!(!message.contains("source"), "{message}");
}

/// A PostgreSQL backup written before table streams (manifest format 2: the rows inside one
/// `pg_dump`, a schema-only dump beside it) still restores, verified. The snapshot is written
/// the way those versions wrote it — the same archive code, the old layout.
#[test]
fn a_backup_from_before_table_streams_still_restores() {
    let server = PgServer::start();
    let ws = setup(&server, "legacy", "0.002");
    // Today's backup gives a real manifest (objects, row counts) and globals.sql.
    ws.custodian_json(&["backup"], 0);
    let read = |file: &str| {
        let out = ws.restic(
            "local",
            &["dump", "latest", &format!("/custodian/crm/{file}")],
        );
        assert_success(&out, "restic dump");
        out.stdout
    };
    let mut manifest: serde_json::Value = serde_json::from_slice(&read("manifest.json")).unwrap();
    let globals = read("globals.sql");
    assert!(
        manifest["streams"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );

    let pg_dump = |extra: &[&str]| {
        let out = server
            .client("pg_dump", "legacy")
            .args(["--format=custom", "--compress=0"])
            .args(extra)
            .output()
            .unwrap();
        assert_success(&out, "pg_dump");
        out.stdout
    };
    let dump = pg_dump(&[]);
    let schema = pg_dump(&["--schema-only"]);
    // The old manifest: no streams, the dump first, row counts (a mode every format knows).
    manifest["format"] = 2.into();
    manifest.as_object_mut().unwrap().remove("streams");
    manifest["files"] = serde_json::json!([
        {"name": "legacy.dump"}, {"name": "legacy.schema.dump"}, {"name": "globals.sql"}
    ]);
    for table in manifest["tables"].as_array_mut().unwrap() {
        table["mode"] = "count".into();
        table.as_object_mut().unwrap().remove("checksum");
    }
    let manifest = serde_json::to_vec_pretty(&manifest).unwrap();

    let config = custodian::config::Config::load(&ws.config_path()).unwrap();
    let location = config.location("local").unwrap();
    let backend =
        custodian::repo::Backend::uncached(custodian::location::backend(location).unwrap());
    let password = location.password.resolve().unwrap();
    let repo =
        custodian::repo::Repo::open("local", &location.repository(), backend, &password).unwrap();
    let now = jiff::Timestamp::now();
    let entry = |name: &str, bytes: Vec<u8>| custodian::repo::ArchiveEntry {
        name: name.to_string(),
        size: Some(bytes.len() as u64),
        sha256: None,
        mtime: now,
        cuts: None,
        open: Box::new(move || {
            Ok(Box::new(std::io::Cursor::new(bytes)) as Box<dyn std::io::Read + Send>)
        }),
    };
    let written = repo
        .archive(custodian::repo::ArchiveRequest {
            source: "crm".into(),
            engine: "postgres".into(),
            hostname: "legacy-host".into(),
            time: now,
            entries: vec![
                entry("legacy.dump", dump),
                entry("legacy.schema.dump", schema),
                entry("globals.sql", globals),
                entry("manifest.json", manifest),
            ],
            bars: None,
            on_read: None,
        })
        .unwrap();

    let out = ws.custodian_json(
        &[
            "restore",
            "--snapshot",
            &written.snapshot.id,
            "--target",
            &server.url("legacy_restored"),
        ],
        0,
    );
    assert_eq!(out["verification"]["status"], "verified", "{out:#}");
    assert!(
        out["verification"]["not_verified"]
            .to_string()
            .contains("rows counted only"),
        "what the old manifest could not cover is said: {out:#}"
    );
    assert_same_dump(
        &server.dump_sql("legacy"),
        &server.dump_sql("legacy_restored"),
        "legacy_restored",
    );
}

#[test]
fn a_dominant_table_streams_in_key_ranges_and_comes_back_whole() {
    let server = PgServer::start();
    let ws = setup(&server, "ranges", "0.002");
    // One table holds most of the bytes: it is split into one key range per stream
    // (parallel = 2), with gaps and negative keys so that the ranges' arithmetic is tested.
    server.psql(
        "ranges",
        "CREATE TABLE big (id bigint PRIMARY KEY, body text NOT NULL, n int);
         INSERT INTO big SELECT g * 3 - 50000, repeat(md5(g::text), 4), g % 7 FROM generate_series(1, 150000) g;
         CREATE INDEX big_n ON big (n);
         ALTER TABLE big OWNER TO custodian;
         ANALYZE;",
    );
    let backup = ws.custodian_json(&["backup"], 0);
    assert_eq!(backup[0]["status"], "succeeded", "{backup:#}");
    let out = ws.restic("local", &["dump", "latest", "/custodian/crm/manifest.json"]);
    assert_success(&out, "restic dump manifest");
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let parts: Vec<&serde_json::Value> = manifest["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["table"] == "public.big")
        .collect();
    assert_eq!(parts.len(), 2, "{manifest:#}");
    assert_eq!(parts[0]["part"]["number"], 1);
    assert!(parts[0]["part"]["from"].is_null() && parts[1]["part"]["to"].is_null());
    assert_eq!(parts[0]["part"]["to"], parts[1]["part"]["from"]);
    let big = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "public.big")
        .unwrap();
    assert_eq!(big["rows"], 150_000, "one summary for the whole table");

    let out = ws.custodian_json(
        &[
            "restore",
            "--snapshot",
            "latest",
            "--target",
            &server.url("ranges_restored"),
        ],
        0,
    );
    assert_eq!(out["verification"]["status"], "verified", "{out:#}");
    assert_same_dump(
        &server.dump_sql("ranges"),
        &server.dump_sql("ranges_restored"),
        "ranges_restored",
    );
    server.create_db("ranges_plain");
    server.restore_with_restic_only(&ws.repo("local"), &ws.key("local"), "crm", "ranges_plain");
    assert_same_dump(
        &server.dump_sql("ranges"),
        &server.dump_sql("ranges_plain"),
        "restic only",
    );
    let drill = ws.custodian_json(&["drill", "--snapshot", "latest"], 0);
    assert_eq!(drill["status"], "passed", "{drill:#}");

    // A row lost from one range is found.
    server.psql("ranges_restored", "DELETE FROM big WHERE id = 100;");
    let out = ws.custodian_json(
        &[
            "verify",
            "--snapshot",
            "latest",
            "--target",
            &server.url("ranges_restored"),
        ],
        1,
    );
    assert!(
        out["verification"]["mismatches"]
            .to_string()
            .contains("public.big"),
        "{out:#}"
    );
}
