//! The control socket: administrators and operators drive the running daemon from the CLI.
//!
//! The caller is identified by the socket's peer credentials (uid → user and groups), mapped to
//! a role by `[access]`: `viewer` (status, audit), `operator` (+ backups and scheduled backup,
//! copy and check jobs), `administrator` (+ drills, restores, prune jobs, approvals; root is
//! always one). A restore anywhere but scratch needs the requester's second factor (when they
//! are enrolled, or always with `two-factor = "required"`) and a second, different
//! administrator's `custodian approve REQUEST` — with *their* second factor — before it
//! expires; it then runs as the requester, and a restored file is handed to them. Every
//! request — refused ones included — is in the audit log, without its codes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::runner::Shared;
use crate::access::{self, Grant, Operation, Person, Role, guard};
use crate::audit::NewEntry;
use crate::catalog::{NewApproval, Origin, Refusal};
use crate::config::schedules::JobKind;
use crate::control::{MAX_REQUEST, Request, Response};
use crate::job::{self, Context};

/// The role a request needs.
fn required(request: &Request, ctx: &Context) -> Role {
    match request {
        Request::Status {} | Request::Audit { .. } | Request::Job { .. } => Role::Viewer,
        Request::Backup { .. } | Request::Report { .. } => Role::Operator,
        Request::Run { job } => match ctx
            .config
            .daemon
            .schedules
            .iter()
            .find(|j| &j.name == job)
            .map(|j| j.kind)
        {
            Some(JobKind::Backup | JobKind::Copy | JobKind::Check | JobKind::Report) => {
                Role::Operator
            }
            _ => Role::Administrator,
        },
        Request::Drill { .. }
        | Request::Restore { .. }
        | Request::Approve { .. }
        | Request::Approvals {} => Role::Administrator,
    }
}

/// Binds the socket (replacing a stale one), mode 0660 with the configured group.
///
/// # Errors
/// When the socket cannot be created.
pub fn bind(path: &Path, group: Option<&str>) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        // A live daemon would answer; a stale socket file is removed.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another daemon is listening on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(group) = group {
        let gid = nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .ok_or_else(|| {
                std::io::Error::other(format!("access.socket-group `{group}` does not exist"))
            })?
            .gid
            .as_raw();
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    Ok(listener)
}

/// Serves requests until the task is aborted.
pub(super) fn serve(
    listener: UnixListener,
    contexts: watch::Receiver<Arc<Context>>,
    shared: Arc<Shared>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let ctx = contexts.borrow().clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                if let Err(e) = handle(stream, ctx, shared).await {
                    tracing::debug!("control connection: {e}");
                }
            });
        }
    })
}

async fn handle(
    mut stream: UnixStream,
    ctx: Arc<Context>,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let caller = access::identify(
        &ctx.config.access,
        cred.uid(),
        cred.gid(),
        "peer credentials",
    );
    let mut line = Vec::new();
    let read = {
        let (reader, _) = stream.split();
        let mut limited = BufReader::new(reader.take(MAX_REQUEST as u64 + 1));
        tokio::time::timeout(
            Duration::from_secs(10),
            limited.read_until(b'\n', &mut line),
        )
        .await
    };
    let response = match read {
        Err(_) => Response::failure("request.timeout", "no complete request within 10 s"),
        Ok(Err(e)) => Response::failure("request.unreadable", e.to_string()),
        Ok(Ok(_)) if line.len() > MAX_REQUEST => Response::failure(
            "request.too_large",
            format!("requests are at most {MAX_REQUEST} bytes"),
        ),
        Ok(Ok(_)) => match serde_json::from_slice::<Request>(&line) {
            Err(e) => Response::failure(
                "request.malformed",
                format!("the request is not valid: {e}"),
            ),
            Ok(request) => answer(&ctx, &shared, &caller, request).await,
        },
    };
    let mut out = serde_json::to_vec(&response).unwrap_or_default();
    out.push(b'\n');
    stream.write_all(&out).await?;
    stream.shutdown().await
}

fn audit(ctx: &Context, caller: &Person, request: &Request, outcome: &str, detail: Option<String>) {
    ctx.audit_action(NewEntry {
        actor: caller.user.clone(),
        uid: caller.uid,
        role: caller.role.map_or("none", Role::as_str).to_string(),
        trigger: "socket".into(),
        action: request.action().into(),
        target: None,
        params: serde_json::to_value(request.redacted()).unwrap_or_default(),
        outcome: outcome.into(),
        detail,
    });
}

fn refused(ctx: &Context, caller: &Person, request: &Request, e: &access::AccessError) -> Response {
    audit(ctx, caller, request, "refused", Some(e.to_string()));
    Response::failure(e.code(), e.to_string())
}

