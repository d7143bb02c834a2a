//! What a database holds besides table rows: its own properties, every schema object with a
//! hash of its definition, sequences, materialized views and large objects. A backup records
//! it from the dump's own snapshot; a restore or a drill describes the restored database the
//! same way and [`Objects::compare`] names every difference in a sentence.
//!
//! Definitions are hashed as the server itself prints them (`pg_get_viewdef`, `SHOW CREATE
//! TABLE`, `sqlite_schema.sql`…), so the comparison is exact between a database and its
//! restore on the same server version; what an engine cannot see is listed in
//! [`Objects::not_covered`] and shown with every verification, never passed silently.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// `sha256:` and the first 16 hex digits of the SHA-256 of `text`: short enough to keep
/// thousands of object hashes in a manifest, far beyond accidental collisions.
#[must_use]
pub fn short_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    format!("sha256:{}", &hex::encode(digest)[..16])
}

/// One schema object: a hash of its definition (comment included) and, separately, of its
/// owner and privileges — a restore without the source's roles cannot reproduce those, and says
/// so instead of failing on them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectState {
    pub definition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
}

impl ObjectState {
    /// An object from its definition text and its owner/privileges text (empty: none).
    #[must_use]
    pub fn new(definition: &str, access: &str) -> Self {
        Self {
            definition: short_hash(definition),
            access: (!access.is_empty()).then(|| short_hash(access)),
        }
    }
}

/// A sequence's position. Sequences are not transactional: the value pg_dump saved lies
/// between what Custodian read just before the dump started and just after it had read them, so
/// the backup records that range (`last_value` ..= `last_value_max`; one value when it did not
/// move).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceState {
    pub name: String,
    pub last_value: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_value_max: Option<i64>,
    pub is_called: bool,
    pub increment: i64,
}

/// A materialized view: whether it is populated and, when its query is deterministic, the
/// row count and checksum of what it holds after a refresh at the dump's snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatviewState {
    pub name: String,
    pub populated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// Why the content is not compared (a query that depends on time or volatile functions
    /// gives other rows at every refresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_not_compared: Option<String>,
}

/// Large objects (PostgreSQL): how many, a checksum over their ids and contents, and a hash of
/// their owners and privileges.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LargeObjects {
    pub count: u64,
    pub checksum: String,
    pub access: String,
}

/// Everything but table rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objects {
    /// The server that described the database (`PostgreSQL 15.18`, `MariaDB 10.11.6`, `SQLite
    /// 3.40.1`).
    pub server: String,
    /// Database-level properties: encoding, collation, default character set, owner, settings…
    pub database: BTreeMap<String, String>,
    /// Schema objects by class (`view`, `function`, `index`…): identity → state.
    pub classes: BTreeMap<String, BTreeMap<String, ObjectState>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sequences: Vec<SequenceState>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub materialized_views: Vec<MatviewState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large_objects: Option<LargeObjects>,
    /// What this engine's description does not see, in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_covered: Vec<String>,
}

/// What a comparison may leave out, because the restore could not reproduce it by design.
#[derive(Clone, Copy, Debug, Default)]
pub struct CompareScope {
    /// Owners and privileges (a restore with `--no-owner --no-privileges` into a server
    /// without the source's roles).
    pub skip_access: bool,
    /// A cluster recovered from its WAL (a PITR drill): PostgreSQL logs a sequence 32 values
    /// ahead of what it hands out, so a recovered sequence may stand up to 32 increments past
    /// the value the backup saw (and always counts as advanced).
    pub sequences_logged_ahead: bool,
}

/// How far ahead of the values it hands out PostgreSQL logs a sequence (`SEQ_LOG_VALS`).
const SEQUENCE_LOG_AHEAD: i64 = 32;

/// One way a restored database differs from the backup, besides table rows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ObjectMismatch {
    DatabaseProperty {
        property: String,
        restored: Option<String>,
        backup: Option<String>,
    },
    Missing {
        class: String,
        name: String,
    },
    Extra {
        class: String,
        name: String,
    },
    Definition {
        class: String,
        name: String,
    },
    Access {
        class: String,
        name: String,
    },
    SequenceMissing {
        name: String,
    },
    SequenceValue {
        name: String,
        restored: i64,
        backup: i64,
        backup_max: Option<i64>,
    },
    SequenceCalled {
        name: String,
        restored: bool,
    },
    MatviewMissing {
        name: String,
    },
    MatviewPopulated {
        name: String,
        restored: bool,
    },
    MatviewContent {
        name: String,
        restored_rows: Option<u64>,
        backup_rows: Option<u64>,
    },
    LargeObjects {
        what: String,
    },
}

fn value(v: Option<&String>) -> String {
    v.map_or_else(|| "nothing".to_string(), |v| format!("`{v}`"))
}

