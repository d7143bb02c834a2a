-- The scheduled job a run belongs to (NULL for runs started on the command line or through the
-- socket without a job), for the metrics' `job` label and `runs`.
ALTER TABLE runs ADD COLUMN job TEXT;
UPDATE runs SET job = json_extract(details, '$.job')
 WHERE job IS NULL AND details IS NOT NULL AND json_valid(details)
   AND json_extract(details, '$.job') IS NOT NULL;
