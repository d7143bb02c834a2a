//! Access control from the CLI, as root and as real administrators: TOTP enrolment and codes
//! (valid, invalid, replayed, rate-limited, locked out — every attempt audited), `[access]
//! enforce` refusing root until a second administrator approves exactly this operation through
//! the daemon, `--break-glass` audited, alerted at once and listed by the next report, and the
//! report's ACCESS rule reading the grants back.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::users::{Codes, custodian_as, ensure};
use common::webhook::Webhook;
use common::{Workspace, assert_success};
use serde_json::Value;

const GROUP: &str = "custodian-a";
const ADMIN: &str = "custodian-a-admin";

fn audit(ws: &Workspace, action: &str) -> Vec<Value> {
    ws.custodian_json(&["audit", "list", "--action", action], 0)
        .as_array()
        .unwrap()
        .clone()
}

fn outcomes(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect()
}

fn enroll(ws: &Workspace, user: &str, stdin: &str) -> String {
    let (code, out) =
        ws.custodian_stdin(&["access", "totp", "enroll", user, "--totp-stdin"], stdin);
    assert_eq!(code, Some(0), "{out:#}");
    let uri = out["data"]["uri"].as_str().unwrap().to_string();
    assert!(uri.starts_with("otpauth://totp/Custodian:"), "{uri}");
    uri
}

#[test]
fn second_factors_are_single_use_rate_limited_and_lock_out() {
    let ws = Workspace::new();
    ws.custodian_json(&["init"], 0);
    ws.custodian_json(&["backup"], 0);
    let target = ws.path("restored.sqlite");
    let t = target.to_str().unwrap();
    let restore = |extra: &[&str], stdin: &str| {
        let mut args = vec!["restore", "--snapshot", "latest", "--to", t, "--totp-stdin"];
        args.extend_from_slice(extra);
        ws.custodian_stdin(&args, stdin)
    };

    // Nobody enrolled and two-factor optional (the default): a restore needs no code, and the
    // grant records that it went without.
    let (c, out) = restore(&[], "");
    assert_eq!(c, Some(0), "{out:#}");
    std::fs::remove_file(&target).unwrap();

    // The first enrolment needs no second factor (there is none yet); it is audited.
    let uri = enroll(&ws, "root", "");
    let mut codes = Codes::new(&uri);
    assert_eq!(outcomes(&audit(&ws, "totp.enroll")), ["enrolled"]);
    let (c, again) = ws.custodian_stdin(&["access", "totp", "enroll", "root"], "");
    assert_eq!(
        (c, again["error"]["code"].as_str()),
        (Some(2), Some("usage")),
        "{again:#}"
    );

    // Enrolled: no code, no restore.
    let (c, out) = ws.custodian_stdin(&["restore", "--snapshot", "latest", "--to", t], "");
    assert_eq!(
        (c, out["error"]["code"].as_str()),
        (Some(1), Some("second_factor.required")),
        "{out:#}"
    );
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--totp-stdin")
    );
    // A wrong code, then at once another: rate-limited without being checked.
    let (c, out) = restore(&[], "000000\n");
    assert_eq!(
        (c, out["error"]["code"].as_str()),
        (Some(1), Some("second_factor.invalid")),
        "{out:#}"
    );
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("4 attempts left")
    );
    let (_, out) = restore(&[], &codes.next());
    assert_eq!(
        out["error"]["code"], "second_factor.rate_limited",
        "{out:#}"
    );
    assert!(!target.exists());
    std::thread::sleep(Duration::from_millis(2100));
    // The right code restores (the one refused unchecked above); the same code a second time
    // is a replay; a later step's code is accepted.
    let good = codes.again();
    let (c, out) = restore(&[], &good);
    assert_eq!(c, Some(0), "{out:#}");
    let (c, out) = restore(&["--force"], &good);
    assert_eq!(
        (c, out["error"]["code"].as_str()),
        (Some(1), Some("second_factor.replayed")),
        "{out:#}"
    );
    let (c, out) = restore(&["--force"], &codes.next());
    assert_eq!(c, Some(0), "{out:#}");

    // Five wrong codes in a row lock the person out; then even a right one is refused.
    for i in 1..=5 {
        std::thread::sleep(Duration::from_millis(2100));
        let (_, out) = restore(&["--force"], "123456\n");
        let expected = if i < 5 {
            "second_factor.invalid"
        } else {
            "second_factor.locked"
        };
        assert_eq!(out["error"]["code"], expected, "attempt {i}: {out:#}");
    }
    std::thread::sleep(Duration::from_millis(2100));
    let (_, out) = restore(&["--force"], &codes.next());
    assert_eq!(out["error"]["code"], "second_factor.locked", "{out:#}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("locked out")
    );
    let list = ws.custodian_json(&["access", "totp", "list"], 0);
    assert!(list[0]["locked_until"].is_string(), "{list:#}");

    // Every attempt is in the audit log, good or bad — never the code itself.
    let attempts = audit(&ws, "second-factor");
    let seen = outcomes(&attempts);
    for outcome in ["rejected", "rate-limited", "accepted", "replayed", "locked"] {
        assert!(seen.contains(&outcome), "{outcome} not audited: {seen:?}");
    }
    let log = std::fs::read_to_string(ws.path("state/audit.log")).unwrap();
    assert!(!log.contains(good.trim()), "a code reached the audit log");
    // The restores carry their grant: the first without a second factor, the later with one.
    let restores: Vec<Value> = audit(&ws, "restore")
        .into_iter()
        .filter(|e| e["outcome"] == "succeeded")
        .collect();
    assert_eq!(restores.len(), 3);
    assert_eq!(restores[0]["params"]["access"]["second_factor"], false);
    assert_eq!(restores[1]["params"]["access"]["second_factor"], true);
    assert_eq!(ws.custodian_json(&["audit", "verify"], 0)["ok"], true);
}

