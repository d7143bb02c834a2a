//! Reading files back out of a snapshot: the manifest, and whole dumps streamed to a writer.

use std::io::Write;
use std::path::Path;

use super::{Repo, RepoError};

impl Repo {
    /// Streams one file of a snapshot into `writer`; returns the bytes written.
    ///
    /// # Errors
    /// When the snapshot or file does not exist, or a pack cannot be read or decrypted.
    pub fn dump_file(
        &self,
        snapshot_id: &str,
        path: &Path,
        writer: &mut impl Write,
    ) -> Result<u64, RepoError> {
        self.dump_file_sized(snapshot_id, path, writer, &mut |_| {})
    }

    /// As [`Repo::dump_file`], telling `size` the file's size before the first byte.
    ///
    /// # Errors
    /// As [`Repo::dump_file`].
    pub fn dump_file_sized(
        &self,
        snapshot_id: &str,
        path: &Path,
        writer: &mut impl Write,
        size: &mut dyn FnMut(u64),
    ) -> Result<u64, RepoError> {
        let snap = self.snapshot_file(snapshot_id)?;
        let indexed = self
            .reopen()?
            .to_indexed()
            .map_err(|e| self.err("reading the index", &e))?;
        let node = indexed.node_from_path(snap.tree, path).map_err(|e| {
            // A tree that cannot be read is damage, not an absent file.
            super::unreadable_pack(self.location(), &e).unwrap_or_else(|| {
                RepoError::FileNotInSnapshot {
                    location: self.location().to_string(),
                    snapshot: snapshot_id.to_string(),
                    path: path.display().to_string(),
                }
            })
        })?;
        size(node.meta.size);
        let mut counter = CountingWriter {
            inner: writer,
            bytes: 0,
        };
        indexed
            .dump(&node, &mut counter)
            .map_err(|e| self.err("reading the snapshot's data", &e))?;
        Ok(counter.bytes)
    }

    /// Reads one small file of a snapshot (the manifest) into memory.
    ///
    /// # Errors
    /// As [`Repo::dump_file`].
    pub fn read_file(&self, snapshot_id: &str, path: &Path) -> Result<Vec<u8>, RepoError> {
        let mut out = Vec::new();
        self.dump_file(snapshot_id, path, &mut out)?;
        Ok(out)
    }
}

struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
