//! Scratch databases for restore drills: isolated from production, private, and always removed.
//!
//! * PostgreSQL: an ephemeral cluster (`initdb` into a private directory, `postgres` listening on
//!   a Unix socket only — no TCP — with a random superuser password), or a uniquely named
//!   database on a configured scratch server.
//! * MariaDB/MySQL: an ephemeral `mariadbd` (`--skip-networking`, private socket, a random
//!   password), or a database on a configured scratch server.
//! * SQLite: a file in a private directory.
//!
//! When Custodian runs as root, ephemeral servers run as an unprivileged user (their
//! directories are owned by it, mode 0700). A [`Scratch`] is torn down explicitly with
//! [`Scratch::teardown`]; dropping it kills its server and removes its directory anyway, and
//! [`sweep`] removes what a killed process left behind, from the catalog's record of it.

mod mariadb;
mod postgres;
mod server;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use crate::model::Engine;
use crate::secret::Secret;

pub use server::ScratchServer;

/// Why a scratch database could not be created or removed.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error(
        "{what} is not installed; install it (Debian: {package}) or configure a scratch server for the source (scratch-url)"
    )]
    Missing {
        what: &'static str,
        package: &'static str,
    },
    #[error("cannot create the scratch {engine} instance: {message}")]
    Create {
        engine: &'static str,
        message: String,
    },
    #[error("cannot remove scratch {what}: {message}")]
    Remove { what: String, message: String },
    #[error("the configured scratch server {server} failed: {message}")]
    Server { server: String, message: String },
}

/// How a scratch database is provided for a source.
#[derive(Clone, Debug)]
pub enum ScratchSetting {
    /// An ephemeral instance (or file) created and destroyed by the drill.
    Ephemeral,
    /// A uniquely named database on a server the user configured as scratch.
    Server(ScratchServer),
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
            ScratchSetting::Server(_) => (None, format!("custodian_drill_{id}")),
        };
        Self {
            id: id.to_string(),
            engine,
            setting: setting.clone(),
            dir,
            database,
        }
    }

    /// The catalog's name for the kind of instance.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match (&self.setting, self.engine) {
            (ScratchSetting::Ephemeral, Engine::Postgres) => "postgres",
            (ScratchSetting::Ephemeral, Engine::Mysql) => "mariadb",
            (ScratchSetting::Ephemeral, Engine::Sqlite) => "sqlite",
            (ScratchSetting::Server(_), Engine::Mysql) => "server-mysql",
            (ScratchSetting::Server(_), _) => "server-postgres",
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

