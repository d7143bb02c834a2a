//! Scratch instances for MariaDB/MySQL drills: an ephemeral server — `mariadb-install-db` into
//! a private directory, `mariadbd` with `--skip-networking` on a private socket, and a login
//! with a random name and password created by an init file that is deleted as soon as the server
//! is up — or a uniquely named database on a configured scratch server.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use futures_util::future::BoxFuture;
use rand::RngExt;

use super::Connect;
use super::restore::MyStaging;
use crate::engine::process::clean_command;
use crate::engine::scratch::{
    RemoveOnDrop, RunAs, ScratchPlan, ScratchServer, make_private_dir, remove_dir, stop_child,
    wait_ready, write_private_file,
};
use crate::engine::{EngineError, ScratchInstance, Staging};

const ENGINE: &str = "MariaDB";

pub(super) struct Server {
    pub child: Child,
    pub connect: Connect,
}

/// As for PostgreSQL clusters: a server dropped before hand-over stops.
impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            stop_child(&mut self.child, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from));
    names
        .iter()
        .find_map(|name| dirs.iter().map(|d| d.join(name)).find(|p| p.exists()))
}

fn create_err(message: String) -> EngineError {
    EngineError::ScratchCreate {
        engine: ENGINE,
        message,
    }
}

impl Server {
    pub async fn start(
        dir: &Path,
        database: &str,
        run_as: Option<RunAs>,
    ) -> Result<Self, EngineError> {
        let missing = || EngineError::ScratchMissing {
            what: "the MariaDB server (mariadb-install-db, mariadbd)",
            package: "mariadb-server",
        };
        let install_db = find(&["mariadb-install-db", "mysql_install_db"]).ok_or_else(missing)?;
        let server_bin = find(&["mariadbd", "mysqld"]).ok_or_else(missing)?;
        let data = dir.join("data");
        let tmp = dir.join("tmp");
        make_private_dir(&tmp, run_as).map_err(|e| create_err(e.to_string()))?;
        let user_arg = run_as.and_then(|u| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(u.uid))
                .ok()
                .flatten()
                .map(|u| format!("--user={}", u.name))
        });

        let mut install = clean_command(&install_db.to_string_lossy());
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(["--auth-root-authentication-method=socket", "--skip-test-db"])
            .args(user_arg.iter())
            .current_dir(dir);
        let out = tokio::task::spawn_blocking(move || install.output())
            .await
            .map_err(|e| create_err(e.to_string()))?
            .map_err(|e| create_err(format!("running mariadb-install-db: {e}")))?;
        if !out.status.success() {
            return Err(create_err(format!(
                "mariadb-install-db failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }

        let password = crate::secret::generate_password();
        let login: String = {
            let mut rng = rand::rng();
            let tail: String = (0..12)
                .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                .collect();
            format!("cst_scratch_{tail}")
        };
        let init = dir.join("init.sql");
        write_private_file(
            &init,
            &format!(
                "CREATE USER '{login}'@'localhost' IDENTIFIED BY '{}';\n\
                 GRANT ALL PRIVILEGES ON *.* TO '{login}'@'localhost' WITH GRANT OPTION;\n",
                password.expose()
            ),
            run_as,
        )
        .map_err(|e| create_err(format!("writing the init file: {e}")))?;
        let socket = dir.join("mysqld.sock");
        let log = dir.join("error.log");
        let mut server = clean_command(&server_bin.to_string_lossy());
        server
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--init-file={}", init.display()))
            .args([
                "--skip-networking",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=256M",
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-doublewrite=0",
                "--skip-name-resolve",
                // Table streams load with LOAD DATA LOCAL INFILE.
                "--local-infile=1",
            ])
            .args(user_arg.iter())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let child = server
            .spawn()
            .map_err(|e| create_err(format!("starting mariadbd: {e}")))?;
        let mut url = url::Url::parse(&format!("mysql://{login}@localhost/"))
            .map_err(|e| create_err(e.to_string()))?;
        url.set_path(database);
        url.query_pairs_mut()
            .append_pair("socket", &socket.to_string_lossy())
            .append_pair("ssl-mode", "disabled");
        let connect = Connect::new(url.as_str(), Some(password)).map_err(create_err)?;
        let mut instance = Self { child, connect };
        let admin = instance.connect.with_database("mysql");
        let ready = wait_ready(&mut instance.child, "mariadbd", &log, || async {
            match admin.connect().await {
                Ok(conn) => {
                    let _ = sqlx::Connection::close(conn).await;
                    true
                }
                Err(_) => false,
            }
        })
        .await
        .map_err(create_err);
        let _ = std::fs::remove_file(&init);
        ready?;
        Ok(instance)
    }
}

/// An ephemeral server, or a database on a configured scratch server.
pub(super) enum Instance {
    /// `None` once torn down.
    Ephemeral {
        server: Option<Server>,
        dir: PathBuf,
    },
    OnServer {
        server: ScratchServer,
        connect: Connect,
    },
}

/// Creates the planned scratch instance; the restore creates the database in it.
pub(super) async fn create(
    plan: &ScratchPlan,
    run_as: Option<RunAs>,
) -> Result<Box<dyn ScratchInstance>, EngineError> {
    if let Some(server) = plan.on_server() {
        let connect = Connect::new(&server.url, server.password.clone())
            .map_err(|e| server.err(e))?
            .with_database(&plan.database);
        let mut admin = connect
            .with_database("information_schema")
            .connect()
            .await
            .map_err(|e| server.err(e))?;
        let exists: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
        )
        .bind(&plan.database)
        .fetch_one(&mut admin)
        .await
        .map_err(|e| server.err(e))?;
        let _ = sqlx::Connection::close(admin).await;
        if exists > 0 {
            return Err(server.err(format!("scratch database {} already exists", plan.database)));
        }
        return Ok(Box::new(Instance::OnServer {
            server: server.clone(),
            connect,
        }));
    }
    let dir = plan.dir.clone().unwrap_or_default();
    make_private_dir(&dir, run_as)
        .map_err(|e| create_err(format!("creating {}: {e}", dir.display())))?;
    let mut guard = RemoveOnDrop(Some(dir.clone()));
    let server = Server::start(&dir, &plan.database, run_as).await?;
    guard.0 = None;
    Ok(Box::new(Instance::Ephemeral {
        server: Some(server),
        dir,
    }))
}

impl ScratchInstance for Instance {
    fn staging(&self) -> Box<dyn Staging> {
        let (connect, scratch_dir) = match self {
            Self::Ephemeral { server, dir } => (
                server
                    .as_ref()
                    .map(|s| s.connect.clone())
                    .unwrap_or_else(|| {
                        Connect::new("mysql://localhost/", None).expect("a valid URL")
                    }),
                dir.clone(),
            ),
            Self::OnServer { connect, .. } => (connect.clone(), std::env::temp_dir()),
        };
        Box::new(MyStaging {
            label: self.describe(),
            connect,
            target: None,
            create_on_load: true,
            scratch_dir,
            checked: std::collections::BTreeMap::new(),
        })
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Self::Ephemeral { server, .. } => server.as_ref().map(|s| s.child.id()),
            Self::OnServer { .. } => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Ephemeral { .. } => "ephemeral MariaDB instance (Unix socket only)".to_string(),
            Self::OnServer { server, connect } => format!(
                "database {} on scratch server {}",
                connect.database(),
                server.describe()
            ),
        }
    }

    fn fresh_cluster(&self) -> bool {
        matches!(self, Self::Ephemeral { .. })
    }

    fn teardown(mut self: Box<Self>) -> BoxFuture<'static, Result<(), EngineError>> {
        Box::pin(async move {
            match &mut *self {
                Self::Ephemeral { server, dir } => {
                    let server = server.take();
                    let dir = dir.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Some(mut s) = server {
                            stop_child(&mut s.child, nix::sys::signal::Signal::SIGKILL);
                        }
                        remove_dir(&dir)
                    })
                    .await
                    .map_err(|e| create_err(e.to_string()))?
                }
                Self::OnServer { server, connect } => {
                    drop_scratch_database(server, &connect.database()).await
                }
            }
        })
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Self::Ephemeral { server, dir } = self
            && let Some(mut s) = server.take()
        {
            stop_child(&mut s.child, nix::sys::signal::Signal::SIGKILL);
            let _ = remove_dir(dir);
        }
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
