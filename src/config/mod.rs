//! Configuration: a TOML file turned into a validated, immutable [`Config`].
//!
//! Loading happens in two stages (raw serde structs, then validation) and reports *every*
//! problem at once, each with file, line, key path and a sentence saying what to do. Secrets
//! appear only as references ([`SecretRef`]); relative paths are resolved against the
//! directory of the configuration file.

mod access;
mod diagnostic;
mod document;
mod erasure;
mod fields;
mod locations;
mod policy;
mod raw;
pub mod schedules;
mod sources;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use access::{Access, TwoFactor};
pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use erasure::{Erasure, ErasureRules};
pub use policy::{
    Assertion, Comparison, Drills, FRAMEWORKS, Notifications, ReportPeriod, Reports, Retention,
    Sink, SinkKind, Smtp, SmtpTls, Targets,
};

use crate::model::Engine;
use crate::secret::SecretRef;

/// Where the configuration is looked up when neither `--config` nor `CUSTODIAN_CONFIG` is set.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/custodian/custodian.toml";
/// Default state directory (catalog, cache, scratch space).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/custodian";

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// `sha256:<hex>` of the file's bytes: reports state the policy they were evaluated against.
    pub sha256: String,
    pub state_dir: PathBuf,
    /// Hostname written into snapshots.
    pub hostname: String,
    /// `check --rotate` reads every pack of every location at least once per window.
    pub check_window: Duration,
    /// Sources in file order.
    pub sources: Vec<SourceConfig>,
    /// Locations in file order.
    pub locations: Vec<LocationConfig>,
    pub retention: Retention,
    pub drills: Drills,
    pub reports: Reports,
    pub notifications: Notifications,
    pub access: Access,
    pub erasure: Erasure,
    pub daemon: Daemon,
    /// Warnings found while loading (errors prevent loading).
    pub warnings: Vec<Diagnostic>,
}

/// Where the daemon listens when `[custodian] control-socket` is not set.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/custodian/control.sock";

/// What the daemon runs and where it listens.
#[derive(Clone, Debug)]
pub struct Daemon {
    /// Jobs from the schedule files, in file and entry order.
    pub schedules: Vec<schedules::ScheduledJob>,
    pub control_socket: PathBuf,
    /// Prometheus endpoint (loopback only).
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub max_concurrent_jobs: u32,
}

/// A database to back up.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    pub name: String,
    pub kind: SourceKind,
    /// Locations this source is kept in; the first is the primary that receives backups, the
    /// others receive copies.
    pub locations: Vec<String>,
}

/// Engine-specific settings of a source.
#[derive(Clone, Debug)]
pub enum SourceKind {
    Sqlite { path: PathBuf },
    Postgres(ServerSource),
    Mysql(ServerSource),
}

/// A database server source (PostgreSQL or MariaDB/MySQL).
#[derive(Clone, Debug)]
pub struct ServerSource {
    /// Connection URL, without a password (the configuration refuses one).
    pub url: String,
    pub password: Option<SecretRef>,
    /// Tables larger than this (on disk) get a sampled checksum instead of a full one.
    pub checksum_limit: u64,
    /// Per-table checksum modes, by `schema.table` (PostgreSQL) or `table` (MySQL).
    pub checksum: std::collections::BTreeMap<String, crate::model::ChecksumMode>,
    /// Table streams dumped and loaded at a time; `None`: one per core.
    pub parallel: Option<usize>,
    /// A server drills restore into instead of an ephemeral instance.
    pub scratch: Option<ScratchServerConfig>,
    /// Point-in-time recovery's continuous archive, when enabled.
    pub archive: Option<ArchiveConfig>,
}

/// `[source.NAME.archive]`: the server's log (PostgreSQL's WAL) streamed continuously into the
/// source's repositories.
#[derive(Clone, Debug)]
pub struct ArchiveConfig {
    /// The longest received WAL waits in the spool before it is stored (the archive's RPO).
    pub flush: std::time::Duration,
    /// An archive lag beyond this raises an alert.
    pub lag_alert: std::time::Duration,
    /// Who feeds the archive.
    pub method: ArchiveMethod,
}

/// Who feeds a continuous archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveMethod {
    /// The daemon streams WAL with `pg_receivewal` from a slot (partial segments included).
    Receivewal,
    /// The server's `archive_command = 'custodian wal push --source NAME %p'` stores each
    /// completed segment (the RPO is the server's `archive_timeout`).
    ArchiveCommand,
}

