//! The daemon: shipped schedules parse, bad schedules are named by file and line, scheduled
//! jobs run and are audited, systemd notifications, metrics, SIGHUP reload (a bad config is
//! rejected), SIGTERM stop, missed runs recorded and caught up; the audit log's chain; the
//! systemd unit's exposure.

use crate::common;

use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Workspace, sqlite};
use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn count(ws: &Workspace, sql: &str) -> u64 {
    sqlite(&ws.path("state/catalog.db"), sql)
        .trim()
        .parse()
        .unwrap_or(0)
}

pub(crate) fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A datagram socket standing in for systemd's notification socket, drained by a thread.
struct Notify {
    path: std::path::PathBuf,
    seen: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Notify {
    fn new(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let mut s = sink.lock().unwrap();
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
                s.push('\n');
            }
        });
        Self { path, seen }
    }

    fn seen(&self) -> String {
        self.seen.lock().unwrap().clone()
    }

    fn wait_for(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.seen().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle} from the daemon; got: {}",
                self.seen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts the daemon; its log (stderr) is collected by a thread so that it never blocks.
fn start_daemon(ws: &Workspace, notify: &Notify) -> (Child, std::thread::JoinHandle<String>) {
    let mut child = common::custodian_cmd()
        .arg("--config")
        .arg(ws.config_path())
        .arg("daemon")
        .env("NOTIFY_SOCKET", &notify.path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    (child, log)
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn config_with_schedules(metrics_port: Option<u16>) -> String {
    let mut text = common::default_config();
    let extra = format!(
        "schedules = \"schedules\"\ncontrol-socket = \"control.sock\"\n{}",
        metrics_port
            .map(|p| format!("metrics-listen = \"127.0.0.1:{p}\"\n"))
            .unwrap_or_default()
    );
    text = text.replacen(
        "hostname = \"test-host\"\n",
        &format!("hostname = \"test-host\"\n{extra}"),
        1,
    );
    text
}

fn write_schedule(ws: &Workspace, text: &str) {
    std::fs::create_dir_all(ws.path("schedules")).unwrap();
    std::fs::write(ws.path("schedules/test.toml"), text).unwrap();
}

pub(crate) fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn schedules_shipped_parse() {
    let ws = Workspace::new();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("schedules");
    let text = common::default_config().replacen(
        "hostname = \"test-host\"\n",
        &format!(
            "hostname = \"test-host\"\nschedules = \"{}\"\n",
            shipped.display()
        ),
        1,
    );
    ws.write_config(&text);
    let config = custodian::config::Config::load(&ws.config_path()).unwrap();
    let names: Vec<&str> = config
        .daemon
        .schedules
        .iter()
        .map(|j| j.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "hourly-backup",
            "daily-copy",
            "daily-check",
            "weekly-deep-check",
            "daily-drill",
            "weekly-prune",
            "monthly-report"
        ]
    );
    let files = std::fs::read_dir(&shipped)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .count();
    assert!(files >= 1);
    // Every job fires within its period.
    let now = jiff::Timestamp::now();
    for job in &config.daemon.schedules {
        let next = job.next_after(now).unwrap();
        assert!(
            next > now && next.duration_since(now) <= jiff::SignedDuration::from_hours(24 * 31),
            "{}",
            job.name
        );
    }
}

#[test]
fn a_bad_schedule_is_named_by_file_line_and_key() {
    let ws = Workspace::new();
    ws.write_config(&config_with_schedules(None));
    write_schedule(
        &ws,
        "[[job]]\nname = \"b\"\nkind = \"backup\"\ncron = \"0 61 * * * *\"\n\n[[job]]\nname = \"c\"\nkind = \"restor\"\ncron = \"@daily\"\n",
    );
    let out = ws.custodian(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let text = common::stderr(&out) + &common::stdout(&out);
    let file = ws.path("schedules/test.toml");
    assert!(
        text.contains(&format!("{}:4: job.0.cron", file.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}:8: job.1.kind", file.display())),
        "{text}"
    );
}

#[test]
fn daemon_runs_jobs_notifies_serves_metrics_reloads_and_stops() {
    let ws = Workspace::new();
    let port = free_port();
    ws.write_config(&config_with_schedules(Some(port)));
    write_schedule(
        &ws,
        "[[job]]\nname = \"fast-backup\"\nkind = \"backup\"\ncron = \"*/2 * * * * *\"\n",
    );
    ws.custodian_json(&["init"], 0);
    let mut notify = Notify::new(ws.root());
    let (mut daemon, log) = start_daemon(&ws, &notify);
    notify.wait_for("READY=1", Duration::from_secs(30));
    assert!(notify.seen().contains("STATUS="), "{}", notify.seen());

    let scheduled = "SELECT count(*) FROM runs WHERE kind = 'backup' AND trigger = 'schedule' AND outcome = 'succeeded';";
    wait_until("two scheduled backups", Duration::from_secs(60), || {
        count(&ws, scheduled) >= 2
    });

    let metrics = http_get(port, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for expected in [
        // Scheduled runs carry their job; units come last; copies name where they went and
        // where from.
        "custodian_last_success_timestamp_seconds{kind=\"backup\",source=\"crm\",location=\"local\",job=\"fast-backup\"}",
        "custodian_last_success_read_bytes{kind=\"backup\",source=\"crm\",location=\"local\",job=\"fast-backup\"}",
        "custodian_last_success_timestamp_seconds{kind=\"copy\",source=\"crm\",location=\"offsite\",from=\"local\",job=\"fast-backup\"}",
        "custodian_runs_total{kind=\"backup\",outcome=\"succeeded\",job=\"fast-backup\"}",
        "custodian_copy_lag_seconds{source=\"crm\",location=\"offsite\"}",
        "custodian_location_healthy{location=\"local\"} 1",
        "custodian_location_healthy{location=\"offsite\"} 1",
        "custodian_config_last_reload_successful 1",
        "custodian_build_info{version=\"",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_start_time_seconds ",
        "process_open_fds ",
    ] {
        assert!(metrics.contains(expected), "{expected} missing:\n{metrics}");
    }
    assert!(!metrics.contains("=\"\""), "no empty labels:\n{metrics}");
    assert!(
        !metrics.contains("bytes_read"),
        "units come last:\n{metrics}"
    );
    // No float noise: at most three decimals.
    for line in metrics.lines().filter(|l| l.starts_with("custodian_")) {
        let value = line.rsplit(' ').next().unwrap();
        let decimals = value.split_once('.').map_or(0, |(_, d)| d.len());
        assert!(decimals <= 3, "{line}");
    }
    // promtool, the Prometheus project's own checker, accepts the exposition.
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (scripts/test-all installs prometheus)");
    {
        use std::io::Write;
        let body = metrics.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        promtool
            .stdin
            .as_ref()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
    }
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(http_get(port, "/other").starts_with("HTTP/1.1 404"));

    // SIGHUP with a broken configuration: rejected, the old one keeps running.
    let good = std::fs::read_to_string(ws.config_path()).unwrap();
    std::fs::write(
        ws.config_path(),
        format!("{good}\n[source.broken]\nkind = \"nope\"\n"),
    )
    .unwrap();
    signal(&daemon, "-HUP");
    let before = count(&ws, scheduled);
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&ws, scheduled) < before + 2 {
        if Instant::now() > deadline {
            let _ = daemon.kill();
            panic!(
                "no backups after a rejected reload; log:\n{}",
                log.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the daemon keeps running"
    );
    let metrics = http_get(port, "/metrics");
    assert!(
        metrics.contains("custodian_config_last_reload_successful 0"),
        "{metrics}"
    );
    // A valid reload replaces the schedule (no job: nothing runs any more).
    std::fs::write(ws.config_path(), &good).unwrap();
    write_schedule(&ws, "");
    signal(&daemon, "-HUP");
    std::thread::sleep(Duration::from_secs(3));
    let settled = count(&ws, scheduled);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        count(&ws, scheduled),
        settled,
        "the reloaded (empty) schedule runs nothing"
    );

    signal(&daemon, "-TERM");
    notify.wait_for("STOPPING=1", Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = daemon.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = log.join().unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("reload rejected"), "{stderr}");
    assert!(
        stderr.contains("source.broken.kind"),
        "the diagnostics are logged: {stderr}"
    );

    // Every scheduled run is in the audit log, as the system role, and the chain holds.
    let entries = ws.custodian_json(&["audit", "list", "--action", "backup"], 0);
    let entries = entries.as_array().unwrap();
    assert!(entries.len() as u64 >= settled, "{entries:#?}");
    assert!(
        entries
            .iter()
            .all(|e| e["trigger"] == "schedule" && e["role"] == "system")
    );
    let v = ws.custodian_json(&["audit", "verify"], 0);
    assert_eq!(v["ok"], true, "{v:#}");
}

#[test]
fn missed_runs_are_recorded_and_caught_up_once() {
    let ws = Workspace::new();
    ws.write_config(&config_with_schedules(None));
    write_schedule(
        &ws,
        "[[job]]\nname = \"every-second-copy\"\nkind = \"copy\"\ncron = \"* * * * * *\"\n",
    );
    ws.custodian_json(&["init"], 0);
    let mut notify = Notify::new(ws.root());
    let (mut daemon, _log) = start_daemon(&ws, &notify);
    notify.wait_for("READY=1", Duration::from_secs(30));
    signal(&daemon, "-TERM");
    assert!(daemon.wait().unwrap().success());

    std::thread::sleep(Duration::from_secs(4));
    let mut notify = Notify::new(ws.root());
    let (mut daemon, log) = start_daemon(&ws, &notify);
    notify.wait_for("READY=1", Duration::from_secs(30));
    let missed = count(
        &ws,
        "SELECT count(*) FROM runs WHERE outcome = 'missed' AND kind = 'copy';",
    );
    assert!(
        (3..=8).contains(&missed),
        "one missed run per second down, got {missed}"
    );
    let detail = sqlite(
        &ws.path("state/catalog.db"),
        "SELECT error_code || ' ' || json_extract(details, '$.job') FROM runs WHERE outcome = 'missed' LIMIT 1;",
    );
    assert_eq!(detail.trim(), "schedule.missed every-second-copy");
    wait_until("the catch-up copy", Duration::from_secs(30), || {
        count(
            &ws,
            "SELECT count(*) FROM runs WHERE kind = 'copy' AND outcome = 'succeeded';",
        ) >= 1
    });
    signal(&daemon, "-TERM");
    assert!(daemon.wait().unwrap().success());
    let log = log.join().unwrap();
    assert!(
        log.contains("scheduled runs were missed while the daemon was down"),
        "{log}"
    );
}

#[test]
fn audit_verify_names_the_first_tampered_entry() {
    let ws = Workspace::new();
    ws.custodian_json(&["init"], 0);
    ws.custodian_json(&["backup"], 0);
    ws.custodian_json(&["backup"], 0);
    let v = ws.custodian_json(&["audit", "verify"], 0);
    assert_eq!(v["ok"], true);
    assert!(v["entries"].as_u64().unwrap() >= 3, "{v:#}");
    let path = ws.path("state/audit.log");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[1] = lines[1].replace("\"outcome\":\"succeeded\"", "\"outcome\":\"failed\"");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let v = ws.custodian_json(&["audit", "verify"], 1);
    assert_eq!(v["ok"], false);
    assert_eq!(v["first_bad"]["line"], 2, "{v:#}");
}

#[test]
fn the_service_unit_is_hardened() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/custodian.service");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze is required (scripts/test-all installs systemd)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let level: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for custodian.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    assert!(level <= 2.0, "exposure {level} > 2.0:\n{text}");
}

#[test]
fn sigterm_mid_backup_exits_cleanly_and_leaves_consistent_repositories() {
    // The demo CRM (36 MiB) makes a backup that lasts long enough to be interrupted.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = common::custodian_cmd()
        .args(["--json", "demo", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    common::assert_success(&out, "custodian demo");
    let config = dir.join("custodian.toml");
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "hostname = \"custodian-demo\"\n",
        "hostname = \"custodian-demo\"\nschedules = \"schedules\"\ncontrol-socket = \"control.sock\"\n",
        1,
    );
    std::fs::write(&config, text).unwrap();
    std::fs::create_dir(dir.join("schedules")).unwrap();
    std::fs::write(
        dir.join("schedules/fast.toml"),
        "[[job]]\nname = \"fast-backup\"\nkind = \"backup\"\ncron = \"*/3 * * * * *\"\n",
    )
    .unwrap();
    let catalog = dir.join("state/catalog.db");
    let running = || {
        sqlite(
            &catalog,
            "SELECT count(*) FROM runs WHERE outcome = 'running' AND kind = 'backup';",
        )
        .trim()
            == "1"
    };
    let mut daemon = common::custodian_cmd()
        .arg("--config")
        .arg(&config)
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        "a scheduled backup in progress",
        Duration::from_secs(60),
        running,
    );
    signal(&daemon, "-TERM");
    let status = daemon.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let left = sqlite(
        &catalog,
        "SELECT count(*) FROM runs WHERE outcome = 'running';",
    );
    assert_eq!(
        left.trim(),
        "0",
        "the interrupted or finished backup is recorded"
    );
    for location in ["local", "offsite"] {
        let out = common::restic(
            &dir.join("repos").join(location),
            &dir.join("keys").join(format!("{location}.key")),
            &["check", "--read-data"],
        );
        common::assert_success(&out, &format!("restic check --read-data {location}"));
    }
}

#[test]
fn the_service_unit_verifies() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/custodian.service"),
    )
    .unwrap()
    .replace("/usr/local/bin/custodian", env!("CARGO_BIN_EXE_custodian"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custodian.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    common::assert_success(&out, "systemd-analyze verify");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("Unknown"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Requests a webhook server received: `METHOD PATH` and the JSON body.
type Heard = std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>;

/// A tiny HTTP server recording every request it receives.
fn webhook_server() -> (u16, Heard) {
    use std::io::BufRead;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let what = request_line
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            sink.lock()
                .unwrap()
                .push((what, serde_json::from_slice(&body).unwrap_or(Value::Null)));
            let _ = reader
                .into_inner()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK");
        }
    });
    (port, seen)
}

#[test]
fn the_webhook_hears_successes_and_failures() {
    let (port, seen) = webhook_server();
    let ws = Workspace::new();
    ws.write_config(&format!(
        "{}\n[notifications]\nwebhook = \"http://127.0.0.1:{port}/ping/abc\"\n",
        config_with_schedules(None)
    ));
    write_schedule(
        &ws,
        "[[job]]\nname = \"often-backup\"\nkind = \"backup\"\ncron = \"*/2 * * * * *\"\n",
    );
    ws.custodian_json(&["init"], 0);
    let notify = Notify::new(ws.root());
    let (mut daemon, _log) = start_daemon(&ws, &notify);
    let got = |path: &str, status: &str| {
        seen.lock().unwrap().iter().any(|(what, body)| {
            what == path && body["status"] == status && body["job"] == "often-backup"
        })
    };
    wait_until("a success ping", Duration::from_secs(30), || {
        got("POST /ping/abc", "succeeded")
    });
    // The CRM disappears: the next backups fail, and the webhook hears it.
    std::fs::rename(ws.path("crm.sqlite"), ws.path("crm.sqlite.gone")).unwrap();
    wait_until("a failure ping", Duration::from_secs(30), || {
        got("POST /ping/abc/fail", "failed")
    });
    signal(&daemon, "-TERM");
    assert!(daemon.wait().unwrap().success());
    let events = seen.lock().unwrap().clone();
    let (_, body) = events.iter().find(|(w, _)| w.ends_with("/fail")).unwrap();
    assert_eq!(body["kind"], "backup");
    assert_eq!(body["host"], "test-host");
}

#[test]
fn the_shipped_prometheus_rules_pass_promtool() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/prometheus");
    for args in [
        &["check", "rules", "alerts.yml"][..],
        &["test", "rules", "alerts_test.yml"][..],
    ] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool (scripts/test-all installs prometheus)");
        common::assert_success(&out, &format!("promtool {}", args.join(" ")));
    }
    // The dashboard is valid JSON with panels that query Custodian's metrics.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/grafana/custodian.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    assert!(panels.iter().all(|p| p["targets"][0]["expr"].is_string()));
}

