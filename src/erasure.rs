//! The GDPR erasure ledger's pure parts: pseudonymous subject ids (keyed hashes), binding
//! `:subject` in replay SQL for each engine, and the erasure horizon — when the last copy that
//! may hold an erased subject is gone from every location.

use hmac::{Hmac, KeyInit, Mac};
use jiff::Timestamp;
use serde::Serialize;
use sha2::Sha256;

/// The ledger's id of a subject: `hmac-sha256:<hex>` under the ledger key, or `plain:<key>`
/// when hashing is off. The key is trimmed; nothing else is normalised (write keys the way
/// the CRM stores them).
#[must_use]
pub fn subject_id(ledger_key: Option<&[u8]>, subject: &str) -> String {
    let subject = subject.trim();
    match ledger_key {
        Some(key) => {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                .expect("HMAC accepts keys of any length");
            mac.update(subject.as_bytes());
            format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
        }
        None => format!("plain:{subject}"),
    }
}

/// The raw key of a `plain:` id (hashed ids have none).
#[must_use]
pub fn plain_subject(id: &str) -> Option<&str> {
    id.strip_prefix("plain:")
}

/// A short, non-reversible label for messages and reports (`hmac-sha256:1f2e3d4c…`).
#[must_use]
pub fn short(id: &str) -> String {
    match id.split_once(':') {
        Some(("plain", _)) => "plain:…".to_string(),
        Some((kind, hex)) => format!("{kind}:{}…", &hex[..hex.len().min(12)]),
        None => "…".to_string(),
    }
}

/// One snapshot that may hold a subject: where, when taken, when removed (if retention
/// removed it), and the location's retention maximum and Object Lock period.
#[derive(Clone, Debug)]
pub struct Copy {
    pub location: String,
    pub taken_at: Timestamp,
    pub removed_at: Option<Timestamp>,
    /// Days; `None`: the retention policy has no age bound.
    pub retention_max_days: Option<f64>,
    /// Which rule gives that maximum (or why there is none), for the explanation.
    pub retention_rule: String,
    pub lock_days: Option<u32>,
}

/// One ledger entry with its horizon (`erasure status`, and the report's evidence).
#[derive(Clone, Debug, Serialize)]
pub struct SubjectStatus {
    pub id: String,
    pub source: String,
    pub subject: String,
    pub request: String,
    pub recorded_at: String,
    pub recorded_by: String,
    pub horizon: Horizon,
    /// Every copy that may hold the subject is gone (at the time of asking).
    pub gone: bool,
}

