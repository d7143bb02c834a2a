//! `custodian erasure`: the GDPR erasure ledger. Erasure requests are recorded in the catalog —
//! outside the backups — as keyed hashes of the subject keys; every restore and every drill
//! replays the whole ledger into the restored database before it is handed over, and proves
//! with the source's proof query that no erased subject is left, or the data is not released.
//! `erasure status` says when each subject is gone from every copy.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::{Context, JobError};
use crate::audit::NewEntry;
use crate::catalog::{ErasureRecord, ReplayRecord};
use crate::engine::{Database, QueryError};
use crate::erasure::{self, Copy, SubjectStatus};
use crate::model::time;
use crate::secret::{Secret, SecretRef};

/// One erasure to record.
#[derive(Clone, Debug)]
pub struct ErasureRequest {
    pub subject: String,
    pub request: String,
}

/// What recording did.
#[derive(Clone, Debug, Serialize)]
pub struct Recorded {
    pub source: String,
    pub recorded: usize,
    pub already_recorded: usize,
    /// The ledger ids (keyed hashes unless hashing is off).
    pub ids: Vec<String>,
    pub hashed: bool,
}

/// The ledger key: the configured secret, else `STATE/keys/erasure.key` (created 0600 on first
/// use). `None` when hashing is off.
fn ledger_key(ctx: &Context, create: bool) -> Result<Option<Secret>, JobError> {
    if !ctx.config.erasure.hash_subjects {
        return Ok(None);
    }
    let reference = ctx
        .config
        .erasure
        .key
        .clone()
        .unwrap_or_else(|| SecretRef::File(ctx.config.state_dir.join("keys/erasure.key")));
    if let SecretRef::File(path) = &reference
        && !path.exists()
        && create
    {
        crate::secret::create_key_file(path, &ctx.config.state_dir)
            .map_err(|e| JobError::io(format!("creating the ledger key {}", path.display()), &e))?;
    }
    reference.resolve().map(Some).map_err(|e| {
        JobError::Usage(format!(
            "the erasure ledger key cannot be read ({e}); without it recorded subjects cannot be matched — restore it from escrow"
        ))
    })
}

fn key_bytes(key: Option<&Secret>) -> Option<&[u8]> {
    key.map(|k| k.expose().as_bytes())
}

/// Records erasures of one source (audited; subjects stored as keyed hashes by default).
///
/// # Errors
/// For an unknown source, an empty subject or reference, or a catalog failure.
pub async fn record(
    ctx: &Context,
    source: &str,
    requests: &[ErasureRequest],
) -> Result<Recorded, JobError> {
    ctx.select_sources(Some(source))?;
    let key = ledger_key(ctx, true)?;
    let now = time::format(time::now());
    let mut out = Recorded {
        source: source.to_string(),
        recorded: 0,
        already_recorded: 0,
        ids: Vec::new(),
        hashed: key.is_some(),
    };
    for (i, r) in requests.iter().enumerate() {
        if r.subject.trim().is_empty() || r.request.trim().is_empty() {
            return Err(JobError::Usage(format!(
                "erasure {}: the subject and the request reference must not be empty",
                i + 1
            )));
        }
        let subject = erasure::subject_id(key_bytes(key.as_ref()), &r.subject);
        let id = format!(
            "er-{}",
            &crate::model::sha256_hex(format!("{source}\0{subject}").as_bytes())[..16]
        );
        let fresh = ctx
            .catalog
            .record_erasure(&ErasureRecord {
                id: id.clone(),
                source: source.to_string(),
                subject: subject.clone(),
                request: r.request.trim().to_string(),
                recorded_at: now.clone(),
                recorded_by: ctx.actor.clone(),
            })
            .await?;
        if fresh {
            out.recorded += 1;
        } else {
            out.already_recorded += 1;
        }
        ctx.audit_action(NewEntry {
            actor: ctx.actor.clone(),
            uid: ctx.uid,
            role: ctx.role.clone(),
            trigger: ctx.trigger.as_str().to_string(),
            action: "erasure.record".into(),
            target: Some(source.to_string()),
            params: serde_json::json!({
                "id": id,
                "subject": erasure::short(&subject),
                "request": r.request.trim(),
            }),
            outcome: if fresh {
                "succeeded"
            } else {
                "already-recorded"
            }
            .into(),
            detail: None,
        });
        out.ids.push(id);
    }
    Ok(out)
}

