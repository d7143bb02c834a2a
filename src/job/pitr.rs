//! `custodian restore --to-time / --to-lsn / --to-restore-point / --to-latest --target-dir`:
//! a PostgreSQL source recovered to a point in time from its base backups and its continuous
//! archive, into a new data directory.
//!
//! The plan comes first and is all `--preview` prints: the newest base backup that ends before
//! the target, and the archived WAL from its start up to the segment that holds the target.
//! A plan with a hole in that WAL is refused before anything is written. Then the base backup
//! is unpacked into the target directory (streamed from the repository into `tar`), the WAL is
//! fetched into a private directory, and the server replays it to the target and promotes
//! (`engine::postgres::recovery`). The server's own account of where it stopped is checked
//! against the target and reported; a recovery that fails leaves no target directory behind.

use std::path::{Path, PathBuf};
use std::time::Instant;

use jiff::Timestamp;
use serde::Serialize;

use super::base_backup::{BASE_INFO, BASE_TAR};
use super::{Context, JobError, blocking};
use crate::catalog::{RunEnd, RunKind};
use crate::config::SourceKind;
use crate::engine::pitr::{BaseInfo, Recovered, RecoveryTarget, Segment, is_history, parse_lsn};
use crate::engine::scratch::{RunAs, make_private_dir};
use crate::model::naming::SnapshotKind;
use crate::repo::{Repo, WalFile};

/// A restore to a point in time.
#[derive(Clone, Debug)]
pub struct PitrRequest {
    pub source: String,
    pub target: RecoveryTarget,
    /// The new data directory (must not exist, or be empty).
    pub target_dir: PathBuf,
    pub location: Option<String>,
    /// Only print the plan.
    pub preview: bool,
    /// Start the recovered server on this TCP port and leave it running.
    pub start_port: Option<u16>,
    /// MariaDB/MySQL: the new database to restore into and replay onto (no password in it).
    pub target_url: Option<String>,
    /// Its server's password (default: the source's).
    pub target_password: Option<crate::secret::SecretRef>,
    /// Where a restore point target stands, when known (a backup's own): it chooses the base
    /// backup and bounds the WAL fetched, as a WAL position target does.
    pub point_lsn: Option<String>,
}

impl PitrRequest {
    /// The verified logical restore that brings a recovered database (a backup's snapshot, or
    /// a dump of the recovered cluster: `snapshot` empty) into `--target URL`.
    pub(super) fn verified_restore(
        &self,
        snapshot: String,
        target: String,
    ) -> super::RestoreRequest {
        super::RestoreRequest {
            snapshot,
            to: None,
            target: Some(target),
            target_password: self.target_password.clone(),
            location: self.location.clone(),
            source: Some(self.source.clone()),
            force: false,
            jobs: 0,
            with_globals: false,
        }
    }
}

/// What a recovery to a point in time will use.
#[derive(Clone, Debug, Serialize)]
pub struct PitrPlan {
    pub source: String,
    pub location: String,
    pub target: RecoveryTarget,
    pub target_dir: PathBuf,
    pub base_snapshot: String,
    pub base: BaseInfo,
    pub base_bytes: u64,
    /// The WAL files fetched (first and last segment, how many, their size).
    pub wal_first: Option<String>,
    pub wal_last: Option<String>,
    pub wal_files: usize,
    pub wal_bytes: u64,
    /// Whether the last segment is still partial (received but not complete).
    pub ends_in_partial: bool,
}

/// What a recovery did.
#[derive(Clone, Debug, Serialize)]
pub struct PitrReport {
    pub run_id: String,
    pub plan: PitrPlan,
    pub recovered: Recovered,
    /// Seconds per phase: fetching the base backup, fetching WAL, replaying.
    pub fetch_base_seconds: f64,
    pub fetch_wal_seconds: f64,
    pub replay_seconds: f64,
    /// The port the recovered server listens on, when `--start` left it running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_on_port: Option<u16>,
    /// `--target URL`: the recovered database, moved into that server by a verified restore.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_into: Option<super::pitr_target::MovedInto>,
}

