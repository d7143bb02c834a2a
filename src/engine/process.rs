//! Dump tools as child processes that Custodian owns: own process group (so a kill reaches
//! everything they start), stdout handed to the repository as a stream, stderr kept (bounded,
//! secrets redacted) for the error message, and killed when dropped — so no `pg_dump` outlives
//! a failed or cancelled backup. The exit status is checked by the caller *before* a snapshot
//! is committed (rustic_core's `stdin_command` checks it only after saving: trap 2).

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::secret::Secret;

/// A command with a cleared environment (only the locale, `PATH`, `HOME`, `TZ` and `TMPDIR`
/// are kept), so that no inherited variable — a stray `PGPASSWORD`, say — reaches a tool.
#[must_use]
pub fn clean_command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    for var in [
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "LC_MESSAGES",
        "TZ",
        "TMPDIR",
    ] {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin");
    }
    cmd
}

/// At most this much of a tool's stderr is kept (the end of it, where the error is).
const STDERR_LIMIT: usize = 64 * 1024;

/// A running dump tool.
pub struct DumpProcess {
    /// Tool name for messages (`pg_dump`).
    pub tool: String,
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_thread: Option<JoinHandle<()>>,
    redact: Vec<String>,
    /// The dump's register of live tools, once joined ([`DumpProcess::join`]).
    groups: Option<ProcessGroups>,
}

/// How a tool ended, when it did not end well.
#[derive(Debug, Clone)]
pub struct ToolFailure {
    pub tool: String,
    /// `exit status 1`, `killed by signal 9`…
    pub status: String,
    /// The end of its stderr, secrets redacted.
    pub stderr: String,
}

impl std::fmt::Display for ToolFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ended with {}", self.tool, self.status)?;
        if !self.stderr.is_empty() {
            write!(f, ": {}", self.stderr.trim())?;
        }
        Ok(())
    }
}

impl DumpProcess {
    /// Starts `command` with stdout piped (taken with [`DumpProcess::take_stdout`]) and stderr
    /// captured. `secrets` are redacted from anything it prints.
    ///
    /// # Errors
    /// When the program cannot be started (not installed, say).
    pub fn spawn(tool: &str, command: Command, secrets: &[&Secret]) -> io::Result<Self> {
        Self::start(tool, command, secrets, false)
    }

    /// Starts a tool that reads its input from stdin (a restore tool), taken with
    /// [`DumpProcess::take_stdin`]; its stdout is discarded.
    ///
    /// # Errors
    /// When the program cannot be started.
    pub fn spawn_consumer(tool: &str, command: Command, secrets: &[&Secret]) -> io::Result<Self> {
        Self::start(tool, command, secrets, true)
    }

    fn start(
        tool: &str,
        mut command: Command,
        secrets: &[&Secret],
        consumer: bool,
    ) -> io::Result<Self> {
        if consumer {
            command.stdin(Stdio::piped()).stdout(Stdio::null());
        } else {
            command.stdin(Stdio::null()).stdout(Stdio::piped());
        }
        command.stderr(Stdio::piped()).process_group(0);
        let mut child = command.spawn().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(
                    e.kind(),
                    format!(
                        "{tool} is not installed or not in PATH; install the database client tools"
                    ),
                )
            } else {
                e
            }
        })?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_thread = child.stderr.take().map(|mut pipe| {
            let sink = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut kept = sink
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > STDERR_LIMIT {
                        let cut = kept.len() - STDERR_LIMIT;
                        kept.drain(..cut);
                    }
                }
            })
        });
        Ok(Self {
            tool: tool.to_string(),
            child,
            stderr,
            stderr_thread,
            redact: secrets
                .iter()
                .map(|s| s.expose().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            groups: None,
        })
    }

    /// Records the tool in a dump's register, so that a failure elsewhere kills it.
    ///
    /// # Errors
    /// When the dump was stopped already (the tool is killed).
    pub fn join(&mut self, groups: &ProcessGroups) -> io::Result<()> {
        if !groups.add(self.child.id()) {
            self.kill();
            return Err(io::Error::other(format!(
                "{} was not started: the dump had already failed",
                self.tool
            )));
        }
        self.groups = Some(groups.clone());
        Ok(())
    }

    /// The tool's stdin, once (consumers only). Dropping it signals the end of input.
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// The tool's stdout, once.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Process id (for tests and diagnostics).
    #[must_use]
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    fn stderr_text(&mut self) -> String {
        if let Some(thread) = self.stderr_thread.take() {
            let _ = thread.join();
        }
        let raw = self
            .stderr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut text = String::from_utf8_lossy(&raw).into_owned();
        for secret in &self.redact {
            text = text.replace(secret.as_str(), "***");
        }
        text
    }

    /// Waits for the tool to end and judges its exit status.
    ///
    /// # Errors
    /// A [`ToolFailure`] when it did not exit with status 0.
    pub fn finish(mut self) -> Result<String, ToolFailure> {
        let status = self.child.wait();
        if let Some(groups) = &self.groups {
            groups.remove(self.child.id());
        }
        // Whatever the tool left running in its group (a shell pipeline's other members, say)
        // would keep its pipes open: nothing of a dump outlives its tool.
        kill_group(self.child.id());
        let stderr = self.stderr_text();
        match status {
            Ok(s) if s.success() => Ok(stderr),
            Ok(s) => Err(ToolFailure {
                tool: self.tool.clone(),
                status: describe(s),
                stderr,
            }),
            Err(e) => Err(ToolFailure {
                tool: self.tool.clone(),
                status: format!("an unknown status ({e})"),
                stderr,
            }),
        }
    }

    /// Kills the tool and everything in its process group, then reaps it.
    pub fn kill(&mut self) {
        kill_group(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(groups) = &self.groups {
            groups.remove(self.child.id());
        }
    }
}

