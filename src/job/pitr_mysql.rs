//! `custodian restore --to-time / --to-position / --to-latest --target URL` for a MariaDB/MySQL
//! source: the nearest logical backup before the target is restored into a new database (the
//! verified restore of any backup: staged, compared with its manifest, renamed into place),
//! then the archived binary logs are replayed onto it from the backup's own position (recorded
//! under its read lock) up to the target, rewritten to the new database's name. `CHECK TABLE`
//! then checks every table. A replay that fails drops the database it was building: the target
//! is never left half-done.
//!
//! What "up to a time" means is `mariadb-binlog --stop-datetime`: every event timestamped
//! before it. An event's timestamp is when its statement began, so a transaction that began
//! before the target and committed after it is replayed too (its rows are all there, never
//! half).

use std::path::PathBuf;
use std::time::Instant;

use super::pitr::{PitrOutcome, PitrPlan, PitrReport, PitrRequest};
use super::{Context, JobError, blocking};
use crate::config::SourceConfig;
use crate::engine::mysql::binlog::{self, ReplayStop};
use crate::engine::pitr::{BaseInfo, LogReplay, Recovered, RecoveryTarget};
use crate::model::naming::SnapshotKind;
use crate::repo::{Repo, SnapshotInfo};

fn refuse(message: impl Into<String>) -> JobError {
    JobError::Refused {
        code: "pitr.not_recoverable",
        message: message.into(),
    }
}

/// `FILE:POSITION`, as `--to-lsn` takes it for a MariaDB/MySQL source.
fn parse_position(text: &str) -> Option<(String, u64)> {
    let (file, pos) = text.rsplit_once(':')?;
    Some((file.to_string(), pos.parse().ok()?))
}

/// The logical backup a replay starts from and the binary logs it needs.
struct Plan {
    snapshot: SnapshotInfo,
    manifest: crate::model::Manifest,
    files: Vec<String>,
    bytes: u64,
    stop: ReplayStop,
}

impl Plan {
    /// The replay of this plan's binary logs, fetched into `dir`.
    fn replay(&self, dir: &std::path::Path) -> LogReplay {
        LogReplay {
            files: self.files.iter().map(|f| dir.join(f)).collect(),
            start_position: self.manifest.binlog.as_ref().map_or(0, |b| b.position),
            stop: self.stop.clone(),
            from_database: self.manifest.database.clone(),
        }
    }
}

async fn plan(repo: &Repo, req: &PitrRequest) -> Result<Plan, JobError> {
    plan_skipping(repo, req, None).await
}