impl PitrReport {
    /// The report of a PostgreSQL recovery by [`recover_into`], once its server is stopped.
    pub(super) fn recovered(run_id: &str, plan: PitrPlan, stopped: Stopped) -> Self {
        Self {
            run_id: run_id.to_string(),
            replay_seconds: stopped.recovered.replay_seconds,
            plan,
            recovered: stopped.recovered,
            fetch_base_seconds: stopped.fetch_base_seconds,
            fetch_wal_seconds: stopped.fetch_wal_seconds,
            started_on_port: None,
            moved_into: None,
        }
    }
}

/// The result: a plan only (`--preview`), or a recovery.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum PitrOutcome {
    Preview(Box<PitrPlan>),
    Recovered(Box<PitrReport>),
}

fn refuse(message: impl Into<String>) -> JobError {
    JobError::Refused {
        code: "pitr.not_recoverable",
        message: message.into(),
    }
}

/// Reads `2026-12-01 21:10:00.123+00` (PostgreSQL's text form) as a timestamp.
#[must_use]
pub fn parse_pg_time(text: &str) -> Option<Timestamp> {
    let t = text.trim().replacen(' ', "T", 1);
    let t = match t.rfind(['+', '-']) {
        Some(i) if i > 10 && t.len() - i == 3 => format!("{t}:00"),
        _ => t,
    };
    t.parse().ok()
}

/// Runs a recovery to a point in time (or only plans it).
///
/// # Errors
/// When the source has no base backup before the target, the archive has a hole before it,
/// the target directory is not empty, or recovery fails.
pub async fn restore_to_point(ctx: &Context, req: &PitrRequest) -> Result<PitrOutcome, JobError> {
    let source = ctx.select_sources(Some(&req.source))?.remove(0);
    let cfg = match &source.kind {
        SourceKind::Postgres(cfg) => cfg,
        SourceKind::Mysql(_) => {
            return super::pitr_mysql::restore_to_point(ctx, req, &source).await;
        }
        SourceKind::Sqlite { .. } => {
            return Err(JobError::Usage(format!(
                "source {} is an SQLite file: it has no log to recover from; restore a snapshot",
                source.name
            )));
        }
    };
    if req.target_dir.as_os_str().is_empty() == req.target_url.is_none() {
        return Err(JobError::Usage(
            "a PostgreSQL source is recovered into a new data directory (--target-dir DIR) or, through a scratch cluster, into a new database of a server (--target postgres://USER@HOST/NEWDB): give one of them"
                .into(),
        ));
    }
    let location = req
        .location
        .clone()
        .unwrap_or_else(|| source.primary().to_string());
    let repo = ctx.repo(&location).await?;
    let (plan, wal) = plan(&repo, req, &location).await?;
    if req.preview {
        return Ok(PitrOutcome::Preview(Box::new(plan)));
    }
    let run_id = ctx
        .start(
            RunKind::PitrRestore,
            Some(&source.name),
            Some(&location),
            None,
        )
        .await?;
    let role = url::Url::parse(&cfg.url)
        .ok()
        .map(|u| u.username().to_string())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres".into());
    let database = url::Url::parse(&cfg.url)
        .ok()
        .map(|u| u.path().trim_start_matches('/').to_string())
        .unwrap_or_default();
    let result = match &req.target_url {
        Some(_) => {
            super::pitr_target::recover_into_server(
                ctx, req, &repo, plan, &wal, cfg, &role, &database, &run_id,
            )
            .await
        }
        None => execute(ctx, req, &repo, plan, &wal, &role, &database, &run_id).await,
    };
    let end = match &result {
        Ok(r) => RunEnd {
            bytes_read: Some(r.plan.base_bytes + r.plan.wal_bytes),
            details: Some(serde_json::json!({
                "target": r.plan.target,
                "base_snapshot": r.plan.base_snapshot,
                "recovered": r.recovered,
                "target_dir": r.plan.target_dir,
            })),
            ..RunEnd::default()
        },
        Err(_) => RunEnd::default(),
    };
    ctx.finish(&run_id, &result, end).await;
    Ok(PitrOutcome::Recovered(Box::new(result?)))
}

