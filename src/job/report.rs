//! `custodian report`: generate the signed compliance report for a period, verify it, and
//! e-mail it to `[notifications] report-to`. The scheduled `report` job covers the last
//! complete period once: it generates the report if there is none yet and (re)delivers it until
//! a delivery succeeds, so a relay outage is retried at the next fire, never dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Serialize;

use super::{Context, JobError};
use crate::audit::NewEntry;
use crate::catalog::{DeliveryRecord, ReportRecord, RunEnd, RunKind};
use crate::model::time;
use crate::notify::mail;
use crate::report::evidence::Evidence;
use crate::report::render::Charts;
use crate::report::rules::Verdict;
use crate::report::{self, Period, Report, Verification, bundle, sign};

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

/// Generates, signs, writes and records the report for `period`: gathers the evidence, has
/// the report layer evaluate and sign it, writes the bundle (complete or absent) and records
/// it in the chain.
///
/// # Errors
/// When the signing key is missing or does not match its public key, the evidence cannot be
/// read, or the bundle cannot be written.
pub async fn generate(
    ctx: &Context,
    period: &Period,
    out: &Path,
    run_id: Option<&str>,
    now: Timestamp,
) -> Result<Generated, JobError> {
    let cfg = &ctx.config;
    let (sk_path, pk_path) = report::generate::key_paths(cfg);
    let sign_err = |e: sign::SignError| JobError::Usage(e.to_string());
    let secret =
        sign::read_secret(&sk_path, cfg.reports.secret_key_password.as_ref()).map_err(sign_err)?;
    let public = minisign::PublicKey::from_secret_key(&secret)
        .map_err(|e| JobError::Internal(format!("deriving the public key: {e}")))?;
    if let Ok(configured) = sign::read_public(&pk_path)
        && sign::key_id(&configured) != sign::key_id(&public)
    {
        return Err(JobError::Usage(format!(
            "the public key {} (key id {}) does not belong to the secret key {} (key id {}); regenerate the pair with `custodian keys generate --force`",
            pk_path.display(),
            sign::key_id(&configured),
            sk_path.display(),
            sign::key_id(&public)
        )));
    }
    let mut ev: Evidence = super::evidence::gather(ctx, period, now).await?;
    super::evidence::secret_file(
        "reports.secret-key-file".into(),
        &crate::secret::SecretRef::File(sk_path.clone()),
        &mut ev.secret_files,
    );
    let records_problems = records_problems(&ev, &public, cfg.reports.period);
    let request = report::Request {
        config: cfg,
        period,
        now,
        records_problems,
    };
    let signer = report::Signer { secret, public };
    let bundle = report::generate(ev, &request, &signer).map_err(JobError::Report)?;
    let dir = bundle::fresh_dir(out, &period.label);
    bundle::write_dir(&dir, &bundle.files)?;
    ctx.catalog
        .record_report(&ReportRecord {
            id: bundle.id.clone(),
            run_id: run_id.map(str::to_string),
            period: period.label.clone(),
            period_from: time::format(period.from),
            period_to: time::format(period.to),
            generated_at: time::format(now),
            dir: dir.display().to_string(),
            manifest_sha256: bundle.manifest_sha256.clone(),
            key_id: bundle.key_id.clone(),
            previous_id: bundle.previous_id.clone(),
            overall: bundle.overall.as_str().to_string(),
            verdicts: serde_json::to_string(
                &bundle
                    .verdicts
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str()))
                    .collect::<BTreeMap<_, _>>(),
            )
            .unwrap_or_default(),
            metrics: serde_json::to_string(&bundle.metrics).unwrap_or_default(),
        })
        .await?;
    Ok(Generated {
        id: bundle.id,
        period: period.label.clone(),
        html: dir.join("report.html"),
        evidence: dir.join("evidence.json"),
        signed: dir.join(bundle::MANIFEST),
        signature: dir.join(bundle::SIGNATURE),
        public_key: dir.join(bundle::PUBLIC_KEY),
        dir,
        key_id: bundle.key_id,
        manifest_sha256: bundle.manifest_sha256,
        overall: bundle.overall,
        verdicts: bundle.verdicts,
        report: bundle.report,
        charts: bundle.charts,
    })
}