/// `custodian approve ID`, with `--socket` when this daemon does not listen where `ctl`
/// looks by default.
fn approve_hint(ctx: &Context, id: &str) -> String {
    let socket = &ctx.config.daemon.control_socket;
    if socket == Path::new(crate::config::DEFAULT_CONTROL_SOCKET) {
        format!("custodian approve {id}")
    } else {
        format!("custodian approve {id} --socket {}", socket.display())
    }
}

/// The dangerous operation a restore request is.
fn restore_operation(request: &Request) -> Option<Operation> {
    let Request::Restore {
        snapshot,
        source,
        location,
        to,
        target,
        force,
        ..
    } = request
    else {
        return None;
    };
    Some(Operation::Restore {
        snapshot: snapshot.clone(),
        source: source.clone(),
        location: location.clone(),
        target: target
            .clone()
            .or_else(|| to.as_ref().map(|p| p.display().to_string()))
            .unwrap_or_default(),
        force: *force,
    })
}

async fn answer(
    ctx: &Arc<Context>,
    shared: &Arc<Shared>,
    caller: &Person,
    request: Request,
) -> Response {
    let needed = required(&request, ctx);
    let role = match guard::require_role(caller, needed, request.action(), ctx) {
        Ok(role) => role,
        Err(e) => return refused(ctx, caller, &request, &e),
    };
    let actor = ctx.for_caller(&caller.user, caller.uid, role.as_str());
    match request {
        Request::Restore { .. } if needs_approval(ctx, &request) => {
            request_restore(ctx, &actor, caller, request).await
        }
        Request::Approve { .. } => approve(ctx, shared, &actor, caller, request).await,
        Request::Approvals {} => {
            let now = crate::model::time::format(crate::model::time::now());
            let listing = async {
                let pending = ctx.catalog.pending_approvals().await?;
                let recent = ctx.catalog.recent_approvals(20).await?;
                Ok::<_, crate::catalog::CatalogError>((pending, recent))
            }
            .await;
            match listing {
                Ok((pending, recent)) => {
                    let with_state = |list: Vec<crate::catalog::Approval>| {
                        list.into_iter()
                            .map(|a| {
                                let state = a.state(&now);
                                let mut v = serde_json::to_value(a).unwrap_or_default();
                                v["state"] = state.into();
                                v
                            })
                            .collect::<Vec<_>>()
                    };
                    audit(ctx, caller, &Request::Approvals {}, "succeeded", None);
                    Response::success(serde_json::json!({
                        "pending": with_state(pending),
                        "recent": with_state(recent),
                    }))
                }
                Err(e) => Response::failure(e.code(), e.to_string()),
            }
        }
        other => {
            let response = run(&actor, shared, other.clone()).await;
            if matches!(other, Request::Status {} | Request::Audit { .. }) {
                audit(
                    ctx,
                    caller,
                    &other,
                    if response.ok { "succeeded" } else { "failed" },
                    None,
                );
            }
            response
        }
    }
}

/// A restore outside scratch: the requester's second factor, then a request for approval.
async fn request_restore(
    ctx: &Context,
    actor: &Context,
    caller: &Person,
    request: Request,
) -> Response {
    let Request::Restore { second_factor, .. } = &request else {
        return Response::failure("usage", "not a restore");
    };
    let given = match guard::second_factor(actor, caller, "restore", second_factor.as_deref()).await
    {
        Ok(given) => given,
        Err(e) => return refused(ctx, caller, &request, &e),
    };
    let Some(op) = restore_operation(&request) else {
        return Response::failure("usage", "not a restore");
    };
    let summary = op.summary();
    let recorded = ctx
        .catalog
        .request_approval(&NewApproval {
            origin: Origin::Socket,
            action: "restore",
            summary: &summary,
            fingerprint: &op.fingerprint(),
            request: &serde_json::to_value(request.redacted()).unwrap_or_default(),
            requester: &caller.user,
            uid: caller.uid,
            requester_factor: given,
            valid_for: ctx.config.access.approval_expiry,
        })
        .await;
    match recorded {
        Ok((id, expires)) => {
            let message = format!(
                "this restore needs a second administrator: ask one to run `{}` before {expires}; it then runs as you (`custodian approvals` shows how it went)",
                approve_hint(ctx, &id)
            );
            audit(
                ctx,
                caller,
                &request,
                "approval-requested",
                Some(id.clone()),
            );
            Response {
                ok: false,
                code: Some("approval.required".into()),
                error: Some(message),
                result: serde_json::json!({
                    "request": id,
                    "expires_at": expires,
                    "summary": summary,
                    "second_factor": given,
                }),
            }
        }
        Err(e) => Response::failure(e.code(), e.to_string()),
    }
}

