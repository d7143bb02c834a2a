//! Report periods: a month (`2026-11`), an ISO week (`2026-W47`), a quarter (`2026-Q4`), or
//! explicit dates, in the reports' time zone (`[reports] time-zone`: a December report in
//! Europe/Berlin covers Berlin's December, whatever its DST changes). Periods are half-open:
//! `[from, to)`; they are shown with their last day included.

use jiff::civil::Date;
use jiff::{Timestamp, ToSpan, tz::TimeZone};

use super::ReportError;
use crate::config::ReportPeriod;

/// A report period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Period {
    /// `2026-11`, `2026-W47`, `2026-Q4`, or `2026-11-01..2026-11-15`.
    pub label: String,
    pub from: Timestamp,
    pub to: Timestamp,
    /// The zone whose calendar the period follows.
    pub tz: TimeZone,
}

/// The first instant of a day in `tz` (not always 00:00 where DST starts at midnight).
fn midnight(d: Date, tz: &TimeZone) -> Result<Timestamp, String> {
    d.to_zoned(tz.clone())
        .map(|z| z.start_of_day().map_or(z.timestamp(), |s| s.timestamp()))
        .map_err(|e| e.to_string())
}

fn month(year: i16, m: i8, tz: &TimeZone) -> Result<Period, String> {
    let start = Date::new(year, m, 1).map_err(|e| e.to_string())?;
    let end = start.checked_add(1.month()).map_err(|e| e.to_string())?;
    Ok(Period {
        label: format!("{year:04}-{m:02}"),
        from: midnight(start, tz)?,
        to: midnight(end, tz)?,
        tz: tz.clone(),
    })
}

fn quarter(year: i16, q: i8, tz: &TimeZone) -> Result<Period, String> {
    let start = Date::new(year, (q - 1) * 3 + 1, 1).map_err(|e| e.to_string())?;
    let end = start.checked_add(3.months()).map_err(|e| e.to_string())?;
    Ok(Period {
        label: format!("{year:04}-Q{q}"),
        from: midnight(start, tz)?,
        to: midnight(end, tz)?,
        tz: tz.clone(),
    })
}

fn week(year: i16, w: i8, tz: &TimeZone) -> Result<Period, String> {
    let start = jiff::civil::ISOWeekDate::new(year, w, jiff::civil::Weekday::Monday)
        .map_err(|e| e.to_string())?
        .date();
    let end = start.checked_add(7.days()).map_err(|e| e.to_string())?;
    Ok(Period {
        label: format!("{year:04}-W{w:02}"),
        from: midnight(start, tz)?,
        to: midnight(end, tz)?,
        tz: tz.clone(),
    })
}

impl Period {
    /// Parses `2026-11`, `2026-W47` or `2026-Q4`, in `tz`'s calendar.
    ///
    /// # Errors
    /// A sentence saying what forms are accepted.
    pub fn parse(text: &str, tz: &TimeZone) -> Result<Self, ReportError> {
        let bad = || {
            ReportError::Period(format!(
                "`{text}` is not a period; write a month (2026-11), an ISO week (2026-W47) or a quarter (2026-Q4)"
            ))
        };
        let (y, rest) = text.split_once('-').ok_or_else(bad)?;
        let year: i16 = y.parse().map_err(|_| bad())?;
        if let Some(w) = rest.strip_prefix('W') {
            week(year, w.parse().map_err(|_| bad())?, tz).map_err(|_| bad())
        } else if let Some(q) = rest.strip_prefix('Q') {
            let q: i8 = q.parse().map_err(|_| bad())?;
            if !(1..=4).contains(&q) {
                return Err(bad());
            }
            quarter(year, q, tz).map_err(|_| bad())
        } else {
            month(year, rest.parse().map_err(|_| bad())?, tz).map_err(|_| bad())
        }
    }

    /// Explicit dates: from the start of `from` to the end of `to` (inclusive day), in `tz`.
    ///
    /// # Errors
    /// When a date is malformed or `to` is before `from`.
    pub fn between(from: &str, to: &str, tz: &TimeZone) -> Result<Self, ReportError> {
        let parse = |s: &str| {
            s.parse::<Date>().map_err(|_| {
                ReportError::Period(format!("`{s}` is not a date; write it as 2026-11-01"))
            })
        };
        let (a, b) = (parse(from)?, parse(to)?);
        if b < a {
            return Err(ReportError::Period(format!(
                "--to {to} is before --from {from}"
            )));
        }
        let range = || -> Result<Self, String> {
            let end = b.checked_add(1.day()).map_err(|e| e.to_string())?;
            Ok(Self {
                label: format!("{a}..{b}"),
                from: midnight(a, tz)?,
                to: midnight(end, tz)?,
                tz: tz.clone(),
            })
        };
        range().map_err(ReportError::Period)
    }

    /// The period of the given kind containing `at`.
    ///
    /// # Errors
    /// Only for dates outside jiff's range.
    pub fn containing(
        kind: ReportPeriod,
        at: Timestamp,
        tz: &TimeZone,
    ) -> Result<Self, ReportError> {
        let d = at.to_zoned(tz.clone()).date();
        match kind {
            ReportPeriod::Monthly => month(d.year(), d.month(), tz),
            ReportPeriod::Quarterly => quarter(d.year(), (d.month() - 1) / 3 + 1, tz),
            ReportPeriod::Weekly => {
                let w = d.iso_week_date();
                week(w.year(), w.week(), tz)
            }
        }
        .map_err(ReportError::Period)
    }

