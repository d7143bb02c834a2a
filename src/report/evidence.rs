//! The evidence a report is evaluated from, gathered once: populations of rows from the catalog
//! (as stored), the audit log with its verification, and facts probed from each location at
//! report time (Object Lock state, key files, password-file modes). It all ships in
//! `evidence.json`, covered by the signature, so an auditor can re-derive every verdict.

use std::os::unix::fs::PermissionsExt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::period::Period;
use crate::audit::{Entry, Filter, Verification};
use crate::catalog::ReportRecord;
use crate::config::{LocationConfig, LocationKind};
use crate::job::{Context, JobError};
use crate::model::time;
use crate::secret::SecretRef;

/// A run, as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRow {
    pub id: String,
    pub kind: String,
    pub trigger: String,
    pub actor: String,
    pub source: Option<String>,
    pub location: Option<String>,
    pub target: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub bytes_read: Option<i64>,
    pub bytes_added: Option<i64>,
    pub snapshot_id: Option<String>,
    pub details: Option<String>,
}

/// A snapshot in a location, with the backup it holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotRow {
    pub location: String,
    pub snapshot_id: String,
    pub backup_id: String,
    pub via: String,
    pub copied_from: Option<String>,
    pub run_id: String,
    pub arrived_at: String,
    pub removed_at: Option<String>,
    pub source: String,
    pub taken_at: String,
    pub size: i64,
    pub manifest_sha256: String,
}

/// A repository check.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckRow {
    pub run_id: String,
    pub location: String,
    pub checked_at: String,
    pub read_data_subset: Option<String>,
    pub ok: i64,
    pub errors: i64,
    pub warnings: i64,
    pub findings: String,
}

/// A restore drill.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DrillRow {
    pub run_id: String,
    pub source: String,
    pub location: String,
    pub selection: String,
    pub snapshot_id: Option<String>,
    pub snapshot_taken_at: Option<String>,
    pub snapshot_age_seconds: Option<f64>,
    pub engine: Option<String>,
    pub scratch: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub verdict: String,
    pub failure_code: Option<String>,
    pub failure_reason: Option<String>,
    pub rto_seconds: Option<f64>,
    pub phases: Option<String>,
    pub tables: Option<i64>,
    pub rows: Option<i64>,
    pub bytes: Option<i64>,
    pub assertions: Option<String>,
}

/// A scratch instance a drill created.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScratchRow {
    pub id: String,
    pub run_id: String,
    pub kind: String,
    pub created_at: String,
    pub expires_at: String,
    pub removed_at: Option<String>,
    pub removed_by: Option<String>,
}

/// A four-eyes approval request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApprovalRow {
    pub id: String,
    pub request: String,
    pub requested_by: String,
    pub created_at: String,
    pub expires_at: String,
    pub approved_by: Option<String>,
    pub approved_at: Option<String>,
}

/// An alert the daemon sent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlertRow {
    pub job: String,
    pub status: String,
    pub channel: String,
    pub sent_at: String,
    pub delivered: i64,
    pub error: Option<String>,
}

/// A report delivery attempt.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeliveryRow {
    pub report_id: String,
    pub attempted_at: String,
    pub attempt: i64,
    pub delivered: i64,
    pub message_id: Option<String>,
    pub recipients: String,
    pub error: Option<String>,
}

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
    pub runs: Vec<RunRow>,
    /// The earliest scheduled backup ever (schedules are not evaluated before it).
    pub first_scheduled_backup: Option<String>,
    /// Snapshots that arrived in the period or were still held when it began (the newest one
    /// before the period bounds the first gap; the oldest held ones bound retention).
    pub snapshots: Vec<SnapshotRow>,
    /// Checks of the check window before the period's end (or of the period, if longer).
    pub checks: Vec<CheckRow>,
    /// Drills up to the period's end.
    pub drills: Vec<DrillRow>,
    /// Scratch instances created in the period.
    pub scratch_instances: Vec<ScratchRow>,
    pub approvals: Vec<ApprovalRow>,
    pub alerts: Vec<AlertRow>,
    pub deliveries: Vec<DeliveryRow>,
    /// Audit entries of the period.
    pub audit: Vec<Entry>,
    pub audit_verification: Result<Verification, String>,
    /// Reports recorded before this one.
    pub reports: Vec<ReportRecord>,
    pub locations: Vec<LocationFacts>,
    pub secret_files: Vec<SecretFileFacts>,
    /// The erasure ledger (pseudonymous ids only) with each subject's horizon.
    pub erasures: Vec<crate::job::erasure::SubjectStatus>,
    /// Every replay of the ledger up to the period's end.
    pub erasure_replays: Vec<crate::catalog::ReplayRecord>,
    /// Damage open at some time in the period (found by checks, drills or restores).
    #[serde(default)]
    pub damage: Vec<crate::catalog::DamageRecord>,
}

