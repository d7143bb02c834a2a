//! Figures for the Prometheus endpoint, computed from the catalog at each scrape (so they are
//! never out of step with the evidence).

use sqlx::Row;

use super::{Catalog, CatalogError, query_err};

/// One sample: metric name, labels, value.
#[derive(Clone, Debug)]
pub struct Sample {
    pub name: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// Labels with a value: an absent one is left out, never exported as `label=""`.
fn present(labels: Vec<(&'static str, Option<String>)>) -> Vec<(&'static str, String)> {
    labels
        .into_iter()
        .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (k, v)))
        .collect()
}

fn epoch(text: &str) -> f64 {
    text.parse::<jiff::Timestamp>()
        .map_or(0.0, |t| t.as_millisecond() as f64 / 1000.0)
}

impl Catalog {
    /// Every metric sample the catalog holds, `locations` being the configured ones.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn metric_samples(
        &self,
        check_window: std::time::Duration,
        locations: &[String],
    ) -> Result<Vec<Sample>, CatalogError> {
        let mut out = Vec::new();
        let pool = self.pool();
        let err = query_err("computing metrics");

        // Last success (time, duration, bytes) per kind, source, location and job. A copy is
        // labelled with where it went (`location`) and where it came from (`from`).
        let rows = sqlx::query(
            "SELECT kind, source, location, target, job, finished_at, started_at, bytes_read,
                    bytes_added
             FROM runs r
             WHERE outcome = 'succeeded' AND finished_at = (
                 SELECT max(finished_at) FROM runs q
                 WHERE q.outcome = 'succeeded' AND q.kind = r.kind
                   AND COALESCE(q.source, '') = COALESCE(r.source, '')
                   AND COALESCE(q.location, '') = COALESCE(r.location, '')
                   AND COALESCE(q.target, '') = COALESCE(r.target, '')
                   AND COALESCE(q.job, '') = COALESCE(r.job, ''))",
        )
        .fetch_all(pool)
        .await
        .map_err(err)?;
        for r in rows {
            let kind: String = r.get("kind");
            let (location, from) = if kind == "copy" {
                (
                    r.get::<Option<String>, _>("target"),
                    r.get::<Option<String>, _>("location"),
                )
            } else {
                (r.get::<Option<String>, _>("location"), None)
            };
            let labels = present(vec![
                ("kind", Some(kind)),
                ("source", r.get("source")),
                ("location", location),
                ("from", from),
                ("job", r.get("job")),
            ]);
            let finished: String = r.get("finished_at");
            let started: String = r.get("started_at");
            out.push(Sample {
                name: "custodian_last_success_timestamp_seconds",
                labels: labels.clone(),
                value: epoch(&finished),
            });
            out.push(Sample {
                name: "custodian_last_success_duration_seconds",
                labels: labels.clone(),
                value: epoch(&finished) - epoch(&started),
            });
            if let Some(read) = r.get::<Option<i64>, _>("bytes_read") {
                out.push(Sample {
                    name: "custodian_last_success_read_bytes",
                    labels: labels.clone(),
                    value: read as f64,
                });
                if let Some(added) = r.get::<Option<i64>, _>("bytes_added") {
                    out.push(Sample {
                        name: "custodian_last_success_added_bytes",
                        labels: labels.clone(),
                        value: added as f64,
                    });
                    if added > 0 {
                        out.push(Sample {
                            name: "custodian_last_success_dedup_ratio",
                            labels,
                            value: read as f64 / added as f64,
                        });
                    }
                }
            }
        }

        // Runs by kind, outcome and job (failures, missed and skipped runs included).
        for r in sqlx::query(
            "SELECT kind, outcome, job, count(*) AS n FROM runs GROUP BY kind, outcome, job",
        )
        .fetch_all(pool)
        .await
        .map_err(query_err("computing metrics"))?
        {
            out.push(Sample {
                name: "custodian_runs_total",
                labels: present(vec![
                    ("kind", r.get("kind")),
                    ("outcome", r.get("outcome")),
                    ("job", r.get("job")),
                ]),
                value: r.get::<i64, _>("n") as f64,
            });
        }

        // Copy lag of the newest copy per source and destination.
        for r in sqlx::query(
            "SELECT source, to_location, lag_seconds FROM copies c
             WHERE arrived_at = (SELECT max(arrived_at) FROM copies d
                                 WHERE d.source = c.source AND d.to_location = c.to_location)",
        )
        .fetch_all(pool)
        .await
        .map_err(query_err("computing metrics"))?
        {
            out.push(Sample {
                name: "custodian_copy_lag_seconds",
                labels: vec![
                    ("source", r.get("source")),
                    ("location", r.get("to_location")),
                ],
                value: r.get::<f64, _>("lag_seconds"),
            });
        }

        // The latest drill per source and location: verdict and RTO.
        for r in sqlx::query(
            "SELECT source, location, verdict, rto_seconds, started_at FROM drills d
             WHERE verdict IN ('passed', 'failed') AND started_at = (
                 SELECT max(started_at) FROM drills e
                 WHERE e.source = d.source AND e.location = d.location
                   AND e.verdict IN ('passed', 'failed'))",
        )
        .fetch_all(pool)
        .await
        .map_err(query_err("computing metrics"))?
        {
            let labels = vec![
                ("source", r.get::<String, _>("source")),
                ("location", r.get::<String, _>("location")),
            ];
            let verdict: String = r.get("verdict");
            out.push(Sample {
                name: "custodian_drill_last_passed",
                labels: labels.clone(),
                value: if verdict == "passed" { 1.0 } else { 0.0 },
            });
            out.push(Sample {
                name: "custodian_drill_last_timestamp_seconds",
                labels: labels.clone(),
                value: epoch(&r.get::<String, _>("started_at")),
            });
            if let Some(rto) = r.get::<Option<f64>, _>("rto_seconds") {
                out.push(Sample {
                    name: "custodian_drill_rto_seconds",
                    labels,
                    value: rto,
                });
            }
        }

        // The latest check per location.
        for r in sqlx::query(
            "SELECT location, ok, checked_at FROM checks c
             WHERE checked_at = (SELECT max(checked_at) FROM checks d WHERE d.location = c.location)",
        )
        .fetch_all(pool)
        .await
        .map_err(query_err("computing metrics"))?
        {
            let labels = vec![("location", r.get::<String, _>("location"))];
            out.push(Sample { name: "custodian_check_last_ok", labels: labels.clone(), value: f64::from(r.get::<i64, _>("ok") as i32) });
            out.push(Sample { name: "custodian_check_last_timestamp_seconds", labels, value: epoch(&r.get::<String, _>("checked_at")) });
        }
        // Damage found and not yet cleared by a check that read it again, per location (0 for
        // every location ever checked, so an alert can tell "no damage" from "no data").
        for r in sqlx::query(
            "SELECT location, sum(open) AS open FROM (
                 SELECT location, 0 AS open FROM checks
                 UNION ALL
                 SELECT location, CASE WHEN cleared_at IS NULL THEN 1 ELSE 0 END FROM damage)
             GROUP BY location",
        )
        .fetch_all(pool)
        .await
        .map_err(query_err("computing metrics"))?
        {
            out.push(Sample {
                name: "custodian_location_damage_open",
                labels: vec![("location", r.get::<String, _>("location"))],
                value: r.get::<i64, _>("open") as f64,
            });
        }
        // Check coverage: the share of each location's data read by successful checks within
        // the check window (a full read counts whole; rotating parts `k/n` count k of n).
        let since = crate::model::time::format(
            crate::model::time::now()
                - jiff::SignedDuration::from_secs(
                    i64::try_from(check_window.as_secs()).unwrap_or(i64::MAX),
                ),
        );
        let rows = sqlx::query(
            "SELECT location, read_data_subset FROM checks
             WHERE ok = 1 AND checked_at >= ? AND read_data_subset IS NOT NULL",
        )
        .bind(&since)
        .fetch_all(pool)
        .await
        .map_err(query_err("computing metrics"))?;
        let mut coverage: std::collections::BTreeMap<
            String,
            (
                bool,
                std::collections::BTreeMap<u32, std::collections::BTreeSet<u32>>,
            ),
        > = std::collections::BTreeMap::new();
        for r in rows {
            let location: String = r.get("location");
            let subset: String = r.get("read_data_subset");
            let entry = coverage.entry(location).or_default();
            if subset == "all" || subset == "100%" || subset == "1/1" {
                entry.0 = true;
            } else if let Some((k, n)) = subset.split_once('/')
                && let (Ok(k), Ok(n)) = (k.parse::<u32>(), n.parse::<u32>())
            {
                entry.1.entry(n).or_default().insert(k);
            }
        }
        for (location, (full, parts)) in coverage {
            let share = if full {
                1.0
            } else {
                parts
                    .iter()
                    .map(|(n, ks)| ks.len() as f64 / f64::from(*n))
                    .fold(0.0, f64::max)
            };
            out.push(Sample {
                name: "custodian_check_coverage_ratio",
                labels: vec![("location", location)],
                value: share,
            });
        }

        // Health per configured location: the latest run that used it (backup into it, copy
        // to or from it, check, drill or restore from it) succeeded and no damage is open.
        for location in locations {
            let last: Option<String> = sqlx::query_scalar(
                "SELECT outcome FROM runs
                 WHERE (location = ?1 OR (kind = 'copy' AND target = ?1))
                   AND outcome IN ('succeeded', 'failed', 'interrupted')
                 ORDER BY started_at DESC LIMIT 1",
            )
            .bind(location)
            .fetch_optional(pool)
            .await
            .map_err(query_err("computing metrics"))?;
            let damaged: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM damage WHERE location = ? AND cleared_at IS NULL",
            )
            .bind(location)
            .fetch_one(pool)
            .await
            .map_err(query_err("computing metrics"))?;
            let healthy = last.as_deref() == Some("succeeded") && damaged == 0;
            out.push(Sample {
                name: "custodian_location_healthy",
                labels: vec![("location", location.clone())],
                value: if healthy { 1.0 } else { 0.0 },
            });
        }
        Ok(out)
    }
}
