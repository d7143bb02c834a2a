//! The Prometheus text endpoint (`GET /metrics`), on a loopback address only.

use std::fmt::Write;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use std::sync::Arc;

use tokio::sync::watch;

use super::runner::Shared;
use crate::catalog::Sample;
use crate::job::Context;

/// HELP lines, by metric name.
const HELP: &[(&str, &str)] = &[
    (
        "custodian_last_success_timestamp_seconds",
        "End of the last successful run, by kind, source and location.",
    ),
    (
        "custodian_last_success_duration_seconds",
        "Duration of the last successful run.",
    ),
    (
        "custodian_last_success_read_bytes",
        "Bytes read by the last successful run.",
    ),
    (
        "custodian_last_success_added_bytes",
        "Stored bytes the last successful run added.",
    ),
    (
        "custodian_last_success_dedup_ratio",
        "Bytes read per stored byte added (higher: more deduplication).",
    ),
    (
        "custodian_runs_total",
        "Runs recorded in the catalog, by kind and outcome (failed, missed and skipped included).",
    ),
    (
        "custodian_copy_lag_seconds",
        "How long after its backup the newest copy arrived, by source and destination.",
    ),
    (
        "custodian_drill_last_passed",
        "1 if the latest restore drill of a source from a location passed, 0 if it failed.",
    ),
    (
        "custodian_drill_last_timestamp_seconds",
        "Start of the latest restore drill.",
    ),
    (
        "custodian_drill_rto_seconds",
        "RTO measured by the latest passed drill.",
    ),
    (
        "custodian_check_last_ok",
        "1 if the latest check of a location passed.",
    ),
    (
        "custodian_check_last_timestamp_seconds",
        "Time of the latest check of a location.",
    ),
    (
        "custodian_check_coverage_ratio",
        "Share of a location's pack data read by passing checks within the check window.",
    ),
    (
        "custodian_location_damage_open",
        "Damage a check, drill or restore found in a location and no later check that read it cleared (0: none).",
    ),
    (
        "custodian_location_healthy",
        "1 if the latest run that used a configured location succeeded and no damage is open there; 0 otherwise, also before anything used it.",
    ),
    (
        "custodian_archive_lag_seconds",
        "Seconds since the continuous archive of a source last stored everything it had received (its RPO now), by source.",
    ),
    (
        "custodian_archive_receiver_restarts_total",
        "Times the archive's pg_receivewal had to be started again, by source.",
    ),
    (
        "custodian_archive_gaps",
        "Gaps recorded in a source's continuous archive (0: none).",
    ),
    ("custodian_jobs_running", "Jobs the daemon runs now."),
    (
        "custodian_config_last_reload_successful",
        "1 if the last configuration load (start or SIGHUP) was accepted, 0 if it was rejected and the previous configuration keeps running.",
    ),
    (
        "custodian_config_last_reload_success_timestamp_seconds",
        "When the configuration was last loaded successfully.",
    ),
    (
        "custodian_build_info",
        "Always 1; the labels say which build runs.",
    ),
    (
        "process_cpu_seconds_total",
        "User and system CPU time the daemon used.",
    ),
    (
        "process_resident_memory_bytes",
        "Resident memory of the daemon.",
    ),
    (
        "process_virtual_memory_bytes",
        "Virtual memory of the daemon.",
    ),
    ("process_open_fds", "Open file descriptors of the daemon."),
    (
        "process_max_fds",
        "The daemon's limit of open file descriptors.",
    ),
    (
        "process_start_time_seconds",
        "When the daemon started, in seconds since the epoch.",
    ),
];

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value without float noise: whole numbers as such, others to the millisecond /
/// thousandth (what every metric here is precise to).
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The daemon's own figures: build, configuration reloads, running jobs, and the process.
fn daemon_samples(shared: &Shared) -> Vec<Sample> {
    let mut out = vec![Sample {
        name: "custodian_build_info",
        labels: vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("commit", env!("CUSTODIAN_COMMIT").to_string()),
            ("rustic_core", env!("CUSTODIAN_RUSTIC_CORE").to_string()),
        ],
        value: 1.0,
    }];
    let (accepted, at) = *shared
        .reload
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    out.push(Sample {
        name: "custodian_config_last_reload_successful",
        labels: Vec::new(),
        value: if accepted { 1.0 } else { 0.0 },
    });
    out.push(Sample {
        name: "custodian_config_last_reload_success_timestamp_seconds",
        labels: Vec::new(),
        value: at.as_millisecond() as f64 / 1000.0,
    });
    out.push(Sample {
        name: "custodian_jobs_running",
        labels: Vec::new(),
        value: shared.active().len() as f64,
    });
    out.extend(process_samples());
    out
}