fn typed<T: serde::de::DeserializeOwned>(
    rows: Vec<serde_json::Map<String, serde_json::Value>>,
) -> Result<Vec<T>, JobError> {
    rows.into_iter()
        .map(|r| {
            serde_json::from_value(serde_json::Value::Object(r)).map_err(|e| {
                JobError::Internal(format!("a catalog row has an unexpected shape: {e}"))
            })
        })
        .collect()
}

/// Records the permissions of a secret given by file (other references have none).
pub(crate) fn secret_file(setting: String, secret: &SecretRef, out: &mut Vec<SecretFileFacts>) {
    if let SecretRef::File(path) = secret {
        let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o7777);
        out.push(SecretFileFacts {
            setting,
            path: path.display().to_string(),
            readable_by_others: mode.as_ref().is_ok_and(|m| m & 0o077 != 0),
            mode: mode.map(|m| format!("{m:04o}")).map_err(|e| e.to_string()),
        });
    }
}

fn is_loopback_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| {
        matches!(
            u.host_str(),
            Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
        )
    })
}

async fn location_facts(ctx: &Context, loc: &LocationConfig) -> LocationFacts {
    let (retention_max_days, retention_max_from) = loc.retention.max_days();
    let (region, tls, bucket) = match &loc.kind {
        LocationKind::Local { .. } => ("local".to_string(), true, None),
        LocationKind::S3(s3) => {
            let endpoint = s3.endpoint_url();
            let tls = endpoint.starts_with("https://") || is_loopback_url(&endpoint);
            let bucket = if s3.object_lock.is_some() {
                match ctx.backend(loc) {
                    Ok((storage, _)) => match storage.s3().cloned() {
                        Some(s3) => tokio::task::spawn_blocking(move || s3.bucket_state())
                            .await
                            .ok(),
                        None => None,
                    },
                    Err(_) => None,
                }
            } else {
                None
            };
            (s3.region.clone(), tls, bucket)
        }
    };
    let (opened, keys) = match ctx.repo(&loc.name).await {
        Ok(repo) => {
            let keys = tokio::task::spawn_blocking(move || repo.keys())
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            (Ok(()), keys)
        }
        Err(e) => (
            Err(e.to_string()),
            Err("the repository did not open".to_string()),
        ),
    };
    let lock = loc.object_lock();
    LocationFacts {
        name: loc.name.clone(),
        kind: loc.kind_name(),
        repository: loc.repository(),
        region,
        tls,
        opened,
        keys,
        object_lock: lock.map(|l| l.mode.as_str().to_string()),
        object_lock_days: lock.map(|l| l.days),
        bucket,
        retention_max_days,
        retention_max_from,
    }
}

