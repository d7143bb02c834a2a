//! E-mail through lettre: reports to managers (HTML summary with inline charts, the bundle as
//! attachments) and failure alerts to operators. SMTP with STARTTLS or implicit TLS (rustls);
//! plain SMTP only to a loopback relay, which the configuration enforces. Delivery is retried
//! with exponential backoff; the caller records every attempt.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{Smtp, SmtpTls};

/// A message ready to send.
pub struct Outgoing {
    pub to: Vec<String>,
    pub subject: String,
    pub html: String,
    pub text: String,
    /// Inline images: (content id, file name, content type, bytes).
    pub inline: Vec<(String, String, String, Vec<u8>)>,
    /// Attachments: (file name, content type, bytes).
    pub attachments: Vec<(String, String, Vec<u8>)>,
}

/// What one attempt did.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub number: u32,
    pub result: Result<String, String>,
}

fn mailbox(address: &str, what: &str) -> Result<Mailbox, String> {
    address
        .parse()
        .map_err(|e| format!("{what} `{address}` is not a usable e-mail address: {e}"))
}

fn content_type(text: &str) -> Result<ContentType, String> {
    ContentType::parse(text).map_err(|e| format!("bad content type {text}: {e}"))
}

fn build(smtp: &Smtp, out: &Outgoing, message_id: &str) -> Result<Message, String> {
    let mut builder = Message::builder()
        .from(mailbox(&smtp.from, "the sender")?)
        .subject(out.subject.clone())
        .message_id(Some(message_id.to_string()));
    for to in &out.to {
        builder = builder.to(mailbox(to, "the recipient")?);
    }
    let mut related = MultiPart::related().multipart(
        MultiPart::alternative()
            .singlepart(SinglePart::plain(out.text.clone()))
            .singlepart(SinglePart::html(out.html.clone())),
    );
    for (cid, name, ct, bytes) in &out.inline {
        related = related.singlepart(
            Attachment::new_inline_with_name(cid.clone(), name.clone())
                .body(bytes.clone(), content_type(ct)?),
        );
    }
    let mut mixed = MultiPart::mixed().multipart(related);
    for (name, ct, bytes) in &out.attachments {
        mixed =
            mixed.singlepart(Attachment::new(name.clone()).body(bytes.clone(), content_type(ct)?));
    }
    builder
        .multipart(mixed)
        .map_err(|e| format!("the message could not be built: {e}"))
}

fn transport(smtp: &Smtp) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let tls_params = || -> Result<TlsParameters, String> {
        let mut b = TlsParameters::builder(smtp.host.clone());
        if let Some(ca) = &smtp.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                format!(
                    "cannot read notifications.smtp.ca-file {}: {e}",
                    ca.display()
                )
            })?;
            b = b.add_root_certificate(
                Certificate::from_pem(&pem)
                    .map_err(|e| format!("{} is not a PEM certificate: {e}", ca.display()))?,
            );
        }
        b.build_rustls()
            .map_err(|e| format!("TLS setup for {} failed: {e}", smtp.host))
    };
    let tls = match smtp.tls {
        SmtpTls::StartTls => Tls::Required(tls_params()?),
        SmtpTls::Implicit => Tls::Wrapper(tls_params()?),
        SmtpTls::None => Tls::None,
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(60)));
    if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
        let secret = password
            .resolve()
            .map_err(|e| format!("the SMTP password: {e}"))?;
        b = b.credentials(Credentials::new(user.clone(), secret.expose().to_string()));
    }
    Ok(b.build())
}

/// Sends with retries: up to `smtp.attempts` tries, waiting `retry_delay`, ×4 each time.
/// Every attempt is returned (for the catalog); the last one says whether it was delivered.
pub async fn send(smtp: &Smtp, out: &Outgoing, message_id: &str) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    let message = match build(smtp, out, message_id) {
        Ok(m) => m,
        Err(e) => {
            attempts.push(Attempt {
                number: 1,
                result: Err(e),
            });
            return attempts;
        }
    };
    let transport = match transport(smtp) {
        Ok(t) => t,
        Err(e) => {
            attempts.push(Attempt {
                number: 1,
                result: Err(e),
            });
            return attempts;
        }
    };
    let mut delay = smtp.retry_delay;
    for number in 1..=smtp.attempts.max(1) {
        let result = match transport.send(message.clone()).await {
            Ok(response) => Ok(response.message().collect::<Vec<_>>().join(" ")),
            Err(e) => Err(describe(smtp, &e)),
        };
        let done = result.is_ok();
        if let Err(e) = &result {
            tracing::warn!(
                attempt = number,
                "e-mail to {} not delivered: {e}",
                out.to.join(", ")
            );
        }
        attempts.push(Attempt { number, result });
        if done || number == smtp.attempts.max(1) {
            break;
        }
        tokio::time::sleep(delay).await;
        delay *= 4;
    }
    attempts
}

fn describe(smtp: &Smtp, e: &lettre::transport::smtp::Error) -> String {
    use std::error::Error;
    let mut text = format!("SMTP relay {}:{}: {e}", smtp.host, smtp.port);
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    if e.is_permanent() {
        text.push_str(" (rejected by the relay: check the sender, recipients and credentials)");
    }
    text
}

/// A fresh Message-ID in the sender's domain.
#[must_use]
pub fn message_id(smtp: &Smtp, tag: &str) -> String {
    let domain = smtp.from.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let nonce: u64 = rand::random();
    format!("<{tag}.{nonce:016x}@{domain}>")
}
