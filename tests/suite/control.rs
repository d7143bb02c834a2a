//! The control socket against a running daemon, with real unix users (created by the test when
//! missing; the test suite runs as root): roles from peer credentials, refusals, four-eyes
//! approval of a restore, malformed and oversized requests, socket permissions, and the audit
//! trail of all of it.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Workspace, assert_success};
use serde_json::Value;

const GROUP: &str = "custodian-t";
const ADMIN1: &str = "custodian-t-admin1";
const ADMIN2: &str = "custodian-t-admin2";
const VIEWER: &str = "custodian-t-viewer";
const OUTSIDER: &str = "custodian-t-outsider";

fn ensure_users() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the control-socket test needs root to create test users and run clients as them (scripts/test-all runs as root or through sudo)"
    );
    if nix::unistd::Group::from_name(GROUP).unwrap().is_none() {
        let _ = Command::new("groupadd").args(["--system", GROUP]).status();
    }
    for user in [ADMIN1, ADMIN2, VIEWER, OUTSIDER] {
        if nix::unistd::User::from_name(user).unwrap().is_none() {
            let mut cmd = Command::new("useradd");
            cmd.args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ]);
            if user != OUTSIDER {
                cmd.args(["--gid", GROUP]);
            }
            let _ = cmd.arg(user).status();
        }
    }
}

/// Runs `custodian --json ARGS` as `user`, with that user's primary group only.
fn as_user(user: &str, args: &[&str]) -> (Option<i32>, Value) {
    let u = nix::unistd::User::from_name(user).unwrap().unwrap();
    let out: Output = common::custodian_cmd()
        .arg("--json")
        .args(args)
        .current_dir("/")
        .uid(u.uid.as_raw())
        .gid(u.gid.as_raw())
        .output()
        .unwrap();
    (out.status.code(), common::reply(&out))
}

