//! Policy sections: retention, drills, reports, notifications and access. Each is validated
//! here into its own immutable type with COMPLIANCE.md's defaults filled in.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::diagnostic::{Diagnostics, Severity};
use super::document::Document;
use super::fields::{resolve_path, secret_ref};
use super::parse_duration;
use super::raw::{RawDrills, RawNotifications, RawReports, RawRetention};
use crate::secret::SecretRef;

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// What a prune keeps (restic's `forget` policy) plus a hard maximum age.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_within: Option<Duration>,
    /// Nothing older survives a prune (GDPR storage limitation).
    pub max_age: Option<Duration>,
}

impl Retention {
    /// The longest a snapshot is kept, in days, and which rule says so: `max-age` when set,
    /// else the longest keep rule; `None` when nothing bounds the age.
    #[must_use]
    pub fn max_days(&self) -> (Option<f64>, String) {
        let r = self;
        if let Some(max) = r.max_age {
            return (Some(max.as_secs_f64() / 86_400.0), "max-age".into());
        }
        let candidates = [
            (
                r.keep_within.map(|d| d.as_secs_f64() / 86_400.0),
                "keep-within",
            ),
            (r.keep_hourly.map(|n| f64::from(n) / 24.0), "keep-hourly"),
            (r.keep_daily.map(f64::from), "keep-daily"),
            (r.keep_weekly.map(|n| 7.0 * f64::from(n)), "keep-weekly"),
            (r.keep_monthly.map(|n| 31.0 * f64::from(n)), "keep-monthly"),
            (r.keep_yearly.map(|n| 366.0 * f64::from(n)), "keep-yearly"),
        ];
        let best = candidates
            .iter()
            .filter_map(|(d, name)| d.map(|d| (d, *name)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match best {
            Some((d, name)) => (Some(d), format!("{name} (longest keep rule)")),
            None if r.keep_last.is_some() => (None, "keep-last only: no age bound".into()),
            None => (
                None,
                "no [retention] policy: nothing is ever removed".into(),
            ),
        }
    }
}

/// Restore drill settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drills {
    /// Every location of every source is drilled at least this often.
    pub interval: Duration,
    /// A scratch database never lives longer than this.
    pub scratch_lifetime: Duration,
    /// Where ephemeral scratch instances live (`None`: the system temp directory).
    pub scratch_dir: Option<std::path::PathBuf>,
    /// Who ephemeral servers run as when Custodian runs as root.
    pub scratch_user: Option<String>,
    pub assertions: Vec<Assertion>,
}

/// An application-level check: a SQL query returning one number, compared to an expectation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assertion {
    pub source: String,
    pub name: String,
    pub sql: String,
    pub comparison: Comparison,
    pub expected: i64,
}

/// The comparison of an [`Assertion`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    Eq,
    Ne,
    Ge,
    Gt,
    Le,
    Lt,
}

impl Comparison {
    #[must_use]
    pub fn holds(self, actual: i64, expected: i64) -> bool {
        match self {
            Self::Eq => actual == expected,
            Self::Ne => actual != expected,
            Self::Ge => actual >= expected,
            Self::Gt => actual > expected,
            Self::Le => actual <= expected,
            Self::Lt => actual < expected,
        }
    }

    /// Parses `>= 1`, `= 0`, `< 10`…
    fn parse(text: &str) -> Option<(Self, i64)> {
        let text = text.trim();
        let (op, rest) = [
            (">=", Self::Ge),
            ("<=", Self::Le),
            ("!=", Self::Ne),
            ("==", Self::Eq),
            ("=", Self::Eq),
            (">", Self::Gt),
            ("<", Self::Lt),
        ]
        .into_iter()
        .find_map(|(p, op)| text.strip_prefix(p).map(|rest| (op, rest)))?;
        rest.trim().parse().ok().map(|n| (op, n))
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Eq => "=",
            Self::Ne => "!=",
            Self::Ge => ">=",
            Self::Gt => ">",
            Self::Le => "<=",
            Self::Lt => "<",
        })
    }
}

/// How often reports are produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportPeriod {
    Weekly,
    Monthly,
    Quarterly,
}

/// Policy thresholds the compliance rules are evaluated against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Targets {
    pub rpo: Duration,
    pub rto: Duration,
    pub copy_sla: Duration,
    pub alert_latency: Duration,
    pub min_immutability: Duration,
    pub key_max_age: Duration,
}

