//! Connection settings for MariaDB/MySQL servers: one `mysql://` or `mariadb://` URL (never with
//! a password in it) plus a password by reference, used by sqlx connections and by the client
//! tools, which get them through a `--defaults-extra-file` in a private 0700 directory.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};

use crate::config::ServerSource;
use crate::engine::EngineError;
use crate::secret::Secret;

/// Connection settings resolved from the configuration.
#[derive(Clone)]
pub struct Connect {
    options: MySqlConnectOptions,
    password: Option<Secret>,
    ssl_ca: Option<String>,
}

impl Connect {
    /// Parses a `mysql://` or `mariadb://` URL and adds the password, if any.
    ///
    /// # Errors
    /// When the URL cannot be parsed.
    pub fn new(url: &str, password: Option<Secret>) -> Result<Self, String> {
        let url = url
            .strip_prefix("mariadb://")
            .map_or_else(|| url.to_string(), |rest| format!("mysql://{rest}"));
        let mut options = MySqlConnectOptions::from_str(&url)
            .map_err(|e| format!("invalid MySQL URL: {e}"))?
            .charset("utf8mb4")
            .disable_statement_logging();
        if let Some(password) = &password {
            options = options.password(password.expose());
        }
        let ssl_ca = url::Url::parse(&url).ok().and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "ssl-ca" || k == "sslca")
                .map(|(_, v)| v.into_owned())
        });
        Ok(Self {
            options,
            password,
            ssl_ca,
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
        self.options.get_database().unwrap_or_default().to_string()
    }

    /// `user@host:port/db` — never a password.
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

    /// `user@host:port` (or the socket) — the server, for messages and records.
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
    pub async fn connect(&self) -> Result<MySqlConnection, sqlx::Error> {
        tokio::time::timeout(Duration::from_secs(30), self.options.connect())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    /// A client tool command whose first argument is a private `--defaults-extra-file`
    /// holding the connection settings and the password.
    ///
    /// # Errors
    /// When the option file cannot be written.
    pub fn command(&self, tool: &str, private_dir: &Path) -> io::Result<Command> {
        let path = private_dir.join("client.cnf");
        if !path.exists() {
            let mut text = String::from("[client]\n");
            text.push_str(&format!(
                "user={}\n",
                quote_option(self.options.get_username())
            ));
            if let Some(password) = &self.password {
                text.push_str(&format!("password={}\n", quote_option(password.expose())));
            }
            match self.options.get_socket() {
                Some(socket) => {
                    text.push_str(&format!(
                        "socket={}\n",
                        quote_option(&socket.to_string_lossy())
                    ));
                }
                None => {
                    text.push_str(&format!("host={}\n", quote_option(self.options.get_host())));
                    text.push_str(&format!("port={}\n", self.options.get_port()));
                    text.push_str("protocol=TCP\n");
                }
            }
            match self.options.get_ssl_mode() {
                MySqlSslMode::Disabled => text.push_str("skip-ssl\n"),
                MySqlSslMode::Preferred => {}
                MySqlSslMode::Required => text.push_str("ssl\n"),
                MySqlSslMode::VerifyCa | MySqlSslMode::VerifyIdentity => {
                    text.push_str("ssl\nssl-verify-server-cert\n");
                }
            }
            if let Some(ca) = &self.ssl_ca {
                text.push_str(&format!("ssl-ca={}\n", quote_option(ca)));
            }
            crate::secret::write_new_secret_file(&path, &Secret::new(text))?;
        }
        let mut cmd = crate::engine::process::clean_command(tool);
        cmd.arg(format!("--defaults-extra-file={}", path.display()));
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

/// A value for a MySQL option file: double-quoted, with `\` and `"` escaped.
fn quote_option(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The first of `names` found in `PATH` (MariaDB installs `mariadb-dump`, MySQL `mysqldump`).
#[must_use]
pub fn tool(names: &[&'static str]) -> &'static str {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    names
        .iter()
        .copied()
        .find(|name| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
        .unwrap_or(names[0])
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
