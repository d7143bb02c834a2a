//! Webhooks: a JSON POST with a 15-second deadline (TLS with the system's roots).

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

type Https = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// An HTTP(S) client trusting the system's roots.
fn client() -> Result<Client<Https, Full<Bytes>>, String> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("no TLS root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

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
    let client = client()?;
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

/// The `Date` an HTTP(S) server answers with (any status), for clock checks.
///
/// # Errors
/// When it cannot be reached or sends no readable `Date`.
pub async fn server_date(url: &str) -> Result<jiff::Timestamp, String> {
    let client = client()?;
    let request = hyper::Request::head(url)
        .header(hyper::header::USER_AGENT, "custodian")
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("not a usable URL: {e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
        .map_err(|e| format!("cannot connect: {e}"))?;
    let date = response
        .headers()
        .get(hyper::header::DATE)
        .and_then(|v| v.to_str().ok())
        .ok_or("no Date header")?;
    jiff::fmt::rfc2822::parse(date)
        .map(|z| z.timestamp())
        .map_err(|e| format!("unreadable Date `{date}`: {e}"))
}
