//! The report's charts, drawn with plotters as inline SVG (self-contained: no scripts, no
//! external files): the RPO timeline per source × location with its target line, the drill RTO
//! trend with its target line, and the data of the backup success calendar.

use jiff::Timestamp;
use plotters::prelude::*;
use serde::Serialize;

use super::evidence::Evidence;
use super::measure::{arrivals, evidence_begin, ts};
use crate::config::Config;

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
];
const TARGET: RGBColor = RGBColor(214, 39, 40);

/// One series: a name and (hours since the chart's origin, value) points.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

fn h(a: Timestamp, b: Timestamp) -> f64 {
    (b.as_millisecond() - a.as_millisecond()) as f64 / 3_600_000.0
}

fn time_label(origin: Timestamp, hours: f64, span_hours: f64) -> String {
    let t = origin + jiff::SignedDuration::from_secs_f64(hours * 3600.0);
    if span_hours <= 48.0 {
        t.strftime("%m-%d %H:%M").to_string()
    } else {
        t.strftime("%m-%d").to_string()
    }
}

#[allow(clippy::too_many_arguments)]
fn draw(
    title: &str,
    y_label: &str,
    origin: Timestamp,
    x_max: f64,
    series: &[Series],
    target: f64,
    target_label: &str,
    points_only: bool,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let y_max = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(target, f64::max)
            * 1.15;
        let x_max = x_max.max(1.0);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max.max(1e-6))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&|x| time_label(origin, *x, x_max))
            .y_desc(y_label)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, target), (x_max, target)],
                TARGET.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(target_label)
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], TARGET.stroke_width(2)));
        for (i, s) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            if points_only {
                chart
                    .draw_series(s.points.iter().map(|p| Circle::new(*p, 4, color.filled())))
                    .map_err(|e| e.to_string())?
                    .label(s.name.clone())
                    .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
                chart
                    .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(1)))
                    .map_err(|e| e.to_string())?;
            } else {
                chart
                    .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))
                    .map_err(|e| e.to_string())?
                    .label(s.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                    });
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The age of the newest snapshot over the period, per source × location: a sawtooth that
/// drops to zero at each arrival.
///
/// # Errors
/// When drawing fails.
pub fn rpo_timeline(ev: &Evidence, cfg: &Config) -> Result<Option<String>, String> {
    let Some(begin) = evidence_begin(ev) else {
        return Ok(None);
    };
    let x_max = h(begin, ev.end);
    let mut series = Vec::new();
    for source in &cfg.sources {
        for location in &source.locations {
            let arr = arrivals(ev, &source.name, location);
            let mut last = arr.iter().map(|a| a.0).rfind(|t| *t <= begin);
            let mut points = vec![(0.0, last.map_or(0.0, |l| h(l, begin)))];
            for (t, _) in arr.iter().filter(|a| a.0 > begin) {
                let x = h(begin, *t);
                points.push((x, last.map_or(x, |l| h(l, *t))));
                points.push((x, 0.0));
                last = Some(*t);
            }
            points.push((x_max, last.map_or(x_max, |l| h(l, ev.end))));
            series.push(Series {
                name: format!("{}/{location}", source.name),
                points,
            });
        }
    }
    let target = cfg.reports.targets.rpo.as_secs_f64() / 3600.0;
    draw(
        "Age of the newest snapshot (RPO timeline)",
        "hours",
        begin,
        x_max,
        &series,
        target,
        &format!("RPO target {target:.0} h"),
        false,
    )
    .map(Some)
}

/// RTO of every passed drill (minutes), per location, with the target line.
///
/// # Errors
/// When drawing fails.
pub fn rto_trend(ev: &Evidence, cfg: &Config) -> Result<Option<String>, String> {
    let passed: Vec<_> = ev
        .drills
        .iter()
        .filter(|d| d.verdict == crate::catalog::DrillVerdict::Passed && d.rto_seconds.is_some())
        .filter_map(|d| ts(&d.started_at).map(|t| (t, d)))
        .collect();
    let Some(first) = passed.iter().map(|p| p.0).min() else {
        return Ok(None);
    };
    let origin = first.min(ev.period.from);
    let mut series: Vec<Series> = Vec::new();
    for (t, d) in &passed {
        let name = format!("{}/{}", d.source, d.location);
        let point = (h(origin, *t), d.rto_seconds.unwrap_or(0.0) / 60.0);
        match series.iter_mut().find(|s| s.name == name) {
            Some(s) => s.points.push(point),
            None => series.push(Series {
                name,
                points: vec![point],
            }),
        }
    }
    let target = cfg.reports.targets.rto.as_secs_f64() / 60.0;
    draw(
        "Drill RTO (fetch + restore + verify)",
        "minutes",
        origin,
        h(origin, ev.end),
        &series,
        target,
        &format!("RTO target {target:.0} min"),
        true,
    )
    .map(Some)
}

/// One day of the backup success calendar.
#[derive(Clone, Debug, Serialize)]
pub struct Day {
    pub date: String,
    pub day: i8,
    /// Monday = 0.
    pub weekday: i8,
    pub succeeded: usize,
    pub failed: usize,
    /// `ok`, `partial`, `failed`, `none`, or `future`.
    pub state: &'static str,
}

/// Backups per day of the period: weeks of seven days (Monday first), padded.
#[must_use]
pub fn calendar(ev: &Evidence) -> Vec<Vec<Option<Day>>> {
    use jiff::ToSpan;
    let tz = jiff::tz::TimeZone::UTC;
    let first = ev.period.from.to_zoned(tz.clone()).date();
    let last = (ev.period.to - jiff::SignedDuration::from_secs(1))
        .to_zoned(tz.clone())
        .date();
    let today = ev.now.to_zoned(tz).date();
    let mut weeks: Vec<Vec<Option<Day>>> = Vec::new();
    let mut week: Vec<Option<Day>> =
        vec![None; usize::try_from(first.weekday().to_monday_zero_offset()).unwrap_or(0)];
    let mut d = first;
    // Bounded: a period is at most a quarter, but explicit ranges may be long.
    for _ in 0..400 {
        if d > last {
            break;
        }
        let key = d.to_string();
        let (succeeded, failed) = ev
            .runs
            .iter()
            .filter(|r| r.kind == crate::catalog::RunKind::Backup && r.started_at.starts_with(&key))
            .fold((0, 0), |(s, f), r| match r.outcome {
                crate::catalog::Outcome::Succeeded => (s + 1, f),
                crate::catalog::Outcome::Running => (s, f),
                _ => (s, f + 1),
            });
        let state = if d > today {
            "future"
        } else if succeeded + failed == 0 {
            "none"
        } else if failed == 0 {
            "ok"
        } else if succeeded > 0 {
            "partial"
        } else {
            "failed"
        };
        week.push(Some(Day {
            date: key,
            day: d.day(),
            weekday: d.weekday().to_monday_zero_offset(),
            succeeded,
            failed,
            state,
        }));
        if week.len() == 7 {
            weeks.push(std::mem::take(&mut week));
        }
        d = match d.checked_add(1.day()) {
            Ok(next) => next,
            Err(_) => break,
        };
    }
    if !week.is_empty() {
        week.resize(7, None);
        weeks.push(week);
    }
    weeks
}
