-- A kitchen-sink CRM for SQLite fidelity tests: rowid and WITHOUT ROWID tables, FTS5, indexes,
-- views, triggers, and the header values applications rely on.
PRAGMA user_version = 42;
PRAGMA application_id = 1129469517;
CREATE TABLE companies (id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE, founded TEXT);
CREATE TABLE contacts (
    id INTEGER PRIMARY KEY,
    company_id INTEGER REFERENCES companies (id) ON DELETE CASCADE,
    email TEXT UNIQUE,
    name TEXT,
    score REAL CHECK (score >= 0),
    photo BLOB
);
CREATE TABLE tags (contact_id INTEGER, tag TEXT, PRIMARY KEY (contact_id, tag)) WITHOUT ROWID;
CREATE TABLE audit (at TEXT DEFAULT CURRENT_TIMESTAMP, what TEXT);
CREATE INDEX contacts_company ON contacts (company_id);
CREATE INDEX contacts_lower_email ON contacts (lower(email)) WHERE email IS NOT NULL;
CREATE VIRTUAL TABLE notes USING fts5 (contact_id UNINDEXED, body);
CREATE VIEW company_contacts AS
    SELECT c.name AS company, k.email FROM companies c JOIN contacts k ON k.company_id = c.id;
CREATE TRIGGER contacts_audit AFTER INSERT ON contacts BEGIN
    INSERT INTO audit (what) VALUES ('contact ' || NEW.id);
END;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
INSERT INTO companies (name, founded) SELECT 'Firma ' || i || ' Größe', date('2000-01-01', '+' || i || ' days') FROM n WHERE i <= 30;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
INSERT INTO contacts (company_id, email, name, score, photo)
    SELECT 1 + i % 30, 'c' || i || '@example.org', '王' || i, i / 3.0, randomblob(16) FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
INSERT INTO tags SELECT i, 'tag' || (i % 5) FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
INSERT INTO notes (contact_id, body) SELECT i, 'met at the fair, call back about invoice ' || i FROM n;