/// The base backup and WAL a recovery to the target needs, and the WAL files to fetch (name
/// in the archive, name to give it).
pub(super) async fn plan(
    repo: &Repo,
    req: &PitrRequest,
    location: &str,
) -> Result<(PitrPlan, Vec<(String, String)>), JobError> {
    let (repo2, source) = (repo.clone(), req.source.clone());
    let (bases, wal) = blocking(move || {
        let mut bases = Vec::new();
        for snap in repo2.snapshots_of(SnapshotKind::Base, &source)? {
            let mut json = Vec::new();
            repo2.dump_base_file(&snap.id, &source, BASE_INFO, &mut json)?;
            if let Ok(info) = serde_json::from_slice::<BaseInfo>(&json) {
                bases.push((snap, info));
            }
        }
        Ok((bases, repo2.log_files(&source, SnapshotKind::Wal)?))
    })
    .await?;
    let bound = match (&req.target, &req.point_lsn) {
        (RecoveryTarget::Lsn(l), _) | (RecoveryTarget::RestorePoint(_), Some(l)) => parse_lsn(l),
        _ => None,
    };
    let fits = |info: &BaseInfo| match &req.target {
        RecoveryTarget::Time(t) => info.finished <= *t,
        RecoveryTarget::Lsn(_) | RecoveryTarget::RestorePoint(_) if bound.is_some() => bound
            .zip(parse_lsn(&info.end_lsn))
            .is_some_and(|(want, end)| end <= want),
        RecoveryTarget::Lsn(_) => false,
        RecoveryTarget::RestorePoint(_) | RecoveryTarget::Latest => true,
    };
    let Some((snap, base)) = bases.iter().rev().find(|(_, info)| fits(info)).cloned() else {
        return Err(refuse(match bases.first() {
            None => format!(
                "source {} has no base backup in location {location}; run `custodian base-backup --source {}` (and keep the archive running)",
                req.source, req.source
            ),
            Some((_, oldest)) => format!(
                "no base backup of source {} ends before {}; the oldest ended at {} (WAL position {})",
                req.source, req.target, oldest.finished, oldest.end_lsn
            ),
        }));
    };
    let (start, end) = base.segments();
    // Segments from the base backup's start on, up to the one holding the target.
    let mut segments: Vec<(&WalFile, Segment)> = wal
        .iter()
        .filter_map(|f| Segment::parse(&f.name).map(|s| (f, s)))
        .filter(|(_, s)| s.number >= start.number && s.timeline >= base.timeline)
        .collect();
    segments.sort_by_key(|(f, s)| (s.number, s.timeline, f.name.ends_with(".partial")));
    let last_needed = match &req.target {
        RecoveryTarget::Time(t) => segments
            .iter()
            .find(|(f, _)| f.mtime >= *t)
            .map(|(_, s)| s.number),
        RecoveryTarget::Lsn(_) | RecoveryTarget::RestorePoint(_) => {
            bound.map(|l| l / crate::engine::pitr::SEGMENT_SIZE)
        }
        RecoveryTarget::Latest => None,
    };
    if let Some(last) = last_needed {
        segments.retain(|(_, s)| s.number <= last);
    }
    // A segment archived whole replaces its partial versions.
    let complete: std::collections::HashSet<&str> = segments
        .iter()
        .filter(|(f, _)| !f.name.ends_with(".partial"))
        .map(|(f, _)| f.name.as_str())
        .collect();
    segments.retain(|(f, _)| {
        f.name
            .strip_suffix(".partial")
            .is_none_or(|whole| !complete.contains(whole))
    });
    // A base backup with its WAL in the tar needs the archive from its end on; one without,
    // from its start.
    let names: Vec<String> = segments.iter().map(|(f, _)| f.name.clone()).collect();
    let holes = base.archive_holes(&names);
    if !base.wal_in_tar
        && holes
            .first()
            .is_some_and(|(first, _)| *first == start.name())
    {
        return Err(refuse(format!(
            "the archive of source {} does not hold WAL segment {}, where base backup {} starts: recovery cannot start from it; use an older base backup, or take a new one with the archiver running",
            req.source,
            start.name(),
            &snap.id[..8]
        )));
    }
    if let Some((first, last)) = holes.first() {
        return Err(refuse(format!(
            "the archive of source {} misses WAL segments {first} to {last} between the base backup and {}: recovery cannot cross them; recover to a point before {first}, or from a base backup taken after it",
            req.source, req.target
        )));
    }
    // Only the end of the archive may be reached with the base backup's own WAL alone.
    let archived_past_base = segments.last().is_some_and(|(_, s)| s.number >= end.number);
    if !archived_past_base && (req.target != RecoveryTarget::Latest || !base.wal_in_tar) {
        let latest = if base.wal_in_tar {
            " Recover --to-latest to get the base backup's own end"
        } else {
            ""
        };
        return Err(refuse(format!(
            "the archive of source {} holds no WAL after base backup {} (it ends before the base backup does); is the archiver running?{latest}",
            req.source,
            &snap.id[..8]
        )));
    }
    // A partial segment is handed to the server under its segment's name: replay reads it
    // up to its last complete record.
    let mut fetch: Vec<(String, String)> = segments
        .iter()
        .map(|(f, _)| {
            (
                f.name.clone(),
                f.name.trim_end_matches(".partial").to_string(),
            )
        })
        .collect();
    fetch.extend(
        wal.iter()
            .filter(|f| is_history(&f.name))
            .map(|f| (f.name.clone(), f.name.clone())),
    );
    let wal_bytes = segments.iter().map(|(f, _)| f.size).sum::<u64>()
        + wal
            .iter()
            .filter(|f| is_history(&f.name))
            .map(|f| f.size)
            .sum::<u64>();
    let plan = PitrPlan {
        source: req.source.clone(),
        location: location.to_string(),
        target: req.target.clone(),
        target_dir: req.target_dir.clone(),
        base_snapshot: snap.id.clone(),
        base,
        base_bytes: snap.bytes,
        wal_first: segments.first().map(|(f, _)| f.name.clone()),
        wal_last: segments.last().map(|(f, _)| f.name.clone()),
        wal_files: segments.len(),
        wal_bytes,
        ends_in_partial: segments
            .last()
            .is_some_and(|(f, _)| f.name.ends_with(".partial")),
    };
    Ok((plan, fetch))
}

