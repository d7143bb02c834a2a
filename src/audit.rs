//! The audit log: every scheduled or human action, appended to `state-dir/audit.log` as one JSON
//! line per entry, each carrying the SHA-256 of the entry before it. Editing, deleting or
//! reordering an entry breaks the chain, and [`AuditLog::verify`] names the first bad entry;
//! deleting entries at the end is caught against the head (sequence and hash) that every
//! append also records in `audit.head`. Entries go to the journal too. Parameters never carry
//! secrets: callers pass names and references, never values.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::time;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Why the audit log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot {what} the audit log {path}: {message}")]
    Io {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
}

/// One action, as recorded.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub time: String,
    /// Unix user name (or `uid:N`).
    pub actor: String,
    pub uid: u32,
    /// `administrator`, `operator`, `viewer`, `local` (the CLI without the daemon), `system`.
    pub role: String,
    /// `cli`, `schedule`, `socket`, `demo`.
    pub trigger: String,
    /// `backup`, `drill`, `restore`, `approve`, …
    pub action: String,
    pub target: Option<String>,
    pub params: serde_json::Value,
    /// `succeeded`, `failed`, `refused`, `requested`, `approved`, …
    pub outcome: String,
    pub detail: Option<String>,
    /// Hash of the previous entry (zeros for the first).
    pub prev: String,
    /// SHA-256 of this entry with `hash` empty.
    pub hash: String,
}

/// An action to record.
#[derive(Clone, Debug, Default)]
pub struct NewEntry {
    pub actor: String,
    pub uid: u32,
    pub role: String,
    pub trigger: String,
    pub action: String,
    pub target: Option<String>,
    pub params: serde_json::Value,
    pub outcome: String,
    pub detail: Option<String>,
}

/// The result of checking the whole chain.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    pub ok: bool,
    pub entries: u64,
    /// The first entry that breaks the chain: line number (1-based) and what is wrong.
    pub first_bad: Option<BadEntry>,
    pub head_hash: Option<String>,
    /// The log ends in a partial entry left by a process that died while writing it (removed
    /// by the next append); not a break of the chain.
    pub torn_tail: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct BadEntry {
    pub line: u64,
    pub seq: Option<u64>,
    pub reason: String,
}

/// What `audit list` shows.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub since: Option<String>,
    pub until: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
}

/// A line of the log: its number and its entry (or why it is not one).
type Line = (u64, Result<Entry, String>);

/// The audit log of one state directory.
#[derive(Clone, Debug)]
pub struct AuditLog {
    path: PathBuf,
    head: PathBuf,
}

