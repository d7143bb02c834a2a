//! The control socket: administrators and operators drive the running daemon from the CLI.
//!
//! The caller is identified by the socket's peer credentials (uid → user and groups), mapped to
//! a role by `[access]`: `viewer` (status, audit), `operator` (+ backups and scheduled backup,
//! copy and check jobs), `administrator` (+ drills, restores, prune jobs, approvals; root is
//! always one). A restore anywhere but the source's configured scratch server needs a second,
//! different administrator's `custodian approve REQUEST` before it expires. Every request —
//! refused ones included — is in the audit log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::protocol::{MAX_REQUEST, Request, Response};
use super::{Shared, execute};
use crate::audit::NewEntry;
use crate::config::Access;
use crate::config::schedules::JobKind;
use crate::job::{self, Context};

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Operator,
    Administrator,
}

impl Role {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Administrator => "administrator",
        }
    }
}

/// Who is calling.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: String,
    pub uid: u32,
    pub groups: Vec<String>,
    pub role: Option<Role>,
}

/// Maps a uid to its user, groups and role.
#[must_use]
pub fn identify(access: &Access, uid: u32, gid: u32) -> Caller {
    use nix::unistd::{Gid, Group, Uid, User};
    let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
    let name = user
        .as_ref()
        .map_or_else(|| format!("uid:{uid}"), |u| u.name.clone());
    let mut gids = vec![Gid::from_raw(gid)];
    if let Some(u) = &user
        && let Ok(cname) = std::ffi::CString::new(u.name.clone())
        && let Ok(list) = nix::unistd::getgrouplist(&cname, u.gid)
    {
        gids.extend(list);
    }
    let mut groups: Vec<String> = gids
        .iter()
        .filter_map(|g| Group::from_gid(*g).ok().flatten().map(|g| g.name))
        .collect();
    groups.sort();
    groups.dedup();
    let listed = |list: &[String]| {
        list.iter().any(|entry| match entry.strip_prefix('@') {
            Some(group) => groups.iter().any(|g| g == group),
            None => *entry == name,
        })
    };
    let role = if uid == 0 || listed(&access.administrators) {
        Some(Role::Administrator)
    } else if listed(&access.operators) {
        Some(Role::Operator)
    } else if listed(&access.viewers) {
        Some(Role::Viewer)
    } else {
        None
    };
    Caller {
        user: name,
        uid,
        groups,
        role,
    }
}

