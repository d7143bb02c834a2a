//! A realistic demo CRM in SQLite: companies, contacts, deals, activities and notes, with
//! foreign keys, indexes, JSON tags, NULLs, Unicode names (Chinese among them), long notes and
//! a few binary attachments. Generated from a fixed seed, so every demo starts from the same data.

use std::path::Path;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Sqlite};

/// Row counts of the generated CRM (140,000 rows in all).
pub const COMPANIES: u32 = 2_000;
pub const CONTACTS: u32 = 20_000;
pub const DEALS: u32 = 8_000;
pub const ACTIVITIES: u32 = 80_000;
pub const NOTES: u32 = 30_000;

const SCHEMA: &str = "
CREATE TABLE companies (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    country    TEXT NOT NULL,
    industry   TEXT,
    website    TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE contacts (
    id         INTEGER PRIMARY KEY,
    company_id INTEGER NOT NULL REFERENCES companies (id),
    first_name TEXT NOT NULL,
    last_name  TEXT NOT NULL,
    email      TEXT NOT NULL UNIQUE,
    phone      TEXT,
    tags       TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tags)),
    created_at TEXT NOT NULL
);
CREATE INDEX contacts_company ON contacts (company_id);
CREATE TABLE deals (
    id           INTEGER PRIMARY KEY,
    company_id   INTEGER NOT NULL REFERENCES companies (id),
    contact_id   INTEGER REFERENCES contacts (id),
    title        TEXT NOT NULL,
    stage        TEXT NOT NULL CHECK (stage IN ('lead', 'qualified', 'proposal', 'won', 'lost')),
    amount_cents INTEGER NOT NULL,
    currency     TEXT NOT NULL,
    closed_at    TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX deals_company ON deals (company_id);
CREATE INDEX deals_contact ON deals (contact_id);
CREATE TABLE activities (
    id         INTEGER PRIMARY KEY,
    contact_id INTEGER NOT NULL REFERENCES contacts (id),
    deal_id    INTEGER REFERENCES deals (id),
    kind       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    due_at     TEXT,
    done       INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX activities_contact ON activities (contact_id);
CREATE TABLE notes (
    id         INTEGER PRIMARY KEY,
    contact_id INTEGER REFERENCES contacts (id),
    deal_id    INTEGER REFERENCES deals (id),
    body       TEXT NOT NULL,
    attachment BLOB,
    created_at TEXT NOT NULL
);
CREATE INDEX notes_contact ON notes (contact_id);
";

const FIRST: &[&str] = &[
    "Anna", "Ben", "Chloé", "David", "Elif", "Farid", "Greta", "Hiroshi", "Ines", "Jonas", "Kwame",
    "Lena", "Mateo", "Nora", "Olu", "Priya", "Quentin", "Rosa", "Sven", "Tomás", "Uma", "Viktor",
    "Wei", "Ximena", "Yusuf", "Zoë", "伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "军",
];
const LAST: &[&str] = &[
    "Müller",
    "Schmidt",
    "García",
    "Rossi",
    "Dubois",
    "Nowak",
    "Andersson",
    "O'Brien",
    "Kowalski",
    "Yılmaz",
    "Silva",
    "Jensen",
    "Novák",
    "Papadopoulos",
    "Okafor",
    "Tanaka",
    "Kim",
    "Nguyen",
    "王",
    "李",
    "张",
    "刘",
    "陈",
    "杨",
    "黄",
    "赵",
    "吴",
    "周",
];
const COMPANY_WORDS: &[&str] = &[
    "Nordic", "Alpine", "Harbor", "Summit", "Blue", "Quantum", "Cedar", "Atlas", "Lumen", "Vertex",
    "华为", "长城", "东方", "星辰", "Orbit", "Maple", "Granite", "Silver", "Aurora", "Pioneer",
];
const COMPANY_KINDS: &[&str] = &[
    "GmbH",
    "Ltd",
    "SA",
    "AB",
    "Inc.",
    "S.r.l.",
    "有限公司",
    "BV",
    "Oy",
    "AG",
];
const COUNTRIES: &[&str] = &[
    "DE", "FR", "ES", "IT", "SE", "PL", "NL", "IE", "CN", "JP", "US", "GB",
];
const INDUSTRIES: &[&str] = &[
    "logistics",
    "retail",
    "healthcare",
    "software",
    "manufacturing",
    "energy",
    "finance",
];
const STAGES: &[&str] = &["lead", "qualified", "proposal", "won", "lost"];
const KINDS: &[&str] = &["call", "email", "meeting", "task"];
const SENTENCES: &[&str] = &[
    "Customer asked for a revised quote including the extended support plan.",
    "Follow up after the trade fair; they are comparing us with two competitors.",
    "Procurement needs the data processing agreement signed before the pilot.",
    "客户希望在下个季度之前完成系统迁移，并要求提供中文培训资料。",
    "Discussed volume discounts; decision expected after their board meeting.",
    "技术团队对接口文档提出了几个问题，需要我们在周五前答复。",
    "Shipment delayed by customs; informed the account manager and offered a credit note.",
    "They want invoices split per cost centre from January onwards.",
    "合同续签条款已经确认，等待法务部门最终审核。",
    "Champion left the company; new contact is the head of operations.",
];
const TAGS: &[&str] = &[
    "vip",
    "newsletter",
    "churn-risk",
    "partner",
    "gdpr-consent",
    "trial",
];

fn day(rng: &mut StdRng, from_year: i32) -> String {
    let year = rng.random_range(from_year..=2026);
    let month = rng.random_range(1..=12);
    let day = rng.random_range(1..=28);
    let hour = rng.random_range(7..=19);
    let minute = rng.random_range(0..60);
    format!("{year}-{month:02}-{day:02}T{hour:02}:{minute:02}:00Z")
}

fn pick<'a>(rng: &mut StdRng, list: &[&'a str]) -> &'a str {
    list[rng.random_range(0..list.len())]
}

