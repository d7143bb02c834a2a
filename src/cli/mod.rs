//! The command line: argument parsing, dispatch to jobs, rendering (human or `--json`), and the
//! mapping of outcomes to stable exit codes. The only place where errors become user text.

mod access;
mod args;
mod ctl_view;
mod journal;
mod render;
mod reply;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use serde::Serialize;

pub use args::{
    AccessCommand, ArchiveCommand, AuditCommand, Cli, Command, ConfigCommand, CtlCommand,
    ErasureCommand, GuardArgs, KeysCommand, ReportCommand, TotpCommand, WalCommand,
};

use crate::catalog::Trigger;
use crate::config::{Config, ConfigError, Diagnostic, Severity};
use crate::job::{self, Context, JobError};
use crate::secret::SecretRef;

pub use crate::model::Exit;

/// Entry point used by `main`.
#[must_use]
pub fn main() -> ExitCode {
    use clap::FromArgMatches;
    let json = std::env::args().any(|a| a == "--json");
    let parsed = args::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return usage_error(&e, json),
    };
    let mut command = Vec::new();
    let mut level = &matches;
    while let Some((name, sub)) = level.subcommand() {
        command.push(name);
        level = sub;
    }
    reply::begin(&command.join(" "), cli.json, cli.progress);
    init_logging(cli.verbose, matches!(cli.command, Command::Daemon));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("custodian: cannot start the async runtime: {e}");
            return Exit::JobFailed.into();
        }
    };
    let exit = runtime.block_on(run(cli));
    reply::finish(exit).into()
}

/// A command line clap refused: its own message for people, the envelope under `--json`;
/// `--help` and `--version` are not errors.
fn usage_error(e: &clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayVersion => {
            if json {
                reply::begin("version", true, false);
                reply::emit(true, &version_info(), |_| String::new());
                reply::finish(Exit::Ok).into()
            } else {
                let _ = e.print();
                ExitCode::SUCCESS
            }
        }
        _ if json => {
            let text = e.render().to_string();
            let message = text
                .lines()
                .next()
                .unwrap_or("the command line is not valid")
                .trim_start_matches("error: ")
                .to_string();
            let command = attempted_command();
            let hint = if command.is_empty() {
                "run `custodian --help`".to_string()
            } else {
                format!("run `custodian {command} --help`")
            };
            reply::begin(&command, true, false);
            reply::note(
                true,
                crate::job::Failure {
                    code: "usage".into(),
                    message,
                    hint: Some(hint),
                },
                &[],
            );
            reply::finish(Exit::Usage).into()
        }
        _ => {
            let _ = e.print();
            ExitCode::from(Exit::Usage as u8)
        }
    }
}

/// The subcommand chain a refused command line names (`backup`, `ctl status`), as far as it is
/// recognisable: words that are subcommands of the command before them.
fn attempted_command() -> String {
    let mut level = args::command();
    let mut chain = Vec::new();
    for word in std::env::args().skip(1) {
        if word.starts_with('-') {
            continue;
        }
        let Some(sub) = level.find_subcommand(&word).cloned() else {
            continue;
        };
        chain.push(sub.get_name().to_string());
        level = sub;
    }
    chain.join(" ")
}

/// What `--version` says, in full.
#[derive(Serialize)]
pub(crate) struct VersionInfo {
    pub version: &'static str,
    pub commit: &'static str,
    pub build_date: &'static str,
    pub rustic_core: &'static str,
    pub restic_repository_format: u32,
}

pub(crate) fn version_info() -> VersionInfo {
    VersionInfo {
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("CUSTODIAN_COMMIT"),
        build_date: env!("CUSTODIAN_BUILD_DATE"),
        rustic_core: env!("CUSTODIAN_RUSTIC_CORE"),
        restic_repository_format: 2,
    }
}

