//! `custodian demo --dir DIR`: a new user's first minute. It creates a demo CRM (SQLite), a
//! configuration with two local locations and their password files, then runs the real jobs —
//! init → backup → copy → check (reading all data) → restore into a scratch file verified
//! against the manifest → a restore drill of the copy (RTO, assertions) — and prints what
//! happened. Run again on the same directory, it
//! changes a few rows first and shows how little the next backup adds.

pub mod crm;
pub mod servers;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::catalog::Trigger;
use crate::config::Config;
use crate::engine::{Verification, VerificationStatus};
use crate::job::{self, BackupReport, CheckOutcome, Context, InitReport, JobError};
use crate::model::ReadSubset;
use crate::model::{group_digits, human_bytes};
use crate::secret::{generate_password, write_new_secret_file};

const LOCATIONS: [&str; 2] = ["local", "offsite"];

#[derive(Serialize)]
struct DemoLocation {
    name: String,
    repository: PathBuf,
    password_file: PathBuf,
    snapshots: usize,
    check: &'static str,
}

#[derive(Serialize)]
struct DemoCrm {
    path: PathBuf,
    created: bool,
    rows_changed: u64,
    size: u64,
}

#[derive(Serialize)]
struct DemoVerification {
    status: VerificationStatus,
    location: String,
    snapshot_id: String,
    restore_seconds: f64,
    counts: BTreeMap<String, u64>,
    #[serde(flatten)]
    detail: Verification,
}

#[derive(Serialize)]
pub struct DemoOutput {
    /// Every step succeeded.
    pub ok: bool,
    dir: PathBuf,
    config: PathBuf,
    crm: DemoCrm,
    locations: Vec<DemoLocation>,
    /// Snapshot ids per location.
    snapshots: BTreeMap<String, Vec<String>>,
    backup: Option<BackupReport>,
    checks: Vec<CheckOutcome>,
    init: Vec<InitReport>,
    verification: Option<DemoVerification>,
    /// A restore drill of the copy (offsite): restored, verified, asserted, timed, removed.
    drill: Option<job::DrillReport>,
    /// The signed compliance report of the current period (see `custodian report`).
    report: Option<DemoReport>,
    total_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct DemoReport {
    id: String,
    dir: PathBuf,
    html: PathBuf,
    evidence: PathBuf,
    /// The file the signature covers (the bundle's SHA256SUMS manifest).
    signed: PathBuf,
    signature: PathBuf,
    public_key: PathBuf,
    key_id: String,
    overall: crate::report::Verdict,
    verdicts: BTreeMap<String, crate::report::Verdict>,
    verified: bool,
}

/// Runs the demo; the command line prints its summary (see [`render`]).
///
/// # Errors
/// When a step of the demo cannot run at all (a failed step is in the output, with `ok`
/// false).
pub async fn run(dir: &Path) -> Result<DemoOutput, JobError> {
    run_inner(dir).await
}

fn private_dir(path: &Path) -> Result<(), JobError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| JobError::io(format!("creating {}", path.display()), &e))
}

/// Signs (creating the key on the first run) and verifies the report of the current month.
async fn demo_report(ctx: &Context) -> Result<DemoReport, JobError> {
    let (secret, public) = crate::report::generate::key_paths(&ctx.config);
    if !secret.exists() {
        job::report::generate_keys(ctx, false).await?;
    }
    let period = crate::report::Period::containing(
        ctx.config.reports.period,
        crate::model::time::now(),
        &ctx.config.reports.time_zone,
    )
    .map_err(|e| JobError::Usage(e.to_string()))?;
    let outcome = job::report(
        ctx,
        &job::ReportRequest {
            period: Some(period),
            out: None,
            send: false,
        },
    )
    .await?;
    let r = outcome.report;
    Ok(DemoReport {
        id: r.id,
        html: r.html,
        evidence: r.evidence,
        signed: r.signed,
        signature: r.signature,
        public_key: public,
        key_id: r.key_id,
        overall: r.overall,
        verdicts: r.verdicts,
        verified: outcome.verification.ok,
        dir: r.dir,
    })
}