/// The plan, never starting from the backup `skip` (a drill to a backup's own position starts
/// from the one before it, so that the replay has something to prove).
async fn plan_skipping(
    repo: &Repo,
    req: &PitrRequest,
    skip: Option<String>,
) -> Result<Plan, JobError> {
    let (r, source) = (repo.clone(), req.source.clone());
    let target = req.target.clone();
    let found = blocking(move || {
        let files = r.log_files(&source, SnapshotKind::Binlog)?;
        let mut backups: Vec<SnapshotInfo> = r
            .snapshots()?
            .into_iter()
            .filter(|b| b.is_committed_backup() && b.source.as_deref() == Some(source.as_str()))
            .collect();
        // Newest first: the nearest backup before the target replays the least.
        backups.reverse();
        backups.retain(|b| skip.as_ref() != Some(&b.id));
        let mut chosen = None;
        for snap in backups {
            let bytes = r.read_file(
                &snap.id,
                &crate::model::naming::file_path(&source, crate::model::naming::MANIFEST_FILE),
            )?;
            let Ok(manifest) = serde_json::from_slice::<crate::model::Manifest>(&bytes) else {
                continue;
            };
            let Some(at) = manifest.binlog.clone() else {
                continue;
            };
            let before = match &target {
                RecoveryTarget::Time(t) => manifest.taken_at <= *t,
                RecoveryTarget::Lsn(p) => parse_position(p).is_some_and(|(file, pos)| {
                    (at.file.as_str(), at.position) <= (file.as_str(), pos)
                }),
                RecoveryTarget::Latest | RecoveryTarget::RestorePoint(_) => true,
            };
            if before {
                chosen = Some((snap, manifest));
                break;
            }
        }
        Ok((files, chosen))
    })
    .await?;
    let (files, chosen) = found;
    let Some((snapshot, manifest)) = chosen else {
        return Err(refuse(format!(
            "source {} has no logical backup with a binary log position before {}; back it up with the binary log on (`custodian archive check`)",
            req.source, req.target
        )));
    };
    let start = manifest.binlog.clone().expect("chosen for its position");
    let (stop, last) = match &req.target {
        RecoveryTarget::Time(t) => (ReplayStop::Time(*t), None),
        RecoveryTarget::Lsn(p) => {
            let (file, pos) = parse_position(p).ok_or_else(|| {
                JobError::Usage(format!(
                    "`{p}` is not a binary log position; write it like mysql-bin.000042:1234"
                ))
            })?;
            (ReplayStop::Position(pos), Some(file))
        }
        RecoveryTarget::Latest => (ReplayStop::End, None),
        RecoveryTarget::RestorePoint(_) => {
            return Err(JobError::Usage(
                "restore points are PostgreSQL's; give a MariaDB/MySQL source --to-time, --to-lsn FILE:POSITION or --to-latest".into(),
            ));
        }
    };
    let needed: Vec<&crate::repo::WalFile> = files
        .iter()
        .filter(|f| binlog::is_binlog(&f.name) && f.name >= start.file)
        .filter(|f| last.as_ref().is_none_or(|l| f.name <= *l))
        .collect();
    if needed.first().is_none_or(|f| f.name != start.file) {
        return Err(refuse(format!(
            "the archive of source {} does not hold binary log {} where backup {} stands: it started later, or the log was purged before it was archived",
            req.source,
            start.file,
            snapshot.short_id()
        )));
    }
    if let Some(want) = &last
        && needed.last().is_none_or(|f| f.name != *want)
    {
        return Err(refuse(format!(
            "the archive of source {} does not hold binary log {want} yet: it ends at {}; let the archiver store it (`custodian archive status`)",
            req.source,
            needed.last().map_or("nothing", |f| f.name.as_str())
        )));
    }
    let names: Vec<String> = needed.iter().map(|f| f.name.clone()).collect();
    for pair in names.windows(2) {
        let num = |n: &str| n.rsplit_once('.').and_then(|(_, d)| d.parse::<u64>().ok());
        if let (Some(a), Some(b)) = (num(&pair[0]), num(&pair[1]))
            && b > a + 1
        {
            return Err(refuse(format!(
                "the archive of source {} misses binary logs between {} and {}: a replay cannot cross them",
                req.source, pair[0], pair[1]
            )));
        }
    }
    Ok(Plan {
        snapshot,
        manifest,
        bytes: needed.iter().map(|f| f.size).sum(),
        files: names,
        stop,
    })
}

fn as_plan(req: &PitrRequest, location: &str, p: &Plan) -> PitrPlan {
    let start = p.manifest.binlog.clone().expect("chosen for its position");
    PitrPlan {
        source: req.source.clone(),
        location: location.to_string(),
        target: req.target.clone(),
        target_dir: PathBuf::from(req.target_url.clone().unwrap_or_default()),
        base_snapshot: p.snapshot.id.clone(),
        base: BaseInfo {
            engine: "mysql".into(),
            start_lsn: format!("{}:{}", start.file, start.position),
            end_lsn: format!("{}:{}", start.file, start.position),
            timeline: 0,
            started: p.manifest.taken_at,
            finished: p.manifest.taken_at,
            server_version: p.manifest.method.clone(),
            system_identifier: start.gtid.unwrap_or_default(),
            // A logical dump: every binlog it needs is the archive's.
            wal_in_tar: false,
        },
        base_bytes: p.snapshot.bytes,
        wal_first: p.files.first().cloned(),
        wal_last: p.files.last().cloned(),
        wal_files: p.files.len(),
        wal_bytes: p.bytes,
        ends_in_partial: false,
    }
}