fn init_logging(verbose: u8, daemon: bool) {
    use tracing_subscriber::EnvFilter;
    // rustic_core logs its own errors with their whole chain (and a backtrace when
    // RUST_BACKTRACE is set); Custodian reports every outcome in its own sentences, so the
    // library's log is for `-vv` only.
    let default = match verbose {
        // The daemon's log is the journal: what it does is worth keeping.
        0 if daemon => "info,rustic_core=off",
        0 => "warn,rustic_core=off",
        1 => "info,rustic_core=off",
        _ => "debug",
    };
    let mut filter =
        EnvFilter::try_from_env("CUSTODIAN_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // The AWS SDK's debug output carries request parameters and credential identifiers; it
    // never goes to Custodian's logs, whatever the level asked for.
    for directive in [
        "aws_smithy_runtime=info",
        "aws_smithy_runtime_api=info",
        "aws_smithy_http_client=info",
        "aws_sigv4=info",
        "aws_config=info",
        "aws_sdk_s3=info",
        "aws_credential_types=info",
        "hyper_util=info",
    ] {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    if journal::stderr_is_journal() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .fmt_fields(journal::Fields::default())
            .event_format(journal::Prefixed::new())
            .try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

pub(crate) use reply::{emit, fail};

fn job_failure(json: bool, err: &JobError) -> Exit {
    let exit = if err.is_usage() {
        Exit::Usage
    } else {
        Exit::JobFailed
    };
    reply::note(json, err.failure(), &[]);
    exit
}

/// Loads the configuration, printing diagnostics on failure.
fn load_config(path: &Path, json: bool) -> Result<Arc<Config>, Exit> {
    match Config::load(path) {
        Ok(config) => {
            if !json {
                for warning in &config.warnings {
                    eprintln!("{warning}");
                }
            }
            Ok(Arc::new(config))
        }
        Err(err) => {
            let code = match &err {
                ConfigError::NotFound { .. } => "config.not_found",
                ConfigError::Unreadable { .. } => "config.unreadable",
                ConfigError::Invalid { .. } => "config.invalid",
            };
            Err(fail(
                json,
                &err.to_string(),
                code,
                err.diagnostics(),
                Exit::Usage,
            ))
        }
    }
}

async fn context(path: &Path, json: bool, trigger: Trigger) -> Result<Context, Exit> {
    let config = load_config(path, json)?;
    Context::new(config, trigger)
        .await
        .map_err(|e| job_failure(json, &e))
}

async fn run(cli: Cli) -> Exit {
    let json = cli.json;
    let progress = if json && cli.progress {
        job::progress::Display::Ndjson
    } else if !json && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        job::progress::Display::Terminal
    } else {
        job::progress::Display::Hidden
    };
    let config_path = cli.config.clone();
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check,
        } => config_check(&config_path, json),
        // An auditor verifies with nothing but the key: no configuration, no state directory.
        Command::Report {
            command:
                Some(ReportCommand::Verify {
                    dir,
                    public_key: Some(key),
                }),
            ..
        } => match crate::report::sign::public_from_arg(&key) {
            Ok(pk) => {
                let v = crate::report::verify_bundle(&dir, Some(&pk));
                emit(json, &v, render::report_verification);
                if v.ok { Exit::Ok } else { Exit::JobFailed }
            }
            Err(e) => fail(json, &e.to_string(), "report.key", &[], Exit::Usage),
        },
        Command::Demo { dir } => match crate::demo::run(&dir).await {
            Ok(out) => {
                emit(json, &out, crate::demo::render);
                if out.ok { Exit::Ok } else { Exit::JobFailed }
            }
            Err(e) => job_failure(json, &e),
        },
        Command::Daemon => crate::daemon::run(&config_path).await,
        Command::Doctor { unit } => {
            let loaded = Config::load(&config_path).map_err(|e| e.to_string());
            let report =
                job::doctor::run(loaded.as_ref().map_err(Clone::clone), unit.as_deref()).await;
            emit(json, &report, render::doctor);
            if report.ok {
                Exit::Ok
            } else {
                let failed = report.failures();
                fail(
                    json,
                    &format!("doctor found {}", render::count(failed, "problem")),
                    "doctor.found_problems",
                    &[],
                    Exit::JobFailed,
                )
            }
        }
        Command::Completions { shell } => {
            let mut cmd = args::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "custodian", &mut out);
            use std::io::Write;
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::stdout().write_all(&out);
            Exit::Ok
        }
        Command::Man => {
            let mut out = Vec::new();
            match clap_mangen::Man::new(args::command()).render(&mut out) {
                Ok(()) => {
                    use std::io::Write;
                    let _ = std::io::stdout().write_all(&out);
                    Exit::Ok
                }
                Err(e) => fail(json, &e.to_string(), "io", &[], Exit::JobFailed),
            }
        }
        Command::Ctl { socket, command } => {
            use crate::control::Request;
            let (mut totp_stdin, mut wait) = (false, false);
            let request = match command {
                CtlCommand::Status => Request::Status {},
                CtlCommand::Run {
                    job,
                    wait: and_wait,
                } => {
                    wait = and_wait;
                    Request::Run { job }
                }
                CtlCommand::Job { id, wait: and_wait } => {
                    wait = and_wait;
                    Request::Job { id }
                }
                CtlCommand::Backup { source } => Request::Backup { source },
                CtlCommand::Drill {
                    source,
                    location,
                    snapshot,
                } => Request::Drill {
                    source,
                    location,
                    snapshot,
                },
                CtlCommand::Restore {
                    snapshot,
                    to,
                    target,
                    location,
                    source,
                    force,
                    totp_stdin: from_stdin,
                    wait: and_wait,
                } => {
                    (totp_stdin, wait) = (from_stdin, and_wait);
                    Request::Restore {
                        snapshot,
                        source,
                        location,
                        to: to.map(|p| std::path::absolute(&p).unwrap_or(p)),
                        target,
                        force,
                        second_factor: None,
                    }
                }
                CtlCommand::Approvals => Request::Approvals {},
                CtlCommand::Report { period } => Request::Report { period },
                CtlCommand::Audit {
                    since,
                    until,
                    actor,
                    action,
                } => Request::Audit {
                    since,
                    until,
                    actor,
                    action,
                },
            };
            access::ctl(socket, &config_path, request, totp_stdin, wait, json).await
        }
        Command::Approve {
            request,
            socket,
            yes,
            totp_stdin,
        } => access::approve(socket, &config_path, request, yes, totp_stdin, json).await,
        Command::GenerateCrm {
            url,
            password_file,
            scale,
            size,
            churn,
        } => match crate::demo::generate_crm(&url, password_file, scale, size, churn).await {
            Ok(out) => {
                emit(json, &out, |o| {
                    format!(
                        "{} {}: {} rows in {:.1} s",
                        o["action"].as_str().unwrap_or(""),
                        o["database"].as_str().unwrap_or(""),
                        o["rows"],
                        o["seconds"].as_f64().unwrap_or(0.0)
                    )
                });
                Exit::Ok
            }
            Err(e) => job_failure(json, &e),
        },
        command => {
            let mut ctx = match context(&config_path, json, Trigger::Cli).await {
                Ok(ctx) => ctx,
                Err(exit) => return exit,
            };
            // The accountable person: the invoking user of `sudo`, when there is one.
            let person = crate::access::local_person(&ctx.config.access, &ctx.config.state_dir);
            ctx.actor = person.user;
            ctx.uid = person.uid;
            ctx.progress = Arc::new(job::progress::Progress::new(progress));
            let exit = dispatch(&ctx, command, json).await;
            ctx.catalog.close().await;
            exit
        }
    }
}

