//! Point-in-time recovery against a real PostgreSQL: a steady writer, a physical base backup,
//! the archiver (`pg_receivewal` on Custodian's slot) running in the foreground, its
//! `pg_receivewal` killed mid-way (the slot keeps its place, supervision restarts it), and
//! recoveries to three chosen times — one inside the segment that was still partial when the
//! archive stopped — each checked by the writer's own row count. The restic CLI lists and dumps
//! the archived WAL; a recovery to the end of the archive and into a used directory close it.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common;

use common::servers::{PASSWORD, PgServer, password_file, pids_with};
use common::writer::Writer;
use common::{Workspace, custodian_cmd};

fn config(pg: &str, scratch: &std::path::Path) -> String {
    format!(
        r#"[custodian]
state-dir = "state"
hostname = "test-host"

[source.crm]
kind = "postgres"
url = "{pg}"
password-file = "keys/db.pass"

[source.crm.archive]
enabled = true
flush = "2s"

[location.local]
kind = "local"
path = "repos/local"
password-file = "keys/local.key"

[location.offsite]
kind = "local"
path = "repos/offsite"
password-file = "keys/offsite.key"

[drills]
scratch-dir = "{}"

[[drills.assertion]]
source = "crm"
name = "ticks-recorded"
sql = "SELECT count(*) FROM ticks"
expect = ">= 1"
"#,
        scratch.display()
    )
}

/// A time between two of the writer's rows, and how many rows came before it.
fn between_rows(pg: &PgServer) -> (String, u64) {
    let out = pg.psql(
        "crm",
        "SELECT to_char((a + (b - a) / 2) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), n \
         FROM (SELECT at AS a, lead(at) OVER (ORDER BY id) AS b, row_number() OVER (ORDER BY id) AS n FROM ticks) t \
         WHERE b IS NOT NULL ORDER BY n DESC LIMIT 1",
    );
    let (time, n) = out.split_once('|').unwrap();
    (time.to_string(), n.parse().unwrap())
}

