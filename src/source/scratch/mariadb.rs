//! An ephemeral MariaDB instance: `mariadb-install-db` into a private directory, `mariadbd`
//! with `--skip-networking` on a private socket, and a login with a random password created by
//! an init file that is deleted as soon as the server is up.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use super::{RunAs, ScratchError, write_private_file};
use crate::source::mysql::Connect;
use crate::source::process::clean_command;

const ENGINE: &str = "MariaDB";
const LOGIN: &str = "custodian";

pub(super) struct Instance {
    pub child: Child,
    pub connect: Connect,
}

/// As for PostgreSQL clusters: an instance dropped before hand-over stops its server.
impl Drop for Instance {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            super::stop_child(&mut self.child, nix::sys::signal::Signal::SIGKILL);
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

fn create_err(message: String) -> ScratchError {
    ScratchError::Create {
        engine: ENGINE,
        message,
    }
}

impl Instance {
    pub async fn start(
        dir: &Path,
        database: &str,
        run_as: Option<RunAs>,
    ) -> Result<Self, ScratchError> {
        let missing = || ScratchError::Missing {
            what: "the MariaDB server (mariadb-install-db, mariadbd)",
            package: "mariadb-server",
        };
        let install_db = find(&["mariadb-install-db", "mysql_install_db"]).ok_or_else(missing)?;
        let server_bin = find(&["mariadbd", "mysqld"]).ok_or_else(missing)?;
        let data = dir.join("data");
        let tmp = dir.join("tmp");
        super::make_private_dir(&tmp, run_as).map_err(|e| create_err(e.to_string()))?;
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
        let init = dir.join("init.sql");
        write_private_file(
            &init,
            &format!(
                "CREATE USER '{LOGIN}'@'localhost' IDENTIFIED BY '{}';\n\
                 GRANT ALL PRIVILEGES ON *.* TO '{LOGIN}'@'localhost' WITH GRANT OPTION;\n",
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
        let mut url = url::Url::parse(&format!("mysql://{LOGIN}@localhost/"))
            .map_err(|e| create_err(e.to_string()))?;
        url.set_path(database);
        url.query_pairs_mut()
            .append_pair("socket", &socket.to_string_lossy())
            .append_pair("ssl-mode", "disabled");
        let connect = Connect::new(url.as_str(), Some(password)).map_err(create_err)?;
        let mut instance = Self { child, connect };
        let admin = instance.connect.with_database("mysql");
        let ready = super::wait_ready(&mut instance.child, "mariadbd", &log, || async {
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