/// An empty directory is accepted; anything else is refused (a recovery never overwrites).
/// The server runs as `run_as` when Custodian is root: it must be able to reach the directory.
fn prepare_target(dir: &Path, run_as: Option<RunAs>) -> Result<(), JobError> {
    if let Some(user) = run_as {
        use std::os::unix::fs::MetadataExt;
        for parent in dir.ancestors().skip(1) {
            let Ok(meta) = std::fs::metadata(parent) else {
                continue;
            };
            let searchable = meta.mode() & 0o001 != 0
                || (meta.uid() == user.uid && meta.mode() & 0o100 != 0)
                || (meta.gid() == user.gid && meta.mode() & 0o010 != 0);
            if !searchable {
                return Err(refuse(format!(
                    "the recovered server runs as uid {} (drills.scratch-user) and cannot reach {}: {} is not searchable by it; choose a directory it can reach (e.g. under /var/lib/postgresql with scratch-user = \"postgres\")",
                    user.uid,
                    dir.display(),
                    parent.display()
                )));
            }
        }
    }
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map_err(|e| JobError::io(format!("reading {}", dir.display()), &e))?
            .next()
            .is_none();
        if !empty {
            return Err(refuse(format!(
                "{} is not empty: a recovery only writes a new data directory; give a new path",
                dir.display()
            )));
        }
        std::fs::remove_dir(dir)
            .map_err(|e| JobError::io(format!("preparing {}", dir.display()), &e))?;
    }
    make_private_dir(dir, run_as)
        .map_err(|e| JobError::io(format!("creating {}", dir.display()), &e))
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    ctx: &Context,
    req: &PitrRequest,
    repo: &Repo,
    plan: PitrPlan,
    wal: &[(String, String)],
    role: &str,
    database: &str,
    run_id: &str,
) -> Result<PitrReport, JobError> {
    let run_as =
        RunAs::resolve(ctx.config.drills.scratch_user.as_deref()).map_err(JobError::Usage)?;
    prepare_target(&req.target_dir, run_as)?;
    // From here on, a failure removes the half-made data directory.
    let mut guard = crate::engine::scratch::RemoveOnDrop(Some(req.target_dir.clone()));
    let dest = Destination {
        dir: &req.target_dir,
        role,
        database,
        run_id,
        run_as,
    };
    let recovery = recover_into(ctx, repo, &plan, wal, &dest).await?;
    let stopped = recovery.stop().await?;
    let started_on_port = match req.start_port {
        Some(port) => {
            crate::engine::postgres::recovery::start(&req.target_dir, port, run_as).await?;
            Some(port)
        }
        None => None,
    };
    guard.0 = None;
    Ok(PitrReport {
        started_on_port,
        ..PitrReport::recovered(run_id, plan, stopped)
    })
}