fn raw_request(socket: &Path, bytes: &[u8]) -> Value {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(bytes);
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn roles_refusals_and_four_eyes_approval() {
    ensure_users();
    let ws = Workspace::new();
    let shared = tempfile::Builder::new()
        .prefix("custodian-ctl-")
        .permissions(std::fs::Permissions::from_mode(0o755))
        .tempdir_in("/tmp")
        .unwrap();
    let socket = shared.path().join("control.sock");
    let restore_dir = shared.path().join("restored");
    std::fs::create_dir(&restore_dir).unwrap();
    let config = common::default_config().replacen(
        "hostname = \"test-host\"\n",
        &format!(
            "hostname = \"test-host\"\nschedules = \"schedules\"\ncontrol-socket = \"{}\"\n",
            socket.display()
        ),
        1,
    ) + &format!(
        "\n[access]\nadministrators = [\"{ADMIN1}\", \"{ADMIN2}\"]\nviewers = [\"@{GROUP}\"]\nsocket-group = \"{GROUP}\"\napproval-expiry = \"10m\"\n"
    );
    ws.write_config(&config);
    std::fs::create_dir_all(ws.path("schedules")).unwrap();
    std::fs::write(
        ws.path("schedules/jobs.toml"),
        "[[job]]\nname = \"nightly-backup\"\nkind = \"backup\"\ncron = \"0 0 3 1 1 *\"\n",
    )
    .unwrap();
    ws.custodian_json(&["init"], 0);

    let mut daemon = common::custodian_cmd()
        .arg("--config")
        .arg(ws.config_path())
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "the daemon did not open its socket"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o660,
        "not world-accessible"
    );
    let s = socket.to_str().unwrap();

    // A viewer sees the status but may not back up.
    let (code, status) = as_user(VIEWER, &["ctl", "--socket", s, "status"]);
    assert_eq!(
        (code, &status["ok"]),
        (Some(0), &Value::Bool(true)),
        "{status:#}"
    );
    let (code, denied) = as_user(VIEWER, &["ctl", "--socket", s, "backup"]);
    assert_eq!(code, Some(1));
    assert_eq!(denied["error"]["code"], "access.denied", "{denied:#}");
    assert!(
        denied["error"]["message"]
            .as_str()
            .unwrap()
            .contains("operator role"),
        "{denied:#}"
    );
    // Someone outside the socket's group cannot even connect.
    let (code, outsider) = as_user(OUTSIDER, &["ctl", "--socket", s, "status"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        outsider["error"]["code"], "daemon.unreachable",
        "{outsider:#}"
    );

    // An administrator runs a scheduled job now.
    // `ctl run` answers at once with the run's id; `--wait` follows it to its end.
    let (code, ran) = as_user(
        ADMIN1,
        &["ctl", "--socket", s, "run", "nightly-backup", "--wait"],
    );
    assert_eq!(code, Some(0), "{ran:#}");
    assert_eq!(ran["data"]["state"], "succeeded", "{ran:#}");
    assert_eq!(ran["data"]["job"], "nightly-backup", "{ran:#}");
    let run_id = ran["data"]["id"].as_str().unwrap().to_string();
    let (code, looked_up) = as_user(VIEWER, &["ctl", "--socket", s, "job", &run_id]);
    assert_eq!(code, Some(0), "{looked_up:#}");
    assert_eq!(looked_up["data"]["state"], "succeeded");
    let (code, status) = as_user(VIEWER, &["ctl", "--socket", s, "status"]);
    assert_eq!(code, Some(0), "{status:#}");
    let schedule = status["data"]["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == "nightly-backup")
        .cloned()
        .unwrap();
    assert!(schedule["next_fire"].is_string(), "{schedule:#}");
    assert_eq!(schedule["last"]["id"], run_id.as_str(), "{schedule:#}");
    // The people's view of the same: headed, with the next run and the last outcome.
    let viewer = nix::unistd::User::from_name(VIEWER).unwrap().unwrap();
    let human = common::custodian_cmd()
        .args(["ctl", "--socket", s, "status"])
        .current_dir("/")
        .uid(viewer.uid.as_raw())
        .gid(viewer.gid.as_raw())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("JOB") && text.contains("NEXT RUN") && text.contains("nightly-backup"),
        "{text}"
    );
    let runs = ws.custodian_json(&["runs"], 0);
    let backup = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "backup" && r["trigger"] == "socket")
        .expect("a backup run through the socket");
    assert_eq!(backup["actor"], ADMIN1);
    assert_eq!(backup["outcome"], "succeeded");

    // A restore needs a second administrator.
    let target = restore_dir.join("crm.sqlite");
    let t = target.to_str().unwrap();
    let (code, pending) = as_user(
        ADMIN1,
        &[
            "ctl",
            "--socket",
            s,
            "restore",
            "--snapshot",
            "latest",
            "--to",
            t,
        ],
    );
    assert_eq!(code, Some(1));
    assert_eq!(pending["error"]["code"], "approval.required", "{pending:#}");
    let id = pending["data"]["request"].as_str().unwrap().to_string();
    assert!(!target.exists());
    // The hint names the socket this daemon listens on (not ctl's default).
    assert!(
        pending["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("custodian approve {id} --socket {s}")),
        "{pending:#}"
    );
    // The second administrator sees what waits: who asks, what will run, until when.
    let (code, listed) = as_user(ADMIN2, &["ctl", "--socket", s, "approvals"]);
    assert_eq!(code, Some(0), "{listed:#}");
    let waiting = &listed["data"]["pending"][0];
    assert_eq!(waiting["id"], id.as_str());
    assert_eq!(waiting["requested_by"], ADMIN1);
    assert!(
        waiting["summary"].as_str().unwrap().contains(t),
        "{waiting:#}"
    );
    assert!(waiting["expires_at"].is_string());
    // Each refusal says which reason applies.
    let refusal = |user: &str, request: &str| {
        let (code, out) = as_user(user, &["approve", request, "--socket", s, "--yes"]);
        assert_eq!(code, Some(1), "{out:#}");
        (
            out["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            out["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    let (code, why) = refusal(ADMIN1, &id);
    assert_eq!(code, "approval.refused");
    assert!(why.contains("is your own"), "{why}");
    let (code, why) = refusal(VIEWER, &id);
    assert_eq!(code, "access.denied");
    assert!(why.contains("administrator role"), "{why}");
    let (code, why) = refusal(ADMIN2, "deadbeef");
    assert_eq!(code, "approval.refused");
    assert!(why.contains("does not exist"), "{why}");
    // Without --yes and without a terminal, approving asks for a confirmation it cannot get.
    let (code, unconfirmed) = as_user(ADMIN2, &["approve", &id, "--socket", s]);
    assert_eq!(
        (code, unconfirmed["error"]["code"].as_str()),
        (Some(2), Some("usage")),
        "{unconfirmed:#}"
    );
    let (code, approved) = as_user(ADMIN2, &["approve", &id, "--socket", s, "--yes"]);
    assert_eq!(code, Some(0), "{approved:#}");
    assert_eq!(
        approved["data"]["verification"]["status"], "verified",
        "{approved:#}"
    );
    // The restored file belongs to the requester, not to the daemon's user.
    assert!(target.exists());
    let meta = std::fs::metadata(&target).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        common::users::uid(ADMIN1)
    );
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(approved["data"]["handed_to"]["user"], ADMIN1);
    let (code, why) = refusal(ADMIN2, &id);
    assert_eq!(code, "approval.refused");
    assert!(
        why.contains(&format!("already approved by {ADMIN2}")),
        "{why}"
    );
    // An expired request says so.
    let (_, late) = as_user(
        ADMIN1,
        &[
            "ctl",
            "--socket",
            s,
            "restore",
            "--snapshot",
            "latest",
            "--to",
            t,
            "--force",
        ],
    );
    let late_id = late["data"]["request"].as_str().unwrap().to_string();
    common::sqlite(
        &ws.path("state/catalog.db"),
        &format!(
            "UPDATE approvals SET expires_at = '2000-01-01T00:00:00.000Z' WHERE id = '{late_id}';"
        ),
    );
    let (code, why) = refusal(ADMIN2, &late_id);
    assert_eq!(code, "approval.refused");
    assert!(why.contains("expired at 2000-01-01"), "{why}");

    // `ctl restore --wait` returns once a second administrator approved and it ran.
    let second = restore_dir.join("second.sqlite");
    let waiter = {
        let second = second.to_str().unwrap().to_string();
        let s = s.to_string();
        std::thread::spawn(move || {
            as_user(
                ADMIN1,
                &[
                    "ctl",
                    "--socket",
                    &s,
                    "restore",
                    "--snapshot",
                    "latest",
                    "--to",
                    &second,
                    "--wait",
                ],
            )
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let waiting_id = loop {
        let (_, listed) = as_user(ADMIN2, &["ctl", "--socket", s, "approvals"]);
        if let Some(p) = listed["data"]["pending"].as_array().and_then(|a| {
            a.iter().find(|r| {
                r["summary"]
                    .as_str()
                    .unwrap_or("")
                    .contains("second.sqlite")
            })
        }) {
            break p["id"].as_str().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the waiting request never appeared"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (code, _) = as_user(ADMIN2, &["approve", &waiting_id, "--socket", s, "--yes"]);
    assert_eq!(code, Some(0));
    let (code, waited) = waiter.join().unwrap();
    assert_eq!(code, Some(0), "{waited:#}");
    assert_eq!(waited["data"]["state"], "succeeded", "{waited:#}");
    assert!(second.exists());

    // `ctl` finds the socket in a configuration it may read, without the secrets it names
    // (its password files are root's alone) — and says so when it may not read it.
    let client_config = shared.path().join("client.toml");
    std::fs::write(&client_config, &config).unwrap();
    std::fs::set_permissions(&client_config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, found) = as_user(
        VIEWER,
        &["--config", client_config.to_str().unwrap(), "ctl", "status"],
    );
    assert_eq!(code, Some(0), "{found:#}");
    std::fs::set_permissions(&client_config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, unreadable) = as_user(
        VIEWER,
        &["--config", client_config.to_str().unwrap(), "ctl", "status"],
    );
    assert_eq!(code, Some(2), "{unreadable:#}");
    assert!(
        unreadable["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pass --socket"),
        "{unreadable:#}"
    );

    // Malformed and oversized requests get an answer and do not hurt the daemon.
    let bad = raw_request(&socket, b"{\"op\": \"format-disk\"}\n");
    assert_eq!(bad["code"], "request.malformed", "{bad:#}");
    let garbage = raw_request(&socket, b"\x00\xff not json at all\n");
    assert_eq!(garbage["code"], "request.malformed");
    let mut huge = vec![b'x'; 100 * 1024];
    huge.push(b'\n');
    let big = raw_request(&socket, &huge);
    assert_eq!(big["code"], "request.too_large", "{big:#}");
    let (code, _) = as_user(VIEWER, &["ctl", "--socket", s, "status"]);
    assert_eq!(code, Some(0), "still serving");

    // The audit trail has the refusals, the request, the approval and the restore.
    let audit = ws.custodian_json(&["audit", "list"], 0);
    let entries = audit.as_array().unwrap();
    let has = |action: &str, actor: &str, outcome: &str| {
        entries
            .iter()
            .any(|e| e["action"] == action && e["actor"] == actor && e["outcome"] == outcome)
    };
    assert!(has("backup", VIEWER, "refused"), "{entries:#?}");
    assert!(has("restore", ADMIN1, "approval-requested"));
    assert!(has("approve", ADMIN1, "refused"));
    assert!(has("approve", ADMIN2, "approved"));
    assert!(
        has("restore", ADMIN1, "succeeded"),
        "the restore runs as the requester"
    );
    assert!(has("backup", ADMIN1, "succeeded"));
    assert_eq!(ws.custodian_json(&["audit", "verify"], 0)["ok"], true);

    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let status = daemon.wait().unwrap();
    assert!(status.success());
    assert!(!socket.exists(), "the socket is removed on stop");
    assert_success(&ws.restic("local", &["check"]), "restic check");
}
