//! Progress of a stream on a terminal: bytes and rate once a second on stderr, nothing when
//! not asked for.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::model::human_bytes;

/// Counts bytes and, when shown, prints them with the rate twice a second.
pub(crate) struct Meter {
    bytes: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Meter {
    pub(crate) fn start(label: &str, show: bool) -> Self {
        let bytes = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let thread = show.then(|| {
            let (bytes, done, label) = (bytes.clone(), done.clone(), label.to_string());
            std::thread::spawn(move || {
                let started = Instant::now();
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(500));
                    let n = bytes.load(Ordering::Relaxed);
                    let rate = n as f64 / started.elapsed().as_secs_f64().max(0.001);
                    eprint!(
                        "\r  restoring {label}: {} ({}/s)      ",
                        human_bytes(n),
                        human_bytes(rate as u64)
                    );
                }
                eprintln!();
            })
        });
        Self {
            bytes,
            done,
            thread,
        }
    }

    pub(crate) fn stop(&self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A writer that counts into a [`Meter`] and notes when its consumer stopped reading.
pub(crate) struct Metered<'a> {
    inner: &'a mut dyn Write,
    meter: &'a Meter,
    failed: bool,
}

impl<'a> Metered<'a> {
    pub(crate) fn new(inner: &'a mut dyn Write, meter: &'a Meter) -> Self {
        Self {
            inner,
            meter,
            failed: false,
        }
    }

    /// Whether a write failed (the consumer stopped reading).
    pub(crate) fn failed(&self) -> bool {
        self.failed
    }
}

impl Write for Metered<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf).inspect_err(|_| self.failed = true)?;
        self.meter.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}
