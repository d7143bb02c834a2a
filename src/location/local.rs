//! A restic repository in a local directory.
//!
//! Reads, listing and removal are rustic_backend's `LocalBackend`. Writes are our own, because
//! `LocalBackend` writes in place (truncate, set length, write): a crash or a full disk midway
//! leaves a file under its final, content-addressed name with the wrong content, which restic
//! then reports as corruption. Here every file is written to a temporary name, synced, renamed
//! into place and its directory synced, so a file either exists complete or not at all.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rustic_backend::LocalBackend;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

/// A local directory holding a restic repository.
#[derive(Debug)]
pub struct LocalStorage {
    inner: LocalBackend,
    root: PathBuf,
}

impl LocalStorage {
    /// # Errors
    /// When the path is not valid UTF-8 (rustic_backend addresses paths as strings).
    pub fn new(root: &Path) -> Result<Self, String> {
        let text = root
            .to_str()
            .ok_or_else(|| format!("path {} is not valid UTF-8", root.display()))?;
        let inner =
            LocalBackend::new(text, Vec::<(String, String)>::new()).map_err(|e| e.display_log())?;
        Ok(Self {
            inner,
            root: root.to_path_buf(),
        })
    }

    /// Where a repository file lives (restic's layout).
    fn path(&self, tpe: FileType, id: &Id) -> PathBuf {
        let hex = id.to_hex();
        match tpe {
            FileType::Config => self.root.join("config"),
            FileType::Pack => self.root.join("data").join(&hex[0..2]).join(hex.as_str()),
            _ => self.root.join(tpe.dirname()).join(hex.as_str()),
        }
    }
}

fn io_error(err: io::Error, path: &Path) -> Box<RusticError> {
    let guidance = if err.kind() == io::ErrorKind::StorageFull {
        "The disk holding `{path}` is full. Free space or move the location; nothing partial was left in the repository."
    } else {
        "Writing `{path}` failed. Check the directory's permissions and free space; nothing partial was left in the repository."
    };
    RusticError::with_source(ErrorKind::InputOutput, guidance, err)
        .attach_context("path", path.display().to_string())
}

/// Writes `parts` to `path` atomically: temp file, fsync, rename, fsync of the directory.
fn write_atomically(path: &Path, parts: &[Bytes]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    for part in parts {
        tmp.write_all(part)?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    fs::File::open(dir)?.sync_all()
}

impl ReadBackend for LocalStorage {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.inner.list_with_size(tpe)
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.inner.read_full(tpe, id)
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        self.inner.read_partial(tpe, id, cacheable, offset, length)
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.path(tpe, id).display().to_string()
    }
}

impl WriteBackend for LocalStorage {
    fn create(&self) -> RusticResult<()> {
        self.inner.create()
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let path = self.path(tpe, id);
        write_atomically(&path, content.slice()).map_err(|err| io_error(err, &path))
    }

    fn remove(&self, tpe: FileType, id: &Id, cacheable: bool) -> RusticResult<()> {
        self.inner.remove(tpe, id, cacheable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_land_in_restic_layout_without_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(dir.path()).unwrap();
        storage.create().unwrap();
        let id: Id = "ab".repeat(32).parse().unwrap();
        let content = BytesList::from(vec![1u8, 2, 3]);
        storage
            .write_bytes(FileType::Pack, &id, false, content)
            .unwrap();
        let expected = dir.path().join("data/ab").join("ab".repeat(32));
        assert_eq!(fs::read(&expected).unwrap(), vec![1, 2, 3]);
        assert_eq!(
            storage.read_full(FileType::Pack, &id).unwrap().as_ref(),
            &[1, 2, 3]
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("data/ab"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }
}