/// The demo's configuration: every path relative to the file, so the directory can move.
fn config_text() -> String {
    let mut text = String::from(
        "# Written by `custodian demo`. Paths are relative to this file.\n\
         [custodian]\n\
         state-dir = \"state\"\n\
         hostname = \"custodian-demo\"\n\n\
         [source.crm]\n\
         kind = \"sqlite\"\n\
         path = \"crm.sqlite\"\n\
         locations = [\"local\", \"offsite\"]\n",
    );
    for name in LOCATIONS {
        text.push_str(&format!(
            "\n[location.{name}]\nkind = \"local\"\npath = \"repos/{name}\"\npassword-file = \"keys/{name}.key\"\n"
        ));
    }
    text.push_str(
        "\n[retention]\nkeep-daily = 7\nkeep-weekly = 4\nmax-age = \"90d\"\n\n\
         [drills]\ninterval = \"30d\"\n\n\
         [reports]\nout-dir = \"reports\"\nallowed-regions = [\"local\"]\nsecret-key-password-file = \"keys/report.pass\"\n\n\
         [erasure.rules.crm]\n\
         subject-query = \"SELECT email FROM contacts\"\n\
         erase = [\n\
           \"DELETE FROM activities WHERE contact_id IN (SELECT id FROM contacts WHERE email = :subject)\",\n\
           \"DELETE FROM notes WHERE contact_id IN (SELECT id FROM contacts WHERE email = :subject)\",\n\
           \"UPDATE deals SET contact_id = NULL WHERE contact_id IN (SELECT id FROM contacts WHERE email = :subject)\",\n\
           \"DELETE FROM contacts WHERE email = :subject\",\n\
         ]\n\
         proof = \"SELECT count(*) FROM contacts WHERE email = :subject\"\n\n\
         [[drills.assertion]]\nsource = \"crm\"\nname = \"has-customers\"\nsql = \"SELECT count(*) FROM companies\"\nexpect = \">= 1\"\n\n\
         [[drills.assertion]]\nsource = \"crm\"\nname = \"no-orphan-deals\"\nsql = \"SELECT count(*) FROM deals WHERE company_id NOT IN (SELECT id FROM companies)\"\nexpect = \"= 0\"\n",
    );
    text
}

