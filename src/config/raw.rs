//! The configuration file as written: serde structs, one per table, with no meaning attached
//! yet. Unknown keys are collected by `serde_ignored` (see `document.rs`) rather than rejected by
//! serde, so that all of them are reported at once. Keys are kebab-case.

use std::path::PathBuf;

use serde::Deserialize;

/// `[custodian]`: where Custodian keeps its own state and how it names itself.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawGeneral {
    pub state_dir: Option<PathBuf>,
    pub hostname: Option<String>,
    /// Every pack of every location is read by `check --rotate` at least once per window.
    pub check_window: Option<String>,
    /// Directory of schedule files (`*.toml` with `[[job]]` entries) for the daemon.
    pub schedules: Option<PathBuf>,
    /// The daemon's control socket.
    pub control_socket: Option<PathBuf>,
    /// Loopback address of the daemon's Prometheus endpoint (e.g. `127.0.0.1:9477`).
    pub metrics_listen: Option<String>,
    /// At most this many jobs run at once in the daemon.
    pub max_concurrent_jobs: Option<u32>,
}

/// A reference to a secret as written: exactly one of the three ways must be given.
/// (Not a flattened struct: `serde(flatten)` would hide unknown keys from `serde_ignored`.)
#[derive(Debug, Default)]
pub struct RawPassword {
    pub file: Option<PathBuf>,
    pub env: Option<String>,
    pub credential: Option<String>,
}

/// `[source.NAME]` with `kind = "sqlite"`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawSqliteSource {
    #[allow(dead_code)]
    pub kind: String,
    pub path: PathBuf,
    pub locations: Option<Vec<String>>,
}

/// `[source.NAME]` with `kind = "postgres"` or `kind = "mysql"`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawServerSource {
    #[allow(dead_code)]
    pub kind: String,
    pub url: String,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub password_credential: Option<String>,
    pub locations: Option<Vec<String>>,
    /// Tables larger than this get a sampled checksum instead of a full one.
    pub checksum_limit: Option<String>,
    /// Per-table checksum mode: `full`, `sampled` or `count`.
    #[serde(default)]
    pub checksum: std::collections::BTreeMap<String, String>,
    /// Table streams dumped and restored at a time (default: the number of cores).
    pub parallel: Option<i64>,
    /// A server for restore drills (a unique database is created and dropped on it).
    pub scratch_url: Option<String>,
    pub scratch_password_file: Option<PathBuf>,
    pub scratch_password_env: Option<String>,
    pub scratch_password_credential: Option<String>,
    /// `[source.NAME.archive]`: point-in-time recovery's continuous archive.
    pub archive: Option<RawArchive>,
}

/// `[source.NAME.archive]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawArchive {
    #[serde(default)]
    pub enabled: bool,
    /// How long archived WAL may wait in the spool before it is stored (`60s`).
    pub flush: Option<String>,
    /// How far behind the archive may fall before an alert (`5m`).
    pub lag_alert: Option<String>,
    /// `receivewal` (the daemon streams with pg_receivewal; default) or `archive-command`
    /// (the server's archive_command runs `custodian wal push`).
    pub method: Option<String>,
}

impl RawServerSource {
    pub fn scratch_password(&self) -> RawPassword {
        RawPassword {
            file: self.scratch_password_file.clone(),
            env: self.scratch_password_env.clone(),
            credential: self.scratch_password_credential.clone(),
        }
    }

    pub fn password(&self) -> RawPassword {
        RawPassword {
            file: self.password_file.clone(),
            env: self.password_env.clone(),
            credential: self.password_credential.clone(),
        }
    }
}

/// `[location.NAME]` with `kind = "local"`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawLocalLocation {
    #[allow(dead_code)]
    pub kind: String,
    pub path: PathBuf,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub password_credential: Option<String>,
    pub retention: Option<RawRetention>,
}

impl RawLocalLocation {
    pub fn password(&self) -> RawPassword {
        RawPassword {
            file: self.password_file.clone(),
            env: self.password_env.clone(),
            credential: self.password_credential.clone(),
        }
    }
}

