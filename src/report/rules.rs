//! The rule catalog (`reports/rules.toml`, compiled in) and how a measured value becomes a
//! verdict. Rules are data: tuning a threshold or mapping a control is an edit of the TOML.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// The catalog shipped with Custodian.
pub const RULES_TOML: &str = include_str!("../../reports/rules.toml");
/// Which framework controls each rule evidences.
pub const FRAMEWORKS_TOML: &str = include_str!("../../reports/frameworks.toml");

/// The whole catalog.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub version: u32,
    #[serde(rename = "rule")]
    pub rules: Vec<Rule>,
}

/// One control framework and the controls each rule evidences.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Framework {
    pub id: String,
    pub name: String,
    /// Written before each control (`A.`, `Art. `).
    pub prefix: String,
    pub controls: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrameworkFile {
    framework: Vec<Framework>,
}

/// The controls of one framework a rule evidences, as shown.
#[derive(Clone, Debug, Serialize)]
pub struct ControlRef {
    pub framework: String,
    pub controls: Vec<String>,
}

/// The shipped frameworks, those `selected` in the order given.
///
/// # Errors
/// When the mapping is malformed or names a framework it does not have.
pub fn frameworks(selected: &[String]) -> Result<Vec<Framework>, RulesError> {
    let file: FrameworkFile =
        toml::from_str(FRAMEWORKS_TOML).map_err(|e| RulesError(format!("frameworks.toml: {e}")))?;
    selected
        .iter()
        .map(|id| {
            file.framework
                .iter()
                .find(|f| &f.id == id)
                .cloned()
                .ok_or_else(|| RulesError(format!("no framework `{id}` in frameworks.toml")))
        })
        .collect()
}

/// The controls a rule evidences in each framework (frameworks mapping none left out).
#[must_use]
pub fn controls_of(rule: &str, frameworks: &[Framework]) -> Vec<ControlRef> {
    frameworks
        .iter()
        .filter_map(|f| {
            let ids = f.controls.get(rule)?;
            (!ids.is_empty()).then(|| ControlRef {
                framework: f.name.clone(),
                controls: ids.iter().map(|c| format!("{}{c}", f.prefix)).collect(),
            })
        })
        .collect()
}

/// One rule.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub title: String,
    /// What a failure means, in plain words.
    pub problem: String,
    /// What to do about it.
    pub action: String,
    /// Who does it.
    pub owner: String,
    pub measures: String,
    pub evidence: Vec<String>,
    pub attestation: String,
    #[serde(rename = "check")]
    pub checks: Vec<Check>,
}

/// One measured check of a rule.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub metric: String,
    /// The metric in words (`scheduled backups that succeeded`).
    pub says: String,
    pub unit: String,
    pub better: Better,
    pub pass: String,
    pub warn: String,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Lower,
    Higher,
}

/// A rule's or a check's verdict. Ordered from best to worst; "not evaluated" sits between
/// pass and warn so that a rule with missing evidence never reads as a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    NotEvaluated,
    Warn,
    Fail,
}

impl Verdict {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::NotEvaluated => "not-evaluated",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }

    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::NotEvaluated => "NOT EVALUATED",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
        }
    }
}

/// Why the rule catalog is unusable.
#[derive(Debug, thiserror::Error)]
#[error("the rule catalog reports/rules.toml is invalid: {0}")]
pub struct RulesError(pub String);

/// The policy parameters thresholds may name.
pub const PARAMETERS: &[&str] = &[
    "rpo_hours",
    "rto_hours",
    "copy_sla_hours",
    "alert_latency_minutes",
    "min_immutability_days",
    "key_max_age_days",
    "drill_interval_days",
    "scratch_lifetime_minutes",
    "check_window_days",
];

/// The policy parameters thresholds may name, from the configuration.
#[must_use]
pub fn parameters(config: &Config) -> BTreeMap<&'static str, f64> {
    let t = &config.reports.targets;
    let hours = |d: std::time::Duration| d.as_secs_f64() / 3600.0;
    let days = |d: std::time::Duration| d.as_secs_f64() / 86_400.0;
    BTreeMap::from([
        ("rpo_hours", hours(t.rpo)),
        ("rto_hours", hours(t.rto)),
        ("copy_sla_hours", hours(t.copy_sla)),
        (
            "alert_latency_minutes",
            t.alert_latency.as_secs_f64() / 60.0,
        ),
        ("min_immutability_days", days(t.min_immutability)),
        ("key_max_age_days", days(t.key_max_age)),
        ("drill_interval_days", days(config.drills.interval)),
        (
            "scratch_lifetime_minutes",
            config.drills.scratch_lifetime.as_secs_f64() / 60.0,
        ),
        ("check_window_days", days(config.check_window)),
    ])
}

/// Evaluates a threshold: a number, `inf`, a parameter, or `factor * parameter`.
///
/// # Errors
/// When the text is none of those.
pub fn threshold(text: &str, params: &BTreeMap<&'static str, f64>) -> Result<f64, RulesError> {
    let text = text.trim();
    if let Ok(n) = text.parse::<f64>() {
        return Ok(n);
    }
    let (factor, name) = match text.split_once('*') {
        Some((f, n)) => (
            f.trim()
                .parse::<f64>()
                .map_err(|_| RulesError(format!("`{text}`: `{}` is not a number", f.trim())))?,
            n.trim(),
        ),
        None => (1.0, text),
    };
    params
        .get(name)
        .map(|v| factor * v)
        .ok_or_else(|| RulesError(format!("`{text}`: unknown parameter `{name}`")))
}

