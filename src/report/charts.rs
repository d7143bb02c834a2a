//! The report's charts, drawn with plotters: as inline SVG in the report (self-contained: no
//! scripts, no external files) and as PNG for e-mail clients that show no SVG — the RPO
//! timeline per source × location with its target line, the drill RTO trend with its target
//! line — and the data of the backup success calendar. Times are in the configured time zone.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use plotters::coord::Shift;
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
const SIZE: (u32, u32) = (760, 300);

/// The font PNG charts are labelled with (a small subset of DejaVu Sans; reports/fonts).
const FONT: &[u8] = include_bytes!("../../reports/fonts/custodian-chart-sans.ttf");

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One series: a name and (hours since the chart's origin, value) points.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

/// A chart, ready to draw on any backend.
pub struct Chart {
    title: String,
    y_label: String,
    origin: Timestamp,
    x_max: f64,
    series: Vec<Series>,
    target: f64,
    target_label: String,
    points_only: bool,
    tz: TimeZone,
}

/// A chart drawn both ways.
#[derive(Clone, Debug, Default)]
pub struct Drawn {
    pub svg: String,
    pub png: Vec<u8>,
}

fn h(a: Timestamp, b: Timestamp) -> f64 {
    (b.as_millisecond() - a.as_millisecond()) as f64 / 3_600_000.0
}

/// An x-axis label short enough to fit six across the chart: `1 Dec 09:00` over spans of two
/// days or less, else `1 Dec`.
fn time_label(origin: Timestamp, hours: f64, span_hours: f64, tz: &TimeZone) -> String {
    let t = (origin + jiff::SignedDuration::from_secs_f64(hours * 3600.0)).to_zoned(tz.clone());
    if span_hours <= 48.0 {
        t.strftime("%-d %b %H:%M").to_string()
    } else {
        t.strftime("%-d %b").to_string()
    }
}

impl Chart {
    fn plot<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let y_max = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(self.target, f64::max)
            * 1.15;
        let x_max = self.x_max.max(1.0);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 16))
            .margin_top(10)
            .margin_bottom(10)
            .margin_left(10)
            // Room for the last label, centred on the right edge.
            .margin_right(40)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max.max(1e-6))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|x| time_label(self.origin, *x, x_max, &self.tz))
            .y_desc(&self.y_label)
            .label_style(("sans-serif", 12))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, self.target), (x_max, self.target)],
                TARGET.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(&self.target_label)
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], TARGET.stroke_width(2)));
        for (i, s) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            if self.points_only {
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
            .label_font(("sans-serif", 12))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())
    }

    /// The chart as SVG and as PNG.
    ///
    /// # Errors
    /// When drawing or encoding fails.
    pub fn draw(&self) -> Result<Drawn, String> {
        register_font();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            self.plot(&root)?;
        }
        let mut rgb = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
            self.plot(&root)?;
        }
        let mut png = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut png, SIZE.0, SIZE.1);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
            writer.write_image_data(&rgb).map_err(|e| e.to_string())?;
        }
        Ok(Drawn { svg, png })
    }
}

/// The age of the newest snapshot over the period, per source × location: a sawtooth that
/// drops to zero at each arrival.
///
/// # Errors
/// When drawing fails.
pub fn rpo_timeline(ev: &Evidence, cfg: &Config) -> Result<Option<Drawn>, String> {
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
    Chart {
        title: format!(
            "Age of the newest snapshot (RPO timeline, {})",
            cfg.reports.time_zone_name
        ),
        y_label: "hours".into(),
        origin: begin,
        x_max,
        series,
        target,
        target_label: format!("RPO target {target:.0} h"),
        points_only: false,
        tz: cfg.reports.time_zone.clone(),
    }
    .draw()
    .map(Some)
}

/// RTO of every passed drill (minutes), per location, with the target line.
///
/// # Errors
/// When drawing fails.
pub fn rto_trend(ev: &Evidence, cfg: &Config) -> Result<Option<Drawn>, String> {
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
    Chart {
        title: format!(
            "Drill RTO (fetch + restore + verify, {})",
            cfg.reports.time_zone_name
        ),
        y_label: "minutes".into(),
        origin,
        x_max: h(origin, ev.end),
        series,
        target,
        target_label: format!("RTO target {target:.0} min"),
        points_only: true,
        tz: cfg.reports.time_zone.clone(),
    }
    .draw()
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
    // Days of the period's own calendar (the reports' time zone).
    let tz = ev.period.tz.clone();
    let first = ev.period.from.to_zoned(tz.clone()).date();
    let last = (ev.period.to - jiff::SignedDuration::from_secs(1))
        .to_zoned(tz.clone())
        .date();
    let today = ev.now.to_zoned(tz.clone()).date();
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
            .filter(|r| {
                r.kind == crate::catalog::RunKind::Backup
                    && ts(&r.started_at).is_some_and(|t| t.to_zoned(tz.clone()).date() == d)
            })
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

/// A rule's trend as a small inline SVG: one square per earlier report (oldest first) and one
/// for this report, coloured by verdict, under a line of the key value where there is one.
#[must_use]
pub fn sparkline(points: &[(String, Option<f64>)]) -> String {
    let color = |v: &str| match v {
        "pass" => "#2e7d32",
        "warn" => "#ef8f00",
        "fail" => "#c62828",
        _ => "#b0bec5",
    };
    let (w, cell) = (points.len().max(1) * 14, 14usize);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"30\" viewBox=\"0 0 {w} 30\" role=\"img\">"
    );
    let values: Vec<f64> = points
        .iter()
        .filter_map(|p| p.1)
        .filter(|v| v.is_finite())
        .collect();
    if values.len() >= 2 {
        let (lo, hi) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(*v), b.max(*v))
            });
        let span = (hi - lo).max(1e-9);
        let coords: Vec<String> = points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let v = p.1.filter(|v| v.is_finite())?;
                Some(format!(
                    "{},{:.1}",
                    i * cell + cell / 2,
                    14.0 - 12.0 * (v - lo) / span
                ))
            })
            .collect();
        out.push_str(&format!(
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#455a64\" stroke-width=\"1.5\"/>",
            coords.join(" ")
        ));
    }
    for (i, (verdict, _)) in points.iter().enumerate() {
        out.push_str(&format!(
            "<rect x=\"{}\" y=\"18\" width=\"11\" height=\"11\" rx=\"2\" fill=\"{}\"><title>{verdict}</title></rect>",
            i * cell + 1,
            color(verdict)
        ));
    }
    out.push_str("</svg>");
    out
}