fn hash_of(entry: &Entry) -> String {
    let mut unhashed = entry.clone();
    unhashed.hash = String::new();
    let bytes = serde_json::to_vec(&unhashed).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

impl AuditLog {
    #[must_use]
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("audit.log"),
            head: state_dir.join("audit.head"),
        }
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    fn dir_head(&self) -> &Path {
        &self.head
    }

    fn io(&self, what: &'static str, e: &std::io::Error) -> AuditError {
        AuditError::Io {
            what,
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Appends an entry (under an exclusive lock, so that the daemon and CLI runs interleave
    /// safely), syncs it, and logs it to the journal.
    ///
    /// # Errors
    /// When the log cannot be written.
    pub fn append(&self, new: NewEntry) -> Result<Entry, AuditError> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = self.path.parent() {
            use std::os::unix::fs::DirBuilderExt;
            let _ = fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir);
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| self.io("open", &e))?;
        file.lock().map_err(|e| self.io("lock", &e))?;
        let torn = drop_torn_tail(&mut file).map_err(|e| self.io("repair", &e))?;
        if torn > 0 {
            tracing::warn!(
                bytes = torn,
                "the audit log ended in a partial entry (a process died while writing it); it was removed"
            );
        }
        let last = last_entry(&mut file).map_err(|e| self.io("read", &e))?;
        let mut entry = Entry {
            seq: last.as_ref().map_or(1, |l| l.seq + 1),
            time: time::format(time::now()),
            actor: new.actor,
            uid: new.uid,
            role: new.role,
            trigger: new.trigger,
            action: new.action,
            target: new.target,
            params: new.params,
            outcome: new.outcome,
            detail: new.detail,
            prev: last.map_or_else(|| GENESIS.to_string(), |l| l.hash),
            hash: String::new(),
        };
        entry.hash = hash_of(&entry);
        let mut line = serde_json::to_vec(&entry).unwrap_or_default();
        line.push(b'\n');
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(|e| self.io("append to", &e))?;
        let head = format!("{} {}\n", entry.seq, entry.hash);
        let tmp = self.head.with_extension("head.tmp");
        // Owner-only like the log itself: the head says how long the log is.
        (|| {
            use std::io::Write;
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
            f.write_all(head.as_bytes())?;
            fs::rename(&tmp, &self.head)
        })()
        .map_err(|e| self.io("record the head of", &e))?;
        drop(file);
        tracing::info!(
            target: "custodian::audit",
            seq = entry.seq,
            actor = %entry.actor,
            uid = entry.uid,
            role = %entry.role,
            trigger = %entry.trigger,
            action = %entry.action,
            target_name = entry.target.as_deref().unwrap_or("-"),
            outcome = %entry.outcome,
            "audit"
        );
        Ok(entry)
    }

    fn read_all(&self) -> Result<Vec<Line>, AuditError> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io("open", &e)),
        };
        let mut out = Vec::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| self.io("read", &e))?;
            let parsed = serde_json::from_str::<Entry>(&line).map_err(|e| e.to_string());
            out.push((i as u64 + 1, parsed));
        }
        Ok(out)
    }

    /// Checks the whole chain and the recorded head.
    ///
    /// # Errors
    /// When the log cannot be read.
    pub fn verify(&self) -> Result<Verification, AuditError> {
        let mut entries = self.read_all()?;
        let torn_tail = fs::read(&self.path)
            .map(|bytes| bytes.last().is_some_and(|b| *b != b'\n'))
            .unwrap_or(false);
        if torn_tail {
            entries.pop();
        }
        let mut prev = GENESIS.to_string();
        let mut count = 0;
        let mut hashes: Vec<String> = Vec::new();
        let bad = |line, seq, reason: String| Some(BadEntry { line, seq, reason });
        let mut first_bad = None;
        for (expected_seq, (line, parsed)) in (1..).zip(entries.iter()) {
            let entry = match parsed {
                Ok(e) => e,
                Err(e) => {
                    first_bad = bad(*line, None, format!("not a valid entry ({e})"));
                    break;
                }
            };
            if entry.hash != hash_of(entry) {
                first_bad = bad(
                    *line,
                    Some(entry.seq),
                    "its content was changed after it was written (hash mismatch)".into(),
                );
                break;
            }
            if entry.prev != prev {
                first_bad = bad(
                    *line,
                    Some(entry.seq),
                    "it does not follow the entry before it (an entry was deleted, inserted or moved)".into(),
                );
                break;
            }
            if entry.seq != expected_seq {
                first_bad = bad(
                    *line,
                    Some(entry.seq),
                    format!("sequence {} where {expected_seq} was expected", entry.seq),
                );
                break;
            }
            prev.clone_from(&entry.hash);
            hashes.push(entry.hash.clone());
            count += 1;
        }
        if first_bad.is_none()
            && let Ok(head) = fs::read_to_string(&self.head)
        {
            let mut parts = head.split_whitespace();
            let seq: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let hash = parts.next().unwrap_or_default();
            // The head is written right after each entry: it may lag one entry behind after a
            // crash, never run ahead of the log or disagree with it.
            let agrees = seq == 0
                || usize::try_from(seq - 1)
                    .ok()
                    .and_then(|i| hashes.get(i))
                    .is_some_and(|h| h == hash);
            if seq > count || !agrees || count > seq + 1 {
                first_bad = bad(
                    count + 1,
                    Some(count + 1),
                    format!(
                        "the log ends at entry {count} but entry {seq} was written: entries at the end were deleted or replaced"
                    ),
                );
            }
        }
        Ok(Verification {
            ok: first_bad.is_none(),
            entries: count,
            first_bad,
            head_hash: (count > 0).then_some(prev),
            torn_tail,
        })
    }

    /// Entries matching a filter, oldest first (unreadable lines are skipped; `verify` reports
    /// them).
    ///
    /// # Errors
    /// When the log cannot be read.
    pub fn list(&self, filter: &Filter) -> Result<Vec<Entry>, AuditError> {
        Ok(self
            .read_all()?
            .into_iter()
            .filter_map(|(_, e)| e.ok())
            .filter(|e| {
                filter
                    .since
                    .as_ref()
                    .is_none_or(|s| e.time.as_str() >= s.as_str())
            })
            .filter(|e| {
                filter
                    .until
                    .as_ref()
                    .is_none_or(|u| e.time.as_str() < u.as_str())
            })
            .filter(|e| filter.actor.as_ref().is_none_or(|a| &e.actor == a))
            .filter(|e| filter.action.as_ref().is_none_or(|a| &e.action == a))
            .collect())
    }
}

