-- Access control that holds in production: approvals for requests from the CLI as well as the
-- control socket, what became of an approved request, and enrolled second factors (TOTP).
ALTER TABLE approvals ADD COLUMN origin TEXT NOT NULL DEFAULT 'socket';   -- socket | cli
ALTER TABLE approvals ADD COLUMN action TEXT NOT NULL DEFAULT 'restore';
ALTER TABLE approvals ADD COLUMN summary TEXT NOT NULL DEFAULT '';        -- what will run, in words
ALTER TABLE approvals ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';    -- sha256 of the canonical operation
ALTER TABLE approvals ADD COLUMN requester_factor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE approvals ADD COLUMN approver_factor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE approvals ADD COLUMN used_at TEXT;                            -- a CLI request, once run
ALTER TABLE approvals ADD COLUMN outcome TEXT;                            -- succeeded | failed
ALTER TABLE approvals ADD COLUMN outcome_detail TEXT;

-- One TOTP secret per person, encrypted (ChaCha20-Poly1305 under [access] totp-key, the user
-- name as associated data). `last_step` makes every code single-use; `failures` and
-- `locked_until` rate-limit and lock out guessing.
CREATE TABLE second_factors (
    user          TEXT PRIMARY KEY,
    secret        TEXT NOT NULL,   -- hex(nonce || ciphertext)
    enrolled_at   TEXT NOT NULL,
    enrolled_by   TEXT NOT NULL,
    last_step     INTEGER NOT NULL DEFAULT 0,
    failures      INTEGER NOT NULL DEFAULT 0,
    last_failure  TEXT,
    locked_until  TEXT
);
