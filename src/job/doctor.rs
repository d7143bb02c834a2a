//! `custodian doctor`: what an operator checks before calling for help, each finding with what
//! to do. The configuration; the systemd unit's sandbox against every path Custodian must
//! write (state, repositories, scratch, reports, the socket) or read (SQLite sources — in WAL
//! mode their directory must be writable too); the control socket's mode and group; every
//! secret reference; each source's tools against its server and its TLS; the clock against
//! each S3 endpoint; free space where dumps and restores are staged.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, LocationKind, SourceKind};
use crate::model::{Finding, Verdict};

/// Everything doctor found.
#[derive(Debug, Serialize)]
pub struct Report {
    /// True when nothing failed (warnings allowed).
    pub ok: bool,
    /// The unit file whose sandbox was checked, if one was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<PathBuf>,
    pub findings: Vec<Finding>,
}

impl Report {
    /// How many findings failed.
    #[must_use]
    pub fn failures(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.verdict == Verdict::Fail)
            .count()
    }
}

/// Where the unit is looked for when none is given.
const UNIT_PATHS: [&str; 3] = [
    "/etc/systemd/system/custodian.service",
    "/lib/systemd/system/custodian.service",
    "/usr/lib/systemd/system/custodian.service",
];

/// Runs every check. `config` is the loaded configuration, or the sentence why it did not load.
pub async fn run(config: Result<&Config, String>, unit: Option<&Path>) -> Report {
    let mut findings = Vec::new();
    let unit_path = unit
        .map(Path::to_path_buf)
        .or_else(|| UNIT_PATHS.iter().map(PathBuf::from).find(|p| p.exists()));
    let sandbox = match &unit_path {
        Some(p) => match Sandbox::read(p) {
            Ok(s) => Some(s),
            Err(e) => {
                findings.push(Finding::problem(
                    "sandbox",
                    Verdict::Fail,
                    p.display().to_string(),
                    format!("the unit cannot be read: {e}"),
                    "install systemd/custodian.service as the README's service steps say",
                ));
                None
            }
        },
        None => {
            findings.push(Finding {
                check: "sandbox",
                subject: "custodian.service".into(),
                verdict: Verdict::Skipped,
                message: "no custodian.service is installed here; pass --unit FILE to check one"
                    .into(),
                fix: None,
            });
            None
        }
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            findings.insert(
                0,
                Finding::problem(
                    "config",
                    Verdict::Fail,
                    "configuration",
                    e,
                    "`custodian config check` lists every problem with its file, line and key",
                ),
            );
            return finish(unit_path, findings);
        }
    };
    findings.push(Finding::ok(
        "config",
        "configuration",
        format!(
            "valid ({} warning{})",
            config.warnings.len(),
            if config.warnings.len() == 1 { "" } else { "s" }
        ),
    ));
    if let Some(sandbox) = &sandbox {
        findings.extend(sandbox_findings(config, sandbox));
    }
    findings.extend(socket(config));
    findings.extend(credentials(config));
    for source in &config.sources {
        let engine = crate::engine::of(source.engine());
        findings.extend(engine.doctor(&source.name, &source.kind).await);
        // A source with a continuous archive needs what archiving needs, checked here too.
        if super::wal::archive_settings(source).is_ok() {
            findings.extend(
                engine
                    .archive_preflight(&source.name, &source.kind, &config.scratch_dir())
                    .await,
            );
        }
    }
    for location in &config.locations {
        if let LocationKind::S3(s3) = &location.kind {
            findings.push(clock(&location.name, s3).await);
        }
    }
    findings.extend(space(config));
    finish(unit_path, findings)
}

pub(crate) fn finish(unit: Option<PathBuf>, findings: Vec<Finding>) -> Report {
    Report {
        ok: findings.iter().all(|f| f.verdict != Verdict::Fail),
        unit,
        findings,
    }
}

/// The parts of a unit that decide what the service may write and read.
#[derive(Debug, Default)]
pub struct Sandbox {
    protect_system: String,
    protect_home: String,
    read_write: Vec<PathBuf>,
    read_only: Vec<PathBuf>,
}

