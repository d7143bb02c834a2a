//! Compliance reports: every rule of `reports/rules.toml` evaluated for a period from the
//! catalog, the audit log and the locations; rendered as a self-contained `report.html` with
//! charts, shipped with the whole evidence population (`evidence.json`), and signed with
//! minisign over a `SHA256SUMS` manifest of the bundle. Each report embeds the manifest hash of
//! the report before it, so reports form a chain.

pub mod bundle;
pub mod charts;
pub mod evidence;
pub mod generate;
pub mod measure;
pub mod period;
pub mod privacy;
pub mod render;
pub mod rules;
pub mod sign;

use std::collections::BTreeMap;

use serde::Serialize;

pub use bundle::{Verification, verify_bundle};
pub use generate::{Bundle, Report, Request, Signer, generate};
pub use period::Period;
pub use rules::Verdict;

use crate::config::Config;
use evidence::Evidence;
use measure::{Inputs, Measure};

/// Why a report could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("the rule catalog is invalid: {0}")]
    Rules(String),
    #[error("cannot draw {0}")]
    Chart(String),
    #[error("cannot render the report: {0}")]
    Render(String),
    #[error("cannot sign the report: {0}")]
    Sign(String),
    /// A period that cannot be reported on, in a sentence saying what is accepted.
    #[error("{0}")]
    Period(String),
    #[error("cannot write the report: {0}")]
    Write(String),
}

impl ReportError {
    /// Stable error code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Rules(_) => "report.rules",
            Self::Chart(_) => "report.chart",
            Self::Render(_) => "report.render",
            Self::Sign(_) => "report.sign",
            Self::Period(_) => "report.period",
            Self::Write(_) => "report.write",
        }
    }
}

/// One evaluated check.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub metric: String,
    /// The metric in words.
    pub says: String,
    pub unit: String,
    pub better: rules::Better,
    pub pass_at: f64,
    pub warn_at: f64,
    pub verdict: Verdict,
    pub pass_text: String,
    pub warn_text: String,
    /// The value as shown (`12.5 h`, `never`, `not evaluated`).
    pub display: String,
    pub measure: Measure,
}

/// One evaluated rule.
#[derive(Clone, Debug, Serialize)]
pub struct RuleResult {
    pub id: String,
    pub title: String,
    /// The controls of the frameworks in scope this rule evidences.
    pub controls: Vec<rules::ControlRef>,
    pub problem: String,
    pub action: String,
    pub owner: String,
    /// Why it did not pass, in words (the first failure or warning), when it did not.
    pub reason: Option<String>,
    /// This rule's verdict and key value in earlier reports, oldest first.
    pub trend: Vec<TrendPoint>,
    /// The trend and this report as a small inline SVG.
    pub sparkline: String,
    pub measures: String,
    pub attestation: String,
    pub verdict: Verdict,
    pub verdict_label: &'static str,
    /// The verdict in the previous report, if there was one.
    pub previous: Option<String>,
    pub checks: Vec<CheckResult>,
}

/// One earlier report's verdict and key value for a rule.
#[derive(Clone, Debug, Serialize)]
pub struct TrendPoint {
    pub period: String,
    pub verdict: String,
    pub value: Option<f64>,
    pub display: Option<String>,
}