/// A failed scheduled job tells every alert target why — the webhook, ntfy, Slack,
/// Mattermost, Teams, PagerDuty (a trigger, resolved by the next success) and the e-mail — each
/// with the error's code, its sentence and what to do; secrets stay in their files.
#[test]
fn a_failed_scheduled_job_tells_every_sink_why() {
    let hook = common::webhook::Webhook::start();
    let base = hook.url.trim_end_matches("/hook").to_string();
    let mut smtp = common::smtp::SmtpServer::prepare();
    smtp.start();
    let ws = Workspace::new();
    for (name, secret) in [
        ("ntfy.token", "tk_ntfy_4f1d".to_string()),
        ("slack.url", format!("{base}/slack/T000/B000/XXXX")),
        ("mattermost.url", format!("{base}/mattermost/hooks/abc")),
        ("teams.url", format!("{base}/teams/workflow")),
        (
            "pagerduty.key",
            "R0UT1NGKEY0123456789abcdef012345".to_string(),
        ),
    ] {
        let path = ws.path(&format!("keys/{name}"));
        std::fs::write(&path, format!("{secret}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }
    let sinks = format!(
        "\n[[notifications.sink]]\nkind = \"ntfy\"\nurl = \"{base}/ntfy/custodian\"\nsecret-file = \"keys/ntfy.token\"\n\
         \n[[notifications.sink]]\nkind = \"slack\"\nsecret-file = \"keys/slack.url\"\n\
         \n[[notifications.sink]]\nkind = \"mattermost\"\nsecret-file = \"keys/mattermost.url\"\n\
         \n[[notifications.sink]]\nkind = \"teams\"\nsecret-file = \"keys/teams.url\"\n\
         \n[[notifications.sink]]\nkind = \"pagerduty\"\nurl = \"{base}/pagerduty/v2/enqueue\"\nsecret-file = \"keys/pagerduty.key\"\n"
    );
    let notifications = smtp.config(&[], &["ops@example.org"]).replacen(
        "[notifications]\n",
        &format!("[notifications]\nwebhook = \"{}\"\n", hook.url),
        1,
    );
    ws.write_config(&format!(
        "{}{notifications}{sinks}",
        config_with_schedules(None)
    ));
    write_schedule(
        &ws,
        "[[job]]\nname = \"often-backup\"\nkind = \"backup\"\ncron = \"*/2 * * * * *\"\n",
    );
    ws.custodian_json(&["config", "check"], 0);
    ws.custodian_json(&["init"], 0);
    let notify = Notify::new(ws.root());
    let (mut daemon, _log) = start_daemon(&ws, &notify);
    hook.wait_for(|p, b| p == "/hook" && b["status"] == "succeeded");
    // The CRM is gone: the next scheduled backups fail.
    std::fs::rename(ws.path("crm.sqlite"), ws.path("crm.sqlite.gone")).unwrap();

    let (_, failed) = hook.wait_for(|p, b| p == "/hook/fail" && b["status"] == "failed");
    let code = failed["error"]["code"].as_str().unwrap().to_string();
    let message = failed["error"]["message"].as_str().unwrap().to_string();
    assert!(code.starts_with("source."), "{failed:#}");
    assert!(message.contains("source crm"), "{failed:#}");
    assert!(failed["error"]["hint"].is_string(), "{failed:#}");

    let (_, ntfy) = hook.wait_for(|p, _| p == "/ntfy/custodian");
    let text = ntfy["_text"].as_str().unwrap();
    assert!(
        text.contains(&format!("why: {message} [{code}]")),
        "{ntfy:#}"
    );
    assert!(text.contains("what to do: "), "{ntfy:#}");
    assert_eq!(ntfy["_headers"]["authorization"], "Bearer tk_ntfy_4f1d");
    assert!(
        ntfy["_headers"]["title"]
            .as_str()
            .unwrap()
            .contains("often-backup (backup) FAILED"),
        "{ntfy:#}"
    );
    for path in ["/slack/T000/B000/XXXX", "/mattermost/hooks/abc"] {
        let (_, chat) = hook.wait_for(|p, _| p == path);
        assert!(
            chat["text"].as_str().unwrap().contains(&message),
            "{path}: {chat:#}"
        );
    }
    let (_, teams) = hook.wait_for(|p, _| p == "/teams/workflow");
    let card = &teams["attachments"][0]["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert!(card["body"][1]["text"].as_str().unwrap().contains(&message));

    let (_, trigger) =
        hook.wait_for(|p, b| p == "/pagerduty/v2/enqueue" && b["event_action"] == "trigger");
    assert_eq!(trigger["routing_key"], "R0UT1NGKEY0123456789abcdef012345");
    assert_eq!(trigger["dedup_key"], "custodian/test-host/often-backup");
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["custom_details"]["code"], code.as_str());
    assert!(
        trigger["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains(&message),
        "{trigger:#}"
    );

    let mail = smtp.wait_for("often-backup", Duration::from_secs(30));
    let body = std::fs::read_to_string(mail.join("parts/body.txt")).unwrap();
    assert!(body.contains(&format!("Why: {message} [{code}]")), "{body}");
    assert!(body.contains("What to do: "), "{body}");

    // Back: the next success resolves the PagerDuty incident (and pings the webhook).
    let resolves = |h: &common::webhook::Webhook| {
        h.received()
            .into_iter()
            .filter(|(p, b)| p == "/pagerduty/v2/enqueue" && b["event_action"] == "resolve")
            .map(|(_, b)| b)
            .collect::<Vec<_>>()
    };
    let resolved_before = resolves(&hook).len();
    std::fs::rename(ws.path("crm.sqlite.gone"), ws.path("crm.sqlite")).unwrap();
    wait_until("PagerDuty resolved", Duration::from_secs(30), || {
        resolves(&hook).len() > resolved_before
    });
    let resolve = resolves(&hook).pop().unwrap();
    assert_eq!(resolve["dedup_key"], "custodian/test-host/often-backup");
    assert_eq!(resolve["routing_key"], "R0UT1NGKEY0123456789abcdef012345");
    let successes = |h: &common::webhook::Webhook| {
        h.received()
            .iter()
            .filter(|(p, b)| p == "/hook" && b["status"] == "succeeded")
            .count()
    };
    let before = successes(&hook);
    wait_until(
        "a success after the failures",
        Duration::from_secs(30),
        || successes(&hook) > before,
    );
    signal(&daemon, "-TERM");
    assert!(daemon.wait().unwrap().success());
    // Only PagerDuty heard the success; the others are for failures by default.
    let heard = hook.received();
    assert!(
        !heard.iter().any(|(p, b)| p == "/ntfy/custodian"
            && b["_headers"]["title"]
                .as_str()
                .unwrap_or("")
                .contains("succeeded")),
        "{heard:#?}"
    );
    // The secrets travel only where they belong (the ntfy token as its bearer header), never
    // in a message, a run record or the log.
    let all = format!("{heard:?}");
    assert_eq!(
        all.matches("tk_ntfy_4f1d").count(),
        all.matches("Bearer tk_ntfy_4f1d").count()
    );
    let runs_text = String::from_utf8_lossy(&ws.custodian(&["runs"]).stdout).to_string();
    assert!(!runs_text.contains("XXXX"), "{runs_text}");
}