/// Runs a job through `job::run` (Ctrl-C or SIGTERM cancels it), records an approval's
/// outcome, and says how it went.
async fn run_job(
    ctx: &Context,
    request: job::Request,
    approval: Option<String>,
    json: bool,
) -> Result<Exit, JobError> {
    let cancel = tokio_util::sync::CancellationToken::new();
    let stopper = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            cancel.cancel();
        })
    };
    let result = job::run(ctx, &request, &cancel).await;
    stopper.abort();
    access::finished(ctx, approval.as_deref(), &result).await;
    let outcome = result?;
    emit(json, &outcome, render::outcome);
    if let Some(failure) = outcome.failure() {
        reply::note(json, failure, &[]);
    }
    Ok(all_ok(outcome.is_success()))
}

async fn dispatch(ctx: &Context, command: Command, json: bool) -> Exit {
    let result: Result<Exit, JobError> = async {
        Ok(match command {
            Command::Init => run_job(ctx, job::Request::Init, None, json).await?,
            Command::Backup { source } => {
                run_job(ctx, job::Request::Backup { source }, None, json).await?
            }
            Command::Copy { source } => {
                run_job(ctx, job::Request::Copy { source }, None, json).await?
            }
            Command::Snapshots { location, source } => {
                let lists = job::snapshots(ctx, location.as_deref(), source.as_deref()).await?;
                emit(json, &lists, |l| render::snapshots(l));
                all_ok(lists.iter().all(|l| l.error.is_none()))
            }
            Command::Check {
                location,
                read_data_subset,
                rotate,
            } => {
                let request = job::Request::Check {
                    location,
                    read_data: read_data_subset,
                    rotate,
                };
                run_job(ctx, request, None, json).await?
            }
            Command::Restore {
                snapshot: None,
                to_time,
                to_lsn,
                to_position,
                to_restore_point,
                to_latest: _,
                target_dir,
                target,
                target_password_file,
                target_password_env,
                preview,
                start_port,
                location,
                source,
                guard,
                ..
            } => {
                let target_url = target;
                let target_password = target_password_file
                    .map(SecretRef::File)
                    .or(target_password_env.map(SecretRef::Env));
                let target = match (to_time, to_lsn.or(to_position), to_restore_point) {
                    (Some(t), ..) => crate::engine::pitr::RecoveryTarget::Time(
                        crate::model::time::parse_instant(&t).map_err(JobError::Usage)?,
                    ),
                    (_, Some(l), _) => crate::engine::pitr::RecoveryTarget::Lsn(l),
                    (_, _, Some(n)) => crate::engine::pitr::RecoveryTarget::RestorePoint(n),
                    _ => crate::engine::pitr::RecoveryTarget::Latest,
                };
                let target_dir = target_dir.map(|p| std::path::absolute(&p).unwrap_or(p));
                let request = job::pitr::PitrRequest {
                    source: source.clone().unwrap_or_default(),
                    target: target.clone(),
                    target_dir: target_dir.unwrap_or_default(),
                    location: location.clone(),
                    preview,
                    start_port,
                    target_url: target_url.clone(),
                    target_password,
                    point_lsn: None,
                };
                let approval = if preview {
                    None
                } else {
                    let op = crate::access::Operation::Restore {
                        snapshot: format!("point in time: {target}"),
                        source: source.clone(),
                        location: location.clone(),
                        target: target_url
                            .clone()
                            .unwrap_or_else(|| request.target_dir.display().to_string()),
                        force: false,
                    };
                    access::guarded(ctx, &op, &guard).await?
                };
                let result = job::pitr::restore_to_point(ctx, &request).await;
                access::finished(ctx, approval.as_deref(), &result).await;
                emit(json, &result?, render::pitr);
                Exit::Ok
            }
            Command::Restore {
                snapshot: Some(snapshot),
                to,
                target,
                target_password_file,
                target_password_env,
                jobs,
                with_globals,
                location,
                source,
                force,
                guard,
                ..
            } => {
                let target_password = target_password_file
                    .map(SecretRef::File)
                    .or(target_password_env.map(SecretRef::Env));
                let to = to.map(|p| std::path::absolute(&p).unwrap_or(p));
                let where_to = target
                    .clone()
                    .or_else(|| to.as_ref().map(|p| p.display().to_string()))
                    .unwrap_or_default();
                // Into scratch, a restore overwrites and exposes nothing: no guard.
                let approval = if ctx.config.is_scratch_target(source.as_deref(), &where_to) {
                    None
                } else {
                    let op = crate::access::Operation::Restore {
                        snapshot: snapshot.clone(),
                        source: source.clone(),
                        location: location.clone(),
                        target: where_to,
                        force,
                    };
                    access::guarded(ctx, &op, &guard).await?
                };
                let request = job::Request::Restore(job::RestoreRequest {
                    snapshot,
                    to,
                    target,
                    target_password,
                    location,
                    source,
                    force,
                    jobs: jobs.unwrap_or(0),
                    with_globals,
                });
                run_job(ctx, request, approval, json).await?
            }
            Command::Verify {
                snapshot,
                to,
                target,
                target_password_file,
                target_password_env,
                location,
                source,
            } => {
                let target_password = target_password_file
                    .map(SecretRef::File)
                    .or(target_password_env.map(SecretRef::Env));
                let request = job::Request::Verify(job::VerifyRequest {
                    snapshot,
                    location,
                    source,
                    to,
                    target,
                    target_password,
                });
                run_job(ctx, request, None, json).await?
            }
            Command::Forget {
                location,
                apply,
                guard,
            } => {
                let approval = if apply {
                    let op = crate::access::Operation::Forget {
                        location: location.clone(),
                    };
                    access::guarded(ctx, &op, &guard).await?
                } else {
                    None
                };
                run_job(
                    ctx,
                    job::Request::Forget { location, apply },
                    approval,
                    json,
                )
                .await?
            }
            Command::Prune {
                location,
                apply,
                guard,
            } => {
                let approval = if apply {
                    let op = crate::access::Operation::Prune {
                        location: location.clone(),
                    };
                    access::guarded(ctx, &op, &guard).await?
                } else {
                    None
                };
                run_job(ctx, job::Request::Prune { location, apply }, approval, json).await?
            }
            Command::Status => {
                let status = job::status(ctx).await?;
                emit(json, &status, render::status);
                all_ok(status.all_ok())
            }
            Command::Drill {
                source,
                location,
                snapshot,
                pitr,
            } => {
                let request = job::Request::Drill(job::DrillRequest {
                    source,
                    location,
                    snapshot,
                    pitr,
                });
                run_job(ctx, request, None, json).await?
            }
            Command::Drills {
                source,
                location,
                limit,
            } => {
                let drills = ctx
                    .catalog
                    .drills(source.as_deref(), location.as_deref(), limit)
                    .await?;
                emit(json, &drills, |d| render::drills(d));
                Exit::Ok
            }
            Command::Audit {
                command: AuditCommand::Verify,
            } => {
                let v = ctx
                    .audit
                    .verify()
                    .map_err(|e| JobError::io("verifying the audit log", &e))?;
                emit(json, &v, |v| {
                    render::audit_verification(v, ctx.audit.path())
                });
                all_ok(v.ok)
            }
            Command::Audit {
                command:
                    AuditCommand::List {
                        since,
                        until,
                        actor,
                        action,
                    },
            } => {
                let entries = ctx
                    .audit
                    .list(&crate::audit::Filter {
                        since,
                        until,
                        actor,
                        action,
                    })
                    .map_err(|e| JobError::io("reading the audit log", &e))?;
                emit(json, &entries, |e| render::audit_entries(e));
                Exit::Ok
            }
            Command::Report {
                command: Some(ReportCommand::Verify { dir, public_key }),
                ..
            } => {
                let path = public_key.map_or_else(
                    || crate::report::generate::key_paths(&ctx.config).1,
                    PathBuf::from,
                );
                let pk = crate::report::sign::read_public(&path)
                    .map_err(|e| JobError::Usage(e.to_string()))?;
                let v = crate::report::verify_bundle(&dir, Some(&pk));
                emit(json, &v, render::report_verification);
                all_ok(v.ok)
            }
            Command::Report {
                command: None,
                period,
                from,
                to,
                current,
                out,
                no_mail,
            } => {
                use crate::report::Period;
                let period = match (period, from, to, current) {
                    (Some(p), ..) => Some(
                        Period::parse(&p, &ctx.config.reports.time_zone)
                            .map_err(|e| JobError::Usage(e.to_string()))?,
                    ),
                    (None, Some(f), Some(t), _) => Some(
                        Period::between(&f, &t, &ctx.config.reports.time_zone)
                            .map_err(|e| JobError::Usage(e.to_string()))?,
                    ),
                    (None, _, _, true) => Some(
                        Period::containing(
                            ctx.config.reports.period,
                            crate::model::time::now(),
                            &ctx.config.reports.time_zone,
                        )
                        .map_err(|e| JobError::Usage(e.to_string()))?,
                    ),
                    _ => None,
                };
                let request = job::Request::Report(job::ReportRequest {
                    period,
                    out,
                    send: !no_mail,
                });
                run_job(ctx, request, None, json).await?
            }
            Command::Erasure { command } => match command {
                ErasureCommand::Record {
                    source,
                    subject,
                    request,
                } => {
                    let r = job::erasure::record(
                        ctx,
                        &source,
                        &[job::erasure::ErasureRequest { subject, request }],
                    )
                    .await?;
                    emit(json, &r, render::erasure_recorded);
                    Exit::Ok
                }
                ErasureCommand::Import {
                    source,
                    file,
                    guard,
                } => {
                    let op = crate::access::Operation::ErasureImport {
                        source: source.clone(),
                        file: std::path::absolute(&file)
                            .unwrap_or_else(|_| file.clone())
                            .display()
                            .to_string(),
                    };
                    let approval = access::guarded(ctx, &op, &guard).await?;
                    let is_ledger = std::fs::read_to_string(&file).is_ok_and(|t| {
                        t.contains(job::erasure::LEDGER_FORMAT) && t.trim_start().starts_with('{')
                    });
                    let result = if is_ledger {
                        job::erasure::restore_ledger(ctx, &source, &file).await
                    } else {
                        match job::erasure::read_import(&file) {
                            Ok(requests) => job::erasure::record(ctx, &source, &requests).await,
                            Err(e) => Err(e),
                        }
                    };
                    access::finished(ctx, approval.as_deref(), &result).await;
                    emit(json, &result?, render::erasure_recorded);
                    Exit::Ok
                }
                ErasureCommand::Status { source, subject } => {
                    let s =
                        job::erasure::status(ctx, source.as_deref(), subject.as_deref()).await?;
                    emit(json, &s, |s| render::erasure_status(s));
                    Exit::Ok
                }
            },
            Command::BaseBackup { source } => {
                run_job(ctx, job::Request::BaseBackup { source }, None, json).await?
            }
            Command::Wal {
                command: WalCommand::Push { source, path },
            } => {
                let pushed = job::wal::push(ctx, &source, &path).await?;
                emit(json, &pushed, |p| {
                    format!(
                        "{}: {} stored in {}",
                        p.source,
                        p.file,
                        p.locations.join(", ")
                    )
                });
                Exit::Ok
            }
            Command::Wal {
                command: WalCommand::Fetch { source, name, path },
            } => {
                let bytes = job::wal::fetch(ctx, &source, &name, &path).await?;
                emit(
                    json,
                    &serde_json::json!({ "file": name, "bytes": bytes }),
                    |_| String::new(),
                );
                Exit::Ok
            }
            Command::Archive {
                command: ArchiveCommand::Run { source },
            } => {
                let stop = tokio_util::sync::CancellationToken::new();
                let stopper = {
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        shutdown_signal().await;
                        stop.cancel();
                    })
                };
                let result = job::wal::run(ctx, source.as_deref(), stop).await;
                stopper.abort();
                emit(json, &result?, |r| render::archive_runs(r));
                Exit::Ok
            }
            Command::Archive {
                command: ArchiveCommand::Status { source },
            } => {
                let status = job::archive::status(ctx, source.as_deref()).await?;
                emit(json, &status, |s| render::archive_status(s));
                Exit::Ok
            }
            Command::Archive {
                command: ArchiveCommand::Check { source },
            } => {
                let report = job::archive::check(ctx, source.as_deref()).await?;
                emit(json, &report, render::doctor);
                if report.ok {
                    Exit::Ok
                } else {
                    let failed = report.failures();
                    fail(
                        json,
                        &format!(
                            "archive check found {} to change before a log can be archived",
                            render::count(failed, "setting")
                        ),
                        "archive.not_ready",
                        &[],
                        Exit::JobFailed,
                    )
                }
            }
            Command::Keys {
                command: KeysCommand::Generate { force, guard },
            } => {
                let exists = crate::report::generate::key_paths(&ctx.config).0.exists();
                let approval = if force && exists {
                    access::guarded(ctx, &crate::access::Operation::KeysReplace, &guard).await?
                } else {
                    None
                };
                let result = job::report::generate_keys(ctx, force).await;
                access::finished(ctx, approval.as_deref(), &result).await;
                emit(json, &result?, render::key);
                Exit::Ok
            }
            Command::Approvals => access::approvals(ctx, json).await?,
            Command::Access {
                command: AccessCommand::Totp { command },
            } => match command {
                TotpCommand::Enroll {
                    user,
                    replace,
                    totp_stdin,
                } => {
                    let e = access::enroll(ctx, &user, replace, totp_stdin).await?;
                    emit(json, &e, render::enrolment);
                    Exit::Ok
                }
                TotpCommand::List => {
                    let factors = ctx.catalog.factors().await?;
                    emit(json, &factors, |f| render::factors(f));
                    Exit::Ok
                }
                TotpCommand::Remove { user, totp_stdin } => {
                    access::remove(ctx, &user, totp_stdin).await?;
                    emit(json, &serde_json::json!({ "removed": user }), |v| {
                        format!(
                            "second factor of {} removed",
                            v["removed"].as_str().unwrap_or("")
                        )
                    });
                    Exit::Ok
                }
            },
            Command::Runs { limit } => {
                let runs = ctx.catalog.recent_runs(limit).await?;
                emit(json, &runs, |r| render::runs(r));
                Exit::Ok
            }
            Command::Config { .. }
            | Command::Demo { .. }
            | Command::Daemon
            | Command::Ctl { .. }
            | Command::Approve { .. }
            | Command::Completions { .. }
            | Command::Doctor { .. }
            | Command::Man
            | Command::GenerateCrm { .. } => Exit::Usage,
        })
    }
    .await;
    result.unwrap_or_else(|err| job_failure(json, &err))
}