/// Starts a recovered data directory on `port` (as the user who owns it) and counts `ticks`.
fn count_in(dir: &std::path::Path, port: u16) -> u64 {
    let mut psql = Command::new(PgServer::bin("psql"));
    psql.args([
        "-X",
        "-A",
        "-t",
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "custodian",
        "-d",
        "crm",
        "-c",
        "SELECT count(*) FROM ticks",
    ])
    .env("PGPASSWORD", PASSWORD);
    let out = common::servers::output(&mut psql);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let n = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let pid: i32 = std::fs::read_to_string(dir.join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    for _ in 0..100 {
        if !dir.join("postmaster.pid").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    n
}

/// A server whose `custodian` role may replicate, with the writer's table `crm.ticks`.
fn server_with_ticks() -> PgServer {
    server_with_ticks_and("")
}

/// As [`server_with_ticks`], with extra server options.
fn server_with_ticks_and(extra: &str) -> PgServer {
    let pg = PgServer::start_with(extra);
    pg.create_db("crm");
    pg.psql("postgres", "ALTER ROLE custodian REPLICATION;");
    pg.psql(
        "crm",
        "CREATE TABLE ticks (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), note text);
         ALTER TABLE ticks OWNER TO custodian;
         ALTER TABLE ticks SET (autovacuum_enabled = off);",
    );
    // Backups write a restore point (see README, PITR drills), from the postgres database.
    pg.psql(
        "postgres",
        "GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO custodian;",
    );
    pg
}

#[test]
fn recovers_to_chosen_times_from_a_base_backup_and_the_archive() {
    let pg = server_with_ticks();
    let ws = Workspace::new();
    password_file(&ws.path("keys"));
    // The recovered server runs as the scratch user: its directories must be reachable by it.
    let scratch = tempfile::tempdir().unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    ws.write_config(&config(&pg.url("crm"), scratch.path()));
    ws.custodian_json(&["init"], 0);

    // Nothing to recover from yet: the plan says what is missing.
    let err = ws.custodian_error(
        &[
            "restore",
            "--source",
            "crm",
            "--to-latest",
            "--target-dir",
            &scratch.path().join("none").display().to_string(),
            "--preview",
        ],
        1,
    );
    assert_eq!(err["code"], "pitr.not_recoverable");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("custodian base-backup"),
        "{err}"
    );

    let mut psql = pg.client("psql", "crm");
    psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"]);
    let writer = Writer::start(psql, "INSERT INTO ticks (note) VALUES (repeat('x', 200));");
    let archiver = common::start_archiver(&ws, "crm");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'custodian_crm' AND active"
        ),
        "1",
        "the archiver streams from its own slot"
    );
    let base = ws.custodian_json(&["base-backup", "--source", "crm"], 0);
    assert_eq!(base[0]["copied_to"][0], "offsite", "{base:#}");
    assert!(base[0]["info"]["start_lsn"].as_str().unwrap().contains('/'));

    // T1 in a segment that is complete by the end.
    std::thread::sleep(Duration::from_secs(2));
    let (t1, n1) = between_rows(&pg);
    pg.psql("crm", "SELECT pg_switch_wal()");

    // pg_receivewal killed: supervision starts it again on the same slot, nothing is lost.
    std::thread::sleep(Duration::from_secs(1));
    let spool = ws.path("state/archive/crm/spool").display().to_string();
    let receivers = pids_with(&["pg_receivewal", &spool]);
    assert_eq!(receivers.len(), 1, "one pg_receivewal: {receivers:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(receivers[0]).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'custodian_crm'"
        ),
        "1",
        "the slot is kept"
    );
    let (t2, n2) = between_rows(&pg);
    pg.psql("crm", "SELECT pg_switch_wal()");

    // T3 inside the segment still being written when the archive stops.
    std::thread::sleep(Duration::from_secs(2));
    let (t3, n3) = between_rows(&pg);
    writer.stop();
    // A logical backup at a quiet moment (no transaction committing): its restore point is
    // exact, and a PITR drill to it compares the recovered database with its manifest.
    let logical = ws.custodian_json(&["backup", "--source", "crm"], 0);
    assert_eq!(logical[0]["status"], "succeeded", "{logical:#}");
    std::thread::sleep(Duration::from_secs(5));
    let out = common::stop_archiver(archiver);
    let run = common::reply(&out)["data"][0].clone();
    assert!(run["receiver_restarts"].as_u64().unwrap() >= 1, "{run:#}");
    assert!(run["files_stored"].as_u64().unwrap() >= 3, "{run:#}");
    assert!(n1 < n2 && n2 < n3, "{n1} {n2} {n3}");

    let status = ws.custodian_json(&["archive", "status", "--source", "crm"], 0);
    let s = &status[0];
    assert!(s["window"]["from"].is_string(), "{s:#}");
    assert_eq!(s["gaps"], serde_json::json!([]), "{s:#}");
    assert!(s["lag_seconds"].as_f64().unwrap() < 60.0, "{s:#}");
    assert!(s["wal_snapshots"].as_u64().unwrap() <= 24, "{s:#}");

    // The plan for T3 ends in the partial segment.
    let target = |name: &str| scratch.path().join(name).display().to_string();
    let plan = ws.custodian_json(
        &[
            "restore",
            "--source",
            "crm",
            "--to-time",
            &t3,
            "--target-dir",
            &target("t3"),
            "--preview",
        ],
        0,
    );
    assert_eq!(plan["ends_in_partial"], true, "{plan:#}");
    assert!(
        !scratch.path().join("t3").exists(),
        "a preview writes nothing"
    );

    for (i, (time, expected)) in [(&t1, n1), (&t2, n2), (&t3, n3)].into_iter().enumerate() {
        let dir = target(&format!("t{}", i + 1));
        let port = common::servers::free_port();
        let r = ws.custodian_json(
            &[
                "restore",
                "--source",
                "crm",
                "--to-time",
                time,
                "--target-dir",
                &dir,
                "--start-port",
                &port.to_string(),
            ],
            0,
        );
        assert!(
            r["recovered"]["stop"]
                .as_str()
                .unwrap()
                .starts_with("recovery stopping before commit"),
            "{r:#}"
        );
        assert_eq!(
            count_in(std::path::Path::new(&dir), port),
            expected,
            "rows recovered at {time} (target {})",
            i + 1
        );
    }

    // Into a new database of a running server: recovered in a scratch cluster, dumped there,
    // restored by the verified restore (compared with the recovered database's manifest).
    let r = ws.custodian_json(
        &[
            "restore",
            "--source",
            "crm",
            "--to-time",
            &t2,
            "--target",
            &pg.url("crm_t2"),
        ],
        0,
    );
    let moved = &r["moved_into"];
    assert_eq!(moved["verification"]["status"], "verified", "{r:#}");
    assert_eq!(moved["rows"].as_u64(), Some(n2), "{r:#}");
    assert_eq!(
        pg.psql("crm_t2", "SELECT count(*) FROM ticks"),
        n2.to_string(),
        "rows recovered at {t2} in the new database"
    );
    // An existing database is refused, and left as it was.
    let err = ws.custodian_error(
        &[
            "restore",
            "--source",
            "crm",
            "--to-latest",
            "--target",
            &pg.url("crm_t2"),
        ],
        2,
    );
    assert!(
        err["message"].as_str().unwrap().contains("not empty"),
        "{err}"
    );
    assert_eq!(
        pg.psql("crm_t2", "SELECT count(*) FROM ticks"),
        n2.to_string()
    );

    // The restic CLI sees the archive: a few WAL snapshots, and every segment dumps whole.
    let out = ws.restic("local", &["snapshots", "--tag", "custodian-wal", "--json"]);
    let snaps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!snaps.is_empty() && snaps.len() <= 24, "{}", snaps.len());
    // Each WAL snapshot holds the files of one flush (or of a roll-up): together, all of it.
    let (snapshot, segment) = snaps
        .iter()
        .find_map(|snap| {
            let id = snap["id"].as_str().unwrap();
            let out = ws.restic("local", &["ls", "--json", id, "/custodian/crm/wal"]);
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["name"].as_str().map(str::to_string))
                .find(|n| n.len() == 24)
                .map(|n| (id.to_string(), n))
        })
        .expect("a complete segment in some WAL snapshot");
    let out = ws.restic(
        "local",
        &["dump", &snapshot, &format!("/custodian/crm/wal/{segment}")],
    );
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(out.stdout.len(), 16 << 20, "a whole segment");
    // `latest` for a logical backup is never a WAL or base snapshot.
    let out = ws.restic("local", &["snapshots", "--tag", "custodian", "--json"]);
    let tagged: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tagged.len(), 1, "only the logical backup: {tagged:?}");

    // PITR drills: a random point of the window and its end, each recovered, pg_amcheck'ed,
    // asserted and recorded like any drill.
    for point in ["random", "latest"] {
        let d = ws.custodian_json(&["drill", "--source", "crm", "--pitr", point], 0);
        assert_eq!(d["status"], "passed", "{d:#}");
        assert_eq!(d["selection"], format!("pitr-{point}"), "{d:#}");
        let phases: Vec<&str> = d["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        for phase in ["fetch base", "fetch WAL", "replay", "verify (pg_amcheck)"] {
            assert!(phases.contains(&phase), "{phases:?}");
        }
        assert_eq!(d["assertions"][0]["held"], true, "{d:#}");
    }
    // …and the logical backup's own restore point: the recovered database is the backup's,
    // row for row and object for object.
    let d = ws.custodian_json(&["drill", "--source", "crm", "--pitr", "backup"], 0);
    assert_eq!(d["status"], "passed", "{d:#}");
    assert_eq!(d["selection"], "pitr-backup", "{d:#}");
    assert_eq!(d["mismatches"], serde_json::json!([]), "{d:#}");
    // The writer had stopped before the backup: every row it wrote.
    let written: u64 = pg
        .psql("crm", "SELECT count(*) FROM ticks")
        .parse()
        .unwrap();
    assert_eq!(d["rows"].as_u64(), Some(written), "{d:#}");
    assert!(
        d["phases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "verify at the backup's restore point"),
        "{d:#}"
    );
    let drills = ws.custodian_json(&["drills", "--source", "crm"], 0);
    assert_eq!(drills.as_array().unwrap().len(), 3, "{drills:#}");
    assert!(
        std::fs::read_dir(scratch.path())
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with("custodian-")),
        "drills leave nothing in the scratch directory"
    );

    // To the end of the archive: everything the writer committed before the archive stopped.
    let dir = target("latest");
    let port = common::servers::free_port();
    let r = ws.custodian_json(
        &[
            "restore",
            "--source",
            "crm",
            "--to-latest",
            "--target-dir",
            &dir,
            "--start-port",
            &port.to_string(),
        ],
        0,
    );
    assert!(count_in(std::path::Path::new(&dir), port) > n3, "{r:#}");
    // A target directory that is not empty is refused.
    let err = ws.custodian_error(
        &[
            "restore",
            "--source",
            "crm",
            "--to-latest",
            "--target-dir",
            &dir,
        ],
        1,
    );
    assert!(
        err["message"].as_str().unwrap().contains("is not empty"),
        "{err}"
    );

    // Retention keeps PITR whole: with one base backup kept (a second, newer one), the first
    // goes and so does the WAL from before the second's start — the window opens later.
    ws.custodian_json(&["base-backup", "--source", "crm"], 0);
    let text = std::fs::read_to_string(ws.config_path()).unwrap();
    ws.write_config(&format!("{text}\n[retention]\nkeep-last = 1\n"));
    let plan = ws.custodian_json(&["forget", "--location", "local"], 0);
    let plan = &plan[0]["plan"];
    let window = &plan["windows"][0];
    assert!(
        window["opens_after"].as_str().unwrap() > window["opens_before"].as_str().unwrap(),
        "{window:#}"
    );
    let removed: Vec<&str> = plan["remove"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(
        removed
            .iter()
            .any(|r| r.contains("not kept by any keep rule")),
        "{removed:?}"
    );
    assert!(
        removed
            .iter()
            .any(|r| r.contains("from before the oldest kept base backup")),
        "{removed:?}"
    );
    ws.write_config(&text);
}