    /// The last complete period of the given kind before `at`.
    ///
    /// # Errors
    /// Only for dates outside jiff's range.
    pub fn last_complete(
        kind: ReportPeriod,
        at: Timestamp,
        tz: &TimeZone,
    ) -> Result<Self, ReportError> {
        let current = Self::containing(kind, at, tz)?;
        Self::containing(kind, current.from - 1.second(), tz)
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

    /// The period in words, with its last day included: `1–31 December 2026`,
    /// `24 November – 7 December 2026`, `29 December 2026 – 4 January 2027`.
    #[must_use]
    pub fn display(&self) -> String {
        let first = self.from.to_zoned(self.tz.clone()).date();
        let last = (self.to - jiff::SignedDuration::from_nanos(1))
            .to_zoned(self.tz.clone())
            .date();
        let month = |d: Date| d.strftime("%B").to_string();
        if first.year() != last.year() {
            format!(
                "{} {} {} – {} {} {}",
                first.day(),
                month(first),
                first.year(),
                last.day(),
                month(last),
                last.year()
            )
        } else if first.month() != last.month() {
            format!(
                "{} {} – {} {} {}",
                first.day(),
                month(first),
                last.day(),
                month(last),
                last.year()
            )
        } else if first == last {
            format!("{} {} {}", first.day(), month(first), first.year())
        } else {
            format!(
                "{}–{} {} {}",
                first.day(),
                last.day(),
                month(last),
                last.year()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() -> TimeZone {
        TimeZone::UTC
    }

    #[test]
    fn periods_follow_the_configured_zone_across_dst() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // October 2026 in Berlin: CEST at its start, CET at its end (DST ends on the 25th).
        let p = Period::parse("2026-10", &berlin).unwrap();
        assert_eq!(p.from.to_string(), "2026-09-30T22:00:00Z");
        assert_eq!(p.to.to_string(), "2026-10-31T23:00:00Z");
        assert_eq!(p.display(), "1–31 October 2026");
        // 23:30 UTC on 31 October is already 00:30 on 1 November in Berlin.
        let at: Timestamp = "2026-10-31T23:30:00Z".parse().unwrap();
        assert_eq!(
            Period::containing(ReportPeriod::Monthly, at, &berlin)
                .unwrap()
                .label,
            "2026-11"
        );
        assert_eq!(
            Period::containing(ReportPeriod::Monthly, at, &utc())
                .unwrap()
                .label,
            "2026-10"
        );
        // The day DST starts is 23 hours long; a one-day range covers exactly it.
        let d = Period::between("2027-03-28", "2027-03-28", &berlin).unwrap();
        assert_eq!(d.to.duration_since(d.from).as_hours(), 23);
        // Sao Paulo once started DST at midnight: the day began at 01:00.
        let sp = TimeZone::get("America/Sao_Paulo").unwrap();
        let d = Period::between("2018-11-04", "2018-11-04", &sp).unwrap();
        assert_eq!(d.from.to_string(), "2018-11-04T03:00:00Z");
    }

    #[test]
    fn periods_read_with_their_last_day_included() {
        assert_eq!(
            Period::parse("2026-12", &utc()).unwrap().display(),
            "1–31 December 2026"
        );
        assert_eq!(
            Period::parse("2026-Q4", &utc()).unwrap().display(),
            "1 October – 31 December 2026"
        );
        assert_eq!(
            Period::parse("2026-W53", &utc()).unwrap().display(),
            "28 December 2026 – 3 January 2027"
        );
        assert_eq!(
            Period::between("2026-11-05", "2026-11-05", &utc())
                .unwrap()
                .display(),
            "5 November 2026"
        );
    }

    #[test]
    fn months_weeks_quarters_and_ranges() {
        let p = Period::parse("2026-11", &utc()).unwrap();
        assert_eq!(p.from.to_string(), "2026-11-01T00:00:00Z");
        assert_eq!(p.to.to_string(), "2026-12-01T00:00:00Z");
        let p = Period::parse("2026-12", &utc()).unwrap();
        assert_eq!(p.to.to_string(), "2027-01-01T00:00:00Z");
        let p = Period::parse("2026-W48", &utc()).unwrap();
        assert_eq!(p.from.to_string(), "2026-11-23T00:00:00Z");
        assert_eq!(p.to.to_string(), "2026-11-30T00:00:00Z");
        let p = Period::parse("2026-Q4", &utc()).unwrap();
        assert_eq!(p.from.to_string(), "2026-10-01T00:00:00Z");
        assert_eq!(p.to.to_string(), "2027-01-01T00:00:00Z");
        let p = Period::between("2026-11-01", "2026-11-15", &utc()).unwrap();
        assert_eq!(p.to.to_string(), "2026-11-16T00:00:00Z");
        for bad in [
            "2026", "2026-13", "2026-Q5", "2026-W60", "november", "2026-1x",
        ] {
            assert!(Period::parse(bad, &utc()).is_err(), "{bad}");
        }
        assert!(Period::between("2026-11-15", "2026-11-01", &utc()).is_err());
    }

    #[test]
    fn last_complete_period() {
        let now: Timestamp = "2026-11-29T18:00:00Z".parse().unwrap();
        let p = Period::last_complete(ReportPeriod::Monthly, now, &utc()).unwrap();
        assert_eq!(p.label, "2026-10");
        let p = Period::last_complete(ReportPeriod::Quarterly, now, &utc()).unwrap();
        assert_eq!(p.label, "2026-Q3");
        let p = Period::last_complete(ReportPeriod::Weekly, now, &utc()).unwrap();
        assert_eq!(p.label, "2026-W47");
        let jan: Timestamp = "2027-01-03T00:00:00Z".parse().unwrap();
        assert_eq!(
            Period::last_complete(ReportPeriod::Monthly, jan, &utc())
                .unwrap()
                .label,
            "2026-12"
        );
    }
}