/// Gathers the evidence for a period.
///
/// # Errors
/// When the catalog cannot be read.
pub async fn gather(ctx: &Context, period: &Period, now: Timestamp) -> Result<Evidence, JobError> {
    let c = &ctx.catalog;
    let end = period.end(now);
    let (from, end_s) = (time::format(period.from), time::format(end));
    let runs = typed(
        c.rows_json(
            "reading runs",
            "SELECT id, kind, trigger, actor, source, location, target, started_at, finished_at,
                    outcome, error_code, error_message, bytes_read, bytes_added, snapshot_id,
                    details
             FROM runs WHERE started_at >= ? AND started_at < ? ORDER BY started_at, id",
            &[&from, &end_s],
        )
        .await?,
    )?;
    let first: Vec<serde_json::Map<_, _>> = c
        .rows_json(
            "reading the first activity",
            "SELECT min(started_at) AS first,
                    (SELECT min(started_at) FROM runs WHERE kind = 'backup' AND trigger = 'schedule')
                        AS first_scheduled
             FROM runs",
            &[],
        )
        .await?;
    let pick = |k: &str| {
        first
            .first()
            .and_then(|r| r.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let snapshots = typed(
        c.rows_json(
            "reading snapshots",
            "SELECT s.location, s.snapshot_id, s.backup_id, s.via, s.copied_from, s.run_id,
                    s.arrived_at, s.removed_at, b.source, b.taken_at, b.size, b.manifest_sha256
             FROM snapshots s JOIN backups b ON b.id = s.backup_id
             WHERE s.arrived_at < ? AND (s.arrived_at >= ? OR s.removed_at IS NULL OR s.removed_at >= ?)
             ORDER BY s.arrived_at",
            &[&end_s, &from, &from],
        )
        .await?,
    )?;
    // The check window before the period's end, or the period itself if longer.
    let checks_from = time::format(period.from.min(
        end - jiff::SignedDuration::from_secs(
            i64::try_from(ctx.config.check_window.as_secs()).unwrap_or(i64::MAX / 4),
        ),
    ));
    let checks = typed(
        c.rows_json(
            "reading checks",
            "SELECT * FROM checks WHERE checked_at < ? AND checked_at >= ? ORDER BY checked_at",
            &[&end_s, &checks_from],
        )
        .await?,
    )?;
    let drills = typed(
        c.rows_json(
            "reading drills",
            "SELECT run_id, source, location, selection, snapshot_id, snapshot_taken_at,
                    snapshot_age_seconds, engine, scratch, started_at, finished_at, verdict,
                    failure_code, failure_reason, rto_seconds, phases, tables, rows, bytes,
                    assertions
             FROM drills WHERE started_at < ? ORDER BY started_at",
            &[&end_s],
        )
        .await?,
    )?;
    let scratch_instances = typed(
        c.rows_json(
            "reading scratch instances",
            "SELECT id, run_id, kind, created_at, expires_at, removed_at, removed_by
             FROM scratch_instances WHERE created_at >= ? AND created_at < ? ORDER BY created_at",
            &[&from, &end_s],
        )
        .await?,
    )?;
    let approvals = typed(
        c.rows_json(
            "reading approvals",
            "SELECT id, request, requested_by, created_at, expires_at, approved_by, approved_at
             FROM approvals WHERE created_at >= ? AND created_at < ? ORDER BY created_at",
            &[&from, &end_s],
        )
        .await?,
    )?;
    let alerts = typed(
        c.rows_json(
            "reading alerts",
            "SELECT job, status, channel, sent_at, delivered, error FROM alerts
             WHERE sent_at >= ? ORDER BY sent_at",
            &[&from],
        )
        .await?,
    )?;
    let deliveries = typed(
        c.rows_json(
            "reading report deliveries",
            "SELECT report_id, attempted_at, attempt, delivered, message_id, recipients, error
             FROM report_deliveries WHERE attempted_at >= ? AND attempted_at < ?
             ORDER BY attempted_at",
            &[&from, &end_s],
        )
        .await?,
    )?;
    let audit_log = ctx.audit.clone();
    let (audit, audit_verification) = {
        let filter = Filter {
            since: Some(from.clone()),
            until: Some(end_s.clone()),
            ..Filter::default()
        };
        let listed = audit_log.list(&filter).map_err(|e| e.to_string());
        let verified = audit_log.verify().map_err(|e| e.to_string());
        (listed.unwrap_or_default(), verified)
    };
    let reports = c
        .reports()
        .await?
        .into_iter()
        .filter(|r| r.period_to.as_str() <= from.as_str())
        .collect();
    let mut locations = Vec::new();
    let mut secret_files = Vec::new();
    for loc in &ctx.config.locations {
        locations.push(location_facts(ctx, loc).await);
        secret_file(
            format!("location.{}.password", loc.name),
            &loc.password,
            &mut secret_files,
        );
        if let LocationKind::S3(s3) = &loc.kind
            && let Some((id, key)) = &s3.credentials
        {
            secret_file(
                format!("location.{}.access-key-id", loc.name),
                id,
                &mut secret_files,
            );
            secret_file(
                format!("location.{}.secret-access-key", loc.name),
                key,
                &mut secret_files,
            );
        }
    }
    for source in &ctx.config.sources {
        if let crate::config::SourceKind::Postgres(s) | crate::config::SourceKind::Mysql(s) =
            &source.kind
            && let Some(p) = &s.password
        {
            secret_file(
                format!("source.{}.password", source.name),
                p,
                &mut secret_files,
            );
        }
    }
    if let Some(smtp) = &ctx.config.notifications.smtp
        && let Some(p) = &smtp.password
    {
        secret_file("notifications.smtp.password".into(), p, &mut secret_files);
    }
    if let Some(p) = &ctx.config.reports.secret_key_password {
        secret_file("reports.secret-key-password".into(), p, &mut secret_files);
    }
    let erasures = crate::job::erasure::status(ctx, None, None).await?;
    let erasure_replays = typed(
        c.rows_json(
            "reading erasure replays",
            "SELECT * FROM erasure_replays WHERE replayed_at < ? ORDER BY replayed_at",
            &[&end_s],
        )
        .await?,
    )?;
    let damage = c.damage_between(&from, &end_s).await?;
    Ok(Evidence {
        erasures,
        erasure_replays,
        damage,
        period: period.clone(),
        now,
        end,
        first_activity: pick("first"),
        first_scheduled_backup: pick("first_scheduled"),
        runs,
        snapshots,
        checks,
        drills,
        scratch_instances,
        approvals,
        alerts,
        deliveries,
        audit,
        audit_verification,
        reports,
        locations,
        secret_files,
    })
}
