//! Throwaway database servers for integration tests, started by the tests themselves: Debian's
//! PostgreSQL (`initdb` + `pg_ctl`) and MariaDB (`mariadb-install-db` + `mariadbd`), listening on
//! 127.0.0.1 and a private socket. When the tests run as root (as in CI) the servers run as the
//! `postgres` / `mysql` users. A missing server binary is a failure, never a skip:
//! `scripts/test-all` installs them.

#![allow(dead_code)]

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::assert_success;

/// The password of the `custodian` login on the test servers.
pub const PASSWORD: &str = "pg-and-maria-test-password-7f3a";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A directory the server's user can traverse (not nested in a 0700 temp dir).
fn server_dir(prefix: &str, owner: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .permissions(fs::Permissions::from_mode(0o755))
        .tempdir_in("/tmp")
        .unwrap();
    if is_root() {
        let out = Command::new("chown")
            .args(["-R", &format!("{owner}:{owner}")])
            .arg(dir.path())
            .output()
            .unwrap();
        assert_success(&out, "chown");
    }
    dir
}

/// Runs a server binary as its service user when we are root.
fn as_user(user: &str, program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", user, "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn pg_bin(tool: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server is not installed (apt-get install postgresql); scripts/test-all installs it")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("bin").join(tool).exists())
        .collect();
    versions.sort();
    versions
        .last()
        .unwrap_or_else(|| panic!("{tool} not found under /usr/lib/postgresql"))
        .join("bin")
        .join(tool)
}

/// A PostgreSQL cluster with a `custodian` login (password [`PASSWORD`], CREATEDB, not superuser).
pub struct PgServer {
    dir: tempfile::TempDir,
    pub port: u16,
    opts: String,
}

impl PgServer {
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// A server started with extra options after the defaults (later `-c` settings win).
    pub fn start_with(extra: &str) -> Self {
        let dir = server_dir("custodian-pg-", "postgres");
        let data = dir.path().join("data");
        let out = as_user("postgres", &pg_bin("initdb"))
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ])
            .output()
            .unwrap();
        assert_success(&out, "initdb");
        let port = free_port();
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={} \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50 {extra}",
            dir.path().display()
        );
        let out = as_user("postgres", &pg_bin("pg_ctl"))
            .args(["-D"])
            .arg(&data)
            .args(["-w", "-t", "60", "-l"])
            .arg(dir.path().join("server.log"))
            .args(["-o", &opts, "start"])
            .output()
            .unwrap();
        assert_success(&out, "pg_ctl start");
        let server = Self { dir, port, opts };
        server.psql(
            "postgres",
            &format!("CREATE ROLE custodian LOGIN CREATEDB PASSWORD '{PASSWORD}';"),
        );
        server
    }

    /// A streaming standby of this server (`pg_basebackup -R`), started on a port of its own.
    pub fn start_standby(&self) -> Self {
        let dir = server_dir("custodian-pg-standby-", "postgres");
        let data = dir.path().join("data");
        let out = as_user("postgres", &pg_bin("pg_basebackup"))
            .arg("-h")
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-D",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert_success(&out, "pg_basebackup -R (standby)");
        let port = free_port();
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={} \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50",
            dir.path().display()
        );
        let out = as_user("postgres", &pg_bin("pg_ctl"))
            .args(["-D"])
            .arg(&data)
            .args(["-w", "-t", "60", "-l"])
            .arg(dir.path().join("server.log"))
            .args(["-o", &opts, "start"])
            .output()
            .unwrap();
        assert_success(&out, "pg_ctl start (standby)");
        Self { dir, port, opts }
    }

    /// Stops the server at once (as a crash would), keeping its data.
    pub fn stop(&self) {
        let out = as_user("postgres", &pg_bin("pg_ctl"))
            .args(["-D"])
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output()
            .unwrap();
        assert_success(&out, "pg_ctl stop");
    }

    /// Starts a stopped server again on the same port and data.
    pub fn start_again(&self) {
        let out = as_user("postgres", &pg_bin("pg_ctl"))
            .args(["-D"])
            .arg(self.dir.path().join("data"))
            .args(["-w", "-t", "60", "-l"])
            .arg(self.dir.path().join("server.log"))
            .args(["-o", &self.opts, "start"])
            .output()
            .unwrap();
        assert_success(&out, "pg_ctl start (again)");
    }

    /// Runs SQL as the superuser through the private socket; returns unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self
            .client("psql", db)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env_remove("PGPASSWORD")
            .output()
            .unwrap();
        assert_success(&out, &format!("psql {sql}"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs a SQL file as the superuser (stopping at the first error).
    pub fn psql_file(&self, db: &str, file: &Path) -> String {
        let out = self
            .client("psql", db)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(file)
            .env_remove("PGPASSWORD")
            .output()
            .unwrap();
        assert_success(&out, &format!("psql -f {}", file.display()));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Everything `pg_dump` restores of a database, owners and privileges included, plus the
    /// database-level statements of `pg_dump --create` with the database's name replaced by
    /// `DB` — so a database and its restore under another name compare equal line by line.
    pub fn dump_everything(&self, db: &str) -> String {
        let run = |extra: &[&str]| self.pg_dump_lines(db, extra);
        let quoted = format!("\"{db}\"");
        let mut lines: Vec<String> = run(&["--create", "--schema-only"])
            .into_iter()
            .filter(|l| l.contains("DATABASE"))
            .map(|l| {
                l.replace(&quoted, "DB")
                    .replace(&format!(" {db} "), " DB ")
                    .replace(&format!(" {db};"), " DB;")
            })
            .collect();
        lines.extend(sorted_rows(run(&[])));
        lines.join("\n")
    }

    /// A new database owned by `custodian`.
    pub fn create_db(&self, name: &str) {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {name} OWNER custodian;"),
        );
    }

    /// The URL Custodian uses (password by reference, never in the URL).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://custodian@127.0.0.1:{}/{db}", self.port)
    }

    /// `pg_dump` of a database as plain SQL (schema and data), as the superuser, without the
    /// random `\restrict` keys newer pg_dump versions write, each table's rows sorted.
    pub fn dump_sql(&self, db: &str) -> String {
        sorted_rows(self.pg_dump_lines(db, &["--no-owner"])).join("\n")
    }

    /// A client tool (`psql`, `pg_dump`…) connected to `db` as the superuser through the
    /// private socket.
    pub fn client(&self, tool: &str, db: &str) -> Command {
        let mut cmd = Command::new(pg_bin(tool));
        cmd.arg("-h").arg(self.dir.path()).args([
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
        ]);
        cmd
    }

    /// Plain `pg_dump` of `db` as lines, without the random `\restrict` keys newer pg_dump
    /// versions write.
    fn pg_dump_lines(&self, db: &str, extra: &[&str]) -> Vec<String> {
        let out = self.client("pg_dump", db).args(extra).output().unwrap();
        assert_success(&out, "pg_dump");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .map(str::to_string)
            .collect()
    }

    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn bin(tool: &str) -> PathBuf {
        pg_bin(tool)
    }

    /// Restores a Custodian backup into `db` (which must exist) the way a restic-only user
    /// would: `contrib/restic-restore-postgres`, with nothing but restic, pg_restore and psql.
    pub fn restore_with_restic_only(&self, repo: &Path, key: &Path, source: &str, db: &str) {
        let out = contrib_script("restic-restore-postgres", &pg_bin("psql"))
            .arg("-r")
            .arg(repo)
            .arg("--password-file")
            .arg(key)
            .args(["--source", source, "--jobs", "2", "--dbname"])
            .arg(format!(
                "host={} port={} user=postgres dbname={db}",
                self.dir.path().display(),
                self.port
            ))
            .output()
            .unwrap();
        assert_success(&out, "contrib/restic-restore-postgres");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("row counts match the manifest"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // A failing test shows what the server said (a crash, a full disk, a killed backend).
        if std::thread::panicking() {
            let log = fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- last lines of the test PostgreSQL server's log (port {}):\n{}",
                self.port,
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
        let _ = as_user("postgres", &pg_bin("pg_ctl"))
            .args(["-D"])
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

pub fn maria_bin(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{name} is not installed (apt-get install mariadb-server mariadb-client); scripts/test-all installs it"
    );
}

/// One of the `contrib/` restic-only restore scripts, run the way its README says: with restic
/// and the database's client tools (the directory of `client`) on the PATH, and no restic
/// settings from the environment.
fn contrib_script(script: &str, client: &Path) -> Command {
    let path = format!(
        "{}:{}:{}",
        client.parent().unwrap().display(),
        super::restic_bin().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("python3");
    cmd.arg(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("contrib")
            .join(script),
    )
    .env("PATH", path)
    .env_remove("RESTIC_PASSWORD")
    .env_remove("RESTIC_REPOSITORY");
    cmd
}

/// A MariaDB server with a `custodian` login (password [`PASSWORD`]).
pub struct MariaServer {
    dir: tempfile::TempDir,
    pub port: u16,
    child: std::process::Child,
}

impl MariaServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server started with extra `mariadbd` options (`--log-bin=…`, say).
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = server_dir("custodian-maria-", "mysql");
        let data = dir.path().join("data");
        // A private tmpdir: concurrent bootstraps collide on temporary table names in /tmp.
        let tmp = dir.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        if is_root() {
            assert_success(
                &Command::new("chown")
                    .arg("mysql:mysql")
                    .arg(&tmp)
                    .output()
                    .unwrap(),
                "chown tmp",
            );
        }
        let mut install = Command::new(maria_bin("mariadb-install-db"));
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        if is_root() {
            install.arg("--user=mysql");
        }
        let out = install.output().unwrap();
        assert_success(&out, "mariadb-install-db");
        let port = free_port();
        let socket = dir.path().join("mysqld.sock");
        let mut server = Command::new(maria_bin("mariadbd"));
        server
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--port={port}"))
            .arg(format!(
                "--pid-file={}",
                dir.path().join("mysqld.pid").display()
            ))
            .arg(format!(
                "--log-error={}",
                dir.path().join("error.log").display()
            ))
            .args([
                "--bind-address=127.0.0.1",
                "--innodb-buffer-pool-size=64M",
                "--innodb-flush-log-at-trx-commit=0",
                "--skip-name-resolve",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if is_root() {
            server.arg("--user=mysql");
        }
        let child = server.spawn().unwrap();
        let maria = Self { dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !maria.try_sql("SELECT 1") {
            assert!(
                Instant::now() < deadline,
                "mariadbd did not start: {}",
                fs::read_to_string(maria.dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        maria.sql(&format!(
            "CREATE USER 'custodian'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';
             GRANT ALL PRIVILEGES ON *.* TO 'custodian'@'127.0.0.1';"
        ));
        maria
    }

    pub fn client(&self) -> Command {
        let mut cmd = Command::new(maria_bin("mariadb"));
        cmd.arg("--no-defaults")
            .arg(format!(
                "--socket={}",
                self.dir.path().join("mysqld.sock").display()
            ))
            .args(["-u", "root", "--batch", "--skip-column-names"]);
        cmd
    }

    fn try_sql(&self, sql: &str) -> bool {
        self.client()
            .args(["-e", sql])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Runs SQL as root; returns the tab-separated output.
    pub fn sql(&self, sql: &str) -> String {
        let out = self.client().args(["-e", sql]).output().unwrap();
        assert_success(&out, &format!("mariadb {sql}"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Starts SQL as root in the background (stdout piped).
    pub fn sql_async(&self, sql: &str) -> std::process::Child {
        self.client()
            .args(["-e", sql])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub fn create_db(&self, name: &str) {
        self.sql(&format!("CREATE DATABASE {name} CHARACTER SET utf8mb4;"));
    }

    /// Runs a SQL file (with `DELIMITER` lines) in a database, as root.
    pub fn sql_file(&self, db: &str, file: &Path) {
        let out = self
            .client()
            .arg(format!("--database={db}"))
            .stdin(Stdio::from(fs::File::open(file).unwrap()))
            .output()
            .unwrap();
        assert_success(&out, &format!("mariadb < {}", file.display()));
    }

    /// Restores `source`'s latest backup into the new database `db` (created like the
    /// database `like`) with nothing but restic, the mariadb client and
    /// `contrib/restic-restore-mariadb` (the README's by-hand path).
    pub fn restore_with_restic_only(
        &self,
        (repo, key): (&Path, &Path),
        source: &str,
        like: &str,
        db: &str,
    ) {
        let charset = self.sql(&format!(
            "SELECT CONCAT(DEFAULT_CHARACTER_SET_NAME, ' COLLATE ', DEFAULT_COLLATION_NAME) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{like}'"
        ));
        self.sql(&format!("CREATE DATABASE {db} CHARACTER SET {charset}"));
        let out = contrib_script("restic-restore-mariadb", &maria_bin("mariadb"))
            .arg("-r")
            .arg(repo)
            .arg("--password-file")
            .arg(key)
            .args(["--source", source, "--jobs", "2", "--database", db, "--"])
            .arg("--no-defaults")
            .arg(format!(
                "--socket={}",
                self.dir.path().join("mysqld.sock").display()
            ))
            .args(["-u", "root"])
            .output()
            .unwrap();
        assert_success(&out, "contrib/restic-restore-mariadb");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("row counts match the manifest"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// Everything a restore must reproduce: the database's default character set and collation,
    /// and a dump with routines, triggers and events (without volatile lines).
    pub fn dump_everything(&self, db: &str) -> String {
        let create = self.sql(&format!(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{db}'"
        ));
        let out = Command::new(maria_bin("mariadb-dump"))
            .arg("--no-defaults")
            .arg(format!(
                "--socket={}",
                self.dir.path().join("mysqld.sock").display()
            ))
            .args([
                "-u",
                "root",
                "--skip-dump-date",
                "--skip-comments",
                "--routines",
                "--triggers",
                "--events",
                "--hex-blob",
                db,
            ])
            .output()
            .unwrap();
        assert_success(&out, "mariadb-dump");
        format!("{create}\n{}", String::from_utf8_lossy(&out.stdout))
    }

    pub fn url(&self, db: &str) -> String {
        format!("mysql://custodian@127.0.0.1:{}/{db}", self.port)
    }

    /// A dump of a database (schema and data) without volatile header lines, as root.
    pub fn dump_sql(&self, db: &str) -> String {
        let out = Command::new(maria_bin("mariadb-dump"))
            .arg("--no-defaults")
            .arg(format!(
                "--socket={}",
                self.dir.path().join("mysqld.sock").display()
            ))
            .args([
                "-u",
                "root",
                "--skip-dump-date",
                "--skip-comments",
                "--routines",
                "--triggers",
                "--hex-blob",
                db,
            ])
            .output()
            .unwrap();
        assert_success(&out, "mariadb-dump");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for MariaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the test password into a 0600 file and returns its path.
pub fn password_file(dir: &Path) -> PathBuf {
    let path = dir.join("db.pass");
    fs::write(&path, format!("{PASSWORD}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Pids of running processes whose command line contains all of `needles`.
pub fn pids_with(needles: &[&str]) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            needles.iter().all(|n| text.contains(n)).then_some(pid)
        })
        .collect()
}

/// The environment of a process as text (readable by its owner or root).
pub fn environ(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/environ"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', "\n"))
        .unwrap_or_default()
}

/// The command line of a process.
pub fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Runs custodian with the given output, for helpers outside `Workspace`.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

/// A plain pg_dump with the rows of each `COPY` block sorted: a table's rows have no order
/// (Custodian's streams load them in key order, pg_dump reads them in physical order), so two
/// databases with the same rows give the same text.
fn sorted_rows(lines: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(lines.len());
    let mut block: Option<Vec<String>> = None;
    for line in lines {
        match &mut block {
            Some(rows) if line == "\\." => {
                rows.sort();
                out.append(rows);
                out.push(line);
                block = None;
            }
            Some(rows) => rows.push(line),
            None => {
                let starts = line.starts_with("COPY ") && line.ends_with(" FROM stdin;");
                out.push(line);
                if starts {
                    block = Some(Vec::new());
                }
            }
        }
    }
    out
}

/// Asserts two database dumps are identical, showing the first difference (not both dumps).
pub fn assert_same_dump(left: &str, right: &str, what: &str) {
    if left == right {
        return;
    }
    let (l, r): (Vec<&str>, Vec<&str>) = (left.lines().collect(), right.lines().collect());
    let at = l
        .iter()
        .zip(&r)
        .position(|(a, b)| a != b)
        .unwrap_or(l.len().min(r.len()));
    panic!(
        "{what}: dumps differ at line {} ({} vs {} lines):\n  left:  {}\n  right: {}",
        at + 1,
        l.len(),
        r.len(),
        l.get(at)
            .copied()
            .unwrap_or("<end>")
            .chars()
            .take(300)
            .collect::<String>(),
        r.get(at)
            .copied()
            .unwrap_or("<end>")
            .chars()
            .take(300)
            .collect::<String>()
    );
}