impl Sandbox {
    /// Reads the unit and its drop-ins (`NAME.d/*.conf`), later settings winning.
    ///
    /// # Errors
    /// When the unit cannot be read.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        let mut texts = vec![std::fs::read_to_string(path)?];
        let dropins = PathBuf::from(format!("{}.d", path.display()));
        if let Ok(dir) = std::fs::read_dir(&dropins) {
            let mut confs: Vec<PathBuf> = dir
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                .collect();
            confs.sort();
            for c in confs {
                texts.push(std::fs::read_to_string(c)?);
            }
        }
        let mut s = Self::default();
        for text in texts {
            s.apply(&text);
        }
        Ok(s)
    }

    fn apply(&mut self, text: &str) {
        let mut in_service = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_service = line == "[Service]";
                continue;
            }
            let Some((key, value)) = line.split_once('=').filter(|_| in_service) else {
                continue;
            };
            let paths = |v: &str| -> Vec<PathBuf> {
                v.split_whitespace()
                    .map(|p| PathBuf::from(p.trim_start_matches(['-', '+'])))
                    .collect()
            };
            match key.trim() {
                "ProtectSystem" => self.protect_system = value.trim().to_string(),
                "ProtectHome" => self.protect_home = value.trim().to_string(),
                "ReadWritePaths" if value.trim().is_empty() => self.read_write.clear(),
                "ReadWritePaths" => self.read_write.extend(paths(value)),
                "ReadOnlyPaths" => self.read_only.extend(paths(value)),
                "StateDirectory" | "RuntimeDirectory" | "CacheDirectory" | "LogsDirectory" => {
                    let base = match key.trim() {
                        "StateDirectory" => "/var/lib",
                        "RuntimeDirectory" => "/run",
                        "CacheDirectory" => "/var/cache",
                        _ => "/var/log",
                    };
                    for name in value.split_whitespace() {
                        self.read_write.push(Path::new(base).join(name));
                    }
                }
                _ => {}
            }
        }
    }

    fn under(list: &[PathBuf], path: &Path) -> bool {
        list.iter().any(|p| path.starts_with(p))
    }

    fn in_home(path: &Path) -> bool {
        ["/home", "/root", "/run/user"]
            .iter()
            .any(|h| path.starts_with(h))
    }

    /// Whether the service may write `path`.
    #[must_use]
    pub fn writable(&self, path: &Path) -> bool {
        if Self::under(&self.read_write, path) {
            return true;
        }
        if Self::in_home(path)
            && matches!(
                self.protect_home.as_str(),
                "yes" | "true" | "read-only" | "tmpfs"
            )
        {
            return false;
        }
        match self.protect_system.as_str() {
            "strict" => false,
            "full" => !["/usr", "/boot", "/efi", "/etc"]
                .iter()
                .any(|p| path.starts_with(p)),
            "yes" | "true" => !["/usr", "/boot", "/efi"]
                .iter()
                .any(|p| path.starts_with(p)),
            _ => true,
        }
    }

    /// Whether the service may read `path`.
    #[must_use]
    pub fn readable(&self, path: &Path) -> bool {
        Self::under(&self.read_write, path)
            || Self::under(&self.read_only, path)
            || !(Self::in_home(path)
                && matches!(self.protect_home.as_str(), "yes" | "true" | "tmpfs"))
    }
}