/// The format of the ledger file stored in backups.
pub const LEDGER_FORMAT: &str = "custodian-erasure-ledger/1";

/// The ledger of one source as stored in its backups, or `None` when the source uses no
/// erasure ledger (no rules, no erasures).
///
/// # Errors
/// When the catalog cannot be read.
pub async fn ledger_export(ctx: &Context, source: &str) -> Result<Option<Vec<u8>>, JobError> {
    let entries = ctx.catalog.erasures(Some(source)).await?;
    if entries.is_empty() && !ctx.config.erasure.rules.contains_key(source) {
        return Ok(None);
    }
    let doc = serde_json::json!({
        "format": LEDGER_FORMAT,
        "source": source,
        "hashed": ctx.config.erasure.hash_subjects,
        "exported_at": time::format(time::now()),
        "entries": entries,
    });
    serde_json::to_vec_pretty(&doc)
        .map(Some)
        .map_err(|e| JobError::Internal(format!("serializing the erasure ledger: {e}")))
}

/// Restores ledger entries from a ledger file taken out of a backup (`restic dump …
/// erasure-ledger.json`): ids, requests and times as recorded; entries already present stay.
///
/// # Errors
/// When the file is not a ledger of this source, or the catalog cannot be written.
pub async fn restore_ledger(
    ctx: &Context,
    source: &str,
    path: &Path,
) -> Result<Recorded, JobError> {
    let text =
        std::fs::read(path).map_err(|e| JobError::io(format!("reading {}", path.display()), &e))?;
    let doc: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| JobError::Usage(format!("{}: not JSON: {e}", path.display())))?;
    if doc["format"] != LEDGER_FORMAT || doc["source"] != source {
        return Err(JobError::Usage(format!(
            "{} is not an erasure ledger of source {source} ({LEDGER_FORMAT})",
            path.display()
        )));
    }
    let entries: Vec<ErasureRecord> = serde_json::from_value(doc["entries"].clone())
        .map_err(|e| JobError::Usage(format!("{}: malformed entries: {e}", path.display())))?;
    let mut out = Recorded {
        source: source.to_string(),
        recorded: 0,
        already_recorded: 0,
        ids: Vec::new(),
        hashed: doc["hashed"].as_bool().unwrap_or(true),
    };
    for e in entries {
        if ctx.catalog.record_erasure(&e).await? {
            out.recorded += 1;
        } else {
            out.already_recorded += 1;
        }
        out.ids.push(e.id);
    }
    ctx.audit_action(NewEntry {
        actor: ctx.actor.clone(),
        uid: ctx.uid,
        role: ctx.role.clone(),
        trigger: ctx.trigger.as_str().to_string(),
        action: "erasure.restore-ledger".into(),
        target: Some(source.to_string()),
        params: serde_json::json!({ "file": path.display().to_string(), "restored": out.recorded }),
        outcome: "succeeded".into(),
        detail: None,
    });
    Ok(out)
}

/// Reads a bulk import: CSV with a `subject,request` header, or a JSON array of
/// `{"subject": …, "request": …}`.
///
/// # Errors
/// A sentence naming the file and line that is wrong.
pub fn read_import(path: &Path) -> Result<Vec<ErasureRequest>, JobError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| JobError::io(format!("reading {}", path.display()), &e))?;
    let bad =
        |line: usize, what: &str| JobError::Usage(format!("{}:{line}: {what}", path.display()));
    if text.trim_start().starts_with('[') {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Item {
            subject: String,
            request: String,
        }
        let items: Vec<Item> = serde_json::from_str(&text).map_err(|e| {
            bad(
                e.line(),
                &format!("not a JSON array of {{subject, request}}: {e}"),
            )
        })?;
        return Ok(items
            .into_iter()
            .map(|i| ErasureRequest {
                subject: i.subject,
                request: i.request,
            })
            .collect());
    }
    let mut lines = text.lines().enumerate();
    let header = lines
        .next()
        .map(|(_, l)| l.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if header.replace(' ', "") != "subject,request" {
        return Err(bad(
            1,
            "the first line must be the header `subject,request`",
        ));
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let (subject, request) = line
            .split_once(',')
            .ok_or_else(|| bad(i + 1, "expected `subject,request`"))?;
        let unquote = |s: &str| s.trim().trim_matches('"').to_string();
        out.push(ErasureRequest {
            subject: unquote(subject),
            request: unquote(request),
        });
    }
    Ok(out)
}

