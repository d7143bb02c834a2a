//! Four-eyes approvals for dangerous control-socket requests.

use std::time::Duration;

use rand::RngExt;
use sqlx::Row;

use super::{Catalog, CatalogError, query_err};
use crate::model::time;

impl Catalog {
    /// Records a request waiting for approval; returns its id and expiry.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn request_approval(
        &self,
        request: &serde_json::Value,
        user: &str,
        uid: u32,
        valid_for: Duration,
    ) -> Result<(String, String), CatalogError> {
        let id = format!("{:08x}", rand::rng().random::<u32>());
        let now = time::now();
        let expires = now
            .checked_add(jiff::SignedDuration::try_from(valid_for).unwrap_or_default())
            .unwrap_or(now);
        sqlx::query(
            "INSERT INTO approvals (id, request, requested_by, requested_uid, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(request.to_string())
        .bind(user)
        .bind(i64::from(uid))
        .bind(time::format(now))
        .bind(time::format(expires))
        .execute(self.pool())
        .await
        .map_err(query_err("recording an approval request"))?;
        Ok((id, time::format(expires)))
    }

    /// Approves a pending request by a *different* user: returns the request, its requester
    /// and their uid, or `None` when it does not exist, expired, was approved already, or is
    /// the approver's own.
    ///
    /// # Errors
    /// When the catalog cannot be read or written.
    pub async fn take_approval(
        &self,
        id: &str,
        approver: &str,
        approver_uid: u32,
    ) -> Result<Option<(serde_json::Value, String, u32)>, CatalogError> {
        let now = time::format(time::now());
        let updated = sqlx::query(
            "UPDATE approvals SET approved_by = ?, approved_uid = ?, approved_at = ?
             WHERE id = ? AND approved_at IS NULL AND expires_at > ?
               AND requested_uid <> ? AND requested_by <> ?",
        )
        .bind(approver)
        .bind(i64::from(approver_uid))
        .bind(&now)
        .bind(id)
        .bind(&now)
        .bind(i64::from(approver_uid))
        .bind(approver)
        .execute(self.pool())
        .await
        .map_err(query_err("approving a request"))?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        let row =
            sqlx::query("SELECT request, requested_by, requested_uid FROM approvals WHERE id = ?")
                .bind(id)
                .fetch_one(self.pool())
                .await
                .map_err(query_err("reading an approved request"))?;
        let request: String = row.get("request");
        Ok(Some((
            serde_json::from_str(&request).unwrap_or_default(),
            row.get("requested_by"),
            u32::try_from(row.get::<i64, _>("requested_uid")).unwrap_or(u32::MAX),
        )))
    }
}
