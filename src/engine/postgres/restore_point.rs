//! The restore point a logical backup writes into the WAL of a source with a continuous
//! archive, right after exporting its snapshot, so that a PITR drill can recover to the very
//! moment of the backup and compare the recovered database with the backup's manifest.
//!
//! A snapshot and a WAL position are not the same thing: a transaction whose commit record
//! comes before the restore point may still have been invisible to the snapshot (its commit
//! was being flushed). The point is recorded as exact only when the server proves nothing of
//! the kind happened: no transaction with a transaction id was running when the snapshot was
//! taken (its list of in-progress ids is empty), none holds an id after the restore point was
//! written, and the server's snapshot taken after it is the snapshot the backup read. A busy
//! moment gives a point that is recorded but not exact; a drill compares only at exact ones.

use sqlx::postgres::PgConnection;

use super::Connect;
use crate::model::manifest::RestorePoint;

/// The longest name `pg_create_restore_point` takes (`MAXFNAMELEN` - 1).
const NAME_MAX: usize = 63;

/// A restore point's name for a backup of `source` taken at `at`.
fn name(source: &str, at: jiff::Timestamp) -> String {
    let stamp = at.strftime("%Y%m%dT%H%M%S%6fZ").to_string();
    let keep = NAME_MAX - "custodian--".len() - stamp.len();
    let source: String = source.chars().take(keep).collect();
    format!("custodian-{source}-{stamp}")
}

/// Whether a snapshot's text (`xmin:xmax:xip,…`) lists no transaction in progress.
fn none_in_progress(snapshot: &str) -> bool {
    snapshot.rsplit(':').next().is_some_and(str::is_empty)
}

/// Writes the restore point for the snapshot that `exporting` (the backup's transaction) reads.
/// `None` when the server refuses (a role without `pg_create_restore_point`): the backup goes
/// on without one, and says why in the log.
pub(super) async fn mark(
    source: &str,
    connect: &Connect,
    exporting: &mut PgConnection,
    at: jiff::Timestamp,
) -> Option<RestorePoint> {
    let result: Result<RestorePoint, sqlx::Error> = async {
        let read: String = sqlx::query_scalar("SELECT pg_current_snapshot()::text")
            .fetch_one(&mut *exporting)
            .await?;
        // In the `postgres` database: the grant this needs then stays out of the source
        // database's dumps (a restore as an ordinary role could not apply it). The WAL, the
        // snapshot and the sessions it checks are the cluster's, whatever the database.
        let mut other = connect.with_database("postgres").connect().await?;
        let name = name(source, at);
        let lsn: String = sqlx::query_scalar("SELECT pg_create_restore_point($1)::text")
            .bind(&name)
            .fetch_one(&mut other)
            .await?;
        // In this order: a transaction whose commit is still being written shows here with its
        // id; one that finished since shows in the snapshot after.
        let holding: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut other)
        .await?;
        let after: String = sqlx::query_scalar("SELECT pg_current_snapshot()::text")
            .fetch_one(&mut other)
            .await?;
        let _ = sqlx::Connection::close(other).await;
        Ok(RestorePoint {
            name,
            lsn,
            exact: none_in_progress(&read) && holding == 0 && after == read,
        })
    }
    .await;
    match result {
        Ok(point) => {
            tracing::debug!(
                source,
                point = point.name,
                exact = point.exact,
                "restore point written"
            );
            Some(point)
        }
        Err(e) => {
            tracing::warn!(
                source,
                error = %e,
                "the backup wrote no restore point (grant the role EXECUTE on pg_create_restore_point in the postgres database); PITR drills cannot compare the archive with it"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_server_limit() {
        let at = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(name("crm", at), "custodian-crm-20270115T080000000000Z");
        assert!(name(&"x".repeat(200), at).len() <= NAME_MAX);
    }

    #[test]
    fn only_a_snapshot_without_running_transactions_is_quiet() {
        assert!(none_in_progress("745:745:"));
        assert!(!none_in_progress("745:750:745,748"));
    }
}