async fn run_inner(dir: &Path) -> Result<DemoOutput, JobError> {
    let started = Instant::now();
    private_dir(dir)?;
    let dir = dir
        .canonicalize()
        .map_err(|e| JobError::io(format!("resolving {}", dir.display()), &e))?;
    let crm_path = dir.join("crm.sqlite");
    let (created, rows_changed) = if crm_path.exists() {
        let n = crm::change_a_few_rows(&crm_path)
            .await
            .map_err(|e| JobError::io(format!("changing rows in {}", crm_path.display()), &e))?;
        (false, n)
    } else {
        crm::generate(&crm_path)
            .await
            .map_err(|e| JobError::io(format!("creating {}", crm_path.display()), &e))?;
        (true, 0)
    };
    private_dir(&dir.join("keys"))?;
    private_dir(&dir.join("repos"))?;
    // The repositories' passwords, and the one that encrypts the report signing key.
    for name in LOCATIONS
        .iter()
        .map(|l| format!("{l}.key"))
        .chain(["report.pass".into()])
    {
        let key = dir.join("keys").join(&name);
        if !key.exists() {
            write_new_secret_file(&key, &generate_password())
                .map_err(|e| JobError::io(format!("writing {}", key.display()), &e))?;
        }
    }
    let config_path = dir.join("custodian.toml");
    if !config_path.exists() {
        fs::write(&config_path, config_text())
            .map_err(|e| JobError::io(format!("writing {}", config_path.display()), &e))?;
    }
    let config = Config::load(&config_path).map_err(|e| JobError::Usage(e.to_string()))?;
    let ctx = Context::new(Arc::new(config), Trigger::Demo).await?;

    let init = job::init(&ctx).await?;
    let mut error = init.iter().find_map(|r| r.error.clone());
    let backup = if error.is_none() {
        let report = job::backup(&ctx, Some("crm")).await?.remove(0);
        if !report.all_ok() {
            error = report
                .error
                .clone()
                .or_else(|| report.copies.iter().find_map(|c| c.error.clone()));
        }
        Some(report)
    } else {
        None
    };
    let checks = if error.is_none() {
        job::check(&ctx, None, Some(ReadSubset::all()), false).await?
    } else {
        Vec::new()
    };
    if let Some(bad) = checks.iter().find(|c| !c.status.is_success()) {
        error.get_or_insert_with(|| {
            format!(
                "check of {} did not pass: {}",
                bad.location,
                bad.errors.join("; ")
            )
        });
    }

    let verification = match (&backup, &error) {
        (Some(b), None) => Some(verify_copy(&ctx, b).await),
        _ => None,
    };
    if let Some(Err(e)) = &verification {
        error.get_or_insert_with(|| e.to_string());
    }
    let verification = verification.and_then(Result::ok);
    let drill = if error.is_none() {
        let report = job::drill(
            &ctx,
            &job::DrillRequest {
                source: Some("crm".into()),
                location: Some(LOCATIONS[1].into()),
                snapshot: Some("latest".into()),
                pitr: None,
            },
            std::future::pending(),
        )
        .await?;
        if let Some(f) = &report.failure {
            error = Some(format!("the restore drill failed: {}", f.reason));
        }
        Some(report)
    } else {
        None
    };

    let report = if error.is_none() {
        match demo_report(&ctx).await {
            Ok(r) => Some(r),
            Err(e) => {
                error = Some(format!("the compliance report failed: {e}"));
                None
            }
        }
    } else {
        None
    };

    let listed = job::snapshots(&ctx, None, None).await?;
    let snapshots = listed
        .iter()
        .map(|l| {
            (
                l.location.clone(),
                l.snapshots.iter().map(|s| s.id.clone()).collect(),
            )
        })
        .collect();
    let locations = LOCATIONS
        .iter()
        .map(|name| DemoLocation {
            name: (*name).to_string(),
            repository: dir.join("repos").join(name),
            password_file: dir.join("keys").join(format!("{name}.key")),
            snapshots: listed
                .iter()
                .find(|l| l.location == *name)
                .map_or(0, |l| l.snapshots.len()),
            check: checks
                .iter()
                .find(|c| c.location == *name)
                .map_or("not run", |c| c.status.as_str()),
        })
        .collect();
    ctx.catalog.close().await;
    let size = fs::metadata(&crm_path).map(|m| m.len()).unwrap_or(0);
    Ok(DemoOutput {
        report,
        ok: error.is_none(),
        dir: dir.clone(),
        config: config_path,
        crm: DemoCrm {
            path: crm_path,
            created,
            rows_changed,
            size,
        },
        locations,
        snapshots,
        backup,
        checks,
        init,
        verification,
        drill,
        total_seconds: started.elapsed().as_secs_f64(),
        error,
    })
}

/// Restores the new backup from the *copy* location into a scratch file and verifies it: this
/// proves the copy, not only the original, is restorable.
async fn verify_copy(ctx: &Context, backup: &BackupReport) -> Result<DemoVerification, JobError> {
    let snapshot = backup
        .snapshot
        .as_ref()
        .ok_or_else(|| JobError::Internal("backup reported success without a snapshot".into()))?;
    let location = LOCATIONS[1].to_string();
    let scratch = ctx.config.scratch_dir();
    private_dir(&scratch)?;
    let target = scratch.join(format!("restore-{}.sqlite", snapshot.short_id()));
    let started = Instant::now();
    let result = job::restore(
        ctx,
        &job::RestoreRequest {
            snapshot: snapshot.backup_id.clone(),
            to: Some(target.clone()),
            location: Some(location.clone()),
            source: Some(backup.source.clone()),
            force: true,
            ..job::RestoreRequest::default()
        },
    )
    .await;
    let _ = fs::remove_file(&target);
    let report = result?;
    Ok(DemoVerification {
        status: report.verification.status,
        location,
        snapshot_id: report.snapshot_id.clone(),
        restore_seconds: started.elapsed().as_secs_f64(),
        counts: report
            .verification
            .tables
            .iter()
            .map(|t| (t.name.clone(), t.rows))
            .collect(),
        detail: report.verification,
    })
}