/// Where a recovery goes: the (prepared, empty) data directory, the source's role and
/// database, and the identity the server runs as.
pub(super) struct Destination<'a> {
    pub dir: &'a Path,
    pub role: &'a str,
    pub database: &'a str,
    pub run_id: &'a str,
    pub run_as: Option<RunAs>,
}

/// A recovered cluster, its server still running on a private socket.
pub(super) struct Recovery {
    pub recovered: Recovered,
    pub server: crate::engine::postgres::recovery::Running,
    pub fetch_base_seconds: f64,
    pub fetch_wal_seconds: f64,
    /// The private working directory (socket, log, fetched WAL), removed after the server.
    pub work: PathBuf,
    _work: crate::engine::scratch::RemoveOnDrop,
}

/// A recovery whose server was stopped: what it recovered and how long the fetches took. Its
/// working directory goes when it is dropped.
pub(super) struct Stopped {
    pub recovered: Recovered,
    pub fetch_base_seconds: f64,
    pub fetch_wal_seconds: f64,
    _work: crate::engine::scratch::RemoveOnDrop,
}

impl Recovery {
    /// Stops the recovered server (the data directory stays, shut down cleanly).
    pub(super) async fn stop(self) -> Result<Stopped, JobError> {
        self.server.stop().await?;
        Ok(Stopped {
            recovered: self.recovered,
            fetch_base_seconds: self.fetch_base_seconds,
            fetch_wal_seconds: self.fetch_wal_seconds,
            _work: self._work,
        })
    }
}

/// The message PostgreSQL 13+ ends a recovery with when its WAL ran out before the target.
const ENDED_BEFORE_TARGET: &str = "recovery ended before configured recovery target was reached";

/// Fetches and unpacks the base backup, then recovers to the plan's target while the WAL is
/// fetched (in replay order: the server waits for each file it needs, see
/// `engine::postgres::recovery`); the recovered server is left running. A time target after
/// the archive's last commit — but not after what the archive holds — cannot be stopped at by
/// the server (no later commit tells it the time has passed): then the whole archive is
/// replayed, which is the database as it was at that time, and the report says so.
pub(super) async fn recover_into(
    ctx: &Context,
    repo: &Repo,
    plan: &PitrPlan,
    wal: &[(String, String)],
    dest: &Destination<'_>,
) -> Result<Recovery, JobError> {
    let work = ctx.config.drill_dir("custodian-pitr-", dest.run_id);
    make_private_dir(&work, dest.run_as)
        .map_err(|e| JobError::io(format!("creating {}", work.display()), &e))?;
    let work_guard = crate::engine::scratch::RemoveOnDrop(Some(work.clone()));
    let wal_dir = work.join("wal");
    make_private_dir(&wal_dir, dest.run_as)
        .map_err(|e| JobError::io(format!("creating {}", wal_dir.display()), &e))?;
    let archive_end: Option<Timestamp> =
        super::wal::ArchiveState::load(&ctx.config.state_dir, &plan.source)
            .last_flush
            .and_then(|t| t.parse().ok());

    let t = Instant::now();
    ctx.progress.phase(
        format!("fetching base backup {}", &plan.base_snapshot[..8]),
        Some(plan.base_bytes),
    );
    unpack_base(repo, plan, dest.dir, dest.run_as).await?;
    let mut fetch_base_seconds = t.elapsed().as_secs_f64();
    let mut fetch = WalFetch::start(repo, plan, wal, &wal_dir, dest.run_as)?;
    let mut target = plan.target.clone();
    loop {
        ctx.progress.phase(
            format!(
                "replaying WAL to {target} (fetching {} WAL files)",
                wal.len()
            ),
            None,
        );
        let attempt = crate::engine::postgres::recovery::recover(
            dest.dir,
            &wal_dir,
            &work,
            &target,
            dest.role,
            dest.database,
            dest.run_as,
        )
        .await;
        ctx.progress.finish();
        match attempt {
            Ok((mut recovered, server)) => {
                let fetch_wal_seconds = fetch.finished().await?;
                if target != plan.target {
                    recovered.stop = format!(
                        "no transaction committed between the archive's last one and {}: replayed the whole archive ({})",
                        plan.target, recovered.stop
                    );
                }
                check_stop(&plan.target, &recovered)?;
                return Ok(Recovery {
                    recovered,
                    server,
                    fetch_base_seconds,
                    fetch_wal_seconds,
                    work,
                    _work: work_guard,
                });
            }
            Err(e) => {
                let quiet_end = matches!(&target, RecoveryTarget::Time(t)
                    if archive_end.is_some_and(|end| end >= *t))
                    && e.to_string().contains(ENDED_BEFORE_TARGET);
                // A failed fetch is the cause of whatever the server said after it.
                if !quiet_end {
                    fetch.stop().await?;
                    return Err(e.into());
                }
                fetch.finished().await?;
                tracing::info!(target = %plan.target, "no commit after the target in the archive: replaying all of it");
                empty_dir(dest.dir)?;
                target = RecoveryTarget::Latest;
                let t = Instant::now();
                unpack_base(repo, plan, dest.dir, dest.run_as).await?;
                fetch_base_seconds += t.elapsed().as_secs_f64();
            }
        }
    }
}

