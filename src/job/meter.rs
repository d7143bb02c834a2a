//! A writer that counts the bytes it passes on into a job's progress, and notes when its
//! consumer stopped reading.

use std::io::Write;

use super::progress::Progress;

/// A writer that counts into a [`Progress`] and notes when its consumer stopped reading.
pub(crate) struct Metered<'a> {
    inner: &'a mut dyn Write,
    progress: &'a Progress,
    failed: bool,
}

impl<'a> Metered<'a> {
    pub(crate) fn new(inner: &'a mut dyn Write, progress: &'a Progress) -> Self {
        Self {
            inner,
            progress,
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
        self.progress.add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}
