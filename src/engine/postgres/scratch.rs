//! Scratch instances for PostgreSQL drills: an ephemeral cluster — `initdb` into a private
//! directory, `postgres` on a Unix socket in that directory and no TCP listener at all, a
//! superuser with a random name and a random password (so no role of the backup can be it),
//! durability switched off (a scratch cluster never needs to survive a crash) — or a uniquely
//! named database on a configured scratch server.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use futures_util::future::BoxFuture;
use rand::RngExt;

use super::Connect;
use super::restore::PgStaging;
use crate::engine::process::clean_command;
use crate::engine::scratch::{
    RemoveOnDrop, RunAs, ScratchPlan, ScratchServer, make_private_dir, remove_dir, stop_child,
    wait_ready, write_private_file,
};
use crate::engine::{EngineError, ScratchInstance, Staging};

const ENGINE: &str = "PostgreSQL";

/// A superuser name no backup's role can be: `custodian_scratch_` and 12 random characters.
fn superuser_name() -> String {
    let mut rng = rand::rng();
    let tail: String = (0..12)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect();
    format!("custodian_scratch_{tail}")
}

pub(super) struct Cluster {
    pub child: Child,
    pub connect: Connect,
    pub version: String,
}

/// A cluster dropped before it was handed over (a drill cancelled while it starts) stops its
/// server instead of leaving it running; after a teardown the child is already reaped.
impl Drop for Cluster {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            stop_child(&mut self.child, nix::sys::signal::Signal::SIGQUIT);
        }
    }
}

/// The newest server installation: Debian keeps one per major version under
/// `/usr/lib/postgresql/N/bin`; elsewhere `initdb` is looked up in `PATH`. The newest can
/// restore dumps of every older server.
fn bin_dir() -> Result<(PathBuf, String), EngineError> {
    let missing = EngineError::ScratchMissing {
        what: "the PostgreSQL server (initdb, postgres)",
        package: "postgresql",
    };
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("postgres").exists()).then_some((major, bin))
        })
        .collect();
    versions.sort();
    if let Some((major, bin)) = versions.pop() {
        return Ok((bin, major.to_string()));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|dir| dir.join("initdb").exists() && dir.join("postgres").exists())
        .map(|dir| (dir, String::new()))
        .ok_or(missing)
}

fn create_err(message: String) -> EngineError {
    EngineError::ScratchCreate {
        engine: ENGINE,
        message,
    }
}

