//! `custodian daemon`: runs the scheduled jobs.
//!
//! * Every job fires on its cron expression (in its time zone, plus random jitter). A job never
//!   overlaps itself (a fire while it still runs is recorded as `skipped`); jobs on the same
//!   source queue behind each other; at most `max-concurrent-jobs` run at once.
//! * At start, fires missed while the daemon was down are recorded as `missed` runs (each one,
//!   so reports can count them) and, with `missed = "run-once"`, the job runs once right away.
//! * systemd: `READY=1` once the configuration, the catalog and the metrics endpoint are up;
//!   `STATUS=` names what runs; `WATCHDOG=1` from the scheduler loop; `STOPPING=1` on SIGTERM.
//! * SIGTERM: no new work; running jobs get `stop-grace` to finish (drills tear down at once),
//!   then are dropped — their dump tools are killed, and a half-written backup never becomes a
//!   snapshot — and the daemon exits 0. SIGHUP: the configuration and schedules are reloaded;
//!   an invalid one is rejected with its diagnostics and the old one keeps running.

mod archivers;
mod metrics;
mod notify;
mod runner;
pub mod socket;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::catalog::Trigger;
use crate::config::Config;
use crate::config::schedules::{Missed, ScheduledJob};
use crate::job::alert;
use crate::job::{Context, JobError};
use crate::model::Exit;
use runner::Shared;

/// How long running jobs may take to finish after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(60);
/// The scheduler wakes at least this often (and pets the watchdog).
const TICK: Duration = Duration::from_secs(5);
/// At most this many missed fires of one job are recorded individually.
const MAX_MISSED_RECORDED: usize = 10_000;

/// Runs the daemon until SIGTERM.
pub async fn run(config_path: &Path) -> Exit {
    let config = match Config::load(config_path) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("custodian daemon: {e}");
            return Exit::Usage;
        }
    };
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let mut ctx = match Context::new(config.clone(), Trigger::Schedule).await {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("custodian daemon: {e}");
            return Exit::JobFailed;
        }
    };
    let (Ok(mut term), Ok(mut hup), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("custodian daemon: cannot install signal handlers");
        return Exit::JobFailed;
    };
    let shared = Arc::new(Shared::new(config.daemon.max_concurrent_jobs as usize));
    let listener = match socket::bind(
        &config.daemon.control_socket,
        config.access.socket_group.as_deref(),
    ) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "custodian daemon: cannot create the control socket {}: {e}",
                config.daemon.control_socket.display()
            );
            return Exit::JobFailed;
        }
    };
    let (ctx_tx, ctx_rx) = watch::channel(ctx.clone());
    let metrics_task = match config.daemon.metrics_listen {
        Some(addr) => match metrics::serve(addr, ctx_rx.clone(), shared.clone()).await {
            Ok(task) => Some(task),
            Err(e) => {
                eprintln!("custodian daemon: cannot serve metrics on {addr}: {e}");
                return Exit::JobFailed;
            }
        },
        None => None,
    };
    let control_task = socket::serve(listener, ctx_rx, shared.clone());

    let mut next = match plan(&ctx, &shared, true).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("custodian daemon: {e}");
            return Exit::JobFailed;
        }
    };
    publish_plan(&shared, &next);
    tracing::info!(
        jobs = ctx.config.daemon.schedules.len(),
        "daemon ready: {}",
        describe_next(&next)
    );
    let mut archivers = archivers::Archivers::start(&ctx);
    let mut last_status = status_line(&shared, &next);
    notify::ready(&last_status);
    let watchdog = notify::watchdog_interval();

    loop {
        let now = jiff::Timestamp::now();
        let wake = next
            .values()
            .map(|(at, _)| *at)
            .min()
            .map_or(TICK, |at| {
                Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
            })
            .min(TICK)
            .min(watchdog.unwrap_or(TICK));
        tokio::select! {
            () = tokio::time::sleep(wake) => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                let accepted = match Config::load(config_path) {
                    Ok(new) => match Context::new(Arc::new(new), Trigger::Schedule).await {
                        Ok(new_ctx) => {
                            ctx = Arc::new(new_ctx);
                            let _ = ctx_tx.send(ctx.clone());
                            // The old archivers store their spools and release their locks
                            // before the new ones start.
                            std::mem::take(&mut archivers).stop().await;
                            archivers = archivers::Archivers::start(&ctx);
                            match plan(&ctx, &shared, false).await {
                                Ok(n) => {
                                    next = n;
                                    publish_plan(&shared, &next);
                                }
                                Err(e) => tracing::error!("reloading the schedules: {e}"),
                            }
                            tracing::info!("configuration reloaded: {}", describe_next(&next));
                            true
                        }
                        Err(e) => {
                            tracing::error!("configuration reload rejected: {e}; the old configuration keeps running");
                            false
                        }
                    },
                    Err(e) => {
                        tracing::error!("configuration reload rejected, the old configuration keeps running: {e}");
                        false
                    }
                };
                let mut reload =
                    shared.reload.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                reload.0 = accepted;
                if accepted {
                    reload.1 = jiff::Timestamp::now();
                }
            }
        }
        if watchdog.is_some() {
            notify::watchdog();
        }
        let now = jiff::Timestamp::now();
        let due: Vec<String> = next
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            let Some((_, job)) = next.remove(&name) else {
                continue;
            };
            let scheduled = now;
            if let Err(e) = ctx.catalog.set_last_fire(&job.name, now).await {
                tracing::error!(job = job.name, "recording the schedule state: {e}");
            }
            launch(&ctx, &shared, &job, scheduled).await;
            if let Some(at) = next_fire(&job, now) {
                next.insert(name, (at, job));
            }
        }
        publish_plan(&shared, &next);
        let status = status_line(&shared, &next);
        if status != last_status {
            notify::status(&status);
            last_status = status;
        }
    }

    notify::stopping();
    tracing::info!(running = ?shared.running(), "stopping: no new jobs; waiting for running ones");
    archivers.stop().await;
    shared.shutdown.cancel();
    shared.tracker.close();
    if tokio::time::timeout(STOP_GRACE, shared.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            running = ?shared.running(),
            "jobs still running after {} s are stopped; their dump tools are killed and no partial backup is committed",
            STOP_GRACE.as_secs()
        );
        shared.hard_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), shared.tracker.wait()).await;
    }
    if let Some(task) = metrics_task {
        task.abort();
    }
    control_task.abort();
    let _ = std::fs::remove_file(&ctx.config.daemon.control_socket);
    ctx.catalog.close().await;
    tracing::info!("daemon stopped");
    Exit::Ok
}

