//! Generating a report: evidence → rules → charts → HTML and evidence.json → privacy scan →
//! signed bundle → catalog record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Serialize;

use super::evidence::{self, Evidence};
use super::measure::{Inputs, Measure};
use super::period::Period;
use super::render::Charts;
use super::rules::{self, Verdict};
use super::{RuleResult, bundle, charts, evaluate_rule, overall, privacy, render, sign};
use crate::catalog::ReportRecord;
use crate::job::{Context, JobError};
use crate::model::time;

/// The report as rendered and as serialized into `evidence.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub format: &'static str,
    pub id: String,
    pub framework: String,
    pub period: PeriodView,
    pub generated_at: String,
    pub generator: String,
    pub host: String,
    pub scope: Scope,
    pub config: ConfigView,
    pub policy: BTreeMap<&'static str, f64>,
    pub signer: Signer,
    pub previous: Option<Previous>,
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
    pub open: bool,
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
pub struct Signer {
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

/// A generated, signed report.
#[derive(Clone, Debug, Serialize)]
pub struct Generated {
    pub id: String,
    pub period: String,
    pub dir: PathBuf,
    pub html: PathBuf,
    pub evidence: PathBuf,
    /// The file the signature covers.
    pub signed: PathBuf,
    pub signature: PathBuf,
    pub public_key: PathBuf,
    pub key_id: String,
    pub manifest_sha256: String,
    pub overall: Verdict,
    pub verdicts: BTreeMap<String, Verdict>,
    #[serde(skip)]
    pub report: Box<Report>,
    #[serde(skip)]
    pub charts: Charts,
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

/// Re-verifies earlier reports and checks that reports cover every period since the catalog's
/// first record: the RECORDS rule's problems.
fn records_problems(
    ev: &Evidence,
    pk: &minisign::PublicKey,
    kind: crate::config::ReportPeriod,
) -> Vec<String> {
    let mut problems = Vec::new();
    for r in &ev.reports {
        let v = bundle::verify_bundle(Path::new(&r.dir), Some(pk));
        if let Err(e) = &v.signature {
            problems.push(format!("report {} ({}): {e}", r.period, r.dir));
        } else if v.manifest_sha256.as_deref() != Some(r.manifest_sha256.as_str()) {
            problems.push(format!(
                "report {} ({}): its manifest is not the one recorded when it was signed",
                r.period, r.dir
            ));
        }
        for f in v.files.iter().filter(|f| !f.ok) {
            problems.push(format!(
                "report {}: {} {}",
                r.period,
                f.name,
                f.problem.as_deref().unwrap_or("is bad")
            ));
        }
    }
    // The chain, over the latest report of each period (a regenerated report supersedes the
    // earlier version of its period, which stays verifiable but out of the chain).
    let mut chain: Vec<&ReportRecord> = Vec::new();
    for r in &ev.reports {
        match chain.last() {
            Some(last) if last.period == r.period => {
                chain.pop();
                chain.push(r);
            }
            _ => chain.push(r),
        }
    }
    for (i, r) in chain.iter().enumerate() {
        let expected = i.checked_sub(1).map(|j| chain[j].id.as_str());
        if expected.is_some() && r.previous_id.as_deref() != expected {
            problems.push(format!(
                "report {} does not embed the hash of the report before it ({})",
                r.period,
                chain[i - 1].period
            ));
        }
    }
    // Coverage: every period from the first activity up to this one has a report.
    if let Some(first) = ev.first_activity.as_deref().and_then(super::measure::ts)
        && let Ok(mut p) = Period::containing(kind, first)
    {
        for _ in 0..1000 {
            if p.from >= ev.period.from {
                break;
            }
            let covered = ev.reports.iter().any(|r| {
                r.period_from.as_str() <= time::format(p.from).as_str()
                    && r.period_to.as_str() >= time::format(p.to.min(ev.period.from)).as_str()
            });
            if !covered {
                problems.push(format!(
                    "no report covers {} although Custodian was keeping evidence then",
                    p.label
                ));
            }
            match Period::containing(kind, p.to) {
                Ok(next) => p = next,
                Err(_) => break,
            }
        }
    }
    problems
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
            verdict: d.verdict.clone(),
            badge: match d.verdict.as_str() {
                "passed" => "pass",
                "failed" => "fail",
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
                .as_deref()
                .and_then(|p| serde_json::from_str::<Vec<serde_json::Value>>(p).ok())
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
    cfg: &crate::config::Config,
    prev: Option<&ReportRecord>,
) -> Summary {
    let backups: Vec<_> = ev
        .runs
        .iter()
        .filter(|r| r.kind == "backup" && r.outcome != "running" && r.outcome != "skipped")
        .collect();
    let ok = backups.iter().filter(|r| r.outcome == "succeeded").count();
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
        latest_rto: value("drill.worst_rto_hours").map_or("-".into(), duration_text),
        rto_target: duration_text(cfg.reports.targets.rto.as_secs_f64() / 3600.0),
        immutability,
        open_exceptions,
        changes,
    }
}

/// Where reports go: `--out`, else `[reports] out-dir`, else `STATE/reports`.
#[must_use]
pub fn out_dir(ctx: &Context, out: Option<&Path>) -> PathBuf {
    out.map(Path::to_path_buf)
        .or_else(|| ctx.config.reports.out_dir.clone())
        .unwrap_or_else(|| ctx.config.state_dir.join("reports"))
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

/// Generates, signs, writes and records the report for `period`.
///
/// # Errors
/// When the signing key is missing, evidence cannot be read, or the bundle cannot be written.
pub async fn generate(
    ctx: &Context,
    period: &Period,
    out: &Path,
    run_id: Option<&str>,
    now: Timestamp,
) -> Result<Generated, JobError> {
    let cfg = &ctx.config;
    let (sk_path, pk_path) = key_paths(cfg);
    let sign_err = |e: sign::SignError| JobError::Usage(e.to_string());
    let sk =
        sign::read_secret(&sk_path, cfg.reports.secret_key_password.as_ref()).map_err(sign_err)?;
    let pk = minisign::PublicKey::from_secret_key(&sk)
        .map_err(|e| JobError::Internal(format!("deriving the public key: {e}")))?;
    if let Ok(configured) = sign::read_public(&pk_path)
        && sign::key_id(&configured) != sign::key_id(&pk)
    {
        return Err(JobError::Usage(format!(
            "the public key {} (key id {}) does not belong to the secret key {} (key id {}); regenerate the pair with `custodian keys generate --force`",
            pk_path.display(),
            sign::key_id(&configured),
            sk_path.display(),
            sign::key_id(&pk)
        )));
    }
    let catalog = rules::load(rules::RULES_TOML, super::measure::METRICS)
        .map_err(|e| JobError::Internal(e.to_string()))?;
    let params = rules::parameters(cfg);
    let mut ev = evidence::gather(ctx, period, now).await?;
    evidence::secret_file(
        "reports.secret-key-file".into(),
        &crate::secret::SecretRef::File(sk_path.clone()),
        &mut ev.secret_files,
    );
    let problems = records_problems(&ev, &pk, cfg.reports.period);
    let previous_record = ev.reports.last().cloned();
    let inputs = Inputs {
        config: cfg,
        records_problems: Some(problems),
    };
    let charts = Charts {
        rpo: charts::rpo_timeline(&ev, cfg)
            .map_err(|e| JobError::Internal(format!("drawing the RPO chart: {e}")))?,
        rto: charts::rto_trend(&ev, cfg)
            .map_err(|e| JobError::Internal(format!("drawing the RTO chart: {e}")))?,
    };
    let calendar = charts::calendar(&ev);
    let id = format!(
        "{}-{}",
        period.label.replace("..", "_"),
        &bundle::sha256_hex(
            format!("{}{}{}", time::format(now), cfg.sha256, std::process::id()).as_bytes()
        )[..8]
    );
    let dir = bundle::fresh_dir(out, &period.label);
    let previous = previous_record.as_ref().map(|p| Previous {
        id: p.id.clone(),
        period: p.period.clone(),
        manifest_sha256: p.manifest_sha256.clone(),
        dir: p.dir.clone(),
        dir_name: Path::new(&p.dir)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    });
    let old_verdicts: BTreeMap<String, String> = previous_record
        .as_ref()
        .and_then(|p| serde_json::from_str(&p.verdicts).ok())
        .unwrap_or_default();
    let staff = super::staff_addresses(cfg);

    // Evaluate, render, scan; then evaluate PRIVACY-OF-REPORT from the scan and render again.
    let mut overrides: BTreeMap<String, Measure> = BTreeMap::new();
    let mut rendered = None;
    for pass in 0..2 {
        let mut results: Vec<RuleResult> = catalog
            .rules
            .iter()
            .map(|rule| evaluate_rule(rule, &ev, &inputs, &params, &overrides))
            .collect();
        for r in &mut results {
            r.previous = old_verdicts.get(&r.id).cloned();
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
            framework: catalog.framework.clone(),
            period: PeriodView {
                label: period.label.clone(),
                from: time::format(period.from),
                to: time::format(period.to),
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
            signer: Signer {
                key_id: sign::key_id(&pk),
                public_key: sign::public_base64(&pk).map_err(sign_err)?,
            },
            previous: previous.clone(),
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
        let html = render::report(&report, &charts, &calendar).map_err(JobError::Internal)?;
        let json = serde_json::to_vec_pretty(&report)
            .map_err(|e| JobError::Internal(format!("serializing the evidence: {e}")))?;
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
        } else {
            rendered = Some((report, html, json));
        }
    }
    let Some((report, html, json)) = rendered else {
        return Err(JobError::Internal("the report was not rendered".into()));
    };
    let mut files: Vec<(&str, Vec<u8>)> =
        vec![("report.html", html.into_bytes()), ("evidence.json", json)];
    if let Some(svg) = &charts.rpo {
        files.push(("rpo.svg", svg.clone().into_bytes()));
    }
    if let Some(svg) = &charts.rto {
        files.push(("rto.svg", svg.clone().into_bytes()));
    }
    files.push((
        bundle::PUBLIC_KEY,
        pk.to_box()
            .map_err(|e| JobError::Internal(e.to_string()))?
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
    let manifest_sha256 = bundle::write(&dir, &files, &pk, &sk, &comment)
        .map_err(|e| JobError::io("writing the report", &e))?;
    let verdicts: BTreeMap<String, Verdict> = report
        .rules
        .iter()
        .map(|r| (r.id.clone(), r.verdict))
        .collect();
    ctx.catalog
        .record_report(&ReportRecord {
            id: id.clone(),
            run_id: run_id.map(str::to_string),
            period: period.label.clone(),
            period_from: time::format(period.from),
            period_to: time::format(period.to),
            generated_at: time::format(now),
            dir: dir.display().to_string(),
            manifest_sha256: manifest_sha256.clone(),
            key_id: sign::key_id(&pk),
            previous_id: previous.as_ref().map(|p| p.id.clone()),
            overall: report.overall.as_str().to_string(),
            verdicts: serde_json::to_string(
                &verdicts
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str()))
                    .collect::<BTreeMap<_, _>>(),
            )
            .unwrap_or_default(),
        })
        .await?;
    Ok(Generated {
        id,
        period: period.label.clone(),
        html: dir.join("report.html"),
        evidence: dir.join("evidence.json"),
        signed: dir.join(bundle::MANIFEST),
        signature: dir.join(bundle::SIGNATURE),
        public_key: dir.join(bundle::PUBLIC_KEY),
        dir,
        key_id: sign::key_id(&pk),
        manifest_sha256,
        overall: report.overall,
        verdicts,
        report: Box::new(report),
        charts,
    })
}