impl Default for Targets {
    fn default() -> Self {
        Self {
            rpo: Duration::from_secs(24 * HOUR),
            rto: Duration::from_secs(4 * HOUR),
            copy_sla: Duration::from_secs(6 * HOUR),
            alert_latency: Duration::from_secs(15 * 60),
            min_immutability: Duration::from_secs(30 * DAY),
            key_max_age: Duration::from_secs(365 * DAY),
        }
    }
}

/// Compliance report settings.
#[derive(Clone, Debug)]
pub struct Reports {
    pub period: ReportPeriod,
    pub out_dir: Option<PathBuf>,
    pub secret_key_file: Option<PathBuf>,
    pub public_key_file: Option<PathBuf>,
    pub secret_key_password: Option<SecretRef>,
    pub allowed_regions: Vec<String>,
    /// The time zone reports show times in (`UTC` by default).
    pub time_zone: jiff::tz::TimeZone,
    /// Its IANA name, as configured.
    pub time_zone_name: String,
    /// Control frameworks in scope (`iso27001`, `gdpr`, `soc2`, `nis2`).
    pub frameworks: Vec<String>,
    pub targets: Targets,
}

/// Control frameworks the shipped mappings cover (`reports/frameworks.toml`).
pub const FRAMEWORKS: &[&str] = &["iso27001", "gdpr", "soc2", "nis2"];

/// TLS mode for SMTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    StartTls,
    Implicit,
    /// Plain text: accepted only for a loopback host.
    None,
}

/// SMTP relay settings.
#[derive(Clone, Debug)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<SecretRef>,
    pub from: String,
    pub ca_file: Option<PathBuf>,
    pub attempts: u32,
    pub retry_delay: Duration,
}

/// Where reports and alerts go.
#[derive(Clone, Debug, Default)]
pub struct Notifications {
    pub smtp: Option<Smtp>,
    pub report_to: Vec<String>,
    pub alert_to: Vec<String>,
    pub webhook: Option<String>,
    pub sinks: Vec<Sink>,
}

/// What kind of alert target a sink is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkKind {
    Ntfy,
    Slack,
    Mattermost,
    Teams,
    PagerDuty,
}