/// Parses the catalog and checks every threshold and metric name.
///
/// # Errors
/// When the TOML is malformed, a threshold does not evaluate, or a metric is unknown.
pub fn load(text: &str, known_metrics: &[&str]) -> Result<Catalog, RulesError> {
    let catalog: Catalog = toml::from_str(text).map_err(|e| RulesError(e.to_string()))?;
    let params = parameters_for_validation();
    for rule in &catalog.rules {
        if rule.checks.is_empty() {
            return Err(RulesError(format!("rule {} has no check", rule.id)));
        }
        for check in &rule.checks {
            if !known_metrics.contains(&check.metric.as_str()) {
                return Err(RulesError(format!(
                    "rule {}: unknown metric `{}`",
                    rule.id, check.metric
                )));
            }
            threshold(&check.pass, &params)?;
            threshold(&check.warn, &params)?;
        }
    }
    Ok(catalog)
}

fn parameters_for_validation() -> BTreeMap<&'static str, f64> {
    PARAMETERS.iter().map(|k| (*k, 1.0)).collect()
}

/// The verdict of one value against a check's thresholds.
#[must_use]
pub fn judge(value: f64, better: Better, pass: f64, warn: f64) -> Verdict {
    let within = |limit: f64| match better {
        Better::Lower => value <= limit,
        Better::Higher => value >= limit,
    };
    if within(pass) {
        Verdict::Pass
    } else if within(warn) {
        Verdict::Warn
    } else {
        Verdict::Fail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_evaluate_numbers_parameters_and_factors() {
        let p = BTreeMap::from([("rpo_hours", 24.0)]);
        assert_eq!(threshold("99", &p).unwrap(), 99.0);
        assert_eq!(threshold("rpo_hours", &p).unwrap(), 24.0);
        assert_eq!(threshold("1.5 * rpo_hours", &p).unwrap(), 36.0);
        assert!(threshold("inf", &p).unwrap().is_infinite());
        assert!(threshold("rto_hours", &p).is_err());
        assert!(threshold("x * rpo_hours", &p).is_err());
    }

    #[test]
    fn verdicts_follow_direction() {
        assert_eq!(judge(20.0, Better::Lower, 24.0, 36.0), Verdict::Pass);
        assert_eq!(judge(30.0, Better::Lower, 24.0, 36.0), Verdict::Warn);
        assert_eq!(judge(40.0, Better::Lower, 24.0, 36.0), Verdict::Fail);
        assert_eq!(judge(99.5, Better::Higher, 99.0, 95.0), Verdict::Pass);
        assert_eq!(judge(96.0, Better::Higher, 99.0, 95.0), Verdict::Warn);
        assert_eq!(judge(90.0, Better::Higher, 99.0, 95.0), Verdict::Fail);
        assert!(Verdict::NotEvaluated > Verdict::Pass && Verdict::NotEvaluated < Verdict::Warn);
    }

    #[test]
    fn shipped_catalog_loads_and_names_known_metrics() {
        let catalog = load(RULES_TOML, crate::report::measure::METRICS).unwrap();
        let ids: Vec<&str> = catalog.rules.iter().map(|r| r.id.as_str()).collect();
        for id in [
            "SCHEDULE",
            "RPO",
            "INTEGRITY",
            "DRILL",
            "COPIES",
            "IMMUTABILITY",
            "CRYPTO",
            "ACCESS",
            "AUDIT-LOG",
            "MONITORING",
            "RETENTION",
            "SCRATCH-DATA",
            "RECORDS",
            "ERASURE",
            "RESIDENCY",
            "PRIVACY-OF-REPORT",
        ] {
            assert!(ids.contains(&id), "{id} missing");
        }
        // Every rule says in words what a failure means, what to do, and who does it.
        for rule in &catalog.rules {
            assert!(
                !rule.problem.is_empty() && !rule.action.is_empty() && !rule.owner.is_empty(),
                "{}",
                rule.id
            );
        }
    }

    #[test]
    fn every_framework_maps_only_known_rules_and_parameters_are_listed_once() {
        let catalog = load(RULES_TOML, crate::report::measure::METRICS).unwrap();
        let all: Vec<String> = crate::config::FRAMEWORKS
            .iter()
            .map(|f| (*f).to_string())
            .collect();
        let frameworks = frameworks(&all).unwrap();
        assert_eq!(frameworks.len(), 4);
        for f in &frameworks {
            for rule in f.controls.keys() {
                assert!(
                    catalog.rules.iter().any(|r| &r.id == rule),
                    "{}: {rule}",
                    f.id
                );
            }
        }
        let soc2 = controls_of("DRILL", &frameworks[2..3]);
        assert_eq!(soc2[0].controls, ["A1.3", "CC7.5"]);
        let nis2 = controls_of("DRILL", &frameworks[3..]);
        assert_eq!(nis2[0].controls, ["Art. 21(2)(c)", "Art. 21(2)(f)"]);
        assert!(controls_of("RESIDENCY", &frameworks[2..]).is_empty());
        let cfg_params: Vec<&str> = PARAMETERS.to_vec();
        assert_eq!(cfg_params.len(), parameters_for_validation().len());
    }
}
