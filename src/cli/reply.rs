//! One way out: what a command has to say is collected here and printed once, at the end — as
//! text for people, or as the one `--json` envelope of docs/json.md:
//!
//! ```json
//! {"schema": "custodian.v1", "ok": true, "command": "backup", "data": …}
//! {"schema": "custodian.v1", "ok": false, "command": "check", "data": …,
//!  "error": {"code": "check.found_errors", "message": "…", "hint": "…"}}
//! ```
//!
//! `ok` is true exactly when the exit code is 0; `data` is there whenever the command has a
//! result (a check that found damage has one), `error` whenever `ok` is false. Progress events
//! (`--json --progress`) are NDJSON lines before the envelope, which is then one line too.

use std::sync::Mutex;

use serde::Serialize;

use super::Exit;
use crate::config::Diagnostic;
use crate::job::Failure;

#[derive(Default)]
struct Reply {
    command: String,
    json: bool,
    compact: bool,
    data: Option<serde_json::Value>,
    error: Option<Failure>,
    diagnostics: Vec<Diagnostic>,
}

static REPLY: Mutex<Option<Reply>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut Reply) -> R) -> R {
    let mut guard = REPLY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(guard.get_or_insert_with(Reply::default))
}

/// Names the command and the output mode, before anything is said.
pub(crate) fn begin(command: &str, json: bool, compact: bool) {
    with(|r| {
        r.command = command.to_string();
        r.json = json;
        r.compact = compact;
    });
}

/// The command's result: kept for the envelope, or printed for people now.
pub(crate) fn emit<T: Serialize>(json: bool, value: &T, human: impl FnOnce(&T) -> String) {
    if json {
        let data = serde_json::to_value(value)
            .unwrap_or_else(|e| serde_json::json!({ "unrenderable": e.to_string() }));
        with(|r| r.data = Some(data));
    } else {
        let text = human(value);
        if !text.is_empty() {
            println!("{}", text.trim_end());
        }
    }
}

/// Why the command failed: kept for the envelope, or said on stderr now.
pub(crate) fn fail(
    json: bool,
    message: &str,
    code: &str,
    diagnostics: &[Diagnostic],
    exit: Exit,
) -> Exit {
    note(json, Failure::new(code, message), diagnostics);
    exit
}

/// As [`fail`], with a failure that has its own hint.
pub(crate) fn note(json: bool, failure: Failure, diagnostics: &[Diagnostic]) {
    if json {
        with(|r| {
            r.error = Some(failure);
            r.diagnostics = diagnostics.to_vec();
        });
    } else {
        eprintln!("custodian: {}", failure.message);
        if let Some(hint) = &failure.hint
            && !failure.message.contains(hint.as_str())
            && diagnostics.is_empty()
        {
            eprintln!("  what to do: {hint}");
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    schema: &'static str,
    ok: bool,
    command: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody<'a>>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    diagnostics: &'a [Diagnostic],
}

/// Prints the envelope (with `--json`) and returns the exit code.
pub(crate) fn finish(exit: Exit) -> Exit {
    let reply = REPLY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
        .unwrap_or_default();
    if !reply.json {
        return exit;
    }
    let ok = exit == Exit::Ok;
    // A failure without a sentence of its own (a job that ran and partly failed) still says
    // what failed.
    let fallback = Failure::new(
        if exit == Exit::Usage {
            "usage"
        } else {
            "job.failed"
        },
        "the command did not fully succeed; `data` says which part failed",
    );
    let error = (!ok).then(|| reply.error.as_ref().unwrap_or(&fallback));
    let envelope = Envelope {
        schema: crate::model::JSON_SCHEMA,
        ok,
        command: &reply.command,
        data: reply.data.as_ref(),
        error: error.map(|e| ErrorBody {
            code: &e.code,
            message: &e.message,
            hint: e.hint.as_deref(),
            diagnostics: &reply.diagnostics,
        }),
    };
    let text = if reply.compact {
        serde_json::to_string(&envelope)
    } else {
        serde_json::to_string_pretty(&envelope)
    };
    match text {
        Ok(t) => println!("{t}"),
        Err(e) => eprintln!("custodian: cannot render JSON output: {e}"),
    }
    exit
}
