//! Report periods: a month (`2026-11`), an ISO week (`2026-W47`), a quarter (`2026-Q4`), or
//! explicit dates. Periods are UTC and half-open: `[from, to)`.

use jiff::civil::Date;
use jiff::{Timestamp, ToSpan, tz::TimeZone};

use crate::config::ReportPeriod;

/// A report period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Period {
    /// `2026-11`, `2026-W47`, `2026-Q4`, or `2026-11-01..2026-11-15`.
    pub label: String,
    pub from: Timestamp,
    pub to: Timestamp,
}

fn midnight(d: Date) -> Result<Timestamp, String> {
    d.to_zoned(TimeZone::UTC)
        .map(|z| z.timestamp())
        .map_err(|e| e.to_string())
}

fn month(year: i16, m: i8) -> Result<Period, String> {
    let start = Date::new(year, m, 1).map_err(|e| e.to_string())?;
    let end = start.checked_add(1.month()).map_err(|e| e.to_string())?;
    Ok(Period {
        label: format!("{year:04}-{m:02}"),
        from: midnight(start)?,
        to: midnight(end)?,
    })
}

fn quarter(year: i16, q: i8) -> Result<Period, String> {
    let start = Date::new(year, (q - 1) * 3 + 1, 1).map_err(|e| e.to_string())?;
    let end = start.checked_add(3.months()).map_err(|e| e.to_string())?;
    Ok(Period {
        label: format!("{year:04}-Q{q}"),
        from: midnight(start)?,
        to: midnight(end)?,
    })
}

fn week(year: i16, w: i8) -> Result<Period, String> {
    let start = jiff::civil::ISOWeekDate::new(year, w, jiff::civil::Weekday::Monday)
        .map_err(|e| e.to_string())?
        .date();
    let end = start.checked_add(7.days()).map_err(|e| e.to_string())?;
    Ok(Period {
        label: format!("{year:04}-W{w:02}"),
        from: midnight(start)?,
        to: midnight(end)?,
    })
}

impl Period {
    /// Parses `2026-11`, `2026-W47` or `2026-Q4`.
    ///
    /// # Errors
    /// A sentence saying what forms are accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{text}` is not a period; write a month (2026-11), an ISO week (2026-W47) or a quarter (2026-Q4)"
            )
        };
        let (y, rest) = text.split_once('-').ok_or_else(bad)?;
        let year: i16 = y.parse().map_err(|_| bad())?;
        if let Some(w) = rest.strip_prefix('W') {
            week(year, w.parse().map_err(|_| bad())?).map_err(|_| bad())
        } else if let Some(q) = rest.strip_prefix('Q') {
            let q: i8 = q.parse().map_err(|_| bad())?;
            if !(1..=4).contains(&q) {
                return Err(bad());
            }
            quarter(year, q).map_err(|_| bad())
        } else {
            month(year, rest.parse().map_err(|_| bad())?).map_err(|_| bad())
        }
    }

    /// Explicit dates: from `from` 00:00 UTC to the end of `to` (inclusive day).
    ///
    /// # Errors
    /// When a date is malformed or `to` is before `from`.
    pub fn between(from: &str, to: &str) -> Result<Self, String> {
        let parse = |s: &str| {
            s.parse::<Date>()
                .map_err(|_| format!("`{s}` is not a date; write it as 2026-11-01"))
        };
        let (a, b) = (parse(from)?, parse(to)?);
        if b < a {
            return Err(format!("--to {to} is before --from {from}"));
        }
        let end = b.checked_add(1.day()).map_err(|e| e.to_string())?;
        Ok(Self {
            label: format!("{a}..{b}"),
            from: midnight(a)?,
            to: midnight(end)?,
        })
    }

    /// The period of the given kind containing `at`.
    ///
    /// # Errors
    /// Only for dates outside jiff's range.
    pub fn containing(kind: ReportPeriod, at: Timestamp) -> Result<Self, String> {
        let d = at.to_zoned(TimeZone::UTC).date();
        match kind {
            ReportPeriod::Monthly => month(d.year(), d.month()),
            ReportPeriod::Quarterly => quarter(d.year(), (d.month() - 1) / 3 + 1),
            ReportPeriod::Weekly => {
                let w = d.iso_week_date();
                week(w.year(), w.week())
            }
        }
    }

    /// The last complete period of the given kind before `at`.
    ///
    /// # Errors
    /// Only for dates outside jiff's range.
    pub fn last_complete(kind: ReportPeriod, at: Timestamp) -> Result<Self, String> {
        let current = Self::containing(kind, at)?;
        Self::containing(kind, current.from - 1.second())
    }

    /// Whether the period is still running at `now` (the report covers it up to now).
    #[must_use]
    pub fn is_open(&self, now: Timestamp) -> bool {
        now < self.to
    }

    /// The period's end, or `now` when it has not ended yet.
    #[must_use]
    pub fn end(&self, now: Timestamp) -> Timestamp {
        self.to.min(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_weeks_quarters_and_ranges() {
        let p = Period::parse("2026-11").unwrap();
        assert_eq!(p.from.to_string(), "2026-11-01T00:00:00Z");
        assert_eq!(p.to.to_string(), "2026-12-01T00:00:00Z");
        let p = Period::parse("2026-12").unwrap();
        assert_eq!(p.to.to_string(), "2027-01-01T00:00:00Z");
        let p = Period::parse("2026-W48").unwrap();
        assert_eq!(p.from.to_string(), "2026-11-23T00:00:00Z");
        assert_eq!(p.to.to_string(), "2026-11-30T00:00:00Z");
        let p = Period::parse("2026-Q4").unwrap();
        assert_eq!(p.from.to_string(), "2026-10-01T00:00:00Z");
        assert_eq!(p.to.to_string(), "2027-01-01T00:00:00Z");
        let p = Period::between("2026-11-01", "2026-11-15").unwrap();
        assert_eq!(p.to.to_string(), "2026-11-16T00:00:00Z");
        for bad in [
            "2026", "2026-13", "2026-Q5", "2026-W60", "november", "2026-1x",
        ] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
        assert!(Period::between("2026-11-15", "2026-11-01").is_err());
    }

    #[test]
    fn last_complete_period() {
        let now: Timestamp = "2026-11-29T18:00:00Z".parse().unwrap();
        let p = Period::last_complete(ReportPeriod::Monthly, now).unwrap();
        assert_eq!(p.label, "2026-10");
        let p = Period::last_complete(ReportPeriod::Quarterly, now).unwrap();
        assert_eq!(p.label, "2026-Q3");
        let p = Period::last_complete(ReportPeriod::Weekly, now).unwrap();
        assert_eq!(p.label, "2026-W47");
        let jan: Timestamp = "2027-01-03T00:00:00Z".parse().unwrap();
        assert_eq!(
            Period::last_complete(ReportPeriod::Monthly, jan)
                .unwrap()
                .label,
            "2026-12"
        );
    }
}
