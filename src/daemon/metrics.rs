//! The Prometheus text endpoint (`GET /metrics`), on a loopback address only.

use std::fmt::Write;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::catalog::{Catalog, Sample};

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
        "custodian_last_success_bytes_read",
        "Bytes read by the last successful run.",
    ),
    (
        "custodian_last_success_bytes_added",
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
];

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
            let _ = writeln!(out, "{name}{{{}}} {}", labels.join(","), s.value);
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
    catalog: Catalog,
    check_window: std::time::Duration,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics served at http://{addr}/metrics");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let catalog = catalog.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let catalog = catalog.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                respond(&req, &catalog, check_window).await,
                            )
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
    catalog: &Catalog,
    check_window: std::time::Duration,
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
    match catalog.metric_samples(check_window).await {
        Ok(samples) => reply(StatusCode::OK, render(&samples)),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("# the catalog cannot be read: {e}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::HELP;

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
