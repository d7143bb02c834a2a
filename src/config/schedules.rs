//! Schedule files (`[custodian] schedules = DIR`, every `*.toml` in it): `[[job]]` entries with a
//! cron expression, an optional time zone and jitter, the sources/locations they apply to and
//! what to do about runs the daemon missed. Each problem names its schedule file and line.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::diagnostic::{Diagnostics, Severity};
use super::document::Document;

/// What a scheduled job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    Backup,
    /// A physical base backup (point-in-time recovery), of the sources with an archive.
    BaseBackup,
    Copy,
    Check,
    Prune,
    Drill,
    Report,
}

impl JobKind {
    const ALL: [(&'static str, Self); 7] = [
        ("backup", Self::Backup),
        ("base-backup", Self::BaseBackup),
        ("copy", Self::Copy),
        ("check", Self::Check),
        ("prune", Self::Prune),
        ("drill", Self::Drill),
        ("report", Self::Report),
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("?", |(n, _)| n)
    }
}

/// What to do at start about runs missed while the daemon was down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missed {
    /// Run once now (however many were missed), and record every miss.
    RunOnce,
    /// Only record the misses.
    Skip,
}

/// One scheduled job.
#[derive(Clone, Debug)]
pub struct ScheduledJob {
    pub name: String,
    /// The schedule file it comes from, and the line of its name.
    pub file: PathBuf,
    pub line: Option<usize>,
    pub kind: JobKind,
    /// The expression as written.
    pub cron: String,
    pub schedule: cron::Schedule,
    pub time_zone: jiff::tz::TimeZone,
    pub time_zone_name: String,
    /// A random delay up to this long is added to every run (spreads load).
    pub jitter: Duration,
    /// Empty: every source.
    pub sources: Vec<String>,
    /// Empty: every location.
    pub locations: Vec<String>,
    pub missed: Missed,
    /// Check jobs: `rotate` (default), a subset like `10%`, or `none`.
    pub read_data: String,
    /// Drill jobs: a PITR drill to `random`, `latest` or a time (default: the rotation).
    pub pitr: Option<String>,
}

