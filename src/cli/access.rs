//! The CLI's side of access control: asking for a second factor (on the terminal, without
//! echo, or from standard input — never from an argument or the environment), guarding the
//! dangerous commands, the four-eyes flow over the control socket (show, confirm, approve,
//! wait), and enrolment.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use super::args::GuardArgs;
use super::ctl_view::{self, View};
use super::{Exit, emit, render};
use crate::access::{self, AccessError, Operation, Supplied, guard};
use crate::control::{Request, Response};
use crate::job::{Context, Failure, JobError};

pub(super) fn refused(e: AccessError) -> JobError {
    match e {
        AccessError::Catalog(c) => JobError::Catalog(c),
        AccessError::Usage(m) => JobError::Usage(m),
        other => JobError::Refused {
            code: other.code(),
            message: other.to_string(),
        },
    }
}

/// A second-factor code: the first line of standard input with `--totp-stdin`, else asked on
/// the terminal (no echo); `None` when neither is possible.
pub(super) fn read_code(totp_stdin: bool, user: &str) -> Option<String> {
    if totp_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).ok()?;
        let code = line.trim().to_string();
        return (!code.is_empty()).then_some(code);
    }
    if !std::io::stdin().is_terminal() {
        return None;
    }
    rpassword::prompt_password(format!("Second factor for {user} (6-digit code): "))
        .ok()
        .map(|c| c.trim().to_string())
}

/// Lets a dangerous CLI operation through (or refuses it) and records the grant with the
/// context's audit entries. Returns the approval it runs under, if any.
///
/// # Errors
/// The refusal, as a [`JobError::Refused`] with access control's code.
pub(super) async fn guarded(
    ctx: &Context,
    op: &Operation,
    args: &GuardArgs,
) -> Result<Option<String>, JobError> {
    let person = access::local_person(&ctx.config.access, &ctx.config.state_dir);
    let needs = guard::needs_factor(ctx, &person).await.map_err(refused)?;
    let code = if needs {
        read_code(args.totp_stdin, &person.user)
    } else {
        None
    };
    let result = guard::cli(
        ctx,
        &person,
        op,
        &Supplied {
            code,
            approval: args.approval.clone(),
            break_glass: args.break_glass.clone(),
        },
    )
    .await;
    let grant = match result {
        Ok(grant) => grant,
        Err(e) => {
            // A request for approval is audited as such; every other refusal as a refusal.
            if !matches!(e, AccessError::ApprovalRequired { .. }) {
                ctx.audit_action(crate::audit::NewEntry {
                    actor: person.user.clone(),
                    uid: person.uid,
                    role: person.role.map_or("none", access::Role::as_str).to_string(),
                    trigger: ctx.trigger.as_str().to_string(),
                    action: op.action().to_string(),
                    target: None,
                    params: serde_json::json!({ "operation": op, "refusal": e.code() }),
                    outcome: "refused".into(),
                    detail: Some(e.to_string()),
                });
            }
            return Err(refused(e));
        }
    };
    ctx.set_grant(serde_json::to_value(&grant).unwrap_or_default());
    Ok(grant.approval)
}

/// Records how an approved CLI operation went.
pub(super) async fn finished<T>(
    ctx: &Context,
    approval: Option<&str>,
    result: &Result<T, JobError>,
) {
    if let Some(id) = approval {
        let detail = match result {
            Ok(_) => "succeeded".to_string(),
            Err(e) => e.to_string(),
        };
        if let Err(e) = ctx
            .catalog
            .approval_outcome(id, result.is_ok(), &detail)
            .await
        {
            tracing::error!("could not record the outcome of approval {id}: {e}");
        }
    }
}

/// `custodian access totp enroll USER`: administrators only; the very first enrolment needs no
/// second factor (there is none yet), every later one the enrolling administrator's own.
pub(super) async fn enroll(
    ctx: &Context,
    user: &str,
    replace: bool,
    totp_stdin: bool,
) -> Result<access::totp::Enrolment, JobError> {
    let person = access::local_person(&ctx.config.access, &ctx.config.state_dir);
    guard::require_role(&person, access::Role::Administrator, "totp.enroll", ctx)
        .map_err(refused)?;
    if nix::unistd::User::from_name(user).ok().flatten().is_none() {
        return Err(JobError::Usage(format!(
            "`{user}` is not a user on this machine; enrol the unix user who will run custodian"
        )));
    }
    if !replace && access::totp::enrolled(ctx, user).await.map_err(refused)? {
        return Err(JobError::Usage(format!(
            "{user} is already enrolled; `--replace` gives them a new secret (the old one stops working)"
        )));
    }
    let first = ctx.catalog.factors().await?.is_empty();
    if !first {
        guarded(
            ctx,
            &Operation::TotpChange {
                user: user.to_string(),
                remove: false,
            },
            &GuardArgs {
                totp_stdin,
                ..GuardArgs::default()
            },
        )
        .await?;
    }
    access::totp::enrol(ctx, user, &person, replace)
        .await
        .map_err(refused)
}