/// Plans, and unless `--preview`, restores and replays.
///
/// # Errors
/// When no backup and archive reach the target, the target database exists, or the restore
/// or replay fails (then the new database is dropped).
pub async fn restore_to_point(
    ctx: &Context,
    req: &PitrRequest,
    source: &SourceConfig,
) -> Result<PitrOutcome, JobError> {
    let target_url = req.target_url.clone().ok_or_else(|| {
        JobError::Usage(
            "a MariaDB/MySQL source is recovered into a new database: give --target mysql://USER@HOST/NEWDB".into(),
        )
    })?;
    let location = req
        .location
        .clone()
        .unwrap_or_else(|| source.primary().to_string());
    let repo = ctx.repo(&location).await?;
    let p = plan(&repo, req).await?;
    let shown = as_plan(req, &location, &p);
    if req.preview {
        return Ok(PitrOutcome::Preview(Box::new(shown)));
    }
    let cfg = source.server().expect("a server source");
    let password = match &req.target_password {
        Some(r) => Some(
            r.resolve()
                .map_err(|e| JobError::Usage(format!("the target password: {e}")))?,
        ),
        None => cfg
            .password
            .as_ref()
            .map(crate::secret::SecretRef::resolve)
            .transpose()
            .map_err(|e| JobError::Usage(format!("the source password: {e}")))?,
    };
    let target =
        crate::engine::mysql::Connect::new(&target_url, password).map_err(JobError::Usage)?;
    let database = target.database();
    if database.is_empty() {
        return Err(JobError::Usage(format!("{target_url} names no database")));
    }
    // Only a database that does not exist yet: on failure it is dropped, which is only
    // harmless for one this restore made.
    let server = target.with_database("");
    let mut conn = server
        .connect()
        .await
        .map_err(|e| refuse(format!("{}: {e}", server.server())))?;
    let exists: Option<String> = sqlx::query_scalar(
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(&database)
    .fetch_optional(&mut conn)
    .await
    .map_err(|e| refuse(e.to_string()))?;
    let _ = sqlx::Connection::close(conn).await;
    if exists.is_some() {
        return Err(refuse(format!(
            "database {database} exists on {}: a point-in-time restore builds a new database; name one that does not exist",
            target.server()
        )));
    }
    let run_id = ctx
        .start(
            RunKind::PitrRestore,
            Some(&source.name),
            Some(&location),
            None,
        )
        .await?;
    let result = execute(ctx, req, &repo, &p, shown, &target_url, &target, &run_id).await;
    if result.is_err() {
        drop_database(&target, &database).await;
    }
    let end = match &result {
        Ok(r) => crate::catalog::RunEnd {
            bytes_read: Some(r.plan.base_bytes + r.plan.wal_bytes),
            details: Some(serde_json::json!({
                "target": r.plan.target,
                "backup": r.plan.base_snapshot,
                "recovered": r.recovered,
            })),
            ..crate::catalog::RunEnd::default()
        },
        Err(_) => crate::catalog::RunEnd::default(),
    };
    ctx.finish(&run_id, &result, end).await;
    Ok(PitrOutcome::Recovered(Box::new(result?)))
}

use crate::catalog::RunKind;

async fn drop_database(target: &crate::engine::mysql::Connect, database: &str) {
    if let Ok(mut conn) = target.with_database("").connect().await {
        let sql = format!(
            "DROP DATABASE IF EXISTS {}",
            crate::engine::mysql::quote_ident(database)
        );
        if let Err(e) = sqlx::query(&sql).execute(&mut conn).await {
            tracing::error!(database, error = %e, "could not drop the half-made database; drop it by hand");
        }
        let _ = sqlx::Connection::close(conn).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    ctx: &Context,
    req: &PitrRequest,
    repo: &Repo,
    p: &Plan,
    shown: PitrPlan,
    target_url: &str,
    target: &crate::engine::mysql::Connect,
    run_id: &str,
) -> Result<PitrReport, JobError> {
    let t = Instant::now();
    super::restore(
        ctx,
        &req.verified_restore(p.snapshot.id.clone(), target_url.to_string()),
    )
    .await?;
    let fetch_base_seconds = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let work = crate::engine::private_workdir(&ctx.config.scratch_dir(), "binlog-replay-")?;
    let dir = work.path().join("binlog");
    std::fs::create_dir(&dir)
        .map_err(|e| JobError::io(format!("creating {}", dir.display()), &e))?;
    {
        let (repo, source, wanted, dir) = (
            repo.clone(),
            req.source.clone(),
            p.files
                .iter()
                .map(|f| (f.clone(), f.clone()))
                .collect::<Vec<_>>(),
            dir.clone(),
        );
        blocking(move || {
            repo.fetch_log(
                &source,
                SnapshotKind::Binlog,
                &wanted,
                &dir,
                &mut |_| Ok(()),
            )
        })
        .await?;
    }
    let fetch_wal_seconds = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let start = p.manifest.binlog.clone().expect("chosen for its position");
    let replay = p.replay(&dir);
    let replay_failed = |m: String| {
        JobError::Engine(crate::engine::EngineError::RestoreFailed {
            target: target.describe(),
            message: m,
        })
    };
    binlog::replay(target, work.path(), &replay)
        .await
        .map_err(|m| replay_failed(format!("replaying the binary logs failed: {m}")))?;
    let replay_seconds = t.elapsed().as_secs_f64();

    // Every table checked by the server itself.
    let checked = binlog::check_tables(target)
        .await
        .map_err(|e| replay_failed(format!("CHECK TABLE could not run: {e}")))?;
    if !checked.problems.is_empty() {
        return Err(JobError::Verification(format!(
            "CHECK TABLE found problems: {}",
            checked.problems.join("; ")
        )));
    }
    let stop = match &p.stop {
        ReplayStop::Time(t) => format!("replayed every event timestamped before {t}"),
        ReplayStop::Position(pos) => format!(
            "replayed up to position {pos} of {}",
            p.files.last().cloned().unwrap_or_default()
        ),
        ReplayStop::End => "replayed the whole archive".to_string(),
    };
    Ok(PitrReport {
        run_id: run_id.to_string(),
        plan: shown,
        recovered: Recovered {
            stop: format!(
                "{stop}: binary logs {} to {} from {}:{} onto backup {}; CHECK TABLE passed on {} tables",
                p.files.first().cloned().unwrap_or_default(),
                p.files.last().cloned().unwrap_or_default(),
                start.file,
                start.position,
                p.snapshot.short_id(),
                checked.checked
            ),
            last_transaction: None,
            end_lsn: p.files.last().cloned().unwrap_or_default(),
            timeline: 0,
            replay_seconds,
        },
        fetch_base_seconds,
        fetch_wal_seconds,
        replay_seconds,
        started_on_port: None,
        moved_into: None,
    })
}

/// A PITR drill of a MariaDB/MySQL source, planned: the logical backup it loads into the
/// scratch instance, the archived binary logs it replays onto it, and — when the target is a
/// later backup's own binary log position — that backup, whose manifest the result must match.
pub(super) struct DrillReplay {
    pub snapshot: SnapshotInfo,
    /// `pitr-random`, `pitr-latest`, `pitr-time` or `pitr-backup`.
    pub selection: &'static str,
    pub target: RecoveryTarget,
    plan: Plan,
    pub compare: Option<(SnapshotInfo, crate::model::Manifest)>,
}

impl DrillReplay {
    /// Fetches the binary logs into `dir` (private) and says how to replay them.
    ///
    /// # Errors
    /// When the repository cannot be read.
    pub async fn fetch(&self, repo: &Repo, dir: &std::path::Path) -> Result<LogReplay, JobError> {
        let (repo, source, dir2) = (
            repo.clone(),
            self.plan.manifest.source.clone(),
            dir.to_path_buf(),
        );
        let wanted: Vec<(String, String)> = self
            .plan
            .files
            .iter()
            .map(|f| (f.clone(), f.clone()))
            .collect();
        blocking(move || {
            repo.fetch_log(&source, SnapshotKind::Binlog, &wanted, &dir2, &mut |_| {
                Ok(())
            })
        })
        .await?;
        Ok(self.plan.replay(dir))
    }

    /// What the replay covers, in one sentence.
    #[must_use]
    pub fn describe(&self) -> String {
        let start =
            self.plan
                .manifest
                .binlog
                .clone()
                .unwrap_or(crate::model::manifest::BinlogPosition {
                    file: String::new(),
                    position: 0,
                    gtid: None,
                });
        format!(
            "binary logs {} to {} ({} bytes) from {}:{} onto backup {}, up to {}",
            self.plan.files.first().cloned().unwrap_or_default(),
            self.plan.files.last().cloned().unwrap_or_default(),
            self.plan.bytes,
            start.file,
            start.position,
            self.snapshot.short_id(),
            self.target
        )
    }
}

/// Plans a PITR drill of `source` from `location` to `point`: `random` (a second of the
/// recoverable window), `latest`, `backup` (the newest backup's own binary log position,
/// replayed from the backup before it) or a time.
///
/// # Errors
/// When the archive cannot reach the point.
pub(super) async fn drill_plan(
    ctx: &Context,
    source: &str,
    location: &str,
    point: &str,
) -> Result<DrillReplay, JobError> {
    let repo = ctx.repo(location).await?;
    let (target, selection, compare) = if point == "backup" {
        let (r, s) = (repo.clone(), source.to_string());
        let found = blocking(move || {
            let mut backups: Vec<SnapshotInfo> = r
                .snapshots()?
                .into_iter()
                .filter(|b| b.is_committed_backup() && b.source.as_deref() == Some(s.as_str()))
                .collect();
            backups.reverse();
            // The newest backup with a position that has an older one with a position.
            let mut with_position = Vec::new();
            for snap in backups {
                let bytes = r.read_file(
                    &snap.id,
                    &crate::model::naming::file_path(&s, crate::model::naming::MANIFEST_FILE),
                )?;
                if let Ok(m) = serde_json::from_slice::<crate::model::Manifest>(&bytes)
                    && m.binlog.is_some()
                {
                    with_position.push((snap, m));
                    if with_position.len() == 2 {
                        break;
                    }
                }
            }
            Ok(with_position)
        })
        .await?;
        if found.len() < 2 {
            return Err(refuse(format!(
                "source {source} has fewer than two logical backups with a binary log position: a drill to a backup's position replays from the one before it; take another backup first"
            )));
        }
        let (snap, manifest) = found.into_iter().next().expect("two");
        let at = manifest.binlog.clone().expect("has a position");
        (
            RecoveryTarget::Lsn(format!("{}:{}", at.file, at.position)),
            "pitr-backup",
            Some((snap, manifest)),
        )
    } else {
        let (target, selection) = super::pitr_drill::choose_target(ctx, source, point).await?;
        (target, selection, None)
    };
    let req = PitrRequest {
        source: source.to_string(),
        target: target.clone(),
        target_dir: PathBuf::new(),
        location: Some(location.to_string()),
        preview: true,
        start_port: None,
        target_url: None,
        target_password: None,
        point_lsn: None,
    };
    let plan = plan_skipping(&repo, &req, compare.as_ref().map(|(s, _)| s.id.clone())).await?;
    Ok(DrillReplay {
        snapshot: plan.snapshot.clone(),
        selection,
        target,
        plan,
        compare,
    })
}
