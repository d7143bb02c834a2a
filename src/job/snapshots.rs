//! `custodian snapshots`: what each repository actually holds (read from the repositories,
//! not from the catalog).

use serde::Serialize;

use super::{Context, JobError, blocking};
use crate::repo::SnapshotInfo;

/// The snapshots of one location.
#[derive(Clone, Debug, Serialize)]
pub struct LocationSnapshots {
    pub location: String,
    pub repository: String,
    pub snapshots: Vec<SnapshotInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
}

/// Lists snapshots per location, optionally of one source.
///
/// # Errors
/// For an unknown location or source name.
pub async fn snapshots(
    ctx: &Context,
    location: Option<&str>,
    source: Option<&str>,
) -> Result<Vec<LocationSnapshots>, JobError> {
    if let Some(source) = source {
        ctx.select_sources(Some(source))?;
    }
    let mut out = Vec::new();
    for location in ctx.select_locations(location)? {
        let listed = match ctx.repo(&location.name).await {
            Ok(repo) => blocking(move || repo.snapshots()).await,
            Err(e) => Err(e),
        };
        let mut entry = LocationSnapshots {
            location: location.name.clone(),
            repository: location.repository(),
            snapshots: Vec::new(),
            error: None,
            error_code: None,
        };
        match listed {
            Ok(list) => {
                entry.snapshots = list
                    .into_iter()
                    .filter(|s| source.is_none_or(|name| s.source.as_deref() == Some(name)))
                    .collect();
            }
            Err(err) => {
                entry.error = Some(err.to_string());
                entry.error_code = Some(err.code());
            }
        }
        out.push(entry);
    }
    Ok(out)
}
