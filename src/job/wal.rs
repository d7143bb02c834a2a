//! The continuous archive of a PostgreSQL source (point-in-time recovery): `pg_receivewal`
//! streams WAL from the slot Custodian owns into a private spool, and every `flush` interval
//! what arrived — complete segments, timeline history files, and the segment still being
//! written (as `<segment>.partial`) — is stored into every location of the source as a
//! `custodian-wal` snapshot. A file leaves the spool only once every location holds it; the
//! snapshots are rolled up in tiers of [`ROLL_UP_FANOUT`] (see `Repo::roll_up_log`).
//!
//! `pg_receivewal` runs with `--synchronous` (the slot moves only past what is on the spool's
//! disk) and `--no-loop`: when it exits, the supervision here records why, re-reads the slot
//! (a slot the server invalidated is a gap in the archive, recorded and alerted) and starts it
//! again with a growing backoff. Its state — the last flush, restarts, gaps — is kept in
//! `<state-dir>/archive/<source>/state.json` for `archive status` and the metrics.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Context, JobError, blocking, lock};
use crate::config::{ArchiveConfig, SourceConfig, SourceKind};
use crate::engine::pitr::{SlotState, is_history};
use crate::engine::postgres::{self, wal};
use crate::model::naming::SnapshotKind;
use crate::repo::{ArchiveEntry, ArchiveRequest};

/// This many WAL snapshots of one tier are merged into one of the next: a source keeps fewer
/// than this many per tier and per location (three tiers hold 16³ flushes: 11 hours of 10 s ones).
pub const ROLL_UP_FANOUT: usize = 16;

/// A gap in the archive: WAL no recovery can cross.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Gap {
    #[serde(with = "crate::model::time::serde_utc")]
    pub at: Timestamp,
    pub what: String,
}

/// What the archiver of one source last did; kept between runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ArchiveState {
    /// When the last flush that stored everything received so far began: WAL received before
    /// it is in every location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_flush: Option<String>,
    /// The newest WAL file stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<String>,
    /// The `.partial` segment last stored, with its modification time (unchanged: not stored
    /// again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<(String, i128)>,
    #[serde(default)]
    pub receiver_restarts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default)]
    pub gaps: Vec<Gap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
}

/// The lock a source's archiver holds while it runs.
#[must_use]
pub fn archiver_lock(source: &str) -> String {
    format!("archive-{source}")
}

/// The file a job touches to ask a source's archiver for a flush before its next tick.
const FLUSH_REQUEST: &str = "flush-request";

/// Asks the archiver of a source (in the daemon, or `archive run`) to store what it received
/// now: a base backup waits for the WAL that makes it consistent. Without an archiver running
/// nothing happens.
pub fn request_flush(state_dir: &Path, source: &str) {
    let _ = std::fs::write(archive_dir(state_dir, source).join(FLUSH_REQUEST), b"");
}

/// Whether a flush was asked for after `since`.
fn flush_requested(state_dir: &Path, source: &str, since: std::time::SystemTime) -> bool {
    std::fs::metadata(archive_dir(state_dir, source).join(FLUSH_REQUEST))
        .and_then(|m| m.modified())
        .is_ok_and(|asked| asked > since)
}

/// Where a source's archive keeps its spool and state.
#[must_use]
pub fn archive_dir(state_dir: &Path, source: &str) -> PathBuf {
    state_dir.join("archive").join(source)
}

impl ArchiveState {
    /// The saved state of a source's archiver (empty when it never ran).
    #[must_use]
    pub fn load(state_dir: &Path, source: &str) -> Self {
        std::fs::read(archive_dir(state_dir, source).join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, state_dir: &Path, source: &str) -> Result<(), JobError> {
        let dir = archive_dir(state_dir, source);
        let tmp = dir.join("state.json.tmp");
        let text =
            serde_json::to_vec_pretty(self).map_err(|e| JobError::Internal(e.to_string()))?;
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, dir.join("state.json")))
            .map_err(|e| JobError::io(format!("saving {}", dir.display()), &e))
    }

    /// Seconds since the last complete flush (the archive's lag), if it ever flushed.
    #[must_use]
    pub fn lag_seconds(&self, now: Timestamp) -> Option<f64> {
        let last: Timestamp = self.last_flush.as_deref()?.parse().ok()?;
        Some(
            (now - last)
                .total(jiff::Unit::Second)
                .unwrap_or(0.0)
                .max(0.0),
        )
    }
}