/// Resolves on SIGTERM or SIGINT, so a job can stop cleanly (drills tear their scratch
/// instance down) instead of dying mid-way.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

fn all_ok(ok: bool) -> Exit {
    if ok { Exit::Ok } else { Exit::JobFailed }
}

/// Checks that need the network: every S3 bucket is reachable with its credentials, and a
/// location declared immutable really is (versioning, Object Lock, a test lock honoured).
fn live_checks(config: &Config) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for location in &config.locations {
        let crate::config::LocationKind::S3(_) = &location.kind else {
            continue;
        };
        let diagnostic = |severity, key: String, message: String| Diagnostic {
            severity,
            file: config.file.clone(),
            line: None,
            key,
            message,
        };
        let storage = match crate::location::open(location) {
            Ok(storage) => storage,
            Err(e) => {
                out.push(diagnostic(
                    Severity::Error,
                    format!("location.{}", location.name),
                    e.to_string(),
                ));
                continue;
            }
        };
        let Some(s3) = storage.s3() else { continue };
        let state = s3.bucket_state();
        if !state.reachable {
            for p in &state.problems {
                out.push(diagnostic(
                    Severity::Warning,
                    format!("location.{}", location.name),
                    format!("cannot be checked now: {p}"),
                ));
            }
        } else if location.object_lock().is_some() {
            for p in &state.problems {
                out.push(diagnostic(
                    Severity::Error,
                    format!("location.{}.object-lock", location.name),
                    p.clone(),
                ));
            }
        }
    }
    out
}