/// A second administrator approves: their second factor, the approval (or the reason it is
/// refused), then — for a request through the socket — the operation, as its requester.
async fn approve(
    ctx: &Arc<Context>,
    shared: &Arc<Shared>,
    actor: &Context,
    caller: &Person,
    request: Request,
) -> Response {
    let Request::Approve {
        request: id,
        second_factor,
    } = &request
    else {
        return Response::failure("usage", "not an approval");
    };
    let given = match guard::second_factor(actor, caller, "approve", second_factor.as_deref()).await
    {
        Ok(given) => given,
        Err(e) => return refused(ctx, caller, &request, &e),
    };
    let approved = match ctx
        .catalog
        .approve(id, &caller.user, caller.uid, given)
        .await
    {
        Ok(Ok(a)) => a,
        Ok(Err(refusal)) => {
            let message = match refusal {
                Refusal::Unknown => format!(
                    "request {id} does not exist; `custodian approvals` lists the pending ones"
                ),
                Refusal::Expired { at } => {
                    format!("request {id} expired at {at}; the requester must ask again")
                }
                Refusal::AlreadyApproved { by, at } => {
                    format!("request {id} was already approved by {by} at {at}")
                }
                Refusal::Own => format!(
                    "request {id} is your own: a second, different administrator must approve it"
                ),
            };
            audit(ctx, caller, &request, "refused", Some(message.clone()));
            return Response::failure("approval.refused", message);
        }
        Err(e) => return Response::failure(e.code(), e.to_string()),
    };
    audit(
        ctx,
        caller,
        &request,
        "approved",
        Some(format!(
            "request by {}: {}",
            approved.requested_by, approved.summary
        )),
    );
    if approved.origin == Origin::Cli {
        notify(ctx, &approved, &caller.user, "approved", None).await;
        return Response::success(serde_json::json!({
            "approved": id,
            "summary": approved.summary,
            "requester": approved.requested_by,
            "next": format!("{} can now run the same command with --approval {id}", approved.requested_by),
        }));
    }
    let Ok(original) = serde_json::from_value::<Request>(approved.request.clone()) else {
        return Response::failure("approval.refused", "the approved request is unreadable");
    };
    let requester_ctx = ctx.for_caller(
        &approved.requested_by,
        approved.requested_uid,
        "administrator",
    );
    requester_ctx.set_grant(
        serde_json::to_value(Grant {
            id: Grant::new_id(),
            action: approved.action.clone(),
            four_eyes: true,
            second_factor: approved.requester_factor,
            approval: Some(approved.id.clone()),
            approved_by: Some(caller.user.clone()),
            approver_second_factor: Some(given),
            break_glass: None,
            identified_by: "peer credentials".into(),
        })
        .unwrap_or_default(),
    );
    let mut response = run(&requester_ctx, shared, original.clone()).await;
    if response.ok
        && let Request::Restore { to: Some(path), .. } = &original
    {
        let gid = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(approved.requested_uid))
            .ok()
            .flatten()
            .map_or(approved.requested_uid, |u| u.gid.as_raw());
        match access::handoff::give(path, approved.requested_uid, gid) {
            Ok(how) => {
                response.result["handed_to"] = serde_json::json!({
                    "user": approved.requested_by, "how": how,
                })
            }
            Err(e) => {
                tracing::error!("{e}");
                response.result["handed_to"] = serde_json::json!({ "error": e.to_string() });
            }
        }
    }
    let detail = if response.ok {
        "succeeded".to_string()
    } else {
        response.error.clone().unwrap_or_default()
    };
    if let Err(e) = ctx
        .catalog
        .approval_outcome(&approved.id, response.ok, &detail)
        .await
    {
        tracing::error!(
            "could not record the outcome of request {}: {e}",
            approved.id
        );
    }
    notify(
        ctx,
        &approved,
        &caller.user,
        if response.ok { "succeeded" } else { "failed" },
        Some(detail),
    )
    .await;
    response
}

/// Tells the requester (through the alert channels) what became of their request.
async fn notify(
    ctx: &Context,
    approved: &crate::catalog::Approval,
    approver: &str,
    status: &'static str,
    detail: Option<String>,
) {
    let event = crate::job::alert::JobEvent {
        error: None,
        job: format!("approval {}", approved.id),
        kind: "approval",
        status: if status == "failed" {
            "failed"
        } else {
            "succeeded"
        },
        host: ctx.config.hostname.clone(),
        time: crate::model::time::format(crate::model::time::now()),
        detail: Some(format!(
            "{}'s request {} ({}) was approved by {approver}: {status}{}",
            approved.requested_by,
            approved.id,
            approved.summary,
            detail.map(|d| format!(" ({d})")).unwrap_or_default()
        )),
    };
    crate::job::alert::send(ctx, &event).await;
}