async fn connect(path: &Path, create: bool) -> Result<SqliteConnection, sqlx::Error> {
    SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(create)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .disable_statement_logging()
        .connect()
        .await
}

/// One value of a generated row.
enum Cell {
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

impl From<u32> for Cell {
    fn from(v: u32) -> Self {
        Self::Int(i64::from(v))
    }
}

impl From<i64> for Cell {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Self::Text(v.to_string())
    }
}

impl From<String> for Cell {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// Inserts rows into `table` in multi-row statements (SQLite allows up to 32,766 parameters
/// per statement).
async fn insert_rows(
    conn: &mut SqliteConnection,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Cell>>,
) -> Result<(), sqlx::Error> {
    let per_statement = 30_000 / columns.len();
    let head = format!("INSERT INTO {table} ({}) ", columns.join(", "));
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Cell>> = rows.by_ref().take(per_statement).collect();
        let mut qb: QueryBuilder<'_, Sqlite> = QueryBuilder::new(&head);
        qb.push_values(chunk, |mut b, row| {
            for cell in row {
                match cell {
                    Cell::Int(v) => b.push_bind(v),
                    Cell::Text(v) => b.push_bind(v),
                    Cell::Blob(v) => b.push_bind(v),
                    Cell::Null => b.push_bind(None::<i64>),
                };
            }
        });
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Generates the rows of one table.
type Generator = fn(&mut StdRng) -> Vec<Vec<Cell>>;

fn companies(rng: &mut StdRng) -> Vec<Vec<Cell>> {
    (1..=COMPANIES)
        .map(|id| {
            let name = format!(
                "{} {} {}",
                pick(rng, COMPANY_WORDS),
                pick(rng, COMPANY_WORDS),
                pick(rng, COMPANY_KINDS)
            );
            let industry = (rng.random_range(0..10) > 0).then(|| pick(rng, INDUSTRIES));
            let website =
                (rng.random_range(0..4) > 0).then(|| format!("https://company{id}.example"));
            vec![
                id.into(),
                name.into(),
                pick(rng, COUNTRIES).into(),
                industry.into(),
                website.into(),
                day(rng, 2015).into(),
            ]
        })
        .collect()
}

fn contacts(rng: &mut StdRng) -> Vec<Vec<Cell>> {
    (1..=CONTACTS)
        .map(|id| {
            let tags: Vec<&str> = (0..rng.random_range(0..3))
                .map(|_| pick(rng, TAGS))
                .collect();
            let phone = (rng.random_range(0..5) > 0).then(|| {
                format!(
                    "+{} {} {:07}",
                    rng.random_range(1..99),
                    rng.random_range(10..999),
                    rng.random_range(0..10_000_000)
                )
            });
            vec![
                id.into(),
                rng.random_range(1..=COMPANIES).into(),
                pick(rng, FIRST).into(),
                pick(rng, LAST).into(),
                format!("contact{id}@customer{}.example", id % 997).into(),
                phone.into(),
                serde_json::to_string(&tags)
                    .unwrap_or_else(|_| "[]".into())
                    .into(),
                day(rng, 2016).into(),
            ]
        })
        .collect()
}

fn deals(rng: &mut StdRng) -> Vec<Vec<Cell>> {
    (1..=DEALS)
        .map(|id| {
            let stage = pick(rng, STAGES);
            let created = day(rng, 2019);
            let closed = matches!(stage, "won" | "lost").then(|| day(rng, 2020));
            let contact = (rng.random_range(0..8) > 0).then(|| rng.random_range(1..=CONTACTS));
            let title = format!(
                "{} licences for {}",
                rng.random_range(5..500),
                pick(rng, INDUSTRIES)
            );
            vec![
                id.into(),
                rng.random_range(1..=COMPANIES).into(),
                contact.into(),
                title.into(),
                stage.into(),
                rng.random_range(50_000_i64..50_000_000).into(),
                pick(rng, &["EUR", "USD", "CNY", "GBP"]).into(),
                closed.into(),
                created.clone().into(),
                created.into(),
            ]
        })
        .collect()
}

fn activities(rng: &mut StdRng) -> Vec<Vec<Cell>> {
    (1..=ACTIVITIES)
        .map(|id| {
            let kind = pick(rng, KINDS);
            let deal = (rng.random_range(0..2) == 0).then(|| rng.random_range(1..=DEALS));
            let subject: String = pick(rng, SENTENCES).chars().take(48).collect();
            vec![
                id.into(),
                rng.random_range(1..=CONTACTS).into(),
                deal.into(),
                kind.into(),
                format!("{kind}: {subject}").into(),
                (kind == "task").then(|| day(rng, 2024)).into(),
                i64::from(rng.random_range(0..3) > 0).into(),
                day(rng, 2020).into(),
            ]
        })
        .collect()
}

fn notes(rng: &mut StdRng) -> Vec<Vec<Cell>> {
    (1..=NOTES)
        .map(|id| {
            let body = (0..rng.random_range(3..12))
                .map(|_| pick(rng, SENTENCES))
                .collect::<Vec<_>>()
                .join(" ");
            // Attachments stand for PDFs and images: already compressed, so random bytes.
            let attachment = if rng.random_range(0..20) == 0 {
                Cell::Blob(
                    (0..rng.random_range(1024..4096))
                        .map(|_| rng.random::<u8>())
                        .collect(),
                )
            } else {
                Cell::Null
            };
            let deal = (rng.random_range(0..3) == 0).then(|| rng.random_range(1..=DEALS));
            vec![
                id.into(),
                rng.random_range(1..=CONTACTS).into(),
                deal.into(),
                body.into(),
                attachment,
                day(rng, 2020).into(),
            ]
        })
        .collect()
}

/// Creates the demo CRM at `path` (which must not exist).
///
/// # Errors
/// When the database cannot be written.
pub async fn generate(path: &Path) -> Result<(), sqlx::Error> {
    let mut rng = StdRng::seed_from_u64(0x0000_C057_D1A4);
    let mut conn = connect(path, true).await?;
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
    let tables: [(&str, &[&str], Generator); 5] = [
        (
            "companies",
            &["id", "name", "country", "industry", "website", "created_at"],
            companies,
        ),
        (
            "contacts",
            &[
                "id",
                "company_id",
                "first_name",
                "last_name",
                "email",
                "phone",
                "tags",
                "created_at",
            ],
            contacts,
        ),
        (
            "deals",
            &[
                "id",
                "company_id",
                "contact_id",
                "title",
                "stage",
                "amount_cents",
                "currency",
                "closed_at",
                "created_at",
                "updated_at",
            ],
            deals,
        ),
        (
            "activities",
            &[
                "id",
                "contact_id",
                "deal_id",
                "kind",
                "subject",
                "due_at",
                "done",
                "created_at",
            ],
            activities,
        ),
        (
            "notes",
            &[
                "id",
                "contact_id",
                "deal_id",
                "body",
                "attachment",
                "created_at",
            ],
            notes,
        ),
    ];
    for (table, columns, rows) in tables {
        insert_rows(&mut tx, table, columns, rows(&mut rng)).await?;
    }
    tx.commit().await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    conn.close().await
}

/// Makes the kind of small change a working day brings: a few deals move on, a few
/// activities and a note are added, a phone number changes. Returns the number of rows touched.
///
/// # Errors
/// When the database cannot be written.
pub async fn change_a_few_rows(path: &Path) -> Result<u64, sqlx::Error> {
    let mut conn = connect(path, false).await?;
    let now = crate::model::time::format(crate::model::time::now());
    let mut tx = conn.begin().await?;
    let mut touched = 0;
    touched += sqlx::query(
        "UPDATE deals SET stage = CASE stage WHEN 'lead' THEN 'qualified' WHEN 'qualified' THEN 'proposal'
                                             WHEN 'proposal' THEN 'won' ELSE stage END,
                          updated_at = ?
         WHERE id IN (SELECT id FROM deals ORDER BY id DESC LIMIT 5)",
    )
    .bind(&now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // New activities and a note for the most recent contacts: a working day touches the
    // newest part of a CRM (BENCHMARK.md's "hot-set" churn), not random old rows.
    let next_activity: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) + 1 FROM activities")
        .fetch_one(&mut *tx)
        .await?;
    let newest_contact: i64 = sqlx::query_scalar("SELECT max(id) FROM contacts")
        .fetch_one(&mut *tx)
        .await?;
    for i in 0..10 {
        touched += sqlx::query(
            "INSERT INTO activities (id, contact_id, deal_id, kind, subject, due_at, done, created_at)
             VALUES (?, ?, NULL, 'call', 'call: follow-up on the renewal', NULL, 0, ?)",
        )
        .bind(next_activity + i)
        .bind(newest_contact - i % 3)
        .bind(&now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    touched += sqlx::query(
        "INSERT INTO notes (contact_id, deal_id, body, attachment, created_at)
         VALUES (?, NULL, '客户确认了续约，下周发送正式报价。 Renewal confirmed; formal quote next week.', NULL, ?)",
    )
    .bind(newest_contact)
    .bind(&now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    touched += sqlx::query("UPDATE contacts SET phone = '+49 30 5550199' WHERE id IN (SELECT id FROM contacts ORDER BY id DESC LIMIT 3)")
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(touched)
}
