//! Alerts for scheduled jobs. Until e-mail arrives with the reports, every failed or missed job
//! is an error in the journal and a count in `custodian_runs_total`; with
//! `[notifications] webhook = URL`, the daemon also POSTs a JSON summary of every finished job —
//! to `URL` on success and to `URL/fail` on failure (the convention of healthchecks.io and
//! similar dead-man's-switch services, so a silent daemon is noticed too).

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

/// Sends an event to the webhook, if one is configured. Failures are logged, never fatal.
pub async fn send(webhook: Option<&str>, event: &JobEvent) {
    let Some(base) = webhook else {
        return;
    };
    let url = if event.status == "succeeded" {
        base.to_string()
    } else {
        format!("{}/fail", base.trim_end_matches('/'))
    };
    if let Err(e) = post(&url, event).await {
        tracing::warn!(job = event.job, "the webhook could not be reached: {e}");
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
