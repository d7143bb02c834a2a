//! Connection settings for PostgreSQL servers: one URL (never with a password in it) plus a
//! password by reference, used both by sqlx connections and by the client tools.
//!
//! Credentials: the password is given to the tools through a `PGPASSFILE` in a private 0700
//! directory (never on a command line, never in the environment); every other connection
//! parameter travels in `PG*` variables of a cleared environment.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};

use crate::config::ServerSource;
use crate::engine::EngineError;
use crate::secret::Secret;

/// Connection settings resolved from the configuration (URL + password reference).
#[derive(Clone)]
pub struct Connect {
    options: PgConnectOptions,
    password: Option<Secret>,
    /// `sslrootcert`, `sslcert`, `sslkey` from the URL, for the command-line tools.
    tls_files: Vec<(&'static str, String)>,
}

impl Connect {
    /// Parses a URL (which never holds a password) and adds the password, if any.
    ///
    /// # Errors
    /// When the URL cannot be parsed.
    pub fn new(url: &str, password: Option<Secret>) -> Result<Self, String> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| format!("invalid PostgreSQL URL: {e}"))?
            .application_name("custodian")
            .disable_statement_logging();
        if let Some(password) = &password {
            options = options.password(password.expose());
        }
        if needs_verified_tls(url) {
            options = options.ssl_mode(PgSslMode::VerifyFull);
        }
        let mut tls_files = Vec::new();
        if let Ok(parsed) = url::Url::parse(url) {
            for (key, value) in parsed.query_pairs() {
                let var = match &*key {
                    "sslrootcert" | "ssl-root-cert" | "ssl-ca" => "PGSSLROOTCERT",
                    "sslcert" | "ssl-cert" => "PGSSLCERT",
                    "sslkey" | "ssl-key" => "PGSSLKEY",
                    _ => continue,
                };
                tls_files.push((var, value.into_owned()));
            }
        }
        Ok(Self {
            options,
            password,
            tls_files,
        })
    }

    /// The same server, another database.
    #[must_use]
    pub fn with_database(&self, database: &str) -> Self {
        let mut other = self.clone();
        other.options = other.options.database(database);
        other
    }

    #[must_use]
    pub fn database(&self) -> String {
        self.options
            .get_database()
            .unwrap_or(self.options.get_username())
            .to_string()
    }

    /// `user@host:port/db` — for messages; never a password.
    #[must_use]
    pub fn describe(&self) -> String {
        let host = self.options.get_socket().map_or_else(
            || self.options.get_host().to_string(),
            |s| s.display().to_string(),
        );
        format!(
            "{}@{}:{}/{}",
            self.options.get_username(),
            host,
            self.options.get_port(),
            self.database()
        )
    }

    /// `user@host:port` — the server, for messages and records.
    #[must_use]
    pub fn server(&self) -> String {
        let host = self.options.get_socket().map_or_else(
            || self.options.get_host().to_string(),
            |s| s.display().to_string(),
        );
        format!(
            "{}@{}:{}",
            self.options.get_username(),
            host,
            self.options.get_port()
        )
    }

    /// Opens a connection (with a connect timeout).
    ///
    /// # Errors
    /// When the server cannot be reached or refuses the login.
    pub async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        tokio::time::timeout(Duration::from_secs(30), self.options.connect())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    /// A command for a PostgreSQL client tool with a clean environment carrying the
    /// connection settings, and the password in a `PGPASSFILE` under `private_dir`.
    ///
    /// # Errors
    /// When the password file cannot be written.
    pub fn command(&self, program: &str, private_dir: &Path) -> std::io::Result<Command> {
        let mut cmd = crate::engine::process::clean_command(program);
        let host = self.options.get_socket().map_or_else(
            || self.options.get_host().to_string(),
            |s| s.display().to_string(),
        );
        cmd.env("PGHOST", host)
            .env("PGPORT", self.options.get_port().to_string())
            .env("PGUSER", self.options.get_username())
            .env("PGDATABASE", self.database())
            .env("PGAPPNAME", "custodian")
            .env("PGCONNECT_TIMEOUT", "30")
            .env("PGSSLMODE", ssl_mode(self.options.get_ssl_mode()));
        for (var, value) in &self.tls_files {
            cmd.env(var, value);
        }
        match &self.password {
            Some(password) => {
                let path = private_dir.join("pgpass");
                if !path.exists() {
                    write_pgpass(&path, password)?;
                }
                cmd.env("PGPASSFILE", path);
            }
            None => {
                cmd.env("PGPASSFILE", "/dev/null");
            }
        }
        Ok(cmd)
    }

    pub(crate) fn secret(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// The secrets to redact from the tools' output.
    #[must_use]
    pub fn secret_list(&self) -> Vec<Secret> {
        self.password.iter().cloned().collect()
    }
}

