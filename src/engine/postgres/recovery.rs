//! Recovering a restored base backup to a point in time: the data directory is started by the
//! server version it came from, in archive recovery, on a private Unix socket and no TCP, with
//! every recovery setting given on its command line (nothing of this recovery stays in the
//! cluster's configuration): `restore_command` hands over the segments the job fetches from
//! the repository while the server replays (waiting for each), the target,
//! `recovery_target_action = promote`. The server itself
//! enforces the target — PostgreSQL 13+ refuses to finish a recovery that ended before its
//! target — and says where it stopped; that sentence is what the report quotes.
//!
//! `archive_mode` is forced off: a recovered copy must never push its WAL into the source's
//! archive.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use sqlx::Row;

use super::Connect;
use crate::engine::EngineError;
use crate::engine::pitr::{Recovered, RecoveryTarget};
use crate::engine::process::clean_command;
use crate::engine::scratch::{RunAs, stop_child, write_private_file};

fn failed(message: impl Into<String>) -> EngineError {
    EngineError::RestoreFailed {
        target: "the recovered data directory".into(),
        message: message.into(),
    }
}

/// The server binaries of the major version a data directory was made by (`PG_VERSION`):
/// Debian keeps one per version under `/usr/lib/postgresql/N/bin`.
fn bin_dir_for(data: &Path) -> Result<PathBuf, EngineError> {
    let version = std::fs::read_to_string(data.join("PG_VERSION"))
        .map_err(|e| failed(format!("the base backup has no PG_VERSION ({e})")))?;
    let version = version.trim();
    let debian = PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"));
    if debian.join("postgres").exists() {
        return Ok(debian);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|dir| dir.join("postgres").exists())
        .ok_or_else(|| {
            failed(format!(
                "the base backup needs the PostgreSQL {version} server; install it (Debian: postgresql-{version})"
            ))
        })
}

/// Names the job will fetch into the WAL directory, one per line: the server waits for these.
pub const EXPECTED: &str = ".expected";
/// Made in the WAL directory when fetching failed: the server stops waiting.
pub const FETCH_FAILED: &str = ".failed";

/// The `restore_command` that hands the server the files the job fetches into `wal_dir` while
/// the server replays: a file the job will fetch (listed in [`EXPECTED`]) is waited for until
/// it appears — written whole, then renamed — or the fetch failed ([`FETCH_FAILED`]) or the
/// directory went (a cancelled job); any other is missing at once, as at the end of an archive. A file is hard-linked into `pg_wal`
/// (no second copy of 16 MiB per segment), copied where `pg_wal` is on another filesystem.
fn restore_command(wal_dir: &Path) -> String {
    let d = wal_dir.display().to_string().replace('\'', "");
    format!(
        "f='{d}/%f'; if grep -qxF '%f' '{d}/{EXPECTED}'; then \
         while [ ! -e \"$f\" ] && [ ! -e '{d}/{FETCH_FAILED}' ] && [ -e '{d}/{EXPECTED}' ]; \
         do sleep 0.05; done; fi; \
         [ -e \"$f\" ] && {{ ln -f \"$f\" '%p' 2>/dev/null || cp \"$f\" '%p'; }}"
    )
}

fn target_settings(target: &RecoveryTarget) -> Vec<String> {
    let mut out = vec![
        "recovery_target_action=promote".to_string(),
        "recovery_target_timeline=latest".to_string(),
        // A standby's configuration (postgresql.auto.conf of a base backup taken on one) must
        // not make the recovered copy replicate from its old primary.
        "primary_conninfo=".to_string(),
        "primary_slot_name=".to_string(),
    ];
    match target {
        RecoveryTarget::Time(t) => {
            // A numeric offset: the server checks this setting before it has loaded the
            // time zone abbreviations (`Z` would be refused).
            out.push(format!(
                "recovery_target_time={}",
                t.strftime("%Y-%m-%d %H:%M:%S%.6f+00")
            ));
            // Stop before the first transaction that committed after the time.
            out.push("recovery_target_inclusive=true".into());
        }
        RecoveryTarget::Lsn(lsn) => out.push(format!("recovery_target_lsn={lsn}")),
        RecoveryTarget::RestorePoint(name) => out.push(format!("recovery_target_name={name}")),
        RecoveryTarget::Latest => {}
    }
    out
}

/// The lines of the server's log that say where recovery stopped.
fn stop_line(log: &str) -> Option<String> {
    log.lines()
        .filter_map(|l| l.split_once("LOG:  ").map(|(_, m)| m.trim()))
        .find(|m| m.starts_with("recovery stopping"))
        .or_else(|| {
            log.lines()
                .filter_map(|l| l.split_once("LOG:  ").map(|(_, m)| m.trim()))
                .find(|m| m.starts_with("redo done at"))
        })
        .map(str::to_string)
}