fn event(
    ctx: &Context,
    job: &ScheduledJob,
    status: &'static str,
    failure: Option<crate::job::Failure>,
) -> alert::JobEvent {
    alert::JobEvent {
        job: job.name.clone(),
        kind: job.kind.as_str(),
        status,
        host: ctx.config.hostname.clone(),
        time: crate::model::time::format(jiff::Timestamp::now()),
        detail: failure.as_ref().map(|f| f.message.clone()),
        error: failure,
    }
}

/// The fires of a job after `last` up to `now` (at most [`MAX_MISSED_RECORDED`]).
fn missed_fires(
    job: &ScheduledJob,
    last: jiff::Timestamp,
    now: jiff::Timestamp,
) -> Vec<jiff::Timestamp> {
    let mut missed = Vec::new();
    let mut t = last;
    while let Some(fire) = job.next_after(t) {
        if fire > now || missed.len() >= MAX_MISSED_RECORDED {
            break;
        }
        missed.push(fire);
        t = fire;
    }
    missed
}

/// Marks a job as running; `false` when its previous run still goes on (no overlap).
fn claim(shared: &Shared, name: &str) -> bool {
    shared
        .running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(name.to_string())
}

/// The next fire of a job after `after`, with its jitter.
fn next_fire(job: &ScheduledJob, after: jiff::Timestamp) -> Option<jiff::Timestamp> {
    let at = job.next_after(after)?;
    let jitter_ms = u64::try_from(job.jitter.as_millis()).unwrap_or(u64::MAX);
    let extra = if jitter_ms == 0 {
        0
    } else {
        rand::rng().random_range(0..=jitter_ms)
    };
    at.checked_add(jiff::SignedDuration::from_millis(
        i64::try_from(extra).unwrap_or(0),
    ))
    .ok()
}

type Plan = HashMap<String, (jiff::Timestamp, ScheduledJob)>;

fn describe_next(next: &Plan) -> String {
    let mut items: Vec<(&jiff::Timestamp, &str)> =
        next.values().map(|(at, j)| (at, j.name.as_str())).collect();
    items.sort();
    match items.first() {
        Some((at, name)) => format!(
            "{}; next: {name} at {}",
            crate::model::count(next.len(), "job"),
            crate::model::time::format(**at)
        ),
        None => "no scheduled jobs (set [custodian] schedules to a directory of schedule files)"
            .to_string(),
    }
}

