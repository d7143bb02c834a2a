//! Who can do what, and who would know: keys, four-eyes access, the audit chain, alerting.

use super::*;
use crate::model::count;

pub(super) fn crypto(ev: &Evidence) -> Measure {
    let mut m = Measure::default();
    let mut worst: Option<f64> = None;
    for l in &ev.locations {
        if let Err(e) = &l.opened {
            m.findings.push(format!(
                "{}: could not be opened at report time: {e}",
                l.name
            ));
            continue;
        }
        if !l.tls {
            m.fail.push(format!(
                "{}: the S3 endpoint is not TLS ({})",
                l.name, l.repository
            ));
        }
        match &l.keys {
            Ok(keys) => {
                for k in keys {
                    if !k.used_by_custodian {
                        m.fail.push(format!(
                            "{}: unknown key file {} (created {} by {}@{})",
                            l.name,
                            &k.id[..k.id.len().min(8)],
                            k.created.as_deref().unwrap_or("?"),
                            k.username.as_deref().unwrap_or("?"),
                            k.hostname.as_deref().unwrap_or("?"),
                        ));
                    } else if let Some(created) = k.created.as_deref().and_then(|c| {
                        c.parse::<jiff::Zoned>()
                            .ok()
                            .map(|z| z.timestamp())
                            .or_else(|| ts(c))
                    }) {
                        // A key file written by a host whose clock runs ahead is not negative
                        // days old.
                        let age = (hours(created, ev.now) / 24.0).max(0.0);
                        worst = Some(worst.map_or(age, |w: f64| w.max(age)));
                        m.findings.push(format!(
                            "{}: encrypted (AES-256 + Poly1305), key {} is {age:.0} days old",
                            l.name,
                            &k.id[..k.id.len().min(8)]
                        ));
                    }
                }
            }
            Err(e) => m
                .findings
                .push(format!("{}: key files unreadable: {e}", l.name)),
        }
    }
    if !ev.signing_key_encrypted {
        m.warn.push(
            "the key that signs these reports is stored unencrypted: set [reports] secret-key-password-file (or -env, -credential) and regenerate it".into(),
        );
    }
    for f in &ev.secret_files {
        if f.readable_by_others {
            m.fail.push(format!(
                "{} ({}) is readable by group or others (mode {})",
                f.setting,
                f.path,
                f.mode.as_deref().unwrap_or("?")
            ));
        }
    }
    match worst {
        Some(w) => {
            m.value = Some(round1(w));
            m
        }
        None => Measure {
            not_evaluated: Some("no repository key could be read at report time".into()),
            ..m
        },
    }
}

/// Every dangerous operation of the period (recorded with the grant that let it through) must
/// have carried its doer's second factor and a second administrator's approval — approver's
/// second factor included. A break-glass use is listed loudly (a warning, a failure when it
/// carried no second factor); an operation recorded without a grant (before access control,
/// or around it) is a failure.
pub(super) fn access(ev: &Evidence) -> Measure {
    use serde_json::Value;
    let Ok(v) = &ev.audit_verification else {
        return Measure::none("the audit log could not be read");
    };
    if v.entries == 0 {
        return Measure::none("the audit log is empty");
    }
    let mut m = Measure::default();
    let (mut dangerous, mut bad, mut scratch, mut glass) = (0usize, 0usize, 0usize, 0usize);
    let mut glass_ops = 0usize;
    let mut seen = BTreeSet::new();
    let flag = |v: &Value, k: &str| v.get(k).and_then(Value::as_bool);
    for e in &ev.audit {
        let at = format!("{} by {} at {}", e.action, e.actor, e.time);
        if e.action == "break-glass" {
            glass += 1;
            let reason = e.params["reason"].as_str().unwrap_or("?");
            let what = e.detail.as_deref().unwrap_or("?");
            let line = format!(
                "BREAK-GLASS by {} at {}: {what} without a second administrator — reason given: {reason}",
                e.actor, e.time
            );
            if flag(&e.params, "second_factor") == Some(true) {
                m.warn.push(line);
            } else {
                m.fail.push(format!("{line} (and without a second factor)"));
            }
            m.evidence.push(format!("audit#{}", e.seq));
            continue;
        }
        let ran = !matches!(
            e.outcome.as_str(),
            "refused" | "requested" | "approval-requested"
        );
        if e.action == "restore" && ran && flag(&e.params, "scratch") == Some(true) {
            // Into scratch, a restore overwrites and exposes nothing.
            scratch += 1;
            continue;
        }
        let grant = e.params.get("access").filter(|g| g.is_object());
        let Some(grant) = grant else {
            if ran && matches!(e.action.as_str(), "restore" | "keys.replace") {
                dangerous += 1;
                bad += 1;
                m.fail.push(format!(
                    "{at} ({}) without a second administrator's approval or a second factor on record",
                    e.trigger
                ));
                m.evidence.push(format!("audit#{}", e.seq));
            }
            continue;
        };
        // One operation writes several entries; its grant id counts it once.
        let id = grant["id"].as_str().unwrap_or_default().to_string();
        if !ran || !seen.insert(id) {
            continue;
        }
        dangerous += 1;
        let mut problems = Vec::new();
        if flag(grant, "second_factor") != Some(true) {
            problems.push("without a second factor".to_string());
        }
        let four_eyes = flag(grant, "four_eyes") != Some(false);
        match (grant["approval"].as_str(), grant["break_glass"].as_str()) {
            _ if !four_eyes => {}
            (Some(id), _) => {
                if flag(grant, "approver_second_factor") == Some(false) {
                    problems.push(format!(
                        "approved ({id}) by {} without a second factor",
                        grant["approved_by"].as_str().unwrap_or("?")
                    ));
                }
            }
            (None, Some(_)) => {}
            (None, None) => problems.push("without a second administrator's approval".into()),
        }
        if problems.is_empty() && grant["break_glass"].is_string() {
            glass_ops += 1;
        }
        if !problems.is_empty() {
            bad += 1;
            m.fail
                .push(format!("{at} ({}) {}", e.trigger, problems.join(" and ")));
            m.evidence.push(format!("audit#{}", e.seq));
        }
    }
    let approvals = ev
        .approvals
        .iter()
        .filter(|a| a.approved_by.is_some())
        .count();
    m.findings.push(format!(
        "{}; {} with a second factor and, where four eyes apply, an approval; {} granted; {}; {} into scratch",
        count(dangerous, "dangerous operation"),
        dangerous.saturating_sub(bad + glass_ops),
        count(approvals, "approval"),
        count(glass, "break-glass use"),
        count(scratch, "restore")
    ));
    m.value = Some(bad as f64);
    m
}

