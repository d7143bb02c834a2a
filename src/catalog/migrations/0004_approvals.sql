-- Four-eyes approvals: a dangerous request through the control socket waits here until a
-- second, different administrator approves it, or it expires.
CREATE TABLE approvals (
    id            TEXT PRIMARY KEY,
    request       TEXT NOT NULL,   -- JSON of the request (no secrets: names and references only)
    requested_by  TEXT NOT NULL,
    requested_uid INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    approved_by   TEXT,
    approved_uid  INTEGER,
    approved_at   TEXT
);
