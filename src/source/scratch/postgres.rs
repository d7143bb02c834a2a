//! An ephemeral PostgreSQL cluster: `initdb` into a private directory, `postgres` on a Unix
//! socket in that directory and no TCP listener at all, a superuser with a random password,
//! and durability switched off (a scratch cluster never needs to survive a crash).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use rand::RngExt;

use super::{RunAs, ScratchError, write_private_file};
use crate::source::postgres::Connect;
use crate::source::process::clean_command;

const ENGINE: &str = "PostgreSQL";
const SUPERUSER: &str = "custodian";

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
            super::stop_child(&mut self.child, nix::sys::signal::Signal::SIGQUIT);
        }
    }
}

/// The newest server installation: Debian keeps one per major version under
/// `/usr/lib/postgresql/N/bin`; elsewhere `initdb` is looked up in `PATH`. The newest can
/// restore dumps of every older server.
fn bin_dir() -> Result<(PathBuf, String), ScratchError> {
    let missing = ScratchError::Missing {
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

fn create_err(message: String) -> ScratchError {
    ScratchError::Create {
        engine: ENGINE,
        message,
    }
}

impl Cluster {
    pub async fn start(
        dir: &Path,
        database: &str,
        run_as: Option<RunAs>,
    ) -> Result<Self, ScratchError> {
        let (bin, version) = bin_dir()?;
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
                SUPERUSER,
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
        let mut url = url::Url::parse(&format!("postgres://{SUPERUSER}@localhost:{port}/"))
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
        super::wait_ready(&mut cluster.child, "postgres", &log, || async {
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
