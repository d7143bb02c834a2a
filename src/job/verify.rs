//! `custodian verify`: compares a database that exists — restored by hand, by someone else, or
//! long ago — with a backup's manifest, the way every restore and drill verifies its own work.
//! Nothing is changed; the comparison is recorded as a run.

use serde::Serialize;

use super::restore::read_manifest;
use super::{Context, JobError, blocking};
use crate::catalog::{RunEnd, RunKind};
use crate::engine::{self, Destination, Verification};
use crate::model::CompareScope;
use crate::secret::SecretRef;

/// What to compare with which backup.
#[derive(Clone, Debug, Default)]
pub struct VerifyRequest {
    pub snapshot: String,
    pub location: Option<String>,
    pub source: Option<String>,
    /// A SQLite file.
    pub to: Option<std::path::PathBuf>,
    /// A database URL (no password in it).
    pub target: Option<String>,
    pub target_password: Option<SecretRef>,
}

/// The outcome of a comparison.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub run_id: String,
    pub location: String,
    pub snapshot_id: String,
    pub source: String,
    pub engine: String,
    pub target: String,
    pub verification: Verification,
}

/// Compares a database with a backup's manifest.
///
/// # Errors
/// For a bad request, an unreadable snapshot, or a database that cannot be reached; a database
/// that differs is an `Ok` report whose verification failed.
pub async fn verify(ctx: &Context, req: &VerifyRequest) -> Result<VerifyReport, JobError> {
    let location = match (&req.location, &req.source) {
        (Some(l), _) => ctx.select_locations(Some(l))?.remove(0).name,
        (None, Some(s)) => ctx.select_sources(Some(s))?.remove(0).primary().to_string(),
        (None, None) => ctx.config.locations[0].name.clone(),
    };
    let (target, url) = match (&req.to, &req.target) {
        (Some(p), None) => (p.display().to_string(), None),
        (None, Some(u)) => (u.clone(), Some(u.clone())),
        _ => {
            return Err(JobError::Usage(
                "give exactly one of --to PATH (SQLite) or --target URL (PostgreSQL, MariaDB/MySQL)".into(),
            ));
        }
    };
    let run_id = ctx
        .start(
            RunKind::Verify,
            req.source.as_deref(),
            Some(&location),
            Some(&target),
        )
        .await?;
    let result = async {
        let repo = ctx.repo(&location).await?;
        let snap = {
            let (repo, wanted, source) = (repo.clone(), req.snapshot.clone(), req.source.clone());
            blocking(move || repo.find_snapshot(&wanted, source.as_deref())).await?
        };
        let manifest = read_manifest(&repo, &snap).await?;
        let destination = match url {
            None => Destination::File(req.to.clone().unwrap_or_default()),
            Some(url) => {
                let reference = req.target_password.clone().or_else(|| {
                    ctx.config
                        .source(&manifest.source)
                        .and_then(|s| s.server().and_then(|c| c.password.clone()))
                });
                let password = reference
                    .map(|r| r.resolve())
                    .transpose()
                    .map_err(|e| JobError::io("reading the target's password", &e))?;
                Destination::Server { url, password }
            }
        };
        let db = engine::of(manifest.engine)
            .open(&destination)
            .map_err(|e| {
                if e.is_usage() {
                    JobError::Usage(e.to_string())
                } else {
                    JobError::Engine(e)
                }
            })?;
        let verification = db.verify(&manifest, CompareScope::default()).await;
        Ok(VerifyReport {
            run_id: run_id.clone(),
            location: location.clone(),
            snapshot_id: snap.id.clone(),
            source: manifest.source.clone(),
            engine: manifest.engine.to_string(),
            target: target.clone(),
            verification,
        })
    }
    .await;
    let judged = match result {
        Ok(r) if !r.verification.is_verified() => {
            ctx.finish(
                &run_id,
                &Err::<(), _>(JobError::Verification(r.verification.summary())),
                RunEnd::default(),
            )
            .await;
            return Ok(r);
        }
        other => other,
    };
    let end = match &judged {
        Ok(r) => RunEnd {
            snapshot_id: Some(r.snapshot_id.clone()),
            details: Some(serde_json::json!({
                "verification": r.verification.status,
                "objects": r.verification.objects,
                "not_verified": r.verification.not_verified,
            })),
            ..RunEnd::default()
        },
        Err(_) => RunEnd::default(),
    };
    ctx.finish(&run_id, &judged, end).await;
    judged
}
