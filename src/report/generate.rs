//! Generating a report — a pure function of what it is given: evidence → rules → charts → HTML
//! and evidence.json → privacy scan → signed bundle, all in memory. The report job gathers the
//! evidence, writes the bundle and records it; nothing here reads or writes anything.

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::Timestamp;
use serde::Serialize;

use super::evidence::Evidence;
use super::measure::{Inputs, Measure};
use super::period::Period;
use super::render::Charts;
use super::rules::{self, Verdict};
use super::{
    ReportError, RuleResult, bundle, charts, evaluate_rule, overall, privacy, render, sign,
};
use crate::catalog::{DrillVerdict, Outcome, ReportRecord, RunKind};
use crate::config::Config;
use crate::model::time;

/// The report as rendered and as serialized into `evidence.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub format: &'static str,
    pub id: String,
    /// The frameworks in scope, as named on the cover.
    pub framework: String,
    pub frameworks: Vec<String>,
    /// The time zone times are shown in.
    pub time_zone: String,
    /// The first screen: the overall verdict and every rule that did not pass, in words.
    pub executive: Executive,
    pub period: PeriodView,
    pub generated_at: String,
    pub generator: String,
    pub host: String,
    pub scope: Scope,
    pub config: ConfigView,
    pub policy: BTreeMap<&'static str, f64>,
    pub signer: SignerView,
    pub previous: Option<Previous>,
    /// Earlier reports of the same period this one supersedes (a regeneration), newest first.
    pub supersedes: Vec<Superseded>,
    pub overall: Verdict,
    pub overall_label: &'static str,
    pub summary: Summary,
    pub rules: Vec<RuleResult>,
    pub exceptions: Vec<Note>,
    pub attestations: Vec<Note>,
    pub drills_in_period: Vec<DrillView>,
    pub audit_highlights: Vec<crate::audit::Entry>,
    pub audit_summary: String,
    pub population: Population,
    pub evidence: Evidence,
}

#[derive(Clone, Debug, Serialize)]
pub struct PeriodView {
    pub label: String,
    pub from: String,
    pub to: String,
    /// `1–31 December 2026`: the last day included.
    pub display: String,
    pub open: bool,
}