/// When a subject is gone from one location, or from all.
#[derive(Clone, Debug, Serialize)]
pub struct Horizon {
    /// `None`: never, as configured (a location keeps copies without an age bound).
    pub gone_by: Option<String>,
    /// Snapshots taken before the erasure, still held or locked at the time of asking.
    pub copies: usize,
    pub per_location: Vec<LocationHorizon>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LocationHorizon {
    pub location: String,
    pub gone_by: Option<String>,
    /// Why: the rule that bounds it.
    pub because: String,
}

fn plus_days(t: Timestamp, days: f64) -> Timestamp {
    t + jiff::SignedDuration::from_secs_f64(days * 86_400.0)
}

/// The erasure horizon of a subject erased at `erased_at`: every snapshot taken before then
/// may hold the subject; each is gone when retention removes it (already removed, or at most
/// its retention maximum after it was taken) and, in an Object Lock location, when the lock
/// of its last version expires (at most the lock period after its removal).
#[must_use]
pub fn horizon(erased_at: Timestamp, copies: &[Copy], locations: &[String]) -> Horizon {
    let mut per_location = Vec::new();
    let mut overall: Option<Option<Timestamp>> = Some(None);
    let mut held = 0usize;
    for location in locations {
        let before: Vec<&Copy> = copies
            .iter()
            .filter(|c| &c.location == location && c.taken_at < erased_at)
            .collect();
        let mut gone: Option<Timestamp> = None;
        let mut unbounded = false;
        let mut because = "no snapshot taken before the erasure".to_string();
        for c in &before {
            let removal = match (c.removed_at, c.retention_max_days) {
                (Some(r), _) => Some(r),
                (None, Some(max)) => Some(plus_days(c.taken_at, max)),
                (None, None) => None,
            };
            let Some(removal) = removal else {
                unbounded = true;
                because = format!(
                    "retention keeps copies without an age bound ({})",
                    c.retention_rule
                );
                continue;
            };
            let end = match c.lock_days {
                Some(days) => plus_days(removal, f64::from(days)),
                None => removal,
            };
            if gone.is_none_or(|g| end > g) {
                gone = Some(end);
                because = match (c.removed_at.is_some(), c.lock_days) {
                    (true, Some(d)) => {
                        format!("removed by retention; locked versions expire {d} days later")
                    }
                    (true, None) => "removed by retention".into(),
                    (false, Some(d)) => format!(
                        "retention maximum {:.0} days after it was taken, then its Object Lock ({d} days)",
                        c.retention_max_days.unwrap_or(0.0)
                    ),
                    (false, None) => format!(
                        "retention maximum {:.0} days after it was taken",
                        c.retention_max_days.unwrap_or(0.0)
                    ),
                };
            }
        }
        held += before.len();
        let location_gone = if unbounded { None } else { gone };
        overall = match (overall, unbounded) {
            (None, _) | (_, true) => None,
            (Some(o), false) => Some(match (o, location_gone) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            }),
        };
        per_location.push(LocationHorizon {
            location: location.clone(),
            gone_by: location_gone.map(crate::model::time::format).or_else(|| {
                (!unbounded && before.is_empty()).then(|| crate::model::time::format(erased_at))
            }),
            because,
        });
    }
    Horizon {
        gone_by: overall.map(|o| crate::model::time::format(o.unwrap_or(erased_at))),
        copies: held,
        per_location,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn copy(
        location: &str,
        taken: &str,
        removed: Option<&str>,
        max: Option<f64>,
        lock: Option<u32>,
    ) -> Copy {
        Copy {
            location: location.into(),
            taken_at: t(taken),
            removed_at: removed.map(t),
            retention_max_days: max,
            retention_rule: if max.is_some() {
                "max-age"
            } else {
                "keep-last only: no age bound"
            }
            .into(),
            lock_days: lock,
        }
    }

    #[test]
    fn subject_ids_are_keyed_and_stable() {
        let a = subject_id(Some(b"k1"), " alice@example.org ");
        assert_eq!(a, subject_id(Some(b"k1"), "alice@example.org"));
        assert_ne!(a, subject_id(Some(b"k2"), "alice@example.org"));
        assert!(a.starts_with("hmac-sha256:") && !a.contains("alice"));
        assert_eq!(subject_id(None, "alice"), "plain:alice");
        assert_eq!(plain_subject("plain:alice"), Some("alice"));
        assert!(!short(&a).contains(&a[20..]));
    }

    #[test]
    fn horizon_across_retention_and_lock() {
        let erased = t("2026-11-10T00:00:00Z");
        let locations = vec!["local".to_string(), "offsite".to_string()];
        // local: max-age 30 d; the newest copy before the erasure (9 Nov) expires 9 Dec.
        // offsite: max-age 30 d plus a 30-day lock: 8 Jan.
        let copies = vec![
            copy("local", "2026-11-01T00:00:00Z", None, Some(30.0), None),
            copy("local", "2026-11-09T00:00:00Z", None, Some(30.0), None),
            copy("local", "2026-11-11T00:00:00Z", None, Some(30.0), None), // after: clean
            copy(
                "offsite",
                "2026-11-09T00:00:00Z",
                None,
                Some(30.0),
                Some(30),
            ),
        ];
        let h = horizon(erased, &copies, &locations);
        assert_eq!(h.copies, 3);
        assert_eq!(
            h.per_location[0].gone_by.as_deref(),
            Some("2026-12-09T00:00:00.000Z")
        );
        assert_eq!(
            h.per_location[1].gone_by.as_deref(),
            Some("2027-01-08T00:00:00.000Z")
        );
        assert_eq!(h.gone_by.as_deref(), Some("2027-01-08T00:00:00.000Z"));

        // Removed by retention on 20 Nov: gone then locally, 30 days later where locked.
        let copies = vec![
            copy(
                "local",
                "2026-11-09T00:00:00Z",
                Some("2026-11-20T00:00:00Z"),
                Some(30.0),
                None,
            ),
            copy(
                "offsite",
                "2026-11-09T00:00:00Z",
                Some("2026-11-20T00:00:00Z"),
                Some(30.0),
                Some(30),
            ),
        ];
        let h = horizon(erased, &copies, &locations);
        assert_eq!(
            h.per_location[0].gone_by.as_deref(),
            Some("2026-11-20T00:00:00.000Z")
        );
        assert_eq!(h.gone_by.as_deref(), Some("2026-12-20T00:00:00.000Z"));

        // keep-last only: no age bound anywhere → never, as configured.
        let copies = vec![copy("local", "2026-11-09T00:00:00Z", None, None, None)];
        let h = horizon(erased, &copies, &locations);
        assert_eq!(h.gone_by, None);
        assert_eq!(h.per_location[0].gone_by, None);
        // offsite held nothing from before the erasure: gone at the erasure itself.
        assert_eq!(
            h.per_location[1].gone_by.as_deref(),
            Some("2026-11-10T00:00:00.000Z")
        );

        // No copy before the erasure at all: gone at once.
        let h = horizon(erased, &[], &locations);
        assert_eq!(h.gone_by.as_deref(), Some("2026-11-10T00:00:00.000Z"));
    }
}