/// The WAL of a recovery, fetched into its directory in the order the server replays it
/// (timeline history files first: the server reads them before any segment), alongside the
/// replay.
struct WalFetch {
    /// Seconds the fetch took, or `None` when it was stopped.
    task: Option<tokio::task::JoinHandle<Result<Option<f64>, JobError>>>,
    halt: std::sync::Arc<std::sync::atomic::AtomicBool>,
    took: f64,
}

impl WalFetch {
    fn start(
        repo: &Repo,
        plan: &PitrPlan,
        wal: &[(String, String)],
        dir: &Path,
        run_as: Option<RunAs>,
    ) -> Result<Self, JobError> {
        use crate::engine::postgres::recovery::{EXPECTED, FETCH_FAILED};
        use std::sync::atomic::Ordering;
        let mut wanted: Vec<(String, String)> = wal.to_vec();
        wanted.sort_by_key(|(name, _)| !is_history(name));
        let expected: String = wanted
            .iter()
            .map(|(_, as_name)| format!("{as_name}\n"))
            .collect();
        let list = dir.join(EXPECTED);
        crate::engine::scratch::write_private_file(&list, &expected, run_as)
            .map_err(|e| JobError::io(format!("writing {}", list.display()), &e))?;
        let halt = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (repo, source, dir, halted) = (
            repo.clone(),
            plan.source.clone(),
            dir.to_path_buf(),
            halt.clone(),
        );
        let task = tokio::task::spawn_blocking(move || {
            // Whatever ends the fetch early — an error, a panic — the server stops waiting.
            let mut failed = FailOnDrop(Some(dir.join(FETCH_FAILED)));
            let t = Instant::now();
            let mut ready = |part: &Path| {
                if halted.load(Ordering::Relaxed) {
                    return Err(std::io::Error::other("the recovery ended"));
                }
                match run_as {
                    Some(u) => std::os::unix::fs::chown(part, Some(u.uid), Some(u.gid)),
                    None => Ok(()),
                }
            };
            match repo.fetch_log(&source, SnapshotKind::Wal, &wanted, &dir, &mut ready) {
                Ok(_) => {
                    failed.0 = None;
                    Ok(Some(t.elapsed().as_secs_f64()))
                }
                Err(_) if halted.load(Ordering::Relaxed) => Ok(None),
                Err(e) => Err(e.into()),
            }
        });
        Ok(Self {
            task: Some(task),
            halt,
            took: 0.0,
        })
    }

    /// Waits for the fetch to end: the seconds it took, or its error.
    async fn finished(&mut self) -> Result<f64, JobError> {
        if let Some(task) = self.task.take() {
            let took = task
                .await
                .map_err(|e| JobError::Internal(format!("fetching WAL panicked: {e}")))??;
            self.took = took.unwrap_or_default();
        }
        Ok(self.took)
    }