/// What one archiver run did (it ends at SIGTERM / Ctrl-C).
#[derive(Clone, Debug, Serialize)]
pub struct ArchiveRun {
    pub source: String,
    pub slot: SlotState,
    pub flushes: u64,
    pub files_stored: u64,
    pub bytes_stored: u64,
    pub receiver_restarts: u64,
    pub state: ArchiveState,
}

/// The kind of snapshot a source's archived log goes into: WAL for PostgreSQL, binary logs for
/// MariaDB/MySQL.
#[must_use]
pub fn log_kind(source: &SourceConfig) -> SnapshotKind {
    match source.kind {
        SourceKind::Mysql(_) => SnapshotKind::Binlog,
        _ => SnapshotKind::Wal,
    }
}

/// The archive settings of a source, or why it has none.
///
/// # Errors
/// [`JobError::Usage`] when the source is not a PostgreSQL source with archiving enabled.
pub fn archive_settings(source: &SourceConfig) -> Result<ArchiveConfig, JobError> {
    match &source.kind {
        SourceKind::Postgres(cfg) | SourceKind::Mysql(cfg) => cfg.archive.clone().ok_or_else(|| {
            JobError::Usage(format!(
                "source {} has no continuous archive; add [source.{}.archive] with enabled = true (see README, \"Point-in-time recovery\")",
                source.name, source.name
            ))
        }),
        SourceKind::Sqlite { .. } => Err(JobError::Usage(format!(
            "source {} is an SQLite file: it has no log to archive (its recovery point is its backup schedule)",
            source.name
        ))),
    }
}

/// The sources with an archive, all or the one named.
///
/// # Errors
/// When the named source does not exist or has no archive.
pub fn archived_sources(ctx: &Context, name: Option<&str>) -> Result<Vec<SourceConfig>, JobError> {
    let all = ctx.select_sources(name)?;
    if name.is_some() {
        archive_settings(&all[0])?;
        return Ok(all);
    }
    let with: Vec<SourceConfig> = all
        .into_iter()
        .filter(|s| archive_settings(s).is_ok())
        .collect();
    if with.is_empty() {
        return Err(JobError::Usage(
            "no source has a continuous archive; add [source.NAME.archive] with enabled = true"
                .into(),
        ));
    }
    Ok(with)
}

/// Runs the archivers of the selected sources until `stop` is cancelled, then stores what the
/// spools still hold and returns.
///
/// # Errors
/// When a source has no archive, or its lock is held by another process.
pub async fn run(
    ctx: &Context,
    source: Option<&str>,
    stop: CancellationToken,
) -> Result<Vec<ArchiveRun>, JobError> {
    let sources = archived_sources(ctx, source)?;
    let runs = sources.iter().map(|s| run_source(ctx, s, stop.clone()));
    futures_util::future::join_all(runs)
        .await
        .into_iter()
        .collect()
}

