//! `custodian archive check`: whether each server source is ready for point-in-time recovery's
//! continuous archive — PostgreSQL's write-ahead log streamed by `pg_receivewal` from a
//! replication slot, MariaDB/MySQL's binary log by `mariadb-binlog` — each setting with what to
//! change; and `custodian archive status`: what each archive holds and the window it can
//! recover (the archiver itself is `wal.rs`).

use jiff::Timestamp;
use serde::Serialize;

use super::base_backup::BASE_INFO;
use super::doctor::{Report, finish};
use super::wal::ArchiveState;
use super::{Context, JobError, blocking};
use crate::engine::pitr::BaseInfo;
use crate::model::naming::SnapshotKind;

/// Checks the selected sources (all, or the one named).
///
/// # Errors
/// When `source` names no configured source.
pub async fn check(ctx: &Context, source: Option<&str>) -> Result<Report, JobError> {
    let scratch = ctx.config.scratch_dir();
    let mut findings = Vec::new();
    for s in ctx.select_sources(source)? {
        let engine = crate::engine::of(s.engine());
        findings.extend(engine.archive_preflight(&s.name, &s.kind, &scratch).await);
    }
    Ok(finish(None, findings))
}

/// The recoverable window of an archive: any second from `from` to `to`.
#[derive(Clone, Debug, Serialize)]
pub struct Window {
    #[serde(with = "crate::model::time::serde_utc")]
    pub from: Timestamp,
    #[serde(with = "crate::model::time::serde_utc")]
    pub to: Timestamp,
}

/// One base backup, as the status lists it.
#[derive(Clone, Debug, Serialize)]
pub struct BaseSummary {
    pub snapshot: String,
    pub info: BaseInfo,
    pub bytes: u64,
}

/// The continuous archive of one source, in its primary location.
#[derive(Clone, Debug, Serialize)]
pub struct ArchiveStatus {
    pub source: String,
    pub location: String,
    pub state: ArchiveState,
    /// Seconds since the last complete flush.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    pub wal_files: usize,
    pub wal_bytes: u64,
    pub wal_snapshots: usize,
    pub base_backups: Vec<BaseSummary>,
    /// Any second in it can be recovered; `None` without a base backup followed by an unbroken
    /// archive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// Missing WAL segments (`first..last`) after the oldest base backup.
    pub gaps: Vec<(String, String)>,
    /// MariaDB/MySQL: the logical backup the window opens at (a replay starts from its binary
    /// log position).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens_at_backup: Option<String>,
}

/// The archive of each selected source (all that have one, or the one named).
///
/// # Errors
/// When the source has no archive or its primary location cannot be read.
pub async fn status(ctx: &Context, source: Option<&str>) -> Result<Vec<ArchiveStatus>, JobError> {
    let mut out = Vec::new();
    for s in super::wal::archived_sources(ctx, source)? {
        if super::wal::log_kind(&s) == SnapshotKind::Binlog {
            out.push(binlog_status(ctx, &s).await?);
            continue;
        }
        let location = s.primary().to_string();
        let repo = ctx.repo(&location).await?;
        let name = s.name.clone();
        let (bases, wal, wal_snapshots) = blocking(move || {
            let mut bases = Vec::new();
            for snap in repo.snapshots_of(SnapshotKind::Base, &name)? {
                let mut json = Vec::new();
                repo.dump_base_file(&snap.id, &name, BASE_INFO, &mut json)?;
                if let Ok(info) = serde_json::from_slice::<BaseInfo>(&json) {
                    bases.push(BaseSummary {
                        snapshot: snap.id,
                        info,
                        bytes: snap.bytes,
                    });
                }
            }
            let wal_snapshots = repo.snapshots_of(SnapshotKind::Wal, &name)?.len();
            Ok((
                bases,
                repo.log_files(&name, SnapshotKind::Wal)?,
                wal_snapshots,
            ))
        })
        .await?;
        let state = ArchiveState::load(&ctx.config.state_dir, &s.name);
        let now = crate::model::time::now();
        let names: Vec<String> = wal.iter().map(|f| f.name.clone()).collect();
        // The oldest base backup from whose WAL on the archive is unbroken opens the window.
        let mut window = None;
        let mut holes = Vec::new();
        let last_flush: Option<Timestamp> =
            state.last_flush.as_deref().and_then(|t| t.parse().ok());
        for base in &bases {
            let found = base.info.archive_holes(&names);
            if holes.is_empty() {
                holes.clone_from(&found);
            }
            if found.is_empty()
                && let Some(to) = last_flush
                && to >= base.info.finished
            {
                window = Some(Window {
                    from: base.info.finished,
                    to,
                });
                break;
            }
        }
        out.push(ArchiveStatus {
            source: s.name.clone(),
            location,
            lag_seconds: state.lag_seconds(now),
            state,
            wal_files: wal.len(),
            wal_bytes: wal.iter().map(|f| f.size).sum(),
            wal_snapshots,
            base_backups: bases,
            window,
            gaps: holes,
            opens_at_backup: None,
        });
    }
    Ok(out)
}