/// Removes a partial last line (a writer died mid-append); returns how many bytes went.
fn drop_torn_tail(file: &mut File) -> std::io::Result<u64> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(0);
    }
    let start = len.saturating_sub(256 * 1024);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    if tail.last() == Some(&b'\n') {
        return Ok(0);
    }
    let keep = tail
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(start, |i| start + i as u64 + 1);
    file.set_len(keep)?;
    file.sync_data()?;
    Ok(len - keep)
}

/// The last complete entry of the log (read from its tail).
fn last_entry(file: &mut File) -> std::io::Result<Option<Entry>> {
    let len = file.seek(SeekFrom::End(0))?;
    let start = len.saturating_sub(256 * 1024);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let text = String::from_utf8_lossy(&tail);
    Ok(text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str(l).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str) -> NewEntry {
        NewEntry {
            actor: "alice".into(),
            uid: 1000,
            role: "administrator".into(),
            trigger: "cli".into(),
            action: action.into(),
            target: Some("crm".into()),
            params: serde_json::json!({"location": "local"}),
            outcome: "succeeded".into(),
            detail: None,
        }
    }

    fn log_with(n: usize) -> (tempfile::TempDir, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path());
        for i in 0..n {
            log.append(entry(&format!("action-{i}"))).unwrap();
        }
        (dir, log)
    }

    fn lines(log: &AuditLog) -> Vec<String> {
        fs::read_to_string(log.path())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn write_lines(log: &AuditLog, lines: &[String]) {
        fs::write(log.path(), lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (_d, log) = log_with(5);
        let v = log.verify().unwrap();
        assert!(v.ok, "{v:?}");
        assert_eq!(v.entries, 5);
        let listed = log.list(&Filter::default()).unwrap();
        assert_eq!(listed.len(), 5);
        assert_eq!(listed[1].prev, listed[0].hash);
        let only = log
            .list(&Filter {
                action: Some("action-3".into()),
                ..Filter::default()
            })
            .unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].seq, 4);
    }

    #[test]
    fn an_edit_is_found_at_its_line() {
        let (_d, log) = log_with(5);
        let mut l = lines(&log);
        l[2] = l[2].replace("\"outcome\":\"succeeded\"", "\"outcome\":\"failed\"");
        write_lines(&log, &l);
        let v = log.verify().unwrap();
        assert!(!v.ok);
        let bad = v.first_bad.unwrap();
        assert_eq!((bad.line, bad.seq), (3, Some(3)));
        assert!(bad.reason.contains("changed"), "{}", bad.reason);
    }

    #[test]
    fn a_deletion_and_a_reordering_are_found() {
        let (_d, log) = log_with(5);
        let mut l = lines(&log);
        l.remove(1);
        write_lines(&log, &l);
        let bad = log.verify().unwrap().first_bad.unwrap();
        assert_eq!(bad.line, 2);
        assert!(bad.reason.contains("deleted"), "{}", bad.reason);

        let (_d, log) = log_with(5);
        let mut l = lines(&log);
        l.swap(3, 4);
        write_lines(&log, &l);
        let bad = log.verify().unwrap().first_bad.unwrap();
        assert_eq!(bad.line, 4);
    }

    #[test]
    fn a_torn_last_entry_is_removed_and_a_lagging_head_accepted() {
        let (_d, log) = log_with(3);
        // A writer died mid-line, before updating the head.
        let mut text = fs::read_to_string(log.path()).unwrap();
        text.push_str("{\"seq\":4,\"time\":\"2026-");
        fs::write(log.path(), &text).unwrap();
        let v = log.verify().unwrap();
        assert!(
            v.ok && v.torn_tail,
            "a torn tail is a crash, not tampering: {v:?}"
        );
        log.append(entry("after-crash")).unwrap();
        let v = log.verify().unwrap();
        assert!(v.ok, "{v:?}");
        assert_eq!(v.entries, 4);
        // A crash between the entry and its head: the head lags by one, still consistent.
        let head = fs::read_to_string(log.dir_head()).unwrap();
        log.append(entry("next")).unwrap();
        fs::write(log.dir_head(), head).unwrap();
        assert!(log.verify().unwrap().ok);
    }

    #[test]
    fn cutting_the_end_is_found_against_the_head() {
        let (_d, log) = log_with(5);
        let mut l = lines(&log);
        l.truncate(3);
        write_lines(&log, &l);
        let v = log.verify().unwrap();
        assert!(!v.ok);
        assert!(v.first_bad.unwrap().reason.contains("entry 5 was written"));
    }
}