fn status_line(shared: &Shared, next: &Plan) -> String {
    let running = shared.running();
    if running.is_empty() {
        format!("idle; {}", describe_next(next))
    } else {
        format!("running: {}; {}", running.join(", "), describe_next(next))
    }
}

/// Computes the next fire of every job; at start, records the fires missed since the last one
/// and runs the job once now when its policy says so.
async fn plan(ctx: &Arc<Context>, shared: &Arc<Shared>, at_start: bool) -> Result<Plan, JobError> {
    let now = jiff::Timestamp::now();
    let mut next = Plan::new();
    for job in &ctx.config.daemon.schedules {
        match ctx.catalog.last_fire(&job.name).await? {
            Some(last) if at_start => {
                let missed = missed_fires(job, last, now);
                for fire in &missed {
                    ctx.catalog
                        .record_not_run(
                            job.kind.as_str(),
                            &job.name,
                            *fire,
                            "missed",
                            "the daemon was not running when this job was due",
                        )
                        .await?;
                }
                if !missed.is_empty() {
                    tracing::warn!(
                        job = job.name,
                        missed = missed.len(),
                        policy = if job.missed == Missed::RunOnce {
                            "run once now"
                        } else {
                            "skip"
                        },
                        "scheduled runs were missed while the daemon was down"
                    );
                    ctx.catalog.set_last_fire(&job.name, now).await?;
                    alert::send(
                        ctx,
                        &event(
                            ctx,
                            job,
                            "missed",
                            Some(crate::job::Failure::new(
                                "run.missed",
                                format!(
                                    "{} missed while the daemon was down",
                                    crate::model::count(missed.len(), "run")
                                ),
                            )),
                        ),
                    )
                    .await;
                    if job.missed == Missed::RunOnce {
                        launch(ctx, shared, job, now).await;
                    }
                }
            }
            Some(_) => {}
            None => ctx.catalog.set_last_fire(&job.name, now).await?,
        }
        if let Some(at) = next_fire(job, now) {
            next.insert(job.name.clone(), (at, job.clone()));
        }
    }
    Ok(next)
}

/// Publishes the plan's next fires for `ctl status`.
fn publish_plan(shared: &Shared, next: &Plan) {
    *shared
        .plan
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = next
        .iter()
        .map(|(name, (at, job))| (name.clone(), (job.kind.as_str().to_string(), *at)))
        .collect();
}

/// Starts a job in the background unless its previous run still goes on; its invocation id.
pub(super) async fn launch(
    ctx: &Arc<Context>,
    shared: &Arc<Shared>,
    job: &ScheduledJob,
    scheduled: jiff::Timestamp,
) -> Option<String> {
    if shared.shutdown.is_cancelled() {
        return None;
    }
    if !claim(shared, &job.name) {
        tracing::warn!(
            job = job.name,
            "not started: its previous run is still going"
        );
        if let Err(e) = ctx
            .catalog
            .record_not_run(
                job.kind.as_str(),
                &job.name,
                scheduled,
                "skipped",
                "the previous run of this job was still going",
            )
            .await
        {
            tracing::error!(job = job.name, "recording a skipped run: {e}");
        }
        return None;
    }
    let progress = Arc::new(crate::job::progress::Progress::hidden());
    let trigger = if ctx.trigger == Trigger::Socket {
        "socket"
    } else {
        "schedule"
    };
    let id = shared.begin(&job.name, job.kind.as_str(), trigger, progress.clone());
    let (ctx, shared, job, invocation) = (ctx.clone(), shared.clone(), job.clone(), id.clone());
    let tracker = shared.tracker.clone();
    tracker.spawn(async move {
        let permit = shared.slots.clone().acquire_owned().await;
        let mut failure = Some(crate::job::Failure::new(
            "run.cancelled",
            "the daemon stopped before the job could start",
        ));
        if permit.is_ok() && !shared.shutdown.is_cancelled() {
            tracing::info!(
                job = job.name,
                kind = job.kind.as_str(),
                invocation,
                "job started"
            );
            let run_ctx = ctx.for_job(Some(&job.name), progress);
            let requests = runner::requests(&run_ctx, &job);
            failure = runner::execute(&run_ctx, &shared, &requests).await;
            match &failure {
                None => tracing::info!(job = job.name, invocation, "job finished"),
                Some(f) => tracing::error!(
                    job = job.name,
                    invocation,
                    code = f.code,
                    "job FAILED: {}",
                    f.message
                ),
            }
            alert::send(
                &ctx,
                &event(
                    &ctx,
                    &job,
                    if failure.is_none() {
                        "succeeded"
                    } else {
                        "failed"
                    },
                    failure.clone(),
                ),
            )
            .await;
        }
        shared.end(&invocation, failure);
        shared
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&job.name);
    });
    Some(id)
}

