-- Each report's key value per rule, for the trends of the reports after it.
ALTER TABLE reports ADD COLUMN metrics TEXT NOT NULL DEFAULT '{}';