/// `[location.NAME]` with `kind = "s3"`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawS3Location {
    #[allow(dead_code)]
    pub kind: String,
    pub bucket: String,
    pub prefix: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: Option<bool>,
    pub access_key_id_file: Option<PathBuf>,
    pub access_key_id_env: Option<String>,
    pub access_key_id_credential: Option<String>,
    pub secret_access_key_file: Option<PathBuf>,
    pub secret_access_key_env: Option<String>,
    pub secret_access_key_credential: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub password_credential: Option<String>,
    pub object_lock: Option<RawObjectLock>,
    pub retention: Option<RawRetention>,
}

impl RawS3Location {
    pub fn password(&self) -> RawPassword {
        RawPassword {
            file: self.password_file.clone(),
            env: self.password_env.clone(),
            credential: self.password_credential.clone(),
        }
    }

    pub fn access_key_id(&self) -> RawPassword {
        RawPassword {
            file: self.access_key_id_file.clone(),
            env: self.access_key_id_env.clone(),
            credential: self.access_key_id_credential.clone(),
        }
    }

    pub fn secret_access_key(&self) -> RawPassword {
        RawPassword {
            file: self.secret_access_key_file.clone(),
            env: self.secret_access_key_env.clone(),
            credential: self.secret_access_key_credential.clone(),
        }
    }
}

/// `object-lock = { mode = "compliance", days = 30 }`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawObjectLock {
    pub mode: String,
    pub days: u32,
}

/// `[retention]`: what `forget`/`prune` keep.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawRetention {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_within: Option<String>,
    pub max_age: Option<String>,
}

/// `[drills]`: restore drills.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawDrills {
    pub interval: Option<String>,
    pub scratch_lifetime: Option<String>,
    /// Where ephemeral scratch instances are created (default: the system temp directory).
    pub scratch_dir: Option<PathBuf>,
    /// The user ephemeral servers run as when Custodian runs as root.
    pub scratch_user: Option<String>,
    #[serde(default)]
    pub assertion: Vec<RawAssertion>,
}

/// `[[drills.assertion]]`: an application-level check run on every restored database.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawAssertion {
    pub source: String,
    pub name: String,
    pub sql: String,
    pub expect: String,
}

/// `[reports]`: compliance reports.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawReports {
    pub period: Option<String>,
    pub out_dir: Option<PathBuf>,
    pub secret_key_file: Option<PathBuf>,
    pub public_key_file: Option<PathBuf>,
    pub secret_key_password_file: Option<PathBuf>,
    pub secret_key_password_env: Option<String>,
    pub secret_key_password_credential: Option<String>,
    /// Regions locations may be in (RESIDENCY); local disks are `local`.
    #[serde(default)]
    pub allowed_regions: Vec<String>,
    /// The time zone reports show times in (IANA name); default UTC.
    pub time_zone: Option<String>,
    /// Control frameworks the report maps its rules to.
    pub frameworks: Option<Vec<String>>,
    #[serde(default)]
    pub targets: RawTargets,
}

impl RawReports {
    pub fn secret_key_password(&self) -> RawPassword {
        RawPassword {
            file: self.secret_key_password_file.clone(),
            env: self.secret_key_password_env.clone(),
            credential: self.secret_key_password_credential.clone(),
        }
    }
}

/// `[reports.targets]`: policy thresholds (COMPLIANCE.md's defaults when absent).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawTargets {
    pub rpo: Option<String>,
    pub rto: Option<String>,
    pub copy_sla: Option<String>,
    pub alert_latency: Option<String>,
    pub min_immutability: Option<String>,
    pub key_max_age: Option<String>,
}

/// `[notifications]`: e-mail and webhooks.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawNotifications {
    pub smtp: Option<RawSmtp>,
    #[serde(default)]
    pub report_to: Vec<String>,
    #[serde(default)]
    pub alert_to: Vec<String>,
    pub webhook: Option<String>,
    /// Native alert targets (`[[notifications.sink]]`).
    #[serde(default)]
    pub sink: Vec<RawSink>,
}