/// The schedule files shipped in `schedules/` (for `config check` and tests).
#[must_use]
pub fn shipped_schedules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schedules")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Diagnostics;

    fn job(cron: &str, jitter: &str) -> ScheduledJob {
        let text = format!(
            "[[job]]\nname = \"j\"\nkind = \"copy\"\ncron = \"{cron}\"\njitter = \"{jitter}\"\n"
        );
        let path = Path::new("t.toml");
        let mut d = Diagnostics::new(path, &text);
        let mut jobs = crate::config::schedules::parse_file(path, &text, &mut d, &[], &[]);
        assert!(!d.has_errors(), "{:?}", d.items());
        jobs.remove(0)
    }

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn shared(slots: usize) -> Shared {
        Shared::new(slots)
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        let j = job("0 0 * * * *", "90s");
        let after = ts("2026-11-29T10:15:00Z");
        let base = ts("2026-11-29T11:00:00Z");
        let mut spread = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let at = next_fire(&j, after).unwrap();
            assert!(
                at >= base && at <= base + jiff::SignedDuration::from_secs(90),
                "{at}"
            );
            spread.insert(at.as_second());
        }
        assert!(spread.len() > 10, "jitter actually varies: {spread:?}");
        let none = job("0 0 * * * *", "0s");
        assert_eq!(next_fire(&none, after), Some(base));
    }

    #[test]
    fn a_downtime_yields_every_missed_fire() {
        let j = job("0 0 * * * *", "0s");
        // Down from 10:30 to 14:10: the 11, 12, 13 and 14 o'clock runs were missed.
        let missed = missed_fires(&j, ts("2026-11-29T10:30:00Z"), ts("2026-11-29T14:10:00Z"));
        assert_eq!(
            missed,
            ["11", "12", "13", "14"].map(|h| ts(&format!("2026-11-29T{h}:00:00Z")))
        );
        assert!(
            missed_fires(&j, ts("2026-11-29T10:30:00Z"), ts("2026-11-29T10:59:59Z")).is_empty()
        );
        // A year down with an every-second job: bounded.
        let fast = job("* * * * * *", "0s");
        let many = missed_fires(
            &fast,
            ts("2025-11-29T00:00:00Z"),
            ts("2026-11-29T00:00:00Z"),
        );
        assert_eq!(many.len(), MAX_MISSED_RECORDED);
    }

    #[test]
    fn a_job_never_overlaps_itself() {
        let shared = shared(2);
        assert!(claim(&shared, "backup"));
        assert!(
            !claim(&shared, "backup"),
            "a second start is refused while the first runs"
        );
        assert!(claim(&shared, "copy"), "other jobs are independent");
        shared.running.lock().unwrap().remove("backup");
        assert!(claim(&shared, "backup"));
    }

    /// With paused time: jobs of one source run one after the other, and the global limit holds.
    #[tokio::test(start_paused = true)]
    async fn jobs_on_one_source_queue_and_the_limit_holds() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let shared = Arc::new(shared(2));
        let (same, total) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (peak_same, peak_total) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..6 {
            let source = if i % 2 == 0 {
                "crm"
            } else {
                format!("other{i}").leak()
            };
            let (shared, same, total, peak_same, peak_total) = (
                shared.clone(),
                same.clone(),
                total.clone(),
                peak_same.clone(),
                peak_total.clone(),
            );
            set.spawn(async move {
                let _slot = shared.slots.clone().acquire_owned().await.unwrap();
                let queue = shared.queue(source);
                let _turn = queue.lock().await;
                let t = total.fetch_add(1, Ordering::SeqCst) + 1;
                peak_total.fetch_max(t, Ordering::SeqCst);
                if source == "crm" {
                    let n = same.fetch_add(1, Ordering::SeqCst) + 1;
                    peak_same.fetch_max(n, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
                if source == "crm" {
                    same.fetch_sub(1, Ordering::SeqCst);
                }
                total.fetch_sub(1, Ordering::SeqCst);
            });
        }
        let started = tokio::time::Instant::now();
        while set.join_next().await.is_some() {}
        assert_eq!(
            peak_same.load(Ordering::SeqCst),
            1,
            "one job per source at a time"
        );
        assert_eq!(peak_total.load(Ordering::SeqCst), 2, "the global limit");
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(180),
            "six 60 s jobs, two at a time"
        );
    }
}
