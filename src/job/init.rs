//! `custodian init`: creates the repositories that do not exist yet, and proves the password of
//! those that do.

use serde::Serialize;

use super::{Context, JobError, blocking};
use crate::catalog::{RunEnd, RunKind};
use crate::repo::Repo;

/// What `init` found or did for one location.
#[derive(Clone, Debug, Serialize)]
pub struct InitReport {
    pub location: String,
    pub repository: String,
    pub repository_id: Option<String>,
    pub status: crate::model::status::InitStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
}

/// Creates missing repositories (format 2, compression on). Repositories created after the
/// first share its chunker parameters, so copies deduplicate as well as backups do.
///
/// # Errors
/// Only for catalog failures; per-location failures are in the reports.
pub async fn init(ctx: &Context) -> Result<Vec<InitReport>, JobError> {
    let mut reports = Vec::new();
    let mut chunker_from: Option<Repo> = None;
    for location in &ctx.config.locations {
        let backend = ctx.backend(location)?.1;
        let name = location.name.clone();
        let label = location.repository();
        let exists = {
            let backend = backend.clone();
            let name = name.clone();
            blocking(move || Repo::exists(&name, &backend)).await
        };
        let result = match exists {
            Ok(true) => ctx
                .repo(&name)
                .await
                .map(|repo| (repo, crate::model::status::InitStatus::Exists)),
            Ok(false) => {
                let run_id = ctx.start(RunKind::Init, None, Some(&name), None).await?;
                let created = match location.password.resolve() {
                    Ok(password) => {
                        let template = chunker_from.clone();
                        let (name, label) = (name.clone(), label.clone());
                        blocking(move || {
                            Repo::init(&name, &label, backend, &password, template.as_ref())
                        })
                        .await
                    }
                    Err(e) => Err(JobError::io(
                        format!("location {name}: reading the password"),
                        &e,
                    )),
                };
                ctx.finish(&run_id, &created, RunEnd::default()).await;
                if let Ok(repo) = &created {
                    tracing::info!(location = %name, repository = %label, "created repository");
                    ctx.remember(repo.clone()).await;
                }
                created.map(|repo| (repo, crate::model::status::InitStatus::Created))
            }
            Err(e) => Err(e),
        };
        if result.is_ok()
            && let crate::config::LocationKind::Local { path } = &location.kind
        {
            owner_only(path);
        }
        match result {
            Ok((repo, status)) => {
                reports.push(InitReport {
                    location: name,
                    repository: label,
                    repository_id: Some(repo.id()),
                    status,
                    error: None,
                    error_code: None,
                });
                chunker_from.get_or_insert(repo);
            }
            Err(err) => reports.push(InitReport {
                location: name,
                repository: label,
                repository_id: None,
                status: crate::model::status::InitStatus::Failed,
                error: Some(err.to_string()),
                error_code: Some(err.code()),
            }),
        }
    }
    Ok(reports)
}

/// A local repository is its owner's alone (restic's own mode, 0700): its key files and packs
/// are encrypted, but names, sizes and times are nobody else's business either.
fn owner_only(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
        && let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
    {
        tracing::warn!(
            "{} is readable by others and could not be made owner-only ({e}); chmod 700 it",
            path.display()
        );
    }
}