impl Drop for DumpProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// Kills a process group (a dump tool and everything it started).
pub fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(9)) => "killed by signal 9 (SIGKILL)".to_string(),
        (None, Some(15)) => "killed by signal 15 (SIGTERM)".to_string(),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => "an unknown status".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_report_status_and_redacted_stderr() {
        let secret = Secret::new("hunter2".into());
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'FATAL: password hunter2 rejected' >&2; exit 3"]);
        let p = DumpProcess::spawn("pg_dump", cmd, &[&secret]).unwrap();
        let err = p.finish().unwrap_err();
        assert_eq!(err.status, "exit status 3");
        assert!(err.stderr.contains("password *** rejected"), "{err}");
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn dropping_kills_the_whole_group() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & sleep 30; wait"]);
        let mut p = DumpProcess::spawn("tool", cmd, &[]).unwrap();
        let pgid = p.id();
        let _ = p.take_stdout();
        drop(p);
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(live_members(pgid), 0, "the process group must be gone");
    }

    /// Processes of a group that are not zombies (an orphan may wait to be reaped by init).
    fn live_members(pgid: u32) -> usize {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
            .filter(|stat| {
                let rest = &stat[stat.rfind(')').unwrap() + 2..];
                let fields: Vec<&str> = rest.split_whitespace().collect();
                fields[0] != "Z" && fields[2] == pgid.to_string()
            })
            .count()
    }

    #[test]
    fn a_missing_tool_is_named() {
        let err = DumpProcess::spawn("no-such-tool", Command::new("no-such-tool-xyz"), &[])
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("no-such-tool is not installed"),
            "{err}"
        );
    }
}

/// The process groups of every tool a dump has started, including those it starts later
/// (table streams start when the archiver reaches them). Once [`ProcessGroups::kill_all`] has
/// run, nothing new may start: a tool that tries is killed at once.
#[derive(Clone, Debug)]
pub struct ProcessGroups {
    state: Arc<Mutex<GroupsState>>,
    /// Turns `true` once [`ProcessGroups::kill_all`] has run.
    stopped: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for ProcessGroups {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            stopped: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }
}

#[derive(Debug, Default)]
struct GroupsState {
    stopped: bool,
    live: std::collections::BTreeSet<u32>,
    /// Why a tool started later (a table stream) stopped the dump, when one did.
    cause: Option<String>,
}

impl ProcessGroups {
    fn state(&self) -> std::sync::MutexGuard<'_, GroupsState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Resolves once the dump has been stopped (a tool or a stream failed).
    pub async fn stopped(&self) {
        let mut seen = self.stopped.subscribe();
        let _ = seen.wait_for(|stopped| *stopped).await;
    }

    /// Records a started tool; `false` (and the tool killed) when the dump was stopped.
    pub fn add(&self, pid: u32) -> bool {
        let mut state = self.state();
        if state.stopped {
            kill_group(pid);
            return false;
        }
        state.live.insert(pid);
        true
    }

    /// Forgets a tool that has ended (its pid may be reused).
    pub fn remove(&self, pid: u32) {
        self.state().live.remove(&pid);
    }

    /// Stops the dump because of `cause`, unless it was stopped already: the tools that are
    /// then killed fail as a consequence, and the backup names this cause instead.
    pub fn fail(&self, cause: String) {
        {
            let mut state = self.state();
            // A tool that fails after the dump was stopped was killed because of it.
            if state.stopped {
                return;
            }
            state.cause.get_or_insert(cause);
        }
        self.kill_all();
    }

    /// The cause given to [`ProcessGroups::fail`], if any.
    #[must_use]
    pub fn cause(&self) -> Option<String> {
        self.state().cause.clone()
    }

    /// Kills every recorded tool and stops new ones from starting.
    pub fn kill_all(&self) {
        let mut state = self.state();
        state.stopped = true;
        for pid in std::mem::take(&mut state.live) {
            kill_group(pid);
        }
        self.stopped.send_replace(true);
    }
}