impl ScheduledJob {
    /// The first fire time strictly after `after`, in the job's time zone. Cron fields are
    /// matched against the wall clock of that zone; a wall time skipped by a DST change fires
    /// at the first instant after the gap, a repeated one fires once.
    #[must_use]
    pub fn next_after(&self, after: jiff::Timestamp) -> Option<jiff::Timestamp> {
        use chrono::TimeZone;
        let local = after.to_zoned(self.time_zone.clone()).datetime();
        // The wall clock, presented to the cron crate as if it were UTC.
        let naive = chrono::NaiveDate::from_ymd_opt(
            i32::from(local.year()),
            u32::try_from(local.month()).ok()?,
            u32::try_from(local.day()).ok()?,
        )?
        .and_hms_opt(
            u32::try_from(local.hour()).ok()?,
            u32::try_from(local.minute()).ok()?,
            u32::try_from(local.second()).ok()?,
        )?;
        let wall = chrono::Utc.from_utc_datetime(&naive);
        for next in self.schedule.after(&wall).take(4) {
            let civil = jiff::civil::DateTime::new(
                i16::try_from(chrono::Datelike::year(&next)).ok()?,
                i8::try_from(chrono::Datelike::month(&next)).ok()?,
                i8::try_from(chrono::Datelike::day(&next)).ok()?,
                i8::try_from(chrono::Timelike::hour(&next)).ok()?,
                i8::try_from(chrono::Timelike::minute(&next)).ok()?,
                i8::try_from(chrono::Timelike::second(&next)).ok()?,
                0,
            )
            .ok()?;
            let instant = self
                .time_zone
                .to_ambiguous_timestamp(civil)
                .compatible()
                .ok()?;
            if instant > after {
                return Some(instant);
            }
        }
        None
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawJob {
    name: String,
    kind: String,
    cron: String,
    time_zone: Option<String>,
    jitter: Option<String>,
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    locations: Vec<String>,
    missed: Option<String>,
    read_data: Option<String>,
    pitr: Option<String>,
}

/// Parses a cron expression; five fields (minute first, as in crontab) get a seconds field of 0.
///
/// # Errors
/// When the expression is invalid: one sentence naming the field at fault.
pub fn parse_cron(text: &str) -> Result<cron::Schedule, String> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let full = match fields.len() {
        // crontab's day of week counts from 0 = Sunday (7 is Sunday too); the cron crate's
        // from 1 = Sunday. Translated, so that `0 3 * * 1` is Monday, as in crontab.
        5 => format!(
            "0 {} {}",
            fields[..4].join(" "),
            crontab_day_of_week(fields[4])?
        ),
        6 | 7 => text.to_string(),
        n => {
            return Err(format!(
                "it has {n} field{}; write 5 (`MIN HOUR DOM MON DOW`, as in crontab) or 6 with seconds first (`SEC MIN HOUR DOM MON DOW`)",
                if n == 1 { "" } else { "s" }
            ));
        }
    };
    let names: &[(&str, u32, u32)] = &[
        ("seconds", 0, 59),
        ("minutes", 0, 59),
        ("hours", 0, 23),
        ("day of month", 1, 31),
        ("month", 1, 12),
        ("day of week", 1, 7),
        ("year", 1970, 2100),
    ];
    for (field, (name, low, high)) in full.split_whitespace().zip(names) {
        // Numbers in lists, ranges and steps (`1,5`, `9-17`, `*/15`): each within its range.
        for part in field.split(',') {
            let (range, _step) = part.split_once('/').unwrap_or((part, ""));
            for number in range.split('-') {
                if let Ok(n) = number.parse::<u32>()
                    && !(*low..=*high).contains(&n)
                {
                    let crontab = if *name == "day of week" {
                        " (1 is Sunday, 7 Saturday; or write SUN-SAT)"
                    } else {
                        ""
                    };
                    return Err(format!(
                        "`{n}` is out of range for {name}: {low} to {high}{crontab}"
                    ));
                }
            }
        }
    }
    cron::Schedule::from_str(&full).map_err(|e| {
        e.to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// A crontab day-of-week field (0–7, 0 and 7 Sunday; names; lists; ranges) in the cron crate's
/// numbering (1 Sunday … 7 Saturday).
fn crontab_day_of_week(field: &str) -> Result<String, String> {
    let day = |text: &str| -> Result<Option<u32>, String> {
        match text.parse::<u32>() {
            Ok(n @ 0..=6) => Ok(Some(n + 1)),
            Ok(7) => Ok(Some(1)),
            Ok(n) => Err(format!(
                "`{n}` is out of range for day of week: 0 to 7 (0 and 7 are Sunday, as in crontab; or write SUN-SAT)"
            )),
            Err(_) => Ok(None),
        }
    };
    let mut out = Vec::new();
    for part in field.split(',') {
        if part.contains('/') || part.contains('*') {
            out.push(part.to_string());
            continue;
        }
        match part.split_once('-') {
            Some((a, b)) => match (day(a)?, day(b)?) {
                // A numeric range, expanded: crontab's `5-7` (Fri–Sun) wraps in the new numbering.
                (Some(_), Some(_)) => {
                    let (a, b): (u32, u32) = (a.parse().unwrap_or(0), b.parse().unwrap_or(0));
                    if a > b {
                        return Err(format!("`{part}` is a range that runs backwards"));
                    }
                    for n in a..=b {
                        out.push(day(&n.to_string())?.unwrap_or(1).to_string());
                    }
                }
                _ => out.push(part.to_string()),
            },
            None => match day(part)? {
                Some(n) => out.push(n.to_string()),
                None => out.push(part.to_string()),
            },
        }
    }
    out.dedup();
    Ok(out.join(","))
}

/// " (did you mean `Europe/Berlin`?)" for a misspelt IANA time zone.
fn time_zone_suggestion(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    jiff::tz::db()
        .available()
        .map(|n| {
            let n = n.as_str().to_string();
            (strsim::levenshtein(&lower, &n.to_ascii_lowercase()), n)
        })
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, n)| format!(" (did you mean `{n}`?)"))
        .unwrap_or_default()
}

/// Loads every `*.toml` in `dir`, in name order. Problems go to `out`, each with its file.
pub(super) fn load(
    dir: &Path,
    sources: &[String],
    locations: &[String],
    out: &mut Vec<super::Diagnostic>,
) -> Vec<ScheduledJob> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect(),
        Err(e) => {
            out.push(super::Diagnostic {
                severity: Severity::Error,
                file: dir.to_path_buf(),
                line: None,
                key: "custodian.schedules".into(),
                message: format!("the schedules directory cannot be read: {e}"),
            });
            return Vec::new();
        }
    };
    files.sort();
    let mut jobs: Vec<ScheduledJob> = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                out.push(super::Diagnostic {
                    severity: Severity::Error,
                    file: file.clone(),
                    line: None,
                    key: String::new(),
                    message: format!("cannot be read: {e}"),
                });
                continue;
            }
        };
        let mut diags = Diagnostics::new(&file, &text);
        for job in parse_file(&file, &text, &mut diags, sources, locations) {
            if let Some(first) = jobs.iter().find(|j| j.name == job.name) {
                diags.push(
                    Severity::Error,
                    job.line,
                    format!("job.{}", job.name),
                    format!(
                        "a job named `{}` is already defined at {}:{}; names must be unique",
                        job.name,
                        first.file.display(),
                        first.line.unwrap_or(0)
                    ),
                );
                continue;
            }
            jobs.push(job);
        }
        out.extend(diags.into_sorted());
    }
    jobs
}