#[test]
fn the_daemon_keeps_the_archive_through_a_server_restart_and_base_backs_up_on_schedule() {
    use crate::daemon::{count, http_get, wait_until};
    let pg = server_with_ticks();
    let ws = Workspace::new();
    password_file(&ws.path("keys"));
    let scratch = tempfile::tempdir().unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = common::servers::free_port();
    let text = config(&pg.url("crm"), scratch.path()).replacen(
        "hostname = \"test-host\"\n",
        &format!(
            "hostname = \"test-host\"\nschedules = \"schedules\"\ncontrol-socket = \"control.sock\"\nmetrics-listen = \"127.0.0.1:{port}\"\n"
        ),
        1,
    );
    ws.write_config(&text);
    std::fs::create_dir_all(ws.path("schedules")).unwrap();
    std::fs::write(
        ws.path("schedules/pitr.toml"),
        "[[job]]\nname = \"base\"\nkind = \"base-backup\"\ncron = \"*/20 * * * * *\"\n",
    )
    .unwrap();
    ws.custodian_json(&["init"], 0);
    let mut daemon = custodian_cmd()
        .arg("--config")
        .arg(ws.config_path())
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let state = ws.path("state/archive/crm/state.json");
    wait_until("the archive's first flush", Duration::from_secs(60), || {
        std::fs::read_to_string(&state).is_ok_and(|t| t.contains("last_flush"))
    });
    wait_until("a scheduled base backup", Duration::from_secs(60), || {
        count(
            &ws,
            "SELECT count(*) FROM runs WHERE kind = 'base-backup' AND trigger = 'schedule' AND outcome = 'succeeded';",
        ) >= 1
    });
    let metrics = http_get(port, "/metrics");
    assert!(
        metrics.contains("custodian_archive_lag_seconds{source=\"crm\"}"),
        "{metrics}"
    );

    // The server goes down and comes back: the archiver reconnects on its slot by itself.
    pg.psql(
        "crm",
        "INSERT INTO ticks (note) VALUES ('before the restart');",
    );
    pg.stop();
    std::thread::sleep(Duration::from_secs(2));
    pg.start_again();
    pg.psql(
        "crm",
        "INSERT INTO ticks (note) VALUES ('after the restart');",
    );
    wait_until(
        "pg_receivewal streaming again",
        Duration::from_secs(90),
        || {
            pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'custodian_crm' AND active",
        ) == "1"
        },
    );
    pg.psql(
        "crm",
        "INSERT INTO ticks (note) VALUES ('archived after the restart');",
    );
    std::thread::sleep(Duration::from_secs(4));
    let status = ws.custodian_json(&["status"], 0);
    let archive = &status["archives"][0];
    assert_eq!(archive["source"], "crm", "{status:#}");
    assert!(
        archive["lag_seconds"].as_f64().unwrap() < 30.0,
        "{archive:#}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(daemon.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(daemon.wait().unwrap().success());
    let run = std::fs::read_to_string(&state).unwrap();
    assert!(run.contains("\"receiver_restarts\""), "{run}");

    let dir = scratch.path().join("latest");
    let port = common::servers::free_port();
    ws.custodian_json(
        &[
            "restore",
            "--source",
            "crm",
            "--to-latest",
            "--target-dir",
            &dir.display().to_string(),
            "--start-port",
            &port.to_string(),
        ],
        0,
    );
    // The test server runs with synchronous_commit = off, so the crash may have cost it the
    // last row before it: the archive must hold exactly what the server kept.
    let kept: u64 = pg
        .psql("crm", "SELECT count(*) FROM ticks")
        .parse()
        .unwrap();
    assert!(kept >= 2, "{kept}");
    assert_eq!(
        count_in(&dir, port),
        kept,
        "every row, across the server's restart"
    );
}