async fn run_source(
    ctx: &Context,
    source: &SourceConfig,
    stop: CancellationToken,
) -> Result<ArchiveRun, JobError> {
    let settings = archive_settings(source)?;
    if settings.method == crate::config::ArchiveMethod::ArchiveCommand {
        return Err(JobError::Usage(format!(
            "the archive of source {} is fed by the server's archive_command (`custodian wal push`), not by an archiver: method = \"archive-command\"",
            source.name
        )));
    }
    let cfg = source.server().expect("a server source").clone();
    let _lock = lock::try_lock(
        &ctx.config.state_dir,
        &archiver_lock(&source.name),
        &format!("the archiver of source {}", source.name),
    )?;
    let dir = archive_dir(&ctx.config.state_dir, &source.name);
    let spool = dir.join("spool");
    for d in [dir.parent().unwrap_or(&dir), &dir, &spool] {
        private_dir(d)?;
    }
    let mut state = ArchiveState::load(&ctx.config.state_dir, &source.name);
    let (feed, slot) = match &source.kind {
        SourceKind::Mysql(_) => mysql_feed(ctx, source, &cfg, &mut state).await?,
        _ => postgres_feed(ctx, source, &cfg, &mut state).await?,
    };
    state.save(&ctx.config.state_dir, &source.name)?;
    tracing::info!(source = %source.name, from = %slot.name, position = ?slot.restart_lsn, "archiver started");

    let receiver_stop = CancellationToken::new();
    let restarts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let receiving = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let base_restarts = state.receiver_restarts;
    let receiver = tokio::spawn(supervise(
        Receiver {
            source: source.name.clone(),
            feed,
            spool: spool.clone(),
            scratch: ctx.config.scratch_dir(),
        },
        receiver_stop.clone(),
        restarts.clone(),
        receiving.clone(),
    ));
    let mut run = ArchiveRun {
        source: source.name.clone(),
        slot,
        flushes: 0,
        files_stored: 0,
        bytes_stored: 0,
        receiver_restarts: 0,
        state: state.clone(),
    };
    let mut ticker = tokio::time::interval(settings.flush);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    // A base backup that waits for its WAL asks for a flush now rather than at the next tick.
    let mut asked = tokio::time::interval(Duration::from_secs(1));
    asked.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_flush = std::time::SystemTime::now();
    let mut lagging = false;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::SeqCst);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
            _ = asked.tick() => {
                if !flush_requested(&ctx.config.state_dir, &source.name, last_flush) {
                    continue;
                }
                ticker.reset();
            }
        }
        last_flush = std::time::SystemTime::now();
        state.receiver_restarts = base_restarts + load(&restarts);
        let live = receiving.load(std::sync::atomic::Ordering::SeqCst);
        flush_into(ctx, source, &spool, &mut state, &mut run, live).await;
        lagging = alert_lag(ctx, source, &settings, &state, lagging).await;
    }
    // The receiver stops first (it fsyncs what it has), then the spool is stored once more.
    receiver_stop.cancel();
    let _ = receiver.await;
    flush_into(ctx, source, &spool, &mut state, &mut run, true).await;
    let restarts = load(&restarts);
    state.receiver_restarts = base_restarts + restarts;
    state.save(&ctx.config.state_dir, &source.name)?;
    run.receiver_restarts = restarts;
    run.state = state;
    Ok(run)
}

/// PostgreSQL: the archive's slot, created when missing; a dropped or invalidated slot is a
/// gap.
async fn postgres_feed(
    ctx: &Context,
    source: &SourceConfig,
    cfg: &crate::config::ServerSource,
    state: &mut ArchiveState,
) -> Result<(Feed, SlotState), JobError> {
    let connect = postgres::connect_settings(&source.name, cfg)?;
    let slot_name = wal::slot_name(&source.name);
    let slot = wal::ensure_slot(&connect, &slot_name).await?;
    if slot.created && state.slot.is_some() {
        // The slot this archive streamed from is gone: WAL between is not in the archive.
        record_gap(
            ctx,
            &source.name,
            state,
            format!(
                "replication slot {slot_name} was dropped; the archive restarts at its new position"
            ),
        );
    }
    if slot.wal_status.as_deref() == Some("lost") {
        record_gap(
            ctx,
            &source.name,
            state,
            format!(
                "the server invalidated replication slot {slot_name} (max_slot_wal_keep_size): WAL was removed before it was archived; drop the slot to start a new archive, and take a base backup"
            ),
        );
    }
    state.slot = Some(slot_name.clone());
    Ok((
        Feed::Postgres {
            connect,
            slot: slot_name,
        },
        slot,
    ))
}

