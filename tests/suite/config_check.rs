//! `custodian config check`: every problem at once, each with file, line, key and what to do;
//! warnings for readable secrets; secrets never printed.

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{Workspace, stderr, stdout};

#[test]
fn a_valid_configuration_passes() {
    let ws = Workspace::new();
    let out = ws.custodian(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out)
            .contains("configuration is valid (1 source: crm; 2 locations: local, offsite)")
    );
}

#[test]
fn every_problem_is_reported_with_file_line_and_key() {
    let ws = Workspace::new();
    ws.write_config(
        r#"[custodian]
state-dir = "state"
colour = "blue"

[source.crm]
kind = "sqlite"
path = "missing.sqlite"
locations = ["local", "ofsite"]

[source.Bad]
kind = "oracle"

[location.local]
kind = "local"
path = "repos/local"
password-file = "keys/nope.key"

[location.offsite]
kind = "local"
path = "no/such/parent/repo"
password-file = "keys/offsite.key"
password-env = "OFFSITE_PASSWORD"

[retention]
max-age = "forever"

[drills]
[[drills.assertion]]
source = "crm"
name = "x"
sql = "SELECT 1"
expect = "about one"

[notifications.smtp]
host = "mail.example.org"
tls = "none"
from = "custodian@example.org"

[reprots]
"#,
    );
    let out = ws.custodian(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let file = ws.config_path().display().to_string();
    let expected = [
        format!("{file}:3: custodian.colour: unknown key `colour`"),
        format!("{file}:7: source.crm.path: "),
        format!(
            "{file}:8: source.crm.locations.1: location `ofsite` is not defined (did you mean `offsite`?)"
        ),
        format!("{file}:10: source.Bad: `Bad` is not a valid name"),
        format!("{file}:11: source.Bad.kind: `oracle` is not a source kind"),
        format!("{file}:16: location.local.password-file: "),
        format!("{file}:20: location.offsite.path: parent directory "),
        format!(
            "{file}:22: location.offsite.password-env: only one of location.offsite.password-file and location.offsite.password-env may be set; keep exactly one"
        ),
        format!("{file}:25: retention.max-age: `forever` is not a duration"),
        format!("{file}:32: drills.assertion.0.expect: `about one` is not an expectation"),
        format!(
            "{file}:36: notifications.smtp.tls: plain SMTP is only allowed to a loopback relay"
        ),
        format!("{file}:39: reprots: unknown section `reprots` (did you mean `reports`?)"),
    ];
    for line in &expected {
        assert!(
            err.contains(line.as_str()),
            "missing diagnostic:\n  {line}\nin:\n{err}"
        );
    }
    assert!(err.contains("keys/nope.key does not exist"), "{err}");
    assert!(err.contains("missing.sqlite does not exist"), "{err}");
    assert!(
        err.contains(&format!("{file}: 12 errors; nothing was changed")),
        "{err}"
    );
}

#[test]
fn json_output_lists_the_same_diagnostics() {
    let ws = Workspace::new();
    ws.write_config(
        &common::default_config()
            .replace("hostname = \"test-host\"", "hostname = \"x\"\nbogus = 1"),
    );
    let out = ws.custodian(&["--json", "config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let envelope = common::reply(&out);
    assert_eq!(envelope["error"]["code"], "config.invalid", "{envelope:#}");
    let v = &envelope["data"];
    assert_eq!(v["valid"], false);
    let d = &v["diagnostics"][0];
    assert_eq!(d["severity"], "error");
    assert_eq!(d["key"], "custodian.bogus");
    assert_eq!(d["line"], 4);
}

#[test]
fn syntax_errors_name_the_line() {
    let ws = Workspace::new();
    ws.write_config("[custodian]\nstate-dir = \"state\n");
    let out = ws.custodian(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let file = ws.config_path().display().to_string();
    assert!(
        err.contains(&format!("{file}:2: TOML syntax error")),
        "{err}"
    );
}

#[test]
fn readable_password_files_are_a_warning_and_secrets_are_never_printed() {
    let ws = Workspace::new();
    fs::set_permissions(ws.key("local"), fs::Permissions::from_mode(0o644)).unwrap();
    let out = ws.custodian(&["config", "check"]);
    assert_eq!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains("warning: location.local.password-file:"),
        "{err}"
    );
    assert!(err.contains("chmod 600"), "{err}");
    // Neither the password nor any part of it appears anywhere.
    let all = format!("{err}{}", stdout(&out));
    assert!(!all.contains("correct horse"), "{all}");

    // An environment secret that is missing is named, never its value when present.
    ws.write_config(&common::default_config().replace(
        "password-file = \"keys/offsite.key\"",
        "password-env = \"CUSTODIAN_TEST_OFFSITE\"",
    ));
    let out = common::custodian_cmd()
        .args([
            "--config",
            ws.config_path().to_str().unwrap(),
            "config",
            "check",
        ])
        .env_remove("CUSTODIAN_TEST_OFFSITE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("environment variable CUSTODIAN_TEST_OFFSITE is not set"));
    let out = common::custodian_cmd()
        .args([
            "--config",
            ws.config_path().to_str().unwrap(),
            "--json",
            "config",
            "check",
        ])
        .env("CUSTODIAN_TEST_OFFSITE", "s3cr3t-env-value")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!format!("{}{}", stdout(&out), stderr(&out)).contains("s3cr3t-env-value"));
}

#[test]
fn a_missing_configuration_says_how_to_get_one() {
    let out = common::custodian_cmd()
        .args(["--config", "/nonexistent/custodian.toml", "backup"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("/nonexistent/custodian.toml does not exist"),
        "{err}"
    );
    assert!(err.contains("custodian demo"), "{err}");
}

/// One run of `config check` names every problem: a type error at its own key in a plain
/// sentence, unknown keys and kinds with a suggestion, and every schedule problem on one line.
#[test]
fn every_problem_is_reported_at_once_with_suggestions() {
    let ws = Workspace::new();
    std::fs::create_dir(ws.path("schedules")).unwrap();
    ws.write_config(
        &common::default_config()
            .replace(
                "hostname = \"test-host\"",
                "hostname = \"test-host\"\nmax-concurrent-jobs = \"two\"\nhostnme = \"x\"\nschedules = \"schedules\"",
            )
            .replacen("kind = \"local\"", "kind = \"lcoal\"", 1),
    );
    std::fs::write(
        ws.path("schedules/jobs.toml"),
        "[[job]]\nname = \"nightly\"\nkind = \"backpu\"\ncron = \"61 * * * *\"\ntime-zone = \"Europe/Berlln\"\n\n\
         [[job]]\nname = \"copy\"\nkind = \"copy\"\ncron = \"0 0 * * * * * *\"\n\n\
         [[job]]\nname = \"twice\"\nkind = \"copy\"\ncron = \"0 4 * * *\"\n\n\
         [[job]]\nname = \"twice\"\nkind = \"check\"\ncron = \"0 5 * * *\"\n",
    )
    .unwrap();
    let out = ws.custodian(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for expected in [
        "custodian.max-concurrent-jobs: must be a whole number, like 2; found the string \"two\"",
        "custodian.hostnme: unknown key `hostnme` (did you mean `hostname`?)",
        "is not a location kind (did you mean `local`?)",
        "job.0.kind: `backpu` is not a job kind (did you mean `backup`?)",
        "job.0.cron: `61 * * * *` is not a cron expression: `61` is out of range for minutes: 0 to 59",
        "job.0.time-zone: `Europe/Berlln` is not a known time zone (did you mean `Europe/Berlin`?)",
        "job.1.cron: `0 0 * * * * * *` is not a cron expression: it has 8 fields",
        "jobs.toml:18: job.twice: a job named `twice` is already defined at ",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(
        err.contains("schedules/jobs.toml:13; names must be unique"),
        "{err}"
    );
    // Each problem is one line.
    for line in err.lines() {
        assert!(
            line.starts_with(ws.root().to_str().unwrap()) || line.starts_with("custodian:"),
            "{line}"
        );
    }
}

#[test]
fn a_parallel_setting_out_of_range_is_named() {
    let ws = Workspace::new();
    ws.write_config(
        r#"[custodian]
state-dir = "state"
[source.crm]
kind = "postgres"
url = "postgres://custodian@127.0.0.1:5432/crm"
parallel = 0
[location.local]
kind = "local"
path = "repos/local"
password-file = "keys/local.key"
"#,
    );
    let out = ws.custodian(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let file = ws.config_path().display().to_string();
    assert!(
        err.contains(&format!(
            "{file}:6: source.crm.parallel: must be between 1 and 64 (table streams at a time); found 0"
        )),
        "{err}"
    );
}