/// `custodian --json --config CFG ARGS` as `postgres`: the envelope, with the exit code checked.
fn as_postgres(ws: &Workspace, args: &[&str], code: i32) -> serde_json::Value {
    let config = ws.config_path().display().to_string();
    let mut all = vec!["--config", config.as_str()];
    all.extend_from_slice(args);
    let (got, envelope) = common::users::custodian_as("postgres", &all, "");
    assert_eq!(
        got,
        Some(code),
        "custodian {args:?} as postgres: {envelope:#}"
    );
    envelope
}

#[test]
fn archive_command_pushes_segments_and_restore_command_fetches_them() {
    let pg = PgServer::start();
    pg.create_db("crm");
    pg.psql(
        "crm",
        "CREATE TABLE ticks (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), note text);
         ALTER TABLE ticks OWNER TO custodian;
         ALTER TABLE ticks SET (autovacuum_enabled = off);",
    );
    // Backups write a restore point (see README, PITR drills), from the postgres database.
    pg.psql(
        "postgres",
        "GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO custodian;",
    );
    pg.psql("postgres", "ALTER ROLE custodian REPLICATION;");
    // On a host where Custodian runs beside the server, archive_command runs as the server's
    // user: here every Custodian command runs as `postgres`, which owns the workspace.
    let ws = Workspace::new();
    password_file(&ws.path("keys"));
    let scratch = tempfile::tempdir().unwrap();
    let text = config(&pg.url("crm"), scratch.path())
        .replace(
            "flush = \"2s\"",
            "flush = \"2s\"\nmethod = \"archive-command\"",
        )
        .replace(
            "[drills]\n",
            "[access]\nadministrators = [\"postgres\"]\ntwo-factor = \"off\"\n\n[drills]\n",
        );
    ws.write_config(&text);
    for dir in [ws.root(), scratch.path()] {
        let out = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    as_postgres(&ws, &["init"], 0);
    let command = format!(
        "{} --config {} wal push --source crm %p",
        env!("CARGO_BIN_EXE_custodian"),
        ws.config_path().display()
    );
    pg.psql("postgres", "ALTER SYSTEM SET archive_mode = on;");
    pg.psql(
        "postgres",
        &format!("ALTER SYSTEM SET archive_command = '{command}';"),
    );
    pg.stop();
    pg.start_again();

    // The archiver is the server's: `archive run` refuses (and the daemon starts none).
    let err = as_postgres(&ws, &["archive", "run", "--source", "crm"], 2);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("archive_command"),
        "{err}"
    );

    as_postgres(&ws, &["base-backup", "--source", "crm"], 0);
    pg.psql(
        "crm",
        "INSERT INTO ticks (note) SELECT 'row ' || g FROM generate_series(1, 100) g;",
    );
    pg.psql("crm", "SELECT pg_switch_wal();");
    pg.psql("crm", "INSERT INTO ticks (note) VALUES ('last');");
    let last = pg.psql("crm", "SELECT pg_walfile_name(pg_switch_wal());");
    // (The base backup's `.backup` history file is archived too: count the segments.)
    crate::daemon::wait_until(
        "the server archived its segments",
        Duration::from_secs(60),
        || {
            pg.psql(
                "postgres",
                &format!("SELECT archived_count >= 3 AND last_archived_wal = '{last}' FROM pg_stat_archiver"),
            ) == "t"
        },
    );
    assert_eq!(
        pg.psql("postgres", "SELECT failed_count FROM pg_stat_archiver"),
        "0"
    );
    let status = as_postgres(&ws, &["archive", "status", "--source", "crm"], 0);
    let status = &status["data"][0];
    assert!(status["wal_files"].as_u64().unwrap() >= 3, "{status:#}");
    assert!(status["window"]["from"].is_string(), "{status:#}");

    // restore_command's half: a segment comes back whole; a missing one fails, as the server
    // expects at the end of an archive.
    let segment = status["state"]["newest"].as_str().unwrap().to_string();
    let fetched = scratch.path().join("fetched");
    as_postgres(
        &ws,
        &[
            "wal",
            "fetch",
            "--source",
            "crm",
            &segment,
            &fetched.display().to_string(),
        ],
        0,
    );
    assert_eq!(std::fs::metadata(&fetched).unwrap().len(), 16 << 20);
    let err = as_postgres(
        &ws,
        &[
            "wal",
            "fetch",
            "--source",
            "crm",
            "0000000100000000000000FF",
            &fetched.display().to_string(),
        ],
        1,
    );
    assert_eq!(err["error"]["code"], "repo.file_not_in_snapshot", "{err}");

    let dir = scratch.path().join("latest");
    let port = common::servers::free_port();
    as_postgres(
        &ws,
        &[
            "restore",
            "--source",
            "crm",
            "--to-latest",
            "--target-dir",
            &dir.display().to_string(),
            "--start-port",
            &port.to_string(),
        ],
        0,
    );
    assert_eq!(count_in(&dir, port), 101);
}