pub(super) async fn remove(ctx: &Context, user: &str, totp_stdin: bool) -> Result<(), JobError> {
    let person = access::local_person(&ctx.config.access, &ctx.config.state_dir);
    guarded(
        ctx,
        &Operation::TotpChange {
            user: user.to_string(),
            remove: true,
        },
        &GuardArgs {
            totp_stdin,
            ..GuardArgs::default()
        },
    )
    .await?;
    access::totp::remove(ctx, user, &person)
        .await
        .map_err(refused)
}

/// One request to the daemon.
async fn call(socket: &Path, request: &Request) -> Result<Response, String> {
    let socket = socket.to_path_buf();
    let request = request.clone();
    tokio::task::spawn_blocking(move || crate::control::call(&socket, &request))
        .await
        .map_err(|e| format!("internal error: {e}"))?
        .map_err(|e| e.to_string())
}

/// Sends a request; when the daemon asks for a second factor, asks the person for it (or
/// reads it from stdin) and sends it again with the code.
async fn call_with_factor(
    socket: &Path,
    request: Request,
    totp_stdin: bool,
) -> Result<Response, String> {
    let user = crate::model::current_user();
    if totp_stdin {
        let code = read_code(true, &user).ok_or("--totp-stdin: no code on standard input")?;
        return call(socket, &request.with_second_factor(code)).await;
    }
    let first = call(socket, &request).await?;
    if first.code.as_deref() != Some("second_factor.required") {
        return Ok(first);
    }
    match read_code(false, &user) {
        Some(code) => call(socket, &request.with_second_factor(code)).await,
        None => Ok(first),
    }
}

/// Shows a daemon's answer (the envelope's `data` and `error` with `--json`); its exit code.
fn print(response: &Response, json: bool, view: View) -> Exit {
    // A refusal's sentence says it all for people; a failed job's result is worth showing.
    let show = response.ok || matches!(view, View::Outcome | View::Invocation);
    if !response.result.is_null() && (json || show) {
        emit(json, &response.result, |v| ctl_view::render(view, v));
    }
    if !response.ok {
        let code = response.code.as_deref().unwrap_or("daemon.refused");
        let message = response
            .error
            .as_deref()
            .unwrap_or("the daemon refused the request");
        super::reply::note(json, Failure::new(code, message), &[]);
    }
    match (response.ok, response.code.as_deref()) {
        (true, _) => Exit::Ok,
        (false, Some("usage")) => Exit::Usage,
        _ => Exit::JobFailed,
    }
}

fn unreachable(e: &str, json: bool) -> Exit {
    super::fail(json, e, "daemon.unreachable", &[], Exit::JobFailed)
}

fn socket_or_exit(socket: Option<PathBuf>, config: &Path, json: bool) -> Result<PathBuf, Exit> {
    crate::control::socket_path(socket, config)
        .map_err(|e| super::fail(json, &e, "config.unreadable", &[], Exit::Usage))
}

/// `custodian ctl …`: one request (a restore or an approval may be asked for a second factor).
/// With `wait`, a started run (`ctl run`, `ctl job`) is followed until it ends, and a restore
/// waiting for approval until it ran.
pub(super) async fn ctl(
    socket: Option<PathBuf>,
    config: &Path,
    request: Request,
    totp_stdin: bool,
    wait: bool,
    json: bool,
) -> Exit {
    let socket = match socket_or_exit(socket, config, json) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let view = View::of(&request);
    let response = match call_with_factor(&socket, request, totp_stdin).await {
        Ok(r) => r,
        Err(e) => return unreachable(&e, json),
    };
    if wait
        && response.code.as_deref() == Some("approval.required")
        && let Some(id) = response.result["request"].as_str()
    {
        if !json {
            eprintln!(
                "custodian: {}",
                response.error.as_deref().unwrap_or_default()
            );
            eprintln!("custodian: waiting for the approval of {id} …");
        }
        return wait_for_approval(&socket, id, json).await;
    }
    if wait
        && response.ok
        && matches!(view, View::Started | View::Invocation)
        && let Some(id) = response.result["id"].as_str()
    {
        return follow(&socket, id, json).await;
    }
    print(&response, json, view)
}