/// Parses one schedule file.
pub fn parse_file(
    file: &Path,
    text: &str,
    diags: &mut Diagnostics,
    sources: &[String],
    locations: &[String],
) -> Vec<ScheduledJob> {
    let Some(doc) = Document::parse(text, diags) else {
        return Vec::new();
    };
    for (key, _) in doc.root() {
        let name = key.get_ref().as_ref();
        if name != "job" {
            let line = Some(diags.line_of(key.span().start));
            diags.push(
                Severity::Error,
                line,
                name,
                "unknown table; a schedule file holds only [[job]] entries",
            );
        }
    }
    let raw: Vec<RawJob> = match doc.root().get("job") {
        None => Vec::new(),
        Some(value) => doc.deserialize(value, "job", diags).unwrap_or_default(),
    };
    let mut out = Vec::new();
    for (i, job) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("job.{i}.{k}");
        let mut ok = true;
        let mut error = |diags: &mut Diagnostics, k: &str, message: String| {
            let line = doc.line(diags, &key(k));
            diags.push(Severity::Error, line, key(k), message);
            ok = false;
        };
        if !crate::model::naming::is_valid_name(&job.name) {
            error(
                diags,
                "name",
                format!(
                    "`{}` is not a valid job name; use letters, digits, `-` and `_`",
                    job.name
                ),
            );
        }
        let kind = JobKind::ALL
            .iter()
            .find(|(n, _)| *n == job.kind)
            .map(|(_, k)| *k);
        if kind.is_none() {
            error(
                diags,
                "kind",
                format!(
                    "`{}` is not a job kind{}; use one of: {}",
                    job.kind,
                    super::fields::suggestion(&job.kind, &JobKind::ALL.map(|(n, _)| n)),
                    JobKind::ALL.map(|(n, _)| n).join(", ")
                ),
            );
        }
        let schedule = match parse_cron(&job.cron) {
            Ok(s) => Some(s),
            Err(e) => {
                error(
                    diags,
                    "cron",
                    format!(
                        "`{}` is not a cron expression: {e}; e.g. `0 * * * *` is hourly, `30 2 * * *` daily at 02:30",
                        job.cron
                    ),
                );
                None
            }
        };
        let tz_name = job.time_zone.clone().unwrap_or_else(|| "UTC".to_string());
        let time_zone = match jiff::tz::TimeZone::get(&tz_name) {
            Ok(tz) => Some(tz),
            Err(_) => {
                error(
                    diags,
                    "time-zone",
                    format!(
                        "`{tz_name}` is not a known time zone{}; use an IANA name like `Europe/Berlin` or `UTC`",
                        time_zone_suggestion(&tz_name)
                    ),
                );
                None
            }
        };
        let jitter = match job.jitter.as_deref().map(humantime::parse_duration) {
            None => Duration::ZERO,
            Some(Ok(d)) => d,
            Some(Err(_)) => {
                error(
                    diags,
                    "jitter",
                    format!(
                        "`{}` is not a duration; write it like `90s` or `5m`",
                        job.jitter.as_deref().unwrap_or_default()
                    ),
                );
                Duration::ZERO
            }
        };
        for (k, names, known) in [
            ("sources", &job.sources, sources),
            ("locations", &job.locations, locations),
        ] {
            for n in names {
                if !known.contains(n) {
                    error(
                        diags,
                        k,
                        format!(
                            "`{n}` is not defined in the configuration; defined: {}",
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        let missed = match job.missed.as_deref() {
            None | Some("run-once") => Missed::RunOnce,
            Some("skip") => Missed::Skip,
            Some(other) => {
                error(
                    diags,
                    "missed",
                    format!("`{other}` is not a policy; use `run-once` or `skip`"),
                );
                Missed::RunOnce
            }
        };
        let read_data = job
            .read_data
            .clone()
            .unwrap_or_else(|| "rotate".to_string());
        if job.read_data.is_some() && kind != Some(JobKind::Check) {
            error(diags, "read-data", "only check jobs read data".to_string());
        }
        if read_data != "rotate"
            && read_data != "none"
            && read_data.parse::<crate::model::ReadSubset>().is_err()
        {
            error(
                diags,
                "read-data",
                format!("`{read_data}` is not `rotate`, `none` or a subset like `10%`"),
            );
        }
        if job.pitr.is_some() && kind != Some(JobKind::Drill) {
            error(
                diags,
                "pitr",
                "only drill jobs recover to a point in time".to_string(),
            );
        }
        if let Some(p) = job.pitr.as_deref()
            && p != "random"
            && p != "latest"
            && crate::model::time::parse_instant(p).is_err()
        {
            error(
                diags,
                "pitr",
                format!(
                    "`{p}` is not `random`, `latest` or a time like \"2026-12-01 10:04:00+01:00\""
                ),
            );
        }
        if let (true, Some(kind), Some(schedule), Some(time_zone)) = (ok, kind, schedule, time_zone)
        {
            out.push(ScheduledJob {
                line: doc.line(diags, &key("name")),
                name: job.name,
                file: file.to_path_buf(),
                kind,
                cron: job.cron,
                schedule,
                time_zone,
                time_zone_name: tz_name,
                jitter,
                sources: job.sources,
                locations: job.locations,
                missed,
                read_data,
                pitr: job.pitr,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(cron: &str, tz: &str) -> ScheduledJob {
        let text = format!(
            "[[job]]\nname = \"j\"\nkind = \"backup\"\ncron = \"{cron}\"\ntime-zone = \"{tz}\"\n"
        );
        let mut d = Diagnostics::new(Path::new("s.toml"), &text);
        let mut jobs = parse_file(Path::new("s.toml"), &text, &mut d, &[], &[]);
        assert!(!d.has_errors(), "{:?}", d.items());
        jobs.remove(0)
    }

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    /// 2026-11-29 is a Sunday. crontab's numbering: 0 and 7 Sunday, 1 Monday … 6 Saturday.
    #[test]
    fn five_field_days_of_week_count_as_in_crontab() {
        let after = ts("2026-11-28T12:00:00Z");
        for (dow, day) in [
            ("1", "2026-11-30"),
            ("0", "2026-11-29"),
            ("7", "2026-11-29"),
            ("6", "2026-12-05"),
            ("MON", "2026-11-30"),
            ("5-7", "2026-11-29"),
            ("1-5", "2026-11-30"),
        ] {
            let j = job(&format!("0 3 * * {dow}"), "UTC");
            assert_eq!(
                j.next_after(after),
                Some(ts(&format!("{day}T03:00:00Z"))),
                "day of week {dow}"
            );
        }
        let err = parse_cron("0 3 * * 8").unwrap_err();
        assert!(err.contains("0 to 7"), "{err}");
        let err = parse_cron("61 * * * *").unwrap_err();
        assert_eq!(err, "`61` is out of range for minutes: 0 to 59");
        assert!(
            parse_cron("1 2 3 4 5 6 7 8")
                .unwrap_err()
                .contains("8 fields")
        );
    }

    #[test]
    fn five_field_expressions_fire_on_the_minute() {
        let j = job("30 2 * * *", "UTC");
        assert_eq!(
            j.next_after(ts("2026-11-29T01:00:00Z")),
            Some(ts("2026-11-29T02:30:00Z"))
        );
        assert_eq!(
            j.next_after(ts("2026-11-29T02:30:00Z")),
            Some(ts("2026-11-30T02:30:00Z"))
        );
    }

    #[test]
    fn time_zones_and_dst_gaps() {
        let j = job("0 30 2 * * *", "Europe/Berlin");
        // Winter: Berlin is UTC+1.
        assert_eq!(
            j.next_after(ts("2026-11-29T00:00:00Z")),
            Some(ts("2026-11-29T01:30:00Z"))
        );
        // 2026-03-29 02:30 does not exist in Berlin: it fires right after the gap.
        assert_eq!(
            j.next_after(ts("2026-03-28T23:00:00Z")),
            Some(ts("2026-03-29T01:30:00Z"))
        );
    }

    #[test]
    fn every_problem_is_named_with_its_line() {
        let text = "[[job]]\nname = \"x\"\nkind = \"backpu\"\ncron = \"61 * * * *\"\ntime-zone = \"Mars/Olympus\"\nsources = [\"nope\"]\n";
        let mut d = Diagnostics::new(Path::new("s.toml"), text);
        let jobs = parse_file(Path::new("s.toml"), text, &mut d, &["crm".into()], &[]);
        assert!(jobs.is_empty());
        let items = d.items();
        let find = |k: &str| {
            items
                .iter()
                .find(|i| i.key == k)
                .unwrap_or_else(|| panic!("{k}: {items:?}"))
        };
        assert_eq!(find("job.0.kind").line, Some(3));
        assert_eq!(find("job.0.cron").line, Some(4));
        assert_eq!(find("job.0.time-zone").line, Some(5));
        assert_eq!(find("job.0.sources").line, Some(6));
    }
}