fn sandbox_findings(config: &Config, sandbox: &Sandbox) -> Vec<Finding> {
    let mut needs: Vec<(String, PathBuf)> = vec![
        ("the state directory".into(), config.state_dir.clone()),
        ("the scratch directory".into(), config.scratch_dir()),
    ];
    if let Some(dir) = &config.reports.out_dir {
        needs.push(("the reports directory".into(), dir.clone()));
    }
    if let Some(dir) = config.daemon.control_socket.parent() {
        needs.push(("the control socket's directory".into(), dir.to_path_buf()));
    }
    for l in &config.locations {
        if let LocationKind::Local { path } = &l.kind {
            needs.push((format!("location {}", l.name), path.clone()));
        }
    }
    // A path inside another one listed is covered by it.
    let listed: Vec<PathBuf> = needs.iter().map(|(_, p)| p.clone()).collect();
    needs.retain(|(_, p)| !listed.iter().any(|q| q != p && p.starts_with(q)));
    let mut out = Vec::new();
    for s in &config.sources {
        let SourceKind::Sqlite { path } = &s.kind else {
            continue;
        };
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        if crate::engine::sqlite::is_wal(path) {
            needs.push((
                format!(
                    "source {} (SQLite in WAL mode: its -wal and -shm files)",
                    s.name
                ),
                dir,
            ));
        } else if !sandbox.readable(path) {
            out.push(Finding::problem(
                "sandbox",
                Verdict::Fail,
                format!("source {}", s.name),
                format!(
                    "{} is hidden from the service (ProtectHome={})",
                    path.display(),
                    sandbox.protect_home
                ),
                format!(
                    "add `ReadOnlyPaths={}` to the unit (systemctl edit custodian)",
                    dir.display()
                ),
            ));
        } else {
            out.push(Finding::ok(
                "sandbox",
                format!("source {}", s.name),
                format!("{} is readable under the unit", path.display()),
            ));
        }
    }
    for (what, path) in needs {
        if sandbox.writable(&path) {
            out.push(Finding::ok(
                "sandbox",
                what,
                format!("{} is writable under the unit", path.display()),
            ));
        } else {
            out.push(Finding::problem(
                "sandbox",
                Verdict::Fail,
                what,
                format!(
                    "{} is read-only for the service (ProtectSystem={}): writes fail with \"read-only file system\" or SQLite's \"unable to open database file\"",
                    path.display(),
                    sandbox.protect_system
                ),
                format!("add `ReadWritePaths={}` to the unit (systemctl edit custodian), then systemctl restart custodian", path.display()),
            ));
        }
    }
    out
}

fn socket(config: &Config) -> Vec<Finding> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let path = &config.daemon.control_socket;
    let subject = path.display().to_string();
    let mut out = Vec::new();
    if let Some(group) = &config.access.socket_group
        && nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .is_none()
    {
        out.push(Finding::problem(
            "socket",
            Verdict::Fail,
            subject.clone(),
            format!("[access] socket-group `{group}` does not exist"),
            format!("groupadd {group}, and add the people who use `custodian ctl` to it"),
        ));
    }
    match std::fs::metadata(path) {
        Err(_) => out.push(Finding::problem(
            "socket",
            Verdict::Warn,
            subject,
            "the control socket does not exist: the daemon is not running (or listens elsewhere)",
            "systemctl status custodian; journalctl -u custodian -p err",
        )),
        Ok(m) => {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o007 != 0 {
                out.push(Finding::problem(
                    "socket",
                    Verdict::Fail,
                    subject,
                    format!("the control socket is open to everyone (mode {mode:o})"),
                    "restart the daemon: it creates the socket 0660, for its group only",
                ));
            } else {
                let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(m.gid()))
                    .ok()
                    .flatten()
                    .map_or_else(|| m.gid().to_string(), |g| g.name);
                out.push(Finding::ok(
                    "socket",
                    subject,
                    format!("mode {mode:o}, group {group}"),
                ));
            }
        }
    }
    out
}

