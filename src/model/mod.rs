//! Domain types shared by every layer: names, timestamps, the dump manifest and the naming
//! convention that maps Custodian's world onto restic snapshots.

pub mod exit;
pub mod finding;
pub mod manifest;
pub mod naming;
pub mod objects;
pub mod phases;
pub mod status;
pub mod subset;
pub mod time;
pub mod wal;

pub use exit::Exit;
pub use finding::{Finding, Verdict};
pub use manifest::{
    ChecksumMode, Comparison, Engine, Manifest, ManifestFile, Mismatch, StreamPart, TableStream,
    TableSummary,
};
pub use objects::{CompareScope, Objects};
pub use phases::{Phase, Phases};
pub use subset::ReadSubset;

/// `<hex>` SHA-256 of some bytes.
#[must_use]
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

/// The version of Custodian's `--json` contract (docs/json.md): every envelope and progress
/// event names it.
pub const JSON_SCHEMA: &str = "custodian.v1";

/// The unix user running this process (its name, or `uid:N` when it has none).
#[must_use]
pub fn current_user() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("uid:{uid}"), |u| u.name)
}

/// Formats an integer with thousands separators (`120,331`), for messages people read.
#[must_use]
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "1 snapshot", "2 snapshots" (regular plurals only).
#[must_use]
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Human-readable byte size (`12.3 MiB`).
#[must_use]
pub fn human_bytes(n: u64) -> String {
    bytesize::ByteSize(n).display().iec().to_string()
}

/// The start time of a process (field 22 of `/proc/PID/stat`, in clock ticks since boot).
/// Together with the pid it identifies a process even when pids are reused.
#[must_use]
pub fn process_start(pid: i64) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn digits_are_grouped() {
        assert_eq!(super::group_digits(0), "0");
        assert_eq!(super::group_digits(999), "999");
        assert_eq!(super::group_digits(1000), "1,000");
        assert_eq!(super::group_digits(120_331), "120,331");
        assert_eq!(super::group_digits(1_234_567), "1,234,567");
    }
}
