//! The demo CRM on database servers (PostgreSQL, MariaDB/MySQL), generated server-side so that
//! a gigabyte takes minutes, not hours: the same model as the SQLite demo with what a real CRM
//! schema has — foreign keys, indexes, sequences, a view, a trigger, JSON, binary attachments,
//! NULLs, Unicode (Chinese names) and long notes. Also the churn models of the benchmark.
//!
//! Scale 1.0 is BENCHMARK.md's reference database: 100k companies, 1M contacts, 500k deals,
//! 3M activities, 500k notes (about 1.1 GiB in PostgreSQL).

use sqlx::Connection;
use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;

/// Row counts at scale 1.0.
const BASE: [(&str, f64); 5] = [
    ("companies", 100_000.0),
    ("contacts", 1_000_000.0),
    ("deals", 500_000.0),
    ("activities", 3_000_000.0),
    ("notes", 500_000.0),
];
/// PostgreSQL bytes on disk at scale 1.0 (measured), to turn `--size` into a scale.
pub const BYTES_AT_SCALE_ONE: f64 = 1.15 * 1024.0 * 1024.0 * 1024.0;

/// How many rows of each table a scale means (at least 10 of each).
#[must_use]
pub fn rows_at(scale: f64) -> [(&'static str, i64); 5] {
    BASE.map(|(t, n)| (t, ((n * scale).round() as i64).max(10)))
}

fn n(scale: f64, table: &str) -> i64 {
    rows_at(scale)
        .iter()
        .find(|(t, _)| *t == table)
        .map_or(10, |(_, n)| *n)
}

const PG_SCHEMA: &str = r"
CREATE TABLE companies (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL,
    country    char(2) NOT NULL,
    industry   text,
    website    text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE contacts (
    id         bigserial PRIMARY KEY,
    company_id bigint NOT NULL REFERENCES companies (id),
    first_name text NOT NULL,
    last_name  text NOT NULL,
    email      text NOT NULL UNIQUE,
    phone      text,
    tags       jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL
);
CREATE INDEX contacts_company ON contacts (company_id);
CREATE TABLE deals (
    id         bigserial PRIMARY KEY,
    company_id bigint NOT NULL REFERENCES companies (id),
    contact_id bigint REFERENCES contacts (id),
    title      text NOT NULL,
    stage      text NOT NULL CHECK (stage IN ('lead', 'qualified', 'proposal', 'won', 'lost')),
    amount     numeric(14, 2) NOT NULL,
    currency   char(3) NOT NULL,
    closed_at  timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX deals_company ON deals (company_id);
CREATE TABLE activities (
    id         bigserial PRIMARY KEY,
    contact_id bigint NOT NULL REFERENCES contacts (id),
    deal_id    bigint REFERENCES deals (id),
    kind       text NOT NULL,
    subject    text NOT NULL,
    due_at     timestamptz,
    done       boolean NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX activities_contact ON activities (contact_id);
CREATE TABLE notes (
    id         bigserial PRIMARY KEY,
    contact_id bigint REFERENCES contacts (id),
    deal_id    bigint REFERENCES deals (id),
    body       text NOT NULL,
    attachment bytea,
    created_at timestamptz NOT NULL
);
CREATE INDEX notes_contact ON notes (contact_id);
CREATE VIEW open_pipeline AS
    SELECT c.id AS company_id, c.name, count(*) AS deals, sum(d.amount) AS amount
    FROM deals d JOIN companies c ON c.id = d.company_id
    WHERE d.stage NOT IN ('won', 'lost')
    GROUP BY c.id, c.name;
CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER deals_touch BEFORE UPDATE ON deals FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
";

/// Pseudo-random but deterministic choice from `list`, driven by the SQL expression `key`.
fn pg_pick_on(list: &[&str], key: &str, salt: u32) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|s| format!("'{}'", s.replace('\'', "''")))
        .collect();
    format!(
        "(ARRAY[{}])[1 + abs(hashint8(({key})::bigint * {salt} + {salt})::bigint) % {}]",
        items.join(","),
        list.len()
    )
}

/// As [`pg_pick_on`], driven by the row number `i`.
fn pg_pick(list: &[&str], salt: u32) -> String {
    pg_pick_on(list, "i", salt)
}

fn pg_num(salt: u32, modulo: i64) -> String {
    format!("(abs(hashint8(i::bigint * 7919 + {salt})::bigint) % {modulo})")
}

const FIRST: &[&str] = &[
    "Anna", "Ben", "Chloé", "David", "Elif", "Farid", "Greta", "Hiroshi", "Ines", "Jonas", "Kwame",
    "Lena", "Mateo", "Nora", "Priya", "Rosa", "Sven", "Tomás", "Wei", "Zoë", "伟", "芳", "娜",
    "敏", "静", "磊", "洋", "艳",
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
    "Yılmaz",
    "Silva",
    "Jensen",
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
];
const SENTENCES: &[&str] = &[
    "Customer asked for a revised quote including the extended support plan.",
    "Follow up after the trade fair; they are comparing us with two competitors.",
    "Procurement needs the data processing agreement signed before the pilot.",
    "客户希望在下个季度之前完成系统迁移，并要求提供中文培训资料。",
    "Discussed volume discounts; decision expected after their board meeting.",
    "技术团队对接口文档提出了几个问题，需要我们在周五前答复。",
    "Shipment delayed by customs; informed the account manager and offered a credit note.",
    "合同续签条款已经确认，等待法务部门最终审核。",
];

/// Creates the demo CRM schema and data in an empty PostgreSQL database.
///
/// # Errors
/// When a statement fails (not empty, no privileges…).
pub async fn generate_postgres(conn: &mut PgConnection, scale: f64) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(PG_SCHEMA).execute(&mut *tx).await?;
    let companies = n(scale, "companies");
    let contacts = n(scale, "contacts");
    let deals = n(scale, "deals");
    let words = &[
        "Nordic", "Alpine", "Harbor", "Summit", "Quantum", "Cedar", "华为", "长城", "东方",
        "Aurora",
    ];
    let statements = [
        format!(
            "INSERT INTO companies (name, country, industry, website, created_at)
             SELECT {} || ' ' || {} || ' ' || {}, {}, CASE WHEN {} > 0 THEN {} END,
                    CASE WHEN {} > 0 THEN 'https://company' || i || '.example' END,
                    timestamptz '2015-01-01' + {} * interval '1 minute'
             FROM generate_series(1, {companies}) AS i",
            pg_pick(words, 1),
            pg_pick(words, 2),
            pg_pick(&["GmbH", "Ltd", "SA", "AB", "有限公司", "BV"], 3),
            pg_pick(&["DE", "FR", "ES", "IT", "SE", "PL", "CN", "JP", "US"], 4),
            pg_num(5, 10),
            pg_pick(&["logistics", "retail", "healthcare", "software", "energy"], 6),
            pg_num(7, 4),
            pg_num(8, 5_000_000),
        ),
        format!(
            "INSERT INTO contacts (company_id, first_name, last_name, email, phone, tags, created_at)
             SELECT 1 + {}, {}, {}, 'contact' || i || '@customer' || (i % 997) || '.example',
                    CASE WHEN {} > 0 THEN '+' || (1 + {}) || ' ' || {} END,
                    CASE {} WHEN 0 THEN '[]' WHEN 1 THEN '[\"vip\"]' WHEN 2 THEN '[\"newsletter\", \"gdpr-consent\"]'
                            ELSE '[\"trial\", \"churn-risk\"]' END::jsonb,
                    timestamptz '2016-01-01' + i * interval '2 minutes'
             FROM generate_series(1, {contacts}) AS i",
            pg_num(11, companies),
            pg_pick(FIRST, 12),
            pg_pick(LAST, 13),
            pg_num(14, 5),
            pg_num(15, 98),
            pg_num(16, 10_000_000),
            pg_num(17, 4),
        ),
        format!(
            "INSERT INTO deals (company_id, contact_id, title, stage, amount, currency, closed_at, created_at, updated_at)
             SELECT 1 + {}, CASE WHEN {} > 0 THEN 1 + {} END,
                    (5 + {}) || ' licences', {}, ({} + 500) / 100.0, {},
                    CASE WHEN {} < 2 THEN timestamptz '2020-01-01' + i * interval '3 minutes' END,
                    timestamptz '2019-01-01' + i * interval '3 minutes',
                    timestamptz '2019-01-01' + i * interval '3 minutes'
             FROM generate_series(1, {deals}) AS i",
            pg_num(21, companies),
            pg_num(22, 8),
            pg_num(23, contacts),
            pg_num(24, 500),
            pg_pick(&["lead", "qualified", "proposal", "won", "lost"], 25),
            pg_num(26, 50_000_000),
            pg_pick(&["EUR", "USD", "CNY", "GBP"], 27),
            pg_num(28, 5),
        ),
        format!(
            "INSERT INTO activities (contact_id, deal_id, kind, subject, due_at, done, created_at)
             SELECT 1 + {}, CASE WHEN {} = 0 THEN 1 + {} END, k, k || ': ' || left({}, 48),
                    CASE WHEN k = 'task' THEN timestamptz '2024-01-01' + i * interval '1 minute' END,
                    {} > 0, timestamptz '2020-01-01' + i * interval '20 seconds'
             FROM (SELECT i, {} AS k FROM generate_series(1, {}) AS i) s",
            pg_num(31, contacts),
            pg_num(32, 2),
            pg_num(33, deals),
            pg_pick(SENTENCES, 34),
            pg_num(35, 3),
            pg_pick(&["call", "email", "meeting", "task"], 36),
            n(scale, "activities"),
        ),
        format!(
            "INSERT INTO notes (contact_id, deal_id, body, attachment, created_at)
             SELECT 1 + {}, CASE WHEN {} = 0 THEN 1 + {} END,
                    (SELECT string_agg({}, ' ') FROM generate_series(1, 3 + {}) AS j),
                    CASE WHEN {} = 0 THEN decode(repeat(md5(i::text) || md5((i + 1)::text), (40 + {})::int), 'hex') END,
                    timestamptz '2020-01-01' + i * interval '90 seconds'
             FROM generate_series(1, {}) AS i",
            pg_num(41, contacts),
            pg_num(42, 3),
            pg_num(43, deals),
            pg_pick_on(SENTENCES, "i * 31 + j", 44),
            pg_num(45, 9),
            pg_num(46, 20),
            pg_num(47, 60),
            n(scale, "notes"),
        ),
    ];
    for sql in &statements {
        sqlx::query(sql).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    // Only the CRM's own tables: a plain ANALYZE as a non-superuser warns once for every
    // system catalog it may not analyze.
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(&mut *conn)
    .await?;
    if !tables.is_empty() {
        sqlx::query(&format!("ANALYZE {}", tables.join(", ")))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

const MY_SCHEMA: &[&str] = &[
    "CREATE TABLE companies (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        name VARCHAR(200) NOT NULL,
        country CHAR(2) NOT NULL,
        industry VARCHAR(40),
        website VARCHAR(200),
        created_at DATETIME(3) NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE contacts (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        company_id BIGINT NOT NULL,
        first_name VARCHAR(100) NOT NULL,
        last_name VARCHAR(100) NOT NULL,
        email VARCHAR(200) NOT NULL UNIQUE,
        phone VARCHAR(40),
        tags JSON NOT NULL,
        created_at DATETIME(3) NOT NULL,
        KEY contacts_company (company_id),
        CONSTRAINT contacts_company_fk FOREIGN KEY (company_id) REFERENCES companies (id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE deals (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        company_id BIGINT NOT NULL,
        contact_id BIGINT,
        title VARCHAR(200) NOT NULL,
        stage ENUM('lead', 'qualified', 'proposal', 'won', 'lost') NOT NULL,
        amount DECIMAL(14, 2) NOT NULL,
        currency CHAR(3) NOT NULL,
        closed_at DATETIME(3),
        created_at DATETIME(3) NOT NULL,
        updated_at DATETIME(3) NOT NULL,
        KEY deals_company (company_id),
        CONSTRAINT deals_company_fk FOREIGN KEY (company_id) REFERENCES companies (id),
        CONSTRAINT deals_contact_fk FOREIGN KEY (contact_id) REFERENCES contacts (id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE activities (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        contact_id BIGINT NOT NULL,
        deal_id BIGINT,
        kind VARCHAR(20) NOT NULL,
        subject VARCHAR(200) NOT NULL,
        due_at DATETIME(3),
        done BOOLEAN NOT NULL,
        created_at DATETIME(3) NOT NULL,
        KEY activities_contact (contact_id),
        CONSTRAINT activities_contact_fk FOREIGN KEY (contact_id) REFERENCES contacts (id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE notes (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        contact_id BIGINT,
        deal_id BIGINT,
        body TEXT NOT NULL,
        attachment BLOB,
        created_at DATETIME(3) NOT NULL,
        KEY notes_contact (contact_id),
        CONSTRAINT notes_contact_fk FOREIGN KEY (contact_id) REFERENCES contacts (id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE VIEW open_pipeline AS
        SELECT c.id AS company_id, c.name, COUNT(*) AS deals, SUM(d.amount) AS amount
        FROM deals d JOIN companies c ON c.id = d.company_id
        WHERE d.stage NOT IN ('won', 'lost')
        GROUP BY c.id, c.name",
    "CREATE TRIGGER deals_touch BEFORE UPDATE ON deals FOR EACH ROW SET NEW.updated_at = NOW(3)",
];

fn my_pick(list: &[&str], salt: u32) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|s| format!("'{}'", s.replace('\'', "''")))
        .collect();
    format!(
        "ELT(1 + CRC32(seq * {salt} + {salt}) % {}, {})",
        list.len(),
        items.join(",")
    )
}

fn my_num(salt: u32, modulo: i64) -> String {
    format!("(CRC32(seq * 7919 + {salt}) % {modulo})")
}

/// Creates the demo CRM schema and data in an empty MariaDB database (uses MariaDB's
/// `seq_1_to_N` sequence tables).
///
/// # Errors
/// When a statement fails.
pub async fn generate_mysql(conn: &mut MySqlConnection, scale: f64) -> Result<(), sqlx::Error> {
    for sql in MY_SCHEMA {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    let companies = n(scale, "companies");
    let contacts = n(scale, "contacts");
    let deals = n(scale, "deals");
    let words = &[
        "Nordic", "Alpine", "Harbor", "Summit", "Quantum", "Cedar", "华为", "长城", "东方",
        "Aurora",
    ];
    let statements = [
        format!(
            "INSERT INTO companies (name, country, industry, website, created_at)
             SELECT CONCAT({}, ' ', {}, ' ', {}), {}, IF({} > 0, {}, NULL),
                    IF({} > 0, CONCAT('https://company', seq, '.example'), NULL),
                    TIMESTAMP '2015-01-01 00:00:00' + INTERVAL {} MINUTE
             FROM seq_1_to_{companies}",
            my_pick(words, 1),
            my_pick(words, 2),
            my_pick(&["GmbH", "Ltd", "SA", "AB", "有限公司", "BV"], 3),
            my_pick(&["DE", "FR", "ES", "IT", "SE", "PL", "CN", "JP", "US"], 4),
            my_num(5, 10),
            my_pick(&["logistics", "retail", "healthcare", "software", "energy"], 6),
            my_num(7, 4),
            my_num(8, 5_000_000),
        ),
        format!(
            "INSERT INTO contacts (company_id, first_name, last_name, email, phone, tags, created_at)
             SELECT 1 + {}, {}, {}, CONCAT('contact', seq, '@customer', seq % 997, '.example'),
                    IF({} > 0, CONCAT('+', 1 + {}, ' ', {}), NULL),
                    ELT(1 + {}, '[]', '[\"vip\"]', '[\"newsletter\", \"gdpr-consent\"]', '[\"trial\", \"churn-risk\"]'),
                    TIMESTAMP '2016-01-01 00:00:00' + INTERVAL (seq * 2) MINUTE
             FROM seq_1_to_{contacts}",
            my_num(11, companies),
            my_pick(FIRST, 12),
            my_pick(LAST, 13),
            my_num(14, 5),
            my_num(15, 98),
            my_num(16, 10_000_000),
            my_num(17, 4),
        ),
        format!(
            "INSERT INTO deals (company_id, contact_id, title, stage, amount, currency, closed_at, created_at, updated_at)
             SELECT 1 + {}, IF({} > 0, 1 + {}, NULL), CONCAT(5 + {}, ' licences'), {}, ({} + 500) / 100, {},
                    IF({} < 2, TIMESTAMP '2020-01-01 00:00:00' + INTERVAL (seq * 3) MINUTE, NULL),
                    TIMESTAMP '2019-01-01 00:00:00' + INTERVAL (seq * 3) MINUTE,
                    TIMESTAMP '2019-01-01 00:00:00' + INTERVAL (seq * 3) MINUTE
             FROM seq_1_to_{deals}",
            my_num(21, companies),
            my_num(22, 8),
            my_num(23, contacts),
            my_num(24, 500),
            my_pick(&["lead", "qualified", "proposal", "won", "lost"], 25),
            my_num(26, 50_000_000),
            my_pick(&["EUR", "USD", "CNY", "GBP"], 27),
            my_num(28, 5),
        ),
        format!(
            "INSERT INTO activities (contact_id, deal_id, kind, subject, due_at, done, created_at)
             SELECT 1 + {}, IF({} = 0, 1 + {}, NULL), k, CONCAT(k, ': ', LEFT({}, 48)),
                    IF(k = 'task', TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq MINUTE, NULL),
                    {} > 0, TIMESTAMP '2020-01-01 00:00:00' + INTERVAL (seq * 20) SECOND
             FROM (SELECT seq, {} AS k FROM seq_1_to_{}) s",
            my_num(31, contacts),
            my_num(32, 2),
            my_num(33, deals),
            my_pick(SENTENCES, 34),
            my_num(35, 3),
            my_pick(&["call", "email", "meeting", "task"], 36),
            n(scale, "activities"),
        ),
        format!(
            "INSERT INTO notes (contact_id, deal_id, body, attachment, created_at)
             SELECT 1 + {}, IF({} = 0, 1 + {}, NULL),
                    CONCAT_WS(' ', {}, {}, {}, IF({} > 3, {}, NULL), IF({} > 6, {}, NULL)),
                    IF({} = 0, UNHEX(REPEAT(CONCAT(MD5(seq), MD5(seq + 1)), 40 + {})), NULL),
                    TIMESTAMP '2020-01-01 00:00:00' + INTERVAL (seq * 90) SECOND
             FROM seq_1_to_{}",
            my_num(41, contacts),
            my_num(42, 3),
            my_num(43, deals),
            my_pick(SENTENCES, 44),
            my_pick(SENTENCES, 45),
            my_pick(SENTENCES, 46),
            my_num(47, 9),
            my_pick(SENTENCES, 48),
            my_num(49, 9),
            my_pick(SENTENCES, 50),
            my_num(51, 20),
            my_num(52, 60),
            n(scale, "notes"),
        ),
    ];
    for sql in &statements {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    Ok(())
}

/// A churn model from BENCHMARK.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Churn {
    /// 1 % of rows appended, and about 1 % of rows updated within the newest 5 % of each table.
    Realistic,
    /// 1 % of rows updated at random positions.
    Uniform,
}

/// Applies a churn model to the demo CRM in PostgreSQL. Returns rows touched.
///
/// # Errors
/// When a statement fails.
pub async fn churn_postgres(conn: &mut PgConnection, churn: Churn) -> Result<u64, sqlx::Error> {
    let mut touched = 0;
    let mut tx = conn.begin().await?;
    let updates = [
        ("contacts", "phone = coalesce(phone, '') || '0'"),
        ("deals", "amount = amount + 1"),
        ("activities", "done = NOT done"),
        ("notes", "body = body || ' (edited)'"),
    ];
    for (table, set) in updates {
        let filter = match churn {
            Churn::Realistic => {
                format!(
                    "id > (SELECT max(id) * 0.95 FROM {table}) AND abs(hashint8(id)::bigint) % 5 = 0"
                )
            }
            Churn::Uniform => "abs(hashint8(id)::bigint) % 100 = 0".to_string(),
        };
        touched += sqlx::query(&format!("UPDATE {table} SET {set} WHERE {filter}"))
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    if churn == Churn::Realistic {
        touched += sqlx::query(
            "INSERT INTO activities (contact_id, deal_id, kind, subject, due_at, done, created_at)
             SELECT contact_id, deal_id, kind, subject, due_at, false, now()
             FROM activities WHERE abs(hashint8(id)::bigint) % 100 = 0",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        touched += sqlx::query(
            "INSERT INTO notes (contact_id, deal_id, body, attachment, created_at)
             SELECT contact_id, deal_id, body, NULL, now() FROM notes WHERE abs(hashint8(id)::bigint) % 100 = 0",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    Ok(touched)
}

/// Applies a churn model to the demo CRM in MariaDB/MySQL (the same rows as
/// [`churn_postgres`] picks, by another hash). Returns rows touched.
///
/// # Errors
/// When a statement fails.
pub async fn churn_mysql(conn: &mut MySqlConnection, churn: Churn) -> Result<u64, sqlx::Error> {
    let mut touched = 0;
    let mut tx = conn.begin().await?;
    let updates = [
        ("contacts", "phone = CONCAT(COALESCE(phone, ''), '0')"),
        ("deals", "amount = amount + 1"),
        ("activities", "done = NOT done"),
        ("notes", "body = CONCAT(body, ' (edited)')"),
    ];
    for (table, set) in updates {
        let filter = match churn {
            Churn::Realistic => {
                // MySQL cannot read the table an UPDATE writes in a subquery.
                let newest: Option<i64> = sqlx::query_scalar(&format!(
                    "SELECT CAST(MAX(id) * 0.95 AS SIGNED) FROM {table}"
                ))
                .fetch_one(&mut *tx)
                .await?;
                format!("id > {} AND CRC32(id) % 5 = 0", newest.unwrap_or(0))
            }
            Churn::Uniform => "CRC32(id) % 100 = 0".to_string(),
        };
        touched += sqlx::query(&format!("UPDATE {table} SET {set} WHERE {filter}"))
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    if churn == Churn::Realistic {
        touched += sqlx::query(
            "INSERT INTO activities (contact_id, deal_id, kind, subject, due_at, done, created_at)
             SELECT contact_id, deal_id, kind, subject, due_at, false, NOW(3)
             FROM activities WHERE CRC32(id) % 100 = 0",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        touched += sqlx::query(
            "INSERT INTO notes (contact_id, deal_id, body, attachment, created_at)
             SELECT contact_id, deal_id, body, NULL, NOW(3) FROM notes WHERE CRC32(id) % 100 = 0",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    Ok(touched)
}