/// The demo's summary for a terminal.
#[must_use]
pub fn render(out: &DemoOutput) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "Custodian demo in {}", out.dir.display());
    let crm_state = if out.crm.created {
        "created".to_string()
    } else {
        format!(
            "reused; {} rows changed since the last run",
            out.crm.rows_changed
        )
    };
    let rows: u64 = out
        .verification
        .as_ref()
        .map_or(0, |v| v.counts.values().sum());
    let _ = writeln!(
        s,
        "  CRM database   {} ({}, {} rows, {})",
        out.crm.path.display(),
        human_bytes(out.crm.size),
        group_digits(rows),
        crm_state
    );
    let _ = writeln!(s, "  configuration  {}\n", out.config.display());

    let init: Vec<String> = out
        .init
        .iter()
        .map(|r| format!("{} {}", r.location, r.status))
        .collect();
    let _ = writeln!(s, "1. init     {}", init.join(" · "));
    if let Some(b) = &out.backup {
        if let Some(snap) = &b.snapshot {
            let new_share = if snap.bytes > 0 {
                100.0 * snap.added_raw as f64 / snap.bytes as f64
            } else {
                0.0
            };
            let _ = writeln!(
                s,
                "2. backup   {} → {}: snapshot {}, {} tables, {} read in {:.1} s\n           \
                 deduplication: {} new ({new_share:.1}% of what was read); stored after compression: {}",
                b.source,
                b.location,
                snap.short_id(),
                b.tables,
                human_bytes(snap.bytes),
                b.duration_seconds,
                human_bytes(snap.added_raw),
                human_bytes(snap.added_stored),
            );
        } else {
            let _ = writeln!(
                s,
                "2. backup   FAILED: {}",
                b.error.as_deref().unwrap_or("?")
            );
        }
        for c in &b.copies {
            let _ = writeln!(
                s,
                "3. copy     {} → {}: {} copied, {} already there{}",
                c.from,
                c.to,
                crate::model::count(c.copied.len(), "snapshot"),
                c.already_present,
                c.error
                    .as_deref()
                    .map(|e| format!(" — FAILED: {e}"))
                    .unwrap_or_default()
            );
        }
    }
    if !out.checks.is_empty() {
        let checks: Vec<String> = out
            .checks
            .iter()
            .map(|c| format!("{}: {} (all data read)", c.location, c.status))
            .collect();
        let _ = writeln!(s, "4. check    {}", checks.join(" · "));
    }
    if let Some(v) = &out.verification {
        let _ = writeln!(
            s,
            "5. restore  snapshot {} from {} into a scratch file, {:.1} s — {} against the manifest:",
            &v.snapshot_id[..8],
            v.location,
            v.restore_seconds,
            v.status.as_str().to_uppercase()
        );
        let counts: Vec<String> = v
            .counts
            .iter()
            .map(|(t, n)| format!("{t} {}", group_digits(*n)))
            .collect();
        let _ = writeln!(
            s,
            "           {} (row counts and content checksums match); scratch file removed",
            counts.join(" · ")
        );
    }
    if let Some(d) = &out.drill {
        let phases: Vec<String> = d
            .phases
            .0
            .iter()
            .map(|p| format!("{} {:.2} s", p.name, p.seconds))
            .collect();
        let held = d.assertions.iter().filter(|a| a.held).count();
        let _ = writeln!(
            s,
            "6. drill    {} from {} into a {}: {}, RTO {:.1} s, {held}/{} assertions held\n           {}",
            d.snapshot_id.as_deref().map_or("-", |id| &id[..8]),
            d.location,
            d.scratch.as_deref().unwrap_or("scratch database"),
            d.status.as_str().to_uppercase(),
            d.rto_seconds.unwrap_or_default(),
            d.assertions.len(),
            phases.join(" · ")
        );
    }
    if let Some(r) = &out.report {
        let counts = |v: crate::report::Verdict| r.verdicts.values().filter(|x| **x == v).count();
        let _ = writeln!(
            s,
            "7. report   compliance report {}: overall {} ({} pass, {} warn, {} fail, {} not evaluated), signed by key {}, {}\n           {}\n           verify: cd {} && minisign -Vm SHA256SUMS -p {} && sha256sum -c SHA256SUMS",
            r.id,
            r.overall.label(),
            counts(crate::report::Verdict::Pass),
            counts(crate::report::Verdict::Warn),
            counts(crate::report::Verdict::Fail),
            counts(crate::report::Verdict::NotEvaluated),
            r.key_id,
            if r.verified {
                "verified"
            } else {
                "NOT VERIFIED"
            },
            r.html.display(),
            r.dir.display(),
            r.public_key.display()
        );
    }
    if let Some(e) = &out.error {
        let _ = writeln!(s, "\nFAILED: {e}");
    }
    let _ = writeln!(
        s,
        "\nDone in {:.1} s. Snapshots per location:",
        out.total_seconds
    );
    for l in &out.locations {
        let _ = writeln!(
            s,
            "  {:<8} {} in {}",
            l.name,
            crate::model::count(l.snapshots, "snapshot"),
            l.repository.display()
        );
    }
    if let Some(l) = out.locations.first() {
        let _ = writeln!(
            s,
            "\nThese are plain restic repositories:\n  restic -r {} --password-file {} snapshots",
            l.repository.display(),
            l.password_file.display()
        );
    }
    if out.crm.created {
        let _ = writeln!(
            s,
            "Run the demo again: it changes a few rows and shows how little the next backup adds."
        );
    }
    s
}