/// `erasure status`: every recorded subject (or one) and when it is gone from every copy.
///
/// # Errors
/// When the catalog cannot be read.
pub async fn status(
    ctx: &Context,
    source: Option<&str>,
    subject: Option<&str>,
) -> Result<Vec<SubjectStatus>, JobError> {
    let key = ledger_key(ctx, false).ok().flatten();
    let wanted = subject.map(|s| erasure::subject_id(key_bytes(key.as_ref()), s));
    let ledger = ctx.catalog.erasures(source).await?;
    let now = time::now();
    let mut out = Vec::new();
    // Read each source's copies once, not once per erased subject.
    let mut by_source: std::collections::HashMap<String, Vec<Copy>> =
        std::collections::HashMap::new();
    for e in ledger {
        if wanted.as_ref().is_some_and(|w| w != &e.subject) {
            continue;
        }
        let Some(cfg) = ctx.config.source(&e.source) else {
            continue;
        };
        if !by_source.contains_key(&e.source) {
            by_source.insert(e.source.clone(), copies(ctx, &e.source).await?);
        }
        let copies = &by_source[&e.source];
        let erased_at = time::parse(&e.recorded_at).unwrap_or(now);
        let horizon = erasure::horizon(erased_at, copies, &cfg.locations);
        let gone = horizon
            .gone_by
            .as_deref()
            .and_then(|g| time::parse(g).ok())
            .is_some_and(|g| g <= now);
        out.push(SubjectStatus {
            id: e.id,
            source: e.source,
            subject: erasure::short(&e.subject),
            request: e.request,
            recorded_at: e.recorded_at,
            recorded_by: e.recorded_by,
            horizon,
            gone,
        });
    }
    if let (Some(_), true) = (subject, out.is_empty()) {
        return Err(JobError::Usage(
            "that subject is not in the erasure ledger (check the source and the exact key)".into(),
        ));
    }
    Ok(out)
}

/// Every snapshot of a source in the catalog, with its location's retention and lock.
async fn copies(ctx: &Context, source: &str) -> Result<Vec<Copy>, JobError> {
    let rows = ctx.catalog.snapshots_of_source(source).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(location, taken_at, removed_at)| {
            let loc = ctx.config.location(&location)?;
            let (retention_max_days, retention_rule) = loc.retention.max_days();
            Some(Copy {
                taken_at: time::parse(&taken_at).ok()?,
                removed_at: removed_at.and_then(|t| time::parse(&t).ok()),
                retention_max_days,
                retention_rule,
                lock_days: loc.object_lock().map(|l| l.days),
                location,
            })
        })
        .collect())
}

/// What a replay did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplayReport {
    /// Erasures of the source in the ledger (all recorded up to now).
    pub ledger_size: usize,
    /// Erased subjects present in the restored data.
    pub found: usize,
    /// Rows the erase statements changed.
    pub rows_changed: u64,
    /// Erased subjects still present after the replay (the proof): 0, or the data is withheld.
    pub remaining: usize,
    pub seconds: f64,
}

/// Why a replay withheld the data.
#[derive(Clone, Debug)]
pub struct ReplayFailure {
    pub code: &'static str,
    pub reason: String,
}

/// Replays the whole erasure ledger of `source` into a restored database and proves it, then
/// records the replay. `Err` means the data must not be released.
pub(crate) async fn replay(
    ctx: &Context,
    run_id: &str,
    kind: &str,
    source: &str,
    snapshot_id: Option<&str>,
    db: &dyn Database,
) -> Result<ReplayReport, ReplayFailure> {
    let started = Instant::now();
    let result = replay_inner(ctx, source, db).await;
    let seconds = started.elapsed().as_secs_f64();
    let (report, error) = match &result {
        Ok(r) => (r.clone(), None),
        Err((r, f)) => (r.clone(), Some(f.reason.clone())),
    };
    let record = ReplayRecord {
        run_id: run_id.to_string(),
        kind: kind.to_string(),
        source: source.to_string(),
        snapshot_id: snapshot_id.map(str::to_string),
        replayed_at: String::new(),
        ledger_size: i64::try_from(report.ledger_size).unwrap_or(i64::MAX),
        found: i64::try_from(report.found).unwrap_or(i64::MAX),
        remaining: i64::try_from(report.remaining).unwrap_or(i64::MAX),
        ok: i64::from(error.is_none()),
        seconds,
        error,
    };
    if let Err(e) = ctx.catalog.record_replay(&record).await {
        tracing::error!(run_id, "could not record the erasure replay: {e}");
    }
    result
        .map(|r| ReplayReport { seconds, ..r })
        .map_err(|(_, f)| f)
}

