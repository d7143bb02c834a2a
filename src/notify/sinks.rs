//! Native alert targets: ntfy, Slack, Mattermost and Teams incoming webhooks, and PagerDuty
//! Events API v2 (triggered on a failure, resolved by the next success of the same job). Each
//! message says what failed, why (the error's code and sentence) and what to do.

use serde_json::json;

use crate::config::{Sink, SinkKind};

/// What an alert says, whatever the target.
#[derive(Clone, Debug)]
pub struct Alert<'a> {
    pub job: &'a str,
    pub kind: &'a str,
    /// `succeeded`, `failed`, `missed` or `break-glass`.
    pub status: &'a str,
    pub host: &'a str,
    pub time: &'a str,
    pub code: Option<&'a str>,
    pub message: Option<&'a str>,
    pub hint: Option<&'a str>,
}

impl Alert<'_> {
    /// "job nightly-backup (backup) FAILED on crm-db-1".
    #[must_use]
    pub fn title(&self) -> String {
        let what = match self.status {
            "succeeded" => "succeeded",
            "missed" => "was MISSED",
            "break-glass" => "BREAK-GLASS used",
            _ => "FAILED",
        };
        format!(
            "Custodian: {} ({}) {what} on {}",
            self.job, self.kind, self.host
        )
    }

    /// The reason and what to do, one line each.
    #[must_use]
    pub fn body(&self) -> String {
        let mut out = format!("at {}", self.time);
        if let Some(m) = self.message {
            out.push_str(&format!("\nwhy: {m}"));
            if let Some(c) = self.code {
                out.push_str(&format!(" [{c}]"));
            }
        }
        if let Some(h) = self.hint {
            out.push_str(&format!("\nwhat to do: {h}"));
        }
        out
    }
}

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_EVENTS: &str = "https://events.pagerduty.com/v2/enqueue";

/// Whether `sink` hears this event (PagerDuty hears successes to resolve its incident).
#[must_use]
pub fn hears(sink: &Sink, status: &str) -> bool {
    sink.on.iter().any(|s| s == status)
        || (sink.kind == SinkKind::PagerDuty && status == "succeeded")
}

/// Sends one alert to one sink.
///
/// # Errors
/// A sentence saying why it was not delivered (never the secret).
pub async fn send(sink: &Sink, alert: &Alert<'_>) -> Result<(), String> {
    let secret = match &sink.secret {
        Some(r) => Some(
            r.resolve()
                .map_err(|e| format!("its secret cannot be read: {e}"))?,
        ),
        None => None,
    };
    let secret = secret.as_ref().map(|s| s.expose().trim().to_string());
    let failed = alert.status != "succeeded";
    match sink.kind {
        SinkKind::Ntfy => {
            let url = sink.url.as_deref().unwrap_or_default();
            let mut headers = vec![
                ("Title", alert.title()),
                (
                    "Priority",
                    if failed { "urgent" } else { "default" }.to_string(),
                ),
                (
                    "Tags",
                    if failed {
                        "rotating_light"
                    } else {
                        "white_check_mark"
                    }
                    .to_string(),
                ),
            ];
            if let Some(token) = &secret {
                headers.push(("Authorization", format!("Bearer {token}")));
            }
            super::webhook::send(
                url,
                "text/plain; charset=utf-8",
                &headers,
                alert.body().into_bytes(),
            )
            .await
        }
        SinkKind::Slack | SinkKind::Mattermost => {
            let url = secret.unwrap_or_default();
            let text = format!("*{}*\n{}", alert.title(), alert.body());
            super::webhook::post(&url, &json!({ "text": text })).await
        }
        SinkKind::Teams => {
            // A Teams "Workflows" incoming webhook takes an Adaptive Card message.
            let url = secret.unwrap_or_default();
            let card = json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": [
                            { "type": "TextBlock", "size": "Medium", "weight": "Bolder",
                              "color": if failed { "Attention" } else { "Good" },
                              "text": alert.title(), "wrap": true },
                            { "type": "TextBlock", "text": alert.body(), "wrap": true }
                        ]
                    }
                }]
            });
            super::webhook::post(&url, &card).await
        }
        SinkKind::PagerDuty => {
            let url = sink.url.as_deref().unwrap_or(PAGERDUTY_EVENTS);
            let key = secret.unwrap_or_default();
            // One incident per host and job: the next success resolves it.
            let dedup = format!("custodian/{}/{}", alert.host, alert.job);
            let event = if failed {
                json!({
                    "routing_key": key,
                    "event_action": "trigger",
                    "dedup_key": dedup,
                    "payload": {
                        "summary": format!("{}: {}", alert.title(), alert.message.unwrap_or("no reason recorded")),
                        "source": alert.host,
                        "severity": if alert.status == "missed" { "error" } else { "critical" },
                        "component": alert.kind,
                        "group": alert.job,
                        "class": alert.code.unwrap_or(alert.status),
                        "timestamp": alert.time,
                        "custom_details": {
                            "code": alert.code, "message": alert.message, "hint": alert.hint,
                            "status": alert.status,
                        }
                    }
                })
            } else {
                json!({ "routing_key": key, "event_action": "resolve", "dedup_key": dedup })
            };
            super::webhook::post(url, &event).await
        }
    }
}
