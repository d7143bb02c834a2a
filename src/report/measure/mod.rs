//! Metrics: what each rule's check reads, computed from the evidence. A metric gives a value
//! (or none: "not evaluated", with the reason), the per-subject findings behind it, hard
//! failures and warnings that no threshold can excuse, and the ids of the evidence it used.

mod access;
mod copies;
mod records;
mod recovery;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::Serialize;

use super::evidence::Evidence;
use crate::catalog::{DrillRecord, DrillVerdict, HeldSnapshot, Outcome, RunKind, Trigger};
use crate::config::Config;

/// Every metric rules may name.
pub const METRICS: &[&str] = &[
    "schedule.success_percent",
    "rpo.worst_gap_hours",
    "integrity.coverage_percent",
    "drill.age_days",
    "drill.worst_rto_hours",
    "copies.worst_lag_hours",
    "copies.min_locations",
    "copies.min_immutable_locations",
    "immutability.lock_days",
    "crypto.key_age_days",
    "access.unapproved",
    "audit.broken_entries",
    "monitoring.silent_failures",
    "retention.days_beyond_max",
    "scratch.overdue",
    "records.problems",
    "erasure.unreplayed_restores",
    "residency.outside",
    "privacy.findings",
];

/// What a metric measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Measure {
    /// `None`: not evaluated (see `not_evaluated`).
    pub value: Option<f64>,
    pub not_evaluated: Option<String>,
    /// One line per subject (source × location, location, run…).
    pub findings: Vec<String>,
    /// Conditions that fail the check whatever the value.
    pub fail: Vec<String>,
    /// Conditions that make the check at best a warning.
    pub warn: Vec<String>,
    /// Ids of the rows in evidence.json this used.
    pub evidence: Vec<String>,
}

impl Measure {
    fn none(reason: impl Into<String>) -> Self {
        Self {
            not_evaluated: Some(reason.into()),
            ..Self::default()
        }
    }
}

/// Extra inputs some metrics need beyond the evidence.
pub struct Inputs<'a> {
    pub config: &'a Config,
    /// Problems found re-verifying earlier reports (signatures, chain, gaps).
    pub records_problems: Option<Vec<String>>,
}

pub(crate) fn ts(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

fn hours(a: Timestamp, b: Timestamp) -> f64 {
    (b.as_millisecond() - a.as_millisecond()) as f64 / 3_600_000.0
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Computes one metric.
#[must_use]
pub fn measure(metric: &str, ev: &Evidence, inputs: &Inputs<'_>) -> Measure {
    let cfg = inputs.config;
    match metric {
        "schedule.success_percent" => recovery::schedule(ev, cfg),
        "rpo.worst_gap_hours" => recovery::rpo(ev, cfg),
        "integrity.coverage_percent" => recovery::integrity(ev, cfg),
        "drill.age_days" => recovery::drill_age(ev, cfg),
        "drill.worst_rto_hours" => recovery::drill_rto(ev, cfg),
        "copies.worst_lag_hours" => copies::copy_lag(ev, cfg),
        "copies.min_locations" => copies::copy_locations(cfg, false),
        "copies.min_immutable_locations" => copies::copy_locations(cfg, true),
        "immutability.lock_days" => copies::immutability(ev),
        "crypto.key_age_days" => access::crypto(ev),
        "access.unapproved" => access::access(ev),
        "audit.broken_entries" => access::audit(ev),
        "monitoring.silent_failures" => access::monitoring(ev, cfg),
        "retention.days_beyond_max" => copies::retention(ev),
        "scratch.overdue" => records::scratch(ev, cfg),
        "records.problems" => records::records(ev, inputs),
        "erasure.unreplayed_restores" => records::erasure(ev, cfg),
        "residency.outside" => copies::residency(ev, cfg),
        // Filled in after rendering, by scanning the rendered report.
        "privacy.findings" => Measure::none("the report has not been scanned yet"),
        other => Measure::none(format!("unknown metric {other}")),
    }
}

/// Arrival times of a source's snapshots in a location, sorted.
pub(crate) fn arrivals(ev: &Evidence, source: &str, location: &str) -> Vec<(Timestamp, String)> {
    let mut out: Vec<(Timestamp, String)> = ev
        .snapshots
        .iter()
        .filter(|s| s.source == source && s.location == location)
        .filter_map(|s| ts(&s.arrived_at).map(|t| (t, s.snapshot_id.clone())))
        .collect();
    out.sort();
    out
}

/// When the evidence starts for gap purposes: the period's start, or Custodian's first
/// activity if later.
pub(crate) fn evidence_begin(ev: &Evidence) -> Option<Timestamp> {
    let first = ev.first_activity.as_deref().and_then(ts)?;
    let begin = first.max(ev.period.from);
    (begin < ev.end).then_some(begin)
}