/// A URL that names no `sslmode` and a host that is not this machine gets `verify-full`:
/// libpq's default (`prefer`) would send the database password in clear text to any server
/// that declines TLS, and accept any certificate from one that offers it. Loopback and unix
/// sockets keep libpq's default; an explicit `sslmode` is always kept.
fn needs_verified_tls(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    ssl_mode_of(&parsed).is_none() && !reaches_this_machine(&parsed)
}

/// The `sslmode` a URL names, if any.
pub(super) fn ssl_mode_of(parsed: &url::Url) -> Option<String> {
    parsed
        .query_pairs()
        .find(|(k, _)| k == "sslmode" || k == "ssl-mode")
        .map(|(_, v)| v.into_owned())
}

/// Whether a URL's server is this machine: a unix socket, `localhost` or a loopback address
/// (also when named by a `host=` parameter).
pub(super) fn reaches_this_machine(parsed: &url::Url) -> bool {
    let host = server_host(parsed);
    host.is_empty()
        || host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The server a URL names: its `host=` parameter, else its host, without IPv6 brackets.
pub(super) fn server_host(parsed: &url::Url) -> String {
    let host = parsed
        .query_pairs()
        .find(|(k, _)| k == "host")
        .map(|(_, v)| v.into_owned())
        .or_else(|| parsed.host_str().map(str::to_string))
        .unwrap_or_default();
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

fn ssl_mode(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

/// A `.pgpass` line matching any server: `*:*:*:*:password`, with `:` and `\` escaped.
fn write_pgpass(path: &Path, password: &Secret) -> std::io::Result<()> {
    let escaped = password.expose().replace('\\', "\\\\").replace(':', "\\:");
    crate::secret::write_new_secret_file(path, &Secret::new(format!("*:*:*:*:{escaped}")))
}

/// Resolves a configured source into connection settings.
///
/// # Errors
/// When the password cannot be read or the URL is invalid.
pub fn connect_settings(source: &str, cfg: &ServerSource) -> Result<Connect, EngineError> {
    let password = cfg
        .password
        .as_ref()
        .map(crate::secret::SecretRef::resolve)
        .transpose()
        .map_err(|e| EngineError::Unavailable {
            source_name: source.to_string(),
            path: PathBuf::from(&cfg.url),
            message: format!("reading the password: {e}"),
        })?;
    Connect::new(&cfg.url, password).map_err(|message| EngineError::Unavailable {
        source_name: source.to_string(),
        path: PathBuf::from(&cfg.url),
        message,
    })
}

pub(super) fn unavailable(
    source: &str,
    connect: &Connect,
    e: &dyn std::fmt::Display,
) -> EngineError {
    EngineError::Unavailable {
        source_name: source.to_string(),
        path: PathBuf::from(connect.describe()),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::needs_verified_tls;

    #[test]
    fn remote_servers_default_to_verified_tls() {
        assert!(needs_verified_tls(
            "postgres://custodian@db.example.org/crm"
        ));
        assert!(needs_verified_tls("postgres://custodian@10.0.0.5:5432/crm"));
        assert!(!needs_verified_tls(
            "postgres://custodian@127.0.0.1:5432/crm"
        ));
        assert!(!needs_verified_tls("postgres://custodian@localhost/crm"));
        assert!(!needs_verified_tls("postgres://custodian@[::1]:5432/crm"));
        assert!(!needs_verified_tls(
            "postgres://custodian@/crm?host=/run/postgresql"
        ));
        assert!(!needs_verified_tls(
            "postgres://custodian@db.example.org/crm?sslmode=require"
        ));
    }
}