#[test]
fn two_factor_required_refuses_whoever_is_not_enrolled() {
    let ws = Workspace::new();
    let config = std::fs::read_to_string(ws.config_path()).unwrap()
        + "\n[access]\ntwo-factor = \"required\"\n";
    ws.write_config(&config);
    ws.custodian_json(&["init"], 0);
    ws.custodian_json(&["backup"], 0);
    let t = ws.path("restored.sqlite");
    let (c, out) = ws.custodian_stdin(
        &[
            "restore",
            "--snapshot",
            "latest",
            "--to",
            t.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(
        (c, out["error"]["code"].as_str()),
        (Some(1), Some("second_factor.not_enrolled")),
        "{out:#}"
    );
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("custodian access totp enroll root")
    );
    // A restore into Custodian's scratch directory is not dangerous.
    let scratch = ws.path("state/scratch/r.sqlite");
    std::fs::create_dir_all(scratch.parent().unwrap()).unwrap();
    let (c, out) = ws.custodian_stdin(
        &[
            "restore",
            "--snapshot",
            "latest",
            "--to",
            scratch.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(c, Some(0), "{out:#}");
    // Dry runs are not dangerous either; --apply is.
    ws.custodian_json(&["prune"], 0);
    let (c, out) = ws.custodian_stdin(&["prune", "--apply"], "");
    assert_eq!(
        out["error"]["code"], "second_factor.not_enrolled",
        "{c:?} {out:#}"
    );
}

fn start_daemon(ws: &Workspace, socket: &std::path::Path) -> std::process::Child {
    let daemon = common::custodian_cmd()
        .arg("--config")
        .arg(ws.config_path())
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "the daemon did not open its socket"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon
}

#[test]
fn enforce_needs_a_second_administrator_for_root_too_or_an_alerted_break_glass() {
    ensure(GROUP, &[ADMIN], &[]);
    let hook = Webhook::start();
    let ws = Workspace::new();
    let socket_dir = tempfile::Builder::new()
        .prefix("custodian-access-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .tempdir_in("/tmp")
        .unwrap();
    let socket = socket_dir.path().join("control.sock");
    let config = common::default_config().replacen(
        "hostname = \"test-host\"\n",
        &format!(
            "hostname = \"test-host\"\ncontrol-socket = \"{}\"\n",
            socket.display()
        ),
        1,
    ) + &format!(
        "\n[access]\nadministrators = [\"{ADMIN}\"]\nsocket-group = \"{GROUP}\"\nenforce = true\napproval-expiry = \"10m\"\n\n[notifications]\nwebhook = \"{}\"\n",
        hook.url
    );
    ws.write_config(&config);
    ws.custodian_json(&["init"], 0);
    ws.custodian_json(&["backup"], 0);
    // Both administrators enrolled: root first (no factor yet), then the second one, which
    // needs root's code.
    let root_uri = enroll(&ws, "root", "");
    let mut root = Codes::new(&root_uri);
    let admin_uri = enroll(&ws, ADMIN, &root.next());
    let mut daemon = start_daemon(&ws, &socket);
    let s = socket.to_str().unwrap();

    let target = ws.path("restored.sqlite");
    let t = target.to_str().unwrap();
    let restore = |extra: &[&str], stdin: &str| {
        let mut args = vec!["restore", "--snapshot", "latest", "--to", t, "--totp-stdin"];
        args.extend_from_slice(extra);
        ws.custodian_stdin(&args, stdin)
    };
    // Root, with a valid code, is refused: a request is recorded for a second administrator.
    let (c, out) = restore(&[], &root.next());
    assert_eq!(
        (c, out["error"]["code"].as_str()),
        (Some(1), Some("approval.required")),
        "{out:#}"
    );
    let message = out["error"]["message"].as_str().unwrap();
    let id = message
        .split("custodian approve ")
        .nth(1)
        .and_then(|r| r.split('`').next())
        .unwrap()
        .to_string();
    assert!(message.contains(&format!("--approval {id}")), "{message}");
    assert!(!target.exists());
    // Not usable before it is approved (refused before any code is asked for).
    let (_, out) = restore(&["--approval", &id], "");
    assert_eq!(out["error"]["code"], "approval.refused", "{out:#}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has not been approved yet"),
        "{out:#}"
    );

    // The second administrator lists it, sees what will run, and approves with her code.
    let (c, listed) = custodian_as(ADMIN, &["ctl", "--socket", s, "approvals"], "");
    assert_eq!(c, Some(0), "{listed:#}");
    let pending = &listed["data"]["pending"][0];
    assert_eq!(pending["id"], id.as_str());
    assert_eq!(pending["requested_by"], "root");
    assert_eq!(pending["origin"], "cli");
    assert!(
        pending["summary"].as_str().unwrap().contains(t),
        "{pending:#}"
    );
    assert!(pending["expires_at"].is_string());
    let (c, approved) = custodian_as(
        ADMIN,
        &["approve", &id, "--socket", s, "--yes", "--totp-stdin"],
        &Codes::new(&admin_uri).next(),
    );
    assert_eq!(c, Some(0), "{approved:#}");
    assert!(
        approved["data"]["next"]
            .as_str()
            .unwrap()
            .contains("--approval")
    );

    // It runs once, for exactly this operation, with root's own second factor.
    let (c, out) = restore(&["--approval", &id, "--force"], "");
    assert_eq!(out["error"]["code"], "approval.refused", "{c:?} {out:#}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another operation"),
        "{out:#}"
    );
    let (c, out) = restore(&["--approval", &id], &root.next());
    assert_eq!(c, Some(0), "{out:#}");
    assert!(target.exists());
    std::fs::remove_file(&target).unwrap();
    let (_, out) = restore(&["--approval", &id], "");
    assert_eq!(out["error"]["code"], "approval.refused", "{out:#}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{out:#}"
    );
    let done = ws.custodian_json(&["approvals"], 0);
    let recent = done["recent"].as_array().unwrap();
    assert!(
        recent
            .iter()
            .any(|r| r["id"] == id.as_str() && r["state"] == "succeeded"),
        "{done:#}"
    );

    // Break-glass: runs alone, audited with its reason, alerted at once.
    let reason = "primary database lost, restoring to standby per runbook 7";
    let (c, out) = restore(&["--break-glass", reason], &root.next());
    assert_eq!(c, Some(0), "{out:#}");
    let glass = audit(&ws, "break-glass");
    assert_eq!(glass.len(), 1, "{glass:#?}");
    assert_eq!(glass[0]["params"]["reason"], reason);
    assert_eq!(glass[0]["params"]["second_factor"], true);
    let (path, body) = hook.wait_for(|_, b| b["job"] == "break-glass");
    assert_eq!(path, "/hook/fail");
    assert!(
        body["detail"].as_str().unwrap().contains(reason),
        "{body:#}"
    );
    let (_, out) = ws.custodian_stdin(
        &[
            "restore",
            "--snapshot",
            "latest",
            "--to",
            t,
            "--break-glass",
            "x",
            "--totp-stdin",
        ],
        "",
    );
    assert_eq!(
        out["error"]["code"], "usage",
        "a break-glass needs a real reason: {out:#}"
    );

    // The next report reads the grants back: the enrolment (second factor, no four eyes) and
    // the approved restore pass, the break-glass is listed loudly.
    let month = String::from_utf8(
        Command::new("date")
            .args(["-u", "+%Y-%m"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    ws.custodian_json(&["keys", "generate"], 0);
    let out = ws.custodian_json(&["report", "--period", month.trim(), "--no-mail"], 0);
    let dir = std::path::PathBuf::from(out["report"]["dir"].as_str().unwrap());
    let e: Value =
        serde_json::from_slice(&std::fs::read(dir.join("evidence.json")).unwrap()).unwrap();
    let access = e["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "ACCESS")
        .unwrap();
    let m = &access["checks"][0]["measure"];
    assert_eq!(m["value"], 0.0, "{access:#}");
    assert_eq!(access["verdict"], "warn", "{access:#}");
    assert!(
        m["warn"][0]
            .as_str()
            .unwrap()
            .starts_with("BREAK-GLASS by root"),
        "{m:#}"
    );
    assert!(m["warn"][0].as_str().unwrap().contains(reason));
    assert!(
        m["findings"][0]
            .as_str()
            .unwrap()
            .starts_with("3 dangerous operations; 2 with a second factor"),
        "{m:#}"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    assert!(daemon.wait().unwrap().success());
    assert_success(&ws.custodian(&["audit", "verify"]), "audit verify");
}