async fn replay_inner(
    ctx: &Context,
    source: &str,
    db: &dyn Database,
) -> Result<ReplayReport, (ReplayReport, ReplayFailure)> {
    let mut report = ReplayReport::default();
    let fail = |report: &ReplayReport, code: &'static str, reason: String| {
        (report.clone(), ReplayFailure { code, reason })
    };
    let ledger = ctx
        .catalog
        .erasures(Some(source))
        .await
        .map_err(|e| fail(&report, "erasure.ledger_unreadable", e.to_string()))?;
    report.ledger_size = ledger.len();
    let Some(rules) = ctx.config.erasure.rules.get(source) else {
        if ledger.is_empty() {
            return Ok(report);
        }
        return Err(fail(
            &report,
            "erasure.no_rules",
            format!(
                "{} erasure(s) of source {source} are recorded but {} has no [erasure.rules.{source}]; the restored data is withheld until they can be replayed",
                ledger.len(),
                ctx.config.file.display()
            ),
        ));
    };
    if ledger.is_empty() {
        return Ok(report);
    }
    let key = ledger_key(ctx, false).map_err(|e| fail(&report, "erasure.key", e.to_string()))?;
    let ids: std::collections::HashSet<&str> = ledger.iter().map(|e| e.subject.as_str()).collect();
    let mut conn = db.session(false).await.map_err(|e| {
        fail(
            &report,
            "erasure.connect",
            format!("opening the restored database: {e}"),
        )
    })?;
    let sql_err = |report: &ReplayReport, what: &str, e: QueryError| {
        fail(
            report,
            "erasure.rule_failed",
            format!("{what} (erasure.rules.{source}) failed: {e}"),
        )
    };
    // The erased subjects the restored data holds: keys from the subject query whose id is in
    // the ledger, plus (hashing off) every plain key of the ledger.
    let mut present: Vec<String> = Vec::new();
    if let Some(q) = &rules.subject_query {
        let keys = conn
            .strings(q)
            .await
            .map_err(|e| sql_err(&report, "the subject query", e))?;
        for k in keys {
            if ids.contains(erasure::subject_id(key_bytes(key.as_ref()), &k).as_str()) {
                present.push(k);
            }
        }
    }
    for e in &ledger {
        if let Some(plain) = erasure::plain_subject(&e.subject)
            && !present.iter().any(|p| p.trim() == plain)
        {
            present.push(plain.to_string());
        }
    }
    present.sort();
    present.dedup();
    report.found = present.len();
    conn.begin()
        .await
        .map_err(|e| sql_err(&report, "starting the replay", e))?;
    for subject in &present {
        for (i, statement) in rules.erase.iter().enumerate() {
            report.rows_changed += conn
                .execute(statement, Some(subject))
                .await
                .map_err(|e| sql_err(&report, &format!("erase statement {}", i + 1), e))?;
        }
    }
    conn.commit()
        .await
        .map_err(|e| sql_err(&report, "committing the replay", e))?;
    // The proof: the proof query finds none of them, and the subject query lists no erased key.
    let mut remaining = 0usize;
    for subject in &present {
        // A value that is not a number cannot prove anything: it counts as still present.
        let n = conn
            .int(&rules.proof, Some(subject))
            .await
            .map_err(|e| sql_err(&report, "the proof query", e))?
            .unwrap_or(i64::MAX);
        if n != 0 {
            remaining += 1;
        }
    }
    if let Some(q) = &rules.subject_query {
        let keys = conn
            .strings(q)
            .await
            .map_err(|e| sql_err(&report, "the subject query", e))?;
        let still = keys
            .iter()
            .filter(|k| ids.contains(erasure::subject_id(key_bytes(key.as_ref()), k).as_str()))
            .count();
        remaining = remaining.max(still);
    }
    conn.close().await;
    report.remaining = remaining;
    if remaining > 0 {
        return Err(fail(
            &report,
            "erasure.proof_failed",
            format!(
                "after replaying {} erasure(s), the proof still finds {remaining} erased subject(s) in the restored data (check [erasure.rules.{source}] erase and proof); the data is withheld",
                present.len()
            ),
        ));
    }
    Ok(report)
}