/// Each continuous archive's lag, restarts and gaps, from its saved state.
fn archive_samples(ctx: &Context) -> Vec<Sample> {
    let now = jiff::Timestamp::now();
    let mut out = Vec::new();
    for source in &ctx.config.sources {
        if crate::job::wal::archive_settings(source).is_err() {
            continue;
        }
        let state = crate::job::wal::ArchiveState::load(&ctx.config.state_dir, &source.name);
        let labels = vec![("source", source.name.clone())];
        if let Some(lag) = state.lag_seconds(now) {
            out.push(Sample {
                name: "custodian_archive_lag_seconds",
                labels: labels.clone(),
                value: lag,
            });
        }
        out.push(Sample {
            name: "custodian_archive_receiver_restarts_total",
            labels: labels.clone(),
            value: state.receiver_restarts as f64,
        });
        out.push(Sample {
            name: "custodian_archive_gaps",
            labels,
            value: state.gaps.len() as f64,
        });
    }
    out
}

/// The standard process metrics, from /proc/self.
fn process_samples() -> Vec<Sample> {
    let mut out = Vec::new();
    let sample = |name, value| Sample {
        name,
        labels: Vec::new(),
        value,
    };
    // Clock ticks and page size are 100 and 4096 on every Linux this runs on.
    const TICKS: f64 = 100.0;
    const PAGE: f64 = 4096.0;
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some((_, rest)) = stat.rsplit_once(") ")
    {
        // Fields from the third on (state is index 0 here): utime 11, stime 12,
        // starttime 19, vsize 20, rss 21.
        let f: Vec<f64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0.0))
            .collect();
        if f.len() > 21 {
            out.push(sample("process_cpu_seconds_total", (f[11] + f[12]) / TICKS));
            out.push(sample("process_virtual_memory_bytes", f[20]));
            out.push(sample("process_resident_memory_bytes", f[21] * PAGE));
            if let Some(boot) = boot_time() {
                out.push(sample("process_start_time_seconds", boot + f[19] / TICKS));
            }
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.push(sample("process_open_fds", fds.count() as f64));
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits")
        && let Some(line) = limits.lines().find(|l| l.starts_with("Max open files"))
        && let Some(soft) = line.split_whitespace().nth(3)
        && let Ok(n) = soft.parse::<f64>()
    {
        out.push(sample("process_max_fds", n));
    }
    out
}

fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// Renders samples in the Prometheus text exposition format. Every sample's metric must have a
/// HELP line above (a test checks it: a metric without one would silently vanish).
#[must_use]
pub fn render(samples: &[Sample]) -> String {
    let mut out = String::new();
    for (name, help) in HELP {
        let mine: Vec<&Sample> = samples.iter().filter(|s| s.name == *name).collect();
        if mine.is_empty() {
            continue;
        }
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in mine {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {}", number(s.value));
            } else {
                let _ = writeln!(out, "{name}{{{}}} {}", labels.join(","), number(s.value));
            }
        }
    }
    out
}

/// Binds `addr` and serves metrics until the task is aborted.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    ctx: watch::Receiver<Arc<Context>>,
    shared: Arc<Shared>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics served at http://{addr}/metrics");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (ctx, shared) = (ctx.clone(), shared.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        // The configuration in force now (a reload may have changed it).
                        let ctx = ctx.borrow().clone();
                        let shared = shared.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(respond(&req, &ctx, &shared).await)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }))
}

async fn respond(
    req: &Request<hyper::body::Incoming>,
    ctx: &Context,
    shared: &Shared,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        r
    };
    if req.method() != hyper::Method::GET || req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "only GET /metrics is served here\n".into(),
        );
    }
    let locations: Vec<String> = ctx
        .config
        .locations
        .iter()
        .map(|l| l.name.clone())
        .collect();
    match ctx
        .catalog
        .metric_samples(ctx.config.check_window, &locations)
        .await
    {
        Ok(mut samples) => {
            samples.extend(daemon_samples(shared));
            samples.extend(archive_samples(ctx));
            reply(StatusCode::OK, render(&samples))
        }
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("# the catalog cannot be read: {e}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::{HELP, number};

    #[test]
    fn values_carry_no_float_noise() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.283_999_919_891_357_4), "0.284");
        assert_eq!(number(12.5), "12.5");
        assert_eq!(number(1_764_590_400.123_456), "1764590400.123");
    }

    /// The shipped alert rules and dashboard query only metrics Custodian exports (a renamed
    /// metric would silently turn an alert off).
    #[test]
    fn the_shipped_rules_and_dashboard_use_only_exported_metrics() {
        for (file, text) in [
            (
                "alerts.yml",
                include_str!("../../contrib/prometheus/alerts.yml"),
            ),
            (
                "custodian.json",
                include_str!("../../contrib/grafana/custodian.json"),
            ),
        ] {
            let mut used = Vec::new();
            for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if (word.starts_with("custodian_") || word.starts_with("process_"))
                    && word.len() > "custodian_".len()
                {
                    used.push(word);
                }
            }
            assert!(used.len() > 5, "{file}: {used:?}");
            for name in used {
                assert!(
                    HELP.iter().any(|(n, _)| *n == name),
                    "{file} uses {name}, which Custodian does not export"
                );
            }
        }
    }

    #[test]
    fn every_metric_the_catalog_samples_has_a_help_line() {
        let source = include_str!("../catalog/metrics.rs");
        let names: Vec<&str> = source
            .split("name: \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert!(names.len() > 5, "{names:?}");
        for name in names {
            assert!(
                HELP.iter().any(|(n, _)| *n == name),
                "{name} has no HELP line, so it would never be served"
            );
        }
    }
}
