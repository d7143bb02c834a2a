//! Scratch databases for restore drills — isolated from production, private, and always
//! removed — as far as they are the same for every engine: the plan recorded before anything
//! exists, the unprivileged identity servers run as, private directories, stopping a server,
//! and the sweep of what a killed drill left. Each engine's own instance (an ephemeral
//! PostgreSQL cluster, an ephemeral `mariadbd`, a private SQLite file, or a database on a
//! configured scratch server) lives in its folder and implements
//! [`super::ScratchInstance`].
//!
//! When Custodian runs as root, ephemeral servers run as an unprivileged user (their
//! directories are owned by it, mode 0700). An instance is torn down explicitly; dropping it
//! kills its server and removes its directory anyway, and [`sweep_instance`] removes what a
//! killed process left behind, from the catalog's record of it.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use super::EngineError;
use crate::model::Engine;
use crate::secret::Secret;

/// How a scratch database is provided for a source.
#[derive(Clone, Debug)]
pub enum ScratchSetting {
    /// An ephemeral instance (or file) created and destroyed by the drill.
    Ephemeral,
    /// A uniquely named database on a server the user configured as scratch.
    Server(ScratchServer),
}

/// A server the user configured for scratch restores (URL without a password): a uniquely
/// named database is created for each drill and dropped after it. Custodian never restores
/// into a server that is not configured as scratch.
#[derive(Clone, Debug)]
pub struct ScratchServer {
    pub url: String,
    pub password: Option<Secret>,
}

/// Names of drill databases on scratch servers start with this; only such names are dropped.
pub const DRILL_DATABASE_PREFIX: &str = "custodian_drill_";

impl ScratchServer {
    /// `user@host:port` — for records and messages.
    #[must_use]
    pub fn describe(&self) -> String {
        url::Url::parse(&self.url).map_or_else(
            |_| "(unparsable URL)".to_string(),
            |u| {
                format!(
                    "{}@{}:{}",
                    u.username(),
                    u.host_str().unwrap_or("localhost"),
                    u.port().map_or_else(String::new, |p| p.to_string())
                )
            },
        )
    }

    pub(crate) fn err(&self, message: impl std::fmt::Display) -> EngineError {
        EngineError::ScratchServer {
            server: self.describe(),
            message: message.to_string(),
        }
    }

    /// Refuses a name Custodian did not make.
    pub(crate) fn check_drill_name(&self, name: &str) -> Result<(), EngineError> {
        if name.starts_with(DRILL_DATABASE_PREFIX) {
            Ok(())
        } else {
            Err(self.err(format!("refusing to drop `{name}`: not a drill database")))
        }
    }
}

/// The unprivileged identity ephemeral servers run as when Custodian runs as root.
#[derive(Clone, Copy, Debug)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// The identity to use: `None` when not root (servers run as the current user); else the
    /// configured user, or `custodian`, or `nobody`.
    ///
    /// # Errors
    /// When a configured user does not exist.
    pub fn resolve(configured: Option<&str>) -> Result<Option<Self>, String> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        let lookup = |name: &str| nix::unistd::User::from_name(name).ok().flatten();
        let user = match configured {
            Some(name) => lookup(name).ok_or_else(|| {
                format!("drills.scratch-user `{name}` is not a user on this machine")
            })?,
            None => match lookup("custodian").or_else(|| lookup("nobody")) {
                Some(u) => u,
                None => {
                    return Err(
                        "neither user `custodian` nor `nobody` exists; set drills.scratch-user"
                            .into(),
                    );
                }
            },
        };
        Ok(Some(Self {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }))
    }
}

/// What a scratch database will be, decided before anything is created so that the catalog
/// can record it first.
#[derive(Clone, Debug)]
pub struct ScratchPlan {
    pub id: String,
    pub engine: Engine,
    pub setting: ScratchSetting,
    /// Private directory (ephemeral instances and SQLite).
    pub dir: Option<PathBuf>,
    /// Database name to restore into.
    pub database: String,
}

impl ScratchPlan {
    /// Plans a scratch database for a restore of `database` (the source's database name).
    #[must_use]
    pub fn new(
        engine: Engine,
        setting: &ScratchSetting,
        base_dir: &Path,
        id: &str,
        database: &str,
    ) -> Self {
        let (dir, database) = match setting {
            ScratchSetting::Ephemeral => (
                Some(base_dir.join(format!("custodian-drill-{id}"))),
                if database.is_empty() {
                    "restored".to_string()
                } else {
                    database.to_string()
                },
            ),
            ScratchSetting::Server(_) => (None, format!("{DRILL_DATABASE_PREFIX}{id}")),
        };
        Self {
            id: id.to_string(),
            engine,
            setting: setting.clone(),
            dir,
            database,
        }
    }

