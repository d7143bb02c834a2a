//! Alerts: for scheduled jobs, and for a break-glass use. Every failed or missed job is an error
//! in the journal and a count
//! in `custodian_runs_total`; with `[notifications] webhook = URL`, the daemon also POSTs a JSON
//! summary of every finished job — to `URL` on success and to `URL/fail` on failure (the
//! convention of healthchecks.io and similar dead-man's-switch services, so a silent daemon is
//! noticed too); with an SMTP relay and `alert-to`, failures and missed runs are e-mailed.
//! Every alert sent is recorded in the catalog with its delivery outcome: the MONITORING rule
//! of the compliance report checks that each failure was alerted in time.

/// What happened to a scheduled job.
#[derive(Clone, Debug, serde::Serialize)]
pub struct JobEvent {
    pub job: String,
    pub kind: &'static str,
    /// `succeeded`, `failed`, `missed` or `break-glass`.
    pub status: &'static str,
    pub host: String,
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Why it failed: the stable code, the sentence, what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<super::Failure>,
}

/// Sends an event to the webhook and (for failures) by e-mail, as configured, and records each
/// attempt. Failures to alert are logged, never fatal.
pub async fn send(ctx: &super::Context, event: &JobEvent) {
    let notifications = &ctx.config.notifications;
    if let Some(base) = notifications.webhook.as_deref() {
        let url = if event.status == "succeeded" {
            base.to_string()
        } else {
            format!("{}/fail", base.trim_end_matches('/'))
        };
        let result = crate::notify::webhook::post(&url, event).await;
        if let Err(e) = &result {
            tracing::warn!(job = event.job, "the webhook could not be reached: {e}");
        }
        record(ctx, event, "webhook", result).await;
    }
    let alert = crate::notify::sinks::Alert {
        job: &event.job,
        kind: event.kind,
        status: event.status,
        host: &event.host,
        time: &event.time,
        code: event.error.as_ref().map(|f| f.code.as_str()),
        message: event
            .error
            .as_ref()
            .map(|f| f.message.as_str())
            .or(event.detail.as_deref()),
        hint: event.error.as_ref().and_then(|f| f.hint.as_deref()),
    };
    for sink in &notifications.sinks {
        if !crate::notify::sinks::hears(sink, event.status) {
            continue;
        }
        let result = crate::notify::sinks::send(sink, &alert).await;
        if let Err(e) = &result {
            tracing::warn!(
                job = event.job,
                sink = sink.kind.as_str(),
                "the {} alert was not delivered: {e}",
                sink.kind.as_str()
            );
        }
        record(ctx, event, sink.kind.as_str(), result).await;
    }
    if let Some(smtp) = &notifications.smtp
        && !notifications.alert_to.is_empty()
        && event.status != "succeeded"
    {
        let text = if event.status == "break-glass" {
            format!(
                "BREAK-GLASS on {} at {}: a dangerous operation ({}) ran without a second administrator.\n{}\n\nSee `custodian audit list --action break-glass`; the next compliance report lists it under ACCESS.\n",
                event.host,
                event.time,
                event.kind,
                event.detail.as_deref().unwrap_or("")
            )
        } else {
            format!(
                "Scheduled job {} ({}) on {} {} at {}.\n\n{}\n\nSee `custodian runs` and the journal (journalctl -u custodian -p err).\n",
                event.job,
                event.kind,
                event.host,
                if event.status == "missed" {
                    "was MISSED"
                } else {
                    "FAILED"
                },
                event.time,
                reason(event)
            )
        };
        let outgoing = crate::notify::mail::Outgoing {
            to: notifications.alert_to.clone(),
            subject: format!(
                "[Custodian] {} {}: {}",
                event.host,
                event.job,
                match event.status {
                    "missed" => "missed",
                    "break-glass" => "BREAK-GLASS used",
                    _ => "FAILED",
                }
            ),
            html: format!("<pre>{}</pre>", html_escape(&text)),
            text,
            inline: Vec::new(),
            attachments: Vec::new(),
        };
        let id = crate::notify::mail::message_id(smtp, "alert");
        let attempts = crate::notify::mail::send(smtp, &outgoing, &id).await;
        let result = attempts.last().map_or(Err("no attempt".to_string()), |a| {
            a.result.clone().map(|_| ())
        });
        record(ctx, event, "email", result).await;
    }
}

/// Why it failed and what to do, for a person.
fn reason(event: &JobEvent) -> String {
    match &event.error {
        Some(f) => {
            let mut out = format!("Why: {} [{}]", f.message, f.code);
            if let Some(h) = &f.hint {
                out.push_str(&format!("\nWhat to do: {h}"));
            }
            out
        }
        None => event.detail.clone().unwrap_or_default(),
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn record(
    ctx: &super::Context,
    event: &JobEvent,
    channel: &'static str,
    result: Result<(), String>,
) {
    let record = crate::catalog::AlertRecord {
        job: event.job.clone(),
        status: event.status.to_string(),
        channel,
        delivered: result.is_ok(),
        error: result.err(),
    };
    if let Err(e) = ctx.catalog.record_alert(&record).await {
        tracing::error!(
            job = event.job,
            "could not record an alert in the catalog: {e}"
        );
    }
}
