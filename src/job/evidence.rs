//! The report job's first step: gathering the typed evidence a report is evaluated from. The
//! report layer itself reads nothing; everything it judges arrives here, once.

use std::os::unix::fs::PermissionsExt;

use jiff::Timestamp;

use super::{Context, JobError};
use crate::audit::Filter;
use crate::config::{LocationConfig, LocationKind};
use crate::model::time;
use crate::report::Period;
use crate::report::evidence::{Evidence, LocationFacts, SecretFileFacts};
use crate::secret::SecretRef;

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

/// Each continuous archive as `archive status` sees it; one that cannot be read says why.
async fn archive_facts(ctx: &Context) -> Vec<crate::report::evidence::ArchiveFacts> {
    let mut out = Vec::new();
    for source in &ctx.config.sources {
        if super::wal::archive_settings(source).is_err() {
            continue;
        }
        let mut facts = crate::report::evidence::ArchiveFacts {
            source: source.name.clone(),
            ..Default::default()
        };
        match super::archive::status(ctx, Some(&source.name)).await {
            Ok(list) => {
                if let Some(s) = list.into_iter().next() {
                    facts.window_from = s.window.as_ref().map(|w| time::format(w.from));
                    facts.window_to = s.window.as_ref().map(|w| time::format(w.to));
                    facts.lag_seconds = s.lag_seconds;
                    facts.gaps = s
                        .gaps
                        .iter()
                        .map(|(a, b)| format!("{a} to {b} missing"))
                        .chain(
                            s.state
                                .gaps
                                .iter()
                                .map(|g| format!("{}: {}", time::format(g.at), g.what)),
                        )
                        .collect();
                }
            }
            Err(e) => facts.error = Some(e.to_string()),
        }
        out.push(facts);
    }
    out
}

/// Gathers the evidence for a period: the catalog's records, the audit log and its
/// verification, facts probed from every location, the modes of every secret file, and the
/// erasure ledger's horizons.
///
/// # Errors
/// When the catalog cannot be read.
pub async fn gather(ctx: &Context, period: &Period, now: Timestamp) -> Result<Evidence, JobError> {
    let c = &ctx.catalog;
    let end = period.end(now);
    let (from, end_s) = (time::format(period.from), time::format(end));
    let runs = c.runs_between(&from, &end_s).await?;
    let (first_activity, first_scheduled_backup) = c.first_activity().await?;
    let snapshots = c.snapshots_held(&from, &end_s).await?;
    // The check window before the period's end, or the period itself if longer.
    let checks_from = time::format(period.from.min(
        end - jiff::SignedDuration::from_secs(
            i64::try_from(ctx.config.check_window.as_secs()).unwrap_or(i64::MAX / 4),
        ),
    ));
    let checks = c.checks_between(&checks_from, &end_s).await?;
    let drills = c.drills_until(&end_s).await?;
    let scratch_instances = c.scratch_between(&from, &end_s).await?;
    let approvals = c.approvals_between(&from, &end_s).await?;
    let alerts = c.alerts_since(&from).await?;
    let deliveries = c.deliveries(&from, &end_s, None).await?;
    let (audit, audit_verification) = {
        let filter = Filter {
            since: Some(from.clone()),
            until: Some(end_s.clone()),
            ..Filter::default()
        };
        let listed = ctx.audit.list(&filter).map_err(|e| e.to_string());
        let verified = ctx.audit.verify().map_err(|e| e.to_string());
        (listed.unwrap_or_default(), verified)
    };
    // Every report generated before this one, of any period: one chain, regenerations and
    // previews of running periods included.
    let now_s = time::format(now);
    let reports = c
        .reports()
        .await?
        .into_iter()
        .filter(|r| r.generated_at.as_str() <= now_s.as_str())
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
    let erasures = super::erasure::status(ctx, None, None).await?;
    let erasure_replays = c.replays_until(&end_s).await?;
    let damage = c.damage_between(&from, &end_s).await?;
    let archives = archive_facts(ctx).await;
    Ok(Evidence {
        archives,
        erasures,
        erasure_replays,
        damage,
        period: period.clone(),
        now,
        end,
        first_activity,
        first_scheduled_backup,
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
        signing_key_encrypted: ctx.config.reports.secret_key_password.is_some(),
    })
}
