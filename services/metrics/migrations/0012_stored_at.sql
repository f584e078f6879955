-- When each row was stored, the clock retention counts from.
--
-- Retention is per table, from `KLANTREIS_RETENTION_DAYS`, and counts from when a row was
-- written, never from the time of the event it describes: history imported with its original
-- timestamps (years old, say) must stay as long as live rows, not expire at its first merge.
-- The TTLs themselves are set from the settings on every start (Warehouse.apply_retention),
-- not here: a migration runs once, and retention is configuration.
--
-- DateTime (seconds) is precise enough for a retention counted in days. Rows stored before this
-- migration read its time as theirs, so their retention starts now.
ALTER TABLE {database}.events ADD COLUMN IF NOT EXISTS stored_at DateTime DEFAULT now();
ALTER TABLE {database}.sessions ADD COLUMN IF NOT EXISTS stored_at DateTime DEFAULT now();
ALTER TABLE {database}.phase_transitions ADD COLUMN IF NOT EXISTS stored_at DateTime DEFAULT now();
ALTER TABLE {database}.signals ADD COLUMN IF NOT EXISTS stored_at DateTime DEFAULT now();
ALTER TABLE {database}.identities ADD COLUMN IF NOT EXISTS stored_at DateTime DEFAULT now();
ALTER TABLE {database}.dead_letters ADD COLUMN IF NOT EXISTS stored_at DateTime DEFAULT now();