impl ArchiveConfig {
    /// The defaults: flush every 60 s, alert beyond 5 minutes of lag.
    pub const DEFAULT_FLUSH: std::time::Duration = std::time::Duration::from_secs(60);
    pub const DEFAULT_LAG_ALERT: std::time::Duration = std::time::Duration::from_secs(300);
}

/// A scratch server for drills: its URL (no password) and the password's reference (the
/// source's own when not given).
#[derive(Clone, Debug)]
pub struct ScratchServerConfig {
    pub url: String,
    pub password: Option<SecretRef>,
}

pub use sources::DEFAULT_CHECKSUM_LIMIT;

impl ServerSource {
    /// Table streams at a time: the configured number, else one per core.
    #[must_use]
    pub fn streams(&self) -> usize {
        self.parallel.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        })
    }
}

impl SourceKind {
    /// The server settings of a PostgreSQL or MariaDB/MySQL source.
    #[must_use]
    pub fn server(&self) -> Option<&ServerSource> {
        match self {
            SourceKind::Postgres(c) | SourceKind::Mysql(c) => Some(c),
            SourceKind::Sqlite { .. } => None,
        }
    }
}

impl SourceConfig {
    #[must_use]
    pub fn engine(&self) -> Engine {
        match self.kind {
            SourceKind::Sqlite { .. } => Engine::Sqlite,
            SourceKind::Postgres(_) => Engine::Postgres,
            SourceKind::Mysql(_) => Engine::Mysql,
        }
    }

    /// The server settings of a PostgreSQL or MariaDB/MySQL source.
    #[must_use]
    pub fn server(&self) -> Option<&ServerSource> {
        self.kind.server()
    }

    /// The location that receives this source's backups.
    #[must_use]
    pub fn primary(&self) -> &str {
        &self.locations[0]
    }
}

/// A place where a restic repository lives.
#[derive(Clone, Debug)]
pub struct LocationConfig {
    pub name: String,
    pub kind: LocationKind,
    pub password: SecretRef,
    /// What forget/prune keep here (the location's own `retention` table, else `[retention]`).
    pub retention: Retention,
}

/// Storage-specific settings of a location.
#[derive(Clone, Debug)]
pub enum LocationKind {
    Local { path: PathBuf },
    S3(S3Location),
}

/// An S3 (or S3-compatible) bucket holding a restic repository under a prefix.
#[derive(Clone, Debug)]
pub struct S3Location {
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    pub region: String,
    /// Endpoint URL for S3-compatible stores; AWS's regional endpoint when absent.
    pub endpoint: Option<String>,
    pub path_style: bool,
    /// Static credentials by reference; the standard AWS chain (environment, profile, instance
    /// or web-identity role) when absent.
    pub credentials: Option<(SecretRef, SecretRef)>,
    pub object_lock: Option<ObjectLock>,
}

/// S3 Object Lock settings: every object Custodian writes is retained this long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectLock {
    pub mode: LockMode,
    pub days: u32,
}

/// S3 Object Lock retention mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Nobody, not even the root account, can delete or shorten the retention.
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can; Custodian never does.
    Governance,
}

impl LockMode {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Compliance => "compliance",
            Self::Governance => "governance",
        }
    }
}

impl S3Location {
    /// The endpoint requests go to.
    #[must_use]
    pub fn endpoint_url(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", self.region))
    }
}

impl LocationConfig {
    /// How restic addresses this repository (`-r` argument); never holds credentials.
    #[must_use]
    pub fn repository(&self) -> String {
        match &self.kind {
            LocationKind::Local { path } => path.display().to_string(),
            LocationKind::S3(s3) => {
                let mut repo = format!("s3:{}/{}", s3.endpoint_url(), s3.bucket);
                if !s3.prefix.is_empty() {
                    repo.push('/');
                    repo.push_str(&s3.prefix);
                }
                repo
            }
        }
    }

    #[must_use]
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            LocationKind::Local { .. } => "local",
            LocationKind::S3(_) => "s3",
        }
    }

    /// Whether this location is declared immutable (Object Lock).
    #[must_use]
    pub fn object_lock(&self) -> Option<ObjectLock> {
        match &self.kind {
            LocationKind::S3(s3) => s3.object_lock,
            LocationKind::Local { .. } => None,
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "configuration file {path} does not exist; pass --config PATH, set CUSTODIAN_CONFIG, \
         or run `custodian demo --dir DIR` to see a working example"
    )]
    NotFound { path: PathBuf },
    #[error("configuration file {path} cannot be read: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} has {}:\n{}", path.display(), problems(diagnostics), render(diagnostics))]
    Invalid {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

impl ConfigError {
    /// All diagnostics (errors and warnings) carried by the error.
    #[must_use]
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Self::Invalid { diagnostics, .. } => diagnostics,
            _ => &[],
        }
    }
}

fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| format!("  {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    /// When the file is missing or unreadable, or when validation found any error (all of them
    /// are in [`ConfigError::Invalid`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::NotFound {
                    path: path.to_path_buf(),
                }
            } else {
                ConfigError::Unreadable {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        Self::from_text(path, &text)
    }

    /// Validates configuration text as if read from `path`.
    ///
    /// # Errors
    /// When validation found any error.
    pub fn from_text(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut diags = Diagnostics::new(path, text);
        let config = validate::validate(path, text, &mut diags);
        match config {
            Some(mut config) if !diags.has_errors() => {
                config.warnings = diags.into_sorted();
                Ok(config)
            }
            _ => Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                diagnostics: diags.into_sorted(),
            }),
        }
    }

    #[must_use]
    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name == name)
    }

    #[must_use]
    pub fn location(&self, name: &str) -> Option<&LocationConfig> {
        self.locations.iter().find(|l| l.name == name)
    }

    /// The catalog database.
    #[must_use]
    pub fn catalog_path(&self) -> PathBuf {
        self.state_dir.join("catalog.db")
    }

    /// Where a drill or a point-in-time recovery puts a directory of its own: under
    /// `drills.scratch-dir` (else the system's temporary directory), named by the run.
    #[must_use]
    pub fn drill_dir(&self, prefix: &str, run_id: &str) -> PathBuf {
        self.drills
            .scratch_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .join(format!(
                "{prefix}{}",
                run_id.replace(|c: char| !c.is_ascii_alphanumeric(), "")
            ))
    }

    /// Private scratch space for dumps and restores (created 0700 on use).
    #[must_use]
    pub fn scratch_dir(&self) -> PathBuf {
        self.state_dir.join("scratch")
    }

    /// Whether a restore into this target is a scratch restore — into a file under Custodian's
    /// private scratch directory, or into the server the source names as its scratch server —
    /// rather than one that overwrites or exposes data elsewhere (which needs four eyes).
    #[must_use]
    pub fn is_scratch_target(&self, source: Option<&str>, target: &str) -> bool {
        let path = Path::new(target);
        if path.is_absolute() {
            // No `..`: a path that climbs out of the scratch directory is not in it.
            let plain = path
                .components()
                .all(|c| !matches!(c, std::path::Component::ParentDir));
            return plain && path.starts_with(self.scratch_dir());
        }
        let Ok(target) = url::Url::parse(target) else {
            return false;
        };
        self.sources
            .iter()
            .filter(|s| source.is_none_or(|n| n == s.name))
            .filter_map(|s| match &s.kind {
                SourceKind::Postgres(c) | SourceKind::Mysql(c) => c.scratch.as_ref(),
                SourceKind::Sqlite { .. } => None,
            })
            .filter_map(|scratch| url::Url::parse(&scratch.url).ok())
            .any(|s| s.host_str() == target.host_str() && s.port() == target.port())
    }

    /// Cache for remote repositories.
    #[must_use]
    pub fn cache_dir(&self) -> PathBuf {
        self.state_dir.join("cache")
    }
}

/// The control socket the configuration names (`[custodian] control-socket`, relative paths
/// resolved against the file's directory), read without validating — or reading the secrets
/// of — the rest: `custodian ctl` needs nothing else. `None` when the file does not exist or
/// does not set it.
///
/// # Errors
/// When the file exists but cannot be read or is not TOML: a sentence naming the file and the
/// way around it.
pub fn control_socket(path: &Path) -> Result<Option<PathBuf>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "cannot read {} to find the control socket ({e}); pass --socket PATH or set CUSTODIAN_SOCKET",
                path.display()
            ));
        }
    };
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        format!(
            "{} is not valid TOML ({}); fix it, or pass --socket PATH",
            path.display(),
            e.message()
        )
    })?;
    let socket = doc
        .get("custodian")
        .and_then(|c| c.get("control-socket"))
        .and_then(toml::Value::as_str)
        .map(PathBuf::from);
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    Ok(socket.map(|s| if s.is_absolute() { s } else { base.join(s) }))
}

/// "1 problem", "3 problems" (errors only; warnings are listed but not counted).
fn problems(diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    crate::model::count(errors, "problem")
}

/// Parses a duration such as `24h`, `30d`, `90m`, `1h 30m`.
///
/// # Errors
/// When the text is not a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write it like `90s`, `15m`, `24h` or `30d`")
    })
}