/// MariaDB/MySQL: the binary log to start from — the last one archived, else the one being
/// written now. One the server purged before it was archived is a gap.
async fn mysql_feed(
    ctx: &Context,
    source: &SourceConfig,
    cfg: &crate::config::ServerSource,
    state: &mut ArchiveState,
) -> Result<(Feed, SlotState), JobError> {
    use crate::engine::mysql::{self, binlog};
    let connect = mysql::connect_settings(&source.name, cfg)?;
    let what = format!("the binary logs of {}", connect.server());
    let query = |e: sqlx::Error| {
        JobError::Engine(crate::engine::EngineError::Query {
            what: what.clone(),
            message: format!("{e}; is log_bin on? (`custodian archive check`)"),
        })
    };
    let mut conn = connect.connect().await.map_err(query)?;
    let logs = binlog::binary_logs(&mut conn).await.map_err(query)?;
    let current = binlog::position(&mut conn).await.map_err(query)?;
    let _ = sqlx::Connection::close(conn).await;
    let first = match state.newest.clone() {
        Some(last) if logs.contains(&last) => last,
        Some(last) => {
            record_gap(
                ctx,
                &source.name,
                state,
                format!("binary log {last} was purged by the server before it was fully archived; the archive continues from the oldest the server has"),
            );
            logs.first().cloned().unwrap_or(last)
        }
        None => current
            .map(|p| p.file)
            .or_else(|| logs.last().cloned())
            .ok_or_else(|| JobError::Usage(format!("source {}: the server keeps no binary log; set log_bin (`custodian archive check`)", source.name)))?,
    };
    state.slot = Some("binlog".into());
    // A replica id of its own, stable per source, far from the ids people give servers.
    let server_id =
        4_000_000_000u32 + (xxhash_rust::xxh3::xxh3_64(source.name.as_bytes()) % 100_000) as u32;
    Ok((
        Feed::Mysql {
            connect,
            first: first.clone(),
            server_id,
        },
        SlotState {
            name: format!("{} as replica {server_id}", binlog::reader_tool()),
            restart_lsn: Some(first),
            wal_status: None,
            created: false,
        },
    ))
}

fn private_dir(dir: &Path) -> Result<(), JobError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| JobError::io(format!("creating {}", dir.display()), &e))
}

fn record_gap(ctx: &Context, source: &str, state: &mut ArchiveState, what: String) {
    tracing::error!(source, gap = %what, "gap in the continuous archive");
    ctx.audit_action(crate::audit::NewEntry {
        actor: ctx.actor.clone(),
        uid: ctx.uid,
        role: ctx.role.clone(),
        trigger: ctx.trigger.as_str().to_string(),
        action: "archive.gap".into(),
        target: Some(source.to_string()),
        params: serde_json::json!({}),
        outcome: "recorded".into(),
        detail: Some(what.clone()),
    });
    state.gaps.push(Gap {
        at: crate::model::time::now(),
        what,
    });
}

/// Alerts once when the archive falls behind its `lag-alert`, and once when it caught up;
/// returns whether it is behind now.
async fn alert_lag(
    ctx: &Context,
    source: &SourceConfig,
    settings: &ArchiveConfig,
    state: &ArchiveState,
    was_lagging: bool,
) -> bool {
    let now = crate::model::time::now();
    let lag = state.lag_seconds(now).unwrap_or(f64::INFINITY);
    let lagging = lag > settings.lag_alert.as_secs_f64();
    if lagging == was_lagging {
        return lagging;
    }
    let detail = if lagging {
        format!(
            "the continuous archive of source {} is {} behind (lag-alert {}): {}",
            source.name,
            if lag.is_finite() {
                format!("{lag:.0} s")
            } else {
                "ever since it started".into()
            },
            humantime::format_duration(settings.lag_alert),
            state
                .last_error
                .as_deref()
                .unwrap_or("pg_receivewal is not receiving (see the journal)")
        )
    } else {
        format!("the continuous archive of source {} caught up", source.name)
    };
    let event = super::alert::JobEvent {
        job: format!("archive-{}", source.name),
        kind: "archive",
        status: if lagging { "failed" } else { "succeeded" },
        host: ctx.config.hostname.clone(),
        time: crate::model::time::format(now),
        detail: Some(detail.clone()),
        error: lagging.then(|| super::Failure::new("archive.lagging", detail)),
    };
    super::alert::send(ctx, &event).await;
    lagging
}