/// Re-verifies every earlier report, checks the chain link by link, and checks that reports
/// cover every period since the catalog's first record: the RECORDS rule's problems.
pub(crate) fn records_problems(
    ev: &Evidence,
    pk: &minisign::PublicKey,
    kind: crate::config::ReportPeriod,
) -> Vec<String> {
    let mut problems = Vec::new();
    for r in &ev.reports {
        let v = bundle::verify_bundle(Path::new(&r.dir), Some(pk));
        if !v.signature.ok {
            problems.push(format!(
                "report {} ({}): {}",
                r.period, r.dir, v.signature.detail
            ));
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
    // One chain, in the order reports were generated: each names the one generated before it
    // (regenerations and previews of a running period included), so no report can be
    // regenerated, or dropped, without it showing.
    for pair in ev.reports.windows(2) {
        let (before, r) = (&pair[0], &pair[1]);
        if r.previous_id.as_deref() != Some(before.id.as_str()) {
            problems.push(format!(
                "report {} ({}) does not chain to the report generated before it ({} {}): a link is missing or was replaced",
                r.id, r.period, before.id, before.period
            ));
        }
    }
    if let Some(first) = ev.reports.first()
        && let Some(prev) = &first.previous_id
    {
        problems.push(format!(
            "the oldest recorded report {} chains to {prev}, which the catalog does not hold",
            first.id
        ));
    }
    // Coverage: every period from the first activity up to this one has a report.
    if let Some(first) = ev.first_activity.as_deref().and_then(report::measure::ts)
        && let Ok(mut p) = Period::containing(kind, first, &ev.period.tz)
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
            match Period::containing(kind, p.to, &ev.period.tz) {
                Ok(next) => p = next,
                Err(_) => break,
            }
        }
    }
    problems
}

/// What to report on.
#[derive(Clone, Debug, Default)]
pub struct ReportRequest {
    /// `None`: the last complete period of `[reports] period`.
    pub period: Option<Period>,
    pub out: Option<PathBuf>,
    /// E-mail it when `[notifications]` has an SMTP relay and report recipients.
    pub send: bool,
}

/// The outcome of one e-mail delivery.
#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    pub delivered: bool,
    pub attempts: u32,
    pub message_id: String,
    pub recipients: Vec<String>,
    pub error: Option<String>,
}

/// What `custodian report` did.
#[derive(Clone, Debug, Serialize)]
pub struct ReportOutcome {
    pub run_id: String,
    pub report: Generated,
    pub verification: Verification,
    pub delivery: Option<Delivery>,
}

/// Generates (and e-mails) a report.
///
/// # Errors
/// When the key is missing, evidence cannot be read, the bundle cannot be written, or the
/// e-mail was not delivered after every retry (the report itself is kept).
pub async fn report(ctx: &Context, req: &ReportRequest) -> Result<ReportOutcome, JobError> {
    let now = crate::model::time::now();
    let period = match &req.period {
        Some(p) => p.clone(),
        None => Period::last_complete(
            ctx.config.reports.period,
            now,
            &ctx.config.reports.time_zone,
        )
        .map_err(|e| JobError::Usage(e.to_string()))?,
    };
    if period.from > now {
        return Err(JobError::Usage(format!(
            "period {} has not started yet; report on a past period or on the current one (--current)",
            period.label
        )));
    }
    let run_id = ctx
        .start(RunKind::Report, None, None, Some(&period.label))
        .await?;
    let result = async {
        let out = report::generate::out_dir(&ctx.config, req.out.as_deref());
        let generated = generate(ctx, &period, &out, Some(&run_id), now).await?;
        let pk = sign::read_public(&generated.public_key)
            .map_err(|e| JobError::Internal(format!("reading back the report's key: {e}")))?;
        let verification = report::verify_bundle(&generated.dir, Some(&pk));
        // A chain already broken before this report is what its RECORDS rule fails on, not a
        // reason to withhold it; the bundle itself must verify.
        if !verification.signature.ok || verification.files.iter().any(|f| !f.ok) {
            return Err(JobError::Internal(format!(
                "the report just written at {} does not verify: {:?}",
                generated.dir.display(),
                verification
            )));
        }
        let delivery = if req.send && wants_mail(ctx) {
            Some(deliver(ctx, &generated.id, &generated.dir).await?)
        } else {
            None
        };
        Ok(ReportOutcome {
            run_id: run_id.clone(),
            report: generated,
            verification,
            delivery,
        })
    }
    .await;
    let undelivered = match &result {
        Ok(o) => o.delivery.as_ref().filter(|d| !d.delivered).cloned(),
        Err(_) => None,
    };
    let result = match (result, undelivered) {
        (Ok(o), Some(d)) => Err(JobError::Io {
            what: format!(
                "report {} was written to {} but not e-mailed after {}",
                o.report.id,
                o.report.dir.display(),
                crate::model::count(d.attempts as usize, "attempt")
            ),
            message: d.error.unwrap_or_default(),
        }),
        (r, _) => r,
    };
    ctx.finish(&run_id, &result, RunEnd::default()).await;
    result
}

fn wants_mail(ctx: &Context) -> bool {
    ctx.config.notifications.smtp.is_some() && !ctx.config.notifications.report_to.is_empty()
}

