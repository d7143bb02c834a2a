//! The evidence a report is evaluated from, gathered once by the report job: populations of
//! records from the catalog (as stored), the audit log with its verification, and facts probed
//! from each location at report time (Object Lock state, key files, password-file modes). It all
//! ships in `evidence.json`, covered by the signature, so an auditor can re-derive every verdict.
//! Nothing here reads anything: the report layer only evaluates and renders what it is given.

use jiff::Timestamp;
use serde::Serialize;

use super::period::Period;
use crate::audit::{Entry, Verification};
use crate::catalog::{
    DamageRecord, DrillRecord, HeldSnapshot, ReplayRecord, ReportRecord, RunRecord, ScratchRecord,
    StoredAlert, StoredApproval, StoredCheck, StoredDelivery,
};

/// A password file's permissions.
#[derive(Clone, Debug, Serialize)]
pub struct SecretFileFacts {
    /// Which setting refers to it (`location.offsite.password`).
    pub setting: String,
    pub path: String,
    /// Octal mode, or the error reading it.
    pub mode: Result<String, String>,
    pub readable_by_others: bool,
}

/// A source's continuous archive at report time (point-in-time recovery).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ArchiveFacts {
    pub source: String,
    /// Any second from `window_from` to `window_to` can be recovered.
    pub window_from: Option<String>,
    pub window_to: Option<String>,
    pub lag_seconds: Option<f64>,
    /// Gaps: missing WAL / binary logs, and gaps the archiver recorded (with their time).
    pub gaps: Vec<String>,
    /// Why the archive could not be read.
    pub error: Option<String>,
}

/// What Custodian found about a location at report time.
#[derive(Clone, Debug, Serialize)]
pub struct LocationFacts {
    pub name: String,
    pub kind: &'static str,
    pub repository: String,
    /// S3 region, or `local`.
    pub region: String,
    /// TLS to the storage (local disks: not applicable, true).
    pub tls: bool,
    /// Opening the repository with Custodian's password worked (restic repositories are always
    /// encrypted: opening proves the password decrypts its key).
    pub opened: Result<(), String>,
    pub keys: Result<Vec<crate::repo::KeyInfo>, String>,
    pub object_lock: Option<String>,
    pub object_lock_days: Option<u32>,
    pub bucket: Option<crate::location::s3::BucketState>,
    /// The retention maximum in days and where it comes from.
    pub retention_max_days: Option<f64>,
    pub retention_max_from: String,
}

/// Everything a report is evaluated from.
#[derive(Clone, Debug, Serialize)]
pub struct Evidence {
    #[serde(skip)]
    pub period: Period,
    #[serde(skip)]
    pub now: Timestamp,
    /// The period's end, or the generation time for a period still running.
    #[serde(skip)]
    pub end: Timestamp,
    /// When Custodian's catalog first recorded anything.
    pub first_activity: Option<String>,
    /// Runs started in the period.
    pub runs: Vec<RunRecord>,
    /// The earliest scheduled backup ever (schedules are not evaluated before it).
    pub first_scheduled_backup: Option<String>,
    /// Snapshots that arrived in the period or were still held when it began (the newest one
    /// before the period bounds the first gap; the oldest held ones bound retention).
    pub snapshots: Vec<HeldSnapshot>,
    /// Checks of the check window before the period's end (or of the period, if longer).
    pub checks: Vec<StoredCheck>,
    /// Drills up to the period's end.
    pub drills: Vec<DrillRecord>,
    /// Scratch instances created in the period.
    pub scratch_instances: Vec<ScratchRecord>,
    pub approvals: Vec<StoredApproval>,
    pub alerts: Vec<StoredAlert>,
    pub deliveries: Vec<StoredDelivery>,
    /// Audit entries of the period.
    pub audit: Vec<Entry>,
    pub audit_verification: Result<Verification, String>,
    /// Reports recorded before this one.
    pub reports: Vec<ReportRecord>,
    pub locations: Vec<LocationFacts>,
    pub secret_files: Vec<SecretFileFacts>,
    /// The erasure ledger (pseudonymous ids only) with each subject's horizon.
    pub erasures: Vec<crate::erasure::SubjectStatus>,
    /// Every replay of the ledger up to the period's end.
    pub erasure_replays: Vec<ReplayRecord>,
    /// Damage open at some time in the period (found by checks, drills or restores).
    pub damage: Vec<DamageRecord>,
    /// The report signing key is encrypted (a `reports.secret-key-password-*` is configured).
    pub signing_key_encrypted: bool,
    /// Each continuous archive (sources with one).
    #[serde(default)]
    pub archives: Vec<ArchiveFacts>,
}