/// One flush, its failure recorded in the state (the files stay in the spool for the next).
/// `receiving`: whether `pg_receivewal` was streaming when it began — only then does a flush
/// that stored everything move the archive's recoverable end (and so its lag) forward.
async fn flush_into(
    ctx: &Context,
    source: &SourceConfig,
    spool: &Path,
    state: &mut ArchiveState,
    run: &mut ArchiveRun,
    receiving: bool,
) {
    let before = state.last_flush.clone();
    let result = flush(ctx, source, spool, state).await;
    if !receiving {
        state.last_flush = before;
    }
    match result {
        Ok((files, bytes)) => {
            run.flushes += 1;
            run.files_stored += files;
            run.bytes_stored += bytes;
            state.last_error = None;
        }
        Err(e) => {
            tracing::error!(source = %source.name, error = %e, code = e.code(), "archive flush failed; the spool keeps the WAL for the next flush");
            state.last_error = Some(e.to_string());
        }
    }
    if let Err(e) = state.save(&ctx.config.state_dir, &source.name) {
        tracing::error!(source = %source.name, error = %e, "cannot save the archive's state");
    }
    run.state = state.clone();
}

/// A file in the spool to store.
struct Spooled {
    name: String,
    path: PathBuf,
    size: u64,
    mtime: std::time::SystemTime,
    /// A `.partial` segment is read once, at the flush's start, so every location gets the
    /// same bytes while the receiver keeps writing.
    content: Option<Arc<Vec<u8>>>,
}