impl fmt::Display for ObjectMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DatabaseProperty {
                property,
                restored,
                backup,
            } => write!(
                f,
                "database {property}: {} restored, {} in the backup",
                value(restored.as_ref()),
                value(backup.as_ref())
            ),
            Self::Missing { class, name } => write!(
                f,
                "{class} {name}: in the backup but missing from the restored database"
            ),
            Self::Extra { class, name } => write!(
                f,
                "{class} {name}: in the restored database but not in the backup"
            ),
            Self::Definition { class, name } => write!(
                f,
                "{class} {name}: its definition differs from the backup's"
            ),
            Self::Access { class, name } => write!(
                f,
                "{class} {name}: its owner or privileges differ from the backup's"
            ),
            Self::SequenceMissing { name } => write!(
                f,
                "sequence {name}: in the backup but missing from the restored database"
            ),
            Self::SequenceValue {
                name,
                restored,
                backup,
                backup_max,
            } => match backup_max {
                Some(max) => write!(
                    f,
                    "sequence {name}: last value {restored} restored, {backup} to {max} in the backup"
                ),
                None => write!(
                    f,
                    "sequence {name}: last value {restored} restored, {backup} in the backup"
                ),
            },
            Self::SequenceCalled { name, restored } => write!(
                f,
                "sequence {name}: {} after the restore, {} in the backup",
                if *restored {
                    "advanced"
                } else {
                    "not advanced"
                },
                if *restored {
                    "not advanced"
                } else {
                    "advanced"
                }
            ),
            Self::MatviewMissing { name } => write!(
                f,
                "materialized view {name}: in the backup but missing from the restored database"
            ),
            Self::MatviewPopulated { name, restored } => {
                if *restored {
                    write!(
                        f,
                        "materialized view {name} is populated after the restore (it was not in the backup)"
                    )
                } else {
                    write!(
                        f,
                        "materialized view {name} is not populated after the restore (it was in the backup)"
                    )
                }
            }
            Self::MatviewContent {
                name,
                restored_rows,
                backup_rows,
            } => match (restored_rows, backup_rows) {
                (Some(r), Some(b)) if r != b => write!(
                    f,
                    "materialized view {name}: {} rows after the restore, {} in the backup",
                    super::group_digits(*r),
                    super::group_digits(*b)
                ),
                _ => write!(
                    f,
                    "materialized view {name}: its content differs from the backup's"
                ),
            },
            Self::LargeObjects { what } => write!(f, "large objects: {what}"),
        }
    }
}

impl Objects {
    /// Every difference of `restored` from `self` (the backup), in a stable order: database
    /// properties, object classes, sequences, materialized views, large objects.
    #[must_use]
    pub fn compare(&self, restored: &Self, scope: CompareScope) -> Vec<ObjectMismatch> {
        let mut out = Vec::new();
        self.compare_database(restored, scope, &mut out);
        self.compare_classes(restored, scope, &mut out);
        compare_sequences(&self.sequences, &restored.sequences, scope, &mut out);
        compare_matviews(
            &self.materialized_views,
            &restored.materialized_views,
            &mut out,
        );
        match (&self.large_objects, &restored.large_objects) {
            (Some(b), Some(r)) => {
                if b.count != r.count {
                    out.push(ObjectMismatch::LargeObjects {
                        what: format!(
                            "{} restored, {} in the backup",
                            super::group_digits(r.count),
                            super::group_digits(b.count)
                        ),
                    });
                } else if b.checksum != r.checksum {
                    out.push(ObjectMismatch::LargeObjects {
                        what: "their content differs from the backup's".into(),
                    });
                } else if !scope.skip_access && b.access != r.access {
                    out.push(ObjectMismatch::LargeObjects {
                        what: "their owners or privileges differ from the backup's".into(),
                    });
                }
            }
            (Some(b), None) if b.count > 0 => out.push(ObjectMismatch::LargeObjects {
                what: format!(
                    "{} in the backup, none restored",
                    super::group_digits(b.count)
                ),
            }),
            _ => {}
        }
        out
    }

