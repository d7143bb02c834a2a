//! The guard every dangerous operation passes before its job runs.
//!
//! From the CLI ([`cli`]): the person (see [`super::local_person`]) must be an administrator,
//! give their second factor as `[access] two-factor` says, and — with `[access] enforce` — bring
//! an approval of exactly this operation by a second administrator (`--approval ID`), or use
//! `--break-glass "REASON"`, which is audited, alerted at once and listed by the next report.
//! Through the control socket the daemon applies the same pieces itself (roles, second factors
//! of requester and approver, approvals it runs on approval).
//!
//! What let an operation through is a [`Grant`], recorded with the operation in the audit log:
//! the report's ACCESS rule reads it back.

use serde::Serialize;

use super::roles::{Person, Role};
use super::{AccessError, Operation, totp};
use crate::audit::NewEntry;
use crate::catalog::{NewApproval, Origin, UseRefusal};
use crate::config::TwoFactor;
use crate::job::Context;

/// What the person brings besides their identity.
#[derive(Clone, Debug, Default)]
pub struct Supplied {
    /// A second-factor code (asked for only when needed, see [`needs_factor`]).
    pub code: Option<String>,
    /// `--approval ID`.
    pub approval: Option<String>,
    /// `--break-glass "REASON"`.
    pub break_glass: Option<String>,
}

/// What let a dangerous operation through.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Grant {
    /// Unique per operation: the audit entries one operation writes share it.
    pub id: String,
    pub action: String,
    /// Whether four eyes apply to it at all (not to enrolling second factors: the first
    /// administrator must be able to enrol).
    pub four_eyes: bool,
    /// The person doing it gave a valid second factor.
    pub second_factor: bool,
    /// The approval it ran under, and who approved.
    pub approval: Option<String>,
    pub approved_by: Option<String>,
    pub approver_second_factor: Option<bool>,
    /// The reason given with `--break-glass`.
    pub break_glass: Option<String>,
    pub identified_by: String,
}

impl Grant {
    /// A fresh grant id.
    #[must_use]
    pub fn new_id() -> String {
        use rand::RngExt;
        format!("{:016x}", rand::rng().random::<u64>())
    }
}

/// The person has at least `needed`.
///
/// # Errors
/// [`AccessError::Denied`].
pub fn require_role(
    person: &Person,
    needed: Role,
    action: &str,
    ctx: &Context,
) -> Result<Role, AccessError> {
    person
        .role
        .filter(|r| *r >= needed)
        .ok_or_else(|| AccessError::Denied {
            who: person.describe(),
            action: action.to_string(),
            needs: needed.as_str(),
            config: ctx.config.file.display().to_string(),
        })
}

/// Whether a code must be asked of `person`: they are enrolled (and two-factor is not off).
///
/// # Errors
/// [`AccessError::NotEnrolled`] when two-factor is required and they are not enrolled.
pub async fn needs_factor(ctx: &Context, person: &Person) -> Result<bool, AccessError> {
    match ctx.config.access.two_factor {
        TwoFactor::Off => Ok(false),
        policy => {
            let enrolled = totp::enrolled(ctx, &person.user).await?;
            if !enrolled && policy == TwoFactor::Required {
                return Err(AccessError::NotEnrolled {
                    user: person.user.clone(),
                });
            }
            Ok(enrolled)
        }
    }
}

/// Checks the person's second factor for `action` when one is needed; whether one was given.
///
/// # Errors
/// [`AccessError::FactorRequired`] when a code is needed and none was supplied, or why the
/// code was refused.
pub async fn second_factor(
    ctx: &Context,
    person: &Person,
    action: &str,
    code: Option<&str>,
) -> Result<bool, AccessError> {
    if !needs_factor(ctx, person).await? {
        return Ok(false);
    }
    let code = code.ok_or_else(|| AccessError::FactorRequired {
        user: person.user.clone(),
        action: action.to_string(),
    })?;
    totp::verify(ctx, person, code, action).await?;
    Ok(true)
}

