//! `custodian archive check`: whether each server source is ready for point-in-time recovery's
//! continuous archive — PostgreSQL's write-ahead log streamed by `pg_receivewal` from a
//! replication slot, MariaDB/MySQL's binary log by `mariadb-binlog` — each setting with what to
//! change. (The archiver itself is not built yet; this is what a server needs first.)

use super::doctor::{Report, finish};
use super::{Context, JobError};

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