    fn compare_database(
        &self,
        restored: &Self,
        scope: CompareScope,
        out: &mut Vec<ObjectMismatch>,
    ) {
        let mut keys: Vec<&String> = self
            .database
            .keys()
            .chain(restored.database.keys())
            .collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            if scope.skip_access && is_access_property(key) {
                continue;
            }
            let (b, r) = (self.database.get(key), restored.database.get(key));
            if b != r {
                out.push(ObjectMismatch::DatabaseProperty {
                    property: key.clone(),
                    restored: r.cloned(),
                    backup: b.cloned(),
                });
            }
        }
    }

    fn compare_classes(&self, restored: &Self, scope: CompareScope, out: &mut Vec<ObjectMismatch>) {
        let empty = BTreeMap::new();
        let mut classes: Vec<&String> =
            self.classes.keys().chain(restored.classes.keys()).collect();
        classes.sort();
        classes.dedup();
        for class in classes {
            let backup = self.classes.get(class).unwrap_or(&empty);
            let got = restored.classes.get(class).unwrap_or(&empty);
            for (name, state) in backup {
                match got.get(name) {
                    None => out.push(ObjectMismatch::Missing {
                        class: class.clone(),
                        name: name.clone(),
                    }),
                    Some(r) if r.definition != state.definition => {
                        out.push(ObjectMismatch::Definition {
                            class: class.clone(),
                            name: name.clone(),
                        });
                    }
                    Some(r) if !scope.skip_access && r.access != state.access => {
                        out.push(ObjectMismatch::Access {
                            class: class.clone(),
                            name: name.clone(),
                        });
                    }
                    Some(_) => {}
                }
            }
            for name in got.keys() {
                if !backup.contains_key(name) {
                    out.push(ObjectMismatch::Extra {
                        class: class.clone(),
                        name: name.clone(),
                    });
                }
            }
        }
    }

    /// How many objects of each class were described, for reports ("12 views, 40 indexes").
    #[must_use]
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut out: BTreeMap<String, usize> = self
            .classes
            .iter()
            .map(|(class, objects)| (class.clone(), objects.len()))
            .collect();
        if !self.sequences.is_empty() {
            out.insert("sequence value".into(), self.sequences.len());
        }
        if !self.materialized_views.is_empty() {
            out.insert(
                "materialized view content".into(),
                self.materialized_views.len(),
            );
        }
        if let Some(lo) = &self.large_objects {
            out.insert(
                "large object".into(),
                usize::try_from(lo.count).unwrap_or(usize::MAX),
            );
        }
        out
    }
}

/// Database properties that are ownership or privileges.
fn is_access_property(key: &str) -> bool {
    key == "owner" || key == "privileges" || key.starts_with("role setting ")
}

fn compare_sequences(
    backup: &[SequenceState],
    restored: &[SequenceState],
    scope: CompareScope,
    out: &mut Vec<ObjectMismatch>,
) {
    for b in backup {
        let Some(r) = restored.iter().find(|r| r.name == b.name) else {
            out.push(ObjectMismatch::SequenceMissing {
                name: b.name.clone(),
            });
            continue;
        };
        let (mut low, mut high) = (b.last_value, b.last_value_max.unwrap_or(b.last_value));
        if scope.sequences_logged_ahead {
            let ahead = b.increment.saturating_mul(SEQUENCE_LOG_AHEAD);
            if ahead >= 0 {
                high = high.saturating_add(ahead);
            } else {
                low = low.saturating_add(ahead);
            }
        }
        let (low, high) = (low.min(high), low.max(high));
        if r.last_value < low || r.last_value > high {
            out.push(ObjectMismatch::SequenceValue {
                name: b.name.clone(),
                restored: r.last_value,
                backup: b.last_value,
                backup_max: b.last_value_max,
            });
        } else if b.last_value_max.is_none()
            && !scope.sequences_logged_ahead
            && r.is_called != b.is_called
        {
            out.push(ObjectMismatch::SequenceCalled {
                name: b.name.clone(),
                restored: r.is_called,
            });
        }
    }
}