/// Evaluates one rule's checks into a rule verdict: the worst evaluated check; a rule with any
/// check not evaluated cannot pass.
#[must_use]
pub fn evaluate_rule(
    rule: &rules::Rule,
    frameworks: &[rules::Framework],
    ev: &Evidence,
    inputs: &Inputs<'_>,
    params: &BTreeMap<&'static str, f64>,
    overrides: &BTreeMap<String, Measure>,
) -> RuleResult {
    let mut checks = Vec::new();
    for check in &rule.checks {
        let m = overrides
            .get(&check.metric)
            .cloned()
            .unwrap_or_else(|| measure::measure(&check.metric, ev, inputs));
        let pass_at = rules::threshold(&check.pass, params).unwrap_or(f64::NAN);
        let warn_at = rules::threshold(&check.warn, params).unwrap_or(f64::NAN);
        let verdict = match m.value {
            None => Verdict::NotEvaluated,
            Some(_) if !m.fail.is_empty() => Verdict::Fail,
            Some(v) => {
                let judged = rules::judge(v, check.better, pass_at, warn_at);
                if judged == Verdict::Pass && !m.warn.is_empty() {
                    Verdict::Warn
                } else {
                    judged
                }
            }
        };
        let display = match m.value {
            None => "not evaluated".to_string(),
            Some(v) if v.is_infinite() => "never".to_string(),
            Some(v) if check.unit == "h" => generate::duration_text(v),
            Some(v) => format!("{} {}", trim_number(v), check.unit),
        };
        let limit = |x: f64, raw: &str| {
            let sign = match check.better {
                rules::Better::Lower => "≤",
                rules::Better::Higher => "≥",
            };
            if x.is_infinite() {
                String::new()
            } else if raw.trim().parse::<f64>().is_ok() {
                format!("{sign} {} {}", trim_number(x), check.unit)
            } else {
                format!("{sign} {} {} ({raw})", trim_number(x), check.unit)
            }
        };
        let pass_text = limit(pass_at, &check.pass);
        let warn_text = if (warn_at - pass_at).abs() < f64::EPSILON {
            String::new()
        } else {
            limit(warn_at, &check.warn)
        };
        checks.push(CheckResult {
            pass_text,
            warn_text,
            metric: check.metric.clone(),
            says: check.says.clone(),
            unit: check.unit.clone(),
            better: check.better,
            pass_at,
            warn_at,
            verdict,
            display,
            measure: m,
        });
    }
    let worst = checks
        .iter()
        .map(|c| c.verdict)
        .max()
        .unwrap_or(Verdict::NotEvaluated);
    let reason = (worst != Verdict::Pass).then(|| reason(&checks)).flatten();
    RuleResult {
        id: rule.id.clone(),
        title: rule.title.clone(),
        controls: rules::controls_of(&rule.id, frameworks),
        problem: rule.problem.clone(),
        action: rule.action.clone(),
        owner: rule.owner.clone(),
        reason,
        trend: Vec::new(),
        sparkline: String::new(),
        measures: rule.measures.clone(),
        attestation: rule.attestation.clone(),
        verdict: worst,
        verdict_label: worst.label(),
        previous: None,
        checks,
    }
}

/// Why a rule did not pass, in one sentence: its first hard failure, else its first warning,
/// else the worst check's value against its threshold, else why it was not evaluated.
fn reason(checks: &[CheckResult]) -> Option<String> {
    if let Some(f) = checks.iter().find_map(|c| c.measure.fail.first()) {
        return Some(f.clone());
    }
    if let Some(w) = checks.iter().find_map(|c| c.measure.warn.first()) {
        return Some(w.clone());
    }
    let worst = checks.iter().max_by_key(|c| c.verdict)?;
    match (&worst.measure.not_evaluated, worst.verdict) {
        (Some(why), _) => Some(format!("not evaluated: {why}")),
        (None, Verdict::Pass) => None,
        (None, _) => Some(format!(
            "{}: {}, where {} is needed to pass",
            worst.says, worst.display, worst.pass_text
        )),
    }
}

fn trim_number(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if v.abs() < 0.1 {
        format!("{v:.3}")
    } else {
        format!("{v:.1}")
    }
}

/// The overall rating: the worst rule, except that rules not evaluated make it at best
/// "not evaluated" (never a pass on missing evidence).
#[must_use]
pub fn overall(rules: &[RuleResult]) -> Verdict {
    rules
        .iter()
        .map(|r| r.verdict)
        .max()
        .unwrap_or(Verdict::NotEvaluated)
}

/// Addresses the configuration itself names (sender, recipients): not personal data from the
/// CRM, so the privacy scan lets them through.
#[must_use]
pub fn staff_addresses(config: &Config) -> Vec<String> {
    let n = &config.notifications;
    n.report_to
        .iter()
        .chain(n.alert_to.iter())
        .cloned()
        .chain(n.smtp.as_ref().map(|s| s.from.clone()))
        .collect()
}
