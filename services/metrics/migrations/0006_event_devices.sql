-- The device class, browser family and bot flag the collector reads from the user agent, for
-- breakdowns by device and for filtering bots out of (or into) any figure.
ALTER TABLE {database}.events
    ADD COLUMN IF NOT EXISTS device LowCardinality(String) AFTER channel,
    ADD COLUMN IF NOT EXISTS browser LowCardinality(String) AFTER device,
    ADD COLUMN IF NOT EXISTS is_bot Bool AFTER browser;
