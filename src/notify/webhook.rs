//! Webhooks: a JSON POST with a 15-second deadline (TLS with the system's roots).

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// POSTs `body` as JSON to `url`.
///
/// # Errors
/// A sentence saying why it was not delivered.
pub async fn post(url: &str, body: &impl serde::Serialize) -> Result<(), String> {
    let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    send(url, "application/json", &[], body).await
}

/// POSTs `body` with its content type and extra headers to `url`; the URL never appears in an
/// error (for chat webhooks it is the credential).
///
/// # Errors
/// A sentence saying why it was not delivered.
pub async fn send(
    url: &str,
    content_type: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<(), String> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("no TLS root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let mut request = hyper::Request::post(url)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .header(hyper::header::USER_AGENT, "custodian");
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| "the configured URL is not usable".to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(15), client.request(request))
        .await
        .map_err(|_| "no answer within 15 s".to_string())?
        .map_err(|e| {
            // hyper's error names the connection problem, not the URL.
            format!("cannot connect: {e}")
        })?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("it answered {}", response.status()))
    }
}
