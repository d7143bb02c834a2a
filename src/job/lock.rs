//! Exclusive locks between Custodian processes (the daemon and a CLI run, say): one backup of
//! a source at a time, one writer per location. Advisory `flock`s on files in the state
//! directory, released when the process ends however it ends.

use std::fs::{self, File, TryLockError};
use std::path::Path;

use super::JobError;

/// A held lock; released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Takes the lock `name` under `<state_dir>/locks/`, failing at once if another process holds it.
///
/// # Errors
/// [`JobError::Busy`] when held elsewhere, or an I/O error.
pub fn try_lock(state_dir: &Path, name: &str, what: &str) -> Result<Lock, JobError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = state_dir.join("locks");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| JobError::io(format!("creating {}", dir.display()), &e))?;
    let path = dir.join(format!("{name}.lock"));
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| JobError::io(format!("opening {}", path.display()), &e))?;
    match file.try_lock() {
        Ok(()) => Ok(Lock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(JobError::Busy(format!(
            "{what} is already running in another Custodian process; it will be retried"
        ))),
        Err(TryLockError::Error(e)) => Err(JobError::io(format!("locking {}", path.display()), &e)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn second_holder_is_refused_until_release() {
        let dir = tempfile::tempdir().unwrap();
        let first = super::try_lock(dir.path(), "source-crm", "backup of crm").unwrap();
        let err = super::try_lock(dir.path(), "source-crm", "backup of crm").unwrap_err();
        assert_eq!(err.code(), "job.busy");
        drop(first);
        super::try_lock(dir.path(), "source-crm", "backup of crm").unwrap();
    }
}
