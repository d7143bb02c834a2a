-- Damage a check, drill or restore found in a location, and the check that cleared it.
CREATE TABLE damage (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    location    TEXT NOT NULL,
    run_id      TEXT NOT NULL REFERENCES runs (id),
    found_at    TEXT NOT NULL,
    found_by    TEXT NOT NULL,   -- check | drill | restore
    pack        TEXT,            -- the damaged pack's id (prefix), when known
    detail      TEXT NOT NULL,
    cleared_at  TEXT,
    cleared_by  TEXT             -- the run of the check that read the pack again and passed
);
CREATE INDEX damage_by_location ON damage (location, cleared_at);
