//! Shared helpers for integration tests: a throwaway workspace with a SQLite CRM, password
//! files and a configuration; the `custodian` binary; and the real `restic` CLI as the
//! compatibility oracle. A missing `restic` is a test failure, never a skip: `scripts/test-all`
//! installs it.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A temporary directory holding a CRM database, keys, repositories and a configuration.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    /// A workspace with a small CRM (`crm.sqlite`) and two local locations, `local` and
    /// `offsite`, each with its own password.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ws = Self { dir };
        fs::create_dir_all(ws.path("keys")).unwrap();
        fs::create_dir_all(ws.path("repos")).unwrap();
        ws.write_key("local", "correct horse battery staple local");
        ws.write_key("offsite", "another password for offsite");
        make_crm(&ws.path("crm.sqlite"), 300);
        ws.write_config(&default_config());
        ws
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("custodian.toml")
    }

    pub fn write_config(&self, text: &str) {
        fs::write(self.config_path(), text).unwrap();
    }

    pub fn write_key(&self, name: &str, password: &str) {
        let path = self.path(&format!("keys/{name}.key"));
        fs::write(&path, format!("{password}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    }

    pub fn repo(&self, name: &str) -> PathBuf {
        self.path(&format!("repos/{name}"))
    }

    pub fn key(&self, name: &str) -> PathBuf {
        self.path(&format!("keys/{name}.key"))
    }

    /// Runs `custodian --config <ws>/custodian.toml ARGS`.
    pub fn custodian(&self, args: &[&str]) -> Output {
        let mut cmd = custodian_cmd();
        cmd.arg("--config").arg(self.config_path()).args(args);
        cmd.output().expect("run custodian")
    }

    /// Runs `custodian --json --config … ARGS` with `stdin` piped in: its exit code and JSON.
    pub fn custodian_stdin(&self, args: &[&str], stdin: &str) -> (Option<i32>, Value) {
        use std::io::Write;
        let mut child = custodian_cmd()
            .arg("--json")
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run custodian");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.code(), reply(&out))
    }

    /// Runs custodian with `--json`, asserting the exit code; the envelope's `data` (null when a
    /// failed command has none).
    pub fn custodian_json(&self, args: &[&str], expected_code: i32) -> Value {
        self.custodian_envelope(args, expected_code)["data"].clone()
    }

    /// Runs custodian with `--json`, asserting the exit code; the whole checked envelope.
    pub fn custodian_envelope(&self, args: &[&str], expected_code: i32) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.custodian(&all);
        assert_eq!(
            out.status.code(),
            Some(expected_code),
            "custodian {args:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        reply(&out)
    }

    /// As [`Self::custodian_json`] for a command expected to fail: the envelope's `error`
    /// (`code`, `message`, `hint`).
    pub fn custodian_error(&self, args: &[&str], expected_code: i32) -> Value {
        assert_ne!(expected_code, 0);
        self.custodian_envelope(args, expected_code)["error"].clone()
    }

    /// Runs the real restic against one of the workspace's repositories.
    pub fn restic(&self, location: &str, args: &[&str]) -> Output {
        restic(&self.repo(location), &self.key(location), args)
    }

    /// Snapshots of a location as restic sees them.
    pub fn restic_snapshots(&self, location: &str) -> Vec<Value> {
        let out = self.restic(location, &["snapshots", "--json"]);
        assert_success(&out, "restic snapshots");
        serde_json::from_slice(&out.stdout).expect("restic snapshots JSON")
    }
}

/// Checks that stdout is one `custodian.v1` envelope whose `ok` matches the exit code and
/// whose `error` (with a stable code and a message) is there exactly when it failed; returns it.
pub fn reply(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    // With `--progress`, NDJSON events come first and the envelope is the last line.
    let envelope: Value = serde_json::from_str(&text)
        .or_else(|_| serde_json::from_str(text.lines().last().unwrap_or_default()))
        .unwrap_or_else(|e| {
            panic!(
                "custodian printed no JSON envelope ({e}):\nstdout: {text}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let ok = out.status.code() == Some(0);
    if let Ok(dir) = std::env::var("CUSTODIAN_TEST_DUMP_JSON") {
        // Collects real outputs (for writing docs/schema/), one file per envelope.
        let name = envelope["command"]
            .as_str()
            .unwrap_or("none")
            .replace(' ', "-");
        let n: u64 = rand_suffix();
        let _ = fs::create_dir_all(&dir);
        let _ = fs::write(format!("{dir}/{name}.{n}.json"), envelope.to_string());
    }
    assert_eq!(envelope["schema"], "custodian.v1", "{envelope:#}");
    schema::check_envelope(&envelope);
    assert_eq!(
        envelope["ok"], ok,
        "ok must match the exit code: {envelope:#}"
    );
    assert!(envelope["command"].is_string(), "{envelope:#}");
    if ok {
        assert!(envelope.get("error").is_none(), "{envelope:#}");
    } else {
        let code = envelope["error"]["code"].as_str().unwrap_or_default();
        assert!(
            !code.is_empty()
                && code
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_'),
            "a failure has a stable code: {envelope:#}"
        );
        assert!(
            envelope["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{envelope:#}"
        );
    }
    envelope
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// The configuration every test starts from; paths are relative to the file.
pub fn default_config() -> String {
    r#"[custodian]
state-dir = "state"
hostname = "test-host"

[source.crm]
kind = "sqlite"
path = "crm.sqlite"
locations = ["local", "offsite"]

[location.local]
kind = "local"
path = "repos/local"
password-file = "keys/local.key"

[location.offsite]
kind = "local"
path = "repos/offsite"
password-file = "keys/offsite.key"
"#
    .to_string()
}

pub fn custodian_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_custodian"));
    // Under `sudo scripts/test-all`, SUDO_UID would make the invoking user the acting person.
    cmd.env_remove("CUSTODIAN_CONFIG")
        .env_remove("CUSTODIAN_LOG")
        .env_remove("SUDO_UID")
        .env_remove("SUDO_GID")
        .env_remove("SUDO_USER");
    cmd
}

/// The restic binary; its absence fails the test (the test script installs it).
pub fn restic_bin() -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join("restic");
        if p.exists() {
            return p;
        }
    }
    panic!(
        "the restic CLI is required as the compatibility oracle; run scripts/test-all, which installs it"
    );
}

pub fn restic(repo: &Path, key: &Path, args: &[&str]) -> Output {
    Command::new(restic_bin())
        .arg("-r")
        .arg(repo)
        .arg("--password-file")
        .arg(key)
        .arg("--no-cache")
        .args(args)
        .env_remove("RESTIC_PASSWORD")
        .env_remove("RESTIC_REPOSITORY")
        .output()
        .expect("run restic")
}

pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?})\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A small CRM-shaped SQLite database (WAL mode) with `rows` contacts, Unicode names, NULLs
/// and blobs, built with the sqlite3 CLI.
pub fn make_crm(path: &Path, rows: u32) {
    let mut sql = String::from(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE companies (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE contacts (id INTEGER PRIMARY KEY, company_id INTEGER REFERENCES companies(id),
                                name TEXT NOT NULL, email TEXT, notes TEXT, photo BLOB);
         CREATE TABLE deals (id INTEGER PRIMARY KEY, company_id INTEGER NOT NULL, amount INTEGER NOT NULL);
         BEGIN;",
    );
    for i in 1..=rows / 10 {
        sql.push_str(&format!(
            "INSERT INTO companies VALUES ({i}, 'Firma {i} 有限公司');"
        ));
    }
    for i in 1..=rows {
        sql.push_str(&format!(
            "INSERT INTO contacts VALUES ({i}, {}, '王{i} Müller', {}, '{}', {});",
            1 + i % (rows / 10).max(1),
            if i % 7 == 0 {
                "NULL".to_string()
            } else {
                format!("'c{i}@example.org'")
            },
            "note ".repeat((i % 50) as usize),
            if i % 13 == 0 {
                "randomblob(512)"
            } else {
                "NULL"
            }
        ));
    }
    for i in 1..=rows / 2 {
        sql.push_str(&format!(
            "INSERT INTO deals VALUES ({i}, {}, {});",
            1 + i % (rows / 10).max(1),
            i * 100
        ));
    }
    sql.push_str("COMMIT;");
    sqlite(path, &sql);
}

/// Runs SQL on a SQLite file with the sqlite3 CLI.
pub fn sqlite(path: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(sql.as_bytes())?;
            child.wait_with_output()
        })
        .expect("the sqlite3 CLI is required (scripts/test-all installs it)");
    assert_success(&out, "sqlite3");
    stdout(&out)
}

/// sha256 of a file as `sha256:<hex>`.
pub fn sha256_file(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let data = fs::read(path).unwrap();
    format!("sha256:{}", hex::encode(Sha256::digest(&data)))
}
pub mod s3;
pub mod schema;
pub mod servers;
pub mod smtp;
pub mod users;
pub mod webhook;
pub mod writer;

/// `custodian --json archive run --source SOURCE` in the background, as the tests' archiver.
pub fn start_archiver(ws: &Workspace, source: &str) -> std::process::Child {
    custodian_cmd()
        .arg("--config")
        .arg(ws.config_path())
        .args(["--json", "archive", "run", "--source", source])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the archiver")
}

/// Stops an archiver as the daemon would (SIGTERM); it must exit 0. Returns its output.
pub fn stop_archiver(archiver: std::process::Child) -> Output {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(archiver.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = archiver.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    out
}