fn compare_matviews(
    backup: &[MatviewState],
    restored: &[MatviewState],
    out: &mut Vec<ObjectMismatch>,
) {
    for b in backup {
        let Some(r) = restored.iter().find(|r| r.name == b.name) else {
            out.push(ObjectMismatch::MatviewMissing {
                name: b.name.clone(),
            });
            continue;
        };
        if r.populated != b.populated {
            out.push(ObjectMismatch::MatviewPopulated {
                name: b.name.clone(),
                restored: r.populated,
            });
        } else if b.populated
            && b.content_not_compared.is_none()
            && b.checksum.is_some()
            && (r.rows != b.rows || r.checksum != b.checksum)
        {
            out.push(ObjectMismatch::MatviewContent {
                name: b.name.clone(),
                restored_rows: r.rows,
                backup_rows: b.rows,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects() -> Objects {
        let mut o = Objects {
            server: "PostgreSQL 15".into(),
            ..Objects::default()
        };
        o.database.insert("collation".into(), "C.UTF-8".into());
        o.database.insert("owner".into(), "app".into());
        o.classes.entry("view".into()).or_default().insert(
            "public.rental_by_category".into(),
            ObjectState::new("SELECT 1", "app"),
        );
        o.sequences.push(SequenceState {
            name: "public.invoice_id_seq".into(),
            last_value: 413,
            last_value_max: None,
            is_called: true,
            increment: 1,
        });
        o.materialized_views.push(MatviewState {
            name: "public.sales".into(),
            populated: true,
            rows: Some(3),
            checksum: Some("sha256:aa".into()),
            content_not_compared: None,
        });
        o
    }

    fn texts(m: &[ObjectMismatch]) -> Vec<String> {
        m.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn identical_descriptions_match() {
        assert!(
            objects()
                .compare(&objects(), CompareScope::default())
                .is_empty()
        );
    }

    #[test]
    fn every_class_of_difference_is_one_sentence() {
        let backup = objects();
        let mut r = objects();
        r.database.insert("collation".into(), "en_US.UTF-8".into());
        r.classes.get_mut("view").unwrap().clear();
        r.classes
            .entry("index".into())
            .or_default()
            .insert("public.extra_idx".into(), ObjectState::new("x", ""));
        r.sequences[0].last_value = 412;
        r.materialized_views[0].populated = false;
        assert_eq!(
            texts(&backup.compare(&r, CompareScope::default())),
            [
                "database collation: `en_US.UTF-8` restored, `C.UTF-8` in the backup",
                "index public.extra_idx: in the restored database but not in the backup",
                "view public.rental_by_category: in the backup but missing from the restored database",
                "sequence public.invoice_id_seq: last value 412 restored, 413 in the backup",
                "materialized view public.sales is not populated after the restore (it was in the backup)",
            ]
        );
    }

    #[test]
    fn definitions_and_access_are_told_apart_and_access_can_be_out_of_scope() {
        let backup = objects();
        let mut r = objects();
        r.classes.get_mut("view").unwrap().insert(
            "public.rental_by_category".into(),
            ObjectState::new("SELECT 1", "other"),
        );
        r.database.insert("owner".into(), "someone".into());
        assert_eq!(
            texts(&backup.compare(&r, CompareScope::default())),
            [
                "database owner: `someone` restored, `app` in the backup",
                "view public.rental_by_category: its owner or privileges differ from the backup's",
            ]
        );
        assert!(
            backup
                .compare(
                    &r,
                    CompareScope {
                        skip_access: true,
                        ..CompareScope::default()
                    }
                )
                .is_empty()
        );
        r.classes.get_mut("view").unwrap().insert(
            "public.rental_by_category".into(),
            ObjectState::new("SELECT 2", "app"),
        );
        assert_eq!(
            texts(&backup.compare(
                &r,
                CompareScope {
                    skip_access: true,
                    ..CompareScope::default()
                }
            )),
            ["view public.rental_by_category: its definition differs from the backup's"]
        );
    }

    #[test]
    fn a_recovered_sequence_may_stand_where_its_wal_logged_it() {
        let backup = objects();
        let mut r = objects();
        let scope = CompareScope {
            sequences_logged_ahead: true,
            ..CompareScope::default()
        };
        let step = backup.sequences[0].increment;
        r.sequences[0].last_value = backup.sequences[0].last_value + 32 * step;
        assert!(backup.compare(&r, scope).is_empty());
        assert!(!backup.compare(&r, CompareScope::default()).is_empty());
        r.sequences[0].last_value += step;
        assert!(!backup.compare(&r, scope).is_empty());
    }

    #[test]
    fn a_sequence_that_moved_during_the_dump_accepts_its_range() {
        let mut backup = objects();
        backup.sequences[0].last_value_max = Some(420);
        let mut r = objects();
        r.sequences[0].last_value = 417;
        assert!(backup.compare(&r, CompareScope::default()).is_empty());
        r.sequences[0].last_value = 421;
        assert_eq!(
            texts(&backup.compare(&r, CompareScope::default())),
            ["sequence public.invoice_id_seq: last value 421 restored, 413 to 420 in the backup"]
        );
    }

    #[test]
    fn matview_content_is_compared_unless_its_query_is_volatile() {
        let mut backup = objects();
        let mut r = objects();
        r.materialized_views[0].rows = Some(2);
        assert_eq!(
            texts(&backup.compare(&r, CompareScope::default())),
            ["materialized view public.sales: 2 rows after the restore, 3 in the backup"]
        );
        backup.materialized_views[0].content_not_compared = Some("uses now()".into());
        assert!(backup.compare(&r, CompareScope::default()).is_empty());
    }

    #[test]
    fn large_objects_are_counted_then_checksummed() {
        let mut backup = objects();
        backup.large_objects = Some(LargeObjects {
            count: 2,
            checksum: "a".into(),
            access: "x".into(),
        });
        let mut r = objects();
        assert_eq!(
            texts(&backup.compare(&r, CompareScope::default())),
            ["large objects: 2 in the backup, none restored"]
        );
        r.large_objects = Some(LargeObjects {
            count: 2,
            checksum: "b".into(),
            access: "x".into(),
        });
        assert_eq!(
            texts(&backup.compare(&r, CompareScope::default())),
            ["large objects: their content differs from the backup's"]
        );
    }
}