    /// Stops a fetch the recovery no longer needs (after the file it is writing); its error
    /// when it had failed.
    async fn stop(&mut self) -> Result<(), JobError> {
        self.halt.store(true, std::sync::atomic::Ordering::Relaxed);
        self.finished().await.map(|_| ())
    }
}

/// Marks a fetch as failed when dropped armed.
struct FailOnDrop(Option<PathBuf>);

impl Drop for FailOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::write(path, "");
        }
    }
}

impl Drop for WalFetch {
    /// A recovery that ends early (an error, a cancelled job) leaves no fetch writing on into
    /// a directory that is being removed.
    fn drop(&mut self) {
        self.halt.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Removes what a failed attempt left in a data directory (the directory itself stays).
fn empty_dir(dir: &Path) -> Result<(), JobError> {
    for entry in std::fs::read_dir(dir)
        .map_err(|e| JobError::io(format!("reading {}", dir.display()), &e))?
    {
        let path = entry
            .map_err(|e| JobError::io(format!("reading {}", dir.display()), &e))?
            .path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| JobError::io(format!("removing {}", path.display()), &e))?;
    }
    Ok(())
}

/// The recovered cluster's last transaction must not be later than a time target.
fn check_stop(target: &RecoveryTarget, recovered: &Recovered) -> Result<(), JobError> {
    if let RecoveryTarget::Time(t) = target
        && let Some(last) = recovered
            .last_transaction
            .as_deref()
            .and_then(parse_pg_time)
        && last > *t
    {
        return Err(JobError::Verification(format!(
            "recovery replayed a transaction committed at {last}, after the target {t}"
        )));
    }
    if let RecoveryTarget::RestorePoint(name) = target
        && !recovered.stop.contains(&format!("\"{name}\""))
    {
        return Err(JobError::Verification(format!(
            "the server did not report stopping at restore point {name} (it said: {})",
            recovered.stop
        )));
    }
    if !matches!(target, RecoveryTarget::Latest)
        && !recovered.stop.starts_with("recovery stopping")
        && !recovered.stop.starts_with("no transaction committed")
    {
        return Err(JobError::Verification(format!(
            "the server did not report stopping at {target} (it said: {})",
            recovered.stop
        )));
    }
    Ok(())
}

/// Streams `base.tar` from the repository into `tar -x` (run as the server's user).
async fn unpack_base(
    repo: &Repo,
    plan: &PitrPlan,
    dir: &Path,
    run_as: Option<RunAs>,
) -> Result<(), JobError> {
    use std::os::unix::process::CommandExt;
    let mut cmd = crate::engine::process::clean_command("tar");
    cmd.arg("-xf").arg("-").arg("-C").arg(dir);
    if let Some(u) = run_as {
        cmd.uid(u.uid).gid(u.gid);
    }
    let mut tar = crate::engine::process::DumpProcess::spawn_consumer("tar", cmd, &[])
        .map_err(|e| JobError::io("starting tar", &e))?;
    let mut stdin = tar
        .take_stdin()
        .ok_or_else(|| JobError::Internal("tar has no stdin".into()))?;
    let (repo, snapshot, source) = (
        repo.clone(),
        plan.base_snapshot.clone(),
        plan.source.clone(),
    );
    let written = blocking(move || {
        let n = repo.dump_base_file(&snapshot, &source, BASE_TAR, &mut stdin);
        drop(stdin);
        n
    })
    .await;
    let finished = tokio::task::spawn_blocking(move || tar.finish())
        .await
        .map_err(|e| JobError::Internal(e.to_string()))?;
    written?;
    finished.map_err(|f| JobError::io("unpacking the base backup", &f))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_times_parse() {
        let t = parse_pg_time("2026-12-01 21:10:00.123456+00").unwrap();
        assert_eq!(t.to_string(), "2026-12-01T21:10:00.123456Z");
        let t = parse_pg_time("2026-12-01 22:10:00+01").unwrap();
        assert_eq!(t.to_string(), "2026-12-01T21:10:00Z");
        assert!(parse_pg_time("yesterday").is_none());
    }
}