/// The role a request needs.
fn required(request: &Request, ctx: &Context) -> Role {
    match request {
        Request::Status {} | Request::Audit { .. } => Role::Viewer,
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
        Request::Drill { .. } | Request::Restore { .. } | Request::Approve { .. } => {
            Role::Administrator
        }
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
    let caller = identify(&ctx.config.access, cred.uid(), cred.gid());
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

fn audit(ctx: &Context, caller: &Caller, request: &Request, outcome: &str, detail: Option<String>) {
    ctx.audit_action(NewEntry {
        actor: caller.user.clone(),
        uid: caller.uid,
        role: caller.role.map_or("none", Role::as_str).to_string(),
        trigger: "socket".into(),
        action: request.action().into(),
        target: None,
        params: serde_json::to_value(request).unwrap_or_default(),
        outcome: outcome.into(),
        detail,
    });
}

async fn answer(
    ctx: &Arc<Context>,
    shared: &Arc<Shared>,
    caller: &Caller,
    request: Request,
) -> Response {
    let needed = required(&request, ctx);
    let Some(role) = caller.role.filter(|r| *r >= needed) else {
        let message = format!(
            "{} ({}) may not {}: it needs the {} role; ask an administrator to add you to [access] in {}",
            caller.user,
            caller.role.map_or("no role", Role::as_str),
            request.action(),
            needed.as_str(),
            ctx.config.file.display()
        );
        audit(ctx, caller, &request, "refused", Some(message.clone()));
        return Response::failure("access.denied", message);
    };
    let actor = ctx.for_caller(&caller.user, caller.uid, role.as_str());
    match request {
        Request::Restore { .. } if needs_approval(ctx, &request) => {
            match ctx
                .catalog
                .request_approval(
                    &request_json(&request),
                    &caller.user,
                    caller.uid,
                    ctx.config.access.approval_expiry,
                )
                .await
            {
                Ok((id, expires)) => {
                    let message = format!(
                        "this restore needs a second administrator: ask one to run `custodian approve {id}` before {expires}"
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
                        result: serde_json::json!({ "request": id, "expires_at": expires }),
                    }
                }
                Err(e) => Response::failure(e.code(), e.to_string()),
            }
        }
        Request::Approve { request: id } => {
            let pending = match ctx
                .catalog
                .take_approval(&id, &caller.user, caller.uid)
                .await
            {
                Ok(p) => p,
                Err(e) => return Response::failure(e.code(), e.to_string()),
            };
            let Some((original, requester, requester_uid)) = pending else {
                let message = format!(
                    "request {id} cannot be approved: it does not exist, has expired, was already approved, or is your own (a second administrator must approve)"
                );
                audit(
                    ctx,
                    caller,
                    &Request::Approve { request: id },
                    "refused",
                    Some(message.clone()),
                );
                return Response::failure("approval.refused", message);
            };
            audit(
                ctx,
                caller,
                &Request::Approve {
                    request: id.clone(),
                },
                "approved",
                Some(format!("request by {requester}")),
            );
            let Ok(original) = serde_json::from_value::<Request>(original) else {
                return Response::failure("approval.refused", "the approved request is unreadable");
            };
            let requester_ctx = ctx.for_caller(&requester, requester_uid, "administrator");
            run(&requester_ctx, shared, original).await
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

fn request_json(request: &Request) -> serde_json::Value {
    serde_json::to_value(request).unwrap_or_default()
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

async fn run(ctx: &Context, shared: &Arc<Shared>, request: Request) -> Response {
    let to_json = |v: Result<serde_json::Value, job::JobError>| match v {
        Ok(v) => Response::success(v),
        Err(e) => Response::failure(e.code(), e.to_string()),
    };
    match request {
        Request::Status {} => to_json(
            job::status(ctx)
                .await
                .map(|s| serde_json::json!({ "running": shared.running(), "status": s })),
        ),
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
            to_json(
                job::report(
                    ctx,
                    &job::ReportRequest {
                        period,
                        out: None,
                        send: true,
                    },
                )
                .await
                .map(|r| serde_json::to_value(r).unwrap_or_default()),
            )
        }
        Request::Backup { source } => to_json(
            job::backup(ctx, source.as_deref())
                .await
                .map(|r| serde_json::to_value(r).unwrap_or_default()),
        ),
        Request::Drill {
            source,
            location,
            snapshot,
        } => to_json(
            job::drill(
                ctx,
                &job::DrillRequest {
                    source,
                    location,
                    snapshot,
                },
                std::future::pending(),
            )
            .await
            .map(|r| serde_json::to_value(r).unwrap_or_default()),
        ),
        Request::Restore {
            snapshot,
            source,
            location,
            to,
            target,
            force,
        } => to_json(
            job::restore(
                ctx,
                &job::RestoreRequest {
                    snapshot,
                    to,
                    target,
                    location,
                    source,
                    force,
                    ..job::RestoreRequest::default()
                },
            )
            .await
            .map(|r| serde_json::to_value(r).unwrap_or_default()),
        ),
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
            let fresh = shared
                .running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(job.name.clone());
            if !fresh {
                return Response::failure("job.busy", format!("job {name} is already running"));
            }
            let ok = execute(ctx, shared, &job, std::future::pending()).await;
            shared
                .running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&job.name);
            if ok {
                Response::success(serde_json::json!({ "job": name }))
            } else {
                Response::failure(
                    "job.failed",
                    format!("job {name} failed; see `custodian runs` and the journal"),
                )
            }
        }
        Request::Approve { .. } => Response::failure("usage", "an approval cannot be approved"),
    }
}

/// Where the CLI finds the daemon: `--socket`, `$CUSTODIAN_SOCKET`, the configuration, or the
/// default.
#[must_use]
pub fn socket_path(explicit: Option<PathBuf>, config: &Path) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os("CUSTODIAN_SOCKET").map(PathBuf::from))
        .or_else(|| {
            crate::config::Config::load(config)
                .ok()
                .map(|c| c.daemon.control_socket)
        })
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONTROL_SOCKET))
}
