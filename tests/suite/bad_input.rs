//! Bad input never panics and is always explained: property tests over the configuration
//! loader, the schedule parser and the control protocol (seeded, reproducible), and a live
//! daemon fed random bytes on its control socket.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use custodian::config::{Config, Diagnostics};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner};

/// A valid configuration whose every byte the mutations below may damage.
const VALID: &str = r#"[custodian]
state-dir = "state"
check-window = "30d"

[source.crm]
kind = "postgres"
url = "postgres://custodian@db.example.org:5432/crm"
locations = ["local"]

[location.local]
kind = "local"
path = "/tmp"
password-file = "local.key"

[retention]
keep-daily = 7
max-age = "90d"

[[drills.assertion]]
source = "crm"
name = "a"
sql = "SELECT 1"
expect = ">= 1"
"#;

const SCHEDULE: &str = "[[job]]\nname = \"b\"\nkind = \"backup\"\ncron = \"0 5 * * * *\"\ntime-zone = \"Europe/Berlin\"\njitter = \"2m\"\nmissed = \"skip\"\n";

fn runner(cases: u32) -> TestRunner {
    // Seeded: a failure reproduces with the same inputs.
    TestRunner::new_with_rng(
        RunnerConfig {
            cases,
            failure_persistence: None,
            ..RunnerConfig::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    )
}

/// Edits: (position as a fraction of the text, bytes removed, text inserted).
fn mutations() -> impl Strategy<Value = Vec<(f64, usize, String)>> {
    prop::collection::vec(
        (
            0.0..1.0f64,
            0usize..6,
            "[\\[\\]=\"#\\n a-z0-9.\\-{},@%*/]{0,8}",
        ),
        1..6,
    )
}

fn mutate(base: &str, edits: &[(f64, usize, String)]) -> String {
    let mut text: Vec<char> = base.chars().collect();
    for (at, remove, insert) in edits {
        let i = ((text.len() as f64) * at) as usize;
        let end = (i + remove).min(text.len());
        text.splice(i.min(text.len())..end, insert.chars());
    }
    text.into_iter().collect()
}

#[test]
fn configuration_loader_explains_every_rejection() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("custodian.toml");
    {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.path().join("local.key");
        std::fs::write(&key, "a repository password\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    Config::from_text(&file, VALID).expect("the unmutated configuration is valid");
    let rejected = std::cell::Cell::new(0);
    let accepted = std::cell::Cell::new(0);
    runner(600)
        .run(&mutations(), |edits| {
            let text = mutate(VALID, &edits);
            match Config::from_text(&file, &text) {
                Ok(_) => accepted.set(accepted.get() + 1),
                Err(e) => {
                    rejected.set(rejected.get() + 1);
                    let diags = e.diagnostics();
                    prop_assert!(!diags.is_empty(), "rejected without a diagnostic:\n{text}");
                    for d in diags {
                        prop_assert!(
                            !d.message.trim().is_empty(),
                            "an empty message for:\n{text}"
                        );
                        prop_assert!(d.file == file);
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    let (rejected, accepted) = (rejected.get(), accepted.get());
    assert!(
        rejected > 100,
        "the mutations must break configurations ({rejected} rejected)"
    );
    assert!(accepted > 0, "and some survive ({accepted} accepted)");
}

#[test]
fn arbitrary_text_never_panics_the_loaders() {
    let file = Path::new("/nonexistent/custodian.toml");
    runner(400)
        .run(&any::<String>(), |text| {
            if let Err(e) = Config::from_text(file, &text) {
                prop_assert!(
                    !e.diagnostics().is_empty(),
                    "rejected without a diagnostic: {text:?}"
                );
            }
            let mut d = Diagnostics::new(Path::new("s.toml"), &text);
            let _ = custodian::config::schedules::parse_file(
                Path::new("s.toml"),
                &text,
                &mut d,
                &[],
                &[],
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn schedule_parser_explains_every_rejection() {
    let rejected = std::cell::Cell::new(0);
    runner(600)
        .run(&mutations(), |edits| {
            let text = mutate(SCHEDULE, &edits);
            let mut d = Diagnostics::new(Path::new("s.toml"), &text);
            let jobs = custodian::config::schedules::parse_file(
                Path::new("s.toml"),
                &text,
                &mut d,
                &["crm".into()],
                &["local".into()],
            );
            if jobs.is_empty() {
                rejected.set(rejected.get() + 1);
                prop_assert!(
                    d.has_errors() || !text.contains("[[job]]"),
                    "a job vanished without an error:\n{text}"
                );
            }
            for job in &jobs {
                // Whatever survives can be scheduled without panicking.
                let _ = job.next_after(jiff::Timestamp::now());
            }
            Ok(())
        })
        .unwrap();
    let rejected = rejected.get();
    assert!(rejected > 50, "{rejected}");
}

#[test]
fn control_requests_parse_or_fail_cleanly() {
    use custodian::control::Request;
    runner(2000)
        .run(&prop::collection::vec(any::<u8>(), 0..256), |bytes| {
            let _ = serde_json::from_slice::<Request>(&bytes);
            Ok(())
        })
        .unwrap();
    // Near misses are refused, not misread.
    for bad in [
        r#"{"op":"restore"}"#,
        r#"{"op":"run","job":1}"#,
        r#"{"op":"status","extra":true}"#,
        r#"{"op":"approve","request":null}"#,
    ] {
        assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_live_daemon_survives_random_requests() {
    let ws = common::Workspace::new();
    let text = common::default_config().replacen(
        "hostname = \"test-host\"\n",
        "hostname = \"test-host\"\ncontrol-socket = \"control.sock\"\n",
        1,
    );
    ws.write_config(&text);
    ws.custodian_json(&["init"], 0);
    let mut daemon = common::custodian_cmd()
        .arg("--config")
        .arg(ws.config_path())
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let socket = ws.path("control.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "no control socket");
        std::thread::sleep(Duration::from_millis(100));
    }
    let answered = std::cell::Cell::new(0);
    runner(150)
        .run(&prop::collection::vec(any::<u8>(), 0..2048), |mut bytes| {
            bytes.retain(|b| *b != b'\n');
            bytes.push(b'\n');
            let mut s = UnixStream::connect(&socket).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s.write_all(&bytes).unwrap();
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line).unwrap();
            let answer: serde_json::Value = serde_json::from_str(&line).unwrap();
            prop_assert_eq!(&answer["ok"], &serde_json::Value::Bool(false));
            prop_assert!(answer["code"].as_str().unwrap().starts_with("request."));
            answered.set(answered.get() + 1);
            Ok(())
        })
        .unwrap();
    assert_eq!(answered.get(), 150);
    // A connection that sends nothing and one that hangs up mid-request do not hurt either.
    drop(UnixStream::connect(&socket).unwrap());
    let mut half = UnixStream::connect(&socket).unwrap();
    half.write_all(b"{\"op\": \"sta").unwrap();
    drop(half);
    let mut s = UnixStream::connect(&socket).unwrap();
    s.write_all(b"{\"op\":\"status\"}\n").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    let answer: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["ok"], true, "{answer:#}");
    assert!(daemon.try_wait().unwrap().is_none(), "still running");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    assert!(daemon.wait().unwrap().success());
}