fn credentials(config: &Config) -> Vec<Finding> {
    let mut refs: Vec<(String, &crate::secret::SecretRef)> = Vec::new();
    for l in &config.locations {
        refs.push((format!("location {} password", l.name), &l.password));
        if let LocationKind::S3(s3) = &l.kind
            && let Some((id, key)) = &s3.credentials
        {
            refs.push((format!("location {} access key id", l.name), id));
            refs.push((format!("location {} secret access key", l.name), key));
        }
    }
    for s in &config.sources {
        if let SourceKind::Postgres(c) | SourceKind::Mysql(c) = &s.kind
            && let Some(p) = &c.password
        {
            refs.push((format!("source {} password", s.name), p));
        }
    }
    if let Some(p) = config
        .notifications
        .smtp
        .as_ref()
        .and_then(|s| s.password.as_ref())
    {
        refs.push(("SMTP password".into(), p));
    }
    for (i, sink) in config.notifications.sinks.iter().enumerate() {
        if let Some(p) = &sink.secret {
            refs.push((format!("{} sink #{} secret", sink.kind.as_str(), i + 1), p));
        }
    }
    if let Some(p) = &config.reports.secret_key_password {
        refs.push(("report signing key password".into(), p));
    }
    refs.into_iter()
        .map(|(what, r)| match r.resolve() {
            Ok(_) => Finding::ok("credentials", what, format!("{} can be read", r.describe())),
            Err(e) => Finding::problem(
                "credentials",
                Verdict::Fail,
                what,
                e.to_string(),
                "create it (0600, owned by the service's user) or, under systemd, put it in /etc/custodian/credentials/",
            ),
        })
        .collect()
}

/// The local clock against the S3 endpoint's `Date`: signatures fail beyond 15 minutes, and
/// Object Lock retention dates are computed from the local clock.
async fn clock(location: &str, s3: &crate::config::S3Location) -> Finding {
    let endpoint = s3
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", s3.region));
    let subject = format!("location {location}");
    match crate::notify::webhook::server_date(&endpoint).await {
        Err(e) => Finding {
            check: "clock",
            subject,
            verdict: Verdict::Skipped,
            message: format!("{endpoint} gave no time to compare with ({e})"),
            fix: None,
        },
        Ok(theirs) => {
            let skew = (jiff::Timestamp::now() - theirs).get_seconds().abs();
            if skew > 300 {
                Finding::problem(
                    "clock",
                    if skew > 900 {
                        Verdict::Fail
                    } else {
                        Verdict::Warn
                    },
                    subject,
                    format!(
                        "this machine's clock is {skew} s off {endpoint}'s (S3 refuses requests signed more than 900 s off)"
                    ),
                    "run a time service (systemd-timesyncd or chrony)",
                )
            } else {
                Finding::ok("clock", subject, format!("within {skew} s of {endpoint}"))
            }
        }
    }
}

fn space(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    for (what, dir) in [
        ("state directory", config.state_dir.clone()),
        ("scratch directory", config.scratch_dir()),
    ] {
        // The nearest existing ancestor is where it would be created.
        let probe = dir
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"));
        match nix::sys::statvfs::statvfs(probe) {
            Err(e) => out.push(Finding {
                check: "space",
                subject: what.into(),
                verdict: Verdict::Skipped,
                message: format!("{}: {e}", probe.display()),
                fix: None,
            }),
            Ok(v) => {
                let free = v.blocks_available() * v.fragment_size();
                let total = v.blocks() * v.fragment_size();
                let low = free < 2 * 1024 * 1024 * 1024 || free * 10 < total;
                let message = format!(
                    "{} free of {} at {}",
                    crate::model::human_bytes(free),
                    crate::model::human_bytes(total),
                    probe.display()
                );
                out.push(if low {
                    Finding::problem(
                        "space",
                        Verdict::Warn,
                        what,
                        message,
                        "restores stage schemas and SQLite files here: free space, or point [custodian] state-dir at a larger disk",
                    )
                } else {
                    Finding::ok("space", what, message)
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_unit_lets_custodian_write_only_where_it_says() {
        let mut s = Sandbox::default();
        s.apply(include_str!("../../systemd/custodian.service"));
        assert_eq!(s.protect_system, "strict");
        assert!(s.writable(Path::new("/var/lib/custodian/catalog.db")));
        assert!(s.writable(Path::new("/run/custodian/control.sock")));
        assert!(!s.writable(Path::new("/var/lib/crm")));
        assert!(!s.writable(Path::new("/etc/custodian")));
        s.apply("[Service]\nReadWritePaths=/var/lib/crm\n");
        assert!(s.writable(Path::new("/var/lib/crm/crm.sqlite-wal")));
    }
}
