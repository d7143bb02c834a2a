//! Real unix users for the access-control tests (created when missing; the suite runs as
//! root), and running the CLI as one of them — with their supplementary groups, as a login
//! would — and a one-time code from their enrolled second factor.

#![allow(dead_code)]

use std::process::{Command, Output, Stdio};

/// Creates `group` and `users` when missing; each user is in `group` unless listed in
/// `outside`.
pub fn ensure(group: &str, users: &[&str], outside: &[&str]) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the access-control tests need root to create test users and run clients as them (scripts/test-all runs as root or through sudo)"
    );
    if nix::unistd::Group::from_name(group).unwrap().is_none() {
        let _ = Command::new("groupadd").args(["--system", group]).status();
    }
    for user in users {
        if nix::unistd::User::from_name(user).unwrap().is_none() {
            let mut cmd = Command::new("useradd");
            cmd.args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ]);
            let _ = cmd.arg(user).status();
        }
        if !outside.contains(user) {
            let _ = Command::new("usermod").args(["-aG", group, user]).status();
        }
    }
}

/// `custodian --json ARGS` as `user` (real and effective ids, supplementary groups), with
/// `stdin` on its standard input.
pub fn custodian_as(user: &str, args: &[&str], stdin: &str) -> (Option<i32>, serde_json::Value) {
    let out = run_as(user, args, stdin);
    (out.status.code(), super::reply(&out))
}

pub fn run_as(user: &str, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new("setpriv")
        .args([
            "--reuid",
            user,
            "--regid",
            &primary_group(user),
            "--init-groups",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_custodian"))
        .arg("--json")
        .args(args)
        .env_remove("CUSTODIAN_CONFIG")
        .env_remove("CUSTODIAN_LOG")
        .env_remove("SUDO_UID")
        .env_remove("SUDO_GID")
        .env_remove("SUDO_USER")
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn primary_group(user: &str) -> String {
    let u = nix::unistd::User::from_name(user).unwrap().unwrap();
    u.gid.as_raw().to_string()
}

pub fn uid(user: &str) -> u32 {
    nix::unistd::User::from_name(user)
        .unwrap()
        .unwrap()
        .uid
        .as_raw()
}

/// The current code of an enrolled second factor, from its `otpauth://` URI, with a newline
/// (as piped to `--totp-stdin`).
pub fn code(uri: &str) -> String {
    let totp = totp_rs::Totp::from_url(uri).expect("an otpauth URI");
    format!("{}\n", totp.generate_current())
}

/// A code for a later 30-second step than `code(uri)` gives now: the next one is accepted
/// even though the current one was just used.
pub fn next_code(uri: &str) -> String {
    let totp = totp_rs::Totp::from_url(uri).expect("an otpauth URI");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!("{}\n", totp.generate(now + 30))
}

/// Second-factor codes for tests that need several: each is for a later time step than the
/// one before (a code is single-use): this step's or the next (the one-step skew allowed
/// around now keeps either valid for at least 30 s) — waiting for the clock when both are used.
pub struct Codes {
    totp: totp_rs::Totp,
    used: u64,
}

impl Codes {
    #[must_use]
    pub fn new(uri: &str) -> Self {
        Self {
            totp: totp_rs::Totp::from_url(uri).expect("an otpauth URI"),
            used: 0,
        }
    }

    /// A fresh code, with a newline.
    pub fn next(&mut self) -> String {
        loop {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                / 30;
            if let Some(step) = [now, now + 1].into_iter().find(|s| *s > self.used) {
                self.used = step;
                return format!("{}\n", self.totp.generate(step * 30));
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }

    /// The code last given (to show it is refused the second time).
    #[must_use]
    pub fn again(&self) -> String {
        format!("{}\n", self.totp.generate(self.used * 30))
    }
}
