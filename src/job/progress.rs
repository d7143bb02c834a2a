//! Progress of the job a context runs: its current phase (`dumping crm`, `copying to offsite`,
//! `reading local's packs`, `restoring crm.dump`), bytes done and, where known, the total —
//! hence rate and ETA. Where it goes is the caller's choice: a bar on the terminal (indicatif;
//! only when stderr is one), NDJSON events on stdout (`--json --progress`), or nowhere but the
//! snapshot the daemon shows in `ctl status`. Updates are atomic adds: never slower than
//! without.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Where progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// Kept for [`Progress::snapshot`] only.
    Hidden,
    /// A bar on stderr.
    Terminal,
    /// One JSON object per line on stdout, at most twice a second and at each phase.
    Ndjson,
}

struct Phase {
    label: String,
    total: Option<u64>,
    started: Instant,
    bar: Option<indicatif::ProgressBar>,
    last_event: Option<Instant>,
}

/// The progress of one job.
pub struct Progress {
    display: Display,
    done: AtomicU64,
    phase: Mutex<Option<Phase>>,
}

/// What the progress is now.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct Snapshot {
    pub phase: String,
    pub done_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    pub bytes_per_second: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u64>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("display", &self.display)
            .finish_non_exhaustive()
    }
}

impl Progress {
    #[must_use]
    pub fn new(display: Display) -> Self {
        Self {
            display,
            done: AtomicU64::new(0),
            phase: Mutex::new(None),
        }
    }

    /// Hidden progress: kept for snapshots only.
    #[must_use]
    pub fn hidden() -> Self {
        Self::new(Display::Hidden)
    }

    /// A terminal bar when stderr is a terminal, else hidden.
    #[must_use]
    pub fn for_terminal() -> Self {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Self::new(Display::Terminal)
        } else {
            Self::hidden()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Phase>> {
        self.phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a phase (finishing the one before), with its total in bytes when known.
    pub fn phase(&self, label: impl Into<String>, total: Option<u64>) {
        let label = label.into();
        let mut phase = self.lock();
        if let Some(p) = phase.take()
            && let Some(bar) = p.bar
        {
            bar.finish();
        }
        self.done.store(0, Ordering::Relaxed);
        let bar = (self.display == Display::Terminal).then(|| {
            let bar = match total {
                Some(n) => indicatif::ProgressBar::new(n).with_style(bar_style()),
                None => indicatif::ProgressBar::new_spinner().with_style(
                    indicatif::ProgressStyle::with_template(
                        "{prefix:>22} {spinner} {binary_bytes:>10} {binary_bytes_per_sec:>12}  {elapsed}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                ),
            };
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
            bar.set_prefix(label.clone());
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        *phase = Some(Phase {
            label,
            total,
            started: Instant::now(),
            bar,
            last_event: None,
        });
        drop(phase);
        self.event(true);
    }

    /// Sets (or corrects) the current phase's total.
    pub fn set_total(&self, total: u64) {
        let mut phase = self.lock();
        if let Some(p) = phase.as_mut() {
            p.total = Some(total);
            if let Some(bar) = &p.bar {
                // A spinner (total unknown at the start) becomes a bar with an ETA.
                bar.set_style(bar_style());
                bar.set_length(total);
            }
        }
    }

    /// Counts `bytes` more done.
    pub fn add(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
        if self.display == Display::Hidden {
            return;
        }
        if self.display == Display::Terminal {
            if let Some(p) = self.lock().as_ref()
                && let Some(bar) = &p.bar
            {
                bar.inc(bytes);
            }
        } else {
            self.event(false);
        }
    }

    /// Ends the current phase.
    pub fn finish(&self) {
        self.event(true);
        if let Some(p) = self.lock().take()
            && let Some(bar) = p.bar
        {
            bar.finish_and_clear();
        }
    }

    /// Where the job is now; `None` between phases.
    #[must_use]
    pub fn snapshot(&self) -> Option<Snapshot> {
        let phase = self.lock();
        let p = phase.as_ref()?;
        let done = self.done.load(Ordering::Relaxed);
        let secs = p.started.elapsed().as_secs_f64().max(0.001);
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let rate = (done as f64 / secs) as u64;
        let eta = p
            .total
            .filter(|_| rate > 0)
            .map(|t| t.saturating_sub(done) / rate.max(1));
        Some(Snapshot {
            phase: p.label.clone(),
            done_bytes: done,
            total_bytes: p.total,
            bytes_per_second: rate,
            eta_seconds: eta,
        })
    }

    /// An NDJSON event: at each phase change, else at most twice a second.
    fn event(&self, force: bool) {
        if self.display != Display::Ndjson {
            return;
        }
        let due = {
            let mut phase = self.lock();
            let Some(p) = phase.as_mut() else { return };
            let due = force
                || p.last_event
                    .is_none_or(|t| t.elapsed() >= Duration::from_millis(500));
            if due {
                p.last_event = Some(Instant::now());
            }
            due
        };
        if due && let Some(s) = self.snapshot() {
            let line = serde_json::json!({ "schema": crate::model::JSON_SCHEMA, "event": "progress", "progress": s });
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// rustic_core's progress reports (copies, checks that read data) into a [`Progress`].
#[derive(Debug, Clone)]
pub struct Bars(pub std::sync::Arc<Progress>);

#[derive(Debug)]
struct Bar {
    progress: std::sync::Arc<Progress>,
    bytes: bool,
}

impl rustic_core::RusticProgress for Bar {
    fn is_hidden(&self) -> bool {
        !self.bytes
    }
    fn set_length(&self, len: u64) {
        if self.bytes {
            self.progress.set_total(len);
        }
    }
    fn set_title(&self, _title: &str) {}
    fn inc(&self, inc: u64) {
        if self.bytes {
            self.progress.add(inc);
        }
    }
    fn finish(&self) {}
}

impl rustic_core::ProgressBars for Bars {
    fn progress(&self, kind: rustic_core::ProgressType, _prefix: &str) -> rustic_core::Progress {
        // Only byte counts become Custodian's progress; rustic's counters and spinners (files,
        // snapshots) would only make the bar jump between units.
        rustic_core::Progress::new(Bar {
            progress: self.0.clone(),
            bytes: matches!(kind, rustic_core::ProgressType::Bytes),
        })
    }
}

/// A bar with a known total: bytes of the total, rate and time left.
fn bar_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(
        "{prefix:>22} [{bar:30}] {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12}  ETA {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ")
}
