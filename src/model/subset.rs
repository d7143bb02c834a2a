//! How much pack data a check reads: `all`, a percentage (`10%`), a part (`1/7`) or a size
//! (`500MiB`) — the forms restic and rustic accept. Parsed and validated here, where the
//! configuration and the command line can use it; the repository layer hands the text to
//! rustic_core.

use std::str::FromStr;

/// A validated read-data subset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadSubset(String);

impl ReadSubset {
    /// Every pack.
    #[must_use]
    pub fn all() -> Self {
        Self("all".into())
    }

    /// As given by the user.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this subset reads every pack.
    #[must_use]
    pub fn is_all(&self) -> bool {
        self.0 == "all" || self.0 == "100%" || self.0 == "1/1"
    }

    /// Whether a check with this subset certainly reads the pack whose id starts with `pack`
    /// (at least 8 hex digits). A part `n/m` reads the packs whose id, its first four bytes
    /// read as a little-endian number, is `n` modulo `m` (as rustic_core selects them);
    /// percentages and sizes pick packs at random, so they never certainly read a given one.
    /// Without a pack id, only a check of everything does.
    #[must_use]
    pub fn reads(&self, pack: Option<&str>) -> bool {
        if self.is_all() {
            return true;
        }
        let (Some(pack), Some((n, m))) = (pack, self.0.split_once('/')) else {
            return false;
        };
        let (Ok(n), Ok(m)) = (n.parse::<u32>(), m.parse::<u32>()) else {
            return false;
        };
        let Some(bytes) = pack.get(..8).and_then(|h| hex::decode(h).ok()) else {
            return false;
        };
        let id = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        m > 0 && id % m == n % m
    }
}

impl FromStr for ReadSubset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "`{s}` is not a read-data subset; use `all`, a percentage like `10%`, a part like `1/7`, or a size like `500MiB`"
            )
        };
        let ok = if s == "all" {
            true
        } else if let Some(p) = s.strip_suffix('%') {
            p.parse::<f64>()
                .is_ok_and(|p| p.is_finite() && p > 0.0 && p <= 100.0)
        } else if let Some((n, m)) = s.split_once('/') {
            matches!((n.parse::<u32>(), m.parse::<u32>()), (Ok(n), Ok(m)) if n >= 1 && n <= m)
        } else {
            s.chars().next().is_some_and(|c| c.is_ascii_digit())
                && bytesize::ByteSize::from_str(s).is_ok()
        };
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(bad())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ReadSubset;

    #[test]
    fn the_restic_forms_parse_and_nothing_else() {
        for good in ["all", "10%", "2.5%", "1/7", "30/30", "500MiB", "1G"] {
            assert!(good.parse::<ReadSubset>().is_ok(), "{good}");
        }
        for bad in ["", "most", "0%", "101%", "0/7", "8/7", "x/7", "MiB"] {
            assert!(bad.parse::<ReadSubset>().is_err(), "{bad}");
        }
        assert!(ReadSubset::all().is_all());
        assert!("100%".parse::<ReadSubset>().unwrap().is_all());
    }

    #[test]
    fn a_part_reads_the_packs_rustic_selects_for_it() {
        // 9ade5a10: bytes 9a de 5a 10, little-endian 0x105ade9a = 274390682; mod 7 = 6.
        let part = |s: &str| s.parse::<ReadSubset>().unwrap();
        assert!(part("6/7").reads(Some("9ade5a10")));
        assert!(!part("5/7").reads(Some("9ade5a10")));
        assert!(part("all").reads(None));
        assert!(!part("6/7").reads(None));
        assert!(!part("50%").reads(Some("9ade5a10")));
        assert!(!part("6/7").reads(Some("zz")));
    }
}
