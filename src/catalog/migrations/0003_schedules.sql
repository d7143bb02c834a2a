-- The daemon's memory of its schedules: the last fire time of each job, so that runs missed
-- while the daemon was down are found at its next start.
CREATE TABLE schedule_state (
    job        TEXT PRIMARY KEY,
    last_fire  TEXT NOT NULL
);