/// The scheduled job: the last complete period's report, generated once and delivered until
/// a delivery succeeds.
///
/// # Errors
/// As [`report`] and [`deliver`].
pub async fn scheduled(ctx: &Context) -> Result<(), JobError> {
    let now = crate::model::time::now();
    let period = Period::last_complete(
        ctx.config.reports.period,
        now,
        &ctx.config.reports.time_zone,
    )
    .map_err(|e| JobError::Usage(e.to_string()))?;
    let existing = ctx
        .catalog
        .reports()
        .await?
        .into_iter()
        .rfind(|r| r.period == period.label);
    match existing {
        None => report(
            ctx,
            &ReportRequest {
                period: Some(period),
                out: None,
                send: true,
            },
        )
        .await
        .map(|_| ()),
        Some(r) if wants_mail(ctx) && !delivered(ctx, &r).await? => {
            let d = deliver(ctx, &r.id, Path::new(&r.dir)).await?;
            if d.delivered {
                Ok(())
            } else {
                Err(JobError::Io {
                    what: format!("report {} is still not e-mailed", r.id),
                    message: d.error.unwrap_or_default(),
                })
            }
        }
        Some(_) => Ok(()),
    }
}

async fn delivered(ctx: &Context, r: &ReportRecord) -> Result<bool, JobError> {
    Ok(ctx
        .catalog
        .deliveries("", "", Some(&r.id))
        .await?
        .iter()
        .any(|d| d.delivered))
}

fn content_type(name: &str) -> &'static str {
    match Path::new(name).extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "text/plain; charset=utf-8",
    }
}