/// The files in the spool to store. The one still being written — PostgreSQL's `.partial`
/// segment, the newest binary log — is read whole now (and skipped when unchanged since it was
/// last stored); the others are complete.
fn spooled(
    spool: &Path,
    state: &ArchiveState,
    kind: SnapshotKind,
) -> Result<Vec<Spooled>, JobError> {
    let io = |e: std::io::Error| JobError::io(format!("reading the spool {}", spool.display()), &e);
    let binlogs = kind == SnapshotKind::Binlog;
    let mut names: Vec<(String, std::fs::DirEntry)> = Vec::new();
    for entry in std::fs::read_dir(spool).map_err(io)? {
        let entry = entry.map_err(io)?;
        names.push((entry.file_name().to_string_lossy().into_owned(), entry));
    }
    let newest_binlog = names
        .iter()
        .map(|(n, _)| n)
        .filter(|n| crate::engine::mysql::binlog::is_binlog(n))
        .max()
        .cloned();
    let mut out = Vec::new();
    for (name, entry) in names {
        let meta = entry.metadata().map_err(io)?;
        if !meta.is_file() {
            continue;
        }
        let segment = if binlogs {
            crate::engine::mysql::binlog::is_binlog(&name)
        } else {
            crate::engine::pitr::Segment::parse(&name).is_some()
        };
        let growing = if binlogs {
            newest_binlog.as_deref() == Some(name.as_str())
        } else {
            name.ends_with(".partial")
        };
        let mtime = meta.modified().map_err(io)?;
        if growing && segment {
            let stamp = mtime_nanos(mtime);
            if state.partial.as_ref() == Some(&(name.clone(), stamp)) {
                continue;
            }
            let mut content = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
            std::fs::File::open(entry.path())
                .and_then(|mut f| f.read_to_end(&mut content))
                .map_err(io)?;
            out.push(Spooled {
                name,
                path: entry.path(),
                size: content.len() as u64,
                mtime,
                content: Some(Arc::new(content)),
            });
        } else if segment || (!binlogs && is_history(&name)) {
            out.push(Spooled {
                name,
                path: entry.path(),
                size: meta.len(),
                mtime,
                content: None,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn mtime_nanos(t: std::time::SystemTime) -> i128 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

/// Stores WAL files into every location of a source as one `custodian-wal` snapshot each,
/// under the source's store lock (the archiver's flushes and `wal push` never write a WAL
/// snapshot of one source at the same time, so a pending one is always a crash's leftover).
/// Waits up to `wait` for the lock.
async fn store(
    ctx: &Context,
    source: &SourceConfig,
    files: &[Spooled],
    time: Timestamp,
    wait: Duration,
) -> Result<(), JobError> {
    let deadline = std::time::Instant::now() + wait;
    let _lock = loop {
        match lock::try_lock(
            &ctx.config.state_dir,
            &format!("wal-store-{}", source.name),
            &format!("storing archived WAL of source {}", source.name),
        ) {
            Ok(l) => break l,
            Err(JobError::Busy(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    };
    for location in &source.locations {
        let repo = ctx.repo(location).await?;
        let entries: Vec<ArchiveEntry> = files.iter().map(entry).collect();
        let request = ArchiveRequest {
            source: source.name.clone(),
            engine: source.engine().to_string(),
            hostname: ctx.config.hostname.clone(),
            time,
            entries,
            bars: None,
            on_read: None,
        };
        let name = source.name.clone();
        let kind = log_kind(source);
        blocking(move || {
            repo.discard_pending_kind(&name, kind)?;
            repo.archive_kind(request, kind)?;
            repo.roll_up_log(&name, kind, ROLL_UP_FANOUT)?;
            Ok(())
        })
        .await?;
    }
    Ok(())
}

/// What `wal push` stored.
#[derive(Clone, Debug, Serialize)]
pub struct Pushed {
    pub source: String,
    pub file: String,
    pub bytes: u64,
    pub locations: Vec<String>,
}

/// `custodian wal push --source S PATH`, PostgreSQL's `archive_command`: stores one completed
/// WAL file (`%p`) into every location of the source and succeeds only once all hold it — so
/// the server recycles the segment only when it is safe. For a source whose archive has
/// `method = "archive-command"` (the daemon then runs no `pg_receivewal` for it).
///
/// # Errors
/// When the file is not a WAL file, cannot be read, or a location cannot be written (the
/// server keeps the segment and calls again).
pub async fn push(ctx: &Context, source: &str, path: &Path) -> Result<Pushed, JobError> {
    let source = archived_sources(ctx, Some(source))?.remove(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if crate::engine::pitr::Segment::parse(&name).is_none()
        && !is_history(&name)
        && !name.ends_with(".backup")
    {
        return Err(JobError::Usage(format!(
            "{} is not a WAL segment, history or backup history file; archive_command passes %p",
            path.display()
        )));
    }
    let meta = std::fs::metadata(path)
        .map_err(|e| JobError::io(format!("reading {}", path.display()), &e))?;
    let file = Spooled {
        name: name.clone(),
        path: path.to_path_buf(),
        size: meta.len(),
        mtime: meta
            .modified()
            .unwrap_or_else(|_| std::time::SystemTime::now()),
        content: None,
    };
    let now = crate::model::time::now();
    store(
        ctx,
        &source,
        std::slice::from_ref(&file),
        now,
        Duration::from_secs(120),
    )
    .await?;
    // The archive's state: `wal push` is its receiver.
    let _ = std::fs::create_dir_all(archive_dir(&ctx.config.state_dir, &source.name));
    let mut state = ArchiveState::load(&ctx.config.state_dir, &source.name);
    state.last_flush = Some(now.to_string());
    if crate::engine::pitr::Segment::parse(&name).is_some() {
        state.newest = Some(name.clone());
    }
    state.save(&ctx.config.state_dir, &source.name)?;
    Ok(Pushed {
        source: source.name.clone(),
        file: name,
        bytes: meta.len(),
        locations: source.locations.clone(),
    })
}

/// `custodian wal fetch --source S NAME PATH`, PostgreSQL's `restore_command`: writes the
/// archived WAL file `NAME` (`%f`; a segment archived only as `.partial` is given under its
/// segment's name) to `PATH` (`%p`). Fails — as the server expects — when it is not archived.
///
/// # Errors
/// When the file is not in the source's primary location (or cannot be read or written).
pub async fn fetch(ctx: &Context, source: &str, name: &str, path: &Path) -> Result<u64, JobError> {
    let source = ctx.select_sources(Some(source))?.remove(0);
    let repo = ctx.repo(source.primary()).await?;
    let (name, src, dir) = (
        name.to_string(),
        source.name.clone(),
        path.parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    );
    let as_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.clone());
    blocking(move || {
        let files = repo.log_files(&src, SnapshotKind::Wal)?;
        let stored = if files.iter().any(|f| f.name == name) {
            name.clone()
        } else {
            format!("{name}.partial")
        };
        repo.fetch_log(
            &src,
            SnapshotKind::Wal,
            &[(stored, as_name)],
            &dir,
            &mut |_| Ok(()),
        )
    })
    .await
}

/// Stores what the spool holds into every location; returns files and bytes stored.
async fn flush(
    ctx: &Context,
    source: &SourceConfig,
    spool: &Path,
    state: &mut ArchiveState,
) -> Result<(u64, u64), JobError> {
    let started = crate::model::time::now();
    let files = spooled(spool, state, log_kind(source))?;
    if files.is_empty() {
        state.last_flush = Some(started.to_string());
        return Ok((0, 0));
    }
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    store(ctx, source, &files, started, Duration::ZERO).await?;
    // Every location has them: complete files leave the spool; the partial stays (the
    // receiver is still writing it) and is remembered so an unchanged one is not stored again.
    for f in &files {
        if f.content.is_some() {
            state.partial = Some((f.name.clone(), mtime_nanos(f.mtime)));
        } else if let Err(e) = std::fs::remove_file(&f.path) {
            tracing::warn!(file = %f.path.display(), error = %e, "cannot remove an archived file from the spool");
        }
    }
    state.newest = files
        .iter()
        .filter(|f| !is_history(&f.name))
        .map(|f| f.name.clone())
        .max();
    state.last_flush = Some(started.to_string());
    tracing::info!(source = %source.name, files = files.len(), bytes, "archived WAL stored");
    Ok((files.len() as u64, bytes))
}

fn entry(f: &Spooled) -> ArchiveEntry {
    let mtime = jiff::Timestamp::try_from(f.mtime).unwrap_or_else(|_| crate::model::time::now());
    let open: crate::repo::Opener = match &f.content {
        Some(content) => {
            let content = content.clone();
            Box::new(move || {
                Ok(Box::new(std::io::Cursor::new(content.as_ref().clone()))
                    as Box<dyn Read + Send>)
            })
        }
        None => {
            let path = f.path.clone();
            Box::new(move || Ok(Box::new(std::fs::File::open(&path)?) as Box<dyn Read + Send>))
        }
    };
    ArchiveEntry {
        name: f.name.clone(),
        size: Some(f.size),
        sha256: None,
        mtime,
        cuts: None,
        open,
    }
}

/// Where an archive's log comes from.
enum Feed {
    /// `pg_receivewal` on the archive's slot.
    Postgres {
        connect: postgres::Connect,
        slot: String,
    },
    /// `mariadb-binlog` from the server, as a replica with an id of its own.
    Mysql {
        connect: crate::engine::mysql::Connect,
        /// The binary log to start from when the spool holds none.
        first: String,
        server_id: u32,
    },
}

impl Feed {
    fn tool(&self) -> &'static str {
        match self {
            Self::Postgres { .. } => "pg_receivewal",
            Self::Mysql { .. } => crate::engine::mysql::binlog::reader_tool(),
        }
    }

    /// The receiver's command. A binary log reader starts again from the newest file in the
    /// spool (it rewrites that file whole), else from where the archive starts.
    fn command(&self, spool: &Path, work: &Path) -> std::io::Result<std::process::Command> {
        match self {
            Self::Postgres { connect, slot } => wal::receivewal(connect, spool, slot, work),
            Self::Mysql {
                connect,
                first,
                server_id,
            } => {
                let newest = std::fs::read_dir(spool)?
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| crate::engine::mysql::binlog::is_binlog(n))
                    .max()
                    .unwrap_or_else(|| first.clone());
                crate::engine::mysql::binlog::reader(connect, spool, &newest, *server_id, work)
            }
        }
    }

    /// After the receiver exited: a PostgreSQL slot the server invalidated is reported.
    async fn after_exit(&self, source: &str) {
        if let Self::Postgres { connect, slot } = self
            && let Ok(state) = wal::ensure_slot(connect, slot).await
            && state.wal_status.as_deref() == Some("lost")
        {
            tracing::error!(source = %source, slot = %slot, "the server invalidated the archive's replication slot: WAL is missing from the archive");
        }
    }
}

/// What the receiver streams from and into.
struct Receiver {
    source: String,
    feed: Feed,
    spool: PathBuf,
    scratch: PathBuf,
}

/// Keeps the receiver (`pg_receivewal`, `mariadb-binlog`) running until `stop`: every exit is
/// logged with its stderr, a slot re-read, and the receiver started again after a backoff
/// (1 s, doubling to 60 s, back to 1 s after a run of more than a minute).
async fn supervise(
    r: Receiver,
    stop: CancellationToken,
    restarts: Arc<std::sync::atomic::AtomicU64>,
    receiving: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = std::time::Instant::now();
        let ended = receive_once(&r, &stop, &receiving).await;
        receiving.store(false, std::sync::atomic::Ordering::SeqCst);
        if stop.is_cancelled() {
            return;
        }
        restarts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tracing::warn!(source = %r.source, tool = r.feed.tool(), ended = %ended, "the archive's receiver stopped; restarting it");
        r.feed.after_exit(&r.source).await;
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// Runs the receiver once; returns how it ended.
async fn receive_once(
    r: &Receiver,
    stop: &CancellationToken,
    receiving: &std::sync::atomic::AtomicBool,
) -> String {
    let tool = r.feed.tool();
    let work = match crate::engine::private_workdir(&r.scratch, "receiver-") {
        Ok(w) => w,
        Err(e) => return e.to_string(),
    };
    let cmd = match r.feed.command(&r.spool, work.path()) {
        Ok(c) => c,
        Err(e) => return format!("cannot prepare {tool}: {e}"),
    };
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return format!("{tool} cannot be started: {e}"),
    };
    receiving.store(true, std::sync::atomic::Ordering::SeqCst);
    let stderr = child.stderr.take();
    let lines = tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut last = BTreeMap::new();
        if let Some(err) = stderr {
            let mut reader = tokio::io::BufReader::new(err).lines();
            let mut n = 0u64;
            while let Ok(Some(line)) = reader.next_line().await {
                tracing::debug!(tool, "{line}");
                n += 1;
                last.insert(n, line);
                if last.len() > 5 {
                    last.pop_first();
                }
            }
        }
        last.into_values().collect::<Vec<_>>().join(" / ")
    });
    let status = tokio::select! {
        status = child.wait() => status.map_or_else(|e| e.to_string(), |s| s.to_string()),
        () = stop.cancelled() => {
            // SIGINT: pg_receivewal flushes and exits cleanly (mariadb-binlog writes as it
            // reads).
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGINT);
            }
            match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
                Ok(s) => s.map_or_else(|e| e.to_string(), |s| s.to_string()),
                Err(_) => {
                    let _ = child.kill().await;
                    "killed after 10 s".into()
                }
            }
        }
    };
    let said = lines.await.unwrap_or_default();
    format!("{status}: {said}")
}
