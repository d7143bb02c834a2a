//! Four-eyes approvals: a dangerous request (through the control socket, or from the CLI under
//! `[access] enforce`) waits here until a second, different administrator approves it, or it
//! expires. A socket request runs when approved; a CLI request is then run by its requester,
//! once, with `--approval ID`, and only for exactly the operation that was approved.

use std::time::Duration;

use rand::RngExt;
use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Catalog, CatalogError, query_err};
use crate::model::time;

/// Where a request came from, and so who runs it once approved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The daemon runs it, as the requester, when it is approved.
    Socket,
    /// The requester runs it with `--approval ID`.
    Cli,
}

impl Origin {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Socket => "socket",
            Self::Cli => "cli",
        }
    }

    fn parse(text: &str) -> Self {
        if text == "cli" {
            Self::Cli
        } else {
            Self::Socket
        }
    }
}

/// A request to record.
pub struct NewApproval<'a> {
    pub origin: Origin,
    /// `restore`, `prune`, `keys.replace`, …
    pub action: &'a str,
    /// What will run, in words, for the approver to read.
    pub summary: &'a str,
    /// The canonical operation's hash: what `--approval` must match.
    pub fingerprint: &'a str,
    /// The request (names and references only: never a secret).
    pub request: &'a serde_json::Value,
    pub requester: &'a str,
    pub uid: u32,
    /// The requester gave a valid second factor.
    pub requester_factor: bool,
    pub valid_for: Duration,
}

/// A request as stored.
#[derive(Clone, Debug, Serialize)]
pub struct Approval {
    pub id: String,
    pub origin: Origin,
    pub action: String,
    pub summary: String,
    #[serde(skip)]
    pub fingerprint: String,
    pub request: serde_json::Value,
    pub requested_by: String,
    pub requested_uid: u32,
    pub created_at: String,
    pub expires_at: String,
    pub approved_by: Option<String>,
    pub approved_at: Option<String>,
    pub requester_factor: bool,
    pub approver_factor: bool,
    pub used_at: Option<String>,
    pub outcome: Option<String>,
    pub outcome_detail: Option<String>,
}

impl Approval {
    /// `pending`, `expired`, `approved` (a CLI request not run yet), `succeeded`, `failed`.
    #[must_use]
    pub fn state(&self, now: &str) -> &'static str {
        match (&self.approved_at, self.outcome.as_deref()) {
            (_, Some("succeeded")) => "succeeded",
            (_, Some(_)) => "failed",
            (Some(_), None) => "approved",
            (None, None) if self.expires_at.as_str() <= now => "expired",
            (None, None) => "pending",
        }
    }
}

/// Why an approval was refused: each reason is its own sentence for the approver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Expired { at: String },
    AlreadyApproved { by: String, at: String },
    Own,
}

/// Why `--approval ID` cannot be used for an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UseRefusal {
    Unknown,
    NotApproved,
    Expired { at: String },
    AlreadyUsed { at: String },
    OtherRequester { requester: String },
    OtherOperation { summary: String },
}

const COLUMNS: &str =
    "id, origin, action, summary, fingerprint, request, requested_by, requested_uid,
    created_at, expires_at, approved_by, approved_at, requester_factor, approver_factor, used_at,
    outcome, outcome_detail";

fn row(r: &SqliteRow) -> Approval {
    Approval {
        id: r.get("id"),
        origin: Origin::parse(r.get::<&str, _>("origin")),
        action: r.get("action"),
        summary: r.get("summary"),
        fingerprint: r.get("fingerprint"),
        request: serde_json::from_str(r.get::<&str, _>("request")).unwrap_or_default(),
        requested_by: r.get("requested_by"),
        requested_uid: u32::try_from(r.get::<i64, _>("requested_uid")).unwrap_or(u32::MAX),
        created_at: r.get("created_at"),
        expires_at: r.get("expires_at"),
        approved_by: r.get("approved_by"),
        approved_at: r.get("approved_at"),
        requester_factor: r.get::<i64, _>("requester_factor") != 0,
        approver_factor: r.get::<i64, _>("approver_factor") != 0,
        used_at: r.get("used_at"),
        outcome: r.get("outcome"),
        outcome_detail: r.get("outcome_detail"),
    }
}