pub(super) fn audit(ev: &Evidence) -> Measure {
    let v = match &ev.audit_verification {
        Ok(v) => v,
        Err(e) => return Measure::none(format!("the audit log could not be read: {e}")),
    };
    if v.entries == 0 {
        return Measure::none("the audit log is empty");
    }
    let mut m = Measure::default();
    let mut broken = 0usize;
    if let Some(bad) = &v.first_bad {
        broken += 1;
        m.fail
            .push(format!("chain broken at line {}: {}", bad.line, bad.reason));
    }
    let mut prev: Option<u64> = None;
    for e in &ev.audit {
        if let Some(p) = prev
            && e.seq != p + 1
        {
            broken += 1;
            m.fail
                .push(format!("sequence gap: {p} is followed by {}", e.seq));
        }
        prev = Some(e.seq);
        let missing: Vec<&str> = [
            ("actor", e.actor.is_empty()),
            ("trigger", e.trigger.is_empty()),
            ("action", e.action.is_empty()),
            ("outcome", e.outcome.is_empty()),
            ("time", ts(&e.time).is_none()),
        ]
        .into_iter()
        .filter_map(|(k, bad)| bad.then_some(k))
        .collect();
        if !missing.is_empty() {
            broken += 1;
            m.fail
                .push(format!("entry {} lacks {}", e.seq, missing.join(", ")));
        }
    }
    m.findings.push(format!(
        "{} entries in the log, {} in the period; chain {}; head {}",
        v.entries,
        ev.audit.len(),
        if v.ok { "intact" } else { "BROKEN" },
        v.head_hash
            .as_deref()
            .map_or("-", |h| &h[..h.len().min(16)])
    ));
    m.value = Some(broken as f64);
    m
}

pub(super) fn monitoring(ev: &Evidence, cfg: &Config) -> Measure {
    let scheduled: Vec<_> = ev
        .runs
        .iter()
        .filter(|r| r.trigger == Trigger::Schedule)
        .collect();
    if scheduled.is_empty() {
        return Measure::none("no scheduled jobs ran in the period");
    }
    let latency = cfg.reports.targets.alert_latency.as_secs_f64() / 3600.0;
    let mut m = Measure::default();
    let failures: Vec<_> = scheduled
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed | Outcome::Missed))
        .collect();
    let mut silent = 0usize;
    for run in &failures {
        let job = run
            .details
            .as_ref()
            .and_then(|d| d.get("job").and_then(|j| j.as_str()).map(str::to_string));
        let Some(end) = run.finished_at.as_deref().and_then(ts) else {
            continue;
        };
        let alerted = ev.alerts.iter().any(|a| {
            a.delivered
                && a.status != "succeeded"
                && job.as_deref().is_none_or(|j| j == a.job)
                && ts(&a.sent_at).is_some_and(|t| {
                    let h = hours(end, t);
                    // A missed run is alerted when the daemon is back; it cannot be earlier.
                    h >= -1.0 / 60.0 && (run.outcome == Outcome::Missed || h <= latency)
                })
        });
        if !alerted {
            silent += 1;
            m.fail.push(format!(
                "{} {} at {} ({}) produced no delivered alert within {:.0} min",
                run.kind,
                run.source.as_deref().or(job.as_deref()).unwrap_or(""),
                run.started_at,
                run.outcome,
                latency * 60.0
            ));
            m.evidence.push(run.id.clone());
        }
    }
    let channels = [
        cfg.notifications.webhook.as_ref().map(|_| "webhook"),
        (cfg.notifications.smtp.is_some() && !cfg.notifications.alert_to.is_empty())
            .then_some("e-mail"),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    m.findings.push(format!(
        "{}, {silent} without an alert; alert channels: {}",
        count(failures.len(), "failed or missed scheduled run"),
        if channels.is_empty() {
            "none configured".to_string()
        } else {
            channels.join(", ")
        }
    ));
    m.value = Some(silent as f64);
    m
}