#[test]
fn the_archive_follows_a_promoted_standby_onto_its_new_timeline() {
    // The archive streams from a standby (cascading, as from a replica that spares the
    // primary); the standby is promoted — a timeline switch — and the archive goes on.
    // A base backup taken on a standby needs the primary's full-page writes.
    let primary = server_with_ticks_and("-c full_page_writes=on");
    let standby = primary.start_standby();
    let ws = Workspace::new();
    password_file(&ws.path("keys"));
    let scratch = tempfile::tempdir().unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    ws.write_config(&config(&standby.url("crm"), scratch.path()));
    ws.custodian_json(&["init"], 0);
    let archiver = common::start_archiver(&ws, "crm");
    std::thread::sleep(Duration::from_secs(2));
    ws.custodian_json(&["base-backup", "--source", "crm"], 0);
    primary.psql(
        "crm",
        "INSERT INTO ticks (note) SELECT 'before' FROM generate_series(1, 50);",
    );
    primary.psql("crm", "SELECT pg_switch_wal();");
    crate::daemon::wait_until(
        "the standby replayed the rows",
        Duration::from_secs(30),
        || standby.psql("crm", "SELECT count(*) FROM ticks") == "50",
    );
    // Failover: the old primary goes, the standby is promoted onto timeline 2.
    primary.stop();
    standby.psql("postgres", "SELECT pg_promote();");
    crate::daemon::wait_until("the standby promoted", Duration::from_secs(30), || {
        standby.psql("postgres", "SELECT pg_is_in_recovery()") == "f"
    });
    standby.psql(
        "crm",
        "INSERT INTO ticks (note) SELECT 'after' FROM generate_series(1, 20);",
    );
    standby.psql("crm", "SELECT pg_switch_wal();");
    standby.psql("crm", "INSERT INTO ticks (note) VALUES ('last');");
    std::thread::sleep(Duration::from_secs(6));
    common::stop_archiver(archiver);

    // The timeline's history is archived with its segments; no gap.
    let status = ws.custodian_json(&["archive", "status", "--source", "crm"], 0);
    assert_eq!(status[0]["gaps"], serde_json::json!([]), "{status:#}");
    let out = ws.restic("local", &["snapshots", "--tag", "custodian-wal", "--json"]);
    let snaps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let history = snaps.iter().any(|s| {
        let id = s["id"].as_str().unwrap();
        let out = ws.restic("local", &["ls", id, "/custodian/crm/wal"]);
        String::from_utf8_lossy(&out.stdout).contains("00000002.history")
    });
    assert!(history, "the new timeline's history file is archived");

    let dir = scratch.path().join("latest");
    let port = common::servers::free_port();
    let r = ws.custodian_json(
        &[
            "restore",
            "--source",
            "crm",
            "--to-latest",
            "--target-dir",
            &dir.display().to_string(),
            "--start-port",
            &port.to_string(),
        ],
        0,
    );
    assert!(r["recovered"]["timeline"].as_u64().unwrap() >= 3, "{r:#}");
    assert_eq!(count_in(&dir, port), 71, "rows from both timelines");
}
