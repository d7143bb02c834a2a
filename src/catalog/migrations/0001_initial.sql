-- Custodian's catalog: the evidence every later stage (drills, reports, audit) reads.
-- Timestamps are UTC text in one fixed form (2026-11-29T11:48:30.123Z), so text order is time order.

-- Every job run, whatever its outcome. A run is inserted as 'running' before any work starts,
-- so a killed process leaves a trace that the next start turns into 'interrupted'.
CREATE TABLE runs (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,   -- init | backup | copy | check | restore | drill | prune | report
    trigger       TEXT NOT NULL,   -- cli | demo | schedule | retry
    actor         TEXT NOT NULL,   -- unix user that caused the run
    pid           INTEGER NOT NULL,
    pid_start     INTEGER,         -- the process's start time (/proc/PID/stat), against pid reuse
    source        TEXT,
    location      TEXT,            -- where it ran (for a copy: the origin)
    target        TEXT,            -- for a copy: the destination; for a restore: the target
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    outcome       TEXT NOT NULL,   -- running | succeeded | failed | interrupted
    error_code    TEXT,
    error_message TEXT,
    bytes_read    INTEGER,
    bytes_added   INTEGER,         -- stored (compressed, encrypted) bytes added
    snapshot_id   TEXT,
    details       TEXT             -- JSON
);
CREATE INDEX runs_by_time ON runs (started_at);
CREATE INDEX runs_by_kind ON runs (kind, source, location, started_at);

-- One logical backup of a source. Its id is the snapshot id in the location it was written to;
-- copies carry it as restic's `original`.
CREATE TABLE backups (
    id              TEXT PRIMARY KEY,
    source          TEXT NOT NULL,
    engine          TEXT NOT NULL,
    taken_at        TEXT NOT NULL,
    run_id          TEXT NOT NULL REFERENCES runs (id),
    size            INTEGER NOT NULL,  -- bytes dumped
    manifest        TEXT NOT NULL,     -- JSON, as stored in the snapshot
    manifest_sha256 TEXT NOT NULL
);
CREATE INDEX backups_by_source ON backups (source, taken_at);

-- Where each backup exists: one row per location holding it.
CREATE TABLE snapshots (
    location      TEXT NOT NULL,
    snapshot_id   TEXT NOT NULL,
    backup_id     TEXT NOT NULL REFERENCES backups (id),
    via           TEXT NOT NULL,   -- backup | copy
    copied_from   TEXT,            -- origin location of a copy
    run_id        TEXT NOT NULL REFERENCES runs (id),
    arrived_at    TEXT NOT NULL,
    removed_at    TEXT,            -- set when retention removes it
    PRIMARY KEY (location, snapshot_id)
);
CREATE UNIQUE INDEX snapshots_backup_location ON snapshots (backup_id, location);

-- Copies, with their lag: how long after the backup each copy arrived.
CREATE VIEW copies AS
SELECT s.backup_id, b.source, s.copied_from AS from_location, s.location AS to_location,
       s.snapshot_id, s.run_id, b.taken_at, s.arrived_at,
       (julianday(s.arrived_at) - julianday(b.taken_at)) * 86400.0 AS lag_seconds
FROM snapshots s JOIN backups b ON b.id = s.backup_id
WHERE s.via = 'copy';

-- Repository checks.
CREATE TABLE checks (
    run_id           TEXT PRIMARY KEY REFERENCES runs (id),
    location         TEXT NOT NULL,
    checked_at       TEXT NOT NULL,
    read_data_subset TEXT,           -- NULL: structure only
    ok               INTEGER NOT NULL,
    errors           INTEGER NOT NULL,
    warnings         INTEGER NOT NULL,
    findings         TEXT NOT NULL   -- JSON array of messages
);
CREATE INDEX checks_by_location ON checks (location, checked_at);
