//! How `custodian ctl` shows the daemon's answers to people (with `--json` they are the
//! envelope's `data` as the daemon sent them).

use std::fmt::Write as _;

use serde_json::Value;

use crate::model::human_bytes;

/// Which answer is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum View {
    Status,
    Started,
    Invocation,
    Approvals,
    Audit,
    /// A job's result (backup, drill, restore, report): its fields as they come.
    Outcome,
}

impl View {
    pub(super) fn of(request: &crate::control::Request) -> Self {
        use crate::control::Request;
        match request {
            Request::Status {} => Self::Status,
            Request::Run { .. } => Self::Started,
            Request::Job { .. } => Self::Invocation,
            Request::Approvals {} => Self::Approvals,
            Request::Audit { .. } => Self::Audit,
            Request::Backup { .. }
            | Request::Drill { .. }
            | Request::Restore { .. }
            | Request::Report { .. }
            | Request::Approve { .. } => Self::Outcome,
        }
    }
}

pub(super) fn render(view: View, v: &Value) -> String {
    match view {
        View::Status => status(v),
        View::Started => format!(
            "started {} as run {} (follow it: custodian ctl job {} --wait)",
            text(&v["job"]),
            text(&v["id"]),
            text(&v["id"])
        ),
        View::Invocation => invocation(v, true),
        View::Approvals => super::render::approvals(v),
        View::Audit => audit(v),
        View::Outcome => outcome(v),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        other => other.to_string(),
    }
}

/// One run: id, job, state, and its progress or its failure.
fn invocation(v: &Value, long: bool) -> String {
    let mut out = format!(
        "{}  {} ({}, {})  {} since {}",
        text(&v["id"]),
        text(&v["job"]),
        text(&v["kind"]),
        text(&v["trigger"]),
        text(&v["state"]),
        text(&v["started_at"]),
    );
    if let Some(done) = v["finished_at"].as_str() {
        let _ = write!(out, ", ended {done}");
    }
    if let Some(p) = v.get("progress").filter(|p| !p.is_null()) {
        let _ = write!(out, "\n    {}", progress(p));
    }
    if let Some(f) = v.get("failure").filter(|f| !f.is_null()) {
        let _ = write!(
            out,
            "\n    failed [{}]: {}",
            text(&f["code"]),
            text(&f["message"])
        );
        if long && let Some(hint) = f["hint"].as_str() {
            let _ = write!(out, "\n    what to do: {hint}");
        }
    }
    out
}

fn progress(p: &Value) -> String {
    let done = p["done_bytes"].as_u64().unwrap_or(0);
    let mut out = format!("{}: {}", text(&p["phase"]), human_bytes(done));
    if let Some(total) = p["total_bytes"].as_u64().filter(|t| *t > 0) {
        let pct = (done.saturating_mul(100) / total).min(100);
        let _ = write!(out, " of {} ({pct}%)", human_bytes(total));
    }
    if let Some(rate) = p["bytes_per_second"].as_u64().filter(|r| *r > 0) {
        let _ = write!(out, ", {}/s", human_bytes(rate));
    }
    if let Some(eta) = p["eta_seconds"].as_u64() {
        let _ = write!(out, ", about {eta} s left");
    }
    out
}

fn status(v: &Value) -> String {
    let mut out = String::new();
    let running = v["running"].as_array().cloned().unwrap_or_default();
    if running.is_empty() {
        out.push_str("running: nothing\n");
    } else {
        out.push_str("running:\n");
        for r in &running {
            let _ = writeln!(out, "  {}", invocation(r, false));
        }
    }
    let schedules = v["schedules"].as_array().cloned().unwrap_or_default();
    if !schedules.is_empty() {
        let rows: Vec<[String; 4]> = schedules
            .iter()
            .map(|s| {
                let last = match s.get("last").filter(|l| !l.is_null()) {
                    Some(l) => format!(
                        "{} {}{}",
                        text(&l["state"]),
                        text(&l["finished_at"]),
                        l["failure"]["code"]
                            .as_str()
                            .map(|c| format!(" [{c}]"))
                            .unwrap_or_default()
                    ),
                    None => "not run since the daemon started".into(),
                };
                [
                    text(&s["job"]),
                    text(&s["kind"]),
                    text(&s["next_fire"]),
                    last,
                ]
            })
            .collect();
        out.push_str("schedules:\n");
        out.push_str(&super::render::table(
            &["JOB", "KIND", "NEXT RUN", "LAST RUN"],
            &rows,
            "  ",
        ));
    }
    for l in v["status"]["locations"].as_array().into_iter().flatten() {
        let damaged = l["damage"].as_array().is_some_and(|d| !d.is_empty());
        let health = super::render::health(damaged, l["healthy"] == true);
        let _ = writeln!(
            out,
            "location {} [{}]: {health}, {} backup snapshot{}",
            text(&l["name"]),
            text(&l["kind"]),
            l["snapshots"].as_u64().unwrap_or(0),
            if l["snapshots"] == 1 { "" } else { "s" }
        );
        for p in l["problems"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  problem: {}", text(p));
        }
    }
    out
}

fn audit(v: &Value) -> String {
    let rows: Vec<[String; 4]> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            [
                text(&e["time"]),
                text(&e["actor"]),
                text(&e["action"]),
                text(&e["outcome"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no audit entries match".into();
    }
    super::render::table(&["TIME", "ACTOR", "ACTION", "OUTCOME"], &rows, "")
}

/// A job result: its top-level facts, one per line (the full record is in `--json`).
fn outcome(v: &Value) -> String {
    let one = |o: &Value| {
        let mut line = Vec::new();
        for key in [
            "source", "location", "snapshot", "status", "verdict", "id", "period", "dir",
        ] {
            if let Some(x) = o.get(key).filter(|x| !x.is_null() && !x.is_object()) {
                line.push(format!("{key} {}", text(x)));
            }
        }
        if let Some(e) = o.get("error").filter(|e| !e.is_null()) {
            line.push(format!("error: {}", text(e)));
        }
        line.join(", ")
    };
    match v {
        Value::Array(items) => items.iter().map(one).collect::<Vec<_>>().join("\n"),
        Value::Object(_) => {
            let line = one(v);
            if line.is_empty() {
                serde_json::to_string_pretty(v).unwrap_or_default()
            } else {
                line
            }
        }
        other => text(other),
    }
}