/// Where a restore goes.
pub enum ScratchTarget<'a> {
    Postgres(&'a super::postgres::Connect),
    Mysql(&'a super::mysql::Connect),
    File(&'a Path),
}

/// A scratch database that exists.
pub struct Scratch {
    plan: ScratchPlan,
    inner: Inner,
    torn_down: bool,
}

enum Inner {
    Postgres(postgres::Cluster),
    Mariadb(mariadb::Instance),
    Sqlite { file: PathBuf },
    Server(server::Database),
}

impl Scratch {
    /// Creates the planned scratch database and waits until it accepts connections.
    ///
    /// # Errors
    /// When the server binaries are missing or the instance does not start.
    pub async fn create(plan: ScratchPlan, run_as: Option<RunAs>) -> Result<Self, ScratchError> {
        let inner = match (&plan.setting, plan.engine) {
            (ScratchSetting::Ephemeral, engine) => {
                let dir = plan.dir.clone().unwrap_or_default();
                make_private_dir(&dir, run_as).map_err(|e| ScratchError::Create {
                    engine: engine.as_str(),
                    message: format!("creating {}: {e}", dir.display()),
                })?;
                // Cancelled or failed before hand-over: the directory goes (the server, if
                // started, is stopped by its own drop first).
                let mut guard = RemoveOnDrop(Some(dir.clone()));
                let inner = match engine {
                    Engine::Postgres => Inner::Postgres(
                        postgres::Cluster::start(&dir, &plan.database, run_as).await?,
                    ),
                    Engine::Mysql => Inner::Mariadb(
                        mariadb::Instance::start(&dir, &plan.database, run_as).await?,
                    ),
                    Engine::Sqlite => Inner::Sqlite {
                        file: dir.join("restored.db"),
                    },
                };
                guard.0 = None;
                inner
            }
            (ScratchSetting::Server(server), engine) => {
                Inner::Server(server::Database::create(server, engine, &plan.database).await?)
            }
        };
        Ok(Self {
            plan,
            inner,
            torn_down: false,
        })
    }

    #[must_use]
    pub fn plan(&self) -> &ScratchPlan {
        &self.plan
    }

    /// The server process of an ephemeral instance.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        match &self.inner {
            Inner::Postgres(c) => Some(c.child.id()),
            Inner::Mariadb(m) => Some(m.child.id()),
            Inner::Sqlite { .. } | Inner::Server(_) => None,
        }
    }

    /// Where to restore.
    #[must_use]
    pub fn target(&self) -> ScratchTarget<'_> {
        match &self.inner {
            Inner::Postgres(c) => ScratchTarget::Postgres(&c.connect),
            Inner::Mariadb(m) => ScratchTarget::Mysql(&m.connect),
            Inner::Sqlite { file } => ScratchTarget::File(file),
            Inner::Server(d) => d.target(),
        }
    }

    /// What was restored into, for records and messages (no secrets).
    #[must_use]
    pub fn describe(&self) -> String {
        match &self.inner {
            Inner::Postgres(c) => format!(
                "ephemeral PostgreSQL {} cluster (Unix socket only)",
                c.version
            ),
            Inner::Mariadb(_) => "ephemeral MariaDB instance (Unix socket only)".to_string(),
            Inner::Sqlite { .. } => "private SQLite file".to_string(),
            Inner::Server(d) => format!(
                "database {} on scratch server {}",
                self.plan.database,
                d.describe()
            ),
        }
    }

    /// Stops the instance and removes everything it wrote.
    ///
    /// # Errors
    /// When something could not be removed (it is recorded and retried by the next sweep).
    pub async fn teardown(mut self) -> Result<(), ScratchError> {
        self.torn_down = true;
        let dir = self.plan.dir.clone();
        let inner = std::mem::replace(
            &mut self.inner,
            Inner::Sqlite {
                file: PathBuf::new(),
            },
        );
        match inner {
            Inner::Postgres(mut c) => {
                tokio::task::spawn_blocking(move || {
                    stop_child(&mut c.child, nix::sys::signal::Signal::SIGQUIT)
                })
                .await
                .ok();
            }
            Inner::Mariadb(mut m) => {
                tokio::task::spawn_blocking(move || {
                    stop_child(&mut m.child, nix::sys::signal::Signal::SIGKILL)
                })
                .await
                .ok();
            }
            Inner::Sqlite { .. } => {}
            Inner::Server(d) => d.drop_database().await?,
        }
        if let Some(dir) = dir {
            remove_dir(&dir)?;
        }
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        match &mut self.inner {
            Inner::Postgres(c) => stop_child(&mut c.child, nix::sys::signal::Signal::SIGQUIT),
            Inner::Mariadb(m) => stop_child(&mut m.child, nix::sys::signal::Signal::SIGKILL),
            Inner::Sqlite { .. } => {}
            // Dropping a database needs the runtime; the next sweep does it.
            Inner::Server(_) => return,
        }
        if let Some(dir) = &self.plan.dir {
            let _ = remove_dir(dir);
        }
    }
}

/// Removes a directory when dropped, unless disarmed (`.0 = None`).
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = remove_dir(&dir);
        }
    }
}

/// Stops a server we started in its own process group: `signal` first, then SIGKILL to the
/// whole group after 10 seconds.
fn stop_child(child: &mut Child, signal: nix::sys::signal::Signal) {
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
fn make_private_dir(dir: &Path, run_as: Option<RunAs>) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(dir)?;
    if let Some(user) = run_as {
        std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))?;
    }
    Ok(())
}

/// Writes a file only `run_as` (or we) can read.
fn write_private_file(path: &Path, text: &str, run_as: Option<RunAs>) -> std::io::Result<()> {
    crate::secret::write_new_secret_file(path, &Secret::new(text.to_string()))?;
    if let Some(user) = run_as {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))?;
    }
    Ok(())
}

/// Removes an instance's directory. A server's last children may still be writing files while
/// they exit (seen as "directory not empty" under load), so removal is retried briefly.
fn remove_dir(dir: &Path) -> Result<(), ScratchError> {
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
                return Err(ScratchError::Remove {
                    what: dir.display().to_string(),
                    message: e.to_string(),
                });
            }
        }
    }
}

/// Waits until a server we started accepts a login (`try_login` returns true), for at most
/// 60 s; fails early, with the end of its log, if the server exits.
async fn wait_ready<F, Fut>(
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
/// configured scratch servers are dropped by [`ScratchServer::drop_database_named`].
///
/// # Errors
/// When the directory cannot be removed.
pub fn sweep_instance(
    dir: Option<&Path>,
    pid: Option<i64>,
    pid_start: Option<i64>,
) -> Result<Swept, ScratchError> {
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