/// The oldest logical backup of a MariaDB/MySQL source whose binary log position the archive
/// holds (from there on, every second can be recovered), oldest first among `snaps`.
pub(super) fn replay_start(
    repo: &crate::repo::Repo,
    source: &str,
    snaps: &[crate::repo::SnapshotInfo],
    oldest_archived: &str,
) -> Result<Option<(crate::repo::SnapshotInfo, crate::model::Manifest)>, crate::repo::RepoError> {
    for snap in snaps {
        let bytes = repo.read_file(
            &snap.id,
            &crate::model::naming::file_path(source, crate::model::naming::MANIFEST_FILE),
        )?;
        let Ok(manifest) = serde_json::from_slice::<crate::model::Manifest>(&bytes) else {
            continue;
        };
        if manifest
            .binlog
            .as_ref()
            .is_some_and(|b| b.file.as_str() >= oldest_archived)
        {
            return Ok(Some((snap.clone(), manifest)));
        }
    }
    Ok(None)
}

/// Binary logs missing between archived ones (`first..last`): numbers skipped in a sequence.
fn binlog_gaps(names: &[String]) -> Vec<(String, String)> {
    let mut nums: Vec<(String, u64, usize)> = names
        .iter()
        .filter_map(|n| {
            let (base, num) = n.rsplit_once('.')?;
            Some((base.to_string(), num.parse().ok()?, num.len()))
        })
        .collect();
    nums.sort();
    nums.windows(2)
        .filter(|w| w[0].0 == w[1].0 && w[1].1 > w[0].1 + 1)
        .map(|w| {
            let (base, width) = (&w[0].0, w[0].2);
            (
                format!("{base}.{:0width$}", w[0].1 + 1),
                format!("{base}.{:0width$}", w[1].1 - 1),
            )
        })
        .collect()
}

async fn binlog_status(
    ctx: &Context,
    s: &crate::config::SourceConfig,
) -> Result<ArchiveStatus, JobError> {
    let location = s.primary().to_string();
    let repo = ctx.repo(&location).await?;
    let name = s.name.clone();
    let (files, snapshots, start) = blocking(move || {
        let files = repo.log_files(&name, SnapshotKind::Binlog)?;
        let snapshots = repo.snapshots_of(SnapshotKind::Binlog, &name)?.len();
        let backups: Vec<_> = repo
            .snapshots()?
            .into_iter()
            .filter(|b| b.is_committed_backup() && b.source.as_deref() == Some(name.as_str()))
            .collect();
        let oldest = files.iter().map(|f| f.name.clone()).min();
        let start = match oldest {
            Some(oldest) => replay_start(&repo, &name, &backups, &oldest)?,
            None => None,
        };
        Ok((files, snapshots, start))
    })
    .await?;
    let state = ArchiveState::load(&ctx.config.state_dir, &s.name);
    let names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
    let last_flush: Option<Timestamp> = state.last_flush.as_deref().and_then(|t| t.parse().ok());
    let window = match (&start, last_flush) {
        (Some((_, manifest)), Some(to)) if to >= manifest.taken_at => Some(Window {
            from: manifest.taken_at,
            to,
        }),
        _ => None,
    };
    Ok(ArchiveStatus {
        source: s.name.clone(),
        location,
        lag_seconds: state.lag_seconds(crate::model::time::now()),
        state,
        wal_files: files.len(),
        wal_bytes: files.iter().map(|f| f.size).sum(),
        wal_snapshots: snapshots,
        base_backups: Vec::new(),
        window,
        gaps: binlog_gaps(&names),
        opens_at_backup: start.map(|(snap, _)| snap.id),
    })
}
