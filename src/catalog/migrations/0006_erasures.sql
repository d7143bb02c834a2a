-- The GDPR erasure ledger, kept outside the backups, and every replay of it after a restore.

-- One row per erased subject and source. `subject` is `hmac-sha256:<hex>` (the default: the
-- ledger holds no raw subject keys) or `plain:<key>` when hashing is turned off.
CREATE TABLE erasures (
    id           TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    subject      TEXT NOT NULL,
    request      TEXT NOT NULL,   -- the request's reference (ticket, DSAR number)
    recorded_at  TEXT NOT NULL,
    recorded_by  TEXT NOT NULL,
    UNIQUE (source, subject)
);

-- Every replay of the ledger into a restored database (restores and drills), with its proof.
CREATE TABLE erasure_replays (
    run_id       TEXT NOT NULL,
    kind         TEXT NOT NULL,   -- restore | drill
    source       TEXT NOT NULL,
    snapshot_id  TEXT,
    replayed_at  TEXT NOT NULL,
    ledger_size  INTEGER NOT NULL,  -- erasures of the source recorded up to the replay
    found        INTEGER NOT NULL,  -- erased subjects present in the restored data
    remaining    INTEGER NOT NULL,  -- still present after the replay (the proof): must be 0
    ok           INTEGER NOT NULL,
    seconds      REAL NOT NULL,
    error        TEXT
);
CREATE INDEX erasure_replays_by_run ON erasure_replays (run_id);