    /// The catalog's name for the kind of instance: the engine (`postgres`, `mysql`,
    /// `sqlite`) for an ephemeral one, `server-<engine>` for a database on a scratch server.
    #[must_use]
    pub fn kind(&self) -> String {
        match &self.setting {
            ScratchSetting::Ephemeral => self.engine.as_str().to_string(),
            ScratchSetting::Server(_) => format!("server-{}", self.engine),
        }
    }

    /// Whether this plan is for a database on a configured scratch server.
    #[must_use]
    pub fn on_server(&self) -> Option<&ScratchServer> {
        match &self.setting {
            ScratchSetting::Server(s) => Some(s),
            ScratchSetting::Ephemeral => None,
        }
    }

    /// `user@host:port` of a configured scratch server.
    #[must_use]
    pub fn server(&self) -> Option<String> {
        match &self.setting {
            ScratchSetting::Server(s) => Some(s.describe()),
            ScratchSetting::Ephemeral => None,
        }
    }
}

/// Removes a directory when dropped, unless disarmed (`.0 = None`).
pub(crate) struct RemoveOnDrop(pub Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = remove_dir(&dir);
        }
    }
}

/// Stops a server we started in its own process group: `signal` first, then SIGKILL to the
/// whole group after 10 seconds.
pub(crate) fn stop_child(child: &mut Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let _ = nix::sys::signal::kill(pid, signal);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
}

/// Creates `dir` with mode 0700, owned by `run_as` when given.
pub(crate) fn make_private_dir(dir: &Path, run_as: Option<RunAs>) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(dir)?;
    if let Some(user) = run_as {
        std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))?;
    }
    Ok(())
}

/// Writes a file only `run_as` (or we) can read.
pub(crate) fn write_private_file(
    path: &Path,
    text: &str,
    run_as: Option<RunAs>,
) -> std::io::Result<()> {
    crate::secret::write_new_secret_file(path, &Secret::new(text.to_string()))?;
    if let Some(user) = run_as {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))?;
    }
    Ok(())
}

/// Removes an instance's directory. A server's last children may still be writing files while
/// they exit (seen as "directory not empty" under load), so removal is retried briefly.
pub(crate) fn remove_dir(dir: &Path) -> Result<(), EngineError> {
    let mut attempt = 0;
    loop {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) if attempt < 10 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                return Err(EngineError::ScratchRemove {
                    what: dir.display().to_string(),
                    message: e.to_string(),
                });
            }
        }
    }
}

/// Waits until a server we started accepts a login (`try_login` returns true), for at most
/// 60 s; fails early, with the end of its log, if the server exits.
pub(crate) async fn wait_ready<F, Fut>(
    child: &mut Child,
    server: &str,
    log: &Path,
    try_login: F,
) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{server} exited ({status}): {}", log_tail(log)));
        }
        if try_login().await {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "{server} did not accept connections within 60 s: {}",
                log_tail(log)
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last lines of a server's log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join(" | ")
}

/// What the sweep found about one recorded scratch database.
#[derive(Debug, PartialEq, Eq)]
pub enum Swept {
    /// Its process was killed and/or its files or database removed.
    Removed,
    /// Nothing was left of it.
    AlreadyGone,
}

/// Removes a scratch instance that its drill left behind: kills its server (only if the pid
/// still belongs to the process that was recorded) and removes its directory. Databases on
/// configured scratch servers are dropped by their engine
/// ([`super::DatabaseEngine::drop_scratch_database`]).
///
/// # Errors
/// When the directory cannot be removed.
pub fn sweep_instance(
    dir: Option<&Path>,
    pid: Option<i64>,
    pid_start: Option<i64>,
) -> Result<Swept, EngineError> {
    let mut removed = false;
    if let (Some(pid), Some(started)) = (pid, pid_start)
        && crate::model::process_start(pid) == Some(started)
    {
        let raw = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::killpg(raw, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::signal::kill(raw, nix::sys::signal::Signal::SIGKILL);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while crate::model::process_start(pid) == Some(started)
            && !is_zombie(pid)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        removed = true;
    }
    if let Some(dir) = dir
        && dir.exists()
    {
        remove_dir(dir)?;
        removed = true;
    }
    Ok(if removed {
        Swept::Removed
    } else {
        Swept::AlreadyGone
    })
}

fn is_zombie(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}
