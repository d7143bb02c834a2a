//! HTML rendering with minijinja; the templates are data in `reports/` (compiled in).

use minijinja::{Environment, context};

use super::Report;
use super::charts::Day;

const REPORT: &str = include_str!("../../reports/report.html.j2");
const MAIL: &str = include_str!("../../reports/mail.html.j2");

/// `{{ t | local }}`: an RFC 3339 time in the report's time zone, `2026-12-01 10:04 CET`
/// (anything else passes through unchanged).
fn local_filter(tz: jiff::tz::TimeZone) -> impl Fn(String) -> String + Send + Sync + 'static {
    move |text: String| match text.parse::<jiff::Timestamp>() {
        Ok(t) => t
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M %Z")
            .to_string(),
        Err(_) => text,
    }
}

/// `{{ text | ticks }}`: escapes the text and shows `backticked` words (commands, settings) as
/// code, as rules.toml writes them.
fn ticks_filter(text: String) -> minijinja::Value {
    let escaped = minijinja::HtmlEscape(&text).to_string();
    let parts: Vec<&str> = escaped.split('`').collect();
    let mut out = String::with_capacity(escaped.len() + 16);
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 0 {
            out.push_str(part);
        } else if i == parts.len() - 1 {
            // An unpaired backtick is shown as it was.
            out.push('`');
            out.push_str(part);
        } else {
            out.push_str("<code>");
            out.push_str(part);
            out.push_str("</code>");
        }
    }
    minijinja::Value::from_safe_string(out)
}

fn env(tz: &jiff::tz::TimeZone) -> Result<Environment<'static>, String> {
    let mut env = Environment::new();
    env.add_filter("local", local_filter(tz.clone()));
    env.add_filter("ticks", ticks_filter);
    env.add_template("report.html", REPORT)
        .map_err(|e| format!("the report template is invalid: {e}"))?;
    env.add_template("mail.html", MAIL)
        .map_err(|e| format!("the mail template is invalid: {e}"))?;
    Ok(env)
}

/// Charts inlined in the report.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Charts {
    /// SVG, inlined in the report.
    pub rpo: Option<String>,
    pub rto: Option<String>,
    /// PNG, for e-mail clients that show no SVG.
    #[serde(skip)]
    pub rpo_png: Option<Vec<u8>>,
    #[serde(skip)]
    pub rto_png: Option<Vec<u8>>,
}

/// The self-contained report page.
///
/// # Errors
/// When the template fails to render.
pub fn report(
    r: &Report,
    charts: &Charts,
    calendar: &[Vec<Option<Day>>],
    tz: &jiff::tz::TimeZone,
) -> Result<String, String> {
    env(tz)?
        .get_template("report.html")
        .and_then(|t| t.render(context! { r => r, charts => charts, calendar => calendar }))
        .map_err(|e| format!("rendering the report failed: {e:#}"))
}

/// The e-mail body: summary, scorecard, charts by `cid:`.
///
/// # Errors
/// When the template fails to render.
pub fn mail(
    r: &serde_json::Value,
    has_rpo: bool,
    has_rto: bool,
    tz: &jiff::tz::TimeZone,
) -> Result<String, String> {
    let colors = std::collections::BTreeMap::from([
        ("pass", "#2e7d32"),
        ("warn", "#ef8f00"),
        ("fail", "#c62828"),
        ("not-evaluated", "#78909c"),
    ]);
    env(tz)?
        .get_template("mail.html")
        .and_then(|t| {
            t.render(context! { r => r, has_rpo => has_rpo, has_rto => has_rto, colors => colors })
        })
        .map_err(|e| format!("rendering the e-mail failed: {e:#}"))
}

#[cfg(test)]
mod tests {
    use super::ticks_filter;

    #[test]
    fn backticks_become_code_and_the_rest_is_escaped() {
        assert_eq!(
            ticks_filter("run `custodian runs` <now>".into()).to_string(),
            "run <code>custodian runs</code> &lt;now&gt;"
        );
        assert_eq!(ticks_filter("a `b".into()).to_string(), "a `b");
    }
}
