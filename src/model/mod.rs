//! Domain types shared by every layer: names, timestamps, the dump manifest and the naming
//! convention that maps Custodian's world onto restic snapshots.

pub mod manifest;
pub mod naming;
pub mod time;

pub use manifest::{ChecksumMode, Engine, Manifest, ManifestFile, Mismatch, TableSummary};

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

/// Human-readable byte size (`12.3 MiB`).
#[must_use]
pub fn human_bytes(n: u64) -> String {
    bytesize::ByteSize(n).display().iec().to_string()
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
