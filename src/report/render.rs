//! HTML rendering with minijinja; the templates are data in `reports/` (compiled in).

use minijinja::{Environment, context};

use super::Report;
use super::charts::Day;

const REPORT: &str = include_str!("../../reports/report.html.j2");
const MAIL: &str = include_str!("../../reports/mail.html.j2");

fn env() -> Result<Environment<'static>, String> {
    let mut env = Environment::new();
    env.add_template("report.html", REPORT)
        .map_err(|e| format!("the report template is invalid: {e}"))?;
    env.add_template("mail.html", MAIL)
        .map_err(|e| format!("the mail template is invalid: {e}"))?;
    Ok(env)
}

/// Charts inlined in the report.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Charts {
    pub rpo: Option<String>,
    pub rto: Option<String>,
}

/// The self-contained report page.
///
/// # Errors
/// When the template fails to render.
pub fn report(
    r: &Report,
    charts: &Charts,
    calendar: &[Vec<Option<Day>>],
) -> Result<String, String> {
    env()?
        .get_template("report.html")
        .and_then(|t| t.render(context! { r => r, charts => charts, calendar => calendar }))
        .map_err(|e| format!("rendering the report failed: {e:#}"))
}

/// The e-mail body: summary, scorecard, charts by `cid:`.
///
/// # Errors
/// When the template fails to render.
pub fn mail(r: &serde_json::Value, has_rpo: bool, has_rto: bool) -> Result<String, String> {
    let colors = std::collections::BTreeMap::from([
        ("pass", "#2e7d32"),
        ("warn", "#ef8f00"),
        ("fail", "#c62828"),
        ("not-evaluated", "#78909c"),
    ]);
    env()?
        .get_template("mail.html")
        .and_then(|t| {
            t.render(context! { r => r, has_rpo => has_rpo, has_rto => has_rto, colors => colors })
        })
        .map_err(|e| format!("rendering the e-mail failed: {e:#}"))
}
