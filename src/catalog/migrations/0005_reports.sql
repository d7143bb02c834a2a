-- Compliance reports, their deliveries, and the alerts the daemon sent.

-- One row per signed report bundle. The chain: each report embeds the manifest hash of the
-- report for the period before it.
CREATE TABLE reports (
    id               TEXT PRIMARY KEY,
    run_id           TEXT REFERENCES runs (id),
    period           TEXT NOT NULL,   -- 2026-11 | 2026-W47 | 2026-Q4 | 2026-11-01..2026-11-15
    period_from      TEXT NOT NULL,
    period_to        TEXT NOT NULL,
    generated_at     TEXT NOT NULL,
    dir              TEXT NOT NULL,   -- where the bundle was written
    manifest_sha256  TEXT NOT NULL,   -- sha256 of the signed SHA256SUMS
    key_id           TEXT NOT NULL,
    previous_id      TEXT,
    overall          TEXT NOT NULL,   -- pass | warn | fail
    verdicts         TEXT NOT NULL    -- JSON {rule id: verdict}
);
CREATE INDEX reports_by_period ON reports (period_to);

-- Every attempt to e-mail a report (and whether it was delivered).
CREATE TABLE report_deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    report_id     TEXT NOT NULL REFERENCES reports (id),
    attempted_at  TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    delivered     INTEGER NOT NULL,
    message_id    TEXT,
    recipients    TEXT NOT NULL,   -- JSON array
    error         TEXT
);

-- Alerts about scheduled jobs, per channel, with their delivery outcome: the MONITORING rule
-- checks that every failed or missed scheduled run was alerted within the latency target.
CREATE TABLE alerts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job        TEXT NOT NULL,   -- schedule job name
    status     TEXT NOT NULL,   -- succeeded | failed | missed
    channel    TEXT NOT NULL,   -- webhook | email
    sent_at    TEXT NOT NULL,
    delivered  INTEGER NOT NULL,
    error      TEXT
);
CREATE INDEX alerts_by_time ON alerts (sent_at);