/// E-mails a report bundle (read from its directory) to `[notifications] report-to`,
/// recording every attempt.
///
/// # Errors
/// When the bundle cannot be read or the catalog cannot be written; an undelivered message is
/// an outcome, not an error.
pub async fn deliver(ctx: &Context, report_id: &str, dir: &Path) -> Result<Delivery, JobError> {
    let Some(smtp) = ctx.config.notifications.smtp.clone() else {
        return Err(JobError::Usage(
            "no SMTP relay is configured ([notifications.smtp])".into(),
        ));
    };
    let recipients = ctx.config.notifications.report_to.clone();
    let read = |name: &str| {
        std::fs::read(dir.join(name))
            .map_err(|e| JobError::io(format!("reading {}", dir.join(name).display()), &e))
    };
    let r: serde_json::Value = serde_json::from_slice(&read("evidence.json")?)
        .map_err(|e| JobError::io("reading the report's evidence.json", &e))?;
    let manifest = String::from_utf8_lossy(&read(bundle::MANIFEST)?).into_owned();
    let files: Vec<String> = manifest
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(_, n)| n.to_string()))
        .chain([bundle::MANIFEST.to_string(), bundle::SIGNATURE.to_string()])
        .collect();
    let has = |n: &str| files.iter().any(|f| f == n);
    let html = report::render::mail(
        &r,
        has("rpo.png"),
        has("rto.png"),
        &ctx.config.reports.time_zone,
    )
    .map_err(JobError::Internal)?;
    // Charts inline as PNG (the common webmail and desktop clients show no SVG); every other
    // file of the bundle attached, so what the recipient saves verifies as it is.
    let mut inline = Vec::new();
    for (file, cid) in [("rpo.png", "rpo-chart"), ("rto.png", "rto-chart")] {
        if has(file) {
            inline.push((
                cid.to_string(),
                file.to_string(),
                "image/png".to_string(),
                read(file)?,
            ));
        }
    }
    let mut attachments = Vec::new();
    for name in files.iter().filter(|n| !n.ends_with(".png")) {
        attachments.push((name.clone(), content_type(name).to_string(), read(name)?));
    }
    let period = r["period"]["label"].as_str().unwrap_or("?");
    let overall = r["overall_label"].as_str().unwrap_or("?");
    let attention: String = r["executive"]["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|x| {
                    format!(
                        "- {} ({}): {}. {}\n  Action: {} ({})\n",
                        x["rule"].as_str().unwrap_or("?"),
                        x["verdict_label"].as_str().unwrap_or("?"),
                        x["problem"].as_str().unwrap_or(""),
                        x["reason"].as_str().unwrap_or(""),
                        x["action"].as_str().unwrap_or(""),
                        x["owner"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let scorecard: String = r["rules"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .map(|x| {
                    format!(
                        "{:<18} {:<14} {}\n",
                        x["id"].as_str().unwrap_or("?"),
                        x["verdict_label"].as_str().unwrap_or("?"),
                        x["reason"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let text = format!(
        "Custodian compliance report {period} ({}) for {}\n{}\n\n{}{}\nScorecard:\n{scorecard}\nThe full report is attached (report.html), with its evidence (evidence.json), the signed manifest (SHA256SUMS, SHA256SUMS.minisig) and the signer's public key.\nVerify with the public key you received independently (key id {}):\n  minisign -Vm SHA256SUMS -P {} && sha256sum -c SHA256SUMS\n",
        r["period"]["display"].as_str().unwrap_or("?"),
        r["host"].as_str().unwrap_or("?"),
        r["executive"]["headline"].as_str().unwrap_or("?"),
        if attention.is_empty() {
            ""
        } else {
            "What needs attention:\n"
        },
        attention,
        r["signer"]["key_id"].as_str().unwrap_or("?"),
        r["signer"]["public_key"].as_str().unwrap_or("?"),
    );
    let outgoing = mail::Outgoing {
        to: recipients.clone(),
        subject: format!(
            "[Custodian] Compliance report {period}: {overall} ({})",
            ctx.config.hostname
        ),
        html,
        text,
        inline,
        attachments,
    };
    let message_id = mail::message_id(&smtp, report_id);
    let attempts = mail::send(&smtp, &outgoing, &message_id).await;
    for a in &attempts {
        ctx.catalog
            .record_delivery(&DeliveryRecord {
                report_id: report_id.to_string(),
                attempt: a.number,
                delivered: a.result.is_ok(),
                message_id: Some(message_id.clone()),
                recipients: recipients.clone(),
                error: a.result.as_ref().err().cloned(),
            })
            .await?;
    }
    let last = attempts.last();
    let delivered = last.is_some_and(|a| a.result.is_ok());
    let error = last.and_then(|a| a.result.as_ref().err().cloned());
    ctx.audit_action(NewEntry {
        actor: ctx.actor.clone(),
        uid: ctx.uid,
        role: ctx.role.clone(),
        trigger: ctx.trigger.as_str().to_string(),
        action: "report.deliver".into(),
        target: Some(report_id.to_string()),
        params: serde_json::json!({ "message_id": message_id, "recipients": recipients.len(), "attempts": attempts.len() }),
        outcome: if delivered { "succeeded" } else { "failed" }.into(),
        detail: error.clone(),
    });
    Ok(Delivery {
        delivered,
        attempts: u32::try_from(attempts.len()).unwrap_or(u32::MAX),
        message_id,
        recipients,
        error,
    })
}

/// A generated signing key.
#[derive(Clone, Debug, Serialize)]
pub struct KeyOutcome {
    pub key_id: String,
    pub secret_key: PathBuf,
    pub public_key: PathBuf,
    /// The one-line form for `minisign -P`.
    pub public_key_base64: String,
    pub password_protected: bool,
    pub replaced: bool,
}

/// `custodian keys generate`: creates the report signing key pair. Replacing an existing key
/// is a privileged change and is audited as `keys.replace`.
///
/// # Errors
/// When a key exists and `force` is not given, or the files cannot be written.
pub async fn generate_keys(ctx: &Context, force: bool) -> Result<KeyOutcome, JobError> {
    let (sk_path, pk_path) = report::generate::key_paths(&ctx.config);
    let replaced = sk_path.exists();
    let password = match &ctx.config.reports.secret_key_password {
        Some(r) => Some(
            r.resolve()
                .map_err(|e| JobError::io("reading reports.secret-key-password", &e))?,
        ),
        None => None,
    };
    let result =
        sign::generate(&sk_path, &pk_path, password.as_ref(), force).map_err(|e| match e {
            sign::SignError::Exists { .. } => JobError::Usage(e.to_string()),
            other => JobError::io("creating the report signing key", &other),
        });
    let action = if replaced {
        "keys.replace"
    } else {
        "keys.generate"
    };
    ctx.audit_action(NewEntry {
        actor: ctx.actor.clone(),
        uid: ctx.uid,
        role: ctx.role.clone(),
        trigger: ctx.trigger.as_str().to_string(),
        action: action.into(),
        target: Some(sk_path.display().to_string()),
        params: serde_json::json!({
            "key_id": result.as_ref().ok().map(sign::key_id),
            "force": force,
        }),
        outcome: if result.is_ok() {
            "succeeded"
        } else {
            "failed"
        }
        .into(),
        detail: result.as_ref().err().map(ToString::to_string),
    });
    let pk = result?;
    Ok(KeyOutcome {
        key_id: sign::key_id(&pk),
        public_key_base64: sign::public_base64(&pk)
            .map_err(|e| JobError::Internal(e.to_string()))?,
        secret_key: sk_path,
        public_key: pk_path,
        password_protected: password.is_some(),
        replaced,
    })
}
