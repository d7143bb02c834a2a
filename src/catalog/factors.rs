//! Enrolled second factors: one encrypted TOTP secret per person, with the state that makes
//! codes single-use and guessing slow (the checks themselves are in `access::totp`).

use serde::Serialize;
use sqlx::Row;

use super::{Catalog, CatalogError, query_err};

/// A person's enrolment, as stored (the secret stays encrypted).
#[derive(Clone, Debug, Serialize)]
pub struct Factor {
    pub user: String,
    #[serde(skip)]
    pub secret: String,
    pub enrolled_at: String,
    pub enrolled_by: String,
    /// The last time step a code was accepted for: only later steps are accepted.
    #[serde(skip)]
    pub last_step: u64,
    pub failures: u32,
    pub last_failure: Option<String>,
    pub locked_until: Option<String>,
}

impl Catalog {
    /// Enrols (or re-enrols) a person.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn enrol_factor(
        &self,
        user: &str,
        secret: &str,
        enrolled_at: &str,
        enrolled_by: &str,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO second_factors (user, secret, enrolled_at, enrolled_by) VALUES (?, ?, ?, ?)
             ON CONFLICT(user) DO UPDATE SET secret = excluded.secret,
               enrolled_at = excluded.enrolled_at, enrolled_by = excluded.enrolled_by,
               last_step = 0, failures = 0, last_failure = NULL, locked_until = NULL",
        )
        .bind(user)
        .bind(secret)
        .bind(enrolled_at)
        .bind(enrolled_by)
        .execute(self.pool())
        .await
        .map_err(query_err("enrolling a second factor"))?;
        Ok(())
    }

    /// A person's enrolment.
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn factor(&self, user: &str) -> Result<Option<Factor>, CatalogError> {
        let row = sqlx::query(
            "SELECT user, secret, enrolled_at, enrolled_by, last_step, failures, last_failure,
                    locked_until
             FROM second_factors WHERE user = ?",
        )
        .bind(user)
        .fetch_optional(self.pool())
        .await
        .map_err(query_err("reading a second factor"))?;
        Ok(row.map(|r| Factor {
            user: r.get("user"),
            secret: r.get("secret"),
            enrolled_at: r.get("enrolled_at"),
            enrolled_by: r.get("enrolled_by"),
            last_step: u64::try_from(r.get::<i64, _>("last_step")).unwrap_or(0),
            failures: u32::try_from(r.get::<i64, _>("failures")).unwrap_or(u32::MAX),
            last_failure: r.get("last_failure"),
            locked_until: r.get("locked_until"),
        }))
    }

    /// Every enrolment (no secrets leave the catalog through this).
    ///
    /// # Errors
    /// When the catalog cannot be read.
    pub async fn factors(&self) -> Result<Vec<Factor>, CatalogError> {
        let rows = sqlx::query(
            "SELECT user, enrolled_at, enrolled_by, failures, last_failure, locked_until
             FROM second_factors ORDER BY user",
        )
        .fetch_all(self.pool())
        .await
        .map_err(query_err("listing second factors"))?;
        Ok(rows
            .iter()
            .map(|r| Factor {
                user: r.get("user"),
                secret: String::new(),
                enrolled_at: r.get("enrolled_at"),
                enrolled_by: r.get("enrolled_by"),
                last_step: 0,
                failures: u32::try_from(r.get::<i64, _>("failures")).unwrap_or(u32::MAX),
                last_failure: r.get("last_failure"),
                locked_until: r.get("locked_until"),
            })
            .collect())
    }

    /// Accepts a code for `step`, atomically: only when no code of this or a later step was
    /// accepted before (so two processes cannot both accept the same code). Clears failures.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn accept_factor_step(&self, user: &str, step: u64) -> Result<bool, CatalogError> {
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        let updated = sqlx::query(
            "UPDATE second_factors SET last_step = ?, failures = 0, locked_until = NULL
             WHERE user = ? AND last_step < ?",
        )
        .bind(step)
        .bind(user)
        .bind(step)
        .execute(self.pool())
        .await
        .map_err(query_err("accepting a second factor"))?;
        Ok(updated.rows_affected() == 1)
    }

    /// Counts a failed attempt; returns the count of consecutive failures. With `lock_until`,
    /// the person is locked out until then.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn fail_factor(
        &self,
        user: &str,
        at: &str,
        lock_until: Option<&str>,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE second_factors SET failures = failures + 1, last_failure = ?,
               locked_until = COALESCE(?, locked_until)
             WHERE user = ?",
        )
        .bind(at)
        .bind(lock_until)
        .bind(user)
        .execute(self.pool())
        .await
        .map_err(query_err("recording a failed second factor"))?;
        Ok(())
    }

    /// Removes a person's enrolment.
    ///
    /// # Errors
    /// When the catalog cannot be written.
    pub async fn remove_factor(&self, user: &str) -> Result<bool, CatalogError> {
        let done = sqlx::query("DELETE FROM second_factors WHERE user = ?")
            .bind(user)
            .execute(self.pool())
            .await
            .map_err(query_err("removing a second factor"))?;
        Ok(done.rows_affected() == 1)
    }
}
