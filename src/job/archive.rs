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
use crate::engine::pitr::{BaseInfo, Segment, gaps, parse_lsn};
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
}

/// The archive of each selected source (all that have one, or the one named).
///
/// # Errors
/// When the source has no archive or its primary location cannot be read.
pub async fn status(ctx: &Context, source: Option<&str>) -> Result<Vec<ArchiveStatus>, JobError> {
    let mut out = Vec::new();
    for s in super::wal::archived_sources(ctx, source)? {
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
            Ok((bases, repo.wal_files(&name)?, wal_snapshots))
        })
        .await?;
        let state = ArchiveState::load(&ctx.config.state_dir, &s.name);
        let now = crate::model::time::now();
        let names: Vec<String> = wal.iter().map(|f| f.name.clone()).collect();
        // The oldest base backup from whose end on the archive is unbroken opens the window.
        let mut window = None;
        let mut holes = Vec::new();
        let last_flush: Option<Timestamp> =
            state.last_flush.as_deref().and_then(|t| t.parse().ok());
        for base in &bases {
            let end = Segment::holding(
                base.info.timeline,
                parse_lsn(&base.info.end_lsn).unwrap_or(0),
            );
            let after: Vec<String> = names
                .iter()
                .filter(|n| Segment::parse(n).is_some_and(|seg| seg.number > end.number))
                .cloned()
                .chain(std::iter::once(end.name()))
                .collect();
            let found = gaps(&after);
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
        });
    }
    Ok(out)
}