/// Polls the daemon until run `id` ends; prints it (exit 1 when it failed).
async fn follow(socket: &Path, id: &str, json: bool) -> Exit {
    let mut last_phase = String::new();
    loop {
        let response = match call(socket, &Request::Job { id: id.to_string() }).await {
            Ok(r) => r,
            Err(e) => return unreachable(&e, json),
        };
        if !response.ok || response.result["state"] != "running" {
            if response.ok && response.result["state"] == "failed" {
                let f = &response.result["failure"];
                let failed = Response {
                    ok: false,
                    code: f["code"].as_str().map(str::to_string),
                    error: f["message"].as_str().map(str::to_string),
                    result: response.result.clone(),
                };
                return print(&failed, json, View::Invocation);
            }
            return print(&response, json, View::Invocation);
        }
        if !json
            && let Some(phase) = response.result["progress"]["phase"].as_str()
            && phase != last_phase
        {
            eprintln!("custodian: {id}: {phase} …");
            last_phase = phase.to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Polls the daemon until request `id` ran (or expired), then prints how it went.
async fn wait_for_approval(socket: &Path, id: &str, json: bool) -> Exit {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let listing = match call(socket, &Request::Approvals {}).await {
            Ok(r) if r.ok => r.result,
            Ok(r) => return print(&r, json, View::Approvals),
            Err(e) => return unreachable(&e, json),
        };
        let found = listing["recent"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["id"] == id))
            .cloned();
        let Some(request) = found else { continue };
        let state = request["state"].as_str().unwrap_or_default();
        if matches!(state, "succeeded" | "failed" | "expired" | "approved") {
            let ok = state == "succeeded" || state == "approved";
            let out = Response {
                ok,
                code: (!ok).then(|| format!("approval.{state}")),
                error: (!ok).then(|| {
                    format!(
                        "request {id} {state}: {}",
                        request["outcome_detail"].as_str().unwrap_or("")
                    )
                }),
                result: request,
            };
            return print(&out, json, View::Outcome);
        }
    }
}

/// `custodian approve ID`: shows what will run, asks for confirmation (unless `--yes`) and the
/// approver's second factor, then approves.
pub(super) async fn approve(
    socket: Option<PathBuf>,
    config: &Path,
    id: String,
    yes: bool,
    totp_stdin: bool,
    json: bool,
) -> Exit {
    let socket = match socket_or_exit(socket, config, json) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    // What will run (the daemon names the precise reason if it is not pending).
    if let Ok(listing) = call(&socket, &Request::Approvals {}).await
        && listing.ok
        && let Some(pending) = listing.result["pending"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["id"] == id.as_str()))
    {
        if !json {
            eprintln!(
                "Request {id} by {} ({}), expires {}:\n  {}",
                pending["requested_by"].as_str().unwrap_or("?"),
                pending["origin"].as_str().unwrap_or("?"),
                pending["expires_at"].as_str().unwrap_or("?"),
                pending["summary"].as_str().unwrap_or("?"),
            );
        }
        if !yes {
            if !std::io::stdin().is_terminal() || totp_stdin {
                return super::fail(
                    json,
                    "approving needs a confirmation: run it on a terminal, or add --yes",
                    "usage",
                    &[],
                    Exit::Usage,
                );
            }
            eprint!("Approve? [y/N] ");
            let mut answer = String::new();
            let _ = std::io::stdin().lock().read_line(&mut answer);
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                return super::fail(
                    json,
                    "not approved",
                    "approval.declined",
                    &[],
                    Exit::JobFailed,
                );
            }
        }
    }
    let request = Request::Approve {
        request: id,
        second_factor: None,
    };
    match call_with_factor(&socket, request, totp_stdin).await {
        Ok(r) => print(&r, json, View::Outcome),
        Err(e) => unreachable(&e, json),
    }
}

/// `custodian approvals` from the catalog.
pub(super) async fn approvals(ctx: &Context, json: bool) -> Result<Exit, JobError> {
    let now = crate::model::time::format(crate::model::time::now());
    let pending = ctx.catalog.pending_approvals().await?;
    let recent = ctx.catalog.recent_approvals(20).await?;
    let with_state = |list: &[crate::catalog::Approval]| {
        list.iter()
            .map(|a| {
                let mut v = serde_json::to_value(a).unwrap_or_default();
                v["state"] = a.state(&now).into();
                v
            })
            .collect::<Vec<_>>()
    };
    let out = serde_json::json!({ "pending": with_state(&pending), "recent": with_state(&recent) });
    emit(json, &out, render::approvals);
    Ok(Exit::Ok)
}