/// `[[notifications.sink]]`: one alert target of a kind (ntfy, slack, mattermost, teams,
/// pagerduty). Its secret — the incoming-webhook URL of Slack, Mattermost and Teams (the URL
/// is the credential), the PagerDuty routing key, an ntfy access token — comes from
/// `secret-file`, `secret-env` or `secret-credential`, never from the file itself.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawSink {
    pub kind: String,
    /// ntfy: the topic URL (`https://ntfy.sh/my-topic`); PagerDuty: the Events API v2 URL
    /// (default `https://events.pagerduty.com/v2/enqueue`).
    pub url: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub secret_env: Option<String>,
    pub secret_credential: Option<String>,
    /// Which events: `failed`, `missed`, `succeeded`, `break-glass` (default all but
    /// `succeeded`; PagerDuty always resolves on the next success).
    pub on: Option<Vec<String>>,
}

impl RawSink {
    pub fn secret(&self) -> RawPassword {
        RawPassword {
            file: self.secret_file.clone(),
            env: self.secret_env.clone(),
            credential: self.secret_credential.clone(),
        }
    }
}

/// `[notifications.smtp]`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawSmtp {
    pub host: String,
    pub port: Option<u16>,
    pub tls: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub password_credential: Option<String>,
    pub from: String,
    /// Extra CA certificate (PEM) trusted for this relay.
    pub ca_file: Option<PathBuf>,
    /// Delivery attempts before giving up (default 4).
    pub attempts: Option<u32>,
    /// Wait before the first retry; each later wait is four times longer (default 10s).
    pub retry_delay: Option<String>,
}

impl RawSmtp {
    pub fn password(&self) -> RawPassword {
        RawPassword {
            file: self.password_file.clone(),
            env: self.password_env.clone(),
            credential: self.password_credential.clone(),
        }
    }
}

/// `[access]`: who may do what through the control socket.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawAccess {
    #[serde(default)]
    pub administrators: Vec<String>,
    #[serde(default)]
    pub operators: Vec<String>,
    #[serde(default)]
    pub viewers: Vec<String>,
    pub approval_expiry: Option<String>,
    /// Group owning the control socket (its members may connect; roles still apply).
    pub socket_group: Option<String>,
    /// `required`, `optional` (default) or `off`.
    pub two_factor: Option<String>,
    /// Dangerous operations from the CLI need an approval (default false).
    pub enforce: Option<bool>,
    pub totp_key_file: Option<PathBuf>,
    pub totp_key_env: Option<String>,
    pub totp_key_credential: Option<String>,
}

impl RawAccess {
    pub fn totp_key(&self) -> RawPassword {
        RawPassword {
            file: self.totp_key_file.clone(),
            env: self.totp_key_env.clone(),
            credential: self.totp_key_credential.clone(),
        }
    }
}

/// `[erasure]`: the GDPR erasure ledger.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawErasure {
    /// Store subject keys as keyed hashes (default true).
    pub hash_subjects: Option<bool>,
    pub key_file: Option<PathBuf>,
    pub key_env: Option<String>,
    pub key_credential: Option<String>,
    /// Replay rules per source: `[erasure.rules.SOURCE]`.
    #[serde(default)]
    pub rules: std::collections::BTreeMap<String, RawErasureRules>,
}

impl RawErasure {
    pub fn key(&self) -> RawPassword {
        RawPassword {
            file: self.key_file.clone(),
            env: self.key_env.clone(),
            credential: self.key_credential.clone(),
        }
    }
}

/// `[erasure.rules.SOURCE]`: how to erase one subject in a restored database.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawErasureRules {
    /// Lists the subject keys present in a restored database (one text column).
    pub subject_query: Option<String>,
    /// Statements run for each erased subject found (`:subject` is the key).
    pub erase: Vec<String>,
    /// Must return 0 for an erased subject (`:subject` is the key).
    pub proof: String,
}