/// Lets a dangerous operation from the CLI through, or says why not (see the module docs).
///
/// # Errors
/// Every refusal of [`AccessError`]; under enforce without an approval, the request is recorded
/// and [`AccessError::ApprovalRequired`] names it.
pub async fn cli(
    ctx: &Context,
    person: &Person,
    op: &Operation,
    supplied: &Supplied,
) -> Result<Grant, AccessError> {
    let action = op.action();
    require_role(person, Role::Administrator, action, ctx)?;
    // Enrolment is not four-eyes: the first administrator must be able to enrol.
    let enforced = ctx.config.access.enforce && !matches!(op, Operation::TotpChange { .. });

    // What can be refused without a code is refused first: no code is spent on it.
    if !enforced && (supplied.break_glass.is_some() || supplied.approval.is_some()) {
        return Err(AccessError::Usage(
            "--break-glass and --approval are for [access] enforce = true; without it this operation needs neither".into(),
        ));
    }
    if let Some(reason) = supplied.break_glass.as_deref()
        && reason.trim().len() < 10
    {
        return Err(AccessError::Usage(
            "--break-glass needs a reason an auditor can understand (at least 10 characters)"
                .into(),
        ));
    }
    if let Some(id) = supplied.approval.as_deref() {
        let now = crate::model::time::format(crate::model::time::now());
        let found =
            ctx.catalog.approval(id).await?.ok_or_else(|| {
                AccessError::ApprovalRefused(use_refusal(id, &UseRefusal::Unknown))
            })?;
        crate::catalog::Catalog::check_use(&found, &op.fingerprint(), &person.user, &now)
            .map_err(|r| AccessError::ApprovalRefused(use_refusal(id, &r)))?;
    }
    let given = second_factor(ctx, person, action, supplied.code.as_deref()).await?;
    let mut grant = Grant {
        id: Grant::new_id(),
        action: action.to_string(),
        four_eyes: !matches!(op, Operation::TotpChange { .. }),
        second_factor: given,
        identified_by: person.how.to_string(),
        ..Grant::default()
    };
    if !enforced {
        return Ok(grant);
    }
    if let Some(reason) = supplied.break_glass.as_deref() {
        break_glass(ctx, person, op, reason, given).await;
        grant.break_glass = Some(reason.to_string());
        return Ok(grant);
    }
    if let Some(id) = supplied.approval.as_deref() {
        let approved = ctx
            .catalog
            .use_approval(id, &op.fingerprint(), &person.user)
            .await?
            .map_err(|r| AccessError::ApprovalRefused(use_refusal(id, &r)))?;
        grant.approval = Some(approved.id);
        grant.approved_by = approved.approved_by;
        grant.approver_second_factor = Some(approved.approver_factor);
        return Ok(grant);
    }
    let request = serde_json::to_value(op).unwrap_or_default();
    let summary = op.summary();
    let (id, expires) = ctx
        .catalog
        .request_approval(&NewApproval {
            origin: Origin::Cli,
            action,
            summary: &summary,
            fingerprint: &op.fingerprint(),
            request: &request,
            requester: &person.user,
            uid: person.uid,
            requester_factor: given,
            valid_for: ctx.config.access.approval_expiry,
        })
        .await?;
    audit(
        ctx,
        person,
        action,
        "approval-requested",
        serde_json::json!({ "operation": op, "request": id }),
        Some(summary),
    );
    Err(AccessError::ApprovalRequired {
        id,
        action: action.to_string(),
        expires,
    })
}

fn use_refusal(id: &str, r: &UseRefusal) -> String {
    match r {
        UseRefusal::Unknown => format!("approval {id} does not exist (or is not a CLI request)"),
        UseRefusal::NotApproved => {
            format!(
                "approval {id} has not been approved yet: a second administrator must run `custodian approve {id}`"
            )
        }
        UseRefusal::Expired { at } => {
            format!("approval {id} expired at {at}; request it again")
        }
        UseRefusal::AlreadyUsed { at } => {
            format!("approval {id} was already used at {at}; an approval runs one operation once")
        }
        UseRefusal::OtherRequester { requester } => {
            format!("approval {id} was requested by {requester}; only they can use it")
        }
        UseRefusal::OtherOperation { summary } => format!(
            "approval {id} is for another operation ({summary}); run exactly that, or request a new approval"
        ),
    }
}

/// Records and alerts a break-glass use at once.
async fn break_glass(ctx: &Context, person: &Person, op: &Operation, reason: &str, factor: bool) {
    audit(
        ctx,
        person,
        "break-glass",
        "used",
        serde_json::json!({ "operation": op, "reason": reason, "second_factor": factor }),
        Some(op.summary()),
    );
    tracing::warn!(
        user = person.user,
        action = op.action(),
        "BREAK-GLASS: {} without a second administrator: {reason}",
        op.summary()
    );
    let event = crate::job::alert::JobEvent {
        error: None,
        job: "break-glass".into(),
        kind: op.action(),
        status: "break-glass",
        host: ctx.config.hostname.clone(),
        time: crate::model::time::format(crate::model::time::now()),
        detail: Some(format!(
            "{} used break-glass to {} without a second administrator. Reason: {reason}",
            person.user,
            op.summary()
        )),
    };
    crate::job::alert::send(ctx, &event).await;
}

fn audit(
    ctx: &Context,
    person: &Person,
    action: &str,
    outcome: &str,
    params: serde_json::Value,
    detail: Option<String>,
) {
    ctx.audit_action(NewEntry {
        actor: person.user.clone(),
        uid: person.uid,
        role: person.role.map_or("none", Role::as_str).to_string(),
        trigger: ctx.trigger.as_str().to_string(),
        action: action.to_string(),
        target: None,
        params,
        outcome: outcome.to_string(),
        detail,
    });
}