impl SinkKind {
    pub const ALL: [(&'static str, Self); 5] = [
        ("ntfy", Self::Ntfy),
        ("slack", Self::Slack),
        ("mattermost", Self::Mattermost),
        ("teams", Self::Teams),
        ("pagerduty", Self::PagerDuty),
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("?", |(n, _)| n)
    }
}

/// One configured alert target.
#[derive(Clone, Debug)]
pub struct Sink {
    pub kind: SinkKind,
    /// Where to send (for Slack, Mattermost and Teams the URL is the secret instead).
    pub url: Option<String>,
    pub secret: Option<crate::secret::SecretRef>,
    /// The event statuses it hears.
    pub on: Vec<String>,
}

/// A duration key: parsed, or a diagnostic and `None`.
pub(super) fn duration(
    doc: &Document<'_>,
    diags: &mut Diagnostics,
    key: &str,
    value: Option<&str>,
) -> Option<Duration> {
    let text = value?;
    match parse_duration(text) {
        Ok(d) if d.is_zero() => {
            let line = doc.line(diags, key);
            diags.push(Severity::Error, line, key, "must be longer than zero");
            None
        }
        Ok(d) => Some(d),
        Err(message) => {
            let line = doc.line(diags, key);
            diags.push(Severity::Error, line, key, message);
            None
        }
    }
}

/// A retention table at `key` (`retention` or `location.NAME.retention`).
pub(super) fn retention(
    doc: &Document<'_>,
    diags: &mut Diagnostics,
    key: &str,
    raw: RawRetention,
) -> Retention {
    let retention = Retention {
        keep_last: raw.keep_last,
        keep_hourly: raw.keep_hourly,
        keep_daily: raw.keep_daily,
        keep_weekly: raw.keep_weekly,
        keep_monthly: raw.keep_monthly,
        keep_yearly: raw.keep_yearly,
        keep_within: duration(
            doc,
            diags,
            &format!("{key}.keep-within"),
            raw.keep_within.as_deref(),
        ),
        max_age: duration(
            doc,
            diags,
            &format!("{key}.max-age"),
            raw.max_age.as_deref(),
        ),
    };
    if let (Some(within), Some(max)) = (retention.keep_within, retention.max_age)
        && within > max
    {
        let k = format!("{key}.keep-within");
        let line = doc.line(diags, &k);
        diags.push(
            Severity::Warning,
            line,
            k,
            "is longer than max-age; max-age wins, so snapshots will not be kept that long",
        );
    }
    retention
}

impl Retention {
    /// Whether any rule is set (no rule at all: keep everything).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

pub(super) fn drills(
    doc: &Document<'_>,
    diags: &mut Diagnostics,
    raw: RawDrills,
    sources: &[String],
    base: &std::path::Path,
) -> Drills {
    let mut assertions = Vec::new();
    for (i, a) in raw.assertion.into_iter().enumerate() {
        let key = format!("drills.assertion.{i}");
        if !sources.contains(&a.source) {
            let line = doc.line(diags, &format!("{key}.source"));
            diags.push(
                Severity::Error,
                line,
                format!("{key}.source"),
                format!(
                    "source `{}` is not defined; use one of: {}",
                    a.source,
                    sources.join(", ")
                ),
            );
        }
        if assertions
            .iter()
            .any(|b: &Assertion| b.source == a.source && b.name == a.name)
        {
            let line = doc.line(diags, &format!("{key}.name"));
            diags.push(
                Severity::Error,
                line,
                format!("{key}.name"),
                format!(
                    "assertion `{}` is defined twice for source `{}`; give each a unique name",
                    a.name, a.source
                ),
            );
        }
        let Some((comparison, expected)) = Comparison::parse(&a.expect) else {
            let line = doc.line(diags, &format!("{key}.expect"));
            diags.push(
                Severity::Error,
                line,
                format!("{key}.expect"),
                format!(
                    "`{}` is not an expectation; write an operator and a whole number, e.g. `= 0` or `>= 1`",
                    a.expect
                ),
            );
            continue;
        };
        assertions.push(Assertion {
            source: a.source,
            name: a.name,
            sql: a.sql,
            comparison,
            expected,
        });
    }
    Drills {
        interval: duration(doc, diags, "drills.interval", raw.interval.as_deref())
            .unwrap_or(Duration::from_secs(30 * DAY)),
        scratch_lifetime: duration(
            doc,
            diags,
            "drills.scratch-lifetime",
            raw.scratch_lifetime.as_deref(),
        )
        .unwrap_or(Duration::from_secs(HOUR)),
        scratch_dir: raw.scratch_dir.as_deref().map(|p| resolve_path(base, p)),
        scratch_user: raw.scratch_user,
        assertions,
    }
}

pub(super) fn reports(
    doc: &Document<'_>,
    diags: &mut Diagnostics,
    base: &Path,
    raw: RawReports,
) -> Reports {
    let period = match raw.period.as_deref() {
        None | Some("monthly") => ReportPeriod::Monthly,
        Some("weekly") => ReportPeriod::Weekly,
        Some("quarterly") => ReportPeriod::Quarterly,
        Some(other) => {
            let line = doc.line(diags, "reports.period");
            diags.push(
                Severity::Error,
                line,
                "reports.period",
                format!("`{other}` is not a period; use `weekly`, `monthly` or `quarterly`"),
            );
            ReportPeriod::Monthly
        }
    };
    let defaults = Targets::default();
    let t = &raw.targets;
    let targets = Targets {
        rpo: duration(doc, diags, "reports.targets.rpo", t.rpo.as_deref()).unwrap_or(defaults.rpo),
        rto: duration(doc, diags, "reports.targets.rto", t.rto.as_deref()).unwrap_or(defaults.rto),
        copy_sla: duration(
            doc,
            diags,
            "reports.targets.copy-sla",
            t.copy_sla.as_deref(),
        )
        .unwrap_or(defaults.copy_sla),
        alert_latency: duration(
            doc,
            diags,
            "reports.targets.alert-latency",
            t.alert_latency.as_deref(),
        )
        .unwrap_or(defaults.alert_latency),
        min_immutability: duration(
            doc,
            diags,
            "reports.targets.min-immutability",
            t.min_immutability.as_deref(),
        )
        .unwrap_or(defaults.min_immutability),
        key_max_age: duration(
            doc,
            diags,
            "reports.targets.key-max-age",
            t.key_max_age.as_deref(),
        )
        .unwrap_or(defaults.key_max_age),
    };
    let secret_key_password = secret_ref(
        doc,
        diags,
        "reports.secret-key-password",
        raw.secret_key_password(),
        base,
        false,
    );
    let time_zone_name = raw.time_zone.clone().unwrap_or_else(|| "UTC".into());
    let time_zone = match jiff::tz::TimeZone::get(&time_zone_name) {
        Ok(tz) => tz,
        Err(_) => {
            let line = doc.line(diags, "reports.time-zone");
            diags.push(
                Severity::Error,
                line,
                "reports.time-zone",
                format!(
                    "`{time_zone_name}` is not a time zone; use an IANA name like `Europe/Berlin` or `UTC`"
                ),
            );
            jiff::tz::TimeZone::UTC
        }
    };
    let frameworks = raw
        .frameworks
        .clone()
        .unwrap_or_else(|| vec!["iso27001".into(), "gdpr".into()]);
    for (i, f) in frameworks.iter().enumerate() {
        if !FRAMEWORKS.contains(&f.as_str()) {
            let key = format!("reports.frameworks.{i}");
            let line = doc.line(diags, &key);
            diags.push(
                Severity::Error,
                line,
                key,
                format!(
                    "`{f}` is not a framework; use any of: {}",
                    FRAMEWORKS.join(", ")
                ),
            );
        }
    }
    Reports {
        period,
        time_zone,
        time_zone_name,
        frameworks,
        out_dir: raw.out_dir.map(|p| resolve_path(base, &p)),
        secret_key_file: raw.secret_key_file.map(|p| resolve_path(base, &p)),
        public_key_file: raw.public_key_file.map(|p| resolve_path(base, &p)),
        secret_key_password,
        allowed_regions: raw.allowed_regions,
        targets,
    }
}

fn check_addresses(doc: &Document<'_>, diags: &mut Diagnostics, key: &str, list: &[String]) {
    for (i, address) in list.iter().enumerate() {
        let valid = address
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && !domain.is_empty())
            && !address.contains(char::is_whitespace);
        if !valid {
            let k = format!("{key}.{i}");
            let line = doc.line(diags, &k);
            diags.push(
                Severity::Error,
                line,
                k,
                format!("`{address}` is not an e-mail address; write it as user@example.org"),
            );
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn notifications(
    doc: &Document<'_>,
    diags: &mut Diagnostics,
    base: &Path,
    raw: RawNotifications,
) -> Notifications {
    check_addresses(doc, diags, "notifications.report-to", &raw.report_to);
    check_addresses(doc, diags, "notifications.alert-to", &raw.alert_to);
    if let Some(url) = &raw.webhook
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        let line = doc.line(diags, "notifications.webhook");
        diags.push(
            Severity::Error,
            line,
            "notifications.webhook",
            "must be an http:// or https:// URL",
        );
    }
    let smtp = raw.smtp.map(|s| {
        let tls = match s.tls.as_deref() {
            None | Some("starttls") => SmtpTls::StartTls,
            Some("implicit") => SmtpTls::Implicit,
            Some("none") => SmtpTls::None,
            Some(other) => {
                let line = doc.line(diags, "notifications.smtp.tls");
                diags.push(
                    Severity::Error,
                    line,
                    "notifications.smtp.tls",
                    format!("`{other}` is not a TLS mode; use `starttls`, `implicit` or `none`"),
                );
                SmtpTls::StartTls
            }
        };
        if tls == SmtpTls::None && !is_loopback(&s.host) {
            let line = doc.line(diags, "notifications.smtp.tls");
            diags.push(
                Severity::Error,
                line,
                "notifications.smtp.tls",
                format!(
                    "plain SMTP is only allowed to a loopback relay, not `{}`; use `starttls` or `implicit`",
                    s.host
                ),
            );
        }
        check_addresses(doc, diags, "notifications.smtp.from", std::slice::from_ref(&s.from));
        let password = secret_ref(doc, diags, "notifications.smtp.password", s.password(), base, false);
        if password.is_some() && s.username.is_none() {
            let line = doc.line(diags, "notifications.smtp");
            diags.push(
                Severity::Error,
                line,
                "notifications.smtp.username",
                "a password is configured but no username; add `username`",
            );
        }
        let retry_delay = duration(
            doc,
            diags,
            "notifications.smtp.retry-delay",
            s.retry_delay.as_deref(),
        )
        .unwrap_or(Duration::from_secs(10));
        Smtp {
            ca_file: s.ca_file.as_ref().map(|p| resolve_path(base, p)),
            attempts: s.attempts.unwrap_or(4).clamp(1, 20),
            retry_delay,
            port: s.port.unwrap_or(match tls {
                SmtpTls::Implicit => 465,
                SmtpTls::StartTls => 587,
                SmtpTls::None => 25,
            }),
            host: s.host,
            tls,
            username: s.username,
            password,
            from: s.from,
        }
    });
    let sinks = raw
        .sink
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| sink(doc, diags, base, i, s))
        .collect();
    Notifications {
        smtp,
        report_to: raw.report_to,
        alert_to: raw.alert_to,
        webhook: raw.webhook,
        sinks,
    }
}

const SINK_EVENTS: [&str; 4] = ["failed", "missed", "succeeded", "break-glass"];

fn sink(
    doc: &Document<'_>,
    diags: &mut Diagnostics,
    base: &Path,
    index: usize,
    raw: super::raw::RawSink,
) -> Option<Sink> {
    let prefix = format!("notifications.sink.{index}");
    let names = SinkKind::ALL.map(|(n, _)| n);
    let Some(kind) = SinkKind::ALL
        .iter()
        .find(|(n, _)| *n == raw.kind)
        .map(|(_, k)| *k)
    else {
        let line = doc.line(diags, &format!("{prefix}.kind"));
        diags.push(
            Severity::Error,
            line,
            format!("{prefix}.kind"),
            format!(
                "`{}` is not a sink kind{}; use one of: {}",
                raw.kind,
                super::fields::suggestion(&raw.kind, &names),
                names.join(", ")
            ),
        );
        return None;
    };
    let secret = secret_ref(
        doc,
        diags,
        &format!("{prefix}.secret"),
        raw.secret(),
        base,
        false,
    );
    let url = raw.url.clone();
    let mut problem = |key: &str, message: String| {
        let key = format!("{prefix}.{key}");
        let line = doc.line(diags, &key);
        diags.push(Severity::Error, line, key, message);
    };
    match kind {
        SinkKind::Ntfy if url.is_none() => problem(
            "url",
            "an ntfy sink needs `url`, the topic's URL (e.g. https://ntfy.sh/custodian-alerts)".into(),
        ),
        SinkKind::Slack | SinkKind::Mattermost | SinkKind::Teams if secret.is_none() => problem(
            "secret-file",
            format!(
                "a {} sink needs its incoming-webhook URL in `secret-file`, `secret-env` or `secret-credential` (the URL is the credential: keep it out of the configuration)",
                kind.as_str()
            ),
        ),
        SinkKind::Slack | SinkKind::Mattermost | SinkKind::Teams if url.is_some() => problem(
            "url",
            "the incoming-webhook URL is a credential: put it in `secret-file`, not `url`".into(),
        ),
        SinkKind::PagerDuty if secret.is_none() => problem(
            "secret-file",
            "a pagerduty sink needs the integration's routing key in `secret-file`, `secret-env` or `secret-credential`".into(),
        ),
        _ => {}
    }
    if let Some(u) = &url
        && !(u.starts_with("https://") || u.starts_with("http://"))
    {
        problem("url", "must be an http:// or https:// URL".into());
    }
    let on = raw
        .on
        .unwrap_or_else(|| vec!["failed".into(), "missed".into(), "break-glass".into()]);
    for event in &on {
        if !SINK_EVENTS.contains(&event.as_str()) {
            problem(
                "on",
                format!(
                    "`{event}` is not an event{}; use: {}",
                    super::fields::suggestion(event, &SINK_EVENTS),
                    SINK_EVENTS.join(", ")
                ),
            );
        }
    }
    Some(Sink {
        kind,
        url,
        secret,
        on,
    })
}

#[cfg(test)]
mod tests {
    use super::Comparison;

    #[test]
    fn expectations_parse() {
        assert_eq!(Comparison::parse(">= 1"), Some((Comparison::Ge, 1)));
        assert_eq!(Comparison::parse("=0"), Some((Comparison::Eq, 0)));
        assert_eq!(Comparison::parse("!= -3"), Some((Comparison::Ne, -3)));
        assert_eq!(Comparison::parse("about 3"), None);
        assert_eq!(Comparison::parse(">= x"), None);
        assert!(Comparison::Ge.holds(2, 1));
        assert!(!Comparison::Eq.holds(3, 0));
    }
}