#[derive(Serialize)]
struct ConfigCheckOutput<'a> {
    file: &'a Path,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<&'a str>,
    sources: Vec<&'a str>,
    locations: Vec<&'a str>,
    diagnostics: &'a [Diagnostic],
}

fn config_check(path: &PathBuf, json: bool) -> Exit {
    match Config::load(path) {
        Ok(config) => {
            let mut diagnostics = config.warnings.clone();
            diagnostics.extend(live_checks(&config));
            let valid = !diagnostics.iter().any(|d| d.severity == Severity::Error);
            let out = ConfigCheckOutput {
                file: path,
                valid,
                sha256: Some(&config.sha256),
                sources: config.sources.iter().map(|s| s.name.as_str()).collect(),
                locations: config.locations.iter().map(|l| l.name.as_str()).collect(),
                diagnostics: &diagnostics,
            };
            if !json {
                for d in &diagnostics {
                    eprintln!("{d}");
                }
            }
            if !valid {
                if json {
                    emit(true, &out, |_| String::new());
                }
                let message = format!(
                    "{}: a location declared immutable is not; nothing was changed",
                    path.display()
                );
                return fail(json, &message, "config.invalid", &[], Exit::Usage);
            }
            emit(json, &out, |o| {
                format!(
                    "{}: configuration is valid ({}: {}; {}: {})",
                    o.file.display(),
                    render::count(o.sources.len(), "source"),
                    o.sources.join(", "),
                    render::count(o.locations.len(), "location"),
                    o.locations.join(", ")
                )
            });
            Exit::Ok
        }
        Err(ConfigError::Invalid { diagnostics, .. }) => {
            let errors = diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            let out = ConfigCheckOutput {
                file: path,
                valid: false,
                sha256: None,
                sources: Vec::new(),
                locations: Vec::new(),
                diagnostics: &diagnostics,
            };
            if json {
                emit(true, &out, |_| String::new());
            } else {
                for d in &diagnostics {
                    eprintln!("{d}");
                }
            }
            let message = format!(
                "{}: {}; nothing was changed",
                path.display(),
                render::count(errors, "error")
            );
            fail(json, &message, "config.invalid", &[], Exit::Usage)
        }
        Err(err) => {
            let code = if matches!(err, ConfigError::NotFound { .. }) {
                "config.not_found"
            } else {
                "config.unreadable"
            };
            fail(json, &err.to_string(), code, &[], Exit::Usage)
        }
    }
}