/// `custodian generate-crm`: the demo CRM on a database server, or churn applied to it.
///
/// # Errors
/// For a bad request or a database that cannot be written.
pub async fn generate_crm(
    url: &str,
    password_file: Option<PathBuf>,
    scale: Option<f64>,
    size: Option<String>,
    churn: Option<String>,
) -> Result<serde_json::Value, JobError> {
    generate_inner(url, password_file, scale, size, churn).await
}

async fn generate_inner(
    url: &str,
    password_file: Option<PathBuf>,
    scale: Option<f64>,
    size: Option<String>,
    churn: Option<String>,
) -> Result<serde_json::Value, JobError> {
    use crate::engine::{mysql, postgres};
    let started = Instant::now();
    let password = password_file
        .map(|p| crate::secret::SecretRef::File(p).resolve())
        .transpose()
        .map_err(|e| JobError::Usage(e.to_string()))?;
    let scale = match (scale, size) {
        (Some(s), _) if s > 0.0 => s,
        (Some(_), _) => return Err(JobError::Usage("--scale must be above 0".into())),
        (None, Some(size)) => {
            let bytes = size.parse::<bytesize::ByteSize>().map_err(|_| {
                JobError::Usage(format!("`{size}` is not a size; write it like 1GiB"))
            })?;
            bytes.as_u64() as f64 / servers::BYTES_AT_SCALE_ONE
        }
        (None, None) => 0.01,
    };
    let churn = churn.map(|c| {
        if c == "uniform" {
            servers::Churn::Uniform
        } else {
            servers::Churn::Realistic
        }
    });
    let db_err = |e: sqlx::Error| JobError::io(format!("generating the demo CRM in {url}"), &e);
    let (database, rows) = if url.starts_with("postgres") {
        let connect = postgres::Connect::new(url, password).map_err(JobError::Usage)?;
        let mut conn = connect.connect().await.map_err(db_err)?;
        let rows = match churn {
            Some(c) => servers::churn_postgres(&mut conn, c)
                .await
                .map_err(db_err)?,
            None => {
                servers::generate_postgres(&mut conn, scale)
                    .await
                    .map_err(db_err)?;
                servers::rows_at(scale).iter().map(|(_, n)| *n as u64).sum()
            }
        };
        (connect.describe(), rows)
    } else {
        let connect = mysql::Connect::new(url, password).map_err(JobError::Usage)?;
        let mut conn = connect.connect().await.map_err(db_err)?;
        let rows = match churn {
            Some(c) => servers::churn_mysql(&mut conn, c).await.map_err(db_err)?,
            None => {
                servers::generate_mysql(&mut conn, scale)
                    .await
                    .map_err(db_err)?;
                servers::rows_at(scale).iter().map(|(_, n)| *n as u64).sum()
            }
        };
        (connect.describe(), rows)
    };
    Ok(serde_json::json!({
        "action": if churn.is_some() { "churned" } else { "generated" },
        "database": database,
        "scale": scale,
        "rows": rows,
        "seconds": started.elapsed().as_secs_f64(),
    }))
}
