//! Alerts for scheduled jobs. Every failed or missed job is an error in the journal and a count
//! in `custodian_runs_total`; with `[notifications] webhook = URL`, the daemon also POSTs a JSON
//! summary of every finished job — to `URL` on success and to `URL/fail` on failure (the
//! convention of healthchecks.io and similar dead-man's-switch services, so a silent daemon is
//! noticed too); with an SMTP relay and `alert-to`, failures and missed runs are e-mailed.
//! Every alert sent is recorded in the catalog with its delivery outcome: the MONITORING rule
//! of the compliance report checks that each failure was alerted in time.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// What happened to a scheduled job.
#[derive(Clone, Debug, serde::Serialize)]
pub struct JobEvent {
    pub job: String,
    pub kind: &'static str,
    /// `succeeded`, `failed` or `missed`.
    pub status: &'static str,
    pub host: String,
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Sends an event to the webhook and (for failures) by e-mail, as configured, and records each
/// attempt. Failures to alert are logged, never fatal.
pub async fn send(ctx: &crate::job::Context, event: &JobEvent) {
    let notifications = &ctx.config.notifications;
    if let Some(base) = notifications.webhook.as_deref() {
        let url = if event.status == "succeeded" {
            base.to_string()
        } else {
            format!("{}/fail", base.trim_end_matches('/'))
        };
        let result = post(&url, event).await;
        if let Err(e) = &result {
            tracing::warn!(job = event.job, "the webhook could not be reached: {e}");
        }
        record(ctx, event, "webhook", result).await;
    }
    if let Some(smtp) = &notifications.smtp
        && !notifications.alert_to.is_empty()
        && event.status != "succeeded"
    {
        let text = format!(
            "Scheduled job {} ({}) on {} {} at {}.\n{}\n\nSee `custodian runs` and the journal (journalctl -u custodian).\n",
            event.job,
            event.kind,
            event.host,
            if event.status == "missed" {
                "was MISSED"
            } else {
                "FAILED"
            },
            event.time,
            event.detail.as_deref().unwrap_or("")
        );
        let outgoing = crate::notify::mail::Outgoing {
            to: notifications.alert_to.clone(),
            subject: format!(
                "[Custodian] {} {}: {}",
                event.host,
                event.job,
                if event.status == "missed" {
                    "missed"
                } else {
                    "FAILED"
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

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn record(
    ctx: &crate::job::Context,
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

async fn post(url: &str, event: &JobEvent) -> Result<(), String> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("no TLS root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
    let request = hyper::Request::post(url)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, "custodian")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("{url} is not a usable URL: {e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(15), client.request(request))
        .await
        .map_err(|_| "no answer within 15 s".to_string())?
        .map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("it answered {}", response.status()))
    }
}