impl Cluster {
    pub async fn start(
        dir: &Path,
        database: &str,
        run_as: Option<RunAs>,
    ) -> Result<Self, EngineError> {
        let (bin, version) = bin_dir()?;
        let superuser = superuser_name();
        let password = crate::secret::generate_password();
        let pwfile = dir.join("pwfile");
        write_private_file(&pwfile, password.expose(), run_as)
            .map_err(|e| create_err(format!("writing the password file: {e}")))?;
        let data = dir.join("data");
        let mut initdb = clean_command(&bin.join("initdb").to_string_lossy());
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                &superuser,
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .current_dir(dir);
        as_user(&mut initdb, run_as);
        let out = tokio::task::spawn_blocking(move || initdb.output())
            .await
            .map_err(|e| create_err(e.to_string()))?
            .map_err(|e| create_err(format!("running initdb: {e}")))?;
        let _ = std::fs::remove_file(&pwfile);
        if !out.status.success() {
            return Err(create_err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        // No TCP: the port only names the socket file.
        let port: u16 = rand::rng().random_range(20_000..60_000);
        let log = dir.join("server.log");
        let log_file = std::fs::File::create(&log).map_err(|e| create_err(e.to_string()))?;
        if let Some(user) = run_as {
            let _ = std::os::unix::fs::chown(&log, Some(user.uid), Some(user.gid));
        }
        let mut server = clean_command(&bin.join("postgres").to_string_lossy());
        server
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir)
            .args(["-p", &port.to_string()])
            .args([
                "-c",
                "listen_addresses=",
                "-c",
                "unix_socket_permissions=0700",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "wal_level=minimal",
                "-c",
                "max_wal_senders=0",
                "-c",
                "max_wal_size=4GB",
                "-c",
                "maintenance_work_mem=512MB",
                "-c",
                "max_connections=20",
                "-c",
                "autovacuum=off",
            ])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .process_group(0);
        as_user(&mut server, run_as);
        let child = server
            .spawn()
            .map_err(|e| create_err(format!("starting postgres: {e}")))?;
        let mut url = url::Url::parse(&format!("postgres://{superuser}@localhost:{port}/"))
            .map_err(|e| create_err(e.to_string()))?;
        url.set_path(database);
        url.query_pairs_mut()
            .append_pair("host", &dir.to_string_lossy())
            .append_pair("sslmode", "disable");
        let connect = Connect::new(url.as_str(), Some(password)).map_err(create_err)?;
        let mut cluster = Self {
            child,
            connect,
            version,
        };
        let admin = cluster.connect.with_database("postgres");
        wait_ready(&mut cluster.child, "postgres", &log, || async {
            match admin.connect().await {
                Ok(conn) => {
                    let _ = sqlx::Connection::close(conn).await;
                    true
                }
                Err(_) => false,
            }
        })
        .await
        .map_err(create_err)?;
        Ok(cluster)
    }
}

fn as_user(cmd: &mut std::process::Command, run_as: Option<RunAs>) {
    if let Some(user) = run_as {
        cmd.uid(user.uid).gid(user.gid);
    }
}

/// An ephemeral cluster, or a database on a configured scratch server.
pub(super) enum Instance {
    /// `None` once torn down.
    Cluster {
        cluster: Option<Cluster>,
        dir: PathBuf,
    },
    Server {
        server: ScratchServer,
        connect: Connect,
    },
}

/// Creates the planned scratch instance. The database itself is created by the restore, with
/// the backup's own encoding and collation.
pub(super) async fn create(
    plan: &ScratchPlan,
    run_as: Option<RunAs>,
) -> Result<Box<dyn ScratchInstance>, EngineError> {
    if let Some(server) = plan.on_server() {
        let connect = Connect::new(&server.url, server.password.clone())
            .map_err(|e| server.err(e))?
            .with_database(&plan.database);
        // Refuse a name that is taken: a drill never restores over anything.
        match connect.connect().await {
            Ok(conn) => {
                let _ = sqlx::Connection::close(conn).await;
                return Err(
                    server.err(format!("scratch database {} already exists", plan.database))
                );
            }
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {}
            Err(e) => return Err(server.err(e)),
        }
        return Ok(Box::new(Instance::Server {
            server: server.clone(),
            connect,
        }));
    }
    let dir = plan.dir.clone().unwrap_or_default();
    make_private_dir(&dir, run_as)
        .map_err(|e| create_err(format!("creating {}: {e}", dir.display())))?;
    // Cancelled or failed before hand-over: the directory goes (the server, if started, is
    // stopped by its own drop first).
    let mut guard = RemoveOnDrop(Some(dir.clone()));
    let cluster = Cluster::start(&dir, &plan.database, run_as).await?;
    guard.0 = None;
    Ok(Box::new(Instance::Cluster {
        cluster: Some(cluster),
        dir,
    }))
}

impl ScratchInstance for Instance {
    fn staging(&self) -> Box<dyn Staging> {
        // Private working files go into the instance's own directory.
        let (connect, fresh, scratch_dir) = match self {
            Self::Cluster { cluster, dir } => (
                cluster
                    .as_ref()
                    .map(|c| c.connect.clone())
                    .unwrap_or_else(|| Connect::new("postgres:///", None).expect("a valid URL")),
                true,
                dir.clone(),
            ),
            Self::Server { connect, .. } => (connect.clone(), false, std::env::temp_dir()),
        };
        Box::new(PgStaging {
            label: self.describe(),
            connect,
            target: None,
            create_on_load: true,
            fresh_cluster: fresh,
            scratch_dir,
            skip_access: false,
            checked: std::collections::BTreeMap::new(),
        })
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Self::Cluster { cluster, .. } => cluster.as_ref().map(|c| c.child.id()),
            Self::Server { .. } => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Cluster { cluster, .. } => format!(
                "ephemeral PostgreSQL {} cluster (Unix socket only)",
                cluster.as_ref().map_or("", |c| c.version.as_str())
            ),
            Self::Server { server, connect } => format!(
                "database {} on scratch server {}",
                connect.database(),
                server.describe()
            ),
        }
    }

    fn fresh_cluster(&self) -> bool {
        matches!(self, Self::Cluster { .. })
    }

    fn teardown(mut self: Box<Self>) -> BoxFuture<'static, Result<(), EngineError>> {
        Box::pin(async move {
            match &mut *self {
                Self::Cluster { cluster, dir } => {
                    let cluster = cluster.take();
                    let dir = dir.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Some(mut c) = cluster {
                            stop_child(&mut c.child, nix::sys::signal::Signal::SIGQUIT);
                        }
                        remove_dir(&dir)
                    })
                    .await
                    .map_err(|e| create_err(e.to_string()))?
                }
                Self::Server { server, connect } => {
                    drop_scratch_database(server, &connect.database()).await
                }
            }
        })
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Self::Cluster { cluster, dir } = self
            && let Some(mut c) = cluster.take()
        {
            stop_child(&mut c.child, nix::sys::signal::Signal::SIGQUIT);
            let _ = remove_dir(dir);
        }
        // A database on a scratch server needs the runtime to drop: the next sweep does it.
    }
}

/// Drops a drill database on a configured scratch server.
pub(super) async fn drop_scratch_database(
    server: &ScratchServer,
    name: &str,
) -> Result<(), EngineError> {
    server.check_drill_name(name)?;
    let c = Connect::new(&server.url, server.password.clone()).map_err(|e| server.err(e))?;
    super::restore::drop_database(&c, name)
        .await
        .map_err(|e| server.err(e))
}