/// A restore is dangerous unless it goes into scratch: the source's scratch server, or a file
/// in Custodian's private scratch directory.
fn needs_approval(ctx: &Context, request: &Request) -> bool {
    let Request::Restore {
        target, to, source, ..
    } = request
    else {
        return false;
    };
    let target = match (target, to) {
        (Some(url), _) => url.clone(),
        (None, Some(path)) => path.display().to_string(),
        (None, None) => return true,
    };
    !ctx.config.is_scratch_target(source.as_deref(), &target)
}

/// Runs a job request as an invocation (so `ctl status` shows its progress) and answers with
/// its outcome, or why it failed.
async fn invoke(ctx: &Context, shared: &Arc<Shared>, request: job::Request) -> Response {
    let progress = Arc::new(job::progress::Progress::hidden());
    let id = shared.begin(request.kind(), request.kind(), "socket", progress.clone());
    let run_ctx = ctx.for_job(None, progress);
    let result = job::run(&run_ctx, &request, &shared.shutdown).await;
    let failure = match &result {
        Ok(o) => o.failure(),
        Err(e) => Some(e.failure()),
    };
    shared.end(&id, failure.clone());
    match (result, failure) {
        (Ok(outcome), None) => Response::success(serde_json::to_value(outcome).unwrap_or_default()),
        (Ok(outcome), Some(f)) => Response {
            ok: false,
            code: Some(f.code.clone()),
            error: Some(f.message.clone()),
            result: serde_json::to_value(outcome).unwrap_or_default(),
        },
        (Err(_), Some(f)) => Response::failure(&f.code, f.message),
        (Err(e), None) => Response::failure(e.code(), e.to_string()),
    }
}

async fn run(ctx: &Context, shared: &Arc<Shared>, request: Request) -> Response {
    let to_json = |v: Result<serde_json::Value, job::JobError>| match v {
        Ok(v) => Response::success(v),
        Err(e) => Response::failure(e.code(), e.to_string()),
    };
    match request {
        Request::Status {} => to_json(job::status(ctx).await.map(|s| {
            serde_json::json!({
                "running": shared.active(),
                "schedules": shared.schedules(&ctx.config.daemon.schedules),
                "status": s,
            })
        })),
        Request::Job { id } => match shared.invocation(&id) {
            Some(i) => Response::success(serde_json::to_value(i).unwrap_or_default()),
            None => Response::failure(
                "usage",
                format!("no job run is known as {id} (the daemon remembers the last 200)"),
            ),
        },
        Request::Audit {
            since,
            until,
            actor,
            action,
        } => match ctx.audit.list(&crate::audit::Filter {
            since,
            until,
            actor,
            action,
        }) {
            Ok(entries) => Response::success(serde_json::to_value(entries).unwrap_or_default()),
            Err(e) => Response::failure("audit.unreadable", e.to_string()),
        },
        Request::Report { period } => {
            let tz = &ctx.config.reports.time_zone;
            let period = match period
                .as_deref()
                .map(|p| crate::report::Period::parse(p, tz))
            {
                Some(Err(e)) => return to_json(Err(job::JobError::Usage(e.to_string()))),
                Some(Ok(p)) => Some(p),
                None => None,
            };
            let request = job::Request::Report(job::ReportRequest {
                period,
                out: None,
                send: true,
            });
            invoke(ctx, shared, request).await
        }
        Request::Backup { source } => invoke(ctx, shared, job::Request::Backup { source }).await,
        Request::Drill {
            source,
            location,
            snapshot,
        } => {
            let request = job::Request::Drill(job::DrillRequest {
                source,
                location,
                snapshot,
                pitr: None,
            });
            invoke(ctx, shared, request).await
        }
        Request::Restore {
            snapshot,
            source,
            location,
            to,
            target,
            force,
            ..
        } => {
            let request = job::Request::Restore(job::RestoreRequest {
                snapshot,
                to,
                target,
                location,
                source,
                force,
                ..job::RestoreRequest::default()
            });
            invoke(ctx, shared, request).await
        }
        Request::Run { job: name } => {
            let Some(job) = ctx
                .config
                .daemon
                .schedules
                .iter()
                .find(|j| j.name == name)
                .cloned()
            else {
                return Response::failure("usage", format!("no scheduled job is named `{name}`"));
            };
            let ctx =
                Arc::new(ctx.for_job(Some(&job.name), Arc::new(job::progress::Progress::hidden())));
            match super::launch(&ctx, shared, &job, jiff::Timestamp::now()).await {
                Some(id) => Response::success(serde_json::json!({ "job": name, "id": id })),
                None => Response::failure(
                    "job.busy",
                    format!("job {name} is already running (or the daemon is stopping)"),
                ),
            }
        }
        Request::Approve { .. } | Request::Approvals {} => {
            Response::failure("usage", "an approval cannot be approved")
        }
    }
}