impl Catalog {
    /// Records a request waiting for approval; returns its id and expiry.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn request_approval(
        &self,
        new: &NewApproval<'_>,
    ) -> Result<(String, String), CatalogError> {
        let id = format!("{:08x}", rand::rng().random::<u32>());
        let now = time::now();
        let expires = now
            .checked_add(jiff::SignedDuration::try_from(new.valid_for).unwrap_or_default())
            .unwrap_or(now);
        sqlx::query(
            "INSERT INTO approvals (id, origin, action, summary, fingerprint, request, requested_by,
               requested_uid, requester_factor, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(new.origin.as_str())
        .bind(new.action)
        .bind(new.summary)
        .bind(new.fingerprint)
        .bind(new.request.to_string())
        .bind(new.requester)
        .bind(i64::from(new.uid))
        .bind(i64::from(new.requester_factor))
        .bind(time::format(now))
        .bind(time::format(expires))
        .execute(self.pool())
        .await
        .map_err(query_err("recording an approval request"))?;
        Ok((id, time::format(expires)))
    }

    /// One request, whatever its state.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn approval(&self, id: &str) -> Result<Option<Approval>, CatalogError> {
        let found = sqlx::query(&format!("SELECT {COLUMNS} FROM approvals WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(query_err("reading an approval request"))?;
        Ok(found.as_ref().map(row))
    }

    /// Requests still waiting for a second administrator, oldest first.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn pending_approvals(&self) -> Result<Vec<Approval>, CatalogError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE approved_at IS NULL AND expires_at > ?
             ORDER BY created_at"
        ))
        .bind(time::format(time::now()))
        .fetch_all(self.pool())
        .await
        .map_err(query_err("listing approval requests"))?;
        Ok(rows.iter().map(row).collect())
    }

    /// The most recent requests in any state, newest first.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn recent_approvals(&self, limit: u32) -> Result<Vec<Approval>, CatalogError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM approvals ORDER BY created_at DESC LIMIT ?"
        ))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(query_err("listing approval requests"))?;
        Ok(rows.iter().map(row).collect())
    }

    /// Approves a pending request by a *different* user, atomically: the approved request, or
    /// why not.
    ///
    /// # Errors
    /// When the catalog cannot be read or written.
    pub async fn approve(
        &self,
        id: &str,
        approver: &str,
        approver_uid: u32,
        approver_factor: bool,
    ) -> Result<Result<Approval, Refusal>, CatalogError> {
        let now = time::format(time::now());
        let updated = sqlx::query(
            "UPDATE approvals SET approved_by = ?, approved_uid = ?, approved_at = ?, approver_factor = ?
             WHERE id = ? AND approved_at IS NULL AND expires_at > ?
               AND requested_uid <> ? AND requested_by <> ?",
        )
        .bind(approver)
        .bind(i64::from(approver_uid))
        .bind(&now)
        .bind(i64::from(approver_factor))
        .bind(id)
        .bind(&now)
        .bind(i64::from(approver_uid))
        .bind(approver)
        .execute(self.pool())
        .await
        .map_err(query_err("approving a request"))?;
        let Some(found) = self.approval(id).await? else {
            return Ok(Err(Refusal::Unknown));
        };
        if updated.rows_affected() == 1 {
            return Ok(Ok(found));
        }
        Ok(Err(match found.approved_at {
            Some(at) => Refusal::AlreadyApproved {
                by: found.approved_by.unwrap_or_default(),
                at,
            },
            None if found.requested_by == approver || found.requested_uid == approver_uid => {
                Refusal::Own
            }
            None => Refusal::Expired {
                at: found.expires_at,
            },
        }))
    }

    /// Checks, without consuming it, that `approval` can be used by `requester` for the
    /// operation `fingerprint` now.
    ///
    /// # Errors
    /// Why not.
    pub fn check_use(
        approval: &Approval,
        fingerprint: &str,
        requester: &str,
        now: &str,
    ) -> Result<(), UseRefusal> {
        if approval.origin != Origin::Cli {
            Err(UseRefusal::Unknown)
        } else if approval.requested_by != requester {
            Err(UseRefusal::OtherRequester {
                requester: approval.requested_by.clone(),
            })
        } else if approval.fingerprint != fingerprint {
            Err(UseRefusal::OtherOperation {
                summary: approval.summary.clone(),
            })
        } else if let Some(at) = &approval.used_at {
            Err(UseRefusal::AlreadyUsed { at: at.clone() })
        } else if approval.approved_at.is_none() {
            Err(UseRefusal::NotApproved)
        } else if approval.expires_at.as_str() <= now {
            Err(UseRefusal::Expired {
                at: approval.expires_at.clone(),
            })
        } else {
            Ok(())
        }
    }

    /// Consumes an approved CLI request for exactly the operation `fingerprint`, by its
    /// requester, once.
    ///
    /// # Errors
    /// When the catalog cannot be read or written.
    pub async fn use_approval(
        &self,
        id: &str,
        fingerprint: &str,
        requester: &str,
    ) -> Result<Result<Approval, UseRefusal>, CatalogError> {
        let now = time::format(time::now());
        let updated = sqlx::query(
            "UPDATE approvals SET used_at = ?
             WHERE id = ? AND origin = 'cli' AND approved_at IS NOT NULL AND used_at IS NULL
               AND expires_at > ? AND fingerprint = ? AND requested_by = ?",
        )
        .bind(&now)
        .bind(id)
        .bind(&now)
        .bind(fingerprint)
        .bind(requester)
        .execute(self.pool())
        .await
        .map_err(query_err("using an approval"))?;
        let Some(found) = self.approval(id).await? else {
            return Ok(Err(UseRefusal::Unknown));
        };
        if updated.rows_affected() == 1 {
            return Ok(Ok(found));
        }
        Ok(Err(Self::check_use(&found, fingerprint, requester, &now)
            .err()
            .unwrap_or(UseRefusal::AlreadyUsed {
                at: found.used_at.clone().unwrap_or(now),
            })))
    }

    /// What became of an approved request once it ran.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn approval_outcome(
        &self,
        id: &str,
        succeeded: bool,
        detail: &str,
    ) -> Result<(), CatalogError> {
        sqlx::query("UPDATE approvals SET outcome = ?, outcome_detail = ? WHERE id = ?")
            .bind(if succeeded { "succeeded" } else { "failed" })
            .bind(detail)
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(query_err("recording an approved request's outcome"))?;
        Ok(())
    }
}
