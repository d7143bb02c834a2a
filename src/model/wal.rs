//! PostgreSQL's write-ahead log as files: segment names, WAL positions, and the holes a
//! recovery cannot cross. Plain data: both the engine (recovery) and the repository (the
//! archive's roll-up and retention) read WAL names.

/// Parses `X/Y` into a 64-bit WAL position.
#[must_use]
pub fn parse_lsn(lsn: &str) -> Option<u64> {
    let (hi, lo) = lsn.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// The default (and by far most common) WAL segment size.
pub const SEGMENT_SIZE: u64 = 16 << 20;

/// A WAL segment file name: timeline and segment number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Segment {
    pub timeline: u32,
    pub number: u64,
}

impl Segment {
    /// Reads `000000010000000000000003` (optionally with `.partial`).
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        let base = name.strip_suffix(".partial").unwrap_or(name);
        if base.len() != 24 || !base.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let timeline = u32::from_str_radix(&base[..8], 16).ok()?;
        let log = u64::from_str_radix(&base[8..16], 16).ok()?;
        let seg = u64::from_str_radix(&base[16..], 16).ok()?;
        Some(Self {
            timeline,
            number: log * (0x1_0000_0000 / SEGMENT_SIZE) + seg,
        })
    }

    /// The segment holding a WAL position.
    #[must_use]
    pub fn holding(timeline: u32, lsn: u64) -> Self {
        Self {
            timeline,
            number: lsn / SEGMENT_SIZE,
        }
    }

    /// The file name PostgreSQL gives it.
    #[must_use]
    pub fn name(self) -> String {
        let per_log = 0x1_0000_0000 / SEGMENT_SIZE;
        format!(
            "{:08X}{:08X}{:08X}",
            self.timeline,
            self.number / per_log,
            self.number % per_log
        )
    }
}

/// Whether a WAL file name is a timeline history file (`00000002.history`).
#[must_use]
pub fn is_history(name: &str) -> bool {
    name.strip_suffix(".history")
        .is_some_and(|t| t.len() == 8 && t.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Segment numbers missing between archived segments of the same timeline, as
/// `first..=last` ranges of names: each is a gap no recovery can cross.
#[must_use]
pub fn gaps(names: &[String]) -> Vec<(String, String)> {
    let mut segs: Vec<Segment> = names.iter().filter_map(|n| Segment::parse(n)).collect();
    segs.sort();
    segs.dedup();
    let mut out = Vec::new();
    for pair in segs.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.timeline == b.timeline && b.number > a.number + 1 {
            let first = Segment {
                timeline: a.timeline,
                number: a.number + 1,
            };
            let last = Segment {
                timeline: a.timeline,
                number: b.number - 1,
            };
            out.push((first.name(), last.name()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_lsns_and_gaps() {
        let s = Segment::parse("0000000100000001000000FE").unwrap();
        assert_eq!(s.timeline, 1);
        assert_eq!(s.number, 256 + 254);
        assert_eq!(s.name(), "0000000100000001000000FE");
        assert_eq!(
            Segment::parse("000000010000000000000003.partial")
                .unwrap()
                .number,
            3
        );
        assert_eq!(Segment::parse("00000002.history"), None);
        assert!(is_history("00000002.history"));
        assert_eq!(parse_lsn("1/FE000028"), Some((1 << 32) | 0xFE00_0028));
        assert_eq!(
            Segment::holding(1, parse_lsn("0/3000060").unwrap()).name(),
            "000000010000000000000003"
        );
        let names: Vec<String> = [
            "000000010000000000000002",
            "000000010000000000000003",
            "000000010000000000000006.partial",
            "000000020000000000000006",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        assert_eq!(
            gaps(&names),
            vec![(
                "000000010000000000000004".to_string(),
                "000000010000000000000005".to_string()
            )]
        );
    }
}
