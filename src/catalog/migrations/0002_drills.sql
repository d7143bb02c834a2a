-- Restore drills and the scratch databases they restore into.

-- One row per drill, inserted when the drill starts (verdict 'running') and completed when it
-- ends; a drill whose process died is turned into 'interrupted' at the next start.
CREATE TABLE drills (
    run_id               TEXT PRIMARY KEY REFERENCES runs (id),
    source               TEXT NOT NULL,
    location             TEXT NOT NULL,
    selection            TEXT NOT NULL,   -- latest | random | id
    snapshot_id          TEXT,
    backup_id            TEXT,
    snapshot_taken_at    TEXT,
    snapshot_age_seconds REAL,
    engine               TEXT,
    scratch              TEXT,            -- what was restored into (no secrets)
    started_at           TEXT NOT NULL,
    finished_at          TEXT,
    verdict              TEXT NOT NULL,   -- running | passed | failed | interrupted
    failure_code         TEXT,
    failure_reason       TEXT,
    rto_seconds          REAL,            -- wall time from the drill's start to a verified database
    phases               TEXT,            -- JSON [{name, seconds}]
    tables               INTEGER,
    rows                 INTEGER,
    bytes                INTEGER,
    assertions           TEXT             -- JSON [{name, actual, expected, held}]
);
CREATE INDEX drills_by_pair ON drills (source, location, started_at);

-- Every scratch database a drill created, so that one left behind by a killed process is found
-- and removed at the next start. Inserted before the instance is created.
CREATE TABLE scratch_instances (
    id          TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL REFERENCES runs (id),
    kind        TEXT NOT NULL,   -- postgres | mariadb | sqlite | server-postgres | server-mysql
    path        TEXT,            -- private directory (ephemeral instances, SQLite files)
    pid         INTEGER,         -- server process (ephemeral instances)
    pid_start   INTEGER,
    database    TEXT,            -- database created on a configured scratch server
    server      TEXT,            -- user@host:port of that server (no secrets)
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    removed_at  TEXT,
    removed_by  TEXT             -- teardown | sweep
);
CREATE INDEX scratch_live ON scratch_instances (removed_at);