fn fatal_lines(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("FATAL:") || l.contains("PANIC:") || l.contains("ERROR:"))
        .collect();
    if lines.is_empty() {
        log.lines().rev().take(5).collect::<Vec<_>>().join(" / ")
    } else {
        lines.join(" / ")
    }
}

/// Recovers `data` (a restored base backup, owned by `run_as` when given) to `target` with the
/// WAL files in `wal_dir`; returns what it reached and the promoted server, still running. `work` is a private
/// directory for the socket, the log and the access file; `role` is a role of the source the
/// job may connect as (the backup's own), trusted on that private socket only.
///
/// # Errors
/// When the server refuses to start, recovery fails or ends before the target.
pub async fn recover(
    data: &Path,
    wal_dir: &Path,
    work: &Path,
    target: &RecoveryTarget,
    role: &str,
    database: &str,
    run_as: Option<RunAs>,
) -> Result<(Recovered, Running), EngineError> {
    let bin = bin_dir_for(data)?;
    // Debian keeps postgresql.conf outside the data directory; the server needs one.
    for file in ["postgresql.conf", "pg_ident.conf"] {
        let path = data.join(file);
        if !path.exists() {
            std::fs::write(&path, "").map_err(|e| failed(format!("{}: {e}", path.display())))?;
            if let Some(u) = run_as {
                let _ = std::os::unix::fs::chown(&path, Some(u.uid), Some(u.gid));
            }
        }
    }
    // A base backup taken on a standby carries its standby.signal: left there, the server would
    // wait for more WAL forever instead of ending recovery and promoting.
    let standby = data.join("standby.signal");
    if standby.exists() {
        std::fs::remove_file(&standby)
            .map_err(|e| failed(format!("{}: {e}", standby.display())))?;
    }
    let signal = data.join("recovery.signal");
    std::fs::write(&signal, "").map_err(|e| failed(format!("{}: {e}", signal.display())))?;
    if let Some(u) = run_as {
        let _ = std::os::unix::fs::chown(&signal, Some(u.uid), Some(u.gid));
    }
    // Only this socket, in a 0700 directory, and only for the recovery.
    let hba = work.join("recovery_hba.conf");
    // A second attempt in the same working directory (the whole archive, after a time the
    // server could not stop at) writes it again.
    let _ = std::fs::remove_file(&hba);
    write_private_file(&hba, "local all all trust\n", run_as)
        .map_err(|e| failed(format!("{}: {e}", hba.display())))?;
    let log_path = work.join("recovery.log");
    let log = std::fs::File::create(&log_path).map_err(|e| failed(e.to_string()))?;
    if let Some(u) = run_as {
        let _ = std::os::unix::fs::chown(&log_path, Some(u.uid), Some(u.gid));
    }
    let port: u16 = rand::random_range(20_000..60_000);
    let restore_command = restore_command(wal_dir);
    let mut settings = vec![
        "listen_addresses=".to_string(),
        format!("unix_socket_directories={}", work.display()),
        "unix_socket_permissions=0700".into(),
        format!("hba_file={}", hba.display()),
        "archive_mode=off".into(),
        "primary_conninfo=".into(),
        "primary_slot_name=".into(),
        "lc_messages=C".into(),
        "log_destination=stderr".into(),
        "logging_collector=off".into(),
        format!("restore_command={restore_command}"),
    ];
    settings.extend(target_settings(target));
    let mut cmd = clean_command(&bin.join("postgres").to_string_lossy());
    cmd.arg("-D").arg(data).args(["-p", &port.to_string()]);
    for s in &settings {
        cmd.arg("-c").arg(s);
    }
    cmd.current_dir(work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0);
    if let Some(u) = run_as {
        cmd.uid(u.uid).gid(u.gid);
    }
    let started = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| failed(format!("starting postgres: {e}")))?;
    let url = format!(
        "postgres://{}@localhost:{port}/{}?host={}&sslmode=disable",
        urlencode(role),
        urlencode(database),
        urlencode(&work.display().to_string())
    );
    let connect = Connect::new(&url, None).map_err(failed)?;
    // From here on, a failure or a cancelled job stops the server (dropping `running`).
    let mut running = Running {
        child: Some(child),
        connect: connect.clone(),
        url: url.clone(),
        bin: bin.clone(),
        socket_dir: work.to_path_buf(),
        port,
    };
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    // Replay may take long; the server's exit is what ends a failed one.
    let promoted = loop {
        if let Some(Ok(Some(status))) = running.child.as_mut().map(Child::try_wait) {
            return Err(failed(format!(
                "the server stopped during recovery ({status}): {}",
                fatal_lines(&read_log())
            )));
        }
        if let Ok(mut conn) = connect.connect().await {
            let row = sqlx::query(
                "SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp()::text, \
                        pg_current_wal_lsn()::text, \
                        (SELECT timeline_id FROM pg_control_checkpoint())",
            )
            .fetch_one(&mut conn)
            .await;
            // pg_current_wal_lsn fails while in recovery: keep polling.
            if let Ok(row) = row
                && !row.get::<bool, _>(0)
            {
                let _ = sqlx::Connection::close(conn).await;
                break row;
            }
            let _ = sqlx::Connection::close(conn).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let replay_seconds = started.elapsed().as_secs_f64();
    let log_text = read_log();
    let timeline_now = log_text
        .lines()
        .filter_map(|l| l.split("selected new timeline ID: ").nth(1))
        .filter_map(|t| t.trim().parse::<u32>().ok())
        .next_back();
    let recovered = Recovered {
        stop: stop_line(&log_text).unwrap_or_else(|| "recovery ended".into()),
        last_transaction: promoted.get(1),
        end_lsn: promoted.get(2),
        timeline: timeline_now
            .unwrap_or_else(|| u32::try_from(promoted.get::<i32, _>(3)).unwrap_or_default()),
        replay_seconds,
    };
    Ok((recovered, running))
}

/// A recovered server, still running on its private socket (trusted there, for the job only).
/// [`Running::stop`] shuts it down cleanly; dropped, it is stopped at once.
pub struct Running {
    child: Option<Child>,
    /// As the source's role, on the private socket.
    pub connect: Connect,
    /// The same, as a URL (no password: the socket is trusted).
    pub url: String,
    bin: PathBuf,
    socket_dir: PathBuf,
    port: u16,
}

impl Running {
    /// A clean shutdown (SIGINT: fast), which leaves a data directory any server can start.
    ///
    /// # Errors
    /// When the stopping task fails.
    pub async fn stop(mut self) -> Result<(), EngineError> {
        if let Some(mut child) = self.child.take() {
            tokio::task::spawn_blocking(move || {
                stop_child(&mut child, nix::sys::signal::Signal::SIGINT);
            })
            .await
            .map_err(|e| failed(e.to_string()))?;
        }
        Ok(())
    }

    /// `pg_amcheck --all` on every database of the recovered cluster, as its bootstrap
    /// superuser (trusted on the private socket), installing amcheck where it is missing:
    /// every table's heap and every B-tree index checked. Returns what it reported.
    ///
    /// # Errors
    /// When pg_amcheck cannot run, or finds corruption (its report is the message).
    pub async fn amcheck(&self, work: &Path) -> Result<String, EngineError> {
        let mut conn = self
            .connect
            .connect()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let superuser: String =
            sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE oid = 10")
                .fetch_one(&mut conn)
                .await
                .map_err(|e| failed(e.to_string()))?;
        let _ = sqlx::Connection::close(conn).await;
        let tool = if self.bin.join("pg_amcheck").exists() {
            self.bin.join("pg_amcheck").to_string_lossy().into_owned()
        } else {
            "pg_amcheck".to_string()
        };
        let mut cmd = clean_command(&tool);
        cmd.env("PGHOST", &self.socket_dir)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &superuser)
            .env("PGPASSFILE", "/dev/null")
            .args(["--all", "--install-missing", "--no-password", "--progress"])
            .current_dir(work);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| {
                failed(format!(
                    "pg_amcheck cannot be run ({e}); install postgresql-client"
                ))
            })?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(said.trim().to_string())
        } else {
            Err(failed(format!(
                "pg_amcheck found problems: {}",
                said.trim()
            )))
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && matches!(child.try_wait(), Ok(None))
        {
            stop_child(&mut child, nix::sys::signal::Signal::SIGQUIT);
        }
    }
}

/// Starts a recovered data directory with its own configuration on `port` and leaves it
/// running (`pg_ctl start --wait`); `pg_ctl -D DIR stop` stops it.
///
/// # Errors
/// When the server does not start.
pub async fn start(data: &Path, port: u16, run_as: Option<RunAs>) -> Result<(), EngineError> {
    let bin = bin_dir_for(data)?;
    let log = data.join("custodian-start.log");
    let mut cmd = clean_command(&bin.join("pg_ctl").to_string_lossy());
    cmd.arg("start")
        .arg("--wait")
        .arg("-D")
        .arg(data)
        .arg("-l")
        .arg(&log)
        .arg("-o")
        // The socket goes into the data directory: the configured one (Debian's
        // /var/run/postgresql) may belong to another server and another user.
        .arg(format!(
            "-p {port} -c archive_mode=off -c 'unix_socket_directories={}'",
            data.display().to_string().replace('\'', "")
        ))
        .stdin(Stdio::null());
    if let Some(u) = run_as {
        cmd.uid(u.uid).gid(u.gid);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(format!("running pg_ctl: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(format!(
            "the recovered server did not start on port {port}: {}",
            fatal_lines(&std::fs::read_to_string(&log).unwrap_or_default())
        )))
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