/// The executive summary.
#[derive(Clone, Debug, Serialize)]
pub struct Executive {
    /// One sentence: the verdict and how many rules fail, warn, pass or were not evaluated.
    pub headline: String,
    /// Every rule that did not pass, worst first.
    pub items: Vec<ExecutiveItem>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExecutiveItem {
    pub rule: String,
    pub verdict: Verdict,
    pub verdict_label: &'static str,
    pub problem: String,
    pub reason: String,
    pub action: String,
    pub owner: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Scope {
    pub sources: Vec<ScopeSource>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScopeSource {
    pub name: String,
    pub engine: String,
    pub locations: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConfigView {
    pub file: String,
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct SignerView {
    pub key_id: String,
    /// The one-line base64 public key (`minisign -P`).
    pub public_key: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Previous {
    pub id: String,
    pub period: String,
    pub manifest_sha256: String,
    pub dir: String,
    pub dir_name: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Superseded {
    pub id: String,
    pub generated_at: String,
    pub manifest_sha256: String,
    pub overall: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub backup_success: String,
    pub backups_ok: usize,
    pub backups_total: usize,
    pub worst_rpo: String,
    pub rpo_target: String,
    pub latest_rto: String,
    pub rto_target: String,
    pub immutability: String,
    pub open_exceptions: usize,
    pub changes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Note {
    pub rule: String,
    pub text: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct DrillView {
    pub started_at: String,
    pub source: String,
    pub location: String,
    pub snapshot: String,
    pub selection: String,
    pub verdict: String,
    pub badge: &'static str,
    pub failure: Option<String>,
    pub rto: String,
    pub tables: i64,
    pub rows: i64,
    pub phases: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Population {
    pub runs: usize,
    pub snapshots: usize,
    pub checks: usize,
    pub drills: usize,
    pub scratch: usize,
    pub audit: usize,
    pub alerts: usize,
}

pub(crate) fn duration_text(hours: f64) -> String {
    if hours.is_infinite() {
        "never".into()
    } else if hours >= 48.0 {
        format!("{:.1} d", hours / 24.0)
    } else if hours >= 1.0 {
        format!("{hours:.1} h")
    } else if hours >= 1.0 / 60.0 {
        format!("{:.1} min", hours * 60.0)
    } else {
        format!("{:.1} s", hours * 3600.0)
    }
}

fn drill_views(ev: &Evidence) -> Vec<DrillView> {
    ev.drills
        .iter()
        .filter(|d| super::measure::ts(&d.started_at).is_some_and(|t| t >= ev.period.from))
        .map(|d| DrillView {
            started_at: d.started_at.clone(),
            source: d.source.clone(),
            location: d.location.clone(),
            snapshot: d
                .snapshot_id
                .as_deref()
                .map_or("-".into(), |s| s[..s.len().min(8)].to_string()),
            selection: d.selection.clone(),
            verdict: d.verdict.as_str().to_string(),
            badge: match d.verdict {
                DrillVerdict::Passed => "pass",
                DrillVerdict::Failed => "fail",
                _ => "not-evaluated",
            },
            failure: d
                .failure_code
                .as_ref()
                .map(|c| format!("{c}: {}", d.failure_reason.as_deref().unwrap_or(""))),
            rto: d
                .rto_seconds
                .map_or("-".into(), |s| duration_text(s / 3600.0)),
            tables: d.tables.unwrap_or(0),
            rows: d.rows.unwrap_or(0),
            phases: d
                .phases
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            format!(
                                "{} {:.1}s",
                                p["name"].as_str().unwrap_or("?"),
                                p["seconds"].as_f64().unwrap_or(0.0)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
        })
        .collect()
}

fn summary(
    ev: &Evidence,
    rules: &[RuleResult],
    cfg: &Config,
    prev: Option<&ReportRecord>,
) -> Summary {
    let backups: Vec<_> = ev
        .runs
        .iter()
        .filter(|r| {
            r.kind == RunKind::Backup && !matches!(r.outcome, Outcome::Running | Outcome::Skipped)
        })
        .collect();
    let ok = backups
        .iter()
        .filter(|r| r.outcome == Outcome::Succeeded)
        .count();
    let value = |metric: &str| {
        rules
            .iter()
            .flat_map(|r| r.checks.iter())
            .find(|c| c.metric == metric)
            .and_then(|c| c.measure.value)
    };
    let immutability = rules
        .iter()
        .find(|r| r.id == "IMMUTABILITY")
        .map_or("-".to_string(), |r| {
            let modes: Vec<String> = ev
                .locations
                .iter()
                .filter_map(|l| {
                    l.object_lock
                        .as_ref()
                        .map(|m| format!("{m} {}d", l.object_lock_days.unwrap_or(0)))
                })
                .collect();
            if modes.is_empty() {
                "none".into()
            } else {
                format!("{} ({})", modes.join(", "), r.verdict.as_str())
            }
        });
    let open_exceptions = rules
        .iter()
        .flat_map(|r| r.checks.iter())
        .map(|c| c.measure.fail.len() + c.measure.warn.len())
        .sum();
    let mut changes = Vec::new();
    if let Some(p) = prev {
        let old: BTreeMap<String, String> = serde_json::from_str(&p.verdicts).unwrap_or_default();
        for r in rules {
            if let Some(was) = old.get(&r.id)
                && was != r.verdict.as_str()
            {
                changes.push(format!("{}: {was} → {}", r.id, r.verdict.as_str()));
            }
        }
        if changes.is_empty() {
            changes.push(format!("No verdict changed since {}.", p.period));
        }
    }
    Summary {
        backup_success: if backups.is_empty() {
            "-".into()
        } else {
            format!("{:.1}%", 100.0 * ok as f64 / backups.len() as f64)
        },
        backups_ok: ok,
        backups_total: backups.len(),
        worst_rpo: value("rpo.worst_gap_hours").map_or("-".into(), duration_text),
        rpo_target: duration_text(cfg.reports.targets.rpo.as_secs_f64() / 3600.0),
        latest_rto: {
            let undrilled: Vec<String> = cfg
                .sources
                .iter()
                .flat_map(|s| {
                    s.locations
                        .iter()
                        .filter(|l| {
                            !ev.drills.iter().any(|d| {
                                d.source == s.name
                                    && &d.location == *l
                                    && d.verdict == DrillVerdict::Passed
                            })
                        })
                        .map(move |l| format!("{}/{l}", s.name))
                })
                .collect();
            if undrilled.is_empty() {
                value("drill.worst_rto_hours").map_or("not drilled".into(), duration_text)
            } else {
                format!("not drilled: {}", undrilled.join(", "))
            }
        },
        rto_target: duration_text(cfg.reports.targets.rto.as_secs_f64() / 3600.0),
        immutability,
        open_exceptions,
        changes,
    }
}

/// Where reports go: `--out`, else `[reports] out-dir`, else `STATE/reports`.
#[must_use]
pub fn out_dir(config: &Config, out: Option<&std::path::Path>) -> PathBuf {
    out.map(std::path::Path::to_path_buf)
        .or_else(|| config.reports.out_dir.clone())
        .unwrap_or_else(|| config.state_dir.join("reports"))
}

/// The signing key files: configured, else `STATE/keys/report.{key,pub}`.
#[must_use]
pub fn key_paths(config: &crate::config::Config) -> (PathBuf, PathBuf) {
    let keys = config.state_dir.join("keys");
    (
        config
            .reports
            .secret_key_file
            .clone()
            .unwrap_or_else(|| keys.join("report.key")),
        config
            .reports
            .public_key_file
            .clone()
            .unwrap_or_else(|| keys.join("report.pub")),
    )
}

/// Periods before this one, oldest first, with the latest report of each: the last six make
/// each rule's trend.
fn trend_history<'a>(ev: &'a Evidence, current: &str) -> Vec<&'a ReportRecord> {
    let mut latest: Vec<&ReportRecord> = Vec::new();
    for r in ev.reports.iter().filter(|r| r.period != current) {
        latest.retain(|x| x.period != r.period);
        latest.push(r);
    }
    latest.sort_by(|a, b| a.period_to.cmp(&b.period_to));
    let skip = latest.len().saturating_sub(6);
    latest.into_iter().skip(skip).collect()
}

fn trend_of(rule: &str, history: &[&ReportRecord]) -> Vec<super::TrendPoint> {
    history
        .iter()
        .map(|r| {
            let verdicts: BTreeMap<String, String> =
                serde_json::from_str(&r.verdicts).unwrap_or_default();
            let metrics: BTreeMap<String, serde_json::Value> =
                serde_json::from_str(&r.metrics).unwrap_or_default();
            let m = metrics.get(rule);
            super::TrendPoint {
                period: r.period.clone(),
                verdict: verdicts
                    .get(rule)
                    .cloned()
                    .unwrap_or_else(|| "not-evaluated".into()),
                value: m.and_then(|m| m["value"].as_f64()),
                display: m.and_then(|m| m["display"].as_str().map(str::to_string)),
            }
        })
        .collect()
}

/// The first screen: the verdict in one sentence, then every rule that did not pass — what it
/// means, why, what to do and who does it — worst first.
fn executive(rules: &[RuleResult], overall: Verdict) -> Executive {
    let count = |v: Verdict| rules.iter().filter(|r| r.verdict == v).count();
    let (fail, warn, none, pass) = (
        count(Verdict::Fail),
        count(Verdict::Warn),
        count(Verdict::NotEvaluated),
        count(Verdict::Pass),
    );
    let plural = |n: usize, one: &str, many: &str| {
        if n == 1 {
            format!("{n} {one}")
        } else {
            format!("{n} {many}")
        }
    };
    let mut parts = Vec::new();
    if fail > 0 {
        parts.push(plural(fail, "rule fails", "rules fail"));
    }
    if warn > 0 {
        parts.push(plural(warn, "rule warns", "rules warn"));
    }
    if none > 0 {
        parts.push(plural(
            none,
            "rule could not be evaluated",
            "rules could not be evaluated",
        ));
    }
    let state = match overall {
        Verdict::Pass => "Compliant",
        Verdict::Warn => "Compliant, with warnings",
        Verdict::NotEvaluated => "Not established",
        Verdict::Fail => "Not compliant",
    };
    let headline = if parts.is_empty() {
        format!("{state}: all {pass} rules pass.")
    } else {
        let last = parts.pop().unwrap_or_default();
        let listed = if parts.is_empty() {
            last
        } else {
            format!("{} and {last}", parts.join(", "))
        };
        format!("{state}: {listed}; {pass} pass.")
    };
    let mut items: Vec<ExecutiveItem> = rules
        .iter()
        .filter(|r| r.verdict != Verdict::Pass)
        .map(|r| ExecutiveItem {
            rule: r.id.clone(),
            verdict: r.verdict,
            verdict_label: r.verdict.label(),
            problem: r.problem.clone(),
            reason: r.reason.clone().unwrap_or_default(),
            action: r.action.clone(),
            owner: r.owner.clone(),
        })
        .collect();
    items.sort_by_key(|x| std::cmp::Reverse(x.verdict));
    Executive { headline, items }
}

/// Who signs: the secret key and its public key.
pub struct Signer {
    pub secret: minisign::SecretKey,
    pub public: minisign::PublicKey,
}

/// What a report is generated for, besides the evidence.
pub struct Request<'a> {
    pub config: &'a Config,
    pub period: &'a Period,
    pub now: Timestamp,
    /// Problems re-verifying earlier reports (signatures, chain, gaps): the RECORDS rule's.
    pub records_problems: Vec<String>,
}

/// A generated, signed report, in memory: every file of the bundle, manifest and signature
/// included.
pub struct Bundle {
    pub id: String,
    pub report: Box<Report>,
    pub charts: Charts,
    /// Name and content of every file, in the order they are written.
    pub files: Vec<(String, Vec<u8>)>,
    pub manifest_sha256: String,
    pub key_id: String,
    pub previous_id: Option<String>,
    pub overall: Verdict,
    pub verdicts: BTreeMap<String, Verdict>,
    /// Each rule's key value (its first check), for the trends of later reports.
    pub metrics: BTreeMap<String, serde_json::Value>,
}

/// Evaluates every rule on the evidence, renders the report, scans it for personal data and
/// signs the bundle.
///
/// # Errors
/// When the rule catalog, a chart, the rendering or the signing fails.
pub fn generate(ev: Evidence, req: &Request<'_>, signer: &Signer) -> Result<Bundle, ReportError> {
    let (cfg, period, now) = (req.config, req.period, req.now);
    let pk = &signer.public;
    let catalog = rules::load(rules::RULES_TOML, super::measure::METRICS)
        .map_err(|e| ReportError::Rules(e.to_string()))?;
    let frameworks = rules::frameworks(&cfg.reports.frameworks)
        .map_err(|e| ReportError::Rules(e.to_string()))?;
    let history = trend_history(&ev, &period.label);
    let params = rules::parameters(cfg);
    let previous_record = ev.reports.last().cloned();
    let inputs = Inputs {
        config: cfg,
        records_problems: Some(req.records_problems.clone()),
    };
    let rpo = charts::rpo_timeline(&ev, cfg)
        .map_err(|e| ReportError::Chart(format!("the RPO chart: {e}")))?;
    let rto = charts::rto_trend(&ev, cfg)
        .map_err(|e| ReportError::Chart(format!("the RTO chart: {e}")))?;
    let charts = Charts {
        rpo: rpo.as_ref().map(|d| d.svg.clone()),
        rto: rto.as_ref().map(|d| d.svg.clone()),
        rpo_png: rpo.map(|d| d.png),
        rto_png: rto.map(|d| d.png),
    };
    let calendar = charts::calendar(&ev);
    let id = format!(
        "{}-{}",
        period.label.replace("..", "_"),
        &bundle::sha256_hex(
            format!("{}{}{}", time::format(now), cfg.sha256, std::process::id()).as_bytes()
        )[..8]
    );
    let previous = previous_record.as_ref().map(|p| Previous {
        id: p.id.clone(),
        period: p.period.clone(),
        manifest_sha256: p.manifest_sha256.clone(),
        dir: p.dir.clone(),
        dir_name: std::path::Path::new(&p.dir)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    });
    let old_verdicts: BTreeMap<String, String> = previous_record
        .as_ref()
        .and_then(|p| serde_json::from_str(&p.verdicts).ok())
        .unwrap_or_default();
    let staff = super::staff_addresses(cfg);
    let supersedes: Vec<Superseded> = ev
        .reports
        .iter()
        .rev()
        .filter(|r| r.period == period.label)
        .map(|r| Superseded {
            id: r.id.clone(),
            generated_at: r.generated_at.clone(),
            manifest_sha256: r.manifest_sha256.clone(),
            overall: r.overall.clone(),
        })
        .collect();

    // Evaluate, render, scan; then evaluate PRIVACY-OF-REPORT from the scan and render again.
    let mut overrides: BTreeMap<String, Measure> = BTreeMap::new();
    let mut rendered = None;
    for pass in 0..2 {
        let mut results: Vec<RuleResult> = catalog
            .rules
            .iter()
            .map(|rule| evaluate_rule(rule, &frameworks, &ev, &inputs, &params, &overrides))
            .collect();
        for r in &mut results {
            r.previous = old_verdicts.get(&r.id).cloned();
            r.trend = trend_of(&r.id, &history);
            let mut points: Vec<(String, Option<f64>)> = r
                .trend
                .iter()
                .map(|t| (t.verdict.clone(), t.value))
                .collect();
            points.push((
                r.verdict.as_str().to_string(),
                r.checks.first().and_then(|c| c.measure.value),
            ));
            r.sparkline = charts::sparkline(&points);
        }
        let verdict = overall(&results);
        let mut exceptions = Vec::new();
        let mut attestations = Vec::new();
        for r in &results {
            for c in &r.checks {
                for f in c.measure.fail.iter().chain(c.measure.warn.iter()) {
                    exceptions.push(Note {
                        rule: r.id.clone(),
                        text: f.clone(),
                    });
                }
                if let Some(why) = &c.measure.not_evaluated {
                    exceptions.push(Note {
                        rule: r.id.clone(),
                        text: format!("{} not evaluated: {why}", c.metric),
                    });
                }
            }
            if !r.attestation.is_empty() {
                attestations.push(Note {
                    rule: r.id.clone(),
                    text: r.attestation.clone(),
                });
            }
        }
        let privileged: Vec<_> = ev
            .audit
            .iter()
            .filter(|e| {
                !matches!(e.action.as_str(), "backup" | "copy" | "check")
                    || e.outcome != "succeeded"
            })
            .rev()
            .take(50)
            .cloned()
            .collect();
        let report = Report {
            format: "custodian-report/1",
            id: id.clone(),
            framework: frameworks
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(" · "),
            frameworks: frameworks.iter().map(|f| f.name.clone()).collect(),
            time_zone: cfg.reports.time_zone_name.clone(),
            executive: executive(&results, verdict),
            period: PeriodView {
                label: period.label.clone(),
                from: time::format(period.from),
                to: time::format(period.to),
                display: period.display(),
                open: period.is_open(now),
            },
            generated_at: time::format(now),
            generator: format!("custodian {}", env!("CARGO_PKG_VERSION")),
            host: cfg.hostname.clone(),
            scope: Scope {
                sources: cfg
                    .sources
                    .iter()
                    .map(|s| ScopeSource {
                        name: s.name.clone(),
                        engine: s.engine().as_str().to_string(),
                        locations: s.locations.clone(),
                    })
                    .collect(),
            },
            config: ConfigView {
                file: cfg.file.display().to_string(),
                sha256: cfg.sha256.clone(),
            },
            policy: params.clone(),
            signer: SignerView {
                key_id: sign::key_id(pk),
                public_key: sign::public_base64(pk)
                    .map_err(|e| ReportError::Sign(e.to_string()))?,
            },
            previous: previous.clone(),
            supersedes: supersedes.clone(),
            overall: verdict,
            overall_label: verdict.label(),
            summary: summary(&ev, &results, cfg, previous_record.as_ref()),
            rules: results,
            exceptions,
            attestations,
            drills_in_period: drill_views(&ev),
            audit_summary: format!(
                "{} audit entries in the period; the 50 most recent other than successful backups, copies and checks are listed.",
                ev.audit.len()
            ),
            audit_highlights: privileged,
            population: Population {
                runs: ev.runs.len(),
                snapshots: ev.snapshots.len(),
                checks: ev.checks.len(),
                drills: ev.drills.len(),
                scratch: ev.scratch_instances.len(),
                audit: ev.audit.len(),
                alerts: ev.alerts.len(),
            },
            evidence: ev.clone(),
        };
        let html = render::report(&report, &charts, &calendar, &cfg.reports.time_zone)
            .map_err(ReportError::Render)?;
        let json = serde_json::to_vec_pretty(&report)
            .map_err(|e| ReportError::Render(format!("serializing the evidence: {e}")))?;
        if pass == 0 {
            let mut findings = privacy::scan("report.html", &html, &staff);
            findings.extend(privacy::scan(
                "evidence.json",
                &String::from_utf8_lossy(&json),
                &staff,
            ));
            let mut m = Measure {
                value: Some(findings.len() as f64),
                ..Measure::default()
            };
            m.findings.push(format!(
                "report.html ({} bytes) and evidence.json ({} bytes) scanned for e-mail addresses and telephone numbers",
                html.len(),
                json.len()
            ));
            m.fail = findings.iter().take(20).map(ToString::to_string).collect();
            overrides.insert("privacy.findings".into(), m);
            // A regeneration that turns a FAIL of the same period into a PASS is flagged.
            if verdict == Verdict::Pass
                && let Some(failed) = supersedes.iter().find(|s| s.overall == "fail")
            {
                let mut records = super::measure::measure("records.problems", &ev, &inputs);
                records.warn.push(format!(
                    "this report supersedes {}, which FAILED for the same period; an auditor should ask why it was regenerated",
                    failed.id
                ));
                overrides.insert("records.problems".into(), records);
            }
        } else {
            rendered = Some((report, html, json));
        }
    }
    let Some((report, html, json)) = rendered else {
        return Err(ReportError::Render("the report was not rendered".into()));
    };
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("report.html".into(), html.into_bytes()),
        ("evidence.json".into(), json),
    ];
    if let Some(svg) = &charts.rpo {
        files.push(("rpo.svg".into(), svg.clone().into_bytes()));
    }
    if let Some(svg) = &charts.rto {
        files.push(("rto.svg".into(), svg.clone().into_bytes()));
    }
    if let Some(png) = &charts.rpo_png {
        files.push(("rpo.png".into(), png.clone()));
    }
    if let Some(png) = &charts.rto_png {
        files.push(("rto.png".into(), png.clone()));
    }
    files.push((
        bundle::PUBLIC_KEY.into(),
        pk.to_box()
            .map_err(|e| ReportError::Sign(e.to_string()))?
            .to_string()
            .into_bytes(),
    ));
    let comment = format!(
        "custodian report {} period {} overall {} config {}",
        id,
        period.label,
        report.overall.as_str(),
        cfg.sha256
    );
    let manifest_sha256 =
        bundle::sign_files(&mut files, pk, &signer.secret, &comment).map_err(ReportError::Sign)?;
    let verdicts: BTreeMap<String, Verdict> = report
        .rules
        .iter()
        .map(|r| (r.id.clone(), r.verdict))
        .collect();
    let metrics = report
        .rules
        .iter()
        .filter_map(|r| {
            let c = r.checks.first()?;
            Some((
                r.id.clone(),
                serde_json::json!({ "value": c.measure.value.filter(|v| v.is_finite()), "display": c.display }),
            ))
        })
        .collect();
    Ok(Bundle {
        metrics,
        id,
        key_id: sign::key_id(pk),
        previous_id: previous.as_ref().map(|p| p.id.clone()),
        overall: report.overall,
        verdicts,
        report: Box::new(report),
        charts,
        files,
        manifest_sha256,
    })
}
