//! The daemon runs the continuous archive of every source that has one, for as long as it
//! runs: one task per source, each the same archiver `custodian archive run` runs in the
//! foreground. An archiver that cannot start (the server is down, another process holds its
//! lock) is logged and tried again with a growing backoff; a configuration reload stops them
//! (each stores what its spool holds first) and starts those of the new configuration.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::job::Context;

/// The running archivers; [`Archivers::stop`] ends them.
#[derive(Default)]
pub struct Archivers {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Archivers {
    /// Starts one archiver per source with `[source.NAME.archive] enabled = true`.
    pub fn start(ctx: &Arc<Context>) -> Self {
        let stop = CancellationToken::new();
        let tasks = ctx
            .config
            .sources
            .iter()
            .filter(|s| {
                crate::job::wal::archive_settings(s)
                    .is_ok_and(|a| a.method == crate::config::ArchiveMethod::Receivewal)
            })
            .map(|s| tokio::spawn(keep_running(ctx.clone(), s.name.clone(), stop.clone())))
            .collect();
        Self { stop, tasks }
    }

    /// Stops every archiver and waits for their last flush.
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn keep_running(ctx: Arc<Context>, source: String, stop: CancellationToken) {
    let mut backoff = Duration::from_secs(5);
    loop {
        let started = std::time::Instant::now();
        match crate::job::wal::run(&ctx, Some(&source), stop.clone()).await {
            Ok(_) if stop.is_cancelled() => return,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(source = %source, error = %e, code = e.code(), "the archiver could not run; trying again in {} s", backoff.as_secs());
            }
        }
        if started.elapsed() > Duration::from_secs(300) {
            backoff = Duration::from_secs(5);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(300));
    }
}
